//! The fake workspace's memory: channels, users, messages, and the records tests
//! assert on (calls, acks, envelopes). Plain data behind the `Inner` mutex; no IO and
//! nothing async here.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::payloads;
use super::socket::{ConnCommand, OutFrame};
use super::{Config, Failure, MessageEdit};

/// A message as the fake stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub ts: String,
    /// The parent's `ts` for a reply; `None` for a top-level message.
    pub thread_ts: Option<String>,
    pub channel: String,
    /// The author's user id: a person, the bot under test, or a modern app's bot user.
    /// Classic integrations have none.
    pub user: Option<String>,
    pub bot_id: Option<String>,
    pub app_id: Option<String>,
    /// Display name of another app (`bot_profile.name` or classic `username`).
    pub username: Option<String>,
    /// `bot_message` for classic integrations, `thread_broadcast` for broadcast replies.
    pub subtype: Option<String>,
    pub text: String,
    pub blocks: Option<Value>,
    pub attachments: Option<Value>,
    /// The text after every update, in order.
    pub edits: Vec<String>,
    /// The `ts` of the last edit, rendered as `edited.ts`.
    pub edited_ts: Option<String>,
    pub posted_at: Instant,
    /// Posted by the bot under test (through `chat.postMessage`).
    pub by_bot: bool,
}

/// One Web API request as the fake saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCall {
    pub method: String,
    pub at: Instant,
    /// Body (JSON or form) and query parameters merged into one object. Form values
    /// stay strings, as they arrived.
    pub params: Value,
    /// The HTTP status returned.
    pub status: u16,
    /// The `error` returned with `ok: false`, if any.
    pub error: Option<String>,
}

/// An acknowledgement read from a Socket Mode connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub envelope_id: String,
    /// When the acked envelope was sent, if the fake sent it.
    pub sent_at: Option<Instant>,
    pub acked_at: Instant,
    /// The ack's `payload` (slash command and interaction responses).
    pub payload: Option<Value>,
}

/// An envelope written to a Socket Mode connection.
#[derive(Debug, Clone, PartialEq)]
pub struct SentEnvelope {
    pub envelope_id: String,
    /// `payload.event_id` of `events_api` envelopes.
    pub event_id: Option<String>,
    /// `events_api`, `slash_commands` or `interactive`.
    pub kind: String,
    pub retry_attempt: u32,
    /// When it was written to the socket (until then, when it was queued).
    pub sent_at: Instant,
    /// The id of the connection it went to (1 for the first connection, and so on).
    pub connection: u64,
}

/// A `chat.postEphemeral` the fake accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Ephemeral {
    pub channel: String,
    pub user: String,
    pub text: String,
    pub blocks: Option<Value>,
    pub thread_ts: Option<String>,
    pub at: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct Channel {
    pub id: String,
    pub name: String,
    pub is_private: bool,
    pub is_member: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub name: String,
    pub is_admin: bool,
    pub is_owner: bool,
    /// The Enterprise Grid org (`E…`) this person administers, if any:
    /// `users.info` shows it as `enterprise_user.is_admin`.
    pub org_admin_of: Option<String>,
    /// The workspace (`T…`) this person belongs to, when not the default one;
    /// `is_admin` and `is_owner` are roles in it.
    pub team: Option<String>,
}

/// An open Socket Mode connection, as the dispatcher sees it.
pub(crate) struct Conn {
    pub id: u64,
    pub tx: UnboundedSender<ConnCommand>,
    /// A `disconnect` frame was sent; no more envelopes go here.
    pub draining: bool,
}

