//! Configuration: environment variables, Paradime schedules-as-code and agent
//! definitions, turned into one validated, typed [`Config`].
//!
//! Everything is checked when the bot starts, so a bad file fails fast with an
//! error that names the file, the line, the column and the key path:
//! `paradime_schedules.yml:14:7: schedules[1].self_healing.slack_channel: …`.
//!
//! # Layout
//! - [`schedules`](load_schedules): `paradime_schedules.yml` and `.bolt/**/*.yml`, as Paradime reads them.
//! - [`agents`](load_agents): `.dinoai/agents/<name>.yml`, plus our own `selfheal:` section.
//! - [`settings`]: every environment variable, declared once (name, default,
//!   docs, parsing); `vars` reads them and collects the problems, `docs`
//!   renders the README's settings tables and `.env.example` from them.
//! - [`env`](Config): the settings as a typed [`Config`] (and [`DbtSettings`]
//!   for `fix`), and the cross-checks between all of the above.
//! - `recognizers`: the `SELFHEAL_RECOGNIZERS` file of per-notifier regexes.
//! - `yaml`: a located YAML tree and a small reader over it (private).
//!
//! This module reads files and the environment only when asked to load; it
//! never talks to Slack, the store or an agent.

mod agents;
// Only the test that keeps the README and `.env.example` in step renders them.
#[cfg(test)]
mod docs;
mod env;
mod recognizers;
mod schedules;
pub mod settings;
mod vars;
mod yaml;

use std::path::PathBuf;

pub use agents::load_agents;
// Agent definitions are the agent module's types; the config only reads them.
pub use crate::agent::{AgentDef, Runner, DBT_DOCTOR};
pub use env::{
    Config, DbtSettings, ForgeSettings, HealSettings, PrPoll, Retries, RetryBudget, SlackSettings,
    SHUTDOWN_GRACE,
};
pub use schedules::{load_schedules, NotifyEvent, Schedule, Schedules, SelfHealing, SlackNotify};
pub use vars::{About, Declared, Setting, Unset};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file is not valid: YAML syntax, a wrong type, a missing, unknown or
    /// duplicate key, a bad value or a broken rule. `line` and `column` are
    /// 1-based; 0 means the problem concerns the file (or directory) as a whole.
    /// `key` is the path of the offending key, e.g. `schedules[1].name`; it is
    /// empty for syntax errors.
    #[error("{}", located(file, *line, *column, key, message))]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },

    /// An environment variable is missing or has a bad value.
    #[error("{var}: {message}")]
    Env { var: String, message: String },

    /// A file or directory could not be read.
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Every problem found in the configuration, in the order found, with where
/// each environment variable was read from when that is known.
#[derive(Debug)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
    /// For a variable, where it came from (`the environment`, `.env at /srv/.env`)
    /// or where it was looked for; filled by [`Config::from_process_env`].
    origins: std::collections::BTreeMap<String, String>,
}

impl ConfigErrors {
    pub fn new(errors: Vec<ConfigError>) -> ConfigErrors {
        ConfigErrors {
            errors,
            origins: Default::default(),
        }
    }

    /// Says where each variable named in an error came from.
    pub fn with_origins(mut self, origin: impl Fn(&str) -> String) -> ConfigErrors {
        for e in &self.errors {
            if let ConfigError::Env { var, .. } = e {
                self.origins.insert(var.clone(), origin(var));
            }
        }
        self
    }

