//! SQLite: the source of truth for what selfheal has seen and done.
//!
//! Slack messages are a view of this store. Every decision that must happen
//! exactly once — starting a session for a failure, posting a courtesy pointer
//! in a channel, handling a Slack event — is a row inserted under a uniqueness
//! constraint, so redelivered events, the same failure in several channels,
//! reconnects and restarts cannot repeat work.
//!
//! The connection sits behind a `std::sync::Mutex`: every query is short and
//! none is held across an `.await`, so an async mutex would only add overhead.
//! Callers own no SQL; they call the typed methods here.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

mod schema;

// `Status` is a domain word (the session machine, the renderers and the
// prompt use it); the store keeps it as text and re-exports it for its rows.
pub use crate::domain::Status;

/// A stored healing session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: i64,
    pub schedule: String,
    pub run_id: String,
    /// The channel id of the healing thread.
    pub channel: String,
    /// The ts of the message the session is threaded under.
    pub thread_ts: String,
    /// The ts of the progress message edited in place, once posted.
    pub progress_ts: Option<String>,
    pub agent: String,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub pr_url: Option<String>,
    pub summary: Option<String>,
    /// The error the failure showed, for prior-attempts context.
    pub error: Option<String>,
    /// The failure's error signature (failing node + error without run-specific noise).
    pub signature: Option<String>,
    /// Set on a session that re-runs one a restart interrupted.
    pub rerun_of: Option<i64>,
}

/// The result of trying to claim a failure for a new session.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This caller owns the new session and must start it.
    New(i64),
    /// A session for this failure already exists.
    Exists(i64),
}

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

/// One request an llm agent sent and what came back (both redacted).
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// The agent's turn: replies received before this request.
    pub turn: u32,
    /// The request body, with only the messages new since the previous
    /// exchange (the earlier ones are in earlier rows).
    pub request: String,
    /// The HTTP status (200, or the final refusal); 0 when no answer came
    /// (the wall clock ran out, or every retry failed).
    pub status: u16,
    /// The response body, or the server's error message.
    pub response: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// USD, when the agent has prices.
    pub cost_usd: Option<f64>,
}

