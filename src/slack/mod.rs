//! Everything that speaks to Slack; the only module that imports slack_morphism.
//!
//! - [`socket`]: the Socket Mode listener, which only converts and enqueues.
//! - [`web`]: the Web API gateway with pacing, 429 handling, timeouts and retries.
//! - [`pace`]: when a channel's next write may go, at Slack's pace and burst (pure core).
//! - [`render`]: the text and Block Kit of every message selfheal posts (pure).
//! - [`home`]: the App Home tab's view (pure).
//! - [`channels`]: channel names ↔ ids, as schedules name channels by name.
//! - [`manifest`]: the bot scopes `data/slack-app-manifest.yml` asks for (pure).
//! - [`probe`]: single Web API calls for `selfheal check`, with the granted scopes.

pub mod channels;
pub mod home;
pub mod manifest;
pub mod pace;
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
    /// A slash command's answer that never went back in its ack (the
    /// connection closed first): it is posted ephemerally instead.
    UnsentAnswer {
        request: CommandRequest,
        reply: CommandReply,
    },
    /// A button press in a message selfheal posted, or on its Home tab.
    Action(ActionRequest),
    /// A message shortcut ("Fix with selfheal") used on a message.
    Shortcut(ShortcutRequest),
    /// A person opened selfheal's Home tab (not its Messages tab).
    HomeOpened { user_id: String },
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
    /// Where the button was.
    pub surface: Surface,
    pub action_id: String,
    pub value: Option<String>,
}

/// Where a pressed button was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Surface {
    /// In a message (`container.type: message`).
    Message {
        channel_id: String,
        /// The message carrying the button.
        message_ts: String,
    },
    /// On the presser's Home tab (`container.type: view`): there is no
    /// channel to answer in, only the view.
    Home,
}

/// A message shortcut (`message_action`) used on a message.
#[derive(Debug, Clone, PartialEq)]
pub struct ShortcutRequest {
    /// The shortcut's `callback_id` in the app manifest.
    pub callback_id: String,
    /// Who used it.
    pub user_id: String,
    /// Where the message is.
    pub channel_id: String,
    /// The message it was used on, as message events carry it (its `channel`
    /// filled in from the payload's).
    pub message: InboundMessage,
    /// Where a reply to the person can go without the bot being in the
    /// channel (valid for 30 minutes).
    pub response_url: String,
    /// Opens a modal within 3 s of the shortcut.
    pub trigger_id: String,
}
