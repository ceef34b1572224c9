//! Schema migrations, applied in order and recorded in `PRAGMA user_version`.

use anyhow::{Context, Result};
use rusqlite::Connection;

/// Each entry moves the schema one version up. Never edit a released entry;
/// append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: failures, their sightings per channel, sessions and their events.
    r#"
    CREATE TABLE seen_events (
        event_id TEXT PRIMARY KEY,
        seen_at  TEXT NOT NULL
    );
    CREATE TABLE failures (
        id            INTEGER PRIMARY KEY,
        schedule      TEXT NOT NULL,
        run_id        TEXT NOT NULL,
        first_seen_at TEXT NOT NULL,
        UNIQUE (schedule, run_id)
    );
    CREATE TABLE sightings (
        failure_id INTEGER NOT NULL REFERENCES failures(id),
        channel    TEXT NOT NULL,
        ts         TEXT NOT NULL,
        seen_at    TEXT NOT NULL,
        PRIMARY KEY (failure_id, channel)
    );
    CREATE TABLE pointers (
        failure_id INTEGER NOT NULL REFERENCES failures(id),
        channel    TEXT NOT NULL,
        claimed_at TEXT NOT NULL,
        PRIMARY KEY (failure_id, channel)
    );
    CREATE TABLE sessions (
        id          INTEGER PRIMARY KEY,
        failure_id  INTEGER NOT NULL REFERENCES failures(id),
        attempt     INTEGER NOT NULL,
        schedule    TEXT NOT NULL,
        run_id      TEXT NOT NULL,
        channel     TEXT NOT NULL,
        thread_ts   TEXT NOT NULL,
        progress_ts TEXT,
        agent       TEXT NOT NULL,
        status      TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        started_at  TEXT,
        ended_at    TEXT,
        pr_url      TEXT,
        summary     TEXT,
        error       TEXT,
        UNIQUE (failure_id, attempt)
    );
    CREATE INDEX sessions_by_schedule ON sessions(schedule, created_at);
    CREATE INDEX sessions_by_status ON sessions(status);
    CREATE TABLE session_events (
        id         INTEGER PRIMARY KEY,
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        at         TEXT NOT NULL,
        kind       TEXT NOT NULL,
        text       TEXT NOT NULL
    );
    CREATE INDEX session_events_by_session ON session_events(session_id, id);
    "#,
    // 2: error signatures, to find the open pull request for a repeated failure.
    r#"
    ALTER TABLE sessions ADD COLUMN signature TEXT;
    CREATE INDEX sessions_by_signature ON sessions(signature);
    "#,
    // 3: /selfheal settings: per-schedule overrides of the YAML, the
    // workspace-wide pause (one row while paused) and the audit log of changes.
    r#"
    CREATE TABLE schedule_overrides (
        schedule      TEXT PRIMARY KEY,
        enabled       INTEGER NOT NULL,
        slack_channel TEXT,
        agent_name    TEXT,
        changed_by    TEXT NOT NULL,
        changed_at    TEXT NOT NULL
    );
    CREATE TABLE pause (
        id        INTEGER PRIMARY KEY CHECK (id = 1),
        paused_by TEXT NOT NULL,
        paused_at TEXT NOT NULL
    );
    CREATE TABLE audit_log (
        id      INTEGER PRIMARY KEY,
        at      TEXT NOT NULL,
        user_id TEXT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        before  TEXT NOT NULL,
        after   TEXT NOT NULL
    );
    "#,
    // 4: indexes for the lookups made on every notification, thread reply and
    // start-up, so they stay under a millisecond with a million sessions stored;
    // and which interrupted session a session re-runs, so a re-run is never re-run.
    r#"
    ALTER TABLE sessions ADD COLUMN rerun_of INTEGER REFERENCES sessions(id);
    CREATE INDEX sessions_by_run ON sessions(schedule, run_id);
    CREATE INDEX sessions_by_schedule_id ON sessions(schedule, id);
    CREATE INDEX sessions_by_thread ON sessions(channel, thread_ts);
    CREATE INDEX sightings_by_message ON sightings(channel, ts);
    CREATE INDEX failures_by_first_seen ON failures(first_seen_at);
    "#,
    // 5: what an llm agent sent its model and got back, redacted, one row per
    // request (`selfheal session show`), with the tokens and cost of each.
    r#"
    CREATE TABLE llm_exchanges (
        id                INTEGER PRIMARY KEY,
        session_id        INTEGER NOT NULL REFERENCES sessions(id),
        at                TEXT NOT NULL,
        turn              INTEGER NOT NULL,
        request           TEXT NOT NULL,
        status            INTEGER NOT NULL,
        response          TEXT NOT NULL,
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        cost_usd          REAL
    );
    CREATE INDEX llm_exchanges_by_session ON llm_exchanges(session_id, id);
    "#,
    // 6: a person's guidance has a kind of its own; before, it was a note
    // whose text started with 💬, and a follow-up must still see it.
    r#"
    UPDATE session_events SET kind = 'guidance' WHERE kind = 'note' AND text LIKE '💬%';
    "#,
    // 7: pull requests selfheal opened, watched until they are merged or
    // closed: one row per URL (the first session that recorded it owns it),
    // when to ask the forge next, the ETag to ask with, how far polling has
    // backed off. `state` leaves `open` once, under a condition: the claim.
    // Pull requests sessions recorded in the last 30 days are watched from
    // now on (older ones are settled or forgotten, and telling their threads
    // now would be news nobody waits for); compare links are not pull requests.
    r#"
    CREATE TABLE pull_requests (
        id            INTEGER PRIMARY KEY,
        session_id    INTEGER NOT NULL REFERENCES sessions(id),
        url           TEXT NOT NULL UNIQUE,
        state         TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'merged', 'closed')),
        merged_by     TEXT,
        etag          TEXT,
        created_at    TEXT NOT NULL,
        checked_at    TEXT,
        next_check_at TEXT NOT NULL,
        unchanged     INTEGER NOT NULL DEFAULT 0,
        settled_at    TEXT
    );
    CREATE INDEX pull_requests_due ON pull_requests(state, next_check_at);
    INSERT OR IGNORE INTO pull_requests (session_id, url, created_at, next_check_at)
        SELECT MIN(id), pr_url, datetime('now'), datetime('now') FROM sessions
        WHERE pr_url LIKE '%/pull/%' AND created_at >= datetime('now', '-30 days')
        GROUP BY pr_url;
    "#,
    // 8: closing the loop. The healing reply's ts (edited once the schedule
    // passes again); which run resolved a failure (claimed once); and the
    // re-runs selfheal asked a scheduler for, one row per attempt, so the
    // retry budget of a run holds across its re-runs and restarts.
    r#"
    ALTER TABLE sessions ADD COLUMN reply_ts TEXT;
    ALTER TABLE failures ADD COLUMN resolved_run TEXT;
    ALTER TABLE failures ADD COLUMN resolved_at TEXT;
    CREATE INDEX failures_unresolved ON failures(schedule) WHERE resolved_run IS NULL;
    CREATE TABLE retries (
        id            INTEGER PRIMARY KEY,
        schedule      TEXT NOT NULL,
        root_run_id   TEXT NOT NULL,
        attempt       INTEGER NOT NULL,
        failed_run_id TEXT NOT NULL,
        run_id        TEXT,
        by_command    INTEGER NOT NULL,
        session_id    INTEGER NOT NULL REFERENCES sessions(id),
        asked_at      TEXT NOT NULL,
        UNIQUE (schedule, root_run_id, attempt),
        UNIQUE (schedule, failed_run_id)
    );
    CREATE UNIQUE INDEX retries_by_run ON retries(schedule, run_id) WHERE run_id IS NOT NULL;
    "#,
    // 9: replicas. Which process owns a session and until when its claim
    // holds without a heartbeat; each channel's booked write slots (GCRA's
    // theoretical arrival time), shared by every process writing to Slack.
    r#"
    ALTER TABLE sessions ADD COLUMN owner TEXT;
    ALTER TABLE sessions ADD COLUMN lease_until TEXT;
    CREATE INDEX sessions_by_rerun ON sessions(rerun_of) WHERE rerun_of IS NOT NULL;
    CREATE TABLE write_slots (
        channel TEXT PRIMARY KEY,
        tat     TEXT NOT NULL,
        opened  TEXT
    );
    "#,
    // 10: when each channel's latest answer goes, so that routine writes from
    // every replica wait for the channel's answers.
    r#"
    ALTER TABLE write_slots ADD COLUMN answered TEXT;
    "#,
];

