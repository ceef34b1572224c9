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

use selfheal_fakes::github::{FakeGitHub, FakePr};
use selfheal_fakes::slack::{BotPost, FakeSlack};

use crate::drill::stage::sha256_hex;
use crate::runlog::{self, Artifacts};
use crate::workspace::git_out;

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

/// The demo's cases: the folders of `tests/fixtures/dbt`, with what each breaks.
pub fn cases() -> Result<Vec<(String, Breakage)>> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dbt"));
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.join("breakage.json").is_file() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let breakage = Breakage::fixture(&name)?;
            cases.push((name, breakage));
        }
    }
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(cases)
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
    /// Where the scheduler's profiles.yml is (the checkout itself when the
    /// project carries its own).
    pub profiles_dir: PathBuf,
    /// Whether the profiles live outside the repository (the bot is then
    /// told where with `SELFHEAL_DBT_PROFILES_DIR`).
    pub profiles_outside: bool,
    /// Production's database files: what no session may change.
    pub production: Vec<PathBuf>,
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

/// The team-written projects of `tests/fixtures/projects`, one per layout
/// real teams use: `<layout>/project/` is the repository; an optional
/// `<layout>/profiles.yml` lives outside it (`@ROOT@` is the world's
/// folder); an optional `<layout>/warehouse.sql` loads production's raw data.
pub fn layouts_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/projects"
    ))
}

impl World {
    /// Builds the demo's world under `root` (which must exist and be empty-ish).
    pub async fn create(root: &Path, dbt: &Path) -> Result<World> {
        let warehouse = root.join("warehouse.duckdb");
        // The warehouse: one DuckDB file outside the repository, production's.
        let profiles = format!(
            "jaffle_shop:\n  target: prod\n  outputs:\n    prod:\n      type: duckdb\n      path: \"{}\"\n      threads: 1\n",
            warehouse.display()
        );
        World::build(
            root,
            dbt,
            &demo_project(),
            "jaffle_shop",
            Some(profiles),
            vec![warehouse],
        )
        .await
    }

    /// Builds the world of a layout of `tests/fixtures/projects`.
    pub async fn create_layout(root: &Path, dbt: &Path, layout: &str) -> Result<World> {
        let dir = layouts_dir().join(layout);
        if !dir.join("project/dbt_project.yml").is_file() {
            bail!("no layout {layout} in {}", layouts_dir().display());
        }
        let root_text = root.display().to_string();
        let profiles = match std::fs::read_to_string(dir.join("profiles.yml")) {
            Ok(t) => Some(t.replace("@ROOT@", &root_text)),
            Err(_) => None,
        };
        let mut production = vec![];
        if let Ok(sql) = std::fs::read_to_string(dir.join("warehouse.sql")) {
            let file = root.join("warehouse/warehouse.duckdb");
            std::fs::create_dir_all(root.join("warehouse"))?;
            load_duckdb(dbt, &file, &sql).await?;
            production.push(file);
        }
        let mut world = World::build(
            root,
            dbt,
            &dir.join("project"),
            layout,
            profiles,
            production,
        )
        .await?;
        if !world.profiles_outside {
            // The project's own profile builds into a file inside the checkout.
            world.production.push(world.prod.join("shop.duckdb"));
        }
        Ok(world)
    }

    async fn build(
        root: &Path,
        dbt: &Path,
        project: &Path,
        name: &str,
        profiles: Option<String>,
        production: Vec<PathBuf>,
    ) -> Result<World> {
        let root = root.to_path_buf();
        let origin = root.join("origin.git");
        let prod = root.join("scheduler").join(name);
        let run_logs = root.join("run-logs");
        std::fs::create_dir_all(&run_logs)?;
        let (profiles_dir, profiles_outside) = match profiles {
            Some(text) => {
                let dir = root.join("profiles");
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("profiles.yml"), text)?;
                (dir, true)
            }
            None => (prod.clone(), false),
        };

