//! The forge against the local fake Azure DevOps: what goes over the wire and
//! how each answer Azure DevOps can give becomes a [`ForgeError`]. Every story
//! also checks that nothing ever asked to complete, abandon or vote.

use std::time::Duration;

use super::tests::{fast_retries, opened_pr, pr_request};
use super::*;
use selfheal_fakes::azure_devops::FakeAzureDevOps;
use selfheal_fakes::server::AuthSeen;

const PAT: &str = "azdo-pat-0123456789abcdef";
const PROJECT: &str = "Data Platform";

/// A fake Azure DevOps for `acme/Data Platform/dbt` and a forge pointed at it.
async fn spawn() -> (FakeAzureDevOps, Forge) {
    let fake = FakeAzureDevOps::start(PAT, "acme", PROJECT, "dbt")
        .await
        .expect("fake starts");
    let forge = azure_forge(&fake.api_base(), PAT);
    (fake, forge)
}

fn azure_forge(api_base: &str, pat: &str) -> Forge {
    let azure = AzureDevOps::new(
        api_base,
        &format!("acme/{PROJECT}/dbt"),
        ForgeToken::new(pat),
    )
    .expect("client");
    Forge::AzureDevOps(azure.with_retry(fast_retries()))
}

fn web_url(fake: &FakeAzureDevOps, id: u64) -> String {
    format!(
        "{}/acme/Data%20Platform/_git/dbt/pullrequest/{id}",
        fake.api_base()
    )
}

#[tokio::test]
async fn opening_a_draft_pr_with_labels_sends_azures_request_with_basic_auth() {
    // Arrange
    let (fake, forge) = spawn().await;
    fake.add_identity(
        "3ff4a20f-306e-677e-8a01-57f35e71f109",
        "ann@acme.example",
        "Ann",
    );
    let mut req = pr_request("selfheal/hourly_marts/run-48213");
    req.options = PrOptions {
        draft: true,
        reviewers: vec![
            "d6245f20-2af8-44f4-9451-8107cb2767db".into(),
            "ann@acme.example".into(),
            "ghost@acme.example".into(),
        ],
        labels: vec!["selfheal".into(), "dbt".into()],
    };

    // Act
    let pr = opened_pr(forge.open_pr(&req).await.expect("opened"));

    // Assert
    assert_eq!(pr.number, 1);
    assert_eq!(pr.url, web_url(&fake, 1));
    assert_eq!(
        (pr.head.as_str(), pr.base.as_str(), pr.state.as_str()),
        ("selfheal/hourly_marts/run-48213", "main", "open")
    );
    let requests = fake.requests();
    let lookups: Vec<&str> = requests
        .iter()
        .filter(|r| r.path == "/acme/_apis/identities")
        .filter_map(|r| r.query.as_deref())
        .collect();
    assert_eq!(
        lookups,
        [
            "searchFilter=General&filterValue=ann%40acme.example&queryMembership=None&api-version=7.1",
            "searchFilter=General&filterValue=ghost%40acme.example&queryMembership=None&api-version=7.1",
        ],
        "an id is not looked up"
    );
    assert_eq!(requests.len(), 3);
    let sent = &requests[2];
    assert_eq!(
        (
            sent.method.as_str(),
            sent.path.as_str(),
            sent.query.as_deref()
        ),
        (
            "POST",
            "/acme/Data%20Platform/_apis/git/repositories/dbt/pullrequests",
            Some("api-version=7.1")
        )
    );
    assert_eq!(sent.auth, AuthSeen::Valid);
    assert!(!format!("{sent:?}").contains(PAT));
    assert_eq!(
        sent.json().expect("json body"),
        serde_json::json!({
            "sourceRefName": "refs/heads/selfheal/hourly_marts/run-48213",
            "targetRefName": "refs/heads/main",
            "title": "fix(orders): cast id to bigint",
            "description": "The hourly_marts run 48213 failed; this fixes it.",
            "isDraft": true,
            "labels": [{ "name": "selfheal" }, { "name": "dbt" }],
            // An id as given, a name found by the identities API, an unknown one skipped.
            "reviewers": [
                { "id": "d6245f20-2af8-44f4-9451-8107cb2767db" },
                { "id": "3ff4a20f-306e-677e-8a01-57f35e71f109" },
            ],
        })
    );
    let held = &fake.prs()[0];
    assert!(held.is_draft);
    assert_eq!(held.labels, ["selfheal", "dbt"]);
    assert_eq!(held.reviewers.len(), 2);
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_server_collection_url_opens_the_pr_under_the_collection() {
    let fake = FakeAzureDevOps::start(PAT, "DefaultCollection", PROJECT, "dbt")
        .await
        .expect("fake starts");
    let azure = AzureDevOps::new(
        &fake.server_base(),
        &format!("DefaultCollection/{PROJECT}/dbt"),
        ForgeToken::new(PAT),
    )
    .expect("client");
    let forge = Forge::AzureDevOps(azure.with_retry(fast_retries()));

    let pr = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/x"))
            .await
            .expect("opened"),
    );

    assert_eq!(
        pr.url,
        format!(
            "{}/Data%20Platform/_git/dbt/pullrequest/1",
            fake.server_base()
        )
    );
    assert!(forge.owns_pr(&pr.url));
    assert_eq!(
        fake.requests()[0].path,
        "/tfs/DefaultCollection/Data%20Platform/_apis/git/repositories/dbt/pullrequests"
    );
}

