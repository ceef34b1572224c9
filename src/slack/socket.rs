//! The Socket Mode listener.
//!
//! slack-morphism acknowledges an envelope only after our callback returns, so
//! the callbacks here only convert the payload and enqueue it: no IO, no store,
//! no locks beyond reading the queue handle. Everything else happens in the app's
//! workers. The listener runs on a thread of its own, with its own runtime and
//! HTTP client: however busy the app's workers are (a storm of failures being
//! claimed in SQLite), an envelope is acked at once. Payloads slack-morphism cannot parse are acknowledged by it and
//! reach [`on_error`], which logs them; they never panic the bot.

use std::sync::Arc;

use anyhow::Context;
use serde_json::Value;
use slack_morphism::prelude::*;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::web::{connector, Connector};
use super::{ActionRequest, CommandReply, CommandRequest, Inbound, ShortcutRequest, Surface};
use crate::metrics::Metrics;
use crate::recognize::InboundMessage;

/// The queue handle the callbacks push into, and the metrics they count in
/// (stored as slack-morphism user state).
#[derive(Clone)]
struct Queue(mpsc::UnboundedSender<Inbound>, Arc<Metrics>);

/// A running listener on its own thread; [`Listener::shutdown`] (or dropping
/// it) closes its connections and ends the thread.
pub struct Listener {
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<oneshot::Receiver<()>>,
}

/// Socket Mode tuning.
#[derive(Debug, Clone)]
pub struct SocketSettings {
    /// Parallel connections (Slack spreads envelopes over them; one can be
    /// refreshed while the other serves).
    pub connections: u32,
    /// Wait before retrying `apps.connections.open` after a failure.
    pub reconnect_secs: u64,
    /// Ping interval; after five intervals without a pong the connection is
    /// treated as dead and replaced.
    pub ping_secs: u64,
    /// Envelopes and ack times are counted here, and whether the
    /// connection is up is kept here.
    pub metrics: Arc<Metrics>,
}

impl Listener {
    /// Starts the listener thread, which connects with the app-level token and
    /// delivers envelopes to `tx`. Returns once the token is registered.
    pub async fn start(
        api_url: &str,
        app_token: &str,
        settings: &SocketSettings,
        tx: mpsc::UnboundedSender<Inbound>,
    ) -> anyhow::Result<Listener> {
        let (ready_tx, ready_rx) = oneshot::channel::<anyhow::Result<()>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped_rx) = oneshot::channel::<()>();
        let (api_url, app_token, settings) =
            (api_url.to_string(), app_token.to_string(), settings.clone());
        std::thread::Builder::new()
            .name("selfheal-socket".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let started = async {
                        let client = Arc::new(SlackClient::new(connector(&api_url)?));
                        listen(client, &app_token, &settings, tx).await
                    };
                    let listener = match started.await {
                        Ok(listener) => listener,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    // Until asked to stop, or the handle is dropped.
                    let _ = stop_rx.await;
                    listener.shutdown().await;
                });
                let _ = stopped_tx.send(());
            })
            .context("starting the Socket Mode thread")?;
        ready_rx
            .await
            .context("the Socket Mode thread ended while starting")??;
        Ok(Listener {
            stop: Some(stop_tx),
            stopped: Some(stopped_rx),
        })
    }

    /// Closes the connections and waits for the thread to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }
}

/// Connects with the app-level token and starts delivering envelopes to `tx`,
/// on the current runtime.
async fn listen(
    client: Arc<SlackClient<Connector>>,
    app_token: &str,
    settings: &SocketSettings,
    tx: mpsc::UnboundedSender<Inbound>,
) -> anyhow::Result<SlackClientSocketModeListener<Connector>> {
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_hello_events(on_hello)
        .with_push_events(on_push)
        .with_command_events(on_command)
        .with_interaction_events(on_interaction);
    let env = Arc::new(
        SlackClientEventsListenerEnvironment::new(client)
            .with_error_handler(on_error)
            .with_user_state(Queue(tx, settings.metrics.clone())),
    );
    let config = SlackClientSocketModeConfig::new()
        .with_max_connections_count(settings.connections.max(1))
        .with_initial_backoff_in_seconds(1)
        .with_reconnect_timeout_in_seconds(settings.reconnect_secs.max(1))
        .with_ping_interval_in_seconds(settings.ping_secs.max(1));
    let inner = SlackClientSocketModeListener::new(&config, env, callbacks);
    inner
        .listen_for(&SlackApiToken::new(app_token.into()))
        .await
        .map_err(|e| anyhow::anyhow!("registering the Socket Mode token: {e}"))?;
    inner.start().await;
    Ok(inner)
}

