//! The hosted sources against their local fakes, over real HTTP.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::paradime::{
    COMMAND_LOGS_QUERY, FIRST_LOG_CURSOR, RETRY_ALL_RUN_MUTATION, RETRY_FROM_FAILURE_MUTATION,
    RUN_COMMANDS_QUERY, RUN_STATE_QUERY,
};
use super::*;
use crate::domain::Secret;
use selfheal_fakes::dbt_cloud::FinalState as CloudEnds;
use selfheal_fakes::dbt_cloud::{FakeDbtCloud, FakeStep};
use selfheal_fakes::paradime::{
    FakeCommand, FakeParadime, FinalState, LogStream, ParadimeCredential,
};

const KEY: &str = "pk_test_key_123";
const SECRET: &str = "ps_test_secret_456";
const WORKSPACE_TOKEN: &str = "prdm_wsp_test_token_321";
const COMPANY_TOKEN: &str = "prdm_cmp_test_token_654";
const WORKSPACE_UID: &str = "ws_3f2a9c";
const TOKEN: &str = "dbtc_test_token_789";
const ACCOUNT: u64 = 70403;

/// Fails when `text` (an error, all its causes) carries any credential.
fn assert_no_credential(text: &str) {
    for secret in [KEY, SECRET, WORKSPACE_TOKEN, COMPANY_TOKEN, TOKEN] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

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
    paradime_with(
        fake,
        ParadimeAuth::KeyAndSecret {
            key: Secret::new(key),
            secret: Secret::new(secret),
        },
    )
}

fn paradime_with(fake: &FakeParadime, auth: ParadimeAuth) -> Paradime {
    Paradime::new(&ParadimeSettings {
        endpoint: fake.endpoint(),
        auth,
    })
    .expect("client")
    .with_retry(fast())
}

/// A fake that takes both token forms (and no legacy key).
async fn token_fake() -> FakeParadime {
    FakeParadime::start_accepting(&[
        ParadimeCredential::WorkspaceToken(WORKSPACE_TOKEN.into()),
        ParadimeCredential::CompanyToken {
            token: COMPANY_TOKEN.into(),
            workspace_uid: WORKSPACE_UID.into(),
        },
    ])
    .await
    .expect("fake")
}

fn workspace_token() -> ParadimeAuth {
    ParadimeAuth::WorkspaceToken(Secret::new(WORKSPACE_TOKEN))
}

fn company_token(workspace_uid: &str) -> ParadimeAuth {
    ParadimeAuth::CompanyToken {
        token: Secret::new(COMPANY_TOKEN),
        workspace_uid: workspace_uid.into(),
    }
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
        .filter(|r| r.field().as_deref() == Some("boltCommandLogs"))
        .count();
    assert_eq!(pages, console.lines().count().div_ceil(7));
    assert!(pages > 3, "{pages} pages");
    // Only the failing command's log is read, from the SDK's first cursor;
    // the cursor is handed back.
    let requests = fake.requests();
    assert!(requests
        .iter()
        .filter(|r| r.field().as_deref() == Some("boltCommandLogs"))
        .all(|r| r.variables()["commandId"] == 13));
    assert_eq!(
        requests[0].variables(),
        serde_json::json!({ "runId": 48213 })
    );
    assert_eq!(
        requests[1].variables(),
        serde_json::json!({ "commandId": 13, "cursor": "0:0" })
    );
    assert_eq!(requests[2].variables()["cursor"], "7:0");
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

    // A log Paradime will not page still yields the command's output.
    fake.graphql_error_next("boltCommandLogs", "Logs for command 1 have expired");
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
        text.contains("Paradime rejected the API key and secret (HTTP 401): check PARADIME_API_KEY and PARADIME_API_SECRET"),
        "{text}"
    );
    assert!(!text.contains(wrong), "{text}");
    assert_no_credential(&text);
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
async fn paradime_takes_workspace_and_company_tokens_as_the_sdk_sends_them() {
    // Arrange: a Paradime that takes both token forms, and no legacy key.
    let fake = token_fake().await;
    bolt_run(&fake, 48213, &fixture("column_typo", "console.plain.txt"));

    for auth in [workspace_token(), company_token(WORKSPACE_UID)] {
        // Act
        let source = Source::Paradime(paradime_with(&fake, auth));
        let log = source.fetch("48213").await.expect("fetched");

        // Assert: the run log, and `selfheal check`'s probe (run 1 does
        // not exist, which is an answer).
        assert_eq!(
            log.failures.first().map(|f| f.name.as_str()),
            Some("stg_orders")
        );
        assert_eq!(source.probe().await.expect("answers"), "answers");
    }
    assert!(fake.requests().iter().all(|r| r.authorized()));

    let revoked = "prdm_wsp_revoked_000";
    let cases = [
        (
            company_token("ws_other"),
            "Paradime rejected the company token (HTTP 401): check PARADIME_API_SECRET and PARADIME_WORKSPACE_UID",
        ),
        (
            ParadimeAuth::WorkspaceToken(Secret::new(revoked)),
            "Paradime rejected the workspace token (HTTP 401): check PARADIME_API_SECRET",
        ),
        (
            ParadimeAuth::KeyAndSecret {
                key: Secret::new(KEY),
                secret: Secret::new(SECRET),
            },
            "Paradime rejected the API key and secret (HTTP 401): check PARADIME_API_KEY and PARADIME_API_SECRET",
        ),
    ];
    for (auth, want) in cases {
        let source = Source::Paradime(paradime_with(&fake, auth));
        let err = source.probe().await.expect_err("rejected");
        let text = format!("{err:#} {err:?}");
        assert!(text.contains(want), "{text}");
        assert!(!text.contains(revoked), "{text}");
        assert_no_credential(&text);
    }
}

