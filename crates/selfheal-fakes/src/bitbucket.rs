//! A local fake of Bitbucket Cloud's REST 2.0 API for pull requests over
//! loopback, for tests and the demo.
//!
//! Start one with [`FakeBitbucket::start`], point selfheal's
//! `forge::Bitbucket` at [`FakeBitbucket::api_base`] (`http://127.0.0.1:PORT/2.0`),
//! then assert on [`FakeBitbucket::prs`], [`FakeBitbucket::requests`],
//! [`FakeBitbucket::comments`] and [`FakeBitbucket::merge_calls`], act as the
//! humans with [`FakeBitbucket::merge_pr`] and [`FakeBitbucket::decline_pr`],
//! and inject trouble with [`FakeBitbucket::fail_next`].
//!
//! What it owns: an HTTP listener on `127.0.0.1:0`, one repository's pull
//! requests and their comments, the workspace's members and the token's
//! permission, in memory, and a record of every request (without the
//! `Authorization` value). Its web pages (`links.html.href`) are on the same
//! origin as its API: `http://127.0.0.1:PORT/{workspace}/{slug}/pull-requests/{id}`.
//!
//! What it implements, in the shapes of the recorded answers in
//! shared/reference/forge-payloads/bitbucket (errors are
//! `{"type": "error", "error": {"message": …}}`):
//! - `POST /2.0/repositories/{w}/{s}/pullrequests`: 401 without the right
//!   credentials (`Bearer <token>`, or `Basic` of `user:app_password`), 403
//!   for a read-only token, 400 for bad JSON, a missing `title` or
//!   `source.branch.name`, or a reviewer who is not a member; `destination`
//!   defaults to `main`. Posting for a source branch that has an open pull
//!   request updates that one (200), as Bitbucket does; else 201;
//! - `GET …/pullrequests?state=&q=&pagelen=&page=`: pages
//!   `{size, page, pagelen, next, previous, values}` with an absolute `next`;
//!   `pagelen` capped by [`FakeBitbucket::set_max_pagelen`] (Bitbucket: 50 for
//!   pull requests); `q` takes BBQL clauses joined by `AND`, each
//!   `field (=|!=|~) "text"` on `source.branch.name`,
//!   `destination.branch.name` or `state` (`~` is "contains"), else 400;
//!   list items leave out `description` after
//!   [`FakeBitbucket::omit_list_descriptions`];
//! - `GET …/pullrequests/{id}`: `state` `OPEN|MERGED|DECLINED`, `closed_by`;
//!   no `ETag` (whether Bitbucket sends one is unverified);
//! - `POST …/pullrequests/{id}/comments` `{"content": {"raw": …}}`: 201 with
//!   a `pullrequest_comment`; 400 for an empty one, 404 for no such pull request;
//! - `GET /2.0/repositories/{w}/{s}`, `GET /2.0/workspaces/{w}/members`
//!   (paged), `GET /2.0/user/permissions/repositories?q=repository.full_name="w/s"`.
//!
//! Everything else answers 404. Requests that would merge, approve, decline
//! or request changes (`…/pullrequests/{id}/merge|approve|decline|request-changes`)
//! are refused and counted in [`FakeBitbucket::merge_calls`]: selfheal never
//! does any of it, and tests assert the count stays 0. No TLS, no rate
//! limiting but the injected one.

use std::collections::BTreeMap;
use std::sync::MutexGuard;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Value};

use crate::server::{
    self, AuthSeen, Credentials, Gate, HttpFake, RecordedRequest, Request, Shared,
};

/// A running fake. Dropping it stops the server.
pub struct FakeBitbucket {
    fake: HttpFake<Inner>,
}

/// A pull request held by the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePr {
    pub id: u64,
    /// `source.branch.name`.
    pub source: String,
    /// `destination.branch.name`.
    pub destination: String,
    pub title: String,
    pub description: String,
    /// `OPEN`, `MERGED` or `DECLINED`.
    pub state: String,
    /// The reviewers' account UUIDs.
    pub reviewers: Vec<String>,
    /// The nickname of who merged or declined it.
    pub closed_by: Option<String>,
    /// How many times a create for its source branch updated it.
    pub updates: usize,
}

/// A comment on a pull request, as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeComment {
    pub id: u64,
    /// The pull request's id.
    pub pr: u64,
    /// `content.raw`.
    pub raw: String,
}

