//! What real chat-completions servers send back, read into one shape. Pure;
//! no IO.
//!
//! OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp's server, LM Studio and
//! OpenRouter all answer `choices[0].message`, but they differ where it hurts
//! a tool-calling loop:
//!
//! - tool calls arrive in `tool_calls`, or only as text in `content` when the
//!   server did not parse the model's own format (Hermes/Qwen
//!   `<tool_call>{…}</tool_call>`, Llama 3 JSON `{"name": …, "parameters": …}`,
//!   Mistral `[TOOL_CALLS][…]`);
//! - arguments are a JSON string (OpenAI) or an object (Ollama's native shape,
//!   some proxies); ids are missing (older Ollama), empty, or repeated;
//! - reasoning comes in `reasoning_content` (vLLM, llama.cpp, DeepSeek),
//!   `reasoning` (OpenRouter, Ollama) or inline as `<think>…</think>`: it is
//!   kept apart so that it never reaches Slack, a pull request or a summary;
//! - errors name a refused parameter (`temperature` on reasoning models,
//!   `tool_choice` on vLLM without auto tool choice) or an over-long context,
//!   each in the server's own words.
//!
//! [`parse_reply`] reads a body, [`adopt_text_calls`] turns calls written as
//! text into calls, [`IdBook`] makes call ids present and unique, and
//! [`refused_param`] and [`context_overflow`] read error bodies.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// One tool call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// As the server sent it (possibly empty) until [`IdBook::assign`] runs.
    pub id: String,
    pub name: String,
    /// The arguments as a JSON text (an object, when the model wrote one).
    pub arguments: String,
}

/// Token counts from `usage`, when the server reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
}

impl Usage {
    /// `total_tokens`, else the sum of the two parts.
    pub fn total(&self) -> Option<u64> {
        self.total_tokens
            .or_else(|| Some(self.prompt_tokens? + self.completion_tokens?))
    }
}

/// The model's answer for one turn.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    /// The visible text, reasoning removed; None when empty.
    pub content: Option<String>,
    pub calls: Vec<Call>,
    pub finish_reason: Option<String>,
    pub usage: Usage,
    /// The model's reasoning, when the server or the text set it apart. Kept
    /// for the transcript only.
    pub reasoning: Option<String>,
    /// True when the calls were read from the text of `content` rather than
    /// from `tool_calls`: the conversation then goes on in text too.
    pub text_calls: bool,
}

impl Reply {
    /// Whether the server stopped the reply at its output limit.
    pub fn cut_at_length(&self) -> bool {
        self.finish_reason.as_deref() == Some("length")
    }
}

/// Reads `choices[0]` of a chat completion. Lenient where servers differ.
pub fn parse_reply(body: &[u8]) -> Result<Reply, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or("no choices")?;
    let message = choice.get("message").ok_or("no message in choices[0]")?;
    let raw = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) != Some("reasoning"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    };
    let (visible, inline) = split_reasoning(&raw);
    let field = ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|k| message.get(*k).and_then(Value::as_str))
        .map(str::to_string);
    let reasoning = [field, inline]
        .into_iter()
        .flatten()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .reduce(|a, b| format!("{a}\n{b}"));

    let mut calls = Vec::new();
    if let Some(list) = message.get("tool_calls").and_then(Value::as_array) {
        for call in list {
            let function = call.get("function").unwrap_or(call);
            calls.push(Call {
                id: call
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                name: function
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                arguments: arguments_text(function.get("arguments")),
            });
        }
    } else if let Some(f) = message.get("function_call").filter(|f| f.is_object()) {
        // The deprecated single `function_call` some proxies still send.
        calls.push(Call {
            id: String::new(),
            name: f
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            arguments: arguments_text(f.get("arguments")),
        });
    }
    let usage = v.get("usage");
    let n = |k: &str| usage.and_then(|u| u.get(k)).and_then(Value::as_u64);
    Ok(Reply {
        content: Some(visible).filter(|s| !s.trim().is_empty()),
        calls,
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        usage: Usage {
            prompt_tokens: n("prompt_tokens"),
            completion_tokens: n("completion_tokens"),
            total_tokens: n("total_tokens"),
        },
        reasoning,
        text_calls: false,
    })
}

/// Arguments as a JSON text: a string as is (unwrapping a JSON string that
/// itself holds an object, as some models double-encode), an object
/// serialised, nothing as empty.
fn arguments_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::String(inner)) if inner.trim_start().starts_with('{') => inner,
            _ => s.clone(),
        },
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

static THINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?is)<think(?:ing)?>(.*?)(?:</think(?:ing)?>|\z)").expect("static regex")
});

