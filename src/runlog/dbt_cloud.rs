//! The dbt Cloud run-log source: a run's steps and its `run_results.json`
//! over dbt Cloud's v2 REST API.
//!
//! - `GET {base}/api/v2/accounts/{account}/runs/{run}/?include_related=["run_steps"]`:
//!   `data.run_steps[]` carry `name` (``Invoke dbt with `dbt build` ``),
//!   `status_humanized`, `logs` (the console) and `truncated_debug_logs`.
//! - `GET {base}/api/v2/accounts/{account}/runs/{run}/artifacts/run_results.json`:
//!   dbt Cloud answers 404 until the artifacts are uploaded, which can lag the
//!   failure notification by a minute, so a 404 is retried with doubling
//!   backoff until [`DbtCloudSettings::artifact_wait`] has passed. When it has,
//!   the run log is built from the step logs alone and says so in its first
//!   line: the console names the failing nodes too, and a session that waits
//!   forever helps no one.
//!
//! The token is sent as `Authorization: Token <token>` and nowhere else.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::Value;
use tracing::{info, warn};

use super::http::{numeric_run_id, Call, HttpClient, RetryPolicy};
use super::{parse, Artifacts, RunLog};
use crate::domain::Secret;

/// dbt Cloud's multi-tenant host in North America.
pub const DEFAULT_API_URL: &str = "https://cloud.getdbt.com";

/// How long a run's artifacts are waited for by default.
pub const DEFAULT_ARTIFACT_WAIT: Duration = Duration::from_secs(90);

/// The longest pause between two artifact polls.
const MAX_POLL_DELAY: Duration = Duration::from_secs(15);

/// How to reach dbt Cloud (`DBT_CLOUD_API_URL`, `DBT_CLOUD_API_TOKEN`,
/// `DBT_CLOUD_ACCOUNT_ID`).
#[derive(Debug, Clone, PartialEq)]
pub struct DbtCloudSettings {
    /// The access URL without `/api/…` (`https://cloud.getdbt.com`,
    /// `https://emea.dbt.com`, `https://ACCOUNT_PREFIX.us1.dbt.com`).
    pub api_url: String,
    /// A service-account or personal access token that can read runs.
    pub token: Secret,
    pub account_id: u64,
    /// How long `run_results.json` is waited for before the step logs alone are used.
    pub artifact_wait: Duration,
}

/// One dbt Cloud account's job runs.
#[derive(Clone)]
pub struct DbtCloud {
    base: String,
    token: Secret,
    account_id: u64,
    artifact_wait: Duration,
    http: HttpClient,
}

impl std::fmt::Debug for DbtCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbtCloud")
            .field("base", &self.base)
            .field("account_id", &self.account_id)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// One step of a run, as `run_steps` returns it.
struct Step {
    name: String,
    failed: bool,
    logs: String,
    debug_logs: String,
}

impl DbtCloud {
    /// A client for `settings.api_url`; plain http only for loopback.
    pub fn new(settings: &DbtCloudSettings) -> Result<DbtCloud> {
        let base = settings.api_url.trim_end_matches('/').to_string();
        Ok(DbtCloud {
            http: HttpClient::new(&base, "DBT_CLOUD_API_URL")?,
            base,
            token: settings.token.clone(),
            account_id: settings.account_id,
            artifact_wait: settings.artifact_wait,
        })
    }

    /// Replaces the default [`RetryPolicy`] (tests use milliseconds).
    pub fn with_retry(mut self, retry: RetryPolicy) -> DbtCloud {
        self.http.retry = retry;
        self
    }

    /// Fetches run `run_id`'s steps and, once dbt Cloud has it, its
    /// `run_results.json`, and digests them with the same parser as every other source.
    pub async fn fetch(&self, run_id: &str) -> Result<RunLog> {
        let id = numeric_run_id(run_id, "dbt Cloud")?;
        let run_url = format!(
            "{}/api/v2/accounts/{}/runs/{id}/?include_related=%5B%22run_steps%22%5D",
            self.base, self.account_id
        );
        let answer = self
            .get(&run_url)
            .await
            .with_context(|| format!("asking dbt Cloud for run {id}"))?;
        match answer.status.as_u16() {
            200..=299 => {}
            401 | 403 => bail!(
                "dbt Cloud rejected the API token (HTTP {}): {}; check DBT_CLOUD_API_TOKEN and DBT_CLOUD_ACCOUNT_ID",
                answer.status.as_u16(),
                self.user_message(&answer)
            ),
            404 => bail!(
                "dbt Cloud has no run {id} in account {}: {}",
                self.account_id,
                self.user_message(&answer)
            ),
            _ => bail!(
                "dbt Cloud answered HTTP {} for run {id}: {}",
                answer.status,
                self.user_message(&answer)
            ),
        }
        let v: Value =
            serde_json::from_slice(&answer.body).context("dbt Cloud's run answer is not JSON")?;
        let mut steps: Vec<(i64, Step)> = v["data"]["run_steps"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .map(|s| (s["index"].as_i64().unwrap_or(0), step_from(s)))
                    .collect()
            })
            .unwrap_or_default();
        steps.sort_by_key(|(index, _)| *index);
        let steps: Vec<Step> = steps.into_iter().map(|(_, s)| s).collect();
        let failing = steps.iter().find(|s| s.failed);
        let (console, dbt_log) = match failing {
            Some(s) => (s.logs.clone(), s.debug_logs.clone()),
            None => (
                steps
                    .iter()
                    .map(|s| format!("== {} ==\n{}", s.name, s.logs))
                    .collect::<Vec<_>>()
                    .join("\n"),
                String::new(),
            ),
        };

