//! The Paradime Bolt source: a run's commands and the failing command's log
//! lines (paged by cursor), a run's state, and a retry of a failed run, over
//! Paradime's GraphQL API — in the documents Paradime's Python SDK sends
//! (`paradime/apis/bolt/client.py`), verbatim, with the SDK's variables.
//!
//! Every call is a `POST` of `{"query": …, "variables": …}` to
//! `PARADIME_API_ENDPOINT`, authenticated as the SDK authenticates
//! (`paradime/client/api_client.py`), with one of [`ParadimeAuth`]:
//! - a legacy API key and secret: `X-API-KEY` and `X-API-SECRET`;
//! - a workspace token (`prdm_wsp_…`): `Authorization: Bearer <token>`;
//! - a company token (`prdm_cmp_…`): `Authorization: Bearer <token>` and
//!   `X-Paradime-Workspace: <workspace uid>`, which picks the workspace.
//!
//! As in the SDK, a token is given where the legacy secret goes
//! (`PARADIME_API_SECRET`) and told apart by its prefix.
//!
//! A GraphQL error (HTTP 200 with `errors`) becomes an error that names
//! Paradime's first message, as the SDK raises it ([`GraphqlError`]). One
//! exception keeps the run log: when a command's log cannot be paged, the
//! `stdout` and `stderr` fields of the run's commands stand in for it.
//!
//! The console text is the failing command's log (the first with a non-zero
//! return code), or every command's log when none failed; `command.txt` is
//! the failing command. The credentials only ever go into request headers;
//! errors quote Paradime's messages with them scrubbed.
//!
//! A retry (`retryBoltRun`) starts a run: it is never repeated after an
//! answer that leaves open whether Paradime started one (see
//! `HttpClient::send_mutation`).

use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::{json, Value};
use tracing::warn;

use super::http::{host_of, numeric_run_id, scrub, Answer, Call, HttpClient, RetryPolicy};
use super::{parse, Artifacts, RunLog, RunState};
use crate::domain::Secret;

/// A run's commands (the SDK's `list_run_commands`).
pub const RUN_COMMANDS_QUERY: &str = "\
query boltRunStatus($runId: Int!) {
    boltRunStatus(runId: $runId) {
        commands {
            id
            command
            startDttm
            endDttm
            stdout
            stderr
            returnCode
        }
    }
}";

/// A run's state (the SDK's `get_run_status`).
pub const RUN_STATE_QUERY: &str = "\
query boltRunStatus($runId: Int!) {
    boltRunStatus(runId: $runId) {
        state
    }
}";

/// One page of a command's log lines (the SDK's `get_command_logs`).
pub const COMMAND_LOGS_QUERY: &str = "\
query boltCommandLogs($commandId: Int!, $cursor: String) {
    boltCommandLogs(commandId: $commandId, cursor: $cursor) {
        lines { stream line }
        cursor
        finished
    }
}";

/// The cursor of a command log's first page, as the SDK sends it.
pub const FIRST_LOG_CURSOR: &str = "0:0";

/// Re-runs only the failed commands of a run, the first failed dbt command
/// as `dbt retry` where supported (the SDK's `retry_run`); the one selfheal uses.
pub const RETRY_RUN_MUTATION: &str = "\
mutation RetryBoltRun($scheduleRunId: Int!) {
    retryBoltRun(scheduleRunId: $scheduleRunId) {
        runId
    }
}";

/// Re-runs every command of a run but git clone and dbt deps (the SDK's
/// `retry_run_all`). Kept beside the others; selfheal does not send it.
pub const RETRY_ALL_RUN_MUTATION: &str = "\
mutation RetryAllBoltRun($scheduleRunId: Int!) {
    retryAllBoltRun(scheduleRunId: $scheduleRunId) {
        runId
    }
}";

/// Resumes a schedule's latest failed run, by schedule slug (the SDK's
/// `retry_schedule_from_failure`). Kept beside the others; selfheal does not send it.
/// How many of a schedule's latest runs are read to find one that passed.
const LATEST_RUNS: u64 = 20;

