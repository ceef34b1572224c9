//! Recognised failures and the exactly-once claims around them: a failure
//! per (schedule, run id), its sighting per channel, the courtesy pointer per
//! channel, and the Slack event ids already handled.

use super::db::{params, Db, DbResult, OptionalExtension, Row};
use anyhow::Result;
use chrono::{DateTime, Utc};

use super::db::all;
use super::{now, SessionRow, Store};
use crate::recognize::Failure;

/// A failure seen lately, for finishing the decisions a crash cut short.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentFailure {
    pub failure: Failure,
    /// Whether a session was claimed for it.
    pub session_claimed: bool,
}

/// A failure a passing run resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub failure: Failure,
    /// The latest session in its thread, when it had one.
    pub session: Option<SessionRow>,
}

impl Store {
    /// Records a Slack event id; false when it was seen before (a redelivery).
    pub fn first_sight_of_event(&self, event_id: &str) -> Result<bool> {
        self.with_conn("recording a Slack event id", |c| {
            c.execute(
                "INSERT INTO seen_events(event_id, seen_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![event_id, now()],
            )
            .map(|n| n == 1)
        })
    }

    /// Records that the failure was posted in `channel` at `ts`. Returns false
    /// when this channel's copy was already recorded.
    pub fn record_sighting(
        &self,
        schedule: &str,
        run_id: &str,
        channel: &str,
        ts: &str,
    ) -> Result<bool> {
        self.with_tx("recording a failure sighting", |tx| {
            let failure_id = ensure_failure(tx, schedule, run_id)?;
            tx.execute(
                "INSERT INTO sightings(failure_id, channel, ts, seen_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![failure_id, channel, ts, now()],
            )
            .map(|n| n == 1)
        })
    }

