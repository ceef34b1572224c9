//! Every environment variable selfheal reads, declared once: its name, what
//! leaving it unset means, its documentation and its parsing.
//!
//! `selfheal run`, `check`, `notify`, `fix` and `drill` all read their
//! settings through these declarations (with `vars::Vars`), and the
//! README's settings tables and `.env.example` are generated from them (see
//! `docs`). To add a setting, declare it here, read it where it is needed,
//! and run `cargo test --lib settings` to regenerate the docs.
//!
//! Each declaration's Rust name is the variable's name. The order is the
//! order of `.env.example`; a section's settings stay together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::vars::Unset::{Means, Off, Required, Use};
use super::vars::{
    boolean, list, millis, path, seconds, secret, text, whole, About, Declared, Setting,
};
use super::{RetryBudget, DBT_DOCTOR};
use crate::domain::ForgeKind;
use crate::domain::Secret;

/// Where the docs list a setting: a heading of `.env.example`, and one of
/// the README's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Slack,
    /// The schedules, the agents and the notifications to heal.
    Scope,
    /// The repository, run logs, dbt and pull requests of real healing.
    Healing,
    /// The default model of agent files without a `selfheal:` section.
    Llm,
    /// `/selfheal`.
    Commands,
    Storage,
    Secrets,
    /// Pacing and timeouts of Slack calls.
    Manners,
    /// How many sessions run, and what they remember.
    Sessions,
    Logging,
    /// Watching the pull requests selfheal opened until they are merged or closed.
    PullRequests,
}

/// Declares each setting as a constant named after its variable, and
/// [`ALL`] listing them in order.
macro_rules! settings {
    ($(
        $name:ident: $type:ty {
            section: $section:ident,
            unset: $unset:expr,
            doc: $doc:expr,
            comment: $comment:expr,
            example: $example:expr,
            parse: $parse:expr $(,)?
        }
    )*) => {
        $(
            pub const $name: Setting<$type> = Setting {
                about: About {
                    name: stringify!($name),
                    section: Section::$section,
                    unset: $unset,
                    doc: $doc,
                    comment: $comment,
                    example: $example,
                },
                parse: $parse,
            };
        )*

        /// Every setting, in the order the docs list them.
        pub const ALL: &[&dyn Declared] = &[$(&$name),*];
    };
}

