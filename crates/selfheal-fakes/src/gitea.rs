//! A local fake of a Gitea (or Forgejo) server's API v1 for pull requests,
//! over loopback, for tests and the demo.
//!
//! Start one with [`FakeGitea::start`], point selfheal's `forge::Gitea` at
//! [`FakeGitea::api_base`], then assert on [`FakeGitea::prs`],
//! [`FakeGitea::requests`], [`FakeGitea::comments`] and
//! [`FakeGitea::merge_calls`], act as the humans with [`FakeGitea::merge_pr`]
//! and [`FakeGitea::close_pr`], set the world up with [`FakeGitea::seed_pr`],
//! [`FakeGitea::add_label`], [`FakeGitea::set_users`],
//! [`FakeGitea::set_max_page_size`] and [`FakeGitea::set_can_push`], and
//! inject trouble with [`FakeGitea::fail_next`].
//!
//! What it owns: an HTTP listener on `127.0.0.1:0`, one repository's pull
//! requests, labels and comments in memory, and a record of every request
//! (the `Authorization` value is not kept, only whether it was there and
//! right). Its API is under `/api/v1` and its web pages at the root, as a
//! Gitea server's are: `http://127.0.0.1:PORT/{owner}/{repo}/pulls/{n}`.
//!
//! What it implements, in the shapes of the recorded answers of
//! tests/fixtures/gitea (Gitea's `PullRequest`, `Comment`, `Label` and
//! `APIError` structs) and the status codes of Gitea's routers:
//! - `POST /repos/{o}/{r}/pulls` (`CreatePullRequestOption`): 401 without the
//!   right token, 403 naming `write:repository` for a read-only token, 422
//!   for a missing field or `head == base`, 409 for an open pull request with
//!   the same head and base, 201 otherwise; `labels` are ids (unknown ones
//!   ignored, as Gitea does); `draft` is true for a `WIP:`/`[WIP]` title;
//! - `GET /repos/{o}/{r}/pulls?state=&page=&limit=`: oldest first, `limit`
//!   capped by the server's page size (`MAX_RESPONSE_ITEMS`, 50 unless set),
//!   `Link` (next, last, first, prev) and `X-Total-Count` headers;
//! - `GET /repos/{o}/{r}/pulls/{n}`: with `merged`, `merged_by`, `merged_at`;
//!   Gitea sends no `ETag` for it, and neither does the fake;
//! - `POST /repos/{o}/{r}/pulls/{n}/requested_reviewers`: 201, or 422 for a
//!   user the server does not know (after [`FakeGitea::set_users`]);
//! - `GET /repos/{o}/{r}/labels?page=&limit=`, paged like pull requests;
//! - `POST /repos/{o}/{r}/issues/{n}/comments` on a pull request: 201;
//! - `GET /repos/{o}/{r}`: the repository with the token's `permissions`.
//!
//! Everything else answers Gitea's 404. A request that would merge
//! (`…/pulls/{n}/merge`) is counted in [`FakeGitea::merge_calls`] and not
//! carried out: selfheal never merges, and tests assert the count stays 0.
//! No TLS, no real rate limiting, no ETags.

use std::collections::BTreeMap;
use std::sync::MutexGuard;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::server::{
    self, AuthSeen, Credentials, Gate, HttpFake, RecordedRequest, Request, Shared,
};
use crate::server::{fake_sha, rfc3339};

/// Gitea's `MAX_RESPONSE_ITEMS` default: no page is longer, whatever is asked.
const DEFAULT_MAX_PAGE: usize = 50;

/// Gitea's `DEFAULT_PAGING_NUM`: a page's length when `limit` is not given.
const DEFAULT_PAGE: usize = 30;

/// A running fake. Dropping it stops the server.
pub struct FakeGitea {
    fake: HttpFake<Inner>,
}

/// A pull request held by the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePr {
    pub number: u64,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    /// `open` or `closed`; a merged pull request is `closed`, as on Gitea.
    pub state: String,
    /// Its labels' names.
    pub labels: Vec<String>,
    /// User names asked to review it, in the order asked.
    pub requested_reviewers: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
    /// The login of who merged it; None while it is not merged.
    pub merged_by: Option<String>,
}

