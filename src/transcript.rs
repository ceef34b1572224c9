//! `selfheal session show <id>`: a session's transcript for debugging a
//! model's choices — the prompt, each request to the model and its answer
//! (reasoning, text, tool calls), the tool results, the verification, the
//! outcome, tokens and cost.
//!
//! [`render`] is pure; [`show`] only opens the database and calls it. Every
//! text shown was redacted before it was stored. The run log is never
//! printed whole (its size is), and long texts are cut unless `full`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::agent::llm::{usd, wire};
use crate::domain::EventKind;
use crate::store::{EventRow, ExchangeRow, SessionRow, Store};

/// Characters of one message or event shown unless `full`.
const CUT: usize = 1500;

/// Opens the database at `db` (without creating it) and renders session `id`.
pub fn show(db: &Path, id: i64, full: bool) -> anyhow::Result<String> {
    anyhow::ensure!(
        db.is_file(),
        "no database at {} (set SELFHEAL_DB or pass --db)",
        db.display()
    );
    let store = Store::open(db)?;
    let row = store
        .session(id)
        .with_context(|| format!("no session {id} in {}", db.display()))?;
    let events = store.events(id)?;
    let exchanges = store.exchanges(id)?;
    Ok(render(&row, &events, &exchanges, full))
}

/// The transcript as text.
pub fn render(
    row: &SessionRow,
    events: &[EventRow],
    exchanges: &[ExchangeRow],
    full: bool,
) -> String {
    let cut = |s: &str| -> String {
        if full || s.chars().count() <= CUT {
            s.to_string()
        } else {
            let kept: String = s.chars().take(CUT).collect();
            format!(
                "{kept}… [{} more characters; --full shows all]",
                s.chars().count() - CUT
            )
        }
    };
    let indent = |s: &str| s.replace('\n', "\n    ");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Session {} · schedule `{}` · run {} · agent {}",
        row.id, row.schedule, row.run_id, row.agent
    );
    let _ = writeln!(
        out,
        "Status: {} · created {}{}",
        row.status.as_str(),
        row.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        row.ended_at
            .map(|e| format!(" · ended {}", e.format("%Y-%m-%d %H:%M:%S UTC")))
            .unwrap_or_default()
    );
    if let Some(pr) = &row.pr_url {
        let _ = writeln!(out, "Pull request: {pr}");
    }

    let kind_of = |e: &&EventRow| EventKind::parse(&e.kind);
    for e in events
        .iter()
        .filter(|e| kind_of(e) == Some(EventKind::Prompt))
    {
        let _ = writeln!(out, "\n== {} ==\n{}", e.kind, cut(&e.text));
    }
    if let Some(log) = events
        .iter()
        .find(|e| kind_of(e) == Some(EventKind::RunLog))
    {
        let _ = writeln!(
            out,
            "\n(run log: {} bytes, stored; not printed)",
            log.text.len()
        );
    }

    if !exchanges.is_empty() {
        let sum = |f: fn(&ExchangeRow) -> Option<u64>| exchanges.iter().filter_map(f).sum::<u64>();
        let input = sum(|e| e.exchange.prompt_tokens);
        let output = sum(|e| e.exchange.completion_tokens);
        let costs: Vec<f64> = exchanges
            .iter()
            .filter_map(|e| e.exchange.cost_usd)
            .collect();
        let cost = if costs.is_empty() {
            String::new()
        } else {
            format!(", {}", usd(costs.iter().sum()))
        };
        let _ = writeln!(
            out,
            "\n== model: {} requests, {input} tokens in, {output} tokens out{cost} ==",
            exchanges.len()
        );
    }
    for (i, e) in exchanges.iter().enumerate() {
        let x = &e.exchange;
        let tokens = match (x.prompt_tokens, x.completion_tokens) {
            (Some(p), Some(c)) => format!(" · {p} in / {c} out"),
            (Some(p), None) => format!(" · {p} in"),
            _ => String::new(),
        };
        let cost = x
            .cost_usd
            .map(|c| format!(" · {}", usd(c)))
            .unwrap_or_default();
        let status = match x.status {
            0 => "no answer".to_string(),
            n => n.to_string(),
        };
        let _ = writeln!(
            out,
            "\n--- request {} (after {} replies) at {} → {status}{tokens}{cost}",
            i + 1,
            x.turn,
            e.at.format("%H:%M:%S"),
        );
        let request: Value = serde_json::from_str(&x.request).unwrap_or(Value::Null);
        let params: Vec<String> = ["temperature", "tool_choice", "max_tokens", "stream"]
            .iter()
            .filter_map(|k| request.get(*k).map(|v| format!("{k}={v}")))
            .collect();
        if !params.is_empty() {
            let _ = writeln!(out, "  params: {}", params.join(", "));
        }
        if let Some(tools) = request["tools"].as_array() {
            let names: Vec<&str> = tools
                .iter()
                .filter_map(|t| t["function"]["name"].as_str())
                .collect();
            let _ = writeln!(out, "  tools: {}", names.join(", "));
        }
        for m in request["messages"].as_array().into_iter().flatten() {
            let role = m["role"].as_str().unwrap_or("?");
            let content = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            let who = match m["tool_call_id"].as_str() {
                Some(id) => format!("tool result {id}"),
                None => role.to_string(),
            };
            if !content.is_empty() {
                let _ = writeln!(out, "  > [{who}] {}", indent(&cut(&content)));
            }
            for c in m["tool_calls"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "  > [{role} called {} {}] {}",
                    c["function"]["name"].as_str().unwrap_or("?"),
                    c["id"].as_str().unwrap_or(""),
                    cut(c["function"]["arguments"].as_str().unwrap_or(""))
                );
            }
        }
        if x.status == 0 {
            let _ = writeln!(out, "  < no answer: {}", indent(&cut(&x.response)));
            continue;
        }
        if x.status != 200 {
            let _ = writeln!(out, "  < refused: {}", indent(&cut(&x.response)));
            continue;
        }
        match wire::parse_reply(x.response.as_bytes()) {
            Ok(reply) => {
                if let Some(r) = &reply.reasoning {
                    let _ = writeln!(out, "  < [reasoning] {}", indent(&cut(r)));
                }
                if let Some(t) = &reply.content {
                    let _ = writeln!(out, "  < [answer] {}", indent(&cut(t)));
                }
                for c in &reply.calls {
                    let _ = writeln!(out, "  < [call {}] {}", c.name, cut(&c.arguments));
                }
                if let Some(f) = &reply.finish_reason {
                    let _ = writeln!(out, "  < finish_reason: {f}");
                }
            }
            Err(why) => {
                let _ = writeln!(out, "  < unreadable answer ({why}): {}", cut(&x.response));
            }
        }
    }

    let rest: Vec<&EventRow> = events
        .iter()
        .filter(|e| !matches!(kind_of(e), Some(EventKind::Prompt | EventKind::RunLog)))
        .collect();
    if !rest.is_empty() {
        let _ = writeln!(out, "\n== session events ==");
        for e in rest {
            let _ = writeln!(out, "[{}] {}", e.kind, indent(&cut(&e.text)));
        }
    }
    let _ = writeln!(
        out,
        "\n== outcome: {} ==\n{}",
        row.status.as_str(),
        row.summary.as_deref().unwrap_or("(none recorded)")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Claim, Exchange, Status};

    #[test]
    fn a_transcript_shows_the_conversation_the_outcome_tokens_and_cost() {
        let store = Store::in_memory().unwrap();
        let Claim::New(id) = store
            .claim_session("hourly", "48213", "C", "1.0", "healer")
            .unwrap()
        else {
            panic!("a new session")
        };
        store
            .add_event(id, "prompt", "Review the run log and fix run_id 48213")
            .unwrap();
        store
            .add_event(id, "run_log", &"log line\n".repeat(10_000))
            .unwrap();
        store
            .add_event(id, "tool", "read_file models/a.sql → select 1")
            .unwrap();
        store
            .add_event(id, "verification", "dbt build --select a+ passed")
            .unwrap();
        store
            .add_exchange(id, &Exchange {
                turn: 0,
                request: serde_json::json!({"model": "m", "temperature": 0.2, "tools": [{"type": "function", "function": {"name": "read_file"}}],
                    "messages": [{"role": "system", "content": "rules"}, {"role": "user", "content": "fix it"}]}).to_string(),
                status: 200,
                response: serde_json::json!({"choices": [{"message": {"content": null, "reasoning_content": "think first",
                    "tool_calls": [{"id": "c1", "function": {"name": "read_file", "arguments": "{\"path\":\"models/a.sql\"}"}}]},
                    "finish_reason": "tool_calls"}]}).to_string(),
                prompt_tokens: Some(1000),
                completion_tokens: Some(30),
                cost_usd: Some(0.0028),
            })
            .unwrap();
        store
            .add_exchange(id, &Exchange {
                turn: 1,
                request: serde_json::json!({"model": "m", "earlier_messages": 2, "messages": [
                    {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "function": {"name": "read_file", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "select 1"}]}).to_string(),
                status: 400,
                response: "Unsupported parameter: 'temperature'".into(),
                prompt_tokens: None,
                completion_tokens: None,
                cost_usd: None,
            })
            .unwrap();
        store
            .add_exchange(
                id,
                &Exchange {
                    turn: 1,
                    request:
                        serde_json::json!({"model": "m", "earlier_messages": 4, "messages": []})
                            .to_string(),
                    status: 0,
                    response: "no answer before the wall-clock budget ran out".into(),
                    prompt_tokens: None,
                    completion_tokens: None,
                    cost_usd: None,
                },
            )
            .unwrap();
        store
            .finish(
                id,
                Status::NoFix,
                Some("the ref is misspelt\n(m: used 1 turns, 1030 tokens, $0.0028)"),
                None,
            )
            .unwrap();

        let text = show_store(&store, id);
        for needle in [
            "Session 1 · schedule `hourly` · run 48213 · agent healer",
            "Status: no_fix",
            "== prompt ==\nReview the run log and fix run_id 48213",
            "(run log: 90000 bytes, stored; not printed)",
            "--- request 3 (after 1 replies)",
            "→ no answer",
            "< no answer: no answer before the wall-clock budget ran out",
            "== model: 3 requests, 1000 tokens in, 30 tokens out, $0.0028 ==",
            "--- request 1 (after 0 replies)",
            "→ 200 · 1000 in / 30 out · $0.0028",
            "params: temperature=0.2",
            "tools: read_file",
            "> [system] rules",
            "< [reasoning] think first",
            "< [call read_file] {\"path\":\"models/a.sql\"}",
            "> [tool result c1] select 1",
            "< refused: Unsupported parameter: 'temperature'",
            "[verification] dbt build --select a+ passed",
            "== outcome: no_fix ==\nthe ref is misspelt",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(
            !text.contains("log line\nlog line"),
            "the run log is not printed"
        );
    }

    fn show_store(store: &Store, id: i64) -> String {
        render(
            &store.session(id).unwrap(),
            &store.events(id).unwrap(),
            &store.exchanges(id).unwrap(),
            false,
        )
    }

    #[test]
    fn a_missing_database_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("nope.db");
        let err = show(&db, 1, false).unwrap_err().to_string();
        assert!(err.contains("no database at"), "{err}");
        assert!(!db.exists());
    }
}
