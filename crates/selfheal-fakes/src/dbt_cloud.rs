//! A local fake of dbt Cloud's v2 API for job runs and their artifacts, over
//! loopback, for tests, the demo and benchmarks.
//!
//! Start one with [`FakeDbtCloud::start`], script runs with
//! [`FakeDbtCloud::add_run`], delay their artifacts with
//! [`FakeDbtCloud::artifact_ready_after`], point selfheal's `runlog::DbtCloud`
//! at [`FakeDbtCloud::base_url`], then assert on [`FakeDbtCloud::requests`].
//!
//! What it owns: an HTTP listener on `127.0.0.1:0`, scripted runs of one
//! account in memory, and a record of every request (the `Authorization` value
//! is not kept, only whether it was right).
//!
//! What it answers, in dbt Cloud's envelope
//! `{"status": {"code", "is_success", "user_message", "developer_message"}, "data"}`:
//! - `GET /api/v2/accounts/{account}/runs/{run}/` — the run, with `run_steps`
//!   when `include_related` names them;
//! - `GET /api/v2/accounts/{account}/runs/{run}/artifacts/run_results.json` — the
//!   raw file, or 404 (`data: null`) until it is "uploaded";
//! - 401 without `Authorization: Token <token>` (or `Bearer <token>`), 404
//!   for anything else. It does no TLS and no rate limiting.

use std::collections::BTreeMap;
use std::sync::MutexGuard;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::server::{
    self, AuthSeen, Credentials, Gate, HttpFake, RecordedRequest, Request, Shared,
};

/// A running fake. Dropping it stops the server.
pub struct FakeDbtCloud {
    fake: HttpFake<Inner>,
}

/// One step of a scripted run.
#[derive(Debug, Clone)]
pub struct FakeStep {
    /// ``Invoke dbt with `dbt build` ``, as dbt Cloud names dbt steps.
    pub name: String,
    /// `Success`, `Error`, `Cancelled` or `Skipped` (dbt Cloud's `status_humanized`).
    pub status: String,
    /// The step's console output.
    pub logs: String,
}

impl FakeStep {
    pub fn new(name: &str, status: &str, logs: &str) -> FakeStep {
        FakeStep {
            name: name.to_string(),
            status: status.to_string(),
            logs: logs.to_string(),
        }
    }
}

struct Run {
    steps: Vec<FakeStep>,
    run_results: Option<String>,
    /// Artifact requests answered 404 before the file is served.
    not_ready_for: usize,
    artifact_requests: usize,
}

struct Inner {
    /// `Authorization: Token <token>` (or `Bearer <token>`); injected statuses.
    gate: Gate<u16>,
    account_id: u64,
    runs: BTreeMap<u64, Run>,
}

impl FakeDbtCloud {
    /// Starts a fake of account `account_id` that accepts `token`.
    pub async fn start(token: &str, account_id: u64) -> anyhow::Result<FakeDbtCloud> {
        let credentials = Credentials::Authorization {
            schemes: &["Token", "Bearer"],
            token: token.to_string(),
        };
        let inner = Inner {
            gate: Gate::new(credentials),
            account_id,
            runs: BTreeMap::new(),
        };
        let fake = HttpFake::start("fake dbt Cloud", inner, handle).await?;
        Ok(FakeDbtCloud { fake })
    }

    /// `http://127.0.0.1:PORT`, like `https://cloud.getdbt.com`.
    pub fn base_url(&self) -> String {
        self.fake.base_url()
    }

    /// Scripts run `run_id`; without `run_results` its artifact never appears.
    pub fn add_run(&self, run_id: u64, steps: Vec<FakeStep>, run_results: Option<String>) {
        self.lock().runs.insert(
            run_id,
            Run {
                steps,
                run_results,
                not_ready_for: 0,
                artifact_requests: 0,
            },
        );
    }

    /// The first `n_requests` requests for run `run_id`'s artifacts answer 404,
    /// as dbt Cloud does before the artifacts are uploaded.
    pub fn artifact_ready_after(&self, run_id: u64, n_requests: usize) {
        if let Some(run) = self.lock().runs.get_mut(&run_id) {
            run.not_ready_for = n_requests;
        }
    }