/// The schedule's latest runs, newest first (verbatim from the SDK).
pub const LIST_RUNS_QUERY: &str = "\
query listBoltRuns($slug: String, $offset: Int!, $limit: Int!) {
    listBoltRuns(slug: $slug, offset: $offset, limit: $limit) {
        ok
        runs {
            id
            state
            actor
            actorEmail
            startDttm
            endDttm
            parentScheduleRunId
            gitInfo {
                branch
                commitHash
                pullRequestId
            }
        }
    }
}";

pub const RETRY_FROM_FAILURE_MUTATION: &str = "\
mutation RetryBoltRunFromFailure($slug: String) {
    retryBoltRunFromFailure(slug: $slug) {
        runId
    }
}";

/// The prefix of a workspace-level API token.
pub const WORKSPACE_TOKEN_PREFIX: &str = "prdm_wsp_";

/// The prefix of a company-level API token, which needs a workspace uid.
pub const COMPANY_TOKEN_PREFIX: &str = "prdm_cmp_";

/// At most this many pages are read per command: a log that never finishes
/// (a command still running) must not hold a session forever.
const MAX_PAGES: usize = 2_000;

/// At most this much log text is kept per command; the failure is at the end,
/// so the oldest lines are dropped first.
const MAX_LOG_BYTES: usize = 8 * 1024 * 1024;

/// How to reach Paradime's API (`PARADIME_API_ENDPOINT`, and the credentials
/// of `PARADIME_API_KEY`, `PARADIME_API_SECRET`, `PARADIME_WORKSPACE_UID`,
/// the SDK's variable names).
#[derive(Debug, Clone, PartialEq)]
pub struct ParadimeSettings {
    /// The workspace's GraphQL endpoint, from Paradime's API key settings.
    pub endpoint: String,
    pub auth: ParadimeAuth,
}

/// How requests prove who sends them: one of the SDK's three forms.
#[derive(Debug, Clone, PartialEq)]
pub enum ParadimeAuth {
    /// A legacy API key and its secret, scoped to one workspace.
    KeyAndSecret { key: Secret, secret: Secret },
    /// A workspace-level token (`prdm_wsp_…`), scoped to one workspace.
    WorkspaceToken(Secret),
    /// A company-level token (`prdm_cmp_…`), valid in several workspaces,
    /// and the uid of the one the requests target.
    CompanyToken {
        token: Secret,
        workspace_uid: String,
    },
}

/// What a Paradime credential lacks, for a configuration error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MissingCredential {
    /// A legacy secret came without its key.
    #[error("a legacy API secret needs its API key")]
    ApiKey,
    /// A company token came without the workspace it targets.
    #[error("a company token ({COMPANY_TOKEN_PREFIX}…) needs the uid of the workspace it targets")]
    WorkspaceUid,
}

impl ParadimeAuth {
    /// The credential the SDK would use for these values: `secret` is a
    /// token when it starts with `prdm_wsp_` or `prdm_cmp_` (then `key` is
    /// not needed, and a company token needs `workspace_uid`), else a legacy
    /// secret, which needs `key`. A workspace uid given with any other
    /// credential is not needed and not sent.
    pub fn from_parts(
        key: Option<Secret>,
        secret: Secret,
        workspace_uid: Option<String>,
    ) -> std::result::Result<ParadimeAuth, MissingCredential> {
        if secret.expose().starts_with(WORKSPACE_TOKEN_PREFIX) {
            Ok(ParadimeAuth::WorkspaceToken(secret))
        } else if secret.expose().starts_with(COMPANY_TOKEN_PREFIX) {
            let workspace_uid = workspace_uid.ok_or(MissingCredential::WorkspaceUid)?;
            Ok(ParadimeAuth::CompanyToken {
                token: secret,
                workspace_uid,
            })
        } else {
            let key = key.ok_or(MissingCredential::ApiKey)?;
            Ok(ParadimeAuth::KeyAndSecret { key, secret })
        }
    }