/// A member of the workspace, who may be asked to review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMember {
    pub uuid: String,
    pub nickname: String,
    pub account_id: String,
}

struct Inner {
    gate: Gate<Injected>,
    workspace: String,
    slug: String,
    prs: Vec<FakePr>,
    comments: Vec<FakeComment>,
    members: Vec<FakeMember>,
    /// The token's permission on the repository: `read`, `write` or `admin`.
    permission: String,
    max_pagelen: usize,
    omit_list_descriptions: bool,
    merge_calls: usize,
}

#[derive(Clone, Copy)]
struct Injected {
    status: u16,
    retry_after: Option<Duration>,
}

impl FakeBitbucket {
    /// Starts a fake serving `workspace/slug` that accepts `credential`: an
    /// access token (`Authorization: Bearer`), or `user:app_password` (HTTP
    /// Basic). The workspace has one member, `reviewer-ann`.
    pub async fn start(
        credential: &str,
        workspace: &str,
        slug: &str,
    ) -> anyhow::Result<FakeBitbucket> {
        let credentials = if credential.contains(':') {
            Credentials::Authorization {
                schemes: &["Basic"],
                token: base64::engine::general_purpose::STANDARD.encode(credential),
            }
        } else {
            Credentials::bearer(credential)
        };
        let inner = Inner {
            gate: Gate::new(credentials),
            workspace: workspace.to_string(),
            slug: slug.to_string(),
            prs: Vec::new(),
            comments: Vec::new(),
            members: vec![FakeMember {
                uuid: "{7a1e0c4e-0000-4000-8000-00000000a001}".into(),
                nickname: "reviewer-ann".into(),
                account_id: "557058:ann".into(),
            }],
            permission: "write".into(),
            max_pagelen: 50,
            omit_list_descriptions: false,
            merge_calls: 0,
        };
        let fake = HttpFake::start("fake Bitbucket", inner, handle).await?;
        Ok(FakeBitbucket { fake })
    }

    /// `http://127.0.0.1:PORT/2.0`, like `https://api.bitbucket.org/2.0`.
    pub fn api_base(&self) -> String {
        format!("{}/2.0", self.fake.base_url())
    }

    /// `http://127.0.0.1:PORT`, like `https://bitbucket.org`.
    pub fn web_base(&self) -> String {
        self.fake.base_url()
    }

    /// Every pull request, in creation order.
    pub fn prs(&self) -> Vec<FakePr> {
        self.lock().prs.clone()
    }

    /// Every comment, in order.
    pub fn comments(&self) -> Vec<FakeComment> {
        self.lock().comments.clone()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().gate.requests()
    }

    /// The workspace's members.
    pub fn members(&self) -> Vec<FakeMember> {
        self.lock().members.clone()
    }

    /// Adds a member to the workspace.
    pub fn add_member(&self, uuid: &str, nickname: &str, account_id: &str) {
        self.lock().members.push(FakeMember {
            uuid: uuid.into(),
            nickname: nickname.into(),
            account_id: account_id.into(),
        });
    }

    /// The token's permission on the repository (`read`, `write`, `admin`);
    /// with `read`, creating pull requests and comments is refused with 403.
    pub fn set_permission(&self, permission: &str) {
        self.lock().permission = permission.to_string();
    }

    /// The most pull requests a page holds, whatever `pagelen` asks.
    pub fn set_max_pagelen(&self, max: usize) {
        self.lock().max_pagelen = max.max(1);
    }

    /// Lists leave out each pull request's `description`.
    pub fn omit_list_descriptions(&self, omit: bool) {
        self.lock().omit_list_descriptions = omit;
    }

    /// The next `times` requests answer `status` with Bitbucket's error body
    /// and, when given, a `Retry-After` header (whole seconds, rounded up).
    pub fn fail_next(&self, status: u16, times: usize, retry_after: Option<Duration>) {
        let failure = Injected {
            status,
            retry_after,
        };
        self.lock().gate.fail_next(failure, times);
    }

    /// Adds an open pull request as if someone had opened it; returns its id.
    pub fn seed_pr(&self, source: &str, destination: &str, title: &str) -> u64 {
        self.lock()
            .new_pr(source, destination, title, "", Vec::new())
            .id
    }

    /// Merges pull request `id` as the person `nickname` would: `state:
    /// MERGED`, `closed_by`. A test's doing, never a request's:
    /// [`FakeBitbucket::merge_calls`] stays as it was. False if there is none.
    pub fn merge_pr(&self, id: u64, nickname: &str) -> bool {
        self.settle(id, "MERGED", nickname)
    }

