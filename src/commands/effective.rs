//! What decides automatic healing right now: the schedule's YAML, overridden
//! by `/selfheal enable|disable` until `reset`, and the workspace-wide pause.
//! Reads config and the store only; no Slack.

use chrono::{DateTime, Utc};

use crate::config::{Config, Schedule};
use crate::store::{ScheduleOverride, Store};

/// The settings that decide automatic healing for a schedule right now: YAML, overridden by /selfheal.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    pub enabled: bool,
    /// The healing channel as configured (name or id); `None` when disabled.
    /// Without an override channel it follows [`Schedule::healing_channel`].
    pub healing_channel: Option<String>,
    /// The agent named by the override or the YAML; `None` means the default
    /// agent (`Config::default_agent`).
    pub agent_name: Option<String>,
    pub source: Source,
}

/// Where the effective settings come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The schedule's YAML alone.
    Yaml,
    /// A `/selfheal enable|disable` by Slack user `by` at `at`.
    Override { by: String, at: DateTime<Utc> },
}

/// The effective settings of `schedule`; `None` for an unknown schedule.
pub fn effective(cfg: &Config, store: &Store, schedule: &str) -> anyhow::Result<Option<Effective>> {
    let Some(s) = cfg.schedules.get(schedule) else {
        return Ok(None);
    };
    let o = store.schedule_override(schedule)?;
    Ok(Some(combine(s, o.as_ref())))
}

/// Whether `/selfheal pause` stopped all automatic healing.
pub fn paused(store: &Store) -> anyhow::Result<bool> {
    Ok(store.pause()?.is_some())
}

/// The YAML with the override applied (pure).
pub fn combine(schedule: &Schedule, o: Option<&ScheduleOverride>) -> Effective {
    let Some(o) = o else {
        return Effective {
            enabled: schedule.self_healing.enabled,
            healing_channel: schedule.healing_channel().map(str::to_string),
            agent_name: schedule.self_healing.agent_name.clone(),
            source: Source::Yaml,
        };
    };
    let mut s = schedule.clone();
    s.self_healing.enabled = o.enabled;
    if let Some(channel) = &o.slack_channel {
        s.self_healing.slack_channel = Some(channel.clone());
    }
    if let Some(agent) = &o.agent_name {
        s.self_healing.agent_name = Some(agent.clone());
    }
    Effective {
        enabled: o.enabled,
        healing_channel: s.healing_channel().map(str::to_string),
        agent_name: s.self_healing.agent_name.clone(),
        source: Source::Override {
            by: o.changed_by.clone(),
            at: o.changed_at,
        },
    }
}

impl Effective {
    /// The agent that heals: the named one, else the default agent.
    pub fn agent<'a>(&'a self, cfg: &'a Config) -> Option<&'a str> {
        self.agent_name.as_deref().or(cfg.default_agent.as_deref())
    }

    /// For the audit log.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "enabled": self.enabled,
            "healing_channel": self.healing_channel,
            "agent_name": self.agent_name,
            "source": match &self.source {
                Source::Yaml => "yaml".to_string(),
                Source::Override { by, at } => format!("override by {by} at {}", at.to_rfc3339()),
            },
        })
        .to_string()
    }
}
