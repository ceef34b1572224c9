//! People in threads: `stop` and guidance for the session running there, a
//! mention asking selfheal to heal the failure a thread is about, and a
//! follow-up session after the last one ended, told what happened so far.
//! Everything else people say, and threads selfheal does not own, is ignored.

use std::sync::Arc;

use anyhow::Result;
use tracing::{info, warn};

use super::policy::{decide, Decision, Moment, Reply, ThreadSession};
use super::{nothing_to_do, App};
use crate::domain::{EventKind, FollowUp, Place, SessionId};
use crate::recognize::{Failure, InboundMessage};
use crate::session::controls::Control;
use crate::session::driver::Start;
use crate::slack::render;
use crate::store::{EventRow, SessionRow, Status};

impl App {
    /// A message that is not a failure notification: if a person wrote it in
    /// a thread, the policy decides what it asks for.
    pub(super) async fn on_thread_reply(self: &Arc<Self>, msg: &InboundMessage) -> Result<()> {
        let (Some(thread_ts), Some(user)) = (&msg.thread_ts, &msg.user) else {
            return Ok(());
        };
        let is_person = msg.bot_id.is_none() && msg.subtype.is_none() && !msg.edited;
        if !is_person || self.recognizer.is_mine(msg) {
            return Ok(());
        }
        let store = &self.parts.store;
        let mention = format!("<@{}>", self.me.user_id);
        let mentioned = msg.text.contains(&mention);
        let text = msg.text.replace(&mention, "").trim().to_string();
        let session = store.session_in_thread(&msg.channel, thread_ts)?;
        let failure = store.failure_at(&msg.channel, thread_ts)?;
        let decision = decide(&Moment::PersonInThread(Reply {
            mentioned,
            text: &text,
            session: session.as_ref().map(|s| ThreadSession {
                ended: s.status.is_terminal(),
                agent: &s.agent,
            }),
            paused: crate::commands::paused(store)?,
            under_failure: failure.is_some(),
            default_agent: self.parts.cfg.default_agent.as_deref(),
        }));
        match (decision, session, failure) {
            (Decision::StopSession, Some(s), _) => {
                self.control(SessionId(s.id), Control::Stop { user: user.clone() })?;
                Ok(())
            }
            (Decision::GuideSession, Some(s), _) => {
                let reply = Control::Reply {
                    user: user.clone(),
                    text,
                };
                self.control(SessionId(s.id), reply)?;
                Ok(())
            }
            (Decision::FollowUp { agent }, Some(s), _) => {
                self.start_followup(s, user, &text, &agent).await
            }
            (Decision::HealOnRequest { agent }, _, Some(f)) => {
                info!(schedule = %f.schedule, run_id = %f.run_id, user = %user, "fix requested in a thread");
                self.heal_on_request(&f, &msg.channel, thread_ts, agent.as_deref())
                    .await
            }
            (Decision::SayPaused, ..) => {
                self.parts
                    .web
                    .post_ephemeral(&msg.channel, user, render::PAUSED)
                    .await?;
                Ok(())
            }
            (other, ..) => {
                nothing_to_do(&other, "a person's message in a thread");
                Ok(())
            }
        }
    }

    /// "Fix with DinoAI": a mention under a recognised failure notification
    /// (or the "Fix with selfheal" shortcut on one) heals it with the agent
    /// asked for (else the schedule's), in that thread, pointing no other
    /// channel.
    pub(super) async fn heal_on_request(
        self: &Arc<Self>,
        f: &Failure,
        channel: &str,
        thread_ts: &str,
        agent: Option<&str>,
    ) -> Result<()> {
        let Some(schedule) = self.parts.cfg.schedules.get(&f.schedule) else {
            return Ok(());
        };
        let agent = match agent {
            Some(name) => Some(name.to_string()),
            None => self.agent_in_force(schedule)?,
        };
        self.open_session(f, schedule, channel, Some(thread_ts), "", agent.as_deref())
            .await
            .map(drop)
    }

