//! A local fake of the GitHub REST API's pull-request endpoints over loopback, for
//! tests and the demo.
//!
//! Start one with [`FakeGitHub::start`], point selfheal's `forge::GitHub` at
//! [`FakeGitHub::api_base`] (or [`FakeGitHub::enterprise_api_base`] for the
//! `/api/v3` prefix of GitHub Enterprise), then assert on [`FakeGitHub::prs`],
//! [`FakeGitHub::requests`], [`FakeGitHub::pr_reads`], [`FakeGitHub::comments`]
//! and [`FakeGitHub::merge_calls`], act as the humans with
//! [`FakeGitHub::merge_pr`] and [`FakeGitHub::close_pr`], and inject trouble with
//! [`FakeGitHub::fail_next`] and [`FakeGitHub::exhaust_rate_limit`].
//!
//! What it owns: an HTTP listener on `127.0.0.1:0`, one repository's pull requests
//! and their comments in memory, and a record of every request (the
//! `Authorization` value is not kept, only whether it was there and right).
//! Its web pages (`html_url`) are on the same origin as its API, as GitHub
//! Enterprise's are: `http://127.0.0.1:PORT/{owner}/{repo}/pull/{n}`.
//!
//! What it implements, with GitHub's documented shapes and status codes:
//! - `POST /repos/{o}/{r}/pulls`: 401 without the right token, 400 for bad JSON,
//!   422 for a missing field, for `head == base`, and for a duplicate open pull
//!   request (`"A pull request already exists for o:branch."`), 201 otherwise;
//!   with [`FakeGitHub::set_git_dir`], `head` and `base` must exist in that repository;
//! - `GET /repos/{o}/{r}/pulls?state=&head=&base=&per_page=&page=` with `Link` paging;
//! - `GET /repos/{o}/{r}/pulls/{n}`, with `merged`, `merged_by` and an `ETag`;
//!   `If-None-Match` with the current ETag answers 304 with no body, as GitHub
//!   does (and such answers do not count against its rate limit);
//! - `POST /repos/{o}/{r}/issues/{n}/comments` on a pull request: 201 with the
//!   comment, 404 for no such pull request, 422 for an empty or too long body,
//!   403 for a read-only token;
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
    /// `open` or `closed`; a merged pull request is `closed`, as on GitHub.
    pub state: String,
    pub draft: bool,
    pub maintainer_can_modify: bool,
    pub created_at: String,
    /// Changes whenever the pull request does (and with it the ETag).
    pub updated_at: String,
    pub closed_at: Option<String>,
    /// The login of who merged it; None while it is not merged.
    pub merged_by: Option<String>,
}

/// A comment on a pull request, as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeComment {
    pub id: u64,
    /// The pull request's number.
    pub number: u64,
    pub body: String,
    /// The login of the token's user.
    pub user: String,
}

/// How `GET /repos/{o}/{r}/pulls/{n}` was answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrReads {
    /// 200 with the pull request.
    pub full: usize,
    /// 304: `If-None-Match` named the current ETag.
    pub not_modified: usize,
}

struct Inner {
    /// `Authorization: Bearer <token>` (or GitHub's older `token <token>`);
    /// injected failures.
    gate: Gate<Injected>,
    owner: String,
    repo: String,
    user: String,
    prs: Vec<FakePr>,
    comments: Vec<FakeComment>,
    pr_reads: PrReads,
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
            comments: Vec::new(),
            pr_reads: PrReads::default(),
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

    /// Closes pull request `number` without merging, as a human would; false
    /// if there is none.
    pub fn close_pr(&self, number: u64) -> bool {
        self.settle(number, None)
    }

    /// Merges pull request `number` as the human `login` would, in GitHub's
    /// words: `state: closed`, `merged: true`, `merged_by.login`. A test's
    /// doing, never a request's: [`FakeGitHub::merge_calls`] stays as it was.
    pub fn merge_pr(&self, number: u64, login: &str) -> bool {
        self.settle(number, Some(login))
    }

