//! The Socket Mode side: the `/link` WebSocket endpoint, one task per connection,
//! round-robin dispatch of frames, ack bookkeeping and timed redelivery.
//!
//! Every connection task owns its socket; the rest of the fake reaches it only
//! through the task's command channel, so no lock is ever held while writing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

use super::payloads;
use super::state::{Ack, Conn, SentEnvelope, State};
use super::Inner;

/// What the rest of the fake asks a connection task to do.
#[derive(Debug)]
pub(crate) enum ConnCommand {
    /// Write a text frame; for an envelope, its id, so the time it was
    /// written is recorded as when it was sent.
    Text(String, Option<String>),
    /// Send a close frame and end the connection.
    Close,
}

/// A frame on its way to a connection.
#[derive(Debug, Clone)]
pub(crate) struct OutFrame {
    text: String,
    /// Boxed to keep the frame small; most of the time it sits in queues.
    envelope: Option<Box<EnvelopeMeta>>,
}

/// What the fake remembers about an envelope it sends.
#[derive(Debug, Clone)]
struct EnvelopeMeta {
    envelope_id: String,
    event_id: Option<String>,
    kind: String,
    retry_attempt: u32,
    /// The event callback to redeliver if this goes unacked; `None` means no retries.
    retry_payload: Option<Value>,
}

impl OutFrame {
    /// Unrecorded text.
    pub fn text(text: String) -> Self {
        OutFrame {
            text,
            envelope: None,
        }
    }

    /// An envelope the fake built; `retry_payload` enables redelivery.
    pub fn envelope(
        envelope: Value,
        envelope_id: String,
        event_id: Option<String>,
        kind: &str,
        retry_attempt: u32,
        retry_payload: Option<Value>,
    ) -> Self {
        OutFrame {
            text: envelope.to_string(),
            envelope: Some(Box::new(EnvelopeMeta {
                envelope_id,
                event_id,
                kind: kind.to_string(),
                retry_attempt,
                retry_payload,
            })),
        }
    }

    /// A frame supplied by a test: recorded if it looks like an envelope, never retried.
    pub fn raw_envelope(envelope: Value) -> Self {
        let meta = envelope["envelope_id"]
            .as_str()
            .map(|envelope_id| EnvelopeMeta {
                envelope_id: envelope_id.to_string(),
                event_id: envelope["payload"]["event_id"].as_str().map(str::to_string),
                kind: envelope["type"].as_str().unwrap_or_default().to_string(),
                retry_attempt: envelope["retry_attempt"].as_u64().unwrap_or(0) as u32,
                retry_payload: None,
            });
        OutFrame {
            text: envelope.to_string(),
            envelope: meta.map(Box::new),
        }
    }

    pub fn envelope_id(&self) -> Option<&str> {
        self.envelope.as_ref().map(|meta| meta.envelope_id.as_str())
    }
}

/// `GET /link/?ticket=..`: upgrades if the ticket was issued and not used yet.
pub(crate) async fn link(
    AxumState(inner): AxumState<Arc<Inner>>,
    Query(params): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let ticket = params.get("ticket").cloned().unwrap_or_default();
    let valid = inner.update(|st| st.tickets.remove(&ticket));
    if !valid {
        tracing::debug!(ticket, "fake slack refused a socket mode ticket");
        return (StatusCode::UNAUTHORIZED, "invalid_ticket").into_response();
    }
    ws.on_upgrade(move |socket| run_connection(inner, socket))
}

/// One connection: `hello`, then write what the dispatcher sends and read acks until
/// either side closes or the fake shuts down.
async fn run_connection(inner: Arc<Inner>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (id, hello) = {
        let mut st = inner.state();
        let id = st.next_counter();
        let hello = payloads::hello(&inner.config, st.connections.len() + 1, id);
        (id, hello)
    };
    if sink
        .send(WsMessage::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    // Registering after `hello` is written keeps `hello` the first frame on the wire.
    let queued: Vec<OutFrame> = inner.update(|st| {
        st.connections.push(Conn {
            id,
            tx,
            draining: false,
        });
        st.hellos += 1;
        st.queue.drain(..).collect()
    });
    tracing::debug!(
        connection = id,
        queued = queued.len(),
        "fake slack socket connected"
    );
    for frame in queued {
        dispatch(&inner, frame);
    }

    let mut stopping = inner.stopping.clone();
    loop {
        // Created before reading the flag, so a flip in between still wakes us.
        let pongs_changed = inner.pongs_changed.notified();
        let reading = inner.state().pongs;
        tokio::select! {
            command = rx.recv() => match command {
                Some(ConnCommand::Text(text, envelope_id)) => {
                    if sink.send(WsMessage::Text(text.into())).await.is_err() {
                        break;
                    }
                    if let Some(envelope_id) = envelope_id {
                        record_written(&inner, &envelope_id);
                    }
                }
                Some(ConnCommand::Close) => {
                    let _ = sink.send(close_frame()).await;
                    break;
                }
                // The connection was removed from the state: drop it without a close
                // frame, like a network failure.
                None => break,
            },
            incoming = stream.next(), if reading => match incoming {
                Some(Ok(WsMessage::Text(text))) => record_ack(&inner, id, text.as_str()),
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                // axum answers pings itself; pongs and binary frames mean nothing here.
                Some(Ok(_)) => {}
            },
            _ = pongs_changed => {}
            _ = stopping.wait() => {
                let _ = sink.send(close_frame()).await;
                break;
            }
        }
    }
    inner.update(|st| st.connections.retain(|conn| conn.id != id));
    tracing::debug!(connection = id, "fake slack socket closed");
}

fn close_frame() -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code: 1000,
        reason: "".into(),
    }))
}

