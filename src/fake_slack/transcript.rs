//! A plain-text rendering of a channel, threads indented under their parents, for the
//! demo and for readable assertion failures. Pure; reads the state only.

use std::fmt::Write;

use serde_json::Value;

use super::state::{Message, State};
use super::Config;

pub fn render(config: &Config, st: &State, channel: &str) -> String {
    let Some(ch) = st.find_channel(channel) else {
        return format!("(no channel {channel})\n");
    };
    let messages: &[Message] = st.messages.get(&ch.id).map(Vec::as_slice).unwrap_or(&[]);
    let mut out = format!("#{} ({})\n", ch.name, ch.id);
    let is_top =
        |m: &Message| m.thread_ts.is_none() || m.thread_ts.as_deref() == Some(m.ts.as_str());
    for top in messages.iter().filter(|m| is_top(m)) {
        line(&mut out, config, st, top, "  ");
        for reply in messages
            .iter()
            .filter(|m| !is_top(m) && m.thread_ts.as_deref() == Some(top.ts.as_str()))
        {
            line(&mut out, config, st, reply, "      ↳ ");
        }
    }
    // Replies whose parent was deleted or never existed still deserve a place.
    for orphan in messages.iter().filter(|m| {
        !is_top(m)
            && m.thread_ts
                .as_deref()
                .is_some_and(|parent| st.find_message(&ch.id, parent).is_none())
    }) {
        let parent = orphan.thread_ts.as_deref().unwrap_or_default();
        let _ = writeln!(out, "  (thread {parent}, parent missing)");
        line(&mut out, config, st, orphan, "      ↳ ");
    }
    out
}

fn line(out: &mut String, config: &Config, st: &State, m: &Message, prefix: &str) {
    let mut body = if m.text.trim().is_empty() {
        blocks_text(m.blocks.as_ref())
    } else {
        m.text.clone()
    };
    for attachment in m
        .attachments
        .iter()
        .flat_map(|a| a.as_array().into_iter().flatten())
    {
        let title = attachment["title"]
            .as_str()
            .or(attachment["fallback"].as_str())
            .unwrap_or("");
        let text = attachment["text"].as_str().unwrap_or("");
        let sep = if body.is_empty() { "" } else { " " };
        body.push_str(&format!(
            "{sep}[attachment: {}]",
            [title, text]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" — ")
        ));
    }
    if !m.edits.is_empty() {
        body.push_str(&format!(" (edited {}×)", m.edits.len()));
    }
    let continuation = " ".repeat(prefix.chars().count() + 2);
    let body = body.replace('\n', &format!("\n{continuation}"));
    let _ = writeln!(out, "{prefix}{}: {body}", author(config, st, m));
}

fn author(config: &Config, st: &State, m: &Message) -> String {
    if m.by_bot {
        return format!("{} (this bot)", config.bot_name);
    }
    if let Some(bot_id) = &m.bot_id {
        return format!(
            "{} [app]",
            m.username.clone().unwrap_or_else(|| bot_id.clone())
        );
    }
    match &m.user {
        Some(user) => st
            .users
            .get(user)
            .map(|u| u.name.clone())
            .unwrap_or_else(|| user.clone()),
        None => "someone".to_string(),
    }
}

/// The visible text of Block Kit blocks: headers, sections (text and fields) and
/// context elements, one per line. Rich-text blocks repeat `text`, so they are skipped.
fn blocks_text(blocks: Option<&Value>) -> String {
    let mut lines = Vec::new();
    for block in blocks.and_then(Value::as_array).into_iter().flatten() {
        if let Some(text) = block["text"]["text"].as_str() {
            lines.push(text.to_string());
        }
        for field in block["fields"].as_array().into_iter().flatten() {
            if let Some(text) = field["text"].as_str() {
                lines.push(text.to_string());
            }
        }
        if block["type"] == "context" {
            for element in block["elements"].as_array().into_iter().flatten() {
                if let Some(text) = element["text"].as_str() {
                    lines.push(text.to_string());
                }
            }
        }
    }
    lines.join("\n")
}
