//! A local fake of the GitHub REST API's pull-request endpoints over loopback, for
//! tests and the demo.
//!
//! Start one with [`FakeGitHub::start`], point selfheal's `forge::GitHub` at
//! [`FakeGitHub::api_base`] (or [`FakeGitHub::enterprise_api_base`] for the
//! `/api/v3` prefix of GitHub Enterprise), then assert on [`FakeGitHub::prs`],
//! [`FakeGitHub::requests`] and [`FakeGitHub::merge_calls`], and inject trouble with
//! [`FakeGitHub::fail_next`] and [`FakeGitHub::exhaust_rate_limit`].
//!
//! What it owns: an HTTP listener on `127.0.0.1:0`, one repository's pull requests
//! in memory, and a record of every request (the `Authorization` value is not
//! kept, only whether it was there and right).
//!
//! What it implements, with GitHub's documented shapes and status codes:
//! - `POST /repos/{o}/{r}/pulls`: 401 without the right token, 400 for bad JSON,
//!   422 for a missing field, for `head == base`, and for a duplicate open pull
//!   request (`"A pull request already exists for o:branch."`), 201 otherwise;
//!   with [`FakeGitHub::set_git_dir`], `head` and `base` must exist in that repository;
//! - `GET /repos/{o}/{r}/pulls?state=&head=&base=&per_page=&page=` with `Link` paging;
//! - `GET /repos/{o}/{r}/pulls/{n}`;
//! - `GET /repos/{o}/{r}`: the repository, with the token's `permissions`
//!   (`push` is false after [`FakeGitHub::set_can_push`]`(false)`, as for a
//!   read-only token).
//!
//! Everything else answers 404 like GitHub does for unknown routes. Requests that
//! would merge (`.../pulls/{n}/merge`, `.../merges`, a GraphQL merge mutation) are
//! also counted in [`FakeGitHub::merge_calls`]: selfheal never merges, and tests
//! assert the count stays 0. It does no TLS and no real rate limiting.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::MutexGuard;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::server::{
    self, AuthSeen, Credentials, Gate, HttpFake, RecordedRequest, Request, Shared,
};

const DOCS: &str = "https://docs.github.com/rest/pulls/pulls";

/// A running fake. Dropping it stops the server.
pub struct FakeGitHub {
    fake: HttpFake<Inner>,
}

/// A pull request held by the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePr {
    pub number: u64,
    pub head: String,
    pub head_sha: String,
    pub base: String,
    pub title: String,
    pub body: String,
    /// `open` or `closed`.
    pub state: String,
    pub draft: bool,
    pub maintainer_can_modify: bool,
    pub created_at: String,
}

struct Inner {
    /// `Authorization: Bearer <token>` (or GitHub's older `token <token>`);
    /// injected failures.
    gate: Gate<Injected>,
    owner: String,
    repo: String,
    user: String,
    prs: Vec<FakePr>,
    merge_calls: usize,
    git_dir: Option<PathBuf>,
    /// Whether the token may push (and so open pull requests).
    can_push: bool,
}

#[derive(Clone, Copy)]
enum Injected {
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    RateLimit {
        reset_in: Duration,
    },
}

impl FakeGitHub {
    /// Starts a fake serving repository `owner/repo` that accepts `token`.
    pub async fn start(token: &str, owner: &str, repo: &str) -> anyhow::Result<FakeGitHub> {
        let credentials = Credentials::Authorization {
            schemes: &["Bearer", "token"],
            token: token.to_string(),
        };
        let inner = Inner {
            gate: Gate::new(credentials),
            owner: owner.to_string(),
            repo: repo.to_string(),
            user: "selfheal-bot".to_string(),
            prs: Vec::new(),
            merge_calls: 0,
            can_push: true,
            git_dir: None,
        };
        let fake = HttpFake::start("fake GitHub", inner, handle).await?;
        Ok(FakeGitHub { fake })
    }

    /// `http://127.0.0.1:PORT`, like `https://api.github.com`.
    pub fn api_base(&self) -> String {
        self.fake.base_url()
    }

    /// `http://127.0.0.1:PORT/api/v3`, like a GitHub Enterprise server.
    pub fn enterprise_api_base(&self) -> String {
        format!("{}/api/v3", self.api_base())
    }

    /// Every pull request, in creation order.
    pub fn prs(&self) -> Vec<FakePr> {
        self.lock().prs.clone()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().gate.requests()
    }

    /// The next `times` requests answer `status` with GitHub's error body and, when
    /// given, a `retry-after` header (whole seconds, rounded up).
    pub fn fail_next(&self, status: u16, times: usize, retry_after: Option<Duration>) {
        let failure = Injected::Status {
            status,
            retry_after,
        };
        self.lock().gate.fail_next(failure, times);
    }

