//! `enable`, `disable` and `reset`: per-schedule overrides of the YAML,
//! validated as the YAML is, audited, and announced in the healing channel.

use chrono::Utc;

use super::effective::{combine, Effective};
use super::parse::ChannelArg;
use super::{announce, announce_note, channel_mrkdwn, unknown_schedule, CommandContext};
use crate::config::{normalize_channel, split_workspace, Runner, Schedule};
use crate::slack::render::escape;
use crate::store::ScheduleOverride;

pub(super) async fn enable(
    ctx: &CommandContext,
    user: &str,
    name: &str,
    channel: Option<&ChannelArg>,
    agent: Option<&str>,
) -> anyhow::Result<String> {
    let cfg = &ctx.parts.cfg;
    let Some(schedule) = cfg.schedules.get(name) else {
        return Ok(unknown_schedule(cfg, name));
    };
    let slack_channel = match channel {
        None => None,
        Some(arg) => match configured_channel(ctx, schedule, arg).await {
            Some(c) => Some(c),
            None => {
                let list: Vec<String> = schedule
                    .slack
                    .iter()
                    .map(|n| channel_mrkdwn(&n.channel))
                    .collect();
                return Ok(format!(
                    "{} is not one of `{}`'s notification channels ({}); healing happens in one of them.",
                    escape(&arg.display()),
                    escape(name),
                    if list.is_empty() { "none".into() } else { list.join(", ") }
                ));
            }
        },
    };
    let o = ScheduleOverride {
        schedule: name.to_string(),
        enabled: true,
        slack_channel,
        agent_name: agent.map(str::to_string),
        changed_by: user.to_string(),
        changed_at: Utc::now(),
    };
    let after = combine(schedule, Some(&o));
    if let Err(why) = check_agent(ctx, &after) {
        return Ok(why);
    }
    let Some(heal_in) = after.healing_channel.clone() else {
        return Ok(format!(
            "`{}` has no channel notified on failure to heal in: name one of its notification channels.",
            escape(name)
        ));
    };
    let before = super::effective(cfg, &ctx.parts.store, name)?.expect("the schedule exists");
    ctx.parts
        .store
        .set_schedule_override(&o, "enable", &before.to_json(), &after.to_json())?;
    let agent = after.agent(cfg).unwrap_or("?");
    let text = format!(
        "🦖 <@{user}> enabled self-healing for `{}`: failures heal in {} with agent `{}`.",
        escape(name),
        channel_mrkdwn(&heal_in),
        escape(agent)
    );
    let failed = announce(ctx, &[heal_in], &text).await;
    Ok(format!(
        "✅ Self-healing is on for `{}` (it overrides the YAML until `/selfheal reset {}`).{}",
        escape(name),
        escape(name),
        announce_note(&failed)
    ))
}

pub(super) async fn disable(
    ctx: &CommandContext,
    user: &str,
    name: &str,
) -> anyhow::Result<String> {
    let cfg = &ctx.parts.cfg;
    let Some(schedule) = cfg.schedules.get(name) else {
        return Ok(unknown_schedule(cfg, name));
    };
    let before = super::effective(cfg, &ctx.parts.store, name)?.expect("the schedule exists");
    let o = ScheduleOverride {
        schedule: name.to_string(),
        enabled: false,
        slack_channel: None,
        agent_name: None,
        changed_by: user.to_string(),
        changed_at: Utc::now(),
    };
    let after = combine(schedule, Some(&o));
    ctx.parts
        .store
        .set_schedule_override(&o, "disable", &before.to_json(), &after.to_json())?;
    let text = format!(
        "⛔ <@{user}> disabled self-healing for `{}`: its failures will not be healed automatically.",
        escape(name)
    );
    let failed = announce(ctx, &announce_in(schedule, &before, &after), &text).await;
    Ok(format!(
        "⛔ Self-healing is off for `{}` (it overrides the YAML until `/selfheal reset {}`).{}",
        escape(name),
        escape(name),
        announce_note(&failed)
    ))
}

