//! The Web API side: `/api/<method>` over HTTP/1.1. Parses JSON bodies, form bodies
//! and query strings alike (slack-morphism POSTs JSON and GETs with a query), checks
//! the token, applies injected failures, and answers like Slack: HTTP 200 with
//! `{"ok": ...}`, except 429 for rate limits.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::payloads;
use super::socket::{self, OutFrame};
use super::state::{ApiCall, Ephemeral, Message, State};
use super::views;
use super::{Config, Failure, Inner, MessageEdit};

/// Methods the fake implements; any other answers `unknown_method`.
const METHODS: &[&str] = &[
    "apps.connections.open",
    "auth.teams.list",
    "auth.test",
    "chat.getPermalink",
    "chat.postEphemeral",
    "chat.postMessage",
    "chat.update",
    "conversations.history",
    "conversations.info",
    "conversations.list",
    "conversations.replies",
    "users.info",
    "views.publish",
];

/// Every scope some method of the fake needs (see `needed_scope`), which is
/// what the bot token is granted unless the builder says otherwise.
pub const ENFORCED_SCOPES: &[&str] = &[
    "channels:history",
    "groups:history",
    "channels:read",
    "groups:read",
    "chat:write",
    "users:read",
];

/// `conversations.list` page size when the caller sets no `limit` (Slack: 100).
const DEFAULT_PAGE: usize = 100;

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/link", get(socket::link))
        .route("/link/", get(socket::link))
        .fallback(api)
        .with_state(inner)
}

/// A method's answer: the JSON body plus frames to deliver once the state is unlocked.
struct Reply {
    body: Value,
    frames: Vec<OutFrame>,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Reply {
            body,
            frames: Vec::new(),
        }
    }

    fn error(code: &str) -> Self {
        Reply::ok(json!({ "ok": false, "error": code }))
    }
}

async fn api(
    AxumState(inner): AxumState<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(method) = uri.path().strip_prefix("/api/") else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    // slack-morphism joins the base URL and method with "/", so `.../api//chat.update`.
    let method = method.trim_start_matches('/').to_string();
    let at = Instant::now();
    let params = parse_params(&uri, &headers, &body);
    let token = bearer_token(&headers).or_else(|| str_param(&params, "token"));

    let failure = inner
        .update(|st| take_failure(st, &method).or_else(|| rate_limit(st, &method, &params, at)));
    let late_by = match failure {
        Some(Failure::LateReply(delay)) => Some(delay),
        _ => None,
    };
    if let Some(failure) = failure {
        let response = match failure {
            Failure::Hang(delay) => {
                let mut stopping = inner.stopping.clone();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => None,
                    _ = stopping.wait() => {
                        Some((StatusCode::SERVICE_UNAVAILABLE, "fake slack is shutting down").into_response())
                    }
                }
            }
            Failure::RateLimited { retry_after_secs } => {
                record(&inner, &method, at, &params, 429, Some("ratelimited"));
                Some(
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [(header::RETRY_AFTER, retry_after_secs.to_string())],
                        Json(json!({ "ok": false, "error": "ratelimited" })),
                    )
                        .into_response(),
                )
            }
            Failure::Status(code) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                record(&inner, &method, at, &params, status.as_u16(), None);
                Some((status, format!("fake slack: injected HTTP {code}")).into_response())
            }
            Failure::Error(code) => {
                record(&inner, &method, at, &params, 200, Some(&code));
                Some(Json(json!({ "ok": false, "error": code })).into_response())
            }
            // Handled below: the call goes through, only the answer waits.
            Failure::LateReply(_) => None,
        };
        if let Some(response) = response {
            return response;
        }
    }

    let (reply, scopes) = inner.update(|st| {
        let reply = handle(&inner.config, st, &method, token.as_deref(), &params);
        // Like Slack, every answer to a known token says what it may do.
        let scopes = match token.as_deref() {
            Some(t) if t == inner.config.bot_token => Some(st.bot_scopes.join(",")),
            Some(t) if t == inner.config.app_token => Some("connections:write".to_string()),
            _ => None,
        };
        let error = reply.body["error"].as_str().map(str::to_string);
        st.calls.push(ApiCall {
            method: method.clone(),
            at,
            params: Value::Object(params.clone()),
            status: 200,
            error,
        });
        (reply, scopes)
    });
    for frame in reply.frames {
        socket::dispatch(&inner, frame);
    }
    if let Some(delay) = late_by {
        let mut stopping = inner.stopping.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopping.wait() => {}
        }
    }
    let mut response = Json(reply.body).into_response();
    if let Some(value) = scopes.and_then(|s| header::HeaderValue::from_str(&s).ok()) {
        response.headers_mut().insert("x-oauth-scopes", value);
    }
    response
}

