//! A local fake of the Azure DevOps Git REST API (7.1) pull-request endpoints
//! over loopback, for tests and the demo.
//!
//! Start one with [`FakeAzureDevOps::start`], point selfheal's
//! `forge::AzureDevOps` at [`FakeAzureDevOps::api_base`] (like
//! `https://dev.azure.com`) or [`FakeAzureDevOps::server_base`] (like an Azure
//! DevOps Server collection, `https://HOST/tfs/{collection}`), then assert on
//! [`FakeAzureDevOps::prs`], [`FakeAzureDevOps::requests`],
//! [`FakeAzureDevOps::threads`] and [`FakeAzureDevOps::merge_calls`]; act as the
//! humans with [`FakeAzureDevOps::complete_pr`] and
//! [`FakeAzureDevOps::abandon_pr`]; inject trouble with
//! [`FakeAzureDevOps::fail_next`] and [`FakeAzureDevOps::sign_in_next`].
//!
//! What it owns: an HTTP listener on `127.0.0.1:0`, one repository's pull
//! requests and their threads in memory, and a record of every request (the
//! `Authorization` value is not kept, only whether it was right).
//!
//! What it implements, in the shapes of MicrosoftDocs/vsts-rest-api-specs
//! (git 7.1) and go-scm's captured answers (tests/fixtures/azure-devops):
//! every request needs `api-version=7.1` (else 400) and a personal access
//! token as HTTP Basic credentials with an empty user name (else 401);
//! - `GET /{org}/{project}/_apis/git/repositories/{repo}`: the repository;
//! - `POST …/pullrequests`: 201; 400 without `sourceRefName`, `targetRefName`
//!   or `title`, or with a description over 4,000 characters (Azure's own
//!   error body); 409 `TF401179` for a second active pull request with the same
//!   source and target; 403 `TF401027` for a read-only token;
//! - `GET …/pullrequests?searchCriteria.status=&searchCriteria.sourceRefName=
//!   &searchCriteria.targetRefName=&$top=&$skip=`: `{value, count}`, newest
//!   first, each `description` cut to 400 characters as Azure's list does;
//! - `GET …/pullrequests/{id}`: one pull request, its description whole, with
//!   `closedBy` and `closedDate` once completed or abandoned;
//! - `POST …/pullRequests/{id}/threads`: 200 with the thread; 404 for no such
//!   pull request; 403 for a read-only token;
//! - `GET /{org}/_apis/identities?searchFilter=General&filterValue=`: the
//!   identities added with [`FakeAzureDevOps::add_identity`] whose account
//!   name, display name or e-mail is the filter (Azure DevOps Services serves
//!   this from `vssps.dev.azure.com/{org}`; the fake from its one origin).
//!
//! Path segments are matched case-insensitively (`pullRequests` and
//! `pullrequests` both work, as on Azure). Everything else answers 404.
//! Anything that would complete, abandon, approve or vote (a `PATCH` or `PUT`
//! on a pull request or its reviewers, a body with `status: completed`,
//! `autoCompleteSetBy` or a `vote`) is counted in
//! [`FakeAzureDevOps::merge_calls`] and refused: selfheal never merges, and
//! tests assert the count stays 0. It sends no ETags (Azure documents none
//! for this endpoint), does no TLS and no real rate limiting.

use std::collections::BTreeMap;
use std::sync::MutexGuard;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Value};

use crate::server::rfc3339;
use crate::server::{
    self, AuthSeen, Credentials, Gate, HttpFake, RecordedRequest, Request, Shared,
};

/// Azure refuses longer descriptions.
pub const MAX_DESCRIPTION_CHARS: usize = 4_000;
/// The list cuts descriptions to this many characters.
pub const LISTED_DESCRIPTION_CHARS: usize = 400;

/// A running fake. Dropping it stops the server.
pub struct FakeAzureDevOps {
    fake: HttpFake<Inner>,
}

/// A pull request held by the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePr {
    pub id: u64,
    /// Full ref names, as Azure keeps them: `refs/heads/selfheal/x`.
    pub source_ref: String,
    pub target_ref: String,
    pub title: String,
    pub description: String,
    /// `active`, `completed` or `abandoned`.
    pub status: String,
    pub is_draft: bool,
    pub labels: Vec<String>,
    /// Identity ids of the reviewers asked for.
    pub reviewers: Vec<String>,
    pub creation_date: String,
    pub closed_date: Option<String>,
    /// `(uniqueName, displayName)` of who completed or abandoned it.
    pub closed_by: Option<(String, String)>,
}

