//! `selfheal fix`: one healing session in the terminal, no Slack needed.
//!
//! It runs the same session as the bot — run log, fresh clone, agent,
//! verification with dbt — against a local dbt repository and a run-log
//! directory, prints the progress, and leaves a verified fix on a
//! `selfheal/...` branch of that repository. Nothing is pushed anywhere else
//! and no pull request is opened.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

use crate::config::settings::SELFHEAL_SECRET_ENV;
use crate::config::{load_agents, AgentDef, DbtSettings, HealSettings, DBT_DOCTOR};
use crate::domain::{Place, SessionId, Status};
use crate::redact::Redactor;
use crate::session::controls::{Caps, Controls};
use crate::session::driver::{self, Deps, Start};
use crate::session::sink::Sink;
use crate::store::{Claim, Store};

/// What to heal.
#[derive(Debug, Clone)]
pub struct FixOptions {
    /// The dbt project (inside a git repository).
    pub project: PathBuf,
    /// The run-log directory of the failed run (its name is the run id).
    pub run: PathBuf,
    /// The agent; default dbt-doctor.
    pub agent: Option<String>,
    /// Names the branch: `selfheal/<schedule>/run-<id>`.
    pub schedule: String,
    /// How dbt runs, as `SELFHEAL_DBT*` configure it for the bot
    /// ([`DbtSettings::from_process_env`]).
    pub dbt: DbtSettings,
    /// Where the session's messages go (default: standard output).
    pub transcript: Option<Sink>,
}

/// Runs the session; returns how it ended.
pub async fn run_fix(opts: FixOptions, shutdown: CancellationToken) -> Result<Status> {
    let project = opts
        .project
        .canonicalize()
        .with_context(|| format!("no dbt project at {}", opts.project.display()))?;
    if !project.join("dbt_project.yml").is_file() {
        bail!("{} has no dbt_project.yml", project.display());
    }
    let repo = git_root(&project).await?;
    let project_subdir = project
        .strip_prefix(&repo)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let run = opts
        .run
        .canonicalize()
        .with_context(|| format!("no run-log directory at {}", opts.run.display()))?;
    let run_id = run
        .file_name()
        .and_then(|n| n.to_str())
        .context("the run-log directory needs a name (the run id)")?
        .to_string();
    let run_logs = run
        .parent()
        .context("the run-log directory has no parent")?;

    let agent = pick_agent(&project, opts.agent.as_deref())?;
    let settings = HealSettings {
        repo: Some(repo.display().to_string()),
        project_subdir: if project_subdir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            project_subdir
        },
        run_logs: Some(run_logs.to_path_buf()),
        run_log_source: Some(crate::runlog::SourceSettings::Dir(run_logs.to_path_buf())),
        dbt: opts.dbt.clone(),
        ..HealSettings::default()
    };
    let secrets = SELFHEAL_SECRET_ENV
        .from_process_env()?
        .unwrap_or_default()
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .collect::<Vec<_>>();

    let store = Store::in_memory()?;
    // The session lives in the terminal: no Slack thread.
    let place = Place::Terminal;
    let (channel, thread_ts) = place.columns();
    let Claim::New(id) =
        store.claim_session(&opts.schedule, &run_id, channel, thread_ts, &agent.name)?
    else {
        bail!("a fresh store cannot already hold this session");
    };
    let work_root = std::env::temp_dir().join(format!("selfheal-fix-{}", std::process::id()));
    let sink = opts.transcript.clone().unwrap_or_else(Sink::terminal);
    let deps = Deps {
        store: store.clone(),
        sink: sink.clone(),
        redactor: Redactor::new(secrets),
        edit_interval: Duration::from_secs(1),
        prior_attempts: 0,
        work_root: work_root.clone(),
        healing: Arc::new(crate::app::healing(&settings)?),
        controls: Controls::default(),
        caps: Caps::default(),
        metrics: Arc::default(),
    };
    sink.say(&format!(
        "🦖 Healing run {run_id} of {} with {} (repository {})\n",
        project.display(),
        agent.name,
        repo.display()
    ));
    let start = Start {
        session_id: SessionId(id),
        schedule: opts.schedule.clone(),
        run_id,
        place,
        agent,
        base_branch: None,
        notification: String::new(),
        followup: None,
    };
    driver::drive(deps, start, shutdown).await;
    let _ = std::fs::remove_dir_all(&work_root);
    Ok(store.session(id)?.status)
}

/// The exit code for an outcome: 0 fixed, 1 diagnosed without a fix, 2 failed.
pub fn exit_code(status: Status) -> u8 {
    match status {
        Status::Fixed => 0,
        Status::NoFix | Status::Duplicate => 1,
        _ => 2,
    }
}

fn pick_agent(project: &Path, name: Option<&str>) -> Result<AgentDef> {
    let name = name.unwrap_or(DBT_DOCTOR);
    let mut agents =
        load_agents(&project.join(".dinoai/agents")).map_err(|e| anyhow::anyhow!("{e}"))?;
    agents
        .entry(DBT_DOCTOR.to_string())
        .or_insert_with(AgentDef::dbt_doctor);
    let known: Vec<String> = agents.keys().cloned().collect();
    agents
        .remove(name)
        .with_context(|| format!("unknown agent '{name}' (known: {})", known.join(", ")))
}

async fn git_root(dir: &Path) -> Result<PathBuf> {
    let out = tokio::process::Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .current_dir(dir)
        .output()
        .await
        .context("running git")?;
    if !out.status.success() {
        bail!("{} is not inside a git repository", dir.display());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
