//! Closing the loop: a schedule passed again.
//!
//! Whoever learns of the passing run — a success notification in Slack, one
//! that `selfheal notify` posted, or a re-run selfheal followed through the
//! scheduler's API — calls [`schedule_passed`]. Every failure of the
//! schedule not yet resolved is resolved by that run (a claim in the store,
//! so the same pass reported twice closes nothing twice), and each one's
//! healing thread is told: `✅ <schedule> passed again (run <N>)`, its
//! healing reply edited to say it is resolved, and a selfheal pull request
//! still open commented on, since the schedule recovered without it.

use anyhow::Result;
use tracing::{info, warn};

use crate::domain::EventKind;
use crate::forge::{Forge, PrState};
use crate::redact::Redactor;
use crate::slack::render;
use crate::slack::web::SlackWeb;
use crate::store::{SessionRow, Status, Store};

/// What the loop needs to be closed: where to say it, and the forge to
/// comment on pull requests with (its only token holder).
pub struct Closer<'a> {
    pub store: &'a Store,
    pub web: &'a SlackWeb,
    pub forge: &'a Forge,
    pub redactor: &'a Redactor,
}

impl Closer<'_> {
    /// `schedule` passed in `run_id`: closes the loop in the thread of every
    /// failure of it still open. Returns how many threads were told. A
    /// thread that cannot be told is logged and the others still are.
    pub async fn schedule_passed(&self, schedule: &str, run_id: &str) -> Result<usize> {
        let resolved = self.store.resolve_failures(schedule, run_id)?;
        let mut told = 0;
        for r in resolved {
            let Some(session) = r.session else {
                continue;
            };
            info!(schedule, run_id, failed_run = %r.failure.run_id, session = session.id, "the schedule passed again");
            match self.tell(&session, schedule, run_id).await {
                Ok(()) => told += 1,
                Err(e) => {
                    warn!(session = session.id, error = %format!("{e:#}"), "could not close the loop in a thread")
                }
            }
        }
        Ok(told)
    }

    async fn tell(&self, s: &SessionRow, schedule: &str, run_id: &str) -> Result<()> {
        let (web, store) = (self.web, self.store);
        // The first message first: whoever reads the recovery line finds
        // the thread already marked resolved.
        if let Some(reply) = store.reply_ts(s.id)? {
            let edited = render::resolved_reply(schedule, run_id);
            if let Err(e) = web.update(&s.channel, &reply, &edited, None).await {
                warn!(session = s.id, error = %e, "could not edit the healing reply");
            }
        }
        let line = render::passed_again(schedule, run_id);
        web.post(&s.channel, Some(&s.thread_ts), &line, None)
            .await?;
        store.add_event(s.id, EventKind::Note.as_str(), &line)?;
        // Only a pull request of selfheal's own repository can be commented on.
        let Some(pr) = s
            .pr_url
            .as_deref()
            .filter(|pr| s.status == Status::Fixed && self.forge.owns_pr(pr))
        else {
            return Ok(());
        };
        if !self.still_open(pr).await {
            return Ok(());
        }
        let thread = web.permalink(&s.channel, &s.thread_ts).await.ok();
        let comment = render::pr_recovered_comment(schedule, run_id, thread.as_deref());
        self.forge.comment(pr, &comment, self.redactor).await?;
        let said = render::pr_left_open(schedule, pr);
        web.post(&s.channel, Some(&s.thread_ts), &said, None)
            .await?;
        store.add_event(s.id, EventKind::Note.as_str(), &said)?;
        Ok(())
    }

    /// Whether the pull request is still open: the store's last word when
    /// the watcher has one, else the forge's (unknown counts as open, so the
    /// comment is never lost to a forge hiccup).
    async fn still_open(&self, pr: &str) -> bool {
        if let Ok(Some(row)) = self.store.watched_pr(pr) {
            if row.state != PrState::Open {
                return false;
            }
        }
        match self.forge.pr_state(pr, None).await {
            Ok(Some(snapshot)) => snapshot.state == PrState::Open,
            _ => true,
        }
    }
}