fn record(
    inner: &Inner,
    method: &str,
    at: Instant,
    params: &Map<String, Value>,
    status: u16,
    error: Option<&str>,
) {
    inner.update(|st| {
        st.calls.push(ApiCall {
            method: method.to_string(),
            at,
            params: Value::Object(params.clone()),
            status,
            error: error.map(str::to_string),
        })
    });
}

/// A 429 when a write exceeds the channel's token bucket (`burst` at once,
/// then one per `min_gap`), kept as GCRA: the bucket is full again at the
/// stored time, and a write is refused while that lies more than
/// `(burst - 1) × min_gap` ahead.
fn rate_limit(
    st: &mut State,
    method: &str,
    params: &Map<String, Value>,
    at: Instant,
) -> Option<Failure> {
    let limit = st.channel_rate_limit?;
    if method != "chat.postMessage" && method != "chat.update" {
        return None;
    }
    let channel = str_param(params, "channel")?;
    let tolerance = limit.min_gap * limit.burst.max(1).saturating_sub(1);
    let full_at = st
        .channel_full_at
        .get(&channel)
        .copied()
        .unwrap_or(at)
        .max(at);
    let allowed_at = full_at.checked_sub(tolerance).unwrap_or(at);
    if allowed_at > at {
        let wait = allowed_at - at;
        return Some(Failure::RateLimited {
            retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        });
    }
    st.channel_full_at.insert(channel, full_at + limit.min_gap);
    None
}

fn take_failure(st: &mut State, method: &str) -> Option<Failure> {
    for key in [method, "*"] {
        if let Some(failure) = st.failures.get_mut(key).and_then(|queue| queue.pop_front()) {
            return Some(failure);
        }
    }
    None
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .map(|token| token.trim().to_string())
}

/// Query string and body (JSON object or form) merged into one object; body wins.
fn parse_params(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Map<String, Value> {
    let mut params = Map::new();
    if let Some(query) = uri.query() {
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            params.insert(key.into_owned(), Value::String(value.into_owned()));
        }
    }
    if body.is_empty() {
        return params;
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|ct| ct.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) if !is_form => params.extend(object),
        _ => {
            for (key, value) in url::form_urlencoded::parse(body) {
                params.insert(key.into_owned(), Value::String(value.into_owned()));
            }
        }
    }
    params
}

/// A parameter as text (form values are text already; JSON numbers and booleans are
/// rendered). Empty strings count as absent, as in Slack.
fn str_param(params: &Map<String, Value>, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// A parameter holding JSON (blocks, attachments): inline in JSON bodies, encoded as a
/// string in forms.
fn json_param(params: &Map<String, Value>, key: &str) -> Option<Value> {
    match params.get(key)? {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => serde_json::from_str(s).ok(),
        Value::Null => None,
        other => Some(other.clone()),
    }
}

fn bool_param(params: &Map<String, Value>, key: &str) -> bool {
    match params.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        _ => false,
    }
}

