//! The HTTP plumbing every forge API client shares: the transport (plain
//! `http://` only to loopback, so a token never travels in clear), the headers
//! sent with every request (the credential among them, marked sensitive), one
//! exchange with a timeout and a cap on the body, and the retry loop bounded
//! by [`RetryPolicy`].
//!
//! It knows no forge: what an unsuccessful answer means (a rate limit and its
//! wait, worth another try, or final) is the forge's own rule, passed in as a
//! function. It never decides which endpoints are called.

use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use tracing::warn;

use super::{ForgeError, RetryPolicy};
use crate::http::{is_loopback, Transport};

/// Bodies larger than this are not read: no legitimate answer is this big.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// One answer, read whole.
pub(super) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    }
}

/// What a forge makes of an answer that is neither a success nor a 304.
pub(super) enum Refusal {
    /// Slow down: wait this long (or, when the forge does not say, the
    /// current backoff), then try again.
    RateLimited(Option<Duration>),
    /// Worth another try (a 5xx).
    Transient(ForgeError),
    /// Final: returned at once.
    Final(ForgeError),
}

/// A forge API's client: where requests go and how they are retried.
pub(super) struct Client {
    /// The forge's name, for logs and errors (`GitHub`, `Bitbucket`).
    forge: &'static str,
    transport: Transport,
    /// Sent with every request, the credential among them.
    headers: Vec<(&'static str, HeaderValue)>,
    pub retry: RetryPolicy,
}

impl Client {
    /// A client for the API at `api_base` that sends `headers` with every
    /// request. Plain `http://` is accepted only for loopback hosts (tests,
    /// local fakes): elsewhere the token would travel in clear.
    pub fn new(
        forge: &'static str,
        api_base: &url::Url,
        headers: Vec<(&'static str, HeaderValue)>,
    ) -> anyhow::Result<Client> {
        let transport = match api_base.scheme() {
            "https" => Transport::for_url(api_base)?,
            "http" if is_loopback(api_base) => Transport::for_url(api_base)?,
            "http" => bail!(
                "refusing plain http for forge API {api_base}: the token would travel unencrypted"
            ),
            other => bail!("unsupported scheme `{other}` in forge API URL {api_base}"),
        };
        Ok(Client {
            forge,
            transport,
            headers,
            retry: RetryPolicy::default(),
        })
    }

    /// Sends one request, with `headers` besides the usual ones, with retries.
    /// A 304 is an answer (to a conditional request), not an error; `refuse`
    /// says what any other unsuccessful answer means. `ambiguous` is set when
    /// an attempt may have reached the forge without us seeing the answer (a
    /// 5xx, a timeout, a lost connection).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        headers: &[(&'static str, &str)],
        ambiguous: &mut bool,
        refuse: impl Fn(&Answer) -> Refusal,
    ) -> Result<Answer, ForgeError> {
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
                Ok(answer) => match refuse(&answer) {
                    Refusal::Final(error) => return Err(error),
                    Refusal::RateLimited(wait) => {
                        let wait = wait.unwrap_or(backoff);
                        if last || wait > self.retry.max_wait {
                            return Err(ForgeError::RateLimited { retry_after: wait });
                        }
                        warn!(%url, status = answer.status.as_u16(), wait_ms = wait.as_millis() as u64, "rate limited by {}; waiting", self.forge);
                        tokio::time::sleep(wait).await;
                        backoff = (backoff * 2).min(self.retry.max_wait);
                        continue;
                    }
                    Refusal::Transient(error) => error,
                },
                Err(e) => e,
            };
            // Only 5xx, transport errors and timeouts get here: worth another try.
            *ambiguous = true;
            if last {
                return Err(error);
            }
            warn!(%url, attempt, error = %error, "{} request failed; retrying", self.forge);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.retry.max_wait);
        }
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
        for (name, value) in &self.headers {
            builder = builder.header(*name, value.clone());
        }
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

    /// `body` read as JSON of type `T`.
    pub fn parse_json<T: serde::de::DeserializeOwned>(&self, body: &[u8]) -> Result<T, ForgeError> {
        parse_json(self.forge, body)
    }

    /// `value` as a JSON request body.
    pub fn encode(value: &serde_json::Value) -> Result<Vec<u8>, ForgeError> {
        serde_json::to_vec(value).map_err(|e| ForgeError::Http(format!("encoding request: {e}")))
    }
}

/// `body` read as JSON of type `T`; an unreadable one is the forge's fault.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(
    forge: &str,
    body: &[u8],
) -> Result<T, ForgeError> {
    serde_json::from_slice(body)
        .map_err(|e| ForgeError::Http(format!("unexpected response from {forge}: {e}")))
}

/// A header value that never shows in logs or `Debug` output.
pub(super) fn sensitive(value: &str) -> anyhow::Result<HeaderValue> {
    let mut value =
        HeaderValue::from_str(value).context("the forge token is not a valid header value")?;
    value.set_sensitive(true);
    Ok(value)
}

/// Where the web pages of the forge whose API is at `api` are: an API host
/// `api.github.com` or `api.bitbucket.org` (or a GitHub Enterprise Cloud
/// `api.` host) loses its `api.`; GitHub Enterprise Server serves both from
/// one host, under `/api/v3` for the API, and so do the local fakes.
pub(super) fn web_origin(api: &url::Url) -> String {
    origin(api).replacen("://api.", "://", 1)
}

/// `scheme://host[:port]` of `url`, the port only when it is not the scheme's default.
pub(super) fn origin(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// Whether two URLs share scheme, host and port: the token goes only where
/// the API is, never to a link elsewhere.
pub(super) fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// `(owner, name)` of a configured `owner/name` (Bitbucket: `workspace/slug`),
/// each made of ASCII letters, digits, `-`, `_` and `.`.
pub(super) fn split_repo(repo: &str) -> Option<(&str, &str)> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    repo.split_once('/').filter(|(o, r)| valid(o) && valid(r))
}

/// The number of `pr_url` when it is `{web_origin}/{owner}/{repo}/{kind}/{n}`
/// (owner and repository in any case, a trailing `/` allowed, no query or
/// fragment, `n` > 0): a pull request of this repository. None for anything
/// else, which selfheal never asks about.
pub(super) fn pr_number(
    pr_url: &str,
    web_origin: &str,
    (owner, repo): (&str, &str),
    kind: &str,
) -> Option<u64> {
    let url = url::Url::parse(pr_url.trim()).ok()?;
    if origin(&url) != web_origin || url.query().is_some() || url.fragment().is_some() {
        return None;
    }
    let path = url.path().trim_end_matches('/');
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
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