pub(crate) struct State {
    pub channels: BTreeMap<String, Channel>,
    pub users: BTreeMap<String, User>,
    /// Per channel id, in `ts` order (ts values only grow, so appending keeps order).
    pub messages: HashMap<String, Vec<Message>>,
    /// `(channel, ts)` of deleted messages.
    pub deleted: HashSet<(String, String)>,
    pub calls: Vec<ApiCall>,
    pub acks: Vec<Ack>,
    pub envelopes_sent: Vec<SentEnvelope>,
    pub ephemerals: Vec<Ephemeral>,
    pub connections: Vec<Conn>,
    /// Round-robin cursor into `connections`.
    pub next_conn: usize,
    /// When set, envelopes go only to these connections (while any is live):
    /// a test's way to land a payload on one replica of several.
    pub route_to: Option<Vec<u64>>,
    /// Frames waiting for a connection.
    pub queue: VecDeque<OutFrame>,
    /// Sent `events_api` envelopes awaiting an ack, by envelope id.
    pub pending: HashMap<String, OutFrame>,
    pub hellos: usize,
    /// Issued, unused `apps.connections.open` tickets.
    pub tickets: HashSet<String>,
    pub failures: HashMap<String, VecDeque<Failure>>,
    pub echo_own_messages: bool,
    pub pongs: bool,
    pub ack_timeout: Duration,
    /// The payload of the latest `events_api` envelope, for `redeliver_last`.
    pub last_event_payload: Option<Value>,
    /// Set when the app is installed org-wide on an Enterprise Grid org
    /// (the org's `E…` id): events then carry the org-app shape,
    /// `authorizations[0].team_id: null` and `is_enterprise_install: true`.
    pub org_install: Option<String>,
    /// The workspace (`T…`) of each channel that is not in the default one.
    pub channel_teams: HashMap<String, String>,
    /// Workspace names (`auth.teams.list`) other than `Workspace T…`.
    pub team_names: HashMap<String, String>,
    /// When set, writes (`chat.postMessage`, `chat.update`) to one channel
    /// beyond a token bucket (a burst, then one per gap) are answered 429, as
    /// Slack's per-channel limit does.
    pub channel_rate_limit: Option<ChannelRateLimit>,
    /// Per channel, when its bucket will be full again ("theoretical arrival
    /// time"), for `channel_rate_limit`.
    pub channel_full_at: HashMap<String, Instant>,
    /// The scopes the bot token was granted, sent in `x-oauth-scopes` and
    /// enforced per method as Slack does (`missing_scope`).
    pub bot_scopes: Vec<String>,
    /// Per user id, the Home tab view last published, as `views.publish`
    /// returned it.
    pub views: HashMap<String, Value>,
    /// The app's Home tab is on (its manifest's `home_tab_enabled`);
    /// without it `views.publish` answers `not_enabled`.
    pub home_tab_enabled: bool,
    last_ts_micros: u64,
    counter: u64,
}

impl State {
    pub fn new(ack_timeout: Duration, echo_own_messages: bool, bot_scopes: Vec<String>) -> Self {
        State {
            channels: BTreeMap::new(),
            users: BTreeMap::new(),
            messages: HashMap::new(),
            deleted: HashSet::new(),
            calls: Vec::new(),
            acks: Vec::new(),
            envelopes_sent: Vec::new(),
            ephemerals: Vec::new(),
            connections: Vec::new(),
            next_conn: 0,
            route_to: None,
            queue: VecDeque::new(),
            pending: HashMap::new(),
            hellos: 0,
            tickets: HashSet::new(),
            failures: HashMap::new(),
            echo_own_messages,
            pongs: true,
            ack_timeout,
            last_event_payload: None,
            org_install: None,
            channel_teams: HashMap::new(),
            team_names: HashMap::new(),
            channel_rate_limit: None,
            channel_full_at: HashMap::new(),
            bot_scopes,
            views: HashMap::new(),
            home_tab_enabled: true,
            last_ts_micros: 0,
            counter: 0,
        }
    }

    /// A fresh number for ids and tickets.
    pub fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// A message timestamp like Slack's (`"1700000000.000100"`): wall-clock
    /// microseconds, bumped so every value is unique and larger than the last.
    pub fn next_ts(&mut self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        self.last_ts_micros = now.max(self.last_ts_micros + 1);
        format!(
            "{}.{:06}",
            self.last_ts_micros / 1_000_000,
            self.last_ts_micros % 1_000_000
        )
    }

