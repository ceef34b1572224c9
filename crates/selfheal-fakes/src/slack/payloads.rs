//! JSON shapes the fake sends: events, envelopes, Socket Mode control frames and Web
//! API objects. Each mirrors a file in `shared/slack-payloads/` (named next to it).
//! Pure functions of the state; no IO.

use serde_json::{json, Map, Value};

use super::state::{Channel, Message, State, User};
use super::Config;

/// `blocks` a Slack client attaches to a typed message (one rich-text section).
pub fn rich_text_blocks(text: &str) -> Value {
    json!([{
        "type": "rich_text",
        "block_id": "fake0",
        "elements": [{
            "type": "rich_text_section",
            "elements": [{ "type": "text", "text": text }]
        }]
    }])
}

/// `bot_profile` of a modern app message (event_callback_bot_message_event_payload).
fn bot_profile(config: &Config, bot_id: &str, name: &str, app_id: Option<&str>) -> Value {
    json!({
        "id": bot_id,
        "deleted": false,
        "name": name,
        "updated": 1_700_000_000u64,
        "app_id": app_id,
        "icons": {
            "image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png",
            "image_48": "https://a.slack-edge.com/80588/img/plugins/app/bot_48.png",
            "image_72": "https://a.slack-edge.com/80588/img/plugins/app/service_72.png"
        },
        "team_id": config.team_id
    })
}

/// A message object as Slack renders it inside events and API responses (no channel
/// fields). Classic integrations get `subtype: bot_message` and `username`; modern
/// apps (the bot under test included) get `user`, `bot_id`, `app_id` and
/// `bot_profile`; people get `client_msg_id` and `blocks`.
pub fn message_json(config: &Config, st: &State, m: &Message) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), json!("message"));
    if let Some(subtype) = &m.subtype {
        o.insert("subtype".into(), json!(subtype));
    }
    o.insert("text".into(), json!(m.text));
    let classic = m.subtype.as_deref() == Some("bot_message");
    if let Some(user) = &m.user {
        o.insert("user".into(), json!(user));
    }
    if let Some(bot_id) = &m.bot_id {
        o.insert("bot_id".into(), json!(bot_id));
        if classic {
            o.insert(
                "username".into(),
                json!(m.username.clone().unwrap_or_default()),
            );
        } else {
            if let Some(app_id) = &m.app_id {
                o.insert("app_id".into(), json!(app_id));
            }
            let name = m.username.clone().unwrap_or_else(|| "app".to_string());
            o.insert(
                "bot_profile".into(),
                bot_profile(config, bot_id, &name, m.app_id.as_deref()),
            );
        }
    } else if m.user.is_some() {
        // Derived from the ts, which is unique, so the id is unique too.
        let digits: String = m.ts.chars().filter(char::is_ascii_digit).collect();
        let tail = &digits[digits.len().saturating_sub(12)..];
        o.insert(
            "client_msg_id".into(),
            json!(format!("c1e27e5a-0000-4000-8000-{tail:0>12}")),
        );
    }
    if let Some(blocks) = &m.blocks {
        o.insert("blocks".into(), blocks.clone());
    }
    if let Some(attachments) = &m.attachments {
        o.insert("attachments".into(), attachments.clone());
    }
    o.insert("ts".into(), json!(m.ts));
    if !classic {
        o.insert("team".into(), json!(config.team_id));
    }
    if let Some(thread_ts) = &m.thread_ts {
        o.insert("thread_ts".into(), json!(thread_ts));
        if let Some(parent_user) = st
            .find_message(&m.channel, thread_ts)
            .and_then(|parent| parent.user.clone())
        {
            o.insert("parent_user_id".into(), json!(parent_user));
        }
    }
    if let (Some(edited_ts), Some(editor)) = (&m.edited_ts, m.user.as_ref().or(m.bot_id.as_ref())) {
        o.insert("edited".into(), json!({ "user": editor, "ts": edited_ts }));
    }
    Value::Object(o)
}

