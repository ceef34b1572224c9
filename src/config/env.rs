//! The bot's settings as typed values, and the checks that tie schedules,
//! agents and settings together.
//!
//! Each variable is declared once in `settings` (name, default, docs,
//! parsing); this module only says which settings make up a [`Config`] or a
//! [`DbtSettings`], and what they mean together. [`Config::from_env`] takes a
//! lookup closure rather than reading the process environment, so tests
//! build a `Config` from a `HashMap`. Only the `from_process_env` functions
//! touch the real environment (and, for `Config`, `.env`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::recognizers::load_recognizers;
use super::settings::*;
use super::vars::{ProcessEnv, Setting, Vars};
use super::{
    load_agents, load_schedules, AgentDef, ConfigError, ConfigErrors, Runner, Schedules, DBT_DOCTOR,
};
use crate::domain::Secret;
use crate::recognize::Override;
use crate::runlog::paradime::{COMPANY_TOKEN_PREFIX, WORKSPACE_TOKEN_PREFIX};
use crate::runlog::{
    DbtCloudSettings, MissingCredential, ParadimeAuth, ParadimeSettings, SourceSettings,
};

/// How long shutdown waits for running sessions to record their state.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

// Field docs name the setting each field comes from; what it means, and its
// default, are said once, in the setting's declaration.

/// How to reach Slack.
#[derive(Debug, Clone)]
pub struct SlackSettings {
    /// [`SLACK_APP_TOKEN`]: opens the Socket Mode connection.
    pub app_token: Secret,
    /// [`SLACK_BOT_TOKEN`]: Web API calls.
    pub bot_token: Secret,
    /// [`SLACK_API_URL`], always ending with `/`.
    pub api_url: String,
    /// [`SELFHEAL_NOTIFY_TOKEN`]: what `selfheal notify` posts with, when not the bot token.
    pub notify_token: Option<Secret>,
}

/// Everything the bot needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub slack: SlackSettings,
    /// [`SELFHEAL_DB`]; its directory is created on start.
    pub db_path: PathBuf,
    /// [`SELFHEAL_SCHEDULES`].
    pub schedules_path: PathBuf,
    /// The schedules loaded from `schedules_path`.
    pub schedules: Schedules,
    /// [`SELFHEAL_AGENTS_DIR`], else `.dinoai/agents` in the dbt project:
    /// `SELFHEAL_SCHEDULES` when it is a directory, else the schedules file's.
    pub agents_dir: PathBuf,
    /// The agents loaded from `agents_dir`, and the built-in ones, by name.
    pub agents: BTreeMap<String, AgentDef>,
    /// [`SELFHEAL_DEFAULT_AGENT`]: heals when a schedule names no agent, and
    /// when a person asks for a fix without naming one.
    pub default_agent: Option<String>,
    /// [`SELFHEAL_NOTIFIER_BOTS`]; empty means any bot.
    pub notifier_bots: Vec<String>,
    /// [`SELFHEAL_CHANNEL_INTERVAL_MS`].
    pub channel_interval: Duration,
    /// [`SELFHEAL_CHANNEL_BURST`].
    pub channel_burst: u32,
    /// [`SELFHEAL_CHANNEL_LEEWAY_MS`].
    pub channel_leeway: Duration,
    /// [`SELFHEAL_COURTESY_WINDOW_SECS`].
    pub courtesy_window: Duration,
    /// [`SELFHEAL_EDIT_INTERVAL_MS`].
    pub edit_interval: Duration,
    /// [`SELFHEAL_API_TIMEOUT_SECS`].
    pub api_timeout: Duration,
    /// [`SELFHEAL_SOCKET_PING_SECS`], at least a second.
    pub socket_ping: Duration,
    /// [`SELFHEAL_PRIOR_ATTEMPTS`].
    pub prior_attempts: usize,
    /// How long shutdown waits for running sessions ([`SHUTDOWN_GRACE`], not configurable).
    pub shutdown_grace: Duration,
    /// The regexes of the [`SELFHEAL_RECOGNIZERS`] file:
    /// `recognizers: [{source, run_id: '…(?P<run_id>…)…', schedule: '…(?P<schedule>…)…', failure: '…'}]`.
    pub overrides: Vec<Override>,
    /// [`SELFHEAL_SECRET_ENV`].
    pub secret_env: Vec<String>,
    /// Where the dbt code, the run logs and dbt itself are, and where pull
    /// requests go.
    pub heal: HealSettings,
    /// [`SELFHEAL_MAX_SESSIONS`].
    pub max_sessions: usize,
    /// [`SELFHEAL_MAX_SESSIONS_PER_SCHEDULE`].
    pub max_sessions_per_schedule: usize,
    /// [`SELFHEAL_ADMINS`].
    pub admins: Vec<String>,
    /// [`SELFHEAL_ON_RESTART`] is `rerun`.
    pub rerun_interrupted: bool,
    /// [`SELFHEAL_LEASE_SECS`].
    pub lease: Duration,
    /// How often the pull requests selfheal opened are asked about.
    pub pr_poll: PrPoll,
    /// [`SELFHEAL_HTTP_ADDR`]: where health, readiness and metrics are
    /// served, if anywhere.
    pub http_addr: Option<std::net::SocketAddr>,
}

