//! Agent definitions (what a `.dinoai/agents/<name>.yml` file describes, as
//! `config` reads it) and [`start`], the one place that starts any runner: an
//! external command, the built-in dbt-doctor, or the llm loop.
//!
//! It does not decide when an agent starts or what its output means (the
//! session machine and [`super::protocol`] do), and it never holds the forge
//! token: the session lists open pull requests for the runners that read them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;

use super::command::{self, CommandSpec, Output, Running};
use super::llm::{self, LlmSettings};
use crate::dbt::Dbt;
use crate::domain::{Mission, SessionId, ToolPolicy};
use crate::redact::Redactor;
use crate::runlog::RunLog;

/// One agent definition.
#[derive(Debug, Clone)]
pub struct AgentDef {
    /// The agent's name, equal to its file name without the extension.
    pub name: String,
    /// `role`, `goal` and `backstory` together form the agent's system prompt.
    pub role: String,
    pub goal: String,
    pub backstory: String,
    /// Which tools the agent may use.
    pub tools: ToolPolicy,
    /// The model family the agent asks for, passed on to runners that care.
    pub model_family: Option<String>,
    /// How selfheal runs the agent (the `selfheal:` section).
    pub runner: Runner,
    /// The file the agent is defined in.
    pub source: PathBuf,
}

/// How selfheal runs an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// The file has no `selfheal:` section; the caller decides (this version
    /// refuses to heal with such an agent, later ones default to an LLM runner).
    Unspecified,
    /// `runner: command`: run a program.
    Command {
        /// The program and its arguments; a single string `s` becomes `["sh", "-c", s]`.
        argv: Vec<String>,
        /// Wall-clock limit for one session.
        timeout: Duration,
        /// Extra environment variables for the program.
        env: BTreeMap<String, String>,
        /// The program's working directory, as written (relative paths are
        /// relative to the bot's working directory); `None` means the bot's.
        workdir: Option<PathBuf>,
    },
    /// `runner: builtin` with `builtin: <name>`: reserved for agents built into selfheal.
    Builtin(String),
    /// `runner: llm`: selfheal's own tool-calling loop against an
    /// OpenAI-compatible chat-completions endpoint.
    Llm(LlmSettings),
}

/// The name of the built-in deterministic agent.
pub const DBT_DOCTOR: &str = "dbt-doctor";

impl AgentDef {
    /// `dbt-doctor`, available without a file (a file of that name overrides it).
    pub fn dbt_doctor() -> AgentDef {
        AgentDef {
            name: DBT_DOCTOR.into(),
            role: "On-call analytics engineer for the dbt pipeline".into(),
            goal: "Fix the failures that have one right answer; diagnose the rest precisely".into(),
            backstory: "Deterministic: it reads the run log, checks the project and never guesses."
                .into(),
            tools: ToolPolicy::All,
            model_family: None,
            runner: Runner::Builtin(DBT_DOCTOR.into()),
            source: PathBuf::from("<built-in>"),
        }
    }
}

impl Runner {
    /// One line for humans: what runs this agent.
    pub fn describe(&self) -> String {
        match self {
            Runner::Unspecified => "no selfheal.runner (cannot heal)".to_string(),
            Runner::Command { argv, timeout, .. } => {
                format!("command `{}`, limit {}s", argv.join(" "), timeout.as_secs())
            }
            Runner::Builtin(name) => format!("built-in `{name}`"),
            Runner::Llm(settings) => settings.describe(),
        }
    }
}

impl Runner {
    /// Whether the runner reads the open selfheal pull requests (so the
    /// session lists them before it starts the agent).
    pub fn lists_open_prs(&self) -> bool {
        matches!(self, Runner::Llm(_))
    }
}

/// One session's work, with everything any runner may need.
pub struct Job<'a> {
    pub session_id: SessionId,
    pub run_id: &'a str,
    pub schedule: &'a str,
    /// The opening prompt.
    pub prompt: &'a str,
    /// The session's own folder: the prompt file, the run-log file, a scratch workdir.
    pub dir: &'a Path,
    /// The dbt project in the session's clone; None without a repository.
    pub project: Option<PathBuf>,
    /// The run log (redacted), when one was read.
    pub log: Option<&'a RunLog>,
    /// What the agent is sent to do. Only the llm runner tells the difference
    /// (see [`llm::LlmTask::mission`]); a command or dbt-doctor ignores it.
    pub mission: Mission,
    /// dbt as the session runs it: isolated, and tagged with the session.
    pub dbt: Dbt,
    /// What points a command agent's own dbt at the isolated place.
    pub dbt_env: Vec<(String, String)>,
    /// The session's tag (see [`command::SESSION_TAG_ENV`]).
    pub tag: String,
    /// The open selfheal pull requests, for runners that read them ([`Runner::lists_open_prs`]).
    pub open_prs: Vec<llm::PrInfo>,
    pub redactor: Redactor,
    /// Where an llm agent's model exchanges are recorded.
    pub transcript: llm::Transcript,
}

