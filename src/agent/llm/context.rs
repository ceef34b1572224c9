//! Keeping a conversation inside the model's window. Pure; no IO.
//!
//! A window is counted in tokens, which only the server can count; the
//! runner estimates them from bytes, at a ratio it starts conservative and
//! calibrates on every reply from the server's own `usage.prompt_tokens`.
//! Three things keep a session inside its window: the reply is capped
//! ([`Window::reply_tokens`], sent as `max_tokens`), a large tool result is
//! cut with a note that says how to see the rest ([`fit_result`]), and when
//! the history grows past the budget the oldest tool results are replaced by
//! a one-line stub ([`compact`]) — the model can call the tool again.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// The window assumed when neither the agent nor `SELFHEAL_LLM_CONTEXT_TOKENS`
/// sets one: small enough for most local models' defaults.
pub const DEFAULT_CONTEXT_TOKENS: u64 = 32_768;

/// How the runner's own text-form tool results start (see `Session`), so
/// that compaction knows them.
pub const TOOL_RESULTS_HEADER: &str = "Results of your tool calls";

/// What replaces a compacted tool result.
pub const COMPACTED: &str = "[compacted to fit the model's context window:";

/// One model's window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub context_tokens: u64,
    /// Bytes of request per prompt token; starts at 3 (JSON and code run
    /// denser than prose) and follows the server's counts.
    pub bytes_per_token: f64,
    /// The agent's own cap on one reply (`max_reply_tokens`), if any.
    pub reply_cap: Option<u64>,
}

impl Window {
    pub fn new(context_tokens: u64) -> Window {
        Window {
            context_tokens: context_tokens.max(1024),
            bytes_per_token: 3.0,
            reply_cap: None,
        }
    }

    /// A window whose replies are capped at `cap` tokens (slow local models:
    /// a reply's length is its time).
    pub fn with_reply_cap(self, cap: Option<u64>) -> Window {
        Window {
            reply_cap: cap,
            ..self
        }
    }

    /// The most one reply may take: the agent's cap, else a quarter of the
    /// window, at most 4,096; never more than half the window.
    pub fn reply_tokens(&self) -> u64 {
        self.reply_cap
            .unwrap_or((self.context_tokens / 4).clamp(256, 4096))
            .clamp(16, self.context_tokens / 2)
    }

    /// The most a request may take: the window less the reply and a margin
    /// for the estimate's error.
    pub fn prompt_budget(&self) -> u64 {
        self.context_tokens
            .saturating_sub(self.reply_tokens())
            .saturating_sub(self.context_tokens / 20)
    }

    pub fn estimate(&self, bytes: usize) -> u64 {
        (bytes as f64 / self.bytes_per_token).ceil() as u64
    }

    /// Learns the ratio from a request of `sent_bytes` the server counted as
    /// `prompt_tokens`.
    pub fn calibrate(&mut self, sent_bytes: usize, prompt_tokens: u64) {
        if prompt_tokens > 0 && sent_bytes > 0 {
            self.bytes_per_token = (sent_bytes as f64 / prompt_tokens as f64).clamp(1.5, 6.0);
        }
    }

    /// The most one tool result may add: an eighth of the window, between 1
    /// and 24 KB.
    pub fn max_result_bytes(&self) -> usize {
        ((self.context_tokens as f64 * self.bytes_per_token) / 8.0).clamp(1024.0, 24.0 * 1024.0)
            as usize
    }
}

/// Whether a message holds tool results (and may be compacted).
fn is_tool_result(m: &Value) -> bool {
    match m["role"].as_str() {
        Some("tool") => true,
        Some("user") => m["content"]
            .as_str()
            .is_some_and(|c| c.starts_with(TOOL_RESULTS_HEADER)),
        _ => false,
    }
}