/// How often selfheal asks the forge about a pull request it opened: `first`,
/// doubled for each answer without news, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrPoll {
    /// [`SELFHEAL_PR_POLL_SECS`], at least a second.
    pub first: Duration,
    /// [`SELFHEAL_PR_POLL_MAX_SECS`], at least `first`.
    pub max: Duration,
}

/// What a session needs to do real work: a repository to fix, run logs to
/// read, dbt to verify with and a forge to open pull requests on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealSettings {
    /// [`SELFHEAL_REPO`]: each session works on a fresh clone of it.
    pub repo: Option<String>,
    /// [`SELFHEAL_DBT_PROJECT_DIR`].
    pub project_subdir: PathBuf,
    /// [`SELFHEAL_RUN_LOGS`].
    pub run_logs: Option<PathBuf>,
    /// [`SELFHEAL_RUN_LOG_SOURCE`] and its variables; build the source with
    /// [`crate::runlog::Source::from_settings`].
    pub run_log_source: Option<SourceSettings>,
    /// How dbt runs: what `fix` and `drill` read too.
    pub dbt: DbtSettings,
    /// [`SELFHEAL_GITHUB_TOKEN`]: the bot — never the agent — opens pull
    /// requests with it.
    pub github_token: Option<Secret>,
    /// [`SELFHEAL_GITHUB_API_URL`], without a trailing `/`.
    pub github_api_url: String,
    /// [`SELFHEAL_GITHUB_REPO`]; None: from the repository's GitHub URL.
    pub github_repo: Option<String>,
    /// [`SELFHEAL_REPO_WEB_URL`].
    pub repo_web_url: Option<String>,
    /// What a transient failure gets: re-runs through the scheduler.
    pub retries: Retries,
    /// [`SELFHEAL_PR_DRAFT`], [`SELFHEAL_PR_REVIEWERS`], [`SELFHEAL_PR_LABELS`].
    pub pr_options: crate::domain::PrOptions,
    /// The forges other than GitHub.
    pub forge: ForgeSettings,
}

/// [`SELFHEAL_FORGE`], [`SELFHEAL_FORGE_API_URL`], [`SELFHEAL_FORGE_PROJECT`]
/// and the tokens of the forges other than GitHub (held by the bot alone).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForgeSettings {
    pub kind: Option<crate::domain::ForgeKind>,
    pub api_url: Option<String>,
    pub project: Option<String>,
    pub gitlab_token: Option<Secret>,
    pub gitea_token: Option<Secret>,
    pub bitbucket_token: Option<Secret>,
    pub azure_devops_token: Option<Secret>,
}

/// Re-running transient failures: [`SELFHEAL_RETRIES`],
/// [`SELFHEAL_RETRY_COMMAND`], [`SELFHEAL_RETRY_POLL_MS`].
#[derive(Debug, Clone, PartialEq)]
pub struct Retries {
    pub budget: RetryBudget,
    /// Re-runs a schedule fed by `selfheal notify` (`sh -c`).
    pub command: Option<String>,
    /// How often a re-run's state is asked for.
    pub poll: Duration,
    /// [`SELFHEAL_NEXT_RUN_POLL_SECS`]: how often the scheduler is asked
    /// whether a schedule with an open failure passed since (zero: never).
    pub next_run_poll: Duration,
}