impl FakePr {
    /// Whether Gitea calls it a draft: a title with a default WIP prefix.
    pub fn draft(&self) -> bool {
        let upper = self.title.to_ascii_uppercase();
        upper.starts_with("WIP:") || upper.starts_with("[WIP]")
    }
}

/// A comment on a pull request, as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeComment {
    pub id: u64,
    /// The pull request's number.
    pub number: u64,
    pub body: String,
    /// The token's user.
    pub user: String,
}

struct Inner {
    /// `Authorization: token <token>` (or `Bearer`); injected failures.
    gate: Gate<Injected>,
    owner: String,
    repo: String,
    /// The token's user, who opens the pull requests.
    user: String,
    prs: Vec<FakePr>,
    comments: Vec<FakeComment>,
    /// `(id, name)`, in creation order.
    labels: Vec<(u64, String)>,
    /// The users the server knows; None: anyone.
    users: Option<Vec<String>>,
    merge_calls: usize,
    /// Whether the token may write (`write:repository`).
    can_push: bool,
    max_page: usize,
    /// Whether list answers carry a `Link` header (a proxy may drop it).
    link_headers: bool,
}

#[derive(Clone, Copy)]
struct Injected {
    status: u16,
    retry_after: Option<Duration>,
}

impl FakeGitea {
    /// Starts a fake serving repository `owner/repo` that accepts `token`.
    pub async fn start(token: &str, owner: &str, repo: &str) -> anyhow::Result<FakeGitea> {
        let credentials = Credentials::Authorization {
            schemes: &["token", "Bearer"],
            token: token.to_string(),
        };
        let inner = Inner {
            gate: Gate::new(credentials),
            owner: owner.to_string(),
            repo: repo.to_string(),
            user: "selfheal-bot".to_string(),
            prs: Vec::new(),
            comments: Vec::new(),
            labels: Vec::new(),
            users: None,
            merge_calls: 0,
            can_push: true,
            max_page: DEFAULT_MAX_PAGE,
            link_headers: true,
        };
        let fake = HttpFake::start("fake Gitea", inner, handle).await?;
        Ok(FakeGitea { fake })
    }

    /// `http://127.0.0.1:PORT/api/v1`, like `https://HOST/api/v1`.
    pub fn api_base(&self) -> String {
        format!("{}/api/v1", self.web_base())
    }

    /// `http://127.0.0.1:PORT`: where the web pages (`html_url`) are.
    pub fn web_base(&self) -> String {
        self.fake.base_url()
    }

    /// Every pull request, in creation order.
    pub fn prs(&self) -> Vec<FakePr> {
        self.lock().prs.clone()
    }

    /// Every comment on a pull request, in order.
    pub fn comments(&self) -> Vec<FakeComment> {
        self.lock().comments.clone()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().gate.requests()
    }

    /// How many requests tried to merge anything. selfheal never merges: always 0.
    pub fn merge_calls(&self) -> usize {
        self.lock().merge_calls
    }

    /// The next `times` requests answer `status` (429, 5xx, 401, 403…) with
    /// Gitea's error body and, when given, a `Retry-After` header (whole
    /// seconds, rounded up), as a proxy in front of Gitea would send.
    pub fn fail_next(&self, status: u16, times: usize, retry_after: Option<Duration>) {
        let failure = Injected {
            status,
            retry_after,
        };
        self.lock().gate.fail_next(failure, times);
    }

    /// Adds an open pull request as if someone had opened it; returns its number.
    pub fn seed_pr(&self, head: &str, base: &str, title: &str) -> u64 {
        self.lock().new_pr(head, base, title, "", Vec::new()).number
    }

    /// Adds a label to the repository; returns its id.
    pub fn add_label(&self, name: &str) -> u64 {
        let mut inner = self.lock();
        let id = 100 + inner.labels.len() as u64 + 1;
        inner.labels.push((id, name.to_string()));
        id
    }

    /// Only these users exist: asking any other to review gets Gitea's 422.
    pub fn set_users(&self, users: &[&str]) {
        self.lock().users = Some(users.iter().map(|u| u.to_string()).collect());
    }

    /// The server's `MAX_RESPONSE_ITEMS`: no page is longer.
    pub fn set_max_page_size(&self, size: usize) {
        self.lock().max_page = size.max(1);
    }