    /// A mention after a session ended: a follow-up session in the same
    /// thread, on the same branch and pull request, told what happened so far.
    async fn start_followup(
        self: &Arc<Self>,
        previous: SessionRow,
        user: &str,
        text: &str,
        agent_name: &str,
    ) -> Result<()> {
        let (cfg, store, web) = (&self.parts.cfg, &self.parts.store, &self.parts.web);
        let Some(agent) = cfg.agents.get(agent_name) else {
            web.post(
                &previous.channel,
                Some(&previous.thread_ts),
                &format!("I don't know the agent `{}`.", render::escape(agent_name)),
                None,
            )
            .await?;
            return Ok(());
        };
        let Some(id) = store.claim_followup(&previous, &agent.name)? else {
            return Ok(());
        };
        let mut history = String::new();
        for s in store.sessions_in_thread(&previous.channel, &previous.thread_ts)? {
            if s.id != id {
                history.push_str(&history_entry(&s, &store.events(s.id)?));
            }
        }
        let pr_url = (previous.status == Status::Fixed)
            .then(|| previous.pr_url.clone())
            .flatten();
        let text_shown = format!("🦖 Follow-up from <@{user}> — starting a new healing session...");
        if let Err(e) = web
            .post(
                &previous.channel,
                Some(&previous.thread_ts),
                &text_shown,
                None,
            )
            .await
        {
            warn!(session = id, error = %e, "could not post the follow-up reply");
        }
        let base_branch = cfg
            .schedules
            .get(&previous.schedule)
            .and_then(|s| s.git_branch.clone());
        self.spawn_session(Start {
            session_id: SessionId(id),
            schedule: previous.schedule,
            run_id: previous.run_id,
            place: Place::thread(previous.channel, previous.thread_ts),
            agent: agent.clone(),
            base_branch,
            notification: String::new(),
            followup: Some(FollowUp {
                by: user.to_string(),
                instruction: text.to_string(),
                history,
                pr_url,
            }),
        });
        Ok(())
    }
}

/// What a follow-up's agent is told about one earlier session of the thread:
/// its outcome, and what people said to it.
fn history_entry(s: &SessionRow, events: &[EventRow]) -> String {
    let mut out = format!(
        "- session {} ({}): {}{}{}\n",
        s.id,
        s.agent,
        s.status.as_str(),
        s.summary
            .as_deref()
            .map(|x| format!(" — {x}"))
            .unwrap_or_default(),
        s.pr_url
            .as_deref()
            .map(|p| format!(" — PR {p}"))
            .unwrap_or_default(),
    );
    // People's words are recorded as guidance.
    for e in events {
        if EventKind::parse(&e.kind) == Some(EventKind::Guidance) {
            out.push_str(&format!("  {}\n", e.text));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_history_entry_gives_the_outcome_and_what_people_said() {
        let store = Store::in_memory().unwrap();
        store
            .claim_session("s", "1", "C", "1.0", "scripted")
            .unwrap();
        let mut s = store.sessions(1).unwrap().remove(0);
        s.status = Status::Fixed;
        s.summary = Some("fixed the ref".into());
        s.pr_url = Some("https://x/pull/1".into());
        let event = |kind: &str, text: &str| EventRow {
            kind: kind.into(),
            text: text.into(),
        };
        let events = [
            event("prompt", "💬 not a person: the prompt"),
            event("guidance", "💬 <@U1>: use the staging model"),
            event("milestone", "💬 an agent's words, not a person's"),
            event("milestone", "🔍 reading the run log"),
            event("guidance", "💬 <@U2>: thanks"),
        ];
        assert_eq!(
            history_entry(&s, &events),
            format!(
                "- session {} (scripted): fixed — fixed the ref — PR https://x/pull/1\n  \
                 💬 <@U1>: use the staging model\n  💬 <@U2>: thanks\n",
                s.id
            )
        );
        s.summary = None;
        s.pr_url = None;
        s.status = Status::NoFix;
        assert_eq!(
            history_entry(&s, &[]),
            format!("- session {} (scripted): no_fix\n", s.id)
        );
    }
}
