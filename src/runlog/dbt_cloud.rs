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
//! - `GET {base}/api/v2/accounts/{account}/runs/{run}/`: the run's `status`
//!   (1 queued, 2 starting, 3 running, 10 success, 20 error, 30 cancelled).
//! - `POST {base}/api/v2/accounts/{account}/runs/{run}/retry/`: a retry from the
//!   point of failure; the answer's `data` is the new run. dbt Cloud refuses
//!   (HTTP 400) a run that did not fail, is not its job's latest, or cannot be
//!   retried by its command, dbt version or missing `run_results.json`; the
//!   error names the reason code (`RETRY_NOT_LATEST_RUN`, …) wherever the
//!   answer carries it. The retry starts a run, so it is never repeated once
//!   dbt Cloud may have acted on it (see `HttpClient::send_mutation`).
//!
//! The token is sent as `Authorization: Token <token>` and nowhere else.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::Value;
use tracing::{info, warn};

use super::http::{numeric_run_id, Answer, Call, HttpClient, RetryPolicy};
use super::{parse, Artifacts, RunLog, RunState};
use crate::domain::Secret;

/// dbt Cloud's multi-tenant host in North America.
/// How many of a job's latest runs are read to find one that passed.
const LATEST_RUNS: u64 = 20;

pub const DEFAULT_API_URL: &str = "https://cloud.getdbt.com";

/// How long a run's artifacts are waited for by default.
pub const DEFAULT_ARTIFACT_WAIT: Duration = Duration::from_secs(90);

/// The longest pause between two artifact polls.
const MAX_POLL_DELAY: Duration = Duration::from_secs(15);