    /// Whether list answers carry `Link` (they always carry `X-Total-Count`).
    pub fn set_link_headers(&self, on: bool) {
        self.lock().link_headers = on;
    }

    /// Whether the token may write: false makes it a read-only token (no
    /// `write:repository`), refused with Gitea's 403 on every write.
    pub fn set_can_push(&self, can_push: bool) {
        self.lock().can_push = can_push;
    }

    /// Closes pull request `number` without merging, as a human would;
    /// false if there is none.
    pub fn close_pr(&self, number: u64) -> bool {
        self.settle(number, None)
    }

    /// Merges pull request `number` as the human `login` would, in Gitea's
    /// words: `state: closed`, `merged: true`, `merged_by.login`. A test's
    /// doing, never a request's: [`FakeGitea::merge_calls`] stays as it was.
    pub fn merge_pr(&self, number: u64, login: &str) -> bool {
        self.settle(number, Some(login))
    }

    fn settle(&self, number: u64, merged_by: Option<&str>) -> bool {
        let mut inner = self.lock();
        let Some(pr) = inner.prs.iter_mut().find(|pr| pr.number == number) else {
            return false;
        };
        let now = rfc3339(SystemTime::now());
        pr.state = "closed".to_string();
        pr.closed_at = Some(now.clone());
        pr.updated_at = now;
        pr.merged_by = merged_by.map(str::to_string);
        true
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
    fn new_pr(
        &mut self,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
        labels: Vec<String>,
    ) -> &FakePr {
        let number = self.prs.iter().map(|p| p.number).max().unwrap_or(0) + 1;
        let now = rfc3339(SystemTime::now());
        self.prs.push(FakePr {
            number,
            head: head.to_string(),
            base: base.to_string(),
            title: title.to_string(),
            body: body.to_string(),
            state: "open".to_string(),
            labels,
            requested_reviewers: Vec::new(),
            created_at: now.clone(),
            updated_at: now,
            closed_at: None,
            merged_by: None,
        });
        self.prs.last().expect("just pushed")
    }

    fn user_json(&self, login: &str) -> Value {
        json!({
            "id": 1000 + u64::from(fake_sha(login).as_bytes()[0]),
            "login": login,
            "username": login,
            "full_name": "",
            "email": format!("{login}@example.com"),
            "avatar_url": "",
        })
    }

    fn repo_json(&self, web: &str) -> Value {
        let full_name = format!("{}/{}", self.owner, self.repo);
        json!({
            "id": 1,
            "owner": self.user_json(&self.owner),
            "name": self.repo,
            "full_name": full_name,
            "private": true,
            "fork": false,
            "html_url": format!("{web}/{full_name}"),
            "clone_url": format!("{web}/{full_name}.git"),
            "default_branch": "main",
            "permissions": { "admin": false, "push": self.can_push, "pull": true },
        })
    }

    fn label_json(&self, id: u64, name: &str, api: &str) -> Value {
        json!({
            "id": id,
            "name": name,
            "color": "ededed",
            "description": "",
            "url": format!("{api}/repos/{}/{}/labels/{id}", self.owner, self.repo),
        })
    }

    /// The pull request object in Gitea's shape (as in
    /// tests/fixtures/gitea/pull_open.go-scm.json, with the newer `draft`
    /// and `requested_reviewers`).
    fn pr_json(&self, pr: &FakePr, web: &str, api: &str) -> Value {
        let full_name = format!("{}/{}", self.owner, self.repo);
        let branch = |name: &str| {
            json!({
                "label": name,
                "ref": name,
                "sha": fake_sha(name),
                "repo_id": 1,
                "repo": self.repo_json(web),
            })
        };
        let labels: Vec<Value> = pr
            .labels
            .iter()
            .filter_map(|name| self.labels.iter().find(|(_, n)| n == name))
            .map(|(id, name)| self.label_json(*id, name, api))
            .collect();
        let merged = pr.merged_by.is_some();
        json!({
            "id": 400 + pr.number,
            "url": format!("{web}/{full_name}/pulls/{}", pr.number),
            "number": pr.number,
            "user": self.user_json(&self.user),
            "title": pr.title,
            "body": pr.body,
            "labels": labels,
            "milestone": null,
            "assignee": null,
            "assignees": null,
            "requested_reviewers": pr.requested_reviewers.iter().map(|u| self.user_json(u)).collect::<Vec<_>>(),
            "state": pr.state,
            "draft": pr.draft(),
            "is_locked": false,
            "comments": self.comments.iter().filter(|c| c.number == pr.number).count(),
            "html_url": format!("{web}/{full_name}/pulls/{}", pr.number),
            "diff_url": format!("{web}/{full_name}/pulls/{}.diff", pr.number),
            "patch_url": format!("{web}/{full_name}/pulls/{}.patch", pr.number),
            "mergeable": true,
            "merged": merged,
            "merged_at": if merged { json!(pr.closed_at) } else { Value::Null },
            "merge_commit_sha": if merged { json!(fake_sha(&pr.title)) } else { Value::Null },
            "merged_by": pr.merged_by.as_deref().map(|u| self.user_json(u)),
            "allow_maintainer_edit": false,
            "base": branch(&pr.base),
            "head": branch(&pr.head),
            "merge_base": fake_sha(&pr.base),
            "due_date": null,
            "created_at": pr.created_at,
            "updated_at": pr.updated_at,
            "closed_at": pr.closed_at,
        })
    }
}

/// Every request lands here: recording and Gitea-shaped errors are easier
/// with one router of our own than with axum's extractors.
async fn handle(State(shared): State<Shared<Inner>>, req: Request) -> Response {
    let web = shared.base_url();
    let api = format!("{web}/api/v1");
    let Some(route) = req.uri.path().strip_prefix("/api/v1") else {
        return not_found(&web);
    };
    let segments: Vec<&str> = route.trim_matches('/').split('/').collect();

    // Record, count merges, and take an injected failure, all under one lock.
    let (auth, injected) = {
        let mut inner = shared.lock();
        let (auth, injected) = inner.gate.admit(&req);
        if segments.contains(&"merge") {
            inner.merge_calls += 1;
        }
        (auth, injected)
    };
    if let Some(injected) = injected {
        return injected_response(injected, &web);
    }
    match auth {
        AuthSeen::Valid => {}
        AuthSeen::Missing => return error(StatusCode::UNAUTHORIZED, "token is required", &web),
        AuthSeen::Invalid => {
            return error(
                StatusCode::UNAUTHORIZED,
                "user does not exist [uid: 0, name: ]",
                &web,
            )
        }
    }

    let (owner, repo, can_push) = {
        let inner = shared.lock();
        (inner.owner.clone(), inner.repo.clone(), inner.can_push)
    };
    let ours = |o: &&str, r: &&str| *o == owner && *r == repo;
    let method = &req.method;
    if *method == Method::POST && !can_push {
        let scope = match segments.as_slice() {
            [.., "comments"] => "write:issue",
            _ => "write:repository",
        };
        return error(
            StatusCode::FORBIDDEN,
            &format!("token does not have at least one of required scope(s): [{scope}]"),
            &web,
        );
    }
    let query = req.uri.query().unwrap_or("");
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["repos", o, r]) if ours(o, r) => {
            json_response(StatusCode::OK, shared.lock().repo_json(&web), &[])
        }
        (Method::POST, ["repos", o, r, "pulls"]) if ours(o, r) => {
            create_pr(&shared, &req.body, &web, &api)
        }
        (Method::GET, ["repos", o, r, "pulls"]) if ours(o, r) => {
            let inner = shared.lock();
            let state = params(query).get("state").cloned();
            let state = state.as_deref().unwrap_or("open");
            let items: Vec<Value> = inner
                .prs
                .iter()
                .filter(|p| state == "all" || p.state == state)
                .map(|p| inner.pr_json(p, &web, &api))
                .collect();
            paged(&inner, items, query, &format!("{api}{route}"))
        }
        (Method::GET, ["repos", o, r, "pulls", n]) if ours(o, r) => {
            let inner = shared.lock();
            match find(&inner, n) {
                Some(i) => json_response(
                    StatusCode::OK,
                    inner.pr_json(&inner.prs[i], &web, &api),
                    &[],
                ),
                None => not_found(&web),
            }
        }
        (Method::POST, ["repos", o, r, "pulls", n, "requested_reviewers"]) if ours(o, r) => {
            request_reviewers(&shared, n, &req.body, &web)
        }
        (Method::GET, ["repos", o, r, "labels"]) if ours(o, r) => {
            let inner = shared.lock();
            let items: Vec<Value> = inner
                .labels
                .iter()
                .map(|(id, name)| inner.label_json(*id, name, &api))
                .collect();
            paged(&inner, items, query, &format!("{api}{route}"))
        }
        (Method::POST, ["repos", o, r, "issues", n, "comments"]) if ours(o, r) => {
            create_comment(&shared, n, &req.body, &web, &api)
        }
        _ => not_found(&web),
    }
}