settings! {
    SLACK_APP_TOKEN: Secret {
        section: Slack,
        unset: Required("a Slack token starting with xapp-"),
        doc: "app-level token (`xapp-…`, scope `connections:write`) for Socket Mode",
        comment: "App-level token with the connections:write scope (Basic Information -> App-Level Tokens).",
        example: "xapp-1-A0000000000-0000000000000-replace-me",
        parse: app_token,
    }
    SLACK_BOT_TOKEN: Secret {
        section: Slack,
        unset: Required("a Slack token starting with xoxb-"),
        doc: "bot token (`xoxb-…`) for the Web API",
        comment: "Bot User OAuth Token (OAuth & Permissions, after installing the app).",
        example: "xoxb-0000000000-0000000000000-replace-me",
        parse: bot_token,
    }
    SLACK_API_URL: String {
        section: Slack,
        unset: Use("https://slack.com/api"),
        doc: "Web API base (GovSlack-style hosts, local fakes)",
        comment: "Web API base URL. Change it only for GovSlack-style hosts or a local fake.",
        example: "",
        parse: slack_api_url,
    }

    SELFHEAL_SCHEDULES: PathBuf {
        section: Scope,
        unset: Required("the dbt project directory or its paradime_schedules.yml"),
        doc: "dbt project directory (reads `paradime_schedules.yml` and every `.bolt/**/*.y{a,}ml`, merged) or one schedules file",
        comment: "The dbt project directory (paradime_schedules.yml and every .bolt/**/*.yml are read and merged) or one paradime_schedules.yml file.",
        example: "/path/to/your/dbt/project",
        parse: path,
    }
    SELFHEAL_AGENTS_DIR: PathBuf {
        section: Scope,
        unset: Means("`<project>/.dinoai/agents`"),
        doc: "agent definitions, one `<name>.yml` each",
        comment: "Agent definitions, one <name>.yml each in Paradime's agent format plus a `selfheal:` section. The project is SELFHEAL_SCHEDULES, or the schedules file's directory.",
        example: "/path/to/your/dbt/project/.dinoai/agents",
        parse: path,
    }
    SELFHEAL_DEFAULT_AGENT: String {
        section: Scope,
        unset: Use(DBT_DOCTOR),
        doc: "agent for schedules whose `self_healing.agent_name` is empty; `dbt-doctor` is the built-in deterministic agent",
        comment: "",
        example: "bolt-pipeline-healer",
        parse: text,
    }
    SELFHEAL_NOTIFIER_BOTS: Vec<String> {
        section: Scope,
        unset: Means("any bot"),
        doc: "bot ids, app ids or usernames whose messages may be failure notifications (never humans, never selfheal)",
        comment: "Bot ids, app ids or usernames of your scheduler's Slack app (comma or space separated). Only their messages can start automatic healing; never humans', never selfheal's own.",
        example: "B0123PARADIME,A0456DBTCLOUD",
        parse: list,
    }
    SELFHEAL_RECOGNIZERS: PathBuf {
        section: Scope,
        unset: Off,
        doc: "YAML file of per-notifier regex overrides (see [Recognition](#recognition))",
        comment: "A YAML file of per-notifier regexes for notification formats the built-in recogniser does not read (see README, \"Recognition\").",
        example: "/etc/selfheal/recognizers.yml",
        parse: path,
    }

    SELFHEAL_REPO: String {
        section: Healing,
        unset: Off,
        doc: "the dbt repository (URL or path); each session works on a fresh clone",
        comment: "The dbt repository (URL or local path). Every session works on a fresh clone and pushes only selfheal/<schedule>/run-<id> branches. Needed by dbt-doctor and llm agents; without it, command agents run in a scratch folder.",
        example: "git@github.com:acme/analytics.git",
        parse: text,
    }
    SELFHEAL_RUN_LOGS: PathBuf {
        section: Healing,
        unset: Off,
        doc: "run-log directory, one folder per run id (see [Run logs](#run-logs))",
        comment: "Run logs: one folder per run id with run_results.json, dbt.log, console.txt (what `selfheal notify` stores). dbt-doctor needs these or SELFHEAL_RUN_LOG_SOURCE.",
        example: "/var/lib/selfheal/run-logs",
        parse: path,
    }
    SELFHEAL_RUN_LOG_SOURCE: RunLogKind {
        section: Healing,
        unset: Means("`dir` when `SELFHEAL_RUN_LOGS` is set"),
        doc: "where sessions read run logs: `dir`, `paradime` or `dbt_cloud`, each with the variables below",
        comment: "Or read run logs where runs live: dir, paradime (PARADIME_API_*) or dbt_cloud (DBT_CLOUD_*).",
        example: "paradime",
        parse: run_log_kind,
    }
    PARADIME_API_ENDPOINT: String {
        section: Healing,
        unset: Means("required with `paradime`"),
        doc: "Paradime's GraphQL API endpoint",
        comment: "",
        example: "https://api.paradime.io/api/v1/<workspace>/graphql",
        parse: https_api_url,
    }
    PARADIME_API_KEY: Secret {
        section: Healing,
        unset: Means("required with `paradime` and a legacy secret"),
        doc: "a Paradime API key (legacy; not needed with a token)",
        comment: "",
        example: "...",
        parse: secret,
    }
    PARADIME_API_SECRET: Secret {
        section: Healing,
        unset: Means("required with `paradime`"),
        doc: "the secret of the API key, or an API token in its place as Paradime's SDK takes it: a workspace token (`prdm_wsp_…`) or a company token (`prdm_cmp_…`), told apart by the prefix",
        comment: "A legacy API secret (with PARADIME_API_KEY), or a bearer token: prdm_wsp_... (workspace) or prdm_cmp_... (company, with PARADIME_WORKSPACE_UID).",
        example: "...",
        parse: secret,
    }
    PARADIME_WORKSPACE_UID: String {
        section: Healing,
        unset: Means("required with a company token"),
        doc: "the uid of the workspace a company token (`prdm_cmp_…`) targets, sent as `X-Paradime-Workspace`; other credentials are scoped to their workspace and ignore it",
        comment: "",
        example: "<workspace-uid>",
        parse: header_value,
    }
    DBT_CLOUD_API_URL: String {
        section: Healing,
        unset: Use(crate::runlog::dbt_cloud::DEFAULT_API_URL),
        doc: "the access URL of dbt Cloud (EU, AU and single-tenant hosts differ)",
        comment: "",
        example: "",
        parse: dbt_cloud_api_url,
    }
    DBT_CLOUD_API_TOKEN: Secret {
        section: Healing,
        unset: Means("required with `dbt_cloud`"),
        doc: "a dbt Cloud API token (a pasted `Token …` or `Bearer …` header value works too)",
        comment: "",
        example: "...",
        parse: dbt_cloud_token,
    }
    DBT_CLOUD_ACCOUNT_ID: u64 {
        section: Healing,
        unset: Means("required with `dbt_cloud`"),
        doc: "the dbt Cloud account id",
        comment: "",
        example: "12345",
        parse: account_id,
    }
    SELFHEAL_DBT_CLOUD_ARTIFACT_WAIT_SECS: Duration {
        section: Healing,
        unset: Use("90"),
        doc: "how long dbt Cloud's `run_results.json` is waited for (it is uploaded after the failure is announced)",
        comment: "",
        example: "",
        parse: seconds,
    }
    SELFHEAL_DBT_PROJECT_DIR: PathBuf {
        section: Healing,
        unset: Use("."),
        doc: "the dbt project inside the repository",
        comment: "",
        example: "",
        parse: path,
    }
    SELFHEAL_DBT: PathBuf {
        section: Healing,
        unset: Use("dbt"),
        doc: "the dbt executable (a name on the `PATH`, or a path)",
        comment: "",
        example: "/opt/dbt/bin/dbt",
        parse: path,
    }
    SELFHEAL_DBT_PROFILES_DIR: PathBuf {
        section: Healing,
        unset: Means("`DBT_PROFILES_DIR`, the project's `profiles.yml`, else `~/.dbt`"),
        doc: "where the scheduler's `profiles.yml` is",
        comment: "",
        example: "/etc/dbt",
        parse: path,
    }
    SELFHEAL_DBT_TARGET: String {
        section: Healing,
        unset: Off,
        doc: "a CI target that is safe to build into (slim CI); see [Verification never touches production](#verification-never-touches-production)",
        comment: "A CI target that is safe to build into: slim CI, deferring to production. Without it, a DuckDB production is copied per session and any other warehouse is only compiled against (see the README).",
        example: "ci",
        parse: text,
    }
    SELFHEAL_DBT_PROD_TARGET: String {
        section: Healing,
        unset: Means("the profile's default target"),
        doc: "the target the scheduler runs in, which selfheal never builds into",
        comment: "",
        example: "prod",
        parse: text,
    }
    SELFHEAL_DBT_STATE_DIR: PathBuf {
        section: Healing,
        unset: Off,
        doc: "a folder with production's `manifest.json`, for `--defer` when the run log has none",
        comment: "",
        example: "/srv/dbt/prod-state",
        parse: path,
    }
    SELFHEAL_DBT_TIMEOUT_SECS: Duration {
        section: Healing,
        unset: Use("900"),
        doc: "limit of one dbt command",
        comment: "",
        example: "",
        parse: seconds,
    }
    SELFHEAL_GITHUB_TOKEN: Secret {
        section: Healing,
        unset: Off,
        doc: "the bot's token for opening pull requests (the agent never sees it)",
        comment: "Pull requests are opened by the bot (never the agent) with this token. Without it, the branch is pushed and a compare link is posted.",
        example: "github_pat_replace_me",
        parse: secret,
    }
    SELFHEAL_GITHUB_API_URL: String {
        section: Healing,
        unset: Use("https://api.github.com"),
        doc: "the GitHub API; GitHub Enterprise: `https://HOST/api/v3`",
        comment: "",
        example: "",
        parse: github_api_url,
    }
    SELFHEAL_GITHUB_REPO: String {
        section: Healing,
        unset: Means("from `SELFHEAL_REPO`"),
        doc: "the repository on GitHub, as `owner/name`",
        comment: "",
        example: "acme/analytics",
        parse: text,
    }
    SELFHEAL_REPO_WEB_URL: String {
        section: Healing,
        unset: Off,
        doc: "the repository's web page, for compare links when there is no token",
        comment: "",
        example: "https://github.com/acme/analytics",
        parse: text,
    }
    SELFHEAL_FORGE: ForgeKind {
        section: Healing,
        unset: Means("from the remote's host (github.com, gitlab.com, bitbucket.org, dev.azure.com)"),
        doc: "the forge of a self-managed host: `github` (Enterprise), `gitlab`, `gitea` (also Forgejo)",
        comment: "",
        example: "gitlab",
        parse: forge_kind,
    }
    SELFHEAL_FORGE_API_URL: String {
        section: Healing,
        unset: Means("from the remote: `https://HOST/api/v4` (GitLab), `https://HOST/api/v1` (Gitea)"),
        doc: "the API of a GitLab or Gitea forge (GitHub: `SELFHEAL_GITHUB_API_URL`)",
        comment: "",
        example: "https://git.acme.io/api/v4",
        parse: https_api_url,
    }
    SELFHEAL_FORGE_PROJECT: String {
        section: Healing,
        unset: Means("from the remote's URL"),
        doc: "the project on a GitLab or Gitea forge (`group/sub/name`, `owner/name`) when the remote does not say (GitHub: `SELFHEAL_GITHUB_REPO`)",
        comment: "",
        example: "data/analytics/dbt",
        parse: text,
    }
    SELFHEAL_GITLAB_TOKEN: Secret {
        section: Healing,
        unset: Off,
        doc: "the bot's GitLab token (scope `api`) for opening merge requests (the agent never sees it)",
        comment: "",
        example: "glpat-replace_me",
        parse: secret,
    }
    SELFHEAL_GITEA_TOKEN: Secret {
        section: Healing,
        unset: Off,
        doc: "the bot's Gitea/Forgejo token (`write:repository`, `write:issue`) for opening pull requests (the agent never sees it)",
        comment: "",
        example: "gitea_replace_me",
        parse: secret,
    }
    SELFHEAL_BITBUCKET_TOKEN: Secret {
        section: Healing,
        unset: Off,
        doc: "the bot's Bitbucket Cloud access token (`pullrequest:write`), or `user:app_password`, for opening pull requests (the agent never sees it)",
        comment: "",
        example: "ATCTT3xFfGN0_replace_me",
        parse: secret,
    }
    SELFHEAL_AZURE_DEVOPS_TOKEN: Secret {
        section: Healing,
        unset: Off,
        doc: "the bot's Azure DevOps personal access token (scope `vso.code_write`, Code: Read & write) for opening pull requests (the agent never sees it)",
        comment: "",
        example: "azdo_pat_replace_me",
        parse: secret,
    }
    SELFHEAL_NOTIFY_TOKEN: Secret {
        section: Healing,
        unset: Means("`SLACK_BOT_TOKEN`"),
        doc: "the token `selfheal notify` posts with",
        comment: "`selfheal notify` posts with this token if set (a separate notifier app); otherwise with SLACK_BOT_TOKEN, marked so the bot knows it.",
        example: "xoxb-notifier-app-token",
        parse: secret,
    }
    SELFHEAL_PR_DRAFT: bool {
        section: Healing,
        unset: Use("false"),
        doc: "open pull requests as drafts (`true`/`false`)",
        comment: "",
        example: "",
        parse: boolean,
    }
    SELFHEAL_PR_REVIEWERS: Vec<String> {
        section: Healing,
        unset: Off,
        doc: "user names asked to review each pull request, comma-separated",
        comment: "",
        example: "octocat,data-lead",
        parse: list,
    }
    SELFHEAL_PR_LABELS: Vec<String> {
        section: Healing,
        unset: Off,
        doc: "labels put on each pull request, comma-separated",
        comment: "",
        example: "selfheal,dbt",
        parse: list,
    }
    SELFHEAL_RETRIES: RetryBudget {
        section: Healing,
        unset: Use("1"),
        doc: "how many re-runs selfheal asks the scheduler for after a transient failure, per failed run: `N`, `off`, or a default with per-schedule values (`1,nightly=2,hourly_marts=off`)",
        comment: "Transient failures (connection resets, warehouse timeouts, locks, out of memory) are re-run through the scheduler's API instead of being sent to an agent: this many times per failed run.",
        example: "",
        parse: retry_budget,
    }
    SELFHEAL_RETRY_COMMAND: String {
        section: Healing,
        unset: Means("the thread asks people to re-run"),
        doc: "for runs fed by `selfheal notify`: a shell command that re-runs a schedule (`SELFHEAL_SCHEDULE` and `SELFHEAL_RUN_ID` are set for it)",
        comment: "",
        example: "systemctl start \"dbt@$SELFHEAL_SCHEDULE.service\"",
        parse: text,
    }
    SELFHEAL_RETRY_POLL_MS: Duration {
        section: Healing,
        unset: Use("15000"),
        doc: "how often a re-run's state is asked of the scheduler until it ends",
        comment: "",
        example: "",
        parse: millis,
    }
    SELFHEAL_NEXT_RUN_POLL_SECS: Duration {
        section: Healing,
        unset: Use("300"),
        doc: "with Paradime or dbt Cloud: how often the scheduler is asked whether a schedule with an open failure has passed since (a Paradime schedule needs its `slug`); `0`: only success notifications close the loop",
        comment: "",
        example: "",
        parse: seconds,
    }

    SELFHEAL_LLM_BASE_URL: String {
        section: Llm,
        unset: Off,
        doc: "the endpoint; with `SELFHEAL_LLM_MODEL` it turns on the default",
        comment: "Paradime agent files without a `selfheal:` section run on this model (any OpenAI-compatible endpoint: OpenAI, Azure OpenAI, Ollama, vLLM, …).",
        example: "https://api.openai.com/v1",
        parse: llm_base_url,
    }
    SELFHEAL_LLM_MODEL: String {
        section: Llm,
        unset: Off,
        doc: "the model name",
        comment: "",
        example: "gpt-4.1",
        parse: text,
    }
    SELFHEAL_LLM_API_KEY_ENV: String {
        section: Llm,
        unset: Use("OPENAI_API_KEY"),
        doc: "name of the variable holding the key",
        comment: "The name of the variable holding the model's API key; set that one too (e.g. OPENAI_API_KEY=sk-…).",
        example: "",
        parse: text,
    }
    SELFHEAL_LLM_MAX_TURNS: u32 {
        section: Llm,
        unset: Use("30"),
        doc: "budget: model replies per session",
        comment: "",
        example: "",
        parse: whole,
    }
    SELFHEAL_LLM_MAX_TOKENS: u64 {
        section: Llm,
        unset: Use("200000"),
        doc: "budget: tokens per session",
        comment: "",
        example: "",
        parse: whole,
    }
    SELFHEAL_LLM_TIMEOUT_SECS: Duration {
        section: Llm,
        unset: Use("1200"),
        doc: "budget: seconds per session",
        comment: "",
        example: "",
        parse: seconds,
    }
    SELFHEAL_LLM_CONTEXT_TOKENS: u64 {
        section: Llm,
        unset: Means("`32768`"),
        doc: "the context window of every `llm` agent that sets no `context_tokens` (files with a `selfheal:` section too)",
        comment: "",
        example: "32768",
        parse: context_tokens,
    }

    SELFHEAL_ADMINS: Vec<String> {
        section: Commands,
        unset: Off,
        doc: "Slack user ids allowed to change settings with `/selfheal`, besides workspace admins and owners",
        comment: "Slack user ids (comma or space separated) who may change settings with /selfheal (enable, disable, reset, pause, resume), besides workspace admins and owners.",
        example: "U0123ALICE,U0456BOB",
        parse: list,
    }

    SELFHEAL_DB: PathBuf {
        section: Storage,
        unset: Use("data/selfheal.db"),
        doc: "the store: an SQLite file (one process), or `postgres://…` shared by replicas",
        comment: "Where the history of failures and sessions is kept: an SQLite file for one process (its directory is created on start), or a PostgreSQL URL (postgres://user:password@host:5432/db) that several replicas share; see docs/SCALING.md.",
        example: "",
        parse: path,
    }

    SELFHEAL_LEASE_SECS: Duration {
        section: Storage,
        unset: Use("30"),
        doc: "with replicas, how long a session stays its replica's without a heartbeat before another takes it over",
        comment: "With replicas on PostgreSQL: how long a session stays with the replica that claimed it without a heartbeat (one every third of it). When a replica dies, another takes its sessions over after this long.",
        example: "",
        parse: seconds,
    }

    SELFHEAL_SECRET_ENV: Vec<String> {
        section: Secrets,
        unset: Off,
        doc: "names of env vars whose values are always redacted",
        comment: "Names of further environment variables whose values are scrubbed from everything selfheal posts or stores (comma or space separated). The Slack tokens, PARADIME_API_KEY/SECRET, DBT_CLOUD_API_TOKEN and SELFHEAL_GITHUB_TOKEN always are.",
        example: "SNOWFLAKE_PASSWORD,DBT_ENV_SECRET_TOKEN",
        parse: list,
    }

    SELFHEAL_CHANNEL_INTERVAL_MS: Duration {
        section: Manners,
        unset: Use("1000"),
        doc: "spacing of writes to one channel once its burst is spent",
        comment: "Spacing of writes to one channel once its burst is spent (Slack allows about 1 message/s).",
        example: "",
        parse: millis,
    }
    SELFHEAL_CHANNEL_BURST: u32 {
        section: Manners,
        unset: Use("3"),
        doc: "writes to one channel that may go at once after a quiet spell, then one per `SELFHEAL_CHANNEL_INTERVAL_MS`; 1 means strict pacing",
        comment: "Writes to one channel allowed at once, as Slack allows a short burst; 1 means strict pacing.",
        example: "",
        parse: burst,
    }
    SELFHEAL_CHANNEL_LEEWAY_MS: Duration {
        section: Manners,
        unset: Means("a quarter of `SELFHEAL_CHANNEL_INTERVAL_MS` (250 ms at 1 s)"),
        doc: "how late a write may reach Slack before the channel's later writes wait longer",
        comment: "How far behind Slack's per-channel bucket writes are booked, for the time a write takes to reach Slack (a busy machine, a TLS handshake on a new connection); more is safer against 429 and costs that much once per busy spell.",
        example: "500",
        parse: millis,
    }
    SELFHEAL_EDIT_INTERVAL_MS: Duration {
        section: Manners,
        unset: Use("1000"),
        doc: "minimum spacing of progress-message edits",
        comment: "",
        example: "",
        parse: millis,
    }
    SELFHEAL_COURTESY_WINDOW_SECS: Duration {
        section: Manners,
        unset: Use("30"),
        doc: "wait for a channel's copy of a notification before posting top-level",
        comment: "How long to wait for a channel's copy of a failure notification before the courtesy pointer (or the healing session itself) is posted top-level.",
        example: "",
        parse: seconds,
    }
    SELFHEAL_API_TIMEOUT_SECS: Duration {
        section: Manners,
        unset: Use("10"),
        doc: "timeout of one Slack Web API call",
        comment: "",
        example: "",
        parse: seconds,
    }
    SELFHEAL_SOCKET_PING_SECS: Duration {
        section: Manners,
        unset: Use("15"),
        doc: "Socket Mode ping interval; a connection with no pong for 5 intervals is replaced",
        comment: "",
        example: "",
        parse: seconds,
    }

    SELFHEAL_PRIOR_ATTEMPTS: usize {
        section: Sessions,
        unset: Use("5"),
        doc: "earlier sessions summarised in the opening prompt",
        comment: "How many earlier sessions of the same schedule the opening prompt summarises, so that the agent does not open a duplicate pull request.",
        example: "",
        parse: whole,
    }
    SELFHEAL_ON_RESTART: bool {
        section: Sessions,
        unset: Use("rerun"),
        doc: "what a start does with sessions interrupted in the last hour: `rerun` (once) or `report` (only tell the thread)",
        comment: "What a start does with sessions a crash or stop interrupted in the last hour: rerun (once; a re-run is never re-run) or report (only tell the thread).",
        example: "",
        parse: rerun,
    }
    SELFHEAL_MAX_SESSIONS: usize {
        section: Sessions,
        unset: Use("8"),
        doc: "sessions running at once; more wait, shown as `⏳ Queued` in their thread",
        comment: "",
        example: "",
        parse: whole,
    }
    SELFHEAL_MAX_SESSIONS_PER_SCHEDULE: usize {
        section: Sessions,
        unset: Use("2"),
        doc: "sessions of one schedule running at once",
        comment: "",
        example: "",
        parse: whole,
    }

    SELFHEAL_LOG: String {
        section: Logging,
        unset: Use("info,slack_morphism=warn"),
        doc: "log filter (tracing's `EnvFilter` syntax) of `selfheal run` and `check`; the other commands log at `warn`",
        comment: "",
        example: "",
        parse: text,
    }
    SELFHEAL_LOG_FORMAT: LogFormat {
        section: Logging,
        unset: Use("text"),
        doc: "`text` (lines for people) or `json` (one JSON object per line, for a log collector)",
        comment: "",
        example: "",
        parse: log_format,
    }
    SELFHEAL_HTTP_ADDR: SocketAddr {
        section: Logging,
        unset: Off,
        doc: "address `selfheal run` serves `GET /healthz`, `/readyz` and `/metrics` (Prometheus) on (see [Run as a service](#run-as-a-service))",
        comment: "Where `selfheal run` serves GET /healthz (up), /readyz (Slack connected and the store answering) and /metrics (Prometheus text format). Keep it on a private interface.",
        example: "127.0.0.1:9090",
        parse: socket_addr,
    }

    SELFHEAL_PR_POLL_SECS: Duration {
        section: PullRequests,
        unset: Use("60"),
        doc: "first wait before asking GitHub again whether a pull request selfheal opened was merged or closed; each unchanged answer doubles it (at least 1)",
        comment: "How long selfheal first waits before asking GitHub again whether a pull request it opened was merged or closed (then it says so in the session's thread). Each unchanged answer (a 304, which GitHub does not count against the rate limit) doubles the wait, up to SELFHEAL_PR_POLL_MAX_SECS.",
        example: "",
        parse: seconds,
    }
    SELFHEAL_PR_POLL_MAX_SECS: Duration {
        section: PullRequests,
        unset: Use("1800"),
        doc: "the longest wait between two questions about one pull request (at least `SELFHEAL_PR_POLL_SECS`)",
        comment: "",
        example: "",
        parse: seconds,
    }
}