pub(super) async fn reset(ctx: &CommandContext, user: &str, name: &str) -> anyhow::Result<String> {
    let cfg = &ctx.parts.cfg;
    let Some(schedule) = cfg.schedules.get(name) else {
        return Ok(unknown_schedule(cfg, name));
    };
    let before = super::effective(cfg, &ctx.parts.store, name)?.expect("the schedule exists");
    let after = combine(schedule, None);
    if !ctx
        .parts
        .store
        .clear_schedule_override(name, user, &before.to_json(), &after.to_json())?
    {
        return Ok(format!(
            "`{}` has no override; its YAML already decides.",
            escape(name)
        ));
    }
    let now = match (&after.healing_channel, after.agent(cfg)) {
        (Some(channel), Some(agent)) if after.enabled => format!(
            "on, healing in {} with agent `{}`",
            channel_mrkdwn(channel),
            escape(agent)
        ),
        _ => "off".to_string(),
    };
    let text = format!(
        "↩️ <@{user}> reset self-healing for `{}` to its YAML: {now}.",
        escape(name)
    );
    let failed = announce(ctx, &announce_in(schedule, &before, &after), &text).await;
    Ok(format!(
        "↩️ `{}` follows its YAML again: self-healing is {now}.{}",
        escape(name),
        announce_note(&failed)
    ))
}

/// Where a change is announced: the healing channel after the change, else
/// the one before it, else where the YAML would heal.
fn announce_in(schedule: &Schedule, before: &Effective, after: &Effective) -> Vec<String> {
    let mut fallback = schedule.clone();
    fallback.self_healing.enabled = true;
    after
        .healing_channel
        .clone()
        .or_else(|| before.healing_channel.clone())
        .or_else(|| fallback.healing_channel().map(str::to_string))
        .into_iter()
        .collect()
}

/// The schedule's notification channel (as configured) that `arg` denotes.
/// Compares normalised names and ids; asks Slack (cached) only when the
/// argument and the config spell the channel differently (a name vs an id).
async fn configured_channel(
    ctx: &CommandContext,
    schedule: &Schedule,
    arg: &ChannelArg,
) -> Option<String> {
    let mut keys: Vec<String> = arg
        .id
        .iter()
        .chain(arg.name.iter())
        .map(|s| normalize_channel(s))
        .collect();
    let find = |keys: &[String]| {
        schedule
            .slack
            .iter()
            .find(|n| {
                // A channel configured after its workspace is found by its
                // name alone too.
                let key = normalize_channel(&n.channel);
                keys.contains(&key) || keys.iter().any(|k| k == split_workspace(&key).1)
            })
            .map(|n| n.channel.clone())
    };
    if let Some(found) = find(&keys) {
        return Some(found);
    }
    match (&arg.id, &arg.name) {
        (Some(id), None) => keys.extend(ctx.parts.channels.name_of(id).await),
        (None, Some(name)) => keys.extend(ctx.parts.channels.ids_of(name).await),
        _ => {}
    }
    find(&keys)
}

/// The agent must exist and be runnable, as `selfheal check` demands of the YAML.
fn check_agent(ctx: &CommandContext, after: &Effective) -> Result<(), String> {
    let cfg = &ctx.parts.cfg;
    let known = || {
        cfg.agents
            .keys()
            .map(|k| format!("`{}`", escape(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(name) = after.agent(cfg) else {
        return Err(format!(
            "No agent: name one (agents: {}) or set SELFHEAL_DEFAULT_AGENT.",
            known()
        ));
    };
    match cfg.agents.get(name) {
        None => Err(format!(
            "Unknown agent `{}`. Agents: {}.",
            escape(name),
            known()
        )),
        Some(agent) if agent.runner == Runner::Unspecified => Err(format!(
            "Agent `{}` has no `selfheal.runner`, so it cannot heal.",
            escape(name)
        )),
        Some(_) => Ok(()),
    }
}
