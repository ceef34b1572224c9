//! `views.publish`: the Home tab views the bot publishes, checked against
//! Slack's limits and kept per user as Slack returns them
//! (webapi/views.publish.success.slack-api-ref.json). Invalid input is
//! answered as Slack answers it: `invalid_arguments` with
//! `response_metadata.messages` naming the field by JSON pointer
//! (webapi/views.publish.error.slack-api-ref.json). Pure; no IO.

use serde_json::{json, Value};

use super::state::State;
use super::Config;

/// Blocks a Home tab may hold.
pub const MAX_BLOCKS: usize = 100;
/// The largest view Slack takes (`view_too_large` above it).
const MAX_VIEW_BYTES: usize = 250 * 1024;

/// Why `views.publish` refuses, as Slack says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `error` alone.
    Error(&'static str),
    /// `invalid_arguments` with these `response_metadata.messages`.
    InvalidArguments(Vec<String>),
}

impl Refusal {
    pub fn body(&self) -> Value {
        match self {
            Refusal::Error(code) => json!({ "ok": false, "error": code }),
            Refusal::InvalidArguments(messages) => json!({
                "ok": false,
                "error": "invalid_arguments",
                "response_metadata": { "messages": messages }
            }),
        }
    }
}

/// Publishes `view` as `user`'s Home tab; returns the view as Slack stores
/// and returns it.
pub(crate) fn publish(
    config: &Config,
    st: &mut State,
    user: Option<&str>,
    view: Option<&Value>,
    hash: Option<&str>,
) -> Result<Value, Refusal> {
    let user = user
        .filter(|u| is_user_id(u))
        .ok_or_else(|| Refusal::InvalidArguments(vec!["invalid `user_id`".into()]))?;
    let view = match view {
        Some(view @ Value::Object(_)) => view,
        _ => {
            return Err(Refusal::InvalidArguments(vec![
                "[ERROR] failed to match all allowed schemas [json-pointer:/view]".into(),
                "[ERROR] must provide an object [json-pointer:/view]".into(),
            ]))
        }
    };
    if view.to_string().len() > MAX_VIEW_BYTES {
        return Err(Refusal::Error("view_too_large"));
    }
    let problems = problems(view);
    if !problems.is_empty() {
        return Err(Refusal::InvalidArguments(problems));
    }
    if !st.home_tab_enabled {
        return Err(Refusal::Error("not_enabled"));
    }
    let previous = st.views.get(user);
    if let (Some(hash), Some(previous)) = (hash, previous) {
        if previous["hash"].as_str() != Some(hash) {
            return Err(Refusal::Error("hash_conflict"));
        }
    }
    let id = previous
        .and_then(|p| p["id"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("V0FAKE{:05}", st.next_counter()));
    let n = st.next_counter();
    let mut blocks = view["blocks"].as_array().cloned().unwrap_or_default();
    for (i, block) in blocks.iter_mut().enumerate() {
        if block.get("block_id").is_none() {
            // Slack names unnamed blocks itself, with short random ids.
            block["block_id"] = json!(format!("fk{n:x}b{i}"));
        }
    }
    let stored = json!({
        "id": id,
        "team_id": config.team_id,
        "type": "home",
        "close": null,
        "submit": null,
        "blocks": blocks,
        "private_metadata": view["private_metadata"].as_str().unwrap_or_default(),
        "callback_id": view["callback_id"].as_str().unwrap_or_default(),
        "state": { "values": {} },
        "hash": format!("{}.{n:08x}", State::unix_now()),
        "clear_on_close": false,
        "notify_on_close": false,
        "root_view_id": id,
        "previous_view_id": null,
        "app_id": config.app_id,
        "external_id": view["external_id"].as_str().unwrap_or_default(),
        "bot_id": config.bot_id
    });
    st.views.insert(user.to_string(), stored.clone());
    Ok(stored)
}

/// A user id as Slack writes them (`U…` or, in Enterprise Grid, `W…`).
fn is_user_id(user: &str) -> bool {
    user.len() >= 2
        && (user.starts_with('U') || user.starts_with('W'))
        && user
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// What is wrong with a Home tab view, as Slack's messages say it.
pub(crate) fn problems(view: &Value) -> Vec<String> {
    let mut out = vec![];
    let mut problem = |what: &str, pointer: &str| {
        out.push(format!("[ERROR] {what} [json-pointer:/view{pointer}]"));
    };
    if view["type"].as_str() != Some("home") {
        problem("must be `home`", "/type");
    }
    let Some(blocks) = view["blocks"].as_array() else {
        problem("missing required field: blocks", "");
        return out;
    };
    if blocks.len() > MAX_BLOCKS {
        problem(
            &format!("no more than {MAX_BLOCKS} items allowed"),
            "/blocks",
        );
    }
    for (i, block) in blocks.iter().enumerate() {
        let at = format!("/blocks/{i}");
        let mut limit = |pointer: &str, max: usize| {
            if let Some(text) = block.pointer(pointer).and_then(Value::as_str) {
                if text.chars().count() > max {
                    problem(
                        &format!("must be less than {} characters", max + 1),
                        &format!("{at}{pointer}"),
                    );
                }
            }
        };
        match block["type"].as_str() {
            Some("header") => limit("/text/text", 150),
            Some("section") => {
                limit("/text/text", 3000);
                limit("/accessory/text/text", 75);
                limit("/accessory/action_id", 255);
                limit("/accessory/value", 2000);
            }
            Some("context") => {
                for j in 0..block["elements"].as_array().map_or(0, Vec::len) {
                    limit(&format!("/elements/{j}/text"), 3000);
                }
            }
            Some("actions") => {
                for j in 0..block["elements"].as_array().map_or(0, Vec::len) {
                    limit(&format!("/elements/{j}/text/text"), 75);
                    limit(&format!("/elements/{j}/action_id"), 255);
                    limit(&format!("/elements/{j}/value"), 2000);
                }
            }
            Some("divider" | "image" | "rich_text" | "input" | "markdown") => {}
            _ => problem("failed to match all allowed schemas", &at),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Value {
        json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    }

    #[test]
    fn a_view_within_slacks_limits_has_no_problems() {
        let view = json!({"type": "home", "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "selfheal"}},
            section("hello"),
            {"type": "divider"},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "x"}]}
        ]});
        assert_eq!(problems(&view), Vec::<String>::new());
    }

    #[test]
    fn every_limit_is_named_by_its_json_pointer() {
        let mut blocks: Vec<Value> = (0..101).map(|_| json!({"type": "divider"})).collect();
        blocks[1] = section(&"x".repeat(3001));
        blocks[2] = json!({"type": "section", "text": {"type": "mrkdwn", "text": "ok"},
            "accessory": {"type": "button", "text": {"type": "plain_text", "text": "b".repeat(76)},
                          "action_id": "a".repeat(256), "value": "v".repeat(2001)}});
        blocks[3] = json!({"type": "carousel"});
        let view = json!({"type": "modal", "blocks": blocks});
        assert_eq!(
            problems(&view),
            [
                "[ERROR] must be `home` [json-pointer:/view/type]",
                "[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]",
                "[ERROR] must be less than 3001 characters [json-pointer:/view/blocks/1/text/text]",
                "[ERROR] must be less than 76 characters [json-pointer:/view/blocks/2/accessory/text/text]",
                "[ERROR] must be less than 256 characters [json-pointer:/view/blocks/2/accessory/action_id]",
                "[ERROR] must be less than 2001 characters [json-pointer:/view/blocks/2/accessory/value]",
                "[ERROR] failed to match all allowed schemas [json-pointer:/view/blocks/3]",
            ]
        );
    }
}
