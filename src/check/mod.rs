//! `selfheal check`: what it found, as lines a person can act on.
//!
//! Like `dbt debug`, the check tries the real thing — the Slack tokens, the
//! channels, the repository, the run-log source, dbt, the forge, each model
//! endpoint — and prints one line per check: `✓`, `⚠` or `✗`, and under each
//! `⚠` and `✗` the one thing to do. [`probe`] performs the checks (all of the
//! IO lives there); this module decides what the results mean — the order,
//! the words, the hint for each problem, the exit status. It does no IO and
//! is not async.

pub mod probe;

use std::fmt::Write as _;

/// What is checked, in the order the lines are printed: the order a person
/// sets selfheal up in (Slack first, then the code, then where PRs go).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    BotToken,
    AppToken,
    Scopes,
    /// A channel a schedule names, as written (`#agent-demo`).
    Channel(String),
    Repository,
    RunLogs,
    Dbt,
    /// Where a session builds: never production.
    Verification,
    DbtDebug,
    Forge,
    /// An `llm` agent, by name.
    Agent(String),
}

impl Check {
    /// The words before the colon.
    pub fn label(&self) -> String {
        match self {
            Check::BotToken => "Slack bot token".into(),
            Check::AppToken => "Slack app token".into(),
            Check::Scopes => "bot token scopes".into(),
            Check::Channel(c) => format!("channel {c}"),
            Check::Repository => "repository".into(),
            Check::RunLogs => "run logs".into(),
            Check::Dbt => "dbt".into(),
            Check::Verification => "verification".into(),
            Check::DbtDebug => "dbt debug".into(),
            Check::Forge => "forge".into(),
            Check::Agent(name) => format!("agent {name}"),
        }
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It works; the text says what was seen.
    Pass(String),
    /// It works, but not as well as it could, or production is in reach.
    Warn(Problem),
    /// It does not work.
    Fail(Problem),
    /// Not checked: not configured, `--offline`, or an earlier check failed.
    Skipped(String),
}

/// A problem a check found. Each variant knows what to say and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No answer from a host: DNS, refused, timed out.
    Unreachable {
        host: String,
        why: String,
        /// The setting that names the host.
        var: &'static str,
    },
    /// Slack answered `ok: false` to a token (`invalid_auth`, `token_revoked`, …).
    SlackTokenRejected {
        var: &'static str,
        code: String,
    },
    /// Slack answered `ok: false` with another error.
    SlackApi {
        method: &'static str,
        code: String,
    },
    /// The bot token lacks scopes the manifest lists.
    MissingScopes(Vec<String>),
    /// Slack did not say which scopes the token has.
    ScopesNotReported,
    ChannelNotFound {
        channel: String,
    },
    NotInChannel {
        channel: String,
    },
    /// `git ls-remote` failed; `why` is git's last line.
    RepositoryUnreachable {
        repo: String,
        why: String,
    },
    /// The run-log folder is missing or unreadable.
    RunLogsMissing {
        dir: String,
        why: String,
    },
    /// A hosted run-log source did not answer as it should.
    RunLogSource {
        what: String,
        why: String,
    },
    DbtNotFound {
        exe: String,
    },
    /// `dbt debug` failed; `errors` are its error lines.
    DbtDebugFailed {
        errors: String,
    },
    /// The isolation plan refuses the settings (or cannot read them).
    PlanRefused {
        why: String,
    },
    /// Nothing can be built without touching production: compile only.
    CompileOnly {
        why: String,
    },
    /// The forge said 401.
    ForgeTokenRejected {
        repo: String,
    },
    /// The token can read the repository but not push to it.
    ForgeCannotPush {
        repo: String,
    },
    ForgeRepoNotFound {
        repo: String,
    },
    /// A forge token without a repository to use it on.
    ForgeRepoUnknown,
    /// Any other forge failure.
    Forge {
        why: String,
    },
    /// A model endpoint answered with an error status.
    ModelRejected {
        url: String,
        status: u16,
        key_env: Option<String>,
    },
}