/// An envelope left the fake: ack latency counts from here, not from when it
/// was queued for the connection (a busy fake must not look like a slow bot).
fn record_written(inner: &Inner, envelope_id: &str) {
    let mut st = inner.state();
    if let Some(sent) = st
        .envelopes_sent
        .iter_mut()
        .rev()
        .find(|sent| sent.envelope_id == envelope_id)
    {
        sent.sent_at = Instant::now();
    }
}

/// Reads an ack (`{"envelope_id": .., "payload"?: ..}`) and records it.
fn record_ack(inner: &Inner, connection: u64, text: &str) {
    let ack: Value = match serde_json::from_str(text) {
        Ok(ack) => ack,
        Err(err) => {
            tracing::warn!(connection, error = %err, text, "fake slack read a non-JSON frame");
            return;
        }
    };
    let Some(envelope_id) = ack["envelope_id"].as_str() else {
        tracing::warn!(
            connection,
            text,
            "fake slack read a frame without envelope_id"
        );
        return;
    };
    inner.update(|st| {
        st.pending.remove(envelope_id);
        let sent_at = st
            .envelopes_sent
            .iter()
            .rev()
            .find(|sent| sent.envelope_id == envelope_id)
            .map(|sent| sent.sent_at);
        st.acks.push(Ack {
            envelope_id: envelope_id.to_string(),
            sent_at,
            acked_at: Instant::now(),
            payload: ack.get("payload").cloned(),
        });
    });
}

/// Sends a frame to one open connection (round-robin), or queues it until one opens.
pub(crate) fn dispatch(inner: &Arc<Inner>, frame: OutFrame) {
    let timer = inner.update(|st| match send_locked(st, frame) {
        Ok(timer) => timer,
        Err(frame) => {
            st.queue.push_back(frame);
            None
        }
    });
    if let Some((envelope_id, timeout)) = timer {
        spawn_ack_timer(inner, envelope_id, timeout);
    }
}

/// Writes `frame` to the next live connection. On success returns the ack timer to
/// start, if the frame is redeliverable; with no live connection, gives the frame back.
fn send_locked(st: &mut State, frame: OutFrame) -> Result<Option<(String, Duration)>, OutFrame> {
    loop {
        let mut live: Vec<usize> = (0..st.connections.len())
            .filter(|&i| !st.connections[i].draining)
            .collect();
        if let Some(route) = &st.route_to {
            let routed: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| route.contains(&st.connections[i].id))
                .collect();
            if !routed.is_empty() {
                live = routed;
            }
        }
        if live.is_empty() {
            return Err(frame);
        }
        let index = live[st.next_conn % live.len()];
        st.next_conn = st.next_conn.wrapping_add(1);
        let conn = &st.connections[index];
        let envelope_id = frame.envelope.as_ref().map(|m| m.envelope_id.clone());
        if conn
            .tx
            .send(ConnCommand::Text(frame.text.clone(), envelope_id))
            .is_err()
        {
            // The task is exiting; forget it and try the next one.
            let dead = conn.id;
            st.connections.retain(|c| c.id != dead);
            continue;
        }
        let connection = conn.id;
        let Some(meta) = frame.envelope.clone() else {
            return Ok(None);
        };
        st.envelopes_sent.push(SentEnvelope {
            envelope_id: meta.envelope_id.clone(),
            event_id: meta.event_id.clone(),
            kind: meta.kind.clone(),
            retry_attempt: meta.retry_attempt,
            sent_at: Instant::now(),
            connection,
        });
        if meta.retry_payload.is_none() {
            return Ok(None);
        }
        st.pending.insert(meta.envelope_id.clone(), frame);
        return Ok(Some((meta.envelope_id, st.ack_timeout)));
    }
}

/// After `timeout`, redelivers the envelope if it is still unacked and has retries left.
fn spawn_ack_timer(inner: &Arc<Inner>, envelope_id: String, timeout: Duration) {
    let inner = inner.clone();
    let mut stopping = inner.stopping.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(timeout) => {}
            _ = stopping.wait() => return,
        }
        let max_retries = inner.config.max_retries;
        let retry = inner.update(|st| {
            let meta = *st.pending.remove(&envelope_id)?.envelope?;
            if meta.retry_attempt >= max_retries {
                tracing::debug!(envelope_id, "fake slack gave up redelivering an envelope");
                return None;
            }
            let payload = meta.retry_payload?;
            Some(st.events_api_retry_frame(payload, meta.retry_attempt + 1))
        });
        if let Some(frame) = retry {
            tracing::debug!(old = envelope_id, new = ?frame.envelope_id(), "fake slack redelivers an unacked envelope");
            dispatch(&inner, frame);
        }
    });
}

/// Sends `disconnect` on every connection, stops routing to them, and closes them
/// after the grace period.
pub(crate) fn disconnect_all(inner: &Arc<Inner>, reason: &str) {
    let conns = inner.update(|st| {
        st.connections
            .iter_mut()
            .map(|conn| {
                conn.draining = true;
                (conn.id, conn.tx.clone())
            })
            .collect::<Vec<_>>()
    });
    let grace = inner.config.disconnect_grace;
    for (id, tx) in conns {
        let frame = payloads::disconnect(reason, id).to_string();
        if tx.send(ConnCommand::Text(frame, None)).is_err() {
            continue;
        }
        let mut stopping = inner.stopping.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(grace) => {
                    // The client may have closed first; then there is nobody to tell.
                    let _ = tx.send(ConnCommand::Close);
                }
                _ = stopping.wait() => {}
            }
        });
    }
}

/// Forgets every connection; their tasks see the command channel close and drop the
/// socket without a close frame.
pub(crate) fn drop_all(inner: &Inner) {
    inner.update(|st| st.connections.clear());
}
