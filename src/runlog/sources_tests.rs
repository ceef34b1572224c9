//! The hosted sources against their local fakes, over real HTTP.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::domain::Secret;
use selfheal_fakes::dbt_cloud::{FakeDbtCloud, FakeStep};
use selfheal_fakes::paradime::{FakeCommand, FakeParadime, LogStream};

const KEY: &str = "pk_test_key_123";
const SECRET: &str = "ps_test_secret_456";
const TOKEN: &str = "dbtc_test_token_789";
const ACCOUNT: u64 = 70403;

fn fixture(case: &str, file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dbt")
        .join(case)
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        request_timeout: Duration::from_secs(5),
    }
}

fn paradime(fake: &FakeParadime, key: &str, secret: &str) -> Paradime {
    Paradime::new(&ParadimeSettings {
        endpoint: fake.endpoint(),
        api_key: Secret::new(key),
        api_secret: Secret::new(secret),
    })
    .expect("client")
    .with_retry(fast())
}

fn dbt_cloud(fake: &FakeDbtCloud, wait: Duration) -> DbtCloud {
    DbtCloud::new(&DbtCloudSettings {
        api_url: fake.base_url(),
        token: Secret::new(TOKEN),
        account_id: ACCOUNT,
        artifact_wait: wait,
    })
    .expect("client")
    .with_retry(fast())
}

/// A Bolt run: `git clone` and `dbt deps` pass, `dbt build` fails with `console`.
fn bolt_run(fake: &FakeParadime, run_id: u64, console: &str) {
    fake.add_run(
        run_id,
        "FAILED",
        vec![
            FakeCommand::stdout(11, "git clone", 0, "Cloning into 'repo'..."),
            FakeCommand::stdout(12, "dbt deps", 0, "Installing dbt_utils"),
            FakeCommand::stdout(13, "dbt build --select marts", 1, console),
        ],
    );
}

#[tokio::test]
async fn paradime_pages_the_failing_commands_log_in_order_and_parses_it() {
    // Arrange
    let fake = FakeParadime::start(KEY, SECRET).await.expect("fake");
    let console = fixture("column_typo", "console.plain.txt");
    bolt_run(&fake, 48213, &console);
    fake.set_page_size(7);
    let source = Source::Paradime(paradime(&fake, KEY, SECRET));

    // Act
    let log = source.fetch("48213").await.expect("fetched");

    // Assert: every line arrived, in order, over several pages.
    let expected = parse(
        "48213",
        &Artifacts {
            console: Some(console.clone()),
            ..Artifacts::default()
        },
    );
    assert_eq!(log.raw, expected.raw);
    let pages = fake
        .requests()
        .iter()
        .filter(|r| r.field().as_deref() == Some("boltCommand"))
        .count();
    assert_eq!(pages, console.lines().count().div_ceil(7));
    assert!(pages > 3, "{pages} pages");
    // Only the failing command's log is read; the cursor is handed back.
    let requests = fake.requests();
    assert!(requests
        .iter()
        .filter(|r| r.field().as_deref() == Some("boltCommand"))
        .all(|r| r.variables()["commandId"] == 13));
    assert_eq!(requests[1].variables()["cursor"], serde_json::Value::Null);
    assert_eq!(requests[2].variables()["cursor"], "line:7");
    assert!(requests
        .iter()
        .all(|r| r.authorized() && r.method == "POST"));

    assert_eq!(log.command.as_deref(), Some("dbt build --select marts"));
    assert_eq!(log.failures, expected.failures);
    let first = log.failures.first().expect("a failing node");
    assert_eq!(first.name, "stg_orders");
    assert_eq!(first.kind, ErrorKind::Database);
    assert_eq!(
        log.origin,
        format!("paradime:{}", http::host_of(&fake.endpoint()))
    );
    assert!(log.origin.starts_with("paradime:127.0.0.1:"));
}

