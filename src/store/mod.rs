//! SQLite: the source of truth for what selfheal has seen and done.
//!
//! Slack messages are a view of this store. Every decision that must happen
//! exactly once — starting a session for a failure, posting a courtesy pointer
//! in a channel, handling a Slack event — is a row inserted under a uniqueness
//! constraint (or, for a pull request's end, a row's state changed only from
//! `open`), so redelivered events, the same failure in several channels,
//! reconnects and restarts cannot repeat work.
//!
//! The connection sits behind a `std::sync::Mutex`: every query is short and
//! none is held across an `.await`, so an async mutex would only add overhead.
//! Callers own no SQL; they call the typed methods of [`Store`], which return
//! rows as structs with named fields.
//!
//! # Layout
//! One file per concern, each holding its rows, its SQL and its `impl Store`
//! block; a second backend would give each concern a second body without
//! changing a caller.
//! - `failures.rs`: recognised failures, their sightings per channel, courtesy
//!   pointers and Slack event ids — the exactly-once claims — and which
//!   passing run resolved them.
//! - `sessions.rs`: healing sessions, from their claim to their outcome.
//! - `events.rs`: a session's event log (prompt, run log, milestones).
//! - `exchanges.rs`: what llm agents sent their model and got back.
//! - `retries.rs`: the re-runs selfheal asked schedulers for, under each
//!   run's retry budget.
//! - `controls.rs`: `/selfheal` overrides, the pause switch and the audit log.
//! - `prs.rs`: pull requests selfheal opened, watched until merged or closed.
//! - `schema.rs`: the migrations.
//!
//! Here: opening the database, and the one lock-query-context shape every
//! method goes through ([`Store::with_conn`], [`Store::with_tx`]).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, Transaction};

mod controls;
mod events;
mod exchanges;
mod failures;
mod prs;
mod retries;
mod schema;
mod sessions;

pub use controls::{AuditEntry, Pause, ScheduleOverride};
pub use events::EventRow;
pub use exchanges::{Exchange, ExchangeRow};
pub use failures::{RecentFailure, Resolved};
pub use prs::WatchedPr;
pub use retries::RetryClaim;
pub use sessions::{Claim, SessionRow};

// `Status` is a domain word (the session machine, the renderers and the
// prompt use it); the store keeps it as text and re-exports it for its rows.
pub use crate::domain::Status;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// Names this database in agent process tags (see [`Store::session_tag`]).
    name: Arc<str>,
}

impl Store {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the database directory {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("opening the database {}", path.display()))?;
        let name = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Self::init(conn, &name.display().to_string())
    }

    /// An in-memory database, for unit tests and benchmarks.
    pub fn in_memory() -> Result<Store> {
        let name = format!(
            "memory-{}-{}",
            std::process::id(),
            now().timestamp_nanos_opt().unwrap_or(0)
        );
        Self::init(
            Connection::open_in_memory().context("opening an in-memory database")?,
            &name,
        )
    }

    fn init(conn: Connection, name: &str) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&conn).context("migrating the database schema")?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            name: name.into(),
        })
    }

    /// A tag that names one session of this database, set in the environment
    /// of its agent and dbt runs: after a crash, the next start finds their
    /// leftover processes by it.
    pub fn session_tag(&self, session_id: i64) -> String {
        format!("{}#{session_id}", self.name)
    }

    /// Whether the database answers a trivial query (readiness).
    pub fn ping(&self) -> Result<()> {
        self.with_conn("asking the database a trivial query", |c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
        })
    }

    /// Runs one query (or one single-statement write) under the lock. `what`
    /// says what was being done, lower case, for the error's context.
    fn with_conn<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        f(&self.conn()).with_context(|| what.to_owned())
    }

    /// Runs `f` in a transaction under the lock and commits it; an error rolls
    /// everything back. Every claim that must happen exactly once goes here.
    fn with_tx<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn();
        let run = |conn: &mut Connection| -> rusqlite::Result<T> {
            let tx = conn.transaction()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        run(&mut conn).with_context(|| what.to_owned())
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding this lock can only come from a bug in a query
        // method; the connection itself is still usable, so recover it.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Every row `sql` returns, mapped to a typed row by `map`. Statements are
/// cached per connection, since the same few run on every event.
fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, map)?.collect();
    rows
}

fn now() -> DateTime<Utc> {
    Utc::now()
}
