//! A local fake of Paradime's GraphQL API for Bolt runs, over loopback, for
//! tests, the demo and benchmarks.
//!
//! Start one with [`FakeParadime::start`] (a legacy key and secret) or
//! [`FakeParadime::start_accepting`] (the credentials of your choice), script
//! runs with [`FakeParadime::add_run`] (and [`FakeParadime::in_schedule`]),
//! say how a retry's run ends with [`FakeParadime::on_retry`], point
//! selfheal's `runlog::Paradime` at [`FakeParadime::endpoint`], then assert on
//! [`FakeParadime::requests`], [`FakeParadime::retry_calls`] and
//! [`FakeParadime::retries_of`]. Inject trouble with
//! [`FakeParadime::fail_next`] (an HTTP status) and
//! [`FakeParadime::graphql_error_next`] (an HTTP 200 with `errors`).
//!
//! It speaks only what Paradime's Python SDK sends
//! (`paradime/apis/bolt/client.py`): a request's `query` must be one of the
//! SDK's documents (compared with runs of whitespace collapsed), and its
//! `variables` must carry the document's variables with their types (`Int!`
//! a 32-bit integer that must be given, `String` a string or null) and no
//! others. Anything else is answered as a GraphQL server answers a document
//! its schema lacks: HTTP 200 with `{"errors": [{"message": "Cannot query
//! field …"}]}`. The documents are transcribed here from the SDK, not shared
//! with selfheal's client, so that the client is checked against a second,
//! independent copy.
//!
//! What it answers (`POST /api/v1/graphql`):
//! - `boltRunStatus(runId)`, selecting `state` or `commands{…}` (the SDK's
//!   two documents): each request is a status poll of the run;
//! - `boltCommandLogs(commandId, cursor)`: `{lines[{stream, line}], cursor,
//!   finished}`, [`FakeParadime::set_page_size`] lines a page from the
//!   SDK's first cursor `"0:0"` on; the cursor counts each stream's lines
//!   (`"<stdout>:<stderr>"`), a page lists its stdout lines before its stderr
//!   lines (the SDK warns of this), and each line ends with its newline (the
//!   SDK's CLI prints lines without adding one);
//! - `retryBoltRun(scheduleRunId)` (the failed commands, the first failed dbt
//!   command as `dbt retry`), `retryAllBoltRun(scheduleRunId)` (every command
//!   but git clone and dbt deps), `retryBoltRunFromFailure(slug)` (the
//!   schedule's latest run): `{runId}` of a NEW run whose
//!   `parentScheduleRunId` is the retried run. Only a `FAILED` or `ERROR` run
//!   is retried; any other is refused with a GraphQL error;
//! - `listBoltRuns(slug, offset, limit)`: `{ok, runs[…]}`, newest first,
//!   `limit` 1..=1000.
//!
//! Wrong or missing credentials answer 401. It does no TLS and no rate limiting.

use std::collections::{BTreeMap, VecDeque};
use std::sync::MutexGuard;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

pub use crate::retry::FinalState;
use crate::retry::{Phase, Progress, Retries};
use crate::server::{
    self, AuthSeen, Credentials, Gate, HttpFake, RecordedRequest, Request, Shared,
};

/// The path the fake serves GraphQL on.
pub const GRAPHQL_PATH: &str = "/api/v1/graphql";

/// A running fake. Dropping it stops the server.
pub struct FakeParadime {
    fake: HttpFake<Inner>,
}

/// A credential the fake accepts, in one of the SDK's three forms.
#[derive(Debug, Clone)]
pub enum ParadimeCredential {
    /// `X-API-KEY` and `X-API-SECRET`.
    KeyAndSecret { key: String, secret: String },
    /// `Authorization: Bearer prdm_wsp_…`.
    WorkspaceToken(String),
    /// `Authorization: Bearer prdm_cmp_…` with `X-Paradime-Workspace: <uid>`.
    CompanyToken {
        token: String,
        workspace_uid: String,
    },
}

impl ParadimeCredential {
    fn credentials(&self) -> Credentials {
        match self {
            ParadimeCredential::KeyAndSecret { key, secret } => Credentials::Headers(vec![
                ("x-api-key", key.clone()),
                ("x-api-secret", secret.clone()),
            ]),
            ParadimeCredential::WorkspaceToken(token) => Credentials::bearer(token),
            ParadimeCredential::CompanyToken {
                token,
                workspace_uid,
            } => Credentials::Headers(vec![
                ("authorization", format!("Bearer {token}")),
                ("x-paradime-workspace", workspace_uid.clone()),
            ]),
        }
    }
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