impl Problem {
    /// What was found, after the label.
    pub fn found(&self) -> String {
        match self {
            Problem::Unreachable { host, why, .. } => format!("cannot reach {host}: {why}"),
            Problem::SlackTokenRejected { code, .. } => format!("Slack rejected it ({code})"),
            Problem::SlackApi { method, code } => format!("{method} answered {code}"),
            Problem::MissingScopes(scopes) => format!("missing {}", scopes.join(", ")),
            Problem::ScopesNotReported => "Slack did not report the token's scopes".into(),
            Problem::ChannelNotFound { .. } => "not found in the workspace".into(),
            Problem::NotInChannel { .. } => "the bot is not a member".into(),
            Problem::RepositoryUnreachable { repo, why } => {
                format!("git ls-remote {repo} failed: {why}")
            }
            Problem::RunLogsMissing { dir, why } => format!("{dir}: {why}"),
            Problem::RunLogSource { what, why } => format!("{what}: {why}"),
            Problem::DbtNotFound { exe } => format!("`{exe}` not found"),
            Problem::DbtDebugFailed { errors } => format!("failed: {errors}"),
            Problem::PlanRefused { why } => why.clone(),
            Problem::CompileOnly { why } => format!("compiles only, nothing is built: {why}"),
            Problem::ForgeTokenRejected { repo } => {
                format!("GitHub rejected SELFHEAL_GITHUB_TOKEN for {repo} (401)")
            }
            Problem::ForgeCannotPush { repo } => {
                format!("the token can read {repo} but not push to it")
            }
            Problem::ForgeRepoNotFound { repo } => {
                format!("{repo} not found, or the token cannot see it")
            }
            Problem::ForgeRepoUnknown => {
                "SELFHEAL_GITHUB_TOKEN is set but the repository is unknown".into()
            }
            Problem::Forge { why } => why.clone(),
            Problem::ModelRejected { url, status, .. } => format!("{url} answered HTTP {status}"),
        }
    }

    /// The one thing to do.
    pub fn fix(&self) -> String {
        match self {
            Problem::Unreachable { host, var, .. } => {
                format!("check {var} and that this machine can reach {host}")
            }
            Problem::SlackTokenRejected { var: "SLACK_APP_TOKEN", .. } => {
                "set SLACK_APP_TOKEN to an app-level token (xapp-…) with connections:write: Basic Information → App-Level Tokens".into()
            }
            Problem::SlackTokenRejected { var, .. } => format!(
                "set {var} to the Bot User OAuth Token (xoxb-…): OAuth & Permissions, after installing the app"
            ),
            Problem::SlackApi { method: "apps.connections.open", .. } => {
                "turn Socket Mode on for the app (Settings → Socket Mode), as data/slack-app-manifest.yml does".into()
            }
            Problem::SlackApi { method, .. } => format!("see Slack's documentation of {method}"),
            Problem::MissingScopes(_) => {
                "add them under OAuth & Permissions → Bot Token Scopes (see data/slack-app-manifest.yml), then reinstall the app".into()
            }
            Problem::ScopesNotReported => {
                "compare the bot's scopes with data/slack-app-manifest.yml under OAuth & Permissions".into()
            }
            Problem::ChannelNotFound { channel } => format!(
                "create {channel} or correct it in the schedules file (private channels need groups:read)"
            ),
            Problem::NotInChannel { channel } => format!("invite the bot: /invite @selfheal in {channel}"),
            Problem::RepositoryUnreachable { .. } => {
                "set SELFHEAL_REPO to a URL or path this machine can clone (with its credentials)".into()
            }
            Problem::RunLogsMissing { .. } => {
                "set SELFHEAL_RUN_LOGS to the folder holding one folder of dbt artifacts per run".into()
            }
            Problem::RunLogSource { .. } => {
                "check the credentials of SELFHEAL_RUN_LOG_SOURCE (PARADIME_API_* or DBT_CLOUD_*)".into()
            }
            Problem::DbtNotFound { .. } => {
                "install dbt (./scripts/setup-dbt prints its path) and set SELFHEAL_DBT to it".into()
            }
            Problem::DbtDebugFailed { .. } => {
                "fix the connection of the verification target in profiles.yml (SELFHEAL_DBT_PROFILES_DIR)".into()
            }
            Problem::PlanRefused { why } if why.contains("SELFHEAL_DBT_TARGET") => {
                "set SELFHEAL_DBT_TARGET to a CI target of the profile that is not production".into()
            }
            Problem::PlanRefused { why } if why.contains("profiles.yml") || why.contains("dbt_project.yml") => {
                "set SELFHEAL_DBT_PROFILES_DIR to the folder of the profiles.yml the scheduler uses (and SELFHEAL_DBT_PROJECT_DIR to the project)".into()
            }
            Problem::PlanRefused { .. } => {
                "set SELFHEAL_DBT_PROD_TARGET to the target the scheduler runs in".into()
            }
            Problem::CompileOnly { .. } => crate::dbt::isolate::FULL_VERIFICATION_HINT.into(),
            Problem::ForgeTokenRejected { repo } | Problem::ForgeCannotPush { repo } => format!(
                "give SELFHEAL_GITHUB_TOKEN Contents and Pull requests write access to {repo}"
            ),
            Problem::ForgeRepoNotFound { .. } => {
                "set SELFHEAL_GITHUB_REPO to owner/name, and give the token access to it".into()
            }
            Problem::ForgeRepoUnknown => "set SELFHEAL_GITHUB_REPO=owner/name".into(),
            Problem::Forge { .. } => "check SELFHEAL_GITHUB_API_URL and SELFHEAL_GITHUB_REPO".into(),
            Problem::ModelRejected { key_env: Some(env), status: 401 | 403, .. } => {
                format!("set {env} to a key the endpoint accepts")
            }
            Problem::ModelRejected { .. } => {
                "check the agent's base_url (an OpenAI-compatible API ending in /v1)".into()
            }
        }
    }
}

