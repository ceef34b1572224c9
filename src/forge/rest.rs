//! What the forge API clients share: the token, the retry policy, and one
//! HTTP exchange with bounded retries whose answers become [`ForgeError`]s.
//! Each client brings its [`Dialect`]: how it authenticates, the headers it
//! wants, what a rate limit looks like and how its error bodies read.
//!
//! What it must not do: know any forge's routes. Paths, bodies and what an
//! answer means stay in `github.rs` and `gitea.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use tracing::{info, warn};

use super::{ForgeError, PrSnapshot, PullRequest};
use crate::domain::PrState;
use crate::http::{is_loopback, Transport};

/// Bodies larger than this are not read: no legitimate answer is this big.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// How many pages of a list are read at most.
const MAX_PAGES: usize = 50;

/// A forge token. `Debug` prints `***`; only the forge module reads the value.
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

/// What differs between forges in the same exchange.
pub(super) struct Dialect {
    /// The forge's name in logs and messages: `GitHub`, `Gitea`.
    pub name: &'static str,
    /// `Authorization: <scheme> <token>`.
    pub auth_scheme: &'static str,
    /// Sent with every request.
    pub headers: &'static [(&'static str, &'static str)],
    /// How long the forge asks us to wait, when an answer (status, headers,
    /// body, now in epoch seconds) is a rate limit.
    pub rate_limit_wait: fn(u16, &HeaderMap, &[u8], u64) -> Option<Duration>,
    /// Statuses that mean "refused as invalid" ([`ForgeError::Validation`]).
    pub validation_statuses: &'static [u16],
    /// The message of such a refusal.
    pub validation_message: fn(&[u8]) -> String,
    /// The message of a 403 that is not a rate limit.
    pub forbidden_message: fn(&[u8]) -> String,
}

/// One forge API, as one token reaches it.
pub(super) struct Api {
    /// e.g. `https://api.github.com` or `https://gitea.example.com/api/v1`,
    /// no trailing slash.
    pub base: String,
    token: ForgeToken,
    retry: RetryPolicy,
    client: Transport,
    dialect: &'static Dialect,
}