async fn enqueue(states: &SlackClientEventsUserState, inbound: Inbound) {
    let guard = states.read().await;
    match guard.get_user_state::<Queue>() {
        Some(queue) => {
            if queue.0.send(inbound).is_err() {
                debug!("event arrived while shutting down; dropped");
            }
        }
        None => warn!("Socket Mode listener has no queue; event dropped"),
    }
}

/// Counts an envelope of `kind` and, until the returned guard drops at the
/// end of the callback (when slack-morphism acks it), times its ack.
async fn arrived(states: &SlackClientEventsUserState, kind: &str) -> Option<AckTimer> {
    let guard = states.read().await;
    let metrics = guard.get_user_state::<Queue>()?.1.clone();
    metrics.envelopes.inc(kind);
    Some(AckTimer(metrics, std::time::Instant::now()))
}

/// See [`arrived`].
struct AckTimer(Arc<Metrics>, std::time::Instant);

impl Drop for AckTimer {
    fn drop(&mut self) {
        self.0.ack_seconds.observe(self.1.elapsed());
    }
}

/// Generic because slack-morphism does not export the hello event's type.
async fn on_hello<E: std::fmt::Debug>(
    event: E,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) {
    info!(hello = ?event, "connected to Slack (Socket Mode)");
    if let Some(queue) = states.read().await.get_user_state::<Queue>() {
        queue.1.set_slack_connected(true);
    }
    disable_nagle();
    enqueue(&states, Inbound::Hello).await;
}

/// Turns Nagle's algorithm off on the process's TCP sockets, the new Socket
/// Mode connection among them. slack-morphism opens its WebSocket with
/// tokio-tungstenite's `connect_async`, which leaves Nagle on: an ack written
/// right after another then waits for Slack's delayed TCP ack, about 40 ms
/// (`selfheal bench` measured it). slack-morphism exposes no socket, so this
/// sets `TCP_NODELAY` on every socket descriptor; on anything that is not a
/// TCP socket the call fails harmlessly.
fn disable_nagle() {
    #[cfg(target_os = "linux")]
    {
        let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
            return;
        };
        let on: libc::c_int = 1;
        for fd in fds.flatten() {
            let is_socket = std::fs::read_link(fd.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
            let Some(fd) = fd.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if is_socket {
                // SAFETY: setsockopt reads `on` (a c_int, with its size) and
                // touches nothing else; a descriptor closed in the meantime
                // only makes it fail.
                unsafe {
                    libc::setsockopt(
                        fd,
                        libc::IPPROTO_TCP,
                        libc::TCP_NODELAY,
                        std::ptr::addr_of!(on).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    );
                }
            }
        }
    }
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let _ack = arrived(&states, "events_api").await;
    if let Some(inbound) = push_inbound(&event) {
        enqueue(&states, inbound).await;
    }
    Ok(())
}

/// What an Events API event is to selfheal: a message, the Home tab opened,
/// or nothing (the Messages tab opened, events it does not subscribe to).
fn push_inbound(event: &SlackPushEventCallback) -> Option<Inbound> {
    let raw = match &event.event {
        SlackEventCallbackBody::Message(msg) => serde_json::to_value(msg).ok(),
        SlackEventCallbackBody::Unknown(raw)
            if raw.get("type").and_then(Value::as_str) == Some("message") =>
        {
            Some(raw.clone())
        }
        SlackEventCallbackBody::AppHomeOpened(opened) if opened.tab.as_deref() == Some("home") => {
            return Some(Inbound::HomeOpened {
                user_id: opened.user.to_string(),
            })
        }
        _ => None,
    };
    raw.map(|raw| Inbound::Message {
        event_id: event.event_id.to_string(),
        msg: inbound_message(&raw),
    })
}

/// How long a slash command's ack waits for the answer. Slack's deadline is
/// 3 s; what is not ready by then is posted ephemerally afterwards.
const COMMAND_DEADLINE: std::time::Duration = std::time::Duration::from_millis(2000);

/// Slash commands are answered in the ack (ephemerally), so this callback
/// waits — for the app's answer, never for IO of its own — up to the deadline.
async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let _ack = arrived(&states, "slash_commands").await;
    debug!(command = %event.command, "slash command received");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let request = CommandRequest {
        user_id: event.user_id.to_string(),
        channel_id: event.channel_id.to_string(),
        text: event.text.clone().unwrap_or_default(),
    };
    enqueue(&states, Inbound::Command { request, reply: tx }).await;
    let reply = match tokio::time::timeout(COMMAND_DEADLINE, rx).await {
        Ok(Ok(reply)) => reply,
        _ => CommandReply::text("⏳ Working on it; the answer will follow here."),
    };
    let blocks: Option<Vec<SlackBlock>> = reply.blocks.and_then(|b| serde_json::from_value(b).ok());
    Ok(SlackCommandEventResponse::new(
        SlackMessageContent::new()
            .with_text(reply.text)
            .opt_blocks(blocks),
    )
    .with_response_type(SlackMessageResponseType::Ephemeral))
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let _ack = arrived(&states, "interactive").await;
    for inbound in interaction_inbound(&event) {
        enqueue(&states, inbound).await;
    }
    Ok(())
}