/// Splits `<think>…</think>` out of the text: (visible, reasoning). An
/// unclosed block runs to the end (a reply cut while thinking); a closing tag
/// without an opening one ends reasoning that started in the prompt (the
/// DeepSeek-R1 template opens the block itself).
pub fn split_reasoning(text: &str) -> (String, Option<String>) {
    let lower = text.to_ascii_lowercase();
    let mut reasoning = Vec::new();
    let mut visible = text.to_string();
    if let Some(end) = lower.find("</think>") {
        if !lower[..end].contains("<think") {
            reasoning.push(text[..end].trim().to_string());
            visible = text[end + "</think>".len()..].to_string();
        }
    }
    let mut out = String::new();
    let mut last = 0;
    for m in THINK.captures_iter(&visible) {
        let whole = m.get(0).expect("group 0");
        out.push_str(&visible[last..whole.start()]);
        reasoning.push(m[1].trim().to_string());
        last = whole.end();
    }
    out.push_str(&visible[last..]);
    let reasoning: Vec<String> = reasoning.into_iter().filter(|r| !r.is_empty()).collect();
    (
        out.trim().to_string(),
        (!reasoning.is_empty()).then(|| reasoning.join("\n")),
    )
}

static TOOL_CALL_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<tool_call>(.*?)(?:</tool_call>|\z)").expect("static regex"));
static FUNCTION_TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)<function=([A-Za-z0-9_.-]+)>(.*?)</function>").expect("static regex")
});
static MISTRAL_NAMED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*([A-Za-z0-9_.-]+)\s*\[ARGS\]").expect("static regex"));

/// When the server returned no structured calls but the text holds some in a
/// format a model family writes, moves them into `calls` (ids left empty)
/// and removes them from the text. `known` are the tool names offered: a bare
/// JSON object counts as a call only when it names one of them, since a
/// model may well answer with JSON that is not a call.
pub fn adopt_text_calls(reply: &mut Reply, known: &[&str]) {
    if !reply.calls.is_empty() {
        return;
    }
    let Some(text) = reply.content.as_deref() else {
        return;
    };
    let Some((rest, calls)) = text_calls(text, known) else {
        return;
    };
    reply.calls = calls;
    reply.text_calls = true;
    reply.content = Some(rest).filter(|r| !r.trim().is_empty());
}

/// The calls written in `text` and the text without them.
pub fn text_calls(text: &str, known: &[&str]) -> Option<(String, Vec<Call>)> {
    // Hermes / Qwen / SmolLM2: <tool_call>{…}</tool_call>, an object or a list.
    if TOOL_CALL_TAG.is_match(text) {
        let mut calls = Vec::new();
        for m in TOOL_CALL_TAG.captures_iter(text) {
            calls.extend(json_calls(&m[1], None));
        }
        let rest = TOOL_CALL_TAG.replace_all(text, "").trim().to_string();
        return (!calls.is_empty()).then_some((rest, calls));
    }
    // Llama 3.1 custom: <function=name>{…}</function>.
    if FUNCTION_TAG.is_match(text) {
        let calls: Vec<Call> = FUNCTION_TAG
            .captures_iter(text)
            .map(|m| call(&m[1], m[2].trim().to_string()))
            .collect();
        let rest = FUNCTION_TAG.replace_all(text, "").trim().to_string();
        return Some((rest, calls));
    }
    // Mistral: [TOOL_CALLS][{…}, …], or (newer tokenizers) [TOOL_CALLS]name[ARGS]{…}, repeated.
    if let Some(at) = text.find("[TOOL_CALLS]") {
        let rest = text[..at].trim().to_string();
        let mut calls = Vec::new();
        for part in text[at..].split("[TOOL_CALLS]").skip(1) {
            if let Some(named) = MISTRAL_NAMED.captures(part) {
                let args = first_json(&part[named.get(0).expect("group 0").end()..])
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                calls.push(call(&named[1], args));
            } else {
                calls.extend(json_calls(part, None));
            }
        }
        return (!calls.is_empty()).then_some((rest, calls));
    }
    // Llama 3.x: the whole reply is JSON, maybe after <|python_tag|> or in a
    // code fence, maybe several objects separated by `;` or new lines.
    let body = text
        .trim()
        .trim_start_matches("<|python_tag|>")
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    if !(body.starts_with('{') || body.starts_with('[')) {
        return None;
    }
    let calls = json_calls(body, Some(known));
    (!calls.is_empty()).then(|| (String::new(), calls))
}

fn call(name: &str, arguments: String) -> Call {
    Call {
        id: String::new(),
        name: name.trim().to_string(),
        arguments,
    }
}

/// Every call in a run of JSON values (objects or lists of objects). With
/// `known`, all of them must name a known tool, or none counts.
fn json_calls(text: &str, known: Option<&[&str]>) -> Vec<Call> {
    let calls: Vec<Call> = json_values(text).iter().flat_map(object_calls).collect();
    match known {
        Some(k) if !calls.iter().all(|c| k.contains(&c.name.as_str())) => Vec::new(),
        _ => calls,
    }
}

/// The JSON values at the start of `text`, separated by white space, `;` or
/// `,` (Llama 3.2 separates parallel calls with `;`); reading stops at the
/// first thing that is not JSON.
fn json_values(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                out.push(v);
                rest = rest[stream.byte_offset()..]
                    .trim_start_matches([';', ',', ' ', '\n', '\r', '\t']);
            }
            _ => break,
        }
    }
    out
}