/// A started agent and how long it may run.
pub struct Started {
    pub running: Running,
    /// The wall-clock limit the session enforces.
    pub limit: Duration,
}

/// Beyond an llm agent's own wall clock, so its budget report arrives first.
const LLM_SLACK: Duration = Duration::from_secs(30);

/// Starts `agent` on `job`: the only place any runner is started.
pub async fn start(agent: &AgentDef, job: Job<'_>) -> Result<Started> {
    match &agent.runner {
        Runner::Command {
            argv,
            timeout,
            env,
            workdir,
        } => start_command(agent, job, argv, env, workdir.as_deref(), *timeout).await,
        Runner::Builtin(name) if name == DBT_DOCTOR => start_doctor(job),
        Runner::Llm(settings) => start_llm(agent, job, settings),
        other => anyhow::bail!("runner {other:?} is not supported by this version of selfheal"),
    }
}

async fn start_command(
    agent: &AgentDef,
    job: Job<'_>,
    argv: &[String],
    env: &BTreeMap<String, String>,
    workdir: Option<&Path>,
    limit: Duration,
) -> Result<Started> {
    let workdir = match (workdir, &job.project) {
        (Some(w), _) => w.to_path_buf(),
        (None, Some(project)) => project.clone(),
        (None, None) => {
            let w = job.dir.join("work");
            std::fs::create_dir_all(&w).context("creating the agent workdir")?;
            w
        }
    };
    let prompt_file = job.dir.join("prompt.md");
    std::fs::write(&prompt_file, job.prompt).context("writing the prompt file")?;
    let mut session_env = vec![
        ("SELFHEAL_SESSION_ID".into(), job.session_id.to_string()),
        ("SELFHEAL_RUN_ID".into(), job.run_id.to_string()),
        ("SELFHEAL_SCHEDULE".into(), job.schedule.to_string()),
        ("SELFHEAL_AGENT".into(), agent.name.clone()),
        (command::SESSION_TAG_ENV.into(), job.tag.clone()),
    ];
    if let Some(log) = job.log {
        let file = job.dir.join("run_log.txt");
        std::fs::write(&file, &log.raw).context("writing the run log file")?;
        session_env.push(("SELFHEAL_RUN_LOG_FILE".into(), file.display().to_string()));
    }
    if let Some(project) = &job.project {
        session_env.push(("SELFHEAL_PROJECT_DIR".into(), project.display().to_string()));
    }
    // The agent's dbt goes where the bot's goes, never to production.
    session_env.extend(job.dbt_env);
    let spec = CommandSpec {
        argv: argv.to_vec(),
        env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        workdir,
        prompt_file,
        session_env,
    };
    let first = serde_json::json!({
        "type": "prompt",
        "text": job.prompt,
        "run_id": job.run_id,
        "schedule": job.schedule,
        "session_id": job.session_id.0,
    })
    .to_string();
    Ok(Started {
        running: command::spawn(&spec, first).await?,
        limit,
    })
}

fn start_doctor(job: Job<'_>) -> Result<Started> {
    let project = job
        .project
        .context("dbt-doctor needs the repository (SELFHEAL_REPO)")?;
    let log = job
        .log
        .cloned()
        .context("dbt-doctor needs the run log, and it could not be read")?;
    // dbt-doctor is instant but for the dbt queries it runs; the dbt timeout
    // bounds those, this bounds the whole.
    let limit = job.dbt.timeout * 2;
    let dbt = job.dbt;
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        let report = crate::doctor::heal(&project, &log, &dbt).await;
        for event in report.events {
            if tx.send(Output::Event(event)).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Output::Exited { code: Some(0) }).await;
    });
    Ok(Started {
        running: Running::in_process(rx, task.abort_handle(), None),
        limit,
    })
}

fn start_llm(agent: &AgentDef, job: Job<'_>, settings: &LlmSettings) -> Result<Started> {
    let project = job
        .project
        .context("the llm runner needs the repository (SELFHEAL_REPO)")?;
    let (replies_tx, replies_rx) = mpsc::channel(32);
    let task = llm::LlmTask {
        system: llm::agent_system(&agent.role, &agent.goal, &agent.backstory),
        prompt: job.prompt.to_string(),
        project_dir: project,
        run_log: job.log.cloned(),
        open_prs: job.open_prs,
        tools: agent.tools.clone(),
        mission: job.mission,
        dbt: job.dbt,
        redactor: job.redactor,
        replies: Some(replies_rx),
        transcript: Some(job.transcript),
    };
    let (tx, rx) = mpsc::channel(64);
    let settings = settings.clone();
    let limit = settings.timeout + LLM_SLACK;
    let task = tokio::spawn(async move {
        let key = settings.api_key_from_env();
        llm::run(&settings, key, task, tx).await;
    });
    Ok(Started {
        running: Running::in_process(rx, task.abort_handle(), Some(replies_tx)),
        limit,
    })
}
