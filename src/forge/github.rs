//! The GitHub (and GitHub Enterprise) REST API client: create a pull request, list
//! open ones, read one's state (conditionally, with its ETag), comment on one. It
//! never calls a merge, review or update endpoint: selfheal never merges, approves
//! or closes.
//!
//! Only pull requests of the configured repository are read or commented on: a
//! pull request URL is accepted only when it is this repository's web address
//! (`https://github.com/{owner}/{repo}/pull/{n}`, or the GitHub Enterprise host's),
//! and the request is always built from the configured owner and name.
//!
//! Retries: 5xx answers, transport errors and timeouts are retried with doubling
//! backoff; rate limits (429, or 403 with `retry-after` or an exhausted
//! `x-ratelimit-remaining`) are retried after the wait GitHub asks for. Both are
//! bounded by [`RetryPolicy`]; a rate-limit wait longer than `max_wait` is returned
//! at once as [`ForgeError::RateLimited`] so the caller can decide, instead of a
//! session hanging for an hour.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use tracing::info;

use super::exchange::{
    build_request, created_or_existing, error_message, origin, send_with_retries, transport_for,
    Answer, Verdict,
};
use super::{ForgeError, PrRequest, PrSnapshot, PullRequest};
use crate::domain::PrState;
use crate::http::Transport;

/// How many pages of open pull requests are read at most (100 per page).
const MAX_PAGES: usize = 50;

/// The REST API version selfheal was written against.
const API_VERSION: &str = "2022-11-28";

/// A forge token. `Debug` prints `***`; only the forge clients read the value.
#[derive(Clone)]
pub struct ForgeToken(String);

impl ForgeToken {
    pub fn new(token: impl Into<String>) -> ForgeToken {
        ForgeToken(token.into())
    }

    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ForgeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForgeToken(***)")
    }
}

/// How hard to try before giving up.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// The longest single wait, for a rate limit or a backoff; a rate limit asking
    /// for longer is returned as [`ForgeError::RateLimited`] without waiting.
    pub max_wait: Duration,
    /// The first backoff after a 5xx or transport error; it doubles each time.
    pub initial_backoff: Duration,
    /// How long one request (connect, send, read the body) may take.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            max_wait: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(500),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A GitHub repository reached through the REST API.
pub struct GitHub {
    /// e.g. `https://api.github.com` or `https://ghe.example.com/api/v3`, no trailing slash.
    api_base: String,
    /// Where the repository's web pages are (`https://github.com`, the GitHub
    /// Enterprise host): the origin of the pull request URLs selfheal accepts.
    web_origin: String,
    owner: String,
    repo: String,
    token: ForgeToken,
    retry: RetryPolicy,
    client: Transport,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("api_base", &self.api_base)
            .field("repo", &format_args!("{}/{}", self.owner, self.repo))
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl GitHub {
    /// A client for `repo` (`owner/name`) at `api_base`. Plain `http://` is accepted
    /// only for loopback hosts (tests, local fakes): elsewhere the token would
    /// travel in clear.
    pub fn new(api_base: &str, repo: &str, token: ForgeToken) -> anyhow::Result<GitHub> {
        let api_base = api_base.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&api_base)
            .with_context(|| format!("parsing forge API URL {api_base}"))?;
        let (owner, name) = repo
            .split_once('/')
            .filter(|(o, r)| valid_name(o) && valid_name(r))
            .with_context(|| format!("forge repository `{repo}` is not `owner/name`"))?;
        let client = transport_for(&parsed)?;
        Ok(GitHub {
            web_origin: web_origin(&parsed),
            api_base,
            owner: owner.to_string(),
            repo: name.to_string(),
            token,
            retry: RetryPolicy::default(),
            client,
        })
    }