/// An answer the forge gave: a success, or a 304 to a conditional request.
pub(super) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Api {
    /// A client for the API at `base` (no trailing slash). Plain `http://` is
    /// accepted only for loopback hosts (tests, local fakes): elsewhere the
    /// token would travel in clear.
    pub fn new(base: &str, token: ForgeToken, dialect: &'static Dialect) -> anyhow::Result<Api> {
        let parsed =
            url::Url::parse(base).with_context(|| format!("parsing forge API URL {base}"))?;
        let client = match parsed.scheme() {
            "https" => Transport::for_url(&parsed)?,
            "http" if is_loopback(&parsed) => Transport::for_url(&parsed)?,
            "http" => bail!(
                "refusing plain http for forge API {base}: the token would travel unencrypted"
            ),
            other => bail!("unsupported scheme `{other}` in forge API URL {base}"),
        };
        Ok(Api {
            base: base.to_string(),
            token,
            retry: RetryPolicy::default(),
            client,
            dialect,
        })
    }

    pub fn set_retry(&mut self, retry: RetryPolicy) {
        self.retry = retry;
    }

    pub fn token(&self) -> &ForgeToken {
        &self.token
    }

    /// `GET url`, retried.
    pub async fn get(&self, url: &str) -> Result<Answer, ForgeError> {
        self.send(Method::GET, url, None, &[], &mut false).await
    }

    /// `POST url` with `body` as JSON, retried (a follow-up whose repetition
    /// is harmless, or a comment: better twice than lost).
    pub async fn post(&self, url: &str, body: &serde_json::Value) -> Result<Answer, ForgeError> {
        self.send(Method::POST, url, Some(body), &[], &mut false)
            .await
    }

    /// Every item of a list, page after page: `next` says where the page
    /// after `answer` (read from `url`, `seen` items read so far) is. Pages
    /// elsewhere than the API are never asked (the token goes only there).
    pub async fn pages<T: serde::de::DeserializeOwned>(
        &self,
        first: &str,
        next: impl Fn(&Answer, &str, usize) -> Option<String>,
    ) -> Result<Vec<T>, ForgeError> {
        let mut items = Vec::new();
        let mut url = Some(first.to_string());
        for _ in 0..MAX_PAGES {
            let Some(current) = url.take() else { break };
            let answer = self.get(&current).await?;
            let page: Vec<T> = self.parse(&answer.body)?;
            let empty = page.is_empty();
            items.extend(page);
            url = next(&answer, &current, items.len())
                .filter(|next| !empty && same_origin(next, &self.base));
        }
        Ok(items)
    }

    /// An answer's body as `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, body: &[u8]) -> Result<T, ForgeError> {
        serde_json::from_slice(body).map_err(|e| {
            ForgeError::Http(format!(
                "unexpected response from {}: {e}",
                self.dialect.name
            ))
        })
    }

    /// Sends one request, with `headers` besides the usual ones, with retries.
    /// A 304 is an answer (to a conditional request), not an error. `ambiguous`
    /// is set when an attempt may have reached the forge without us seeing the
    /// answer (a 5xx, a timeout, a lost connection).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        headers: &[(&'static str, &str)],
        ambiguous: &mut bool,
    ) -> Result<Answer, ForgeError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ForgeError::Http(format!("encoding request: {e}")))?;
        let forge = self.dialect.name;
        let mut backoff = self.retry.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.retry.max_attempts.max(1);
            let error = match self
                .send_once(method.clone(), url, body.clone(), headers)
                .await
            {
                Ok(answer)
                    if answer.status.is_success() || answer.status == StatusCode::NOT_MODIFIED =>
                {
                    return Ok(answer)
                }
                Ok(answer) => {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    let status = answer.status.as_u16();
                    if let Some(wait) =
                        (self.dialect.rate_limit_wait)(status, &answer.headers, &answer.body, now)
                    {
                        if last || wait > self.retry.max_wait {
                            return Err(ForgeError::RateLimited { retry_after: wait });
                        }
                        warn!(%url, status, wait_ms = wait.as_millis() as u64, "rate limited by {forge}; waiting");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    match self.refusal(&answer) {
                        Some(refused) => return Err(refused),
                        None => ForgeError::Http(format!(
                            "{}: {}",
                            answer.status,
                            error_message(&answer.body)
                        )),
                    }
                }
                Err(e) => e,
            };
            // Only 5xx, transport errors and timeouts get here: worth another try.
            *ambiguous = true;
            if last {
                return Err(error);
            }
            warn!(%url, attempt, error = %error, "{forge} request failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.retry.max_wait);
        }
    }

    /// What a non-success answer that is no rate limit means; None for a 5xx,
    /// which is worth another try.
    fn refusal(&self, answer: &Answer) -> Option<ForgeError> {
        let status = answer.status.as_u16();
        let body = &answer.body;
        Some(match status {
            401 => ForgeError::Unauthorized,
            403 => ForgeError::Forbidden((self.dialect.forbidden_message)(body)),
            404 => ForgeError::NotFound,
            s if self.dialect.validation_statuses.contains(&s) => {
                ForgeError::Validation((self.dialect.validation_message)(body))
            }
            s if s >= 500 => return None,
            _ => ForgeError::Http(format!("{}: {}", answer.status, error_message(body))),
        })
    }

    async fn send_once(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        headers: &[(&'static str, &str)],
    ) -> Result<Answer, ForgeError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(url)
            .header("user-agent", "selfheal");
        for (name, value) in self.dialect.headers {
            builder = builder.header(*name, *value);
        }
        let mut auth = HeaderValue::from_str(&format!(
            "{} {}",
            self.dialect.auth_scheme,
            self.token.expose()
        ))
        .map_err(|_| ForgeError::Http("the forge token is not a valid header value".into()))?;
        auth.set_sensitive(true);
        builder = builder.header("authorization", auth);
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .map_err(|_| ForgeError::Http(format!("`{name}` is not a valid header value")))?;
            builder = builder.header(*name, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ForgeError::Http(format!("building request: {e}")))?;

        let exchange = async {
            // hyper-util's errors name the host, never headers, so they carry no token.
            let response = self.client.request(request).await.map_err(|e| {
                ForgeError::Http(format!(
                    "sending request: {}",
                    crate::http::unreachable_reason(&e)
                ))
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| ForgeError::Http(format!("reading response: {e}")))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body: body.to_vec(),
            })
        };
        match tokio::time::timeout(self.retry.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ForgeError::Timeout),
        }
    }
}

