//! The forge against the local fake GitHub: what goes over the wire and how each
//! answer GitHub can give becomes a [`ForgeError`]. Every story also checks that
//! nothing ever asked to merge.

use std::time::{Duration, Instant};

use super::*;
use selfheal_fakes::github::FakeGitHub;
use selfheal_fakes::server::AuthSeen;

const TOKEN: &str = "ghs_faketoken0123456789";

/// Retries in milliseconds, so stories of failures stay quick.
pub(super) fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        max_wait: Duration::from_secs(5),
        initial_backoff: Duration::from_millis(10),
        request_timeout: Duration::from_secs(5),
    }
}

/// A fake GitHub for `acme/dbt` and a forge pointed at it.
async fn spawn() -> (FakeGitHub, Forge) {
    let fake = FakeGitHub::start(TOKEN, "acme", "dbt")
        .await
        .expect("fake starts");
    let forge = github_forge(&fake.api_base(), TOKEN);
    (fake, forge)
}

fn github_forge(api_base: &str, token: &str) -> Forge {
    let github = GitHub::new(api_base, "acme/dbt", ForgeToken::new(token)).expect("client");
    Forge::GitHub(github.with_retry(fast_retries()))
}

pub(super) fn pr_request(head: &str) -> PrRequest {
    PrRequest {
        head: head.to_string(),
        base: "main".to_string(),
        title: "fix(orders): cast id to bigint".to_string(),
        body: "The hourly_marts run 48213 failed; this fixes it.".to_string(),
        options: PrOptions::default(),
    }
}

pub(super) fn opened_pr(opened: Opened) -> PullRequest {
    match opened {
        Opened::Pr(pr) => pr,
        other => panic!("expected a pull request, got {other:?}"),
    }
}

#[tokio::test]
async fn opening_a_pr_sends_githubs_request_and_returns_the_pull_request() {
    // Arrange
    let (fake, forge) = spawn().await;

    // Act
    let pr = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/hourly_marts/run-48213"))
            .await
            .expect("opened"),
    );

    // Assert
    assert_eq!(pr.number, 1);
    assert_eq!(pr.url, format!("{}/acme/dbt/pull/1", fake.api_base()));
    assert_eq!(
        (pr.head.as_str(), pr.base.as_str(), pr.state.as_str()),
        ("selfheal/hourly_marts/run-48213", "main", "open")
    );
    assert_eq!(pr.title, "fix(orders): cast id to bigint");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/repos/acme/dbt/pulls")
    );
    assert_eq!(req.auth, AuthSeen::Valid);
    assert!(
        !format!("{req:?}").contains(TOKEN),
        "the fake does not keep the token"
    );
    for (name, want) in [
        ("accept", "application/vnd.github+json"),
        ("x-github-api-version", "2022-11-28"),
        ("user-agent", "selfheal"),
        ("content-type", "application/json"),
    ] {
        assert_eq!(
            req.headers.get(name).map(String::as_str),
            Some(want),
            "{name}"
        );
    }
    assert_eq!(
        req.json().expect("json body"),
        serde_json::json!({
            "title": "fix(orders): cast id to bigint",
            "head": "selfheal/hourly_marts/run-48213",
            "base": "main",
            "body": "The hourly_marts run 48213 failed; this fixes it.",
            "maintainer_can_modify": true,
            "draft": false,
        })
    );
    assert_eq!(fake.prs()[0].state, "open");
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_github_enterprise_api_base_with_a_path_prefix_works() {
    let fake = FakeGitHub::start(TOKEN, "acme", "dbt")
        .await
        .expect("fake starts");
    let forge = github_forge(&format!("{}/", fake.enterprise_api_base()), TOKEN);
    let pr = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/x"))
            .await
            .expect("opened"),
    );
    assert_eq!(pr.number, 1);
    assert_eq!(fake.requests()[0].path, "/api/v3/repos/acme/dbt/pulls");
    assert_eq!(forge.open_selfheal_prs().await.expect("listed").len(), 1);
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_duplicate_pr_is_a_validation_error_carrying_githubs_message() {
    let (fake, forge) = spawn().await;
    forge
        .open_pr(&pr_request("selfheal/x"))
        .await
        .expect("first opens");

    let err = forge
        .open_pr(&pr_request("selfheal/x"))
        .await
        .expect_err("duplicate");

    match err {
        ForgeError::Validation(msg) => {
            assert_eq!(msg, "A pull request already exists for acme:selfheal/x.")
        }
        other => panic!("expected Validation, got {other:?}"),
    }
    assert_eq!(fake.requests().len(), 2, "a 422 is not retried");
    assert_eq!(fake.prs().len(), 1);
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_closed_pr_does_not_block_opening_a_new_one_for_the_same_branch() {
    let (fake, forge) = spawn().await;
    let first = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/x"))
            .await
            .expect("first"),
    );
    assert!(fake.close_pr(first.number));
    let second = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/x"))
            .await
            .expect("second"),
    );
    assert_eq!(second.number, 2);
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_then_the_pr_is_opened() {
    // (what GitHub answers first, the least time the retry should have waited)
    type Inject = fn(&FakeGitHub);
    let cases: [(&str, Inject, Duration); 4] = [
        (
            "429 retry-after 1",
            |f| f.fail_next(429, 1, Some(Duration::from_secs(1))),
            Duration::from_secs(1),
        ),
        (
            "403 retry-after 0",
            |f| f.fail_next(403, 1, Some(Duration::ZERO)),
            Duration::ZERO,
        ),
        (
            "429 twice",
            |f| f.fail_next(429, 2, Some(Duration::ZERO)),
            Duration::ZERO,
        ),
        (
            "403 primary limit",
            |f| f.exhaust_rate_limit(1, Duration::ZERO),
            Duration::ZERO,
        ),
    ];
    for (name, inject, least_wait) in cases {
        let (fake, forge) = spawn().await;
        inject(&fake);
        let started = Instant::now();

        let opened = forge.open_pr(&pr_request("selfheal/x")).await;

        let pr = opened_pr(opened.unwrap_or_else(|e| panic!("{name}: {e:?}")));
        assert_eq!(pr.number, 1, "{name}");
        assert!(started.elapsed() >= least_wait, "{name}: retried too early");
        assert!(fake.requests().len() >= 2, "{name}: retried");
        assert_eq!(fake.prs().len(), 1, "{name}");
        assert_eq!(fake.merge_calls(), 0, "{name}");
    }
}