    /// Replaces the default [`RetryPolicy`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> GitHub {
        self.retry = retry;
        self
    }

    /// `owner/name`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    fn pulls_url(&self) -> String {
        format!("{}/repos/{}/{}/pulls", self.api_base, self.owner, self.repo)
    }

    /// `POST /repos/{owner}/{repo}/pulls`. Never followed by a merge: selfheal never merges.
    pub(super) async fn create_pull(&self, req: &PrRequest) -> Result<PullRequest, ForgeError> {
        let body = serde_json::json!({
            "title": req.title,
            "head": req.head,
            "base": req.base,
            "body": req.body,
            "maintainer_can_modify": true,
            "draft": false,
        });
        let body = serde_json::to_vec(&body)
            .map_err(|e| ForgeError::Http(format!("encoding request: {e}")))?;
        let mut ambiguous = false;
        let result = self
            .send(
                Method::POST,
                &self.pulls_url(),
                Some(body),
                &[],
                &mut ambiguous,
            )
            .await;
        let created = result.and_then(|resp| Ok(parse_json::<ApiPull>(&resp.body)?.into()));
        // An earlier attempt may have created the pull request before its answer
        // was lost (a timeout or a 5xx); then the retry meets "already exists",
        // and the pull request we wanted is the one that exists.
        let pr = created_or_existing(created, ambiguous, "already exists", || {
            self.find_open_by_head(&req.head, &req.base)
        })
        .await?;
        info!(number = pr.number, url = %pr.url, head = %pr.head, "opened pull request");
        Ok(pr)
    }

    /// `GET /repos/{owner}/{repo}`: whether the token may push to the
    /// repository, which opening a pull request from a pushed branch needs
    /// (`permissions.push`, present for an authenticated caller).
    pub async fn can_push(&self) -> Result<bool, ForgeError> {
        let url = format!("{}/repos/{}/{}", self.api_base, self.owner, self.repo);
        let resp = self.send(Method::GET, &url, None, &[], &mut false).await?;
        let repo: serde_json::Value = parse_json(&resp.body)?;
        Ok(repo["permissions"]["push"].as_bool().unwrap_or(false))
    }

    /// The number of `pr_url` when it is a pull request of this repository
    /// (`{web origin}/{owner}/{repo}/pull/{n}`, owner and name in any case);
    /// None for anything else, which selfheal never asks about.
    pub(super) fn pr_number(&self, pr_url: &str) -> Option<u64> {
        let url = url::Url::parse(pr_url.trim()).ok()?;
        if origin(&url) != self.web_origin || url.query().is_some() || url.fragment().is_some() {
            return None;
        }
        let path = url.path().trim_end_matches('/');
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            [owner, repo, "pull", number]
                if owner.eq_ignore_ascii_case(&self.owner)
                    && repo.eq_ignore_ascii_case(&self.repo)
                    && number.bytes().all(|b| b.is_ascii_digit()) =>
            {
                number.parse().ok().filter(|n| *n > 0)
            }
            _ => None,
        }
    }

    /// `GET /repos/{owner}/{repo}/pulls/{number}`, with `If-None-Match: etag`
    /// when there is one: None when GitHub answers 304 (unchanged since that
    /// ETag; such answers do not count against the rate limit).
    pub(super) async fn pull_state(
        &self,
        number: u64,
        etag: Option<&str>,
    ) -> Result<Option<PrSnapshot>, ForgeError> {
        let url = format!("{}/{number}", self.pulls_url());
        let conditional: Vec<(&'static str, &str)> =
            etag.map(|e| ("if-none-match", e)).into_iter().collect();
        let resp = self
            .send(Method::GET, &url, None, &conditional, &mut false)
            .await?;
        if resp.status == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let pull: ApiPull = parse_json(&resp.body)?;
        let etag = resp
            .headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Some(PrSnapshot {
            state: pull.pr_state(),
            etag,
        }))
    }

    /// `POST /repos/{owner}/{repo}/issues/{number}/comments` (a pull request is
    /// an issue to GitHub's comments API). Retried like every call, so a
    /// comment whose answer was lost may appear twice; never lost silently.
    pub(super) async fn comment(&self, number: u64, body: &str) -> Result<(), ForgeError> {
        let url = format!(
            "{}/repos/{}/{}/issues/{number}/comments",
            self.api_base, self.owner, self.repo
        );
        let body = serde_json::to_vec(&serde_json::json!({ "body": body }))
            .map_err(|e| ForgeError::Http(format!("encoding request: {e}")))?;
        self.send(Method::POST, &url, Some(body), &[], &mut false)
            .await?;
        info!(number, "commented on pull request");
        Ok(())
    }

    /// Every open pull request, following `Link: rel="next"` pages.
    pub(super) async fn list_open_pulls(&self) -> Result<Vec<PullRequest>, ForgeError> {
        self.list(&format!("{}?state=open&per_page=100", self.pulls_url()))
            .await
    }

    async fn find_open_by_head(
        &self,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let mut url =
            url::Url::parse(&self.pulls_url()).map_err(|e| ForgeError::Http(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("state", "open")
            .append_pair("head", &format!("{}:{head}", self.owner))
            .append_pair("base", base);
        Ok(self
            .list(url.as_str())
            .await?
            .into_iter()
            .find(|pr| pr.head == head))
    }

    async fn list(&self, first: &str) -> Result<Vec<PullRequest>, ForgeError> {
        let mut prs = Vec::new();
        let mut next = Some(first.to_string());
        for _ in 0..MAX_PAGES {
            let Some(url) = next.take() else { break };
            let resp = self.send(Method::GET, &url, None, &[], &mut false).await?;
            let page: Vec<ApiPull> = parse_json(&resp.body)?;
            prs.extend(page.into_iter().map(PullRequest::from));
            next = resp
                .headers
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
                // The token goes only where the API is: never follow a link elsewhere.
                .filter(|next| same_origin(next, &self.api_base));
        }
        Ok(prs)
    }

    /// Sends one request, with `headers` besides the usual ones, with retries.
    /// A 304 is an answer (to a conditional request), not an error. `ambiguous`
    /// is set when an attempt may have reached GitHub without us seeing the
    /// answer (a 5xx, a timeout, a lost connection).
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        headers: &[(&'static str, &str)],
        ambiguous: &mut bool,
    ) -> Result<Answer, ForgeError> {
        let build = || self.request(method.clone(), url, body.clone(), headers);
        send_with_retries(
            "GitHub",
            &self.client,
            &self.retry,
            url,
            build,
            judge,
            ambiguous,
        )
        .await
    }

    fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        headers: &[(&'static str, &str)],
    ) -> Result<Request<Full<Bytes>>, ForgeError> {
        let mut all = vec![
            ("accept", "application/vnd.github+json"),
            ("x-github-api-version", API_VERSION),
        ];
        all.extend_from_slice(headers);
        let auth = format!("Bearer {}", self.token.expose());
        build_request(method, url, &auth, &all, body)
    }
}

/// What a GitHub answer that is not a success means.
fn judge(answer: &Answer) -> Verdict {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if let Some(wait) = rate_limit_wait(answer.status.as_u16(), &answer.headers, &answer.body, now)
    {
        return Verdict::Wait(wait);
    }
    let other = || {
        ForgeError::Http(format!(
            "{}: {}",
            answer.status,
            error_message(&answer.body)
        ))
    };
    Verdict::Fail(match answer.status.as_u16() {
        401 => ForgeError::Unauthorized,
        403 => ForgeError::Forbidden(error_message(&answer.body)),
        404 => ForgeError::NotFound,
        422 => ForgeError::Validation(validation_message(&answer.body)),
        s if s >= 500 => return Verdict::Retry(other()),
        _ => other(),
    })
}

/// The parts of GitHub's pull request object selfheal reads.
#[derive(Deserialize)]
struct ApiPull {
    number: u64,
    html_url: String,
    state: String,
    title: String,
    body: Option<String>,
    head: ApiRef,
    base: ApiRef,
    /// Only in the single pull request's answer, not in lists.
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merged_at: Option<String>,
    /// Who merged, when GitHub says (null until merged).
    #[serde(default)]
    merged_by: Option<ApiUser>,
}

#[derive(Deserialize)]
struct ApiUser {
    login: String,
}

impl ApiPull {
    /// Merged (`merged`, or a `merged_at` in lists, which lack `merged`),
    /// else closed or open as `state` says. GitHub keeps a merged pull
    /// request's `state` at `closed`.
    fn pr_state(&self) -> PrState {
        if self.merged.unwrap_or(false) || self.merged_at.is_some() {
            PrState::Merged {
                by: self.merged_by.as_ref().map(|u| u.login.clone()),
            }
        } else if self.state == "closed" {
            PrState::Closed
        } else {
            PrState::Open
        }
    }
}

#[derive(Deserialize)]
struct ApiRef {
    #[serde(rename = "ref")]
    name: String,
}

impl From<ApiPull> for PullRequest {
    fn from(p: ApiPull) -> PullRequest {
        PullRequest {
            number: p.number,
            url: p.html_url,
            head: p.head.name,
            base: p.base.name,
            title: p.title,
            body: p.body.unwrap_or_default(),
            state: p.state,
        }
    }
}

/// GitHub's error body: `{"message": ..., "errors": [...], "documentation_url": ...}`;
/// the `message` is read by [`error_message`].
#[derive(Deserialize, Default)]
struct ApiError {
    #[serde(default)]
    errors: Vec<ApiErrorDetail>,
}

#[derive(Deserialize)]
struct ApiErrorDetail {
    message: Option<String>,
    resource: Option<String>,
    field: Option<String>,
    code: Option<String>,
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ForgeError> {
    serde_json::from_slice(body)
        .map_err(|e| ForgeError::Http(format!("unexpected response from GitHub: {e}")))
}

/// The useful part of a 422: the `errors` array's messages (e.g. "A pull request
/// already exists for o:branch."), or `resource.field code` when an error has no
/// message, or the top-level message when there is no array.
fn validation_message(body: &[u8]) -> String {
    let err: ApiError = serde_json::from_slice(body).unwrap_or_default();
    let details: Vec<String> = err
        .errors
        .iter()
        .map(|d| match &d.message {
            Some(m) => m.clone(),
            None => format!(
                "{}.{} {}",
                d.resource.as_deref().unwrap_or("?"),
                d.field.as_deref().unwrap_or("?"),
                d.code.as_deref().unwrap_or("invalid")
            ),
        })
        .collect();
    if details.is_empty() {
        error_message(body)
    } else {
        details.join("; ")
    }
}

/// How long GitHub asks us to wait, if this answer is a rate limit, following
/// GitHub's documented rules: `retry-after` wins; otherwise an exhausted
/// `x-ratelimit-remaining` means waiting until `x-ratelimit-reset` (epoch seconds);
/// otherwise a 429, or a 403 saying "rate limit", means waiting a minute.
fn rate_limit_wait(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now_epoch: u64,
) -> Option<Duration> {
    if status != 403 && status != 429 {
        return None;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(secs) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        if let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok()) {
            return Some(Duration::from_secs(reset.saturating_sub(now_epoch)));
        }
    }
    if status == 429
        || error_message(body)
            .to_ascii_lowercase()
            .contains("rate limit")
    {
        return Some(Duration::from_secs(60));
    }
    None
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

/// Where the web pages of the forge whose API is at `api` are: GitHub's API host
/// `api.github.com` (or a GitHub Enterprise Cloud `api.` host) loses its `api.`;
/// GitHub Enterprise Server serves both from one host, under `/api/v3` for the
/// API, and so does the local fake.
fn web_origin(api: &url::Url) -> String {
    origin(api).replacen("://api.", "://", 1)
}

fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn rate_limit_waits_follow_githubs_rules() {
        fn check(status: u16, headers: &[(&'static str, &str)], body: &str, want: Option<u64>) {
            let mut map = HeaderMap::new();
            for (k, v) in headers {
                map.insert(*k, HeaderValue::from_str(v).expect("header"));
            }
            let got = rate_limit_wait(status, &map, body.as_bytes(), 1_000);
            assert_eq!(
                got,
                want.map(Duration::from_secs),
                "{status} {headers:?} {body}"
            );
        }
        check(429, &[("retry-after", "7")], "", Some(7));
        check(403, &[("retry-after", "3")], "", Some(3));
        check(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1030"),
            ],
            "",
            Some(30),
        );
        check(
            403,
            &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "900")],
            "",
            Some(0),
        );
        check(
            403,
            &[
                ("retry-after", "2"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1030"),
            ],
            "",
            Some(2),
        );
        check(429, &[], "", Some(60));
        check(
            403,
            &[],
            r#"{"message":"You have exceeded a secondary rate limit."}"#,
            Some(60),
        );
        check(
            403,
            &[("x-ratelimit-remaining", "12")],
            r#"{"message":"Resource not accessible by integration"}"#,
            None,
        );
        check(500, &[("retry-after", "1")], "", None);
        check(422, &[], "", None);
    }

    #[test]
    fn next_links_are_read_from_link_headers() {
        let cases = [
            (
                r#"<https://api.github.com/r?page=2>; rel="next", <https://api.github.com/r?page=5>; rel="last""#,
                Some("https://api.github.com/r?page=2"),
            ),
            (
                r#"<https://api.github.com/r?page=1>; rel="prev", <https://api.github.com/r?page=3>; rel="next""#,
                Some("https://api.github.com/r?page=3"),
            ),
            (
                r#"<https://api.github.com/r?page=1>; rel="first", <https://api.github.com/r?page=1>; rel="prev""#,
                None,
            ),
            ("", None),
        ];
        for (header, want) in cases {
            assert_eq!(next_link(header).as_deref(), want, "{header}");
        }
    }

    #[test]
    fn validation_messages_come_from_githubs_errors_array() {
        let cases = [
            (
                r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for o:b."}]}"#,
                "A pull request already exists for o:b.",
            ),
            (
                r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","field":"head","code":"invalid"}]}"#,
                "PullRequest.head invalid",
            ),
            (
                r#"{"message":"Invalid request.\n\n\"head\" wasn't supplied."}"#,
                "Invalid request.\n\n\"head\" wasn't supplied.",
            ),
            ("not json", "not json"),
        ];
        for (body, want) in cases {
            assert_eq!(validation_message(body.as_bytes()), want, "{body}");
        }
    }

    #[test]
    fn only_this_repositorys_pull_request_urls_are_ours() {
        fn check(api_base: &str, url: &str, want: Option<u64>) {
            let gh = GitHub::new(api_base, "acme/dbt", ForgeToken::new("t")).expect("client");
            assert_eq!(gh.pr_number(url), want, "{api_base} {url}");
        }
        let github = "https://api.github.com";
        check(github, "https://github.com/acme/dbt/pull/7", Some(7));
        check(github, "https://github.com/Acme/DBT/pull/7/", Some(7));
        check(github, " https://github.com/acme/dbt/pull/12 ", Some(12));
        check(github, "https://github.com/acme/other/pull/7", None);
        check(github, "https://github.com/evil/dbt/pull/7", None);
        check(github, "https://gitlab.com/acme/dbt/pull/7", None);
        check(github, "https://api.github.com/acme/dbt/pull/7", None);
        check(github, "http://github.com/acme/dbt/pull/7", None);
        check(github, "https://github.com/acme/dbt/issues/7", None);
        check(github, "https://github.com/acme/dbt/pull/7/files", None);
        check(github, "https://github.com/acme/dbt/pull/7?x=1", None);
        check(
            github,
            "https://github.com/acme/dbt/pull/7#discussion",
            None,
        );
        check(github, "https://github.com/acme/dbt/pull/0", None);
        check(github, "https://github.com/acme/dbt/pull/+7", None);
        check(
            github,
            "https://github.com/acme/dbt/compare/main...selfheal/x?expand=1",
            None,
        );
        check(github, "not a url", None);
        let ghe = "https://ghe.example.com/api/v3";
        check(ghe, "https://ghe.example.com/acme/dbt/pull/3", Some(3));
        check(ghe, "https://github.com/acme/dbt/pull/3", None);
        check(ghe, "https://ghe.example.com:8443/acme/dbt/pull/3", None);
        let ghe_cloud = "https://api.octo.ghe.com";
        check(ghe_cloud, "https://octo.ghe.com/acme/dbt/pull/4", Some(4));
        let fake = "http://127.0.0.1:8123";
        check(fake, "http://127.0.0.1:8123/acme/dbt/pull/1", Some(1));
        check(fake, "http://127.0.0.1:9999/acme/dbt/pull/1", None);
    }

    /// Real answers of api.github.com (tests/fixtures/github/README.md).
    #[test]
    fn recorded_github_answers_read_as_open_or_merged_by_whom() {
        let cases = [
            (
                include_str!("../../tests/fixtures/github/pull_open.pygithub-2020.json"),
                PrState::Open,
            ),
            (
                include_str!("../../tests/fixtures/github/pull_merged.pygithub-2026.json"),
                PrState::Merged {
                    by: Some("JLLeitschuh".into()),
                },
            ),
        ];
        for (body, want) in cases {
            let pull: ApiPull = parse_json(body.as_bytes()).expect("GitHub's answer parses");
            assert_eq!(pull.pr_state(), want, "{}", pull.html_url);
        }
        // A list item has no `merged`; a `merged_at` says it all the same.
        let listed = r#"{"number":1,"html_url":"h","state":"closed","title":"t","body":null,
            "head":{"ref":"selfheal/x"},"base":{"ref":"main"},"merged_at":"2025-11-19T17:43:18Z"}"#;
        let pull: ApiPull = parse_json(listed.as_bytes()).expect("parses");
        assert_eq!(pull.pr_state(), PrState::Merged { by: None });
        let closed = listed.replace(r#","merged_at":"2025-11-19T17:43:18Z""#, "");
        let pull: ApiPull = parse_json(closed.as_bytes()).expect("parses");
        assert_eq!(pull.pr_state(), PrState::Closed);
    }

    #[test]
    fn the_forge_never_builds_a_request_that_merges_approves_or_closes() {
        // What would merge (`PUT .../pulls/{n}/merge`, `.../merges`), approve
        // (`POST .../pulls/{n}/reviews`), or close or edit (`PATCH`) a pull
        // request: none of it may appear in the forge's code.
        let forbidden = [
            "merge\"",
            "/merge",
            "merges",
            "reviews",
            "Method::PUT",
            "Method::PATCH",
            "Method::DELETE",
        ];
        for (file, text) in [
            ("github.rs", include_str!("github.rs")),
            ("mod.rs", include_str!("mod.rs")),
            ("exchange.rs", include_str!("exchange.rs")),
            ("azure.rs", include_str!("azure.rs")),
        ] {
            let code = text.split("#[cfg(test)]").next().unwrap_or(text);
            let code: String = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for word in forbidden {
                assert!(
                    !code.contains(word),
                    "{file} mentions `{word}` outside comments and tests"
                );
            }
        }
    }

    #[test]
    fn plain_http_is_refused_except_on_loopback() {
        let token = || ForgeToken::new("t");
        assert!(GitHub::new("http://127.0.0.1:9/api/v3", "o/r", token()).is_ok());
        assert!(GitHub::new("http://localhost:9", "o/r", token()).is_ok());
        assert!(GitHub::new("http://ghe.example.com/api/v3", "o/r", token()).is_err());
        assert!(GitHub::new("http://127.0.0.1:9", "not-a-repo", token()).is_err());
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let gh = GitHub::new(
            "http://127.0.0.1:9",
            "o/r",
            ForgeToken::new("ghp_supersecret"),
        )
        .expect("client");
        let shown = format!("{gh:?}");
        assert!(
            !shown.contains("ghp_supersecret") && shown.contains("***"),
            "{shown}"
        );
    }
}