/// A thread started on a pull request, with its first comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeThread {
    pub id: u64,
    pub pr_id: u64,
    pub content: String,
    /// `1` is text.
    pub comment_type: u64,
    /// `1` is active.
    pub status: u64,
}

struct Inner {
    gate: Gate<Injected>,
    org: String,
    project: String,
    repo: String,
    prs: Vec<FakePr>,
    threads: Vec<FakeThread>,
    merge_calls: usize,
    read_only: bool,
    /// `(id, uniqueName, displayName)`.
    identities: Vec<(String, String, String)>,
}

#[derive(Clone, Copy)]
enum Injected {
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// What a bad personal access token often gets: 203 and the sign-in page.
    SignIn,
}

impl FakeAzureDevOps {
    /// Starts a fake serving `org/project/repo` that accepts the personal
    /// access token `pat`.
    pub async fn start(
        pat: &str,
        org: &str,
        project: &str,
        repo: &str,
    ) -> anyhow::Result<FakeAzureDevOps> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(":{pat}"));
        let credentials = Credentials::Authorization {
            schemes: &["Basic"],
            token: basic,
        };
        let inner = Inner {
            gate: Gate::new(credentials),
            org: org.to_string(),
            project: project.to_string(),
            repo: repo.to_string(),
            prs: Vec::new(),
            threads: Vec::new(),
            merge_calls: 0,
            read_only: false,
            identities: Vec::new(),
        };
        let fake = HttpFake::start("fake Azure DevOps", inner, handle).await?;
        Ok(FakeAzureDevOps { fake })
    }

    /// `http://127.0.0.1:PORT`, like `https://dev.azure.com`.
    pub fn api_base(&self) -> String {
        self.fake.base_url()
    }

    /// `http://127.0.0.1:PORT/tfs/{org}`, like an Azure DevOps Server
    /// collection URL (the organization is the collection).
    pub fn server_base(&self) -> String {
        format!("{}/tfs/{}", self.api_base(), self.lock().org)
    }

    /// Every pull request, in creation order.
    pub fn prs(&self) -> Vec<FakePr> {
        self.lock().prs.clone()
    }

    /// Every thread, in order.
    pub fn threads(&self) -> Vec<FakeThread> {
        self.lock().threads.clone()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().gate.requests()
    }

    /// The next `times` requests answer `status` with Azure's error body
    /// (`TF400733` for a 429) and, when given, a `Retry-After` header
    /// (whole seconds, rounded up).
    pub fn fail_next(&self, status: u16, times: usize, retry_after: Option<Duration>) {
        let failure = Injected::Status {
            status,
            retry_after,
        };
        self.lock().gate.fail_next(failure, times);
    }

    /// The next `times` requests answer 203 with the sign-in page, as Azure
    /// DevOps does for a personal access token it does not take.
    pub fn sign_in_next(&self, times: usize) {
        self.lock().gate.fail_next(Injected::SignIn, times);
    }

    /// An identity the identities API finds by `unique_name` (an e-mail or
    /// account name) or `display_name`.
    pub fn add_identity(&self, id: &str, unique_name: &str, display_name: &str) {
        self.lock().identities.push((
            id.to_string(),
            unique_name.to_string(),
            display_name.to_string(),
        ));
    }

    /// A read-only token: creating pull requests and threads is refused
    /// with 403 `TF401027`.
    pub fn set_read_only(&self, read_only: bool) {
        self.lock().read_only = read_only;
    }

    /// Adds an active pull request as if someone had opened it; returns its id.
    pub fn seed_pr(&self, head: &str, base: &str, title: &str, description: &str) -> u64 {
        let mut inner = self.lock();
        let pr = inner.new_pr(
            format!("refs/heads/{head}"),
            format!("refs/heads/{base}"),
            title,
            description,
        );
        pr.id
    }

    /// Completes (merges) pull request `id` as the human `unique_name`
    /// (`display_name`) would. A test's doing, never a request's:
    /// [`FakeAzureDevOps::merge_calls`] stays as it was. False if there is none.
    pub fn complete_pr(&self, id: u64, unique_name: &str, display_name: &str) -> bool {
        self.settle(id, "completed", unique_name, display_name)
    }

    /// Abandons pull request `id` as the human `unique_name` would.
    pub fn abandon_pr(&self, id: u64, unique_name: &str, display_name: &str) -> bool {
        self.settle(id, "abandoned", unique_name, display_name)
    }

    fn settle(&self, id: u64, status: &str, unique_name: &str, display_name: &str) -> bool {
        let mut inner = self.lock();
        match inner.prs.iter_mut().find(|pr| pr.id == id) {
            Some(pr) => {
                pr.status = status.to_string();
                pr.closed_date = Some(rfc3339(SystemTime::now()));
                pr.closed_by = Some((unique_name.to_string(), display_name.to_string()));
                true
            }
            None => false,
        }
    }

    /// How many requests tried to complete, abandon, approve or vote.
    /// selfheal never does: always 0.
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
        source: String,
        target: String,
        title: &str,
        description: &str,
    ) -> &FakePr {
        let id = self.prs.iter().map(|p| p.id).max().unwrap_or(0) + 1;
        self.prs.push(FakePr {
            id,
            source_ref: source,
            target_ref: target,
            title: title.to_string(),
            description: description.to_string(),
            status: "active".to_string(),
            is_draft: false,
            labels: Vec::new(),
            reviewers: Vec::new(),
            creation_date: rfc3339(SystemTime::now()),
            closed_date: None,
            closed_by: None,
        });
        self.prs.last().expect("just pushed")
    }

    /// The `GitPullRequest` in the spec's shape
    /// (create_pull_request.response_201.vsts-rest-api-specs.json).
    fn pr_json(&self, pr: &FakePr, base: &str) -> Value {
        let repo_url = format!("{base}/{}/_apis/git/repositories/{}", self.org, REPO_ID);
        let creator = identity(
            "d6245f20-2af8-44f4-9451-8107cb2767db",
            "selfheal",
            "selfheal-bot@acme.example",
        );
        let mut pr_json = json!({
            "repository": {
                "id": REPO_ID,
                "name": self.repo,
                "url": repo_url,
                "project": { "id": PROJECT_ID, "name": self.project, "state": "wellFormed" },
                "remoteUrl": format!("{base}/{}/{}/_git/{}", self.org, self.project, self.repo),
            },
            "pullRequestId": pr.id,
            "codeReviewId": pr.id,
            "status": pr.status,
            "createdBy": creator,
            "creationDate": pr.creation_date,
            "title": pr.title,
            "description": pr.description,
            "sourceRefName": pr.source_ref,
            "targetRefName": pr.target_ref,
            "mergeStatus": if pr.status == "completed" { "succeeded" } else { "queued" },
            "isDraft": pr.is_draft,
            "mergeId": "f5fc8381-3fb2-49fe-8a0d-27dcc2d6ef82",
            "reviewers": pr.reviewers.iter().map(|id| {
                let mut r = identity(id, id, id);
                r["vote"] = json!(0);
                r
            }).collect::<Vec<_>>(),
            "labels": pr.labels.iter().map(|name| json!({ "id": name, "name": name, "active": true })).collect::<Vec<_>>(),
            "url": format!("{repo_url}/pullRequests/{}", pr.id),
            "supportsIterations": true,
        });
        if let (Some(date), Some((unique, display))) = (&pr.closed_date, &pr.closed_by) {
            pr_json["closedDate"] = json!(date);
            pr_json["closedBy"] = identity("3ff4a20f-306e-677e-8a01-57f35e71f109", display, unique);
        }
        pr_json
    }
}