    /// One line per problem.
    pub fn lines(&self) -> Vec<String> {
        self.errors
            .iter()
            .map(|e| match e {
                ConfigError::Env { var, message } => match self.origins.get(var) {
                    Some(origin) => format!("{var} ({origin}): {message}"),
                    None => e.to_string(),
                },
                other => other.to_string(),
            })
            .collect()
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.lines().as_slice() {
            [one] => f.write_str(one),
            lines => {
                write!(f, "{} problems:", lines.len())?;
                for line in lines {
                    write!(f, "\n  - {line}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}

/// Renders `file:line:column: key: message`, leaving out the parts that are unknown.
fn located(file: &std::path::Path, line: usize, column: usize, key: &str, message: &str) -> String {
    let mut out = file.display().to_string();
    if line > 0 {
        out.push_str(&format!(":{line}"));
        if column > 0 {
            out.push_str(&format!(":{column}"));
        }
    }
    if !key.is_empty() {
        out.push_str(&format!(": {key}"));
    }
    out.push_str(&format!(": {message}"));
    out
}

/// The form of a Slack channel used to compare channels.
///
/// Names are written many ways (`#Data-Alerts`, `data-alerts`, ` #data-alerts `);
/// they compare equal once trimmed, stripped of the leading `#` and
/// lower-cased. Channel IDs (`C0123ABC`, also `G…` for private channels)
/// are case-sensitive upper-case identifiers, so they are kept as written
/// (upper-cased), and a channel's link (`https://acme.slack.com/archives/C0123ABC`)
/// is its ID.
///
/// On Enterprise Grid a name may be given its workspace, by name or ID:
/// `Acme EU/#data-alerts` becomes `acme eu/data-alerts`, `T0EU1234/#x`
/// becomes `T0EU1234/x` (see [`split_workspace`]).
pub fn normalize_channel(s: &str) -> String {
    let trimmed = s.trim();
    if let Some((_, rest)) = trimmed.split_once("/archives/") {
        return normalize_one(rest.split(['/', '?']).next().unwrap_or_default());
    }
    match trimmed.rsplit_once('/') {
        Some((workspace, channel)) if !workspace.trim().is_empty() => {
            let workspace = workspace.trim();
            let workspace = if looks_like_team_id(workspace) {
                workspace.to_string()
            } else {
                workspace.to_lowercase()
            };
            format!("{workspace}/{}", normalize_one(channel))
        }
        _ => normalize_one(trimmed.trim_start_matches('/')),
    }
}

/// A normalised channel's workspace, if it names one, and its channel.
pub fn split_workspace(normalized: &str) -> (Option<&str>, &str) {
    match normalized.rsplit_once('/') {
        Some((workspace, channel)) => (Some(workspace), channel),
        None => (None, normalized),
    }
}

fn normalize_one(s: &str) -> String {
    let trimmed = s.trim();
    let name = trimmed.strip_prefix('#').unwrap_or(trimmed).trim();
    if looks_like_channel_id(name) {
        name.to_ascii_uppercase()
    } else {
        name.to_lowercase()
    }
}

/// Workspace IDs on Enterprise Grid: `T` and upper-case alphanumerics.
fn looks_like_team_id(s: &str) -> bool {
    s.len() >= 8
        && s.starts_with('T')
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// Slack channel IDs start with `C`, `G` or `D`, are upper-case alphanumerics
/// with at least one digit and at least 8 characters long. A channel *name*
/// cannot contain upper-case letters, so a token of that shape is an ID.
fn looks_like_channel_id(s: &str) -> bool {
    s.len() >= 8
        && s.starts_with(['C', 'G', 'D'])
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && s.chars().any(|c| c.is_ascii_digit())
}

/// What `selfheal check` prints: the effective set-up, one line per fact.
pub fn summary(cfg: &Config) -> String {
    let mut out = format!(
        "configuration loaded: every variable and file is valid\nschedules: {} (from {})\n",
        cfg.schedules.len(),
        cfg.schedules_path.display()
    );
    for s in cfg.schedules.iter() {
        let channels = s.failure_channels().join(", ");
        match s.healing_channel() {
            Some(heal) => {
                let agent = cfg.agent_for(s).map(|a| a.name.as_str()).unwrap_or("?");
                out.push_str(&format!(
                    "  {}: notifies [{channels}], heals in {heal} with agent {agent}\n",
                    s.name
                ));
            }
            None => out.push_str(&format!(
                "  {}: notifies [{channels}], self-healing off\n",
                s.name
            )),
        }
    }
    out.push_str(&format!(
        "agents: {} (from {})\n",
        cfg.agents.len(),
        cfg.agents_dir.display()
    ));
    for a in cfg.agents.values() {
        out.push_str(&format!("  {}: {}\n", a.name, a.runner.describe()));
    }
    if cfg.notifier_bots.is_empty() {
        out.push_str(
            "notifiers: any bot (set SELFHEAL_NOTIFIER_BOTS to your scheduler's bot to restrict)\n",
        );
    } else {
        out.push_str(&format!("notifiers: {}\n", cfg.notifier_bots.join(", ")));
    }
    out.push_str(&format!("database: {}\n", cfg.db_path.display()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_normalized_and_ids_kept() {
        let cases = [
            ("#Data-Alerts", "data-alerts"),
            ("data-alerts", "data-alerts"),
            ("  #agent-demo ", "agent-demo"),
            ("C0123ABC", "C0123ABC"),
            ("C0123ABCD", "C0123ABCD"),
            ("#C0123ABCD", "C0123ABCD"),
            ("G01ABCDEFG", "G01ABCDEFG"),
            ("#CHANNELS", "channels"),
            // A channel's link is its id.
            ("https://acme.slack.com/archives/C0123ABCD", "C0123ABCD"),
            (
                "https://acme.enterprise.slack.com/archives/C0123ABCD/p1700000000000100",
                "C0123ABCD",
            ),
            // On Enterprise Grid, a workspace (by name or id) before the channel.
            ("Acme EU/#Data-Alerts", "acme eu/data-alerts"),
            (" Acme EU / #data-alerts ", "acme eu/data-alerts"),
            ("T0EU12345/#alerts", "T0EU12345/alerts"),
            ("T0EU12345/C0123ABCD", "T0EU12345/C0123ABCD"),
            ("/#alerts", "alerts"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_channel(input), expected, "input {input:?}");
        }
        assert_eq!(
            split_workspace("acme eu/data-alerts"),
            (Some("acme eu"), "data-alerts")
        );
        assert_eq!(split_workspace("data-alerts"), (None, "data-alerts"));
    }

    #[test]
    fn located_errors_render_file_line_column_key_and_message() {
        let err = ConfigError::Invalid {
            file: PathBuf::from("paradime_schedules.yml"),
            line: 14,
            column: 7,
            key: "schedules[1].name".into(),
            message: "must not be empty".into(),
        };
        assert_eq!(
            err.to_string(),
            "paradime_schedules.yml:14:7: schedules[1].name: must not be empty"
        );
        let whole_file = ConfigError::Invalid {
            file: PathBuf::from("dir"),
            line: 0,
            column: 0,
            key: String::new(),
            message: "no schedule files".into(),
        };
        assert_eq!(whole_file.to_string(), "dir: no schedule files");
    }
}
