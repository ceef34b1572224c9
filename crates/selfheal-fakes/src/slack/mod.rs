//! A local fake of Slack that speaks the real protocols over loopback: the Web API
//! (HTTP, JSON/form/query in, `{"ok": ...}` JSON out) and Socket Mode (a WebSocket that
//! says `hello`, delivers envelopes, reads acks and redelivers what is not acked).
//!
//! Tests, the demo and benchmarks start one with [`FakeSlack::start`] (or
//! [`FakeSlack::builder`]), point the real bot at [`FakeSlack::api_url`] with the fake's
//! tokens, then drive it with test hooks ([`FakeSlack::post_as_bot`],
//! [`FakeSlack::send_slash_command`], [`FakeSlack::fail_next`], ...) and assert on what
//! it recorded ([`FakeSlack::messages`], [`FakeSlack::calls`], [`FakeSlack::acks`], ...).
//! Payload shapes come from `shared/slack-payloads/` (real envelopes and Web API examples).
//!
//! What it owns: an in-memory workspace (channels, users, messages and threads), the
//! HTTP listener on `127.0.0.1:0`, every Socket Mode connection, and the redelivery
//! timers. What it is not: a Slack emulator. It implements only the methods the bot
//! uses (`apps.connections.open`, `auth.test`, `chat.postMessage`, `chat.update`,
//! `chat.getPermalink`, `chat.postEphemeral`, `conversations.history`,
//! `conversations.info`, `conversations.list`, `conversations.replies`,
//! `users.info`, `views.publish`); everything else answers `unknown_method`. It
//! does no TLS, no request signing, no real rate limiting (only injected failures) and
//! no persistence.
//!
//! # Pointing slack-morphism at the fake
//!
//! The bot owns its client; it only needs a plain-HTTP, HTTP/1.1 connector and the
//! fake's API URL. slack-morphism's default connector is HTTPS-only and HTTP/2, and its
//! `hyper-rustls` dependency does not enable `http1`, so the bot's crate needs
//! `hyper-rustls = { version = "0.27", default-features = false, features = ["http1",
//! "ring", "native-tokio"] }`:
//!
//! ```text
//! let https = hyper_rustls::HttpsConnectorBuilder::new()
//!     .with_native_roots()?
//!     .https_or_http()
//!     .enable_http1()
//!     .build();
//! let connector = SlackClientHyperConnector::with_connector(https)
//!     .with_slack_api_url(&fake.api_url());
//! let client = Arc::new(SlackClient::new(connector));
//! ```
//!
//! Socket Mode settings that keep tests fast (`SlackClientSocketModeConfig`):
//! `max_connections_count` 1 (the default 2 opens the second connection only after
//! `initial_backoff_in_seconds`, 5 s), `reconnect_timeout_in_seconds` 1 (the wait after
//! a *failed* connect; a `disconnect` frame reconnects at once), and, when a test
//! exercises [`FakeSlack::set_pongs`], a small `ping_interval_in_seconds` and
//! `ping_failure_threshold_times`.
//!
//! # Behaviour worth knowing
//!
//! - The bot's own posts and updates are echoed back as `message` and
//!   `message_changed` events, as real Slack does for an app subscribed to
//!   `message.channels`; switch it off with [`FakeSlackBuilder::echo_own_messages`].
//! - Envelopes go to one open connection, round-robin. With none open they queue and
//!   go to the next connection after its `hello`.
//! - An `events_api` envelope not acked within the ack timeout (3 s by default) is
//!   redelivered with the same `event_id`, a new `envelope_id`, `retry_attempt + 1` and
//!   `retry_reason: "timeout"`, at most 3 times. Slash commands and interactions are
//!   not redelivered (Slack shows the user an error instead).
//!
//! # Layout
//!
//! - `mod.rs`: the public handle, its builder and the test hooks.
//! - `state.rs`: the in-memory workspace and the records tests assert on.
//! - `payloads.rs`: JSON shapes of events, envelopes and Web API objects.
//! - `views.rs`: `views.publish`: Slack's limits on a Home tab, the views kept per user.
//! - `web_api.rs`: the HTTP side (auth, failure injection, one function per method).
//! - `socket.rs`: the Socket Mode side (connections, dispatch, acks, redelivery).
//! - `transcript.rs`: the human-readable rendering of a channel.

mod payloads;
mod socket;
mod state;
mod transcript;
mod views;
mod web_api;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

use self::socket::OutFrame;
use self::state::{Channel, State, User};
use crate::server::{LocalServer, Stopping};