fn params(query: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The index of pull request `number` (text from the path), if there is one.
fn find(inner: &Inner, number: &str) -> Option<usize> {
    let number = number.parse::<u64>().ok()?;
    inner.prs.iter().position(|p| p.number == number)
}

/// One page of `items` as `page` and `limit` ask, capped by the server's
/// page size, with Gitea's `Link` and `X-Total-Count` headers.
fn paged(inner: &Inner, items: Vec<Value>, query: &str, url: &str) -> Response {
    let params = params(query);
    let number = |name: &str| params.get(name).and_then(|v| v.parse::<usize>().ok());
    let limit = number("limit")
        .filter(|l| *l > 0)
        .unwrap_or(DEFAULT_PAGE)
        .min(inner.max_page);
    let page = number("page").unwrap_or(1).max(1);
    let total = items.len();
    let last = total.div_ceil(limit).max(1);
    let page_items: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * limit)
        .take(limit)
        .collect();
    let link_to = |p: usize, rel: &str| {
        let mut q = params.clone();
        q.insert("limit".into(), limit.to_string());
        q.insert("page".into(), p.to_string());
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q.iter())
            .finish();
        format!("<{url}?{query}>; rel=\"{rel}\"")
    };
    // Gitea's order: next, last, first, prev.
    let mut links = Vec::new();
    if page < last {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last, "last"));
    }
    if page > 1 {
        links.push(link_to(1, "first"));
        links.push(link_to(page - 1, "prev"));
    }
    let mut headers = vec![("x-total-count", total.to_string())];
    if inner.link_headers && !links.is_empty() {
        headers.push(("link", links.join(",")));
    }
    json_response(StatusCode::OK, Value::Array(page_items), &headers)
}

