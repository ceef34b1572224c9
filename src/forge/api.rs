//! What the forge API clients share: the token, how hard to retry, the
//! retrying request loop with its timeout and body cap, paging links, origins,
//! and fitting a body under a forge's length limit without losing the
//! signature marker.
//!
//! What it must not do: know a forge's protocol. Each client builds its own
//! requests (paths, auth header) and says what an answer that is not a
//! success means ([`Refusal`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use tracing::warn;

use super::{ForgeError, PullRequest};
use crate::http::{is_loopback, Transport};

/// Bodies larger than this are not read: no legitimate answer is this big.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The start of the marker that ends every pull request body selfheal writes
/// (`<!-- selfheal-signature: … -->`): the open-PR check reads it back, so
/// cutting a body must never cut it.
const SIGNATURE_MARKER: &str = "<!-- selfheal-signature:";

pub(super) use super::rest::{ForgeToken, RetryPolicy};

/// One answer, read whole.
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

/// What a forge makes of an answer that is neither a success nor a 304.
pub(super) enum Refusal {
    /// The forge asked us to wait this long before asking again.
    RateLimited(Duration),
    /// Worth another try (a 5xx): the request may or may not have been carried out.
    Transient(ForgeError),
    /// Final: retrying would get the same answer.
    Final(ForgeError),
}

/// What makes one forge's API different for [`Api`]: its name, the headers
/// it wants on every request, and what its refusals mean.
pub(super) struct Dialect {
    /// The forge's name for logs and messages (`GitHub`, `GitLab`).
    pub forge: &'static str,
    /// Sent with every request besides the credential (`accept`, an API version).
    pub headers: &'static [(&'static str, &'static str)],
    /// What an answer that is neither a success nor a 304 means, given the
    /// time now in epoch seconds.
    pub refusal: fn(&Answer, u64) -> Refusal,
}

/// The HTTP side of one forge client: where it connects, with what
/// credential, and how hard it retries.
pub(super) struct Api {
    dialect: Dialect,
    pub retry: RetryPolicy,
    transport: Transport,
    /// The credential header, its value marked sensitive so it never shows
    /// in `Debug` output.
    credential: (&'static str, HeaderValue),
}

impl Api {
    /// A client for the API at `api_base` (no trailing slash) that sends
    /// `credential` (a header name and value) with every request, and the
    /// parsed URL. Plain `http://` is accepted only for loopback hosts
    /// (tests, local fakes): elsewhere the token would travel in clear.
    pub fn new(
        dialect: Dialect,
        api_base: &str,
        credential: (&'static str, String),
    ) -> anyhow::Result<(Api, url::Url)> {
        let parsed = url::Url::parse(api_base)
            .with_context(|| format!("parsing forge API URL {api_base}"))?;
        let transport = match parsed.scheme() {
            "https" => Transport::for_url(&parsed)?,
            "http" if is_loopback(&parsed) => Transport::for_url(&parsed)?,
            "http" => bail!(
                "refusing plain http for forge API {api_base}: the token would travel unencrypted"
            ),
            other => bail!("unsupported scheme `{other}` in forge API URL {api_base}"),
        };
        let (name, value) = credential;
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            anyhow::anyhow!("the {} token is not a valid header value", dialect.forge)
        })?;
        value.set_sensitive(true);
        let api = Api {
            dialect,
            retry: RetryPolicy::default(),
            transport,
            credential: (name, value),
        };
        Ok((api, parsed))
    }