fn handle(
    config: &Config,
    st: &mut State,
    method: &str,
    token: Option<&str>,
    params: &Map<String, Value>,
) -> Reply {
    if !METHODS.contains(&method) {
        return Reply::error("unknown_method");
    }
    let Some(token) = token else {
        return Reply::error("not_authed");
    };
    let wanted = if method == "apps.connections.open" {
        &config.app_token
    } else {
        &config.bot_token
    };
    if token != wanted {
        let known = token == config.app_token || token == config.bot_token;
        return Reply::error(if known {
            "not_allowed_token_type"
        } else {
            "invalid_auth"
        });
    }
    if let Some(needed) = needed_scope(method, params, st) {
        if !st.bot_scopes.iter().any(|s| s == needed) {
            return Reply::ok(json!({
                "ok": false,
                "error": "missing_scope",
                "needed": needed,
                "provided": st.bot_scopes.join(","),
            }));
        }
    }
    match method {
        "apps.connections.open" => connections_open(config, st),
        "auth.test" => Reply::ok(json!({
            "ok": true,
            "url": format!("https://{}.slack.com/", config.team_domain),
            "team": config.team_name,
            "user": config.bot_name,
            "team_id": config.team_id,
            "user_id": config.bot_user_id,
            "bot_id": config.bot_id,
            "is_enterprise_install": false
        })),
        "chat.postMessage" => post_message(config, st, params),
        "chat.update" => update(config, st, params),
        "chat.getPermalink" => permalink(st, params),
        "chat.postEphemeral" => post_ephemeral(st, params),
        "conversations.info" => {
            match str_param(params, "channel").and_then(|c| st.find_channel(&c)) {
                Some(ch) => {
                    Reply::ok(json!({ "ok": true, "channel": payloads::channel_json(config, &ch) }))
                }
                None => Reply::error("channel_not_found"),
            }
        }
        "conversations.list" => list_channels(config, st, params),
        "auth.teams.list" => teams(config, st),
        "conversations.history" => history(config, st, params),
        "conversations.replies" => replies(config, st, params),
        "views.publish" => {
            let view = json_param(params, "view");
            let hash = str_param(params, "hash");
            let user = str_param(params, "user_id");
            match views::publish(config, st, user.as_deref(), view.as_ref(), hash.as_deref()) {
                Ok(view) => Reply::ok(json!({ "ok": true, "view": view })),
                Err(refusal) => Reply::ok(refusal.body()),
            }
        }
        "users.info" => match str_param(params, "user") {
            Some(user) if user == config.bot_user_id => {
                Reply::ok(json!({ "ok": true, "user": payloads::bot_user_json(config) }))
            }
            Some(user) => match st.users.get(&user) {
                Some(user) => {
                    Reply::ok(json!({ "ok": true, "user": payloads::user_json(config, user) }))
                }
                None => Reply::error("user_not_found"),
            },
            None => Reply::error("user_not_found"),
        },
        _ => Reply::error("unknown_method"),
    }
}

/// The bot scope a method needs, as Slack's method pages list it; private
/// channels need the `groups:` twin of the `channels:` scope.
fn needed_scope(method: &str, params: &Map<String, Value>, st: &State) -> Option<&'static str> {
    let private = || {
        str_param(params, "channel")
            .and_then(|c| st.find_channel(&c))
            .is_some_and(|c| c.is_private)
    };
    Some(match method {
        "chat.postMessage" | "chat.update" | "chat.postEphemeral" => "chat:write",
        "conversations.info" if private() => "groups:read",
        "conversations.info" | "conversations.list" => "channels:read",
        "conversations.history" | "conversations.replies" if private() => "groups:history",
        "conversations.history" | "conversations.replies" => "channels:history",
        "users.info" => "users:read",
        // `views.publish` needs none: any bot token may publish its Home tab.
        _ => return None,
    })
}

fn connections_open(config: &Config, st: &mut State) -> Reply {
    let ticket = format!("{:x}", st.next_counter() * 7_919 + 1_000_003);
    st.tickets.insert(ticket.clone());
    Reply::ok(json!({
        "ok": true,
        "url": format!("ws://{}/link/?ticket={ticket}&app_id={}", config.addr, config.app_id)
    }))
}

