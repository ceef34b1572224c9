//! Watches the pull requests selfheal opened until a person merges or closes
//! them, and says so, once, in the session's thread.
//!
//! One task, owned by the app's tracker and stopped by its shutdown token,
//! asks the forge about each open pull request of the store when it is due:
//! one request at a time, conditionally (with the ETag of the last full
//! answer, so a pull request without news costs a 304, which GitHub does not
//! count against the rate limit). The wait starts at `SELFHEAL_PR_POLL_SECS`
//! and doubles with each answer without news up to `SELFHEAL_PR_POLL_MAX_SECS`;
//! a failed question backs off the same way, and a rate limit pauses all
//! asking for as long as the forge says. What an answer means is [`next`],
//! pure and table-tested; the rest is the IO around it.
//!
//! The end is claimed in the store (`state` leaves `open` under a condition)
//! before the thread is told, so a restart, or a second process on the same
//! database, never tells it twice (a crash between the claim and the post
//! loses the line rather than repeating it).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use tracing::{debug, info, warn};

use super::App;
use crate::config::PrPoll;
use crate::domain::PrState;
use crate::forge::{ForgeError, PrSnapshot};
use crate::slack::render;
use crate::store::WatchedPr;

/// The shortest wait between two rounds, whatever the store says is due:
/// the loop never spins.
const MIN_WAIT: Duration = Duration::from_millis(100);

