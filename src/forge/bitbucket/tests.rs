//! The Bitbucket forge against the local fake Bitbucket Cloud and on
//! Bitbucket's recorded answers: what goes over the wire, how each answer
//! becomes a [`ForgeError`], and that nothing ever merges, approves or declines.

use std::time::{Duration, Instant};

use selfheal_fakes::bitbucket::FakeBitbucket;
use selfheal_fakes::server::AuthSeen;

use super::*;
use crate::domain::PrOptions;
use crate::forge::{Forge, Opened};

const TOKEN: &str = "ATCTT3xFfGN0faketoken0123456789";
const ANN: &str = "{7a1e0c4e-0000-4000-8000-00000000a001}";
const BOB: &str = "{7a1e0c4e-0000-4000-8000-00000000b002}";

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        max_wait: Duration::from_secs(5),
        initial_backoff: Duration::from_millis(10),
        request_timeout: Duration::from_secs(5),
    }
}

/// A fake Bitbucket for `acme/dbt` and a forge pointed at it.
async fn spawn() -> (FakeBitbucket, Forge) {
    let fake = FakeBitbucket::start(TOKEN, "acme", "dbt")
        .await
        .expect("fake starts");
    let forge = forge(&fake, "acme/dbt", TOKEN);
    (fake, forge)
}

fn forge(fake: &FakeBitbucket, repo: &str, token: &str) -> Forge {
    let bitbucket = Bitbucket::new(&fake.api_base(), repo, ForgeToken::new(token)).expect("client");
    Forge::Bitbucket(bitbucket.with_retry(fast_retries()))
}

fn pr_request(head: &str) -> PrRequest {
    PrRequest {
        head: head.to_string(),
        base: "main".to_string(),
        title: "fix(orders): cast id to bigint".to_string(),
        body: "The hourly_marts run 48213 failed; this fixes it.".to_string(),
        options: PrOptions::default(),
    }
}

async fn open(forge: &Forge, head: &str) -> PullRequest {
    match forge.open_pr(&pr_request(head)).await.expect("opened") {
        Opened::Pr(pr) => pr,
        other => panic!("expected a pull request, got {other:?}"),
    }
}