fn channel_type(channel: &Channel) -> &'static str {
    if channel.is_private {
        "group"
    } else {
        "channel"
    }
}

/// A `message` event (event_callback_*_message_event_payload).
pub fn message_event(config: &Config, st: &State, m: &Message, channel: &Channel) -> Value {
    let mut event = message_json(config, st, m);
    event["channel"] = json!(channel.id);
    event["event_ts"] = json!(m.ts);
    event["channel_type"] = json!(channel_type(channel));
    event
}

/// A `message_changed` event (event_callback_message_changed*.slack-morphism.json).
pub fn message_changed_event(
    config: &Config,
    st: &State,
    previous: &Message,
    current: &Message,
    channel: &Channel,
    event_ts: &str,
) -> Value {
    json!({
        "type": "message",
        "subtype": "message_changed",
        "hidden": true,
        "message": message_json(config, st, current),
        "previous_message": message_json(config, st, previous),
        "channel": channel.id,
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": channel_type(channel),
    })
}

/// The `event_callback` payload of an `events_api` envelope.
pub fn event_callback(config: &Config, event: Value, event_id: &str, event_time: u64) -> Value {
    json!({
        "token": "verification-token",
        "team_id": config.team_id,
        "context_team_id": config.team_id,
        "context_enterprise_id": null,
        "api_app_id": config.app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": event_time,
        "authorizations": [{
            "enterprise_id": null,
            "team_id": config.team_id,
            "user_id": config.bot_user_id,
            "is_bot": true,
            "is_enterprise_install": false
        }],
        "is_ext_shared_channel": false,
        "event_context": format!("4-fake-{event_id}")
    })
}

/// Turns an `event_callback` into what an org-wide install on Enterprise
/// Grid receives from workspace `team_id` of org `enterprise_id`, as in
/// bolt-python's tests/scenario_tests/test_events_org_apps.py: the
/// installation is the org's, so `authorizations[0].team_id` is `null`.
pub fn as_org_install(config: &Config, payload: &mut Value, enterprise_id: &str, team_id: &str) {
    payload["team_id"] = json!(team_id);
    payload["enterprise_id"] = json!(enterprise_id);
    payload["context_team_id"] = json!(team_id);
    payload["context_enterprise_id"] = json!(enterprise_id);
    payload["authorizations"] = json!([{
        "enterprise_id": enterprise_id,
        "team_id": null,
        "user_id": config.bot_user_id,
        "is_bot": true,
        "is_enterprise_install": true
    }]);
    if let Some(event) = payload["event"].as_object_mut() {
        if event.contains_key("team") {
            event.insert("team".into(), json!(team_id));
        }
    }
}

/// socket_mode_events_api_message_envelope / ..._retry_attempt1.
pub fn events_api_envelope(
    envelope_id: &str,
    payload: &Value,
    retry_attempt: u32,
    retry_reason: &str,
) -> Value {
    json!({
        "envelope_id": envelope_id,
        "payload": payload,
        "type": "events_api",
        "accepts_response_payload": false,
        "retry_attempt": retry_attempt,
        "retry_reason": retry_reason
    })
}

fn user_name(st: &State, user: &str) -> String {
    st.users
        .get(user)
        .map(|u| u.name.clone())
        .unwrap_or_else(|| user.to_lowercase())
}

/// socket_mode_slash_commands.SYNTHETIC / socket_mode_slash_commands_envelope.
pub fn slash_command_envelope(
    config: &Config,
    st: &mut State,
    envelope_id: &str,
    user: &str,
    channel: &str,
    command: &str,
    text: &str,
) -> Value {
    let (channel_id, channel_name) = match st.find_channel(channel) {
        Some(ch) => (ch.id, ch.name),
        None => (channel.to_string(), "unknown".to_string()),
    };
    let n = st.next_counter();
    // The workspace the command was run in: the channel's.
    let team_id = st.team_of(config, &channel_id).to_string();
    let mut envelope = json!({
        "envelope_id": envelope_id,
        "payload": {
            "token": "verification-token",
            "team_id": team_id,
            "team_domain": config.team_domain,
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user,
            "user_name": user_name(st, user),
            "command": command,
            "text": text,
            "api_app_id": config.app_id,
            "is_enterprise_install": "false",
            "response_url": format!("https://hooks.slack.com/commands/{}/{n}/fake", config.team_id),
            "trigger_id": format!("{n}.{n}.fake")
        },
        "type": "slash_commands",
        "accepts_response_payload": true
    });
    if let Some(enterprise_id) = &st.org_install {
        envelope["payload"]["enterprise_id"] = json!(enterprise_id);
        envelope["payload"]["is_enterprise_install"] = json!("true");
    }
    envelope
}