/// Where sessions read run logs (`SELFHEAL_RUN_LOG_SOURCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunLogKind {
    Dir,
    Paradime,
    DbtCloud,
}

/// A burst of at least one write.
fn burst(value: &str) -> Result<u32, String> {
    match whole(value)? {
        0 => Err("a burst is at least 1 write (1 means strict pacing)".into()),
        n => Ok(n),
    }
}

/// `N`, `off`, or `N,schedule=N,schedule=off`.
fn retry_budget(value: &str) -> Result<RetryBudget, String> {
    let count = |v: &str| -> Result<u32, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "off" | "no" | "false" => Ok(0),
            n => n
                .parse()
                .map_err(|_| format!("'{}' is not a number of re-runs or `off`", v.trim())),
        }
    };
    let mut budget = RetryBudget::default();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((schedule, n)) if !schedule.trim().is_empty() => {
                budget
                    .per_schedule
                    .insert(schedule.trim().to_string(), count(n)?);
            }
            Some(_) => return Err(format!("'{part}' names no schedule before `=`")),
            None => budget.default = count(part)?,
        }
    }
    Ok(budget)
}

fn run_log_kind(value: &str) -> Result<RunLogKind, String> {
    match value.to_ascii_lowercase().replace('-', "_").as_str() {
        "dir" => Ok(RunLogKind::Dir),
        "paradime" => Ok(RunLogKind::Paradime),
        "dbt_cloud" => Ok(RunLogKind::DbtCloud),
        other => Err(format!(
            "'{other}' is not a run-log source (dir, paradime or dbt_cloud)"
        )),
    }
}