        git(
            &root,
            &["init", "--bare", "--initial-branch=main", "origin.git"],
        )
        .await?;
        copy_dir(project, &prod)?;
        git(&prod, &["init", "--initial-branch=main"]).await?;
        git(&prod, &["add", "-A"]).await?;
        commit(&prod, &format!("{name}: staging and marts")).await?;
        git(
            &prod,
            &["remote", "add", "origin", &origin.display().to_string()],
        )
        .await?;
        git(&prod, &["push", "-q", "origin", "main"]).await?;

        let slack = fake_slack().await;
        slack.add_channel(ALERTS, "data-alerts");
        slack.add_channel(HEALING, "agent-demo");
        let github = FakeGitHub::start(GITHUB_TOKEN, "acme", "jaffle-shop").await?;
        github.set_git_dir(&origin);
        Ok(World {
            root,
            origin,
            prod,
            profiles_dir,
            profiles_outside,
            production,
            run_logs,
            dbt: dbt.to_path_buf(),
            slack,
            github,
        })
    }

    /// A sha256 of each production database file (absent files included):
    /// equal before and after a session means the session never wrote there.
    pub fn production_checksums(&self) -> Vec<(PathBuf, String)> {
        self.production
            .iter()
            .map(|f| {
                let sum = std::fs::File::open(f)
                    .and_then(sha256_hex)
                    .unwrap_or_else(|_| "absent".into());
                (f.clone(), sum)
            })
            .collect()
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
        if self.prod.join("packages.yml").is_file() {
            let deps = Command::new(&self.dbt)
                .args(["--no-use-colors", "deps", "--profiles-dir"])
                .arg(&self.profiles_dir)
                .current_dir(&self.prod)
                .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
                .output()
                .await
                .with_context(|| format!("running {} deps", self.dbt.display()))?;
            if !deps.status.success() {
                bail!("dbt deps failed: {}", String::from_utf8_lossy(&deps.stdout));
            }
        }
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
        runlog::store_manifest(&self.run_logs, run_id, &self.prod.join("target"))?;
        let _ = std::fs::remove_file(self.prod.join("target/manifest.json"));
        Ok(ScheduledRun {
            passed: out.status.success(),
            console,
            took: started.elapsed(),
        })
    }

    /// A person merges `branch` into main (a fast-forward, as GitHub's merge
    /// button would for a branch made from main): the scheduler's next run
    /// builds it.
    pub async fn merge_into_main(&self, branch: &str) -> Result<()> {
        git(&self.prod, &["fetch", "-q", "origin", branch]).await?;
        git(&self.prod, &["merge", "-q", "--ff-only", "FETCH_HEAD"]).await?;
        git(&self.prod, &["push", "-q", "origin", "main"]).await?;
        Ok(())
    }

    /// The scheduler's success notification, in the healing channel (the one
    /// that asked for `passed` events).
    pub async fn notify_pass(&self, schedule: &str, run_id: &str) -> String {
        let text = format!(
            ":white_check_mark: *Bolt run succeeded* — schedule *{schedule}*\nRun ID: {run_id} · Environment: production\n<https://app.paradime.io/bolt/run_id/{run_id}|View run logs>"
        );
        let post = BotPost {
            bot_id: NOTIFIER_BOT.into(),
            app_id: Some("A0PARADIME".into()),
            name: "Paradime".into(),
            text,
            ..BotPost::default()
        };
        self.slack.post_as_bot(HEALING, post).await
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
            ("SELFHEAL_GITHUB_TOKEN", GITHUB_TOKEN.to_string()),
            ("SELFHEAL_GITHUB_API_URL", self.github.api_base()),
            ("SELFHEAL_GITHUB_REPO", "acme/jaffle-shop".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(self.profiles_outside.then(|| {
            (
                "SELFHEAL_DBT_PROFILES_DIR".to_string(),
                self.profiles_dir.display().to_string(),
            )
        }))
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
    /// there against a copy of the warehouse: does the fix really pass?
    /// (Production itself only changes when people merge.)
    pub async fn build_branch(&self, branch: &str) -> Result<bool> {
        let dir = self
            .root
            .join(format!("check-{}", branch.replace('/', "-")));
        let _ = std::fs::remove_dir_all(&dir);
        let profiles = self
            .root
            .join(format!("check-profiles-{}", branch.replace('/', "-")));
        std::fs::create_dir_all(&profiles)?;
        if self.profiles_outside {
            let mut text = std::fs::read_to_string(self.profiles_dir.join("profiles.yml"))?;
            for (i, file) in self.production.iter().enumerate() {
                let copy = profiles.join(format!("{i}"));
                std::fs::create_dir_all(&copy)?;
                let copy = copy.join(file.file_name().context("a database file name")?);
                std::fs::copy(file, &copy)?;
                text = text.replace(&file.display().to_string(), &copy.display().to_string());
            }
            std::fs::write(profiles.join("profiles.yml"), text)?;
        }
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
        let profiles_dir = if self.profiles_outside {
            &profiles
        } else {
            &dir
        };
        let out = Command::new(&self.dbt)
            .args(["--no-use-colors", "build", "--profiles-dir"])
            .arg(profiles_dir)
            .current_dir(&dir)
            .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            .output()
            .await?;
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&profiles);
        Ok(out.status.success())
    }
}