pub use self::state::{Ack, ApiCall, Ephemeral, Message, SentEnvelope};
pub use self::web_api::ENFORCED_SCOPES;

/// A failure to inject into the next call(s) of one Web API method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// HTTP 429 with `Retry-After: <secs>` and `{"ok":false,"error":"ratelimited"}`.
    RateLimited { retry_after_secs: u64 },
    /// A bare HTTP status (e.g. 500 or 503) with a plain-text body, as a broken proxy
    /// or an outage would return.
    Status(u16),
    /// HTTP 200 with `{"ok":false,"error":<this>}`, e.g. `"channel_not_found"`.
    Error(String),
    /// Wait this long, then answer normally; long enough, it looks like a hung server
    /// to a client with a timeout. A client that gives up first cancels the call, so
    /// nothing happens (the request never got through).
    Hang(Duration),
    /// Do the work at once but answer this late: to a client with a shorter timeout
    /// the call looks failed although Slack acted on it (a message was posted), the
    /// case in which a blind retry posts a duplicate.
    LateReply(Duration),
}

impl Failure {
    /// A Slack API error (`{"ok":false,"error":...}` with HTTP 200).
    pub fn error(code: impl Into<String>) -> Self {
        Failure::Error(code.into())
    }
}

/// A message posted by another app, as an alerting tool would post it.
///
/// `classic: false` is a modern app message (`bot_id`, `user`, `bot_profile` with
/// `app_id`, no subtype); `classic: true` is a legacy integration message (`subtype:
/// "bot_message"`, `username`, no `user`).
#[derive(Debug, Clone, PartialEq)]
pub struct BotPost {
    /// The posting bot's id (`B…`).
    pub bot_id: String,
    /// The posting bot's app (`A…`); modern messages only.
    pub app_id: Option<String>,
    /// The bot's user id (`U…`); modern messages only. Defaults to `U` + the bot id.
    pub user: Option<String>,
    /// `bot_profile.name` (modern) or `username` (classic).
    pub name: String,
    /// Legacy `bot_message` shape instead of the modern app shape.
    pub classic: bool,
    pub text: String,
    pub blocks: Option<Value>,
    pub attachments: Option<Value>,
    /// Post as a reply in this thread.
    pub thread_ts: Option<String>,
}

impl Default for BotPost {
    fn default() -> Self {
        BotPost {
            bot_id: "B0ALERTS01".to_string(),
            app_id: Some("A0ALERTS01".to_string()),
            user: None,
            name: "alerts".to_string(),
            classic: false,
            text: String::new(),
            blocks: None,
            attachments: None,
            thread_ts: None,
        }
    }
}

impl BotPost {
    /// A modern app message with this text, from the default alerting bot.
    pub fn text(text: impl Into<String>) -> Self {
        BotPost {
            text: text.into(),
            ..BotPost::default()
        }
    }

    /// The same message from a legacy integration (`subtype: "bot_message"`).
    pub fn classic(mut self) -> Self {
        self.classic = true;
        self.app_id = None;
        self
    }

    pub fn from_bot(mut self, bot_id: &str, name: &str) -> Self {
        self.bot_id = bot_id.to_string();
        self.name = name.to_string();
        self
    }

    pub fn app_id(mut self, app_id: &str) -> Self {
        self.app_id = Some(app_id.to_string());
        self
    }

    pub fn blocks(mut self, blocks: Value) -> Self {
        self.blocks = Some(blocks);
        self
    }

    pub fn attachments(mut self, attachments: Value) -> Self {
        self.attachments = Some(attachments);
        self
    }

    pub fn in_thread(mut self, thread_ts: &str) -> Self {
        self.thread_ts = Some(thread_ts.to_string());
        self
    }
}

/// New content for an existing message; fields left `None` keep their old value, as
/// with `chat.update`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageEdit {
    pub text: Option<String>,
    pub blocks: Option<Value>,
    pub attachments: Option<Value>,
}

impl MessageEdit {
    pub fn text(text: impl Into<String>) -> Self {
        MessageEdit {
            text: Some(text.into()),
            ..MessageEdit::default()
        }
    }

    pub fn blocks(mut self, blocks: Value) -> Self {
        self.blocks = Some(blocks);
        self
    }

    pub fn attachments(mut self, attachments: Value) -> Self {
        self.attachments = Some(attachments);
        self
    }
}