const REPO_ID: &str = "3411ebc1-d5aa-464f-9615-0b527bc66719";
const PROJECT_ID: &str = "a7573007-bbb3-4341-b726-0c4148a07853";

fn identity(id: &str, display: &str, unique: &str) -> Value {
    json!({ "id": id, "displayName": display, "uniqueName": unique })
}

/// Every request lands here, like the GitHub fake's router.
async fn handle(State(shared): State<Shared<Inner>>, req: Request) -> Response {
    let path = req.uri.path().to_string();
    let (org, project, repo, read_only) = {
        let inner = shared.lock();
        (
            inner.org.clone(),
            inner.project.clone(),
            inner.repo.clone(),
            inner.read_only,
        )
    };
    // An Azure DevOps Server collection URL: `/tfs/{collection}/…`.
    let route = path.strip_prefix("/tfs").unwrap_or(&path);
    let segments: Vec<String> = route
        .trim_matches('/')
        .split('/')
        .map(|s| decode(s).to_ascii_lowercase())
        .collect();
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);

    let (auth, injected) = {
        let mut inner = shared.lock();
        let (auth, injected) = inner.gate.admit(&req);
        if would_merge(&req.method, &segments, &body) {
            inner.merge_calls += 1;
        }
        (auth, injected)
    };
    if let Some(injected) = injected {
        return injected_response(injected);
    }
    if auth != AuthSeen::Valid {
        // Azure answers a missing or wrong token with an empty 401.
        let mut response = server::json_text(StatusCode::UNAUTHORIZED, String::new());
        response.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Basic realm=\"https://dev.azure.com/\""),
        );
        return response;
    }
    if query.get("api-version").map(String::as_str) != Some("7.1") {
        return error(
            StatusCode::BAD_REQUEST,
            "The fake serves api-version=7.1 only; the request named none or another.",
            "VssInvalidPreviewVersionException",
        );
    }
    let base = shared.base_url();
    let ours = |o: &str, p: &str, r: &str| {
        o == org.to_ascii_lowercase()
            && p == project.to_ascii_lowercase()
            && r == repo.to_ascii_lowercase()
    };
    let method = &req.method;
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    match s.as_slice() {
        [o, "_apis", "identities"] if *o == org.to_ascii_lowercase() && method == Method::GET => {
            identities(&shared, query.get("filterValue").map_or("", String::as_str))
        }
        [o, p, "_apis", "git", "repositories", r] if ours(o, p, r) && method == Method::GET => {
            server::json(
                StatusCode::OK,
                json!({
                    "id": REPO_ID,
                    "name": repo,
                    "url": format!("{base}/{org}/_apis/git/repositories/{REPO_ID}"),
                    "project": { "id": PROJECT_ID, "name": project },
                    "defaultBranch": "refs/heads/main",
                    "remoteUrl": format!("{base}/{org}/{project}/_git/{repo}"),
                }),
            )
        }
        [o, p, "_apis", "git", "repositories", r, "pullrequests"] if ours(o, p, r) => match *method
        {
            Method::POST if read_only => forbidden(),
            Method::POST => create_pr(&shared, &body, &base),
            Method::GET => list_prs(&shared, &query, &base),
            _ => not_found(),
        },
        [o, p, "_apis", "git", "repositories", r, "pullrequests", id]
            if ours(o, p, r) && method == Method::GET =>
        {
            let inner = shared.lock();
            match find(&inner, id) {
                Some(pr) => server::json(StatusCode::OK, inner.pr_json(pr, &base)),
                None => pr_not_found(id),
            }
        }
        [o, p, "_apis", "git", "repositories", r, "pullrequests", id, "threads"]
            if ours(o, p, r) && method == Method::POST =>
        {
            match read_only {
                true => forbidden(),
                false => create_thread(&shared, id, &body, &base),
            }
        }
        _ => not_found(),
    }
}