fn post_message(config: &Config, st: &mut State, params: &Map<String, Value>) -> Reply {
    let Some(channel) = str_param(params, "channel").and_then(|c| st.find_channel(&c)) else {
        return Reply::error("channel_not_found");
    };
    if !channel.is_member {
        return Reply::error("not_in_channel");
    }
    let text = str_param(params, "text");
    let blocks = json_param(params, "blocks");
    let attachments = json_param(params, "attachments");
    if text.is_none() && blocks.is_none() && attachments.is_none() {
        return Reply::error("no_text");
    }
    let thread_ts = str_param(params, "thread_ts");
    if let Some(thread_ts) = &thread_ts {
        // Slack accepts a thread_ts it has never seen, but not one of a deleted parent.
        if st.is_deleted(&channel.id, thread_ts) {
            return Reply::error("thread_not_found");
        }
    }
    let mut message = Message {
        user: Some(config.bot_user_id.clone()),
        bot_id: Some(config.bot_id.clone()),
        app_id: Some(config.app_id.clone()),
        username: Some(config.bot_name.clone()),
        text: text.unwrap_or_default(),
        blocks,
        attachments,
        by_bot: true,
        ..st.new_message(&channel.id, thread_ts.as_deref())
    };
    if message.thread_ts.is_some() && bool_param(params, "reply_broadcast") {
        message.subtype = Some("thread_broadcast".to_string());
    }
    let body = json!({
        "ok": true,
        "channel": channel.id,
        "ts": message.ts,
        "message": payloads::message_json(config, st, &message)
    });
    let mut frames = Vec::new();
    if st.echo_own_messages {
        let event = payloads::message_event(config, st, &message, &channel);
        frames.push(st.events_api_frame(config, event));
    }
    st.store_message(message);
    Reply { body, frames }
}

fn update(config: &Config, st: &mut State, params: &Map<String, Value>) -> Reply {
    let Some(channel) = str_param(params, "channel").and_then(|c| st.find_channel(&c)) else {
        return Reply::error("channel_not_found");
    };
    let Some(ts) = str_param(params, "ts") else {
        return Reply::error("message_not_found");
    };
    match st.find_message(&channel.id, &ts) {
        None => return Reply::error("message_not_found"),
        Some(message) if !message.by_bot => return Reply::error("cant_update_message"),
        Some(_) => {}
    }
    let edit = MessageEdit {
        text: str_param(params, "text"),
        blocks: json_param(params, "blocks"),
        attachments: json_param(params, "attachments"),
    };
    if edit == MessageEdit::default() {
        return Reply::error("no_text");
    }
    let edited_ts = st.next_ts();
    let Some((previous, current)) = st.apply_edit(&channel.id, &ts, &edit, &edited_ts) else {
        return Reply::error("message_not_found");
    };
    let mut body = json!({
        "ok": true,
        "channel": channel.id,
        "ts": current.ts,
        "text": current.text,
        "message": payloads::message_json(config, st, &current)
    });
    if let Some(thread_ts) = &current.thread_ts {
        body["thread_ts"] = json!(thread_ts);
    }
    let mut frames = Vec::new();
    if st.echo_own_messages {
        let event =
            payloads::message_changed_event(config, st, &previous, &current, &channel, &edited_ts);
        frames.push(st.events_api_frame(config, event));
    }
    Reply { body, frames }
}

fn permalink(st: &State, params: &Map<String, Value>) -> Reply {
    let Some(channel) = str_param(params, "channel").and_then(|c| st.find_channel(&c)) else {
        return Reply::error("channel_not_found");
    };
    let Some(message) =
        str_param(params, "message_ts").and_then(|ts| st.find_message(&channel.id, &ts))
    else {
        return Reply::error("message_not_found");
    };
    let mut permalink = format!(
        "https://fake.slack.local/archives/{}/p{}",
        channel.id,
        message.ts.replace('.', "")
    );
    if let Some(thread_ts) = &message.thread_ts {
        permalink.push_str(&format!("?thread_ts={thread_ts}&cid={}", channel.id));
    }
    Reply::ok(json!({ "ok": true, "channel": channel.id, "permalink": permalink }))
}