#[tokio::test]
async fn paradime_fake_refuses_the_documents_selfheal_used_to_guess() {
    // The documents selfheal sent before it spoke the SDK's: a run query
    // asking for an `ok` the schema lacks, and a guessed log field.
    const GUESSED_RUN: &str = "query BoltRunStatus($runId: Int!) { boltRunStatus(runId: $runId) { ok state commands { id command startDttm endDttm stdout stderr returnCode } } }";
    const GUESSED_LOGS: &str = "query BoltCommandLogs($commandId: Int!, $cursor: String) { boltCommand(commandId: $commandId) { logs(cursor: $cursor) { lines { stream line } cursor finished } } }";
    let fake = FakeParadime::start(KEY, SECRET).await.expect("fake");
    bolt_run(&fake, 48213, "x");
    fake.in_schedule(48213, "hourly_marts");
    let client = paradime(&fake, KEY, SECRET);
    let refused = |field: &'static str, query: &'static str, vars: serde_json::Value| {
        let client = &client;
        async move {
            client
                .query(query, field, vars)
                .await
                .expect("an HTTP 200")
                .expect_err("a GraphQL error")
        }
    };

    let err = refused("boltRunStatus", GUESSED_RUN, json!({ "runId": 48213 })).await;
    assert_eq!(
        err.to_string(),
        "Paradime answered boltRunStatus with an error: Cannot query field \"ok\" on \"boltRunStatus\"."
    );
    let err = refused(
        "boltCommand",
        GUESSED_LOGS,
        json!({ "commandId": 13, "cursor": null }),
    )
    .await;
    assert_eq!(
        err.message,
        "Cannot query field \"boltCommand\" on type \"Query\"."
    );
    // The SDK's document with a variable of the wrong type is refused too.
    let err = refused(
        "boltRunStatus",
        RUN_STATE_QUERY,
        json!({ "runId": "48213" }),
    )
    .await;
    assert_eq!(
        err.message,
        "Variable \"$runId\" got invalid value \"48213\"; Int cannot represent \"48213\"."
    );

    // Every document selfheal holds is one the SDK sends: each is answered.
    let answered = [
        (
            RUN_COMMANDS_QUERY,
            "boltRunStatus",
            json!({ "runId": 48213 }),
        ),
        (RUN_STATE_QUERY, "boltRunStatus", json!({ "runId": 48213 })),
        (
            COMMAND_LOGS_QUERY,
            "boltCommandLogs",
            json!({ "commandId": 13, "cursor": FIRST_LOG_CURSOR }),
        ),
        (
            RETRY_FROM_FAILURE_MUTATION,
            "retryBoltRunFromFailure",
            json!({ "slug": "hourly_marts" }),
        ),
        (
            RETRY_ALL_RUN_MUTATION,
            "retryAllBoltRun",
            json!({ "scheduleRunId": 48213 }),
        ),
    ];
    for (document, field, vars) in answered {
        let data = client
            .query(document, field, vars)
            .await
            .expect("an HTTP 200")
            .unwrap_or_else(|e| panic!("{field}: {e}"));
        assert!(!data.is_null(), "{field}");
    }
    assert_eq!(fake.retries_of(48213), [48214, 48215]);
}