/// Identity and timing of a fake workspace. Every field has a default, so tests set
/// only what they care about.
#[derive(Debug, Clone)]
pub struct FakeSlackBuilder {
    team_id: String,
    team_name: String,
    team_domain: String,
    bot_user_id: String,
    bot_id: String,
    bot_name: String,
    app_id: String,
    app_token: String,
    bot_token: String,
    ack_timeout: Duration,
    max_retries: u32,
    disconnect_grace: Duration,
    echo_own_messages: bool,
    bot_scopes: Vec<String>,
}

impl Default for FakeSlackBuilder {
    fn default() -> Self {
        FakeSlackBuilder {
            team_id: "T0FAKE0001".to_string(),
            team_name: "Fake Workspace".to_string(),
            team_domain: "fake".to_string(),
            bot_user_id: "U0SELFHEAL".to_string(),
            bot_id: "B0SELFHEAL".to_string(),
            bot_name: "selfheal".to_string(),
            app_id: "A0SELFHEAL".to_string(),
            app_token: "xapp-1-A0SELFHEAL-1-fakeapptoken".to_string(),
            bot_token: "xoxb-1-fakebottoken".to_string(),
            ack_timeout: Duration::from_secs(3),
            max_retries: 3,
            disconnect_grace: Duration::from_millis(500),
            echo_own_messages: true,
            bot_scopes: ENFORCED_SCOPES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl FakeSlackBuilder {
    pub fn team(mut self, team_id: &str, team_name: &str, team_domain: &str) -> Self {
        self.team_id = team_id.to_string();
        self.team_name = team_name.to_string();
        self.team_domain = team_domain.to_string();
        self
    }

    /// The bot under test: its user id (`U…`), bot id (`B…`) and display name.
    pub fn bot(mut self, bot_user_id: &str, bot_id: &str, bot_name: &str) -> Self {
        self.bot_user_id = bot_user_id.to_string();
        self.bot_id = bot_id.to_string();
        self.bot_name = bot_name.to_string();
        self
    }

    pub fn app_id(mut self, app_id: &str) -> Self {
        self.app_id = app_id.to_string();
        self
    }

    /// The accepted tokens; they must start with `xapp-` and `xoxb-` like real ones.
    pub fn tokens(mut self, app_token: &str, bot_token: &str) -> Self {
        self.app_token = app_token.to_string();
        self.bot_token = bot_token.to_string();
        self
    }

    /// How long an `events_api` envelope may stay unacked before it is redelivered.
    pub fn ack_timeout(mut self, ack_timeout: Duration) -> Self {
        self.ack_timeout = ack_timeout;
        self
    }

    /// How many redeliveries follow the first delivery (Slack: 3).
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// How long after a `disconnect` frame the fake closes the socket itself.
    pub fn disconnect_grace(mut self, grace: Duration) -> Self {
        self.disconnect_grace = grace;
        self
    }

    /// Whether the bot's own posts come back as events (Slack: yes).
    pub fn echo_own_messages(mut self, echo: bool) -> Self {
        self.echo_own_messages = echo;
        self
    }

    /// The scopes the bot token is granted (by default [`ENFORCED_SCOPES`]):
    /// a bot passes the scopes its app manifest asks for, so that the fake
    /// grants what a workspace installing it would.
    pub fn bot_scopes(mut self, scopes: &[&str]) -> Self {
        self.bot_scopes = scopes.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    ///
    /// # Panics
    /// If no loopback port can be bound, which leaves a test nothing to do.
    pub async fn start(self) -> FakeSlack {
        let bound = LocalServer::bind("fake Slack")
            .await
            .expect("a test host can bind a loopback port");
        let addr = bound.addr();
        let config = Config {
            team_id: self.team_id,
            team_name: self.team_name,
            team_domain: self.team_domain,
            bot_user_id: self.bot_user_id,
            bot_id: self.bot_id,
            bot_name: self.bot_name,
            app_id: self.app_id,
            app_token: self.app_token,
            bot_token: self.bot_token,
            max_retries: self.max_retries,
            disconnect_grace: self.disconnect_grace,
            addr,
        };
        let state = State::new(self.ack_timeout, self.echo_own_messages, self.bot_scopes);
        let inner = Arc::new(Inner {
            config,
            state: Mutex::new(state),
            changed: Notify::new(),
            pongs_changed: Notify::new(),
            stopping: bound.stopping(),
        });
        let server = bound.serve(web_api::router(inner.clone()));
        FakeSlack {
            inner,
            server: Arc::new(server),
        }
    }
}

/// Immutable identity of the fake workspace.
#[derive(Debug)]
pub(crate) struct Config {
    team_id: String,
    team_name: String,
    team_domain: String,
    bot_user_id: String,
    bot_id: String,
    bot_name: String,
    app_id: String,
    app_token: String,
    bot_token: String,
    max_retries: u32,
    disconnect_grace: Duration,
    /// Where the fake listens; `apps.connections.open` builds socket URLs from it.
    addr: SocketAddr,
}

/// Everything shared by the handle, the HTTP handlers and the connection tasks.
pub(crate) struct Inner {
    config: Config,
    /// A std mutex, not a tokio one: every critical section is short and synchronous,
    /// and the lock is never held across an `.await`, so it cannot stall the runtime.
    state: Mutex<State>,
    /// Signalled (`notify_waiters`) after every state change, for [`FakeSlack::wait_until`].
    changed: Notify,
    /// Signalled when [`FakeSlack::set_pongs`] flips, so connection loops re-check it.
    pongs_changed: Notify,
    /// Resolves on shutdown; connections, timers and hanging answers watch it.
    stopping: Stopping,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("fake slack state mutex poisoned by a panicking test")
    }

    /// Runs `f` on the state under the lock, then wakes every waiter.
    fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.state());
        self.changed.notify_waiters();
        out
    }
}

/// A running fake Slack. Cheap to clone; all clones drive the same workspace,
/// which stops when the last of them is dropped.
#[derive(Clone)]
pub struct FakeSlack {
    inner: Arc<Inner>,
    server: Arc<LocalServer>,
}

impl std::fmt::Debug for FakeSlack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSlack")
            .field("addr", &self.inner.config.addr)
            .finish()
    }
}

