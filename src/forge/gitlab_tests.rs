//! The forge against the local fake GitLab: what goes over the wire and how
//! each answer GitLab can give becomes a [`ForgeError`]. Every story also
//! checks that nothing ever asked to merge or approve.

use std::time::{Duration, Instant};

use super::tests::{assert_not_ours, fast_retries, opened_pr};
use super::*;
use selfheal_fakes::gitlab::{FakeGitLab, MrReads};
use selfheal_fakes::server::AuthSeen;

const TOKEN: &str = "glpat-faketoken0123456789";

/// A project in nested groups, as GitLab allows.
const PROJECT: &str = "acme/data/dbt";

/// The project's `:id` in API paths.
const PROJECT_PATH: &str = "/api/v4/projects/acme%2Fdata%2Fdbt";

/// A fake GitLab for `acme/data/dbt` and a forge pointed at it.
async fn spawn() -> (FakeGitLab, Forge) {
    let fake = FakeGitLab::start(TOKEN, PROJECT)
        .await
        .expect("fake starts");
    let forge = gitlab_forge(&fake.api_base(), PROJECT, TOKEN);
    (fake, forge)
}

fn gitlab_client(api_base: &str, project: &str, token: &str) -> GitLab {
    GitLab::new(api_base, project, ForgeToken::new(token))
        .expect("client")
        .with_retry(fast_retries())
}

fn gitlab_forge(api_base: &str, project: &str, token: &str) -> Forge {
    Forge::GitLab(gitlab_client(api_base, project, token))
}

fn mr_request(head: &str) -> PrRequest {
    PrRequest {
        head: head.to_string(),
        base: "main".to_string(),
        title: "fix(orders): cast id to bigint".to_string(),
        body: "The hourly_marts run 48213 failed; this fixes it.".to_string(),
        options: PrOptions::default(),
    }
}

async fn open(forge: &Forge, head: &str) -> PullRequest {
    opened_pr(forge.open_pr(&mr_request(head)).await.expect("opened"))
}

#[tokio::test]
async fn opening_an_mr_in_nested_groups_sends_gitlabs_request_and_returns_it() {
    // Arrange
    let (fake, forge) = spawn().await;

    // Act
    let pr = open(&forge, "selfheal/hourly_marts/run-48213").await;

    // Assert
    assert_eq!(pr.number, 1);
    assert_eq!(
        pr.url,
        format!("{}/-/merge_requests/1", fake.project_web_url())
    );
    assert!(pr.url.contains("/acme/data/dbt/-/merge_requests/1"));
    assert_eq!(
        (pr.head.as_str(), pr.base.as_str(), pr.state.as_str()),
        ("selfheal/hourly_marts/run-48213", "main", "open")
    );
    assert_eq!(pr.body, "The hourly_marts run 48213 failed; this fixes it.");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "no reviewers: no user lookups");
    let req = &requests[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", format!("{PROJECT_PATH}/merge_requests").as_str())
    );
    assert_eq!(req.auth, AuthSeen::Valid);
    assert!(
        !format!("{req:?}").contains(TOKEN),
        "the fake does not keep the token"
    );
    assert_eq!(
        req.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        req.json().expect("json body"),
        serde_json::json!({
            "source_branch": "selfheal/hourly_marts/run-48213",
            "target_branch": "main",
            "title": "fix(orders): cast id to bigint",
            "description": "The hourly_marts run 48213 failed; this fixes it.",
        })
    );
    assert!(forge.owns_pr(&pr.url));
    assert_eq!(fake.mrs()[0].state, "opened");
    assert!(!fake.mrs()[0].draft);
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_draft_with_labels_and_reviewers_asks_gitlab_for_each_and_skips_unknown_people() {
    // Arrange
    let (fake, forge) = spawn().await;
    let ann = fake.add_user("ann");
    let bob = fake.add_user("bob");
    let mut req = mr_request("selfheal/x");
    req.options = PrOptions {
        draft: true,
        reviewers: vec!["ann".into(), "nobody-here".into(), "bob".into()],
        labels: vec!["selfheal".into(), "dbt".into()],
    };

    // Act
    let pr = opened_pr(forge.open_pr(&req).await.expect("opened despite a ghost"));

    // Assert
    assert_eq!(pr.title, "Draft: fix(orders): cast id to bigint");
    let mr = &fake.mrs()[0];
    assert!(mr.draft, "GitLab reads the title as a draft");
    assert_eq!(mr.labels, ["selfheal", "dbt"]);
    assert_eq!(mr.reviewer_ids, [ann, bob]);
    let asked: Vec<_> = fake
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path, r.query.unwrap_or_default()))
        .collect();
    let lookup = |name: &str| {
        (
            "GET".to_string(),
            "/api/v4/users".to_string(),
            format!("username={name}"),
        )
    };
    assert_eq!(
        asked[..3],
        [lookup("ann"), lookup("nobody-here"), lookup("bob")]
    );
    let sent = fake.requests()[3].json().expect("json");
    assert_eq!(sent["labels"], "selfheal,dbt");
    assert_eq!(sent["reviewer_ids"], serde_json::json!([ann, bob]));
    assert_eq!(fake.merge_calls(), 0);

    // A title that already says draft is not prefixed twice.
    req.head = "selfheal/y".into();
    req.title = "Draft: already".into();
    let again = opened_pr(forge.open_pr(&req).await.expect("opened"));
    assert_eq!(again.title, "Draft: already");
}