impl Default for Retries {
    fn default() -> Retries {
        Retries {
            budget: RetryBudget::default(),
            command: None,
            poll: Duration::from_secs(15),
            next_run_poll: Duration::from_secs(300),
        }
    }
}

/// How many re-runs a failed run gets, per schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryBudget {
    pub default: u32,
    /// Schedules with a budget of their own (0: retries are off).
    pub per_schedule: std::collections::BTreeMap<String, u32>,
}

impl Default for RetryBudget {
    fn default() -> RetryBudget {
        RetryBudget {
            default: 1,
            per_schedule: Default::default(),
        }
    }
}

impl RetryBudget {
    /// The budget of `schedule` (0: retries are off for it).
    pub fn for_schedule(&self, schedule: &str) -> u32 {
        self.per_schedule
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(schedule))
            .map_or(self.default, |(_, n)| *n)
    }
}

/// How dbt runs: the `SELFHEAL_DBT*` settings, which `selfheal run`, `fix`
/// and `drill` read alike.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbtSettings {
    /// [`SELFHEAL_DBT`].
    pub exe: PathBuf,
    /// [`SELFHEAL_DBT_PROFILES_DIR`].
    pub profiles_dir: Option<PathBuf>,
    /// [`SELFHEAL_DBT_TARGET`]: a target that is safe to build into (slim CI).
    pub ci_target: Option<String>,
    /// [`SELFHEAL_DBT_PROD_TARGET`].
    pub prod_target: Option<String>,
    /// [`SELFHEAL_DBT_STATE_DIR`].
    pub state_dir: Option<PathBuf>,
    /// [`SELFHEAL_DBT_TIMEOUT_SECS`].
    pub timeout: Duration,
}

impl DbtSettings {
    /// The dbt settings from the process environment as it is. `fix` and
    /// `drill` work on a project named on their command line, from any
    /// directory, so they do not look for a `.env` as `run` does.
    pub fn from_process_env() -> Result<DbtSettings, ConfigErrors> {
        ProcessEnv::as_is().read(DbtSettings::from_env)
    }

    /// The dbt settings through `vars`, or every problem with them.
    pub fn from_env(vars: &dyn Fn(&str) -> Option<String>) -> Result<DbtSettings, ConfigErrors> {
        let vars = Vars::new(vars);
        let dbt = DbtSettings::read(&vars);
        vars.finish(dbt)
    }

    fn read(vars: &Vars) -> DbtSettings {
        DbtSettings {
            exe: vars.value(&SELFHEAL_DBT),
            profiles_dir: vars.get(&SELFHEAL_DBT_PROFILES_DIR),
            ci_target: vars.get(&SELFHEAL_DBT_TARGET),
            prod_target: vars.get(&SELFHEAL_DBT_PROD_TARGET),
            state_dir: vars.get(&SELFHEAL_DBT_STATE_DIR),
            timeout: vars.value(&SELFHEAL_DBT_TIMEOUT_SECS),
        }
    }
}

impl Config {
    /// Loads `.env` (if present, without overriding variables already set),
    /// then reads the configuration from the process environment. Errors say
    /// where each variable came from: the environment, or `.env` at its path.
    pub fn from_process_env() -> Result<Config, ConfigErrors> {
        ProcessEnv::with_dotenv()?.read(Config::from_env)
    }