/// Replaces the oldest tool results, all but the last `keep_recent`, with a
/// stub, until `over` bytes are saved (or nothing is left to compact).
/// Returns the bytes saved. The messages stay in place, so every tool call
/// still has its answer.
pub fn compact(messages: &mut [Value], keep_recent: usize, over: usize) -> usize {
    let results: Vec<usize> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| is_tool_result(m))
        .map(|(i, _)| i)
        .collect();
    let compactable = results.len().saturating_sub(keep_recent);
    let mut saved = 0;
    for &i in &results[..compactable] {
        if saved >= over {
            break;
        }
        let content = messages[i]["content"].as_str().unwrap_or("");
        if content.starts_with(COMPACTED) || content.contains(COMPACTED) && content.len() < 400 {
            continue;
        }
        let stub = if content.starts_with(TOOL_RESULTS_HEADER) {
            format!("{TOOL_RESULTS_HEADER}: {COMPACTED} {} bytes of earlier results removed; call the tools again if you need them]", content.len())
        } else {
            format!("{COMPACTED} this earlier result ({} bytes) was removed; call the tool again if you need it]", content.len())
        };
        if stub.len() < content.len() {
            saved += content.len() - stub.len();
            messages[i]["content"] = Value::String(stub);
        }
    }
    saved
}

static READ_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\S+ \((?:lines (\d+)-\d+ of (\d+)|(\d+) lines)").expect("static regex")
});

