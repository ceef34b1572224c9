//! Run logs: where a failed run's evidence comes from, and what it says.
//!
//! A [`Source`] fetches the raw evidence of a run by id — a directory per run
//! id ([`Source::Dir`]), Paradime Bolt's GraphQL API ([`paradime`]) or dbt
//! Cloud's v2 API ([`dbt_cloud`]) — and every source hands what it found to
//! the one parser: [`parse`] turns dbt's artifacts and console output into a
//! [`RunLog`]: the failing nodes, their errors and the failed command, with the
//! raw text kept at hand. Parsing is pure; only `Source`'s methods do IO.
//!
//! A hosted source also speaks for its scheduler: [`Source::run_state`] asks
//! how a run stands ([`RunState`]) and [`Source::retry`] asks the scheduler to
//! re-run a failed run's failed part. A run-log folder can do neither.
//!
//! The hosted sources hold their API credentials and send them only in request
//! headers: no error or log line carries them.

pub mod dbt_cloud;
mod http;
pub mod paradime;
mod parse;
#[cfg(test)]
mod sources_tests;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use dbt_cloud::{DbtCloud, DbtCloudSettings};
pub use http::RetryPolicy;
pub use paradime::{GraphqlError, MissingCredential, Paradime, ParadimeAuth, ParadimeSettings};
pub use parse::{parse, signature};

/// What kind of failure a node had, as dbt reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The project could not be parsed or compiled (bad ref/source/macro, Jinja, YAML).
    Compilation,
    /// The warehouse rejected the SQL (unknown column, syntax, cast).
    Database,
    /// Any other runtime error.
    Runtime,
    /// A data test returned failing rows.
    TestFailure,
}

/// One failing node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFailure {
    /// `model.jaffle_shop.orders`, when dbt named it.
    pub unique_id: Option<String>,
    /// `orders`, `not_null_orders_customer_id`.
    pub name: String,
    /// `model`, `test`, `seed`, `snapshot`, or `project` for whole-project errors.
    pub resource_type: String,
    /// The file dbt blamed, relative to the project (`models/marts/orders.sql`).
    pub path: Option<String>,
    pub kind: ErrorKind,
    /// dbt's error text, trimmed.
    pub message: String,
    /// The compiled SQL from run_results.json: for a failing data test, the
    /// query that returns its failing rows.
    pub compiled_code: Option<String>,
}

/// What a failed run left behind, digested.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunLog {
    pub run_id: String,
    /// The dbt command that failed (`dbt build --select marts`), when known.
    pub command: Option<String>,
    pub failures: Vec<NodeFailure>,
    /// Console output and the tail of dbt.log, for agents and diagnoses.
    pub raw: String,
    /// Which source provided it (`dir:/var/runs/48213`).
    pub origin: String,
}

/// Where run logs come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `<root>/<run_id>/` holding what dbt leaves behind: `run_results.json`,
    /// `dbt.log` (or `logs/dbt.log`), and the console output in `console.txt`
    /// (or `stdout.txt`, `output.txt`), plus `command.txt` with the command.
    Dir(PathBuf),
    /// Paradime Bolt: the run's commands and the failing command's log lines.
    Paradime(Paradime),
    /// dbt Cloud: the run's step logs and its `run_results.json`.
    DbtCloud(DbtCloud),
}

/// A run's state as its scheduler reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Queued, starting or running.
    InProgress,
    /// Finished, and passed.
    Passed,
    /// Finished without passing, in the scheduler's words: Bolt's `FAILED`,
    /// `ERROR`, `CANCELED` or `SKIPPED`; dbt Cloud's `20 Error` or `30 Cancelled`.
    Failed(String),
}

/// Which source to read run logs from, as configured
/// (`SELFHEAL_RUN_LOG_SOURCE`); plain data, so configuration stays free of IO.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSettings {
    /// `dir`: `SELFHEAL_RUN_LOGS`.
    Dir(PathBuf),
    /// `paradime`: `PARADIME_API_ENDPOINT`, `PARADIME_API_SECRET` (a legacy
    /// secret with `PARADIME_API_KEY`, or a token; a company token with
    /// `PARADIME_WORKSPACE_UID`).
    Paradime(ParadimeSettings),
    /// `dbt_cloud`: `DBT_CLOUD_API_URL`, `DBT_CLOUD_API_TOKEN`, `DBT_CLOUD_ACCOUNT_ID`.
    DbtCloud(DbtCloudSettings),
}

