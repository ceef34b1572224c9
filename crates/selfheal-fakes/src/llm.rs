//! A local OpenAI-compatible chat-completions server that replays scripted
//! conversations, for tests of the `llm` runner.
//!
//! Start one with [`FakeLlm::start`] (or [`FakeLlm::start_with_key`] to
//! require `Authorization: Bearer <key>`), give it the model's side of the
//! conversation with [`FakeLlm::script`], point the runner at
//! [`FakeLlm::base_url`], then assert on [`FakeLlm::requests`]: every request
//! body, in order — the system prompt, the tools offered, the tool results.
//!
//! What it implements, with OpenAI's shapes: `GET /v1/models` (one model),
//! `POST /v1/chat/completions` (and `/chat/completions`) answering `object: "chat.completion"` with `id`,
//! `created`, `model`, `choices[{index, message{role, content, tool_calls},
//! finish_reason}]` and `usage`. Like OpenAI it answers 400 to a request
//! whose tool results do not match the assistant's tool calls, 401 to a
//! wrong key, and 429/5xx with an `error` object when scripted to. When the
//! script runs out it answers 400, which ends a runner's session at once.
//! [`Scripted::Raw`] replays any body with any status as is: the documented
//! shapes of other servers (Ollama, vLLM, llama.cpp, LM Studio, OpenRouter,
//! Azure), their refusals of a parameter and their context-overflow errors.
//! It does no TLS, streaming or real sampling.

use std::collections::VecDeque;
use std::sync::MutexGuard;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::server::{self, AuthSeen, Credentials, HttpFake, Request, Shared};

/// What the fake answers to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Scripted {
    /// A chat completion: text and/or tool calls `(name, arguments as a JSON
    /// string)`, with `usage` (None: the answer has no `usage`, as some
    /// servers do).
    Reply {
        content: Option<String>,
        tool_calls: Vec<(String, String)>,
        usage: Option<Usage>,
    },
    /// An error status with OpenAI's error body, and `Retry-After` when given.
    Status(u16, Option<Duration>),
    /// A 200 whose body is this text as is (not a chat completion).
    Malformed(String),
    /// This status and JSON body, as is: another server's own shape.
    Raw(u16, Value),
}

/// Token counts reported in `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Scripted {
    /// A final answer (no tool calls), with a small usage.
    pub fn answer(text: &str) -> Scripted {
        Scripted::Reply {
            content: Some(text.to_string()),
            tool_calls: vec![],
            usage: Some(Usage {
                prompt_tokens: 1000,
                completion_tokens: 50,
            }),
        }
    }

    /// One tool call with `args` as its JSON arguments, with a small usage.
    pub fn tool(name: &str, args: Value) -> Scripted {
        Scripted::Reply {
            content: None,
            tool_calls: vec![(name.to_string(), args.to_string())],
            usage: Some(Usage {
                prompt_tokens: 1000,
                completion_tokens: 30,
            }),
        }
    }

    /// Text followed by tool calls whose arguments are raw strings (which
    /// may be invalid JSON, as models sometimes write).
    pub fn with_calls(
        content: Option<&str>,
        calls: &[(&str, &str)],
        usage: Option<Usage>,
    ) -> Scripted {
        Scripted::Reply {
            content: content.map(str::to_string),
            tool_calls: calls
                .iter()
                .map(|(n, a)| (n.to_string(), a.to_string()))
                .collect(),
            usage,
        }
    }
}

/// A running fake. Dropping it stops the server.
pub struct FakeLlm {
    fake: HttpFake<Inner>,
}

struct Inner {
    /// `Authorization: Bearer <key>`, when the fake needs a key.
    key: Option<Credentials>,
    script: VecDeque<Scripted>,
    requests: Vec<Value>,
    served: u64,
}

impl FakeLlm {
    /// Starts a fake that needs no API key.
    pub async fn start() -> anyhow::Result<FakeLlm> {
        Self::start_inner(None).await
    }

    /// Starts a fake that answers 401 unless `Authorization: Bearer <key>`.
    pub async fn start_with_key(key: &str) -> anyhow::Result<FakeLlm> {
        Self::start_inner(Some(Credentials::bearer(key))).await
    }