#[tokio::test]
async fn a_rate_limit_longer_than_the_cap_is_returned_without_waiting() {
    let (fake, forge) = spawn().await;
    fake.fail_next(429, 1, Some(Duration::from_secs(3600)));

    let err = forge
        .open_pr(&pr_request("selfheal/x"))
        .await
        .expect_err("rate limited");

    assert!(
        matches!(err, ForgeError::RateLimited { retry_after } if retry_after == Duration::from_secs(3600)),
        "{err:?}"
    );
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let (fake, forge) = spawn().await;
    fake.fail_next(502, 1, None);
    let pr = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/a"))
            .await
            .expect("second attempt opens"),
    );
    assert_eq!(pr.head, "selfheal/a");
    assert_eq!(fake.requests().len(), 2);

    fake.fail_next(500, 10, None);
    let err = forge
        .open_pr(&pr_request("selfheal/b"))
        .await
        .expect_err("gives up");
    assert!(
        matches!(&err, ForgeError::Http(msg) if msg.contains("500")),
        "{err:?}"
    );
    assert_eq!(
        fake.requests().len(),
        2 + fast_retries().max_attempts as usize
    );
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_pr_created_by_an_attempt_whose_answer_was_lost_is_returned_not_duplicated() {
    // The first attempt "created" the PR but its answer was a 502; the retry meets
    // GitHub's "already exists", and the forge finds the PR instead of failing.
    let (fake, forge) = spawn().await;
    let number = fake.seed_pr("selfheal/x", "main", "fix(orders): cast id to bigint");
    fake.fail_next(502, 1, None);

    let pr = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/x"))
            .await
            .expect("found"),
    );

    assert_eq!(pr.number, number);
    assert_eq!(fake.prs().len(), 1);
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn auth_and_addressing_failures_map_to_their_errors() {
    let (fake, _) = spawn().await;
    let wrong_token = github_forge(&fake.api_base(), "ghs_wrong");
    let wrong_repo = Forge::GitHub(
        GitHub::new(&fake.api_base(), "acme/other", ForgeToken::new(TOKEN))
            .expect("client")
            .with_retry(fast_retries()),
    );
    fake.fail_next(403, 1, None);
    let forbidden = github_forge(&fake.api_base(), TOKEN)
        .open_pr(&pr_request("selfheal/x"))
        .await;

    let unauthorized = wrong_token.open_pr(&pr_request("selfheal/x")).await;
    let not_found = wrong_repo.open_pr(&pr_request("selfheal/x")).await;
    let listing = wrong_token.open_selfheal_prs().await;

    assert!(
        matches!(unauthorized, Err(ForgeError::Unauthorized)),
        "{unauthorized:?}"
    );
    assert!(
        matches!(listing, Err(ForgeError::Unauthorized)),
        "{listing:?}"
    );
    assert!(
        matches!(not_found, Err(ForgeError::NotFound)),
        "{not_found:?}"
    );
    assert!(
        matches!(forbidden, Err(ForgeError::Forbidden(_))),
        "{forbidden:?}"
    );
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.auth == AuthSeen::Invalid)
            .count(),
        2
    );
    assert!(fake.prs().is_empty());
    assert_eq!(fake.merge_calls(), 0);
}

