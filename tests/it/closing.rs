//! Closing the loop: the failure is sorted before anything is spent, a
//! transient one is re-run through the scheduler, and the healing thread
//! hears when the schedule passes again.

use std::time::Duration;

use selfheal::store::Status;
use selfheal_fakes::dbt_cloud::FakeDbtCloud;
use selfheal_fakes::paradime::{FakeCommand, FakeParadime};
use selfheal_fakes::retry::FinalState;

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
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(&format!("agent-ran.{run_id}"))
        })
}

/// Waits until the message `ts` in `channel` reads `pred`.
async fn wait_for_text(
    app: &TestApp,
    channel: &str,
    ts: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    app.slack
        .wait_until(WAIT, |s| {
            s.thread(channel, ts)
                .into_iter()
                .find(|m| m.ts == ts && pred(&m.text))
                .map(|m| m.text)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "{channel}/{ts} never changed: {:#?}",
                app.thread(channel, ts)
            )
        })
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
        .filter(|t| t.starts_with("✅ hourly_marts passed again"))
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
        .post_as_user(
            HEALING,
            "U0ALICE",
            "hourly_marts passed (run 5102) ✅",
            None,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !bot_lines(&app, &ts)
            .iter()
            .any(|t| t.contains("passed again")),
        "{:#?}",
        bot_lines(&app, &ts)
    );
}