impl FakeSlack {
    pub fn builder() -> FakeSlackBuilder {
        FakeSlackBuilder::default()
    }

    /// A fake with default identity and timings.
    pub async fn start() -> FakeSlack {
        FakeSlackBuilder::default().start().await
    }

    /// `http://127.0.0.1:<port>/api/`. slack-morphism appends `/<method>`; the fake
    /// tolerates the doubled slash that produces.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/", self.inner.config.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.config.addr
    }

    pub fn app_token(&self) -> &str {
        &self.inner.config.app_token
    }

    pub fn bot_token(&self) -> &str {
        &self.inner.config.bot_token
    }

    pub fn bot_user_id(&self) -> &str {
        &self.inner.config.bot_user_id
    }

    pub fn bot_id(&self) -> &str {
        &self.inner.config.bot_id
    }

    pub fn app_id(&self) -> &str {
        &self.inner.config.app_id
    }

    pub fn team_id(&self) -> &str {
        &self.inner.config.team_id
    }

    // ---- Workspace setup -------------------------------------------------------

    /// A public channel the bot is a member of.
    pub fn add_channel(&self, id: &str, name: &str) {
        self.insert_channel(id, name, false);
    }

    /// Installs the app org-wide on Enterprise Grid org `enterprise_id`:
    /// from now on events carry the org-app shape (`team_id: null` in
    /// `authorizations`, `is_enterprise_install: true`).
    pub fn set_org_install(&self, enterprise_id: &str) {
        self.inner
            .update(|st| st.org_install = Some(enterprise_id.to_string()));
    }

    /// Puts `channel` in workspace `team_id` of the org (see
    /// [`FakeSlack::set_org_install`]); channels are in the default workspace
    /// otherwise.
    pub fn set_channel_team(&self, channel: &str, team_id: &str) {
        self.inner.update(|st| {
            st.channel_teams
                .insert(channel.to_string(), team_id.to_string())
        });
    }

    /// Names workspace `team_id` as `auth.teams.list` shows it (by default
    /// `Workspace T…`).
    pub fn name_team(&self, team_id: &str, name: &str) {
        self.inner
            .update(|st| st.team_names.insert(team_id.to_string(), name.to_string()));
    }

    /// Puts person `user` in workspace `team_id` of the org: `users.info`
    /// shows it as their `team_id`, and their admin or owner role is a role
    /// in that workspace.
    pub fn set_user_team(&self, user: &str, team_id: &str) {
        self.inner.update(|st| {
            if let Some(user) = st.users.get_mut(user) {
                user.team = Some(team_id.to_string());
            }
        });
    }

    /// A private channel the bot is a member of.
    pub fn add_private_channel(&self, id: &str, name: &str) {
        self.insert_channel(id, name, true);
    }

    /// Whether the bot is in `channel`; posting to a channel it is not in answers
    /// `not_in_channel`.
    pub fn set_bot_member(&self, channel: &str, is_member: bool) {
        self.inner.update(|st| {
            if let Some(ch) = st.channels.get_mut(channel) {
                ch.is_member = is_member;
            }
        });
    }

    /// Changes the scopes the bot token was granted (see
    /// [`FakeSlackBuilder::bot_scopes`]). Slack reports them in `x-oauth-scopes` and answers `missing_scope`
    /// to a method that needs another.
    pub fn set_bot_scopes(&self, scopes: &[&str]) {
        self.inner.update(|st| {
            st.bot_scopes = scopes.iter().map(|s| s.to_string()).collect();
        });
    }

    pub fn add_user(&self, id: &str, name: &str, is_admin: bool) {
        self.insert_user(id, name, is_admin, false);
    }

    /// A workspace owner (owners are admins too).
    pub fn add_owner(&self, id: &str, name: &str) {
        self.insert_user(id, name, true, true);
    }

    fn insert_channel(&self, id: &str, name: &str, is_private: bool) {
        self.inner.update(|st| {
            st.channels.insert(
                id.to_string(),
                Channel {
                    id: id.to_string(),
                    name: name.trim_start_matches('#').to_string(),
                    is_private,
                    is_member: true,
                },
            );
        });
    }

    /// An admin of Enterprise Grid org `enterprise_id` who administers no
    /// workspace of it (`users.info`: `enterprise_user.is_admin`, but not
    /// `is_admin`).
    pub fn add_org_admin(&self, id: &str, name: &str, enterprise_id: &str) {
        self.insert_user(id, name, false, false);
        self.inner.update(|st| {
            if let Some(user) = st.users.get_mut(id) {
                user.org_admin_of = Some(enterprise_id.to_string());
            }
        });
    }

    fn insert_user(&self, id: &str, name: &str, is_admin: bool, is_owner: bool) {
        self.inner.update(|st| {
            st.users.insert(
                id.to_string(),
                User {
                    id: id.to_string(),
                    name: name.to_string(),
                    is_admin,
                    is_owner,
                    org_admin_of: None,
                    team: None,
                },
            );
        });
    }

    // ---- Acting as Slack users and other apps ----------------------------------

    /// Stores a message from another app and delivers it as an `events_api` envelope.
    /// Returns its `ts`.
    ///
    /// # Panics
    /// If `channel` was never added: that is a mistake in the test, not a Slack error.
    pub async fn post_as_bot(&self, channel: &str, post: BotPost) -> String {
        let user = post.user.clone().or_else(|| {
            (!post.classic).then(|| format!("U{}", post.bot_id.trim_start_matches('B')))
        });
        self.deliver_post(channel, post.thread_ts.as_deref(), |message| Message {
            user,
            bot_id: Some(post.bot_id),
            app_id: if post.classic { None } else { post.app_id },
            username: Some(post.name),
            subtype: post.classic.then(|| "bot_message".to_string()),
            text: post.text,
            blocks: post.blocks,
            attachments: post.attachments,
            ..message
        })
    }

    /// Stores a message from a person and delivers it as an `events_api` envelope.
    /// Returns its `ts`.
    ///
    /// # Panics
    /// If `channel` was never added.
    pub async fn post_as_user(
        &self,
        channel: &str,
        user: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> String {
        self.deliver_post(channel, thread_ts, |message| Message {
            user: Some(user.to_string()),
            text: text.to_string(),
            blocks: Some(payloads::rich_text_blocks(text)),
            ..message
        })
    }

    /// Stores a new message in `channel` (`author` fills in who wrote what)
    /// and delivers it as an `events_api` envelope. Returns its `ts`.
    fn deliver_post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        author: impl FnOnce(Message) -> Message,
    ) -> String {
        let (ts, frame) = self.inner.update(|st| {
            let channel = st.expect_channel(channel);
            let message = author(st.new_message(&channel.id, thread_ts));
            let event = payloads::message_event(&self.inner.config, st, &message, &channel);
            let frame = st.events_api_frame(&self.inner.config, event);
            let ts = message.ts.clone();
            st.store_message(message);
            (ts, frame)
        });
        socket::dispatch(&self.inner, frame);
        ts
    }

    /// Edits an existing message (as its author would) and delivers the
    /// `message_changed` event. Returns the event's `ts`, or `None` if there is no such
    /// message.
    pub async fn edit_message(&self, channel: &str, ts: &str, edit: MessageEdit) -> Option<String> {
        let frame = self.inner.update(|st| {
            let channel = st.find_channel(channel)?;
            let event_ts = st.next_ts();
            let (previous, current) = st.apply_edit(&channel.id, ts, &edit, &event_ts)?;
            let event = payloads::message_changed_event(
                &self.inner.config,
                st,
                &previous,
                &current,
                &channel,
                &event_ts,
            );
            Some((event_ts, st.events_api_frame(&self.inner.config, event)))
        });
        let (event_ts, frame) = frame?;
        socket::dispatch(&self.inner, frame);
        Some(event_ts)
    }

    /// Sends a raw JSON frame (e.g. a fixture file) to one connection. If it carries an
    /// `envelope_id` it is recorded in [`FakeSlack::envelopes_sent`], but never
    /// redelivered.
    pub async fn send_envelope(&self, envelope: Value) {
        socket::dispatch(&self.inner, OutFrame::raw_envelope(envelope));
    }

    /// Sends arbitrary text (e.g. malformed JSON) to one connection, unrecorded.
    pub async fn send_raw(&self, text: &str) {
        socket::dispatch(&self.inner, OutFrame::text(text.to_string()));
    }

    /// Redelivers the most recent `events_api` envelope with the same `event_id`, a
    /// new `envelope_id` and this `retry_attempt` (`retry_reason: "timeout"`). Returns
    /// the new envelope id, or `None` if no events were sent yet.
    pub async fn redeliver_last(&self, retry_attempt: u32) -> Option<String> {
        let frame = self.inner.update(|st| {
            let payload = st.last_event_payload.clone()?;
            Some(st.events_api_retry_frame(payload, retry_attempt))
        })?;
        let envelope_id = frame.envelope_id().map(str::to_string);
        socket::dispatch(&self.inner, frame);
        envelope_id
    }

    /// A person runs `/command text` in `channel`. Returns the envelope id.
    pub async fn send_slash_command(
        &self,
        user: &str,
        channel: &str,
        command: &str,
        text: &str,
    ) -> String {
        self.deliver_once("slash_commands", |config, st, envelope_id| {
            payloads::slash_command_envelope(config, st, envelope_id, user, channel, command, text)
        })
    }

    /// A person clicks a button (`block_actions`) on a message. Returns the envelope id.
    pub async fn click_button(
        &self,
        user: &str,
        channel: &str,
        message_ts: &str,
        action_id: &str,
        value: &str,
    ) -> String {
        self.deliver_once("interactive", |config, st, envelope_id| {
            payloads::block_actions_envelope(
                config,
                st,
                envelope_id,
                user,
                channel,
                message_ts,
                action_id,
                value,
            )
        })
    }

    /// A person uses the message shortcut `callback_id` (a "message" shortcut
    /// of the app's manifest) on the message `message_ts` in `channel`: an
    /// `interactive` envelope of type `message_action` carrying the whole
    /// message. Returns the envelope id.
    ///
    /// # Panics
    /// If there is no such message: Slack offers shortcuts on messages only.
    pub async fn use_message_shortcut(
        &self,
        user: &str,
        channel: &str,
        message_ts: &str,
        callback_id: &str,
    ) -> String {
        self.deliver_once("interactive", |config, st, envelope_id| {
            let channel = st.expect_channel(channel);
            let message = st
                .find_message(&channel.id, message_ts)
                .cloned()
                .unwrap_or_else(|| {
                    panic!(
                        "fake slack: no message {message_ts} in {} to use a shortcut on",
                        channel.id
                    )
                });
            payloads::message_action_envelope(
                config,
                st,
                envelope_id,
                user,
                &channel,
                &message,
                callback_id,
            )
        })
    }

    /// A person opens the app's Home tab: an `app_home_opened` event (`tab:
    /// "home"`, with the view published for them before, if any). Returns the
    /// envelope id.
    pub async fn open_home_tab(&self, user: &str) -> String {
        self.deliver_app_home_opened(user, "home")
    }

    /// A person opens the app's Messages tab (the DM with the app): an
    /// `app_home_opened` event with `tab: "messages"`. Returns the envelope id.
    pub async fn open_messages_tab(&self, user: &str) -> String {
        self.deliver_app_home_opened(user, "messages")
    }

    fn deliver_app_home_opened(&self, user: &str, tab: &str) -> String {
        let frame = self.inner.update(|st| {
            let event = payloads::app_home_opened_event(st, user, tab);
            st.events_api_frame(&self.inner.config, event)
        });
        let envelope_id = frame.envelope_id().unwrap_or_default().to_string();
        socket::dispatch(&self.inner, frame);
        envelope_id
    }

    /// A person clicks a button on their Home tab: `block_actions` from the
    /// view published for them (`container.type: view`, no channel). The
    /// fake does not check that the view has the button: a person may click
    /// one on a view published before their rights changed. Returns the
    /// envelope id.
    ///
    /// # Panics
    /// If no view was published for `user`: they have no Home tab to click on.
    pub async fn click_home_button(
        &self,
        user: &str,
        action_id: &str,
        value: Option<&str>,
    ) -> String {
        self.deliver_once("interactive", |config, st, envelope_id| {
            let view =
                st.views.get(user).cloned().unwrap_or_else(|| {
                    panic!("fake slack: no Home tab view was published for {user}")
                });
            payloads::home_block_actions_envelope(
                config,
                st,
                envelope_id,
                user,
                &view,
                action_id,
                value,
            )
        })
    }

    /// Delivers an envelope of `kind` that is never redelivered (Slack shows
    /// the user an error instead); `envelope` builds it around its id.
    /// Returns the envelope id.
    fn deliver_once(
        &self,
        kind: &str,
        envelope: impl FnOnce(&Config, &mut State, &str) -> Value,
    ) -> String {
        let frame = self.inner.update(|st| {
            let envelope_id = st.next_envelope_id();
            let envelope = envelope(&self.inner.config, st, &envelope_id);
            OutFrame::envelope(envelope, envelope_id, None, kind, 0, None)
        });
        let envelope_id = frame.envelope_id().unwrap_or_default().to_string();
        socket::dispatch(&self.inner, frame);
        envelope_id
    }

    // ---- Connection faults -------------------------------------------------------

    /// Sends `{"type":"disconnect","reason":..}` on every connection, stops routing
    /// envelopes to them and closes them after the disconnect grace period, as Slack
    /// does before a refresh.
    pub async fn disconnect_all(&self, reason: &str) {
        socket::disconnect_all(&self.inner, reason);
    }

    /// Drops every connection without a close frame, like a network failure.
    pub async fn drop_all_connections(&self) {
        socket::drop_all(&self.inner);
    }

    /// With `false`, connections stop reading from their sockets, so WebSocket pings
    /// go unanswered (and acks stay unread) until it is set back to `true`.
    ///
    /// axum answers pings itself while reading and offers no switch to turn that off,
    /// so this is the closest faithful fault: a stalled link, the case a missing pong
    /// detects in production.
    pub fn set_pongs(&self, enabled: bool) {
        self.inner.update(|st| st.pongs = enabled);
        self.inner.pongs_changed.notify_waiters();
    }

    /// Enforces a strict per-channel write limit: a `chat.postMessage` or
    /// `chat.update` sooner than `min_gap` after the channel's previous accepted
    /// write is answered 429 with `Retry-After`. `None` turns it off (the default).
    pub fn set_channel_rate_limit(&self, min_gap: Option<Duration>) {
        match min_gap {
            Some(min_gap) => self.set_channel_rate_limit_burst(min_gap, 1),
            None => self.inner.update(|st| st.channel_rate_limit = None),
        }
    }

    /// Enforces Slack's per-channel write limit with its burst allowance: per
    /// channel, `burst` writes may come at once, then one per `min_gap`; a write
    /// beyond that token bucket is answered 429 with `Retry-After`. It counts
    /// every token and connection, as Slack counts the whole app.
    pub fn set_channel_rate_limit_burst(&self, min_gap: Duration, burst: u32) {
        self.inner
            .update(|st| st.channel_rate_limit = Some(state::ChannelRateLimit { min_gap, burst }));
    }

    /// Whether the app's Home tab is enabled (it is by default, as selfheal's
    /// manifest asks); without it `views.publish` answers `not_enabled`.
    pub fn set_home_tab_enabled(&self, enabled: bool) {
        self.inner.update(|st| st.home_tab_enabled = enabled);
    }

    /// Turns the echo of the bot's own posts and updates on or off.
    pub fn set_echo_own_messages(&self, echo: bool) {
        self.inner.update(|st| st.echo_own_messages = echo);
    }

    /// Changes the ack timeout for envelopes sent from now on.
    pub fn set_ack_timeout(&self, ack_timeout: Duration) {
        self.inner.update(|st| st.ack_timeout = ack_timeout);
    }

    /// Makes the next `times` calls of `method` fail with `failure`. `"*"` matches any
    /// method. Injected failures apply before authentication and in the order added.
    pub fn fail_next(&self, method: &str, failure: Failure, times: u32) {
        self.inner.update(|st| {
            let queue = st.failures.entry(method.to_string()).or_default();
            for _ in 0..times {
                queue.push_back(failure.clone());
            }
        });
    }

    /// Deletes a message: later replies into it answer `thread_not_found` and updates
    /// `message_not_found`. Returns whether it existed.
    pub fn delete_message(&self, channel: &str, ts: &str) -> bool {
        self.inner.update(|st| st.delete_message(channel, ts))
    }

    // ---- What happened -----------------------------------------------------------

    /// Every message in `channel` (id or name), top-level and replies, in `ts` order.
    pub fn messages(&self, channel: &str) -> Vec<Message> {
        let st = self.inner.state();
        st.find_channel(channel)
            .and_then(|ch| st.messages.get(&ch.id).cloned())
            .unwrap_or_default()
    }

    /// The thread rooted at `ts`: the parent first, then its replies in order.
    pub fn thread(&self, channel: &str, ts: &str) -> Vec<Message> {
        self.messages(channel)
            .into_iter()
            .filter(|m| m.ts == ts || m.thread_ts.as_deref() == Some(ts))
            .collect()
    }

    /// Every Web API request, in arrival order.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.inner.state().calls.clone()
    }

    /// The Web API requests for one method.
    pub fn calls_to(&self, method: &str) -> Vec<ApiCall> {
        self.inner
            .state()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// Every ack received, in arrival order.
    pub fn acks(&self) -> Vec<Ack> {
        self.inner.state().acks.clone()
    }

    /// Every envelope written to a connection, in order (retries included).
    pub fn envelopes_sent(&self) -> Vec<SentEnvelope> {
        self.inner.state().envelopes_sent.clone()
    }

    /// The Home tab view last published for `user`, as `views.publish`
    /// returned it (`id`, `hash`, `blocks` with their `block_id`s, …).
    pub fn home_view(&self, user: &str) -> Option<Value> {
        self.inner.state().views.get(user).cloned()
    }

    /// Every `chat.postEphemeral` accepted.
    pub fn ephemerals(&self) -> Vec<Ephemeral> {
        self.inner.state().ephemerals.clone()
    }

    /// Open Socket Mode connections (after `hello`, until closed).
    pub fn connections(&self) -> usize {
        self.inner.state().connections.len()
    }

    /// The ids of the open Socket Mode connections, oldest first (the id
    /// [`SentEnvelope::connection`] names).
    pub fn connection_ids(&self) -> Vec<u64> {
        self.inner
            .state()
            .connections
            .iter()
            .map(|c| c.id)
            .collect()
    }

    /// Sends envelopes from now on only to `connections` (while one of them is
    /// open; otherwise, as without it, to any), or, with `None`, round-robin
    /// to all again. Slack delivers each payload to any one connection of the
    /// app; this picks which, so a story can land a click or a redelivery on
    /// a given replica.
    pub fn route_envelopes_to(&self, connections: Option<Vec<u64>>) {
        self.inner.update(|st| st.route_to = connections);
    }

    /// `hello` frames sent since start, i.e. successful connects.
    pub fn hellos(&self) -> usize {
        self.inner.state().hellos
    }

    /// Polls `f` after every state change until it returns `Some`, or `timeout`
    /// passes (then `f` gets one last look).
    pub async fn wait_until<T>(
        &self,
        timeout: Duration,
        f: impl Fn(&FakeSlack) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register for the next change before looking, so a change between the
            // look and the wait is not missed.
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(found) = f(self) {
                return Some(found);
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => return f(self),
            }
        }
    }

    /// A readable rendering of `channel` with threads indented, for the demo and for
    /// failure messages.
    pub fn transcript(&self, channel: &str) -> String {
        let st = self.inner.state();
        transcript::render(&self.inner.config, &st, channel)
    }

    /// Stops the server, closes every connection and cancels redelivery timers.
    pub async fn shutdown(self) {
        self.server.stop().await;
        // Connection tasks outlive the HTTP server (they are upgraded connections);
        // wait briefly for them to notice the shutdown and unregister.
        self.wait_until(Duration::from_secs(2), |fake| {
            (fake.connections() == 0).then_some(())
        })
        .await;
    }
}