/// The element (an accessory or in `elements`) whose `action_id` is this.
fn button_of<'a>(blocks: Option<&'a Value>, action_id: &str) -> Option<&'a Value> {
    blocks?.as_array()?.iter().find_map(|block| {
        let elements = block.get("elements").and_then(Value::as_array);
        elements
            .into_iter()
            .flatten()
            .chain(block.get("accessory"))
            .find(|e| e.get("action_id").and_then(Value::as_str) == Some(action_id))
    })
}

/// The `block_id` of the block holding `action_id`, if the message has one.
fn block_id_of(blocks: Option<&Value>, action_id: &str) -> Option<String> {
    blocks?.as_array()?.iter().find_map(|block| {
        let elements = block.get("elements").and_then(Value::as_array);
        let accessory = block.get("accessory");
        let holds = elements
            .into_iter()
            .flatten()
            .chain(accessory)
            .any(|e| e.get("action_id").and_then(Value::as_str) == Some(action_id));
        holds.then(|| {
            block
                .get("block_id")
                .and_then(Value::as_str)
                .unwrap_or("fake")
                .to_string()
        })
    })
}

/// socket_mode_interactive_block_actions.SYNTHETIC / ..._envelope.slack-docs.
#[allow(clippy::too_many_arguments)]
pub fn block_actions_envelope(
    config: &Config,
    st: &mut State,
    envelope_id: &str,
    user: &str,
    channel: &str,
    message_ts: &str,
    action_id: &str,
    value: &str,
) -> Value {
    let (channel_id, channel_name) = match st.find_channel(channel) {
        Some(ch) => (ch.id, ch.name),
        None => (channel.to_string(), "unknown".to_string()),
    };
    let message = st.find_message(&channel_id, message_ts).cloned();
    let block_id = block_id_of(message.as_ref().and_then(|m| m.blocks.as_ref()), action_id)
        .unwrap_or_else(|| "fake".to_string());
    let message_json = message
        .as_ref()
        .map(|m| message_json(config, st, m))
        .unwrap_or_else(|| json!({ "type": "message", "text": "", "ts": message_ts }));
    let action_ts = st.next_ts();
    let n = st.next_counter();
    json!({
        "envelope_id": envelope_id,
        "payload": {
            "type": "block_actions",
            "user": interactive_user(config, st, user),
            "api_app_id": config.app_id,
            "token": "verification-token",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel_id,
                "is_ephemeral": false
            },
            "trigger_id": format!("{n}.{n}.fake"),
            "team": { "id": config.team_id, "domain": config.team_domain },
            "channel": { "id": channel_id, "name": channel_name },
            "message": message_json,
            "response_url": format!("https://hooks.slack.com/actions/{}/{n}/fake", config.team_id),
            "actions": [{
                "action_id": action_id,
                "block_id": block_id,
                "text": { "type": "plain_text", "text": action_id, "emoji": true },
                "value": value,
                "type": "button",
                "action_ts": action_ts
            }]
        },
        "type": "interactive",
        "accepts_response_payload": false
    })
}

/// The `user` object of interactive payloads: `{id, username, name, team_id}`
/// as java-slack-sdk's captures have it (bolt-python's carry `{id, name}`).
fn interactive_user(config: &Config, st: &State, user: &str) -> Value {
    let name = user_name(st, user);
    let team = st.users.get(user).and_then(|u| u.team.as_deref());
    let team = team.unwrap_or(&config.team_id);
    json!({ "id": user, "username": name, "name": name, "team_id": team })
}