/// The story of a retry, for any hosted source: failed run `run_id` reads
/// as `Failed(word)`; its retry names `new`, a run in progress for `polls`
/// status polls and then passed.
async fn retry_passes_after(source: &Source, run_id: &str, word: &str, new: &str, polls: usize) {
    // Arrange
    assert!(source.can_retry());
    let state = source.run_state(run_id).await.expect("a state");
    assert_eq!(state, RunState::Failed(word.into()));

    // Act
    let retried = source.retry(run_id).await.expect("retried");

    // Assert
    assert_eq!(retried, new);
    let mut states = vec![];
    for _ in 0..=polls {
        states.push(source.run_state(&retried).await.expect("a state"));
    }
    let mut want = vec![RunState::InProgress; polls];
    want.push(RunState::Passed);
    assert_eq!(states, want);
}

#[tokio::test]
async fn paradime_retry_starts_a_new_run_whose_state_moves_to_the_final_one() {
    let fake = token_fake().await;
    bolt_run(&fake, 48213, "x");
    fake.on_retry(48213, FinalState::Success, 2);
    let source = Source::Paradime(paradime_with(&fake, company_token(WORKSPACE_UID)));

    retry_passes_after(&source, "48213", "FAILED", "48214", 2).await;

    // A new run, asked for once, with the SDK's variables.
    assert_eq!(fake.retries_of(48213), [48214]);
    assert_eq!(fake.retry_calls(), 1);
    let retry = fake
        .requests()
        .into_iter()
        .find(|r| r.field().as_deref() == Some("retryBoltRun"))
        .expect("the retry");
    assert_eq!(retry.variables(), json!({ "scheduleRunId": 48213 }));

    // A retry that does not pass says so in Bolt's word.
    fake.add_run(
        7,
        "ERROR",
        vec![FakeCommand::stdout(70, "dbt run", 2, "boom")],
    );
    fake.on_retry(7, FinalState::Canceled, 0);
    let again = source.retry("7").await.expect("retried");
    assert_eq!(
        source.run_state(&again).await.expect("a state"),
        RunState::Failed("CANCELED".into())
    );
}

#[tokio::test]
async fn paradime_refusals_and_graphql_errors_name_paradimes_message() {
    let fake = FakeParadime::start(KEY, SECRET).await.expect("fake");
    fake.add_run(
        5,
        "SUCCESS",
        vec![FakeCommand::stdout(1, "dbt build", 0, "ok")],
    );
    fake.add_run(6, "QUEUED", vec![]);
    let source = Source::Paradime(paradime(&fake, KEY, SECRET));
    let error = |e: anyhow::Error| {
        let text = format!("{e:#}");
        assert_no_credential(&format!("{text} {e:?}"));
        text
    };

    let err = error(source.retry("5").await.expect_err("refused"));
    assert_eq!(err, "Paradime refused to retry Bolt run 5: Run 5 cannot be retried: it is SUCCESS, and only FAILED or ERROR runs can be");
    assert!(fake.retries_of(5).is_empty());
    let err = error(source.retry("404").await.expect_err("unknown"));
    assert_eq!(err, "Paradime refused to retry Bolt run 404: Run not found");
    fake.graphql_error_next("retryBoltRun", "Retries are turned off for this workspace");
    let err = error(source.retry("5").await.expect_err("refused"));
    assert_eq!(
        err,
        "Paradime refused to retry Bolt run 5: Retries are turned off for this workspace"
    );

    // A GraphQL error (HTTP 200 with `errors`) names Paradime's message,
    // scrubbed of the credentials.
    fake.graphql_error_next("boltRunStatus", &format!("Internal error near {SECRET}"));
    let err = error(source.run_state("5").await.expect_err("a GraphQL error"));
    assert_eq!(
        err,
        "asking Paradime for the state of Bolt run 5: Paradime answered boltRunStatus with an error: Internal error near ***"
    );
    let err = error(source.run_state("6").await.expect_err("unknown state"));
    assert_eq!(
        err,
        "Paradime reported Bolt run 6 as \"QUEUED\", a state selfheal does not know"
    );
}