    /// Infrastructure commands, which Bolt's retries skip.
    fn is_infrastructure(&self) -> bool {
        let c = self.command.trim();
        c.starts_with("git clone") || c.starts_with("dbt deps")
    }
}

/// What a GraphQL request recorded by any fake asked for (this one's are
/// asserted on by their root field and variables).
impl RecordedRequest {
    /// The GraphQL operation's root field (`boltRunStatus`, `retryBoltRun`), if any.
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

/// Where a run stands.
enum Status {
    /// As scripted (`FAILED`, `SUCCESS`, `RUNNING`, …), for good.
    Scripted(String),
    /// Started by a retry: in progress for some polls, then its final state.
    Retrying(Progress),
}

struct Run {
    status: Status,
    commands: Vec<FakeCommand>,
    /// The schedule's slug, for `retryBoltRunFromFailure` and `listBoltRuns`.
    slug: Option<String>,
}

impl Run {
    /// The state a listing shows (not a poll).
    fn state(&self) -> String {
        match &self.status {
            Status::Scripted(state) => state.clone(),
            Status::Retrying(p) => phase_word(p.peek()).to_string(),
        }
    }

    /// The state a status poll sees; a retry's run counts the poll.
    fn poll(&mut self) -> String {
        match &mut self.status {
            Status::Scripted(state) => state.clone(),
            Status::Retrying(p) => phase_word(p.poll()).to_string(),
        }
    }

    fn running(&self) -> bool {
        matches!(&self.status, Status::Retrying(p) if matches!(p.peek(), Phase::InProgress { .. }))
    }
}

struct Inner {
    /// The accepted credentials; injected statuses.
    gate: Gate<u16>,
    runs: BTreeMap<u64, Run>,
    page_size: usize,
    retries: Retries,
    /// GraphQL errors to answer next, by root field.
    graphql_errors: VecDeque<(String, String)>,
}

impl FakeParadime {
    /// Starts a fake that accepts `X-API-KEY: key` and `X-API-SECRET: secret`.
    pub async fn start(key: &str, secret: &str) -> anyhow::Result<FakeParadime> {
        Self::start_accepting(&[ParadimeCredential::KeyAndSecret {
            key: key.to_string(),
            secret: secret.to_string(),
        }])
        .await
    }

    /// Starts a fake that accepts any of `credentials` (and nothing else).
    pub async fn start_accepting(
        credentials: &[ParadimeCredential],
    ) -> anyhow::Result<FakeParadime> {
        let kinds = credentials.iter().map(|c| c.credentials()).collect();
        let inner = Inner {
            gate: Gate::new(Credentials::AnyOf(kinds)),
            runs: BTreeMap::new(),
            page_size: 100,
            retries: Retries::default(),
            graphql_errors: VecDeque::new(),
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
                status: Status::Scripted(state.to_string()),
                commands,
                slug: None,
            },
        );
    }

    /// Puts run `run_id` in the schedule `slug` (for `retryBoltRunFromFailure`
    /// and `listBoltRuns`).
    pub fn in_schedule(&self, run_id: u64, slug: &str) {
        if let Some(run) = self.lock().runs.get_mut(&run_id) {
            run.slug = Some(slug.to_string());
        }
    }

    /// The run a retry of `run_id` starts is `STARTING`, then `RUNNING`, for
    /// `after_polls` status polls, then `ends` for good. Without this, it
    /// fails again the way `run_id` did, after one poll.
    pub fn on_retry(&self, run_id: u64, ends: FinalState, after_polls: usize) {
        self.lock().retries.plan(run_id, ends, after_polls);
    }

    /// How many log lines one page holds (default 100, at least 1).
    pub fn set_page_size(&self, lines: usize) {
        self.lock().page_size = lines.max(1);
    }

    /// The next request (with a valid document) selecting `field`
    /// (`boltCommandLogs`, `retryBoltRun`, …) answers HTTP 200 with
    /// `{"data": {field: null}, "errors": [{"message": message}]}`.
    pub fn graphql_error_next(&self, field: &str, message: &str) {
        self.lock()
            .graphql_errors
            .push_back((field.to_string(), message.to_string()));
    }

    /// How many retry mutations (of any of the three) reached the API with
    /// a valid document, refused ones included.
    pub fn retry_calls(&self) -> usize {
        self.lock().retries.calls()
    }

