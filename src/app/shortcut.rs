//! "Fix with selfheal", the message shortcut (Slack's twin of Paradime's
//! "Fix with DinoAI" button): used on a failure notification, it heals that
//! failure in the notification's thread, as a "fix this" mention does, for
//! any configured schedule, its self-healing on or off. Used on anything
//! else, it tells the person (only them) why it cannot.

use std::sync::Arc;

use anyhow::Result;
use tracing::{debug, info};

use super::policy::{decide, Decision, Moment, Shortcut};
use super::{nothing_to_do, App};
use crate::slack::{render, ShortcutRequest};

impl App {
    pub(super) async fn on_shortcut(self: &Arc<Self>, s: &ShortcutRequest) -> Result<()> {
        if s.callback_id != render::FIX_SHORTCUT {
            debug!(callback_id = %s.callback_id, "a shortcut selfheal does not declare; ignored");
            return Ok(());
        }
        let msg = &s.message;
        // selfheal's own messages are never failures, but for the ones
        // `selfheal notify` posts, as with automatic healing.
        let recognized = self.recognizer.explain(msg);
        let store = &self.parts.store;
        let session = match &recognized {
            Ok(f) => store.session_for_failure(&f.schedule, &f.run_id)?,
            Err(_) => None,
        };
        let decision = decide(&Moment::Shortcut(Shortcut {
            unrecognized: recognized.as_ref().err().copied(),
            session_exists: session.is_some(),
            paused: crate::commands::paused(store)?,
            default_agent: self.parts.cfg.default_agent.as_deref(),
        }));
        let web = &self.parts.web;
        match (decision, recognized, session) {
            (Decision::Refuse(why), ..) => {
                web.post_ephemeral(&s.channel_id, &s.user_id, render::shortcut_refusal(why))
                    .await?
            }
            (Decision::ShowSession, _, Some(row)) => {
                let url = crate::commands::thread_urls(&self.commands, std::slice::from_ref(&row))
                    .await
                    .pop()
                    .flatten();
                let text = render::session_exists(&row.run_id, row.status, url.as_deref());
                web.post_ephemeral(&s.channel_id, &s.user_id, &text).await?
            }
            (Decision::SayPaused, ..) => {
                web.post_ephemeral(&s.channel_id, &s.user_id, render::PAUSED)
                    .await?
            }
            (Decision::HealOnRequest { agent }, Ok(f), _) => {
                info!(schedule = %f.schedule, run_id = %f.run_id, user = %s.user_id, "fix requested with the message shortcut");
                let thread_ts = msg.thread_ts.as_deref().unwrap_or(&msg.ts);
                // Recorded as automatic healing records it, so that people's
                // mentions in the thread find the failure later.
                store.record_sighting(&f.schedule, &f.run_id, &s.channel_id, thread_ts)?;
                self.heal_on_request(&f, &s.channel_id, thread_ts, agent.as_deref())
                    .await?
            }
            (other, ..) => nothing_to_do(&other, "a message shortcut"),
        }
        Ok(())
    }
}