#[tokio::test]
async fn a_recurrence_links_the_earlier_thread_and_its_pull_request() {
    let runs = tempfile::tempdir().unwrap();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dbt/column_typo");
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
        said.text
            .contains("https://github.com/acme/analytics/pull/7001"),
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
    app.wait_for_reply(HEALING, &ts, |m| m.text.starts_with("🙋 Run"))
        .await;
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

/// The bot reading run logs from a fake Paradime, re-runs followed every 100 ms.
async fn paradime_app(paradime: &FakeParadime) -> TestApp {
    let endpoint = paradime.endpoint();
    spawn_app_with(
        NO_AGENT,
        &[
            ("SELFHEAL_RUN_LOG_SOURCE", "paradime"),
            ("PARADIME_API_ENDPOINT", &endpoint),
            ("PARADIME_API_KEY", "pk_demo"),
            ("PARADIME_API_SECRET", "ps_demo_secret"),
            ("SELFHEAL_RETRY_POLL_MS", "100"),
        ],
    )
    .await
}

fn dropped_connection_run(paradime: &FakeParadime, run_id: u64) {
    paradime.add_run(
        run_id,
        "FAILED",
        vec![
            FakeCommand::stdout(1, "dbt deps", 0, "Installed 0 packages"),
            FakeCommand::stdout(2, "dbt build --select marts", 1, CONNECTION_RESET),
        ],
    );
}

#[tokio::test]
async fn a_transient_failure_is_re_run_through_paradime_with_no_agent_and_its_success_reported() {
    let paradime = FakeParadime::start("pk_demo", "ps_demo_secret")
        .await
        .unwrap();
    dropped_connection_run(&paradime, 48213);
    paradime.on_retry(48213, FinalState::Success, 2);
    let app = paradime_app(&paradime).await;

    let ts = app.post_failure(HEALING, "hourly_marts", "48213").await;
    let row = app.wait_for_session_end("48213").await;

    assert_eq!(row.status, Status::Retried, "{row:#?}");
    assert_eq!(paradime.retry_calls(), 1);
    let rerun = paradime.retries_of(48213)[0].to_string();
    let lines = bot_lines(&app, &ts);
    let said = |needle: &str| lines.iter().any(|t| t.contains(needle));
    assert!(
        said("🌩️ Sorted as *transient infrastructure*")
            && said("server closed the connection unexpectedly"),
        "the thread says which kind and why: {lines:#?}"
    );
    assert!(
        said("Asked Paradime to re-run the failed part"),
        "{lines:#?}"
    );
    assert!(
        said(&format!("✅ hourly_marts passed again (run {rerun})")),
        "{lines:#?}"
    );
    assert!(
        lines[0].contains("resolved"),
        "the healing reply is edited: {lines:#?}"
    );
    assert!(
        !agent_ran(&app, "48213"),
        "no agent for a transient failure"
    );
    assert_eq!(row.pr_url, None);
}

#[tokio::test]
async fn a_re_run_that_fails_too_is_not_re_run_past_the_budget() {
    let paradime = FakeParadime::start("pk_demo", "ps_demo_secret")
        .await
        .unwrap();
    dropped_connection_run(&paradime, 48213);
    paradime.on_retry(48213, FinalState::Failed, 1);
    let app = paradime_app(&paradime).await;

    let first = app.post_failure(HEALING, "hourly_marts", "48213").await;
    let row = app.wait_for_session_end("48213").await;
    assert_eq!(row.status, Status::Retried, "{row:#?}");
    let rerun = paradime.retries_of(48213)[0].to_string();
    app.wait_for_reply(HEALING, &first, |m| {
        m.text
            .contains(&format!("re-run (run {rerun}) failed too (FAILED)"))
    })
    .await;

    // Bolt announces the re-run's failure like any other.
    let second = app.post_failure(HEALING, "hourly_marts", &rerun).await;
    let row = app.wait_for_session_end(&rerun).await;

    assert_eq!(row.status, Status::NeedsPeople, "{row:#?}");
    assert_eq!(
        paradime.retry_calls(),
        1,
        "the budget of one re-run is spent"
    );
    let fin = app
        .wait_for_reply(HEALING, &second, |m| m.text.starts_with("🙋 Run"))
        .await
        .text;
    assert!(
        fin.contains("run 48213 was re-run once already") && fin.contains("re-run it by hand"),
        "{fin}"
    );
    assert!(!agent_ran(&app, &rerun));
}

#[tokio::test]
async fn a_transient_failure_is_re_run_through_dbt_clouds_retry() {
    let cloud = FakeDbtCloud::start("dbtc_test_token", 7).await.unwrap();
    let run_results = serde_json::json!({
        "results": [{
            "unique_id": "model.analytics.orders",
            "status": "error",
            "message": "Database Error in model orders (models/marts/orders.sql)\n  could not connect to server: Connection refused\n  \tIs the server running on host \"warehouse\" and accepting TCP/IP connections on port 5432?",
            "failures": null,
            "relation_name": "analytics.orders"
        }],
        "args": {"which": "build"}
    });
    cloud.add_run(
        48213,
        vec![
            selfheal_fakes::dbt_cloud::FakeStep::new("Clone git repository", "Success", "Cloned"),
            selfheal_fakes::dbt_cloud::FakeStep::new(
                "Invoke dbt with `dbt build`",
                "Error",
                "Connection refused",
            ),
        ],
        Some(run_results.to_string()),
    );
    cloud.in_job(48213, 99);
    cloud.on_retry(48213, FinalState::Success, 1);
    let base = cloud.base_url();
    let app = spawn_app_with(
        NO_AGENT,
        &[
            ("SELFHEAL_RUN_LOG_SOURCE", "dbt_cloud"),
            ("DBT_CLOUD_API_URL", &base),
            ("DBT_CLOUD_API_TOKEN", "dbtc_test_token"),
            ("DBT_CLOUD_ACCOUNT_ID", "7"),
            ("SELFHEAL_RETRY_POLL_MS", "100"),
        ],
    )
    .await;

    let ts = app.post_failure(HEALING, "hourly_marts", "48213").await;
    let row = app.wait_for_session_end("48213").await;

    assert_eq!(row.status, Status::Retried, "{row:#?}");
    assert_eq!(cloud.retry_calls(), 1);
    let rerun = cloud.retries_of(48213)[0].to_string();
    let lines = bot_lines(&app, &ts);
    assert!(
        lines
            .iter()
            .any(|t| t.contains("Asked dbt Cloud to re-run")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|t| t == &format!("✅ hourly_marts passed again (run {rerun})")),
        "{lines:#?}"
    );
    assert!(!agent_ran(&app, "48213"));
}

#[tokio::test]
async fn runs_fed_by_notify_are_re_run_by_the_configured_command_or_left_to_people() {
    let runs = tempfile::tempdir().unwrap();
    for run in ["9001", "9002"] {
        let dir = runs.path().join(run);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("console.txt"), CONNECTION_RESET).unwrap();
    }
    let logs = runs.path().display().to_string();
    let marker = runs.path().join("retried");
    let command = format!(
        "echo \"$SELFHEAL_SCHEDULE $SELFHEAL_RUN_ID ${{SLACK_BOT_TOKEN:-no-token}}\" > {}",
        marker.display()
    );
    let app = spawn_app_with(
        NO_AGENT,
        &[
            ("SELFHEAL_RUN_LOGS", &logs),
            ("SELFHEAL_RETRY_COMMAND", &command),
        ],
    )
    .await;
    let ts = app.post_failure(HEALING, "hourly_marts", "9001").await;
    let row = app.wait_for_session_end("9001").await;
    assert_eq!(row.status, Status::Retried, "{row:#?}");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        "hourly_marts 9001 no-token",
        "the command learns the schedule and run, and no token"
    );
    app.wait_for_reply(HEALING, &ts, |m| m.text.contains("Ran the retry command"))
        .await;

    // Without a command, the thread says to re-run it, and why.
    let app = spawn_app_with(NO_AGENT, &[("SELFHEAL_RUN_LOGS", &logs)]).await;
    let ts = app.post_failure(HEALING, "hourly_marts", "9002").await;
    let row = app.wait_for_session_end("9002").await;
    assert_eq!(row.status, Status::NeedsPeople, "{row:#?}");
    let fin = app
        .wait_for_reply(HEALING, &ts, |m| m.text.starts_with("🙋 Run"))
        .await
        .text;
    assert!(
        fin.contains("re-run it (selfheal cannot re-run this scheduler's runs"),
        "{fin}"
    );
}