    /// Declines pull request `id` as the person `nickname` would.
    pub fn decline_pr(&self, id: u64, nickname: &str) -> bool {
        self.settle(id, "DECLINED", nickname)
    }

    fn settle(&self, id: u64, state: &str, nickname: &str) -> bool {
        let mut inner = self.lock();
        match inner.prs.iter_mut().find(|pr| pr.id == id) {
            Some(pr) => {
                pr.state = state.to_string();
                pr.closed_by = Some(nickname.to_string());
                true
            }
            None => false,
        }
    }

    /// How many requests tried to merge, approve, decline or request
    /// changes. selfheal does none of it: always 0.
    pub fn merge_calls(&self) -> usize {
        self.lock().merge_calls
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
        source: &str,
        destination: &str,
        title: &str,
        description: &str,
        reviewers: Vec<String>,
    ) -> &FakePr {
        let id = self.prs.iter().map(|p| p.id).max().unwrap_or(0) + 1;
        self.prs.push(FakePr {
            id,
            source: source.to_string(),
            destination: destination.to_string(),
            title: title.to_string(),
            description: description.to_string(),
            state: "OPEN".to_string(),
            reviewers,
            closed_by: None,
            updates: 0,
        });
        self.prs.last().expect("just pushed")
    }

    fn full_name(&self) -> String {
        format!("{}/{}", self.workspace, self.slug)
    }

    fn user_json(&self, nickname: &str) -> Value {
        let member = self.members.iter().find(|m| m.nickname == nickname);
        json!({
            "type": "user",
            "display_name": nickname.replace('-', " "),
            "nickname": nickname,
            "uuid": member.map_or("{00000000-0000-4000-8000-000000000000}", |m| m.uuid.as_str()),
            "account_id": member.map_or("557058:unknown", |m| m.account_id.as_str()),
        })
    }

    /// The `pullrequest` object, in the shape of the recorded
    /// `create_pullrequest.response` (the parts selfheal could read, and a
    /// few beside them).
    fn pr_json(&self, pr: &FakePr, api: &str, web: &str, with_description: bool) -> Value {
        let full_name = self.full_name();
        let repo = json!({
            "type": "repository",
            "full_name": full_name,
            "name": self.slug,
            "links": { "html": { "href": format!("{web}/{full_name}") } },
        });
        let self_href = format!("{api}/repositories/{full_name}/pullrequests/{}", pr.id);
        let reviewers: Vec<Value> = pr
            .reviewers
            .iter()
            .map(|uuid| {
                let nickname = self
                    .members
                    .iter()
                    .find(|m| &m.uuid == uuid)
                    .map_or("unknown", |m| m.nickname.as_str());
                self.user_json(nickname)
            })
            .collect();
        let mut body = json!({
            "type": "pullrequest",
            "id": pr.id,
            "title": pr.title,
            "state": pr.state,
            "summary": { "raw": pr.description, "markup": "markdown", "type": "rendered" },
            "source": { "branch": { "name": pr.source }, "repository": repo },
            "destination": { "branch": { "name": pr.destination }, "repository": repo },
            "author": self.user_json("selfheal-bot"),
            "reviewers": reviewers,
            "close_source_branch": false,
            "merge_commit": if pr.state == "MERGED" { json!({ "hash": "36bb9607a8c9" }) } else { Value::Null },
            "closed_by": pr.closed_by.as_deref().map_or(Value::Null, |n| self.user_json(n)),
            "comment_count": self.comments.iter().filter(|c| c.pr == pr.id).count(),
            "links": {
                "self": { "href": self_href },
                "html": { "href": format!("{web}/{full_name}/pull-requests/{}", pr.id) },
                "comments": { "href": format!("{self_href}/comments") },
                "merge": { "href": format!("{self_href}/merge") },
                "approve": { "href": format!("{self_href}/approve") },
                "decline": { "href": format!("{self_href}/decline") },
            },
        });
        if with_description {
            body["description"] = json!(pr.description);
        }
        body
    }
}