    /// The values that must never leave the process.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            ParadimeAuth::KeyAndSecret { key, secret } => vec![key.expose(), secret.expose()],
            ParadimeAuth::WorkspaceToken(token) | ParadimeAuth::CompanyToken { token, .. } => {
                vec![token.expose()]
            }
        }
    }

    /// The request headers, marked sensitive where they carry a secret.
    fn headers(&self) -> Vec<(&'static str, String, bool)> {
        let bearer = |token: &Secret| ("authorization", format!("Bearer {}", token.expose()), true);
        match self {
            ParadimeAuth::KeyAndSecret { key, secret } => vec![
                ("x-api-key", key.expose().to_string(), true),
                ("x-api-secret", secret.expose().to_string(), true),
            ],
            ParadimeAuth::WorkspaceToken(token) => vec![bearer(token)],
            ParadimeAuth::CompanyToken {
                token,
                workspace_uid,
            } => vec![
                bearer(token),
                ("x-paradime-workspace", workspace_uid.clone(), false),
            ],
        }
    }

    /// What was rejected, and the variables to check, for an HTTP 401/403.
    fn rejected(&self) -> (&'static str, &'static str) {
        match self {
            ParadimeAuth::KeyAndSecret { .. } => (
                "the API key and secret",
                "PARADIME_API_KEY and PARADIME_API_SECRET",
            ),
            ParadimeAuth::WorkspaceToken(_) => ("the workspace token", "PARADIME_API_SECRET"),
            ParadimeAuth::CompanyToken { .. } => (
                "the company token",
                "PARADIME_API_SECRET and PARADIME_WORKSPACE_UID",
            ),
        }
    }
}

/// A GraphQL error Paradime answered (HTTP 200 with `errors`): the first
/// message, as the SDK raises it, scrubbed of the credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Paradime answered {field} with an error: {message}")]
pub struct GraphqlError {
    /// The root field asked for (`boltRunStatus`, `retryBoltRun`).
    pub field: &'static str,
    pub message: String,
}

/// A Paradime workspace's Bolt runs, reached over GraphQL.
#[derive(Clone)]
pub struct Paradime {
    endpoint: String,
    auth: ParadimeAuth,
    http: HttpClient,
}

impl std::fmt::Debug for Paradime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `Secret`'s Debug hides the values.
        f.debug_struct("Paradime")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// One command of a Bolt run, as `boltRunStatus` returns it.
#[derive(Debug, Clone)]
struct BoltCommand {
    id: u64,
    command: String,
    stdout: String,
    stderr: String,
    return_code: Option<i64>,
}

impl Paradime {
    /// A client for `settings.endpoint`; plain http only for loopback.
    pub fn new(settings: &ParadimeSettings) -> Result<Paradime> {
        Ok(Paradime {
            http: HttpClient::new(&settings.endpoint, "PARADIME_API_ENDPOINT")?,
            endpoint: settings.endpoint.clone(),
            auth: settings.auth.clone(),
        })
    }

