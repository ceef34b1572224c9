//! The Bitbucket Cloud REST 2.0 client (`https://api.bitbucket.org/2.0`):
//! create a pull request, list open ones, read one's state, comment on one,
//! and say whether the token may push. It never calls a merge, approve,
//! decline or request-changes endpoint: selfheal never merges, approves or
//! closes.
//!
//! Only pull requests of the configured repository are read or commented
//! on: a pull request URL is accepted only when it is this repository's web
//! address (`https://bitbucket.org/{workspace}/{repo_slug}/pull-requests/{id}`),
//! and every request is built from the configured workspace and slug.
//!
//! What Bitbucket does differently from GitHub, and what follows here:
//! - Posting a pull request again for the same source branch *updates* the
//!   open one instead of failing, so [`Bitbucket::create_pull`] first looks
//!   for an open pull request from that branch and returns it: never two,
//!   and never an edit of one a person may be reviewing.
//! - Reviewers are accounts, `{"uuid": "{…}"}` as in the recorded request
//!   (user names left Bitbucket's API with Atlassian's 2019 privacy changes:
//!   our recollection, not a stored source). A configured reviewer that is a
//!   `{uuid}` is sent as is; any other is looked up among the workspace's
//!   members (`GET /workspaces/{ws}/members`, `values[].user`, the shape of
//!   Atlassian's API reference, not a recorded answer) by nickname or
//!   account id, and skipped with a warning when it is not one.
//! - Bitbucket has no labels, and a draft flag was not found in the sources
//!   selfheal was written from: neither is sent (a warning says so when
//!   configured).
//! - Lists are pages `{values, next}`: the `next` URL is followed until it is
//!   absent (never built here), and only on the API's origin.
//! - No body limit is documented: descriptions and comments are sent whole.
//! - Whether Bitbucket answers with an `ETag` is unverified: one is sent back
//!   as `If-None-Match` when it came, and a 304 means unchanged; without one
//!   every look is a full answer.
//!
//! Credentials: an access token (repository, project or workspace access
//! token, or OAuth) is sent as `Authorization: Bearer`; a token of the form
//! `user:app_password` (an app password, or an Atlassian API token with its
//! account's e-mail) as HTTP Basic.
//!
//! Retries: 5xx answers, transport errors and timeouts are retried with
//! doubling backoff; a 429 after its `Retry-After`, or the backoff when it
//! gives none. Both are bounded by [`RetryPolicy`].

use anyhow::Context;
use base64::Engine;
use hyper::Method;
use serde::Deserialize;
use tracing::{info, warn};

use super::rest::{self, same_origin, web_origin, Answer, Api, Dialect, Pause, MAX_PAGES};
use super::{
    ForgeError, ForgeToken, PrRequest, PrSnapshot, PullRequest, RetryPolicy, SELFHEAL_BRANCH_PREFIX,
};
use crate::domain::PrState;

/// Pull requests per page: the most several Bitbucket clients ask for.
const PAGELEN: &str = "50";

/// A Bitbucket Cloud repository reached through the REST 2.0 API.
pub struct Bitbucket {
    /// e.g. `https://api.bitbucket.org/2.0`, no trailing slash.
    api_base: String,
    /// Where the repository's web pages are (`https://bitbucket.org`): the
    /// origin of the pull request URLs selfheal accepts.
    web_origin: String,
    workspace: String,
    slug: String,
    /// Kept only so that `Debug` can say which kind is held, never its value.
    token: ForgeToken,
    api: Api,
}

