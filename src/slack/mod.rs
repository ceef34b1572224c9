//! Everything that speaks to Slack; the only module that imports slack_morphism.
//!
//! - [`socket`]: the Socket Mode listener, which only converts and enqueues.
//! - [`web`]: the Web API gateway with pacing, 429 handling, timeouts and retries.
//! - [`render`]: the text and Block Kit of every message selfheal posts (pure).
//! - [`channels`]: channel names ↔ ids, as schedules name channels by name.
//! - [`manifest`]: the bot scopes `data/slack-app-manifest.yml` asks for (pure).
//! - [`probe`]: single Web API calls for `selfheal check`, with the granted scopes.

pub mod channels;
pub mod manifest;
pub mod probe;
pub mod render;
pub mod socket;
pub mod web;

use crate::recognize::InboundMessage;

/// Something Slack told us, converted to selfheal's own types.
#[derive(Debug)]
pub enum Inbound {
    /// A Socket Mode connection was (re)established.
    Hello,
    /// A message event (new message, bot post, edit, thread reply).
    Message {
        event_id: String,
        msg: InboundMessage,
    },
    /// A slash command. The answer goes back on `reply` in time for the
    /// Socket Mode ack; if that channel is closed (too late), the answer is
    /// posted as an ephemeral message instead.
    Command {
        request: CommandRequest,
        reply: tokio::sync::oneshot::Sender<CommandReply>,
    },
    /// A button press in a message selfheal posted.
    Action(ActionRequest),
}

/// A `/selfheal …` invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    pub user_id: String,
    pub channel_id: String,
    /// The command's text after the command name (`status hourly_marts`).
    pub text: String,
}

/// What the invoker sees (ephemerally).
#[derive(Debug, Clone, PartialEq)]
pub struct CommandReply {
    pub text: String,
    pub blocks: Option<serde_json::Value>,
}

impl CommandReply {
    pub fn text(text: impl Into<String>) -> CommandReply {
        CommandReply {
            text: text.into(),
            blocks: None,
        }
    }
}

/// A `block_actions` button press.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRequest {
    pub user_id: String,
    pub channel_id: String,
    /// The message carrying the button.
    pub message_ts: String,
    pub action_id: String,
    pub value: Option<String>,
}