/// Opens `selfheal/x` and returns its URL.
async fn open_one(forge: &Forge) -> String {
    opened_pr(
        forge
            .open_pr(&pr_request("selfheal/x"))
            .await
            .expect("opened"),
    )
    .url
}

#[tokio::test]
async fn a_prs_state_is_asked_with_its_etag_and_unchanged_answers_are_304s() {
    // Arrange
    let (fake, forge) = spawn().await;
    let url = open_one(&forge).await;

    // Act
    let first = forge.pr_state(&url, None).await.expect("first look");
    let first = first.expect("a full answer without an etag");
    let etag = first.etag.clone().expect("GitHub sends an ETag");
    let unchanged = forge
        .pr_state(&url, Some(&etag))
        .await
        .expect("asked again");
    let stale = forge
        .pr_state(&url, Some("W/\"not-the-current-one\""))
        .await
        .expect("asked with a stale etag");

    // Assert
    assert_eq!(first.state, PrState::Open);
    assert_eq!(unchanged, None, "304: unchanged since the etag");
    assert_eq!(
        stale,
        Some(first.clone()),
        "another etag gets the full answer"
    );
    assert_eq!(
        fake.pr_reads(),
        selfheal_fakes::github::PrReads {
            full: 2,
            not_modified: 1
        }
    );
    let asked: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .map(|r| (r.path, r.headers.get("if-none-match").cloned()))
        .collect();
    assert_eq!(
        asked,
        [
            ("/repos/acme/dbt/pulls/1".to_string(), None),
            ("/repos/acme/dbt/pulls/1".to_string(), Some(etag)),
            (
                "/repos/acme/dbt/pulls/1".to_string(),
                Some("W/\"not-the-current-one\"".to_string())
            ),
        ]
    );
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_merge_or_a_close_changes_the_etag_and_says_who_merged() {
    let (fake, forge) = spawn().await;
    let merged_url = open_one(&forge).await;
    let closed_url = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/y"))
            .await
            .expect("opened"),
    )
    .url;
    let etag_of = |snapshot: Option<PrSnapshot>| snapshot.expect("full").etag.expect("etag");
    let merged_etag = etag_of(forge.pr_state(&merged_url, None).await.expect("read"));
    let closed_etag = etag_of(forge.pr_state(&closed_url, None).await.expect("read"));

    assert!(fake.merge_pr(1, "octocat"));
    assert!(fake.close_pr(2));
    let merged = forge
        .pr_state(&merged_url, Some(&merged_etag))
        .await
        .expect("read");
    let closed = forge
        .pr_state(&closed_url, Some(&closed_etag))
        .await
        .expect("read");

    let merged = merged.expect("changed: a full answer");
    assert_eq!(
        merged.state,
        PrState::Merged {
            by: Some("octocat".into())
        }
    );
    assert_ne!(merged.etag, Some(merged_etag));
    assert_eq!(closed.expect("changed").state, PrState::Closed);
    assert_eq!(
        fake.prs()[0].state,
        "closed",
        "GitHub keeps merged PRs closed"
    );
    assert_eq!(fake.merge_calls(), 0, "the fake merged, not selfheal");
}

