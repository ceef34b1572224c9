//! A local fake of Paradime's GraphQL API for Bolt run logs, over loopback, for
//! tests, the demo and benchmarks.
//!
//! Start one with [`FakeParadime::start`], script runs with
//! [`FakeParadime::add_run`], point selfheal's `runlog::Paradime` at
//! [`FakeParadime::endpoint`], then assert on [`FakeParadime::requests`] and
//! inject trouble with [`FakeParadime::fail_next`].
//!
//! What it owns: an HTTP listener on `127.0.0.1:0`, scripted runs in memory,
//! and a record of every request (the `X-API-KEY` and `X-API-SECRET` values are
//! not kept, only whether they were right).
//!
//! What it answers (`POST /api/v1/graphql`, `{"query", "variables"}`), told
//! apart by the root field the query selects — it is not a GraphQL parser:
//! - `boltRunStatus(runId)`: `{ok, state, commands[{id, command, startDttm,
//!   endDttm, stdout, stderr, returnCode}]}`, or `null` with an error for an
//!   unknown run;
//! - `boltCommand(commandId) { logs(cursor) }`: `{lines[{stream, line}], cursor,
//!   finished}`, [`FakeParadime::set_page_size`] lines a page (the paging shape
//!   selfheal assumes; see `runlog::paradime`);
//! - anything else: a GraphQL error, like a schema would give.
//!
//! Wrong or missing credentials answer 401. It does no TLS and no rate limiting.

use crate::server::LocalServer;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// The path the fake serves GraphQL on.
pub const GRAPHQL_PATH: &str = "/api/v1/graphql";

/// A running fake. Dropping it stops the server.
pub struct FakeParadime {
    addr: SocketAddr,
    state: Arc<Mutex<Inner>>,
    server: LocalServer,
}

/// Which stream a log line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "STDOUT",
            LogStream::Stderr => "STDERR",
        }
    }
}

/// One command of a scripted Bolt run.
#[derive(Debug, Clone)]
pub struct FakeCommand {
    pub id: u64,
    pub command: String,
    /// `None` while the command runs.
    pub return_code: Option<i32>,
    pub lines: Vec<(LogStream, String)>,
}