/// A local Slack whose bot token has the scopes of selfheal's app manifest,
/// as a workspace that installed the app would grant them.
pub async fn fake_slack() -> FakeSlack {
    FakeSlack::builder()
        .bot_scopes(&crate::slack::manifest::bot_scopes())
        .start()
        .await
}

async fn git(dir: &Path, args: &[&str]) -> Result<()> {
    git_out(dir, args).await.map(|_| ())
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

/// Runs `sql` against a DuckDB file with the duckdb module of dbt's Python.
async fn load_duckdb(dbt: &Path, file: &Path, sql: &str) -> Result<()> {
    let python = dbt.with_file_name("python");
    let out = Command::new(&python)
        .args([
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); c.execute(sys.argv[2]); c.close()",
        ])
        .arg(file)
        .arg(sql)
        .output()
        .await
        .with_context(|| format!("running {} (the Python beside dbt)", python.display()))?;
    if !out.status.success() {
        bail!(
            "loading {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
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

// ---- `selfheal demo` ---------------------------------------------------------

/// What `selfheal demo` is asked to show.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Keep the demo's folder (project, origin, warehouse, database) and print its path.
    pub keep: bool,
    /// The fixture case (`tests/fixtures/dbt/<case>`) whose breakage is pushed.
    pub case: String,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            keep: false,
            case: "ref_typo".into(),
        }
    }
}

/// How the demo's story ended.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    /// How the healing session ended.
    pub status: crate::store::Status,
    /// The pull request, when one was opened.
    pub pr: Option<FakePr>,
    /// The PR link as posted in the thread.
    pub pr_url: Option<String>,
    /// Whether `dbt build` passes on the PR branch (`None` without a PR).
    pub branch_passes: Option<bool>,
    /// From the failure notification to the PR link in the thread.
    pub time_to_pr: Option<Duration>,
    /// What the agent concluded.
    pub summary: Option<String>,
    /// The demo's folder, when it was kept.
    pub kept: Option<PathBuf>,
    /// Whether production's warehouse was byte-identical after the session.
    pub production_untouched: bool,
}

/// How long the demo waits for the healing session to end.
const DEMO_DEADLINE: Duration = Duration::from_secs(180);