#[tokio::test]
async fn asking_a_prs_state_is_retried_and_rate_limits_are_waited_out() {
    let (fake, forge) = spawn().await;
    let url = open_one(&forge).await;
    fake.fail_next(502, 1, None);
    fake.fail_next(429, 1, Some(Duration::ZERO));

    let state = forge.pr_state(&url, None).await.expect("third attempt");

    assert_eq!(state.expect("full").state, PrState::Open);
    assert_eq!(fake.requests().len(), 1 + 3);
    fake.fail_next(429, 1, Some(Duration::from_secs(3600)));
    let err = forge.pr_state(&url, None).await.expect_err("rate limited");
    assert!(
        matches!(err, ForgeError::RateLimited { retry_after } if retry_after.as_secs() == 3600),
        "{err:?}"
    );
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_comment_goes_to_the_prs_issue_comments_redacted() {
    // Arrange
    let (fake, forge) = spawn().await;
    let url = open_one(&forge).await;
    let redactor = crate::redact::Redactor::new(["PlantedSecret42".to_string()]);

    // Act
    forge
        .comment(
            &url,
            "The run 48214 passed after this fix; PlantedSecret42 and ghp_0123456789abcdefghijABCDEFGHIJ stay out.",
            &redactor,
        )
        .await
        .expect("commented");
    let long = "x".repeat(70_000);
    forge
        .comment(&url, &long, &redactor)
        .await
        .expect("a long comment is cut, not refused");

    // Assert
    let comments = fake.comments();
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[0].number, 1);
    assert_eq!(
        comments[0].body,
        "The run 48214 passed after this fix; [REDACTED] and [REDACTED] stay out."
    );
    assert!(comments[1].body.chars().count() <= 65_536);
    assert!(comments[1].body.ends_with("(cut: too long for a comment)"));
    let posted = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.contains("comments"));
    assert_eq!(
        posted.map(|r| r.path),
        Some("/repos/acme/dbt/issues/1/comments".to_string())
    );
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn pull_requests_of_other_repositories_are_refused_without_a_request() {
    let (fake, forge) = spawn().await;
    open_one(&forge).await;
    let ours = format!("{}/acme/dbt/pull/1", fake.api_base());
    let foreign = [
        "https://github.com/acme/dbt/pull/1".to_string(),
        format!("{}/acme/other/pull/1", fake.api_base()),
        format!("{}/someone/dbt/pull/1", fake.api_base()),
        format!("{}/acme/dbt/issues/1", fake.api_base()),
        "https://github.com/acme/dbt/compare/main...selfheal/x?expand=1".to_string(),
    ];
    let before = fake.requests().len();

    assert_not_ours(&forge, &foreign).await;
    let plain = Forge::Plain {
        web_base: Some("https://github.com/acme/dbt".into()),
        kind: ForgeKind::GitHub,
    };
    assert!(!plain.owns_pr("https://github.com/acme/dbt/pull/1"));
    assert!(matches!(
        plain
            .pr_state("https://github.com/acme/dbt/pull/1", None)
            .await,
        Err(ForgeError::NotOurs(_))
    ));

    assert_eq!(fake.requests().len(), before, "nothing was asked");
    assert!(fake.comments().is_empty());
    assert!(forge.owns_pr(&ours));
    assert_eq!(fake.merge_calls(), 0);
}

/// Asserts that `forge` owns none of `urls`, and neither asks about them nor
/// comments on them.
pub(super) async fn assert_not_ours(forge: &Forge, urls: &[String]) {
    let redactor = crate::redact::Redactor::default();
    for url in urls {
        assert!(!forge.owns_pr(url), "{url}");
        let state = forge.pr_state(url, None).await;
        assert!(
            matches!(&state, Err(ForgeError::NotOurs(u)) if u == url),
            "{state:?}"
        );
        let said = forge.comment(url, "hello", &redactor).await;
        assert!(matches!(&said, Err(ForgeError::NotOurs(_))), "{said:?}");
    }
}

#[tokio::test]
async fn a_forge_that_never_answers_times_out() {
    // A listener that accepts connections and never replies.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let retry = RetryPolicy {
        max_attempts: 2,
        request_timeout: Duration::from_millis(200),
        ..fast_retries()
    };
    let forge = Forge::GitHub(
        GitHub::new(
            &format!("http://{addr}"),
            "acme/dbt",
            ForgeToken::new(TOKEN),
        )
        .expect("client")
        .with_retry(retry),
    );

    let err = forge
        .open_pr(&pr_request("selfheal/x"))
        .await
        .expect_err("times out");

    assert!(matches!(err, ForgeError::Timeout), "{err:?}");
    silent.abort();
}