/// Whether a request would complete, abandon, approve or vote.
fn would_merge(method: &Method, segments: &[String], body: &Value) -> bool {
    let on_pr = segments.iter().any(|s| s == "pullrequests");
    let writes = matches!(*method, Method::PATCH | Method::PUT | Method::DELETE);
    (on_pr && writes)
        || segments.iter().any(|s| s == "merges" || s == "reviewers")
        || body.get("status").and_then(Value::as_str) == Some("completed")
        || body.get("autoCompleteSetBy").is_some()
        || body.get("vote").is_some()
}

fn find<'a>(inner: &'a Inner, id: &str) -> Option<&'a FakePr> {
    let id: u64 = id.parse().ok()?;
    inner.prs.iter().find(|p| p.id == id)
}

fn create_pr(shared: &Shared<Inner>, body: &Value, base: &str) -> Response {
    let field = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default();
    for required in ["sourceRefName", "targetRefName", "title"] {
        if field(required).is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid argument value.\r\nParameter name: {required}"),
                "InvalidArgumentValueException",
            );
        }
    }
    let description = field("description");
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return server::json_text(
            StatusCode::BAD_REQUEST,
            include_str!("../../../tests/fixtures/azure-devops/error_400_description_too_long.scala-steward-pr3572.json").to_string(),
        );
    }
    let (source, target) = (field("sourceRefName"), field("targetRefName"));
    let mut inner = shared.lock();
    if inner
        .prs
        .iter()
        .any(|p| p.status == "active" && p.source_ref == source && p.target_ref == target)
    {
        return server::json(
            StatusCode::CONFLICT,
            json!({
                "$id": "1",
                "innerException": null,
                "message": "TF401179: An active pull request for the source and target branch already exists.",
                "typeName": "Microsoft.TeamFoundation.Git.Server.GitPullRequestExistsException, Microsoft.TeamFoundation.Git.Server",
                "typeKey": "GitPullRequestExistsException",
                "errorCode": 0,
                "eventId": 3000
            }),
        );
    }
    let names = |key: &str, field: &str| -> Vec<String> {
        body.get(key)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.get(field).and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (labels, reviewers) = (names("labels", "name"), names("reviewers", "id"));
    let is_draft = body
        .get("isDraft")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let title = field("title");
    let id = inner
        .new_pr(source.to_string(), target.to_string(), title, description)
        .id;
    let pr = inner.prs.last_mut().expect("just created");
    pr.labels = labels;
    pr.reviewers = reviewers;
    pr.is_draft = is_draft;
    let pr = pr.clone();
    debug_assert_eq!(pr.id, id);
    server::json(StatusCode::CREATED, inner.pr_json(&pr, base))
}

