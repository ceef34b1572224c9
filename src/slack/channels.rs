//! Channel names ↔ ids.
//!
//! Schedules name channels as people write them (`#data-alerts`); Slack events
//! carry ids (`C0123ABC`). The directory is loaded once with
//! `conversations.list` and filled in lazily with `conversations.info`, so
//! steady-state lookups cost no API call.
//!
//! On Enterprise Grid one name may be a channel in several workspaces. A
//! name without a workspace means it in any of them; `Acme EU/#data-alerts`
//! (or the workspace's `T…` id) means it in that one (see
//! [`crate::config::normalize_channel`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tracing::warn;

use super::web::{SlackWeb, Workspace};
use crate::config::{normalize_channel, split_workspace};

#[derive(Clone)]
pub struct Channels {
    web: SlackWeb,
    /// id → normalised name and back. A std lock: never held across an await.
    maps: Arc<RwLock<Maps>>,
}

#[derive(Default)]
struct Maps {
    /// id → normalised name, and the workspace it was listed in (org-wide
    /// installs only).
    by_id: HashMap<String, (String, Option<Workspace>)>,
    /// normalised name → its channels, one per workspace that has it.
    by_name: HashMap<String, Vec<String>>,
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
                for (id, name, workspace) in list {
                    self.remember(&id, &name, workspace);
                }
            }
            Err(e) => warn!(error = %e, "could not list Slack channels; resolving them one by one"),
        }
    }

    fn remember(&self, id: &str, name: &str, workspace: Option<Workspace>) {
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        let name = normalize_channel(name);
        let workspace = workspace.or_else(|| maps.by_id.get(id).and_then(|(_, w)| w.clone()));
        if let Some((old, _)) = maps.by_id.insert(id.to_string(), (name.clone(), workspace)) {
            // A renamed channel is no longer found by its old name.
            if let Some(ids) = maps.by_name.get_mut(&old) {
                ids.retain(|known| known != id);
            }
        }
        let ids = maps.by_name.entry(name).or_default();
        if !ids.iter().any(|known| known == id) {
            ids.push(id.to_string());
        }
    }

    /// The normalised name of a channel id, asking Slack on a miss.
    pub async fn name_of(&self, id: &str) -> Option<String> {
        if let Some((name, _)) = self.read().by_id.get(id).cloned() {
            return Some(name);
        }
        match self.web.channel_name(id).await {
            Ok(Some(name)) => {
                self.remember(id, &name, None);
                Some(normalize_channel(&name))
            }
            Ok(None) => None,
            Err(e) => {
                warn!(channel = id, error = %e, "could not look up a channel name");
                None
            }
        }
    }

    /// The workspace a channel was listed in, on an org-wide install.
    pub fn workspace_of(&self, id: &str) -> Option<Workspace> {
        self.read().by_id.get(id).and_then(|(_, w)| w.clone())
    }

    /// How many workspaces of an org-wide install the channels are in (0
    /// for a single-workspace install).
    pub fn workspaces(&self) -> usize {
        let maps = self.read();
        let mut ids: Vec<&str> = maps
            .by_id
            .values()
            .filter_map(|(_, w)| w.as_ref().map(|w| w.id.as_str()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    /// Every channel a configured channel (a name or an id, maybe after its
    /// workspace) denotes: one, or for a name without a workspace on an
    /// org-wide install, that name in each workspace that has it.
    pub async fn ids_of(&self, configured: &str) -> Vec<String> {
        let found = self.known_ids_of(configured);
        if !found.is_empty() {
            return found;
        }
        // The channel may have been created or joined since start-up.
        self.load().await;
        self.known_ids_of(configured)
    }

    /// [`Self::ids_of`] from what the directory knows, asking Slack nothing.
    pub fn known_ids_of(&self, configured: &str) -> Vec<String> {
        let key = normalize_channel(configured);
        let (workspace, channel) = split_workspace(&key);
        if looks_like_id(channel) {
            return vec![channel.to_string()];
        }
        let maps = self.read();
        let ids = maps.by_name.get(channel).cloned().unwrap_or_default();
        ids.into_iter()
            .filter(|id| {
                let listed = maps.by_id.get(id).and_then(|(_, w)| w.as_ref());
                workspace.is_none_or(|w| listed.is_some_and(|l| names(l, w)))
            })
            .collect()
    }

    /// The id of a configured channel. When it denotes one channel in each of
    /// several workspaces, the one in the workspace of channel `near` (where
    /// the failure was seen) is meant.
    pub async fn id_of(&self, configured: &str, near: Option<&str>) -> Option<String> {
        let ids = self.ids_of(configured).await;
        if ids.len() > 1 {
            let here = near.and_then(|n| self.workspace_of(n));
            if let Some(id) = ids
                .iter()
                .find(|id| here.is_some() && self.workspace_of(id) == here)
            {
                return Some(id.clone());
            }
            warn!(
                channel = configured,
                "the channel name is in several workspaces; using the first. \
                 Name its workspace (`Workspace name/#channel`) to choose"
            );
        }
        ids.into_iter().next()
    }

    /// True when a configured channel (name or id, maybe after its
    /// workspace) denotes the channel `id`.
    pub async fn is(&self, configured: &str, id: &str) -> bool {
        let key = normalize_channel(configured);
        let (workspace, channel) = split_workspace(&key);
        if channel == id {
            return true;
        }
        if looks_like_id(channel) || self.name_of(id).await.as_deref() != Some(channel) {
            return false;
        }
        workspace.is_none_or(|w| self.workspace_of(id).is_some_and(|l| names(&l, w)))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether a workspace as written in config (normalised: its id, or its name
/// lower-cased) names `workspace`.
fn names(workspace: &Workspace, written: &str) -> bool {
    workspace.id == written || workspace.name.to_lowercase() == written
}

/// Slack conversation ids: C… (public), G… (private, legacy), D… (DM). Channel
/// names are always lower case, so an upper-case key can only be an id.
fn looks_like_id(s: &str) -> bool {
    s.len() >= 2
        && matches!(s.as_bytes()[0], b'C' | b'G' | b'D')
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use selfheal_fakes::slack::FakeSlack;

    use super::*;
    use crate::slack::pace::{MemoryBook, Pace};
    use crate::slack::web::WebSettings;

    #[tokio::test]
    async fn one_name_in_two_workspaces_is_told_apart_by_the_workspace_written_before_it() {
        let fake = FakeSlack::builder().start().await;
        fake.set_org_install("E0ORG");
        for (id, name, team, team_name) in [
            ("C0EUALERTS", "data-alerts", "T0EU00001", "Acme EU"),
            ("C0EURUNS", "dbt-runs", "T0EU00001", "Acme EU"),
            ("C0USALERTS", "data-alerts", "T0US00001", "Acme US"),
        ] {
            fake.add_channel(id, name);
            fake.set_channel_team(id, team);
            fake.name_team(team, team_name);
        }
        let pace = Pace::new(Duration::from_millis(10), 3);
        let settings = WebSettings {
            book: Arc::new(MemoryBook::new(pace)),
            pace,
            timeout: Duration::from_secs(5),
            max_attempts: 3,
            max_rate_limited_attempts: 5,
            metrics: Default::default(),
        };
        let web = SlackWeb::connect(&fake.api_url(), fake.bot_token(), settings).unwrap();
        let channels = Channels::new(web);
        channels.load().await;

        let mut both = channels.ids_of("#data-alerts").await;
        both.sort();
        assert_eq!(both, ["C0EUALERTS", "C0USALERTS"]);
        assert_eq!(
            channels.ids_of("Acme US/#data-alerts").await,
            ["C0USALERTS"]
        );
        assert_eq!(
            channels.ids_of("T0EU00001/#data-alerts").await,
            ["C0EUALERTS"]
        );
        assert!(channels.ids_of("Acme EU/#nowhere").await.is_empty());
        // Without a workspace, the one where the failure was seen.
        for (near, want) in [("C0EURUNS", "C0EUALERTS"), ("C0USALERTS", "C0USALERTS")] {
            let id = channels.id_of("#data-alerts", Some(near)).await;
            assert_eq!(id.as_deref(), Some(want), "near {near}");
        }
        assert!(channels.is("#data-alerts", "C0USALERTS").await);
        assert!(channels.is("acme us / #Data-Alerts", "C0USALERTS").await);
        assert!(!channels.is("Acme EU/#data-alerts", "C0USALERTS").await);
        assert_eq!(channels.workspaces(), 2);
        fake.shutdown().await;
    }
}