fn create_pr(shared: &Shared<Inner>, body: &[u8], web: &str, api: &str) -> Response {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "invalid JSON body", web);
    };
    let field = |name: &str| {
        req.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (head, base, title) = (field("head"), field("base"), field("title"));
    for (name, value) in [("Head", &head), ("Base", &base), ("Title", &title)] {
        if value.is_empty() {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("[{name}]: Required"),
                web,
            );
        }
    }
    if head == base {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid PullRequest: There are no changes between the head and the base",
            web,
        );
    }
    let mut inner = shared.lock();
    if let Some(existing) = inner
        .prs
        .iter()
        .find(|p| p.state == "open" && p.head == head && p.base == base)
    {
        let message = format!(
            "pull request already exists for these targets [id: {}, issue_id: {}, head_repo_id: 1, base_repo_id: 1, head_branch: {head}, base_branch: {base}]",
            400 + existing.number,
            existing.number,
        );
        return error(StatusCode::CONFLICT, &message, web);
    }
    // Gitea keeps the ids it knows and ignores the others.
    let labels: Vec<String> = req
        .get("labels")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .filter_map(|id| inner.labels.iter().find(|(i, _)| *i == id))
        .map(|(_, name)| name.clone())
        .collect();
    let pr = inner
        .new_pr(&head, &base, &title, &field("body"), labels)
        .clone();
    json_response(StatusCode::CREATED, inner.pr_json(&pr, web, api), &[])
}

