//! What replicas sharing one database need of it: leases on the sessions
//! each runs, the notices they pass each other, and each channel's booked
//! write slots.
//!
//! A session belongs to the replica that claimed it for as long as that
//! replica renews its lease (a heartbeat). When the lease runs out — the
//! replica was killed, its host lost — any other replica takes the session
//! over, once: the take-over is one `UPDATE` guarded by the expired lease.
//! SQLite is one process's file, so there a start takes over every session
//! another process left, at once.

use std::time::Duration;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use super::db::{all, params, OptionalExtension};
use super::{now, Backend, Store};

/// A channel's booked write slots: GCRA's theoretical arrival time, when the
/// write that opened the current spell was booked to go, and when the latest
/// answer booked goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteSlot {
    pub tat: DateTime<Utc>,
    pub opened: Option<DateTime<Utc>>,
    pub answered: Option<DateTime<Utc>>,
}

/// PostgreSQL's NOTIFY payloads stop at 8000 bytes.
const MAX_NOTICE_BYTES: usize = 7900;

impl Store {
    /// The owner and lease end a claim written now carries.
    pub(super) fn new_lease(&self) -> (&str, DateTime<Utc>) {
        (&self.replica, lease_end(now(), self.lease))
    }

    /// How long a claim holds without a heartbeat.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Extends the lease of every unfinished session this replica owns (the
    /// heartbeat); how many there were.
    pub fn renew_leases(&self) -> Result<usize> {
        let (_, until) = self.new_lease();
        self.set_own_leases("renewing this replica's session leases", until)
    }

