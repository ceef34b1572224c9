//! Single Web API calls for `selfheal check`: no pacing and no retries (a
//! check reports what it meets), and the scopes Slack says the token has
//! (the `x-oauth-scopes` header of every Web API answer), which
//! slack-morphism does not expose.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Request};
use serde_json::Value;

use super::web::SlackError;
use crate::http::{is_loopback, unreachable_reason, Transport};

/// Answers larger than this are not read: no method `check` calls returns more.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// An `ok: true` answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub body: Value,
    /// The token's scopes, when Slack said (`x-oauth-scopes`).
    pub scopes: Option<String>,
}

/// Calls `method` with `token` and form `params`; `ok: false` is
/// [`SlackError::Api`] with Slack's code, a failed exchange [`SlackError::Http`]
/// with its reason in a few words.
pub async fn call(
    api_url: &str,
    token: &str,
    method: &str,
    params: &[(&str, &str)],
    timeout: Duration,
) -> Result<Answer, SlackError> {
    let url = format!("{}/{method}", api_url.trim_end_matches('/'));
    let parsed =
        url::Url::parse(&url).map_err(|e| SlackError::Http(format!("bad URL {url}: {e}")))?;
    if parsed.scheme() == "http" && !is_loopback(&parsed) {
        // The token would travel in clear.
        return Err(SlackError::Http(format!("refusing plain http for {url}")));
    }
    let transport = Transport::for_url(&parsed).map_err(|e| SlackError::Http(format!("{e:#}")))?;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| SlackError::Api("invalid_auth".into()))?;
    auth.set_sensitive(true);
    let request = Request::builder()
        .method(Method::POST)
        .uri(url.as_str())
        .header("authorization", auth)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("user-agent", "selfheal-check")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| SlackError::Http(format!("building the request: {e}")))?;
    let exchange = async {
        let response = transport
            .request(request)
            .await
            .map_err(|e| SlackError::Http(unreachable_reason(&e)))?;
        let (parts, body) = response.into_parts();
        let bytes = Limited::new(body, MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|_| SlackError::Http("the answer was cut short".into()))?
            .to_bytes();
        Ok::<_, SlackError>((parts, bytes))
    };
    let (parts, bytes) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| SlackError::Timeout)??;
    if parts.status.as_u16() == 429 {
        let retry_after = parts
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        return Err(SlackError::RateLimited {
            retry_after: Duration::from_secs(retry_after),
        });
    }
    if !parts.status.is_success() {
        return Err(SlackError::Http(format!("HTTP {}", parts.status.as_u16())));
    }
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|_| SlackError::Http("the answer is not Slack's JSON".into()))?;
    if body["ok"].as_bool() != Some(true) {
        let code = body["error"]
            .as_str()
            .unwrap_or("unknown_error")
            .to_string();
        return Err(SlackError::Api(code));
    }
    let scopes = parts
        .headers
        .get("x-oauth-scopes")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(Answer { body, scopes })
}