fn app_token(value: &str) -> Result<Secret, String> {
    slack_token(value, "xapp-")
}

fn bot_token(value: &str) -> Result<Secret, String> {
    slack_token(value, "xoxb-")
}

fn slack_token(value: &str, prefix: &str) -> Result<Secret, String> {
    if !value.starts_with(prefix) {
        // The value itself is a secret, so it is not echoed.
        return Err(format!("must start with {prefix}"));
    }
    Ok(Secret::new(value))
}

/// An http(s) URL, always ending with `/`.
fn slack_api_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) =>
        {
            Ok(format!("{}/", url.trim_end_matches('/')))
        }
        _ => Err(format!("'{url}' is not an http(s) URL")),
    }
}

fn forge_kind(value: &str) -> Result<ForgeKind, String> {
    ForgeKind::parse(value).ok_or_else(|| {
        format!("'{value}' is not a forge (github, gitlab, gitea, bitbucket or azure-devops)")
    })
}

fn github_api_url(url: &str) -> Result<String, String> {
    Ok(url.trim_end_matches('/').to_string())
}

/// An https (or loopback http) URL that credentials may be sent to.
fn https_api_url(url: &str) -> Result<String, String> {
    let url = url.trim_end_matches('/').to_string();
    crate::runlog::check_api_url(&url)?;
    Ok(url)
}