#[tokio::test]
async fn paradime_interleaves_stderr_and_falls_back_to_stdout_fields() {
    let fake = FakeParadime::start(KEY, SECRET).await.expect("fake");
    fake.add_run(
        7,
        "ERROR",
        vec![FakeCommand {
            id: 1,
            command: "dbt run".into(),
            return_code: Some(2),
            lines: vec![
                (LogStream::Stdout, "Running with dbt=1.10.0".into()),
                (LogStream::Stderr, "Encountered an error:".into()),
                (LogStream::Stdout, "Done.".into()),
            ],
        }],
    );
    fake.set_page_size(2);
    let log = paradime(&fake, KEY, SECRET)
        .fetch("7")
        .await
        .expect("fetched");
    assert_eq!(
        log.raw,
        "Running with dbt=1.10.0\nEncountered an error:\nDone."
    );

    // An API without the paging field still yields the command's output.
    fake.without_log_paging();
    let log = paradime(&fake, KEY, SECRET)
        .fetch("7")
        .await
        .expect("fetched");
    assert!(
        log.raw.contains("Running with dbt=1.10.0\nDone."),
        "{}",
        log.raw
    );
    assert!(log.raw.contains("Encountered an error:"), "{}", log.raw);
}

#[tokio::test]
async fn paradime_bad_credentials_give_a_clear_error_without_the_secret() {
    let fake = FakeParadime::start(KEY, SECRET).await.expect("fake");
    bolt_run(&fake, 1, "x");
    let wrong = "ps_wrong_secret_000";
    let err = paradime(&fake, KEY, wrong)
        .fetch("1")
        .await
        .expect_err("rejected");
    let text = format!("{err:#} {err:?}");
    assert!(
        text.contains("Paradime rejected the API key and secret (HTTP 401)"),
        "{text}"
    );
    for secret in [KEY, wrong, SECRET] {
        assert!(!text.contains(secret), "{text}");
    }
    assert_eq!(fake.requests().len(), 1, "401 is not retried");
    assert!(!format!("{:?}", paradime(&fake, KEY, wrong)).contains(wrong));
}

#[tokio::test]
async fn paradime_5xx_is_retried_and_gives_up_after_the_bounded_attempts() {
    let fake = FakeParadime::start(KEY, SECRET).await.expect("fake");
    bolt_run(&fake, 5, &fixture("column_typo", "console.plain.txt"));
    fake.fail_next(502, 2);
    let log = paradime(&fake, KEY, SECRET)
        .fetch("5")
        .await
        .expect("fetched after retries");
    assert!(!log.failures.is_empty());
    assert_eq!(
        fake.requests()[..3]
            .iter()
            .filter(|r| r.field().as_deref() == Some("boltRunStatus"))
            .count(),
        3
    );

    fake.fail_next(503, 3);
    let err = paradime(&fake, KEY, SECRET)
        .fetch("5")
        .await
        .expect_err("gave up");
    assert!(
        format!("{err:#}").contains("Paradime answered HTTP 503"),
        "{err:#}"
    );
}

#[tokio::test]
async fn paradime_unknown_and_non_numeric_run_ids_are_clear_errors() {
    let fake = FakeParadime::start(KEY, SECRET).await.expect("fake");
    let p = paradime(&fake, KEY, SECRET);
    let err = p.fetch("999").await.expect_err("unknown");
    assert_eq!(
        format!("{err:#}"),
        "Paradime has no Bolt run 999: Run not found"
    );
    let err = p
        .fetch("manual__2024-01-01")
        .await
        .expect_err("not numeric");
    assert_eq!(
        err.to_string(),
        "Paradime Bolt run ids are numbers; \"manual__2024-01-01\" is not one"
    );
    assert_eq!(fake.requests().len(), 1, "no request for a non-numeric id");
}

