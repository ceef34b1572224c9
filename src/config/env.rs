//! The bot's settings from environment variables, and the checks that tie
//! schedules, agents and settings together.
//!
//! [`Config::from_env`] takes a lookup closure rather than reading the process
//! environment, so tests build a `Config` from a `HashMap`. An empty variable
//! counts as unset, so a copied `.env.example` with blank lines works.
//! Only [`Config::from_process_env`] touches the real environment (and `.env`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::yaml::{self, Node, Source};
use super::{
    load_agents, load_schedules, AgentDef, ConfigError, ConfigErrors, Runner, Schedules, DBT_DOCTOR,
};
use crate::domain::Secret;
use crate::recognize::Override;

/// How long shutdown waits for running sessions to record their state.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How to reach Slack.
#[derive(Debug, Clone)]
pub struct SlackSettings {
    /// `SLACK_APP_TOKEN` (required, `xapp-…`): the app-level token with
    /// `connections:write`, used to open the Socket Mode connection.
    pub app_token: Secret,
    /// `SLACK_BOT_TOKEN` (required, `xoxb-…`): the bot token used for Web API calls.
    pub bot_token: Secret,
    /// `SLACK_API_URL` (default `https://slack.com/api/`): the Web API base URL,
    /// always ending with `/`. Point it at a local fake Slack for tests and demos.
    pub api_url: String,
}

/// Everything the bot needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Slack tokens and API URL (`SLACK_APP_TOKEN`, `SLACK_BOT_TOKEN`, `SLACK_API_URL`).
    pub slack: SlackSettings,
    /// `SELFHEAL_DB` (default `data/selfheal.db`): the SQLite database holding
    /// session history; its directory is created on start.
    pub db_path: PathBuf,
    /// `SELFHEAL_SCHEDULES` (required): the dbt project directory (reads
    /// `paradime_schedules.yml` and `.bolt/**/*.yml`) or one schedules file.
    pub schedules_path: PathBuf,
    /// The schedules loaded from `schedules_path`.
    pub schedules: Schedules,
    /// `SELFHEAL_AGENTS_DIR` (default `<dbt project>/.dinoai/agents`, where the
    /// project is `SELFHEAL_SCHEDULES` when it is a directory, else the
    /// schedules file's directory): where agent definitions live.
    pub agents_dir: PathBuf,
    /// The agents loaded from `agents_dir`, by name.
    pub agents: BTreeMap<String, AgentDef>,
    /// `SELFHEAL_DEFAULT_AGENT` (optional): the agent used when a schedule's
    /// `self_healing.agent_name` is empty, and by "Fix with DinoAI".
    pub default_agent: Option<String>,
    /// `SELFHEAL_NOTIFIER_BOTS` (optional, comma or space separated): bot ids,
    /// app ids or usernames of the schedulers whose failure notifications are
    /// recognised. Empty means any bot (never humans, never selfheal itself).
    pub notifier_bots: Vec<String>,
    /// `SELFHEAL_CHANNEL_INTERVAL_MS` (default 1000): the minimum spacing
    /// between two writes to one Slack channel, to stay under Slack's rate limits.
    pub channel_interval: Duration,
    /// `SELFHEAL_COURTESY_WINDOW_SECS` (default 30): how long to wait for a
    /// channel's copy of a failure notification before posting the courtesy
    /// pointer there top-level instead of in its thread.
    pub courtesy_window: Duration,
    /// `SELFHEAL_EDIT_INTERVAL_MS` (default 1000): the minimum spacing between
    /// two edits of a session's progress message.
    pub edit_interval: Duration,
    /// `SELFHEAL_API_TIMEOUT_SECS` (default 10): the timeout of one Slack Web API call.
    pub api_timeout: Duration,
    /// `SELFHEAL_SOCKET_PING_SECS` (default 15): how often each Socket Mode
    /// connection is pinged; one that answers no pong for five intervals is
    /// dropped and replaced, so a silently dead link does not go unnoticed.
    pub socket_ping: Duration,
    /// `SELFHEAL_PRIOR_ATTEMPTS` (default 5): how many earlier sessions of the
    /// same schedule are summarised for the agent, so it does not open a duplicate PR.
    pub prior_attempts: usize,
    /// How long shutdown waits for running sessions ([`SHUTDOWN_GRACE`], not configurable).
    pub shutdown_grace: Duration,
    /// `SELFHEAL_RECOGNIZERS` (optional): a YAML file of per-notifier regexes
    /// for notification formats the built-in recogniser does not read:
    /// `recognizers: [{source, run_id: '…(?P<run_id>…)…', schedule: '…(?P<schedule>…)…', failure: '…'}]`.
    pub overrides: Vec<Override>,
    /// `SELFHEAL_SECRET_ENV` (optional, comma or space separated): names of
    /// further environment variables whose values are scrubbed from anything
    /// selfheal posts (the Slack tokens always are).
    pub secret_env: Vec<String>,
    /// Where the dbt code, the run logs and dbt itself are, and where pull
    /// requests go.
    pub heal: HealSettings,
    /// `SELFHEAL_MAX_SESSIONS` (default 8): sessions running at once; more wait, shown as queued.
    pub max_sessions: usize,
    /// `SELFHEAL_MAX_SESSIONS_PER_SCHEDULE` (default 2): the same, per schedule.
    pub max_sessions_per_schedule: usize,
    /// `SELFHEAL_ADMINS` (optional, comma or space separated): Slack user ids
    /// allowed to change settings with `/selfheal`, besides workspace admins and owners.
    pub admins: Vec<String>,
    /// `SELFHEAL_ON_RESTART` (`rerun`, the default, or `report`): what a
    /// start does with sessions a crash or stop interrupted. Both tell the
    /// thread; `rerun` also runs the session again, once (a re-run is never re-run).
    pub rerun_interrupted: bool,
}

