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
use crate::slack::web::{Role, SlackError};
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
    /// user id → (what they administer, when Slack said so). Shared by
    /// clones, so keep one context for the app's life rather than building
    /// one per command.
    pub admin_cache: Arc<Mutex<HashMap<String, (Role, Instant)>>>,
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
        match role(ctx, user).await {
            Ok(role) => {
                let reach = reach(ctx, &command);
                if let Some(refusal) = refusal(&role, &reach) {
                    return CommandReply::text(refusal);
                }
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

/// Whether a person administers anything here: the Home tab shows them
/// the switches.
pub async fn is_admin(ctx: &CommandContext, user: &str) -> Result<bool, SlackError> {
    Ok(role(ctx, user).await? != Role::Member)
}

/// What a person administers: the users in `SELFHEAL_ADMINS` (see
/// [`parse_admins`]) everything, with no API call; others as `users.info`
/// says, cached for [`ADMIN_CACHE_TTL`].
async fn role(ctx: &CommandContext, user: &str) -> Result<Role, SlackError> {
    if ctx.parts.cfg.admins.iter().any(|a| a == user) {
        return Ok(Role::OrgAdmin);
    }
    let cached = {
        let cache = ctx.admin_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(user)
            .filter(|(_, at)| at.elapsed() < ADMIN_CACHE_TTL)
            .map(|(role, _)| role.clone())
    };
    if let Some(role) = cached {
        return Ok(role);
    }
    let role = ctx.parts.web.role(user).await?;
    ctx.admin_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(user.to_string(), (role.clone(), Instant::now()));
    Ok(role)
}

/// What a change touches.
#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    /// One schedule, notified and healing in channels of these workspaces
    /// (none known outside an org-wide install).
    Schedule(Vec<String>),
    /// Every schedule (pause, resume) of a bot serving this many workspaces.
    All { workspaces: usize },
}

/// Why `role` may not make a change of `reach`, or `None` when it may.
/// Org admins may change anything; a workspace admin, what heals in their
/// workspace only, and the pause switch only when the bot serves no other.
pub fn refusal(role: &Role, reach: &Reach) -> Option<&'static str> {
    match (role, reach) {
        (Role::OrgAdmin, _) => None,
        (Role::WorkspaceAdmin(own), Reach::Schedule(workspaces))
            if workspaces.iter().all(|w| w == own) =>
        {
            None
        }
        (Role::WorkspaceAdmin(_), Reach::All { workspaces }) if *workspaces <= 1 => None,
        (Role::WorkspaceAdmin(_), Reach::Schedule(_)) => Some(
            "⛔ This schedule heals in a workspace you do not administer. Its workspace's \
             admins, org admins and owners, or the users listed in SELFHEAL_ADMINS can change it.",
        ),
        (Role::WorkspaceAdmin(_), Reach::All { .. }) => Some(
            "⛔ Pausing and resuming reach every workspace of the org: org admins and owners, \
             or the users listed in SELFHEAL_ADMINS, can do it.",
        ),
        (Role::Member, _) => Some(
            "⛔ Only workspace admins and owners, or the users listed in SELFHEAL_ADMINS, \
             can change self-healing. `/selfheal status` shows the current settings.",
        ),
    }
}

/// What `command` (a change) touches: a schedule's workspaces, as the
/// channel directory knows them (no listing while the ack waits), or
/// everything.
fn reach(ctx: &CommandContext, command: &Command) -> Reach {
    let schedule = match command {
        Command::Enable { schedule, .. }
        | Command::Disable { schedule }
        | Command::Reset { schedule } => ctx.parts.cfg.schedules.get(schedule),
        _ => None,
    };
    let channels = &ctx.parts.channels;
    let Some(schedule) = schedule else {
        return Reach::All {
            workspaces: channels.workspaces(),
        };
    };
    let mut workspaces = vec![];
    let mut configured = schedule.failure_channels();
    configured.extend(schedule.healing_channel().map(str::to_string));
    for c in configured {
        for id in channels.known_ids_of(&c) {
            if let Some(w) = channels.workspace_of(&id) {
                if !workspaces.contains(&w.id) {
                    workspaces.push(w.id);
                }
            }
        }
    }
    Reach::Schedule(workspaces)
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
        // A name in several workspaces of an org is announced in each.
        let found = ctx.parts.channels.ids_of(configured).await;
        if found.is_empty() {
            warn!(channel = %configured, "cannot announce a /selfheal change: unknown channel");
            failed.push(configured.clone());
        }
        for id in found {
            if !ids.iter().any(|(known, _)| *known == id) {
                ids.push((id, configured.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_admins_change_anything_and_workspace_admins_only_their_workspace() {
        let eu = || Role::WorkspaceAdmin("T0EU".into());
        let schedule = |ws: &[&str]| Reach::Schedule(ws.iter().map(|w| w.to_string()).collect());
        // (who, what the change reaches, allowed)
        let table = [
            (Role::OrgAdmin, schedule(&["T0EU", "T0US"]), true),
            (Role::OrgAdmin, Reach::All { workspaces: 3 }, true),
            // A single-workspace install knows no workspaces: its admins rule.
            (eu(), schedule(&[]), true),
            (eu(), Reach::All { workspaces: 0 }, true),
            (eu(), Reach::All { workspaces: 1 }, true),
            (eu(), schedule(&["T0EU"]), true),
            (eu(), schedule(&["T0US"]), false),
            (eu(), schedule(&["T0EU", "T0US"]), false),
            (eu(), Reach::All { workspaces: 2 }, false),
            (Role::Member, schedule(&[]), false),
            (Role::Member, Reach::All { workspaces: 1 }, false),
        ];
        for (role, reach, allowed) in table {
            assert_eq!(
                refusal(&role, &reach).is_none(),
                allowed,
                "{role:?} changing {reach:?}"
            );
        }
    }
}
