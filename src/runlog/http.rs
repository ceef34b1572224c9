//! The HTTP client the hosted run-log sources share: TLS for real hosts, plain
//! TCP only for loopback fakes, a timeout on every request, and bounded retries
//! of 429, 5xx, timeouts and transport errors for reads ([`HttpClient::send`]).
//! A request that starts something (a scheduler's retry of a run) goes through
//! [`HttpClient::send_mutation`], which repeats only what the server cannot
//! have acted on.
//!
//! It never formats a request header into an error or a log line, and every
//! text taken from a response is scrubbed of the caller's secrets before it
//! becomes part of an error: the secrets stay in the request.
//!
//! Kept private to `runlog` rather than shared with `forge::github`: that
//! client's retry rules are GitHub's (rate-limit headers, 403s), these are not.

use crate::http::{is_loopback, unreachable_reason, Transport};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};
use tracing::warn;

/// Bodies larger than this are not read: no run log answer is this big.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How hard a hosted source tries before giving up on one request.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// The first backoff after a 429, 5xx or transport error; it doubles each time.
    pub initial_backoff: Duration,
    /// The longest single wait, including a `Retry-After` the server asks for.
    pub max_backoff: Duration,
    /// How long one request (connect, send, read the body) may take.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// One answer, whatever its status.
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Answer {
    /// The start of the body as text, scrubbed of `secrets`, for error messages.
    pub fn excerpt(&self, secrets: &[&str]) -> String {
        let end = self.body.len().min(300);
        scrub(&String::from_utf8_lossy(&self.body[..end]), secrets)
    }
}

/// A request to send: method, URL, headers (marked sensitive when secret) and body.
pub(super) struct Call<'a> {
    pub method: Method,
    pub url: &'a str,
    pub headers: Vec<(&'static str, String, bool)>,
    pub body: Option<Vec<u8>>,
}

/// A connection pool for one API host.
#[derive(Clone)]
pub(super) struct HttpClient {
    transport: Transport,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client for `base` (named `what` in errors); see [`HttpClient::check_url`].
    pub fn new(base: &str, what: &str) -> Result<HttpClient> {
        Self::check_url(base).with_context(|| what.to_string())?;
        let url = url::Url::parse(base).with_context(|| format!("parsing {what} URL"))?;
        let transport = Transport::for_url(&url)?;
        Ok(HttpClient {
            transport,
            retry: RetryPolicy::default(),
        })
    }

    /// Whether `base` is https (true) or loopback http (false). Plain http
    /// elsewhere is refused: the credentials would travel in clear.
    pub fn check_url(base: &str) -> Result<bool> {
        let parsed = url::Url::parse(base).with_context(|| format!("'{base}' is not a URL"))?;
        match parsed.scheme() {
            "https" if parsed.host().is_some() => Ok(true),
            "http" if is_loopback(&parsed) => Ok(false),
            "http" => bail!(
                "refusing plain http for {base}: the credentials would travel unencrypted (use https)"
            ),
            _ => bail!("'{base}' is not an https URL"),
        }
    }

    /// Sends `call`, retrying 429, 5xx, timeouts and transport errors with
    /// doubling backoff (or the server's `Retry-After`, capped). Any other
    /// answer, success or not, is returned for the caller to judge. For reads:
    /// asking twice costs nothing.
    pub async fn send(&self, call: &Call<'_>) -> Result<Answer> {
        self.send_repeating(call, |_| true).await
    }

    /// Sends `call`, a request that starts something (a run), repeating it
    /// only when the server cannot have acted on it: a 429 (refused before
    /// acting) or a connection that was never made (nothing was sent). After a
    /// 5xx, a timeout or a connection lost mid-request the server may have
    /// started the run already, and a second request could start a second
    /// one: the 5xx answer is returned as is, and the error says the request
    /// was not repeated.
    pub async fn send_mutation(&self, call: &Call<'_>) -> Result<Answer> {
        self.send_repeating(call, |why| {
            matches!(why, Repeat::TooManyRequests | Repeat::NotSent)
        })
        .await
    }

    /// The retry loop of [`HttpClient::send`] and [`HttpClient::send_mutation`]:
    /// `repeat` says which failures are asked again (while attempts remain).
    async fn send_repeating(&self, call: &Call<'_>, repeat: fn(Repeat) -> bool) -> Result<Answer> {
        let mut backoff = self.retry.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.retry.max_attempts.max(1);
            let (problem, asked) = match self.send_once(call).await {
                Ok((answer, retry_after)) => {
                    let why = match answer.status.as_u16() {
                        429 => Repeat::TooManyRequests,
                        s if s >= 500 => Repeat::ServerError,
                        _ => return Ok(answer),
                    };
                    if last || !repeat(why) {
                        return Ok(answer);
                    }
                    (format!("HTTP {}", answer.status), retry_after)
                }
                Err(NoAnswer::MaybeSent(e)) if !repeat(Repeat::MaybeSent) => {
                    return Err(e.context(
                        "the request may have reached the server, so it was not sent again",
                    ))
                }
                Err(NoAnswer::NotSent(e) | NoAnswer::MaybeSent(e)) if last => return Err(e),
                Err(NoAnswer::NotSent(e)) if !repeat(Repeat::NotSent) => return Err(e),
                Err(NoAnswer::NotSent(e) | NoAnswer::MaybeSent(e)) => (format!("{e:#}"), None),
            };
            let wait = asked.unwrap_or(backoff).min(self.retry.max_backoff);
            warn!(url = %call.url, attempt, problem = %problem, wait_ms = wait.as_millis() as u64, "run-log API request failed; retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
        }
    }