        let run_results = self.run_results(id).await;
        let mut artifacts = Artifacts {
            console: Some(console),
            dbt_log: (!dbt_log.trim().is_empty()).then_some(dbt_log),
            command: failing.and_then(|s| command_of(&s.name)),
            run_results: None,
        };
        let note = match run_results {
            Ok(json) => {
                artifacts.run_results = Some(json);
                None
            }
            Err(why) => Some(why),
        };
        let mut log = parse(run_id, &artifacts);
        log.origin = format!("dbt_cloud:run {id}");
        if let Some(why) = note {
            warn!(run = id, reason = %why, "using dbt Cloud's step logs without run_results.json");
            log.raw = format!(
                "[selfheal] {why}; the failures come from the step logs alone.\n{}",
                log.raw
            );
        }
        Ok(log)
    }

    /// `run_results.json` of run `id`, polling while dbt Cloud answers 404;
    /// `Err` says why there is none (a sentence for the run log, not a failure).
    async fn run_results(&self, id: u64) -> std::result::Result<String, String> {
        let url = format!(
            "{}/api/v2/accounts/{}/runs/{id}/artifacts/run_results.json",
            self.base, self.account_id
        );
        let deadline = tokio::time::Instant::now() + self.artifact_wait;
        let mut delay =
            (self.artifact_wait / 16).clamp(Duration::from_millis(1), Duration::from_secs(2));
        let mut polls = 0u32;
        loop {
            polls += 1;
            let answer = match self.get(&url).await {
                Ok(a) => a,
                Err(e) => return Err(format!("run_results.json could not be read: {e:#}")),
            };
            match answer.status.as_u16() {
                200..=299 => {
                    if polls > 1 {
                        info!(run = id, polls, "dbt Cloud's run_results.json arrived");
                    }
                    return Ok(String::from_utf8_lossy(&answer.body).into_owned());
                }
                404 => {}
                s => {
                    return Err(format!(
                        "run_results.json could not be read (HTTP {s}: {})",
                        self.user_message(&answer)
                    ))
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(format!(
                    "dbt Cloud's artifacts not available after {} ({polls} requests)",
                    human(self.artifact_wait)
                ));
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(MAX_POLL_DELAY);
        }
    }

    async fn get(&self, url: &str) -> Result<super::http::Answer> {
        self.http
            .send(&Call {
                method: Method::GET,
                url,
                headers: vec![(
                    "authorization",
                    format!("Token {}", self.token.expose()),
                    true,
                )],
                body: None,
            })
            .await
    }

    /// dbt Cloud's `status.user_message` (or the body's start), scrubbed of the token.
    fn user_message(&self, answer: &super::http::Answer) -> String {
        let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        match v["status"]["user_message"].as_str() {
            Some(m) => super::http::scrub(m, &[self.token.expose()]),
            None => answer.excerpt(&[self.token.expose()]),
        }
    }
}

fn step_from(s: &Value) -> Step {
    let text = |k: &str| s[k].as_str().unwrap_or("").to_string();
    let humanized = text("status_humanized");
    Step {
        name: text("name"),
        // 20 is dbt Cloud's "Error" status code.
        failed: humanized.eq_ignore_ascii_case("error") || s["status"].as_i64() == Some(20),
        logs: text("logs"),
        debug_logs: match text("truncated_debug_logs") {
            t if t.is_empty() => text("debug_logs"),
            t => t,
        },
    }
}

/// `dbt build --select x` from a step named ``Invoke dbt with `dbt build --select x` ``.
fn command_of(step_name: &str) -> Option<String> {
    let start = step_name.find('`')? + 1;
    let len = step_name[start..].find('`')?;
    let command = step_name[start..start + len].trim();
    command.starts_with("dbt ").then(|| command.to_string())
}

fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_comes_from_the_step_name() {
        let check = |name: &str, want: Option<&str>| {
            assert_eq!(command_of(name).as_deref(), want, "{name}")
        };
        check(
            "Invoke dbt with `dbt build --select marts`",
            Some("dbt build --select marts"),
        );
        check("Invoke dbt with `dbt deps`", Some("dbt deps"));
        check("Clone git repository", None);
        check("Invoke dbt with `", None);
        check("Run `ls`", None);
    }

    #[test]
    fn waits_read_like_durations() {
        assert_eq!(human(Duration::from_millis(40)), "40ms");
        assert_eq!(human(Duration::from_secs(90)), "90s");
    }
}
