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
    Rejected { status: u16, message: String },
    /// Every attempt failed with something worth retrying.
    #[error("the model endpoint failed {attempts} times; last: {last}")]
    Unavailable { attempts: u32, last: String },
    /// The session's wall clock ran out while waiting.
    #[error("the wall-clock limit ran out while waiting for the model")]
    Deadline,
}

/// One tool call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them: a JSON object, as a string.
    pub arguments: String,
}

/// The model's answer for one turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub content: Option<String>,
    pub calls: Vec<Call>,
    pub finish_reason: Option<String>,
    /// `usage.total_tokens`, when the server reported it.
    pub total_tokens: Option<u64>,
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
    ) -> Result<Reply, ChatError> {
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
                        Ok(reply) => return Ok(reply),
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
                        return Err(ChatError::Rejected {
                            status,
                            message: error_message(&body),
                        })
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

/// Reads `choices[0].message` of a chat completion. Lenient where servers
/// differ (content as a list of parts, arguments as an object, missing ids).
pub(crate) fn parse_reply(body: &[u8]) -> Result<Reply, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or("no choices")?;
    let message = choice.get("message").ok_or("no message in choices[0]")?;
    let content = match message.get("content") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(parts)) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => None,
    }
    .filter(|s| !s.trim().is_empty());
    let mut calls = Vec::new();
    if let Some(list) = message.get("tool_calls").and_then(Value::as_array) {
        for (i, call) in list.iter().enumerate() {
            let function = call.get("function");
            let name = function
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let arguments = match function.and_then(|f| f.get("arguments")) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            // Tool results are matched to calls by id: make them present and unique.
            let mut id = call
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("call_auto_{i}"));
            if calls.iter().any(|c: &Call| c.id == id) {
                id = format!("{id}_{i}");
            }
            calls.push(Call {
                id,
                name,
                arguments,
            });
        }
    }
    let usage = v.get("usage");
    let total_tokens = usage
        .and_then(|u| u.get("total_tokens"))
        .and_then(Value::as_u64)
        .or_else(|| {
            let p = usage?.get("prompt_tokens")?.as_u64()?;
            let c = usage?.get("completion_tokens")?.as_u64()?;
            Some(p + c)
        });
    Ok(Reply {
        content,
        calls,
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        total_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_leniently() {
        let body = br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"call_1","type":"function","function":{"name":"read_file","arguments":"{\"path\":\"a.sql\"}"}},
                          {"type":"function","function":{"name":"ripgrep_search","arguments":{"pattern":"x"}}}]},
            "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":10,"completion_tokens":5}}"#;
        let r = parse_reply(body).unwrap();
        assert_eq!(r.content, None);
        assert_eq!(r.total_tokens, Some(15));
        assert_eq!(r.calls[0].arguments, r#"{"path":"a.sql"}"#);
        assert_eq!(r.calls[0].id, "call_1");
        assert_eq!(r.calls[1].id, "call_auto_1");
        assert_eq!(r.calls[1].arguments, r#"{"pattern":"x"}"#);
        let parts = br#"{"choices":[{"message":{"content":[{"type":"text","text":"FIXED: "},{"type":"text","text":"ok"}]}}]}"#;
        assert_eq!(
            parse_reply(parts).unwrap().content.as_deref(),
            Some("FIXED: ok")
        );
        assert!(parse_reply(b"{\"choices\":[]}")
            .unwrap_err()
            .contains("no choices"));
        assert!(parse_reply(b"<html>").unwrap_err().contains("not JSON"));
    }

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