/// A stored [`Exchange`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeRow {
    pub at: DateTime<Utc>,
    pub exchange: Exchange,
}

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

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding this lock can only come from a bug in a query
        // method; the connection itself is still usable, so recover it.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A tag that names one session of this database, set in the environment
    /// of its agent and dbt runs: after a crash, the next start finds their
    /// leftover processes by it.
    pub fn session_tag(&self, session_id: i64) -> String {
        format!("{}#{session_id}", self.name)
    }

    /// Records a Slack event id; false when it was seen before (a redelivery).
    pub fn first_sight_of_event(&self, event_id: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "INSERT OR IGNORE INTO seen_events(event_id, seen_at) VALUES (?1, ?2)",
                params![event_id, now()],
            )
            .context("recording a Slack event id")?;
        Ok(n == 1)
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
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let failure_id = ensure_failure(&tx, schedule, run_id)?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO sightings(failure_id, channel, ts, seen_at) VALUES (?1, ?2, ?3, ?4)",
            params![failure_id, channel, ts, now()],
        )?;
        tx.commit().context("recording a failure sighting")?;
        Ok(n == 1)
    }

    /// The ts of the failure's notification in `channel`, if seen there.
    pub fn sighting(&self, schedule: &str, run_id: &str, channel: &str) -> Result<Option<String>> {
        self.conn()
            .query_row(
                "SELECT s.ts FROM sightings s JOIN failures f ON f.id = s.failure_id
                 WHERE f.schedule = ?1 AND f.run_id = ?2 AND s.channel = ?3",
                params![schedule, run_id, channel],
                |r| r.get(0),
            )
            .optional()
            .context("looking up a failure sighting")
    }

    /// Claims the failure for a session in `channel`, threaded under `thread_ts`.
    /// Exactly one caller ever gets [`Claim::New`] for a failure.
    pub fn claim_session(
        &self,
        schedule: &str,
        run_id: &str,
        channel: &str,
        thread_ts: &str,
        agent: &str,
    ) -> Result<Claim> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let failure_id = ensure_failure(&tx, schedule, run_id)?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM sessions WHERE failure_id = ?1 ORDER BY id LIMIT 1",
                params![failure_id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            return Ok(Claim::Exists(id));
        }
        tx.execute(
            "INSERT INTO sessions(failure_id, attempt, schedule, run_id, channel, thread_ts, agent, status, created_at)
             VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, 'claimed', ?7)",
            params![failure_id, schedule, run_id, channel, thread_ts, agent, now()],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit().context("claiming a failure for a session")?;
        Ok(Claim::New(id))
    }

    /// Claims a follow-up of `previous` (same failure and thread, next attempt)
    /// unless a session for that failure is still unfinished.
    pub fn claim_followup(&self, previous: &SessionRow, agent: &str) -> Result<Option<i64>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let failure_id: i64 = tx.query_row(
            "SELECT failure_id FROM sessions WHERE id = ?1",
            params![previous.id],
            |r| r.get(0),
        )?;
        let busy: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM sessions WHERE failure_id = ?1 AND status IN ('claimed', 'running'))",
            params![failure_id],
            |r| r.get(0),
        )?;
        if busy {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO sessions(failure_id, attempt, schedule, run_id, channel, thread_ts, agent, status, created_at, pr_url, signature)
             SELECT failure_id, (SELECT MAX(attempt) + 1 FROM sessions WHERE failure_id = ?1), schedule, run_id,
                    channel, thread_ts, ?3, 'claimed', ?4, pr_url, signature
             FROM sessions WHERE id = ?2",
            params![failure_id, previous.id, agent, now()],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit().context("claiming a follow-up session")?;
        Ok(Some(id))
    }

    /// The session for a failure, if one was claimed.
    pub fn session_for_failure(&self, schedule: &str, run_id: &str) -> Result<Option<SessionRow>> {
        let conn = self.conn();
        let sql =
            format!("{SESSION_SELECT} WHERE schedule = ?1 AND run_id = ?2 ORDER BY id LIMIT 1");
        conn.query_row(&sql, params![schedule, run_id], session_from_row)
            .optional()
            .context("looking up the session of a failure")
    }

    pub fn session(&self, id: i64) -> Result<SessionRow> {
        let conn = self.conn();
        let sql = format!("{SESSION_SELECT} WHERE id = ?1");
        conn.query_row(&sql, params![id], session_from_row)
            .with_context(|| format!("loading session {id}"))
    }

    /// Marks a claimed session as running.
    pub fn mark_running(&self, id: i64) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE sessions SET status = 'running', started_at = ?2 WHERE id = ?1 AND status = 'claimed'",
                params![id, now()],
            )
            .context("marking a session running")?;
        Ok(())
    }

    pub fn set_progress_ts(&self, id: i64, ts: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE sessions SET progress_ts = ?2 WHERE id = ?1",
                params![id, ts],
            )
            .context("storing the progress message ts")?;
        Ok(())
    }

    /// Sets the thread of a session that had to start top-level.
    pub fn set_thread_ts(&self, id: i64, ts: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE sessions SET thread_ts = ?2 WHERE id = ?1",
                params![id, ts],
            )
            .context("storing the session thread")?;
        Ok(())
    }

    /// Records the failure's error (first line) and signature once the run log is read.
    pub fn set_error(&self, id: i64, error: &str, signature: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE sessions SET error = ?2, signature = ?3 WHERE id = ?1",
                params![id, error, signature],
            )
            .context("storing the session's error signature")?;
        Ok(())
    }

    /// The newest other session with the same error signature that produced a
    /// pull request (its own or one it linked as a duplicate).
    pub fn pr_for_signature(&self, signature: &str, except: i64) -> Result<Option<SessionRow>> {
        let conn = self.conn();
        let sql = format!(
            "{SESSION_SELECT} WHERE signature = ?1 AND id != ?2 AND pr_url IS NOT NULL
             AND status IN ('fixed', 'duplicate') ORDER BY id DESC LIMIT 1"
        );
        conn.query_row(&sql, params![signature, except], session_from_row)
            .optional()
            .context("looking up sessions with the same error")
    }

    pub fn set_pr_url(&self, id: i64, url: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE sessions SET pr_url = ?2 WHERE id = ?1",
                params![id, url],
            )
            .context("storing the pull request url")?;
        Ok(())
    }

    /// Ends a session. A session that already ended keeps its first outcome,
    /// so a late shutdown cannot overwrite a real result.
    pub fn finish(
        &self,
        id: i64,
        status: Status,
        summary: Option<&str>,
        pr_url: Option<&str>,
    ) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE sessions SET status = ?2, summary = COALESCE(?3, summary),
                        pr_url = COALESCE(?4, pr_url), ended_at = ?5
                 WHERE id = ?1 AND status IN ('claimed', 'running')",
                params![id, status.as_str(), summary, pr_url, now()],
            )
            .context("finishing a session")?;
        Ok(n == 1)
    }

    /// Interrupted sessions (by a crash or a stop) that ended since `since`,
    /// have a thread, are not re-runs themselves and have not been re-run: the
    /// ones a start may run again.
    pub fn rerunnable(&self, since: DateTime<Utc>) -> Result<Vec<SessionRow>> {
        let conn = self.conn();
        let sql = format!(
            "{SESSION_SELECT} s WHERE status = 'interrupted' AND rerun_of IS NULL AND thread_ts != ''
               AND ended_at >= ?1
               AND NOT EXISTS (SELECT 1 FROM sessions r WHERE r.rerun_of = s.id)
             ORDER BY id"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt
            .query_map(params![since], session_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .context("loading interrupted sessions")?;
        Ok(rows)
    }

    /// Claims the session that runs the interrupted session `id` again; None
    /// when it was re-run already (exactly one caller ever gets Some).
    pub fn claim_rerun(&self, id: i64) -> Result<Option<i64>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "INSERT INTO sessions(failure_id, attempt, schedule, run_id, channel, thread_ts, agent,
                                  status, created_at, signature, error, rerun_of)
             SELECT failure_id, (SELECT MAX(attempt) + 1 FROM sessions s2 WHERE s2.failure_id = s.failure_id),
                    schedule, run_id, channel, thread_ts, agent, 'claimed', ?2, signature, error, id
             FROM sessions s
             WHERE id = ?1 AND status = 'interrupted' AND rerun_of IS NULL
               AND NOT EXISTS (SELECT 1 FROM sessions r WHERE r.rerun_of = ?1)",
            params![id, now()],
        )?;
        let claimed = (n == 1).then(|| tx.last_insert_rowid());
        tx.commit().context("claiming the re-run of a session")?;
        Ok(claimed)
    }

    /// Appends a progress event to a session's log.
    pub fn add_event(&self, session_id: i64, kind: &str, text: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO session_events(session_id, at, kind, text) VALUES (?1, ?2, ?3, ?4)",
                params![session_id, now(), kind, text],
            )
            .context("recording a session event")?;
        Ok(())
    }

    /// A session's events in order: (kind, text).
    pub fn events(&self, session_id: i64) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT kind, text FROM session_events WHERE session_id = ?1 ORDER BY id")?;
        let rows = stmt
            .query_map(params![session_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .context("loading session events")?;
        Ok(rows)
    }

    /// The schedule's most recent sessions, newest first, excluding `except`.
    pub fn prior_sessions(
        &self,
        schedule: &str,
        except: i64,
        limit: usize,
    ) -> Result<Vec<SessionRow>> {
        let conn = self.conn();
        let sql = format!(
            "{SESSION_SELECT} WHERE schedule = ?1 AND id != ?2 ORDER BY created_at DESC, id DESC LIMIT ?3"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt
            .query_map(params![schedule, except, limit as i64], session_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .context("loading prior sessions")?;
        Ok(rows)
    }

    /// Sessions that had not ended: after a crash or a stop, they were interrupted.
    pub fn unfinished_sessions(&self) -> Result<Vec<SessionRow>> {
        let conn = self.conn();
        let sql = format!("{SESSION_SELECT} WHERE status IN ('claimed', 'running') ORDER BY id");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt
            .query_map([], session_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .context("loading unfinished sessions")?;
        Ok(rows)
    }

    /// Claims the courtesy pointer for a failure in a channel; true for the one
    /// caller that must post it.
    pub fn claim_pointer(&self, schedule: &str, run_id: &str, channel: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let failure_id = ensure_failure(&tx, schedule, run_id)?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO pointers(failure_id, channel, claimed_at) VALUES (?1, ?2, ?3)",
            params![failure_id, channel, now()],
        )?;
        tx.commit().context("claiming a courtesy pointer")?;
        Ok(n == 1)
    }

    /// The newest session threaded under `thread_ts` in `channel`.
    pub fn session_in_thread(&self, channel: &str, thread_ts: &str) -> Result<Option<SessionRow>> {
        let conn = self.conn();
        let sql = format!(
            "{SESSION_SELECT} WHERE channel = ?1 AND thread_ts = ?2 ORDER BY id DESC LIMIT 1"
        );
        conn.query_row(&sql, params![channel, thread_ts], session_from_row)
            .optional()
            .context("looking up the session of a thread")
    }

    /// Every session of a thread, oldest first.
    pub fn sessions_in_thread(&self, channel: &str, thread_ts: &str) -> Result<Vec<SessionRow>> {
        let conn = self.conn();
        let sql = format!("{SESSION_SELECT} WHERE channel = ?1 AND thread_ts = ?2 ORDER BY id");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt
            .query_map(params![channel, thread_ts], session_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .context("loading the sessions of a thread")?;
        Ok(rows)
    }

    /// The failure whose notification is the message `ts` in `channel`.
    pub fn failure_at(&self, channel: &str, ts: &str) -> Result<Option<(String, String)>> {
        self.conn()
            .query_row(
                "SELECT f.schedule, f.run_id FROM sightings s JOIN failures f ON f.id = s.failure_id
                 WHERE s.channel = ?1 AND s.ts = ?2",
                params![channel, ts],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .context("looking up the failure of a notification")
    }

    /// Failures first seen since `since`: (schedule, run id, whether a session
    /// was claimed for it). Used at start-up to finish decisions a crash cut short.
    pub fn recent_failures(&self, since: DateTime<Utc>) -> Result<Vec<(String, String, bool)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT f.schedule, f.run_id, EXISTS(SELECT 1 FROM sessions s WHERE s.failure_id = f.id)
             FROM failures f WHERE f.first_seen_at >= ?1 ORDER BY f.first_seen_at, f.id",
        )?;
        let rows = stmt
            .query_map(params![since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .context("loading recent failures")?;
        Ok(rows)
    }

    /// Whether the courtesy pointer for a failure in a channel was claimed.
    pub fn pointer_claimed(&self, schedule: &str, run_id: &str, channel: &str) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM pointers p JOIN failures f ON f.id = p.failure_id
                 WHERE f.schedule = ?1 AND f.run_id = ?2 AND p.channel = ?3)",
                params![schedule, run_id, channel],
                |r| r.get(0),
            )
            .context("looking up a courtesy pointer")
    }

    /// All sessions, newest first (for tests and `history`).
    pub fn sessions(&self, limit: usize) -> Result<Vec<SessionRow>> {
        let conn = self.conn();
        let sql = format!("{SESSION_SELECT} ORDER BY id DESC LIMIT ?1");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt
            .query_map(params![limit as i64], session_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .context("loading sessions")?;
        Ok(rows)
    }

    /// How many failures were recorded (for tests and status).
    pub fn failure_count(&self) -> Result<i64> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM failures", [], |r| r.get(0))
            .context("counting failures")
    }

    /// The `/selfheal` override of a schedule, if one is set.
    pub fn schedule_override(&self, schedule: &str) -> Result<Option<ScheduleOverride>> {
        self.conn()
            .query_row(
                &format!("{OVERRIDE_SELECT} WHERE schedule = ?1"),
                params![schedule],
                override_from_row,
            )
            .optional()
            .context("loading a schedule override")
    }

    /// Sets a schedule's override and records the change in the audit log, atomically.
    pub fn set_schedule_override(
        &self,
        o: &ScheduleOverride,
        action: &str,
        before: &str,
        after: &str,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO schedule_overrides(schedule, enabled, slack_channel, agent_name, changed_by, changed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(schedule) DO UPDATE SET enabled = excluded.enabled,
                 slack_channel = excluded.slack_channel, agent_name = excluded.agent_name,
                 changed_by = excluded.changed_by, changed_at = excluded.changed_at",
            params![o.schedule, o.enabled, o.slack_channel, o.agent_name, o.changed_by, o.changed_at],
        )?;
        audit(&tx, &o.changed_by, action, &o.schedule, before, after)?;
        tx.commit().context("storing a schedule override")?;
        Ok(())
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
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM schedule_overrides WHERE schedule = ?1",
            params![schedule],
        )?;
        if n == 1 {
            audit(&tx, by, "reset", schedule, before, after)?;
        }
        tx.commit().context("clearing a schedule override")?;
        Ok(n == 1)
    }

    /// The workspace-wide pause, while it is on.
    pub fn pause(&self) -> Result<Option<Pause>> {
        self.conn()
            .query_row(
                "SELECT paused_by, paused_at FROM pause WHERE id = 1",
                [],
                |r| {
                    Ok(Pause {
                        paused_by: r.get(0)?,
                        paused_at: r.get(1)?,
                    })
                },
            )
            .optional()
            .context("loading the pause switch")
    }

    /// Turns the workspace-wide pause on or off and audits the change; false
    /// when it was already in that state (nothing is written then).
    pub fn set_paused(&self, paused: bool, by: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = if paused {
            tx.execute(
                "INSERT OR IGNORE INTO pause(id, paused_by, paused_at) VALUES (1, ?1, ?2)",
                params![by, now()],
            )?
        } else {
            tx.execute("DELETE FROM pause WHERE id = 1", [])?
        };
        if n == 1 {
            let (action, before, after) = if paused {
                ("pause", r#"{"paused":false}"#, r#"{"paused":true}"#)
            } else {
                ("resume", r#"{"paused":true}"#, r#"{"paused":false}"#)
            };
            audit(&tx, by, action, "workspace", before, after)?;
        }
        tx.commit().context("switching the pause")?;
        Ok(n == 1)
    }

    /// The newest audit entries first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, at, user_id, action, target, before, after FROM audit_log ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    user_id: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    before: r.get(5)?,
                    after: r.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
            .context("loading the audit log")?;
        Ok(rows)
    }

    /// The most recent sessions, of one schedule or all, newest first.
    pub fn recent_sessions(&self, schedule: Option<&str>, limit: usize) -> Result<Vec<SessionRow>> {
        let conn = self.conn();
        // Two statements, not `?1 IS NULL OR schedule = ?1`: with the OR, SQLite
        // walks every session newest first instead of using the schedule's index.
        let sql = match schedule {
            Some(_) => format!("{SESSION_SELECT} WHERE schedule = ?1 ORDER BY id DESC LIMIT ?2"),
            None => format!("{SESSION_SELECT} WHERE ?1 IS NULL ORDER BY id DESC LIMIT ?2"),
        };
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(params![schedule, limit as i64], session_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .context("loading recent sessions")?;
        Ok(rows)
    }

    /// Stores one request of an llm agent and its answer.
    pub fn add_exchange(&self, session_id: i64, e: &Exchange) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO llm_exchanges(session_id, at, turn, request, status, response,
                                           prompt_tokens, completion_tokens, cost_usd)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    session_id,
                    now(),
                    e.turn,
                    e.request,
                    e.status,
                    e.response,
                    e.prompt_tokens.map(|n| n as i64),
                    e.completion_tokens.map(|n| n as i64),
                    e.cost_usd
                ],
            )
            .context("recording a model exchange")?;
        Ok(())
    }

    /// A session's model exchanges, in order.
    pub fn exchanges(&self, session_id: i64) -> Result<Vec<ExchangeRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at, turn, request, status, response, prompt_tokens, completion_tokens, cost_usd
             FROM llm_exchanges WHERE session_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![session_id], |r| {
                Ok(ExchangeRow {
                    at: r.get(0)?,
                    exchange: Exchange {
                        turn: r.get(1)?,
                        request: r.get(2)?,
                        status: r.get(3)?,
                        response: r.get(4)?,
                        prompt_tokens: r.get::<_, Option<i64>>(5)?.map(|n| n as u64),
                        completion_tokens: r.get::<_, Option<i64>>(6)?.map(|n| n as u64),
                        cost_usd: r.get(7)?,
                    },
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
            .context("loading model exchanges")?;
        Ok(rows)
    }

    /// What a session's model calls cost in USD; None when none was priced.
    pub fn session_cost(&self, session_id: i64) -> Result<Option<f64>> {
        self.conn()
            .query_row(
                "SELECT SUM(cost_usd) FROM llm_exchanges WHERE session_id = ?1",
                params![session_id],
                |r| r.get(0),
            )
            .context("summing a session's cost")
    }
}

const OVERRIDE_SELECT: &str =
    "SELECT schedule, enabled, slack_channel, agent_name, changed_by, changed_at FROM schedule_overrides";

fn override_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ScheduleOverride> {
    Ok(ScheduleOverride {
        schedule: r.get(0)?,
        enabled: r.get(1)?,
        slack_channel: r.get(2)?,
        agent_name: r.get(3)?,
        changed_by: r.get(4)?,
        changed_at: r.get(5)?,
    })
}

fn audit(
    tx: &rusqlite::Transaction<'_>,
    user_id: &str,
    action: &str,
    target: &str,
    before: &str,
    after: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO audit_log(at, user_id, action, target, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![now(), user_id, action, target, before, after],
    )
    .context("writing the audit log")?;
    Ok(())
}

const SESSION_SELECT: &str =
    "SELECT id, schedule, run_id, channel, thread_ts, progress_ts, agent, status,
        created_at, ended_at, pr_url, summary, error, signature, rerun_of FROM sessions";

fn session_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    let status: String = r.get(7)?;
    Ok(SessionRow {
        id: r.get(0)?,
        schedule: r.get(1)?,
        run_id: r.get(2)?,
        channel: r.get(3)?,
        thread_ts: r.get(4)?,
        progress_ts: r.get(5)?,
        agent: r.get(6)?,
        // An unknown status can only come from a newer selfheal; treat it as ended.
        status: Status::parse(&status).unwrap_or(Status::Interrupted),
        created_at: r.get(8)?,
        ended_at: r.get(9)?,
        pr_url: r.get(10)?,
        summary: r.get(11)?,
        error: r.get(12)?,
        signature: r.get(13)?,
        rerun_of: r.get(14)?,
    })
}