    /// Reads the configuration through `vars`, loads the schedule and agent
    /// files it names, and checks that they fit together. Every problem is
    /// reported, not only the first: a person fixes them in one go.
    pub fn from_env(vars: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let vars = Vars::new(vars);
        // The order of reading is the order problems are told in.
        let app_token = vars.get(&SLACK_APP_TOKEN);
        let bot_token = vars.get(&SLACK_BOT_TOKEN);
        let api_url = vars.value(&SLACK_API_URL);
        let db_path = vars.value(&SELFHEAL_DB);
        let schedules_path = vars.get(&SELFHEAL_SCHEDULES);
        let agents_dir = vars
            .get(&SELFHEAL_AGENTS_DIR)
            .or_else(|| schedules_path.as_deref().map(default_agents_dir));
        let schedules = schedules_path
            .as_deref()
            .and_then(|path| vars.keep_all(load_schedules(path)));
        let agents = agents_dir
            .as_deref()
            .and_then(|dir| vars.keep(load_agents(dir)))
            .and_then(|agents| vars.keep(with_llm_default(agents, &vars)))
            .map(with_builtins);
        let channel_interval = vars.value(&SELFHEAL_CHANNEL_INTERVAL_MS);
        let channel_burst = vars.value(&SELFHEAL_CHANNEL_BURST);
        // A quarter of the interval: below the burst's tolerance, so it never
        // slows the steady pace, only the first writes of a spell.
        let channel_leeway = vars
            .get(&SELFHEAL_CHANNEL_LEEWAY_MS)
            .unwrap_or(channel_interval / 4);
        let courtesy_window = vars.value(&SELFHEAL_COURTESY_WINDOW_SECS);
        let edit_interval = vars.value(&SELFHEAL_EDIT_INTERVAL_MS);
        let api_timeout = vars.value(&SELFHEAL_API_TIMEOUT_SECS);
        let socket_ping = vars
            .value(&SELFHEAL_SOCKET_PING_SECS)
            .max(Duration::from_secs(1));
        let prior_attempts = vars.value(&SELFHEAL_PRIOR_ATTEMPTS);
        let overrides = vars
            .get(&SELFHEAL_RECOGNIZERS)
            .and_then(|path| vars.keep(load_recognizers(&path)))
            .unwrap_or_default();
        let max_sessions = vars.value(&SELFHEAL_MAX_SESSIONS);
        let max_sessions_per_schedule = vars.value(&SELFHEAL_MAX_SESSIONS_PER_SCHEDULE);
        let rerun_interrupted = vars.value(&SELFHEAL_ON_RESTART);
        let lease = vars.value(&SELFHEAL_LEASE_SECS).max(Duration::from_secs(1));
        let http_addr = vars.get(&SELFHEAL_HTTP_ADDR);
        let pr_poll_first = vars
            .value(&SELFHEAL_PR_POLL_SECS)
            .max(Duration::from_secs(1));
        let pr_poll = PrPoll {
            first: pr_poll_first,
            max: vars.value(&SELFHEAL_PR_POLL_MAX_SECS).max(pr_poll_first),
        };
        let run_log_source = vars.keep(run_log_source(&vars)).flatten();
        let dbt = DbtSettings::read(&vars);
        let heal = HealSettings {
            repo: vars.get(&SELFHEAL_REPO),
            project_subdir: vars.value(&SELFHEAL_DBT_PROJECT_DIR),
            run_logs: vars.get(&SELFHEAL_RUN_LOGS),
            run_log_source,
            github_token: vars.get(&SELFHEAL_GITHUB_TOKEN),
            github_api_url: vars.value(&SELFHEAL_GITHUB_API_URL),
            github_repo: vars.get(&SELFHEAL_GITHUB_REPO),
            repo_web_url: vars.get(&SELFHEAL_REPO_WEB_URL),
            retries: Retries {
                budget: vars.value(&SELFHEAL_RETRIES),
                command: vars.get(&SELFHEAL_RETRY_COMMAND),
                poll: vars.value(&SELFHEAL_RETRY_POLL_MS),
                next_run_poll: vars.value(&SELFHEAL_NEXT_RUN_POLL_SECS),
            },
            forge: ForgeSettings {
                kind: vars.get(&SELFHEAL_FORGE),
                api_url: vars.get(&SELFHEAL_FORGE_API_URL),
                project: vars.get(&SELFHEAL_FORGE_PROJECT),
                gitlab_token: vars.get(&SELFHEAL_GITLAB_TOKEN),
                gitea_token: vars.get(&SELFHEAL_GITEA_TOKEN),
                bitbucket_token: vars.get(&SELFHEAL_BITBUCKET_TOKEN),
                azure_devops_token: vars.get(&SELFHEAL_AZURE_DEVOPS_TOKEN),
            },
            pr_options: crate::domain::PrOptions {
                draft: vars.value(&SELFHEAL_PR_DRAFT),
                reviewers: vars.get(&SELFHEAL_PR_REVIEWERS).unwrap_or_default(),
                labels: vars.get(&SELFHEAL_PR_LABELS).unwrap_or_default(),
            },
            dbt,
        };
        let default_agent = vars.value(&SELFHEAL_DEFAULT_AGENT);
        let notifier_bots = vars.get(&SELFHEAL_NOTIFIER_BOTS).unwrap_or_default();
        let secret_env = vars.get(&SELFHEAL_SECRET_ENV).unwrap_or_default();
        let admins = vars.get(&SELFHEAL_ADMINS).unwrap_or_default();
        let notify_token = vars.get(&SELFHEAL_NOTIFY_TOKEN);

        let mut problems = vars.into_problems();
        let (Some(schedules_path), Some(schedules), Some(agents_dir), Some(agents)) =
            (schedules_path, schedules, agents_dir, agents)
        else {
            // Agents cannot be matched to schedules that did not load.
            return Err(ConfigErrors::new(problems));
        };
        let config = Config {
            slack: SlackSettings {
                // A missing token is already a problem; the stand-ins only let
                // the schedules and agents be checked too, and never leave
                // this function.
                app_token: app_token.unwrap_or_else(|| Secret::new("")),
                bot_token: bot_token.unwrap_or_else(|| Secret::new("")),
                api_url,
                notify_token,
            },
            db_path,
            schedules,
            schedules_path,
            agents,
            agents_dir,
            default_agent: Some(default_agent),
            notifier_bots,
            channel_interval,
            channel_burst,
            channel_leeway,
            courtesy_window,
            edit_interval,
            api_timeout,
            socket_ping,
            prior_attempts,
            shutdown_grace: SHUTDOWN_GRACE,
            overrides,
            secret_env,
            max_sessions,
            max_sessions_per_schedule,
            admins,
            rerun_interrupted,
            lease,
            pr_poll,
            http_addr,
            heal,
        };
        problems.extend(config.check_agents());
        if problems.is_empty() {
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
                None => problems.push(
                    SELFHEAL_DEFAULT_AGENT.error(format!("unknown agent '{name}' ({})", known())),
                ),
                Some(agent) if agent.runner == Runner::Unspecified => {
                    problems.push(SELFHEAL_DEFAULT_AGENT.error(unspecified_runner(agent)))
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

fn unspecified_runner(agent: &AgentDef) -> String {
    format!(
        "agent '{}' has no `selfheal.runner` (command, llm or builtin) in {}, and no default model \
         is configured: set {} and {}",
        agent.name,
        agent.source.display(),
        SELFHEAL_LLM_BASE_URL.name(),
        SELFHEAL_LLM_MODEL.name(),
    )
}

/// Paradime agent files without a `selfheal:` section run as `llm` agents
/// with the model `SELFHEAL_LLM_*` configures, once both its base URL and
/// model are set. `SELFHEAL_LLM_CONTEXT_TOKENS` reaches every `llm` agent
/// that sets no `context_tokens` of its own, with or without a `selfheal:`
/// section. The first problem is told: the others are likely the same mistake.
fn with_llm_default(
    mut agents: BTreeMap<String, AgentDef>,
    vars: &Vars,
) -> Result<BTreeMap<String, AgentDef>, ConfigError> {
    let context = vars.read(&SELFHEAL_LLM_CONTEXT_TOKENS)?;
    // The base URL is only checked once a model makes the default complete.
    if let Some(model) = vars.read(&SELFHEAL_LLM_MODEL)? {
        if let Some(base_url) = vars.read(&SELFHEAL_LLM_BASE_URL)? {
            let mut settings = crate::agent::llm::LlmSettings::new(base_url, model);
            settings.api_key_env = Some(vars.value(&SELFHEAL_LLM_API_KEY_ENV));
            settings.max_turns = vars.value(&SELFHEAL_LLM_MAX_TURNS);
            settings.max_tokens = vars.value(&SELFHEAL_LLM_MAX_TOKENS);
            settings.timeout = vars.value(&SELFHEAL_LLM_TIMEOUT_SECS);
            for agent in agents.values_mut() {
                if agent.runner == Runner::Unspecified {
                    agent.runner = Runner::Llm(settings.clone());
                }
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

/// `SELFHEAL_RUN_LOG_SOURCE` and the variables of the source it names. The
/// first problem is told, as the others belong to the same source.
fn run_log_source(vars: &Vars) -> Result<Option<SourceSettings>, ConfigError> {
    let source = match vars.read(&SELFHEAL_RUN_LOG_SOURCE)? {
        None => vars.read(&SELFHEAL_RUN_LOGS)?.map(SourceSettings::Dir),
        Some(RunLogKind::Dir) => Some(SourceSettings::Dir(required(
            vars,
            &SELFHEAL_RUN_LOGS,
            "dir",
        )?)),
        Some(RunLogKind::Paradime) => Some(SourceSettings::Paradime(paradime(vars)?)),
        Some(RunLogKind::DbtCloud) => Some(SourceSettings::DbtCloud(DbtCloudSettings {
            token: required(vars, &DBT_CLOUD_API_TOKEN, "dbt_cloud")?,
            account_id: required(vars, &DBT_CLOUD_ACCOUNT_ID, "dbt_cloud")?,
            api_url: vars.value(&DBT_CLOUD_API_URL),
            artifact_wait: vars.value(&SELFHEAL_DBT_CLOUD_ARTIFACT_WAIT_SECS),
        })),
    };
    Ok(source)
}

/// Paradime's endpoint and credentials, read as Paradime's SDK reads them:
/// `PARADIME_API_SECRET` holds a legacy secret (then `PARADIME_API_KEY` is
/// needed) or a token (`prdm_wsp_…`, or `prdm_cmp_…` with
/// `PARADIME_WORKSPACE_UID`).
fn paradime(vars: &Vars) -> Result<ParadimeSettings, ConfigError> {
    let endpoint = required(vars, &PARADIME_API_ENDPOINT, "paradime")?;
    let secret = required(vars, &PARADIME_API_SECRET, "paradime")?;
    let key = vars.read(&PARADIME_API_KEY)?;
    let workspace_uid = vars.read(&PARADIME_WORKSPACE_UID)?;
    let auth = ParadimeAuth::from_parts(key, secret, workspace_uid).map_err(|missing| match missing {
        MissingCredential::ApiKey => PARADIME_API_KEY.error(format!(
            "is required with {}=paradime when {} is a legacy secret (a token starts with {WORKSPACE_TOKEN_PREFIX} or {COMPANY_TOKEN_PREFIX})",
            SELFHEAL_RUN_LOG_SOURCE.name(),
            PARADIME_API_SECRET.name(),
        )),
        MissingCredential::WorkspaceUid => PARADIME_WORKSPACE_UID.error(format!(
            "is required when {} is a company token ({COMPANY_TOKEN_PREFIX}…): the uid of the workspace it targets",
            PARADIME_API_SECRET.name(),
        )),
    })?;
    Ok(ParadimeSettings { endpoint, auth })
}

/// A setting the run-log source `source` needs.
fn required<T>(vars: &Vars, setting: &Setting<T>, source: &str) -> Result<T, ConfigError> {
    vars.read(setting)?.ok_or_else(|| {
        setting.error(format!(
            "is required with {}={source}",
            SELFHEAL_RUN_LOG_SOURCE.name()
        ))
    })
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
        assert_eq!(config.channel_burst, 3);
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
    fn pull_requests_are_polled_every_minute_backing_off_to_half_an_hour_unless_told() {
        let dir = project(SCHEDULES, AGENT);
        let poll = |extra: &[(&str, &str)]| load(&vars(dir.path(), extra)).expect("loads").pr_poll;
        let secs = |first, max| PrPoll {
            first: Duration::from_secs(first),
            max: Duration::from_secs(max),
        };
        assert_eq!(poll(&[]), secs(60, 1800));
        let cases: [(&str, &str, PrPoll); 3] = [
            ("5", "40", secs(5, 40)),
            ("0", "0", secs(1, 1)),
            ("90", "30", secs(90, 90)),
        ];
        for (first, max, want) in cases {
            let got = poll(&[
                ("SELFHEAL_PR_POLL_SECS", first),
                ("SELFHEAL_PR_POLL_MAX_SECS", max),
            ]);
            assert_eq!(got, want, "{first} {max}");
        }
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
                ("SELFHEAL_NOTIFY_TOKEN", "xoxb-notifier"),
            ],
        ))
        .expect("loads");
        assert!(!config.rerun_interrupted);
        assert_eq!(
            config.slack.notify_token,
            Some(Secret::new("xoxb-notifier"))
        );
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
    fn run_and_fix_read_the_dbt_settings_alike() {
        let dir = project(SCHEDULES, AGENT);
        let dbt_vars = [
            ("SELFHEAL_DBT", "/opt/dbt/bin/dbt"),
            ("SELFHEAL_DBT_PROFILES_DIR", "/etc/dbt"),
            ("SELFHEAL_DBT_TARGET", "ci"),
            ("SELFHEAL_DBT_PROD_TARGET", "prod"),
            ("SELFHEAL_DBT_STATE_DIR", "/srv/state"),
            ("SELFHEAL_DBT_TIMEOUT_SECS", "60"),
        ];
        for set in [&dbt_vars[..], &[]] {
            let env = vars(dir.path(), set);
            let heal = load(&env).expect("loads").heal;
            let dbt = DbtSettings::from_env(&|name| env.get(name).cloned()).expect("valid");
            // What `fix` reads changes nothing in what `run` read.
            assert_eq!(dbt, heal.dbt, "{set:?}");
        }
        let defaults = DbtSettings::from_env(&|_| None).expect("no setting is required");
        assert_eq!(
            (defaults.exe, defaults.timeout),
            (PathBuf::from("dbt"), Duration::from_secs(900))
        );

        let bad = [("SELFHEAL_DBT_TIMEOUT_SECS", "soon")];
        let env = vars(dir.path(), &bad);
        let from_run = load(&env).expect_err("a bad timeout").to_string();
        let from_fix = DbtSettings::from_env(&|name| env.get(name).cloned())
            .expect_err("a bad timeout")
            .to_string();
        assert_eq!(
            from_run,
            "SELFHEAL_DBT_TIMEOUT_SECS: 'soon' is not a whole number"
        );
        assert_eq!(from_fix, from_run);
    }

    #[test]
    fn the_run_log_source_is_chosen_and_its_variables_read() {
        use crate::runlog::{DbtCloudSettings, ParadimeAuth, ParadimeSettings, SourceSettings};
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
                auth: ParadimeAuth::KeyAndSecret {
                    key: Secret::new("pk_1234"),
                    secret: Secret::new("ps_5678"),
                },
            }))
        );
        // A token goes where the secret goes, as in Paradime's SDK.
        let endpoint = (
            "PARADIME_API_ENDPOINT",
            "https://api.paradime.io/api/v1/abc/graphql",
        );
        assert_eq!(
            source(&[
                ("SELFHEAL_RUN_LOG_SOURCE", "paradime"),
                endpoint,
                ("PARADIME_API_SECRET", "prdm_wsp_abcd"),
            ]),
            Some(SourceSettings::Paradime(ParadimeSettings {
                endpoint: endpoint.1.into(),
                auth: ParadimeAuth::WorkspaceToken(Secret::new("prdm_wsp_abcd")),
            }))
        );
        assert_eq!(
            source(&[
                ("SELFHEAL_RUN_LOG_SOURCE", "paradime"),
                endpoint,
                ("PARADIME_API_SECRET", "prdm_cmp_abcd"),
                ("PARADIME_WORKSPACE_UID", "ws_3f2a"),
            ]),
            Some(SourceSettings::Paradime(ParadimeSettings {
                endpoint: endpoint.1.into(),
                auth: ParadimeAuth::CompanyToken {
                    token: Secret::new("prdm_cmp_abcd"),
                    workspace_uid: "ws_3f2a".into(),
                },
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
        // A company token without the workspace it targets.
        let company = [
            ("SELFHEAL_RUN_LOG_SOURCE", "paradime"),
            ("PARADIME_API_ENDPOINT", "https://api.paradime.io/graphql"),
            ("PARADIME_API_SECRET", "prdm_cmp_9abc"),
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
            (&company, ("PARADIME_API_KEY", "pk_1234"), "PARADIME_WORKSPACE_UID: is required when PARADIME_API_SECRET is a company token (prdm_cmp_…): the uid of the workspace it targets"),
            (&company, ("PARADIME_WORKSPACE_UID", "my workspace"), "PARADIME_WORKSPACE_UID: \"my workspace\" is not a workspace uid"),
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
            for secret in ["pk_1234", "ps_5678", "prdm_cmp_9abc", "dbtc_abcd"] {
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