    /// The runs started by retries of `run_id`, oldest first.
    pub fn retries_of(&self, run_id: u64) -> Vec<u64> {
        self.lock().retries.of(run_id)
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

/// What a document asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    RunState,
    RunCommands,
    CommandLogs,
    Retry,
    RetryAll,
    RetryFromFailure,
    ListRuns,
}

/// One of the SDK's documents: its root field, its text with whitespace
/// collapsed, and its variables with their GraphQL types.
struct Document {
    operation: Operation,
    field: &'static str,
    text: &'static str,
    variables: &'static [(&'static str, &'static str)],
}

/// The documents of Paradime's Python SDK (`paradime/apis/bolt/client.py`)
/// that the fake answers.
const DOCUMENTS: &[Document] = &[
    Document {
        operation: Operation::RunState,
        field: "boltRunStatus",
        text: "query boltRunStatus($runId: Int!) { boltRunStatus(runId: $runId) { state } }",
        variables: &[("runId", "Int!")],
    },
    Document {
        operation: Operation::RunCommands,
        field: "boltRunStatus",
        text: "query boltRunStatus($runId: Int!) { boltRunStatus(runId: $runId) { commands { id command startDttm endDttm stdout stderr returnCode } } }",
        variables: &[("runId", "Int!")],
    },
    Document {
        operation: Operation::CommandLogs,
        field: "boltCommandLogs",
        text: "query boltCommandLogs($commandId: Int!, $cursor: String) { boltCommandLogs(commandId: $commandId, cursor: $cursor) { lines { stream line } cursor finished } }",
        variables: &[("commandId", "Int!"), ("cursor", "String")],
    },
    Document {
        operation: Operation::Retry,
        field: "retryBoltRun",
        text: "mutation RetryBoltRun($scheduleRunId: Int!) { retryBoltRun(scheduleRunId: $scheduleRunId) { runId } }",
        variables: &[("scheduleRunId", "Int!")],
    },
    Document {
        operation: Operation::RetryAll,
        field: "retryAllBoltRun",
        text: "mutation RetryAllBoltRun($scheduleRunId: Int!) { retryAllBoltRun(scheduleRunId: $scheduleRunId) { runId } }",
        variables: &[("scheduleRunId", "Int!")],
    },
    Document {
        operation: Operation::RetryFromFailure,
        field: "retryBoltRunFromFailure",
        text: "mutation RetryBoltRunFromFailure($slug: String) { retryBoltRunFromFailure(slug: $slug) { runId } }",
        variables: &[("slug", "String")],
    },
    Document {
        operation: Operation::ListRuns,
        field: "listBoltRuns",
        text: "query listBoltRuns($slug: String, $offset: Int!, $limit: Int!) { listBoltRuns(slug: $slug, offset: $offset, limit: $limit) { ok runs { id state actor actorEmail startDttm endDttm parentScheduleRunId gitInfo { branch commitHash pullRequestId } } } }",
        variables: &[("slug", "String"), ("offset", "Int!"), ("limit", "Int!")],
    },
];

/// `text` with every run of whitespace made one space, trimmed.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The SDK document `query` is, after collapsing whitespace.
fn document(query: &str) -> Option<&'static Document> {
    let query = collapse(query);
    DOCUMENTS.iter().find(|d| d.text == query)
}

/// Why `query` is not one of the SDK's documents, as a schema would say it:
/// the root field the fake does not know, or the first name in the
/// selection that no SDK document of that root field has.
fn unknown_document(query: &str) -> String {
    let root_type = if query.trim_start().starts_with("mutation") {
        "Mutation"
    } else {
        "Query"
    };
    let Some(root) = root_field(query) else {
        return "Syntax Error: Expected a selection set.".into();
    };
    let same_root: Vec<&Document> = DOCUMENTS.iter().filter(|d| d.field == root).collect();
    if same_root.is_empty() {
        return format!("Cannot query field \"{root}\" on type \"{root_type}\".");
    }
    let selection = &query[query.find('{').unwrap_or(0)..];
    let known = |name: &str| same_root.iter().any(|d| names(d.text).any(|n| n == name));
    match names(selection).find(|n| !known(n)) {
        Some(name) => format!("Cannot query field \"{name}\" on \"{root}\"."),
        None => format!(
            "This {root} document is not one Paradime's Python SDK sends; the fake answers only those."
        ),
    }
}