    /// The next `times` requests answer GitHub's primary rate limit: 403 with
    /// `x-ratelimit-remaining: 0` and `x-ratelimit-reset` `reset_in` from now.
    pub fn exhaust_rate_limit(&self, times: usize, reset_in: Duration) {
        self.lock()
            .gate
            .fail_next(Injected::RateLimit { reset_in }, times);
    }

    /// Closes pull request `number`, as a human would; false if there is none.
    pub fn close_pr(&self, number: u64) -> bool {
        let mut inner = self.lock();
        match inner.prs.iter_mut().find(|pr| pr.number == number) {
            Some(pr) => {
                pr.state = "closed".to_string();
                true
            }
            None => false,
        }
    }

    /// Adds an open pull request as if someone had opened it; returns its number.
    pub fn seed_pr(&self, head: &str, base: &str, title: &str) -> u64 {
        let mut inner = self.lock();
        let pr = inner.new_pr(head, base, title, "", fake_sha(head), false, true);
        pr.number
    }

    /// How many requests tried to merge anything. selfheal never merges: always 0.
    pub fn merge_calls(&self) -> usize {
        self.lock().merge_calls
    }

    /// Checks `head` and `base` of new pull requests against the branches of this
    /// git repository (e.g. the bare "origin" a workspace pushes to), like GitHub does.
    pub fn set_git_dir(&self, git_dir: impl Into<PathBuf>) {
        self.lock().git_dir = Some(git_dir.into());
    }

    /// Whether the token may push: false makes it a read-only token, whose
    /// pull requests GitHub refuses with 403.
    pub fn set_can_push(&self, can_push: bool) {
        self.lock().can_push = can_push;
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        self.fake.shutdown().await;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.fake.lock()
    }
}

impl Inner {
    #[allow(clippy::too_many_arguments)]
    fn new_pr(
        &mut self,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
        head_sha: String,
        draft: bool,
        maintainer_can_modify: bool,
    ) -> &FakePr {
        let number = self.prs.iter().map(|p| p.number).max().unwrap_or(0) + 1;
        self.prs.push(FakePr {
            number,
            head: head.to_string(),
            head_sha,
            base: base.to_string(),
            title: title.to_string(),
            body: body.to_string(),
            state: "open".to_string(),
            draft,
            maintainer_can_modify,
            created_at: rfc3339(SystemTime::now()),
        });
        self.prs.last().expect("just pushed")
    }

    /// The pull request object in GitHub's documented shape.
    fn pr_json(&self, pr: &FakePr, api_base: &str) -> Value {
        let full_name = format!("{}/{}", self.owner, self.repo);
        let repo = json!({
            "name": self.repo,
            "full_name": full_name,
            "owner": { "login": self.owner },
            "html_url": format!("https://github.example/{full_name}"),
        });
        json!({
            "url": format!("{api_base}/repos/{full_name}/pulls/{}", pr.number),
            "id": 1_000_000 + pr.number,
            "number": pr.number,
            "html_url": format!("https://github.example/{full_name}/pull/{}", pr.number),
            "diff_url": format!("https://github.example/{full_name}/pull/{}.diff", pr.number),
            "state": pr.state,
            "locked": false,
            "title": pr.title,
            "body": pr.body,
            "user": { "login": self.user, "type": "Bot" },
            "created_at": pr.created_at,
            "updated_at": pr.created_at,
            "closed_at": Value::Null,
            "merged_at": Value::Null,
            "draft": pr.draft,
            "merged": false,
            "maintainer_can_modify": pr.maintainer_can_modify,
            "head": {
                "label": format!("{}:{}", self.owner, pr.head),
                "ref": pr.head,
                "sha": pr.head_sha,
                "user": { "login": self.owner },
                "repo": repo,
            },
            "base": {
                "label": format!("{}:{}", self.owner, pr.base),
                "ref": pr.base,
                "sha": fake_sha(&pr.base),
                "user": { "login": self.owner },
                "repo": repo,
            },
        })
    }
}

