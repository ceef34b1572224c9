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
    let body = readable(st, &body);
    let continuation = " ".repeat(prefix.chars().count() + 2);
    let body = body.replace('\n', &format!("\n{continuation}"));
    let _ = writeln!(out, "{prefix}{}: {body}", author(config, st, m));
}

/// Slack's markup as a person sees it in the client: `<#C123>` → `#name`,
/// `<@U123>` → `@name`, `<url|label>` → `label (url)`, `<url>` → `url`, and
/// `&lt;` `&gt;` `&amp;` unescaped.
fn readable(st: &State, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        let inner = &rest[start + 1..start + len];
        let (target, label) = match inner.split_once('|') {
            Some((t, l)) => (t, Some(l)),
            None => (inner, None),
        };
        let shown = if let Some(id) = target.strip_prefix('#') {
            let name = label
                .map(str::to_string)
                .or_else(|| st.find_channel(id).map(|c| c.name))
                .unwrap_or_else(|| id.to_string());
            format!("#{name}")
        } else if let Some(id) = target.strip_prefix('@') {
            let name = label
                .map(str::to_string)
                .or_else(|| st.users.get(id).map(|u| u.name.clone()))
                .unwrap_or_else(|| id.to_string());
            format!("@{name}")
        } else if let Some(special) = target.strip_prefix('!') {
            format!("@{}", label.unwrap_or(special))
        } else {
            match label {
                Some(l) => format!("{l} ({target})"),
                None => target.to_string(),
            }
        };
        out.push_str(&shown);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
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
