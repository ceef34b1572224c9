//! A local fake of dbt Cloud's v2 API for job runs and their artifacts, over
//! loopback, for tests, the demo and benchmarks.
//!
//! Start one with [`FakeDbtCloud::start`], script runs with
//! [`FakeDbtCloud::add_run`] (and [`FakeDbtCloud::in_job`]), delay their
//! artifacts with [`FakeDbtCloud::artifact_ready_after`], say how a retry's
//! run ends with [`FakeDbtCloud::on_retry`] (or that it is refused, with
//! [`FakeDbtCloud::refuse_retry`]), point selfheal's `runlog::DbtCloud` at
//! [`FakeDbtCloud::base_url`], then assert on [`FakeDbtCloud::requests`],
//! [`FakeDbtCloud::retry_calls`] and [`FakeDbtCloud::retries_of`].
//!
//! What it owns: an HTTP listener on `127.0.0.1:0`, scripted runs of one
//! account in memory, and a record of every request (the `Authorization` value
//! is not kept, only whether it was right).
//!
//! What it answers, in dbt Cloud's envelope
//! `{"status": {"code", "is_success", "user_message", "developer_message"}, "data"}`:
//! - `GET /api/v2/accounts/{account}/runs/{run}/` — the run, with `run_steps`
//!   when `include_related` names them; each is a status poll of a run a
//!   retry started (`status` 1 queued, 2 starting, 3 running, then its final
//!   10, 20 or 30);
//! - `POST /api/v2/accounts/{account}/runs/{run}/retry/` — a NEW run (in
//!   `data`), or a 400 whose `status.user_message` names the reason:
//!   `RETRY_NOT_FAILED_RUN` (its status is not 20), `RETRY_NOT_LATEST_RUN`
//!   (its job has a later run), `RETRY_NO_RUN_RESULTS` (no
//!   `run_results.json`), or the reason a test chose;
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

pub use crate::retry::FinalState;
use crate::retry::{Phase, Progress, Retries};
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

/// Where a run stands.
enum Status {
    /// As its steps say: 20 when one errored, else 30 when one was
    /// cancelled, else 10.
    Scripted(u8),
    /// Started by a retry: in progress for some polls, then its final status.
    Retrying(Progress),
}

struct Run {
    steps: Vec<FakeStep>,
    run_results: Option<String>,
    /// Artifact requests answered 404 before the file is served.
    not_ready_for: usize,
    artifact_requests: usize,
    job_id: u64,
    status: Status,
    /// The reason a test chose for refusing a retry of this run.
    refusal: Option<String>,
}

impl Run {
    /// The status code now; `poll` counts a status poll of a retry's run.
    fn status(&mut self, poll: bool) -> u8 {
        match &mut self.status {
            Status::Scripted(code) => *code,
            Status::Retrying(p) => match if poll { p.poll() } else { p.peek() } {
                Phase::InProgress { earlier_polls } => (earlier_polls.min(2) + 1) as u8,
                Phase::Ended(FinalState::Success) => 10,
                Phase::Ended(FinalState::Failed | FinalState::Error) => 20,
                Phase::Ended(FinalState::Canceled) => 30,
            },
        }
    }
}