/// `{"name": …, "arguments"|"parameters": …}` (or wrapped in `function`), or a list of them.
fn object_calls(v: &Value) -> Vec<Call> {
    match v {
        Value::Array(items) => items.iter().flat_map(object_calls).collect(),
        Value::Object(_) => {
            let f = v.get("function").filter(|f| f.is_object()).unwrap_or(v);
            let Some(name) = f.get("name").and_then(Value::as_str) else {
                return Vec::new();
            };
            let args = f.get("arguments").or_else(|| f.get("parameters"));
            vec![call(name, arguments_text(args))]
        }
        _ => Vec::new(),
    }
}

fn first_json(text: &str) -> Option<Value> {
    serde_json::Deserializer::from_str(text.trim())
        .into_iter::<Value>()
        .next()?
        .ok()
}

/// Makes call ids present and unique within a session. Servers leave them
/// out (older Ollama), send `""`, or repeat them (`call_0` every turn); tool
/// results are matched to calls by id, so each must be unique. New ids are
/// nine letters and digits, the one shape Mistral's API accepts, which every
/// other server takes too.
#[derive(Debug, Default)]
pub struct IdBook {
    seen: HashSet<String>,
    next: u32,
}

impl IdBook {
    pub fn assign(&mut self, calls: &mut [Call]) {
        for c in calls {
            if c.id.trim().is_empty() || self.seen.contains(&c.id) {
                c.id = loop {
                    self.next += 1;
                    let id = format!("call{:05}", self.next);
                    if !self.seen.contains(&id) {
                        break id;
                    }
                };
            }
            self.seen.insert(c.id.clone());
        }
    }
}

/// A request parameter some servers refuse; the runner drops it and asks again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Param {
    ToolChoice,
    Temperature,
    Stream,
    MaxTokens,
}

impl Param {
    pub const ALL: [Param; 4] = [
        Param::ToolChoice,
        Param::Temperature,
        Param::Stream,
        Param::MaxTokens,
    ];

    /// The field of the request body.
    pub fn key(self) -> &'static str {
        match self {
            Param::ToolChoice => "tool_choice",
            Param::Temperature => "temperature",
            Param::Stream => "stream",
            Param::MaxTokens => "max_tokens",
        }
    }
}

/// The parameter a 4xx answer refuses, if it names one: by OpenAI's `param`
/// field, else by its message ("Unsupported parameter: 'temperature'",
/// "Unrecognized request argument supplied: stream", vLLM's "\"auto\" tool
/// choice requires --enable-auto-tool-choice"). A message about something
/// else that merely mentions a parameter (a context overflow) is not a refusal.
pub fn refused_param(status: u16, message: &str, param: Option<&str>) -> Option<Param> {
    if !(400..500).contains(&status) || status == 401 || status == 403 || status == 404 {
        return None;
    }
    if let Some(p) = param {
        let p = p.trim();
        if let Some(found) = Param::ALL.into_iter().find(|k| k.key() == p) {
            return Some(found);
        }
    }
    let m = message.to_ascii_lowercase();
    if context_overflow(status, message, None) {
        return None;
    }
    let refusal = [
        "unsupported",
        "not supported",
        "unrecognized",
        "unknown",
        "not allowed",
        "invalid",
        "requires",
        "does not support",
        "extra inputs are not permitted",
        "unexpected",
    ]
    .iter()
    .any(|w| m.contains(w));
    if !refusal {
        return None;
    }
    let names: [(Param, &[&str]); 4] = [
        (Param::ToolChoice, &["tool_choice", "tool choice"]),
        (Param::Temperature, &["temperature"]),
        (Param::Stream, &["stream"]),
        (Param::MaxTokens, &["max_tokens"]),
    ];
    names
        .iter()
        .find(|(_, words)| words.iter().any(|w| mentions(&m, w)))
        .map(|(p, _)| *p)
}

/// `word` as a whole word (`stream` but not `upstream`, `max_tokens` but not
/// `max_completion_tokens`).
fn mentions(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let edge = |c: Option<char>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        edge(before) && edge(after)
    })
}

/// Whether a 4xx answer says the conversation is longer than the model's
/// window: OpenAI's `context_length_exceeded`, llama.cpp's
/// `exceed_context_size_error`, vLLM's and OpenRouter's "maximum context
/// length is … tokens", LM Studio's "context length of only …".
pub fn context_overflow(status: u16, message: &str, code: Option<&str>) -> bool {
    if !(400..500).contains(&status) && status != 500 {
        return false;
    }
    if let Some(c) = code {
        if matches!(
            c,
            "context_length_exceeded" | "exceed_context_size_error" | "string_above_max_length"
        ) {
            return true;
        }
    }
    let m = message.to_ascii_lowercase();
    [
        "maximum context length",
        "context length exceeded",
        "context_length_exceeded",
        "exceeds the available context size",
        "exceed_context_size",
        "larger than the max context size",
        "context window",
        "context length of only",
        "prompt is too long",
        "too many tokens",
        "reduce the length of the messages",
    ]
    .iter()
    .any(|w| m.contains(w))
}

#[cfg(test)]
mod tests;