    /// Seconds since the epoch, for `event_time` and `created`.
    pub fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// A uuid-shaped envelope id, unique within this fake.
    pub fn next_envelope_id(&mut self) -> String {
        let n = self.next_counter();
        let salt = self.last_ts_micros ^ 0x5eed_f00d;
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            (salt as u32) ^ (n as u32).rotate_left(16),
            (n >> 16) as u16,
            (n & 0xfff) as u16,
            ((salt >> 12) & 0xfff) as u16,
            n
        )
    }

    /// An event id like Slack's (`Ev` and ten upper-case alphanumerics).
    pub fn next_event_id(&mut self) -> String {
        let n = self.next_counter();
        format!("Ev0F{:08X}", n)
    }

    /// A channel by id, `#name` or name.
    /// The workspace a channel is in.
    pub fn team_of<'a>(&'a self, config: &'a Config, channel: &str) -> &'a str {
        self.channel_teams
            .get(channel)
            .map(String::as_str)
            .unwrap_or(&config.team_id)
    }

    pub fn find_channel(&self, key: &str) -> Option<Channel> {
        if let Some(ch) = self.channels.get(key) {
            return Some(ch.clone());
        }
        let name = key.trim_start_matches('#');
        self.channels.values().find(|ch| ch.name == name).cloned()
    }

    pub fn expect_channel(&self, key: &str) -> Channel {
        self.find_channel(key).unwrap_or_else(|| {
            panic!("fake slack: channel {key:?} was never added; call add_channel first")
        })
    }

    /// A message posted now in `channel` (an id), in the thread of `thread_ts`
    /// if given; its author and content are for the caller to fill in.
    pub fn new_message(&mut self, channel: &str, thread_ts: Option<&str>) -> Message {
        Message {
            ts: self.next_ts(),
            thread_ts: self.thread_root(channel, thread_ts),
            channel: channel.to_string(),
            user: None,
            bot_id: None,
            app_id: None,
            username: None,
            subtype: None,
            text: String::new(),
            blocks: None,
            attachments: None,
            edits: Vec::new(),
            edited_ts: None,
            posted_at: Instant::now(),
            by_bot: false,
        }
    }

    pub fn find_message(&self, channel: &str, ts: &str) -> Option<&Message> {
        self.messages.get(channel)?.iter().find(|m| m.ts == ts)
    }

    /// The thread a reply to `thread_ts` belongs to: a reply to a reply joins the
    /// parent's thread, as in Slack.
    pub fn thread_root(&self, channel: &str, thread_ts: Option<&str>) -> Option<String> {
        let thread_ts = thread_ts?;
        match self.find_message(channel, thread_ts) {
            Some(parent) => Some(
                parent
                    .thread_ts
                    .clone()
                    .unwrap_or_else(|| parent.ts.clone()),
            ),
            None => Some(thread_ts.to_string()),
        }
    }

    pub fn is_deleted(&self, channel: &str, ts: &str) -> bool {
        self.deleted
            .contains(&(channel.to_string(), ts.to_string()))
    }

    pub fn store_message(&mut self, message: Message) {
        self.messages
            .entry(message.channel.clone())
            .or_default()
            .push(message);
    }

    pub fn delete_message(&mut self, channel: &str, ts: &str) -> bool {
        let Some(channel) = self.find_channel(channel) else {
            return false;
        };
        let Some(messages) = self.messages.get_mut(&channel.id) else {
            return false;
        };
        let before = messages.len();
        messages.retain(|m| m.ts != ts);
        let existed = messages.len() != before;
        if existed {
            self.deleted.insert((channel.id, ts.to_string()));
        }
        existed
    }

    /// Applies an edit; returns the message before and after it.
    pub fn apply_edit(
        &mut self,
        channel: &str,
        ts: &str,
        edit: &MessageEdit,
        edited_ts: &str,
    ) -> Option<(Message, Message)> {
        let message = self
            .messages
            .get_mut(channel)?
            .iter_mut()
            .find(|m| m.ts == ts)?;
        let previous = message.clone();
        if let Some(text) = &edit.text {
            message.text = text.clone();
        }
        if edit.blocks.is_some() {
            message.blocks = edit.blocks.clone();
        }
        if edit.attachments.is_some() {
            message.attachments = edit.attachments.clone();
        }
        message.edits.push(message.text.clone());
        message.edited_ts = Some(edited_ts.to_string());
        Some((previous, message.clone()))
    }

    /// Wraps an event into a fresh `events_api` envelope frame.
    pub fn events_api_frame(&mut self, config: &Config, event: Value) -> OutFrame {
        let event_id = self.next_event_id();
        let mut payload = payloads::event_callback(config, event, &event_id, Self::unix_now());
        if let Some(enterprise_id) = &self.org_install {
            let channel = payload["event"]["channel"].as_str().unwrap_or_default();
            let team_id = self
                .channel_teams
                .get(channel)
                .cloned()
                .unwrap_or_else(|| config.team_id.clone());
            payloads::as_org_install(config, &mut payload, enterprise_id, &team_id);
        }
        self.last_event_payload = Some(payload.clone());
        self.events_api_retry_frame(payload, 0)
    }

    /// An `events_api` envelope for an existing event callback, under a new envelope id.
    pub fn events_api_retry_frame(&mut self, payload: Value, retry_attempt: u32) -> OutFrame {
        let envelope_id = self.next_envelope_id();
        let event_id = payload["event_id"].as_str().map(str::to_string);
        let reason = if retry_attempt == 0 { "" } else { "timeout" };
        let envelope = payloads::events_api_envelope(&envelope_id, &payload, retry_attempt, reason);
        OutFrame::envelope(
            envelope,
            envelope_id,
            event_id,
            "events_api",
            retry_attempt,
            Some(payload),
        )
    }
}

/// Slack's per-channel write limit: `burst` writes at once, refilled at one
/// per `min_gap`.
#[derive(Debug, Clone, Copy)]
pub struct ChannelRateLimit {
    pub min_gap: Duration,
    pub burst: u32,
}