impl std::fmt::Debug for Bitbucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bitbucket")
            .field("api_base", &self.api_base)
            .field("repo", &self.repo())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Bitbucket {
    /// A client for `repo` (`workspace/repo_slug`) at `api_base`
    /// (`https://api.bitbucket.org/2.0`). `token` is an access token, sent as
    /// `Bearer`, or `user:app_password`, sent as HTTP Basic. Plain `http://`
    /// is accepted only for loopback hosts (tests, local fakes).
    pub fn new(api_base: &str, repo: &str, token: ForgeToken) -> anyhow::Result<Bitbucket> {
        let api_base = api_base.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&api_base)
            .with_context(|| format!("parsing forge API URL {api_base}"))?;
        let (workspace, slug) = rest::split_repo(repo).with_context(|| {
            format!("Bitbucket repository `{repo}` is not `workspace/repo_slug`")
        })?;
        Ok(Bitbucket {
            api: Api::new(
                &api_base,
                &DIALECT,
                ("authorization", &authorization(&token)),
            )?,
            web_origin: web_origin(&parsed),
            api_base,
            workspace: workspace.to_string(),
            slug: slug.to_string(),
            token,
        })
    }

    /// Replaces the default [`RetryPolicy`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> Bitbucket {
        self.api.retry = retry;
        self
    }

    /// `workspace/repo_slug`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.workspace, self.slug)
    }

    fn repo_url(&self) -> String {
        format!(
            "{}/repositories/{}/{}",
            self.api_base, self.workspace, self.slug
        )
    }

    fn pulls_url(&self) -> String {
        format!("{}/pullrequests", self.repo_url())
    }

    /// `POST /repositories/{workspace}/{repo_slug}/pullrequests`, unless a
    /// pull request from `req.head` is already open: that one is returned
    /// (posting again would update it). Never followed by a merge.
    pub(super) async fn create_pull(&self, req: &PrRequest) -> Result<PullRequest, ForgeError> {
        if let Some(pr) = self.find_open_by_head(&req.head).await? {
            info!(number = pr.number, url = %pr.url, head = %pr.head, "a pull request from this branch is already open");
            return Ok(pr);
        }
        if req.options.draft {
            warn!("SELFHEAL_PR_DRAFT is set, but selfheal knows no draft flag of Bitbucket's: opening a ready pull request");
        }
        if !req.options.labels.is_empty() {
            warn!("Bitbucket pull requests have no labels: SELFHEAL_PR_LABELS is not applied");
        }
        let reviewers: Vec<serde_json::Value> = self
            .reviewer_uuids(&req.options.reviewers)
            .await
            .into_iter()
            .map(|uuid| serde_json::json!({ "uuid": uuid }))
            .collect();
        let body = rest::encode(&serde_json::json!({
            "title": req.title,
            "source": { "branch": { "name": req.head } },
            "destination": { "branch": { "name": req.base } },
            "description": req.body,
            "reviewers": reviewers,
        }))?;
        // A retry after a lost answer cannot make a second pull request:
        // Bitbucket updates the open one from the same branch.
        let resp = self
            .send(Method::POST, &self.pulls_url(), Some(body), &[])
            .await?;
        let pr = self.pull_request(self.api.parse(&resp.body)?);
        info!(number = pr.number, url = %pr.url, head = %pr.head, "opened pull request");
        Ok(pr)
    }

    /// Whether the token may push to the repository, which opening a pull
    /// request from a pushed branch needs: `GET /repositories/{ws}/{slug}`
    /// (the repository exists and the token sees it), then the token's user's
    /// `permission` on it from `GET /user/permissions/repositories`, which
    /// must be `write` or `admin`. Read from Atlassian's API reference, not
    /// tried against bitbucket.org; a repository access token has no user,
    /// and Bitbucket may refuse it the second call (then the error says so).
    pub async fn can_push(&self) -> Result<bool, ForgeError> {
        self.send(Method::GET, &self.repo_url(), None, &[]).await?;
        let mut url = self.api_url("/user/permissions/repositories")?;
        url.query_pairs_mut()
            .append_pair("q", &format!("repository.full_name=\"{}\"", self.repo()));
        let resp = self.send(Method::GET, url.as_str(), None, &[]).await?;
        let page: Page<ApiPermission> = self.api.parse(&resp.body)?;
        Ok(page
            .values
            .iter()
            .any(|p| matches!(p.permission.as_str(), "write" | "admin")))
    }

    /// The id of `pr_url` when it is a pull request of this repository
    /// (`{web origin}/{workspace}/{slug}/pull-requests/{id}`, in any case);
    /// None for anything else, which selfheal never asks about.
    pub(super) fn pr_number(&self, pr_url: &str) -> Option<u64> {
        let repo = (self.workspace.as_str(), self.slug.as_str());
        rest::pr_number_in(pr_url, &self.web_origin, repo.0, repo.1, "pull-requests")
    }

    /// `GET …/pullrequests/{id}`, with `If-None-Match: etag` when there is
    /// one: None for a 304. `OPEN` is open, `MERGED` merged by `closed_by`,
    /// `DECLINED` and `SUPERSEDED` closed.
    pub(super) async fn pull_state(
        &self,
        number: u64,
        etag: Option<&str>,
    ) -> Result<Option<PrSnapshot>, ForgeError> {
        let url = format!("{}/{number}", self.pulls_url());
        Ok(self
            .api
            .get_if_changed::<ApiPull>(&url, etag)
            .await?
            .map(|(pull, etag)| PrSnapshot {
                state: pull.pr_state(),
                etag,
            }))
    }

    /// `POST …/pullrequests/{id}/comments` with `{"content": {"raw": body}}`.
    /// Retried like every call, so a comment whose answer was lost may appear
    /// twice; never lost silently.
    pub(super) async fn comment(&self, number: u64, body: &str) -> Result<(), ForgeError> {
        let url = format!("{}/{number}/comments", self.pulls_url());
        let body = rest::encode(&serde_json::json!({ "content": { "raw": body } }))?;
        self.send(Method::POST, &url, Some(body), &[]).await?;
        info!(number, "commented on pull request");
        Ok(())
    }

    /// Every open pull request from a `selfheal/` branch (BBQL `~` is
    /// "contains"; the caller keeps only those that start with it).
    pub(super) async fn list_open_pulls(&self) -> Result<Vec<PullRequest>, ForgeError> {
        self.list_open(&format!(
            "source.branch.name ~ {}",
            bbql_string(SELFHEAL_BRANCH_PREFIX)
        ))
        .await
    }

    async fn find_open_by_head(&self, head: &str) -> Result<Option<PullRequest>, ForgeError> {
        Ok(self
            .list_open(&format!("source.branch.name = {}", bbql_string(head)))
            .await?
            .into_iter()
            .find(|pr| pr.head == head))
    }

    /// The open pull requests BBQL `query` selects, following `next` pages;
    /// one whose listing leaves out the description is read by its id.
    async fn list_open(&self, query: &str) -> Result<Vec<PullRequest>, ForgeError> {
        let mut first = url::Url::parse(&self.pulls_url())
            .map_err(|e| ForgeError::Http(format!("building the list URL: {e}")))?;
        first
            .query_pairs_mut()
            .append_pair("state", "OPEN")
            .append_pair("q", &format!("{query} AND state = \"OPEN\""))
            .append_pair("pagelen", PAGELEN);
        let mut prs = Vec::new();
        let mut next = Some(first.to_string());
        for _ in 0..MAX_PAGES {
            let Some(url) = next.take() else { break };
            let resp = self.send(Method::GET, &url, None, &[]).await?;
            let page: Page<ApiPull> = self.api.parse(&resp.body)?;
            for pull in page.values {
                let pull = match pull.description {
                    Some(_) => pull,
                    None => self.get_pull(pull.id).await?,
                };
                prs.push(self.pull_request(pull));
            }
            // The token goes only where the API is: never follow a link elsewhere.
            next = page.next.filter(|n| same_origin(n, &self.api_base));
        }
        Ok(prs)
    }

    async fn get_pull(&self, id: u64) -> Result<ApiPull, ForgeError> {
        let url = format!("{}/{id}", self.pulls_url());
        let resp = self.send(Method::GET, &url, None, &[]).await?;
        self.api.parse(&resp.body)
    }

    /// The account UUIDs of the configured reviewers: a `{uuid}` as is, a
    /// nickname or account id looked up among the workspace's members. One
    /// that is not a member is skipped with a warning, and so are all names
    /// when the members cannot be read: a pull request without a reviewer
    /// is better than none.
    async fn reviewer_uuids(&self, reviewers: &[String]) -> Vec<String> {
        let (uuids, names): (Vec<&String>, Vec<&String>) = reviewers
            .iter()
            .partition(|r| r.starts_with('{') && r.ends_with('}'));
        let mut out: Vec<String> = uuids.into_iter().cloned().collect();
        if names.is_empty() {
            return out;
        }
        let members = match self.members().await {
            Ok(members) => members,
            Err(e) => {
                warn!(error = %e, "cannot read the workspace's members; reviewers not added: {names:?}");
                return out;
            }
        };
        for name in names {
            let found = members.iter().find(|m| {
                m.nickname
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
                    || m.account_id.as_deref() == Some(name.as_str())
            });
            match found {
                Some(user) => out.push(user.uuid.clone()),
                None => {
                    warn!(reviewer = %name, "not a member of the Bitbucket workspace; not asked to review")
                }
            }
        }
        out
    }

    /// `GET /workspaces/{workspace}/members`, every page.
    async fn members(&self) -> Result<Vec<ApiUser>, ForgeError> {
        let mut members = Vec::new();
        let mut next = Some(format!(
            "{}/workspaces/{}/members",
            self.api_base, self.workspace
        ));
        for _ in 0..MAX_PAGES {
            let Some(url) = next.take() else { break };
            let resp = self.send(Method::GET, &url, None, &[]).await?;
            let page: Page<ApiMembership> = self.api.parse(&resp.body)?;
            members.extend(page.values.into_iter().map(|m| m.user));
            next = page.next.filter(|n| same_origin(n, &self.api_base));
        }
        Ok(members)
    }

    fn api_url(&self, path: &str) -> Result<url::Url, ForgeError> {
        url::Url::parse(&format!("{}{path}", self.api_base))
            .map_err(|e| ForgeError::Http(format!("building a URL: {e}")))
    }

    fn pull_request(&self, p: ApiPull) -> PullRequest {
        let url = p
            .links
            .and_then(|l| l.html)
            .map(|h| h.href)
            .unwrap_or_else(|| {
                format!(
                    "{}/{}/{}/pull-requests/{}",
                    self.web_origin, self.workspace, self.slug, p.id
                )
            });
        let state = if p.state == "OPEN" { "open" } else { "closed" };
        PullRequest {
            number: p.id,
            url,
            head: p.source.branch.name,
            base: p.destination.branch.name,
            title: p.title,
            body: p.description.unwrap_or_default(),
            state: state.to_string(),
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        headers: &[(&'static str, &str)],
    ) -> Result<Answer, ForgeError> {
        self.api.send(method, url, body, headers, &mut false).await
    }
}

/// `Authorization` for `token`: `Basic` for `user:app_password`, else `Bearer`.
fn authorization(token: &ForgeToken) -> String {
    let token = token.expose();
    if token.contains(':') {
        let encoded = base64::engine::general_purpose::STANDARD.encode(token);
        format!("Basic {encoded}")
    } else {
        format!("Bearer {token}")
    }
}

/// What Bitbucket's API wants on every request and what its refusals mean.
const DIALECT: Dialect = Dialect {
    name: "Bitbucket",
    headers: &[("accept", "application/json")],
    rate_limit,
    error_message,
    validation_statuses: &[400],
    validation_message: error_message,
    forbidden_message,
    redirect_is_unauthorized: false,
};

/// A 429 is Bitbucket's rate limit: wait its `Retry-After`, or the backoff
/// when it gives none.
fn rate_limit(answer: &Answer, _now_epoch: u64) -> Option<Pause> {
    (answer.status.as_u16() == 429)
        .then(|| rest::retry_after(answer).map_or(Pause::Backoff, Pause::For))
}

/// Bitbucket's 403, naming the scope a token needs.
fn forbidden_message(body: &[u8]) -> String {
    format!(
        "{} (opening pull requests and commenting needs the `pullrequest:write` scope)",
        error_message(body)
    )
}

/// `error.message` of Bitbucket's error body
/// (`{"type": "error", "error": {"message": …}}`), or the start of the body.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ApiError {
        error: ApiErrorDetail,
    }
    #[derive(Deserialize)]
    struct ApiErrorDetail {
        message: String,
    }
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => e.error.message,
        Err(_) => rest::body_start(body),
    }
}