#[tokio::test]
async fn a_scheduler_that_announces_no_passes_is_asked_and_the_loop_still_closes() {
    // Bolt announces failures only; its API knows the next run passed.
    let paradime = FakeParadime::start("pk_demo", "ps_demo_secret")
        .await
        .unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dbt/column_typo/console.txt");
    let console = std::fs::read_to_string(fixture).unwrap();
    paradime.add_run(
        48213,
        "FAILED",
        vec![FakeCommand::stdout(1, "dbt build", 1, &console)],
    );
    paradime.in_schedule(48213, "hourly-marts");
    let endpoint = paradime.endpoint();
    let app = spawn_app_with(
        HAPPY_AGENT,
        &[
            ("SELFHEAL_RUN_LOG_SOURCE", "paradime"),
            ("PARADIME_API_ENDPOINT", &endpoint),
            ("PARADIME_API_KEY", "pk_demo"),
            ("PARADIME_API_SECRET", "ps_demo_secret"),
            ("SELFHEAL_NEXT_RUN_POLL_SECS", "1"),
        ],
    )
    .await;
    let ts = app.post_failure(HEALING, "hourly_marts", "48213").await;
    assert_eq!(
        app.wait_for_session_end("48213").await.status,
        Status::Fixed
    );

    // The next scheduled run passes, silently.
    paradime.add_run(
        48214,
        "SUCCESS",
        vec![FakeCommand::stdout(2, "dbt build", 0, "Done. PASS=5")],
    );
    paradime.in_schedule(48214, "hourly-marts");

    app.wait_for_reply(HEALING, &ts, |m| {
        m.text == "✅ hourly_marts passed again (run 48214)"
    })
    .await;
    let asked = paradime
        .requests()
        .iter()
        .filter(|r| r.field().as_deref() == Some("listBoltRuns"))
        .count();
    assert!(asked >= 1, "the schedule's runs were listed");
    // Once resolved, the schedule is not asked about again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = paradime
        .requests()
        .iter()
        .filter(|r| r.field().as_deref() == Some("listBoltRuns"))
        .count();
    assert_eq!(later, asked);
}