    /// The ts of the failure's notification in `channel`, if seen there.
    pub fn sighting(&self, schedule: &str, run_id: &str, channel: &str) -> Result<Option<String>> {
        self.with_conn("looking up a failure sighting", |c| {
            c.query_row(
                "SELECT s.ts FROM sightings s JOIN failures f ON f.id = s.failure_id
                 WHERE f.schedule = ?1 AND f.run_id = ?2 AND s.channel = ?3",
                params![schedule, run_id, channel],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// The failure whose notification is the message `ts` in `channel`.
    pub fn failure_at(&self, channel: &str, ts: &str) -> Result<Option<Failure>> {
        self.with_conn("looking up the failure of a notification", |c| {
            c.query_row(
                "SELECT f.schedule, f.run_id FROM sightings s JOIN failures f ON f.id = s.failure_id
                 WHERE s.channel = ?1 AND s.ts = ?2",
                params![channel, ts],
                failure_from_row,
            )
            .optional()
        })
    }

    /// Failures first seen since `since`, oldest first. Used at start-up to
    /// finish decisions a crash cut short.
    pub fn recent_failures(&self, since: DateTime<Utc>) -> Result<Vec<RecentFailure>> {
        self.with_conn("loading recent failures", |c| {
            all(
                c,
                "SELECT f.schedule, f.run_id, EXISTS(SELECT 1 FROM sessions s WHERE s.failure_id = f.id)
                 FROM failures f WHERE f.first_seen_at >= ?1 ORDER BY f.first_seen_at, f.id",
                params![since],
                |r| {
                    Ok(RecentFailure {
                        failure: failure_from_row(r)?,
                        session_claimed: r.get(2)?,
                    })
                },
            )
        })
    }

    /// Claims the courtesy pointer for a failure in a channel; true for the one
    /// caller that must post it.
    pub fn claim_pointer(&self, schedule: &str, run_id: &str, channel: &str) -> Result<bool> {
        self.with_tx("claiming a courtesy pointer", |tx| {
            let failure_id = ensure_failure(tx, schedule, run_id)?;
            tx.execute(
                "INSERT INTO pointers(failure_id, channel, claimed_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![failure_id, channel, now()],
            )
            .map(|n| n == 1)
        })
    }

    /// Whether the courtesy pointer for a failure in a channel was claimed.
    pub fn pointer_claimed(&self, schedule: &str, run_id: &str, channel: &str) -> Result<bool> {
        self.with_conn("looking up a courtesy pointer", |c| {
            c.query_row(
                "SELECT EXISTS(SELECT 1 FROM pointers p JOIN failures f ON f.id = p.failure_id
                 WHERE f.schedule = ?1 AND f.run_id = ?2 AND p.channel = ?3)",
                params![schedule, run_id, channel],
                |r| r.get(0),
            )
        })
    }

    /// The schedule passed in `run_id`: every failure of it not yet resolved
    /// is resolved by that run, claimed here once (a second delivery of the
    /// pass, or another source reporting it, gets nothing back). Returns
    /// them, oldest first, with the latest session in each one's thread.
    pub fn resolve_failures(&self, schedule: &str, run_id: &str) -> Result<Vec<Resolved>> {
        let claimed = self.with_tx("resolving failures", |tx| {
            let open: Vec<(i64, String, Option<i64>)> = all(
                tx,
                "SELECT f.id, f.run_id,
                        (SELECT s.id FROM sessions s WHERE s.failure_id = f.id AND s.thread_ts != ''
                         ORDER BY s.id DESC LIMIT 1)
                 FROM failures f WHERE f.schedule = ?1 AND f.resolved_run IS NULL AND f.run_id != ?2
                 ORDER BY f.id",
                params![schedule, run_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let at = now();
            for (id, ..) in &open {
                tx.execute(
                    "UPDATE failures SET resolved_run = ?2, resolved_at = ?3 WHERE id = ?1 AND resolved_run IS NULL",
                    params![id, run_id, at],
                )?;
            }
            Ok(open)
        })?;
        claimed
            .into_iter()
            .map(|(_, failed_run, session)| {
                Ok(Resolved {
                    failure: Failure {
                        schedule: schedule.to_string(),
                        run_id: failed_run,
                    },
                    session: session.map(|id| self.session(id)).transpose()?,
                })
            })
            .collect()
    }

    /// Per schedule, its latest failure seen since `since` when it is still
    /// unresolved and has a healing thread: what to ask the scheduler about
    /// (a run after it that passed resolves them all).
    pub fn open_failures(&self, since: DateTime<Utc>) -> Result<Vec<Failure>> {
        self.with_conn("loading the failures still open", |c| {
            all(
                c,
                "SELECT f.schedule, f.run_id FROM failures f
                 WHERE f.first_seen_at >= ?1 AND f.resolved_run IS NULL
                   AND f.id = (SELECT MAX(g.id) FROM failures g WHERE g.schedule = f.schedule)
                   AND EXISTS (SELECT 1 FROM sessions s WHERE s.failure_id = f.id AND s.thread_ts != '')
                 ORDER BY f.id",
                params![since],
                failure_from_row,
            )
        })
    }

    /// How many failures were recorded (for tests and status).
    pub fn failure_count(&self) -> Result<i64> {
        self.with_conn("counting failures", |c| {
            c.query_row("SELECT COUNT(*) FROM failures", &[], |r| r.get(0))
        })
    }
}

/// The id of the failure row, inserted on first sight.
pub(super) fn ensure_failure(tx: &Db<'_>, schedule: &str, run_id: &str) -> DbResult<i64> {
    tx.execute(
        "INSERT INTO failures(schedule, run_id, first_seen_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![schedule, run_id, now()],
    )?;
    tx.query_row(
        "SELECT id FROM failures WHERE schedule = ?1 AND run_id = ?2",
        params![schedule, run_id],
        |r| r.get(0),
    )
}

/// A failure from the first two columns: schedule, run id.
fn failure_from_row(r: &Row) -> DbResult<Failure> {
    Ok(Failure {
        schedule: r.get(0)?,
        run_id: r.get(1)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivered_events_and_repeated_sightings_are_recognised() {
        for store in crate::store::testing::stores() {
            assert!(store.first_sight_of_event("Ev1").unwrap());
            assert!(!store.first_sight_of_event("Ev1").unwrap());
            assert!(store.record_sighting("s", "1", "C1", "1.0").unwrap());
            assert!(!store.record_sighting("s", "1", "C1", "1.0").unwrap());
            assert!(store.record_sighting("s", "1", "C2", "2.0").unwrap());
            assert_eq!(
                store.sighting("s", "1", "C2").unwrap().as_deref(),
                Some("2.0")
            );
            assert_eq!(store.failure_count().unwrap(), 1);
        }
    }

    #[test]
    fn a_pointer_is_claimed_once_per_channel() {
        for store in crate::store::testing::stores() {
            assert!(!store.pointer_claimed("s", "1", "C1").unwrap());
            assert!(store.claim_pointer("s", "1", "C1").unwrap());
            assert!(!store.claim_pointer("s", "1", "C1").unwrap());
            assert!(store.pointer_claimed("s", "1", "C1").unwrap());
            assert!(store.claim_pointer("s", "1", "C2").unwrap());
        }
    }

    #[test]
    fn a_notification_names_its_failure_and_recent_failures_say_if_claimed() {
        for store in crate::store::testing::stores() {
            store.record_sighting("s", "1", "C1", "1.0").unwrap();
            store.record_sighting("s", "2", "C1", "2.0").unwrap();
            store.claim_session("s", "2", "C1", "2.0", "a").unwrap();
            let failure = |run: &str| Failure {
                schedule: "s".into(),
                run_id: run.into(),
            };
            assert_eq!(store.failure_at("C1", "2.0").unwrap(), Some(failure("2")));
            assert_eq!(store.failure_at("C2", "2.0").unwrap(), None);
            let hour_ago = Utc::now() - chrono::Duration::hours(1);
            assert_eq!(
                store.recent_failures(hour_ago).unwrap(),
                [
                    RecentFailure {
                        failure: failure("1"),
                        session_claimed: false
                    },
                    RecentFailure {
                        failure: failure("2"),
                        session_claimed: true
                    },
                ]
            );
            let later = Utc::now() + chrono::Duration::seconds(5);
            assert!(store.recent_failures(later).unwrap().is_empty());
        }
    }
}
