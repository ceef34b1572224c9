//! `/selfheal` slash commands: parsing (pure), the handlers, and their answers.
//!
//! Answers go back ephemerally in the Socket Mode ack, so handlers stay fast:
//! SQLite reads, at most one `users.info` (cached) to check an admin, and for
//! changes, one announcement per healing channel. Changes are admin-only,
//! written to the store with an audit row, and announced where healing happens.
//!
//! # Layout
//! - [`parse`]: the [`Command`] enum, whose doc comments are the help text (pure).
//! - [`effective`](mod@effective): YAML + override → [`Effective`]; the pause switch.
//! - `toggle.rs`: `enable`, `disable`, `reset`; `pause.rs`: `pause`, `resume`.
//! - `status.rs`, `history.rs`, `agents.rs`: the read-only answers.

mod agents;
pub mod effective;
mod history;
pub mod parse;
mod pause;
mod status;
mod toggle;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{error, warn};

use crate::config::Config;
use crate::parts::Parts;
use crate::slack::render::{channel_mrkdwn, escape, when};
use crate::slack::{CommandReply, CommandRequest};

pub use effective::{effective, paused, Effective, Source};
pub use history::thread_urls;
pub use parse::{help_text, parse, Command, UsageError, HELP};

/// How long a `users.info` answer about admin rights is trusted.
pub const ADMIN_CACHE_TTL: Duration = Duration::from_secs(10 * 60);

/// What command handlers may use: the bot's shared parts, and what only
/// commands keep.
#[derive(Clone)]
pub struct CommandContext {
    pub parts: Arc<Parts>,
    /// user id → (is admin, when Slack said so). Shared by clones, so keep one
    /// context for the app's life rather than building one per command.
    pub admin_cache: Arc<Mutex<HashMap<String, (bool, Instant)>>>,
}

impl CommandContext {
    pub fn new(parts: Arc<Parts>) -> CommandContext {
        CommandContext {
            parts,
            admin_cache: Arc::default(),
        }
    }
}

/// Splits `SELFHEAL_ADMINS` (user ids, comma or space separated).
pub fn parse_admins(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Answers one `/selfheal …` invocation.
pub async fn handle(ctx: &CommandContext, req: &CommandRequest) -> CommandReply {
    match parse(&req.text) {
        Ok(command) => run(ctx, &req.user_id, command).await,
        Err(UsageError(why)) => CommandReply::text(format!("{why}\n\n{}", help_text())),
    }
}

/// Runs a command for Slack user `user`: a `/selfheal` invocation, or a
/// button on the Home tab that does what its command does.
pub async fn run(ctx: &CommandContext, user: &str, command: Command) -> CommandReply {
    let changes = matches!(
        command,
        Command::Enable { .. }
            | Command::Disable { .. }
            | Command::Reset { .. }
            | Command::Pause
            | Command::Resume
    );
    if changes {
        match is_admin(ctx, user).await {
            Ok(true) => {}
            Ok(false) => {
                return CommandReply::text(
                    "⛔ Only workspace admins and owners, or the users listed in SELFHEAL_ADMINS, \
                     can change self-healing. `/selfheal status` shows the current settings.",
                )
            }
            Err(e) => {
                warn!(user, error = %e, "could not check admin rights with users.info");
                return CommandReply::text(
                    "⚠️ I could not check your admin rights with Slack just now; please try again.",
                );
            }
        }
    }
    let asked = format!("{command:?}");
    let result = match command {
        Command::Help => Ok(help_text()),
        Command::Enable {
            schedule,
            channel,
            agent,
        } => toggle::enable(ctx, user, &schedule, channel.as_ref(), agent.as_deref()).await,
        Command::Disable { schedule } => toggle::disable(ctx, user, &schedule).await,
        Command::Reset { schedule } => toggle::reset(ctx, user, &schedule).await,
        Command::Pause => pause::switch(ctx, user, true).await,
        Command::Resume => pause::switch(ctx, user, false).await,
        Command::Status { schedule } => status::status(ctx, schedule.as_deref()),
        Command::History { schedule } => history::history(ctx, schedule.as_deref()).await,
        Command::Agents => agents::agents(ctx),
    };
    if changes {
        // The Home tabs people have open show the settings: refresh them.
        ctx.parts.changed();
    }
    match result {
        Ok(text) => CommandReply::text(text),
        Err(e) => {
            error!(error = ?e, command = %asked, "a /selfheal command failed");
            CommandReply::text(
                "⚠️ Something went wrong on my side; the details are in selfheal's log.",
            )
        }
    }
}

/// `SELFHEAL_ADMINS` (see [`parse_admins`]) first (no API call), then
/// workspace admins and owners from `users.info`, cached for [`ADMIN_CACHE_TTL`].
pub async fn is_admin(
    ctx: &CommandContext,
    user: &str,
) -> Result<bool, crate::slack::web::SlackError> {
    if ctx.parts.cfg.admins.iter().any(|a| a == user) {
        return Ok(true);
    }
    let cached = {
        let cache = ctx.admin_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(user)
            .filter(|(_, at)| at.elapsed() < ADMIN_CACHE_TTL)
            .map(|(admin, _)| *admin)
    };
    if let Some(admin) = cached {
        return Ok(admin);
    }
    let admin = ctx.parts.web.is_admin(user).await?;
    ctx.admin_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(user.to_string(), (admin, Instant::now()));
    Ok(admin)
}

/// An unknown schedule: a sentence naming the known ones.
fn unknown_schedule(cfg: &Config, name: &str) -> String {
    let names: Vec<String> = cfg
        .schedules
        .names()
        .into_iter()
        .map(|n| format!("`{}`", escape(n)))
        .collect();
    format!(
        "Unknown schedule `{}`. Schedules: {}.",
        escape(name),
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    )
}

/// Posts `text` top-level in each configured channel (deduplicated by id),
/// concurrently. Returns the channels it could not post in, for the answer.
async fn announce(ctx: &CommandContext, channels: &[String], text: &str) -> Vec<String> {
    let mut ids: Vec<(String, String)> = vec![];
    let mut failed = vec![];
    for configured in channels {
        match ctx.parts.channels.id_of(configured).await {
            Some(id) if !ids.iter().any(|(known, _)| *known == id) => {
                ids.push((id, configured.clone()))
            }
            Some(_) => {}
            None => {
                warn!(channel = %configured, "cannot announce a /selfheal change: unknown channel");
                failed.push(configured.clone());
            }
        }
    }
    let posts = ids.iter().map(|(id, configured)| async move {
        match ctx.parts.web.post(id, None, text, None).await {
            Ok(_) => None,
            Err(e) => {
                warn!(channel = %id, error = %e, "could not announce a /selfheal change");
                Some(configured.clone())
            }
        }
    });
    failed.extend(
        futures_util::future::join_all(posts)
            .await
            .into_iter()
            .flatten(),
    );
    failed
}

/// A note for the answer when announcements failed.
fn announce_note(failed: &[String]) -> String {
    if failed.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = failed.iter().map(|c| channel_mrkdwn(c)).collect();
        format!("\n⚠️ I could not announce it in {}.", list.join(", "))
    }
}
