//! Healing sessions, from the claim that starts one to the outcome that ends
//! it: the claims (a failure's first session, a follow-up, a re-run), the
//! fields a running session fills in, and the lookups by failure, thread,
//! schedule and status.

use super::db::{params, DbResult, OptionalExtension, Row, Value};
use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};

use super::db::all;
use super::failures::ensure_failure;
use super::{now, Status, Store};

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

impl Store {
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
        self.with_tx("claiming a failure for a session", |tx| {
            let failure_id = ensure_failure(tx, schedule, run_id)?;
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
            let (owner, lease_until) = self.new_lease();
            tx.query_row(
                "INSERT INTO sessions(failure_id, attempt, schedule, run_id, channel, thread_ts, agent, status, created_at,
                                      owner, lease_until)
                 VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, 'claimed', ?7, ?8, ?9) RETURNING id",
                params![failure_id, schedule, run_id, channel, thread_ts, agent, now(), owner, lease_until],
                |r| r.get(0).map(Claim::New),
            )
        })
    }

    /// Claims a follow-up of `previous` (same failure and thread, next attempt)
    /// unless a session for that failure is still unfinished.
    pub fn claim_followup(&self, previous: &SessionRow, agent: &str) -> Result<Option<i64>> {
        self.with_tx("claiming a follow-up session", |tx| {
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
            let (owner, lease_until) = self.new_lease();
            tx.query_row(
                "INSERT INTO sessions(failure_id, attempt, schedule, run_id, channel, thread_ts, agent, status, created_at,
                                      pr_url, signature, owner, lease_until)
                 SELECT failure_id, (SELECT MAX(attempt) + 1 FROM sessions WHERE failure_id = ?1), schedule, run_id,
                        channel, thread_ts, ?3, 'claimed', ?4, pr_url, signature, ?5, ?6
                 FROM sessions WHERE id = ?2 RETURNING id",
                params![failure_id, previous.id, agent, now(), owner, lease_until],
                |r| r.get(0).map(Some),
            )
        })
    }

    /// Claims the session that runs the interrupted session `id` again; None
    /// when it was re-run already (exactly one caller ever gets Some).
    pub fn claim_rerun(&self, id: i64) -> Result<Option<i64>> {
        self.with_tx("claiming the re-run of a session", |tx| {
            let (owner, lease_until) = self.new_lease();
            tx.query_row(
                "INSERT INTO sessions(failure_id, attempt, schedule, run_id, channel, thread_ts, agent,
                                      status, created_at, signature, error, rerun_of, owner, lease_until)
                 SELECT failure_id, (SELECT MAX(attempt) + 1 FROM sessions s2 WHERE s2.failure_id = s.failure_id),
                        schedule, run_id, channel, thread_ts, agent, 'claimed', ?2, signature, error, id, ?3, ?4
                 FROM sessions s
                 WHERE id = ?1 AND status = 'interrupted' AND rerun_of IS NULL
                   AND NOT EXISTS (SELECT 1 FROM sessions r WHERE r.rerun_of = ?1)
                 RETURNING id",
                params![id, now(), owner, lease_until],
                |r| r.get(0),
            )
            .optional()
        })
    }

    pub fn session(&self, id: i64) -> Result<SessionRow> {
        let what = format!("loading session {id}");
        self.session_where(&what, "WHERE id = ?1", params![id])?
            .ok_or_else(|| anyhow!("{what}: no such session"))
    }

    /// The session for a failure, if one was claimed.
    pub fn session_for_failure(&self, schedule: &str, run_id: &str) -> Result<Option<SessionRow>> {
        self.session_where(
            "looking up the session of a failure",
            "WHERE schedule = ?1 AND run_id = ?2 ORDER BY id LIMIT 1",
            params![schedule, run_id],
        )
    }

    /// The newest session threaded under `thread_ts` in `channel`.
    pub fn session_in_thread(&self, channel: &str, thread_ts: &str) -> Result<Option<SessionRow>> {
        self.session_where(
            "looking up the session of a thread",
            "WHERE channel = ?1 AND thread_ts = ?2 ORDER BY id DESC LIMIT 1",
            params![channel, thread_ts],
        )
    }

    /// The newest other session with the same error signature that produced a
    /// pull request (its own or one it linked as a duplicate).
    pub fn pr_for_signature(&self, signature: &str, except: i64) -> Result<Option<SessionRow>> {
        self.session_where(
            "looking up sessions with the same error",
            "WHERE signature = ?1 AND id != ?2 AND pr_url IS NOT NULL
             AND status IN ('fixed', 'duplicate') ORDER BY id DESC LIMIT 1",
            params![signature, except],
        )
    }

    /// The latest earlier session, of another failure, that met the same
    /// error: a recurrence links to it.
    pub fn earlier_with_signature(
        &self,
        signature: &str,
        schedule: &str,
        run_id: &str,
    ) -> Result<Option<SessionRow>> {
        self.session_where(
            "looking up an earlier failure with the same error",
            "WHERE signature = ?1 AND NOT (schedule = ?2 AND run_id = ?3) AND thread_ts != ''
             ORDER BY id DESC LIMIT 1",
            params![signature, schedule, run_id],
        )
    }

    /// Every session of a thread, oldest first.
    pub fn sessions_in_thread(&self, channel: &str, thread_ts: &str) -> Result<Vec<SessionRow>> {
        self.sessions_where(
            "loading the sessions of a thread",
            "WHERE channel = ?1 AND thread_ts = ?2 ORDER BY id",
            params![channel, thread_ts],
        )
    }

    /// Sessions that had not ended: after a crash or a stop, they were interrupted.
    pub fn unfinished_sessions(&self) -> Result<Vec<SessionRow>> {
        self.sessions_where(
            "loading unfinished sessions",
            "WHERE status IN ('claimed', 'running') ORDER BY id",
            &[],
        )
    }

    /// Interrupted sessions (by a crash or a stop) that ended since `since`,
    /// have a thread, are not re-runs themselves and have not been re-run: the
    /// ones a start may run again.
    pub fn rerunnable(&self, since: DateTime<Utc>) -> Result<Vec<SessionRow>> {
        self.sessions_where(
            "loading interrupted sessions",
            "s WHERE status = 'interrupted' AND rerun_of IS NULL AND thread_ts != ''
               AND ended_at >= ?1
               AND NOT EXISTS (SELECT 1 FROM sessions r WHERE r.rerun_of = s.id)
             ORDER BY id",
            params![since],
        )
    }

    /// The schedule's most recent sessions, newest first, excluding `except`.
    pub fn prior_sessions(
        &self,
        schedule: &str,
        except: i64,
        limit: usize,
    ) -> Result<Vec<SessionRow>> {
        self.sessions_where(
            "loading prior sessions",
            "WHERE schedule = ?1 AND id != ?2 ORDER BY created_at DESC, id DESC LIMIT ?3",
            params![schedule, except, limit as i64],
        )
    }

    /// The most recent sessions, of one schedule or all, newest first.
    pub fn recent_sessions(&self, schedule: Option<&str>, limit: usize) -> Result<Vec<SessionRow>> {
        // Two statements, not `?1 IS NULL OR schedule = ?1`: with the OR, SQLite
        // walks every session newest first instead of using the schedule's index.
        let rest = match schedule {
            Some(_) => "WHERE schedule = ?1 ORDER BY id DESC LIMIT ?2",
            None => "WHERE CAST(?1 AS TEXT) IS NULL ORDER BY id DESC LIMIT ?2",
        };
        self.sessions_where(
            "loading recent sessions",
            rest,
            params![schedule, limit as i64],
        )
    }

    /// All sessions, newest first (for tests and `history`).
    pub fn sessions(&self, limit: usize) -> Result<Vec<SessionRow>> {
        self.sessions_where(
            "loading sessions",
            "ORDER BY id DESC LIMIT ?1",
            params![limit as i64],
        )
    }

    /// Marks a claimed session as running.
    pub fn mark_running(&self, id: i64) -> Result<()> {
        self.update(
            "marking a session running",
            "UPDATE sessions SET status = 'running', started_at = ?2 WHERE id = ?1 AND status = 'claimed'",
            params![id, now()],
        )
    }

    pub fn set_progress_ts(&self, id: i64, ts: &str) -> Result<()> {
        self.update(
            "storing the progress message ts",
            "UPDATE sessions SET progress_ts = ?2 WHERE id = ?1",
            params![id, ts],
        )
    }

    /// Sets the thread of a session that had to start top-level.
    pub fn set_thread_ts(&self, id: i64, ts: &str) -> Result<()> {
        self.update(
            "storing the session thread",
            "UPDATE sessions SET thread_ts = ?2 WHERE id = ?1",
            params![id, ts],
        )
    }

    /// The ts of the session's healing reply, edited when the schedule passes again.
    pub fn set_reply_ts(&self, id: i64, ts: &str) -> Result<()> {
        self.update(
            "recording the healing reply",
            "UPDATE sessions SET reply_ts = ?2 WHERE id = ?1",
            params![id, ts],
        )
    }

    /// The ts of the session's healing reply, when it was posted.
    pub fn reply_ts(&self, id: i64) -> Result<Option<String>> {
        self.with_conn("looking up the healing reply", |c| {
            c.query_row(
                "SELECT reply_ts FROM sessions WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
        })
    }

    /// Records the failure's error (first line) and signature once the run log is read.
    pub fn set_error(&self, id: i64, error: &str, signature: &str) -> Result<()> {
        self.update(
            "storing the session's error signature",
            "UPDATE sessions SET error = ?2, signature = ?3 WHERE id = ?1",
            params![id, error, signature],
        )
    }

    pub fn set_pr_url(&self, id: i64, url: &str) -> Result<()> {
        self.update(
            "storing the pull request url",
            "UPDATE sessions SET pr_url = ?2 WHERE id = ?1",
            params![id, url],
        )
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
        self.with_conn("finishing a session", |c| {
            c.execute(
                "UPDATE sessions SET status = ?2, summary = COALESCE(?3, summary),
                        pr_url = COALESCE(?4, pr_url), ended_at = ?5
                 WHERE id = ?1 AND status IN ('claimed', 'running')",
                params![id, status.as_str(), summary, pr_url, now()],
            )
            .map(|n| n == 1)
        })
    }

    /// The first session `rest` (a WHERE and ORDER BY clause) selects.
    fn session_where(
        &self,
        what: &str,
        rest: &str,
        params: &[Value],
    ) -> Result<Option<SessionRow>> {
        self.with_conn(what, |c| {
            c.query_row(
                &format!("{SESSION_SELECT} {rest}"),
                params,
                SessionRow::from_row,
            )
            .optional()
        })
    }

    /// Every session `rest` (a WHERE and ORDER BY clause) selects.
    fn sessions_where(&self, what: &str, rest: &str, params: &[Value]) -> Result<Vec<SessionRow>> {
        self.with_conn(what, |c| {
            all(
                c,
                &format!("{SESSION_SELECT} {rest}"),
                params,
                SessionRow::from_row,
            )
        })
    }

    /// One write to a session's row.
    fn update(&self, what: &str, sql: &str, params: &[Value]) -> Result<()> {
        self.with_conn(what, |c| c.execute(sql, params)).map(drop)
    }
}

