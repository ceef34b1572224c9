//! At start, what a previous process left: sessions still marked running
//! (their leftover processes killed, recorded as interrupted, their threads
//! told), re-runs of the sessions interrupted in the last hour, and the
//! decisions that were waiting for a courtesy window when their timers died.
//! The store's claims keep all of it exactly-once across restarts.

use std::sync::Arc;

use anyhow::Result;
use tracing::warn;

use super::policy::{decide, Decision, Moment};
use super::{nothing_to_do, App};
use crate::domain::{EventKind, Place, SessionId};
use crate::recognize::Failure;
use crate::session::driver::Start;
use crate::slack::render;
use crate::store::{SessionRow, Status};

/// How far back a restart looks for sessions to re-run and decisions to resume.
const LOOKBACK_HOURS: i64 = 1;

impl App {
    /// At start: the sessions a previous process left, then the decisions
    /// that were waiting when its timers died.
    pub(super) async fn recover(self: &Arc<Self>) -> Result<()> {
        self.take_over().await?;
        self.resume_pending_decisions()
    }

    /// Sessions still marked running whose process is gone — the one before
    /// this start, or, with replicas, one whose lease ran out — are taken
    /// over: each is recorded as interrupted, what is left of its agent is
    /// killed and its thread is told. Then (unless
    /// `SELFHEAL_ON_RESTART=report`) every session interrupted in the last
    /// hour, by a crash or by a stop, runs again, once.
    pub(super) async fn take_over(self: &Arc<Self>) -> Result<()> {
        let (cfg, store) = (&self.parts.cfg, &self.parts.store);
        let why = if store.is_shared() {
            "the selfheal replica running it stopped before it finished"
        } else {
            "selfheal restarted before it finished"
        };
        let rerun = cfg.rerun_interrupted && !crate::commands::paused(store)?;
        for id in store.take_over_sessions()? {
            let s = store.session(id)?;
            let killed = crate::agent::command::kill_tagged(&store.session_tag(s.id));
            if killed > 0 {
                warn!(
                    session = s.id,
                    killed, "killed processes left over from the session's agent"
                );
            }
            // A re-run claimed just before a crash that never got going: start it now.
            if s.rerun_of.is_some() && s.status == Status::Claimed {
                if let Some(start) = self.rerun_start(&s)? {
                    warn!(session = s.id, run_id = %s.run_id, "starting a re-run claimed before the restart");
                    self.spawn_session(start);
                    continue;
                }
            }
            if !store.finish(s.id, Status::Interrupted, Some(why), None)? {
                continue;
            }
            warn!(session = s.id, run_id = %s.run_id, "recovered an interrupted session");
            if s.thread_ts.is_empty() {
                continue;
            }
            if let Some(progress) = &s.progress_ts {
                let (text, blocks) = render::progress_interrupted(&s.run_id, &s.agent);
                if let Err(e) = self
                    .parts
                    .web
                    .update(&s.channel, progress, &text, Some(&blocks))
                    .await
                {
                    warn!(session = s.id, error = %e, "could not close the interrupted progress message");
                }
            }
            if !rerun {
                self.tell(&s, &render::interrupted(&s.run_id, why)).await;
            }
        }
        if rerun {
            for s in store.rerunnable(lookback())? {
                if !cfg.agents.contains_key(&s.agent) || cfg.schedules.get(&s.schedule).is_none() {
                    continue;
                }
                let Some(id) = store.claim_rerun(s.id)? else {
                    continue;
                };
                self.tell(&s, &render::rerunning(&s.run_id)).await;
                if let Some(start) = self.rerun_start(&store.session(id)?)? {
                    self.spawn_session(start);
                }
            }
        }
        Ok(())
    }

    /// Posts in a session's thread; a failure is logged, not fatal.
    pub(super) async fn tell(&self, s: &SessionRow, text: &str) {
        if let Err(e) = self
            .parts
            .web
            .post(&s.channel, Some(&s.thread_ts), text, None)
            .await
        {
            warn!(session = s.id, error = %e, "could not post in the session's thread");
        }
    }

    /// What a re-run needs to start: the interrupted session's agent, schedule
    /// and the run log it read. None when the agent or schedule is gone.
    fn rerun_start(&self, row: &SessionRow) -> Result<Option<Start>> {
        let cfg = &self.parts.cfg;
        let (Some(agent), Some(schedule)) =
            (cfg.agents.get(&row.agent), cfg.schedules.get(&row.schedule))
        else {
            return Ok(None);
        };
        // The notification text is only the run log of last resort; the
        // interrupted session stored the log it read, which is better.
        let notification = match row.rerun_of {
            Some(before) => self
                .parts
                .store
                .events(before)?
                .into_iter()
                .find(|e| EventKind::parse(&e.kind) == Some(EventKind::RunLog))
                .map(|e| e.text)
                .unwrap_or_default(),
            None => String::new(),
        };
        Ok(Some(Start {
            session_id: SessionId(row.id),
            schedule: row.schedule.clone(),
            run_id: row.run_id.clone(),
            place: Place::thread(&row.channel, &row.thread_ts),
            agent: agent.clone(),
            base_branch: schedule.git_branch.clone(),
            notification,
            followup: None,
        }))
    }

    /// Decisions that wait for a window (a courtesy pointer, healing top-level
    /// when the healing channel's copy never came) live in timers, which a
    /// crash loses. For failures seen in the last hour, start them again: the
    /// store's claims keep anything already done from happening twice.
    fn resume_pending_decisions(self: &Arc<Self>) -> Result<()> {
        let store = &self.parts.store;
        for recent in store.recent_failures(lookback())? {
            let f = recent.failure;
            if self.parts.cfg.schedules.get(&f.schedule).is_none() {
                continue;
            }
            let decision = decide(&Moment::Restarted {
                session_claimed: recent.session_claimed,
                switch: self.healing_now(&f.schedule)?.switch,
            });
            match decision {
                Decision::AwaitHealingCopy => self.await_healing_copy(f, String::new(), None),
                Decision::ResumePointers => {
                    let Some(session) = store.session_for_failure(&f.schedule, &f.run_id)? else {
                        continue;
                    };
                    // Channel lookups may ask Slack: not in the way of the start.
                    let app = self.clone();
                    self.tasks
                        .spawn(async move { app.resume_pointers(f, session.channel).await });
                }
                other => nothing_to_do(&other, "a failure seen before the restart"),
            }
        }
        Ok(())
    }

    /// Waits the window again in every notified channel whose pointer to the
    /// healing thread in `healing` was not claimed, then points it.
    async fn resume_pointers(self: &Arc<Self>, f: Failure, healing: String) {
        let Some(schedule) = self.parts.cfg.schedules.get(&f.schedule) else {
            return;
        };
        for other in self.other_channels(schedule, &healing).await {
            if let Ok(false) = self
                .parts
                .store
                .pointer_claimed(&f.schedule, &f.run_id, &other)
            {
                self.pointer_after_window(f.clone(), other, healing.clone());
            }
        }
    }
}

fn lookback() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::hours(LOOKBACK_HOURS)
}