#[tokio::test]
async fn a_second_open_mr_for_the_branch_is_a_validation_error_with_gitlabs_message() {
    let (fake, forge) = spawn().await;
    open(&forge, "selfheal/x").await;

    let err = forge
        .open_pr(&mr_request("selfheal/x"))
        .await
        .expect_err("duplicate");

    match err {
        ForgeError::Validation(msg) => assert_eq!(
            msg,
            "Another open merge request already exists for this source branch: !1"
        ),
        other => panic!("expected Validation, got {other:?}"),
    }
    assert_eq!(fake.requests().len(), 2, "a 409 is not retried");
    assert_eq!(fake.mrs().len(), 1);
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn an_mr_created_by_an_attempt_whose_answer_was_lost_is_returned_not_duplicated() {
    // The first attempt "created" the MR but its answer was a 502; the retry
    // meets GitLab's 409, and the forge finds the MR instead of failing.
    let (fake, forge) = spawn().await;
    let iid = fake.seed_mr("selfheal/x", "main", "fix(orders): cast id to bigint");
    fake.seed_mr(
        "selfheal/x",
        "release",
        "the same branch into another target",
    );
    fake.fail_next(502, 1, None);

    let pr = open(&forge, "selfheal/x").await;

    assert_eq!((pr.number, pr.base.as_str()), (iid, "main"));
    assert_eq!(fake.mrs().len(), 2);
    let lookup = fake.requests().pop().expect("a lookup").query;
    let lookup = lookup.unwrap_or_default();
    assert!(
        lookup.contains("source_branch=selfheal%2Fx") && lookup.contains("target_branch=main"),
        "{lookup}"
    );
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_429_is_waited_out_as_gitlab_asks_and_then_the_mr_is_opened() {
    // (what GitLab answers first, the least time the retry should have waited)
    let cases = [
        ("429 retry-after 1", 429, 1, Duration::from_secs(1)),
        ("429 twice", 429, 2, Duration::ZERO),
        ("502 then fine", 502, 1, Duration::ZERO),
        ("503 three times", 503, 3, Duration::ZERO),
    ];
    for (name, status, times, least_wait) in cases {
        let (fake, forge) = spawn().await;
        fake.fail_next(status, times, Some(least_wait));
        let started = Instant::now();

        let opened = forge.open_pr(&mr_request("selfheal/x")).await;

        let pr = opened_pr(opened.unwrap_or_else(|e| panic!("{name}: {e:?}")));
        assert_eq!(pr.number, 1, "{name}");
        assert!(started.elapsed() >= least_wait, "{name}: retried too early");
        assert_eq!(fake.requests().len(), times + 1, "{name}");
        assert_eq!(fake.mrs().len(), 1, "{name}");
        assert_eq!(fake.merge_calls(), 0, "{name}");
    }
}

#[tokio::test]
async fn a_rate_limit_longer_than_the_cap_is_returned_and_server_errors_give_up() {
    let (fake, forge) = spawn().await;
    fake.fail_next(429, 1, Some(Duration::from_secs(3600)));
    let limited = forge.open_pr(&mr_request("selfheal/x")).await;
    assert!(
        matches!(limited, Err(ForgeError::RateLimited { retry_after }) if retry_after == Duration::from_secs(3600)),
        "{limited:?}"
    );
    assert_eq!(fake.requests().len(), 1, "not waited for");

    fake.fail_next(500, 10, None);
    let err = forge
        .open_pr(&mr_request("selfheal/x"))
        .await
        .expect_err("gives up");
    assert!(
        matches!(&err, ForgeError::Http(msg) if msg.contains("500")),
        "{err:?}"
    );
    assert_eq!(
        fake.requests().len(),
        1 + fast_retries().max_attempts as usize
    );
    assert!(fake.mrs().is_empty());
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn auth_scope_role_and_addressing_failures_map_to_their_errors() {
    let (fake, forge) = spawn().await;
    let wrong_token = gitlab_forge(&fake.api_base(), PROJECT, "glpat-wrong");
    let wrong_project = gitlab_forge(&fake.api_base(), "acme/data/other", TOKEN);

    let unauthorized = wrong_token.open_pr(&mr_request("selfheal/x")).await;
    let listing = wrong_token.open_selfheal_prs().await;
    let not_found = wrong_project.open_pr(&mr_request("selfheal/x")).await;
    fake.fail_next(403, 1, None);
    let read_only_scope = forge.open_pr(&mr_request("selfheal/x")).await;
    fake.set_access_level(20);
    let reporter = forge.open_pr(&mr_request("selfheal/x")).await;

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
    for (name, forbidden, said) in [
        ("scope", &read_only_scope, "insufficient_scope"),
        ("role", &reporter, "403 Forbidden"),
    ] {
        match forbidden {
            Err(ForgeError::Forbidden(msg)) => {
                assert!(msg.contains(said), "{name}: {msg}");
                assert!(msg.contains("`api` scope"), "{name}: {msg}");
            }
            other => panic!("{name}: expected Forbidden, got {other:?}"),
        }
    }
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.auth == AuthSeen::Invalid)
            .count(),
        2
    );
    assert!(fake.mrs().is_empty());
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn the_check_sees_whether_the_token_may_push() {
    let (fake, _) = spawn().await;
    let client = gitlab_client(&fake.api_base(), PROJECT, TOKEN);

    let developer = client.can_push().await.expect("asked");
    fake.set_access_level(20);
    let reporter = client.can_push().await.expect("asked");
    fake.set_access_level(40);
    let maintainer = client.can_push().await.expect("asked");
    let wrong = gitlab_client(&fake.api_base(), PROJECT, "glpat-wrong")
        .can_push()
        .await;

    assert_eq!((developer, reporter, maintainer), (true, false, true));
    assert!(matches!(wrong, Err(ForgeError::Unauthorized)), "{wrong:?}");
    assert_eq!(fake.requests()[0].path, PROJECT_PATH);
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn an_mrs_state_is_asked_with_its_etag_and_unchanged_answers_are_304s() {
    // Arrange
    let (fake, forge) = spawn().await;
    let url = open(&forge, "selfheal/x").await.url;

    // Act
    let first = forge.pr_state(&url, None).await.expect("first look");
    let first = first.expect("a full answer without an etag");
    let etag = first.etag.clone().expect("GitLab sends an ETag");
    let unchanged = forge.pr_state(&url, Some(&etag)).await.expect("again");
    let stale = forge
        .pr_state(&url, Some("W/\"not-the-current-one\""))
        .await
        .expect("asked with a stale etag");

    // Assert
    assert_eq!(first.state, PrState::Open);
    assert_eq!(unchanged, None, "304: unchanged since the etag");
    assert_eq!(stale, Some(first.clone()));
    assert_eq!(
        fake.mr_reads(),
        MrReads {
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
    let path = format!("{PROJECT_PATH}/merge_requests/1");
    assert_eq!(
        asked,
        [
            (path.clone(), None),
            (path.clone(), Some(etag)),
            (path, Some("W/\"not-the-current-one\"".to_string())),
        ]
    );
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_merge_or_a_close_changes_the_etag_and_says_who_merged() {
    let (fake, forge) = spawn().await;
    let merged_url = open(&forge, "selfheal/x").await.url;
    let closed_url = open(&forge, "selfheal/y").await.url;
    let etag_of = |snapshot: Option<PrSnapshot>| snapshot.expect("full").etag.expect("etag");
    let merged_etag = etag_of(forge.pr_state(&merged_url, None).await.expect("read"));
    let closed_etag = etag_of(forge.pr_state(&closed_url, None).await.expect("read"));

    assert!(fake.merge_mr(1, "DouweM"));
    assert!(fake.close_mr(2));
    let merged = forge
        .pr_state(&merged_url, Some(&merged_etag))
        .await
        .expect("read")
        .expect("changed: a full answer");
    let closed = forge
        .pr_state(&closed_url, Some(&closed_etag))
        .await
        .expect("read");

    assert_eq!(
        merged.state,
        PrState::Merged {
            by: Some("DouweM".into())
        }
    );
    assert_ne!(merged.etag, Some(merged_etag));
    assert_eq!(closed.expect("changed").state, PrState::Closed);
    assert_eq!(fake.mrs()[0].state, "merged");
    assert!(
        forge.open_selfheal_prs().await.expect("listed").is_empty(),
        "neither is open"
    );
    assert_eq!(fake.merge_calls(), 0, "the fake merged, not selfheal");
}

#[tokio::test]
async fn a_comment_is_a_note_on_the_mr_redacted_and_cut_to_gitlabs_limit() {
    // Arrange
    let (fake, forge) = spawn().await;
    let url = open(&forge, "selfheal/x").await.url;
    let redactor = crate::redact::Redactor::new(["PlantedSecret42".to_string()]);

    // Act
    forge
        .comment(
            &url,
            "The run 48214 passed after this fix; PlantedSecret42 and glpat-0123456789abcdefghij stay out.",
            &redactor,
        )
        .await
        .expect("commented");
    let long = "x".repeat(1_200_000);
    forge
        .comment(&url, &long, &redactor)
        .await
        .expect("a long comment is cut, not refused");

    // Assert
    let notes = fake.notes();
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[0].iid, 1);
    assert!(
        notes[0].body.contains("[REDACTED] and") && !notes[0].body.contains("PlantedSecret42"),
        "{}",
        notes[0].body
    );
    let cut = notes[1].body.chars().count();
    assert!(
        cut <= 1_000_000 && cut > 65_536,
        "GitLab's limit, not GitHub's: {cut}"
    );
    assert!(notes[1].body.ends_with("(cut: too long for a comment)"));
    let posted = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("notes"));
    assert_eq!(
        posted.map(|r| r.path),
        Some(format!("{PROJECT_PATH}/merge_requests/1/notes"))
    );
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_description_over_gitlabs_limit_is_cut_keeping_the_signature() {
    // Arrange: a body as `render::pr_body` ends it, far over 1,048,576 characters.
    let (fake, forge) = spawn().await;
    let signature = "<!-- selfheal-signature: d1296dccbe5463ad -->\n";
    let mut req = mr_request("selfheal/x");
    req.body = format!("## Root cause\n{}\n\n{signature}", "é".repeat(1_100_000));

    // Act
    let pr = opened_pr(forge.open_pr(&req).await.expect("opened, not refused"));

    // Assert
    let description = &fake.mrs()[0].description;
    assert!(description.chars().count() <= 1_048_576);
    assert!(description.starts_with("## Root cause\n"));
    assert!(description.ends_with(signature), "the marker survives");
    assert!(description.contains("(cut: too long for a merge request)"));
    assert_eq!(pr.body, *description);
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn listing_follows_three_pages_by_link_or_by_x_next_page() {
    for link in [true, false] {
        // Arrange: 5 selfheal MRs and a person's, two a page; a closed one.
        let (fake, forge) = spawn().await;
        fake.set_max_per_page(2);
        fake.set_link_header(link);
        for i in 0..5 {
            fake.seed_mr(&format!("selfheal/hourly_marts/run-{i}"), "main", "fix");
        }
        fake.seed_mr("feature/new-model", "main", "a person's change");
        let closed = fake.seed_mr("selfheal/old", "main", "fix");
        fake.close_mr(closed);

        // Act
        let prs = forge.open_selfheal_prs().await.expect("listed");

        // Assert
        assert_eq!(prs.len(), 5, "link: {link}");
        assert!(prs
            .iter()
            .all(|pr| pr.head.starts_with("selfheal/") && pr.state == "open"));
        let pages: Vec<_> = fake
            .requests()
            .into_iter()
            .map(|r| r.query.unwrap_or_default())
            .collect();
        assert_eq!(pages.len(), 3, "{pages:?}");
        for (i, page) in pages.iter().enumerate() {
            assert!(
                page.contains("state=opened") && page.contains(&format!("page={}", i + 1)),
                "{pages:?}"
            );
        }
        assert!(pages[0].contains("per_page=100"), "{pages:?}");
        assert_eq!(fake.merge_calls(), 0);
    }
}

#[tokio::test]
async fn merge_requests_of_other_projects_are_refused_without_a_request() {
    let (fake, forge) = spawn().await;
    let ours = open(&forge, "selfheal/x").await.url;
    let web = fake.project_web_url();
    let origin = web.trim_end_matches("/acme/data/dbt");
    let foreign = [
        "https://gitlab.com/acme/data/dbt/-/merge_requests/1".to_string(),
        format!("{origin}/acme/data/other/-/merge_requests/1"),
        format!("{origin}/acme/dbt/-/merge_requests/1"),
        format!("{origin}/acme/data/dbt/fork/-/merge_requests/1"),
        format!("{web}/-/issues/1"),
        format!("{web}/-/merge_requests/1/diffs"),
        format!("{origin}/api/v4/projects/acme%2Fdata%2Fdbt/merge_requests/1"),
    ];
    let before = fake.requests().len();

    assert_not_ours(&forge, &foreign).await;

    assert_eq!(fake.requests().len(), before, "nothing was asked");
    assert!(fake.notes().is_empty());
    assert!(forge.owns_pr(&ours));
    assert!(forge.has_api());
    assert_eq!(fake.merge_calls(), 0);
}