    /// Takes over the unfinished sessions whose owner is gone — on
    /// PostgreSQL, those whose lease ran out; on SQLite, every one another
    /// process left — and returns their ids, oldest first. Exactly one
    /// replica gets each.
    pub fn take_over_sessions(&self) -> Result<Vec<i64>> {
        let (owner, until) = self.new_lease();
        let mut ids = self.with_conn("taking over sessions whose replica is gone", |c| {
            if self.is_shared() {
                all(
                    c,
                    "UPDATE sessions SET owner = ?1, lease_until = ?2
                     WHERE status IN ('claimed', 'running') AND (lease_until IS NULL OR lease_until < ?3)
                     RETURNING id",
                    params![owner, until, now()],
                    |r| r.get(0),
                )
            } else {
                all(
                    c,
                    "UPDATE sessions SET owner = ?1, lease_until = ?2
                     WHERE status IN ('claimed', 'running') AND (owner IS NULL OR owner != ?1)
                     RETURNING id",
                    params![owner, until],
                    |r| r.get(0),
                )
            }
        })?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// Lets other replicas take this one's unfinished sessions over now (a
    /// graceful stop); how many there were.
    pub fn release_leases(&self) -> Result<usize> {
        let ended = now() - chrono::Duration::seconds(1);
        self.set_own_leases("releasing this replica's session leases", ended)
    }

    /// Sets the lease end of every unfinished session this replica owns.
    fn set_own_leases(&self, what: &str, until: DateTime<Utc>) -> Result<usize> {
        self.with_conn(what, |c| {
            c.execute(
                "UPDATE sessions SET lease_until = ?2
                 WHERE owner = ?1 AND status IN ('claimed', 'running')",
                params![self.replica(), until],
            )
        })
    }

    /// The replica a session belongs to, if it is known.
    pub fn session_owner(&self, id: i64) -> Result<Option<String>> {
        self.with_conn("looking up the owner of a session", |c| {
            c.query_row(
                "SELECT owner FROM sessions WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
        })
    }

    /// Tells every process sharing the database (this one included)
    /// `payload`: PostgreSQL's NOTIFY, or this process's own channel on SQLite.
    pub fn publish(&self, payload: &str) -> Result<()> {
        if payload.len() > MAX_NOTICE_BYTES {
            bail!(
                "a notice for other replicas is {} bytes, more than {MAX_NOTICE_BYTES}",
                payload.len()
            );
        }
        match &*self.backend {
            Backend::Sqlite(_) => {
                let _ = self.notices.send(payload.to_owned());
                Ok(())
            }
            Backend::Postgres(pg) => Ok(pg.publish(payload)?),
        }
    }

    /// What any process publishes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.notices.subscribe()
    }

    /// Books `channel`'s next write slot: `next` turns the stored slot state
    /// (none before the first write) into the new one, which is stored and
    /// returned. Replicas booking the same channel at once are serialised by
    /// the transaction.
    pub fn book_write_slot(
        &self,
        channel: &str,
        mut next: impl FnMut(Option<WriteSlot>) -> WriteSlot,
    ) -> Result<WriteSlot> {
        self.with_tx("booking a Slack write slot", |tx| {
            let slot: Option<WriteSlot> = tx
                .query_row(
                    "SELECT tat, opened, answered FROM write_slots WHERE channel = ?1",
                    params![channel],
                    |r| {
                        Ok(WriteSlot {
                            tat: r.get(0)?,
                            opened: r.get(1)?,
                            answered: r.get(2)?,
                        })
                    },
                )
                .optional()?;
            let new = next(slot);
            if slot == Some(new) {
                // Nothing booked (a routine write told to wait): no write,
                // so replicas asking at once do not conflict.
                return Ok(new);
            }
            tx.execute(
                "INSERT INTO write_slots (channel, tat, opened, answered) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (channel) DO UPDATE
                 SET tat = excluded.tat, opened = excluded.opened, answered = excluded.answered",
                params![channel, new.tat, new.opened, new.answered],
            )?;
            Ok(new)
        })
    }
}

fn lease_end(from: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    from + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::WriteSlot;
    use crate::store::testing::{another, replicas, stores};
    use crate::store::Claim;

    fn claim(store: &crate::store::Store, run: &str) -> i64 {
        match store.claim_session("s", run, "C", "1.0", "a").unwrap() {
            Claim::New(id) | Claim::Exists(id) => id,
        }
    }

    #[test]
    fn a_session_is_taken_over_once_and_only_after_its_lease_runs_out() {
        let Some((a, b)) = replicas() else { return };
        let a = a.with_lease(Duration::from_millis(300));
        let id = claim(&a, "1");
        assert_eq!(a.session_owner(id).unwrap().as_deref(), Some(a.replica()));

        // While a renews its lease, b takes nothing.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(a.renew_leases().unwrap(), 1);
        std::thread::sleep(Duration::from_millis(200));
        assert!(b.take_over_sessions().unwrap().is_empty());

        // a stops renewing: once the lease is out, b takes it, once.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(b.take_over_sessions().unwrap(), [id]);
        assert!(b.take_over_sessions().unwrap().is_empty());
        assert_eq!(b.session_owner(id).unwrap().as_deref(), Some(b.replica()));
        // An ended session is nobody's to take.
        b.finish(id, crate::store::Status::Interrupted, None, None)
            .unwrap();
        assert_eq!(b.release_leases().unwrap(), 0);
    }

    #[test]
    fn a_released_lease_is_taken_over_at_once() {
        let Some((a, b)) = replicas() else { return };
        let id = claim(&a, "1");
        assert!(b.take_over_sessions().unwrap().is_empty());
        assert_eq!(a.release_leases().unwrap(), 1);
        assert_eq!(b.take_over_sessions().unwrap(), [id]);
    }

    #[test]
    fn a_start_on_sqlite_takes_over_what_another_process_left() {
        for store in stores().into_iter().filter(|s| !s.is_shared()) {
            let id = claim(&store, "1");
            // The process that claimed it does not take it from itself…
            assert!(store.take_over_sessions().unwrap().is_empty());
            // …the next one on the same file does, whatever its lease says.
            let mut next = store.clone();
            next.replica = "next-process".into();
            assert_eq!(next.take_over_sessions().unwrap(), [id]);
        }
    }

    #[test]
    fn notices_reach_every_replica_of_the_schema_and_no_one_else() {
        let Some((a, b)) = replicas() else { return };
        let elsewhere = another(&a);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (mut to_a, mut to_b, mut to_elsewhere) =
            (a.subscribe(), b.subscribe(), elsewhere.subscribe());
        // LISTEN is asked for when a store opens; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        a.publish(r#"{"session":1}"#).unwrap();
        runtime.block_on(async {
            let wait = Duration::from_secs(5);
            for rx in [&mut to_a, &mut to_b] {
                let got = tokio::time::timeout(wait, rx.recv()).await;
                assert_eq!(got.unwrap().unwrap(), r#"{"session":1}"#);
            }
            let heard = tokio::time::timeout(Duration::from_millis(500), to_elsewhere.recv()).await;
            assert!(heard.is_err(), "another schema heard it: {heard:?}");
        });
        assert!(a.publish(&"x".repeat(8000)).is_err(), "too long for NOTIFY");
    }

    #[test]
    fn write_slots_are_booked_one_after_the_other_per_channel() {
        for store in stores() {
            // PostgreSQL keeps microseconds.
            let t0 = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6);
            let step = chrono::Duration::seconds(1);
            let book = |channel: &str| {
                store
                    .book_write_slot(channel, |slot| WriteSlot {
                        tat: slot.map_or(t0, |s| s.tat + step),
                        opened: Some(t0),
                        answered: slot.map(|s| s.tat),
                    })
                    .unwrap()
            };
            assert_eq!(book("C1").tat, t0);
            assert_eq!(book("C1").tat, t0 + step);
            assert_eq!(book("C2").tat, t0);
            let third = book("C1");
            assert_eq!(third.tat, t0 + step + step);
            assert_eq!(third.answered, Some(t0 + step), "kept and read back");
        }
    }
}