    async fn send_once(
        &self,
        call: &Call<'_>,
    ) -> std::result::Result<(Answer, Option<Duration>), NoAnswer> {
        let mut builder = Request::builder()
            .method(call.method.clone())
            .uri(call.url)
            .header("user-agent", "selfheal")
            .header("accept", "application/json");
        for (name, value, sensitive) in &call.headers {
            // The value is never echoed: it may be a secret.
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                NoAnswer::NotSent(anyhow::anyhow!(
                    "the {name} header value is not valid in HTTP"
                ))
            })?;
            value.set_sensitive(*sensitive);
            builder = builder.header(*name, value);
        }
        if call.body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(
                call.body.clone().unwrap_or_default(),
            )))
            .context("building the request")
            .map_err(NoAnswer::NotSent)?;
        let exchange = async {
            // The reason names the host, never headers, so it carries no secret.
            let response = self.transport.request(request).await.map_err(|e| {
                let why = anyhow::anyhow!(
                    "cannot reach {}: {}",
                    crate::http::host_of(call.url),
                    unreachable_reason(&e)
                );
                if e.is_connect() {
                    NoAnswer::NotSent(why)
                } else {
                    NoAnswer::MaybeSent(why)
                }
            })?;
            let (parts, body) = response.into_parts();
            let retry_after = parts
                .headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = Limited::new(body, MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| NoAnswer::MaybeSent(anyhow::anyhow!("reading the response: {e}")))?
                .to_bytes();
            Ok((
                Answer {
                    status: parts.status,
                    body: body.to_vec(),
                },
                retry_after,
            ))
        };
        match tokio::time::timeout(self.retry.request_timeout, exchange).await {
            Ok(result) => result,
            // The request may have been sent before the time ran out.
            Err(_) => Err(NoAnswer::MaybeSent(anyhow::anyhow!(
                "no answer within {}s",
                self.retry.request_timeout.as_secs_f32()
            ))),
        }
    }
}

/// Why an attempt is a candidate for repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// HTTP 429: the server refused before acting.
    TooManyRequests,
    /// HTTP 5xx: the server may have acted before failing.
    ServerError,
    /// No connection was made: nothing was sent.
    NotSent,
    /// A timeout or a connection lost mid-request: it may have been received.
    MaybeSent,
}

/// An attempt that got no HTTP answer, by whether the request left.
enum NoAnswer {
    NotSent(anyhow::Error),
    MaybeSent(anyhow::Error),
}

/// `text` with every non-empty secret replaced by `***`.
pub(super) fn scrub(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text.to_string(), |t, s| t.replace(s, "***"))
}

/// The host (and port, when not the default) of `url`, for `origin` strings.
pub(super) fn host_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => url.to_string(),
        },
        Err(_) => url.to_string(),
    }
}

/// A run id the hosted APIs accept: a positive whole number.
pub(super) fn numeric_run_id(run_id: &str, api: &str) -> Result<u64> {
    run_id
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("{api} run ids are numbers; {run_id:?} is not one"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_refused_except_on_loopback() {
        assert!(HttpClient::new("http://127.0.0.1:9/graphql", "x").is_ok());
        assert!(HttpClient::new("http://localhost:9", "x").is_ok());
        let err = HttpClient::new("http://api.paradime.io/graphql", "PARADIME_API_ENDPOINT")
            .expect_err("refused");
        assert!(
            format!("{err:#}").contains("refusing plain http"),
            "{err:#}"
        );
        assert!(HttpClient::new("ftp://x", "x").is_err());
    }

    #[test]
    fn run_ids_must_be_numbers() {
        assert_eq!(numeric_run_id("48213", "Paradime").expect("ok"), 48213);
        for bad in ["", "0", "-1", "abc", "12a", "manual__2024"] {
            let err = numeric_run_id(bad, "Paradime").expect_err(bad).to_string();
            assert!(err.starts_with("Paradime run ids are numbers"), "{err}");
        }
    }

    #[test]
    fn secrets_are_scrubbed_and_hosts_named() {
        assert_eq!(
            scrub("key sk_live_1 here", &["sk_live_1", ""]),
            "key *** here"
        );
        assert_eq!(
            host_of("https://api.paradime.io/api/v1/x/graphql"),
            "api.paradime.io"
        );
        assert_eq!(host_of("http://127.0.0.1:8080/g"), "127.0.0.1:8080");
    }
}
