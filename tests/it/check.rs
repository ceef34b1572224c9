//! `selfheal check` as a new user runs it before going live: the real binary
//! against the local fakes (Slack, GitHub, a model endpoint), a real git
//! repository and the pinned dbt. Each story asserts the exact lines printed.

use std::path::{Path, PathBuf};
use std::process::Output;

use selfheal_fakes::github::FakeGitHub;
use selfheal_fakes::llm::FakeLlm;
use selfheal_fakes::slack::FakeSlack;

use crate::helpers::*;

/// A set-up that passes every check: the fake Slack with both channels,
/// the schedules of the other stories and a command agent.
struct World {
    slack: FakeSlack,
    dir: tempfile::TempDir,
    dbt: PathBuf,
    env: Vec<(String, String)>,
}

impl World {
    async fn new() -> World {
        let slack = selfheal::demo::fake_slack().await;
        slack.add_channel(ALERTS, "data-alerts");
        slack.add_channel(HEALING, "agent-demo");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("paradime_schedules.yml"), SCHEDULES).unwrap();
        let agents = dir.path().join(".dinoai/agents");
        std::fs::create_dir_all(&agents).unwrap();
        std::fs::write(
            agents.join("scripted.yml"),
            "name: scripted\nversion: 1\nrole: r\ngoal: g\nbackstory: b\nselfheal:\n  runner: command\n  command: [\"true\"]\n",
        )
        .unwrap();
        let dbt = selfheal::dbt::locate(std::env::var_os("SELFHEAL_DBT").map(Into::into))
            .await
            .expect("the pinned dbt");
        let env = vec![
            ("SLACK_APP_TOKEN".into(), slack.app_token().to_string()),
            ("SLACK_BOT_TOKEN".into(), slack.bot_token().to_string()),
            ("SLACK_API_URL".into(), slack.api_url()),
            (
                "SELFHEAL_SCHEDULES".into(),
                dir.path().display().to_string(),
            ),
            ("SELFHEAL_DBT".into(), dbt.display().to_string()),
        ];
        World {
            slack,
            dir,
            dbt,
            env,
        }
    }

    fn set(&mut self, var: &str, value: impl Into<String>) {
        self.env.retain(|(k, _)| k != var);
        self.env.push((var.into(), value.into()));
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `selfheal check` with the world's environment and nothing else of ours.
    async fn check(&self) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_selfheal"))
            .arg("check")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.path())
            .output()
            .await
            .unwrap()
    }
}

