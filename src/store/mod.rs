//! The store: the source of truth for what selfheal has seen and done —
//! SQLite for one process, PostgreSQL for replicas sharing it.
//!
//! Slack messages are a view of this store. Every decision that must happen
//! exactly once — starting a session for a failure, posting a courtesy pointer
//! in a channel, handling a Slack event — is a row inserted under a uniqueness
//! constraint (or, for a pull request's end, a row's state changed only from
//! `open`), so redelivered events, the same failure in several channels,
//! reconnects and restarts cannot repeat work.
//!
//! Store methods are synchronous: every query is short and none is held
//! across an `.await`. SQLite's connection sits behind a `std::sync::Mutex`;
//! PostgreSQL's pool lives on a runtime of its own (`pg.rs`). Callers own no
//! SQL; they call the typed methods of [`Store`], which return rows as
//! structs with named fields.
//!
//! # Layout
//! One file per concern, each holding its rows, its SQL and its `impl Store`
//! block, written once against `db.rs`'s interface, which both backends answer.
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
//! - `fleet.rs`: what replicas share: session leases, notices, write slots.
//! - `db.rs`: the query interface, values and rows of both backends.
//! - `pg.rs`: PostgreSQL: the pool, its runtime, TLS, its migrations, LISTEN.
//! - `schema.rs`: SQLite's migrations.
//!
//! Here: opening the database, and the one query-context shape every
//! method goes through ([`Store::with_conn`], [`Store::with_tx`]).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use tokio::sync::broadcast;

mod controls;
pub(crate) mod db;
mod events;
mod exchanges;
mod failures;
mod fleet;
mod pg;
mod prs;
mod retries;
mod schema;
mod sessions;

use db::{Db, DbResult};

pub use controls::{AuditEntry, Pause, ScheduleOverride};
pub use events::EventRow;
pub use exchanges::{Exchange, ExchangeRow};
pub use failures::{RecentFailure, Resolved};
pub use fleet::WriteSlot;
pub use prs::WatchedPr;
pub use retries::RetryClaim;
pub use sessions::{Claim, SessionRow};

// `Status` is a domain word (the session machine, the renderers and the
// prompt use it); the store keeps it as text and re-exports it for its rows.
pub use crate::domain::Status;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    /// Names this database in agent process tags (see [`Store::session_tag`]).
    name: Arc<str>,
    /// This process among the replicas sharing the database: the owner it
    /// writes on the sessions it claims.
    replica: Arc<str>,
    /// How long a session's claim holds without a heartbeat.
    lease: Duration,
    /// What replicas publish (see [`Store::publish`]).
    notices: broadcast::Sender<String>,
}

enum Backend {
    /// One process owns the file; every call takes the connection's lock.
    Sqlite(Mutex<Connection>),
    Postgres(pg::Pg),
}

/// The default lease of a claimed session (`SELFHEAL_LEASE_SECS`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

impl Store {
    /// Opens the store at `location`: a PostgreSQL URL (`postgres://…`), or
    /// the path of an SQLite file (created if needed, with its directory).
    /// Either way the schema is brought up to date.
    pub fn open(location: &Path) -> Result<Store> {
        let text = location.to_string_lossy();
        if is_postgres_url(&text) {
            let (notices, _) = broadcast::channel(1024);
            let pg = pg::Pg::connect(&text, notices.clone())?;
            return Ok(Store::with_backend(
                Backend::Postgres(pg),
                &pg::redact_url(&text),
                notices,
            ));
        }
        let path = location;
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
        let (notices, _) = broadcast::channel(1024);
        Ok(Store::with_backend(
            Backend::Sqlite(Mutex::new(conn)),
            name,
            notices,
        ))
    }

    fn with_backend(backend: Backend, name: &str, notices: broadcast::Sender<String>) -> Store {
        Store {
            backend: Arc::new(backend),
            name: name.into(),
            replica: replica_id().into(),
            lease: DEFAULT_LEASE,
            notices,
        }
    }

    /// The same store with another lease length.
    pub fn with_lease(mut self, lease: Duration) -> Store {
        self.lease = lease;
        self
    }

    /// Whether this is PostgreSQL, shared by replicas (else one process's SQLite).
    pub fn is_shared(&self) -> bool {
        matches!(*self.backend, Backend::Postgres(_))
    }

