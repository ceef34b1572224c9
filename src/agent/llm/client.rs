//! The OpenAI-compatible chat-completions client: one model turn, with retries.
//!
//! `POST {base_url}/chat/completions`. Rate limits (429, honouring
//! `Retry-After`), 5xx answers, transport errors, timeouts and malformed
//! answers (not JSON, no `choices`) are retried with doubling backoff, within
//! the session's deadline. Other 4xx answers are final: a wrong key or model
//! does not get better by asking again. The API key is only ever put in the
//! `Authorization` header, marked sensitive, and never sent over plain http
//! to a host other than this machine.

use crate::http::{is_loopback, Transport};
use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Request};
use serde_json::Value;
use tokio::time::Instant;
use tracing::warn;

/// Answers larger than this are not read.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How hard to try one turn.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Attempts per turn, the first included.
    pub max_attempts: u32,
    /// The first backoff; it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How long one request may take (models can think for minutes).
    pub request_timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 6,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
        }
    }
}

/// Why a turn failed for good.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A final 4xx: bad key, unknown model, a request the server will not take.
    #[error("the model endpoint refused the request ({status}): {message}")]
    Rejected {
        status: u16,
        message: String,
        /// OpenAI's `error.param`: the request field at fault.
        param: Option<String>,
        /// `error.code`, else `error.type` (`context_length_exceeded`,
        /// llama.cpp's `exceed_context_size_error`).
        code: Option<String>,
    },
    /// Every attempt failed with something worth retrying.
    #[error("the model endpoint failed {attempts} times; last: {last}")]
    Unavailable { attempts: u32, last: String },
    /// The session's wall clock ran out while waiting.
    #[error("the wall-clock limit ran out while waiting for the model")]
    Deadline,
}

use super::wire::parse_reply;
pub use super::wire::{Call, Reply};

/// A chat-completions answer: the reply and the body as received (for the
/// transcript).
#[derive(Debug, Clone)]
pub struct Answer {
    pub reply: Reply,
    pub raw: String,
}

/// A chat-completions endpoint.
pub struct Client {
    url: String,
    api_key: Option<String>,
    transport: Transport,
    retry: Retry,
}

impl Client {
    pub fn new(base_url: &str, api_key: Option<String>, retry: Retry) -> anyhow::Result<Client> {
        let base = base_url.trim_end_matches('/');
        let parsed =
            url::Url::parse(base).with_context(|| format!("parsing the model base_url {base}"))?;
        let api_key = api_key.filter(|k| !k.trim().is_empty());
        match parsed.scheme() {
            "https" => {}
            "http" if api_key.is_some() && !is_loopback(&parsed) => {
                bail!("refusing to send the API key over plain http to {base}: use https")
            }
            "http" => {}
            other => bail!("unsupported scheme `{other}` in the model base_url"),
        }
        let transport = Transport::for_url(&parsed)?;
        Ok(Client {
            url: format!("{base}/chat/completions"),
            api_key,
            transport,
            retry,
        })
    }

    /// Sends one chat-completions request, retrying what is worth retrying
    /// until `deadline`. `notes` gets one line per retry, for the thread.
    pub async fn chat(
        &self,
        body: &Value,
        deadline: Instant,
        notes: &mut Vec<String>,
    ) -> Result<Answer, ChatError> {
        let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let mut backoff = self.retry.initial_backoff;
        let max = self.retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ChatError::Deadline);
            }
            let limit = self.retry.request_timeout.min(left);
            let outcome = tokio::time::timeout(limit, self.send_once(bytes.clone())).await;
            let (why, wait) = match outcome {
                Err(_) if Instant::now() >= deadline => return Err(ChatError::Deadline),
                Err(_) => (format!("no answer within {}s", limit.as_secs()), backoff),
                Ok(Err(e)) => (format!("{e:#}"), backoff),
                Ok(Ok((status, retry_after, body))) => match status {
                    200..=299 => match parse_reply(&body) {
                        Ok(reply) => {
                            return Ok(Answer {
                                reply,
                                raw: String::from_utf8_lossy(&body).into_owned(),
                            })
                        }
                        Err(e) => (format!("malformed answer: {e}"), backoff),
                    },
                    429 => (
                        format!("rate limited (429): {}", error_message(&body)),
                        retry_after.unwrap_or(backoff),
                    ),
                    408 | 409 | 500..=599 => {
                        (format!("{status}: {}", error_message(&body)), backoff)
                    }
                    _ => {
                        let (param, code) = error_fields(&body);
                        return Err(ChatError::Rejected {
                            status,
                            message: error_message(&body),
                            param,
                            code,
                        });
                    }
                },
            };
            if attempt >= max {
                return Err(ChatError::Unavailable {
                    attempts: attempt,
                    last: why,
                });
            }
            if Instant::now() + wait >= deadline {
                return Err(ChatError::Deadline);
            }
            warn!(attempt, error = %why, wait_ms = wait.as_millis() as u64, "model request failed; retrying");
            notes.push(format!(
                "⏳ model endpoint: {why}; retrying in {}",
                human_wait(wait)
            ));
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
        }
    }

    async fn send_once(&self, body: Bytes) -> anyhow::Result<(u16, Option<Duration>, Bytes)> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .header("user-agent", "selfheal");
        if let Some(key) = &self.api_key {
            let mut auth = HeaderValue::from_str(&format!("Bearer {key}"))
                .context("the API key is not a valid header value")?;
            auth.set_sensitive(true);
            builder = builder.header("authorization", auth);
        }
        let request = builder
            .body(Full::new(body))
            .context("building the request")?;
        let response = self
            .transport
            .request(request)
            .await
            .context("sending the request")?;
        let (parts, body) = response.into_parts();
        let retry_after = parts
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = Limited::new(body, MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
            .to_bytes();
        Ok((parts.status.as_u16(), retry_after, body))
    }
}

/// `Retry-After` in seconds (integer or decimal). HTTP dates are rare from
/// model servers; they fall back to the backoff.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

fn human_wait(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// The error message of an OpenAI-style error body, or the start of the body.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let msg = parsed
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("error"))
                .or_else(|| v.get("message"))
        })
        .and_then(|m| m.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::agent::protocol::truncate(&msg, 300).to_string()
}

/// `error.param` and `error.code` (or `error.type`) of an error body.
fn error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.pointer(&format!("/error/{k}")))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    (field("param"), field("code").or_else(|| field("type")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_travel_in_clear_to_other_hosts() {
        let key = || Some("sk-test".to_string());
        assert!(Client::new("http://127.0.0.1:9/v1", key(), Retry::default()).is_ok());
        assert!(Client::new("http://localhost:11434/v1", key(), Retry::default()).is_ok());
        assert!(Client::new("http://gpu-box:8000/v1", None, Retry::default()).is_ok());
        let err = Client::new("http://gpu-box:8000/v1", key(), Retry::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("plain http"), "{err}");
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