fn list_prs(shared: &Shared<Inner>, query: &BTreeMap<String, String>, base: &str) -> Response {
    let status = query
        .get("searchCriteria.status")
        .map_or("active", String::as_str);
    if !matches!(
        status,
        "active" | "abandoned" | "completed" | "all" | "notSet"
    ) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("Invalid argument value.\r\nParameter name: searchCriteria.status ({status})"),
            "InvalidArgumentValueException",
        );
    }
    let number = |key: &str, default: usize| {
        query
            .get(key)
            .map_or(Some(default), |v| v.parse::<usize>().ok())
    };
    let (Some(top), Some(skip)) = (number("$top", 101), number("$skip", 0)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid argument value.\r\nParameter name: $top or $skip",
            "InvalidArgumentValueException",
        );
    };
    let inner = shared.lock();
    let criterion = |key: &str| query.get(key).map(String::as_str);
    let value: Vec<Value> = inner
        .prs
        .iter()
        .rev()
        .filter(|p| matches!(status, "all" | "notSet") || p.status == status)
        .filter(|p| criterion("searchCriteria.sourceRefName").is_none_or(|s| s == p.source_ref))
        .filter(|p| criterion("searchCriteria.targetRefName").is_none_or(|t| t == p.target_ref))
        .skip(skip)
        .take(top)
        .map(|pr| {
            let mut listed = inner.pr_json(pr, base);
            let cut: String = pr
                .description
                .chars()
                .take(LISTED_DESCRIPTION_CHARS)
                .collect();
            listed["description"] = json!(cut);
            listed
        })
        .collect();
    server::json(
        StatusCode::OK,
        json!({ "count": value.len(), "value": value }),
    )
}

/// The identities whose account name, display name or e-mail is `filter`,
/// in the identities API's shape.
fn identities(shared: &Shared<Inner>, filter: &str) -> Response {
    let inner = shared.lock();
    let value: Vec<Value> = inner
        .identities
        .iter()
        .filter(|(_, unique, display)| {
            unique.eq_ignore_ascii_case(filter) || display.eq_ignore_ascii_case(filter)
        })
        .map(|(id, unique, display)| {
            json!({
                "id": id,
                "descriptor": format!("Microsoft.IdentityModel.Claims.ClaimsIdentity;{unique}"),
                "providerDisplayName": display,
                "isActive": true,
                "properties": {
                    "Account": { "$type": "System.String", "$value": unique },
                    "Mail": { "$type": "System.String", "$value": unique },
                },
            })
        })
        .collect();
    server::json(
        StatusCode::OK,
        json!({ "count": value.len(), "value": value }),
    )
}