#[tokio::test]
async fn paradime_retry_is_asked_again_after_a_429_but_never_after_a_5xx() {
    let fake = FakeParadime::start(KEY, SECRET).await.expect("fake");
    bolt_run(&fake, 9, "x");
    let source = Source::Paradime(paradime(&fake, KEY, SECRET));
    let sent = || {
        fake.requests()
            .iter()
            .filter(|r| r.field().as_deref() == Some("retryBoltRun"))
            .count()
    };

    // A 502 may come after Paradime started the run: not asked again.
    fake.fail_next(502, 1);
    let err = format!("{:#}", source.retry("9").await.expect_err("a 502"));
    assert!(
        err.starts_with(
            "asking Paradime to retry Bolt run 9: Paradime answered HTTP 502 to retryBoltRun: "
        ) && err.ends_with("; it may have acted on it, so it was not sent again"),
        "{err}"
    );
    assert_eq!((sent(), fake.retry_calls()), (1, 0));

    // A 429 comes before Paradime acts: asked again.
    fake.fail_next(429, 2);
    let new = source.retry("9").await.expect("retried after the 429s");
    assert_eq!((sent(), fake.retry_calls()), (4, 1));
    assert_eq!(fake.retries_of(9), [new.parse::<u64>().expect("an id")]);

    // Reads are still asked again after a 5xx.
    fake.fail_next(503, 1);
    assert_eq!(
        source.run_state("9").await.expect("a state"),
        RunState::Failed("FAILED".into())
    );
}

/// A server that accepts connections and never answers; how many it accepted.
async fn silent_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, SeqCst);
            held.push(stream);
        }
    });
    (format!("http://{addr}/api/v1/graphql"), accepted)
}

#[tokio::test]
async fn a_retry_that_times_out_is_not_sent_again_and_an_unreachable_host_is_said_plainly() {
    let (endpoint, accepted) = silent_server().await;
    let policy = RetryPolicy {
        request_timeout: Duration::from_millis(200),
        ..fast()
    };
    let client = |endpoint: String| {
        Paradime::new(&ParadimeSettings {
            endpoint,
            auth: workspace_token(),
        })
        .expect("client")
        .with_retry(policy.clone())
    };
    let source = Source::Paradime(client(endpoint.clone()));

    let err = format!("{:#}", source.retry("9").await.expect_err("timed out"));
    assert_eq!(
        err,
        "asking Paradime to retry Bolt run 9: the request may have reached the server, so it was not sent again: no answer within 0.2s"
    );
    assert_eq!(accepted.load(SeqCst), 1, "sent once");
    // A read that times out is asked again.
    source.run_state("9").await.expect_err("timed out");
    assert_eq!(accepted.load(SeqCst), 1 + fast().max_attempts as usize);

    // Nothing listens: nothing was sent, and the error says why plainly.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = closed.local_addr().expect("an address");
    drop(closed);
    let source = Source::Paradime(client(format!("http://{addr}/api/v1/graphql")));
    let err = format!("{:#}", source.retry("9").await.expect_err("refused"));
    assert_eq!(
        err,
        format!("asking Paradime to retry Bolt run 9: cannot reach {addr}: connection refused")
    );
}