#[tokio::test]
async fn listing_follows_pages_and_returns_only_open_selfheal_prs() {
    // Arrange: 130 selfheal PRs (more than one page of 100), a human's PR, a closed one.
    let (fake, forge) = spawn().await;
    for i in 0..130 {
        fake.seed_pr(&format!("selfheal/hourly_marts/run-{i}"), "main", "fix");
    }
    fake.seed_pr("feature/new-model", "main", "a human's change");
    let closed = fake.seed_pr("selfheal/old", "main", "fix");
    fake.close_pr(closed);

    // Act
    let prs = forge.open_selfheal_prs().await.expect("listed");

    // Assert
    assert_eq!(prs.len(), 130);
    assert!(prs
        .iter()
        .all(|pr| pr.head.starts_with("selfheal/") && pr.state == "open"));
    let pages: Vec<_> = fake
        .requests()
        .into_iter()
        .map(|r| r.query.unwrap_or_default())
        .collect();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(
        pages[0].contains("state=open") && pages[0].contains("per_page=100"),
        "{pages:?}"
    );
    assert!(pages[1].contains("page=2"), "{pages:?}");
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_plain_remote_gets_a_compare_link_and_lists_nothing() {
    let cases = [
        (Some("https://github.com/acme/dbt"), Some("https://github.com/acme/dbt/compare/main...selfheal/hourly_marts/run-48213?expand=1")),
        (Some("https://github.com/acme/dbt.git/"), Some("https://github.com/acme/dbt/compare/main...selfheal/hourly_marts/run-48213?expand=1")),
        (None, None),
    ];
    for (web_base, want) in cases {
        let forge = Forge::Plain {
            web_base: web_base.map(str::to_string),
            kind: ForgeKind::GitHub,
        };
        let opened = forge
            .open_pr(&pr_request("selfheal/hourly_marts/run-48213"))
            .await
            .expect("plain never fails");
        assert_eq!(
            opened,
            Opened::Compare(want.map(str::to_string)),
            "{web_base:?}"
        );
        assert_eq!(opened.link(), want);
        assert!(forge
            .open_selfheal_prs()
            .await
            .expect("plain lists")
            .is_empty());
    }
}

#[tokio::test]
async fn a_pushed_session_branch_becomes_a_pr_and_an_unpushed_one_is_refused() {
    // Arrange: a real bare origin, a workspace that pushes a session branch, and a
    // fake GitHub that checks branches against that origin like GitHub would.
    let tmp = tempfile::tempdir().expect("tempdir");
    let git = |cwd: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=seed", "-c", "user.email=seed@example.com"])
            .args(args)
            .current_dir(cwd)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(
        tmp.path(),
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            "origin.git",
        ],
    );
    git(
        tmp.path(),
        &["init", "--quiet", "--initial-branch=main", "seed"],
    );
    let seed = tmp.path().join("seed");
    std::fs::write(seed.join("orders.sql"), "select 1\n").expect("write");
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "--quiet", "-m", "seed"]);
    git(&seed, &["push", "--quiet", "../origin.git", "main"]);
    let bare = tmp.path().join("origin.git");
    let ws = crate::workspace::Workspace::create(
        bare.to_str().expect("utf-8"),
        None,
        &tmp.path().join("ws"),
    )
    .await
    .expect("workspace");
    let branch = "selfheal/hourly_marts/run-48213";
    ws.start_branch(branch).await.expect("branch");
    std::fs::write(ws.dir.join("orders.sql"), "select 2\n").expect("edit");
    let sha = ws.commit("fix(orders): select 2").await.expect("commit");
    let (fake, forge) = spawn().await;
    fake.set_git_dir(&bare);

    // Act
    let unpushed = forge.open_pr(&pr_request(branch)).await;
    ws.push(branch).await.expect("push");
    let opened = forge.open_pr(&pr_request(branch)).await;

    // Assert
    assert!(
        matches!(&unpushed, Err(ForgeError::Validation(m)) if m == "PullRequest.head invalid"),
        "{unpushed:?}"
    );
    let pr = opened_pr(opened.expect("opened"));
    assert_eq!(pr.head, branch);
    assert_eq!(fake.prs()[0].head_sha, sha);
    assert_eq!(fake.merge_calls(), 0);
}