/// Every request lands here: recording and GitHub-shaped errors are easier with one
/// router of our own than with axum's extractors and their own rejection bodies.
async fn handle(State(shared): State<Shared<Inner>>, req: Request) -> Response {
    let path = req.uri.path();
    let (api_prefix, route) = match path.strip_prefix("/api/v3") {
        Some(rest) => ("/api/v3", rest),
        None => ("", path),
    };
    let api_base = format!("{}{api_prefix}", shared.base_url());
    let segments: Vec<&str> = route.trim_matches('/').split('/').collect();

    // Record, count merges, and take an injected failure, all under one lock.
    let (auth, injected, git_dir) = {
        let mut inner = shared.lock();
        let (auth, injected) = inner.gate.admit(&req);
        let is_merge = segments.iter().any(|s| *s == "merge" || *s == "merges")
            || (route == "/graphql" && req.text().to_ascii_lowercase().contains("merge"));
        if is_merge {
            inner.merge_calls += 1;
        }
        (auth, injected, inner.git_dir.clone())
    };

    if let Some(injected) = injected {
        return injected_response(injected);
    }
    match auth {
        AuthSeen::Valid => {}
        AuthSeen::Missing => return error(StatusCode::UNAUTHORIZED, "Requires authentication"),
        AuthSeen::Invalid => return error(StatusCode::UNAUTHORIZED, "Bad credentials"),
    }

    let (owner, repo, can_push) = {
        let inner = shared.lock();
        (inner.owner.clone(), inner.repo.clone(), inner.can_push)
    };
    let method = &req.method;
    match segments.as_slice() {
        ["repos", o, r] if *o == owner && *r == repo && method == Method::GET => json_response(
            StatusCode::OK,
            json!({
                "id": 1,
                "name": repo,
                "full_name": format!("{owner}/{repo}"),
                "private": true,
                "owner": { "login": owner },
                "default_branch": "main",
                "url": format!("{api_base}/repos/{owner}/{repo}"),
                "permissions": {
                    "admin": false,
                    "maintain": false,
                    "push": can_push,
                    "triage": can_push,
                    "pull": true
                }
            }),
            &[],
        ),
        ["repos", o, r, "pulls"]
            if *o == owner && *r == repo && method == Method::POST && !can_push =>
        {
            error(
                StatusCode::FORBIDDEN,
                "Resource not accessible by personal access token",
            )
        }
        ["repos", o, r, "pulls"] if *o == owner && *r == repo => match *method {
            Method::POST => create_pr(&shared, &req.body, &api_base, git_dir).await,
            Method::GET => list_prs(&shared, req.uri.query().unwrap_or(""), &api_base, route),
            _ => not_found(),
        },
        ["repos", o, r, "pulls", n] if *o == owner && *r == repo && method == Method::GET => {
            let inner = shared.lock();
            match n
                .parse::<u64>()
                .ok()
                .and_then(|n| inner.prs.iter().find(|p| p.number == n))
            {
                Some(pr) => json_response(StatusCode::OK, inner.pr_json(pr, &api_base), &[]),
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}

async fn create_pr(
    shared: &Shared<Inner>,
    body: &[u8],
    api_base: &str,
    git_dir: Option<PathBuf>,
) -> Response {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let field = |name: &str| req.get(name).and_then(Value::as_str).map(str::to_string);
    for required in ["title", "head", "base"] {
        if field(required).is_none_or(|v| v.is_empty()) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("Invalid request.\n\n\"{required}\" wasn't supplied."),
            );
        }
    }
    let (title, base) = (
        field("title").unwrap_or_default(),
        field("base").unwrap_or_default(),
    );
    let owner = shared.lock().owner.clone();
    // GitHub accepts `head` as `branch` or `owner:branch`.
    let head_given = field("head").unwrap_or_default();
    let head = head_given
        .strip_prefix(&format!("{owner}:"))
        .unwrap_or(&head_given)
        .to_string();
    let text = field("body").unwrap_or_default();
    let draft = req.get("draft").and_then(Value::as_bool).unwrap_or(false);
    let can_modify = req
        .get("maintainer_can_modify")
        .and_then(Value::as_bool)
        .unwrap_or(true);

    let no_commits = || custom_error(&format!("No commits between {base} and {head}"));
    if head == base {
        return no_commits();
    }
    let head_sha = match git_dir {
        Some(dir) => match (rev_parse(&dir, &head).await, rev_parse(&dir, &base).await) {
            (None, _) => return invalid_field("head"),
            (_, None) => return invalid_field("base"),
            (Some(head_sha), Some(base_sha)) if head_sha == base_sha => return no_commits(),
            (Some(head_sha), Some(_)) => head_sha,
        },
        None => fake_sha(&head),
    };

    let mut inner = shared.lock();
    if inner
        .prs
        .iter()
        .any(|p| p.state == "open" && p.head == head && p.base == base)
    {
        return custom_error(&format!(
            "A pull request already exists for {owner}:{head}."
        ));
    }
    let pr = inner
        .new_pr(&head, &base, &title, &text, head_sha, draft, can_modify)
        .clone();
    let body = inner.pr_json(&pr, api_base);
    let location = format!(
        "{api_base}/repos/{owner}/{}/pulls/{}",
        inner.repo, pr.number
    );
    json_response(StatusCode::CREATED, body, &[("location", location)])
}

fn list_prs(shared: &Shared<Inner>, query: &str, api_base: &str, route: &str) -> Response {
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let state = params.get("state").map_or("open", String::as_str);
    if !matches!(state, "open" | "closed" | "all") {
        return invalid_field("state");
    }
    let per_page = params
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = params
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);

    let inner = shared.lock();
    // Newest first, GitHub's default order (`sort=created`, `direction=desc`).
    let mut matching: Vec<&FakePr> = inner
        .prs
        .iter()
        .filter(|p| state == "all" || p.state == state)
        .filter(|p| {
            params
                .get("head")
                .is_none_or(|h| *h == format!("{}:{}", inner.owner, p.head))
        })
        .filter(|p| params.get("base").is_none_or(|b| *b == p.base))
        .collect();
    matching.reverse();
    let last_page = matching.len().div_ceil(per_page).max(1);
    let items: Vec<Value> = matching
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|pr| inner.pr_json(pr, api_base))
        .collect();

    let link_to = |p: usize, rel: &str| {
        let mut q: BTreeMap<String, String> = params.clone();
        q.insert("per_page".into(), per_page.to_string());
        q.insert("page".into(), p.to_string());
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q.iter())
            .finish();
        let prefix = api_base.trim_end_matches('/');
        format!("<{prefix}{route}?{query}>; rel=\"{rel}\"")
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link_to(page - 1, "prev"));
    }
    if page < last_page {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last_page, "last"));
    }
    if page > 1 {
        links.push(link_to(1, "first"));
    }
    let extra: Vec<(&'static str, String)> = if links.is_empty() {
        vec![]
    } else {
        vec![("link", links.join(", "))]
    };
    json_response(StatusCode::OK, Value::Array(items), &extra)
}