/// `POST …/pulls/{n}/requested_reviewers`: `{"reviewers": [name]}`.
fn request_reviewers(shared: &Shared<Inner>, number: &str, body: &[u8], web: &str) -> Response {
    let reviewers: Option<Vec<String>> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("reviewers").and_then(Value::as_array).cloned())
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        });
    let Some(reviewers) = reviewers else {
        return error(StatusCode::BAD_REQUEST, "invalid JSON body", web);
    };
    let mut inner = shared.lock();
    let Some(index) = find(&inner, number) else {
        return not_found(web);
    };
    if let Some(unknown) = reviewers
        .iter()
        .find(|r| inner.users.as_ref().is_some_and(|users| !users.contains(r)))
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("User '{unknown}' not exist"),
            web,
        );
    }
    let pr = &mut inner.prs[index];
    for reviewer in &reviewers {
        if !pr.requested_reviewers.contains(reviewer) {
            pr.requested_reviewers.push(reviewer.clone());
        }
    }
    let reviews: Vec<Value> = reviewers
        .iter()
        .map(|r| json!({ "user": inner.user_json(r), "state": "REQUEST_REVIEW" }))
        .collect();
    json_response(StatusCode::CREATED, Value::Array(reviews), &[])
}

/// `POST …/issues/{n}/comments` on one of the pull requests.
fn create_comment(
    shared: &Shared<Inner>,
    number: &str,
    body: &[u8],
    web: &str,
    api: &str,
) -> Response {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "invalid JSON body", web);
    };
    let mut inner = shared.lock();
    let Some(index) = find(&inner, number) else {
        return not_found(web);
    };
    let text = req.get("body").and_then(Value::as_str).unwrap_or_default();
    if text.is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "[Body]: Required", web);
    }
    let number = inner.prs[index].number;
    let id = 70 + inner.comments.len() as u64 + 1;
    let comment = FakeComment {
        id,
        number,
        body: text.to_string(),
        user: inner.user.clone(),
    };
    inner.comments.push(comment.clone());
    let full_name = format!("{}/{}", inner.owner, inner.repo);
    let now = rfc3339(SystemTime::now());
    json_response(
        StatusCode::CREATED,
        json!({
            "id": id,
            "html_url": format!("{web}/{full_name}/pulls/{number}#issuecomment-{id}"),
            "pull_request_url": format!("{web}/{full_name}/pulls/{number}"),
            "issue_url": format!("{api}/repos/{full_name}/issues/{number}"),
            "user": inner.user_json(&comment.user),
            "body": comment.body,
            "created_at": now,
            "updated_at": now,
        }),
        &[],
    )
}

fn injected_response(injected: Injected, web: &str) -> Response {
    let status = server::status(injected.status);
    let message = match status.as_u16() {
        401 => "token is required",
        403 => "token does not have at least one of required scope(s): [write:repository]",
        404 => "The target couldn't be found.",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    };
    let mut extra = Vec::new();
    if let Some(wait) = injected.retry_after {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        extra.push(("retry-after", secs.to_string()));
    }
    json_response(status, api_error(message, web), &extra)
}

/// Gitea's `APIError` body.
fn api_error(message: &str, web: &str) -> Value {
    json!({ "message": message, "url": format!("{web}/api/swagger") })
}

fn error(status: StatusCode, message: &str, web: &str) -> Response {
    json_response(status, api_error(message, web), &[])
}

fn not_found(web: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({ "errors": null, "message": "The target couldn't be found.", "url": format!("{web}/api/swagger") }),
        &[],
    )
}