#[test]
fn github_remotes_are_parsed_into_owner_and_repo() {
    let cases = [
        ("git@github.com:acme/dbt.git", Some(("acme", "dbt"))),
        ("git@github.com:acme/dbt", Some(("acme", "dbt"))),
        ("https://github.com/acme/dbt", Some(("acme", "dbt"))),
        ("https://github.com/acme/dbt.git", Some(("acme", "dbt"))),
        ("https://github.com/acme/dbt/", Some(("acme", "dbt"))),
        (
            "https://x-access-token:ghs_x@github.com/acme/dbt.git",
            Some(("acme", "dbt")),
        ),
        ("ssh://git@github.com/acme/dbt.git", Some(("acme", "dbt"))),
        (
            "https://github.com/acme/my.dbt-project_2.git",
            Some(("acme", "my.dbt-project_2")),
        ),
        ("https://gitlab.com/acme/dbt.git", None),
        ("https://github.com/acme", None),
        ("https://github.com/acme/dbt/tree/main", None),
        ("/srv/git/dbt.git", None),
        ("", None),
    ];
    for (url, want) in cases {
        let got = parse_github_remote(url);
        assert_eq!(
            got.as_ref().map(|(o, r)| (o.as_str(), r.as_str())),
            want,
            "{url}"
        );
    }
}

#[test]
fn compare_urls_escape_characters_that_would_break_the_link() {
    let cases = [
        (
            "https://github.com/o/r",
            "main",
            "selfheal/a",
            "https://github.com/o/r/compare/main...selfheal/a?expand=1",
        ),
        (
            "https://ghe.example.com/o/r/",
            "release",
            "selfheal/a#1",
            "https://ghe.example.com/o/r/compare/release...selfheal/a%231?expand=1",
        ),
    ];
    for (web, base, head, want) in cases {
        assert_eq!(compare_url(web, base, head), want);
    }
}