/// Every request lands here, as in the GitHub fake.
async fn handle(State(shared): State<Shared<Inner>>, req: Request) -> Response {
    let web = shared.base_url();
    let api = format!("{web}/2.0");
    let Some(route) = req.uri.path().strip_prefix("/2.0") else {
        return error(StatusCode::NOT_FOUND, "Resource not found");
    };
    let segments: Vec<&str> = route.trim_matches('/').split('/').collect();
    let query = req.uri.query().unwrap_or("").to_string();

    // Record, count forbidden calls, take an injected failure, under one lock.
    let (auth, injected) = {
        let mut inner = shared.lock();
        let answer = inner.gate.admit(&req);
        let forbidden = matches!(
            segments.as_slice(),
            [
                "repositories",
                _,
                _,
                "pullrequests",
                _,
                "merge" | "approve" | "decline" | "request-changes",
                ..
            ]
        );
        if forbidden {
            inner.merge_calls += 1;
        }
        answer
    };
    if let Some(injected) = injected {
        return injected_response(injected);
    }
    if auth != AuthSeen::Valid {
        return error(StatusCode::UNAUTHORIZED, "Invalid or expired token");
    }

    let mut inner = shared.lock();
    let (workspace, slug) = (inner.workspace.clone(), inner.slug.clone());
    let ours = |w: &str, s: &str| w == workspace && s == slug;
    let writable = inner.permission != "read";
    let method = &req.method;
    match segments.as_slice() {
        ["repositories", w, s] if ours(w, s) && method == Method::GET => {
            let full_name = inner.full_name();
            server::json(
                StatusCode::OK,
                json!({
                    "type": "repository",
                    "full_name": full_name,
                    "name": inner.slug,
                    "is_private": true,
                    "mainbranch": { "type": "branch", "name": "main" },
                    "links": { "html": { "href": format!("{web}/{full_name}") } },
                }),
            )
        }
        ["repositories", w, s, "pullrequests"] if ours(w, s) => match *method {
            Method::POST if !writable => forbidden(),
            Method::POST => create_pr(&mut inner, &req.body, &api, &web),
            Method::GET => list_prs(&inner, &query, &api, &web, route),
            _ => not_found(),
        },
        ["repositories", w, s, "pullrequests", id] if ours(w, s) && method == Method::GET => {
            match find(&inner, id) {
                Some(pr) => server::json(StatusCode::OK, inner.pr_json(&pr, &api, &web, true)),
                None => not_found(),
            }
        }
        ["repositories", w, s, "pullrequests", id, "comments"]
            if ours(w, s) && method == Method::POST =>
        {
            match (writable, find(&inner, id)) {
                (false, _) => forbidden(),
                (true, None) => not_found(),
                (true, Some(pr)) => create_comment(&mut inner, pr.id, &req.body, &api, &web),
            }
        }
        ["repositories", w, s, "pullrequests", _, _] if ours(w, s) && method == Method::POST => {
            error(
                StatusCode::FORBIDDEN,
                "the fake refuses to merge, approve or decline",
            )
        }
        ["workspaces", w, "members"] if *w == workspace && method == Method::GET => {
            let values: Vec<Value> = inner
                .members
                .iter()
                .map(|m| json!({ "type": "workspace_membership", "user": inner.user_json(&m.nickname) }))
                .collect();
            page(&query, values, inner.max_pagelen, &api, route)
        }
        ["user", "permissions", "repositories"] if method == Method::GET => {
            let params = params(&query);
            let want = format!("repository.full_name=\"{}\"", inner.full_name());
            let values = match params.get("q") {
                Some(q) if q.replace(' ', "") != want => vec![],
                _ => vec![json!({
                    "type": "repository_permission",
                    "permission": inner.permission,
                    "repository": { "type": "repository", "full_name": inner.full_name() },
                    "user": inner.user_json("selfheal-bot"),
                })],
            };
            page(&query, values, inner.max_pagelen, &api, route)
        }
        _ => not_found(),
    }
}

fn find(inner: &Inner, id: &str) -> Option<FakePr> {
    let id = id.parse::<u64>().ok()?;
    inner.prs.iter().find(|p| p.id == id).cloned()
}