/// What a session needs to do real work: a repository to fix, run logs to
/// read, dbt to verify with and a forge to open pull requests on.
#[derive(Debug, Clone, Default)]
pub struct HealSettings {
    /// `SELFHEAL_REPO` (optional): the dbt repository, a URL or a local path.
    /// Each session works on a fresh clone of it. Without it, command agents
    /// run in a scratch folder and only report what they did.
    pub repo: Option<String>,
    /// `SELFHEAL_DBT_PROJECT_DIR` (default `.`): the dbt project inside the repository.
    pub project_subdir: PathBuf,
    /// `SELFHEAL_RUN_LOGS` (optional): a directory with one folder of dbt
    /// artifacts per run id (`run_results.json`, `dbt.log`, `console.txt`).
    pub run_logs: Option<PathBuf>,
    /// `SELFHEAL_RUN_LOG_SOURCE` (optional; `dir`, `paradime` or `dbt_cloud`):
    /// where a session reads the failed run's log. Default: `dir` when
    /// `SELFHEAL_RUN_LOGS` is set, else none. `paradime` needs
    /// `PARADIME_API_ENDPOINT`, `PARADIME_API_KEY` and `PARADIME_API_SECRET`;
    /// `dbt_cloud` needs `DBT_CLOUD_API_TOKEN` and `DBT_CLOUD_ACCOUNT_ID`, and
    /// reads `DBT_CLOUD_API_URL` (default `https://cloud.getdbt.com`; EU, AU and
    /// single-tenant hosts differ) and `SELFHEAL_DBT_CLOUD_ARTIFACT_WAIT_SECS`
    /// (default 90: how long `run_results.json` is waited for, since dbt Cloud
    /// uploads it after the failure is announced). Build the source with
    /// [`crate::runlog::Source::from_settings`].
    pub run_log_source: Option<crate::runlog::SourceSettings>,
    /// `SELFHEAL_DBT` (default `dbt` on the PATH): the dbt executable.
    pub dbt: PathBuf,
    /// `SELFHEAL_DBT_PROFILES_DIR` (optional): `--profiles-dir` for dbt;
    /// default: the project's own `profiles.yml` if it has one, else `~/.dbt`.
    pub dbt_profiles_dir: Option<PathBuf>,
    /// `SELFHEAL_DBT_TARGET` (optional): a CI target that is safe to build
    /// into; verification, agents and the doctor use it (slim CI, deferring
    /// to production when its manifest is known). Without it, a DuckDB
    /// production is copied per session, and any other warehouse is only
    /// compiled against.
    pub dbt_target: Option<String>,
    /// `SELFHEAL_DBT_PROD_TARGET` (default: the profile's default target):
    /// the target the scheduler runs in, which selfheal never builds into.
    pub dbt_prod_target: Option<String>,
    /// `SELFHEAL_DBT_STATE_DIR` (optional): a folder with production's
    /// `manifest.json`, for `--defer --state` when the run log has none.
    pub dbt_state_dir: Option<PathBuf>,
    /// `SELFHEAL_DBT_TIMEOUT_SECS` (default 900): the limit of one dbt command.
    pub dbt_timeout: Duration,
    /// `SELFHEAL_GITHUB_TOKEN` (optional): the token the bot — never the agent —
    /// opens pull requests with. Without it, the branch is pushed and a
    /// compare link is posted.
    pub github_token: Option<Secret>,
    /// `SELFHEAL_GITHUB_API_URL` (default `https://api.github.com`; GitHub
    /// Enterprise: `https://HOST/api/v3`).
    pub github_api_url: String,
    /// `SELFHEAL_GITHUB_REPO` (default: from the repository's GitHub URL): `owner/name`.
    pub github_repo: Option<String>,
    /// `SELFHEAL_REPO_WEB_URL` (optional): the repository's web page, for
    /// compare links when there is no API (e.g. `https://github.com/acme/dbt`).
    pub repo_web_url: Option<String>,
}

impl Config {
    /// Loads `.env` (if present, without overriding variables already set),
    /// then reads the configuration from the process environment. Errors say
    /// where each variable came from: the environment, or `.env` at its path.
    pub fn from_process_env() -> Result<Config, ConfigErrors> {
        let before: std::collections::HashSet<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .collect();
        let dotenv = match dotenvy::dotenv() {
            Ok(path) => Some(path),
            Err(e) if e.not_found() => None,
            Err(e) => {
                return Err(ConfigErrors::new(vec![ConfigError::Env {
                    var: ".env".into(),
                    message: e.to_string(),
                }]))
            }
        };
        let cwd = std::env::current_dir().unwrap_or_default();
        Config::from_env(&|name| std::env::var(name).ok()).map_err(|e| {
            e.with_origins(|var| {
                origin(
                    var,
                    before.contains(var),
                    std::env::var_os(var).is_some(),
                    dotenv.as_deref(),
                    &cwd,
                )
            })
        })
    }