    /// This process's name among the replicas.
    pub fn replica(&self) -> &str {
        &self.replica
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
            c.query_row("SELECT 1", &[], |_| Ok(()))
        })
    }

    /// Runs one query (or one single-statement write). `what` says what was
    /// being done, lower case, for the error's context.
    fn with_conn<T>(&self, what: &str, f: impl FnOnce(&Db<'_>) -> DbResult<T>) -> Result<T> {
        let result = match &*self.backend {
            Backend::Sqlite(conn) => f(&Db::Sqlite(&lock(conn))),
            Backend::Postgres(pg) => pg.with_client(|c| f(&Db::Pg(c))),
        };
        result.with_context(|| what.to_owned())
    }

    /// Runs `f` in a transaction and commits it; an error rolls everything
    /// back. Every claim that must happen exactly once goes here. PostgreSQL
    /// may run `f` more than once (see [`pg::Pg::with_tx`]), so `f` only
    /// touches the database.
    fn with_tx<T>(&self, what: &str, mut f: impl FnMut(&Db<'_>) -> DbResult<T>) -> Result<T> {
        let result = match &*self.backend {
            Backend::Sqlite(conn) => {
                let mut conn = lock(conn);
                (|| -> DbResult<T> {
                    let tx = conn.transaction()?;
                    let out = f(&Db::Sqlite(&tx))?;
                    tx.commit()?;
                    Ok(out)
                })()
            }
            Backend::Postgres(pg) => pg.with_tx(|c| f(&Db::Pg(c))),
        };
        result.with_context(|| what.to_owned())
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding this lock can only come from a bug in a query
    // method; the connection itself is still usable, so recover it.
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether `SELFHEAL_DB` names a PostgreSQL database rather than a file.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// A name for this process among replicas: the host and pid, and the start
/// time, so a restarted pod with the same pid is still someone else.
fn replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "selfheal".into());
    format!(
        "{host}/{}/{}",
        std::process::id(),
        now().timestamp_micros() % 1_000_000_000
    )
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

/// The backends the store's tests run on.
#[cfg(test)]
pub(crate) mod testing {
    use super::Store;

    /// The test PostgreSQL server's URL: `SELFHEAL_TEST_PG_URL`, which
    /// `./scripts/test` sets after starting one; None when it is `off`.
    pub fn postgres_url() -> Option<String> {
        match std::env::var("SELFHEAL_TEST_PG_URL")
            .unwrap_or_default()
            .as_str()
        {
            "off" => None,
            "" => panic!(
                "the store's tests run on PostgreSQL too: run ./scripts/test, which starts one, \
                 or set SELFHEAL_TEST_PG_URL (to `off` for SQLite alone)"
            ),
            url => Some(url.to_owned()),
        }
    }

    /// One empty store per backend: SQLite in memory, and PostgreSQL (a
    /// schema of its own) unless `SELFHEAL_TEST_PG_URL=off`.
    pub fn stores() -> Vec<Store> {
        let mut stores = vec![Store::in_memory().unwrap()];
        if let Some(url) = postgres_url() {
            stores.push(open(&fresh_schema(&url)));
        }
        stores
    }

    /// Two handles on one fresh PostgreSQL schema, as two replicas have.
    pub fn replicas() -> Option<(Store, Store)> {
        let url = fresh_schema(&postgres_url()?);
        Some((open(&url), open(&url)))
    }

    /// Another empty store on `like`'s backend.
    pub fn another(like: &Store) -> Store {
        match postgres_url().filter(|_| like.is_shared()) {
            Some(url) => open(&fresh_schema(&url)),
            None => Store::in_memory().unwrap(),
        }
    }

    fn open(url: &str) -> Store {
        Store::open(std::path::Path::new(url)).unwrap()
    }

    /// `url` with a new, empty schema first on its search path.
    pub fn fresh_schema(url: &str) -> String {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let schema = format!(
            "t_{}_{}_{}",
            std::process::id(),
            super::now().timestamp_micros(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let create = std::process::Command::new("psql")
            .args([url, "-qc", &format!("CREATE SCHEMA {schema}")])
            .status();
        assert!(
            create.is_ok_and(|s| s.success()),
            "creating schema {schema} with psql"
        );
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-c%20search_path%3D{schema}")
    }
}