/// The check's lines: everything after the configuration summary.
fn report(out: &Output) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (_, report) = stdout.split_once("\n\n").unwrap_or_else(|| {
        panic!(
            "no report in:\n{stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report.lines().map(str::to_string).collect()
}

/// A dbt project in a git repository: production is a DuckDB file; `ci`
/// is a Postgres target on a port nobody listens on.
fn dbt_repo(root: &Path) -> PathBuf {
    let repo = root.join("analytics");
    std::fs::create_dir_all(repo.join("models")).unwrap();
    std::fs::write(
        repo.join("dbt_project.yml"),
        "name: shop\nversion: '1.0'\nprofile: shop\nmodel-paths: [models]\n",
    )
    .unwrap();
    std::fs::write(repo.join("models/orders.sql"), "select 1 as id\n").unwrap();
    std::fs::write(
        repo.join("profiles.yml"),
        "shop:\n  target: prod\n  outputs:\n    prod:\n      type: duckdb\n      path: prod.duckdb\n    ci:\n      type: postgres\n      host: 127.0.0.1\n      port: 1\n      user: ci\n      password: not-a-secret\n      dbname: analytics\n      schema: ci\n      threads: 1\n      connect_timeout: 2\n",
    )
    .unwrap();
    for args in [
        vec!["init", "-q", "-b", "main"],
        vec!["add", "."],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "shop",
        ],
    ] {
        let status = std::process::Command::new("git")
            .args(&args)
            .current_dir(&repo)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }
    repo
}

#[tokio::test]
async fn check_says_which_slack_setting_is_wrong_and_what_to_do() {
    let bot_token_rejected = [
        "✗ Slack bot token: Slack rejected it (invalid_auth)",
        "  → set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-…): OAuth & Permissions, after installing the app",
        "✓ Slack app token: opens a Socket Mode connection",
        "– bot token scopes: not checked: the bot token does not work",
        "– channel #data-alerts: not checked: the bot token does not work",
        "– channel #agent-demo: not checked: the bot token does not work",
    ];
    let missing_scope = [
        "✓ Slack bot token: works as @selfheal in Fake Workspace",
        "✓ Slack app token: opens a Socket Mode connection",
        "✗ bot token scopes: missing users:read",
        "  → add them under OAuth & Permissions → Bot Token Scopes (see data/slack-app-manifest.yml), then reinstall the app",
        "✓ channel #data-alerts: C0ALERTS01, the bot is a member",
        "✓ channel #agent-demo: C0HEALING1, the bot is a member",
    ];
    let not_in_channel = [
        "✓ Slack bot token: works as @selfheal in Fake Workspace",
        "✓ Slack app token: opens a Socket Mode connection",
        "✓ bot token scopes: has the 7 scopes of data/slack-app-manifest.yml",
        "✓ channel #data-alerts: C0ALERTS01, the bot is a member",
        "✗ channel #agent-demo: the bot is not a member",
        "  → invite the bot: /invite @selfheal in #agent-demo",
    ];
    let all_good = [
        "✓ Slack bot token: works as @selfheal in Fake Workspace",
        "✓ Slack app token: opens a Socket Mode connection",
        "✓ bot token scopes: has the 7 scopes of data/slack-app-manifest.yml",
        "✓ channel #data-alerts: C0ALERTS01, the bot is a member",
        "✓ channel #agent-demo: C0HEALING1, the bot is a member",
    ];
    type Arrange = fn(&mut World);
    let cases: [(&str, Arrange, &[&str], &str); 4] = [
        (
            "all good",
            |_| {},
            &all_good,
            "6 passed, 0 warnings, 0 failed, 5 not checked",
        ),
        (
            "bad bot token",
            |w| w.set("SLACK_BOT_TOKEN", "xoxb-revoked"),
            &bot_token_rejected,
            "2 passed, 0 warnings, 1 failed, 8 not checked",
        ),
        (
            "missing scope",
            |w| {
                let granted: Vec<&str> = selfheal::slack::manifest::bot_scopes()
                    .into_iter()
                    .filter(|s| *s != "users:read")
                    .collect();
                w.slack.set_bot_scopes(&granted);
            },
            &missing_scope,
            "5 passed, 0 warnings, 1 failed, 5 not checked",
        ),
        (
            "not in channel",
            |w| w.slack.set_bot_member(HEALING, false),
            &not_in_channel,
            "5 passed, 0 warnings, 1 failed, 5 not checked",
        ),
    ];
    for (story, arrange, slack_lines, count) in cases {
        // Arrange
        let mut world = World::new().await;
        arrange(&mut world);

        // Act
        let out = world.check().await;

        // Assert: the Slack lines, then the rest of a set-up without a repository.
        let lines = report(&out);
        let dbt = lines
            .iter()
            .find(|l| l.starts_with("✓ dbt: "))
            .cloned()
            .unwrap_or_default();
        assert!(
            dbt.starts_with(&format!("✓ dbt: {} (dbt-core ", world.dbt.display())),
            "{story}: {lines:#?}"
        );
        let mut expected: Vec<String> = slack_lines.iter().map(|s| s.to_string()).collect();
        expected.extend([
            "– repository: not set (SELFHEAL_REPO): command agents work in a scratch folder".to_string(),
            "– run logs: not set (SELFHEAL_RUN_LOGS or SELFHEAL_RUN_LOG_SOURCE): sessions read the notification only".into(),
            dbt,
            "– verification: none (no SELFHEAL_REPO)".into(),
            "– dbt debug: needs a local SELFHEAL_REPO (a remote one is checked per session)".into(),
            "– forge: no SELFHEAL_GITHUB_TOKEN: sessions push the branch and post a compare link".into(),
            count.into(),
        ]);
        assert_eq!(lines, expected, "{story}");
        let passes = count.contains(" 0 failed");
        assert_eq!(
            out.status.success(),
            passes,
            "{story}: exit {:?}",
            out.status
        );
    }
}

#[tokio::test]
async fn check_finds_a_missing_repository_a_missing_dbt_and_a_failing_dbt_debug() {
    // Arrange: one world per story; the repository and run logs are real.
    let mut missing_repo = World::new().await;
    let gone = missing_repo.path().join("gone");
    missing_repo.set("SELFHEAL_REPO", gone.display().to_string());

    let mut no_dbt = World::new().await;
    let repo = dbt_repo(no_dbt.path());
    no_dbt.set("SELFHEAL_REPO", repo.display().to_string());
    let no_such_dbt = no_dbt.path().join("bin/dbt");
    no_dbt.set("SELFHEAL_DBT", no_such_dbt.display().to_string());

    let mut ci_down = World::new().await;
    let ci_repo = dbt_repo(ci_down.path());
    ci_down.set("SELFHEAL_REPO", ci_repo.display().to_string());
    ci_down.set("SELFHEAL_DBT_TARGET", "ci");

    let mut duckdb = World::new().await;
    let duck_repo = dbt_repo(duckdb.path());
    duckdb.set("SELFHEAL_REPO", duck_repo.display().to_string());

    // Act
    let (gone_out, no_dbt_out, ci_out, duck_out) = tokio::join!(
        missing_repo.check(),
        no_dbt.check(),
        ci_down.check(),
        duckdb.check()
    );

    // Assert: the lines after Slack's five (checked in the story above).
    let after_slack = |out: &Output| report(out)[5..].to_vec();
    let dbt_line = |w: &World, out: &Output| {
        let line = after_slack(out)
            .into_iter()
            .find(|l| l.starts_with("✓ dbt: "))
            .unwrap_or_default();
        assert!(
            line.starts_with(&format!("✓ dbt: {} (dbt-core ", w.dbt.display())),
            "{line}"
        );
        line
    };

    let lines = after_slack(&gone_out);
    assert_eq!(
        lines,
        [
            format!("✗ repository: git ls-remote {} failed: '{}' does not appear to be a git repository", gone.display(), gone.display()),
            "  → set SELFHEAL_REPO to a URL or path this machine can clone (with its credentials)".into(),
            "– run logs: not set (SELFHEAL_RUN_LOGS or SELFHEAL_RUN_LOG_SOURCE): sessions read the notification only".into(),
            dbt_line(&missing_repo, &gone_out),
            "– verification: not checked: the repository is not reachable".into(),
            "– dbt debug: not checked: dbt or the verification place is not ready".into(),
            "– forge: no SELFHEAL_GITHUB_TOKEN: sessions push the branch and post a compare link".into(),
            "6 passed, 0 warnings, 1 failed, 4 not checked".into(),
        ]
    );
    assert_eq!(gone_out.status.code(), Some(1));

    let lines = after_slack(&no_dbt_out);
    assert_eq!(
        lines,
        [
            format!("✓ repository: {}: 1 branches, default `main`", repo.display()),
            "– run logs: not set (SELFHEAL_RUN_LOGS or SELFHEAL_RUN_LOG_SOURCE): sessions read the notification only".into(),
            format!("✗ dbt: `{}` not found", no_such_dbt.display()),
            "  → install dbt (./scripts/setup-dbt prints its path) and set SELFHEAL_DBT to it".into(),
            "✓ verification: builds in a throwaway copy of production's DuckDB (`prod` is never opened)".into(),
            "– dbt debug: not checked: dbt or the verification place is not ready".into(),
            "– forge: no SELFHEAL_GITHUB_TOKEN: sessions push the branch and post a compare link".into(),
            "7 passed, 0 warnings, 1 failed, 3 not checked".into(),
        ]
    );
    assert_eq!(no_dbt_out.status.code(), Some(1));

    let lines = after_slack(&ci_out);
    assert_eq!(
        lines,
        [
            format!("✓ repository: {}: 1 branches, default `main`", ci_repo.display()),
            "– run logs: not set (SELFHEAL_RUN_LOGS or SELFHEAL_RUN_LOG_SOURCE): sessions read the notification only".into(),
            dbt_line(&ci_down, &ci_out),
            "✓ verification: builds in CI target `ci` (a schema of its own), parents included".into(),
            DBT_DEBUG_CI_DOWN.into(),
            "  → fix the connection of the verification target in profiles.yml (SELFHEAL_DBT_PROFILES_DIR)".into(),
            "– forge: no SELFHEAL_GITHUB_TOKEN: sessions push the branch and post a compare link".into(),
            "8 passed, 0 warnings, 1 failed, 2 not checked".into(),
        ],
        "{}",
        String::from_utf8_lossy(&ci_out.stdout)
    );
    assert_eq!(ci_out.status.code(), Some(1));

    let lines = after_slack(&duck_out);
    assert_eq!(
        lines[3..],
        [
            "✓ verification: builds in a throwaway copy of production's DuckDB (`prod` is never opened)".to_string(),
            "✓ dbt debug: connects with the session's profile (target `selfheal_session`)".into(),
            "– forge: no SELFHEAL_GITHUB_TOKEN: sessions push the branch and post a compare link".into(),
            "9 passed, 0 warnings, 0 failed, 2 not checked".into(),
        ],
        "{}",
        String::from_utf8_lossy(&duck_out.stdout)
    );
    assert!(duck_out.status.success());
    // The check wrote nothing into the repository (no logs/, target/ or database).
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain", "--ignored"])
        .current_dir(&duck_repo)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "",
        "the repository is untouched"
    );
}