/// A value sent as an HTTP header: visible characters, no spaces.
fn header_value(value: &str) -> Result<String, String> {
    if value.chars().all(|c| c.is_ascii_graphic()) {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{value:?} is not a workspace uid (visible ASCII characters, no spaces)"
        ))
    }
}

/// dbt Cloud's access URL, without the API path some people copy along.
fn dbt_cloud_api_url(url: &str) -> Result<String, String> {
    let url = https_api_url(url)?;
    Ok(url.strip_suffix("/api/v2").unwrap_or(&url).to_string())
}

/// A token; a pasted `Token …` or `Bearer …` header value still works.
fn dbt_cloud_token(value: &str) -> Result<Secret, String> {
    let token = value
        .strip_prefix("Token ")
        .or_else(|| value.strip_prefix("Bearer "))
        .unwrap_or(value)
        .trim();
    Ok(Secret::new(token))
}

fn account_id(value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("'{value}' is not an account id (a whole number)"))
}

fn llm_base_url(url: &str) -> Result<String, String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.to_owned())
    } else {
        Err(format!("must be an http(s) URL, got {url:?}"))
    }
}

fn context_tokens(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if n >= 1024 => Ok(n),
        _ => Err(format!(
            "must be a whole number of tokens, at least 1024 (the model's context window), got {value:?}"
        )),
    }
}