/// `POST …/pullrequests`: a new pull request, or an update of the open one
/// from the same source branch.
fn create_pr(inner: &mut Inner, body: &[u8], api: &str, web: &str) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "Invalid JSON");
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let title = text(&req["title"]);
    let source = text(&req["source"]["branch"]["name"]);
    if title.is_empty() {
        return error(StatusCode::BAD_REQUEST, "title: This field is required.");
    }
    if source.is_empty() {
        return error(StatusCode::BAD_REQUEST, "source: This field is required.");
    }
    let destination = match text(&req["destination"]["branch"]["name"]) {
        d if d.is_empty() => "main".to_string(),
        d => d,
    };
    if source == destination {
        return error(StatusCode::BAD_REQUEST, "There are no changes to be pulled");
    }
    let description = text(&req["description"]);
    let mut reviewers = Vec::new();
    for reviewer in req["reviewers"].as_array().into_iter().flatten() {
        let uuid = text(&reviewer["uuid"]);
        if !inner.members.iter().any(|m| m.uuid == uuid) {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("reviewers: {uuid} is not a valid user"),
            );
        }
        reviewers.push(uuid);
    }
    if let Some(open) = inner
        .prs
        .iter_mut()
        .find(|p| p.state == "OPEN" && p.source == source)
    {
        open.title = title;
        open.description = description;
        open.destination = destination;
        open.reviewers = reviewers;
        open.updates += 1;
        let pr = open.clone();
        return server::json(StatusCode::OK, inner.pr_json(&pr, api, web, true));
    }
    let pr = inner
        .new_pr(&source, &destination, &title, &description, reviewers)
        .clone();
    server::json(StatusCode::CREATED, inner.pr_json(&pr, api, web, true))
}

fn create_comment(inner: &mut Inner, pr: u64, body: &[u8], api: &str, web: &str) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "Invalid JSON");
    };
    let raw = req["content"]["raw"].as_str().unwrap_or_default();
    if raw.is_empty() {
        return error(StatusCode::BAD_REQUEST, "content: This field is required.");
    }
    let id = 196_230_000 + inner.comments.len() as u64 + 1;
    inner.comments.push(FakeComment {
        id,
        pr,
        raw: raw.to_string(),
    });
    let full_name = inner.full_name();
    server::json(
        StatusCode::CREATED,
        json!({
            "type": "pullrequest_comment",
            "id": id,
            "deleted": false,
            "content": { "raw": raw, "markup": "markdown", "type": "rendered" },
            "pullrequest": { "type": "pullrequest", "id": pr },
            "user": inner.user_json("selfheal-bot"),
            "links": {
                "self": { "href": format!("{api}/repositories/{full_name}/pullrequests/{pr}/comments/{id}") },
                "html": { "href": format!("{web}/{full_name}/pull-requests/{pr}/_/diff#comment-{id}") },
            },
        }),
    )
}

fn list_prs(inner: &Inner, query: &str, api: &str, web: &str, route: &str) -> Response {
    let all = params(query);
    let states: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .collect();
    let states = if states.is_empty() {
        vec!["OPEN".to_string()]
    } else {
        states
    };
    let clauses = match all.get("q").map(|q| parse_bbql(q)) {
        None => Vec::new(),
        Some(Ok(clauses)) => clauses,
        Some(Err(message)) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let values: Vec<Value> = inner
        .prs
        .iter()
        .filter(|p| states.contains(&p.state))
        .filter(|p| clauses.iter().all(|c| c.holds(p)))
        .map(|p| inner.pr_json(p, api, web, !inner.omit_list_descriptions))
        .collect();
    page(query, values, inner.max_pagelen, api, route)
}

/// One page of `values` as Bitbucket pages lists, with absolute `next` and
/// `previous` links that keep the other parameters.
fn page(query: &str, values: Vec<Value>, max_pagelen: usize, api: &str, route: &str) -> Response {
    let all = params(query);
    let pagelen = all
        .get("pagelen")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, max_pagelen);
    let page = all
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let size = values.len();
    let items: Vec<Value> = values
        .into_iter()
        .skip((page - 1) * pagelen)
        .take(pagelen)
        .collect();
    let link = |p: usize| {
        let pairs = url::form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .chain([("page".to_string(), p.to_string())]);
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("{api}{route}?{query}")
    };
    let mut body = json!({ "size": size, "page": page, "pagelen": pagelen, "values": items });
    if page * pagelen < size {
        body["next"] = json!(link(page + 1));
    }
    if page > 1 {
        body["previous"] = json!(link(page - 1));
    }
    server::json(StatusCode::OK, body)
}