    /// Replaces the default [`RetryPolicy`] (tests use milliseconds).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Paradime {
        self.http.retry = retry;
        self
    }

    /// Fetches the commands of Bolt run `run_id` and the failing command's log,
    /// and digests them with the same parser as every other source.
    pub async fn fetch(&self, run_id: &str) -> Result<RunLog> {
        let id = numeric_run_id(run_id, "Paradime Bolt")?;
        let run = self
            .query(RUN_COMMANDS_QUERY, "boltRunStatus", json!({ "runId": id }))
            .await
            .with_context(|| format!("asking Paradime for Bolt run {id}"))?
            .map_err(|e| anyhow::anyhow!("Paradime has no Bolt run {id}: {}", e.message))?;
        let mut commands: Vec<BoltCommand> = run["commands"]
            .as_array()
            .map(|cs| cs.iter().filter_map(command_from).collect())
            .unwrap_or_default();
        // The SDK sorts by id: ids follow the order the commands ran in.
        commands.sort_by_key(|c| c.id);
        anyhow::ensure!(
            !commands.is_empty(),
            "Paradime Bolt run {id} has no commands yet"
        );

        let failing = commands
            .iter()
            .find(|c| c.return_code.is_some_and(|rc| rc != 0));
        let shown: Vec<&BoltCommand> = match failing {
            Some(c) => vec![c],
            None => commands.iter().collect(),
        };
        let mut console = String::new();
        for c in &shown {
            let text = match self.command_log(c.id).await? {
                Some(text) if !text.trim().is_empty() => text,
                _ => fields_log(c),
            };
            if shown.len() > 1 {
                console.push_str(&format!("$ {}\n", c.command));
            }
            console.push_str(&text);
            if !console.ends_with('\n') {
                console.push('\n');
            }
        }
        let command = failing
            .or(commands.last())
            .map(|c| c.command.trim().to_string());
        let artifacts = Artifacts {
            console: Some(console),
            command,
            ..Artifacts::default()
        };
        let mut log = parse(run_id, &artifacts);
        log.origin = format!("paradime:{}", host_of(&self.endpoint));
        if failing.is_none() {
            warn!(
                run = id,
                "no command of the Paradime run failed; kept every command's log"
            );
        }
        Ok(log)
    }

    /// The state of Bolt run `run_id`.
    pub async fn run_state(&self, run_id: &str) -> Result<RunState> {
        let id = numeric_run_id(run_id, "Paradime Bolt")?;
        let run = self
            .query(RUN_STATE_QUERY, "boltRunStatus", json!({ "runId": id }))
            .await
            .and_then(|answer| answer.map_err(anyhow::Error::from))
            .with_context(|| format!("asking Paradime for the state of Bolt run {id}"))?;
        let word = run["state"].as_str().unwrap_or_default();
        bolt_state(word).with_context(|| {
            format!("Paradime reported Bolt run {id} as {word:?}, a state selfheal does not know")
        })
    }

    /// The first run of schedule `slug` after `run_id` that passed, among
    /// its latest runs (`listBoltRuns`); None while none has.
    pub async fn passed_after(&self, run_id: &str, slug: &str) -> Result<Option<String>> {
        let id = numeric_run_id(run_id, "Paradime Bolt")?;
        let vars = json!({ "slug": slug, "offset": 0, "limit": LATEST_RUNS });
        let list = self
            .query(LIST_RUNS_QUERY, "listBoltRuns", vars)
            .await
            .and_then(|answer| answer.map_err(anyhow::Error::from))
            .with_context(|| format!("asking Paradime for the latest runs of schedule {slug}"))?;
        let runs = list["runs"].as_array().cloned().unwrap_or_default();
        let passed = runs
            .iter()
            .filter(|r| r["state"].as_str() == Some("SUCCESS"))
            .filter_map(|r| r["id"].as_u64())
            .filter(|n| *n > id)
            .min();
        Ok(passed.map(|n| n.to_string()))
    }

    /// Asks Paradime to re-run the failed commands of Bolt run `run_id`
    /// (`retryBoltRun`); the new run's id.
    pub async fn retry(&self, run_id: &str) -> Result<String> {
        let id = numeric_run_id(run_id, "Paradime Bolt")?;
        let retried = self
            .mutate(
                RETRY_RUN_MUTATION,
                "retryBoltRun",
                json!({ "scheduleRunId": id }),
            )
            .await
            .with_context(|| format!("asking Paradime to retry Bolt run {id}"))?
            .map_err(|e| {
                anyhow::anyhow!("Paradime refused to retry Bolt run {id}: {}", e.message)
            })?;
        id_text(&retried["runId"])
            .with_context(|| format!("Paradime retried Bolt run {id} but named no new run"))
    }

    /// Every log line of command `id`, paged by cursor; `None` when Paradime
    /// answers the paging query with an error (see the module docs).
    async fn command_log(&self, id: u64) -> Result<Option<String>> {
        let mut out = String::new();
        let mut cursor = FIRST_LOG_CURSOR.to_string();
        for _ in 0..MAX_PAGES {
            let page = self
                .query(
                    COMMAND_LOGS_QUERY,
                    "boltCommandLogs",
                    json!({ "commandId": id, "cursor": cursor }),
                )
                .await
                .with_context(|| format!("reading the log of Paradime command {id}"))?;
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    warn!(command = id, error = %e.message, "Paradime did not page the command log; using its stdout and stderr");
                    return Ok(None);
                }
            };
            let lines = page["lines"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            for l in lines {
                // A line may carry its own newline (the SDK's CLI prints
                // them without adding one); it ends with exactly one here.
                let line = l["line"].as_str().unwrap_or("");
                out.push_str(line);
                if !line.ends_with('\n') {
                    out.push('\n');
                }
            }
            if out.len() > 2 * MAX_LOG_BYTES {
                let mut cut = out.len() - MAX_LOG_BYTES;
                while !out.is_char_boundary(cut) {
                    cut += 1;
                }
                out.drain(..cut);
            }
            let next = page["cursor"].as_str().map(str::to_string);
            let finished = page["finished"].as_bool().unwrap_or(true);
            let stuck = lines.is_empty() && next.as_deref().is_none_or(|n| n == cursor);
            match next {
                Some(next) if !finished && !stuck => cursor = next,
                _ => return Ok(Some(out)),
            }
        }
        warn!(
            command = id,
            pages = MAX_PAGES,
            "Paradime command log still unfinished; keeping what was read"
        );
        Ok(Some(out))
    }

    /// A query, sent again after a 429, 5xx or lost connection. The outer
    /// error is HTTP's (status, transport, not JSON); the inner one is
    /// Paradime's GraphQL error. `Ok(Ok(v))` is `data.<field>`.
    pub(super) async fn query(
        &self,
        document: &str,
        field: &'static str,
        variables: Value,
    ) -> Result<std::result::Result<Value, GraphqlError>> {
        let answer = self.http.send(&self.call(document, variables)?).await?;
        self.data(field, answer)
    }

    /// A mutation: like [`Paradime::query`], but never sent again once
    /// Paradime may have acted on it (see `HttpClient::send_mutation`).
    async fn mutate(
        &self,
        document: &str,
        field: &'static str,
        variables: Value,
    ) -> Result<std::result::Result<Value, GraphqlError>> {
        let answer = self
            .http
            .send_mutation(&self.call(document, variables)?)
            .await?;
        if answer.status.is_server_error() {
            bail!(
                "Paradime answered HTTP {} to {field}: {}; it may have acted on it, so it was not sent again",
                answer.status.as_u16(),
                answer.excerpt(&self.auth.secrets())
            );
        }
        self.data(field, answer)
    }

    fn call(&self, document: &str, variables: Value) -> Result<Call<'_>> {
        let body = serde_json::to_vec(&json!({ "query": document, "variables": variables }))
            .context("encoding the GraphQL request")?;
        Ok(Call {
            method: Method::POST,
            url: &self.endpoint,
            headers: self.auth.headers(),
            body: Some(body),
        })
    }

    /// `data.<field>` of an answer, Paradime's GraphQL error, or why neither.
    fn data(
        &self,
        field: &'static str,
        answer: Answer,
    ) -> Result<std::result::Result<Value, GraphqlError>> {
        let secrets = self.auth.secrets();
        match answer.status.as_u16() {
            200..=299 => {}
            401 | 403 => {
                let (what, check) = self.auth.rejected();
                bail!(
                    "Paradime rejected {what} (HTTP {}): check {check}",
                    answer.status.as_u16()
                )
            }
            _ => bail!(
                "Paradime answered HTTP {}: {}",
                answer.status,
                answer.excerpt(&secrets)
            ),
        }
        let v: Value = serde_json::from_slice(&answer.body).with_context(|| {
            format!(
                "Paradime's answer is not JSON: {}",
                answer.excerpt(&secrets)
            )
        })?;
        if let Some(errors) = v.get("errors").filter(|e| !e.is_null()) {
            // The SDK raises `errors[0].message`, or the whole list without one.
            let message = errors[0]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| errors.to_string());
            return Ok(Err(GraphqlError {
                field,
                message: scrub(&message, &secrets),
            }));
        }
        let data = &v["data"][field];
        anyhow::ensure!(!data.is_null(), "Paradime's answer has no {field}");
        Ok(Ok(data.clone()))
    }
}

