//! `kill -9` in the middle of a storm: on restart, nothing is lost, nothing
//! is done twice, and nothing is left running.

use std::time::Duration;

use selfheal::store::Status;

use crate::helpers::*;

/// Sleeps until the test has crashed the bot; after that (the re-runs) it
/// reports a fix at once.
const SLEEPY_FIRST_TIME: &str = r#"
if [ -e "$PROMPT_LOG.crashed" ]; then
  echo "second attempt at $SELFHEAL_RUN_ID"
  echo "opened https://github.com/acme/analytics/pull/$SELFHEAL_RUN_ID"
  echo '{"type":"result","status":"fixed","summary":"fixed on the re-run"}'
  exit 0
fi
echo "first attempt at $SELFHEAL_RUN_ID"
sleep 600 & wait
"#;

/// Processes (agents and their children) whose environment names a session
/// of the database at `db`.
fn agent_processes_of(db: &std::path::Path) -> Vec<i32> {
    let db = std::fs::canonicalize(db).expect("database path");
    let wanted = format!("SELFHEAL_SESSION_TAG={}#", db.display());
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let environ = std::fs::read(e.path().join("environ")).ok()?;
            // A zombie has no environment left: it counts only if it is ours,
            // and ours are reaped (see the check below).
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let zombie = stat.rsplit(')').next()?.trim_start().starts_with('Z');
            environ
                .split(|b| *b == 0)
                .any(|v| v.starts_with(wanted.as_bytes()))
                .then_some(pid)
                .filter(|_| !zombie)
        })
        .collect()
}

#[tokio::test]
async fn kill_9_with_twenty_sessions_running_reruns_each_exactly_once() {
    // Arrange: the bot as its own process, 20 sessions running and 2 queued.
    let (mut app, mut bot) = spawn_bot_process(
        SLEEPY_FIRST_TIME,
        &[
            ("SELFHEAL_MAX_SESSIONS", "20"),
            ("SELFHEAL_MAX_SESSIONS_PER_SCHEDULE", "20"),
        ],
    )
    .await;
    let runs: Vec<String> = (1..=22).map(|r| r.to_string()).collect();
    let mut threads = vec![];
    for run in &runs {
        threads.push(app.post_failure(HEALING, "hourly_marts", run).await);
    }
    let store = app.store();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let sessions = store.sessions(100).expect("sessions");
        let running = sessions
            .iter()
            .filter(|s| s.status == Status::Running)
            .count();
        if running == 20 && sessions.len() == 22 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "20 sessions never ran: {sessions:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        agent_processes_of(&app.db_path).len() >= 20,
        "the agents run as tagged processes"
    );

    // Act: kill -9, then start again.
    bot.start_kill().expect("SIGKILL the bot");
    bot.wait().await.expect("the bot is gone");
    std::fs::write(app.path().join("prompt.crashed"), "").expect("mark the crash");
    app.slack.drop_all_connections().await;
    app.start().await;

    // Assert: every failure ends fixed by exactly one re-run…
    let deadline = tokio::time::Instant::now() + WAIT;
    while store
        .sessions(100)
        .expect("sessions")
        .iter()
        .filter(|s| s.status == Status::Fixed)
        .count()
        < runs.len()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the re-runs did not all end: {:#?}",
            store.sessions(100)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (run, ts) in runs.iter().zip(&threads) {
        app.wait_for_reply(HEALING, ts, |m| {
            m.text.starts_with("🔗 Pull request opened")
        })
        .await;
        let sessions: Vec<_> = store
            .sessions(100)
            .expect("sessions")
            .into_iter()
            .filter(|s| &s.run_id == run)
            .collect();
        assert_eq!(sessions.len(), 2, "run {run}: {sessions:#?}");
        let (rerun, first) = (&sessions[0], &sessions[1]);
        assert_eq!(first.status, Status::Interrupted, "run {run}");
        assert_eq!(rerun.status, Status::Fixed, "run {run}");
        assert_eq!(rerun.rerun_of, Some(first.id));
        // …announced once in its thread, which got one healing reply.
        let thread = app.thread(HEALING, ts);
        let said = |prefix: &str| thread.iter().filter(|m| m.text.starts_with(prefix)).count();
        assert_eq!(said(HEALING_REPLY), 1, "run {run}");
        assert_eq!(said("🔁 selfheal restarted"), 1, "run {run}");
        // The first session's progress message no longer offers a Stop button.
        let first_progress = first.progress_ts.as_deref();
        if let Some(m) = thread
            .iter()
            .find(|m| Some(m.ts.as_str()) == first_progress)
        {
            assert!(
                m.text.starts_with("🛑 Healing run"),
                "run {run}: {}",
                m.text
            );
        }
    }
    // No agent of the killed bot survived it, and the database is intact.
    assert_eq!(agent_processes_of(&app.db_path), Vec::<i32>::new());
    let conn = rusqlite::Connection::open(&app.db_path).expect("open the database");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok");

    // A second restart re-runs nothing.
    app.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.sessions(100).expect("sessions").len(), 44);
}

#[tokio::test]
async fn with_report_only_an_interrupted_session_is_told_and_not_rerun() {
    let mut app = spawn_app_with(SLEEPY_FIRST_TIME, &[("SELFHEAL_ON_RESTART", "report")]).await;
    let ts = app.post_failure(HEALING, "hourly_marts", "1").await;
    app.store_wait_running("1").await;

    app.crash().await;
    app.start().await;

    app.wait_for_reply(HEALING, &ts, |m| {
        m.text
            .starts_with("🛑 The healing session for run `1` was interrupted")
    })
    .await;
    let sessions = app.store().sessions(10).expect("sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].status, Status::Interrupted);
    assert_eq!(agent_processes_of(&app.db_path), Vec::<i32>::new());
}

#[tokio::test]
async fn a_session_cut_short_by_a_shutdown_runs_again_after_the_restart() {
    let mut app = spawn_app_with(SLEEPY_FIRST_TIME, &[]).await;
    let ts = app.post_failure(HEALING, "hourly_marts", "1").await;
    app.store_wait_running("1").await;

    // A deploy: SIGTERM, then the new version starts.
    app.stop().await;
    std::fs::write(app.path().join("prompt.crashed"), "").expect("mark the restart");
    app.start().await;

    app.wait_for_reply(HEALING, &ts, |m| {
        m.text.starts_with("🔗 Pull request opened")
    })
    .await;
    let thread = app.thread(HEALING, &ts);
    let said = |prefix: &str| thread.iter().filter(|m| m.text.starts_with(prefix)).count();
    assert_eq!(
        said("🛑 No pull request opened for run `1` (interrupted)"),
        1
    );
    assert_eq!(said("🔁 selfheal restarted"), 1);
    assert_eq!(said(HEALING_REPLY), 1);
    // A second restart finds nothing more to do.
    app.restart().await;
    assert_eq!(app.store().sessions(10).expect("sessions").len(), 2);
}