impl App {
    /// Asks about every due pull request, then sleeps until the next is due
    /// (at most the first interval, so a new pull request waits no longer),
    /// until shutdown.
    pub(super) async fn watch_prs(self: Arc<Self>) {
        let poll = self.parts.cfg.pr_poll;
        info!(
            first_secs = poll.first.as_secs(),
            max_secs = poll.max.as_secs(),
            "watching the pull requests selfheal opened"
        );
        loop {
            let wait = match self.look_at_due_prs(poll).await {
                Ok(wait) => wait,
                Err(e) => {
                    warn!(
                        error = format!("{e:#}"),
                        "could not look at the pull requests selfheal opened"
                    );
                    poll.first
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait.max(MIN_WAIT)) => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    /// One round: each due pull request asked about in turn. Returns how long
    /// to wait before the next round.
    async fn look_at_due_prs(&self, poll: PrPoll) -> Result<Duration> {
        let (store, forge) = (&self.parts.store, &self.deps.healing.forge);
        for pr in store.prs_due(Utc::now())? {
            let answer = tokio::select! {
                answer = forge.pr_state(&pr.url, pr.etag.as_deref()) => answer,
                _ = self.shutdown.cancelled() => return Ok(Duration::ZERO),
            };
            if let Err(e) = &answer {
                warn!(url = %pr.url, error = %e, "could not ask the forge about a pull request");
            }
            match next(&answer, pr.unchanged, poll) {
                Next::End(end) => {
                    if store.claim_pr_end(&pr.url, &end)? {
                        self.tell_pr_end(&pr, &end).await;
                    }
                }
                Next::Again {
                    etag,
                    unchanged,
                    after,
                } => {
                    let at = Utc::now() + chrono::Duration::from_std(after)?;
                    store.pr_still_open(&pr.url, etag.as_deref(), unchanged, at)?;
                }
            }
            // The limit is the token's, not this pull request's: ask nothing
            // more until it is over.
            if let Err(ForgeError::RateLimited { retry_after }) = answer {
                return Ok(retry_after);
            }
        }
        let until_next = match store.next_pr_due()? {
            Some(at) => (at - Utc::now()).to_std().unwrap_or(Duration::ZERO),
            None => poll.first,
        };
        Ok(until_next.min(poll.first))
    }

    /// Says in the session's thread how its pull request ended.
    async fn tell_pr_end(&self, pr: &WatchedPr, end: &PrState) {
        let text = match end {
            PrState::Merged { by } => render::pr_merged(&pr.url, by.as_deref()),
            PrState::Closed => render::pr_closed(&pr.url),
            PrState::Open => return,
        };
        info!(url = %pr.url, state = end.as_str(), session = pr.session_id, "pull request ended");
        match self.parts.store.session(pr.session_id) {
            // A session of `selfheal fix` has no thread to tell.
            Ok(session) if session.thread_ts.is_empty() => {}
            Ok(session) => self.tell(&session, &text).await,
            Err(e) => warn!(
                error = format!("{e:#}"),
                "could not find the session of a pull request"
            ),
        }
    }
}

/// What to do after asking the forge about an open pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    /// Merged or closed: claim its end and tell the thread.
    End(PrState),
    /// Still open, or unknown for now: record the look (with the new ETag,
    /// if any) and ask again after `after`.
    Again {
        etag: Option<String>,
        unchanged: u32,
        after: Duration,
    },
}

/// What an answer means, given how many looks in a row brought no news.
fn next(answer: &Result<Option<PrSnapshot>, ForgeError>, unchanged: u32, poll: PrPoll) -> Next {
    let back_off = |least: Duration| {
        let unchanged = unchanged.saturating_add(1);
        Next::Again {
            etag: None,
            unchanged,
            after: interval(unchanged, poll).max(least),
        }
    };
    match answer {
        Ok(Some(PrSnapshot { state, .. })) if state.is_final() => Next::End(state.clone()),
        // News (a first look, a push, a review): back to the first interval.
        Ok(Some(PrSnapshot { etag, .. })) => Next::Again {
            etag: etag.clone(),
            unchanged: 0,
            after: poll.first,
        },
        // A 304: nothing changed since the last full answer.
        Ok(None) => back_off(Duration::ZERO),
        Err(ForgeError::RateLimited { retry_after }) => back_off(*retry_after),
        // Not a pull request this forge can answer for (a repository changed
        // in the settings): asked about as rarely as the settings allow.
        Err(ForgeError::NotOurs(_)) => Next::Again {
            etag: None,
            unchanged,
            after: poll.max,
        },
        // A 5xx or a timeout after the forge's own retries, a token that lost
        // its access: ask less often until the forge answers again.
        Err(e) => {
            debug!(error = %e, "backing off");
            back_off(Duration::ZERO)
        }
    }
}

/// The wait after `unchanged` looks without news: the first interval,
/// doubled for each, at most the longest.
fn interval(unchanged: u32, poll: PrPoll) -> Duration {
    let factor = 2u32.checked_pow(unchanged).unwrap_or(u32::MAX);
    poll.first
        .checked_mul(factor)
        .unwrap_or(poll.max)
        .min(poll.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: PrPoll = PrPoll {
        first: Duration::from_secs(60),
        max: Duration::from_secs(1800),
    };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_wait_doubles_with_each_look_without_news_up_to_the_longest() {
        let cases = [
            (0, 60),
            (1, 120),
            (2, 240),
            (4, 960),
            (5, 1800),
            (31, 1800),
            (32, 1800),
            (u32::MAX, 1800),
        ];
        for (unchanged, want) in cases {
            assert_eq!(interval(unchanged, POLL), secs(want), "{unchanged}");
        }
    }

    #[test]
    fn an_answer_says_whether_to_tell_the_thread_or_when_to_ask_again() {
        fn snapshot(state: PrState, etag: &str) -> Result<Option<PrSnapshot>, ForgeError> {
            Ok(Some(PrSnapshot {
                state,
                etag: Some(etag.into()),
            }))
        }
        fn again(etag: Option<&str>, unchanged: u32, after: u64) -> Next {
            Next::Again {
                etag: etag.map(str::to_string),
                unchanged,
                after: secs(after),
            }
        }
        let merged = PrState::Merged {
            by: Some("octocat".into()),
        };
        let cases: Vec<(Result<Option<PrSnapshot>, ForgeError>, u32, Next)> = vec![
            (snapshot(merged.clone(), "e2"), 3, Next::End(merged)),
            (
                snapshot(PrState::Closed, "e2"),
                0,
                Next::End(PrState::Closed),
            ),
            (snapshot(PrState::Open, "e2"), 4, again(Some("e2"), 0, 60)),
            (Ok(None), 0, again(None, 1, 120)),
            (Ok(None), 3, again(None, 4, 960)),
            (Ok(None), 9, again(None, 10, 1800)),
            (
                Err(ForgeError::RateLimited {
                    retry_after: secs(3600),
                }),
                0,
                again(None, 1, 3600),
            ),
            (
                Err(ForgeError::RateLimited {
                    retry_after: secs(5),
                }),
                1,
                again(None, 2, 240),
            ),
            (Err(ForgeError::Http("502".into())), 0, again(None, 1, 120)),
            (Err(ForgeError::Timeout), 2, again(None, 3, 480)),
            (Err(ForgeError::Unauthorized), 0, again(None, 1, 120)),
            (
                Err(ForgeError::NotOurs("https://x/pull/1".into())),
                2,
                again(None, 2, 1800),
            ),
        ];
        for (answer, unchanged, want) in cases {
            assert_eq!(
                next(&answer, unchanged, POLL),
                want,
                "{answer:?} {unchanged}"
            );
        }
    }
}
