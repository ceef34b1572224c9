//! Replies as each server documents them, read into one shape.

use super::*;
use serde_json::json;

const KNOWN: &[&str] = &["read_file", "ripgrep_search", "finish"];

/// What a case expects: the visible text, the calls (name, arguments), the
/// reasoning kept apart, whether the calls came from the text.
struct Want {
    content: Option<&'static str>,
    calls: &'static [(&'static str, &'static str)],
    reasoning: Option<&'static str>,
    text_calls: bool,
}

fn check(server: &str, body: Value, want: Want) {
    let mut reply =
        parse_reply(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{server}: {e}"));
    adopt_text_calls(&mut reply, KNOWN);
    assert_eq!(reply.content.as_deref(), want.content, "{server}: content");
    let calls: Vec<(&str, &str)> = reply
        .calls
        .iter()
        .map(|c| (c.name.as_str(), c.arguments.as_str()))
        .collect();
    assert_eq!(calls, want.calls, "{server}: calls");
    assert_eq!(
        reply.reasoning.as_deref(),
        want.reasoning,
        "{server}: reasoning"
    );
    assert_eq!(reply.text_calls, want.text_calls, "{server}: text_calls");
}

fn completion(message: Value, finish: &str) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000, "model": "m",
           "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
           "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}})
}

const READ: &str = r#"{"path":"models/a.sql"}"#;

