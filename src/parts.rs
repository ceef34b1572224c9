//! The running bot's shared parts: its configuration, the store, the Slack
//! Web API gateway, the channel directory and the signal that what the Home
//! tab shows changed.
//!
//! `app` builds them once and holds them behind one `Arc`, and so does the
//! `/selfheal` command context, instead of each cloning each part. Building
//! and holding only: nothing here does IO.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::slack::channels::Channels;
use crate::slack::web::SlackWeb;
use crate::store::Store;

/// What the app and the slash commands share for the bot's life.
pub struct Parts {
    pub cfg: Config,
    /// The source of truth: every decision that must happen once is a row here.
    pub store: Store,
    /// Every write to Slack goes through it (pacing, retries, rate limits).
    pub web: SlackWeb,
    /// Channel names as configured ↔ ids as Slack sends them.
    pub channels: Channels,
    /// Signalled by [`Parts::changed`]; the Home tab task waits on it.
    pub changes: Notify,
    /// What `/metrics` shows; the Slack gateway, the listener and the
    /// sessions count into it.
    pub metrics: Arc<Metrics>,
}

impl Parts {
    /// Says that what the Home tab shows changed: a session started or
    /// ended, a schedule was switched, healing was paused or resumed. The
    /// signal is kept until the Home tab task takes it, so none is lost while
    /// it is busy, and many in a row are one.
    pub fn changed(&self) {
        self.changes.notify_one();
    }
}