/// What an interaction is to selfheal: one action per button pressed (in a
/// message or on the Home tab), a message shortcut, or nothing.
fn interaction_inbound(event: &SlackInteractionEvent) -> Vec<Inbound> {
    match event {
        SlackInteractionEvent::BlockActions(ev) => {
            let user_id = ev
                .user
                .as_ref()
                .map(|u| u.id.to_string())
                .unwrap_or_default();
            let surface = match &ev.container {
                SlackInteractionActionContainer::View(_) => Surface::Home,
                _ => Surface::Message {
                    channel_id: ev
                        .channel
                        .as_ref()
                        .map(|c| c.id.to_string())
                        .unwrap_or_default(),
                    message_ts: ev
                        .message
                        .as_ref()
                        .map(|m| m.origin.ts.to_string())
                        .unwrap_or_default(),
                },
            };
            ev.actions
                .iter()
                .flatten()
                .map(|action| {
                    Inbound::Action(ActionRequest {
                        user_id: user_id.clone(),
                        surface: surface.clone(),
                        action_id: action.action_id.to_string(),
                        value: action.value.clone(),
                    })
                })
                .collect()
        }
        SlackInteractionEvent::MessageAction(ev) => {
            let (Some(channel), Some(message)) = (&ev.channel, &ev.message) else {
                debug!("a message shortcut without its channel or message; ignored");
                return vec![];
            };
            let Ok(raw) = serde_json::to_value(message) else {
                return vec![];
            };
            let channel_id = channel.id.to_string();
            let mut message = inbound_message(&raw);
            // The payload names the channel beside the message, not in it.
            message.channel = channel_id.clone();
            vec![Inbound::Shortcut(ShortcutRequest {
                callback_id: ev.callback_id.to_string(),
                user_id: ev.user.id.to_string(),
                channel_id,
                message,
                response_url: ev.response_url.0.to_string(),
                trigger_id: ev.trigger_id.to_string(),
            })]
        }
        _ => vec![],
    }
}

fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> HttpStatusCode {
    warn!(error = %err, "skipped a Slack payload or connection error");
    // A connection error (not a payload slack-morphism could not read) means
    // the connection is down until the next `hello`. This callback is not
    // async, so the state is only looked at if no one is writing it.
    let connection_lost = matches!(
        err.downcast_ref::<slack_morphism::errors::SlackClientError>(),
        Some(slack_morphism::errors::SlackClientError::SocketModeProtocolError(_))
    );
    if let (true, Ok(state)) = (connection_lost, states.try_read()) {
        if let Some(queue) = state.get_user_state::<Queue>() {
            queue.1.set_slack_connected(false);
        }
    }
    HttpStatusCode::OK
}

