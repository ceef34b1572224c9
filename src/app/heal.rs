//! The healing flow of a recognised failure: gather the facts, ask the
//! [`policy`](super::policy), carry out its decision — claim the failure and
//! heal (in the notification's thread, or top-level when the healing
//! channel's copy never came), point the other notified channels at the
//! healing thread, or wait the courtesy window. The store's claims make each
//! of these happen once, however often it is decided.

use std::sync::Arc;

use anyhow::Result;
use tracing::{debug, error, info, warn};

use super::policy::{decide, Decision, Ignored, Moment, Place, Switch};
use super::{nothing_to_do, App};
use crate::config::Schedule;
use crate::domain::SessionId;
use crate::recognize::{Failure, Passed};
use crate::session::closing::Closer;
use crate::session::driver::Start;
use crate::slack::render;
use crate::store::{Claim, Status};

/// Whether a schedule heals right now, and where.
pub(super) struct HealingNow {
    pub(super) switch: Switch,
    /// The healing channel as configured, when self-healing is on for the
    /// schedule (paused or not).
    pub(super) channel: Option<String>,
}

impl App {
    /// The schedule's YAML, overridden by `/selfheal`, and the pause switch.
    pub(super) fn healing_now(&self, schedule: &str) -> Result<HealingNow> {
        let paused = crate::commands::paused(&self.parts.store)?;
        let channel = crate::commands::effective(&self.parts.cfg, &self.parts.store, schedule)?
            .filter(|e| e.enabled)
            .and_then(|e| e.healing_channel);
        let switch = match (&channel, paused) {
            (_, true) => Switch::Paused,
            (Some(_), false) => Switch::On,
            (None, false) => Switch::Off,
        };
        Ok(HealingNow { switch, channel })
    }

    /// A success notification: the schedule passed again, which closes the
    /// loop in the threads of its failures.
    pub(super) async fn on_pass(&self, p: &Passed) -> Result<()> {
        let told = self
            .closer()
            .schedule_passed(&p.schedule, &p.run_id)
            .await?;
        debug!(schedule = %p.schedule, run_id = %p.run_id, threads = told, "success notification");
        Ok(())
    }