/// The parts of a pull request object selfheal reads: GitHub's and Gitea's
/// share these names and meanings.
#[derive(Deserialize)]
pub(super) struct ApiPull {
    number: u64,
    pub html_url: String,
    state: String,
    title: String,
    body: Option<String>,
    head: ApiRef,
    base: ApiRef,
    /// GitHub sends it only in the single pull request's answer, not in lists.
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merged_at: Option<String>,
    /// Who merged, when the forge says (null until merged).
    #[serde(default)]
    merged_by: Option<ApiUser>,
}

#[derive(Deserialize)]
struct ApiUser {
    login: String,
}

#[derive(Deserialize)]
struct ApiRef {
    #[serde(rename = "ref")]
    name: String,
}

impl ApiPull {
    /// Merged (`merged`, or a `merged_at` in GitHub's lists, which lack
    /// `merged`), else closed or open as `state` says. Both forges keep a
    /// merged pull request's `state` at `closed`.
    pub fn pr_state(&self) -> PrState {
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

/// The ways of a pull request API both forges share, on top of [`Api`]:
/// the routes differ, what is sent and read does not.
impl Api {
    /// `POST url` creating a pull request. An earlier attempt may have
    /// created it before its answer was lost (a timeout or a 5xx); then the
    /// retry meets "already exists" (GitHub's 422, Gitea's 409), and the pull
    /// request wanted is the one `find_existing` finds.
    pub async fn create_pull<F, Fut>(
        &self,
        url: &str,
        body: &serde_json::Value,
        find_existing: F,
    ) -> Result<PullRequest, ForgeError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<PullRequest>, ForgeError>>,
    {
        let mut ambiguous = false;
        let pr = match self
            .send(Method::POST, url, Some(body), &[], &mut ambiguous)
            .await
        {
            Ok(resp) => self.parse::<ApiPull>(&resp.body)?.into(),
            Err(ForgeError::Validation(msg)) if ambiguous && msg.contains("already exists") => {
                match find_existing().await? {
                    Some(pr) => pr,
                    None => return Err(ForgeError::Validation(msg)),
                }
            }
            Err(e) => return Err(e),
        };
        info!(number = pr.number, url = %pr.url, head = %pr.head, "opened pull request");
        Ok(pr)
    }

    /// Every pull request of a list, page after page (see [`Api::pages`]).
    pub async fn pulls(
        &self,
        first: &str,
        next: impl Fn(&Answer, &str, usize) -> Option<String>,
    ) -> Result<Vec<PullRequest>, ForgeError> {
        let pulls: Vec<ApiPull> = self.pages(first, next).await?;
        Ok(pulls.into_iter().map(PullRequest::from).collect())
    }

    /// `GET url` of one pull request, with `If-None-Match: etag` when there
    /// is one: None when the forge answers 304 (unchanged since that ETag).
    pub async fn pull_state(
        &self,
        url: &str,
        etag: Option<&str>,
    ) -> Result<Option<PrSnapshot>, ForgeError> {
        let conditional: Vec<(&'static str, &str)> =
            etag.map(|e| ("if-none-match", e)).into_iter().collect();
        let resp = self
            .send(Method::GET, url, None, &conditional, &mut false)
            .await?;
        if resp.status == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let pull: ApiPull = self.parse(&resp.body)?;
        Ok(Some(PrSnapshot {
            state: pull.pr_state(),
            etag: resp.header("etag").map(str::to_string),
        }))
    }

    /// `POST url` of an issue's comments (a pull request is an issue to both
    /// forges' comments APIs). Retried like every call, so a comment whose
    /// answer was lost may appear twice; never lost silently.
    pub async fn comment(&self, url: &str, body: &str) -> Result<(), ForgeError> {
        self.post(url, &serde_json::json!({ "body": body })).await?;
        info!(%url, "commented on pull request");
        Ok(())
    }

    /// `GET repo_url`: whether the token may push to the repository
    /// (`permissions.push`, present for an authenticated caller), which
    /// opening a pull request from a pushed branch needs.
    pub async fn can_push(&self, repo_url: &str) -> Result<bool, ForgeError> {
        let resp = self.get(repo_url).await?;
        let repo: serde_json::Value = self.parse(&resp.body)?;
        Ok(repo["permissions"]["push"].as_bool().unwrap_or(false))
    }
}

/// The `message` of an error body (`{"message": …}`, GitHub's and Gitea's
/// shape alike), or the start of the body when it has none.
pub(super) fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize, Default)]
    struct Message {
        #[serde(default)]
        message: String,
    }
    let err: Message = serde_json::from_slice(body).unwrap_or_default();
    if err.message.is_empty() {
        String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
    } else {
        err.message
    }
}