#[tokio::test]
async fn dbt_cloud_waits_for_the_lagging_artifact_and_parses_the_test_failure() {
    // Arrange
    let fake = FakeDbtCloud::start(TOKEN, ACCOUNT).await.expect("fake");
    let console = fixture("not_null_failure", "console.plain.txt");
    fake.add_run(
        9001,
        vec![
            FakeStep::new("Clone git repository", "Success", "Cloned"),
            FakeStep::new("Invoke dbt with `dbt deps`", "Success", "Installed"),
            FakeStep::new("Invoke dbt with `dbt build`", "Error", &console),
        ],
        Some(fixture("not_null_failure", "run_results.json")),
    );
    fake.artifact_ready_after(9001, 2);
    let source = Source::DbtCloud(dbt_cloud(&fake, Duration::from_secs(5)));

    // Act
    let log = source.fetch("9001").await.expect("fetched");

    // Assert
    assert_eq!(fake.artifact_requests(9001), 3, "two 404s, then the file");
    let first = log.failures.first().expect("a failing node");
    assert_eq!(first.kind, ErrorKind::TestFailure);
    assert!(first
        .compiled_code
        .as_deref()
        .is_some_and(|sql| !sql.trim().is_empty()));
    assert_eq!(log.command.as_deref(), Some("dbt build"));
    assert_eq!(log.origin, "dbt_cloud:run 9001");
    assert!(
        !log.raw.contains("[selfheal]"),
        "no note when the artifact came"
    );
    let requests = fake.requests();
    assert!(requests.iter().all(|r| r.authorized()));
    assert_eq!(
        requests[0].path,
        format!("/api/v2/accounts/{ACCOUNT}/runs/9001/")
    );
    assert_eq!(
        requests[0].query.as_deref(),
        Some("include_related=%5B%22run_steps%22%5D")
    );
}

#[tokio::test]
async fn dbt_cloud_without_artifacts_in_time_reads_the_step_logs_alone_and_says_so() {
    let fake = FakeDbtCloud::start(TOKEN, ACCOUNT).await.expect("fake");
    let console = fixture("column_typo", "console.plain.txt");
    fake.add_run(
        42,
        vec![FakeStep::new(
            "Invoke dbt with `dbt build --select marts`",
            "Error",
            &console,
        )],
        Some(fixture("column_typo", "run_results.json")),
    );
    fake.artifact_ready_after(42, 1_000);
    let started = std::time::Instant::now();
    let log = dbt_cloud(&fake, Duration::from_millis(60))
        .fetch("42")
        .await
        .expect("a run log from the step logs");
    assert!(started.elapsed() < Duration::from_secs(3));
    let polls = fake.artifact_requests(42);
    assert!(
        (2..=20).contains(&polls),
        "{polls} polls: bounded, with backoff"
    );
    assert!(
        log.raw
            .starts_with("[selfheal] dbt Cloud's artifacts not available after 60ms"),
        "{}",
        &log.raw[..200.min(log.raw.len())]
    );
    let first = log.failures.first().expect("failing node from the console");
    assert_eq!(first.name, "stg_orders");
    assert_eq!(log.command.as_deref(), Some("dbt build --select marts"));
}

#[tokio::test]
async fn dbt_cloud_errors_are_clear_and_never_show_the_token() {
    let fake = FakeDbtCloud::start(TOKEN, ACCOUNT).await.expect("fake");
    fake.add_run(
        1,
        vec![FakeStep::new("Invoke dbt with `dbt run`", "Error", "x")],
        None,
    );

    let wrong = DbtCloud::new(&DbtCloudSettings {
        api_url: fake.base_url(),
        token: Secret::new("dbtc_wrong_token_000"),
        account_id: ACCOUNT,
        artifact_wait: Duration::from_millis(10),
    })
    .expect("client")
    .with_retry(fast());
    let err = format!("{:#}", wrong.fetch("1").await.expect_err("rejected"));
    assert!(
        err.starts_with("dbt Cloud rejected the API token (HTTP 401): Invalid token."),
        "{err}"
    );
    assert!(
        !err.contains("dbtc_wrong_token_000") && !err.contains(TOKEN),
        "{err}"
    );

    let client = dbt_cloud(&fake, Duration::from_millis(10));
    let err = format!("{:#}", client.fetch("2").await.expect_err("no such run"));
    assert!(
        err.starts_with(&format!("dbt Cloud has no run 2 in account {ACCOUNT}")),
        "{err}"
    );
    let err = client
        .fetch("abc")
        .await
        .expect_err("not numeric")
        .to_string();
    assert_eq!(err, "dbt Cloud run ids are numbers; \"abc\" is not one");

    // 5xx and 429 are retried.
    fake.fail_next(503, 1);
    fake.fail_next(429, 1);
    let log = client.fetch("1").await.expect("fetched after retries");
    assert!(
        log.raw
            .contains("[selfheal] dbt Cloud's artifacts not available after 10ms"),
        "{}",
        log.raw
    );
    assert!(!format!("{client:?}").contains(TOKEN));
}