struct Inner {
    /// `Authorization: Token <token>` (or `Bearer <token>`); injected statuses.
    gate: Gate<u16>,
    account_id: u64,
    runs: BTreeMap<u64, Run>,
    retries: Retries,
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
            retries: Retries::default(),
        };
        let fake = HttpFake::start("fake dbt Cloud", inner, handle).await?;
        Ok(FakeDbtCloud { fake })
    }

    /// `http://127.0.0.1:PORT`, like `https://cloud.getdbt.com`.
    pub fn base_url(&self) -> String {
        self.fake.base_url()
    }

    /// Scripts run `run_id` of job 1; without `run_results` its artifact
    /// never appears. Its status follows its steps: 20 (Error) when one
    /// errored, else 30 (Cancelled) when one was cancelled, else 10 (Success).
    pub fn add_run(&self, run_id: u64, steps: Vec<FakeStep>, run_results: Option<String>) {
        let code = if steps.iter().any(|s| s.status == "Error") {
            20
        } else if steps.iter().any(|s| s.status == "Cancelled") {
            30
        } else {
            10
        };
        self.lock().runs.insert(
            run_id,
            Run {
                steps,
                run_results,
                not_ready_for: 0,
                artifact_requests: 0,
                job_id: 1,
                status: Status::Scripted(code),
                refusal: None,
            },
        );
    }

    /// Makes run `run_id` a run of job `job_id` (a retry is refused for any
    /// but the latest run of its job).
    pub fn in_job(&self, run_id: u64, job_id: u64) {
        if let Some(run) = self.lock().runs.get_mut(&run_id) {
            run.job_id = job_id;
        }
    }

    /// The run a retry of `run_id` starts is queued, starting, then running
    /// for `after_polls` status polls, then ends as `ends` for good. Without
    /// this, it errors again, after one poll.
    pub fn on_retry(&self, run_id: u64, ends: FinalState, after_polls: usize) {
        self.lock().retries.plan(run_id, ends, after_polls);
    }

    /// Refuses a retry of run `run_id` with `reason` (`RETRY_UNSUPPORTED_CMD`,
    /// `RETRY_UNSUPPORTED_VERSION`, …) whatever the run is.
    pub fn refuse_retry(&self, run_id: u64, reason: &str) {
        if let Some(run) = self.lock().runs.get_mut(&run_id) {
            run.refusal = Some(reason.to_string());
        }
    }

    /// How many retry requests reached an existing run, refused ones included.
    pub fn retry_calls(&self) -> usize {
        self.lock().retries.calls()
    }

    /// The runs started by retries of `run_id`, oldest first.
    pub fn retries_of(&self, run_id: u64) -> Vec<u64> {
        self.lock().retries.of(run_id)
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
    let get = req.method == Method::GET;
    let param = |name: &str| {
        uri.query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
    };
    match segments.as_slice() {
        // A job's runs, newest first (`order_by=-id`), at most `limit` (default 100).
        ["api", "v2", "accounts", a, "runs"] if *a == account && get => {
            let account_id = inner.account_id;
            let job = param("job_definition_id").and_then(|j| j.parse::<u64>().ok());
            let limit = param("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(100);
            let runs: Vec<Value> = inner
                .runs
                .iter_mut()
                .rev()
                .filter(|(_, run)| job.is_none_or(|j| run.job_id == j))
                .take(limit)
                .map(|(id, run)| {
                    let code = run.status(false);
                    run_json(*id, account_id, run, code, false)
                })
                .collect();
            envelope(StatusCode::OK, "Success!", Value::Array(runs))
        }
        ["api", "v2", "accounts", a, "runs", id] if *a == account && get => {
            let account_id = inner.account_id;
            let Some((id, run)) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| inner.runs.get_mut(&id).map(|r| (id, r)))
            else {
                return not_found();
            };
            let code = run.status(true);
            envelope(
                StatusCode::OK,
                "Success!",
                run_json(id, account_id, run, code, include),
            )
        }
        ["api", "v2", "accounts", a, "runs", id, "retry"]
            if *a == account && req.method == Method::POST =>
        {
            let Some(id) = id
                .parse::<u64>()
                .ok()
                .filter(|id| inner.runs.contains_key(id))
            else {
                return not_found();
            };
            inner.retries.count_call();
            match retry(&mut inner, id) {
                Ok(new) => {
                    let account_id = inner.account_id;
                    let run = inner
                        .runs
                        .get_mut(&new)
                        .expect("the retry's run was just added");
                    let code = run.status(false);
                    envelope(
                        StatusCode::OK,
                        "Success!",
                        run_json(new, account_id, run, code, true),
                    )
                }
                Err(reason) => envelope(
                    StatusCode::BAD_REQUEST,
                    &format!("Run {id} cannot be retried: {reason}"),
                    Value::Null,
                ),
            }
        }
        ["api", "v2", "accounts", a, "runs", id, "artifacts", "run_results.json"]
            if *a == account && get =>
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

/// Starts the run a retry of run `id` makes, unless dbt Cloud would refuse
/// it; the new run's id, or the reason code of the refusal.
fn retry(inner: &mut Inner, id: u64) -> Result<u64, String> {
    let run = inner.runs.get_mut(&id).expect("the caller found the run");
    let code = run.status(false);
    let job_id = run.job_id;
    let later = inner.runs.range(id + 1..).any(|(_, r)| r.job_id == job_id);
    let run = &inner.runs[&id];
    if let Some(reason) = &run.refusal {
        return Err(reason.clone());
    }
    if code != 20 {
        return Err("RETRY_NOT_FAILED_RUN".into());
    }
    if later {
        return Err("RETRY_NOT_LATEST_RUN".into());
    }
    if run.run_results.is_none() {
        return Err("RETRY_NO_RUN_RESULTS".into());
    }
    let (ends, after_polls) = inner.retries.planned(id, (FinalState::Error, 1));
    let steps = run
        .steps
        .iter()
        .map(|s| match ends {
            FinalState::Success => FakeStep::new(&s.name, "Success", "Completed successfully"),
            _ => s.clone(),
        })
        .collect();
    let retried = Run {
        steps,
        run_results: run.run_results.clone(),
        not_ready_for: 0,
        artifact_requests: 0,
        job_id,
        status: Status::Retrying(Progress::new(ends, after_polls)),
        refusal: None,
    };
    let new = inner.runs.keys().max().copied().unwrap_or(0) + 1;
    inner.runs.insert(new, retried);
    inner.retries.started(new, id);
    Ok(new)
}

/// dbt Cloud's name of a run status code.
fn humanized(code: u8) -> &'static str {
    match code {
        1 => "Queued",
        2 => "Starting",
        3 => "Running",
        10 => "Success",
        20 => "Error",
        30 => "Cancelled",
        _ => "Unknown",
    }
}

fn run_json(id: u64, account_id: u64, run: &Run, code: u8, include_steps: bool) -> Value {
    let complete = code >= 10;
    let mut data = json!({
        "id": id,
        "account_id": account_id,
        "job_definition_id": run.job_id,
        "job_id": run.job_id,
        "status": code,
        "status_humanized": humanized(code),
        "in_progress": !complete,
        "is_complete": complete,
        "is_success": code == 10,
        "is_error": code == 20,
        "is_cancelled": code == 30,
        "has_docs_generated": false,
        "has_sources_generated": false,
        "created_at": "2024-05-01 04:20:00.000000+00:00",
        "finished_at": complete.then_some("2024-05-01 04:21:00.000000+00:00"),
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
                    "account_id": account_id,
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

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: [(&str, &str); 1] = [("authorization", "Token dbtc_t0k")];

    async fn call(fake: &FakeDbtCloud, method: Method, path: &str) -> (u16, Value) {
        let url = format!("{}/api/v2/accounts/7{path}", fake.base_url());
        server::send(method, &url, &TOKEN, None).await
    }

    #[tokio::test]
    async fn a_retry_is_refused_with_dbt_clouds_reasons_or_starts_a_new_run() {
        let fake = FakeDbtCloud::start("dbtc_t0k", 7).await.expect("fake");
        let failed = || {
            vec![FakeStep::new(
                "Invoke dbt with `dbt build`",
                "Error",
                "boom",
            )]
        };
        let results = || Some("{}".to_string());
        fake.add_run(1, failed(), results());
        fake.add_run(2, failed(), results()); // job 1's latest run
        fake.add_run(
            3,
            vec![FakeStep::new(
                "Invoke dbt with `dbt build`",
                "Success",
                "ok",
            )],
            results(),
        );
        fake.add_run(4, failed(), None);
        fake.add_run(5, failed(), results());
        fake.add_run(6, failed(), results());
        for (run, job) in [(3, 3), (4, 4), (5, 5), (6, 6)] {
            fake.in_job(run, job);
        }
        fake.refuse_retry(5, "RETRY_UNSUPPORTED_VERSION");
        fake.on_retry(6, FinalState::Success, 3);

        let cases = [
            (1, "RETRY_NOT_LATEST_RUN"),
            (3, "RETRY_NOT_FAILED_RUN"),
            (4, "RETRY_NO_RUN_RESULTS"),
            (5, "RETRY_UNSUPPORTED_VERSION"),
        ];
        for (run, reason) in cases {
            let (status, body) = call(&fake, Method::POST, &format!("/runs/{run}/retry/")).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(
                body["status"]["user_message"],
                format!("Run {run} cannot be retried: {reason}")
            );
        }
        assert_eq!(call(&fake, Method::POST, "/runs/99/retry/").await.0, 404);
        assert_eq!(fake.retry_calls(), 4, "the unknown run is not counted");

        let (status, body) = call(&fake, Method::POST, "/runs/6/retry/").await;
        assert_eq!(
            (status, body["data"]["id"].clone()),
            (200, json!(7)),
            "{body}"
        );
        assert_eq!(body["data"]["status"], 1);
        assert_eq!(fake.retries_of(6), [7]);
        let mut seen = vec![];
        for _ in 0..5 {
            let (_, body) = call(&fake, Method::GET, "/runs/7/").await;
            seen.push((
                body["data"]["status"].clone(),
                body["data"]["in_progress"].clone(),
            ));
        }
        let want = [(1, true), (2, true), (3, true), (10, false), (10, false)]
            .map(|(code, going)| (json!(code), json!(going)));
        assert_eq!(seen, want);
        let (_, body) = call(&fake, Method::GET, "/runs/1/").await;
        assert_eq!(
            (
                body["data"]["status"].clone(),
                body["data"]["status_humanized"].clone()
            ),
            (json!(20), json!("Error"))
        );
    }
}