/// What `dbt debug` says when the CI target's server does not answer.
const DBT_DEBUG_CI_DOWN: &str = "✗ dbt debug: failed: Connection test: [ERROR]: connection to server at \"127.0.0.1\", port 1 failed: Connection refused";

#[tokio::test]
async fn check_says_when_the_forge_refuses_the_token_and_when_a_model_endpoint_does() {
    let github = FakeGitHub::start("ghp_right", "acme", "analytics")
        .await
        .unwrap();
    let llm = FakeLlm::start_with_key("sk-right").await.unwrap();
    let cases = [
        ("ghp_right", "sk-right", true, vec![
            "✓ forge: the token can push to acme/analytics and open pull requests",
            "✓ agent reviewer: {base}/models answers",
        ]),
        ("ghp_wrong", "sk-wrong", false, vec![
            "✗ forge: GitHub rejected SELFHEAL_GITHUB_TOKEN for acme/analytics (401)",
            "  → give SELFHEAL_GITHUB_TOKEN Contents and Pull requests write access to acme/analytics",
            "✗ agent reviewer: {base}/models answered HTTP 401",
            "  → set REVIEWER_KEY to a key the endpoint accepts",
        ]),
    ];
    for (gh_token, llm_key, passes, want) in cases {
        // Arrange: an llm agent no schedule uses (so it needs no repository).
        let mut world = World::new().await;
        std::fs::write(
            world.path().join(".dinoai/agents/reviewer.yml"),
            format!("name: reviewer\nversion: 1\nrole: r\ngoal: g\nbackstory: b\nselfheal:\n  runner: llm\n  base_url: {}\n  model: fake\n  api_key_env: REVIEWER_KEY\n", llm.base_url()),
        )
        .unwrap();
        world.set("SELFHEAL_GITHUB_TOKEN", gh_token);
        world.set("SELFHEAL_GITHUB_API_URL", github.api_base());
        world.set("SELFHEAL_GITHUB_REPO", "acme/analytics");
        world.set("REVIEWER_KEY", llm_key);

        // Act
        let out = world.check().await;

        // Assert
        let lines = report(&out);
        let at = lines
            .iter()
            .position(|l| l.contains("forge:"))
            .expect("a forge line");
        let want: Vec<String> = want
            .iter()
            .map(|l| l.replace("{base}", llm.base_url().trim_end_matches('/')))
            .collect();
        assert_eq!(lines[at..at + want.len()], want[..], "{}", lines.join("\n"));
        assert_eq!(out.status.success(), passes);
    }

    // A token that can read but not push cannot open pull requests.
    let world = {
        let mut w = World::new().await;
        w.set("SELFHEAL_GITHUB_TOKEN", "ghp_right");
        w.set("SELFHEAL_GITHUB_API_URL", github.api_base());
        w.set("SELFHEAL_GITHUB_REPO", "acme/analytics");
        w
    };
    github.set_can_push(false);
    let lines = report(&world.check().await);
    let at = lines
        .iter()
        .position(|l| l.contains("forge:"))
        .expect("a forge line");
    assert_eq!(
        lines[at..at + 2],
        [
            "✗ forge: the token can read acme/analytics but not push to it",
            "  → give SELFHEAL_GITHUB_TOKEN Contents and Pull requests write access to acme/analytics",
        ]
    );
}