/// Cuts a tool result to `max` bytes, on a line boundary, with a note that
/// tells the model how to see the rest.
pub fn fit_result(tool: &str, text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max.saturating_sub(300).max(1);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    if let Some(nl) = text[..cut].rfind('\n') {
        if nl > cut / 2 {
            cut = nl + 1;
        }
    }
    let kept = &text[..cut];
    let how = match tool {
        "read_file" => match READ_HEADER.captures(text) {
            Some(c) => {
                let first: u64 = c.get(1).and_then(|m| m.as_str().parse().ok()).unwrap_or(1);
                let total: u64 = c
                    .get(2)
                    .or_else(|| c.get(3))
                    .and_then(|m| m.as_str().parse().ok())
                    .unwrap_or(0);
                // The header is a line of its own; the rest are file lines.
                let lines = kept.matches('\n').count().saturating_sub(1) as u64;
                let next = first + lines;
                format!(
                    "shown lines {first}-{} of {total}; call read_file with start_line {next} to read on",
                    next.saturating_sub(1)
                )
            }
            None => "call read_file with start_line and end_line to read the rest".to_string(),
        },
        "get_run_logs" | "get_bolt_run_logs" => {
            "the rest of this page is not shown; the next page follows with the next page number"
                .to_string()
        }
        "run_sql_query" => {
            "ask for fewer rows (limit) or fewer columns to see all of it".to_string()
        }
        "ripgrep_search" | "search_files_and_directories" => {
            "narrow the search with a path or a glob to see the rest".to_string()
        }
        _ => "narrow the request to see the rest".to_string(),
    };
    format!(
        "{kept}\n[cut to fit the model's context window: {} of {} bytes shown; {how}]",
        kept.len(),
        text.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_window_is_shared_between_prompt_and_reply() {
        let cases: &[(u64, u64, u64, usize)] = &[
            // (context, reply, prompt budget, max result bytes at 3 bytes/token)
            (8192, 2048, 5735, 3072),
            (32_768, 4096, 27_034, 12_288),
            (200_000, 4096, 185_904, 24 * 1024),
            (100, 256, 717, 1024),
        ];
        for (context, reply, budget, result) in cases {
            let w = Window::new(*context);
            assert_eq!(
                (w.reply_tokens(), w.prompt_budget(), w.max_result_bytes()),
                (*reply, *budget, *result),
                "{context}"
            );
        }
        let capped = Window::new(8192).with_reply_cap(Some(256));
        assert_eq!((capped.reply_tokens(), capped.prompt_budget()), (256, 7527));
        assert_eq!(
            Window::new(2048).with_reply_cap(Some(9999)).reply_tokens(),
            1024
        );
        let mut w = Window::new(8192);
        w.calibrate(40_000, 10_000);
        assert_eq!(w.bytes_per_token, 4.0);
        assert_eq!(w.estimate(4001), 1001);
        w.calibrate(10, 10_000);
        assert_eq!(w.bytes_per_token, 1.5, "clamped");
        w.calibrate(100, 0);
        assert_eq!(w.bytes_per_token, 1.5, "no count, no change");
    }

    #[test]
    fn old_tool_results_are_compacted_first_and_recent_ones_kept() {
        let big = "x".repeat(5000);
        let mut messages = vec![
            json!({"role": "system", "content": big}),
            json!({"role": "user", "content": big}),
            json!({"role": "assistant", "content": "", "tool_calls": [{"id": "a"}]}),
            json!({"role": "tool", "tool_call_id": "a", "content": big}),
            json!({"role": "assistant", "content": "<tool_call>…</tool_call>"}),
            json!({"role": "user", "content": format!("{TOOL_RESULTS_HEADER}:\n{big}")}),
            json!({"role": "assistant", "content": "", "tool_calls": [{"id": "b"}]}),
            json!({"role": "tool", "tool_call_id": "b", "content": big}),
        ];
        let saved = compact(&mut messages, 1, 1);
        assert!(
            saved > 4000 && saved < 5000,
            "{saved}: the oldest only, as one was enough"
        );
        assert!(messages[3]["content"]
            .as_str()
            .unwrap()
            .starts_with(COMPACTED));
        assert_eq!(
            messages[5]["content"].as_str().unwrap().len(),
            big.len() + TOOL_RESULTS_HEADER.len() + 2
        );

        let saved = compact(&mut messages, 1, usize::MAX);
        assert!(saved > 4000, "{saved}");
        let c5 = messages[5]["content"].as_str().unwrap();
        assert!(
            c5.starts_with(TOOL_RESULTS_HEADER) && c5.contains(COMPACTED),
            "{c5}"
        );
        assert_eq!(messages[7]["content"], big, "the last result is kept");
        assert_eq!(
            messages[0]["content"], big,
            "the system prompt is never compacted"
        );
        assert_eq!(messages[1]["content"], big, "nor the task");
        assert_eq!(compact(&mut messages, 1, usize::MAX), 0, "nothing left");
        assert_eq!(
            messages[3]["tool_call_id"], "a",
            "every call keeps its answer"
        );
    }

    #[test]
    fn a_large_result_is_cut_with_a_note_on_how_to_see_the_rest() {
        let file: String = (1..=400).map(|i| format!("select {i} as c\n")).collect();
        let read = format!("models/a.sql (400 lines)\n{file}");
        let out = fit_result("read_file", &read, 2000);
        assert!(out.len() <= 2000, "{}", out.len());
        let note = out.lines().last().unwrap();
        let shown = out.lines().filter(|l| l.starts_with("select")).count();
        assert!(
            note.contains(&format!(
                "shown lines 1-{shown} of 400; call read_file with start_line {}",
                shown + 1
            )),
            "{note}"
        );
        assert!(out.lines().nth(shown).unwrap() == format!("select {shown} as c"));

        let paged = format!(
            "models/a.sql (lines 101-400 of 400; ask for start_line/end_line to see more)\n{file}"
        );
        let out = fit_result("read_file", &paged, 2000);
        let k = out.lines().filter(|l| l.starts_with("select")).count();
        assert!(
            out.ends_with(&format!(
                "shown lines 101-{} of 400; call read_file with start_line {} to read on]",
                100 + k,
                101 + k
            )),
            "{out}"
        );

        let cases: &[(&str, &str)] = &[
            ("run_sql_query", "fewer rows"),
            ("get_bolt_run_logs", "next page"),
            ("ripgrep_search", "a path or a glob"),
            ("run_terminal_command", "narrow the request"),
        ];
        for (tool, hint) in cases {
            let out = fit_result(tool, &file, 1000);
            assert!(out.contains(hint) && out.len() <= 1000, "{tool}: {out}");
        }
        assert_eq!(fit_result("read_file", "short", 1000), "short");
    }
}