fn ensure_failure(tx: &rusqlite::Transaction<'_>, schedule: &str, run_id: &str) -> Result<i64> {
    tx.execute(
        "INSERT OR IGNORE INTO failures(schedule, run_id, first_seen_at) VALUES (?1, ?2, ?3)",
        params![schedule, run_id, now()],
    )?;
    let id = tx.query_row(
        "SELECT id FROM failures WHERE schedule = ?1 AND run_id = ?2",
        params![schedule, run_id],
        |r| r.get(0),
    )?;
    Ok(id)
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_claimed_exactly_once() {
        let store = Store::in_memory().unwrap();
        let first = store
            .claim_session("hourly", "1", "C1", "1.1", "agent")
            .unwrap();
        let second = store
            .claim_session("hourly", "1", "C2", "2.2", "agent")
            .unwrap();
        let Claim::New(id) = first else {
            panic!("first claim must be new")
        };
        assert_eq!(second, Claim::Exists(id));
        assert!(matches!(
            store
                .claim_session("hourly", "2", "C1", "3.3", "agent")
                .unwrap(),
            Claim::New(_)
        ));
    }

    #[test]
    fn an_interrupted_session_is_rerun_once_and_a_rerun_never() {
        let store = Store::in_memory().unwrap();
        let hour_ago = Utc::now() - chrono::Duration::hours(1);
        let Claim::New(id) = store.claim_session("s", "1", "C", "1.0", "a").unwrap() else {
            panic!("new claim")
        };
        store.mark_running(id).unwrap();
        assert!(
            store.rerunnable(hour_ago).unwrap().is_empty(),
            "still running"
        );

        store
            .finish(id, Status::Interrupted, Some("restarted"), None)
            .unwrap();
        let found: Vec<i64> = store
            .rerunnable(hour_ago)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(found, vec![id]);
        let rerun = store.claim_rerun(id).unwrap().expect("re-run claimed");
        let row = store.session(rerun).unwrap();
        assert_eq!(
            (row.status, row.rerun_of, row.thread_ts.as_str()),
            (Status::Claimed, Some(id), "1.0")
        );
        // Claimed once: neither found nor claimed again.
        assert!(store.rerunnable(hour_ago).unwrap().is_empty());
        assert_eq!(store.claim_rerun(id).unwrap(), None);
        // The re-run, interrupted in turn, is not re-run again.
        store
            .finish(rerun, Status::Interrupted, Some("restarted"), None)
            .unwrap();
        assert!(store.rerunnable(hour_ago).unwrap().is_empty());
        assert_eq!(store.claim_rerun(rerun).unwrap(), None);
        assert_eq!(store.sessions(10).unwrap().len(), 2);
    }

    #[test]
    fn only_recent_interrupted_sessions_with_a_thread_are_rerunnable() {
        let store = Store::in_memory().unwrap();
        let Claim::New(a) = store.claim_session("s", "1", "C", "", "a").unwrap() else {
            panic!("new claim")
        };
        let Claim::New(b) = store.claim_session("s", "2", "C", "2.0", "a").unwrap() else {
            panic!("new claim")
        };
        let Claim::New(c) = store.claim_session("s", "3", "C", "3.0", "a").unwrap() else {
            panic!("new claim")
        };
        store.finish(a, Status::Interrupted, None, None).unwrap();
        store.finish(b, Status::Interrupted, None, None).unwrap();
        store.finish(c, Status::Stopped, None, None).unwrap();
        let since = Utc::now() - chrono::Duration::hours(1);
        let found: Vec<i64> = store
            .rerunnable(since)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(
            found,
            vec![b],
            "no thread, or stopped by a person: not re-run"
        );
        assert!(store
            .rerunnable(Utc::now() + chrono::Duration::seconds(5))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn redelivered_events_and_repeated_sightings_are_recognised() {
        let store = Store::in_memory().unwrap();
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

    #[test]
    fn a_finished_session_keeps_its_first_outcome() {
        let store = Store::in_memory().unwrap();
        let Claim::New(id) = store.claim_session("s", "1", "C", "1.0", "a").unwrap() else {
            panic!()
        };
        store.mark_running(id).unwrap();
        assert!(store
            .finish(id, Status::Fixed, Some("done"), Some("https://x/pull/1"))
            .unwrap());
        assert!(!store.finish(id, Status::Interrupted, None, None).unwrap());
        let row = store.session(id).unwrap();
        assert_eq!(row.status, Status::Fixed);
        assert_eq!(row.pr_url.as_deref(), Some("https://x/pull/1"));
        assert!(store.unfinished_sessions().unwrap().is_empty());
    }

    #[test]
    fn prior_sessions_are_newest_first_and_exclude_the_current_one() {
        let store = Store::in_memory().unwrap();
        let mut ids = vec![];
        for run in ["1", "2", "3"] {
            let Claim::New(id) = store.claim_session("s", run, "C", run, "a").unwrap() else {
                panic!()
            };
            ids.push(id);
        }
        let prior = store.prior_sessions("s", ids[2], 5).unwrap();
        let runs: Vec<_> = prior.iter().map(|s| s.run_id.as_str()).collect();
        assert_eq!(runs, ["2", "1"]);
    }

    #[test]
    fn a_pointer_is_claimed_once_per_channel() {
        let store = Store::in_memory().unwrap();
        assert!(store.claim_pointer("s", "1", "C1").unwrap());
        assert!(!store.claim_pointer("s", "1", "C1").unwrap());
        assert!(store.claim_pointer("s", "1", "C2").unwrap());
    }

    #[test]
    fn overrides_pause_and_audit_round_trip() {
        let store = Store::in_memory().unwrap();
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

    #[test]
    fn recent_sessions_filter_by_schedule() {
        let store = Store::in_memory().unwrap();
        for (schedule, run) in [("a", "1"), ("b", "2"), ("a", "3")] {
            store.claim_session(schedule, run, "C", run, "x").unwrap();
        }
        let runs = |s: Option<&str>| -> Vec<String> {
            store
                .recent_sessions(s, 10)
                .unwrap()
                .into_iter()
                .map(|r| r.run_id)
                .collect()
        };
        assert_eq!(runs(Some("a")), ["3", "1"]);
        assert_eq!(runs(None), ["3", "2", "1"]);
        assert_eq!(store.recent_sessions(None, 1).unwrap().len(), 1);
    }

    #[test]
    fn model_exchanges_are_kept_in_order_with_their_cost() {
        let store = Store::in_memory().unwrap();
        let Claim::New(id) = store.claim_session("s", "1", "C", "1.0", "a").unwrap() else {
            panic!("a new session")
        };
        assert_eq!(store.session_cost(id).unwrap(), None);
        let e = |turn, cost| Exchange {
            turn,
            request: format!("{{\"turn\":{turn}}}"),
            status: 200,
            response: "{}".into(),
            prompt_tokens: Some(100),
            completion_tokens: None,
            cost_usd: cost,
        };
        store.add_exchange(id, &e(0, Some(0.25))).unwrap();
        store.add_exchange(id, &e(1, None)).unwrap();
        store.add_exchange(id, &e(2, Some(0.5))).unwrap();
        let rows = store.exchanges(id).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.exchange.turn).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(rows[0].exchange, e(0, Some(0.25)));
        assert_eq!(store.session_cost(id).unwrap(), Some(0.75));
        assert!(store.exchanges(id + 1).unwrap().is_empty());
    }
}
