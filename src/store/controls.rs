//! What people set through `/selfheal`: per-schedule overrides of the YAML,
//! the workspace-wide pause, and the audit log every change writes in the
//! same transaction.

use super::db::{params, Db, DbResult, OptionalExtension, Row};
use anyhow::Result;
use chrono::{DateTime, Utc};

use super::db::all;
use super::{now, Store};

/// A `/selfheal enable|disable` setting that beats the schedule's YAML until reset.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleOverride {
    pub schedule: String,
    pub enabled: bool,
    /// The healing channel as configured (name or id); `None` keeps the YAML's rule.
    pub slack_channel: Option<String>,
    /// The agent; `None` keeps the YAML's (or the default) agent.
    pub agent_name: Option<String>,
    /// The Slack user id of whoever set it, for `status`.
    pub changed_by: String,
    pub changed_at: DateTime<Utc>,
}

/// The workspace-wide kill switch, while it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct Pause {
    pub paused_by: String,
    pub paused_at: DateTime<Utc>,
}

/// One change made through `/selfheal`: who, when, what, and the settings
/// before and after (JSON written by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub user_id: String,
    /// `enable`, `disable`, `reset`, `pause` or `resume`.
    pub action: String,
    /// The schedule, or `workspace` for pause/resume.
    pub target: String,
    pub before: String,
    pub after: String,
}

impl Store {
    /// The `/selfheal` override of a schedule, if one is set.
    pub fn schedule_override(&self, schedule: &str) -> Result<Option<ScheduleOverride>> {
        self.with_conn("loading a schedule override", |c| {
            c.query_row(
                "SELECT schedule, enabled, slack_channel, agent_name, changed_by, changed_at
                 FROM schedule_overrides WHERE schedule = ?1",
                params![schedule],
                ScheduleOverride::from_row,
            )
            .optional()
        })
    }

    /// Sets a schedule's override and records the change in the audit log, atomically.
    pub fn set_schedule_override(
        &self,
        o: &ScheduleOverride,
        action: &str,
        before: &str,
        after: &str,
    ) -> Result<()> {
        self.with_tx("storing a schedule override", |tx| {
            tx.execute(
                "INSERT INTO schedule_overrides(schedule, enabled, slack_channel, agent_name, changed_by, changed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(schedule) DO UPDATE SET enabled = excluded.enabled,
                     slack_channel = excluded.slack_channel, agent_name = excluded.agent_name,
                     changed_by = excluded.changed_by, changed_at = excluded.changed_at",
                params![o.schedule, o.enabled, o.slack_channel, o.agent_name, o.changed_by, o.changed_at],
            )?;
            audit(tx, &o.changed_by, action, &o.schedule, before, after)
        })
    }

    /// Removes a schedule's override (back to the YAML) and audits it; false
    /// when there was none (nothing is written then).
    pub fn clear_schedule_override(
        &self,
        schedule: &str,
        by: &str,
        before: &str,
        after: &str,
    ) -> Result<bool> {
        self.with_tx("clearing a schedule override", |tx| {
            let n = tx.execute(
                "DELETE FROM schedule_overrides WHERE schedule = ?1",
                params![schedule],
            )?;
            if n == 1 {
                audit(tx, by, "reset", schedule, before, after)?;
            }
            Ok(n == 1)
        })
    }

    /// The workspace-wide pause, while it is on.
    pub fn pause(&self) -> Result<Option<Pause>> {
        self.with_conn("loading the pause switch", |c| {
            c.query_row(
                "SELECT paused_by, paused_at FROM pause WHERE id = 1",
                &[],
                |r| {
                    Ok(Pause {
                        paused_by: r.get(0)?,
                        paused_at: r.get(1)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Turns the workspace-wide pause on or off and audits the change; false
    /// when it was already in that state (nothing is written then).
    pub fn set_paused(&self, paused: bool, by: &str) -> Result<bool> {
        self.with_tx("switching the pause", |tx| {
            let n = if paused {
                tx.execute(
                    "INSERT INTO pause(id, paused_by, paused_at) VALUES (1, ?1, ?2) ON CONFLICT DO NOTHING",
                    params![by, now()],
                )?
            } else {
                tx.execute("DELETE FROM pause WHERE id = 1", &[])?
            };
            if n == 1 {
                let (action, before, after) = if paused {
                    ("pause", r#"{"paused":false}"#, r#"{"paused":true}"#)
                } else {
                    ("resume", r#"{"paused":true}"#, r#"{"paused":false}"#)
                };
                audit(tx, by, action, "workspace", before, after)?;
            }
            Ok(n == 1)
        })
    }

    /// The newest audit entries first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        self.with_conn("loading the audit log", |c| {
            all(
                c,
                "SELECT id, at, user_id, action, target, before, after FROM audit_log ORDER BY id DESC LIMIT ?1",
                params![limit as i64],
                |r| {
                    Ok(AuditEntry {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        user_id: r.get(2)?,
                        action: r.get(3)?,
                        target: r.get(4)?,
                        before: r.get(5)?,
                        after: r.get(6)?,
                    })
                },
            )
        })
    }
}

impl ScheduleOverride {
    fn from_row(r: &Row) -> DbResult<ScheduleOverride> {
        Ok(ScheduleOverride {
            schedule: r.get(0)?,
            enabled: r.get(1)?,
            slack_channel: r.get(2)?,
            agent_name: r.get(3)?,
            changed_by: r.get(4)?,
            changed_at: r.get(5)?,
        })
    }
}

/// Writes one audit row inside the change's own transaction.
fn audit(
    tx: &Db<'_>,
    user_id: &str,
    action: &str,
    target: &str,
    before: &str,
    after: &str,
) -> DbResult<()> {
    tx.execute(
        "INSERT INTO audit_log(at, user_id, action, target, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![now(), user_id, action, target, before, after],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_pause_and_audit_round_trip() {
        for store in crate::store::testing::stores() {
            assert_eq!(store.schedule_override("s").unwrap(), None);
            let o = ScheduleOverride {
                schedule: "s".into(),
                enabled: false,
                slack_channel: None,
                agent_name: None,
                changed_by: "U1".into(),
                changed_at: Utc::now(),
            };
            store
                .set_schedule_override(&o, "disable", "{}", "{}")
                .unwrap();
            let enabled = ScheduleOverride {
                enabled: true,
                agent_name: Some("a".into()),
                ..o
            };
            store
                .set_schedule_override(&enabled, "enable", "{}", "{}")
                .unwrap();
            let got = store.schedule_override("s").unwrap().unwrap();
            assert!(got.enabled);
            assert_eq!(got.agent_name.as_deref(), Some("a"));
            assert!(store
                .clear_schedule_override("s", "U1", "{}", "{}")
                .unwrap());
            assert!(!store
                .clear_schedule_override("s", "U1", "{}", "{}")
                .unwrap());
            assert!(store.set_paused(true, "U2").unwrap());
            assert!(!store.set_paused(true, "U2").unwrap());
            assert_eq!(store.pause().unwrap().unwrap().paused_by, "U2");
            assert!(store.set_paused(false, "U2").unwrap());
            assert_eq!(store.pause().unwrap(), None);
            let actions: Vec<_> = store
                .audit_log(10)
                .unwrap()
                .into_iter()
                .map(|a| a.action)
                .collect();
            assert_eq!(actions, ["resume", "pause", "reset", "enable", "disable"]);
        }
    }
}