    async fn start_inner(key: Option<Credentials>) -> anyhow::Result<FakeLlm> {
        let inner = Inner {
            key,
            script: VecDeque::new(),
            requests: Vec::new(),
            served: 0,
        };
        let fake = HttpFake::start("fake LLM", inner, handle).await?;
        Ok(FakeLlm { fake })
    }

    /// `http://127.0.0.1:PORT/v1`, like `https://api.openai.com/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.fake.base_url())
    }

    /// Appends answers to the script; each request takes the next one.
    pub fn script(&self, answers: Vec<Scripted>) {
        self.lock().script.extend(answers);
    }

    /// Every well-formed request body received (accepted or not), in order.
    pub fn requests(&self) -> Vec<Value> {
        self.lock().requests.clone()
    }

    /// Scripted answers not yet served.
    pub fn remaining(&self) -> usize {
        self.lock().script.len()
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        self.fake.shutdown().await;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.fake.lock()
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    server::json(status, body)
}

async fn handle(State(shared): State<Shared<Inner>>, req: Request) -> Response {
    let (method, path) = (&req.method, req.uri.path());
    let models = method == Method::GET && (path == "/v1/models" || path == "/models");
    if !models
        && (method != Method::POST
            || !(path == "/v1/chat/completions" || path == "/chat/completions"))
    {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            &format!("Unknown request URL: {method} {path}."),
        );
    }
    let refused = shared
        .lock()
        .key
        .as_ref()
        .is_some_and(|key| key.check(&req.headers) != AuthSeen::Valid);
    if refused {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Incorrect API key provided.",
        );
    }
    if models {
        // What `selfheal check` asks: the endpoint answers and takes the key.
        return server::json(
            StatusCode::OK,
            json!({
                "object": "list",
                "data": [{"id": "fake-model", "object": "model", "created": 1_700_000_000u64, "owned_by": "fake"}]
            }),
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(&req.body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "We could not parse the JSON body of your request.",
        );
    };
    let next = {
        let mut inner = shared.lock();
        inner.requests.push(request.clone());
        if let Err(why) = validate(&request) {
            return error(StatusCode::BAD_REQUEST, "invalid_request_error", &why);
        }
        inner.served += 1;
        inner.script.pop_front().map(|s| (s, inner.served))
    };
    let Some((answer, n)) = next else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "fake LLM: no scripted answer left for this request",
        );
    };
    let model = request["model"].as_str().unwrap_or("fake").to_string();
    match answer {
        Scripted::Reply {
            content,
            tool_calls,
            usage,
        } => {
            let calls: Vec<Value> = tool_calls
                .iter()
                .enumerate()
                .map(|(i, (name, args))| {
                    json!({"id": format!("call_{n}_{i}"), "type": "function",
                           "function": {"name": name, "arguments": args}})
                })
                .collect();
            let mut message = json!({"role": "assistant", "content": content});
            if !calls.is_empty() {
                message["tool_calls"] = Value::Array(calls);
            }
            let finish = if tool_calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            };
            let created = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mut body = json!({
                "id": format!("chatcmpl-fake{n}"),
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            });
            if let Some(u) = usage {
                body["usage"] = json!({
                    "prompt_tokens": u.prompt_tokens,
                    "completion_tokens": u.completion_tokens,
                    "total_tokens": u.prompt_tokens + u.completion_tokens,
                });
            }
            server::json(StatusCode::OK, body)
        }
        Scripted::Status(status, retry_after) => {
            let code = server::status(status);
            let (kind, msg) = match status {
                429 => (
                    "rate_limit_exceeded",
                    "Rate limit reached. Please try again later.",
                ),
                s if s >= 500 => (
                    "server_error",
                    "The server had an error while processing your request.",
                ),
                _ => ("invalid_request_error", "Scripted error."),
            };
            let mut response = error(code, kind, msg);
            if let Some(wait) = retry_after {
                let secs = wait.as_secs_f64();
                let value = if secs.fract() == 0.0 {
                    format!("{}", secs as u64)
                } else {
                    format!("{secs}")
                };
                if let Ok(v) = value.parse() {
                    response.headers_mut().insert("retry-after", v);
                }
            }
            response
        }
        Scripted::Malformed(raw) => server::json_text(StatusCode::OK, raw),
        Scripted::Raw(status, body) => server::json(server::status(status), body),
    }
}