    /// Reads the configuration through `vars`, loads the schedule and agent
    /// files it names, and checks that they fit together. Every problem is
    /// reported, not only the first: a person fixes them in one go.
    pub fn from_env(vars: &impl Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let get = |name: &str| {
            vars(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let problems = RefCell::new(Vec::new());
        // Keeps a value, or records its problem and goes on with the next setting.
        fn kept<T>(problems: &RefCell<Vec<ConfigError>>, r: Result<T, ConfigError>) -> Option<T> {
            r.map_err(|e| problems.borrow_mut().push(e)).ok()
        }
        macro_rules! keep {
            ($r:expr $(,)?) => {
                kept(&problems, $r)
            };
        }
        let num = |var: &str, default: u64| -> u64 {
            number(get(var), var, default)
                .map_err(|e| problems.borrow_mut().push(e))
                .unwrap_or(default)
        };

        let app_token = keep!(token(get("SLACK_APP_TOKEN"), "SLACK_APP_TOKEN", "xapp-"));
        let bot_token = keep!(token(get("SLACK_BOT_TOKEN"), "SLACK_BOT_TOKEN", "xoxb-"));
        let api_url = keep!(api_url(get("SLACK_API_URL")));
        let db_path =
            PathBuf::from(get("SELFHEAL_DB").unwrap_or_else(|| "data/selfheal.db".into()));
        let schedules_path =
            keep!(get("SELFHEAL_SCHEDULES")
                .map(PathBuf::from)
                .ok_or_else(|| ConfigError::Env {
                    var: "SELFHEAL_SCHEDULES".into(),
                    message: "is required: the dbt project directory or its paradime_schedules.yml"
                        .into(),
                }),);
        let agents_dir = match (get("SELFHEAL_AGENTS_DIR"), &schedules_path) {
            (Some(dir), _) => Some(PathBuf::from(dir)),
            (None, Some(path)) => Some(default_agents_dir(path)),
            (None, None) => None,
        };
        let schedules = schedules_path
            .as_deref()
            .and_then(|path| keep!(load_schedules(path)));
        let agents = agents_dir
            .as_deref()
            .and_then(|dir| keep!(load_agents(dir)))
            .and_then(|agents| keep!(with_llm_default(agents, &get)))
            .map(with_builtins);
        let channel_interval = Duration::from_millis(num("SELFHEAL_CHANNEL_INTERVAL_MS", 1000));
        let courtesy_window = Duration::from_secs(num("SELFHEAL_COURTESY_WINDOW_SECS", 30));
        let edit_interval = Duration::from_millis(num("SELFHEAL_EDIT_INTERVAL_MS", 1000));
        let api_timeout = Duration::from_secs(num("SELFHEAL_API_TIMEOUT_SECS", 10));
        let socket_ping = Duration::from_secs(num("SELFHEAL_SOCKET_PING_SECS", 15).max(1));
        let prior_attempts = num("SELFHEAL_PRIOR_ATTEMPTS", 5) as usize;
        let overrides = match get("SELFHEAL_RECOGNIZERS") {
            Some(path) => keep!(load_overrides(Path::new(&path))).unwrap_or_default(),
            None => Vec::new(),
        };
        let max_sessions = num("SELFHEAL_MAX_SESSIONS", 8) as usize;
        let max_sessions_per_schedule = num("SELFHEAL_MAX_SESSIONS_PER_SCHEDULE", 2) as usize;
        let rerun_interrupted = match get("SELFHEAL_ON_RESTART").as_deref().map(str::trim) {
            None | Some("") | Some("rerun") => true,
            Some("report") => false,
            Some(other) => {
                problems.borrow_mut().push(ConfigError::Env {
                    var: "SELFHEAL_ON_RESTART".into(),
                    message: format!("'{other}' is neither 'rerun' nor 'report'"),
                });
                true
            }
        };
        let run_log_source = keep!(run_log_source(&get)).flatten();
        let dbt_timeout = Duration::from_secs(num("SELFHEAL_DBT_TIMEOUT_SECS", 900));

        let mut problems = problems.into_inner();
        let (Some(schedules_path), Some(schedules), Some(agents_dir), Some(agents)) =
            (schedules_path, schedules, agents_dir, agents)
        else {
            // Agents cannot be matched to schedules that did not load.
            return Err(ConfigErrors::new(problems));
        };
        // A bad token is already a problem; the stand-ins only let the
        // schedules and agents be checked too, and never leave this function.
        let slack_ok = app_token.is_some() && bot_token.is_some() && api_url.is_some();
        let config = Config {
            slack: SlackSettings {
                app_token: app_token.unwrap_or_else(|| Secret::new("")),
                bot_token: bot_token.unwrap_or_else(|| Secret::new("")),
                api_url: api_url.unwrap_or_default(),
            },
            db_path,
            schedules,
            schedules_path,
            agents,
            agents_dir,
            // dbt-doctor is the default healing agent.
            default_agent: Some(
                get("SELFHEAL_DEFAULT_AGENT").unwrap_or_else(|| DBT_DOCTOR.to_string()),
            ),
            notifier_bots: list(get("SELFHEAL_NOTIFIER_BOTS")),
            channel_interval,
            courtesy_window,
            edit_interval,
            api_timeout,
            socket_ping,
            prior_attempts,
            shutdown_grace: SHUTDOWN_GRACE,
            overrides,
            secret_env: list(get("SELFHEAL_SECRET_ENV")),
            max_sessions,
            max_sessions_per_schedule,
            admins: list(get("SELFHEAL_ADMINS")),
            rerun_interrupted,
            heal: HealSettings {
                repo: get("SELFHEAL_REPO"),
                project_subdir: PathBuf::from(
                    get("SELFHEAL_DBT_PROJECT_DIR").unwrap_or_else(|| ".".into()),
                ),
                run_logs: get("SELFHEAL_RUN_LOGS").map(PathBuf::from),
                run_log_source,
                dbt: PathBuf::from(get("SELFHEAL_DBT").unwrap_or_else(|| "dbt".into())),
                dbt_profiles_dir: get("SELFHEAL_DBT_PROFILES_DIR").map(PathBuf::from),
                dbt_target: get("SELFHEAL_DBT_TARGET"),
                dbt_prod_target: get("SELFHEAL_DBT_PROD_TARGET"),
                dbt_state_dir: get("SELFHEAL_DBT_STATE_DIR").map(PathBuf::from),
                dbt_timeout,
                github_token: get("SELFHEAL_GITHUB_TOKEN").map(Secret::new),
                github_api_url: get("SELFHEAL_GITHUB_API_URL")
                    .unwrap_or_else(|| "https://api.github.com".into())
                    .trim_end_matches('/')
                    .to_string(),
                github_repo: get("SELFHEAL_GITHUB_REPO"),
                repo_web_url: get("SELFHEAL_REPO_WEB_URL"),
            },
        };
        problems.extend(config.check_agents());
        if problems.is_empty() && slack_ok {
            Ok(config)
        } else {
            Err(ConfigErrors::new(problems))
        }
    }

    /// The agent that heals `schedule`: its `agent_name`, else the default agent.
    pub fn agent_for(&self, schedule: &super::Schedule) -> Option<&AgentDef> {
        let name = schedule
            .self_healing
            .agent_name
            .as_ref()
            .or(self.default_agent.as_ref())?;
        self.agents.get(name)
    }

    /// Every self-healing schedule must resolve to an agent this version can run.
    fn check_agents(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let known = || {
            let names: Vec<&str> = self.agents.keys().map(String::as_str).collect();
            if names.is_empty() {
                format!("no agents are defined in {}", self.agents_dir.display())
            } else {
                format!(
                    "agents in {}: {}",
                    self.agents_dir.display(),
                    names.join(", ")
                )
            }
        };
        if let Some(name) = &self.default_agent {
            match self.agents.get(name) {
                None => problems.push(ConfigError::Env {
                    var: "SELFHEAL_DEFAULT_AGENT".into(),
                    message: format!("unknown agent '{name}' ({})", known()),
                }),
                Some(agent) if agent.runner == Runner::Unspecified => {
                    problems.push(ConfigError::Env {
                        var: "SELFHEAL_DEFAULT_AGENT".into(),
                        message: unspecified_runner(agent),
                    })
                }
                Some(_) => {}
            }
        }
        for schedule in self.schedules.iter().filter(|s| s.self_healing.enabled) {
            // Name the key only where the file has it: with no agent_name, the
            // default agent was chosen, and the schedule's `self_healing` is the place.
            let key = if schedule.self_healing.agent_name.is_some() {
                "self_healing.agent_name"
            } else {
                "self_healing"
            };
            let at = |message: String| ConfigError::Invalid {
                file: schedule.source.clone(),
                line: schedule.line,
                column: 0,
                key: key.into(),
                message,
            };
            let name = match (&schedule.self_healing.agent_name, &self.default_agent) {
                (Some(name), _) | (None, Some(name)) => name,
                (None, None) => {
                    problems.push(at(format!(
                        "schedule '{}' has self-healing enabled but no agent: set self_healing.agent_name \
                         or SELFHEAL_DEFAULT_AGENT",
                        schedule.name
                    )));
                    continue;
                }
            };
            let Some(agent) = self.agents.get(name) else {
                problems.push(at(format!(
                    "schedule '{}' names unknown agent '{name}' ({})",
                    schedule.name,
                    known()
                )));
                continue;
            };
            let problem = match &agent.runner {
                Runner::Unspecified => Some(at(unspecified_runner(agent))),
                Runner::Builtin(b) if b != DBT_DOCTOR => {
                    Some(at(format!(
                        "agent '{}' names unknown built-in '{b}' (this version has: {DBT_DOCTOR})",
                        agent.name
                    )))
                }
                Runner::Llm(_) if self.heal.repo.is_none() => {
                    Some(at(format!(
                        "schedule '{}' heals with the llm agent '{}', which needs SELFHEAL_REPO \
                         (the dbt repository it edits)",
                        schedule.name, agent.name
                    )))
                }
                Runner::Builtin(_)
                    if self.heal.repo.is_none() || self.heal.run_log_source.is_none() =>
                {
                    Some(at(format!(
                        "schedule '{}' heals with the built-in agent '{}', which needs SELFHEAL_REPO \
                         (the dbt repository) and SELFHEAL_RUN_LOGS (where run logs are) or \
                         SELFHEAL_RUN_LOG_SOURCE=paradime|dbt_cloud",
                        schedule.name, agent.name
                    )))
                }
                _ => None,
            };
            problems.extend(problem);
        }
        problems
    }
}

/// Where a variable came from, or where it was looked for (pure).
fn origin(var: &str, in_env: bool, set_now: bool, dotenv: Option<&Path>, cwd: &Path) -> String {
    match (in_env, set_now, dotenv) {
        (true, _, _) => "from the environment".into(),
        (false, true, Some(file)) => format!("from {}", file.display()),
        (false, _, Some(file)) => format!("in neither the environment nor {}", file.display()),
        (false, _, None) if var == ".env" => format!("in {}", cwd.display()),
        (false, _, None) => format!(
            "not in the environment, and no .env in {} or its parents",
            cwd.display()
        ),
    }
}

fn unspecified_runner(agent: &AgentDef) -> String {
    format!(
        "agent '{}' has no `selfheal.runner` (command, llm or builtin) in {}, and no default model \
         is configured: set SELFHEAL_LLM_BASE_URL and SELFHEAL_LLM_MODEL",
        agent.name,
        agent.source.display()
    )
}

/// Paradime agent files without a `selfheal:` section run as `llm` agents
/// with the model configured in the environment:
/// `SELFHEAL_LLM_BASE_URL` (an OpenAI-compatible API, e.g. `https://api.openai.com/v1`
/// or Ollama's `http://localhost:11434/v1`), `SELFHEAL_LLM_MODEL`,
/// `SELFHEAL_LLM_API_KEY_ENV` (the name of the variable holding the key;
/// default `OPENAI_API_KEY`), `SELFHEAL_LLM_MAX_TURNS` (30),
/// `SELFHEAL_LLM_MAX_TOKENS` (200000), `SELFHEAL_LLM_TIMEOUT_SECS` (1200).
/// `SELFHEAL_LLM_CONTEXT_TOKENS` (default 32768) is the context window of
/// every `llm` agent that sets no `context_tokens` of its own, with or
/// without a `selfheal:` section.
fn with_llm_default(
    mut agents: BTreeMap<String, AgentDef>,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, AgentDef>, ConfigError> {
    let context = match get("SELFHEAL_LLM_CONTEXT_TOKENS") {
        None => None,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if n >= 1024 => Some(n),
            _ => {
                return Err(ConfigError::Env {
                    var: "SELFHEAL_LLM_CONTEXT_TOKENS".into(),
                    message: format!(
                        "must be a whole number of tokens, at least 1024 (the model's context window), got {v:?}"
                    ),
                })
            }
        },
    };
    if let (Some(base_url), Some(model)) = (get("SELFHEAL_LLM_BASE_URL"), get("SELFHEAL_LLM_MODEL"))
    {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::Env {
                var: "SELFHEAL_LLM_BASE_URL".into(),
                message: format!("must be an http(s) URL, got {base_url:?}"),
            });
        }
        let mut settings = crate::agent::llm::LlmSettings::new(base_url, model);
        settings.api_key_env =
            Some(get("SELFHEAL_LLM_API_KEY_ENV").unwrap_or_else(|| "OPENAI_API_KEY".into()));
        settings.max_turns =
            number(get("SELFHEAL_LLM_MAX_TURNS"), "SELFHEAL_LLM_MAX_TURNS", 30)? as u32;
        settings.max_tokens = number(
            get("SELFHEAL_LLM_MAX_TOKENS"),
            "SELFHEAL_LLM_MAX_TOKENS",
            200_000,
        )?;
        settings.timeout = Duration::from_secs(number(
            get("SELFHEAL_LLM_TIMEOUT_SECS"),
            "SELFHEAL_LLM_TIMEOUT_SECS",
            1200,
        )?);
        for agent in agents.values_mut() {
            if agent.runner == Runner::Unspecified {
                agent.runner = Runner::Llm(settings.clone());
            }
        }
    }
    for agent in agents.values_mut() {
        if let Runner::Llm(s) = &mut agent.runner {
            s.context_tokens = s.context_tokens.or(context);
        }
    }
    Ok(agents)
}