#[tokio::test]
async fn listing_pages_with_top_and_skip_and_reads_selfheal_bodies_whole() {
    // Arrange: 205 active pull requests (three pages of 100), the selfheal
    // ones with a description longer than the list's 400 characters.
    let (fake, forge) = spawn().await;
    let body = |n: usize| {
        format!(
            "{}\n\n<!-- selfheal-signature: {n:016x} -->\n",
            "diff line\n".repeat(60)
        )
    };
    for n in 0..205 {
        match n % 3 {
            0 => fake.seed_pr(&format!("selfheal/s/{n}"), "main", "fix", &body(n)),
            _ => fake.seed_pr(&format!("feature/{n}"), "main", "feature", "short"),
        };
    }
    fake.abandon_pr(1, "ann@acme.example", "Ann");

    // Act
    let prs = forge.open_selfheal_prs().await.expect("listed");

    // Assert: every open selfheal PR, each with its whole body (the marker at its end).
    assert_eq!(prs.len(), 68, "69 selfheal PRs, one abandoned");
    assert!(prs.iter().all(|p| p.head.starts_with("selfheal/")));
    for pr in &prs {
        let n: usize = pr
            .head
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("n");
        assert_eq!(pr.body, body(n), "{}", pr.head);
        assert_eq!(pr.url, web_url(&fake, pr.number));
    }
    let pages: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/pullrequests"))
        .filter_map(|r| r.query.clone())
        .collect();
    assert_eq!(
        pages,
        [0, 100, 200].map(|skip| format!(
            "searchCriteria.status=active&%24top=100&%24skip={skip}&api-version=7.1"
        ))
    );
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_prs_state_says_completed_by_whom_or_abandoned() {
    let (fake, forge) = spawn().await;
    let merged = opened_pr(forge.open_pr(&pr_request("selfheal/a")).await.expect("a"));
    let abandoned = opened_pr(forge.open_pr(&pr_request("selfheal/b")).await.expect("b"));
    let open = opened_pr(forge.open_pr(&pr_request("selfheal/c")).await.expect("c"));
    fake.complete_pr(merged.number, "bob@acme.example", "Bob Builder");
    fake.abandon_pr(abandoned.number, "ann@acme.example", "Ann");

    let state = |url: String| {
        let forge = &forge;
        async move {
            forge
                .pr_state(&url, None)
                .await
                .expect("answered")
                .expect("a full answer")
                .state
        }
    };

    assert_eq!(
        state(merged.url).await,
        PrState::Merged {
            by: Some("bob@acme.example".into())
        }
    );
    assert_eq!(state(abandoned.url).await, PrState::Closed);
    assert_eq!(state(open.url).await, PrState::Open);
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_comment_is_a_new_active_thread_redacted() {
    let (fake, forge) = spawn().await;
    let pr = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/x"))
            .await
            .expect("opened"),
    );
    let redactor = crate::redact::Redactor::new(["PlantedSecret42".to_string()]);

    forge
        .comment(&pr.url, "The next run passed. PlantedSecret42", &redactor)
        .await
        .expect("commented");

    let threads = fake.threads();
    assert_eq!(threads.len(), 1);
    let thread = &threads[0];
    assert_eq!(thread.pr_id, pr.number);
    assert_eq!((thread.comment_type, thread.status), (1, 1));
    assert!(thread.content.starts_with("The next run passed."));
    assert!(
        !thread.content.contains("PlantedSecret42"),
        "{}",
        thread.content
    );
    let sent = fake.requests().pop().expect("a request");
    assert_eq!(
        sent.path,
        "/acme/Data%20Platform/_apis/git/repositories/dbt/pullRequests/1/threads"
    );
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn pull_requests_of_other_repositories_are_refused_without_a_request() {
    let (fake, forge) = spawn().await;
    let foreign = [
        format!(
            "{}/acme/Data%20Platform/_git/other/pullrequest/1",
            fake.api_base()
        ),
        format!(
            "{}/evil/Data%20Platform/_git/dbt/pullrequest/1",
            fake.api_base()
        ),
        "https://dev.azure.com/acme/Data%20Platform/_git/dbt/pullrequest/1".to_string(),
        "https://github.com/acme/dbt/pull/1".to_string(),
    ];
    let redactor = crate::redact::Redactor::default();
    for url in &foreign {
        assert!(!forge.owns_pr(url), "{url}");
        let state = forge.pr_state(url, None).await;
        assert!(matches!(state, Err(ForgeError::NotOurs(_))), "{state:?}");
        let comment = forge.comment(url, "hi", &redactor).await;
        assert!(
            matches!(comment, Err(ForgeError::NotOurs(_))),
            "{comment:?}"
        );
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn bad_tokens_and_missing_scopes_map_to_their_errors() {
    let (fake, forge) = spawn().await;
    let wrong = azure_forge(&fake.api_base(), "not-the-pat");

    let unauthorized = wrong.open_pr(&pr_request("selfheal/x")).await;
    fake.sign_in_next(1);
    let signed_out = forge.open_selfheal_prs().await;
    fake.set_read_only(true);
    let forbidden = forge.open_pr(&pr_request("selfheal/x")).await;

    assert!(
        matches!(unauthorized, Err(ForgeError::Unauthorized)),
        "{unauthorized:?}"
    );
    assert!(
        matches!(signed_out, Err(ForgeError::Unauthorized)),
        "a 203 sign-in page is a bad token: {signed_out:?}"
    );
    match forbidden {
        Err(ForgeError::Forbidden(msg)) => {
            assert!(
                msg.contains("TF401027") && msg.contains("vso.code_write"),
                "{msg}"
            )
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
    assert!(fake.prs().is_empty());
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_and_then_the_pr_is_opened() {
    let (fake, forge) = spawn().await;
    fake.fail_next(429, 1, Some(Duration::from_secs(1)));
    let started = std::time::Instant::now();

    let pr = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/x"))
            .await
            .expect("opened"),
    );

    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited Retry-After"
    );
    assert_eq!(pr.number, 1);
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(fake.prs().len(), 1);
}

#[tokio::test]
async fn a_pr_created_by_an_attempt_whose_answer_was_lost_is_returned_not_duplicated() {
    // The first attempt "created" the PR but its answer was a 503; the retry
    // meets TF401179, and the forge finds the PR instead of failing.
    let (fake, forge) = spawn().await;
    let long = format!("{}<!-- selfheal-signature: 1 -->", "x".repeat(600));
    let id = fake.seed_pr("selfheal/x", "main", "fix", &long);
    fake.fail_next(503, 1, None);

    let pr = opened_pr(
        forge
            .open_pr(&pr_request("selfheal/x"))
            .await
            .expect("found"),
    );

    assert_eq!(pr.number, id);
    assert_eq!(pr.body, long, "read whole, by id");
    assert_eq!(fake.prs().len(), 1);
    // Without an ambiguous first attempt, the 409 is the caller's to see.
    let again = forge.open_pr(&pr_request("selfheal/x")).await;
    match again {
        Err(ForgeError::Validation(msg)) => assert!(msg.starts_with("TF401179"), "{msg}"),
        other => panic!("expected a validation error, got {other:?}"),
    }
    assert_eq!(fake.merge_calls(), 0);
}

#[tokio::test]
async fn a_long_body_is_cut_under_4000_characters_keeping_its_signature() {
    let (fake, forge) = spawn().await;
    let marker = "<!-- selfheal-signature: d1296dccbe5463ad -->\n";
    let mut req = pr_request("selfheal/x");
    req.body = format!(
        "## Root cause\nx\n\n```diff\n{}\n```\n</details>\n\n## Context\nsee Slack\n\n{marker}",
        "+ select cast(id as bigint)\n".repeat(400)
    );

    let pr = opened_pr(forge.open_pr(&req).await.expect("opened, not refused"));

    let held = &fake.prs()[0].description;
    assert!(held.chars().count() <= 4_000, "{}", held.chars().count());
    assert!(held.ends_with(marker) && held.contains("## Context\nsee Slack"));
    let listed = forge.open_selfheal_prs().await.expect("listed");
    assert_eq!(listed[0].number, pr.number);
    assert!(
        listed[0].body.ends_with(marker),
        "the duplicate check finds it"
    );
}

#[tokio::test]
async fn can_push_reads_the_repository_with_the_token() {
    let (fake, forge) = spawn().await;
    let Forge::AzureDevOps(azure) = &forge else {
        unreachable!("spawn builds Azure DevOps")
    };
    assert!(azure.can_push().await.expect("answered"));
    let Forge::AzureDevOps(wrong) = azure_forge(&fake.api_base(), "nope") else {
        unreachable!("azure_forge builds Azure DevOps")
    };
    assert!(matches!(
        wrong.can_push().await,
        Err(ForgeError::Unauthorized)
    ));
    assert_eq!(
        fake.requests()[0].path,
        "/acme/Data%20Platform/_apis/git/repositories/dbt"
    );
}