pub(super) fn with_options(
    head: &str,
    draft: bool,
    reviewers: &[&str],
    labels: &[&str],
) -> PrRequest {
    PrRequest {
        options: PrOptions {
            draft,
            reviewers: reviewers.iter().map(|r| r.to_string()).collect(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
        },
        ..pr_request(head)
    }
}

#[tokio::test]
async fn a_github_pr_is_opened_as_a_draft_with_its_reviewers_and_labels() {
    // Arrange
    let (fake, forge) = spawn().await;
    let req = with_options("selfheal/x", true, &["alice", "bob"], &["selfheal", "dbt"]);

    // Act
    let pr = opened_pr(forge.open_pr(&req).await.expect("opened"));

    // Assert
    let held = &fake.prs()[0];
    assert!(held.draft);
    assert_eq!(held.requested_reviewers, ["alice", "bob"]);
    assert_eq!(held.labels, ["selfheal", "dbt"]);
    let asked: Vec<_> = fake
        .requests()
        .into_iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.json()))
        .collect();
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert_eq!(
        asked[0].2.as_ref().map(|b| b["draft"].clone()),
        Some(serde_json::json!(true))
    );
    assert_eq!(
        (asked[1].1.as_str(), asked[1].2.clone()),
        (
            format!("/repos/acme/dbt/pulls/{}/requested_reviewers", pr.number).as_str(),
            Some(serde_json::json!({ "reviewers": ["alice", "bob"] }))
        )
    );
    assert_eq!(
        (asked[2].1.as_str(), asked[2].2.clone()),
        (
            format!("/repos/acme/dbt/issues/{}/labels", pr.number).as_str(),
            Some(serde_json::json!({ "labels": ["selfheal", "dbt"] }))
        )
    );
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn refused_github_reviewers_or_labels_never_fail_the_opened_pr() {
    let (fake, forge) = spawn().await;
    fake.set_collaborators(&["alice"]);

    let refused = forge
        .open_pr(&with_options("selfheal/x", false, &["mallory"], &["dbt"]))
        .await;

    let pr = opened_pr(refused.expect("opened all the same"));
    assert_eq!(pr.number, 1);
    let held = &fake.prs()[0];
    assert!(!held.draft);
    assert!(held.requested_reviewers.is_empty());
    assert_eq!(
        held.labels,
        ["dbt"],
        "the labels after a refused review request"
    );

    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn an_overlong_github_body_is_cut_in_its_diff_keeping_the_signature() {
    let (fake, forge) = spawn().await;
    let req = PrRequest {
        body: long_body(100_000),
        ..pr_request("selfheal/x")
    };

    forge.open_pr(&req).await.expect("opened, not refused");

    let body = &fake.prs()[0].body;
    assert!(body.chars().count() <= 65_536, "{}", body.chars().count());
    assert!(body.starts_with("## Root cause\n"));
    assert!(body.contains("diff cut"));
    assert!(body.ends_with(SIGNED), "{}", &body[body.len() - 200..]);
    assert_eq!(fake.merge_calls(), 0);
}

/// The end of every selfheal pull request body (`slack::render::pr_body`).
const SIGNED: &str = "<!-- selfheal-signature: 0123456789abcdef -->\n";

/// A body shaped like `slack::render::pr_body`'s with a diff of `diff_chars`.
fn long_body(diff_chars: usize) -> String {
    let diff = "+select 1 -- é\n".repeat(diff_chars / 15 + 1);
    format!(
        "## Root cause\norders\n\n## Change\n<details><summary>Diff</summary>\n\n```diff\n{diff}\n```\n</details>\n\n## Verification\npassed\n\n{SIGNED}"
    )
}

#[test]
fn fit_body_cuts_the_diff_first_and_always_keeps_the_signature() {
    // (what, body, limit, what the result must contain besides the signature)
    let short = long_body(10);
    let no_diff = format!("{}\n\n{SIGNED}", "word ".repeat(1000));
    let cases: [(&str, String, usize, &[&str]); 5] = [
        ("fits", short.clone(), 10_000, &["```diff\n+select 1"]),
        (
            "diff cut",
            long_body(100_000),
            65_536,
            &["diff cut", "## Verification"],
        ),
        (
            "diff gone, text cut",
            long_body(5_000),
            120,
            &["cut: too long"],
        ),
        (
            "no diff: text cut",
            no_diff,
            500,
            &["word word", "cut: too long"],
        ),
        ("unsigned", "x".repeat(100), 50, &["cut: too long"]),
    ];
    for (what, body, limit, wants) in cases {
        let fitted = fit_body(&body, limit);
        assert!(
            fitted.chars().count() <= limit,
            "{what}: {}",
            fitted.chars().count()
        );
        if body.contains(SIGNED) {
            assert!(fitted.ends_with(SIGNED), "{what}: {fitted}");
        }
        for want in wants {
            assert!(fitted.contains(want), "{what}: no `{want}` in {fitted}");
        }
        if body.chars().count() <= limit {
            assert_eq!(fitted, body, "{what}");
        }
    }
    assert_eq!(
        fit_body(SIGNED, 10).chars().count(),
        10,
        "a limit below the signature"
    );
}

#[tokio::test]
async fn without_a_token_each_forge_gets_a_link_to_its_own_new_pull_request_page() {
    use crate::config::HealSettings;
    let cases = [
        (
            "git@github.com:acme/dbt.git",
            "https://github.com/acme/dbt/compare/main...selfheal/x?expand=1",
        ),
        (
            "https://gitlab.com/acme/data/dbt.git",
            "https://gitlab.com/acme/data/dbt/-/merge_requests/new?merge_request%5Bsource_branch%5D=selfheal/x&merge_request%5Btarget_branch%5D=main",
        ),
        (
            "git@bitbucket.org:acme/dbt.git",
            "https://bitbucket.org/acme/dbt/pull-requests/new?source=selfheal/x&dest=main",
        ),
        (
            "git@ssh.dev.azure.com:v3/acme/Data%20Platform/dbt",
            "https://dev.azure.com/acme/Data%20Platform/_git/dbt/pullrequestcreate?sourceRef=selfheal/x&targetRef=main",
        ),
    ];
    for (remote, want) in cases {
        let heal = HealSettings {
            repo: Some(remote.into()),
            ..HealSettings::default()
        };
        let forge = Forge::from_settings(&heal).expect("built");
        let opened = forge.open_pr(&pr_request("selfheal/x")).await.unwrap();
        assert_eq!(opened, Opened::Compare(Some(want.into())), "{remote}");
    }
    // A self-managed Gitea, named by configuration.
    let mut heal = HealSettings {
        repo: Some("https://git.acme.io/data/dbt.git".into()),
        ..HealSettings::default()
    };
    heal.forge.kind = Some(ForgeKind::Gitea);
    let opened = Forge::from_settings(&heal)
        .unwrap()
        .open_pr(&pr_request("selfheal/x"))
        .await
        .unwrap();
    assert_eq!(
        opened,
        Opened::Compare(Some(
            "https://git.acme.io/data/dbt/compare/main...selfheal/x".into()
        ))
    );
}