/// Adds the built-in agents that no file overrides.
fn with_builtins(mut agents: BTreeMap<String, AgentDef>) -> BTreeMap<String, AgentDef> {
    agents
        .entry(DBT_DOCTOR.to_string())
        .or_insert_with(AgentDef::dbt_doctor);
    agents
}

fn default_agents_dir(schedules_path: &Path) -> PathBuf {
    let project = if schedules_path.is_dir() {
        schedules_path
    } else {
        schedules_path.parent().unwrap_or(Path::new("."))
    };
    project.join(".dinoai").join("agents")
}

fn token(value: Option<String>, var: &str, prefix: &str) -> Result<Secret, ConfigError> {
    let env = |message: String| ConfigError::Env {
        var: var.into(),
        message,
    };
    let value = value.ok_or_else(|| {
        env(format!(
            "is required (a Slack token starting with {prefix})"
        ))
    })?;
    if !value.starts_with(prefix) {
        // The value itself is a secret, so it is not echoed.
        return Err(env(format!("must start with {prefix}")));
    }
    Ok(Secret(value))
}

fn api_url(value: Option<String>) -> Result<String, ConfigError> {
    let Some(url) = value else {
        return Ok("https://slack.com/api/".into());
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) =>
        {
            Ok(format!("{}/", url.trim_end_matches('/')))
        }
        _ => Err(ConfigError::Env {
            var: "SLACK_API_URL".into(),
            message: format!("'{url}' is not an http(s) URL"),
        }),
    }
}