fn post_ephemeral(st: &mut State, params: &Map<String, Value>) -> Reply {
    let Some(channel) = str_param(params, "channel").and_then(|c| st.find_channel(&c)) else {
        return Reply::error("channel_not_found");
    };
    let Some(user) = str_param(params, "user") else {
        return Reply::error("user_not_in_channel");
    };
    let text = str_param(params, "text");
    let blocks = json_param(params, "blocks");
    if text.is_none() && blocks.is_none() && json_param(params, "attachments").is_none() {
        return Reply::error("no_text");
    }
    let message_ts = st.next_ts();
    st.ephemerals.push(Ephemeral {
        channel: channel.id,
        user,
        text: text.unwrap_or_default(),
        blocks,
        thread_ts: str_param(params, "thread_ts"),
        at: Instant::now(),
    });
    Reply::ok(json!({ "ok": true, "message_ts": message_ts }))
}

/// A channel's top-level messages (and thread broadcasts), newest first, within
/// `oldest`..`latest`. One page: `has_more` says whether `limit` cut it short;
/// there are no cursors.
fn history(config: &Config, st: &State, params: &Map<String, Value>) -> Reply {
    let Some(channel) = str_param(params, "channel").and_then(|c| st.find_channel(&c)) else {
        return Reply::error("channel_not_found");
    };
    let window = Window::of(params);
    let found: Vec<&Message> = st
        .messages
        .get(&channel.id)
        .into_iter()
        .flatten()
        .filter(|m| m.thread_ts.is_none() || m.subtype.as_deref() == Some("thread_broadcast"))
        .filter(|m| window.contains(&m.ts))
        .rev()
        .collect();
    page(config, st, params, found)
}

/// A thread: its parent first, then its replies within `oldest`..`latest`,
/// oldest first. One page, as with [`history`].
fn replies(config: &Config, st: &State, params: &Map<String, Value>) -> Reply {
    let Some(channel) = str_param(params, "channel").and_then(|c| st.find_channel(&c)) else {
        return Reply::error("channel_not_found");
    };
    let Some(parent) = str_param(params, "ts").and_then(|ts| st.find_message(&channel.id, &ts))
    else {
        return Reply::error("thread_not_found");
    };
    let root = parent.thread_ts.as_deref().unwrap_or(&parent.ts);
    let Some(parent) = st.find_message(&channel.id, root) else {
        return Reply::error("thread_not_found");
    };
    let window = Window::of(params);
    let mut found = vec![parent];
    found.extend(st.messages[&channel.id].iter().filter(|m| {
        m.ts != parent.ts && m.thread_ts.as_deref() == Some(root) && window.contains(&m.ts)
    }));
    page(config, st, params, found)
}