/// `rerun` (true) or `report` (false).
fn rerun(value: &str) -> Result<bool, String> {
    match value {
        "rerun" => Ok(true),
        "report" => Ok(false),
        other => Err(format!("'{other}' is neither 'rerun' nor 'report'")),
    }
}

/// How the logs are written (`SELFHEAL_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn log_format(value: &str) -> Result<LogFormat, String> {
    match value {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("'{other}' is neither 'text' nor 'json'")),
    }
}

/// `host:port`, an IP address and a port (no name lookup: the bot binds it).
fn socket_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("'{value}' is not an address like 127.0.0.1:9090"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::llm::LlmSettings;
    use crate::config::vars::Unset;

    #[test]
    fn every_default_and_example_is_a_valid_value() {
        for setting in ALL {
            let about = setting.about();
            if let Unset::Use(default) = about.unset {
                assert_eq!(setting.check(default), Ok(()), "{}'s default", about.name);
            }
            if !about.example.is_empty() {
                assert_eq!(
                    setting.check(about.example),
                    Ok(()),
                    "{}'s example",
                    about.name
                );
            }
        }
    }

    #[test]
    fn every_setting_has_a_doc_and_something_to_show() {
        for setting in ALL {
            let about = setting.about();
            assert!(!about.doc.is_empty(), "{} has no doc", about.name);
            assert!(
                matches!(about.unset, Unset::Use(_)) || !about.example.is_empty(),
                "{}: .env.example shows the default, or an example when there is none",
                about.name
            );
            if let Unset::Means(words) | Unset::Required(words) = about.unset {
                assert!(
                    !words.is_empty(),
                    "{} says nothing about being unset",
                    about.name
                );
            }
        }
    }

    #[test]
    fn declared_defaults_agree_with_the_constants_the_code_uses_elsewhere() {
        let default = |s: &dyn Declared| match s.about().unset {
            Unset::Use(v) | Unset::Means(v) => v.trim_matches('`').to_string(),
            other => panic!("{}: {other:?}", s.about().name),
        };
        let cases: [(&dyn Declared, String); 5] = [
            (
                &SELFHEAL_DBT_CLOUD_ARTIFACT_WAIT_SECS,
                crate::runlog::dbt_cloud::DEFAULT_ARTIFACT_WAIT
                    .as_secs()
                    .to_string(),
            ),
            (
                &SELFHEAL_LLM_MAX_TURNS,
                LlmSettings::DEFAULT_MAX_TURNS.to_string(),
            ),
            (
                &SELFHEAL_LLM_MAX_TOKENS,
                LlmSettings::DEFAULT_MAX_TOKENS.to_string(),
            ),
            (
                &SELFHEAL_LLM_TIMEOUT_SECS,
                LlmSettings::DEFAULT_TIMEOUT.as_secs().to_string(),
            ),
            (
                &SELFHEAL_LLM_CONTEXT_TOKENS,
                crate::agent::llm::context::DEFAULT_CONTEXT_TOKENS.to_string(),
            ),
        ];
        for (setting, code) in cases {
            assert_eq!(default(setting), code, "{}", setting.about().name);
        }
    }

    /// Every `.rs` file under `src/`, with its path from the crate root.
    fn sources() -> Vec<(String, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut dirs = vec![root.join("src")];
        let mut files = vec![];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("read a source file");
                    let name = path.strip_prefix(root).expect("under the root");
                    files.push((name.display().to_string(), text));
                }
            }
        }
        files
    }

    #[test]
    fn every_setting_is_read_through_its_declaration_and_no_other_way() {
        // Reads of a variable by a literal name (or through clap's `env =`),
        // outside the declarations. Allowed: tests finding the pinned dbt
        // and the test PostgreSQL server (store::testing), the bench's PostgreSQL
        // (SELFHEAL_BENCH_PG_URL), and `selfheal bench --bin`'s SELFHEAL_BENCH_BOT, a knob for
        // measuring another build of the bench's own child process, not a
        // setting of the bot.
        let reader =
            regex::Regex::new(r#"((env::var(_os)?|from_env)\(|env = )"(SELFHEAL|SLACK)_\w+""#)
                .expect("a valid regex");
        let allowed = [
            "src/doctor/e2e_tests.rs",
            "src/agent/llm/tests.rs",
            "src/store/mod.rs",
        ];
        let sources = sources();
        for (file, text) in &sources {
            for found in reader.find_iter(text) {
                let ok = allowed.contains(&file.as_str())
                    || (file == "src/main.rs" && found.as_str().contains("SELFHEAL_BENCH_"));
                assert!(
                    ok,
                    "{file} reads {} by its name: declare it in config::settings",
                    found.as_str()
                );
            }
        }
        // And every declaration is read somewhere (or its docs would describe nothing).
        for setting in ALL {
            let name = setting.about().name;
            let read = regex::Regex::new(&format!(r"&{name}\b|\b{name}\.[a-z_]+\("))
                .expect("a valid regex");
            assert!(
                sources
                    .iter()
                    .any(|(file, text)| file != "src/config/settings.rs" && read.is_match(text)),
                "{name} is declared but never read"
            );
        }
    }

    #[test]
    fn values_are_parsed_or_refused_with_a_reason() {
        fn check<T: std::fmt::Debug>(s: &Setting<T>, value: &str, want: Result<&str, &str>) {
            let got = (s.parse)(value).map(|v| format!("{v:?}"));
            assert_eq!(
                got.as_deref().map_err(String::as_str),
                want,
                "{} = {value:?}",
                s.name()
            );
        }
        check(
            &SLACK_API_URL,
            "http://127.0.0.1:9999/api//",
            Ok("\"http://127.0.0.1:9999/api/\""),
        );
        check(
            &SLACK_API_URL,
            "https://",
            Err("'https://' is not an http(s) URL"),
        );
        check(
            &SLACK_API_URL,
            "slack.com/api",
            Err("'slack.com/api' is not an http(s) URL"),
        );
        check(&SLACK_APP_TOKEN, "xoxb-wrong", Err("must start with xapp-"));
        check(&SLACK_BOT_TOKEN, "xoxb-1", Ok("Secret(***)"));
        check(&SELFHEAL_ON_RESTART, "report", Ok("false"));
        check(
            &SELFHEAL_ON_RESTART,
            "resume",
            Err("'resume' is neither 'rerun' nor 'report'"),
        );
        check(&SELFHEAL_RUN_LOG_SOURCE, "DBT-Cloud", Ok("DbtCloud"));
        check(
            &SELFHEAL_RUN_LOG_SOURCE,
            "s3",
            Err("'s3' is not a run-log source (dir, paradime or dbt_cloud)"),
        );
        check(
            &DBT_CLOUD_API_URL,
            "https://emea.dbt.com/api/v2/",
            Ok("\"https://emea.dbt.com\""),
        );
        check(&DBT_CLOUD_API_TOKEN, "Bearer dbtc_1", Ok("Secret(***)"));
        check(&PARADIME_WORKSPACE_UID, "ws_3f2a", Ok("\"ws_3f2a\""));
        check(
            &PARADIME_WORKSPACE_UID,
            "my workspace",
            Err("\"my workspace\" is not a workspace uid (visible ASCII characters, no spaces)"),
        );
        check(
            &DBT_CLOUD_ACCOUNT_ID,
            "0",
            Err("'0' is not an account id (a whole number)"),
        );
        check(
            &SELFHEAL_GITHUB_API_URL,
            "https://ghe.acme.com/api/v3/",
            Ok("\"https://ghe.acme.com/api/v3\""),
        );
        check(
            &SELFHEAL_LLM_BASE_URL,
            "localhost:11434",
            Err("must be an http(s) URL, got \"localhost:11434\""),
        );
        check(&SELFHEAL_LLM_CONTEXT_TOKENS, "512", Err("must be a whole number of tokens, at least 1024 (the model's context window), got \"512\""));
        check(
            &SELFHEAL_DBT_TIMEOUT_SECS,
            "15m",
            Err("'15m' is not a whole number"),
        );
        check(&SELFHEAL_DBT_TIMEOUT_SECS, "60", Ok("60s"));
    }
}