/// The columns [`SessionRow::from_row`] reads, in its order.
const SESSION_SELECT: &str =
    "SELECT id, schedule, run_id, channel, thread_ts, progress_ts, agent, status,
        created_at, ended_at, pr_url, summary, error, signature, rerun_of FROM sessions";

impl SessionRow {
    fn from_row(r: &Row) -> DbResult<SessionRow> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new session for run `run` of schedule `s`, threaded under `ts`.
    fn claim(store: &Store, run: &str, ts: &str) -> i64 {
        match store.claim_session("s", run, "C", ts, "a").unwrap() {
            Claim::New(id) => id,
            Claim::Exists(id) => panic!("run {run} already had session {id}"),
        }
    }

    #[test]
    fn a_failure_is_claimed_exactly_once() {
        for store in crate::store::testing::stores() {
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
            assert_eq!(
                store
                    .session_for_failure("hourly", "1")
                    .unwrap()
                    .unwrap()
                    .id,
                id
            );
            assert_eq!(store.session_for_failure("hourly", "9").unwrap(), None);
        }
    }

    #[test]
    fn an_interrupted_session_is_rerun_once_and_a_rerun_never() {
        for store in crate::store::testing::stores() {
            let hour_ago = Utc::now() - chrono::Duration::hours(1);
            let id = claim(&store, "1", "1.0");
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
    }

    #[test]
    fn only_recent_interrupted_sessions_with_a_thread_are_rerunnable() {
        for store in crate::store::testing::stores() {
            let a = claim(&store, "1", "");
            let b = claim(&store, "2", "2.0");
            let c = claim(&store, "3", "3.0");
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
    }

    #[test]
    fn a_finished_session_keeps_its_first_outcome() {
        for store in crate::store::testing::stores() {
            let id = claim(&store, "1", "1.0");
            store.mark_running(id).unwrap();
            assert!(store
                .finish(id, Status::Fixed, Some("done"), Some("https://x/pull/1"))
                .unwrap());
            assert!(!store.finish(id, Status::Interrupted, None, None).unwrap());
            let row = store.session(id).unwrap();
            assert_eq!(row.status, Status::Fixed);
            assert_eq!(row.pr_url.as_deref(), Some("https://x/pull/1"));
            assert!(store.unfinished_sessions().unwrap().is_empty());
            assert!(store.session(id + 1).is_err(), "no such session");
        }
    }

    #[test]
    fn a_followup_waits_for_the_thread_to_be_idle_and_keeps_its_pull_request() {
        for store in crate::store::testing::stores() {
            let first = claim(&store, "1", "1.0");
            let previous = store.session(first).unwrap();
            assert_eq!(store.claim_followup(&previous, "b").unwrap(), None, "busy");
            store
                .finish(first, Status::Fixed, None, Some("https://x/pull/1"))
                .unwrap();
            let next = store.claim_followup(&previous, "b").unwrap().expect("idle");
            let row = store.session(next).unwrap();
            assert_eq!(
                (row.agent.as_str(), row.pr_url.as_deref(), row.status),
                ("b", Some("https://x/pull/1"), Status::Claimed)
            );
            let thread: Vec<i64> = store
                .sessions_in_thread("C", "1.0")
                .unwrap()
                .iter()
                .map(|s| s.id)
                .collect();
            assert_eq!(thread, [first, next]);
            assert_eq!(
                store.session_in_thread("C", "1.0").unwrap().unwrap().id,
                next
            );
            assert_eq!(store.session_in_thread("C", "9.0").unwrap(), None);
        }
    }

    #[test]
    fn the_same_error_finds_the_earlier_pull_request() {
        for store in crate::store::testing::stores() {
            let first = claim(&store, "1", "1.0");
            let second = claim(&store, "2", "2.0");
            store.set_error(first, "boom", "sig").unwrap();
            store.set_pr_url(first, "https://x/pull/1").unwrap();
            assert_eq!(
                store.pr_for_signature("sig", second).unwrap(),
                None,
                "not fixed yet"
            );
            store.finish(first, Status::Fixed, None, None).unwrap();
            let found = store.pr_for_signature("sig", second).unwrap().unwrap();
            assert_eq!((found.id, found.error.as_deref()), (first, Some("boom")));
            assert_eq!(
                store.pr_for_signature("sig", first).unwrap(),
                None,
                "not itself"
            );
        }
    }

    #[test]
    fn prior_sessions_are_newest_first_and_exclude_the_current_one() {
        for store in crate::store::testing::stores() {
            let ids: Vec<i64> = ["1", "2", "3"]
                .iter()
                .map(|run| claim(&store, run, run))
                .collect();
            let prior = store.prior_sessions("s", ids[2], 5).unwrap();
            let runs: Vec<_> = prior.iter().map(|s| s.run_id.as_str()).collect();
            assert_eq!(runs, ["2", "1"]);
        }
    }

    #[test]
    fn recent_sessions_filter_by_schedule() {
        for store in crate::store::testing::stores() {
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
    }
}