fn page(config: &Config, st: &State, params: &Map<String, Value>, found: Vec<&Message>) -> Reply {
    let limit = str_param(params, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(DEFAULT_PAGE);
    let has_more = found.len() > limit;
    let messages: Vec<Value> = found
        .into_iter()
        .take(limit)
        .map(|m| payloads::message_json(config, st, m))
        .collect();
    Reply::ok(json!({ "ok": true, "messages": messages, "has_more": has_more }))
}

/// The `oldest`/`latest`/`inclusive` bounds of a history request; Slack's
/// bounds are exclusive by default.
struct Window {
    oldest: Option<(u64, u64)>,
    latest: Option<(u64, u64)>,
    inclusive: bool,
}

impl Window {
    fn of(params: &Map<String, Value>) -> Self {
        Window {
            oldest: str_param(params, "oldest").and_then(|ts| ts_key(&ts)),
            latest: str_param(params, "latest").and_then(|ts| ts_key(&ts)),
            inclusive: bool_param(params, "inclusive"),
        }
    }

    fn contains(&self, ts: &str) -> bool {
        let Some(key) = ts_key(ts) else {
            return false;
        };
        let after = self
            .oldest
            .is_none_or(|o| key > o || (self.inclusive && key == o));
        let before = self
            .latest
            .is_none_or(|l| key < l || (self.inclusive && key == l));
        after && before
    }
}

/// A `ts` as (seconds, microseconds), so that timestamps compare as numbers.
fn ts_key(ts: &str) -> Option<(u64, u64)> {
    let (secs, fraction) = ts.split_once('.').unwrap_or((ts, ""));
    let micros: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(6)
        .collect();
    Some((secs.parse().ok()?, micros.parse().ok()?))
}

fn list_channels(config: &Config, st: &State, params: &Map<String, Value>) -> Reply {
    let types = str_param(params, "types").unwrap_or_else(|| "public_channel".to_string());
    let public = types.split(',').any(|t| t.trim() == "public_channel");
    let private = types.split(',').any(|t| t.trim() == "private_channel");
    let limit = str_param(params, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|&l| l > 0)
        .unwrap_or(DEFAULT_PAGE)
        .min(1000);
    let start = match str_param(params, "cursor") {
        None => 0,
        Some(cursor) => match cursor
            .strip_prefix("fake_cursor_")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(start) => start,
            None => return Reply::error("invalid_cursor"),
        },
    };
    // An org-wide install's token lists one workspace at a time.
    let team = str_param(params, "team_id");
    if st.org_install.is_some() && team.is_none() {
        return Reply::error("missing_argument");
    }
    let matching: Vec<_> = st
        .channels
        .values()
        .filter(|ch| if ch.is_private { private } else { public })
        .filter(|ch| team.is_none() || team.as_deref() == Some(st.team_of(config, &ch.id)))
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(limit)
        .map(|ch| payloads::channel_json(config, ch))
        .collect();
    let next = start + page.len();
    let next_cursor = if next < matching.len() {
        format!("fake_cursor_{next}")
    } else {
        String::new()
    };
    Reply::ok(json!({
        "ok": true,
        "channels": page,
        "response_metadata": { "next_cursor": next_cursor }
    }))
}

/// The workspace of a channel (see `FakeSlack::set_channel_team`).
/// `auth.teams.list`: the workspaces the app is in (for an org-wide install,
/// those it was added to; otherwise its one workspace).
fn teams(config: &Config, st: &State) -> Reply {
    let mut ids: Vec<&str> = std::iter::once(config.team_id.as_str())
        .chain(st.channel_teams.values().map(String::as_str))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let teams: Vec<Value> = ids
        .into_iter()
        .map(|id| {
            let name = st.team_names.get(id).cloned();
            json!({ "id": id, "name": name.unwrap_or_else(|| format!("Workspace {id}")) })
        })
        .collect();
    Reply::ok(json!({
        "ok": true,
        "teams": teams,
        "response_metadata": { "next_cursor": "" }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slack::state::Channel;

    #[test]
    fn every_scope_a_method_needs_is_enforced() {
        let mut st = State::new(std::time::Duration::from_secs(3), false, Vec::new());
        for (id, is_private) in [("C0PUBLIC", false), ("C0PRIVATE", true)] {
            st.channels.insert(
                id.to_string(),
                Channel {
                    id: id.to_string(),
                    name: id.to_lowercase(),
                    is_private,
                    is_member: true,
                },
            );
            let params = json!({ "channel": id });
            let params = params.as_object().expect("an object");
            for method in METHODS {
                if let Some(needed) = needed_scope(method, params, &st) {
                    assert!(ENFORCED_SCOPES.contains(&needed), "{method}: {needed}");
                }
            }
        }
    }
}