/// The raw files of a run.
#[derive(Debug, Clone, Default)]
pub struct Artifacts {
    pub run_results: Option<String>,
    pub dbt_log: Option<String>,
    pub console: Option<String>,
    pub command: Option<String>,
}

/// How much of dbt.log is kept: the failure is at the end.
const DBT_LOG_TAIL: usize = 64 * 1024;

impl Source {
    /// The source `settings` describe, with its HTTP client when it has one.
    pub fn from_settings(settings: &SourceSettings) -> Result<Source> {
        Ok(match settings {
            SourceSettings::Dir(root) => Source::Dir(root.clone()),
            SourceSettings::Paradime(s) => Source::Paradime(Paradime::new(s)?),
            SourceSettings::DbtCloud(s) => Source::DbtCloud(DbtCloud::new(s)?),
        })
    }

    /// Whether the source answers, for `selfheal check`: the folder can be
    /// listed, or the API answers an authenticated question about a run
    /// (a run that does not exist is an answer; a rejected key is not).
    /// Says what it saw.
    pub async fn probe(&self) -> Result<String> {
        match self {
            Source::Dir(root) => {
                let runs = std::fs::read_dir(root)
                    .with_context(|| format!("{} cannot be listed", root.display()))?
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .count();
                Ok(format!("{} ({runs} runs)", root.display()))
            }
            Source::Paradime(_) | Source::DbtCloud(_) => match self.fetch("1").await {
                Ok(_) => Ok("answers".into()),
                // Both clients say "… has no … run 1" for a run the account lacks:
                // the key was accepted, which is what is being checked.
                Err(e) if format!("{e:#}").contains("has no") => Ok("answers".into()),
                Err(e) => Err(e),
            },
        }
    }

    /// The first run after `run_id` of the same schedule (Paradime: the
    /// schedule's `slug`) or job (dbt Cloud) that passed; None while none has,
    /// or when the source cannot tell (a run-log folder; a Paradime schedule
    /// without a slug).
    pub async fn passed_after(&self, run_id: &str, slug: Option<&str>) -> Result<Option<String>> {
        match (self, slug) {
            (Source::Paradime(p), Some(slug)) => p.passed_after(run_id, slug).await,
            (Source::DbtCloud(c), _) => c.passed_after(run_id).await,
            _ => Ok(None),
        }
    }

    /// The scheduler behind the source, as a thread names it.
    pub fn scheduler(&self) -> &'static str {
        match self {
            Source::Dir(_) => "the run-log folder",
            Source::Paradime(_) => "Paradime",
            Source::DbtCloud(_) => "dbt Cloud",
        }
    }

    /// Whether this source can ask its scheduler to re-run a failed run
    /// (a run-log folder cannot).
    pub fn can_retry(&self) -> bool {
        match self {
            Source::Dir(_) => false,
            Source::Paradime(_) | Source::DbtCloud(_) => true,
        }
    }

    /// Asks the scheduler to re-run the failed part of `run_id`: Bolt's
    /// `retryBoltRun` (the failed commands), dbt Cloud's retry from the point
    /// of failure. `Ok` is the new run's id. Errors say why in a sentence fit
    /// for a Slack thread (the scheduler's refusal and its reason, rejected
    /// credentials, an unreachable host) and never carry credentials. The
    /// request is not repeated once the scheduler may have started a run.
    pub async fn retry(&self, run_id: &str) -> Result<String> {
        match self {
            Source::Paradime(p) => p.retry(run_id).await,
            Source::DbtCloud(c) => c.retry(run_id).await,
            Source::Dir(_) => anyhow::bail!("a run-log folder cannot re-run a run"),
        }
    }

    /// The state of run `run_id`, as its scheduler reports it.
    pub async fn run_state(&self, run_id: &str) -> Result<RunState> {
        match self {
            Source::Paradime(p) => p.run_state(run_id).await,
            Source::DbtCloud(c) => c.run_state(run_id).await,
            Source::Dir(_) => anyhow::bail!("a run-log folder cannot report run states"),
        }
    }

    /// Fetches and digests the run log of `run_id`.
    pub async fn fetch(&self, run_id: &str) -> Result<RunLog> {
        match self {
            Source::Paradime(p) => p.fetch(run_id).await,
            Source::DbtCloud(c) => c.fetch(run_id).await,
            Source::Dir(root) => {
                let dir = run_dir(root, run_id)?;
                let artifacts = read_dir_artifacts(&dir)
                    .with_context(|| format!("reading the run log in {}", dir.display()))?;
                let mut log = parse(run_id, &artifacts);
                // No machine path: the origin is shown in Slack.
                log.origin = format!("run-log folder {run_id}");
                Ok(log)
            }
        }
    }
}

