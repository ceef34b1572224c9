//! The Socket Mode listener: selfheal owns the WebSocket connections.
//!
//! Each connection is opened here (`apps.connections.open`, then the
//! WebSocket), and every envelope is acknowledged by its `envelope_id` the
//! moment it is read, before its payload is interpreted: no payload, however
//! strange its shape, can cost its ack (issue 17: an org-wide install's
//! `team_id: null` made slack-morphism's listener drop the whole envelope).
//! Slash commands are the one exception: their ack carries the answer, so it
//! waits for the app's answer up to a deadline, in a task of its own.
//!
//! Only then is the payload read: first with slack-morphism's typed models,
//! and where those reject it, tolerantly from the raw JSON for the few fields
//! selfheal needs. Anything else is logged once, with its type, and skipped.
//! The listener only converts and enqueues: no IO beyond its socket, no store.
//! It runs on a thread of its own, with its own runtime and HTTP client:
//! however busy the app's workers are, an envelope is acked at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use slack_morphism::prelude::*;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::web::{connector, Connector};
use super::{ActionRequest, CommandReply, CommandRequest, Inbound, ShortcutRequest, Surface};
use crate::metrics::Metrics;
use crate::recognize::InboundMessage;

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
    /// delivers envelopes to `tx`. Returns once the thread's client is built;
    /// the connections open (and reopen) in the background.
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
                    let client = match connector(&api_url) {
                        Ok(connector) => Arc::new(SlackClient::new(connector)),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let stopping = CancellationToken::new();
                    let shared = Arc::new(Shared {
                        client,
                        token: SlackApiToken::new(app_token.into()),
                        settings,
                        tx,
                        live: AtomicUsize::new(0),
                    });
                    let tasks: Vec<_> = (0..shared.settings.connections.max(1))
                        .map(|n| tokio::spawn(keep_connected(shared.clone(), n, stopping.clone())))
                        .collect();
                    let _ = ready_tx.send(Ok(()));
                    // Until asked to stop, or the handle is dropped.
                    let _ = stop_rx.await;
                    stopping.cancel();
                    for task in tasks {
                        let _ = task.await;
                    }
                    shared.settings.metrics.set_slack_connected(false);
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

/// What every connection of the listener shares.
struct Shared {
    client: Arc<SlackClient<Connector>>,
    /// The app-level token (`xapp-…`) that opens connections.
    token: SlackApiToken,
    settings: SocketSettings,
    tx: mpsc::UnboundedSender<Inbound>,
    /// Connections that said `hello` and are still open: Slack is reachable
    /// while any is.
    live: AtomicUsize,
}

impl Shared {
    fn enqueue(&self, inbound: Inbound) {
        if self.tx.send(inbound).is_err() {
            debug!("event arrived while shutting down; dropped");
        }
    }
}

/// How a connection ended.
enum Ended {
    /// The listener is stopping.
    Stopped,
    /// Slack asked us to go (`disconnect`), the socket closed or failed, or
    /// it stopped answering pings: open a new one at once.
    Lost,
}

/// Keeps connection number `n` open until the listener stops: opens it,
/// serves it, and opens a new one whenever it ends. A failed open is retried
/// after `reconnect_secs`, forever: a bot that gave up would sit deaf until
/// someone restarted it (Slack's own SDKs retry too).
async fn keep_connected(shared: Arc<Shared>, n: u32, stopping: CancellationToken) {
    // The second connection opens a moment after the first, as Slack's SDKs do.
    let pause = |secs: u64| Duration::from_millis(secs * 1000);
    if n > 0 && wait_or_stop(&stopping, Duration::from_millis(200 * u64::from(n))).await {
        return;
    }
    loop {
        if stopping.is_cancelled() {
            return;
        }
        match connect(&shared).await {
            Ok(ws) => {
                debug!(connection = n, "Socket Mode WebSocket open");
                if let Ended::Stopped = serve(&shared, n, ws, &stopping).await {
                    return;
                }
            }
            Err(e) => {
                warn!(
                    connection = n,
                    error = format!("{e:#}"),
                    "could not open a Socket Mode connection; retrying"
                );
                if wait_or_stop(&stopping, pause(shared.settings.reconnect_secs.max(1))).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps for `wait`; true if the listener stops meanwhile.
async fn wait_or_stop(stopping: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => stopping.is_cancelled(),
        _ = stopping.cancelled() => true,
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `apps.connections.open`, then the WebSocket to the URL it gives.
async fn connect(shared: &Shared) -> anyhow::Result<Socket> {
    let opened = shared
        .client
        .open_session(&shared.token)
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("apps.connections.open")?;
    // Nagle off: an ack written right after another would otherwise wait
    // for Slack's delayed TCP ack, about 40 ms (`selfheal bench` measured it).
    let (ws, _) = tokio_tungstenite::connect_async_with_config(opened.url.0.as_str(), None, true)
        .await
        .context("opening the Socket Mode WebSocket")?;
    Ok(ws)
}

/// Pings after this many silent intervals mean the connection is dead.
const SILENT_PINGS: u32 = 5;

/// Serves one open connection: acks and converts envelopes, answers pings,
/// pings Slack and notices when it stops answering.
async fn serve(shared: &Arc<Shared>, n: u32, ws: Socket, stopping: &CancellationToken) -> Ended {
    let (mut sink, mut stream) = ws.split();
    // Late acks (slash commands' answers) come back through here, each with
    // a word back once it is written; one never written drops it unsaid.
    let (acks_tx, mut acks) = mpsc::unbounded_channel::<(String, oneshot::Sender<()>)>();
    let interval = Duration::from_secs(shared.settings.ping_secs.max(1));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut last_pong = Instant::now();
    let mut said_hello = false;
    let ended = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(WsMessage::Text(text))) => {
                    let arrived = Instant::now();
                    let envelope: Value = match serde_json::from_str(text.as_str()) {
                        Ok(v) => v,
                        Err(e) => {
                            warn!(connection = n, error = %e, "skipped a Socket Mode frame that is not JSON");
                            continue;
                        }
                    };
                    let kind = envelope.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
                    // The ack first, before the payload is looked at.
                    if let Some(id) = envelope.get("envelope_id").and_then(Value::as_str) {
                        shared.settings.metrics.envelopes.inc(&kind);
                        if kind == "slash_commands" {
                            answer_command(shared, id, &envelope, arrived, acks_tx.clone());
                        } else {
                            if sink.send(WsMessage::Text(json!({ "envelope_id": id }).to_string().into())).await.is_err() {
                                break Ended::Lost;
                            }
                            shared.settings.metrics.ack_seconds.observe(arrived.elapsed());
                        }
                    }
                    match kind.as_str() {
                        "hello" => {
                            info!(connection = n, "connected to Slack (Socket Mode)");
                            if !said_hello {
                                said_hello = true;
                                shared.live.fetch_add(1, Ordering::Relaxed);
                            }
                            shared.settings.metrics.set_slack_connected(true);
                            shared.enqueue(Inbound::Hello);
                        }
                        "disconnect" => {
                            let reason = envelope.get("reason").and_then(Value::as_str).unwrap_or_default();
                            info!(connection = n, reason, "Slack asked to reconnect");
                            break Ended::Lost;
                        }
                        "slash_commands" => {}
                        _ => {
                            for inbound in envelope_inbound(&kind, envelope.get("payload").unwrap_or(&Value::Null)) {
                                shared.enqueue(inbound);
                            }
                        }
                    }
                }
                Some(Ok(WsMessage::Ping(data))) => {
                    if sink.send(WsMessage::Pong(data)).await.is_err() {
                        break Ended::Lost;
                    }
                }
                Some(Ok(WsMessage::Pong(_))) => last_pong = Instant::now(),
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break Ended::Lost,
                Some(Ok(_)) => {}
            },
            Some((ack, written)) = acks.recv() => {
                if sink.send(WsMessage::Text(ack.into())).await.is_err() {
                    break Ended::Lost;
                }
                let _ = written.send(());
            }
            _ = ping.tick() => {
                if last_pong.elapsed() > interval * SILENT_PINGS {
                    warn!(connection = n, "Socket Mode connection stopped answering pings; replacing it");
                    break Ended::Lost;
                }
                if sink.send(WsMessage::Ping(Default::default())).await.is_err() {
                    break Ended::Lost;
                }
            }
            _ = stopping.cancelled() => {
                let _ = sink.send(WsMessage::Close(None)).await;
                break Ended::Stopped;
            }
        }
    };
    if said_hello && shared.live.fetch_sub(1, Ordering::Relaxed) == 1 {
        shared.settings.metrics.set_slack_connected(false);
    }
    ended
}

/// How long a slash command's ack waits for the answer. Slack's deadline is
/// 3 s; what is not ready by then is posted ephemerally afterwards.
const COMMAND_DEADLINE: Duration = Duration::from_millis(2000);

/// Slash commands are answered in the ack (ephemerally), so the ack waits —
/// in a task of its own, for the app's answer, never for IO of its own — up
/// to the deadline. The fields are read from the raw JSON: no model can
/// reject them.
fn answer_command(
    shared: &Arc<Shared>,
    envelope_id: &str,
    envelope: &Value,
    arrived: Instant,
    acks: mpsc::UnboundedSender<(String, oneshot::Sender<()>)>,
) {
    let payload = envelope.get("payload").unwrap_or(&Value::Null);
    let s = |key: &str| {
        payload
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    debug!(command = s("command"), "slash command received");
    let request = CommandRequest {
        user_id: s("user_id"),
        channel_id: s("channel_id"),
        text: s("text"),
    };
    let (tx, rx) = oneshot::channel();
    shared.enqueue(Inbound::Command {
        request: request.clone(),
        reply: tx,
    });
    let (shared, envelope_id) = (shared.clone(), envelope_id.to_string());
    tokio::spawn(async move {
        let reply = match tokio::time::timeout(COMMAND_DEADLINE, rx).await {
            Ok(Ok(reply)) => reply,
            _ => CommandReply::text("⏳ Working on it; the answer will follow here."),
        };
        let mut answer = json!({ "response_type": "ephemeral", "text": reply.text });
        if let Some(blocks) = &reply.blocks {
            answer["blocks"] = blocks.clone();
        }
        let ack = json!({ "envelope_id": envelope_id, "payload": answer });
        let (written, was_written) = oneshot::channel();
        if acks.send((ack.to_string(), written)).is_ok() && was_written.await.is_ok() {
            shared
                .settings
                .metrics
                .ack_seconds
                .observe(arrived.elapsed());
        } else {
            // The connection died while the answer was awaited: Slack never
            // got it, and the command has run, so the answer is posted.
            warn!(
                envelope_id,
                "the connection closed before a slash command's answer went; posting it"
            );
            shared.enqueue(Inbound::UnsentAnswer { request, reply });
        }
    });
}

/// What an envelope's payload is to selfheal (after its ack): read with
/// slack-morphism's models, or tolerantly from the raw JSON where they reject
/// it; a payload of a kind selfheal does not know is logged and skipped.
pub fn envelope_inbound(kind: &str, payload: &Value) -> Vec<Inbound> {
    match kind {
        "events_api" => match serde_json::from_value::<SlackPushEvent>(payload.clone()) {
            Ok(SlackPushEvent::EventCallback(event)) => push_inbound(&event).into_iter().collect(),
            Ok(_) => vec![],
            Err(e) => {
                debug!(error = %e, "slack-morphism rejected an event; reading it tolerantly");
                tolerant::push_inbound(payload).into_iter().collect()
            }
        },
        "interactive" => match serde_json::from_value::<SlackInteractionEvent>(payload.clone()) {
            Ok(event) => interaction_inbound(&event),
            Err(e) => {
                debug!(error = %e, "slack-morphism rejected an interaction; reading it tolerantly");
                tolerant::interaction_inbound(payload)
            }
        },
        _ => {
            warn!(
                kind,
                "skipped a Socket Mode envelope of a kind selfheal does not know"
            );
            vec![]
        }
    }
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

/// Reads the payloads slack-morphism's models reject (an org-wide install's
/// `team_id: null`, fields Slack added since) from the raw JSON, taking only
/// the fields selfheal needs.
mod tolerant {
    use serde_json::Value;
    use tracing::warn;

    use super::{inbound_message, ActionRequest, Inbound, ShortcutRequest, Surface};

    fn s(v: &Value, pointer: &str) -> Option<String> {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// An Events API payload: a message, the Home tab opened, or nothing.
    pub fn push_inbound(payload: &Value) -> Option<Inbound> {
        let event = payload
            .get("event")
            .filter(|_| s(payload, "/type").as_deref() == Some("event_callback"));
        let Some(event) = event else {
            skipped("events_api", payload);
            return None;
        };
        match s(event, "/type").as_deref() {
            Some("message") => Some(Inbound::Message {
                event_id: s(payload, "/event_id").unwrap_or_default(),
                msg: inbound_message(event),
            }),
            Some("app_home_opened") if s(event, "/tab").as_deref() == Some("home") => {
                Some(Inbound::HomeOpened {
                    user_id: s(event, "/user").unwrap_or_default(),
                })
            }
            Some("app_home_opened") => None,
            _ => {
                skipped("events_api", payload);
                None
            }
        }
    }

    /// An interactive payload: button presses, a message shortcut, or nothing.
    pub fn interaction_inbound(payload: &Value) -> Vec<Inbound> {
        let user_id = s(payload, "/user/id").unwrap_or_default();
        match s(payload, "/type").as_deref() {
            Some("block_actions") => {
                let surface = if s(payload, "/container/type").as_deref() == Some("view") {
                    Surface::Home
                } else {
                    Surface::Message {
                        channel_id: s(payload, "/channel/id").unwrap_or_default(),
                        message_ts: s(payload, "/message/ts")
                            .or_else(|| s(payload, "/container/message_ts"))
                            .unwrap_or_default(),
                    }
                };
                payload
                    .get("actions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|action| {
                        Inbound::Action(ActionRequest {
                            user_id: user_id.clone(),
                            surface: surface.clone(),
                            action_id: s(action, "/action_id").unwrap_or_default(),
                            value: s(action, "/value"),
                        })
                    })
                    .collect()
            }
            Some("message_action") => {
                let (Some(channel_id), Some(message)) =
                    (s(payload, "/channel/id"), payload.get("message"))
                else {
                    return vec![];
                };
                let mut message = inbound_message(message);
                message.channel = channel_id.clone();
                vec![Inbound::Shortcut(ShortcutRequest {
                    callback_id: s(payload, "/callback_id").unwrap_or_default(),
                    user_id,
                    channel_id,
                    message,
                    response_url: s(payload, "/response_url").unwrap_or_default(),
                    trigger_id: s(payload, "/trigger_id").unwrap_or_default(),
                })]
            }
            _ => {
                skipped("interactive", payload);
                vec![]
            }
        }
    }

    /// One warning per skipped payload, naming what it was.
    fn skipped(kind: &str, payload: &Value) {
        warn!(
            kind,
            payload_type = s(payload, "/type").unwrap_or_default(),
            event_type = s(payload, "/event/type").unwrap_or_default(),
            "skipped a Slack payload of a shape selfheal does not know"
        );
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

    #[test]
    fn an_org_wide_installs_message_which_slack_morphism_rejects_is_read_tolerantly() {
        let payload: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/slack/event_callback_message_org_app.bolt-python.json"
        ))
        .unwrap();
        // The cause of issue 17: the typed model wants a string.
        let rejected = serde_json::from_value::<SlackPushEvent>(payload.clone())
            .expect_err("slack-morphism 2.31 types authorizations[].team_id as a string");
        assert!(
            rejected.to_string().contains("invalid type: null"),
            "{rejected}"
        );

        let inbound = envelope_inbound("events_api", &payload);

        let [Inbound::Message { event_id, msg }] = inbound.as_slice() else {
            panic!("one message: {inbound:?}");
        };
        assert_eq!(event_id, "Ev111");
        assert_eq!(
            (msg.channel.as_str(), msg.ts.as_str(), msg.user.as_deref()),
            ("C111", "1606810819.000800", Some("W111"))
        );
        assert_eq!(msg.text, "<@W222>");
    }

    #[test]
    fn payloads_of_shapes_selfheal_does_not_know_are_skipped() {
        let check = |kind: &str, payload: Value| {
            let inbound = envelope_inbound(kind, &payload);
            assert!(inbound.is_empty(), "{kind} {payload}: {inbound:?}");
        };
        check("events_api", Value::Null);
        check("events_api", serde_json::json!("text"));
        check(
            "events_api",
            serde_json::json!({"type": "event_callback", "enterprise_id": "E111",
                "event": {"type": "team_access_granted", "team_ids": ["T111"]}}),
        );
        check(
            "interactive",
            serde_json::json!({"type": "a_future_interaction"}),
        );
        check("a_future_kind", serde_json::json!({}));
    }
}
