//! A whole data team on one machine: the demo dbt project in a git repository
//! with a bare "origin", a scheduler that runs real dbt and keeps the run's
//! artifacts, a local Slack and a local GitHub. `selfheal demo` tells the story
//! with it; the end-to-end tests use it to stage real failures.
//!
//! Nothing here is needed to run selfheal for real.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use crate::fake_github::FakeGitHub;
use crate::fake_slack::{BotPost, FakeSlack};
use crate::runlog::{self, Artifacts};

/// The demo dbt project shipped with selfheal.
pub fn demo_project() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/demo"))
}

/// The Slack channels of the demo schedules.
pub const ALERTS: &str = "C0DATAALERTS";
pub const HEALING: &str = "C0AGENTDEMO";
/// The scheduler's Slack app.
pub const NOTIFIER_BOT: &str = "B0PARADIME";
const GITHUB_TOKEN: &str = "ghp_demoTokenForTheLocalFakeOnly0000";

/// An edit that breaks the project, as a person would commit it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Breakage {
    pub file: String,
    pub find: String,
    pub replace: String,
    pub description: String,
}

impl Breakage {
    /// The breakage recorded with a fixture case in `tests/fixtures/dbt/<case>/breakage.json`.
    pub fn fixture(case: &str) -> Result<Breakage> {
        let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dbt"))
            .join(case)
            .join("breakage.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The staged world.
pub struct World {
    pub root: PathBuf,
    /// The bare repository everyone pushes to.
    pub origin: PathBuf,
    /// The scheduler's checkout, where scheduled runs happen.
    pub prod: PathBuf,
    pub profiles_dir: PathBuf,
    pub run_logs: PathBuf,
    pub dbt: PathBuf,
    pub slack: FakeSlack,
    pub github: FakeGitHub,
}

/// A scheduled run's result.
pub struct ScheduledRun {
    pub passed: bool,
    pub console: String,
    pub took: Duration,
}

impl World {
    /// Builds the world under `root` (which must exist and be empty-ish).
    pub async fn create(root: &Path, dbt: &Path) -> Result<World> {
        let root = root.to_path_buf();
        let origin = root.join("origin.git");
        let prod = root.join("scheduler/jaffle_shop");
        let profiles_dir = root.join("profiles");
        let run_logs = root.join("run-logs");
        std::fs::create_dir_all(&run_logs)?;
        std::fs::create_dir_all(&profiles_dir)?;
        // The warehouse: one DuckDB file that scheduled runs and selfheal's
        // verification both reach through the profile, like a real warehouse.
        let warehouse = root.join("warehouse.duckdb");
        std::fs::write(
            profiles_dir.join("profiles.yml"),
            format!(
                "jaffle_shop:\n  target: prod\n  outputs:\n    prod:\n      type: duckdb\n      path: \"{}\"\n      threads: 1\n",
                warehouse.display()
            ),
        )?;

        git(
            &root,
            &["init", "--bare", "--initial-branch=main", "origin.git"],
        )
        .await?;
        copy_dir(&demo_project(), &prod)?;
        git(&prod, &["init", "--initial-branch=main"]).await?;
        git(&prod, &["add", "-A"]).await?;
        commit(&prod, "Jaffle shop: staging and marts").await?;
        git(
            &prod,
            &["remote", "add", "origin", &origin.display().to_string()],
        )
        .await?;
        git(&prod, &["push", "-q", "origin", "main"]).await?;

        let slack = FakeSlack::start().await;
        slack.add_channel(ALERTS, "data-alerts");
        slack.add_channel(HEALING, "agent-demo");
        let github = FakeGitHub::start(GITHUB_TOKEN, "acme", "jaffle-shop").await?;
        github.set_git_dir(&origin);
        Ok(World {
            root,
            origin,
            prod,
            profiles_dir,
            run_logs,
            dbt: dbt.to_path_buf(),
            slack,
            github,
        })
    }

    /// Commits and pushes a breakage to main, as an engineer would.
    pub async fn push_breakage(&self, b: &Breakage) -> Result<()> {
        let path = self.prod.join(&b.file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if !text.contains(&b.find) {
            bail!("{} does not contain {:?}", b.file, b.find);
        }
        std::fs::write(&path, text.replacen(&b.find, &b.replace, 1))?;
        git(&self.prod, &["add", "-A"]).await?;
        commit(&self.prod, &format!("Update {}", b.file)).await?;
        git(&self.prod, &["push", "-q", "origin", "main"]).await?;
        Ok(())
    }

    /// Runs `dbt build` like the scheduler and keeps what dbt left behind
    /// under the run id, as `selfheal notify` does for dbt Core users.
    pub async fn scheduled_run(&self, run_id: &str) -> Result<ScheduledRun> {
        let started = Instant::now();
        let out = Command::new(&self.dbt)
            .args(["--no-use-colors", "build", "--profiles-dir"])
            .arg(&self.profiles_dir)
            .current_dir(&self.prod)
            .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            .output()
            .await
            .with_context(|| format!("running {} build", self.dbt.display()))?;
        let mut console = String::from_utf8_lossy(&out.stdout).into_owned();
        console.push_str(&String::from_utf8_lossy(&out.stderr));
        let artifacts = Artifacts {
            run_results: std::fs::read_to_string(self.prod.join("target/run_results.json")).ok(),
            dbt_log: std::fs::read_to_string(self.prod.join("logs/dbt.log")).ok(),
            console: Some(console.clone()),
            command: Some("dbt build".into()),
        };
        // A run that failed before dbt ran anything leaves the previous run's
        // run_results.json behind; it must not be mistaken for this run's.
        let _ = std::fs::remove_file(self.prod.join("target/run_results.json"));
        let _ = std::fs::remove_file(self.prod.join("logs/dbt.log"));
        runlog::store_artifacts(&self.run_logs, run_id, &artifacts)?;
        Ok(ScheduledRun {
            passed: out.status.success(),
            console,
            took: started.elapsed(),
        })
    }

    /// The scheduler's failure notification, posted in every notified channel.
    pub async fn notify_failure(&self, schedule: &str, run_id: &str) -> (String, String) {
        let text = format!(
            ":x: *Bolt run failed* — schedule *{schedule}*\nRun ID: {run_id} · Environment: production\nCommand: `dbt build`\n<https://app.paradime.io/bolt/run_id/{run_id}|View run logs>"
        );
        let post = || BotPost {
            bot_id: NOTIFIER_BOT.into(),
            app_id: Some("A0PARADIME".into()),
            name: "Paradime".into(),
            text: text.clone(),
            ..BotPost::default()
        };
        let alerts = self.slack.post_as_bot(ALERTS, post()).await;
        let healing = self.slack.post_as_bot(HEALING, post()).await;
        (alerts, healing)
    }

    /// The bot's environment for this world.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("SLACK_APP_TOKEN", self.slack.app_token().to_string()),
            ("SLACK_BOT_TOKEN", self.slack.bot_token().to_string()),
            ("SLACK_API_URL", self.slack.api_url()),
            (
                "SELFHEAL_DB",
                self.root.join("selfheal.db").display().to_string(),
            ),
            ("SELFHEAL_SCHEDULES", self.prod.display().to_string()),
            ("SELFHEAL_NOTIFIER_BOTS", NOTIFIER_BOT.to_string()),
            ("SELFHEAL_REPO", self.origin.display().to_string()),
            ("SELFHEAL_RUN_LOGS", self.run_logs.display().to_string()),
            ("SELFHEAL_DBT", self.dbt.display().to_string()),
            (
                "SELFHEAL_DBT_PROFILES_DIR",
                self.profiles_dir.display().to_string(),
            ),
            ("SELFHEAL_GITHUB_TOKEN", GITHUB_TOKEN.to_string()),
            ("SELFHEAL_GITHUB_API_URL", self.github.api_base()),
            ("SELFHEAL_GITHUB_REPO", "acme/jaffle-shop".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The bot's configuration for this world, with `extra` variables on top.
    pub fn config(&self, extra: &[(&str, &str)]) -> Result<crate::config::Config> {
        let mut env: std::collections::HashMap<String, String> = self.env().into_iter().collect();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        crate::config::Config::from_env(&|k: &str| env.get(k).cloned())
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Checks out `branch` from origin into a fresh folder and runs `dbt build`
    /// there against the warehouse: does the fix really pass?
    pub async fn build_branch(&self, branch: &str) -> Result<bool> {
        let dir = self
            .root
            .join(format!("check-{}", branch.replace('/', "-")));
        let _ = std::fs::remove_dir_all(&dir);
        git(
            &self.root,
            &[
                "clone",
                "-q",
                "--branch",
                branch,
                &self.origin.display().to_string(),
                &dir.display().to_string(),
            ],
        )
        .await?;
        let out = Command::new(&self.dbt)
            .args(["--no-use-colors", "build", "--profiles-dir"])
            .arg(&self.profiles_dir)
            .current_dir(&dir)
            .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            .output()
            .await?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(out.status.success())
    }
}

/// The dbt executable: `SELFHEAL_DBT`, else the project's pinned venv
/// (installed by `scripts/setup-dbt` on first use).
pub async fn locate_dbt() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("SELFHEAL_DBT") {
        return Ok(PathBuf::from(p));
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv_dbt = repo.join(".venv/bin/dbt");
    if venv_dbt.is_file() {
        return Ok(venv_dbt);
    }
    eprintln!("Installing the pinned dbt toolchain into .venv (first run only, ~30 s)…");
    let out = Command::new(repo.join("scripts/setup-dbt"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("running scripts/setup-dbt")?;
    if !out.status.success() {
        bail!("scripts/setup-dbt failed; see its message above");
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

async fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

async fn commit(dir: &Path, message: &str) -> Result<()> {
    git(
        dir,
        &[
            "-c",
            "user.name=Dana Analyst",
            "-c",
            "user.email=dana@example.com",
            "commit",
            "-q",
            "-m",
            message,
        ],
    )
    .await
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        // Build output of a local run of the demo is not part of the project.
        if matches!(name.to_str(), Some("target" | "logs" | "dbt_packages")) {
            continue;
        }
        let dest = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}