/// socket_mode_interactive_message_action_on_bot_message_envelope.java-slack-sdk.json
/// (and ..._envelope.bolt-python.json): a message shortcut used on `message`.
#[allow(clippy::too_many_arguments)]
pub fn message_action_envelope(
    config: &Config,
    st: &mut State,
    envelope_id: &str,
    user: &str,
    channel: &Channel,
    message: &Message,
    callback_id: &str,
) -> Value {
    let action_ts = st.next_ts();
    let n = st.next_counter();
    json!({
        "envelope_id": envelope_id,
        "payload": {
            "type": "message_action",
            "token": "verification-token",
            "action_ts": action_ts,
            "team": { "id": config.team_id, "domain": config.team_domain },
            "user": interactive_user(config, st, user),
            "channel": { "id": channel.id, "name": channel.name },
            "is_enterprise_install": false,
            "enterprise": null,
            "callback_id": callback_id,
            "trigger_id": format!("{n}.{n}.fake"),
            "response_url": format!("https://hooks.slack.com/app/{}/{n}/fake", config.team_id),
            "message_ts": message.ts,
            "message": message_json(config, st, message)
        },
        "type": "interactive",
        "accepts_response_payload": false
    })
}

/// The `event` of socket_mode_events_api_app_home_opened_envelope.java-slack-sdk.json
/// (`tab: "home"`, the view published before) and of
/// event_callback_app_home_opened_{home_no_view,messages_tab}.slack-web.json
/// (no view yet; the Messages tab).
pub fn app_home_opened_event(st: &mut State, user: &str, tab: &str) -> Value {
    let mut event = json!({
        "type": "app_home_opened",
        "user": user,
        "channel": dm_channel(user),
        "tab": tab,
        "event_ts": st.next_ts()
    });
    if tab == "home" {
        if let Some(view) = st.views.get(user) {
            event["view"] = view.clone();
        }
    }
    event
}

/// The id of the app's DM with `user`, stable per user.
fn dm_channel(user: &str) -> String {
    format!("D0{}", user.trim_start_matches(['U', 'W']))
}

/// socket_mode_interactive_block_actions_app_home_envelope.java-slack-sdk.json:
/// a button on `view`, the user's Home tab (`container.type: view`, no
/// channel, message or response_url).
#[allow(clippy::too_many_arguments)]
pub fn home_block_actions_envelope(
    config: &Config,
    st: &mut State,
    envelope_id: &str,
    user: &str,
    view: &Value,
    action_id: &str,
    value: Option<&str>,
) -> Value {
    let block_id = block_id_of(view.get("blocks"), action_id).unwrap_or_else(|| "fake".into());
    let button = button_of(view.get("blocks"), action_id);
    let action_ts = st.next_ts();
    let n = st.next_counter();
    // The action repeats the button's text and style, as Slack's does.
    let mut action = json!({
        "action_id": action_id,
        "block_id": block_id,
        "text": button
            .and_then(|b| b.get("text").cloned())
            .unwrap_or_else(|| json!({ "type": "plain_text", "text": action_id, "emoji": true })),
        "type": "button",
        "action_ts": action_ts
    });
    if let Some(value) = value {
        action["value"] = json!(value);
    }
    if let Some(style) = button.and_then(|b| b.get("style")) {
        action["style"] = style.clone();
    }
    json!({
        "envelope_id": envelope_id,
        "payload": {
            "type": "block_actions",
            "team": { "id": config.team_id, "domain": config.team_domain },
            "user": interactive_user(config, st, user),
            "api_app_id": config.app_id,
            "token": "verification-token",
            "container": { "type": "view", "view_id": view["id"] },
            "trigger_id": format!("{n}.{n}.fake"),
            "view": view,
            "actions": [action]
        },
        "type": "interactive",
        "accepts_response_payload": false
    })
}