    /// How many artifact requests run `run_id` has had.
    pub fn artifact_requests(&self, run_id: u64) -> usize {
        self.lock()
            .runs
            .get(&run_id)
            .map_or(0, |r| r.artifact_requests)
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().gate.requests()
    }

    /// The next `times` requests answer `status` (e.g. 503, 429) before anything else.
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

async fn handle(State(shared): State<Shared<Inner>>, req: Request) -> Response {
    let mut inner = shared.lock();
    let (auth, failure) = inner.gate.admit(&req);
    if let Some(status) = failure {
        return envelope(
            server::status(status),
            "The service is temporarily unavailable.",
            Value::Null,
        );
    }
    if auth != AuthSeen::Valid {
        return envelope(StatusCode::UNAUTHORIZED, "Invalid token.", Value::Null);
    }
    if req.method != Method::GET {
        return not_found();
    }
    let uri = &req.uri;
    let account = inner.account_id.to_string();
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let include = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .any(|(k, v)| k == "include_related" && v.contains("run_steps"))
        })
        .unwrap_or(false);
    match segments.as_slice() {
        ["api", "v2", "accounts", a, "runs", id] if *a == account => {
            let Some((id, run)) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| inner.runs.get(&id).map(|r| (id, r)))
            else {
                return not_found();
            };
            envelope(
                StatusCode::OK,
                "Success!",
                run_json(id, &inner, run, include),
            )
        }
        ["api", "v2", "accounts", a, "runs", id, "artifacts", "run_results.json"]
            if *a == account =>
        {
            let Some(run) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| inner.runs.get_mut(&id))
            else {
                return not_found();
            };
            run.artifact_requests += 1;
            match &run.run_results {
                Some(text) if run.artifact_requests > run.not_ready_for => {
                    server::json_text(StatusCode::OK, text.clone())
                }
                _ => envelope(
                    StatusCode::NOT_FOUND,
                    "The requested resource was not found: run_results.json. The run may not have produced artifacts yet.",
                    Value::Null,
                ),
            }
        }
        _ => not_found(),
    }
}

fn status_code(humanized: &str) -> u8 {
    match humanized {
        "Success" => 10,
        "Error" => 20,
        "Cancelled" => 30,
        "Skipped" => 40,
        _ => 3,
    }
}

fn run_json(id: u64, inner: &Inner, run: &Run, include_steps: bool) -> Value {
    let errored = run.steps.iter().any(|s| s.status == "Error");
    let humanized = if errored { "Error" } else { "Success" };
    let mut data = json!({
        "id": id,
        "account_id": inner.account_id,
        "job_definition_id": 1,
        "status": status_code(humanized),
        "status_humanized": humanized,
        "in_progress": false,
        "is_complete": true,
        "is_success": !errored,
        "is_error": errored,
        "has_docs_generated": false,
        "has_sources_generated": false,
        "created_at": "2024-05-01 04:20:00.000000+00:00",
        "finished_at": "2024-05-01 04:21:00.000000+00:00",
    });
    if include_steps {
        data["run_steps"] = run
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "id": id * 100 + i as u64,
                    "run_id": id,
                    "account_id": inner.account_id,
                    "index": i + 1,
                    "name": s.name,
                    "status": status_code(&s.status),
                    "status_humanized": s.status,
                    "logs": s.logs,
                    "debug_logs": "",
                    "truncated_debug_logs": "",
                })
            })
            .collect();
    }
    data
}

/// dbt Cloud's response envelope.
fn envelope(status: StatusCode, message: &str, data: Value) -> Response {
    let body = json!({
        "status": {
            "code": status.as_u16(),
            "is_success": status.is_success(),
            "user_message": message,
            "developer_message": "",
        },
        "data": data,
    });
    server::json(status, body)
}

fn not_found() -> Response {
    envelope(
        StatusCode::NOT_FOUND,
        "The requested resource was not found.",
        Value::Null,
    )
}