/// Converts a message event's JSON into selfheal's own message type.
pub fn inbound_message(v: &Value) -> InboundMessage {
    let s = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let subtype = s("subtype");
    let array = |key: &str| {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    InboundMessage {
        channel: s("channel").unwrap_or_default(),
        ts: s("ts").unwrap_or_default(),
        thread_ts: s("thread_ts"),
        user: s("user"),
        bot_id: s("bot_id"),
        app_id: v
            .pointer("/bot_profile/app_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| s("app_id")),
        username: s("username").or_else(|| {
            v.pointer("/bot_profile/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        }),
        text: s("text").unwrap_or_default(),
        blocks: array("blocks"),
        attachments: array("attachments"),
        edited: v.get("edited").is_some()
            || v.get("message").is_some()
            || subtype.as_deref() == Some("message_changed"),
        subtype,
    }
}

#[cfg(test)]
mod conversion_tests {
    //! Real payloads (`tests/fixtures/slack`), parsed by slack-morphism as
    //! the listener parses them, then converted.

    use super::*;

    /// The `payload` of a Socket Mode envelope fixture.
    fn payload<T: serde::de::DeserializeOwned>(envelope: &str) -> T {
        let v: Value = serde_json::from_str(envelope).expect("a JSON fixture");
        serde_json::from_value(v["payload"].clone()).expect("slack-morphism reads the payload")
    }

    fn shortcut(envelope: &str) -> ShortcutRequest {
        match interaction_inbound(&payload(envelope)).as_slice() {
            [Inbound::Shortcut(s)] => s.clone(),
            other => panic!("expected one shortcut, got {other:?}"),
        }
    }

    #[test]
    fn a_shortcut_on_a_persons_message_carries_the_message_as_events_do() {
        let s = shortcut(include_str!(
            "../../tests/fixtures/slack/socket_mode_interactive_message_action_envelope.bolt-python.json"
        ));
        assert_eq!(s.callback_id, "test-shortcut");
        assert_eq!(
            (s.user_id.as_str(), s.channel_id.as_str()),
            ("W111", "C111")
        );
        assert_eq!(s.response_url, "https://hooks.slack.com/app/T111/111/xxx");
        assert_eq!(s.trigger_id, "111.222.xxx");
        let m = &s.message;
        assert_eq!(
            (m.channel.as_str(), m.ts.as_str()),
            ("C111", "1583636382.000300")
        );
        assert_eq!(
            (m.user.as_deref(), m.bot_id.as_deref()),
            (Some("W111"), None)
        );
        assert_eq!(m.text, "<@W222> test");
        assert_eq!(m.blocks.len(), 1);
        assert!(!m.edited);
    }

    #[test]
    fn a_shortcut_on_a_bot_message_keeps_its_sender_and_attachments() {
        let s = shortcut(include_str!(
            "../../tests/fixtures/slack/socket_mode_interactive_message_action_on_bot_message_envelope.java-slack-sdk.json"
        ));
        let m = &s.message;
        assert_eq!(
            (m.channel.as_str(), m.ts.as_str()),
            ("C111", "1608093938.001200")
        );
        assert_eq!(m.bot_id.as_deref(), Some("B111"));
        assert_eq!(m.app_id.as_deref(), Some("A111"));
        assert_eq!(m.username.as_deref(), Some("Testing App"));
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0]["text"], "Uploading a file...");
        assert!(m.edited);
        assert_eq!(m.thread_ts, None);
    }

    #[test]
    fn a_button_on_the_home_tab_has_no_channel_and_one_in_a_message_has_its_message() {
        let home = interaction_inbound(&payload(include_str!(
            "../../tests/fixtures/slack/socket_mode_interactive_block_actions_app_home_envelope.java-slack-sdk.json"
        )));
        let [Inbound::Action(action)] = home.as_slice() else {
            panic!("one action: {home:?}");
        };
        assert_eq!(action.surface, Surface::Home);
        assert_eq!(action.user_id, "U123");
        assert_eq!(action.action_id, "home_button_1");
        assert_eq!(action.value.as_deref(), Some("create_task"));

        let in_message = interaction_inbound(&payload(include_str!(
            "../../tests/fixtures/slack/socket_mode_interactive_block_actions_message_button_envelope.java-slack-sdk.json"
        )));
        let [Inbound::Action(action)] = in_message.as_slice() else {
            panic!("one action: {in_message:?}");
        };
        assert_eq!(
            action.surface,
            Surface::Message {
                channel_id: "C111".into(),
                message_ts: "1605853634.000400".into()
            }
        );
    }

    #[test]
    fn opening_the_home_tab_is_an_event_and_opening_the_messages_tab_is_not() {
        let opened = |callback: &str| {
            let event: SlackPushEventCallback =
                serde_json::from_str(callback).expect("slack-morphism reads the event");
            match push_inbound(&event) {
                Some(Inbound::HomeOpened { user_id }) => Some(user_id),
                None => None,
                Some(other) => panic!("unexpected {other:?}"),
            }
        };
        let envelope: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/slack/socket_mode_events_api_app_home_opened_envelope.java-slack-sdk.json"
        ))
        .unwrap();
        assert_eq!(
            opened(&envelope["payload"].to_string()).as_deref(),
            Some("U061F7AUR")
        );
        assert_eq!(
            opened(include_str!(
                "../../tests/fixtures/slack/event_callback_app_home_opened_home_no_view.slack-web.json"
            ))
            .as_deref(),
            Some("U043H11ES4V")
        );
        assert_eq!(
            opened(include_str!(
                "../../tests/fixtures/slack/event_callback_app_home_opened_messages_tab.slack-web.json"
            )),
            None
        );
    }
}

#[cfg(test)]
mod nagle_tests {
    use super::disable_nagle;

    #[test]
    fn open_tcp_sockets_stop_delaying_small_writes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(!stream.nodelay().unwrap(), "Nagle is on by default");

        disable_nagle();

        assert!(stream.nodelay().unwrap());
    }
}