/// A run's state from Bolt's word for it (`BoltRunState`); `None` for a word
/// the SDK does not know either. `STARTING` is in progress too, although the
/// SDK's CLI only waits while `RUNNING`.
fn bolt_state(word: &str) -> Option<RunState> {
    match word {
        "STARTING" | "RUNNING" => Some(RunState::InProgress),
        "SUCCESS" => Some(RunState::Passed),
        "ERROR" | "FAILED" | "CANCELED" | "SKIPPED" => Some(RunState::Failed(word.to_string())),
        _ => None,
    }
}

/// A run id as Paradime sends it: a number, or its text.
fn id_text(v: &Value) -> Option<String> {
    v.as_u64().map(|n| n.to_string()).or_else(|| {
        v.as_str()
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
    })
}

fn command_from(v: &Value) -> Option<BoltCommand> {
    let id = v["id"]
        .as_u64()
        .or_else(|| v["id"].as_str().and_then(|s| s.parse().ok()))?;
    let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
    Some(BoltCommand {
        id,
        command: text("command"),
        stdout: text("stdout"),
        stderr: text("stderr"),
        return_code: v["returnCode"].as_i64(),
    })
}

/// A command's log from the run query's `stdout` and `stderr` fields.
fn fields_log(c: &BoltCommand) -> String {
    match (c.stdout.trim().is_empty(), c.stderr.trim().is_empty()) {
        (_, true) => c.stdout.clone(),
        (true, false) => c.stderr.clone(),
        (false, false) => format!("{}\n{}", c.stdout.trim_end(), c.stderr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bolt_states_read_as_the_sdk_reads_them() {
        let check =
            |word: &str, want: Option<RunState>| assert_eq!(bolt_state(word), want, "{word}");
        check("STARTING", Some(RunState::InProgress));
        check("RUNNING", Some(RunState::InProgress));
        check("SUCCESS", Some(RunState::Passed));
        for failed in ["ERROR", "FAILED", "CANCELED", "SKIPPED"] {
            check(failed, Some(RunState::Failed(failed.into())));
        }
        check("running", None);
        check("QUEUED", None);
        check("", None);
    }

    #[test]
    fn the_credential_is_told_by_the_secrets_prefix_as_the_sdk_does() {
        let key = || Some(Secret::new("pk_1"));
        let uid = || Some("ws-uid-1".to_string());
        let check =
            |key: Option<Secret>,
             secret: &str,
             uid: Option<String>,
             want: std::result::Result<ParadimeAuth, MissingCredential>| {
                assert_eq!(
                    ParadimeAuth::from_parts(key, Secret::new(secret), uid),
                    want,
                    "{secret}"
                )
            };
        let legacy = ParadimeAuth::KeyAndSecret {
            key: Secret::new("pk_1"),
            secret: Secret::new("ps_2"),
        };
        check(key(), "ps_2", None, Ok(legacy.clone()));
        check(key(), "ps_2", uid(), Ok(legacy));
        check(None, "ps_2", uid(), Err(MissingCredential::ApiKey));
        let workspace = ParadimeAuth::WorkspaceToken(Secret::new("prdm_wsp_3"));
        check(None, "prdm_wsp_3", None, Ok(workspace.clone()));
        check(key(), "prdm_wsp_3", uid(), Ok(workspace));
        check(
            key(),
            "prdm_cmp_4",
            uid(),
            Ok(ParadimeAuth::CompanyToken {
                token: Secret::new("prdm_cmp_4"),
                workspace_uid: "ws-uid-1".into(),
            }),
        );
        check(
            key(),
            "prdm_cmp_4",
            None,
            Err(MissingCredential::WorkspaceUid),
        );
    }

    #[test]
    fn each_credential_sends_the_sdks_headers() {
        let names = |auth: ParadimeAuth| -> Vec<(&'static str, String, bool)> { auth.headers() };
        assert_eq!(
            names(ParadimeAuth::KeyAndSecret {
                key: Secret::new("k"),
                secret: Secret::new("s"),
            }),
            [
                ("x-api-key", "k".to_string(), true),
                ("x-api-secret", "s".to_string(), true)
            ]
        );
        assert_eq!(
            names(ParadimeAuth::WorkspaceToken(Secret::new("prdm_wsp_1"))),
            [("authorization", "Bearer prdm_wsp_1".to_string(), true)]
        );
        assert_eq!(
            names(ParadimeAuth::CompanyToken {
                token: Secret::new("prdm_cmp_1"),
                workspace_uid: "uid".into(),
            }),
            [
                ("authorization", "Bearer prdm_cmp_1".to_string(), true),
                ("x-paradime-workspace", "uid".to_string(), false)
            ]
        );
    }
}