/// Tells the whole story locally — a broken commit, a failing scheduled run,
/// the notification, the healing thread, the pull request, the proof that it
/// passes, and the loop closed in the thread once a person merges it and the
/// next run passes — printing it as a narrative on stdout. Needs nothing but git and dbt
/// (installed on first use).
///
/// A session that ends without a fix (a data problem, an ambiguous error) is a
/// successful demo too; an `Err` means the demo itself broke.
pub async fn run_demo(opts: DemoOptions) -> Result<DemoOutcome> {
    let breakage = Breakage::fixture(&opts.case).with_context(|| {
        format!(
            "unknown demo case {:?}; cases are the folders of tests/fixtures/dbt",
            opts.case
        )
    })?;
    let folder = DemoFolder::create(opts.keep)?;
    let mut outcome = tell(&breakage, folder.path()).await;
    if opts.keep {
        println!("\nThe demo's folder was kept: {}", folder.path().display());
        if let Ok(o) = &mut outcome {
            o.kept = Some(folder.path().to_path_buf());
        }
    }
    outcome
}

async fn tell(breakage: &Breakage, root: &Path) -> Result<DemoOutcome> {
    const SCHEDULE: &str = "hourly_marts";
    const RUN_ID: &str = "48213";

    header("1. dbt");
    let dbt = crate::drill::default_dbt().await?;
    println!("Using {}", dbt.display());

    header("2. A data team on this machine");
    let world = World::create(root, &dbt)
        .await
        .context("building the demo world")?;
    println!(
        "The jaffle_shop dbt project, its origin repository, a DuckDB warehouse,\n\
         a local Slack (#data-alerts, #agent-demo) and a local GitHub, in {}.",
        root.display()
    );
    let yesterday = world.scheduled_run("48212").await?;
    if !yesterday.passed {
        bail!(
            "the unbroken project fails dbt build:\n{}",
            tail_lines(&yesterday.console, 20)
        );
    }
    println!(
        "Yesterday's scheduled run 48212 of {SCHEDULE} (`dbt build`) passed in {:.1}s.",
        yesterday.took.as_secs_f64()
    );

    header("3. Someone pushes a change to main");
    println!("{}", breakage.description);
    println!("\n--- a/{0}\n+++ b/{0}", breakage.file);
    print!("{}", diff_lines('-', &breakage.find));
    print!("{}", diff_lines('+', &breakage.replace));
    world.push_breakage(breakage).await?;

    header(&format!("4. The next scheduled run, {RUN_ID}, fails"));
    let run = world.scheduled_run(RUN_ID).await?;
    if run.passed {
        bail!("the breakage did not make dbt build fail; nothing to heal");
    }
    println!("`dbt build` failed after {:.1}s:", run.took.as_secs_f64());
    let log = runlog::Source::Dir(world.run_logs.clone())
        .fetch(RUN_ID)
        .await?;
    print!("{}", failure_lines(&log));

    header("5. selfheal starts");
    let shutdown = tokio_util::sync::CancellationToken::new();
    // The pull request watcher asks every second, so the story's end (a
    // person merges it) reaches the thread before the demo is over.
    let config = world.config(&[
        ("SELFHEAL_PR_POLL_SECS", "1"),
        ("SELFHEAL_PR_POLL_MAX_SECS", "2"),
    ])?;
    let bot = tokio::spawn(crate::app::run(config, shutdown.clone()));
    let connected = world
        .slack
        .wait_until(Duration::from_secs(30), |s| (s.hellos() > 0).then_some(()))
        .await;
    if connected.is_none() {
        shutdown.cancel();
        return match bot.await {
            Ok(Err(e)) => Err(e.context("selfheal did not start")),
            _ => bail!("selfheal did not connect to the local Slack within 30 s"),
        };
    }
    println!("Connected to the local Slack over Socket Mode; healing agent: dbt-doctor.");

    header("6. The scheduler posts the failure");
    let production_before = world.production_checksums();
    let notified_at = std::time::Instant::now();
    let (_, healing_ts) = world.notify_failure(SCHEDULE, RUN_ID).await;
    println!("Posted in #data-alerts and #agent-demo; waiting for the healing session…");
    let ended = session_end(&world, RUN_ID, &bot).await;
    let session = match ended {
        Ok(session) => session,
        Err(e) => {
            shutdown.cancel();
            return Err(e);
        }
    };

    let production_untouched = world.production_checksums() == production_before;
    if !production_untouched {
        bail!("the healing session changed the production warehouse");
    }

    // The thread as it stands when the session is over (the story goes on
    // below for a fix: it is merged, and the next run passes).
    let healing_thread = world.slack.transcript(HEALING);
    let alerts = world.slack.transcript(ALERTS);

    let pr = world.github.prs().into_iter().next();
    let pr_url = session.pr_url.clone();
    let mut outcome = DemoOutcome {
        status: session.status,
        pr: pr.clone(),
        pr_url: pr_url.clone(),
        branch_passes: None,
        time_to_pr: None,
        summary: session.summary.clone(),
        kept: None,
        production_untouched,
    };
    use crate::store::Status;
    let told = match (session.status, &pr) {
        (Status::Fixed, Some(pr)) => {
            header("7. What the team sees in Slack");
            print!("{healing_thread}");
            println!();
            print!("{alerts}");

            header("8. The pull request");
            println!(
                "#{} {}\n{} → {}\n{}\n",
                pr.number,
                pr.title,
                pr.head,
                pr.base,
                pr_url.as_deref().unwrap_or("")
            );
            println!("{}", indent(&pr.body, "    "));

            header("9. Does it really pass?");
            let passes = world.build_branch(&pr.head).await?;
            outcome.branch_passes = Some(passes);
            if !passes {
                bail!("`dbt build` fails on the pull request's branch {}", pr.head);
            }
            println!(
                "A fresh clone of {} runs `dbt build` against a copy of the warehouse: it passes.",
                pr.head
            );

            header("10. In short");
            let url = pr_url.as_deref().unwrap_or("/pull/");
            outcome.time_to_pr = world
                .slack
                .thread(HEALING, &healing_ts)
                .iter()
                .filter(|m| m.by_bot)
                .find(|m| m.text.contains(url) || m.edits.iter().any(|e| e.contains(url)))
                .map(|m| m.posted_at.saturating_duration_since(notified_at));
            if let Some(t) = outcome.time_to_pr {
                println!(
                    "From the failure notification to the pull request link in the thread: {:.1}s\n\
                     (the thread's \"fixed after …\" counts from the session's start, after the healing reply;\n\
                     this counts from the scheduler's post to the link, so it is a little longer).",
                    t.as_secs_f64()
                );
            }
            if let Some(summary) = &session.summary {
                println!("What {} did: {summary}", session.agent);
            }
            println!(
                "The production warehouse is byte-identical before and after the session (sha256):\n\
                 verification built in a throwaway copy; the fix reaches production only when people merge it."
            );

            header("11. A person merges it; the next run passes");
            close_the_loop(&world, SCHEDULE, pr, &healing_ts).await
        }
        (Status::NoFix, None) => {
            header("7. What the team sees in Slack");
            print!("{healing_thread}");
            println!();
            print!("{alerts}");

            header("8. The diagnosis");
            println!(
                "{} found no code change that fixes this run, so no pull request was\n\
                 opened; the thread above has its diagnosis for a person to act on:",
                session.agent
            );
            if let Some(first) = session.summary.as_deref().and_then(|s| s.lines().next()) {
                println!("{first}");
            }

            header("9. In short");
            let answered = world
                .slack
                .thread(HEALING, &healing_ts)
                .iter()
                .filter(|m| m.by_bot)
                .find(|m| m.text.contains("No pull request opened"))
                .map(|m| m.posted_at.saturating_duration_since(notified_at));
            if let Some(t) = answered {
                println!(
                    "From the failure notification to the diagnosis in the thread: {:.1}s.",
                    t.as_secs_f64()
                );
            }
            println!(
                "Nothing was proposed, nothing was committed, and the production warehouse is\n\
                 byte-identical before and after the session (sha256)."
            );
            Ok(())
        }
        (status, _) => Err(anyhow::anyhow!(
            "the healing session ended as {} (pull request: {}): {}",
            status.as_str(),
            pr.as_ref().map(|p| p.title.as_str()).unwrap_or("none"),
            session.summary.as_deref().unwrap_or("no summary")
        )),
    };
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(15), bot).await;
    told?;
    if let Ok(Ok(Err(e))) = stopped {
        bail!("selfheal stopped with an error: {e:#}");
    }
    Ok(outcome)
}

