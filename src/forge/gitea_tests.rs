//! The forge against the local fake Gitea: what goes over the wire and how
//! each answer Gitea can give becomes a [`ForgeError`]. Every story also
//! checks that nothing ever asked to merge.

use std::time::Duration;

use super::tests::{fast_retries, opened_pr, pr_request, with_options};
use super::*;
use selfheal_fakes::gitea::FakeGitea;
use selfheal_fakes::server::AuthSeen;

const TOKEN: &str = "gitea_faketoken0123456789";

/// A fake Gitea for `acme/dbt` and a forge pointed at it.
async fn spawn() -> (FakeGitea, Forge) {
    let fake = FakeGitea::start(TOKEN, "acme", "dbt")
        .await
        .expect("fake starts");
    let forge = gitea_forge(&fake.api_base(), TOKEN);
    (fake, forge)
}

fn gitea_forge(api_base: &str, token: &str) -> Forge {
    let gitea = Gitea::new(api_base, "acme/dbt", ForgeToken::new(token)).expect("client");
    Forge::Gitea(gitea.with_retry(fast_retries()))
}

#[tokio::test]
async fn opening_a_gitea_pr_sends_giteas_request_and_returns_the_pull_request() {
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
    assert_eq!(pr.url, format!("{}/acme/dbt/pulls/1", fake.web_base()));
    assert_eq!(
        (pr.head.as_str(), pr.base.as_str(), pr.state.as_str()),
        ("selfheal/hourly_marts/run-48213", "main", "open")
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "no labels asked for, none looked up");
    let req = &requests[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/api/v1/repos/acme/dbt/pulls")
    );
    assert_eq!(req.auth, AuthSeen::Valid);
    assert!(!format!("{req:?}").contains(TOKEN));
    assert_eq!(
        req.json().expect("json body"),
        serde_json::json!({
            "title": "fix(orders): cast id to bigint",
            "head": "selfheal/hourly_marts/run-48213",
            "base": "main",
            "body": "The hourly_marts run 48213 failed; this fixes it.",
            "labels": [],
        })
    );
    assert!(forge.owns_pr(&pr.url));
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_gitea_draft_is_a_wip_title_with_label_ids_and_reviewers() {
    // Arrange: two of the three labels exist; the server knows alice only.
    let (fake, forge) = spawn().await;
    for i in 0..3 {
        fake.add_label(&format!("other-{i}"));
    }
    let selfheal = fake.add_label("selfheal");
    let dbt = fake.add_label("dbt");
    fake.set_max_page_size(2);
    fake.set_users(&["alice"]);
    let req = with_options(
        "selfheal/x",
        true,
        &["alice"],
        &["selfheal", "missing", "DBT"],
    );

    // Act
    let pr = opened_pr(forge.open_pr(&req).await.expect("opened"));

    // Assert
    let held = &fake.prs()[0];
    assert_eq!(held.title, "WIP: fix(orders): cast id to bigint");
    assert!(held.draft());
    assert_eq!(
        held.labels,
        ["selfheal", "dbt"],
        "the unknown label skipped"
    );
    assert_eq!(held.requested_reviewers, ["alice"]);
    let created = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/pulls"))
        .and_then(|r| r.json())
        .expect("created");
    assert_eq!(created["labels"], serde_json::json!([selfheal, dbt]));
    let label_pages = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/labels"))
        .count();
    assert_eq!(label_pages, 3, "5 labels, 2 a page");
    assert_eq!(pr.number, 1);

    // A reviewer Gitea does not know is logged; the pull request stands.
    let refused = with_options("selfheal/y", false, &["mallory"], &[]);
    let second = opened_pr(forge.open_pr(&refused).await.expect("opened all the same"));
    assert_eq!(second.number, 2);
    assert!(fake.prs()[1].requested_reviewers.is_empty());
    assert_eq!(fake.prs()[1].title, "fix(orders): cast id to bigint");
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn listing_gitea_prs_follows_three_pages_and_keeps_only_open_selfheal_ones() {
    // Arrange: 5 selfheal PRs, a human's, a closed one; 3 to a page.
    let (fake, forge) = spawn().await;
    for i in 0..5 {
        fake.seed_pr(&format!("selfheal/run-{i}"), "main", "fix");
    }
    fake.seed_pr("feature/new-model", "main", "a human's change");
    let closed = fake.seed_pr("selfheal/old", "main", "fix");
    fake.close_pr(closed);
    fake.set_max_page_size(2);

    // Act
    let prs = forge.open_selfheal_prs().await.expect("listed");

    // Assert
    let heads: Vec<_> = prs.iter().map(|p| p.head.as_str()).collect();
    assert_eq!(
        heads,
        [
            "selfheal/run-0",
            "selfheal/run-1",
            "selfheal/run-2",
            "selfheal/run-3",
            "selfheal/run-4"
        ]
    );
    let pages: Vec<_> = fake
        .requests()
        .into_iter()
        .map(|r| r.query.unwrap_or_default())
        .collect();
    assert_eq!(pages.len(), 3, "6 open PRs, 2 a page: {pages:?}");
    assert!(
        pages[0].contains("state=open") && pages[0].contains("page=1"),
        "{pages:?}"
    );
    assert!(pages[2].contains("page=3"), "{pages:?}");

    // Without `Link` (a proxy dropped it), `X-Total-Count` says when to stop.
    fake.set_link_headers(false);
    let again = forge.open_selfheal_prs().await.expect("listed");
    assert_eq!(again, prs);
    assert_eq!(fake.requests().len(), 6);
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_gitea_prs_state_says_who_merged_and_a_close_is_closed() {
    let (fake, forge) = spawn().await;
    let merged = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/x"))
            .await
            .expect("opened"),
    );
    let closed = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/y"))
            .await
            .expect("opened"),
    );

    let open = forge.pr_state(&merged.url, None).await.expect("read");
    assert!(fake.merge_pr(merged.number, "octocat"));
    assert!(fake.close_pr(closed.number));
    let after = forge
        .pr_state(&merged.url, Some("W/\"anything\""))
        .await
        .expect("read");
    let gone = forge.pr_state(&closed.url, None).await.expect("read");

    let open = open.expect("Gitea always answers in full");
    assert_eq!((open.state, open.etag), (PrState::Open, None));
    assert_eq!(
        after.expect("full").state,
        PrState::Merged {
            by: Some("octocat".into())
        }
    );
    assert_eq!(gone.expect("full").state, PrState::Closed);
    let asked = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path)
        .collect::<Vec<_>>();
    assert_eq!(asked[0], "/api/v1/repos/acme/dbt/pulls/1");
    assert_eq!(fake.merge_calls(), 0, "the fake merged, not selfheal");
}