/// The names in a GraphQL text, variables (`$x`) left out.
fn names(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
        .filter(|w| !w.is_empty() && !w.starts_with('$'))
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

/// Checks `variables` against the document's, as a GraphQL server checks
/// them (and stricter: an undeclared variable is refused too).
fn check_variables(doc: &Document, variables: &Value) -> Result<(), String> {
    let empty = Map::new();
    let given = match variables {
        Value::Object(map) => map,
        Value::Null => &empty,
        other => {
            return Err(format!(
                "Variables must be provided as an Object, got {other}."
            ))
        }
    };
    for name in given.keys() {
        if !doc.variables.iter().any(|(n, _)| n == name) {
            return Err(format!(
                "Variable \"${name}\" is not defined by operation \"{}\".",
                doc.field
            ));
        }
    }
    for (name, ty) in doc.variables {
        let value = given.get(*name).unwrap_or(&Value::Null);
        let required = ty.ends_with('!');
        let valid = match (ty.trim_end_matches('!'), value) {
            (_, Value::Null) => !required,
            ("Int", v) => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            ("String", v) => v.is_string(),
            _ => false,
        };
        if !valid {
            return Err(match value {
                Value::Null => {
                    format!("Variable \"${name}\" of required type \"{ty}\" was not provided.")
                }
                v => format!(
                    "Variable \"${name}\" got invalid value {v}; {} cannot represent {v}.",
                    ty.trim_end_matches('!')
                ),
            });
        }
    }
    Ok(())
}

async fn handle(State(shared): State<Shared<Inner>>, req: Request) -> Response {
    let request: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);

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
            json!({ "errors": [{ "message": "Invalid API credentials" }] }),
        );
    }
    let Some(query) = request["query"].as_str() else {
        return server::json(
            StatusCode::BAD_REQUEST,
            json!({ "errors": [{ "message": "Must provide query string." }] }),
        );
    };
    let Some(doc) = document(query) else {
        return errors(&unknown_document(query));
    };
    let vars = &request["variables"];
    if let Err(message) = check_variables(doc, vars) {
        return errors(&message);
    }
    if let Some(at) = inner
        .graphql_errors
        .iter()
        .position(|(field, _)| field == doc.field)
    {
        let (_, message) = inner
            .graphql_errors
            .remove(at)
            .expect("found at this index");
        return gql_error(doc.field, &message);
    }
    let int = |name: &str| vars[name].as_u64().unwrap_or(0);
    let answer = match doc.operation {
        Operation::RunState | Operation::RunCommands => {
            let Some(run) = inner.runs.get_mut(&int("runId")) else {
                return gql_error(doc.field, "Run not found");
            };
            let state = run.poll();
            match doc.operation {
                Operation::RunState => json!({ "state": state }),
                _ => {
                    let running = run.running();
                    let commands: Vec<Value> = run
                        .commands
                        .iter()
                        .map(|c| command_json(c, running))
                        .collect();
                    json!({ "commands": commands })
                }
            }
        }
        Operation::CommandLogs => {
            match command_logs(&inner, int("commandId"), vars["cursor"].as_str()) {
                Ok(page) => page,
                Err(message) => return gql_error(doc.field, message),
            }
        }
        Operation::Retry | Operation::RetryAll => {
            inner.retries.count_call();
            let all = doc.operation == Operation::RetryAll;
            match retry(&mut inner, int("scheduleRunId"), all) {
                Ok(new) => json!({ "runId": new }),
                Err(message) => return gql_error(doc.field, &message),
            }
        }
        Operation::RetryFromFailure => {
            inner.retries.count_call();
            let slug = vars["slug"].as_str().unwrap_or_default();
            let latest = inner
                .runs
                .iter()
                .rev()
                .find(|(_, r)| r.slug.as_deref() == Some(slug))
                .map(|(id, _)| *id);
            let Some(latest) = latest else {
                return gql_error(doc.field, &format!("Schedule {slug:?} has no runs"));
            };
            match retry(&mut inner, latest, false) {
                Ok(new) => json!({ "runId": new }),
                Err(message) => return gql_error(doc.field, &message),
            }
        }
        Operation::ListRuns => {
            let (offset, limit) = (vars["offset"].as_i64(), vars["limit"].as_i64());
            let (Some(offset @ 0..), Some(limit @ 1..=1000)) = (offset, limit) else {
                return gql_error(
                    doc.field,
                    "offset must be >= 0 and limit between 1 and 1000",
                );
            };
            let slug = vars["slug"].as_str();
            let runs: Vec<Value> = inner
                .runs
                .iter()
                .rev()
                .filter(|(_, r)| slug.is_none() || r.slug.as_deref() == slug)
                .skip(offset as usize)
                .take(limit as usize)
                .map(|(id, r)| run_json(*id, r, inner.retries.parent(*id)))
                .collect();
            json!({ "ok": true, "runs": runs })
        }
    };
    server::json(StatusCode::OK, json!({ "data": { doc.field: answer } }))
}

