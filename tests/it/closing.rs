//! Closing the loop: the failure is sorted before anything is spent, a
//! transient one is re-run through the scheduler, and the healing thread
//! hears when the schedule passes again.

use std::time::Duration;

use selfheal::store::Status;
use selfheal_fakes::dbt_cloud::FakeDbtCloud;
use selfheal_fakes::paradime::{FakeCommand, FakeParadime};

use crate::helpers::*;

/// What a Postgres warehouse that dropped the connection leaves in a run log.
const CONNECTION_RESET: &str = "\
12:00:01  Running with dbt=1.10.4
12:00:03  1 of 2 START sql table model analytics.orders ........ [RUN]
12:00:04  1 of 2 ERROR creating sql table model analytics.orders  [ERROR in 1.02s]
12:00:04
12:00:04  Completed with 1 error, 0 partial successes, and 0 warnings:
12:00:04
12:00:04  Database Error in model orders (models/marts/orders.sql)
  server closed the connection unexpectedly
  \tThis probably means the server terminated abnormally
  \tbefore or while processing the request.
12:00:04
12:00:04  Done. PASS=1 WARN=0 ERROR=1 SKIP=0 NO-OP=0 TOTAL=2
";

/// A command agent that must never run: it leaves a mark if it does.
const NO_AGENT: &str = r#"touch "$PROMPT_LOG.agent-ran.$SELFHEAL_RUN_ID"; echo '{"type":"result","status":"fixed","summary":"should not run"}'"#;

fn agent_ran(app: &TestApp, run_id: &str) -> bool {
    app.path()
        .read_dir()
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().ends_with(&format!("agent-ran.{run_id}")))
}

/// Waits until the message `ts` in `channel` reads `pred`.
async fn wait_for_text(app: &TestApp, channel: &str, ts: &str, pred: impl Fn(&str) -> bool) -> String {
    app.slack
        .wait_until(WAIT, |s| {
            s.thread(channel, ts)
                .into_iter()
                .find(|m| m.ts == ts && pred(&m.text))
                .map(|m| m.text)
        })
        .await
        .unwrap_or_else(|| panic!("{channel}/{ts} never changed: {:#?}", app.thread(channel, ts)))
}

fn bot_lines(app: &TestApp, ts: &str) -> Vec<String> {
    let bot = app.slack.bot_user_id().to_string();
    app.thread(HEALING, ts)
        .into_iter()
        .filter(|m| m.user.as_deref() == Some(bot.as_str()))
        .map(|m| m.text)
        .collect()
}

#[tokio::test]
async fn a_success_notification_after_a_healed_failure_closes_the_loop_in_its_thread() {
    let app = spawn_app().await;
    let ts = app.post_failure(HEALING, "hourly_marts", "48213").await;
    let row = app.wait_for_session_end("48213").await;
    assert_eq!(row.status, Status::Fixed, "{row:#?}");

    // The next scheduled run passes, and the scheduler says so.
    app.slack
        .post_as_bot(
            HEALING,
            notifier("✅ Bolt schedule hourly_marts passed (run 48214) in 3m 2s"),
        )
        .await;

    app.wait_for_reply(HEALING, &ts, |m| {
        m.text == "✅ hourly_marts passed again (run 48214)"
    })
    .await;
    let reply = bot_lines(&app, &ts)
        .into_iter()
        .next()
        .expect("the healing reply");
    assert!(reply.starts_with("🦖 Self-healing enabled"), "{reply}");
    let reply_ts = app.thread(HEALING, &ts)[1].ts.clone();
    let edited = wait_for_text(&app, HEALING, &reply_ts, |t| t.contains("resolved")).await;
    assert_eq!(
        edited,
        "🦖 Self-healing enabled — ✅ resolved: hourly_marts passed again (run 48214)"
    );

    // The same news again (a redelivery, another channel's copy) is not repeated.
    app.slack
        .post_as_bot(
            ALERTS,
            notifier("✅ Bolt schedule hourly_marts passed (run 48214) in 3m 2s"),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let recoveries = bot_lines(&app, &ts)
        .iter()
        .filter(|t| t.contains("passed again"))
        .count();
    assert_eq!(recoveries, 1);
}

#[tokio::test]
async fn a_pass_of_another_schedule_or_from_a_person_closes_nothing() {
    let app = spawn_app().await;
    let ts = app.post_failure(HEALING, "hourly_marts", "5100").await;
    app.wait_for_session_end("5100").await;

    app.slack
        .post_as_bot(HEALING, notifier("✅ nightly passed (run 5101)"))
        .await;
    app.slack
        .post_as_user(HEALING, "U0ALICE", "hourly_marts passed (run 5102) ✅", None)
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !bot_lines(&app, &ts).iter().any(|t| t.contains("passed again")),
        "{:#?}",
        bot_lines(&app, &ts)
    );
}

#[tokio::test]
async fn a_recurrence_links_the_earlier_thread_and_its_pull_request() {
    let runs = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dbt/column_typo");
    for run in ["7001", "7002"] {
        let dir = runs.path().join(run);
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["run_results.json", "console.txt"] {
            std::fs::copy(fixture.join(file), dir.join(file)).unwrap();
        }
    }
    let logs = runs.path().display().to_string();
    let app = spawn_app_with(HAPPY_AGENT, &[("SELFHEAL_RUN_LOGS", &logs)]).await;
    let first = app.post_failure(HEALING, "hourly_marts", "7001").await;
    let row = app.wait_for_session_end("7001").await;
    assert_eq!(row.status, Status::Fixed);

    let second = app.post_failure(HEALING, "hourly_marts", "7002").await;
    let said = app
        .wait_for_reply(HEALING, &second, |m| m.text.contains("happened before"))
        .await;
    let link = format!(
        "https://slack.com/archives/{HEALING}/p{}",
        first.replace('.', "")
    );
    assert!(said.text.contains("run `7001`"), "{}", said.text);
    assert!(said.text.contains(&link), "{}", said.text);
    assert!(
        said.text.contains("https://github.com/acme/analytics/pull/7001"),
        "{}",
        said.text
    );
}

#[tokio::test]
async fn a_permissions_problem_is_left_to_people_with_no_agent() {
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().join("7100");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("console.txt"),
        "12:00:04  Database Error in model orders (models/marts/orders.sql)\n  permission denied for schema analytics\n12:00:04  Done. PASS=0 WARN=0 ERROR=1 SKIP=0 TOTAL=1\n",
    )
    .unwrap();
    let logs = runs.path().display().to_string();
    let app = spawn_app_with(NO_AGENT, &[("SELFHEAL_RUN_LOGS", &logs)]).await;
    let ts = app.post_failure(HEALING, "hourly_marts", "7100").await;
    let row = app.wait_for_session_end("7100").await;

    assert_eq!(row.status, Status::NeedsPeople, "{row:#?}");
    assert!(!agent_ran(&app, "7100"));
    let lines = bot_lines(&app, &ts);
    assert!(
        lines
            .iter()
            .any(|t| t.starts_with("🔐 Sorted as *permissions or configuration*")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|t| t.contains("needs a person")),
        "{lines:#?}"
    );
}