#[tokio::test]
async fn a_run_log_folder_can_neither_retry_nor_report_states() {
    let source = Source::Dir(PathBuf::from("/nonexistent/run-logs"));
    assert!(!source.can_retry());
    let err = source.retry("1").await.expect_err("no scheduler");
    assert_eq!(err.to_string(), "a run-log folder cannot re-run a run");
    let err = source.run_state("1").await.expect_err("no scheduler");
    assert_eq!(err.to_string(), "a run-log folder cannot report run states");
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

/// A failed dbt Cloud run of `job_id` with one errored `dbt build` step.
fn failed_cloud_run(fake: &FakeDbtCloud, run_id: u64, job_id: u64, run_results: bool) {
    fake.add_run(
        run_id,
        vec![FakeStep::new(
            "Invoke dbt with `dbt build`",
            "Error",
            "boom",
        )],
        run_results.then(|| fixture("not_null_failure", "run_results.json")),
    );
    fake.in_job(run_id, job_id);
}

#[tokio::test]
async fn dbt_cloud_retry_starts_a_new_run_whose_status_moves_to_the_final_one() {
    let fake = FakeDbtCloud::start(TOKEN, ACCOUNT).await.expect("fake");
    failed_cloud_run(&fake, 9001, 1, true);
    fake.on_retry(9001, CloudEnds::Success, 3);
    let source = Source::DbtCloud(dbt_cloud(&fake, Duration::from_millis(10)));

    retry_passes_after(&source, "9001", "20 Error", "9002", 3).await;

    // A new run, asked for once, at dbt Cloud's retry endpoint.
    assert_eq!(fake.retries_of(9001), [9002]);
    assert_eq!(fake.retry_calls(), 1);
    let post = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("the retry");
    assert_eq!(
        post.path,
        format!("/api/v2/accounts/{ACCOUNT}/runs/9001/retry/")
    );
    assert!(post.authorized());

    fake.add_run(
        9100,
        vec![FakeStep::new(
            "Invoke dbt with `dbt build`",
            "Cancelled",
            "",
        )],
        None,
    );
    assert_eq!(
        source.run_state("9100").await.expect("a state"),
        RunState::Failed("30 Cancelled".into())
    );
}

#[tokio::test]
async fn dbt_cloud_refusals_name_the_reason_code() {
    let fake = FakeDbtCloud::start(TOKEN, ACCOUNT).await.expect("fake");
    failed_cloud_run(&fake, 1, 1, true);
    failed_cloud_run(&fake, 2, 1, true); // job 1's latest run
    fake.add_run(
        3,
        vec![FakeStep::new(
            "Invoke dbt with `dbt build`",
            "Success",
            "ok",
        )],
        Some("{}".into()),
    );
    fake.in_job(3, 3);
    failed_cloud_run(&fake, 4, 4, false);
    failed_cloud_run(&fake, 5, 5, true);
    fake.refuse_retry(5, "RETRY_UNSUPPORTED_CMD");
    let source = Source::DbtCloud(dbt_cloud(&fake, Duration::from_millis(10)));

    let cases = [
        (
            1,
            "(RETRY_NOT_LATEST_RUN): it is not the latest run of its job",
        ),
        (3, "(RETRY_NOT_FAILED_RUN): it did not fail"),
        (
            4,
            "(RETRY_NO_RUN_RESULTS): it left no run_results.json to retry from",
        ),
        (5, "(RETRY_UNSUPPORTED_CMD): its command cannot be retried"),
    ];
    for (run, why) in cases {
        let err = source.retry(&run.to_string()).await.expect_err("refused");
        let text = format!("{err:#}");
        assert_eq!(text, format!("dbt Cloud refused to retry run {run} {why}"));
        assert_no_credential(&format!("{text} {err:?}"));
    }
    assert_eq!(fake.retry_calls(), 4);
    assert!([1, 3, 4, 5].iter().all(|r| fake.retries_of(*r).is_empty()));

    let err = format!("{:#}", source.retry("77").await.expect_err("no such run"));
    assert_eq!(
        err,
        format!(
            "dbt Cloud has no run 77 in account {ACCOUNT}: The requested resource was not found."
        )
    );
    let wrong = DbtCloud::new(&DbtCloudSettings {
        api_url: fake.base_url(),
        token: Secret::new("dbtc_wrong_token_000"),
        account_id: ACCOUNT,
        artifact_wait: Duration::from_millis(10),
    })
    .expect("client")
    .with_retry(fast());
    let err = wrong.retry("2").await.expect_err("rejected");
    let text = format!("{err:#} {err:?}");
    assert!(
        text.starts_with("dbt Cloud rejected the API token (HTTP 401): Invalid token.; check DBT_CLOUD_API_TOKEN"),
        "{text}"
    );
    assert!(!text.contains("dbtc_wrong_token_000"), "{text}");
    assert_no_credential(&text);
}

#[tokio::test]
async fn dbt_cloud_retry_is_asked_again_after_a_429_but_never_after_a_5xx() {
    let fake = FakeDbtCloud::start(TOKEN, ACCOUNT).await.expect("fake");
    failed_cloud_run(&fake, 9001, 1, true);
    let source = Source::DbtCloud(dbt_cloud(&fake, Duration::from_millis(10)));
    let sent = || {
        fake.requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    };

    fake.fail_next(503, 1);
    let err = format!("{:#}", source.retry("9001").await.expect_err("a 503"));
    assert_eq!(
        err,
        "dbt Cloud answered HTTP 503 to the retry of run 9001: The service is temporarily unavailable.; it may have started a run anyway, so it was not asked again"
    );
    assert_eq!((sent(), fake.retry_calls()), (1, 0));

    fake.fail_next(429, 1);
    assert_eq!(source.retry("9001").await.expect("retried"), "9002");
    assert_eq!((sent(), fake.retry_calls()), (3, 1));
}

#[tokio::test]
async fn each_scheduler_says_whether_a_later_run_of_the_schedule_passed() {
    // Paradime: the schedule's runs, by slug.
    let bolt = FakeParadime::start(KEY, SECRET).await.expect("fake");
    bolt_run(&bolt, 100, "Database Error\n  boom");
    bolt.in_schedule(100, "hourly-marts");
    let client = Source::Paradime(paradime(&bolt, KEY, SECRET));
    assert_eq!(
        client
            .passed_after("100", Some("hourly-marts"))
            .await
            .unwrap(),
        None
    );
    bolt.add_run(101, "FAILED", vec![]);
    bolt.add_run(102, "SUCCESS", vec![]);
    bolt.add_run(103, "SUCCESS", vec![]);
    bolt.add_run(104, "SUCCESS", vec![]);
    for run in [101, 102, 103] {
        bolt.in_schedule(run, "hourly-marts");
    }
    // 104 is another schedule's; the first later pass of this one is 102.
    assert_eq!(
        client
            .passed_after("100", Some("hourly-marts"))
            .await
            .unwrap(),
        Some("102".into())
    );
    // Without a slug there is nothing to ask.
    assert_eq!(client.passed_after("100", None).await.unwrap(), None);

    // dbt Cloud: the job's runs, found from the failed run.
    let cloud = FakeDbtCloud::start(TOKEN, ACCOUNT).await.expect("fake");
    let failed = || {
        vec![FakeStep::new(
            "Invoke dbt with `dbt build`",
            "Error",
            "boom",
        )]
    };
    let passed = || {
        vec![FakeStep::new(
            "Invoke dbt with `dbt build`",
            "Success",
            "ok",
        )]
    };
    cloud.add_run(500, failed(), None);
    cloud.add_run(501, passed(), None);
    cloud.add_run(502, passed(), None);
    cloud.in_job(500, 9);
    cloud.in_job(502, 9);
    let client = Source::DbtCloud(dbt_cloud(&cloud, Duration::from_millis(10)));
    assert_eq!(
        client.passed_after("500", None).await.unwrap(),
        Some("502".into()),
        "501 is another job's"
    );

    // A run-log folder cannot tell.
    let dir = Source::Dir(PathBuf::from("/nonexistent"));
    assert_eq!(dir.passed_after("1", Some("x")).await.unwrap(), None);
}