impl FakeCommand {
    /// A finished command whose output is `text`, one STDOUT line per line.
    pub fn stdout(id: u64, command: &str, return_code: i32, text: &str) -> FakeCommand {
        FakeCommand {
            id,
            command: command.to_string(),
            return_code: Some(return_code),
            lines: text
                .lines()
                .map(|l| (LogStream::Stdout, l.to_string()))
                .collect(),
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Lower-case names; `x-api-key` and `x-api-secret` are left out.
    pub headers: BTreeMap<String, String>,
    /// Both credentials present and right.
    pub authorized: bool,
    /// The GraphQL operation's root field (`boltRunStatus`, `boltCommand`), if any.
    pub field: Option<String>,
    pub body: String,
}

impl RecordedRequest {
    /// The request's GraphQL `variables`.
    pub fn variables(&self) -> Value {
        serde_json::from_str::<Value>(&self.body)
            .map(|v| v["variables"].clone())
            .unwrap_or(Value::Null)
    }
}

struct Run {
    state: String,
    commands: Vec<FakeCommand>,
}

struct Inner {
    key: String,
    secret: String,
    runs: BTreeMap<u64, Run>,
    page_size: usize,
    logs_supported: bool,
    requests: Vec<RecordedRequest>,
    failures: VecDeque<u16>,
}

impl FakeParadime {
    /// Starts a fake that accepts `X-API-KEY: key` and `X-API-SECRET: secret`.
    pub async fn start(key: &str, secret: &str) -> anyhow::Result<FakeParadime> {
        let (listener, addr) = LocalServer::bind("fake Paradime").await?;
        let state = Arc::new(Mutex::new(Inner {
            key: key.to_string(),
            secret: secret.to_string(),
            runs: BTreeMap::new(),
            page_size: 100,
            logs_supported: true,
            requests: Vec::new(),
            failures: VecDeque::new(),
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let server = LocalServer::serve(listener, app, "fake Paradime");
        Ok(FakeParadime {
            addr,
            state,
            server,
        })
    }

    /// `http://127.0.0.1:PORT/api/v1/graphql`, for `PARADIME_API_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}{GRAPHQL_PATH}", self.addr)
    }

    /// Scripts Bolt run `run_id` in `state` (`FAILED`, `ERROR`, `RUNNING`, …).
    pub fn add_run(&self, run_id: u64, state: &str, commands: Vec<FakeCommand>) {
        self.lock().runs.insert(
            run_id,
            Run {
                state: state.to_string(),
                commands,
            },
        );
    }

    /// How many log lines one page holds (default 100, at least 1).
    pub fn set_page_size(&self, lines: usize) {
        self.lock().page_size = lines.max(1);
    }

    /// Answers the log-paging query with a schema error, as an API without
    /// that field would; the run query's `stdout`/`stderr` still work.
    pub fn without_log_paging(&self) {
        self.lock().logs_supported = false;
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The next `times` requests answer `status` (e.g. 502, 429) before anything else.
    pub fn fail_next(&self, status: u16, times: usize) {
        let mut inner = self.lock();
        inner.failures.extend(std::iter::repeat_n(status, times));
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        self.server.stop().await;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.state)
    }
}

/// A poisoned lock only means a test panicked mid-request; the data is still usable.
fn lock(state: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The root field a query selects: the first `name(` or `name {` after the
/// operation's opening brace.
fn root_field(query: &str) -> Option<String> {
    let body = &query[query.find('{')? + 1..];
    let name: String = body
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

async fn handle(
    State(state): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let request: Value = serde_json::from_str(&body_text).unwrap_or(Value::Null);
    let query = request["query"].as_str().unwrap_or("");
    let field = root_field(query);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());

    let mut inner = lock(&state);
    let authorized = header("x-api-key") == Some(inner.key.as_str())
        && header("x-api-secret") == Some(inner.secret.as_str());
    inner.requests.push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .filter(|(name, _)| *name != "x-api-key" && *name != "x-api-secret")
            .map(|(name, value)| {
                (
                    name.to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        authorized,
        field: field.clone(),
        body: body_text,
    });
    if let Some(status) = inner.failures.pop_front() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return json_response(
            status,
            json!({ "errors": [{ "message": status.canonical_reason().unwrap_or("error") }] }),
        );
    }
    if uri.path() != GRAPHQL_PATH {
        return json_response(StatusCode::NOT_FOUND, json!({ "detail": "Not Found" }));
    }
    if method != Method::POST {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({ "detail": "Method Not Allowed" }),
        );
    }
    if !authorized {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({ "errors": [{ "message": "Invalid API key or secret" }] }),
        );
    }
    let vars = &request["variables"];
    match field.as_deref() {
        Some("boltRunStatus") => {
            let Some(run) = vars["runId"].as_u64().and_then(|id| inner.runs.get(&id)) else {
                return gql_error("boltRunStatus", "Run not found");
            };
            let commands: Vec<Value> = run.commands.iter().map(command_json).collect();
            data(json!({ "boltRunStatus": {
                "ok": true,
                "state": run.state,
                "commands": commands,
            }}))
        }
        Some("boltCommand") if !query.contains("logs") => {
            gql_error("boltCommand", "the fake answers only `logs` on boltCommand")
        }
        Some("boltCommand") if !inner.logs_supported => json_response(
            StatusCode::OK,
            json!({ "errors": [{ "message": "Cannot query field \"logs\" on type \"BoltCommand\"." }] }),
        ),
        Some("boltCommand") => {
            let id = vars["commandId"].as_u64();
            let Some(command) = inner
                .runs
                .values()
                .flat_map(|r| r.commands.iter())
                .find(|c| Some(c.id) == id)
            else {
                return gql_error("boltCommand", "Command not found");
            };
            let start = match vars["cursor"].as_str() {
                None => 0,
                Some(c) => match c
                    .strip_prefix("line:")
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    Some(n) if n <= command.lines.len() => n,
                    _ => return gql_error("boltCommand", "Invalid cursor"),
                },
            };
            let end = (start + inner.page_size).min(command.lines.len());
            let lines: Vec<Value> = command.lines[start..end]
                .iter()
                .map(|(stream, line)| json!({ "stream": stream.as_str(), "line": line }))
                .collect();
            let finished = end == command.lines.len() && command.return_code.is_some();
            data(json!({ "boltCommand": { "logs": {
                "lines": lines,
                "cursor": format!("line:{end}"),
                "finished": finished,
            }}}))
        }
        Some(other) => json_response(
            StatusCode::OK,
            json!({ "errors": [{ "message": format!("Cannot query field \"{other}\" on type \"Query\".") }] }),
        ),
        None => json_response(
            StatusCode::BAD_REQUEST,
            json!({ "errors": [{ "message": "Must provide query string." }] }),
        ),
    }
}

fn command_json(c: &FakeCommand) -> Value {
    let text = |stream: LogStream| {
        c.lines
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, l)| format!("{l}\n"))
            .collect::<String>()
    };
    json!({
        "id": c.id,
        "command": c.command,
        "startDttm": "2024-05-01 04:20:44",
        "endDttm": c.return_code.map(|_| "2024-05-01 04:20:52"),
        "stdout": text(LogStream::Stdout),
        "stderr": text(LogStream::Stderr),
        "returnCode": c.return_code,
    })
}

fn data(value: Value) -> Response {
    json_response(StatusCode::OK, json!({ "data": value }))
}

fn gql_error(field: &str, message: &str) -> Response {
    json_response(
        StatusCode::OK,
        json!({
            "data": { field: Value::Null },
            "errors": [{ "message": message, "path": [field] }],
        }),
    )
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_field_is_the_first_selection() {
        assert_eq!(
            root_field("query X($a: Int!) { boltRunStatus(runId: $a) { ok } }").as_deref(),
            Some("boltRunStatus")
        );
        assert_eq!(
            root_field("{ boltCommand { id } }").as_deref(),
            Some("boltCommand")
        );
        assert_eq!(root_field("nothing"), None);
    }
}
