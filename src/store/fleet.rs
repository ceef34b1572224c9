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
        let (owner, until) = self.new_lease();
        self.with_conn("renewing this replica's session leases", |c| {
            c.execute(
                "UPDATE sessions SET lease_until = ?2
                 WHERE owner = ?1 AND status IN ('claimed', 'running')",
                params![owner, until],
            )
        })
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
        let (owner, _) = self.new_lease();
        self.with_conn("releasing this replica's session leases", |c| {
            c.execute(
                "UPDATE sessions SET lease_until = ?2
                 WHERE owner = ?1 AND status IN ('claimed', 'running')",
                params![owner, now() - chrono::Duration::seconds(1)],
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

    /// Books `channel`'s next write slot: `next` turns the stored theoretical
    /// arrival time (none before the first write) into the new one, which is
    /// stored and returned. Replicas booking the same channel at once are
    /// serialised by the transaction.
    pub fn book_write_slot(
        &self,
        channel: &str,
        mut next: impl FnMut(Option<DateTime<Utc>>) -> DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        self.with_tx("booking a Slack write slot", |tx| {
            let tat: Option<DateTime<Utc>> = tx
                .query_row(
                    "SELECT tat FROM write_slots WHERE channel = ?1",
                    params![channel],
                    |r| r.get(0),
                )
                .optional()?;
            let new = next(tat);
            tx.execute(
                "INSERT INTO write_slots (channel, tat) VALUES (?1, ?2)
                 ON CONFLICT (channel) DO UPDATE SET tat = excluded.tat",
                params![channel, new],
            )?;
            Ok(new)
        })
    }
}

fn lease_end(from: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    from + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30))
}