fn params(query: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// One BBQL comparison the fake understands.
#[derive(Debug, PartialEq)]
struct Clause {
    field: String,
    op: String,
    value: String,
}

impl Clause {
    fn holds(&self, pr: &FakePr) -> bool {
        let actual = match self.field.as_str() {
            "source.branch.name" => &pr.source,
            "destination.branch.name" => &pr.destination,
            _ => &pr.state,
        };
        match self.op.as_str() {
            "=" => *actual == self.value,
            "!=" => *actual != self.value,
            _ => actual.contains(&self.value),
        }
    }
}

/// `field op "text" [AND field op "text"]…`; an error message for anything else.
fn parse_bbql(q: &str) -> Result<Vec<Clause>, String> {
    let mut clauses = Vec::new();
    let mut rest = q.trim();
    loop {
        let (field, after) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("Invalid query: {q}"))?;
        if !matches!(
            field,
            "source.branch.name" | "destination.branch.name" | "state"
        ) {
            return Err(format!("Invalid field name: {field}"));
        }
        let after = after.trim_start();
        let (op, after) = ["!=", "=", "~"]
            .iter()
            .find_map(|op| after.strip_prefix(op).map(|a| (*op, a.trim_start())))
            .ok_or_else(|| format!("Invalid operator in query: {q}"))?;
        let mut chars = after.strip_prefix('"').ok_or("Expected a string")?.chars();
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => value.extend(chars.next()),
                Some('"') => break,
                Some(c) => value.push(c),
                None => return Err("Unterminated string".into()),
            }
        }
        clauses.push(Clause {
            field: field.to_string(),
            op: op.to_string(),
            value,
        });
        rest = chars.as_str().trim_start();
        if rest.is_empty() {
            return Ok(clauses);
        }
        rest = rest
            .strip_prefix("AND ")
            .ok_or_else(|| format!("Invalid query: {q}"))?
            .trim_start();
    }
}

fn injected_response(injected: Injected) -> Response {
    let status = server::status(injected.status);
    let message = match injected.status {
        429 => "Rate limit for this resource has been exceeded",
        401 => "Invalid or expired token",
        403 => "Your credentials lack one or more required privilege scopes.",
        _ => "Something went wrong",
    };
    let mut response = error(status, message);
    if let Some(wait) = injected.retry_after {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert("retry-after", value);
        }
    }
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    server::json(
        status,
        json!({ "type": "error", "error": { "message": message } }),
    )
}