#[tokio::test]
async fn a_comment_goes_to_the_gitea_prs_issue_comments_redacted() {
    let (fake, forge) = spawn().await;
    let pr = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/x"))
            .await
            .expect("opened"),
    );
    let redactor = crate::redact::Redactor::new(["PlantedSecret42".to_string()]);

    forge
        .comment(
            &pr.url,
            "The run 48214 passed; PlantedSecret42 stays out.",
            &redactor,
        )
        .await
        .expect("commented");

    let comments = fake.comments();
    assert_eq!(comments.len(), 1);
    assert_eq!(
        (comments[0].number, comments[0].body.as_str()),
        (1, "The run 48214 passed; [REDACTED] stays out.")
    );
    let posted = fake.requests().into_iter().last().expect("a request");
    assert_eq!(posted.path, "/api/v1/repos/acme/dbt/issues/1/comments");
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn foreign_pull_requests_are_refused_without_a_request() {
    let (fake, forge) = spawn().await;
    let ours = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/x"))
            .await
            .expect("opened"),
    )
    .url;
    let redactor = crate::redact::Redactor::default();
    let web = fake.web_base();
    let foreign = [
        format!("{web}/acme/other/pulls/1"),
        format!("{web}/someone/dbt/pulls/1"),
        format!("{web}/acme/dbt/pull/1"),
        format!("{web}/acme/dbt/issues/1"),
        format!("{}/repos/acme/dbt/pulls/1", fake.api_base()),
        "https://gitea.com/acme/dbt/pulls/1".to_string(),
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
async fn gitea_auth_failures_say_what_the_token_lacks() {
    let (fake, forge) = spawn().await;
    let wrong = gitea_forge(&fake.api_base(), "gitea_wrong");

    let unauthorized = wrong.open_pr(&pr_request("selfheal/x")).await;
    fake.set_can_push(false);
    let read_only = forge.open_pr(&pr_request("selfheal/x")).await;
    let can_push = match &forge {
        Forge::Gitea(gitea) => gitea.can_push().await,
        other => panic!("{other:?}"),
    };
    fake.set_can_push(true);
    fake.fail_next(403, 1, None);
    let injected = forge.open_pr(&pr_request("selfheal/x")).await;

    assert!(
        matches!(unauthorized, Err(ForgeError::Unauthorized)),
        "{unauthorized:?}"
    );
    for forbidden in [&read_only, &injected] {
        match forbidden {
            Err(ForgeError::Forbidden(msg)) => assert!(msg.contains("write:repository"), "{msg}"),
            other => panic!("expected Forbidden, got {other:?}"),
        }
    }
    assert_eq!(
        read_only.expect_err("refused").to_string(),
        "the token may not do this: token does not have at least one of required scope(s): [write:repository]"
    );
    assert!(!can_push.expect("asked"));
    assert!(fake.prs().is_empty());
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_gitea_429_is_waited_out_and_5xx_retried_then_the_pr_is_opened() {
    let (fake, forge) = spawn().await;
    fake.fail_next(429, 1, Some(Duration::ZERO));
    fake.fail_next(503, 1, None);

    let pr = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/x"))
            .await
            .expect("opened"),
    );

    assert_eq!(pr.number, 1);
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(fake.prs().len(), 1);

    fake.fail_next(429, 1, Some(Duration::from_secs(3600)));
    let err = forge.open_selfheal_prs().await.expect_err("rate limited");
    assert!(
        matches!(err, ForgeError::RateLimited { retry_after } if retry_after.as_secs() == 3600),
        "{err:?}"
    );
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_409_after_an_ambiguous_create_resolves_to_the_existing_pr() {
    // The first attempt "created" the PR but its answer was a 502; the retry
    // meets Gitea's 409, and the forge finds the PR instead of failing.
    let (fake, forge) = spawn().await;
    fake.seed_pr("selfheal/other", "main", "fix");
    let number = fake.seed_pr("selfheal/x", "main", "fix(orders): cast id to bigint");
    fake.fail_next(502, 1, None);

    let pr = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/x"))
            .await
            .expect("found"),
    );

    assert_eq!(pr.number, number);
    assert_eq!(fake.prs().len(), 2);

    // Without the lost answer, the 409 is the forge's refusal, in its words.
    let err = forge
        .open_pr(&pr_request("selfheal/x"))
        .await
        .expect_err("a duplicate");
    match err {
        ForgeError::Validation(msg) => {
            assert!(
                msg.starts_with("pull request already exists for these targets"),
                "{msg}"
            )
        }
        other => panic!("expected Validation, got {other:?}"),
    }
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn an_overlong_gitea_body_is_cut_keeping_the_signature() {
    let (fake, forge) = spawn().await;
    let signature = "<!-- selfheal-signature: 0123456789abcdef -->\n";
    let body = format!(
        "## Root cause\norders\n\n```diff\n{}\n```\n\n{signature}",
        "+x\n".repeat(40_000)
    );
    let req = PrRequest {
        body,
        ..pr_request("selfheal/x")
    };

    forge.open_pr(&req).await.expect("opened");

    let held = &fake.prs()[0].body;
    assert!(held.chars().count() <= 65_536);
    assert!(held.ends_with(signature));
    assert!(held.contains("diff cut"));
    assert_eq!(fake.merge_calls(), 0);
}
