//! The one HTTP plumbing every forge client (GitHub, Gitea, GitLab,
//! Bitbucket, Azure DevOps) shares: the token, the retry policy, the
//! transport (plain `http://` only to loopback, so a token never travels in
//! clear), one exchange with a timeout and a cap on the body, the retry loop
//! around it, paging, "already exists" recovery after a lost answer, and the
//! small URL helpers (`Link` headers, origins, repository names, pull request
//! page URLs).
//!
//! Each client brings its [`Dialect`]: its name, the headers it wants, what a
//! rate limit looks like and how its error bodies read; and its credential
//! header. What it must not do: know any forge's routes. Paths, bodies and
//! what a success means stay in each forge's own module.

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
pub(super) const MAX_PAGES: usize = 50;

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

/// How long a rate limit asks us to wait.
pub(super) enum Pause {
    /// As long as the forge says.
    For(Duration),
    /// The forge does not say: the current backoff, which then doubles.
    Backoff,
}

/// What differs between forges in the same exchange: everything else about
/// an answer that is not a success is read the same way ([`Dialect::refusal`]).
pub(super) struct Dialect {
    /// The forge's name in logs and messages: `GitHub`, `Gitea`, `GitLab`.
    pub name: &'static str,
    /// Sent with every request besides the credential (`accept`, an API version).
    pub headers: &'static [(&'static str, &'static str)],
    /// How long the forge asks us to wait when an answer (and the time now,
    /// in epoch seconds) is a rate limit; None when it is no rate limit.
    pub rate_limit: fn(&Answer, u64) -> Option<Pause>,
    /// The text of an error body, for messages.
    pub error_message: fn(&[u8]) -> String,
    /// Statuses that mean "refused as invalid" ([`ForgeError::Validation`]).
    pub validation_statuses: &'static [u16],
    /// The message of such a refusal.
    pub validation_message: fn(&[u8]) -> String,
    /// The message of a 403 that is not a rate limit.
    pub forbidden_message: fn(&[u8]) -> String,
    /// Whether a 3xx means the token was refused (Azure DevOps sends a bad
    /// token to its sign-in page); elsewhere it is an unexpected answer.
    pub redirect_is_unauthorized: bool,
}

/// What an answer that is neither a success nor a 304 means.
pub(super) enum Refusal {
    /// Wait (as a rate limit asks), then try again.
    RateLimited(Pause),
    /// Worth another try (a 5xx): the request may or may not have been carried out.
    Transient(ForgeError),
    /// Final: retrying would get the same answer.
    Final(ForgeError),
}

impl Dialect {
    /// What `answer`, neither a success nor a 304, means, `now` in epoch seconds.
    pub fn refusal(&self, answer: &Answer, now: u64) -> Refusal {
        if let Some(pause) = (self.rate_limit)(answer, now) {
            return Refusal::RateLimited(pause);
        }
        let body = &answer.body;
        let other =
            || ForgeError::Http(format!("{}: {}", answer.status, (self.error_message)(body)));
        Refusal::Final(match answer.status.as_u16() {
            300..=399 if self.redirect_is_unauthorized => ForgeError::Unauthorized,
            401 => ForgeError::Unauthorized,
            403 => ForgeError::Forbidden((self.forbidden_message)(body)),
            404 => ForgeError::NotFound,
            s if self.validation_statuses.contains(&s) => {
                ForgeError::Validation((self.validation_message)(body))
            }
            s if s >= 500 => return Refusal::Transient(other()),
            _ => other(),
        })
    }
}

