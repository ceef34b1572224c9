//! `selfheal demo` and `selfheal notify` as a user runs them: the real binary,
//! a clean environment, the local Slack fake.

use std::path::{Path, PathBuf};
use std::process::Output;

use selfheal::demo::{ALERTS, HEALING};
use selfheal_fakes::slack::FakeSlack;
use tokio::process::Command;

/// The binary with none of the operator's environment but PATH and HOME.
fn selfheal() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_selfheal"));
    cmd.env_clear().kill_on_drop(true);
    for var in ["PATH", "HOME", "TMPDIR", "LANG"] {
        if let Ok(v) = std::env::var(var) {
            cmd.env(var, v);
        }
    }
    cmd
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn explain(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

#[tokio::test]
async fn demo_tells_the_story_from_broken_commit_to_passing_pull_request_and_the_loop_closed() {
    // Arrange: the pinned dbt, and nothing else of the environment.
    let setup = Command::new(repo().join("scripts/setup-dbt"))
        .output()
        .await
        .expect("scripts/setup-dbt runs");
    assert!(setup.status.success(), "{}", explain(&setup));
    let dbt = text(&setup.stdout).trim().to_string();
    let cwd = tempfile::tempdir().unwrap();

    // Act
    let out = selfheal()
        .arg("demo")
        .env("SELFHEAL_DBT", &dbt)
        .current_dir(cwd.path())
        .output()
        .await
        .unwrap();

    // Assert
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", explain(&out));
    for expected in [
        "🦖 Self-healing enabled — starting healing session...",
        "🦖 Self-healing started in #agent-demo",
        "selfheal: fix orders in hourly_marts (run 48213)",
        "selfheal/hourly_marts/run-48213 → main",
        "runs `dbt build` against a copy of the warehouse: it passes.",
        "From the failure notification to the pull request link in the thread:",
        "the session builds in a throwaway copy of production's DuckDB",
        "The production warehouse is byte-identical before and after the session (sha256)",
        // The loop closed: merged by a person, the next run passed.
        "was merged by @data-lead",
        "✅ hourly_marts passed again (run 48214)",
        "🦖 Self-healing enabled — ✅ resolved: hourly_marts passed again (run 48214)",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?}\n{}",
            explain(&out)
        );
    }
    assert!(
        !text(&out.stderr).contains(" INFO "),
        "the bot's logs stay quiet: {}",
        text(&out.stderr)
    );
}

/// A dbt project that just ran: `target/run_results.json`, `logs/dbt.log`
/// and the console output in `console.txt`.
fn ran_project(dir: &Path, run_results: &str) -> PathBuf {
    let fixture = repo().join("tests/fixtures/dbt/column_typo");
    std::fs::create_dir_all(dir.join("target")).unwrap();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::write(dir.join("target/run_results.json"), run_results).unwrap();
    std::fs::copy(fixture.join("dbt.log"), dir.join("logs/dbt.log")).unwrap();
    let console = dir.join("console.txt");
    std::fs::copy(fixture.join("console.plain.txt"), &console).unwrap();
    console
}

fn failing_run_results() -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/dbt/column_typo/run_results.json")).unwrap()
}

const PASSING_RUN_RESULTS: &str = r#"{"args": {"which": "build", "invocation_command": "dbt build"},
 "results": [{"unique_id": "model.jaffle_shop.orders", "status": "success"},
             {"unique_id": "test.jaffle_shop.unique_orders_order_id", "status": "pass"}]}"#;

async fn slack() -> FakeSlack {
    let slack = selfheal::demo::fake_slack().await;
    slack.add_channel(ALERTS, "data-alerts");
    slack.add_channel(HEALING, "agent-demo");
    slack
}

/// The notifier's environment: the demo project's schedules, the fake Slack.
fn notify(slack: &FakeSlack, run_logs: &Path) -> Command {
    let mut cmd = selfheal();
    cmd.arg("notify")
        .env("SLACK_APP_TOKEN", slack.app_token())
        .env("SLACK_BOT_TOKEN", slack.bot_token())
        .env("SLACK_API_URL", slack.api_url())
        .env("SELFHEAL_SCHEDULES", repo().join("data/demo"))
        .env("SELFHEAL_RUN_LOGS", run_logs)
        // The bot's own settings, shared with the notifier through one .env.
        .env("SELFHEAL_REPO", repo())
        .env("SELFHEAL_CHANNEL_INTERVAL_MS", "10");
    cmd
}