fn forbidden() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "You do not have write access to this repository.",
    )
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Resource not found")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::send;

    const TOKEN: &str = "ATCTT3xFfGN0faketoken";

    async fn spawn() -> (FakeBitbucket, String) {
        let fake = FakeBitbucket::start(TOKEN, "acme", "dbt")
            .await
            .expect("fake starts");
        let pulls = format!("{}/repositories/acme/dbt/pullrequests", fake.api_base());
        (fake, pulls)
    }

    fn auth() -> [(&'static str, &'static str); 1] {
        [("authorization", "Bearer ATCTT3xFfGN0faketoken")]
    }

    fn create(source: &str) -> Value {
        json!({
            "title": "fix",
            "source": { "branch": { "name": source } },
            "destination": { "branch": { "name": "main" } },
            "description": "why",
        })
    }

    #[tokio::test]
    async fn bitbucket_fake_updates_the_open_pr_of_a_source_branch_instead_of_opening_another() {
        let (fake, pulls) = spawn().await;
        let (first, pr) = send(Method::POST, &pulls, &auth(), Some(create("selfheal/x"))).await;
        let mut again = create("selfheal/x");
        again["title"] = json!("fix, again");
        let (second, updated) = send(Method::POST, &pulls, &auth(), Some(again)).await;

        assert_eq!((first, second), (201, 200));
        assert_eq!(pr["id"], updated["id"]);
        let prs = fake.prs();
        assert_eq!(prs.len(), 1);
        assert_eq!((prs[0].title.as_str(), prs[0].updates), ("fix, again", 1));
        assert_eq!(
            pr["links"]["html"]["href"],
            format!("{}/acme/dbt/pull-requests/1", fake.web_base())
        );
        // A declined one does not stop a new one.
        assert!(fake.decline_pr(1, "ann"));
        let (third, pr) = send(Method::POST, &pulls, &auth(), Some(create("selfheal/x"))).await;
        assert_eq!((third, pr["id"].as_u64()), (201, Some(2)));
    }

    #[tokio::test]
    async fn bitbucket_fake_pages_with_next_links_and_filters_with_bbql() {
        let (fake, pulls) = spawn().await;
        for i in 0..5 {
            fake.seed_pr(&format!("selfheal/run-{i}"), "main", "fix");
        }
        fake.seed_pr("feature/a", "main", "a person's");
        fake.set_max_pagelen(2);
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", "OPEN")
            .append_pair(
                "q",
                r#"source.branch.name ~ "selfheal/" AND state = "OPEN""#,
            )
            .append_pair("pagelen", "50")
            .finish();

        let mut next = Some(format!("{pulls}?{q}"));
        let mut seen = Vec::new();
        let mut pages = 0;
        while let Some(url) = next.take() {
            let (status, page) = send(Method::GET, &url, &auth(), None).await;
            assert_eq!(status, 200, "{page}");
            pages += 1;
            assert_eq!(page["size"], 5);
            for pr in page["values"].as_array().expect("values") {
                seen.push(
                    pr["source"]["branch"]["name"]
                        .as_str()
                        .expect("name")
                        .to_string(),
                );
            }
            next = page["next"].as_str().map(str::to_string);
        }

        assert_eq!(pages, 3);
        assert_eq!(seen.len(), 5);
        assert!(seen.iter().all(|s| s.starts_with("selfheal/")));
        let (status, body) = send(
            Method::GET,
            &format!("{pulls}?q=title%20%3D%20%22x%22"),
            &auth(),
            None,
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(fake.merge_calls(), 0);
    }

    #[tokio::test]
    async fn bitbucket_fake_checks_credentials_injects_failures_and_counts_merges() {
        let (fake, pulls) = spawn().await;
        fake.seed_pr("selfheal/x", "main", "fix");
        let (unauthorized, body) = send(
            Method::GET,
            &pulls,
            &[("authorization", "Bearer wrong")],
            None,
        )
        .await;
        fake.fail_next(429, 1, Some(Duration::from_secs(2)));
        let (limited, _) = send(Method::GET, &pulls, &auth(), None).await;
        let (merge, _) = send(
            Method::POST,
            &format!("{pulls}/1/merge"),
            &auth(),
            Some(json!({})),
        )
        .await;
        let (approve, _) = send(Method::POST, &format!("{pulls}/1/approve"), &auth(), None).await;
        fake.set_permission("read");
        let (read_only, _) = send(Method::POST, &pulls, &auth(), Some(create("selfheal/y"))).await;

        assert_eq!((unauthorized, limited, read_only), (401, 429, 403));
        assert_eq!(body["error"]["message"], "Invalid or expired token");
        assert_eq!((merge, approve), (403, 403));
        assert_eq!(fake.merge_calls(), 2);
        assert_eq!(fake.prs()[0].state, "OPEN");
        assert!(fake
            .requests()
            .iter()
            .all(|r| !r.headers.contains_key("authorization")));
    }

    #[tokio::test]
    async fn bitbucket_fake_takes_basic_app_password_credentials() {
        let fake = FakeBitbucket::start("bot:app-pass", "acme", "dbt")
            .await
            .expect("fake starts");
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("bot:app-pass")
        );
        let url = format!("{}/repositories/acme/dbt", fake.api_base());
        let (ok, repo) = send(Method::GET, &url, &[("authorization", &basic)], None).await;
        let (bearer, _) = send(
            Method::GET,
            &url,
            &[("authorization", "Bearer bot:app-pass")],
            None,
        )
        .await;
        assert_eq!((ok, bearer), (200, 401));
        assert_eq!(repo["full_name"], "acme/dbt");
    }

    #[test]
    fn bitbucket_fake_reads_the_bbql_selfheal_sends() {
        let clause = |field: &str, op: &str, value: &str| Clause {
            field: field.into(),
            op: op.into(),
            value: value.into(),
        };
        let cases: [(&str, Result<Vec<Clause>, ()>); 5] = [
            (
                r#"source.branch.name ~ "selfheal/" AND state = "OPEN""#,
                Ok(vec![
                    clause("source.branch.name", "~", "selfheal/"),
                    clause("state", "=", "OPEN"),
                ]),
            ),
            (
                r#"source.branch.name = "a\"b""#,
                Ok(vec![clause("source.branch.name", "=", "a\"b")]),
            ),
            (r#"title = "x""#, Err(())),
            (r#"state = OPEN"#, Err(())),
            (r#"state = "OPEN" OR state = "MERGED""#, Err(())),
        ];
        for (q, want) in cases {
            assert_eq!(parse_bbql(q).map_err(|_| ()), want, "{q}");
        }
    }
}
