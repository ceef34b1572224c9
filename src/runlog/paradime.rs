//! The Paradime Bolt run-log source: a run's commands by run id, then the
//! failing command's log lines, paged by cursor, over Paradime's GraphQL API.
//!
//! Every call is a `POST` of `{"query": …, "variables": …}` to
//! `PARADIME_API_ENDPOINT` with the headers `X-API-KEY` and `X-API-SECRET`,
//! as Paradime's Python SDK (`paradime.client.api_client`) sends them.
//!
//! The run query is the SDK's own (`list_run_commands`):
//! `boltRunStatus(runId: Int!) { state commands { id command startDttm endDttm
//! stdout stderr returnCode } }`. **Assumption:** the SDK has no call for a
//! command's paged log, so the paging query is our design from the documented
//! facts (lines `{stream: STDOUT|STDERR, line}`, a cursor, a `finished` flag):
//! `boltCommand(commandId: Int!) { logs(cursor: String) { lines { stream line }
//! cursor finished } }`. If Paradime answers that query with GraphQL errors,
//! the command's `stdout` and `stderr` fields from the run query are used
//! instead, so a wrong guess costs paging, not the run log.
//!
//! The console text is the failing command's log (the first with a non-zero
//! return code), or every command's log when none failed; `command.txt` is
//! the failing command. The API key and secret only ever go into the two
//! request headers; errors quote Paradime's messages with both scrubbed.

use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::{json, Value};
use tracing::warn;

use super::http::{host_of, numeric_run_id, scrub, Call, HttpClient, RetryPolicy};
use super::{parse, Artifacts, RunLog};
use crate::domain::Secret;

/// The run and its commands (the SDK's query, plus `ok` and `state`).
pub const RUN_STATUS_QUERY: &str = "query BoltRunStatus($runId: Int!) { boltRunStatus(runId: $runId) { ok state commands { id command startDttm endDttm stdout stderr returnCode } } }";

/// One page of a command's log (our assumption; see the module docs).
pub const COMMAND_LOGS_QUERY: &str = "query BoltCommandLogs($commandId: Int!, $cursor: String) { boltCommand(commandId: $commandId) { logs(cursor: $cursor) { lines { stream line } cursor finished } } }";

/// At most this many pages are read per command: a log that never finishes
/// (a command still running) must not hold a session forever.
const MAX_PAGES: usize = 2_000;

/// At most this much log text is kept per command; the failure is at the end,
/// so the oldest lines are dropped first.
const MAX_LOG_BYTES: usize = 8 * 1024 * 1024;

/// How to reach Paradime's API (`PARADIME_API_ENDPOINT`, `PARADIME_API_KEY`,
/// `PARADIME_API_SECRET`, the SDK's variable names).
#[derive(Debug, Clone, PartialEq)]
pub struct ParadimeSettings {
    /// The workspace's GraphQL endpoint, from Paradime's API key settings.
    pub endpoint: String,
    pub api_key: Secret,
    pub api_secret: Secret,
}

/// A Paradime workspace's Bolt runs, reached over GraphQL.
#[derive(Clone)]
pub struct Paradime {
    endpoint: String,
    api_key: Secret,
    api_secret: Secret,
    http: HttpClient,
}

impl std::fmt::Debug for Paradime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paradime")
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key)
            .field("api_secret", &self.api_secret)
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
            api_key: settings.api_key.clone(),
            api_secret: settings.api_secret.clone(),
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
        let (data, errors) = self
            .gql(RUN_STATUS_QUERY, json!({ "runId": id }))
            .await
            .with_context(|| format!("asking Paradime for Bolt run {id}"))?;
        let run = &data["boltRunStatus"];
        if run.is_null() || !errors.is_empty() {
            bail!(
                "Paradime has no Bolt run {id}{}",
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(": {}", errors.join("; "))
                }
            );
        }
        let state = run["state"].as_str().unwrap_or("UNKNOWN").to_string();
        let mut commands: Vec<BoltCommand> = run["commands"]
            .as_array()
            .map(|cs| cs.iter().filter_map(command_from).collect())
            .unwrap_or_default();
        // The SDK sorts by id: ids follow the order the commands ran in.
        commands.sort_by_key(|c| c.id);
        anyhow::ensure!(
            !commands.is_empty(),
            "Paradime Bolt run {id} ({state}) has no commands yet"
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
            warn!(run = id, %state, "no command of the Paradime run failed; kept every command's log");
        }
        Ok(log)
    }

    /// Every log line of command `id`, paged by cursor; `None` when Paradime
    /// does not answer the paging query (see the module docs).
    async fn command_log(&self, id: u64) -> Result<Option<String>> {
        let mut out = String::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let (data, errors) = self
                .gql(
                    COMMAND_LOGS_QUERY,
                    json!({ "commandId": id, "cursor": cursor }),
                )
                .await
                .with_context(|| format!("reading the log of Paradime command {id}"))?;
            let logs = &data["boltCommand"]["logs"];
            if logs.is_null() || !errors.is_empty() {
                warn!(command = id, errors = %errors.join("; "), "Paradime did not page the command log; using its stdout and stderr");
                return Ok(None);
            }
            let lines = logs["lines"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            for l in lines {
                out.push_str(l["line"].as_str().unwrap_or(""));
                out.push('\n');
            }
            if out.len() > 2 * MAX_LOG_BYTES {
                let mut cut = out.len() - MAX_LOG_BYTES;
                while !out.is_char_boundary(cut) {
                    cut += 1;
                }
                out.drain(..cut);
            }
            let next = logs["cursor"].as_str().map(str::to_string);
            let finished = logs["finished"].as_bool().unwrap_or(true);
            let stuck = next.is_none() || (lines.is_empty() && next == cursor);
            if finished || stuck {
                return Ok(Some(out));
            }
            cursor = next;
        }
        warn!(
            command = id,
            pages = MAX_PAGES,
            "Paradime command log still unfinished; keeping what was read"
        );
        Ok(Some(out))
    }

    /// One GraphQL call: the `data` object and the `errors` messages. HTTP
    /// failures (after retries) are errors; GraphQL errors are the caller's to judge.
    async fn gql(&self, query: &str, variables: Value) -> Result<(Value, Vec<String>)> {
        let body = serde_json::to_vec(&json!({ "query": query, "variables": variables }))
            .context("encoding the GraphQL request")?;
        let call = Call {
            method: Method::POST,
            url: &self.endpoint,
            headers: vec![
                ("x-api-key", self.api_key.expose().to_string(), true),
                ("x-api-secret", self.api_secret.expose().to_string(), true),
            ],
            body: Some(body),
        };
        let answer = self.http.send(&call).await?;
        let secrets = [self.api_key.expose(), self.api_secret.expose()];
        match answer.status.as_u16() {
            200..=299 => {}
            401 | 403 => bail!(
                "Paradime rejected the API key and secret (HTTP {}): check PARADIME_API_KEY and PARADIME_API_SECRET",
                answer.status.as_u16()
            ),
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
        let errors = v["errors"]
            .as_array()
            .map(|es| {
                es.iter()
                    .map(|e| scrub(e["message"].as_str().unwrap_or("unknown error"), &secrets))
                    .collect()
            })
            .unwrap_or_default();
        Ok((v["data"].clone(), errors))
    }
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
