//! The healing story on every forge: a real broken commit, a real failing
//! dbt run, the fix verified with dbt and proposed as a change request on
//! the team's forge (a local fake speaking its API), never merged; then the
//! same error again is linked to that change request, not opened twice; and
//! a reviewer's follow-up lands on the same change request. (GitHub's are
//! the stories of `heal.rs`.)

use selfheal::demo::{Breakage, HEALING};
use selfheal::store::Status;
use selfheal_fakes::azure_devops::FakeAzureDevOps;
use selfheal_fakes::bitbucket::FakeBitbucket;
use selfheal_fakes::gitea::FakeGitea;
use selfheal_fakes::gitlab::FakeGitLab;

use crate::heal::{use_command_agent, FIX_THEN_FOLLOW_UP};
use crate::helpers::{broken_world, start_world_bot, world_final_message, world_session_end, WAIT};

/// A change request as any forge's fake holds it.
struct Opened {
    head: String,
    base: String,
    body: String,
}

/// One forge's fake, and the settings that point the bot at it.
enum Fake {
    GitLab(FakeGitLab),
    Gitea(FakeGitea),
    Bitbucket(FakeBitbucket),
    Azure(FakeAzureDevOps),
}

impl Fake {
    /// The bot's settings for this forge; the GitHub token is unset.
    fn env(&self) -> Vec<(&'static str, String)> {
        let (kind, token_var, token, api, project) = match self {
            Fake::GitLab(f) => (
                "gitlab",
                "SELFHEAL_GITLAB_TOKEN",
                "glpat-test",
                f.api_base(),
                "acme/data/dbt",
            ),
            Fake::Gitea(f) => (
                "gitea",
                "SELFHEAL_GITEA_TOKEN",
                "gitea-test",
                f.api_base(),
                "acme/dbt",
            ),
            Fake::Bitbucket(f) => (
                "bitbucket",
                "SELFHEAL_BITBUCKET_TOKEN",
                "ATCTT3x-test",
                f.api_base(),
                "acme/dbt",
            ),
            Fake::Azure(f) => (
                "azure-devops",
                "SELFHEAL_AZURE_DEVOPS_TOKEN",
                "azdo-test",
                f.api_base(),
                "acme/Data/dbt",
            ),
        };
        vec![
            ("SELFHEAL_GITHUB_TOKEN", String::new()),
            ("SELFHEAL_FORGE", kind.into()),
            ("SELFHEAL_FORGE_API_URL", api),
            ("SELFHEAL_FORGE_PROJECT", project.into()),
            (token_var, token.into()),
        ]
    }

    fn opened(&self) -> Vec<Opened> {
        match self {
            Fake::GitLab(f) => f
                .mrs()
                .into_iter()
                .map(|m| Opened {
                    head: m.source_branch,
                    base: m.target_branch,
                    body: m.description,
                })
                .collect(),
            Fake::Gitea(f) => f
                .prs()
                .into_iter()
                .map(|p| Opened {
                    head: p.head,
                    base: p.base,
                    body: p.body,
                })
                .collect(),
            Fake::Bitbucket(f) => f
                .prs()
                .into_iter()
                .map(|p| Opened {
                    head: p.source,
                    base: p.destination,
                    body: p.description,
                })
                .collect(),
            Fake::Azure(f) => f
                .prs()
                .into_iter()
                .map(|p| Opened {
                    head: p.source_ref.trim_start_matches("refs/heads/").into(),
                    base: p.target_ref.trim_start_matches("refs/heads/").into(),
                    body: p.description,
                })
                .collect(),
        }
    }

    fn merge_calls(&self) -> usize {
        match self {
            Fake::GitLab(f) => f.merge_calls(),
            Fake::Gitea(f) => f.merge_calls(),
            Fake::Bitbucket(f) => f.merge_calls(),
            Fake::Azure(f) => f.merge_calls(),
        }
    }
}

