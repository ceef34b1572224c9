//! Everything that speaks to Slack; the only module that imports slack_morphism.
//!
//! - [`socket`]: the Socket Mode listener, which only converts and enqueues.
//! - [`web`]: the Web API gateway with pacing, 429 handling, timeouts and retries.
//! - [`render`]: the text and Block Kit of every message selfheal posts (pure).
//! - [`channels`]: channel names ↔ ids, as schedules name channels by name.

pub mod channels;
pub mod render;
pub mod socket;
pub mod web;

use crate::recognize::InboundMessage;

/// Something Slack told us, converted to selfheal's own types.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// A Socket Mode connection was (re)established.
    Hello,
    /// A message event (new message, bot post, edit, thread reply).
    Message {
        event_id: String,
        msg: InboundMessage,
    },
}
