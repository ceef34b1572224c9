//! `pause` and `resume`: the workspace-wide kill switch for incidents,
//! announced in every healing channel of the enabled schedules.

use super::{announce, announce_note, effective, when, CommandContext};

pub(super) async fn switch(
    ctx: &CommandContext,
    user: &str,
    pause: bool,
) -> anyhow::Result<String> {
    if !ctx.parts.store.set_paused(pause, user)? {
        return Ok(match ctx.parts.store.pause()? {
            Some(p) => format!(
                "⏸ Self-healing is already paused (by <@{}> since {}).",
                p.paused_by,
                when(p.paused_at)
            ),
            None => "▶️ Self-healing is not paused.".to_string(),
        });
    }
    let mut channels: Vec<String> = vec![];
    for s in ctx.parts.cfg.schedules.iter() {
        if let Some(e) = effective(&ctx.parts.cfg, &ctx.parts.store, &s.name)? {
            if let (true, Some(c)) = (e.enabled, e.healing_channel) {
                channels.push(c);
            }
        }
    }
    let (text, answer) = if pause {
        (
            format!("⏸ <@{user}> paused self-healing for the whole workspace: no new healing sessions start until `/selfheal resume`."),
            "⏸ Self-healing is paused workspace-wide: new failures are not healed until `/selfheal resume`.",
        )
    } else {
        (
            format!("▶️ <@{user}> resumed self-healing: failures are healed again."),
            "▶️ Self-healing resumed.",
        )
    };
    let failed = announce(ctx, &channels, &text).await;
    Ok(format!("{answer}{}", announce_note(&failed)))
}
