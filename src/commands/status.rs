//! `status [schedule]`: the effective settings per schedule (YAML or
//! override, who changed it and when), the pause, and running sessions.
//! SQLite reads only.

use super::effective::{combine, Effective, Source};
use super::{channel_mrkdwn, unknown_schedule, when, CommandContext};
use crate::config::Config;
use crate::slack::render::escape;

pub(super) fn status(ctx: &CommandContext, only: Option<&str>) -> anyhow::Result<String> {
    let cfg = &ctx.parts.cfg;
    if let Some(name) = only {
        if cfg.schedules.get(name).is_none() {
            return Ok(unknown_schedule(cfg, name));
        }
    }
    let mut out = match ctx.parts.store.pause()? {
        Some(p) => format!(
            "⏸ *Paused workspace-wide* by <@{}> since {}: nothing is healed until `/selfheal resume`.\n",
            p.paused_by,
            when(p.paused_at)
        ),
        None => "▶️ *Self-healing is active.*\n".to_string(),
    };
    for s in cfg
        .schedules
        .iter()
        .filter(|s| only.is_none_or(|n| n == s.name))
    {
        let o = ctx.parts.store.schedule_override(&s.name)?;
        let e = combine(s, o.as_ref());
        out.push_str(&format!("• `{}`: {}", escape(&s.name), describe(cfg, &e)));
        match &e.source {
            Source::Yaml => out.push_str(" — from the YAML\n"),
            Source::Override { by, at } => out.push_str(&format!(
                " — override by <@{by}> on {} (YAML: {})\n",
                when(*at),
                describe(cfg, &combine(s, None))
            )),
        }
    }
    let running: Vec<_> = ctx
        .parts
        .store
        .unfinished_sessions()?
        .into_iter()
        .filter(|r| only.is_none_or(|n| n == r.schedule))
        .collect();
    if running.is_empty() {
        out.push_str("Running sessions: none.");
    } else {
        out.push_str("Running sessions:\n");
        for r in running {
            out.push_str(&format!(
                "• `{}` run {} with `{}` since {} — {}\n",
                escape(&r.schedule),
                escape(&r.run_id),
                escape(&r.agent),
                when(r.created_at),
                crate::slack::render::archive_link(&r.channel, &r.thread_ts, "thread"),
            ));
        }
    }
    Ok(out.trim_end().to_string())
}

/// `✅ on in #agent-demo with `scripted`` or `⛔ off`.
pub(super) fn describe(cfg: &Config, e: &Effective) -> String {
    match (&e.healing_channel, e.enabled) {
        (Some(channel), true) => format!(
            "✅ on in {} with `{}`",
            channel_mrkdwn(channel),
            escape(e.agent(cfg).unwrap_or("?"))
        ),
        _ => "⛔ off".to_string(),
    }
}