/// `Retry-After` in seconds, if the answer has one.
pub(super) fn retry_after(answer: &Answer) -> Option<Duration> {
    answer
        .header("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The rate limit of a forge (or a proxy in front of it) that answers 429
/// with `Retry-After` seconds, or a minute when it does not say.
pub(super) fn retry_after_or_a_minute(answer: &Answer, _now_epoch: u64) -> Option<Pause> {
    (answer.status.as_u16() == 429)
        .then(|| Pause::For(retry_after(answer).unwrap_or(Duration::from_secs(60))))
}

/// One forge API, as one credential reaches it.
pub(super) struct Api {
    /// e.g. `https://api.github.com` or `https://gitea.example.com/api/v1`,
    /// no trailing slash.
    pub base: String,
    pub retry: RetryPolicy,
    transport: Transport,
    dialect: &'static Dialect,
    /// The credential header, its value marked sensitive so it never shows
    /// in `Debug` output or logs.
    credential: (&'static str, HeaderValue),
}

/// An answer the forge gave: a success, or a 304 to a conditional request.
pub(super) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value, trimmed, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    }
}

impl Api {
    /// A client for the API at `base` (no trailing slash) that sends
    /// `credential` (a header name and value) with every request. Plain
    /// `http://` is accepted only for loopback hosts (tests, local fakes):
    /// elsewhere the token would travel in clear.
    pub fn new(
        base: &str,
        dialect: &'static Dialect,
        credential: (&'static str, &str),
    ) -> anyhow::Result<Api> {
        let parsed =
            url::Url::parse(base).with_context(|| format!("parsing forge API URL {base}"))?;
        let transport = match parsed.scheme() {
            "https" => Transport::for_url(&parsed)?,
            "http" if is_loopback(&parsed) => Transport::for_url(&parsed)?,
            "http" => bail!(
                "refusing plain http for forge API {base}: the token would travel unencrypted"
            ),
            other => bail!("unsupported scheme `{other}` in forge API URL {base}"),
        };
        let (name, value) = credential;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            anyhow::anyhow!("the {} token is not a valid header value", dialect.name)
        })?;
        value.set_sensitive(true);
        Ok(Api {
            base: base.to_string(),
            retry: RetryPolicy::default(),
            transport,
            dialect,
            credential: (name, value),
        })
    }

    /// `GET url`, retried.
    pub async fn get(&self, url: &str) -> Result<Answer, ForgeError> {
        self.send(Method::GET, url, None, &[], &mut false).await
    }

    /// `POST url` with `body` as JSON, retried like every call (so what was
    /// posted may be posted twice when an answer is lost; never lost silently).
    pub async fn post(&self, url: &str, body: &serde_json::Value) -> Result<Answer, ForgeError> {
        self.send(Method::POST, url, Some(encode(body)?), &[], &mut false)
            .await
    }

    /// `GET url` as a `T`, with `If-None-Match: etag` when there is one:
    /// None when the forge answers 304 (unchanged since that ETag), else the
    /// thing and the answer's own ETag.
    pub async fn get_if_changed<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        etag: Option<&str>,
    ) -> Result<Option<(T, Option<String>)>, ForgeError> {
        let conditional: Vec<(&'static str, &str)> =
            etag.map(|e| ("if-none-match", e)).into_iter().collect();
        let resp = self
            .send(Method::GET, url, None, &conditional, &mut false)
            .await?;
        if resp.status == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let thing = self.parse(&resp.body)?;
        Ok(Some((thing, resp.header("etag").map(str::to_string))))
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

    /// `POST url` with `body` creating a pull request, read as a `T`. An
    /// earlier attempt may have created it before its answer was lost (a
    /// timeout or a 5xx); then the retry meets the forge's "already exists"
    /// (a validation error containing `exists`), and the pull request wanted
    /// is the one `existing` finds (a future, so it runs only then).
    pub async fn create<T>(
        &self,
        url: &str,
        body: &serde_json::Value,
        exists: &str,
        existing: impl std::future::Future<Output = Result<Option<PullRequest>, ForgeError>>,
    ) -> Result<PullRequest, ForgeError>
    where
        T: serde::de::DeserializeOwned + Into<PullRequest>,
    {
        let mut ambiguous = false;
        let created = match self
            .send(Method::POST, url, Some(encode(body)?), &[], &mut ambiguous)
            .await
        {
            Ok(resp) => self.parse::<T>(&resp.body).map(Into::into),
            Err(e) => Err(e),
        };
        created_or_existing(created, ambiguous, exists, existing).await
    }

    /// An answer's body as `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, body: &[u8]) -> Result<T, ForgeError> {
        parse_json(self.dialect.name, body)
    }

    /// Sends one request, with `headers` besides the usual ones, with retries.
    /// A 304 is an answer (to a conditional request), not an error; the
    /// dialect says what any other answer that is not a success means.
    /// `ambiguous` is set when an attempt may have reached the forge without
    /// us seeing the answer (a 5xx, a timeout, a lost connection).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        headers: &[(&'static str, &str)],
        ambiguous: &mut bool,
    ) -> Result<Answer, ForgeError> {
        let forge = self.dialect.name;
        let mut backoff = self.retry.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.retry.max_attempts.max(1);
            let request = self.request(method.clone(), url, body.clone(), headers)?;
            let error = match self.send_once(request).await {
                Ok(answer)
                    if answer.status.is_success() || answer.status == StatusCode::NOT_MODIFIED =>
                {
                    return Ok(answer)
                }
                Ok(answer) => match self.dialect.refusal(&answer, now_epoch()) {
                    Refusal::RateLimited(pause) => {
                        let wait = match pause {
                            Pause::For(wait) => wait,
                            Pause::Backoff => {
                                let wait = backoff;
                                backoff = (backoff * 2).min(self.retry.max_wait);
                                wait
                            }
                        };
                        if last || wait > self.retry.max_wait {
                            return Err(ForgeError::RateLimited { retry_after: wait });
                        }
                        warn!(%url, status = answer.status.as_u16(), wait_ms = wait.as_millis() as u64, "rate limited by {forge}; waiting");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    Refusal::Final(e) => return Err(e),
                    Refusal::Transient(e) => e,
                },
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

    fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        headers: &[(&'static str, &str)],
    ) -> Result<Request<Full<Bytes>>, ForgeError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(url)
            .header("user-agent", "selfheal")
            .header(self.credential.0, self.credential.1.clone());
        for (name, value) in self.dialect.headers {
            builder = builder.header(*name, *value);
        }
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .map_err(|_| ForgeError::Http(format!("`{name}` is not a valid header value")))?;
            builder = builder.header(*name, value);
        }
        builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ForgeError::Http(format!("building request: {e}")))
    }

    /// One exchange: send, read the body (at most [`MAX_BODY_BYTES`]), all
    /// within the policy's request timeout.
    async fn send_once(&self, request: Request<Full<Bytes>>) -> Result<Answer, ForgeError> {
        let exchange = async {
            // hyper-util's errors name the host, never headers, so they carry no token.
            let response = self.transport.request(request).await.map_err(|e| {
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

/// What a create achieved: its own answer, or, when an earlier attempt may
/// have created the thing before its answer was lost (`ambiguous`) and the
/// retry met the forge's "already exists" (a [`ForgeError::Validation`]
/// whose message contains `exists`), the existing one `existing` finds.
pub(super) async fn created_or_existing<T>(
    result: Result<T, ForgeError>,
    ambiguous: bool,
    exists: &str,
    existing: impl std::future::Future<Output = Result<Option<T>, ForgeError>>,
) -> Result<T, ForgeError> {
    match result {
        Err(ForgeError::Validation(msg)) if ambiguous && msg.contains(exists) => {
            existing.await?.ok_or(ForgeError::Validation(msg))
        }
        other => other,
    }
}

/// `value` as a JSON request body.
pub(super) fn encode(value: &serde_json::Value) -> Result<Vec<u8>, ForgeError> {
    serde_json::to_vec(value).map_err(|e| ForgeError::Http(format!("encoding request: {e}")))
}

/// `body` read as JSON of type `T`; an unreadable one is the forge's fault.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(
    forge: &str,
    body: &[u8],
) -> Result<T, ForgeError> {
    serde_json::from_slice(body)
        .map_err(|e| ForgeError::Http(format!("unexpected response from {forge}: {e}")))
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

/// The ways of a pull request API GitHub and Gitea share, on top of
/// [`Api`]: the routes differ, what is sent and read does not.
impl Api {
    /// `POST url` creating a pull request; after a lost answer, the retry
    /// meets "already exists" (GitHub's 422, Gitea's 409), and the pull
    /// request wanted is the one `existing` finds (see [`Api::create`]).
    pub async fn create_pull(
        &self,
        url: &str,
        body: &serde_json::Value,
        existing: impl std::future::Future<Output = Result<Option<PullRequest>, ForgeError>>,
    ) -> Result<PullRequest, ForgeError> {
        let pr = self
            .create::<ApiPull>(url, body, "already exists", existing)
            .await?;
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
        Ok(self
            .get_if_changed::<ApiPull>(url, etag)
            .await?
            .map(|(pull, etag)| PrSnapshot {
                state: pull.pr_state(),
                etag,
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

/// The `message` of an error body (`{"message": …}`: GitHub's, Gitea's and
/// Azure DevOps' shape alike), or the start of the body when it has none.
pub(super) fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize, Default)]
    struct Message {
        #[serde(default)]
        message: String,
    }
    let err: Message = serde_json::from_slice(body).unwrap_or_default();
    if err.message.is_empty() {
        body_start(body)
    } else {
        err.message
    }
}

/// The first 200 bytes of a body as text: what an error body that no
/// reader understands can still tell.
pub(super) fn body_start(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
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

/// Where the web pages of the forge whose API is at `api` are: an API host
/// `api.github.com` or `api.bitbucket.org` (or a GitHub Enterprise Cloud
/// `api.` host) loses its `api.`; GitHub Enterprise Server serves both from
/// one host, under `/api/v3` for the API, and so do the local fakes.
pub(super) fn web_origin(api: &url::Url) -> String {
    origin(api).replacen("://api.", "://", 1)
}

/// Whether two URLs share scheme, host and port: the token goes only where
/// the API is, never to a link elsewhere.
pub(super) fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// A path segment of a repository name: ASCII letters, digits, `-`, `_`, `.`.
pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `(owner, name)` of a configured `owner/name` (Bitbucket: `workspace/slug`),
/// each a [`valid_name`].
pub(super) fn split_repo(repo: &str) -> Option<(&str, &str)> {
    repo.split_once('/')
        .filter(|(o, r)| valid_name(o) && valid_name(r))
}

/// `(owner, name)` of `owner/name`, each made of the characters forges allow.
pub(super) fn owner_and_name(repo: &str) -> anyhow::Result<(String, String)> {
    split_repo(repo)
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

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let shown = format!("{:?}", ForgeToken::new("glpat-supersecret"));
        assert_eq!(shown, "ForgeToken(***)");
    }
}