/// `SELFHEAL_RUN_LOG_SOURCE` and the variables of the source it names.
fn run_log_source(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::runlog::SourceSettings>, ConfigError> {
    use crate::runlog::{DbtCloudSettings, ParadimeSettings, SourceSettings};
    let err = |var: &str, message: String| ConfigError::Env {
        var: var.into(),
        message,
    };
    let required = |var: &str, why: &str| {
        get(var).ok_or_else(|| {
            err(
                var,
                format!("is required with SELFHEAL_RUN_LOG_SOURCE={why}"),
            )
        })
    };
    let url = |var: &str, value: String| -> Result<String, ConfigError> {
        let value = value.trim_end_matches('/').to_string();
        crate::runlog::check_api_url(&value).map_err(|m| err(var, m))?;
        Ok(value)
    };
    let kind = get("SELFHEAL_RUN_LOG_SOURCE").map(|k| k.to_ascii_lowercase().replace('-', "_"));
    let source = match kind.as_deref() {
        None => get("SELFHEAL_RUN_LOGS").map(|dir| SourceSettings::Dir(PathBuf::from(dir))),
        Some("dir") => Some(SourceSettings::Dir(PathBuf::from(required(
            "SELFHEAL_RUN_LOGS",
            "dir",
        )?))),
        Some("paradime") => Some(SourceSettings::Paradime(ParadimeSettings {
            endpoint: url(
                "PARADIME_API_ENDPOINT",
                required("PARADIME_API_ENDPOINT", "paradime")?,
            )?,
            api_key: Secret(required("PARADIME_API_KEY", "paradime")?),
            api_secret: Secret(required("PARADIME_API_SECRET", "paradime")?),
        })),
        Some("dbt_cloud") => {
            let token = required("DBT_CLOUD_API_TOKEN", "dbt_cloud")?;
            // A pasted `Token …` or `Bearer …` header value still works.
            let token = token
                .strip_prefix("Token ")
                .or_else(|| token.strip_prefix("Bearer "))
                .unwrap_or(&token)
                .trim()
                .to_string();
            let account = required("DBT_CLOUD_ACCOUNT_ID", "dbt_cloud")?;
            let account_id = account
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    err(
                        "DBT_CLOUD_ACCOUNT_ID",
                        format!("'{account}' is not an account id (a whole number)"),
                    )
                })?;
            let api_url = url(
                "DBT_CLOUD_API_URL",
                get("DBT_CLOUD_API_URL")
                    .unwrap_or_else(|| crate::runlog::dbt_cloud::DEFAULT_API_URL.into()),
            )?;
            // The access URL, without the API path some people copy along.
            let api_url = api_url
                .strip_suffix("/api/v2")
                .unwrap_or(&api_url)
                .to_string();
            Some(SourceSettings::DbtCloud(DbtCloudSettings {
                api_url,
                token: Secret(token),
                account_id,
                artifact_wait: Duration::from_secs(number(
                    get("SELFHEAL_DBT_CLOUD_ARTIFACT_WAIT_SECS"),
                    "SELFHEAL_DBT_CLOUD_ARTIFACT_WAIT_SECS",
                    crate::runlog::dbt_cloud::DEFAULT_ARTIFACT_WAIT.as_secs(),
                )?),
            }))
        }
        Some(other) => {
            return Err(err(
                "SELFHEAL_RUN_LOG_SOURCE",
                format!("'{other}' is not a run-log source (dir, paradime or dbt_cloud)"),
            ))
        }
    };
    Ok(source)
}

fn number(value: Option<String>, var: &str, default: u64) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError::Env {
            var: var.into(),
            message: format!("'{v}' is not a whole number"),
        }),
    }
}