/// True for Slack error codes that mean "this token is no good".
pub fn is_token_error(code: &str) -> bool {
    matches!(
        code,
        "invalid_auth"
            | "not_authed"
            | "account_inactive"
            | "token_revoked"
            | "token_expired"
            | "not_allowed_token_type"
    )
}

/// The scopes of `wanted` that `granted` lacks, in `wanted`'s order.
pub fn missing_scopes(wanted: &[&str], granted: &[String]) -> Vec<String> {
    wanted
        .iter()
        .filter(|w| !granted.iter().any(|g| g == *w))
        .map(|w| w.to_string())
        .collect()
}

/// Splits an `x-oauth-scopes` header (`chat:write,channels:read`).
pub fn parse_scopes(header: &str) -> Vec<String> {
    header
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// One check's line (and, for a problem, the hint under it).
pub fn line(check: &Check, outcome: &Outcome) -> String {
    let label = check.label();
    match outcome {
        Outcome::Pass(what) => format!("✓ {label}: {what}\n"),
        Outcome::Warn(p) => format!("⚠ {label}: {}\n  → {}\n", p.found(), p.fix()),
        Outcome::Fail(p) => format!("✗ {label}: {}\n  → {}\n", p.found(), p.fix()),
        Outcome::Skipped(why) => format!("– {label}: {why}\n"),
    }
}

/// Every line in [`Check`] order, then a closing count.
pub fn report(results: &[(Check, Outcome)]) -> String {
    let mut sorted: Vec<&(Check, Outcome)> = results.iter().collect();
    // Stable: channels keep the order the schedules name them in.
    sorted.sort_by_key(|(check, _)| order(check));
    let mut out = String::new();
    for (check, outcome) in &sorted {
        out.push_str(&line(check, outcome));
    }
    let count = |f: fn(&Outcome) -> bool| results.iter().filter(|(_, o)| f(o)).count();
    let failed = count(|o| matches!(o, Outcome::Fail(_)));
    let warned = count(|o| matches!(o, Outcome::Warn(_)));
    let passed = count(|o| matches!(o, Outcome::Pass(_)));
    let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
    let _ = write!(out, "{passed} passed, {warned} warnings, {failed} failed");
    if skipped > 0 {
        let _ = write!(out, ", {skipped} not checked");
    }
    out.push('\n');
    out
}

/// The position of a check's line: its kind, not its data (channels stay in
/// the order they were found).
fn order(check: &Check) -> u8 {
    match check {
        Check::BotToken => 0,
        Check::AppToken => 1,
        Check::Scopes => 2,
        Check::Channel(_) => 3,
        Check::Repository => 4,
        Check::RunLogs => 5,
        Check::Dbt => 6,
        Check::Verification => 7,
        Check::DbtDebug => 8,
        Check::Forge => 9,
        Check::Agent(_) => 10,
    }
}

/// Whether anything failed (the exit status is non-zero then).
pub fn failed(results: &[(Check, Outcome)]) -> bool {
    results.iter().any(|(_, o)| matches!(o, Outcome::Fail(_)))
}

/// What git said went wrong, from its error: the first `fatal:` line
/// (git's own reason), else the last line.
pub fn git_reason(error: &str) -> String {
    let lines: Vec<&str> = error
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let fatal = lines
        .iter()
        .find_map(|l| l.split_once("fatal: ").map(|(_, why)| why));
    fatal
        .or(lines.last().copied())
        .unwrap_or("git failed")
        .to_string()
}

/// What went wrong in `dbt debug`, on one line: the check that failed
/// (`Connection test: [ERROR]`) and, when the database said why, its words
/// (dbt quotes them under a `>Database Error` line).
pub fn dbt_debug_errors(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .map(|l| crate::dbt::strip_timestamp(l).trim())
        .filter(|l| !l.is_empty())
        .collect();
    let failed: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("[ERROR") || l.contains("[NOT OK"))
        .take(2)
        .collect();
    let said = lines
        .iter()
        .position(|l| l.starts_with('>'))
        .and_then(|at| lines.get(at + 1))
        .copied();
    match (failed.is_empty(), said) {
        (false, Some(why)) => format!("{}: {why}", failed.join("; ")),
        (false, None) => failed.join("; "),
        (true, Some(why)) => why.to_string(),
        (true, None) => crate::dbt::tail_lines(output, 1).replace('\n', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(c: Check, o: Outcome, want: &str) {
        assert_eq!(line(&c, &o), want, "{c:?} {o:?}");
    }

    #[test]
    fn each_outcome_is_one_line_and_each_problem_says_what_to_do() {
        let fail = |p| Outcome::Fail(p);
        check(
            Check::BotToken,
            Outcome::Pass("works as @selfheal in Acme".into()),
            "✓ Slack bot token: works as @selfheal in Acme\n",
        );
        check(
            Check::Forge,
            Outcome::Skipped("no SELFHEAL_GITHUB_TOKEN".into()),
            "– forge: no SELFHEAL_GITHUB_TOKEN\n",
        );
        check(Check::BotToken, fail(Problem::Unreachable { host: "slack.com".into(), why: "DNS lookup failed".into(), var: "SLACK_API_URL" }),
            "✗ Slack bot token: cannot reach slack.com: DNS lookup failed\n  → check SLACK_API_URL and that this machine can reach slack.com\n");
        check(Check::BotToken, fail(Problem::SlackTokenRejected { var: "SLACK_BOT_TOKEN", code: "invalid_auth".into() }),
            "✗ Slack bot token: Slack rejected it (invalid_auth)\n  → set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-…): OAuth & Permissions, after installing the app\n");
        check(Check::AppToken, fail(Problem::SlackTokenRejected { var: "SLACK_APP_TOKEN", code: "invalid_auth".into() }),
            "✗ Slack app token: Slack rejected it (invalid_auth)\n  → set SLACK_APP_TOKEN to an app-level token (xapp-…) with connections:write: Basic Information → App-Level Tokens\n");
        check(Check::Scopes, fail(Problem::MissingScopes(vec!["users:read".into()])),
            "✗ bot token scopes: missing users:read\n  → add them under OAuth & Permissions → Bot Token Scopes (see data/slack-app-manifest.yml), then reinstall the app\n");
        check(Check::Channel("#ops".into()), fail(Problem::NotInChannel { channel: "#ops".into() }),
            "✗ channel #ops: the bot is not a member\n  → invite the bot: /invite @selfheal in #ops\n");
        check(Check::DbtDebug, fail(Problem::DbtDebugFailed { errors: "Connection test: [ERROR]".into() }),
            "✗ dbt debug: failed: Connection test: [ERROR]\n  → fix the connection of the verification target in profiles.yml (SELFHEAL_DBT_PROFILES_DIR)\n");
        check(Check::Verification, Outcome::Warn(Problem::CompileOnly { why: "production `prod` is a postgres warehouse".into() }),
            "⚠ verification: compiles only, nothing is built: production `prod` is a postgres warehouse\n  → set SELFHEAL_DBT_TARGET to a CI target of the profile to verify by building\n");
        check(Check::Agent("gpt".into()), fail(Problem::ModelRejected { url: "http://x/v1/models".into(), status: 401, key_env: Some("OPENAI_API_KEY".into()) }),
            "✗ agent gpt: http://x/v1/models answered HTTP 401\n  → set OPENAI_API_KEY to a key the endpoint accepts\n");
    }

    #[test]
    fn a_refused_plan_points_at_the_setting_to_change() {
        let cases = [
            ("SELFHEAL_DBT_TARGET is `dev`, the target the scheduler runs in", "set SELFHEAL_DBT_TARGET to a CI target of the profile that is not production"),
            ("no profiles.yml for profile `shop` (looked in …)", "set SELFHEAL_DBT_PROFILES_DIR to the folder of the profiles.yml the scheduler uses (and SELFHEAL_DBT_PROJECT_DIR to the project)"),
            ("cannot tell which target of profile `shop` is production", "set SELFHEAL_DBT_PROD_TARGET to the target the scheduler runs in"),
        ];
        for (why, fix) in cases {
            assert_eq!(Problem::PlanRefused { why: why.into() }.fix(), fix);
        }
    }

    #[test]
    fn the_report_is_in_setup_order_with_a_count_and_fails_on_any_failure() {
        let results = vec![
            (
                Check::Forge,
                Outcome::Skipped("no SELFHEAL_GITHUB_TOKEN".into()),
            ),
            (
                Check::Channel("#b".into()),
                Outcome::Pass("bot is a member".into()),
            ),
            (Check::BotToken, Outcome::Pass("works".into())),
            (
                Check::Channel("#a".into()),
                Outcome::Fail(Problem::ChannelNotFound {
                    channel: "#a".into(),
                }),
            ),
        ];
        assert_eq!(
            report(&results),
            "✓ Slack bot token: works\n✓ channel #b: bot is a member\n✗ channel #a: not found in the workspace\n  → create #a or correct it in the schedules file (private channels need groups:read)\n– forge: no SELFHEAL_GITHUB_TOKEN\n2 passed, 0 warnings, 1 failed, 1 not checked\n"
        );
        assert!(failed(&results));
        let warned = vec![(
            Check::Verification,
            Outcome::Warn(Problem::ScopesNotReported),
        )];
        assert!(!failed(&warned), "a warning alone does not fail the check");
    }

    #[test]
    fn scopes_are_compared_with_the_manifest() {
        let cases: [(&str, Vec<&str>); 4] = [
            ("chat:write,users:read", vec![]),
            ("users:read", vec!["chat:write"]),
            ("", vec!["chat:write", "users:read"]),
            (" chat:write , users:read ,", vec![]),
        ];
        for (header, missing) in cases {
            assert_eq!(
                missing_scopes(&["chat:write", "users:read"], &parse_scopes(header)),
                missing,
                "{header:?}"
            );
        }
    }

    #[test]
    fn token_errors_are_told_apart_from_other_errors() {
        for (code, is_token) in [
            ("invalid_auth", true),
            ("token_revoked", true),
            ("not_allowed_token_type", true),
            ("channel_not_found", false),
            ("ratelimited", false),
        ] {
            assert_eq!(is_token_error(code), is_token, "{code}");
        }
    }

    #[test]
    fn git_errors_are_cut_to_gits_reason() {
        let cases = [
            ("git ls-remote --symref -- /x HEAD failed (exit status: 128): fatal: '/x' does not appear to be a git repository\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights", "'/x' does not appear to be a git repository"),
            ("git ls-remote timed out after 60s", "git ls-remote timed out after 60s"),
            ("", "git failed"),
        ];
        for (error, want) in cases {
            assert_eq!(git_reason(error), want);
        }
    }

    #[test]
    fn dbt_debug_output_is_cut_to_its_errors() {
        let refused = "12:00:01  Running with dbt=1.10.0\n12:00:02    Connection test: [ERROR]\n\n12:00:02  1 check failed:\n12:00:02  dbt was unable to connect to the specified database.\nThe database returned the following error:\n\n  >Database Error\n  connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n  \tIs the server running on that host and accepting TCP/IP connections?\n";
        let cases = [
            (refused, "Connection test: [ERROR]: connection to server at \"127.0.0.1\", port 1 failed: Connection refused"),
            ("12:00:01    profiles.yml file [ERROR invalid]\n12:00:01  Profile loading failed\n", "profiles.yml file [ERROR invalid]"),
            ("a\nlast words\n", "last words"),
        ];
        for (output, want) in cases {
            assert_eq!(dbt_debug_errors(output), want);
        }
    }
}