    fn settle(&self, number: u64, merged_by: Option<&str>) -> bool {
        let mut inner = self.lock();
        match inner.prs.iter_mut().find(|pr| pr.number == number) {
            Some(pr) => {
                let now = rfc3339(SystemTime::now());
                pr.state = "closed".to_string();
                pr.closed_at = Some(now.clone());
                pr.updated_at = now;
                pr.merged_by = merged_by.map(str::to_string);
                true
            }
            None => false,
        }
    }

    /// How single pull requests were read: in full, or 304 unchanged.
    pub fn pr_reads(&self) -> PrReads {
        self.lock().pr_reads
    }

    /// Every comment on a pull request, in order.
    pub fn comments(&self) -> Vec<FakeComment> {
        self.lock().comments.clone()
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
        let now = rfc3339(SystemTime::now());
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
            created_at: now.clone(),
            updated_at: now,
            closed_at: None,
            merged_by: None,
        });
        self.prs.last().expect("just pushed")
    }

    /// The pull request object in GitHub's documented shape (as in the
    /// recorded `pull_merged` answer of shared/reference/forge-payloads/github).
    fn pr_json(&self, pr: &FakePr, base: &Bases) -> Value {
        let (api_base, web) = (&base.api, &base.web);
        let full_name = format!("{}/{}", self.owner, self.repo);
        let repo = json!({
            "name": self.repo,
            "full_name": full_name,
            "owner": { "login": self.owner },
            "html_url": format!("{web}/{full_name}"),
        });
        let merged_at = match &pr.merged_by {
            Some(_) => json!(pr.closed_at),
            None => Value::Null,
        };
        let merged_by = match &pr.merged_by {
            Some(login) => json!({ "login": login, "type": "User" }),
            None => Value::Null,
        };
        json!({
            "url": format!("{api_base}/repos/{full_name}/pulls/{}", pr.number),
            "id": 1_000_000 + pr.number,
            "number": pr.number,
            "html_url": format!("{web}/{full_name}/pull/{}", pr.number),
            "diff_url": format!("{web}/{full_name}/pull/{}.diff", pr.number),
            "state": pr.state,
            "locked": false,
            "title": pr.title,
            "body": pr.body,
            "user": { "login": self.user, "type": "Bot" },
            "created_at": pr.created_at,
            "updated_at": pr.updated_at,
            "closed_at": pr.closed_at,
            "merged_at": merged_at,
            "draft": pr.draft,
            "merged": pr.merged_by.is_some(),
            "merged_by": merged_by,
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

/// Where the fake's API and web pages are, as this request reached it.
struct Bases {
    /// `http://127.0.0.1:PORT`, with `/api/v3` when the request came that way.
    api: String,
    /// `http://127.0.0.1:PORT`.
    web: String,
}

/// Every request lands here: recording and GitHub-shaped errors are easier with one
/// router of our own than with axum's extractors and their own rejection bodies.
async fn handle(State(shared): State<Shared<Inner>>, req: Request) -> Response {
    let path = req.uri.path();
    let (api_prefix, route) = match path.strip_prefix("/api/v3") {
        Some(rest) => ("/api/v3", rest),
        None => ("", path),
    };
    let base = Bases {
        api: format!("{}{api_prefix}", shared.base_url()),
        web: shared.base_url(),
    };
    let api_base = &base.api;
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
            Method::POST => create_pr(&shared, &req.body, &base, git_dir).await,
            Method::GET => list_prs(&shared, req.uri.query().unwrap_or(""), &base, route),
            _ => not_found(),
        },
        ["repos", o, r, "pulls", n] if *o == owner && *r == repo && method == Method::GET => {
            get_pr(&shared, n, req.header("if-none-match"), &base)
        }
        ["repos", o, r, "issues", n, "comments"]
            if *o == owner && *r == repo && method == Method::POST =>
        {
            match can_push {
                true => create_comment(&shared, n, &req.body, api_base),
                false => error(
                    StatusCode::FORBIDDEN,
                    "Resource not accessible by personal access token",
                ),
            }
        }
        _ => not_found(),
    }
}

/// One pull request, or 304 when `if_none_match` names its current ETag.
fn get_pr(
    shared: &Shared<Inner>,
    number: &str,
    if_none_match: Option<&str>,
    base: &Bases,
) -> Response {
    let mut inner = shared.lock();
    let Some(pr) = number
        .parse::<u64>()
        .ok()
        .and_then(|n| inner.prs.iter().find(|p| p.number == n))
        .cloned()
    else {
        return not_found();
    };
    let body = inner.pr_json(&pr, base);
    let etag = format!("W/\"{}\"", fake_sha(&body.to_string()));
    if if_none_match.is_some_and(|tags| matches_etag(tags, &etag)) {
        inner.pr_reads.not_modified += 1;
        return not_modified(&etag);
    }
    inner.pr_reads.full += 1;
    json_response(StatusCode::OK, body, &[("etag", etag)])
}

/// Whether an `If-None-Match` list names `etag`, compared weakly (a `W/`
/// prefix does not matter) as GitHub does; `*` matches anything.
fn matches_etag(if_none_match: &str, etag: &str) -> bool {
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
    if_none_match
        .split(',')
        .any(|t| t.trim() == "*" || weak(t) == weak(etag))
}

/// `304 Not Modified`: no body; the ETag and the rate-limit headers, as GitHub sends.
fn not_modified(etag: &str) -> Response {
    let mut response = json_response(
        StatusCode::NOT_MODIFIED,
        Value::Null,
        &[("etag", etag.to_string())],
    );
    *response.body_mut() = axum::body::Body::empty();
    response.headers_mut().remove("content-type");
    response
}

/// `POST .../issues/{n}/comments` on one of the pull requests.
fn create_comment(shared: &Shared<Inner>, number: &str, body: &[u8], api_base: &str) -> Response {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let mut inner = shared.lock();
    let Some(number) = number
        .parse::<u64>()
        .ok()
        .filter(|n| inner.prs.iter().any(|p| p.number == *n))
    else {
        return not_found();
    };
    let text = req.get("body").and_then(Value::as_str).unwrap_or_default();
    if text.is_empty() {
        return validation_failed(
            json!({ "resource": "IssueComment", "field": "body", "code": "missing_field" }),
        );
    }
    if text.chars().count() > 65_536 {
        return validation_failed(
            json!({ "resource": "IssueComment", "code": "custom", "field": "body", "message": "body is too long (maximum is 65536 characters)" }),
        );
    }
    let id = 9_000_000 + inner.comments.len() as u64 + 1;
    let comment = FakeComment {
        id,
        number,
        body: text.to_string(),
        user: inner.user.clone(),
    };
    inner.comments.push(comment.clone());
    let full_name = format!("{}/{}", inner.owner, inner.repo);
    json_response(
        StatusCode::CREATED,
        json!({
            "id": id,
            "url": format!("{api_base}/repos/{full_name}/issues/comments/{id}"),
            "issue_url": format!("{api_base}/repos/{full_name}/issues/{number}"),
            "body": comment.body,
            "user": { "login": comment.user, "type": "Bot" },
            "created_at": rfc3339(SystemTime::now()),
            "updated_at": rfc3339(SystemTime::now()),
            "author_association": "NONE",
        }),
        &[],
    )
}

async fn create_pr(
    shared: &Shared<Inner>,
    body: &[u8],
    bases: &Bases,
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
    let body = inner.pr_json(&pr, bases);
    let location = format!(
        "{}/repos/{owner}/{}/pulls/{}",
        bases.api, inner.repo, pr.number
    );
    json_response(StatusCode::CREATED, body, &[("location", location)])
}

fn list_prs(shared: &Shared<Inner>, query: &str, base: &Bases, route: &str) -> Response {
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
        .map(|pr| inner.pr_json(pr, base))
        .collect();

    let link_to = |p: usize, rel: &str| {
        let mut q: BTreeMap<String, String> = params.clone();
        q.insert("per_page".into(), per_page.to_string());
        q.insert("page".into(), p.to_string());
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q.iter())
            .finish();
        let prefix = base.api.trim_end_matches('/');
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
pub(crate) fn rfc3339(t: SystemTime) -> String {
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
    fn if_none_match_compares_etags_weakly_as_github_does() {
        let cases = [
            (r#"W/"abc""#, true),
            (r#""abc""#, true),
            (r#""x", W/"abc""#, true),
            ("*", true),
            (r#"W/"abcd""#, false),
            ("", false),
        ];
        for (header, want) in cases {
            assert_eq!(matches_etag(header, r#"W/"abc""#), want, "{header}");
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