/// Why dbt Cloud refuses a retry (dbt-mcp's `retry_job_run`), and what each
/// reason says about the run.
const RETRY_REFUSALS: &[(&str, &str)] = &[
    ("RETRY_UNSUPPORTED_CMD", "its command cannot be retried"),
    ("RETRY_UNSUPPORTED_VERSION", "its dbt version cannot retry"),
    (
        "RETRY_NOT_LATEST_RUN",
        "it is not the latest run of its job",
    ),
    ("RETRY_NOT_FAILED_RUN", "it did not fail"),
    (
        "RETRY_NO_RUN_RESULTS",
        "it left no run_results.json to retry from",
    ),
];

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
        let v = self
            .run(id, "?include_related=%5B%22run_steps%22%5D")
            .await?;
        let mut steps: Vec<(i64, Step)> = v["run_steps"]
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

    /// The state of run `run_id`, from its `status`.
    pub async fn run_state(&self, run_id: &str) -> Result<RunState> {
        let id = numeric_run_id(run_id, "dbt Cloud")?;
        let run = self.run(id, "").await?;
        let code = run["status"].as_i64();
        let humanized = run["status_humanized"].as_str().unwrap_or_default();
        code.and_then(|code| cloud_state(code, humanized))
            .with_context(|| {
                format!(
                    "dbt Cloud reported run {id} with status {}, which selfheal does not know",
                    run["status"]
                )
            })
    }

    /// The first run of `run_id`'s job after it that passed, among the job's
    /// latest runs; None while none has.
    pub async fn passed_after(&self, run_id: &str) -> Result<Option<String>> {
        let id = numeric_run_id(run_id, "dbt Cloud")?;
        let run = self.run(id, "").await?;
        let job = run["job_definition_id"]
            .as_u64()
            .or_else(|| run["job_id"].as_u64())
            .with_context(|| format!("dbt Cloud named no job for run {id}"))?;
        let url = format!(
            "{}/api/v2/accounts/{}/runs/?job_definition_id={job}&order_by=-id&limit={LATEST_RUNS}",
            self.base, self.account_id
        );
        let answer = self
            .get(&url)
            .await
            .with_context(|| format!("asking dbt Cloud for the latest runs of job {job}"))?;
        if !answer.status.is_success() {
            return Err(self.failure(id, &answer, "listing the runs after"));
        }
        let list: Value =
            serde_json::from_slice(&answer.body).context("dbt Cloud's list of runs is not JSON")?;
        let passed = list["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["status"].as_i64() == Some(10))
            .filter_map(|r| r["id"].as_u64())
            .filter(|n| *n > id)
            .min();
        Ok(passed.map(|n| n.to_string()))
    }

    /// Asks dbt Cloud to retry run `run_id` from the point of failure; the
    /// new run's id.
    pub async fn retry(&self, run_id: &str) -> Result<String> {
        let id = numeric_run_id(run_id, "dbt Cloud")?;
        let url = format!(
            "{}/api/v2/accounts/{}/runs/{id}/retry/",
            self.base, self.account_id
        );
        let answer = self
            .http
            .send_mutation(&Call {
                method: Method::POST,
                url: &url,
                headers: vec![self.authorization()],
                body: None,
            })
            .await
            .with_context(|| format!("asking dbt Cloud to retry run {id}"))?;
        match answer.status.as_u16() {
            200..=299 => {}
            400 | 409 | 422 => {
                let message = self.user_message(&answer);
                let body = String::from_utf8_lossy(&answer.body);
                bail!("dbt Cloud refused to retry run {id} {}", refusal(&body, &message))
            }
            s if s >= 500 => bail!(
                "dbt Cloud answered HTTP {s} to the retry of run {id}: {}; it may have started a run anyway, so it was not asked again",
                self.user_message(&answer)
            ),
            _ => return Err(self.failure(id, &answer, "to the retry of")),
        }
        let v: Value = serde_json::from_slice(&answer.body)
            .context("dbt Cloud's answer to the retry is not JSON")?;
        let new = &v["data"]["id"];
        new.as_u64()
            .map(|n| n.to_string())
            .or_else(|| new.as_str().map(str::to_string))
            .with_context(|| format!("dbt Cloud retried run {id} but named no new run"))
    }

    /// Run `id`'s `data`, with `query` (`?include_related=…`) appended to its URL.
    async fn run(&self, id: u64, query: &str) -> Result<Value> {
        let run_url = format!(
            "{}/api/v2/accounts/{}/runs/{id}/{query}",
            self.base, self.account_id
        );
        let answer = self
            .get(&run_url)
            .await
            .with_context(|| format!("asking dbt Cloud for run {id}"))?;
        if !answer.status.is_success() {
            return Err(self.failure(id, &answer, "for"));
        }
        let mut v: Value =
            serde_json::from_slice(&answer.body).context("dbt Cloud's run answer is not JSON")?;
        Ok(v["data"].take())
    }

    /// What an unsuccessful answer about run `id` means: rejected
    /// credentials, no such run, or dbt Cloud's message (`what`: the words
    /// before "run {id}", as in "HTTP 500 for run 7").
    fn failure(&self, id: u64, answer: &Answer, what: &str) -> anyhow::Error {
        let message = self.user_message(answer);
        match answer.status.as_u16() {
            401 | 403 => anyhow::anyhow!(
                "dbt Cloud rejected the API token (HTTP {}): {message}; check DBT_CLOUD_API_TOKEN and DBT_CLOUD_ACCOUNT_ID",
                answer.status.as_u16()
            ),
            404 => anyhow::anyhow!(
                "dbt Cloud has no run {id} in account {}: {message}",
                self.account_id
            ),
            _ => anyhow::anyhow!("dbt Cloud answered HTTP {} {what} run {id}: {message}", answer.status),
        }
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

    async fn get(&self, url: &str) -> Result<Answer> {
        self.http
            .send(&Call {
                method: Method::GET,
                url,
                headers: vec![self.authorization()],
                body: None,
            })
            .await
    }

    /// The one header that carries the token.
    fn authorization(&self) -> (&'static str, String, bool) {
        (
            "authorization",
            format!("Token {}", self.token.expose()),
            true,
        )
    }

    /// dbt Cloud's `status.user_message` (or the body's start), scrubbed of the token.
    fn user_message(&self, answer: &Answer) -> String {
        let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        match v["status"]["user_message"].as_str() {
            Some(m) => super::http::scrub(m, &[self.token.expose()]),
            None => answer.excerpt(&[self.token.expose()]),
        }
    }
}

/// A run's state from dbt Cloud's status code (`status_humanized` names a
/// failure, when given); `None` for a code it does not document.
fn cloud_state(code: i64, humanized: &str) -> Option<RunState> {
    let failed = |name: &str| {
        let name = if humanized.is_empty() {
            name
        } else {
            humanized
        };
        Some(RunState::Failed(format!("{code} {name}")))
    };
    match code {
        1..=3 => Some(RunState::InProgress),
        10 => Some(RunState::Passed),
        20 => failed("Error"),
        30 => failed("Cancelled"),
        _ => None,
    }
}

/// `(REASON): what it means` for a refused retry: the first `RETRY_…` code
/// anywhere in the answer (where dbt Cloud puts it is not documented), else
/// dbt Cloud's own message.
fn refusal(body: &str, user_message: &str) -> String {
    let code = body.find("RETRY_").map(|at| {
        body[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect::<String>()
    });
    match code {
        Some(code) => match RETRY_REFUSALS.iter().find(|(known, _)| *known == code) {
            Some((_, meaning)) => format!("({code}): {meaning}"),
            None => format!("({code}): {user_message}"),
        },
        None => format!("(HTTP 400): {user_message}"),
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
    fn status_codes_read_as_dbt_cloud_documents_them() {
        let check = |code: i64, humanized: &str, want: Option<RunState>| {
            assert_eq!(cloud_state(code, humanized), want, "{code} {humanized}")
        };
        check(1, "Queued", Some(RunState::InProgress));
        check(2, "", Some(RunState::InProgress));
        check(3, "Running", Some(RunState::InProgress));
        check(10, "Success", Some(RunState::Passed));
        check(20, "Error", Some(RunState::Failed("20 Error".into())));
        check(20, "", Some(RunState::Failed("20 Error".into())));
        check(
            30,
            "Cancelled",
            Some(RunState::Failed("30 Cancelled".into())),
        );
        check(0, "", None);
        check(40, "Skipped", None);
    }

    #[test]
    fn a_refusal_names_its_reason_code_wherever_the_answer_has_it() {
        let check = |body: &str, message: &str, want: &str| {
            assert_eq!(refusal(body, message), want, "{body}")
        };
        check(
            r#"{"status":{"user_message":"RETRY_NOT_LATEST_RUN"}}"#,
            "RETRY_NOT_LATEST_RUN",
            "(RETRY_NOT_LATEST_RUN): it is not the latest run of its job",
        );
        check(
            r#"{"status":{"user_message":"Cannot retry."},"data":{"reason":"RETRY_NO_RUN_RESULTS"}}"#,
            "Cannot retry.",
            "(RETRY_NO_RUN_RESULTS): it left no run_results.json to retry from",
        );
        check(
            r#"{"status":{"user_message":"RETRY_SOMETHING_NEW: no"}}"#,
            "RETRY_SOMETHING_NEW: no",
            "(RETRY_SOMETHING_NEW): RETRY_SOMETHING_NEW: no",
        );
        check("{}", "Bad request.", "(HTTP 400): Bad request.");
    }

    #[test]
    fn waits_read_like_durations() {
        assert_eq!(human(Duration::from_millis(40)), "40ms");
        assert_eq!(human(Duration::from_secs(90)), "90s");
    }
}
