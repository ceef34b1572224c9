//! Routes Slack events to workers: one per Slack thread (per person for slash
//! commands and Home tab buttons, per message for buttons in messages), so
//! one thread's events are handled in order and different threads
//! concurrently. A worker hands each event to its handler: a message is a
//! failure notification or a person in a thread, a slash command goes to
//! `commands`, a button to `buttons`, the message shortcut to `shortcut`.
//! The Home tab opening goes straight to the Home tab task (`home`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error};

use super::App;
use crate::recognize::InboundMessage;
use crate::slack::{CommandReply, CommandRequest, Inbound, Surface};

/// A per-thread worker that saw nothing for this long goes away.
const WORKER_IDLE: Duration = Duration::from_secs(30);

/// Past this many workers, the ones that went idle are forgotten.
const MAX_WORKERS: usize = 4096;

/// The workers, by the key whose events must stay in order.
#[derive(Default)]
pub(super) struct Router {
    workers: HashMap<String, Worker>,
}

struct Worker {
    tx: mpsc::UnboundedSender<Inbound>,
    handle: JoinHandle<()>,
}

impl Router {
    pub(super) fn dispatch(&mut self, app: &Arc<App>, inbound: Inbound) {
        let key = match &inbound {
            Inbound::Hello => {
                release_freed_memory();
                return;
            }
            Inbound::Message { msg, .. } => format!(
                "{}:{}",
                msg.channel,
                msg.thread_ts.as_deref().unwrap_or(&msg.ts)
            ),
            // One person's commands in order; they touch no thread.
            Inbound::Command { request, .. } | Inbound::UnsentAnswer { request, .. } => {
                format!("command:{}", request.user_id)
            }
            Inbound::Action(action) => match &action.surface {
                Surface::Message {
                    channel_id,
                    message_ts,
                } => format!("action:{channel_id}:{message_ts}"),
                // One person's clicks in order; the Home tab is theirs alone.
                Surface::Home => format!("home:{}", action.user_id),
            },
            // In order with the events of the thread it heals in.
            Inbound::Shortcut(s) => format!(
                "{}:{}",
                s.channel_id,
                s.message.thread_ts.as_deref().unwrap_or(&s.message.ts)
            ),
            Inbound::HomeOpened { user_id } => {
                app.home.opened(user_id.clone());
                return;
            }
        };
        let mut inbound = inbound;
        if let Some(w) = self.workers.get(&key) {
            match w.tx.send(inbound) {
                Ok(()) => return,
                // The worker went idle and closed; start a new one below.
                Err(mpsc::error::SendError(back)) => inbound = back,
            }
        }
        let previous = self.workers.remove(&key).map(|w| w.handle);
        let (tx, rx) = mpsc::unbounded_channel();
        // The receiver is alive, so this cannot fail.
        let _ = tx.send(inbound);
        let handle = app.tasks.spawn(worker(app.clone(), rx, previous));
        self.workers.insert(key, Worker { tx, handle });
        if self.workers.len() > MAX_WORKERS {
            self.workers.retain(|_, w| !w.tx.is_closed());
        }
    }
}

/// Handles one thread's events in order. A new worker for the same thread
/// waits for its predecessor, so order holds across worker restarts.
async fn worker(
    app: Arc<App>,
    mut rx: mpsc::UnboundedReceiver<Inbound>,
    previous: Option<JoinHandle<()>>,
) {
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(WORKER_IDLE, rx.recv()) => next.map_err(|_| ()),
            // Events already acknowledged must not be lost: handle what is
            // queued, then go.
            _ = app.shutdown.cancelled() => Err(()),
        };
        match next {
            Ok(Some(inbound)) => app.handle(inbound).await,
            Ok(None) => return,
            Err(_) => {
                rx.close();
                while let Ok(inbound) = rx.try_recv() {
                    app.handle(inbound).await;
                }
                return;
            }
        }
    }
}

impl App {
    /// Posts a slash command's answer that its ack did not carry, to the
    /// person only.
    async fn post_answer(&self, request: &CommandRequest, answer: &CommandReply) -> Result<()> {
        self.parts
            .web
            .post_ephemeral(&request.channel_id, &request.user_id, &answer.text)
            .await?;
        Ok(())
    }

    /// Hands one event to its handler; an error is logged here, once.
    async fn handle(self: &Arc<Self>, inbound: Inbound) {
        let result = match inbound {
            Inbound::Hello => Ok(()),
            Inbound::Message { event_id, msg } => self.on_message(&event_id, &msg).await,
            Inbound::Command { request, reply } => {
                let answer = crate::commands::handle(&self.commands, &request).await;
                match reply.send(answer) {
                    // The ack went out with a holding answer: follow up ephemerally.
                    Err(answer) => self.post_answer(&request, &answer).await,
                    Ok(()) => Ok(()),
                }
            }
            Inbound::UnsentAnswer { request, reply } => self.post_answer(&request, &reply).await,
            Inbound::Action(action) => self.on_action(&action).await,
            Inbound::Shortcut(shortcut) => self.on_shortcut(&shortcut).await,
            Inbound::HomeOpened { user_id } => {
                self.home.opened(user_id);
                Ok(())
            }
        };
        if let Err(e) = result {
            error!(error = ?e, "failed to handle a Slack event");
        }
    }

    /// A message is a failure notification or, maybe, a person in a thread.
    async fn on_message(self: &Arc<Self>, event_id: &str, msg: &InboundMessage) -> Result<()> {
        // Recognition is pure and cheap, so ordinary chatter costs no store write.
        let failure = self.recognizer.recognize(msg);
        if failure.is_some() {
            self.parts.metrics.failures_recognised.inc();
        }
        let Some(failure) = failure else {
            return match self.recognizer.recognize_pass(msg) {
                Some(p) if self.parts.store.first_sight_of_event(event_id)? => {
                    self.on_pass(&p).await
                }
                Some(_) => Ok(()),
                None => self.on_thread_reply(msg).await,
            };
        };
        if !self.parts.store.first_sight_of_event(event_id)? {
            debug!(event_id, "redelivered event ignored");
            return Ok(());
        }
        let text = crate::recognize::message_text(msg);
        self.on_failure(failure, &msg.channel, &msg.ts, &text).await
    }
}

/// Hands memory freed since start-up (config parsing, TLS roots, the first
/// connection) back to the OS: glibc keeps it otherwise, and an idle bot's
/// resident size is what people see beside their other services.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own heap bookkeeping.
    unsafe {
        libc::malloc_trim(0);
    }
}