#[test]
fn each_servers_documented_reply_is_read_into_one_shape() {
    let none: &[(&str, &str)] = &[];
    // OpenAI: content null, arguments a JSON string, `refusal` beside them.
    check(
        "openai",
        completion(
            json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                {"id": "call_abc123", "type": "function", "function": {"name": "read_file", "arguments": READ}}]}),
            "tool_calls",
        ),
        Want {
            content: None,
            calls: &[("read_file", READ)],
            reasoning: None,
            text_calls: false,
        },
    );
    // Azure OpenAI: the same with content-filter annotations around it.
    let mut azure = completion(
        json!({"role": "assistant", "content": "Reading it.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": READ}}]}),
        "tool_calls",
    );
    azure["prompt_filter_results"] = json!([{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": false, "severity": "safe"}}}]);
    azure["choices"][0]["content_filter_results"] =
        json!({"hate": {"filtered": false, "severity": "safe"}});
    check(
        "azure",
        azure,
        Want {
            content: Some("Reading it."),
            calls: &[("read_file", READ)],
            reasoning: None,
            text_calls: false,
        },
    );
    // Ollama's /v1: empty content, an `index` per call; older versions send no id.
    check(
        "ollama",
        completion(
            json!({"role": "assistant", "content": "", "tool_calls": [
                {"index": 0, "type": "function", "function": {"name": "read_file", "arguments": READ}}]}),
            "tool_calls",
        ),
        Want {
            content: None,
            calls: &[("read_file", READ)],
            reasoning: None,
            text_calls: false,
        },
    );
    // Ollama's native shape (some proxies pass it through): arguments an object.
    check(
        "ollama native arguments",
        completion(
            json!({"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "read_file", "arguments": {"path": "models/a.sql"}}}]}),
            "stop",
        ),
        Want {
            content: None,
            calls: &[("read_file", READ)],
            reasoning: None,
            text_calls: false,
        },
    );
    // vLLM with a reasoning parser: `reasoning_content` beside the answer.
    check(
        "vllm reasoning",
        completion(
            json!({"role": "assistant", "reasoning_content": "The ref looks misspelt.", "content": "Root cause: a typo.",
                   "tool_calls": []}),
            "stop",
        ),
        Want {
            content: Some("Root cause: a typo."),
            calls: none,
            reasoning: Some("The ref looks misspelt."),
            text_calls: false,
        },
    );
    // vLLM without --enable-auto-tool-choice, a Hermes/Qwen model: calls in the text.
    check(
        "vllm hermes text",
        completion(
            json!({"role": "assistant", "content": "Let me look.\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"models/a.sql\"}}\n</tool_call>"}),
            "stop",
        ),
        Want {
            content: Some("Let me look."),
            calls: &[("read_file", READ)],
            reasoning: None,
            text_calls: true,
        },
    );
    // llama.cpp's server: random ids, `timings`, reasoning_content for thinking models.
    let mut llama = completion(
        json!({"role": "assistant", "content": null, "reasoning_content": "I should read the model.", "tool_calls": [
            {"type": "function", "function": {"name": "read_file", "arguments": READ}, "id": "8fJ2kq0ZpR1xYc3VbN7mLw4Ht6Ds9Ae5"}]}),
        "tool_calls",
    );
    llama["timings"] = json!({"prompt_n": 120, "predicted_n": 30, "predicted_per_second": 76.1});
    check(
        "llama.cpp",
        llama,
        Want {
            content: None,
            calls: &[("read_file", READ)],
            reasoning: Some("I should read the model."),
            text_calls: false,
        },
    );
    // llama.cpp without a reasoning format: <think> left in the content.
    check(
        "think tags",
        completion(
            json!({"role": "assistant", "content": "<think>\nMaybe stg_order.\n</think>\n\nThe ref is misspelt."}),
            "stop",
        ),
        Want {
            content: Some("The ref is misspelt."),
            calls: none,
            reasoning: Some("Maybe stg_order."),
            text_calls: false,
        },
    );
    // DeepSeek-R1 style: the template opened the block, only the close is in the text.
    check(
        "think close only",
        completion(
            json!({"role": "assistant", "content": "Checking parents.</think>Done: a typo."}),
            "stop",
        ),
        Want {
            content: Some("Done: a typo."),
            calls: none,
            reasoning: Some("Checking parents."),
            text_calls: false,
        },
    );
    // A reply cut while thinking: nothing visible.
    check(
        "unclosed think",
        completion(
            json!({"role": "assistant", "content": "<think>Let me think about the"}),
            "length",
        ),
        Want {
            content: None,
            calls: none,
            reasoning: Some("Let me think about the"),
            text_calls: false,
        },
    );
    // LM Studio: numeric-string ids, `stats`.
    let mut lms = completion(
        json!({"role": "assistant", "content": "", "tool_calls": [
            {"id": "365174485", "type": "function", "function": {"name": "ripgrep_search", "arguments": "{\"pattern\":\"stg_order\"}"}}]}),
        "tool_calls",
    );
    lms["stats"] = json!({"tokens_per_second": 41.2});
    check(
        "lm studio",
        lms,
        Want {
            content: None,
            calls: &[("ripgrep_search", r#"{"pattern":"stg_order"}"#)],
            reasoning: None,
            text_calls: false,
        },
    );
    // OpenRouter: `reasoning` (not reasoning_content), provider fields, two calls.
    let mut or = completion(
        json!({"role": "assistant", "content": "", "refusal": null, "reasoning": "Two files to read.", "tool_calls": [
            {"index": 0, "id": "toolu_vrtx_01A", "type": "function", "function": {"name": "read_file", "arguments": READ}},
            {"index": 1, "id": "toolu_vrtx_01B", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"models/b.sql\"}"}}]}),
        "tool_calls",
    );
    or["provider"] = json!("Anthropic");
    or["choices"][0]["native_finish_reason"] = json!("tool_use");
    check(
        "openrouter",
        or,
        Want {
            content: None,
            calls: &[
                ("read_file", READ),
                ("read_file", r#"{"path":"models/b.sql"}"#),
            ],
            reasoning: Some("Two files to read."),
            text_calls: false,
        },
    );
    // Content as a list of parts (some proxies), a reasoning part left out.
    check(
        "content parts",
        completion(
            json!({"role": "assistant", "content": [
            {"type": "reasoning", "text": "hmm"}, {"type": "text", "text": "NO_FIX: "}, {"type": "text", "text": "data"}]}),
            "stop",
        ),
        Want {
            content: Some("NO_FIX: data"),
            calls: none,
            reasoning: None,
            text_calls: false,
        },
    );
    // The deprecated single function_call.
    check(
        "function_call",
        completion(
            json!({"role": "assistant", "content": null, "function_call": {"name": "read_file", "arguments": READ}}),
            "function_call",
        ),
        Want {
            content: None,
            calls: &[("read_file", READ)],
            reasoning: None,
            text_calls: false,
        },
    );
    // Arguments double-encoded as a JSON string holding the object.
    check(
        "double-encoded arguments",
        completion(
            json!({"role": "assistant", "tool_calls": [
            {"id": "a", "function": {"name": "read_file", "arguments": serde_json::to_string(READ).unwrap()}}]}),
            "tool_calls",
        ),
        Want {
            content: None,
            calls: &[("read_file", READ)],
            reasoning: None,
            text_calls: false,
        },
    );
}

#[test]
fn calls_written_as_text_are_read_in_each_models_format() {
    /// (model family, content, text left, calls)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        // (model family, content, text left, calls)
        ("hermes", "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"models/a.sql\"}}\n</tool_call>", None, &[("read_file", READ)]),
        ("hermes, two blocks", "<tool_call>{\"name\":\"read_file\",\"arguments\":{\"path\":\"models/a.sql\"}}</tool_call>\n<tool_call>{\"name\":\"ripgrep_search\",\"arguments\":{\"pattern\":\"x\"}}</tool_call>", None,
            &[("read_file", READ), ("ripgrep_search", r#"{"pattern":"x"}"#)]),
        ("hermes, unclosed (cut at length)", "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"models/a.sql\"}}", None, &[("read_file", READ)]),
        ("smollm2, a list inside the tag", "<tool_call>[{\"name\": \"read_file\", \"arguments\": {\"path\": \"models/a.sql\"}}]</tool_call>", None, &[("read_file", READ)]),
        ("llama 3 json", "{\"name\": \"read_file\", \"parameters\": {\"path\": \"models/a.sql\"}}", None, &[("read_file", READ)]),
        ("llama 3 json with type", "{\"type\": \"function\", \"name\": \"read_file\", \"parameters\": {\"path\": \"models/a.sql\"}}", None, &[("read_file", READ)]),
        ("llama 3.1 python tag", "<|python_tag|>{\"name\": \"read_file\", \"parameters\": {\"path\": \"models/a.sql\"}}", None, &[("read_file", READ)]),
        ("llama 3.2 parallel", "{\"name\": \"read_file\", \"parameters\": {\"path\": \"models/a.sql\"}}; {\"name\": \"ripgrep_search\", \"parameters\": {\"pattern\": \"x\"}}", None,
            &[("read_file", READ), ("ripgrep_search", r#"{"pattern":"x"}"#)]),
        ("json in a code fence", "```json\n{\"name\": \"finish\", \"arguments\": {\"status\": \"no_fix\"}}\n```", None, &[("finish", r#"{"status":"no_fix"}"#)]),
        ("llama 3.1 function tag", "<function=read_file>{\"path\": \"models/a.sql\"}</function>", None, &[("read_file", r#"{"path": "models/a.sql"}"#)]),
        ("mistral", "[TOOL_CALLS] [{\"name\": \"read_file\", \"arguments\": {\"path\": \"models/a.sql\"}}]", None, &[("read_file", READ)]),
        ("mistral after text", "I will read it.[TOOL_CALLS][{\"name\": \"read_file\", \"arguments\": {\"path\": \"models/a.sql\"}}]", Some("I will read it."), &[("read_file", READ)]),
        ("mistral v11", "[TOOL_CALLS]read_file[ARGS]{\"path\": \"models/a.sql\"}[TOOL_CALLS]ripgrep_search[ARGS]{\"pattern\": \"x\"}", None,
            &[("read_file", READ), ("ripgrep_search", r#"{"pattern":"x"}"#)]),
        // Not calls: prose, JSON that names no known tool, a JSON answer.
        ("prose", "The model refs stg_order; it should be stg_orders.", Some("The model refs stg_order; it should be stg_orders."), &[]),
        ("unknown name in bare json", "{\"name\": \"orders\", \"parameters\": {}}", Some("{\"name\": \"orders\", \"parameters\": {}}"), &[]),
        ("a json answer", "{\"root_cause\": \"typo\"}", Some("{\"root_cause\": \"typo\"}"), &[]),
    ];
    for (family, content, rest, calls) in cases {
        let mut reply = Reply {
            content: Some(content.to_string()),
            ..Reply::default()
        };
        adopt_text_calls(&mut reply, KNOWN);
        let got: Vec<(&str, &str)> = reply
            .calls
            .iter()
            .map(|c| (c.name.as_str(), c.arguments.as_str()))
            .collect();
        assert_eq!(got, *calls, "{family}");
        assert_eq!(reply.content.as_deref(), *rest, "{family}");
        assert_eq!(reply.text_calls, !calls.is_empty(), "{family}");
    }
}

#[test]
fn structured_calls_win_over_text() {
    let mut reply = parse_reply(
        completion(json!({"content": "<tool_call>{\"name\":\"ripgrep_search\",\"arguments\":{}}</tool_call>", "tool_calls": [
            {"id": "c", "function": {"name": "read_file", "arguments": READ}}]}), "tool_calls")
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    adopt_text_calls(&mut reply, KNOWN);
    assert_eq!(reply.calls.len(), 1);
    assert!(!reply.text_calls);
}

#[test]
fn call_ids_are_made_present_and_unique_across_the_session() {
    let c = |id: &str| Call {
        id: id.into(),
        name: "read_file".into(),
        arguments: String::new(),
    };
    let mut book = IdBook::default();
    let mut first = vec![c(""), c("call_0"), c("call_0"), c("   ")];
    book.assign(&mut first);
    let mut second = vec![c("call_0"), c("call00001")];
    book.assign(&mut second);
    let ids: Vec<&str> = first.iter().chain(&second).map(|c| c.id.as_str()).collect();
    assert_eq!(ids[1], "call_0", "a good id is kept");
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    for id in ids.iter().filter(|i| i.starts_with("call0")) {
        assert!(
            id.len() == 9 && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "{id}"
        );
    }
}

#[test]
fn refused_parameters_are_read_from_each_servers_error() {
    /// (server, status, message, `error.param`, the parameter refused)
    type Case<'a> = (&'a str, u16, &'a str, Option<&'a str>, Option<Param>);
    let cases: &[Case] = &[
        ("openai o-series", 400, "Unsupported parameter: 'temperature' is not supported with this model.", Some("temperature"), Some(Param::Temperature)),
        ("openai max_tokens", 400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.", Some("max_tokens"), Some(Param::MaxTokens)),
        ("azure", 400, "Unrecognized request argument supplied: stream", None, Some(Param::Stream)),
        ("vllm auto tool choice", 400, "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set", None, Some(Param::ToolChoice)),
        ("openai tool_choice", 400, "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", Some("tool_choice"), Some(Param::ToolChoice)),
        ("llama.cpp without --jinja", 400, "tool_choice param requires --jinja flag", None, Some(Param::ToolChoice)),
        ("llama.cpp tools without --jinja", 400, "tools param requires --jinja flag", None, None),
        ("pydantic extra", 422, "stream: Extra inputs are not permitted", None, Some(Param::Stream)),
        ("not a parameter", 400, "Invalid 'messages[2].content': string too long.", Some("messages[2].content"), None),
        ("a wrong key", 401, "Incorrect API key provided: temperature", None, None),
        ("overflow is no refusal", 400, "This model's maximum context length is 8192 tokens. Please reduce the length of the messages or completion (max_tokens).", None, None),
        ("upstream is not stream", 400, "invalid upstream response", None, None),
    ];
    for (server, status, message, param, want) in cases {
        assert_eq!(refused_param(*status, message, *param), *want, "{server}");
    }
}

#[test]
fn context_overflows_are_read_from_each_servers_error() {
    let cases: &[(&str, u16, &str, Option<&str>, bool)] = &[
        ("openai", 400, "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.", Some("context_length_exceeded"), true),
        ("llama.cpp", 400, "request (9000 tokens) exceeds the available context size (8192 tokens), try increasing it", Some("exceed_context_size_error"), true),
        ("llama.cpp, by message", 400, "request (9000 tokens) exceeds the available context size (8192 tokens), try increasing it", None, true),
        ("vllm", 400, "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.", None, true),
        ("openrouter", 400, "This endpoint's maximum context length is 8192 tokens. However, you requested about 9100 tokens.", None, true),
        ("lm studio", 400, "Trying to keep the first 9000 tokens when context the overflows. However, the model is loaded with context length of only 4096 tokens, which is not enough.", None, true),
        ("anthropic via proxy", 400, "prompt is too long: 210000 tokens > 200000 maximum", None, true),
        ("a refusal", 400, "Unsupported parameter: 'temperature'", Some("unsupported_parameter"), false),
        ("a server error", 503, "maximum context length", None, false),
    ];
    for (server, status, message, code, want) in cases {
        assert_eq!(context_overflow(*status, message, *code), *want, "{server}");
    }
}

#[test]
fn usage_totals_fall_back_to_the_sum_of_parts() {
    let u = |p, c, t| Usage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: t,
    };
    assert_eq!(u(Some(10), Some(5), None).total(), Some(15));
    assert_eq!(u(Some(10), Some(5), Some(16)).total(), Some(16));
    assert_eq!(u(Some(10), None, None).total(), None);
}