/// The loop closed: a person merges the pull request, the scheduler's next
/// run passes and says so, and the healing thread hears both.
async fn close_the_loop(
    world: &World,
    schedule: &str,
    pr: &FakePr,
    healing_ts: &str,
) -> Result<()> {
    const NEXT_RUN: &str = "48214";
    world.merge_into_main(&pr.head).await?;
    world.github.merge_pr(pr.number, "data-lead");
    let run = world.scheduled_run(NEXT_RUN).await?;
    if !run.passed {
        bail!("the scheduled run after the merge failed:\n{}", run.console);
    }
    println!(
        "@data-lead merges {}; the next scheduled `dbt build` (run {NEXT_RUN}) passes in {:.1}s.",
        pr.head,
        run.took.as_secs_f64()
    );
    world.notify_pass(schedule, NEXT_RUN).await;
    let recovered = crate::slack::render::passed_again(schedule, NEXT_RUN);
    let closed = world
        .slack
        .wait_until(Duration::from_secs(30), |s| {
            let thread = s.thread(HEALING, healing_ts);
            let passed = thread.iter().any(|m| m.by_bot && m.text == recovered);
            let merged = thread
                .iter()
                .any(|m| m.by_bot && m.text.contains("was merged by @data-lead"));
            (passed && merged).then_some(())
        })
        .await;
    if closed.is_none() {
        bail!(
            "the healing thread did not hear of the merge and the passing run:\n{}",
            world.slack.transcript(HEALING)
        );
    }
    println!("The healing thread now reads:\n");
    print!("{}", world.slack.transcript(HEALING));
    Ok(())
}