/// One page of command `id`'s log from `cursor` (`"<stdout>:<stderr>"`
/// lines read so far; `None` reads as `"0:0"`).
fn command_logs(inner: &Inner, id: u64, cursor: Option<&str>) -> Result<Value, &'static str> {
    let (run, command) = inner
        .runs
        .values()
        .find_map(|r| r.commands.iter().find(|c| c.id == id).map(|c| (r, c)))
        .ok_or("Command not found")?;
    let (out, err) = cursor
        .unwrap_or("0:0")
        .split_once(':')
        .and_then(|(o, e)| Some((o.parse::<usize>().ok()?, e.parse::<usize>().ok()?)))
        .ok_or("Invalid cursor")?;
    let counts = |lines: &[(LogStream, String)]| {
        let out = lines
            .iter()
            .filter(|(s, _)| *s == LogStream::Stdout)
            .count();
        (out, lines.len() - out)
    };
    let start = out + err;
    if start > command.lines.len() || counts(&command.lines[..start]) != (out, err) {
        return Err("Invalid cursor");
    }
    let end = (start + inner.page_size).min(command.lines.len());
    let page = &command.lines[start..end];
    let lines: Vec<Value> = [LogStream::Stdout, LogStream::Stderr]
        .iter()
        .flat_map(|stream| page.iter().filter(move |(s, _)| s == stream))
        .map(|(stream, line)| json!({ "stream": stream.as_str(), "line": format!("{line}\n") }))
        .collect();
    let (out, err) = counts(&command.lines[..end]);
    let finished = end == command.lines.len() && command.return_code.is_some() && !run.running();
    Ok(json!({
        "lines": lines,
        "cursor": format!("{out}:{err}"),
        "finished": finished,
    }))
}

/// Starts the run a retry of `id` makes (`all`: every command but the
/// infrastructure ones; else from the first failed one on); its id, or why
/// Paradime refuses.
fn retry(inner: &mut Inner, id: u64, all: bool) -> Result<u64, String> {
    let run = inner.runs.get(&id).ok_or("Run not found")?;
    let state = run.state();
    if state != "FAILED" && state != "ERROR" {
        return Err(format!(
            "Run {id} cannot be retried: it is {state}, and only FAILED or ERROR runs can be"
        ));
    }
    let again = if state == "ERROR" {
        FinalState::Error
    } else {
        FinalState::Failed
    };
    let (ends, after_polls) = inner.retries.planned(id, (again, 1));
    let first_failed = run
        .commands
        .iter()
        .position(|c| c.return_code.is_some_and(|rc| rc != 0));
    let kept =
        run.commands.iter().enumerate().filter(|(i, c)| {
            !c.is_infrastructure() && (all || first_failed.is_some_and(|f| *i >= f))
        });
    let mut next_command = inner
        .runs
        .values()
        .flat_map(|r| r.commands.iter().map(|c| c.id))
        .max()
        .unwrap_or(0);
    let commands = kept
        .map(|(i, c)| {
            next_command += 1;
            let retried = !all && Some(i) == first_failed && c.command.starts_with("dbt ");
            let mut c = c.clone();
            c.id = next_command;
            if retried {
                c.command = "dbt retry".into();
            }
            if ends == FinalState::Success {
                c.return_code = Some(0);
                c.lines = vec![(LogStream::Stdout, "Completed successfully".into())];
            }
            c
        })
        .collect();
    let slug = run.slug.clone();
    let new = inner.runs.keys().max().copied().unwrap_or(0) + 1;
    inner.runs.insert(
        new,
        Run {
            status: Status::Retrying(Progress::new(ends, after_polls)),
            commands,
            slug,
        },
    );
    inner.retries.started(new, id);
    Ok(new)
}

/// Bolt's word for a retry run's phase.
fn phase_word(phase: Phase) -> &'static str {
    match phase {
        Phase::InProgress { earlier_polls: 0 } => "STARTING",
        Phase::InProgress { .. } => "RUNNING",
        Phase::Ended(FinalState::Success) => "SUCCESS",
        Phase::Ended(FinalState::Failed) => "FAILED",
        Phase::Ended(FinalState::Error) => "ERROR",
        Phase::Ended(FinalState::Canceled) => "CANCELED",
    }
}

