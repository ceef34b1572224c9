//! What every forge client shares about talking HTTP: one exchange (send,
//! read a bounded body, within a timeout) and the retry loop around it. Each
//! client says what an answer means ([`Verdict`]); this module only waits,
//! retries and gives up as the [`RetryPolicy`] says. It never sees a token
//! except inside a request the client built.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use tracing::warn;

use super::{ForgeError, RetryPolicy};
use crate::http::Transport;

/// Bodies larger than this are not read: no legitimate answer is this big.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// One answer, read in full.
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

/// What a client makes of an answer that is not a success.
pub(super) enum Verdict {
    /// Final: return this error.
    Fail(ForgeError),
    /// The forge asked us to wait this long (a rate limit), then try again.
    Wait(Duration),
    /// Worth another try after a backoff (a 5xx): the request may have been
    /// carried out without us seeing the answer.
    Retry(ForgeError),
}

/// Sends one request built by `build` (called again for each attempt), with
/// retries: successes and 304s are answers; anything else goes through
/// `judge`. `ambiguous` is set when an attempt may have reached the forge
/// without us seeing the answer (a 5xx, a timeout, a lost connection).
/// `forge` names the forge in logs.
pub(super) async fn send_with_retries<B, J>(
    forge: &str,
    client: &Transport,
    retry: &RetryPolicy,
    url: &str,
    build: B,
    judge: J,
    ambiguous: &mut bool,
) -> Result<Answer, ForgeError>
where
    B: Fn() -> Result<Request<Full<Bytes>>, ForgeError>,
    J: Fn(&Answer) -> Verdict,
{
    let mut backoff = retry.initial_backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = attempt >= retry.max_attempts.max(1);
        let error = match exchange(client, build()?, retry.request_timeout).await {
            Ok(answer)
                if answer.status.is_success() || answer.status == StatusCode::NOT_MODIFIED =>
            {
                return Ok(answer)
            }
            Ok(answer) => match judge(&answer) {
                Verdict::Fail(error) => return Err(error),
                Verdict::Wait(wait) => {
                    if last || wait > retry.max_wait {
                        return Err(ForgeError::RateLimited { retry_after: wait });
                    }
                    warn!(%url, status = answer.status.as_u16(), wait_ms = wait.as_millis() as u64, "rate limited by {forge}; waiting");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Verdict::Retry(error) => error,
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
        backoff = (backoff * 2).min(retry.max_wait);
    }
}

/// One exchange: send, read the body (at most [`MAX_BODY_BYTES`]), all
/// within `timeout`.
async fn exchange(
    client: &Transport,
    request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<Answer, ForgeError> {
    let exchange = async {
        // hyper-util's errors name the host, never headers, so they carry no token.
        let response = client.request(request).await.map_err(|e| {
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
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(ForgeError::Timeout),
    }
}

/// `scheme://host[:port]` of `url`, the port only when it is not the scheme's default.
pub(super) fn origin(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// An HTTP client for a forge API at `api`: TLS, or plain http on loopback
/// only (tests, local fakes), since elsewhere the token would travel in clear.
pub(super) fn transport_for(api: &url::Url) -> anyhow::Result<Transport> {
    match api.scheme() {
        "https" => Transport::for_url(api),
        "http" if crate::http::is_loopback(api) => Transport::for_url(api),
        "http" => anyhow::bail!(
            "refusing plain http for forge API {api}: the token would travel unencrypted"
        ),
        other => anyhow::bail!("unsupported scheme `{other}` in forge API URL {api}"),
    }
}

/// A request with the headers every forge call carries: `user-agent`, the
/// `authorization` value (marked sensitive, so it is never logged),
/// `content-type` when there is a body, and `headers`.
pub(super) fn build_request(
    method: Method,
    url: &str,
    authorization: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Request<Full<Bytes>>, ForgeError> {
    let mut auth = HeaderValue::from_str(authorization)
        .map_err(|_| ForgeError::Http("the forge token is not a valid header value".into()))?;
    auth.set_sensitive(true);
    let mut builder = Request::builder()
        .method(method)
        .uri(url)
        .header("user-agent", "selfheal")
        .header("authorization", auth);
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

/// What a create achieved: its own answer, or, when an earlier attempt may
/// have created the thing before its answer was lost (`ambiguous`) and the
/// retry met the forge's "already exists" (a [`ForgeError::Validation`]
/// whose message contains `exists`), the existing one `find` returns.
pub(super) async fn created_or_existing<T, F, Fut>(
    result: Result<T, ForgeError>,
    ambiguous: bool,
    exists: &str,
    find: F,
) -> Result<T, ForgeError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, ForgeError>>,
{
    match result {
        Err(ForgeError::Validation(msg)) if ambiguous && msg.contains(exists) => {
            match find().await? {
                Some(found) => Ok(found),
                None => Err(ForgeError::Validation(msg)),
            }
        }
        other => other,
    }
}

/// The `message` of a forge's JSON error body (GitHub's and Azure DevOps'
/// both have one), else the start of the body as text.
pub(super) fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize, Default)]
    struct WithMessage {
        #[serde(default)]
        message: String,
    }
    let err: WithMessage = serde_json::from_slice(body).unwrap_or_default();
    if err.message.is_empty() {
        String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
    } else {
        err.message
    }
}
