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
use super::{ActionRequest, CommandReply, CommandRequest, Inbound};
use crate::recognize::InboundMessage;

/// The queue handle the callbacks push into (stored as slack-morphism user state).
#[derive(Clone)]
struct Queue(mpsc::UnboundedSender<Inbound>);

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
            .with_user_state(Queue(tx)),
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

/// Generic because slack-morphism does not export the hello event's type.
async fn on_hello<E: std::fmt::Debug>(
    event: E,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) {
    info!(hello = ?event, "connected to Slack (Socket Mode)");
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
    let event_id = event.event_id.to_string();
    let raw = match &event.event {
        SlackEventCallbackBody::Message(msg) => serde_json::to_value(msg).ok(),
        SlackEventCallbackBody::Unknown(raw)
            if raw.get("type").and_then(Value::as_str) == Some("message") =>
        {
            Some(raw.clone())
        }
        _ => None,
    };
    if let Some(raw) = raw {
        enqueue(
            &states,
            Inbound::Message {
                event_id,
                msg: inbound_message(&raw),
            },
        )
        .await;
    }
    Ok(())
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
    if let SlackInteractionEvent::BlockActions(ev) = event {
        let user_id = ev
            .user
            .as_ref()
            .map(|u| u.id.to_string())
            .unwrap_or_default();
        let channel_id = ev
            .channel
            .as_ref()
            .map(|c| c.id.to_string())
            .unwrap_or_default();
        let message_ts = ev
            .message
            .as_ref()
            .map(|m| m.origin.ts.to_string())
            .unwrap_or_default();
        for action in ev.actions.unwrap_or_default() {
            enqueue(
                &states,
                Inbound::Action(ActionRequest {
                    user_id: user_id.clone(),
                    channel_id: channel_id.clone(),
                    message_ts: message_ts.clone(),
                    action_id: action.action_id.to_string(),
                    value: action.value.clone(),
                }),
            )
            .await;
        }
    }
    Ok(())
}

fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<SlackClient<Connector>>,
    _states: SlackClientEventsUserState,
) -> HttpStatusCode {
    warn!(error = %err, "skipped a Slack payload or connection error");
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