fn command_json(c: &FakeCommand, running: bool) -> Value {
    let text = |stream: LogStream| {
        c.lines
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, l)| format!("{l}\n"))
            .collect::<String>()
    };
    let return_code = c.return_code.filter(|_| !running);
    json!({
        "id": c.id,
        "command": c.command,
        "startDttm": "2024-05-01 04:20:44",
        "endDttm": return_code.map(|_| "2024-05-01 04:20:52"),
        "stdout": text(LogStream::Stdout),
        "stderr": text(LogStream::Stderr),
        "returnCode": return_code,
    })
}

fn run_json(id: u64, run: &Run, parent: Option<u64>) -> Value {
    json!({
        "id": id,
        "state": run.state(),
        "actor": "scheduler",
        "actorEmail": Value::Null,
        "startDttm": "2024-05-01 04:20:00",
        "endDttm": (!run.running()).then_some("2024-05-01 04:21:00"),
        "parentScheduleRunId": parent,
        "gitInfo": { "branch": "main", "commitHash": "0f3c2a1", "pullRequestId": Value::Null },
    })
}

/// A GraphQL error about the document itself: no `data`.
fn errors(message: &str) -> Response {
    server::json(
        StatusCode::OK,
        json!({ "errors": [{ "message": message }] }),
    )
}

