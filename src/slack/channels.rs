//! Channel names ↔ ids.
//!
//! Schedules name channels as people write them (`#data-alerts`); Slack events
//! carry ids (`C0123ABC`). The directory is loaded once with
//! `conversations.list` and filled in lazily with `conversations.info`, so
//! steady-state lookups cost no API call.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tracing::warn;

use super::web::SlackWeb;
use crate::config::normalize_channel;

#[derive(Clone)]
pub struct Channels {
    web: SlackWeb,
    /// id → normalised name and back. A std lock: never held across an await.
    maps: Arc<RwLock<Maps>>,
}

#[derive(Default)]
struct Maps {
    by_id: HashMap<String, String>,
    by_name: HashMap<String, String>,
}

impl Channels {
    pub fn new(web: SlackWeb) -> Self {
        Channels {
            web,
            maps: Arc::default(),
        }
    }

    /// Loads every visible channel. Failure is logged, not fatal: lookups fall
    /// back to `conversations.info` and to ids written in the config.
    pub async fn load(&self) {
        match self.web.list_channels().await {
            Ok(list) => {
                for (id, name) in list {
                    self.remember(&id, &name);
                }
            }
            Err(e) => warn!(error = %e, "could not list Slack channels; resolving them one by one"),
        }
    }

    fn remember(&self, id: &str, name: &str) {
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        let name = normalize_channel(name);
        maps.by_id.insert(id.to_string(), name.clone());
        maps.by_name.insert(name, id.to_string());
    }

    /// The normalised name of a channel id, asking Slack on a miss.
    pub async fn name_of(&self, id: &str) -> Option<String> {
        if let Some(name) = self.read().by_id.get(id).cloned() {
            return Some(name);
        }
        match self.web.channel_name(id).await {
            Ok(Some(name)) => {
                self.remember(id, &name);
                Some(normalize_channel(&name))
            }
            Ok(None) => None,
            Err(e) => {
                warn!(channel = id, error = %e, "could not look up a channel name");
                None
            }
        }
    }

    /// The id of a channel written in config (a name or an id).
    pub async fn id_of(&self, configured: &str) -> Option<String> {
        let key = normalize_channel(configured);
        if looks_like_id(&key) {
            return Some(key);
        }
        if let Some(id) = self.read().by_name.get(&key).cloned() {
            return Some(id);
        }
        // The channel may have been created or joined since start-up.
        self.load().await;
        self.read().by_name.get(&key).cloned()
    }

    /// True when a configured channel (name or id) denotes the channel `id`.
    pub async fn is(&self, configured: &str, id: &str) -> bool {
        let key = normalize_channel(configured);
        if key == id {
            return true;
        }
        !looks_like_id(&key) && self.name_of(id).await.as_deref() == Some(key.as_str())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Slack conversation ids: C… (public), G… (private, legacy), D… (DM). Channel
/// names are always lower case, so an upper-case key can only be an id.
fn looks_like_id(s: &str) -> bool {
    s.len() >= 2
        && matches!(s.as_bytes()[0], b'C' | b'G' | b'D')
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}