/// A BBQL string literal: double quotes, with `"` and `\` escaped.
fn bbql_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A page of a list: `{values, next, …}`.
#[derive(Deserialize)]
struct Page<T> {
    values: Vec<T>,
    #[serde(default)]
    next: Option<String>,
}

/// The parts of Bitbucket's `pullrequest` object selfheal reads.
#[derive(Deserialize)]
struct ApiPull {
    id: u64,
    title: String,
    /// Absent from some listings: then the pull request is read by its id.
    #[serde(default)]
    description: Option<String>,
    /// `OPEN`, `MERGED`, `DECLINED` or `SUPERSEDED`.
    state: String,
    source: ApiEnd,
    destination: ApiEnd,
    #[serde(default)]
    links: Option<ApiLinks>,
    /// Who merged or declined it; null while it is open.
    #[serde(default)]
    closed_by: Option<ApiUser>,
}

impl ApiPull {
    fn pr_state(&self) -> PrState {
        match self.state.as_str() {
            "MERGED" => PrState::Merged {
                by: self
                    .closed_by
                    .as_ref()
                    .and_then(|u| u.nickname.clone().or_else(|| u.display_name.clone())),
            },
            "DECLINED" | "SUPERSEDED" => PrState::Closed,
            _ => PrState::Open,
        }
    }
}

#[derive(Deserialize)]
struct ApiEnd {
    branch: ApiBranch,
}

#[derive(Deserialize)]
struct ApiBranch {
    name: String,
}

#[derive(Deserialize)]
struct ApiLinks {
    #[serde(default)]
    html: Option<ApiHref>,
}

#[derive(Deserialize)]
struct ApiHref {
    href: String,
}

#[derive(Deserialize)]
struct ApiUser {
    #[serde(default)]
    uuid: String,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
}

/// A `workspace_membership`: the member is its `user`.
#[derive(Deserialize)]
struct ApiMembership {
    user: ApiUser,
}

/// A `repository_permission`: `read`, `write`, `admin` or `none`.
#[derive(Deserialize)]
struct ApiPermission {
    permission: String,
}

#[cfg(test)]
mod tests;