/// A GraphQL error of a resolver: `data.<field>` is null.
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

    #[test]
    fn only_the_sdks_documents_are_known_whatever_their_whitespace() {
        let sdk = "
            query boltRunStatus($runId: Int!) {
                boltRunStatus(runId: $runId) {
                    state
                }
            }
        ";
        assert_eq!(
            document(sdk).map(|d| d.operation),
            Some(Operation::RunState)
        );
        let check = |query: &str, want: &str| {
            assert!(document(query).is_none(), "{query}");
            assert_eq!(unknown_document(query), want, "{query}");
        };
        check(
            "query BoltRunStatus($runId: Int!) { boltRunStatus(runId: $runId) { ok state } }",
            "Cannot query field \"ok\" on \"boltRunStatus\".",
        );
        check(
            "query L($commandId: Int!, $cursor: String) { boltCommand(commandId: $commandId) { logs(cursor: $cursor) { cursor } } }",
            "Cannot query field \"boltCommand\" on type \"Query\".",
        );
        check(
            "mutation { triggerBoltRun(scheduleName: \"x\") { runId } }",
            "Cannot query field \"triggerBoltRun\" on type \"Mutation\".",
        );
        check(
            "query other($runId: Int!) { boltRunStatus(runId: $runId) { state } }",
            "This boltRunStatus document is not one Paradime's Python SDK sends; the fake answers only those.",
        );
    }

    #[test]
    fn variables_need_the_documents_names_and_types() {
        let logs = DOCUMENTS
            .iter()
            .find(|d| d.operation == Operation::CommandLogs)
            .expect("the logs document");
        let check = |vars: Value, want: Result<(), &str>| {
            assert_eq!(
                check_variables(logs, &vars),
                want.map_err(str::to_string),
                "{vars}"
            )
        };
        check(json!({"commandId": 13, "cursor": "0:0"}), Ok(()));
        check(json!({"commandId": 13, "cursor": null}), Ok(()));
        check(json!({"commandId": 13}), Ok(()));
        check(
            json!({"cursor": "0:0"}),
            Err("Variable \"$commandId\" of required type \"Int!\" was not provided."),
        );
        check(
            json!({"commandId": "13"}),
            Err("Variable \"$commandId\" got invalid value \"13\"; Int cannot represent \"13\"."),
        );
        check(
            json!({"commandId": 4_294_967_296u64}),
            Err("Variable \"$commandId\" got invalid value 4294967296; Int cannot represent 4294967296."),
        );
        check(
            json!({"commandId": 13, "cursor": 0}),
            Err("Variable \"$cursor\" got invalid value 0; String cannot represent 0."),
        );
        check(
            json!({"commandId": 13, "page": 2}),
            Err("Variable \"$page\" is not defined by operation \"boltCommandLogs\"."),
        );
    }

    const RETRY: &str = "mutation RetryBoltRun($scheduleRunId: Int!) {
        retryBoltRun(scheduleRunId: $scheduleRunId) { runId } }";
    const STATE: &str =
        "query boltRunStatus($runId: Int!) { boltRunStatus(runId: $runId) { state } }";

    /// A GraphQL call with `auth` headers; the status and the body.
    async fn gql(
        fake: &FakeParadime,
        auth: &[(&str, &str)],
        query: &str,
        vars: Value,
    ) -> (u16, Value) {
        let body = json!({ "query": query, "variables": vars });
        server::send(Method::POST, &fake.endpoint(), auth, Some(body)).await
    }

    const WSP: [(&str, &str); 1] = [("authorization", "Bearer prdm_wsp_t0k")];

    /// A fake that takes the workspace token of [`WSP`].
    async fn token_fake() -> FakeParadime {
        let token = ParadimeCredential::WorkspaceToken("prdm_wsp_t0k".into());
        FakeParadime::start_accepting(&[token]).await.expect("fake")
    }

    #[tokio::test]
    async fn it_takes_the_credentials_it_was_told_to_and_no_others() {
        let fake = FakeParadime::start_accepting(&[
            ParadimeCredential::WorkspaceToken("prdm_wsp_t0k".into()),
            ParadimeCredential::CompanyToken {
                token: "prdm_cmp_t0k".into(),
                workspace_uid: "ws1".into(),
            },
        ])
        .await
        .expect("fake");
        fake.add_run(1, "FAILED", vec![]);
        let vars = json!({ "runId": 1 });
        let cases: [(&[(&str, &str)], u16); 6] = [
            (&WSP, 200),
            (
                &[
                    ("authorization", "Bearer prdm_cmp_t0k"),
                    ("x-paradime-workspace", "ws1"),
                ],
                200,
            ),
            (&[("authorization", "Bearer prdm_cmp_t0k")], 401),
            (
                &[
                    ("authorization", "Bearer prdm_cmp_t0k"),
                    ("x-paradime-workspace", "ws2"),
                ],
                401,
            ),
            (&[("x-api-key", "k"), ("x-api-secret", "s")], 401),
            (&[], 401),
        ];
        for (auth, want) in cases {
            let (status, body) = gql(&fake, auth, STATE, vars.clone()).await;
            assert_eq!(status, want, "{auth:?}: {body}");
        }
        let recorded = fake.requests();
        assert!(recorded
            .iter()
            .all(|r| !r.headers.contains_key("authorization")));
    }

    #[tokio::test]
    async fn a_retry_starts_a_new_run_that_ends_as_the_test_chose() {
        let fake = token_fake().await;
        fake.add_run(
            10,
            "FAILED",
            vec![
                FakeCommand::stdout(1, "git clone", 0, "ok"),
                FakeCommand::stdout(2, "dbt deps", 0, "ok"),
                FakeCommand::stdout(3, "dbt build", 1, "Database Error"),
                FakeCommand::stdout(4, "dbt docs generate", 0, "ok"),
            ],
        );
        fake.add_run(11, "SUCCESS", vec![]);
        fake.in_schedule(10, "hourly_marts");
        fake.on_retry(10, FinalState::Success, 2);

        let (_, body) = gql(&fake, &WSP, RETRY, json!({ "scheduleRunId": 11 })).await;
        assert_eq!(body["data"]["retryBoltRun"], Value::Null);
        assert_eq!(
            body["errors"][0]["message"],
            "Run 11 cannot be retried: it is SUCCESS, and only FAILED or ERROR runs can be"
        );
        let (_, body) = gql(&fake, &WSP, RETRY, json!({ "scheduleRunId": 10 })).await;
        assert_eq!(body["data"]["retryBoltRun"]["runId"], 12);
        assert_eq!((fake.retry_calls(), fake.retries_of(10)), (2, vec![12]));

        let mut states = vec![];
        for _ in 0..4 {
            let (_, body) = gql(&fake, &WSP, STATE, json!({ "runId": 12 })).await;
            states.push(body["data"]["boltRunStatus"]["state"].clone());
        }
        assert_eq!(states, ["STARTING", "RUNNING", "SUCCESS", "SUCCESS"]);
        let commands = "query boltRunStatus($runId: Int!) { boltRunStatus(runId: $runId) {
            commands { id command startDttm endDttm stdout stderr returnCode } } }";
        let (_, body) = gql(&fake, &WSP, commands, json!({ "runId": 12 })).await;
        let retried: Vec<(Value, Value)> = body["data"]["boltRunStatus"]["commands"]
            .as_array()
            .expect("commands")
            .iter()
            .map(|c| (c["command"].clone(), c["returnCode"].clone()))
            .collect();
        assert_eq!(
            retried,
            [
                (json!("dbt retry"), json!(0)),
                (json!("dbt docs generate"), json!(0))
            ],
            "the failed commands on, the first as dbt retry"
        );

        let list = "query listBoltRuns($slug: String, $offset: Int!, $limit: Int!) {
            listBoltRuns(slug: $slug, offset: $offset, limit: $limit) { ok runs { id state actor
            actorEmail startDttm endDttm parentScheduleRunId gitInfo { branch commitHash pullRequestId } } } }";
        let (_, body) = gql(
            &fake,
            &WSP,
            list,
            json!({ "slug": "hourly_marts", "offset": 0, "limit": 10 }),
        )
        .await;
        let runs = &body["data"]["listBoltRuns"]["runs"];
        assert_eq!(
            (
                runs[0]["id"].clone(),
                runs[0]["parentScheduleRunId"].clone()
            ),
            (json!(12), json!(10))
        );
        assert_eq!(
            (runs[1]["id"].clone(), runs[1]["state"].clone()),
            (json!(10), json!("FAILED"))
        );
        assert_eq!(
            runs.as_array().map(Vec::len),
            Some(2),
            "only the schedule's runs"
        );
        let (_, body) = gql(
            &fake,
            &WSP,
            list,
            json!({ "slug": "hourly_marts", "offset": 1, "limit": 1 }),
        )
        .await;
        assert_eq!(body["data"]["listBoltRuns"]["runs"][0]["id"], 10);
        let (_, body) = gql(
            &fake,
            &WSP,
            list,
            json!({ "slug": null, "offset": 0, "limit": 0 }),
        )
        .await;
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("limit")),
            "{body}"
        );

        // From failure: the schedule's latest run (12) passed, so it is refused.
        let from_failure = "mutation RetryBoltRunFromFailure($slug: String) {
            retryBoltRunFromFailure(slug: $slug) { runId } }";
        let (_, body) = gql(&fake, &WSP, from_failure, json!({ "slug": "hourly_marts" })).await;
        assert_eq!(
            body["errors"][0]["message"],
            "Run 12 cannot be retried: it is SUCCESS, and only FAILED or ERROR runs can be"
        );
        let all = "mutation RetryAllBoltRun($scheduleRunId: Int!) {
            retryAllBoltRun(scheduleRunId: $scheduleRunId) { runId } }";
        let (_, body) = gql(&fake, &WSP, all, json!({ "scheduleRunId": 10 })).await;
        assert_eq!(body["data"]["retryAllBoltRun"]["runId"], 13);
        assert_eq!((fake.retry_calls(), fake.retries_of(10)), (4, vec![12, 13]));
    }

    #[tokio::test]
    async fn a_command_log_pages_from_the_sdks_first_cursor() {
        let fake = token_fake().await;
        fake.add_run(
            1,
            "ERROR",
            vec![FakeCommand {
                id: 5,
                command: "dbt run".into(),
                return_code: Some(2),
                lines: vec![
                    (LogStream::Stderr, "e1".into()),
                    (LogStream::Stdout, "o1".into()),
                    (LogStream::Stdout, "o2".into()),
                ],
            }],
        );
        fake.set_page_size(2);
        let logs = "query boltCommandLogs($commandId: Int!, $cursor: String) {
            boltCommandLogs(commandId: $commandId, cursor: $cursor) { lines { stream line } cursor finished } }";
        let page = |cursor: &'static str| {
            let fake = &fake;
            async move {
                let (_, body) = gql(
                    fake,
                    &WSP,
                    logs,
                    json!({ "commandId": 5, "cursor": cursor }),
                )
                .await;
                body
            }
        };
        let first = page("0:0").await;
        let first = &first["data"]["boltCommandLogs"];
        assert_eq!(
            first["lines"],
            json!([{"stream": "STDOUT", "line": "o1\n"}, {"stream": "STDERR", "line": "e1\n"}]),
            "stdout before stderr within a page"
        );
        assert_eq!(
            (first["cursor"].clone(), first["finished"].clone()),
            (json!("1:1"), json!(false))
        );
        let second = page("1:1").await;
        let second = &second["data"]["boltCommandLogs"];
        assert_eq!(
            second["lines"],
            json!([{"stream": "STDOUT", "line": "o2\n"}])
        );
        assert_eq!(
            (second["cursor"].clone(), second["finished"].clone()),
            (json!("2:1"), json!(true))
        );
        let bad = page("2:0").await;
        assert_eq!(bad["errors"][0]["message"], "Invalid cursor");

        fake.graphql_error_next("boltCommandLogs", "Logs have expired");
        assert_eq!(
            page("0:0").await["errors"][0]["message"],
            "Logs have expired"
        );
        assert_eq!(
            page("0:0").await["data"]["boltCommandLogs"]["cursor"],
            "1:1",
            "one error only"
        );
    }
}