/// Checks a hosted API's base URL the way the sources will use it: http(s),
/// with plain http only for loopback hosts. The message suits a config error.
pub fn check_api_url(url: &str) -> std::result::Result<(), String> {
    http::HttpClient::check_url(url)
        .map(|_https| ())
        .map_err(|e| e.to_string())
}

/// `<root>/<run_id>`, refusing run ids that would escape the root.
pub fn run_dir(root: &Path, run_id: &str) -> Result<PathBuf> {
    let safe = !run_id.is_empty()
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '+'))
        && run_id != "."
        && run_id != "..";
    anyhow::ensure!(safe, "run id {run_id:?} cannot name a run-log directory");
    Ok(root.join(run_id))
}

fn read_dir_artifacts(dir: &Path) -> Result<Artifacts> {
    anyhow::ensure!(dir.is_dir(), "no run-log directory {}", dir.display());
    let first = |names: &[&str]| -> Option<String> {
        names
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let dbt_log = first(&["dbt.log", "logs/dbt.log"]).map(|s| tail(&s, DBT_LOG_TAIL).to_string());
    Ok(Artifacts {
        run_results: first(&["run_results.json", "target/run_results.json"]),
        dbt_log,
        console: first(&["console.txt", "stdout.txt", "output.txt", "console.log"]),
        command: first(&["command.txt"]).map(|s| s.trim().to_string()),
    })
}

/// The last `max` bytes of `s`, starting on a line boundary when possible.
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    match s[start..].find('\n') {
        Some(i) => &s[start + i + 1..],
        None => &s[start..],
    }
}

/// The run log of last resort: what the failure notification itself says.
pub fn from_notification(run_id: &str, text: &str) -> RunLog {
    let mut log = parse(
        run_id,
        &Artifacts {
            console: Some(text.to_string()),
            ..Artifacts::default()
        },
    );
    log.origin = "the Slack notification".into();
    log
}

/// Stores a run's artifacts under `<root>/<run_id>/` (what `selfheal notify` does).
pub fn store_artifacts(root: &Path, run_id: &str, artifacts: &Artifacts) -> Result<PathBuf> {
    let dir = run_dir(root, run_id)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, content: &Option<String>| -> Result<()> {
        if let Some(c) = content {
            std::fs::write(dir.join(name), c).with_context(|| format!("writing {name}"))?;
        }
        Ok(())
    };
    write("run_results.json", &artifacts.run_results)?;
    write("dbt.log", &artifacts.dbt_log)?;
    write("console.txt", &artifacts.console)?;
    write("command.txt", &artifacts.command)?;
    Ok(dir)
}

/// Keeps the run's `manifest.json` (from dbt's target folder) beside its
/// log: production's state, for verification that defers to it
/// (`--defer --state`). A run that failed before writing one keeps none.
pub fn store_manifest(root: &Path, run_id: &str, target_dir: &Path) -> Result<()> {
    let src = target_dir.join("manifest.json");
    if !src.is_file() {
        return Ok(());
    }
    let dir = run_dir(root, run_id)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::copy(&src, dir.join("manifest.json"))
        .with_context(|| format!("copying {}", src.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_cannot_escape_the_run_log_root() {
        let root = Path::new("/runs");
        assert_eq!(run_dir(root, "48213").unwrap(), Path::new("/runs/48213"));
        assert!(run_dir(root, "manual__2024-01-01T00:00:00+00:00").is_ok());
        for bad in ["", "..", "../etc", "a/b", ".", "x\0y"] {
            assert!(run_dir(root, bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_tail_starts_on_a_line() {
        assert_eq!(tail("abc\ndef\nghi", 6), "ghi");
        assert_eq!(tail("short", 100), "short");
    }
}