/// The story on `fake`'s forge.
async fn heals_on(fake: Fake, run: &str, again: &str) {
    // Arrange: the team's repository lives on this forge.
    let (world, _dir) = broken_world("demo", &Breakage::fixture("ref_typo").unwrap(), run).await;
    use_command_agent(&world, FIX_THEN_FOLLOW_UP);
    let env = fake.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (shutdown, bot) = start_world_bot(&world, &env).await;

    // Act: the scheduler announces the failure.
    let (_, ts) = world.notify_failure("hourly_marts", run).await;
    let row = world_session_end(&world, run, WAIT).await;

    // Assert: one change request from the session's branch into main,
    // carrying the error's signature, linked in the thread; nothing merged.
    assert_eq!(row.status, Status::Fixed, "{row:#?}");
    let opened = fake.opened();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].head, format!("selfheal/hourly_marts/run-{run}"));
    assert_eq!(opened[0].base, "main");
    assert!(
        opened[0].body.contains("<!-- selfheal-signature:"),
        "{}",
        opened[0].body
    );
    let pr_url = row.pr_url.clone().expect("the change request's link");
    let fin = world_final_message(&world, &ts, WAIT).await;
    assert!(fin.contains(&pr_url), "{fin}");
    assert!(world.github.prs().is_empty(), "GitHub was not asked");

    // Act: the same error fails the next run.
    let logs = &world.run_logs;
    copy_dir(&logs.join(run), &logs.join(again));
    world.notify_failure("hourly_marts", again).await;
    let dup = world_session_end(&world, again, WAIT).await;

    // Assert: the open change request is linked, none is opened.
    assert_eq!(dup.status, Status::Duplicate, "{dup:#?}");
    assert_eq!(dup.pr_url.as_deref(), Some(pr_url.as_str()));
    assert_eq!(fake.opened().len(), 1);

    // Act: a reviewer asks for more in the first thread.
    let bot_user = world.slack.bot_user_id().to_string();
    let ask = format!("<@{bot_user}> also add a note for reviewers");
    world
        .slack
        .post_as_user(HEALING, "U0REVIEWER", &ask, Some(&ts))
        .await;
    let store = selfheal::store::Store::open(&world.root.join("selfheal.db")).unwrap();
    let followup = world
        .slack
        .wait_until(WAIT, |_| {
            store
                .sessions_in_thread(HEALING, &ts)
                .unwrap()
                .into_iter()
                .find(|s| s.id != row.id && s.status.is_terminal())
        })
        .await
        .expect("a follow-up session ends");

    // Assert: its commit went to the same change request; nothing new, nothing merged.
    assert_eq!(followup.status, Status::Fixed, "{followup:#?}");
    assert_eq!(followup.pr_url.as_deref(), Some(pr_url.as_str()));
    assert_eq!(fake.opened().len(), 1);
    assert_eq!(fake.merge_calls(), 0);
    shutdown.cancel();
    let _ = bot.await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn a_fix_becomes_a_gitlab_merge_request_and_the_same_error_again_links_it() {
    let fake = FakeGitLab::start("glpat-test", "acme/data/dbt")
        .await
        .unwrap();
    heals_on(Fake::GitLab(fake), "1101", "1102").await;
}

#[tokio::test]
async fn a_fix_becomes_a_gitea_pull_request_and_the_same_error_again_links_it() {
    let fake = FakeGitea::start("gitea-test", "acme", "dbt").await.unwrap();
    heals_on(Fake::Gitea(fake), "1201", "1202").await;
}

#[tokio::test]
async fn a_fix_becomes_a_bitbucket_pull_request_and_the_same_error_again_links_it() {
    let fake = FakeBitbucket::start("ATCTT3x-test", "acme", "dbt")
        .await
        .unwrap();
    heals_on(Fake::Bitbucket(fake), "1301", "1302").await;
}

#[tokio::test]
async fn a_fix_becomes_an_azure_devops_pull_request_and_the_same_error_again_links_it() {
    let fake = FakeAzureDevOps::start("azdo-test", "acme", "Data", "dbt")
        .await
        .unwrap();
    heals_on(Fake::Azure(fake), "1401", "1402").await;
}