/// Waits for the session of `run_id` to end, or for the bot to stop.
async fn session_end(
    world: &World,
    run_id: &str,
    bot: &tokio::task::JoinHandle<Result<()>>,
) -> Result<crate::store::SessionRow> {
    let store = crate::store::Store::open(&world.root.join("selfheal.db"))?;
    let deadline = Instant::now() + DEMO_DEADLINE;
    loop {
        if let Some(s) = store
            .sessions(10)?
            .into_iter()
            .find(|s| s.run_id == run_id && s.status.is_terminal())
        {
            return Ok(s);
        }
        if bot.is_finished() {
            bail!("selfheal stopped before the healing session ended");
        }
        if Instant::now() > deadline {
            bail!(
                "the healing session did not end within {} s; the thread so far:\n{}",
                DEMO_DEADLINE.as_secs(),
                world.slack.transcript(HEALING)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn header(title: &str) {
    println!("\n== {title}\n");
}

fn diff_lines(sign: char, text: &str) -> String {
    text.lines().map(|l| format!("{sign} {l}\n")).collect()
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{prefix}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Each failing node: name, file and the first lines of its error.
fn failure_lines(log: &runlog::RunLog) -> String {
    if log.failures.is_empty() {
        return format!("  (no failing node named)\n{}\n", tail_lines(&log.raw, 10));
    }
    let mut out = String::new();
    for f in &log.failures {
        out.push_str(&format!(
            "  ✗ {} {}{}\n",
            f.resource_type,
            f.name,
            f.path
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        ));
        for line in f.message.lines().filter(|l| !l.trim().is_empty()).take(4) {
            out.push_str(&format!("      {}\n", line.trim_end()));
        }
    }
    out
}

/// The demo's temporary folder, removed when dropped unless it is to be kept.
struct DemoFolder {
    path: PathBuf,
    keep: bool,
}

impl DemoFolder {
    fn create(keep: bool) -> Result<DemoFolder> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let path =
            std::env::temp_dir().join(format!("selfheal-demo-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(DemoFolder { path, keep })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DemoFolder {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