/// The checks OpenAI makes that catch runner bugs: a model, messages with
/// known roles, function tools with names, and every assistant tool call
/// answered by exactly one tool message (and no tool message without one).
fn validate(req: &Value) -> Result<(), String> {
    if !req["model"].is_string() {
        return Err("you must provide a model parameter".into());
    }
    let messages = req["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or("'messages' must be a non-empty array")?;
    if let Some(tools) = req.get("tools") {
        let tools = tools.as_array().ok_or("'tools' must be an array")?;
        for (i, t) in tools.iter().enumerate() {
            if t["type"] != "function" || !t["function"]["name"].is_string() {
                return Err(format!("tools[{i}] must be a function with a name"));
            }
        }
    }
    let mut pending: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        match role {
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap_or("");
                let Some(at) = pending.iter().position(|p| p == id) else {
                    return Err(format!(
                        "messages[{i}]: a 'tool' message must answer a preceding tool call (tool_call_id {id:?})"
                    ));
                };
                pending.remove(at);
                if !m["content"].is_string() {
                    return Err(format!("messages[{i}].content must be a string"));
                }
            }
            "system" | "user" | "assistant" => {
                if !pending.is_empty() {
                    return Err(format!(
                        "messages[{i}]: an assistant message with 'tool_calls' must be followed by tool messages \
                         responding to each 'tool_call_id'; missing: {}",
                        pending.join(", ")
                    ));
                }
                if role == "assistant" {
                    if let Some(calls) = m["tool_calls"].as_array() {
                        for c in calls {
                            pending.push(c["id"].as_str().unwrap_or("").to_string());
                        }
                    }
                }
            }
            other => return Err(format!("messages[{i}]: unknown role {other:?}")),
        }
    }
    if !pending.is_empty() {
        return Err(format!("missing tool results for: {}", pending.join(", ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(fake: &FakeLlm, key: Option<&str>, body: Value) -> (u16, Value) {
        let bearer = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str()))
            .collect();
        let url = format!("{}/chat/completions", fake.base_url());
        crate::server::send(axum::http::Method::POST, &url, &headers, Some(body)).await
    }

    #[tokio::test]
    async fn it_answers_like_openai_and_checks_the_key_and_tool_results() {
        let fake = FakeLlm::start_with_key("sk-fake-key").await.unwrap();
        fake.script(vec![
            Scripted::tool("read_file", json!({"path": "a.sql"})),
            Scripted::answer("FIXED: done"),
        ]);
        let first = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(post(&fake, None, first.clone()).await.0, 401);
        let (status, body) = post(&fake, Some("sk-fake-key"), first).await;
        assert_eq!(status, 200);
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        let call = &body["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["arguments"], r#"{"path":"a.sql"}"#);
        assert_eq!(body["usage"]["total_tokens"], 1030);

        let unanswered = json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "user", "content": "next"}]});
        let (status, body) = post(&fake, Some("sk-fake-key"), unanswered).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tool_call_id"));

        let answered = json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "select 1"}]});
        let (status, body) = post(&fake, Some("sk-fake-key"), answered.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(body["choices"][0]["message"]["content"], "FIXED: done");
        assert_eq!(
            post(&fake, Some("sk-fake-key"), answered).await.0,
            400,
            "script exhausted"
        );
        assert_eq!(fake.requests().len(), 4);
    }

    #[tokio::test]
    async fn raw_answers_are_replayed_as_they_are() {
        let fake = FakeLlm::start().await.unwrap();
        let refusal = json!({"error": {"message": "Unrecognized request argument supplied: stream", "type": "invalid_request_error", "param": null, "code": null}});
        let ollama = json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "llama3.1",
            "system_fingerprint": "fp_ollama", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
            "finish_reason": "stop"}]});
        fake.script(vec![
            Scripted::Raw(400, refusal.clone()),
            Scripted::Raw(200, ollama.clone()),
        ]);
        let req = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(post(&fake, None, req.clone()).await, (400, refusal));
        assert_eq!(post(&fake, None, req).await, (200, ollama));
    }
}