#[tokio::test]
async fn opening_a_pr_sends_bitbuckets_request_with_the_reviewers_it_knows() {
    // Arrange
    let (fake, forge) = spawn().await;
    fake.add_member(BOB, "bob", "557058:bob");
    let mut req = pr_request("selfheal/hourly_marts/run-48213");
    req.options = PrOptions {
        draft: true,
        reviewers: vec!["Reviewer-Ann".into(), BOB.into(), "ghost".into()],
        labels: vec!["selfheal".into()],
    };

    // Act
    let opened = forge.open_pr(&req).await.expect("opened");

    // Assert
    let Opened::Pr(pr) = opened else {
        panic!("a pull request")
    };
    assert_eq!(pr.number, 1);
    assert_eq!(
        pr.url,
        format!("{}/acme/dbt/pull-requests/1", fake.web_base())
    );
    assert_eq!(
        (pr.head.as_str(), pr.base.as_str(), pr.state.as_str()),
        ("selfheal/hourly_marts/run-48213", "main", "open")
    );
    let requests = fake.requests();
    let asked: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        asked,
        [
            ("GET", "/2.0/repositories/acme/dbt/pullrequests"),
            ("GET", "/2.0/workspaces/acme/members"),
            ("POST", "/2.0/repositories/acme/dbt/pullrequests"),
        ]
    );
    let post = &requests[2];
    assert_eq!(post.auth, AuthSeen::Valid);
    assert!(!format!("{post:?}").contains(TOKEN));
    assert_eq!(
        post.json().expect("json body"),
        serde_json::json!({
            "title": "fix(orders): cast id to bigint",
            "source": { "branch": { "name": "selfheal/hourly_marts/run-48213" } },
            "destination": { "branch": { "name": "main" } },
            "description": "The hourly_marts run 48213 failed; this fixes it.",
            "reviewers": [{ "uuid": BOB }, { "uuid": ANN }],
        }),
        "no draft flag, no labels, the ghost skipped"
    );
    assert_eq!(fake.prs()[0].reviewers, [BOB, ANN]);
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_second_open_for_the_same_branch_returns_the_open_pr_and_never_makes_two() {
    let (fake, forge) = spawn().await;
    let first = open(&forge, "selfheal/x").await;

    let again = open(&forge, "selfheal/x").await;
    let other = open(&forge, "selfheal/x-2").await;

    assert_eq!(again, first);
    assert_eq!(
        other.number, 2,
        "a branch containing the other's name is another"
    );
    let prs = fake.prs();
    assert_eq!(prs.len(), 2);
    assert_eq!(prs[0].updates, 0, "the open one is not edited either");
    let posts = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 2);
    // Declined, it no longer stands in the way.
    assert!(fake.decline_pr(1, "ann"));
    assert_eq!(open(&forge, "selfheal/x").await.number, 3);
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn listing_follows_next_links_over_three_pages_and_reads_missing_bodies() {
    // Arrange: five selfheal PRs, two per page, a person's PR and a declined one.
    let (fake, forge) = spawn().await;
    for i in 0..5 {
        fake.seed_pr(&format!("selfheal/hourly_marts/run-{i}"), "main", "fix");
    }
    fake.seed_pr("feature/new-model", "main", "a person's change");
    let declined = fake.seed_pr("selfheal/old", "main", "fix");
    fake.decline_pr(declined, "ann");
    fake.set_max_pagelen(2);
    fake.omit_list_descriptions(true);

    // Act
    let prs = forge.open_selfheal_prs().await.expect("listed");

    // Assert
    let heads: Vec<&str> = prs.iter().map(|p| p.head.as_str()).collect();
    assert_eq!(
        heads,
        (0..5)
            .map(|i| format!("selfheal/hourly_marts/run-{i}"))
            .collect::<Vec<_>>()
    );
    assert!(prs.iter().all(|p| p.state == "open"));
    let requests = fake.requests();
    let pages: Vec<String> = requests
        .iter()
        .filter(|r| r.path == "/2.0/repositories/acme/dbt/pullrequests")
        .map(|r| r.query.clone().unwrap_or_default())
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    let first: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(pages[0].as_bytes())
            .into_owned()
            .collect();
    assert_eq!(first["state"], "OPEN");
    assert_eq!(first["pagelen"], "50");
    assert_eq!(
        first["q"],
        r#"source.branch.name ~ "selfheal/" AND state = "OPEN""#
    );
    assert!(pages[1].contains("page=2") && pages[2].contains("page=3"));
    let by_id = requests
        .iter()
        .filter(|r| {
            r.path
                .starts_with("/2.0/repositories/acme/dbt/pullrequests/")
        })
        .count();
    assert_eq!(by_id, 5, "each body missing from the list read by id");
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_prs_state_says_open_merged_by_whom_or_declined() {
    let (fake, forge) = spawn().await;
    let merged = open(&forge, "selfheal/a").await.url;
    let declined = open(&forge, "selfheal/b").await.url;
    let state = |url: String| {
        let forge = &forge;
        async move {
            forge
                .pr_state(&url, None)
                .await
                .expect("read")
                .expect("full")
        }
    };
    let before = state(merged.clone()).await;

    assert!(fake.merge_pr(1, "ann"));
    assert!(fake.decline_pr(2, "bob"));

    assert_eq!(before.state, PrState::Open);
    assert_eq!(
        before.etag, None,
        "the fake, like Bitbucket as far as we know, sends none"
    );
    assert_eq!(
        state(merged).await.state,
        PrState::Merged {
            by: Some("ann".into())
        }
    );
    assert_eq!(state(declined).await.state, PrState::Closed);
    assert_eq!(fake.merge_calls(), 0, "the fake merged, not selfheal");
}

#[tokio::test]
async fn a_comment_is_posted_as_raw_content_redacted_and_whole() {
    let (fake, forge) = spawn().await;
    let url = open(&forge, "selfheal/x").await.url;
    let redactor = crate::redact::Redactor::new(["PlantedSecret42".to_string()]);

    forge
        .comment(
            &url,
            "The run 48214 passed; PlantedSecret42 stays out.",
            &redactor,
        )
        .await
        .expect("commented");
    let long = "x".repeat(70_000);
    forge
        .comment(&url, &long, &redactor)
        .await
        .expect("a long comment");

    let comments = fake.comments();
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[0].pr, 1);
    assert_eq!(
        comments[0].raw,
        "The run 48214 passed; [REDACTED] stays out."
    );
    assert_eq!(comments[1].raw, long, "no documented limit: sent whole");
    let posted = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/comments"))
        .expect("posted");
    assert_eq!(
        posted.path,
        "/2.0/repositories/acme/dbt/pullrequests/1/comments"
    );
    assert_eq!(
        posted.json(),
        Some(serde_json::json!({ "content": { "raw": comments[0].raw } }))
    );
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn pull_requests_of_other_repositories_are_refused_without_a_request() {
    let (fake, forge) = spawn().await;
    let ours = open(&forge, "selfheal/x").await.url;
    let web = fake.web_base();
    let redactor = crate::redact::Redactor::default();
    let foreign = [
        "https://bitbucket.org/acme/dbt/pull-requests/1".to_string(),
        format!("{web}/acme/other/pull-requests/1"),
        format!("{web}/someone/dbt/pull-requests/1"),
        format!("{web}/acme/dbt/pull/1"),
        format!("{web}/acme/dbt/pull-requests/1/diff"),
    ];
    let before = fake.requests().len();

    for url in &foreign {
        assert!(!forge.owns_pr(url), "{url}");
        let state = forge.pr_state(url, None).await;
        assert!(
            matches!(&state, Err(ForgeError::NotOurs(u)) if u == url),
            "{state:?}"
        );
        let said = forge.comment(url, "hello", &redactor).await;
        assert!(matches!(&said, Err(ForgeError::NotOurs(_))), "{said:?}");
    }

    assert_eq!(fake.requests().len(), before, "nothing was asked");
    assert!(fake.comments().is_empty());
    assert!(forge.owns_pr(&ours));
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn auth_permission_and_addressing_failures_say_what_to_fix() {
    let (fake, forge) = spawn().await;
    let wrong_token = self::forge(&fake, "acme/dbt", "ATCTT3xwrong");
    let wrong_repo = self::forge(&fake, "acme/other", TOKEN);

    let unauthorized = wrong_token.open_pr(&pr_request("selfheal/x")).await;
    let not_found = wrong_repo.open_pr(&pr_request("selfheal/x")).await;
    fake.fail_next(403, 1, None);
    let scope = forge.open_pr(&pr_request("selfheal/x")).await;
    fake.set_permission("read");
    let read_only = forge.open_pr(&pr_request("selfheal/x")).await;
    fake.set_permission("write");
    let invalid = forge.open_pr(&pr_request("main")).await;

    assert!(
        matches!(unauthorized, Err(ForgeError::Unauthorized)),
        "{unauthorized:?}"
    );
    assert!(
        matches!(not_found, Err(ForgeError::NotFound)),
        "{not_found:?}"
    );
    for forbidden in [&scope, &read_only] {
        match forbidden {
            Err(ForgeError::Forbidden(msg)) => assert!(
                msg.contains("`pullrequest:write`"),
                "names the scope: {msg}"
            ),
            other => panic!("expected Forbidden, got {other:?}"),
        }
    }
    assert!(
        matches!(&invalid, Err(ForgeError::Validation(m)) if m == "There are no changes to be pulled"),
        "{invalid:?}"
    );
    assert!(fake.prs().is_empty());
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_then_the_pr_is_opened() {
    // (what Bitbucket answers first, the least time the retry should have waited)
    let cases: [(&str, u16, Option<Duration>, Duration); 3] = [
        (
            "429 retry-after 1",
            429,
            Some(Duration::from_secs(1)),
            Duration::from_secs(1),
        ),
        ("429 without retry-after", 429, None, Duration::ZERO),
        ("502", 502, None, Duration::ZERO),
    ];
    for (name, status, retry_after, least_wait) in cases {
        let (fake, forge) = spawn().await;
        fake.fail_next(status, 1, retry_after);
        let started = Instant::now();

        let pr = open(&forge, "selfheal/x").await;

        assert_eq!(pr.number, 1, "{name}");
        assert!(started.elapsed() >= least_wait, "{name}: retried too early");
        assert_eq!(fake.prs().len(), 1, "{name}");
        assert_eq!(fake.merge_calls(), 0, "{name}");
    }
    let (fake, forge) = spawn().await;
    fake.fail_next(429, 1, Some(Duration::from_secs(3600)));
    let err = forge.open_pr(&pr_request("selfheal/x")).await;
    assert!(
        matches!(err, Err(ForgeError::RateLimited { retry_after }) if retry_after.as_secs() == 3600),
        "{err:?}"
    );
    assert_eq!(
        fake.requests().len(),
        1,
        "a wait over the cap is not waited"
    );
}

#[tokio::test]
async fn can_push_reads_the_tokens_permission_on_the_repository() {
    let (fake, forge) = spawn().await;
    let cases = [("write", true), ("admin", true), ("read", false)];
    for (permission, want) in cases {
        fake.set_permission(permission);
        assert_eq!(
            forge.can_push().await.expect("a forge with an API").ok(),
            Some(want),
            "{permission}"
        );
    }
    let asked = fake.requests();
    assert_eq!(asked[1].path, "/2.0/user/permissions/repositories");
    assert_eq!(
        asked[1].query.as_deref(),
        Some("q=repository.full_name%3D%22acme%2Fdbt%22")
    );
}

#[tokio::test]
async fn an_app_password_is_sent_as_basic_auth() {
    let fake = FakeBitbucket::start("selfheal-bot:app-pass-123", "acme", "dbt")
        .await
        .expect("fake starts");
    let forge = forge(&fake, "acme/dbt", "selfheal-bot:app-pass-123");

    let pr = open(&forge, "selfheal/x").await;

    assert_eq!(pr.number, 1);
    assert!(fake.requests().iter().all(|r| r.auth == AuthSeen::Valid));
}

#[test]
fn only_this_repositorys_pull_request_urls_are_ours() {
    let bb = Bitbucket::new(
        "https://api.bitbucket.org/2.0",
        "acme/dbt",
        ForgeToken::new("t"),
    )
    .expect("client");
    let cases = [
        ("https://bitbucket.org/acme/dbt/pull-requests/7", Some(7)),
        ("https://bitbucket.org/Acme/DBT/pull-requests/7/", Some(7)),
        ("https://bitbucket.org/acme/other/pull-requests/7", None),
        ("https://bitbucket.org/evil/dbt/pull-requests/7", None),
        ("https://api.bitbucket.org/acme/dbt/pull-requests/7", None),
        ("https://github.com/acme/dbt/pull/7", None),
        ("https://bitbucket.org/acme/dbt/pull/7", None),
        ("https://bitbucket.org/acme/dbt/pull-requests/7/diff", None),
        ("https://bitbucket.org/acme/dbt/pull-requests/7?x=1", None),
        ("https://bitbucket.org/acme/dbt/pull-requests/0", None),
        ("http://bitbucket.org/acme/dbt/pull-requests/7", None),
        ("not a url", None),
    ];
    for (url, want) in cases {
        assert_eq!(bb.pr_number(url), want, "{url}");
    }
}

/// Bitbucket's recorded answers (tests/fixtures/bitbucket/README.md).
#[test]
fn recorded_bitbucket_answers_read_as_open_merged_by_whom_or_closed() {
    let cases = [
        (
            include_str!("../../../tests/fixtures/bitbucket/create_pullrequest.response.atlassian-python-api.json"),
            PrState::Open,
        ),
        (
            include_str!("../../../tests/fixtures/bitbucket/pullrequest_merged.atlassian-python-api.json"),
            PrState::Merged {
                by: Some("User04Nickname".into()),
            },
        ),
        (
            include_str!("../../../tests/fixtures/bitbucket/pullrequest_declined.atlassian-python-api.json"),
            PrState::Closed,
        ),
    ];
    for (body, want) in cases {
        let pull: ApiPull = rest::parse_json("Bitbucket", body.as_bytes()).expect("parses");
        assert_eq!(pull.pr_state(), want);
        assert_eq!(pull.source.branch.name, "feature/test-branch");
    }
    let page: Page<ApiPull> = rest::parse_json(
        "Bitbucket",
        include_str!(
            "../../../tests/fixtures/bitbucket/list_pullrequests.atlassian-python-api.json"
        )
        .as_bytes(),
    )
    .expect("parses");
    assert_eq!(page.values.len(), 2);
    assert_eq!(page.next, None);
    assert_eq!(page.values[0].description.as_deref(), Some("PRDescription"));
}

#[test]
fn errors_read_bitbuckets_error_message() {
    let cases = [
        (
            r#"{"type":"error","error":{"message":"title: This field is required."}}"#,
            "title: This field is required.",
        ),
        ("<html>Bad gateway</html>", "<html>Bad gateway</html>"),
    ];
    for (body, want) in cases {
        assert_eq!(error_message(body.as_bytes()), want);
    }
}

#[test]
fn the_token_never_shows_and_plain_http_is_loopback_only() {
    let token = || ForgeToken::new("ATCTT3xsupersecret");
    let bb = Bitbucket::new("http://127.0.0.1:9/2.0", "acme/dbt", token()).expect("client");
    let shown = format!("{bb:?}");
    assert!(
        !shown.contains("supersecret") && shown.contains("***"),
        "{shown}"
    );
    assert!(Bitbucket::new("http://bitbucket.example.com/2.0", "acme/dbt", token()).is_err());
    assert!(Bitbucket::new("https://api.bitbucket.org/2.0", "acme", token()).is_err());
}