/// A JSON answer with Gitea's content type and `extra` headers.
fn json_response(status: StatusCode, body: Value, extra: &[(&'static str, String)]) -> Response {
    let mut response = server::json(status, body);
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(*name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::send;

    const TOKEN: &str = "gitea_token_0123";

    async fn start() -> (FakeGitea, String) {
        let fake = FakeGitea::start(TOKEN, "acme", "dbt")
            .await
            .expect("starts");
        let repo = format!("{}/repos/acme/dbt", fake.api_base());
        (fake, repo)
    }

    const AUTH: (&str, &str) = ("authorization", "token gitea_token_0123");

    #[tokio::test]
    async fn gitea_fake_creates_a_pr_and_refuses_a_second_for_the_same_branches_with_409() {
        let (fake, repo) = start().await;
        let bug = fake.add_label("bug");
        let pr = json!({ "head": "selfheal/x", "base": "main", "title": "WIP: fix", "labels": [bug, 999] });

        let (created, first) = send(
            Method::POST,
            &format!("{repo}/pulls"),
            &[AUTH],
            Some(pr.clone()),
        )
        .await;
        let (conflict, second) =
            send(Method::POST, &format!("{repo}/pulls"), &[AUTH], Some(pr)).await;
        let (unauthorized, _) = send(Method::GET, &format!("{repo}/pulls/1"), &[], None).await;

        assert_eq!(created, 201);
        assert_eq!(
            first["html_url"],
            format!("{}/acme/dbt/pulls/1", fake.web_base())
        );
        assert_eq!(first["draft"], true);
        assert_eq!(first["labels"][0]["name"], "bug");
        assert_eq!(
            first["labels"].as_array().map(Vec::len),
            Some(1),
            "unknown ids ignored"
        );
        assert_eq!(conflict, 409);
        assert!(
            second["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("pull request already exists"),
            "{second}"
        );
        assert_eq!(unauthorized, 401);
        assert_eq!(fake.prs().len(), 1);
    }

    #[tokio::test]
    async fn gitea_fake_pages_with_link_and_total_count_and_counts_merge_calls() {
        let (fake, repo) = start().await;
        for i in 0..5 {
            fake.seed_pr(&format!("selfheal/{i}"), "main", "fix");
        }
        fake.set_max_page_size(2);
        let (status, page) = send(
            Method::GET,
            &format!("{repo}/pulls?state=open&page=3&limit=50"),
            &[AUTH],
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(page.as_array().map(Vec::len), Some(1));
        assert_eq!(page[0]["number"], 5, "oldest first");

        let (merge, _) = send(
            Method::POST,
            &format!("{repo}/pulls/1/merge"),
            &[AUTH],
            Some(json!({"Do": "merge"})),
        )
        .await;
        assert_eq!(merge, 404);
        assert_eq!(fake.merge_calls(), 1);
        assert_eq!(fake.prs()[0].state, "open");
    }

    #[tokio::test]
    async fn gitea_fake_says_who_merged_and_refuses_unknown_reviewers() {
        let (fake, repo) = start().await;
        let n = fake.seed_pr("selfheal/x", "main", "fix");
        fake.set_users(&["alice"]);
        let url = format!("{repo}/pulls/{n}/requested_reviewers");
        let (ok, _) = send(
            Method::POST,
            &url,
            &[AUTH],
            Some(json!({"reviewers": ["alice"]})),
        )
        .await;
        let (unknown, said) = send(
            Method::POST,
            &url,
            &[AUTH],
            Some(json!({"reviewers": ["mallory"]})),
        )
        .await;
        assert!(fake.merge_pr(n, "alice"));
        let (_, pr) = send(Method::GET, &format!("{repo}/pulls/{n}"), &[AUTH], None).await;

        assert_eq!((ok, unknown), (201, 422));
        assert_eq!(said["message"], "User 'mallory' not exist");
        assert_eq!(fake.prs()[0].requested_reviewers, ["alice"]);
        assert_eq!(
            (pr["state"].as_str(), pr["merged"].as_bool()),
            (Some("closed"), Some(true))
        );
        assert_eq!(pr["merged_by"]["login"], "alice");
        assert_eq!(fake.merge_calls(), 0, "the fake merged, not a request");
    }

    #[tokio::test]
    async fn gitea_fake_answers_injected_failures_first_and_a_read_only_token_with_403() {
        let (fake, repo) = start().await;
        fake.fail_next(429, 1, Some(Duration::from_millis(1500)));
        let (limited, _) = send(Method::GET, &repo, &[AUTH], None).await;
        fake.set_can_push(false);
        let (forbidden, said) = send(
            Method::POST,
            &format!("{repo}/pulls"),
            &[AUTH],
            Some(json!({"head": "a", "base": "b", "title": "t"})),
        )
        .await;
        let (_, repo_json) = send(Method::GET, &repo, &[AUTH], None).await;

        assert_eq!(limited, 429);
        assert_eq!(forbidden, 403);
        assert!(
            said["message"]
                .as_str()
                .unwrap_or_default()
                .contains("write:repository"),
            "{said}"
        );
        assert_eq!(repo_json["permissions"]["push"], false);
        assert_eq!(fake.requests().len(), 3, "every request recorded");
    }
}