pub fn migrate(conn: &Connection) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        anyhow::bail!(
            "the database is at schema version {current}, newer than this selfheal knows ({}); upgrade selfheal",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i + 1;
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)
            .with_context(|| format!("applying schema migration {version}"))?;
        tx.pragma_update(None, "user_version", version as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guidance_written_before_it_had_a_kind_of_its_own_is_still_guidance() {
        // A database at schema version 5 with one guidance note and one plain note.
        let conn = Connection::open_in_memory().unwrap();
        // Events alone are enough here: no session rows to point at.
        conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
        for sql in &MIGRATIONS[..5] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        conn.execute_batch(
            "INSERT INTO session_events (session_id, at, kind, text) VALUES
                 (1, 'now', 'note', '💬 guidance from <@U1>: try the staging ref'),
                 (1, 'now', 'note', 'queued behind 2 sessions');",
        )
        .unwrap();

        migrate(&conn).unwrap();

        let kinds: Vec<String> = conn
            .prepare("SELECT kind FROM session_events ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(kinds, ["guidance", "note"]);
    }

    #[test]
    fn pull_requests_recorded_before_they_were_watched_are_watched_from_now_on() {
        // A database at schema version 6: sessions with a pull request (one
        // linked again by a duplicate), a compare link, none, and an old one.
        let conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 6).unwrap();
        let recent = chrono::Utc::now() - chrono::Duration::days(2);
        let old = chrono::Utc::now() - chrono::Duration::days(90);
        conn.execute(
            "INSERT INTO failures (id, schedule, run_id, first_seen_at) VALUES (1, 's', '1', ?1)",
            [recent],
        )
        .unwrap();
        for (id, pr_url, created_at) in [
            (1, Some("https://github.com/acme/dbt/pull/7"), recent),
            (2, Some("https://github.com/acme/dbt/pull/7"), recent),
            (
                3,
                Some("https://github.com/acme/dbt/compare/main...selfheal/x?expand=1"),
                recent,
            ),
            (4, None, recent),
            (5, Some("https://github.com/acme/dbt/pull/1"), old),
        ] {
            conn.execute(
                "INSERT INTO sessions (id, failure_id, attempt, schedule, run_id, channel, thread_ts, agent, status, created_at, pr_url)
                 VALUES (?1, 1, ?1, 's', '1', 'C', '1.0', 'a', 'fixed', ?2, ?3)",
                rusqlite::params![id, created_at, pr_url],
            )
            .unwrap();
        }

        migrate(&conn).unwrap();

        let rows: Vec<(i64, String, String)> = conn
            .prepare("SELECT session_id, url, state FROM pull_requests ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            rows,
            [(
                1,
                "https://github.com/acme/dbt/pull/7".to_string(),
                "open".to_string()
            )]
        );
    }
}