fn create_thread(shared: &Shared<Inner>, id: &str, body: &Value, base: &str) -> Response {
    let mut inner = shared.lock();
    let Some(pr_id) = find(&inner, id).map(|pr| pr.id) else {
        return pr_not_found(id);
    };
    let comment = body
        .get("comments")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .cloned()
        .unwrap_or(Value::Null);
    let content = comment
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if content.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid argument value.\r\nParameter name: comments",
            "InvalidArgumentValueException",
        );
    }
    let thread = FakeThread {
        id: 147 + inner.threads.len() as u64,
        pr_id,
        content: content.to_string(),
        comment_type: comment
            .get("commentType")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        status: body.get("status").and_then(Value::as_u64).unwrap_or(0),
    };
    inner.threads.push(thread.clone());
    let now = rfc3339(SystemTime::now());
    let org = inner.org.clone();
    server::json(
        StatusCode::OK,
        json!({
            "pullRequestThreadContext": null,
            "id": thread.id,
            "publishedDate": now,
            "lastUpdatedDate": now,
            "comments": [{
                "id": 1,
                "parentCommentId": 0,
                "author": identity("d6245f20-2af8-44f4-9451-8107cb2767db", "selfheal", "selfheal-bot@acme.example"),
                "content": thread.content,
                "publishedDate": now,
                "lastUpdatedDate": now,
                "commentType": "text"
            }],
            "status": "active",
            "threadContext": null,
            "properties": {},
            "isDeleted": false,
            "_links": { "self": { "href": format!("{base}/{org}/_apis/git/repositories/{REPO_ID}/pullRequests/{pr_id}/threads/{}", thread.id) } }
        }),
    )
}

fn injected_response(injected: Injected) -> Response {
    match injected {
        Injected::SignIn => {
            let mut response = (
                StatusCode::NON_AUTHORITATIVE_INFORMATION,
                "<html><head><title>Azure DevOps Services | Sign In</title></head><body></body></html>",
            )
                .into_response_html();
            response.headers_mut().insert(
                "x-vss-userdata",
                HeaderValue::from_static("00000000-0000-0000-0000-000000000000:"),
            );
            response
        }
        Injected::Status {
            status,
            retry_after,
        } => {
            let code = server::status(status);
            let (message, type_key) = match status {
                429 => ("TF400733: The request has been canceled: Request was blocked due to exceeding usage of resource 'Global' in namespace 'User'.", "RequestBlockedException"),
                401 => ("", ""),
                403 => return forbidden(),
                404 => return not_found(),
                _ => ("An unexpected error occurred.", "VssServiceException"),
            };
            let mut response = if status == 401 {
                server::json_text(code, String::new())
            } else {
                error(code, message, type_key)
            };
            if let Some(wait) = retry_after {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let headers = response.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    headers.insert("retry-after", v.clone());
                    headers.insert("x-ratelimit-delay", v);
                }
                headers.insert("x-ratelimit-resource", HeaderValue::from_static("Global"));
            }
            response
        }
    }
}

trait HtmlResponse {
    fn into_response_html(self) -> Response;
}

impl HtmlResponse for (StatusCode, &'static str) {
    fn into_response_html(self) -> Response {
        let mut response = axum::response::IntoResponse::into_response(self);
        response.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }
}

/// Azure's error body: `{"$id", "innerException", "message", "typeName", "typeKey", "errorCode", "eventId"}`.
fn error(status: StatusCode, message: &str, type_key: &str) -> Response {
    server::json(
        status,
        json!({
            "$id": "1",
            "innerException": null,
            "message": message,
            "typeName": format!("Microsoft.TeamFoundation.{type_key}"),
            "typeKey": type_key,
            "errorCode": 0,
            "eventId": 3000
        }),
    )
}

fn forbidden() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "TF401027: You need the Git 'PullRequestContribute' permission to perform this action.",
        "GitNeedsPermissionException",
    )
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "TF401019: The Git repository with name or identifier does not exist or you do not have permissions for the operation you are attempting.",
        "GitRepositoryNotFoundException",
    )
}