    /// Sends one request, with `headers` besides the usual ones, with
    /// retries. A 304 is an answer (to a conditional request), not an error;
    /// the dialect's `refusal` says what any other answer that is not a
    /// success means. `ambiguous` is set when an attempt may have reached the
    /// forge without us seeing the answer (a 5xx, a timeout, a lost connection).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        headers: &[(&'static str, &str)],
        ambiguous: &mut bool,
    ) -> Result<Answer, ForgeError> {
        let forge = self.dialect.forge;
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
                Ok(answer) => match (self.dialect.refusal)(&answer, now_epoch()) {
                    Refusal::RateLimited(wait) => {
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
        let thing = self.parse_json(&resp.body)?;
        Ok(Some((thing, resp.header("etag").map(str::to_string))))
    }

    /// `POST url` with `value` as JSON, retried like every call (so what was
    /// posted may be posted twice when an answer is lost; never lost silently).
    pub async fn post(&self, url: &str, value: &serde_json::Value) -> Result<Answer, ForgeError> {
        self.send(Method::POST, url, Some(to_json(value)?), &[], &mut false)
            .await
    }

    /// POSTs `value` as JSON to `url` to open a pull request and reads the answer as
    /// a `T`. An earlier attempt may have opened it before its answer was
    /// lost (a timeout or a 5xx); then the retry meets the forge's "already
    /// exists", and the pull request we wanted is the one that exists:
    /// `existing` finds it (a future, so it runs only then).
    pub async fn create<T>(
        &self,
        url: &str,
        value: &serde_json::Value,
        existing: impl std::future::Future<Output = Result<Option<PullRequest>, ForgeError>>,
    ) -> Result<PullRequest, ForgeError>
    where
        T: serde::de::DeserializeOwned + Into<PullRequest>,
    {
        let mut ambiguous = false;
        match self
            .send(
                Method::POST,
                url,
                Some(to_json(value)?),
                &[],
                &mut ambiguous,
            )
            .await
        {
            Ok(resp) => Ok(self.parse_json::<T>(&resp.body)?.into()),
            Err(ForgeError::Validation(msg)) if ambiguous && msg.contains("already exists") => {
                existing.await?.ok_or(ForgeError::Validation(msg))
            }
            Err(e) => Err(e),
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

    /// `body` as JSON of type `T`, or an error naming the forge.
    pub fn parse_json<T: serde::de::DeserializeOwned>(&self, body: &[u8]) -> Result<T, ForgeError> {
        serde_json::from_slice(body).map_err(|e| {
            ForgeError::Http(format!(
                "unexpected response from {}: {e}",
                self.dialect.forge
            ))
        })
    }
}

/// JSON for a request body.
fn to_json(value: &serde_json::Value) -> Result<Vec<u8>, ForgeError> {
    serde_json::to_vec(value).map_err(|e| ForgeError::Http(format!("encoding request: {e}")))
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

/// `scheme://host[:port]` of `url`, the port only when it is not the scheme's default.
pub(super) fn origin(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

pub(super) fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// A path segment of a repository name: letters, digits, `-`, `_`, `.`.
pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `body` cut to at most `max` characters, `note` saying so where the cut
/// is. When the body ends with the signature marker, the cut is made before
/// it and the marker (and all after it) is kept whole.
pub(super) fn fit(body: &str, max: usize, note: &str) -> String {
    if body.chars().count() <= max {
        return body.to_string();
    }
    let tail = body.rfind(SIGNATURE_MARKER).map_or("", |at| &body[at..]);
    let keep = max.saturating_sub(note.chars().count() + tail.chars().count());
    let mut out: String = body.chars().take(keep).collect();
    out.push_str(note);
    out.push_str(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_body_keeps_its_signature_marker_whole() {
        let signed = |len: usize| {
            format!(
                "{}\n\n<!-- selfheal-signature: d1296dccbe5463ad -->\n",
                "x".repeat(len)
            )
        };
        let note = "\n… (cut)\n";
        // (body, limit)
        let cases = [
            (signed(10), 1_000),
            (signed(5_000), 1_000),
            (signed(999), 1_000),
        ];
        for (body, max) in cases {
            let out = fit(&body, max, note);
            assert!(out.chars().count() <= max, "{} > {max}", out.len());
            assert!(
                out.ends_with("<!-- selfheal-signature: d1296dccbe5463ad -->\n"),
                "{out}"
            );
            assert_eq!(out == body, body.chars().count() <= max);
            if out != body {
                assert!(out.contains(note));
            }
        }
        // Unsigned bodies are cut at the end; multi-byte characters count once.
        assert_eq!(
            fit(&"é".repeat(20), 12, "…"),
            format!("{}…", "é".repeat(11))
        );
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
    fn the_token_never_shows_in_debug_output() {
        let shown = format!("{:?}", ForgeToken::new("glpat-supersecret"));
        assert_eq!(shown, "ForgeToken(***)");
    }
}