/// Splits a comma- or space-separated list, dropping empty items.
fn list(value: Option<String>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Loads the `recognizers:` file named by `SELFHEAL_RECOGNIZERS`.
fn load_overrides(file: &Path) -> Result<Vec<Override>, ConfigError> {
    let text = yaml::read(file)?;
    let root = yaml::parse(file, &text)?;
    let src = yaml::source(file);
    let top = src.map(&root, "", &["recognizers"])?;
    let mut out = Vec::new();
    for (i, node) in src
        .list(top.require("recognizers")?, "recognizers")?
        .iter()
        .enumerate()
    {
        let m = src.map(
            node,
            &format!("recognizers[{i}]"),
            &["source", "run_id", "schedule", "failure"],
        )?;
        let regex = |key: &str, group: Option<&str>| -> Result<Option<regex::Regex>, ConfigError> {
            let Some(n) = m.get(key) else { return Ok(None) };
            compile(src, n, &m.path_of(key), group).map(Some)
        };
        out.push(Override {
            source: m.req_string("source")?,
            run_id: regex("run_id", Some("run_id"))?
                .ok_or_else(|| m.err("run_id", "missing required key 'run_id'"))?,
            schedule: regex("schedule", Some("schedule"))?,
            failure: regex("failure", None)?,
        });
    }
    Ok(out)
}

fn compile(
    src: Source,
    node: &Node,
    path: &str,
    group: Option<&str>,
) -> Result<regex::Regex, ConfigError> {
    let pattern = src.string(node, path)?;
    let re = regex::Regex::new(&pattern).map_err(|e| {
        // Regex errors span several lines (pattern, caret, message); keep them on one.
        let detail = e
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        src.err(node, path, format!("invalid regex: {detail}"))
    })?;
    if let Some(group) = group {
        if !re.capture_names().any(|n| n == Some(group)) {
            return Err(src.err(
                node,
                path,
                format!("the regex must have a named group (?P<{group}>…)"),
            ));
        }
    }
    Ok(re)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SCHEDULES: &str = "\
schedules:
  - name: hourly_marts
    schedule: '0 * * * *'
    environment: production
    commands: [dbt build]
    notifications:
      slack_channels:
        - {channel: '#data-alerts', events: [failed]}
        - {channel: '#agent-demo', events: [failed]}
    self_healing:
      enabled: true
      slack_channel: '#agent-demo'
      agent_name: bolt-pipeline-healer
";
    const AGENT: &str = "name: bolt-pipeline-healer\nversion: 1\nrole: r\ngoal: g\nbackstory: b\nselfheal: {runner: command, command: ./heal.sh}\n";

    /// A dbt project with the example schedule and its agent.
    fn project(schedules: &str, agent: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("paradime_schedules.yml"), schedules).expect("write");
        let agents = dir.path().join(".dinoai/agents");
        std::fs::create_dir_all(&agents).expect("mkdir");
        std::fs::write(agents.join("bolt-pipeline-healer.yml"), agent).expect("write");
        dir
    }

    fn vars(dir: &Path, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = [
            ("SLACK_APP_TOKEN", "xapp-1-abc"),
            ("SLACK_BOT_TOKEN", "xoxb-123"),
            ("SELFHEAL_SCHEDULES", dir.to_str().expect("utf-8 path")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        vars
    }

    fn load(vars: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
        Config::from_env(&|name| vars.get(name).cloned())
    }

    #[test]
    fn a_minimal_environment_loads_with_defaults() {
        let dir = project(SCHEDULES, AGENT);
        let config = load(&vars(dir.path(), &[])).expect("loads");
        assert_eq!(config.slack.api_url, "https://slack.com/api/");
        assert_eq!(config.db_path, PathBuf::from("data/selfheal.db"));
        assert_eq!(config.agents_dir, dir.path().join(".dinoai/agents"));
        assert_eq!(config.channel_interval, Duration::from_millis(1000));
        assert_eq!(config.courtesy_window, Duration::from_secs(30));
        assert_eq!(config.edit_interval, Duration::from_millis(1000));
        assert_eq!(config.api_timeout, Duration::from_secs(10));
        assert_eq!(config.socket_ping, Duration::from_secs(15));
        assert!(
            config.rerun_interrupted,
            "interrupted sessions are re-run once"
        );
        assert_eq!(config.prior_attempts, 5);
        assert_eq!(config.shutdown_grace, SHUTDOWN_GRACE);
        assert!(config.overrides.is_empty() && config.notifier_bots.is_empty());
        let schedule = config.schedules.get("hourly_marts").expect("schedule");
        assert_eq!(
            config.agent_for(schedule).map(|a| a.name.as_str()),
            Some("bolt-pipeline-healer")
        );
        assert_eq!(format!("{:?}", config.slack.bot_token), "Secret(***)");
        assert!(
            !format!("{config:?}").contains("xoxb-123"),
            "tokens never show in Debug output"
        );
    }

    #[test]
    fn the_context_window_default_reaches_every_llm_agent_without_its_own() {
        let llm = |extra: &str| {
            format!(
                "name: bolt-pipeline-healer\nversion: 1\nrole: r\ngoal: g\nbackstory: b\n{extra}"
            )
        };
        let own =
            "selfheal: {runner: llm, base_url: 'http://h/v1', model: m, context_tokens: 4096}\n";
        let file = "selfheal: {runner: llm, base_url: 'http://h/v1', model: m}\n";
        let env_default = [
            ("SELFHEAL_LLM_BASE_URL", "http://h/v1"),
            ("SELFHEAL_LLM_MODEL", "m"),
        ];
        type Case<'a> = (
            String,
            &'a [(&'a str, &'a str)],
            Option<&'a str>,
            Option<u64>,
        );
        let cases: &[Case] = &[
            // (agent file, extra environment, SELFHEAL_LLM_CONTEXT_TOKENS, window in force)
            (llm(own), &[], Some("16384"), Some(4096)),
            (llm(file), &[], Some("16384"), Some(16384)),
            (llm(file), &[], None, None),
            (llm(""), &env_default, Some("8192"), Some(8192)),
        ];
        for (agent, extra, context, want) in cases {
            let dir = project(SCHEDULES, agent);
            let mut v = vars(dir.path(), extra);
            // An llm agent edits a repository.
            v.insert("SELFHEAL_REPO".into(), dir.path().display().to_string());
            if let Some(c) = context {
                v.insert("SELFHEAL_LLM_CONTEXT_TOKENS".into(), (*c).into());
            }
            let config = load(&v).expect("loads");
            let Runner::Llm(s) = &config.agents["bolt-pipeline-healer"].runner else {
                panic!("an llm agent: {agent}")
            };
            assert_eq!(s.context_tokens, *want, "{agent} {context:?}");
        }
        let dir = project(SCHEDULES, &llm(file));
        let mut v = vars(dir.path(), &[]);
        v.insert("SELFHEAL_REPO".into(), dir.path().display().to_string());
        v.insert("SELFHEAL_LLM_CONTEXT_TOKENS".into(), "lots".into());
        let err = load(&v).unwrap_err().to_string();
        assert!(
            err.contains("SELFHEAL_LLM_CONTEXT_TOKENS") && err.contains("at least 1024"),
            "{err}"
        );
    }

    #[test]
    fn every_setting_can_be_overridden() {
        let dir = project(SCHEDULES, AGENT);
        let file = dir.path().join("paradime_schedules.yml");
        let config = load(&vars(
            dir.path(),
            &[
                ("SELFHEAL_SCHEDULES", file.to_str().expect("utf-8")),
                ("SLACK_API_URL", "http://127.0.0.1:9999/api//"),
                ("SELFHEAL_DB", "/tmp/x.db"),
                ("SELFHEAL_NOTIFIER_BOTS", "B01, B02 paradime"),
                ("SELFHEAL_CHANNEL_INTERVAL_MS", "5"),
                ("SELFHEAL_COURTESY_WINDOW_SECS", "0"),
                ("SELFHEAL_PRIOR_ATTEMPTS", "2"),
                (
                    "SELFHEAL_SECRET_ENV",
                    "PARADIME_API_KEY,PARADIME_API_SECRET",
                ),
                ("SELFHEAL_DEFAULT_AGENT", "bolt-pipeline-healer"),
                ("SELFHEAL_EDIT_INTERVAL_MS", ""),
                ("SELFHEAL_ON_RESTART", "report"),
            ],
        ))
        .expect("loads");
        assert!(!config.rerun_interrupted);
        assert_eq!(config.slack.api_url, "http://127.0.0.1:9999/api/");
        assert_eq!(
            config.agents_dir,
            dir.path().join(".dinoai/agents"),
            "next to the schedules file"
        );
        assert_eq!(config.notifier_bots, vec!["B01", "B02", "paradime"]);
        assert_eq!(config.channel_interval, Duration::from_millis(5));
        assert_eq!(config.courtesy_window, Duration::ZERO);
        assert_eq!(
            config.edit_interval,
            Duration::from_millis(1000),
            "empty means unset"
        );
        assert_eq!(config.prior_attempts, 2);
        assert_eq!(
            config.secret_env,
            vec!["PARADIME_API_KEY", "PARADIME_API_SECRET"]
        );
        assert_eq!(
            config.default_agent.as_deref(),
            Some("bolt-pipeline-healer")
        );
    }

    #[test]
    fn bad_variables_are_named_in_the_error() {
        let dir = project(SCHEDULES, AGENT);
        let cases = [
            (
                "SLACK_APP_TOKEN",
                "xoxb-wrong",
                "SLACK_APP_TOKEN: must start with xapp-",
            ),
            (
                "SLACK_BOT_TOKEN",
                "xapp-wrong",
                "SLACK_BOT_TOKEN: must start with xoxb-",
            ),
            ("SLACK_BOT_TOKEN", "", "SLACK_BOT_TOKEN: is required"),
            (
                "SLACK_API_URL",
                "slack.com/api",
                "SLACK_API_URL: 'slack.com/api' is not an http(s) URL",
            ),
            (
                "SLACK_API_URL",
                "https://",
                "SLACK_API_URL: 'https://' is not an http(s) URL",
            ),
            (
                "SELFHEAL_CHANNEL_INTERVAL_MS",
                "1s",
                "SELFHEAL_CHANNEL_INTERVAL_MS: '1s' is not a whole number",
            ),
            (
                "SELFHEAL_PRIOR_ATTEMPTS",
                "-1",
                "SELFHEAL_PRIOR_ATTEMPTS: '-1' is not a whole number",
            ),
            ("SELFHEAL_SCHEDULES", "", "SELFHEAL_SCHEDULES: is required"),
            (
                "SELFHEAL_ON_RESTART",
                "resume",
                "SELFHEAL_ON_RESTART: 'resume' is neither 'rerun' nor 'report'",
            ),
            (
                "SELFHEAL_DEFAULT_AGENT",
                "nobody",
                "SELFHEAL_DEFAULT_AGENT: unknown agent 'nobody'",
            ),
        ];
        for (var, value, expected) in cases {
            let err = load(&vars(dir.path(), &[(var, value)]))
                .expect_err(var)
                .to_string();
            assert!(
                err.starts_with(expected),
                "\nexpected: {expected}\n     got: {err}"
            );
            assert!(!err.contains("wrong"), "token values are not echoed: {err}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_each_naming_where_it_is() {
        // Three problems of three kinds: a missing variable, a bad value, and
        // a schedule naming an agent that does not exist.
        let dir = project(
            &SCHEDULES.replace("agent_name: bolt-pipeline-healer", "agent_name: ghost"),
            AGENT,
        );
        let mut env = vars(dir.path(), &[("SELFHEAL_PRIOR_ATTEMPTS", "five")]);
        env.remove("SLACK_BOT_TOKEN");
        let err = load(&env).expect_err("three problems");
        let lines = err.lines();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(
            lines[0].starts_with("SLACK_BOT_TOKEN: is required"),
            "{}",
            lines[0]
        );
        assert_eq!(
            lines[1],
            "SELFHEAL_PRIOR_ATTEMPTS: 'five' is not a whole number"
        );
        assert!(
            lines[2].contains("paradime_schedules.yml:2: self_healing.agent_name: schedule 'hourly_marts' names unknown agent 'ghost'"),
            "{}",
            lines[2]
        );
        assert!(
            err.to_string()
                .starts_with("3 problems:\n  - SLACK_BOT_TOKEN"),
            "{err}"
        );

        // Where each variable was read, once the process environment is known.
        let located = load(&env)
            .expect_err("three problems")
            .with_origins(|var| format!("from {var}'s place"));
        assert_eq!(located.lines()[1], "SELFHEAL_PRIOR_ATTEMPTS (from SELFHEAL_PRIOR_ATTEMPTS's place): 'five' is not a whole number");
    }

    #[test]
    fn a_variable_is_said_to_come_from_the_environment_or_the_dotenv_file() {
        let file = Path::new("/srv/bot/.env");
        let cwd = Path::new("/srv/bot");
        let cases = [
            ("X", true, true, Some(file), "from the environment"),
            ("X", false, true, Some(file), "from /srv/bot/.env"),
            (
                "X",
                false,
                false,
                Some(file),
                "in neither the environment nor /srv/bot/.env",
            ),
            (
                "X",
                false,
                false,
                None,
                "not in the environment, and no .env in /srv/bot or its parents",
            ),
            ("X", true, true, None, "from the environment"),
        ];
        for (var, in_env, set_now, dotenv, want) in cases {
            assert_eq!(origin(var, in_env, set_now, dotenv, cwd), want);
        }
    }

    #[test]
    fn the_run_log_source_is_chosen_and_its_variables_read() {
        use crate::runlog::{DbtCloudSettings, ParadimeSettings, SourceSettings};
        let dir = project(SCHEDULES, AGENT);
        let source = |extra: &[(&str, &str)]| {
            load(&vars(dir.path(), extra))
                .expect("loads")
                .heal
                .run_log_source
        };
        assert_eq!(source(&[]), None, "no source unless configured");
        assert_eq!(
            source(&[("SELFHEAL_RUN_LOGS", "/var/runs")]),
            Some(SourceSettings::Dir(PathBuf::from("/var/runs"))),
            "dir is the default when SELFHEAL_RUN_LOGS is set"
        );
        assert_eq!(
            source(&[
                ("SELFHEAL_RUN_LOG_SOURCE", "paradime"),
                (
                    "PARADIME_API_ENDPOINT",
                    "https://api.paradime.io/api/v1/abc/graphql/"
                ),
                ("PARADIME_API_KEY", "pk_1234"),
                ("PARADIME_API_SECRET", "ps_5678"),
                ("SELFHEAL_RUN_LOGS", "/var/runs"),
            ]),
            Some(SourceSettings::Paradime(ParadimeSettings {
                endpoint: "https://api.paradime.io/api/v1/abc/graphql".into(),
                api_key: Secret::new("pk_1234"),
                api_secret: Secret::new("ps_5678"),
            }))
        );
        assert_eq!(
            source(&[
                ("SELFHEAL_RUN_LOG_SOURCE", "dbt_cloud"),
                ("DBT_CLOUD_API_TOKEN", "dbtc_abcd"),
                ("DBT_CLOUD_ACCOUNT_ID", "70403"),
            ]),
            Some(SourceSettings::DbtCloud(DbtCloudSettings {
                api_url: "https://cloud.getdbt.com".into(),
                token: Secret::new("dbtc_abcd"),
                account_id: 70403,
                artifact_wait: Duration::from_secs(90),
            }))
        );
        assert_eq!(
            source(&[
                ("SELFHEAL_RUN_LOG_SOURCE", "DBT-Cloud"),
                ("DBT_CLOUD_API_URL", "https://emea.dbt.com/api/v2/"),
                ("DBT_CLOUD_API_TOKEN", "Token dbtc_abcd"),
                ("DBT_CLOUD_ACCOUNT_ID", "1"),
                ("SELFHEAL_DBT_CLOUD_ARTIFACT_WAIT_SECS", "5"),
            ]),
            Some(SourceSettings::DbtCloud(DbtCloudSettings {
                api_url: "https://emea.dbt.com".into(),
                token: Secret::new("dbtc_abcd"),
                account_id: 1,
                artifact_wait: Duration::from_secs(5),
            }))
        );
        // A hosted source stands in for SELFHEAL_RUN_LOGS for the built-in agent.
        let no_name = SCHEDULES.replace("      agent_name: bolt-pipeline-healer\n", "");
        let doctor = project(&no_name, AGENT);
        let config = load(&vars(
            doctor.path(),
            &[
                ("SELFHEAL_REPO", "/srv/dbt"),
                ("SELFHEAL_RUN_LOG_SOURCE", "dbt_cloud"),
                ("DBT_CLOUD_API_TOKEN", "dbtc_abcd"),
                ("DBT_CLOUD_ACCOUNT_ID", "1"),
            ],
        ))
        .expect("loads");
        assert!(
            !format!("{config:?}").contains("dbtc_abcd"),
            "secrets stay hidden"
        );
    }

    #[test]
    fn run_log_source_errors_name_the_missing_variable() {
        let dir = project(SCHEDULES, AGENT);
        let paradime = [
            ("SELFHEAL_RUN_LOG_SOURCE", "paradime"),
            ("PARADIME_API_ENDPOINT", "https://api.paradime.io/graphql"),
            ("PARADIME_API_KEY", "pk_1234"),
            ("PARADIME_API_SECRET", "ps_5678"),
        ];
        let dbt_cloud = [
            ("SELFHEAL_RUN_LOG_SOURCE", "dbt_cloud"),
            ("DBT_CLOUD_API_TOKEN", "dbtc_abcd"),
            ("DBT_CLOUD_ACCOUNT_ID", "70403"),
        ];
        // (base variables, the variable changed, the error's start)
        type Case<'a> = (&'a [(&'a str, &'a str)], (&'a str, &'a str), &'a str);
        let cases: Vec<Case> = vec![
            (&[], ("SELFHEAL_RUN_LOG_SOURCE", "s3"), "SELFHEAL_RUN_LOG_SOURCE: 's3' is not a run-log source (dir, paradime or dbt_cloud)"),
            (&[], ("SELFHEAL_RUN_LOG_SOURCE", "dir"), "SELFHEAL_RUN_LOGS: is required with SELFHEAL_RUN_LOG_SOURCE=dir"),
            (&paradime, ("PARADIME_API_ENDPOINT", ""), "PARADIME_API_ENDPOINT: is required with SELFHEAL_RUN_LOG_SOURCE=paradime"),
            (&paradime, ("PARADIME_API_KEY", ""), "PARADIME_API_KEY: is required with SELFHEAL_RUN_LOG_SOURCE=paradime"),
            (&paradime, ("PARADIME_API_SECRET", ""), "PARADIME_API_SECRET: is required with SELFHEAL_RUN_LOG_SOURCE=paradime"),
            (&paradime, ("PARADIME_API_ENDPOINT", "http://api.paradime.io/graphql"), "PARADIME_API_ENDPOINT: refusing plain http for http://api.paradime.io/graphql"),
            (&paradime, ("PARADIME_API_ENDPOINT", "api.paradime.io"), "PARADIME_API_ENDPOINT: 'api.paradime.io' is not a URL"),
            (&dbt_cloud, ("DBT_CLOUD_API_TOKEN", ""), "DBT_CLOUD_API_TOKEN: is required with SELFHEAL_RUN_LOG_SOURCE=dbt_cloud"),
            (&dbt_cloud, ("DBT_CLOUD_ACCOUNT_ID", ""), "DBT_CLOUD_ACCOUNT_ID: is required with SELFHEAL_RUN_LOG_SOURCE=dbt_cloud"),
            (&dbt_cloud, ("DBT_CLOUD_ACCOUNT_ID", "acme"), "DBT_CLOUD_ACCOUNT_ID: 'acme' is not an account id (a whole number)"),
            (&dbt_cloud, ("DBT_CLOUD_API_URL", "ftp://cloud.getdbt.com"), "DBT_CLOUD_API_URL: 'ftp://cloud.getdbt.com' is not an https URL"),
            (&dbt_cloud, ("SELFHEAL_DBT_CLOUD_ARTIFACT_WAIT_SECS", "1m"), "SELFHEAL_DBT_CLOUD_ARTIFACT_WAIT_SECS: '1m' is not a whole number"),
        ];
        for (base, (var, value), expected) in cases {
            let mut extra: Vec<(&str, &str)> = base.to_vec();
            extra.push((var, value));
            let err = load(&vars(dir.path(), &extra))
                .expect_err(expected)
                .to_string();
            assert!(
                err.starts_with(expected),
                "\nexpected: {expected}\n     got: {err}"
            );
            for secret in ["pk_1234", "ps_5678", "dbtc_abcd"] {
                assert!(!err.contains(secret), "{err}");
            }
        }
    }

    #[test]
    fn self_healing_schedules_must_resolve_to_a_runnable_agent() {
        let no_name = SCHEDULES.replace("      agent_name: bolt-pipeline-healer\n", "");
        let unspecified = AGENT.replace("selfheal: {runner: command, command: ./heal.sh}\n", "");
        let cases: Vec<(String, &str, &str)> = vec![
            (
                SCHEDULES.replace("agent_name: bolt-pipeline-healer", "agent_name: ghost"),
                AGENT,
                "paradime_schedules.yml:2: self_healing.agent_name: schedule 'hourly_marts' names unknown agent 'ghost'",
            ),
            // With no agent named, the built-in dbt-doctor heals, and it needs a repository and run logs.
            (no_name.clone(), AGENT, "paradime_schedules.yml:2: self_healing: schedule 'hourly_marts' heals with the built-in agent 'dbt-doctor', which needs SELFHEAL_REPO (the dbt repository) and SELFHEAL_RUN_LOGS (where run logs are)"),
            (SCHEDULES.into(), &unspecified, "paradime_schedules.yml:2: self_healing.agent_name: agent 'bolt-pipeline-healer' has no `selfheal.runner` (command, llm or builtin) in "),
        ];
        for (schedules, agent, expected) in cases {
            let dir = project(&schedules, agent);
            let err = load(&vars(dir.path(), &[]))
                .expect_err("rejected")
                .to_string();
            let at = err.find("paradime_schedules.yml").unwrap_or(0);
            assert!(
                err[at..].starts_with(expected),
                "\nexpected: {expected}\n     got: {err}"
            );
        }
        // The default agent stands in for an empty agent_name.
        let dir = project(&no_name, AGENT);
        assert!(load(&vars(
            dir.path(),
            &[("SELFHEAL_DEFAULT_AGENT", "bolt-pipeline-healer")]
        ))
        .is_ok());
    }

    #[test]
    fn recognizer_overrides_load_and_bad_regexes_are_located() {
        let dir = project(SCHEDULES, AGENT);
        let write = |text: &str| {
            let path = dir.path().join("recognizers.yml");
            std::fs::write(&path, text).expect("write");
            path.to_str().expect("utf-8").to_owned()
        };
        let good = write("recognizers:\n  - source: B0AIRFLOW\n    run_id: 'run (?P<run_id>\\S+)'\n    schedule: 'dag (?P<schedule>\\w+)'\n    failure: 'FAILED'\n");
        let config = load(&vars(dir.path(), &[("SELFHEAL_RECOGNIZERS", &good)])).expect("loads");
        assert_eq!(config.overrides.len(), 1);
        assert_eq!(config.overrides[0].source, "B0AIRFLOW");
        assert!(config.overrides[0].run_id.is_match("run 42"));

        let cases = [
            ("recognizers:\n  - source: x\n    run_id: 'run (\\d+'\n", "recognizers.yml:3:13: recognizers[0].run_id: invalid regex"),
            ("recognizers:\n  - source: x\n    run_id: 'run (\\d+)'\n", "recognizers.yml:3:13: recognizers[0].run_id: the regex must have a named group (?P<run_id>…)"),
            ("recognizers:\n  - source: x\n    run_id: '(?P<run_id>\\d+)'\n    schedule: 'dag (\\w+)'\n", "recognizers.yml:4:15: recognizers[0].schedule: the regex must have a named group (?P<schedule>…)"),
            ("recognizers:\n  - source: x\n", "recognizers.yml:2:5: recognizers[0].run_id: missing required key 'run_id'"),
            ("recognizers:\n  - source: x\n    runid: y\n", "recognizers.yml:3:5: recognizers[0].runid: unknown key 'runid'"),
        ];
        for (text, expected) in cases {
            let path = write(text);
            let err = load(&vars(dir.path(), &[("SELFHEAL_RECOGNIZERS", &path)]))
                .expect_err("rejected")
                .to_string();
            let at = err.find("recognizers.yml").expect("names the file");
            assert!(
                err[at..].starts_with(expected),
                "\nexpected: {expected}\n     got: {err}"
            );
        }
    }
}