/// socket_mode_hello.python-slack-sdk.json.
pub fn hello(config: &Config, num_connections: usize, connection: u64) -> Value {
    json!({
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": {
            "host": format!("applink-fake-{connection}"),
            "build_number": 1,
            "approximate_connection_time": 18060
        },
        "connection_info": { "app_id": config.app_id }
    })
}

/// socket_mode_disconnect_*.slack-docs.json.
pub fn disconnect(reason: &str, connection: u64) -> Value {
    json!({
        "type": "disconnect",
        "reason": reason,
        "debug_info": { "host": format!("applink-fake-{connection}") }
    })
}

/// webapi/conversations.info.success.
pub fn channel_json(config: &Config, ch: &Channel) -> Value {
    json!({
        "id": ch.id,
        "name": ch.name,
        "is_channel": !ch.is_private,
        "is_group": ch.is_private,
        "is_im": false,
        "is_mpim": false,
        "is_private": ch.is_private,
        "created": 1_700_000_000u64,
        "is_archived": false,
        "is_general": false,
        "unlinked": 0,
        "name_normalized": ch.name,
        "is_shared": false,
        "is_frozen": false,
        "is_org_shared": false,
        "is_pending_ext_shared": false,
        "pending_shared": [],
        "context_team_id": config.team_id,
        "updated": 1_700_000_000_000u64,
        "parent_conversation": null,
        "creator": "U0FAKEADMIN",
        "is_ext_shared": false,
        "shared_team_ids": [config.team_id],
        "pending_connected_team_ids": [],
        "is_member": ch.is_member,
        "topic": { "value": "", "creator": "", "last_set": 0 },
        "purpose": { "value": "", "creator": "", "last_set": 0 },
        "previous_names": []
    })
}

/// webapi/users.info.success.
pub fn user_json(config: &Config, user: &User) -> Value {
    let mut json = person_or_bot(
        config,
        &user.id,
        &user.name,
        user.is_admin,
        user.is_owner,
        None,
    );
    let team = user.team.as_deref().unwrap_or(&config.team_id);
    json["team_id"] = json!(team);
    // users.info of an Enterprise Grid member: the org-level role beside
    // the workspace's.
    if let Some(enterprise_id) = &user.org_admin_of {
        json["enterprise_user"] = json!({
            "id": user.id,
            "enterprise_id": enterprise_id,
            "enterprise_name": "Fake Org",
            "is_admin": true,
            "is_owner": false,
            "is_primary_owner": false,
            "teams": [team]
        });
    }
    json
}

/// The bot under test as `users.info` shows it.
pub fn bot_user_json(config: &Config) -> Value {
    person_or_bot(
        config,
        &config.bot_user_id,
        &config.bot_name,
        false,
        false,
        Some(&config.bot_id),
    )
}

fn person_or_bot(
    config: &Config,
    id: &str,
    name: &str,
    is_admin: bool,
    is_owner: bool,
    bot_id: Option<&str>,
) -> Value {
    let mut profile = json!({
        "avatar_hash": "ge3b51ca72de",
        "status_text": "",
        "status_emoji": "",
        "real_name": name,
        "display_name": name,
        "real_name_normalized": name,
        "display_name_normalized": name,
        "team": config.team_id
    });
    if let Some(bot_id) = bot_id {
        profile["bot_id"] = json!(bot_id);
        profile["api_app_id"] = json!(config.app_id);
    }
    json!({
        "id": id,
        "team_id": config.team_id,
        "name": name,
        "deleted": false,
        "color": "9f69e7",
        "real_name": name,
        "tz": "Europe/London",
        "tz_label": "Greenwich Mean Time",
        "tz_offset": 0,
        "profile": profile,
        "is_admin": is_admin,
        "is_owner": is_owner,
        "is_primary_owner": false,
        "is_restricted": false,
        "is_ultra_restricted": false,
        "is_bot": bot_id.is_some(),
        "updated": 1_700_000_000u64,
        "is_app_user": false,
        "has_2fa": false
    })
}