fn injected_response(injected: Injected) -> Response {
    match injected {
        Injected::Status {
            status,
            retry_after,
        } => {
            let status = server::status(status);
            let message = match status.as_u16() {
                429 | 403 if retry_after.is_some() => "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                401 => "Bad credentials",
                404 => "Not Found",
                _ => "Server Error",
            };
            let mut extra = Vec::new();
            if let Some(wait) = retry_after {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                extra.push(("retry-after", secs.to_string()));
            }
            json_response(
                status,
                json!({ "message": message, "documentation_url": DOCS }),
                &extra,
            )
        }
        Injected::RateLimit { reset_in } => {
            let reset = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                + reset_in;
            json_response(
                StatusCode::FORBIDDEN,
                json!({
                    "message": "API rate limit exceeded for installation ID 1.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                }),
                &[
                    ("x-ratelimit-remaining", "0".into()),
                    ("x-ratelimit-reset", reset.as_secs().to_string()),
                ],
            )
        }
    }
}

/// A JSON answer with the headers GitHub sends with every answer, and `extra`.
fn json_response(status: StatusCode, body: Value, extra: &[(&'static str, String)]) -> Response {
    let mut response = server::json(status, body);
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        "x-github-api-version-selected",
        HeaderValue::from_static("2022-11-28"),
    );
    headers.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
    if !extra.iter().any(|(k, _)| *k == "x-ratelimit-remaining") {
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("4999"));
    }
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(*name, value);
        }
    }
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        json!({ "message": message, "documentation_url": DOCS }),
        &[],
    )
}

fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({ "message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404" }),
        &[],
    )
}

fn validation_failed(detail: Value) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({ "message": "Validation Failed", "errors": [detail], "documentation_url": DOCS }),
        &[],
    )
}

fn invalid_field(field: &str) -> Response {
    validation_failed(json!({ "resource": "PullRequest", "field": field, "code": "invalid" }))
}

fn custom_error(message: &str) -> Response {
    validation_failed(json!({ "resource": "PullRequest", "code": "custom", "message": message }))
}

async fn rev_parse(git_dir: &std::path::Path, branch: &str) -> Option<String> {
    let out = tokio::process::Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}^{{commit}}"),
        ])
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A stable, sha-shaped stand-in when there is no git repository behind the fake.
fn fake_sha(name: &str) -> String {
    // FNV-1a, repeated to 40 hex digits; only needs to look like a sha and be stable.
    let mut out = String::with_capacity(40);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    while out.len() < 40 {
        for b in name.bytes().chain(out.clone().into_bytes()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{hash:016x}"));
    }
    out.truncate(40);
    out
}

/// `2024-05-01T12:00:00Z`, GitHub's timestamp format.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_714_564_800, "2024-05-01T12:00:00Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(secs)), want);
        }
    }

    #[test]
    fn fake_shas_look_like_shas_and_are_stable() {
        let sha = fake_sha("selfheal/x");
        assert_eq!(sha.len(), 40);
        assert!(sha.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(sha, fake_sha("selfheal/x"));
        assert_ne!(sha, fake_sha("selfheal/y"));
    }
}
