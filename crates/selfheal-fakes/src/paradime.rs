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

use std::collections::BTreeMap;
use std::sync::MutexGuard;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::server::{
    self, AuthSeen, Credentials, Gate, HttpFake, RecordedRequest, Request, Shared,
};

/// The path the fake serves GraphQL on.
pub const GRAPHQL_PATH: &str = "/api/v1/graphql";

/// A running fake. Dropping it stops the server.
pub struct FakeParadime {
    fake: HttpFake<Inner>,
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

/// What a GraphQL request recorded by any fake asked for (this one's are
/// asserted on by their root field and variables).
impl RecordedRequest {
    /// The GraphQL operation's root field (`boltRunStatus`, `boltCommand`), if any.
    pub fn field(&self) -> Option<String> {
        root_field(self.json()?["query"].as_str()?)
    }

    /// The request's GraphQL `variables`.
    pub fn variables(&self) -> Value {
        self.json()
            .map(|v| v["variables"].clone())
            .unwrap_or(Value::Null)
    }
}

struct Run {
    state: String,
    commands: Vec<FakeCommand>,
}

struct Inner {
    /// `X-API-KEY` and `X-API-SECRET`; injected statuses.
    gate: Gate<u16>,
    runs: BTreeMap<u64, Run>,
    page_size: usize,
    logs_supported: bool,
}

impl FakeParadime {
    /// Starts a fake that accepts `X-API-KEY: key` and `X-API-SECRET: secret`.
    pub async fn start(key: &str, secret: &str) -> anyhow::Result<FakeParadime> {
        let credentials = Credentials::Headers(vec![
            ("x-api-key", key.to_string()),
            ("x-api-secret", secret.to_string()),
        ]);
        let inner = Inner {
            gate: Gate::new(credentials),
            runs: BTreeMap::new(),
            page_size: 100,
            logs_supported: true,
        };
        let fake = HttpFake::start("fake Paradime", inner, handle).await?;
        Ok(FakeParadime { fake })
    }

    /// `http://127.0.0.1:PORT/api/v1/graphql`, for `PARADIME_API_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("{}{GRAPHQL_PATH}", self.fake.base_url())
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
        self.lock().gate.requests()
    }

    /// The next `times` requests answer `status` (e.g. 502, 429) before anything else.
    pub fn fail_next(&self, status: u16, times: usize) {
        self.lock().gate.fail_next(status, times);
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        self.fake.shutdown().await;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.fake.lock()
    }
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

async fn handle(State(shared): State<Shared<Inner>>, req: Request) -> Response {
    let request: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let query = request["query"].as_str().unwrap_or("");
    let field = root_field(query);

    let mut inner = shared.lock();
    let (auth, failure) = inner.gate.admit(&req);
    if let Some(status) = failure {
        let status = server::status(status);
        return server::json(
            status,
            json!({ "errors": [{ "message": status.canonical_reason().unwrap_or("error") }] }),
        );
    }
    if req.uri.path() != GRAPHQL_PATH {
        return server::json(StatusCode::NOT_FOUND, json!({ "detail": "Not Found" }));
    }
    if req.method != Method::POST {
        return server::json(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({ "detail": "Method Not Allowed" }),
        );
    }
    if auth != AuthSeen::Valid {
        return server::json(
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
        Some("boltCommand") if !inner.logs_supported => server::json(
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
        Some(other) => server::json(
            StatusCode::OK,
            json!({ "errors": [{ "message": format!("Cannot query field \"{other}\" on type \"Query\".") }] }),
        ),
        None => server::json(
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
    server::json(StatusCode::OK, json!({ "data": value }))
}

fn gql_error(field: &str, message: &str) -> Response {
    server::json(
        StatusCode::OK,
        json!({
            "data": { field: Value::Null },
            "errors": [{ "message": message, "path": [field] }],
        }),
    )
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