    /// What closes the loop when a schedule passes again, with the app's parts.
    pub(super) fn closer(&self) -> Closer<'_> {
        Closer {
            store: &self.parts.store,
            web: &self.parts.web,
            forge: &self.deps.healing.forge,
            redactor: &self.deps.redactor,
        }
    }

    /// A failure notification arrived in `channel` at `ts`; `text` is its
    /// text, the run log of last resort.
    pub(super) async fn on_failure(
        self: &Arc<Self>,
        f: Failure,
        channel: &str,
        ts: &str,
        text: &str,
    ) -> Result<()> {
        let Some(schedule) = self.parts.cfg.schedules.get(&f.schedule) else {
            return Ok(());
        };
        let store = &self.parts.store;
        let first_in_channel = store.record_sighting(&f.schedule, &f.run_id, channel, ts)?;
        if first_in_channel {
            info!(schedule = %f.schedule, run_id = %f.run_id, channel, "failure notification recognised");
        }
        let now = self.healing_now(&f.schedule)?;
        let place = self.place(schedule, now.channel.as_deref(), channel).await;
        let session = store
            .session_for_failure(&f.schedule, &f.run_id)?
            .filter(|s| !s.thread_ts.is_empty());
        let decision = decide(&Moment::Notification {
            first_in_channel,
            switch: now.switch,
            place,
            healing_thread: session.is_some(),
        });
        match (decision, session) {
            (Decision::HealHere, _) => {
                self.start_session(&f, schedule, channel, Some(ts), text)
                    .await
            }
            (Decision::Point, Some(session)) => {
                self.post_pointer(&f, channel, Some(ts), &session.channel)
                    .await;
                Ok(())
            }
            (Decision::AwaitHealingCopy, _) => {
                self.await_healing_copy(f, text.to_string(), Some(channel.to_string()));
                Ok(())
            }
            (Decision::Ignore(Ignored::NotNotified), _) => {
                info!(schedule = %f.schedule, channel, "failure posted in a channel the schedule does not notify; ignored");
                Ok(())
            }
            (other, _) => {
                nothing_to_do(&other, "a failure notification");
                Ok(())
            }
        }
    }

    /// Where `channel` stands for the schedule: its healing channel, another
    /// channel it notifies, or neither.
    async fn place(&self, schedule: &Schedule, healing: Option<&str>, channel: &str) -> Place {
        let channels = &self.parts.channels;
        if let Some(healing) = healing {
            if channels.is(healing, channel).await {
                return Place::HealingChannel;
            }
        }
        for c in schedule.failure_channels() {
            if channels.is(&c, channel).await {
                return Place::NotifiedChannel;
            }
        }
        Place::Elsewhere
    }

    /// The failure showed up in another channel first (`seen_in`, when
    /// known). If the healing channel's copy does not arrive within the
    /// window, heal top-level there.
    pub(super) fn await_healing_copy(
        self: &Arc<Self>,
        f: Failure,
        text: String,
        seen_in: Option<String>,
    ) {
        let app = self.clone();
        self.tasks.spawn(async move {
            if !app.courtesy_window().await {
                return;
            }
            if let Err(e) = app.on_copy_overdue(&f, &text, seen_in.as_deref()).await {
                error!(error = ?e, "failed to start a top-level healing session");
            }
        });
    }

    /// Waits the courtesy window; false when shutdown came first.
    async fn courtesy_window(&self) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(self.parts.cfg.courtesy_window) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }

    async fn on_copy_overdue(
        self: &Arc<Self>,
        f: &Failure,
        text: &str,
        seen_in: Option<&str>,
    ) -> Result<()> {
        let session_claimed = self
            .parts
            .store
            .session_for_failure(&f.schedule, &f.run_id)?
            .is_some();
        let Some(schedule) = self.parts.cfg.schedules.get(&f.schedule) else {
            return Ok(());
        };
        let now = self.healing_now(&f.schedule)?;
        let decision = decide(&Moment::CopyOverdue {
            session_claimed,
            switch: now.switch,
        });
        let (Decision::HealTopLevel, Some(healing)) = (&decision, now.channel) else {
            nothing_to_do(&decision, "a lapsed courtesy window");
            return Ok(());
        };
        let Some(healing_id) = self.parts.channels.id_of(&healing, seen_in).await else {
            warn!(
                channel = healing,
                "the healing channel is unknown to Slack; cannot heal"
            );
            return Ok(());
        };
        info!(schedule = %f.schedule, run_id = %f.run_id, "no notification in the healing channel; starting top-level");
        self.start_session(f, schedule, &healing_id, None, text)
            .await
    }

    /// Heals a failure with the schedule's agent in force; if this call won
    /// the claim, points the other notified channels at the thread.
    async fn start_session(
        self: &Arc<Self>,
        f: &Failure,
        schedule: &Schedule,
        channel: &str,
        thread_ts: Option<&str>,
        notification: &str,
    ) -> Result<()> {
        let agent = self.agent_in_force(schedule)?;
        let started = self
            .open_session(
                f,
                schedule,
                channel,
                thread_ts,
                notification,
                agent.as_deref(),
            )
            .await?;
        if started {
            self.point_other_channels(f, schedule, channel).await?;
        }
        Ok(())
    }

    /// The agent that heals the schedule now: YAML, overridden by `/selfheal`,
    /// else the default agent.
    pub(super) fn agent_in_force(&self, schedule: &Schedule) -> Result<Option<String>> {
        Ok(
            crate::commands::effective(&self.parts.cfg, &self.parts.store, &schedule.name)?
                .and_then(|e| e.agent(&self.parts.cfg).map(str::to_string)),
        )
    }

    /// Claims the failure for `agent` and, if this call won the claim, posts
    /// the healing reply in `channel` (in the thread `thread_ts`, else top-level) and
    /// starts the agent. True when the session started. An unknown agent is
    /// said in the thread, when there is one.
    pub(super) async fn open_session(
        self: &Arc<Self>,
        f: &Failure,
        schedule: &Schedule,
        channel: &str,
        thread_ts: Option<&str>,
        notification: &str,
        agent: Option<&str>,
    ) -> Result<bool> {
        let cfg = &self.parts.cfg;
        let Some(agent) = agent.and_then(|name| cfg.agents.get(name)) else {
            warn!(schedule = %f.schedule, ?agent, "no such agent; nothing started");
            if let Some(ts) = thread_ts {
                let known: Vec<&str> = cfg.agents.keys().map(String::as_str).collect();
                let text = format!(
                    "I don't know the agent `{}`. Known agents: {}.",
                    render::escape(agent.unwrap_or("")),
                    known.join(", ")
                );
                self.parts.web.post(channel, Some(ts), &text, None).await?;
            }
            return Ok(false);
        };
        let store = &self.parts.store;
        let claim = store.claim_session(
            &f.schedule,
            &f.run_id,
            channel,
            thread_ts.unwrap_or(""),
            &agent.name,
        )?;
        let Claim::New(id) = claim else {
            debug!(schedule = %f.schedule, run_id = %f.run_id, "a session for this failure exists already");
            return Ok(false);
        };
        let posted = match self
            .parts
            .web
            .answer(channel, thread_ts, render::HEALING_REPLY)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                warn!(session = id, error = %e, "could not post the healing reply");
                store.finish(
                    id,
                    Status::Failed,
                    Some(&format!("could not post in Slack: {e}")),
                    None,
                )?;
                return Ok(false);
            }
        };
        store.set_reply_ts(id, &posted.ts)?;
        let thread = match thread_ts {
            Some(t) => t.to_string(),
            None => {
                store.set_thread_ts(id, &posted.ts)?;
                posted.ts.clone()
            }
        };
        self.spawn_session(Start {
            session_id: SessionId(id),
            schedule: f.schedule.clone(),
            run_id: f.run_id.clone(),
            // `Place` here is the policy's (where a notification was seen).
            place: crate::domain::Place::thread(channel, thread),
            agent: agent.clone(),
            base_branch: schedule.git_branch.clone(),
            notification: notification.to_string(),
            followup: None,
        });
        Ok(true)
    }

    /// Points every other channel the schedule notifies at the healing thread
    /// in `healing`: now in the copy's thread, or after the window.
    async fn point_other_channels(
        self: &Arc<Self>,
        f: &Failure,
        schedule: &Schedule,
        healing: &str,
    ) -> Result<()> {
        for other in self.other_channels(schedule, healing).await {
            let sighting = self.parts.store.sighting(&f.schedule, &f.run_id, &other)?;
            let decision = decide(&Moment::OtherChannel {
                copy_seen: sighting.is_some(),
            });
            match decision {
                Decision::Point => {
                    self.post_pointer(f, &other, sighting.as_deref(), healing)
                        .await
                }
                Decision::AwaitCopyThenPoint => {
                    self.pointer_after_window(f.clone(), other, healing.to_string())
                }
                other => nothing_to_do(&other, "another notified channel"),
            }
        }
        Ok(())
    }

    /// The ids of the channels the schedule notifies on failure, but for the
    /// healing channel `healing`.
    pub(super) async fn other_channels(&self, schedule: &Schedule, healing: &str) -> Vec<String> {
        let channels = &self.parts.channels;
        let mut ids = vec![];
        for other in schedule.failure_channels() {
            if channels.is(&other, healing).await {
                continue;
            }
            match channels.id_of(&other, Some(healing)).await {
                Some(id) => ids.push(id),
                None => {
                    warn!(channel = %other, "a notified channel is unknown to Slack; no pointer posted there")
                }
            }
        }
        ids
    }

    /// Waits for the channel's copy of the notification; posts the pointer in
    /// its thread, or top-level if it never came.
    pub(super) fn pointer_after_window(
        self: &Arc<Self>,
        f: Failure,
        channel: String,
        healing: String,
    ) {
        let app = self.clone();
        self.tasks.spawn(async move {
            if !app.courtesy_window().await {
                return;
            }
            match app.parts.store.sighting(&f.schedule, &f.run_id, &channel) {
                Ok(ts) => {
                    app.post_pointer(&f, &channel, ts.as_deref(), &healing)
                        .await
                }
                Err(e) => error!(error = ?e, "failed to look up a sighting"),
            }
        });
    }

    /// Posts the courtesy pointer once per failure and channel.
    async fn post_pointer(
        &self,
        f: &Failure,
        channel: &str,
        thread_ts: Option<&str>,
        healing: &str,
    ) {
        match self
            .parts
            .store
            .claim_pointer(&f.schedule, &f.run_id, channel)
        {
            Ok(true) => {
                if let Err(e) = self
                    .parts
                    .web
                    .post(channel, thread_ts, &render::pointer(healing), None)
                    .await
                {
                    warn!(channel, error = %e, "could not post the courtesy pointer");
                }
            }
            Ok(false) => {}
            Err(e) => error!(error = ?e, "failed to claim a courtesy pointer"),
        }
    }
}