fn pr_not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("TF401180: The requested pull request was not found. ({id})"),
        "GitPullRequestNotFoundException",
    )
}

fn decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::send;

    const PAT: &str = "azdo-pat-0123456789";

    fn basic(pat: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(":{pat}"))
        )
    }

    async fn start() -> (FakeAzureDevOps, String) {
        let fake = FakeAzureDevOps::start(PAT, "acme", "Data Platform", "dbt")
            .await
            .expect("fake starts");
        let prs = format!(
            "{}/acme/Data%20Platform/_apis/git/repositories/dbt/pullrequests",
            fake.api_base()
        );
        (fake, prs)
    }

    fn create_body(source: &str, description: &str) -> Value {
        json!({
            "sourceRefName": format!("refs/heads/{source}"),
            "targetRefName": "refs/heads/main",
            "title": "fix",
            "description": description,
        })
    }

    #[tokio::test]
    async fn creating_needs_basic_auth_and_the_api_version_and_refuses_a_second_active_pr() {
        let (fake, prs) = start().await;
        let auth = basic(PAT);
        let headers = [("authorization", auth.as_str())];
        let url = format!("{prs}?api-version=7.1");
        let (status, _) = send(
            Method::POST,
            &url,
            &[],
            Some(create_body("selfheal/a", "d")),
        )
        .await;
        assert_eq!(status, 401);
        let wrong = basic("other");
        let (status, _) = send(
            Method::POST,
            &url,
            &[("authorization", wrong.as_str())],
            Some(create_body("selfheal/a", "d")),
        )
        .await;
        assert_eq!(status, 401);
        let (status, _) = send(
            Method::POST,
            &prs,
            &headers,
            Some(create_body("selfheal/a", "d")),
        )
        .await;
        assert_eq!(status, 400, "no api-version");

        let (status, pr) = send(
            Method::POST,
            &url,
            &headers,
            Some(create_body("selfheal/a", "d")),
        )
        .await;
        assert_eq!(status, 201);
        assert_eq!(pr["pullRequestId"], 1);
        assert_eq!(pr["status"], "active");
        assert_eq!(pr["sourceRefName"], "refs/heads/selfheal/a");

        let (status, dup) = send(
            Method::POST,
            &url,
            &headers,
            Some(create_body("selfheal/a", "d")),
        )
        .await;
        assert_eq!(status, 409);
        assert!(dup["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("TF401179"));

        let (status, long) = send(
            Method::POST,
            &url,
            &headers,
            Some(create_body("selfheal/b", &"x".repeat(4_001))),
        )
        .await;
        assert_eq!(status, 400);
        assert!(long["message"]
            .as_str()
            .unwrap_or_default()
            .contains("4000"));
        assert_eq!(fake.prs().len(), 1);
        assert_eq!(fake.merge_calls(), 0);
    }

    #[tokio::test]
    async fn lists_page_with_top_and_skip_and_cut_descriptions_that_get_returns_whole() {
        let (fake, prs) = start().await;
        let long = format!("{}<!-- selfheal-signature: abc -->", "d".repeat(500));
        for n in 0..5 {
            fake.seed_pr(&format!("selfheal/{n}"), "main", "t", &long);
        }
        fake.abandon_pr(1, "ann@acme.example", "Ann");
        let auth = basic(PAT);
        let headers = [("authorization", auth.as_str())];
        let page = |skip: usize| {
            format!("{prs}?searchCriteria.status=active&%24top=2&%24skip={skip}&api-version=7.1")
        };
        let (_, first) = send(Method::GET, &page(0), &headers, None).await;
        let ids: Vec<u64> = first["value"]
            .as_array()
            .expect("value")
            .iter()
            .filter_map(|p| p["pullRequestId"].as_u64())
            .collect();
        assert_eq!(ids, [5, 4]);
        assert_eq!(
            first["value"][0]["description"]
                .as_str()
                .map(|d| d.chars().count()),
            Some(400)
        );
        let (_, last) = send(Method::GET, &page(2), &headers, None).await;
        assert_eq!(last["count"], 2, "{last}");
        let (_, beyond) = send(Method::GET, &page(4), &headers, None).await;
        assert_eq!(beyond["count"], 0);

        let (status, one) = send(
            Method::GET,
            &format!("{prs}/5?api-version=7.1"),
            &headers,
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(one["description"], long);
        let (_, abandoned) = send(
            Method::GET,
            &format!("{prs}/1?api-version=7.1"),
            &headers,
            None,
        )
        .await;
        assert_eq!(abandoned["status"], "abandoned");
        assert_eq!(abandoned["closedBy"]["uniqueName"], "ann@acme.example");
        let (status, _) = send(
            Method::GET,
            &format!("{prs}/99?api-version=7.1"),
            &headers,
            None,
        )
        .await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn threads_are_kept_and_merges_votes_and_injected_failures_are_answered() {
        let (fake, prs) = start().await;
        let id = fake.seed_pr("selfheal/a", "main", "t", "");
        let auth = basic(PAT);
        let headers = [("authorization", auth.as_str())];
        let thread = json!({ "comments": [{ "parentCommentId": 0, "content": "hi", "commentType": 1 }], "status": 1 });
        let url = format!("{}/acme/Data%20Platform/_apis/git/repositories/dbt/pullRequests/{id}/threads?api-version=7.1", fake.api_base());
        let (status, answer) = send(Method::POST, &url, &headers, Some(thread.clone())).await;
        assert_eq!(status, 200);
        assert_eq!(answer["comments"][0]["content"], "hi");
        assert_eq!(fake.threads()[0].comment_type, 1);

        let (status, _) = send(
            Method::PATCH,
            &format!("{prs}/{id}?api-version=7.1"),
            &headers,
            Some(json!({ "status": "completed" })),
        )
        .await;
        assert_eq!(status, 404);
        let vote = format!("{prs}/{id}/reviewers/x?api-version=7.1");
        send(Method::PUT, &vote, &headers, Some(json!({ "vote": 10 }))).await;
        assert_eq!(fake.merge_calls(), 2);
        assert!(fake.complete_pr(id, "bob@acme.example", "Bob"));
        assert_eq!(fake.merge_calls(), 2, "a human's merge is not a request");

        fake.fail_next(429, 1, Some(Duration::from_millis(1_500)));
        let (status, limited) = send(Method::POST, &url, &headers, Some(thread.clone())).await;
        assert_eq!(status, 429);
        assert!(limited["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("TF400733"));
        fake.sign_in_next(1);
        let (status, _) = send(Method::POST, &url, &headers, Some(thread.clone())).await;
        assert_eq!(status, 203);
        fake.set_read_only(true);
        let (status, _) = send(Method::POST, &url, &headers, Some(thread)).await;
        assert_eq!(status, 403);
        assert_eq!(fake.threads().len(), 1);
    }

    #[tokio::test]
    async fn identities_are_found_by_account_or_display_name() {
        let (fake, _) = start().await;
        fake.add_identity(
            "3ff4a20f-306e-677e-8a01-57f35e71f109",
            "ann@acme.example",
            "Ann",
        );
        let auth = basic(PAT);
        let search = |filter: &str| {
            format!(
                "{}/acme/_apis/identities?searchFilter=General&filterValue={filter}&api-version=7.1",
                fake.api_base()
            )
        };
        for filter in ["ann%40acme.example", "ANN"] {
            let (status, found) = send(
                Method::GET,
                &search(filter),
                &[("authorization", auth.as_str())],
                None,
            )
            .await;
            assert_eq!(status, 200);
            assert_eq!(
                found["value"][0]["id"], "3ff4a20f-306e-677e-8a01-57f35e71f109",
                "{filter}"
            );
        }
        let (_, none) = send(
            Method::GET,
            &search("bob"),
            &[("authorization", auth.as_str())],
            None,
        )
        .await;
        assert_eq!(none["count"], 0);
    }

    #[tokio::test]
    async fn a_server_collection_url_reaches_the_same_repository() {
        let (fake, _) = start().await;
        let auth = basic(PAT);
        let url = format!(
            "{}/Data%20Platform/_apis/git/repositories/dbt?api-version=7.1",
            fake.server_base()
        );
        let (status, repo) =
            send(Method::GET, &url, &[("authorization", auth.as_str())], None).await;
        assert_eq!(status, 200, "{repo}");
        assert_eq!(repo["name"], "dbt");
    }
}