#[tokio::test]
async fn notify_stores_a_failed_run_and_posts_to_each_failure_channel() {
    // Arrange
    let slack = slack().await;
    let project = tempfile::tempdir().unwrap();
    let run_logs = tempfile::tempdir().unwrap();
    let console = ran_project(project.path(), &failing_run_results());

    // Act
    let out = notify(&slack, run_logs.path())
        .args([
            "--schedule",
            "hourly_marts",
            "--run-id",
            "4242",
            "--project",
        ])
        .arg(project.path())
        .arg("--console")
        .arg(&console)
        .current_dir(project.path())
        .output()
        .await
        .unwrap();

    // Assert: the run log is where sessions will read it.
    assert!(out.status.success(), "{}", explain(&out));
    let stored = run_logs.path().join("4242");
    for file in ["run_results.json", "dbt.log", "console.txt", "command.txt"] {
        assert!(
            stored.join(file).is_file(),
            "{file} not stored\n{}",
            explain(&out)
        );
    }
    assert_eq!(
        std::fs::read_to_string(stored.join("command.txt")).unwrap(),
        "dbt build --profiles-dir ."
    );
    // One notification per failure channel, carrying the notify block id.
    let posts = slack.calls_to("chat.postMessage");
    assert_eq!(posts.len(), 2, "{posts:#?}");
    let mut channels: Vec<String> = posts
        .iter()
        .map(|c| c.params["channel"].as_str().unwrap_or_default().to_string())
        .collect();
    channels.sort();
    assert_eq!(channels, [HEALING, ALERTS]);
    for channel in [ALERTS, HEALING] {
        let messages = slack.messages(channel);
        assert_eq!(messages.len(), 1, "{}", slack.transcript(channel));
        let m = &messages[0];
        assert!(
            m.text.starts_with(
                ":x: *dbt run failed* — schedule *hourly_marts*\nRun ID: 4242\nCommand: `dbt build --profiles-dir .`\nFailed: `stg_orders`"
            ),
            "{}",
            m.text
        );
        let blocks = m.blocks.as_ref().expect("blocks");
        assert!(
            blocks
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["type"] == "context" && b["block_id"] == "selfheal-notify"),
            "{blocks:#}"
        );
    }
    let stdout = text(&out.stdout);
    assert!(stdout.contains("#data-alerts (C0DATAALERTS)"), "{stdout}");
    assert!(stdout.contains("#agent-demo (C0AGENTDEMO)"), "{stdout}");
    slack.shutdown().await;
}

#[tokio::test]
async fn notify_stores_a_passed_run_and_posts_nothing() {
    let slack = slack().await;
    let project = tempfile::tempdir().unwrap();
    let run_logs = tempfile::tempdir().unwrap();
    ran_project(project.path(), PASSING_RUN_RESULTS);

    let out = notify(&slack, run_logs.path())
        .args([
            "--schedule",
            "hourly_marts",
            "--run-id",
            "4243",
            "--project",
        ])
        .arg(project.path())
        .output()
        .await
        .unwrap();

    assert!(out.status.success(), "{}", explain(&out));
    assert!(run_logs.path().join("4243/run_results.json").is_file());
    assert!(slack.calls_to("chat.postMessage").is_empty());
    assert!(
        text(&out.stdout).contains("Run 4243 passed; nothing posted."),
        "{}",
        explain(&out)
    );
    slack.shutdown().await;
}

#[tokio::test]
async fn notify_without_a_run_log_directory_says_which_variable_is_missing() {
    let slack = slack().await;
    let project = tempfile::tempdir().unwrap();
    ran_project(project.path(), &failing_run_results());

    let mut cmd = notify(&slack, Path::new("/unused"));
    cmd.env_remove("SELFHEAL_RUN_LOGS");
    let out = cmd
        .args([
            "--schedule",
            "hourly_marts",
            "--run-id",
            "4244",
            "--project",
        ])
        .arg(project.path())
        .current_dir(project.path())
        .output()
        .await
        .unwrap();

    assert!(!out.status.success(), "{}", explain(&out));
    assert!(
        text(&out.stderr).contains("SELFHEAL_RUN_LOGS"),
        "{}",
        explain(&out)
    );
    assert!(slack.calls_to("chat.postMessage").is_empty());
    slack.shutdown().await;
}

#[tokio::test]
async fn notify_for_an_unknown_schedule_lists_the_known_ones() {
    let slack = slack().await;
    let project = tempfile::tempdir().unwrap();
    let run_logs = tempfile::tempdir().unwrap();
    ran_project(project.path(), &failing_run_results());

    let out = notify(&slack, run_logs.path())
        .args(["--schedule", "hourly", "--run-id", "4245", "--project"])
        .arg(project.path())
        .output()
        .await
        .unwrap();

    assert!(!out.status.success(), "{}", explain(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no schedule \"hourly\"") && stderr.contains("hourly_marts, nightly_full"),
        "{stderr}"
    );
    assert!(slack.calls_to("chat.postMessage").is_empty());
    slack.shutdown().await;
}