/// The `rel="next"` target of a `Link` header.
pub(super) fn next_link(header: &str) -> Option<String> {
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

/// The `rel="next"` target of an answer's `Link` header, if any.
pub(super) fn next_linked(answer: &Answer) -> Option<String> {
    answer.header("link").and_then(next_link)
}

/// `scheme://host[:port]` of `url`, the port only when it is not the scheme's default.
pub(super) fn origin(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// `(owner, name)` of `owner/name`, each made of the characters forges allow.
pub(super) fn owner_and_name(repo: &str) -> anyhow::Result<(String, String)> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    repo.split_once('/')
        .filter(|(o, r)| valid(o) && valid(r))
        .map(|(o, r)| (o.to_string(), r.to_string()))
        .with_context(|| format!("forge repository `{repo}` is not `owner/name`"))
}

/// The number of a pull request page `{web}/{owner}/{repo}/{kind}/{n}` (owner
/// and name in any case, nothing after the number); None for anything else.
pub(super) fn pr_number_in(
    pr_url: &str,
    web: &str,
    owner: &str,
    repo: &str,
    kind: &str,
) -> Option<u64> {
    let url = url::Url::parse(pr_url.trim()).ok()?;
    let web = url::Url::parse(web).ok()?;
    if origin(&url) != origin(&web) || url.query().is_some() || url.fragment().is_some() {
        return None;
    }
    let prefix = web.path().trim_end_matches('/');
    let path = url.path().strip_prefix(prefix)?.trim_end_matches('/');
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    match segments.as_slice() {
        [o, r, k, number]
            if o.eq_ignore_ascii_case(owner)
                && r.eq_ignore_ascii_case(repo)
                && *k == kind
                && number.bytes().all(|b| b.is_ascii_digit()) =>
        {
            number.parse().ok().filter(|n| *n > 0)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn repositories_are_owner_slash_name() {
        assert_eq!(
            owner_and_name("acme/my.dbt-project_2").expect("valid"),
            ("acme".to_string(), "my.dbt-project_2".to_string())
        );
        for bad in ["acme", "acme/", "/dbt", "acme/dbt/x", "ac me/dbt"] {
            assert!(owner_and_name(bad).is_err(), "{bad}");
        }
    }
}
