//! Pull requests selfheal opened, watched until they are merged or closed:
//! one row per pull request (the first session that recorded its URL owns
//! it; a follow-up or a duplicate linking it again adds nothing), when to ask
//! the forge next, the ETag to ask with, how far the asking has backed off,
//! and the claim of its end, which exactly one caller ever gets.

use super::db::{params, DbResult, OptionalExtension, Row};
use anyhow::Result;
use chrono::{DateTime, Utc};

use super::db::all;
use super::{now, Store};
use crate::domain::PrState;

/// A pull request selfheal watches.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchedPr {
    /// The session that recorded it: its thread is told how it ended.
    pub session_id: i64,
    /// The pull request's web page, as the forge gave it.
    pub url: String,
    pub state: PrState,
    /// The ETag of the forge's last full answer, to ask with next.
    pub etag: Option<String>,
    /// When the forge was last asked; None before the first look.
    pub checked_at: Option<DateTime<Utc>>,
    /// When to ask next (while it is open).
    pub next_check_at: DateTime<Utc>,
    /// Looks in a row that brought no news (or failed): how far asking has
    /// backed off from the first interval.
    pub unchanged: u32,
}

impl Store {
    /// Starts watching the pull request at `url`, recorded by `session_id`;
    /// its first look is due at once. False when it was watched already.
    pub fn watch_pr(&self, session_id: i64, url: &str) -> Result<bool> {
        self.with_conn("watching a pull request", |c| {
            let at = now();
            c.execute(
                "INSERT INTO pull_requests (session_id, url, created_at, next_check_at)
                 VALUES (?1, ?2, ?3, ?3) ON CONFLICT DO NOTHING",
                params![session_id, url, at],
            )
            .map(|n| n == 1)
        })
    }

    /// The open pull requests due for a look at `now`, the longest waiting first.
    pub fn prs_due(&self, now: DateTime<Utc>) -> Result<Vec<WatchedPr>> {
        self.with_conn("loading the pull requests due for a look", |c| {
            all(
                c,
                &format!(
                    "{PR_SELECT} WHERE state = 'open' AND next_check_at <= ?1 ORDER BY next_check_at, id"
                ),
                params![now],
                WatchedPr::from_row,
            )
        })
    }

    /// When the next open pull request is due; None when none is open.
    pub fn next_pr_due(&self) -> Result<Option<DateTime<Utc>>> {
        self.with_conn("finding when a pull request is due next", |c| {
            c.query_row(
                "SELECT MIN(next_check_at) FROM pull_requests WHERE state = 'open'",
                &[],
                |r| r.get(0),
            )
        })
    }

    /// Records a look that found the pull request still open: the ETag of a
    /// full answer (None keeps the stored one), the backoff reached, and
    /// when to look next.
    pub fn pr_still_open(
        &self,
        url: &str,
        etag: Option<&str>,
        unchanged: u32,
        next_check_at: DateTime<Utc>,
    ) -> Result<()> {
        self.with_conn("recording a look at a pull request", |c| {
            c.execute(
                "UPDATE pull_requests SET etag = COALESCE(?2, etag), unchanged = ?3,
                        next_check_at = ?4, checked_at = ?5
                 WHERE url = ?1 AND state = 'open'",
                params![url, etag, unchanged, next_check_at, now()],
            )
        })
        .map(drop)
    }

    /// Claims the end of the pull request at `url`: merged (by whom, when the
    /// forge says) or closed. True for exactly one caller, ever, even across
    /// restarts: the one that must tell its thread. An `Open` state claims
    /// nothing.
    pub fn claim_pr_end(&self, url: &str, end: &PrState) -> Result<bool> {
        let merged_by = match end {
            PrState::Open => return Ok(false),
            PrState::Merged { by } => by.as_deref(),
            PrState::Closed => None,
        };
        self.with_conn("claiming the end of a pull request", |c| {
            let at = now();
            c.execute(
                "UPDATE pull_requests SET state = ?2, merged_by = ?3, settled_at = ?4, checked_at = ?4
                 WHERE url = ?1 AND state = 'open'",
                params![url, end.as_str(), merged_by, at],
            )
            .map(|n| n == 1)
        })
    }

    /// The watched pull request at `url`, if selfheal watches it.
    pub fn watched_pr(&self, url: &str) -> Result<Option<WatchedPr>> {
        self.with_conn("looking up a watched pull request", |c| {
            c.query_row(
                &format!("{PR_SELECT} WHERE url = ?1"),
                params![url],
                WatchedPr::from_row,
            )
            .optional()
        })
    }
}

/// The columns [`WatchedPr::from_row`] reads, in its order.
const PR_SELECT: &str = "SELECT session_id, url, state, merged_by, etag, checked_at,
        next_check_at, unchanged FROM pull_requests";

impl WatchedPr {
    fn from_row(r: &Row) -> DbResult<WatchedPr> {
        let state: String = r.get(2)?;
        Ok(WatchedPr {
            session_id: r.get(0)?,
            url: r.get(1)?,
            // The table's CHECK allows only the states this version knows.
            state: PrState::parse(&state, r.get(3)?).unwrap_or(PrState::Closed),
            etag: r.get(4)?,
            checked_at: r.get(5)?,
            next_check_at: r.get(6)?,
            unchanged: r.get(7)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Claim;
    use chrono::Duration;

    const URL: &str = "https://github.com/acme/dbt/pull/7";

    fn session(store: &Store, run: &str) -> i64 {
        match store.claim_session("s", run, "C", run, "a").unwrap() {
            Claim::New(id) => id,
            Claim::Exists(id) => panic!("run {run} already had session {id}"),
        }
    }

    #[test]
    fn a_pull_request_is_watched_once_and_due_at_once() {
        for store in crate::store::testing::stores() {
            let first = session(&store, "1");
            let followup = session(&store, "2");

            assert!(store.watch_pr(first, URL).unwrap());
            assert!(
                !store.watch_pr(followup, URL).unwrap(),
                "a second link adds nothing"
            );

            let due = store.prs_due(Utc::now()).unwrap();
            assert_eq!(due.len(), 1);
            let pr = &due[0];
            assert_eq!(
                (pr.session_id, pr.url.as_str(), &pr.state, pr.unchanged),
                (first, URL, &PrState::Open, 0)
            );
            assert_eq!((pr.etag.as_deref(), pr.checked_at), (None, None));
            assert_eq!(store.next_pr_due().unwrap(), Some(pr.next_check_at));
            assert_eq!(store.watched_pr(URL).unwrap().as_ref(), Some(pr));
            assert_eq!(
                store.watched_pr("https://github.com/x/y/pull/1").unwrap(),
                None
            );
        }
    }

    #[test]
    fn a_look_moves_the_next_one_and_keeps_the_etag_it_was_not_given() {
        for store in crate::store::testing::stores() {
            let id = session(&store, "1");
            store.watch_pr(id, URL).unwrap();
            let later = Utc::now() + Duration::seconds(120);

            store.pr_still_open(URL, Some("W/\"a\""), 0, later).unwrap();
            store.pr_still_open(URL, None, 1, later).unwrap();

            assert!(store.prs_due(Utc::now()).unwrap().is_empty(), "not yet");
            let due = store.prs_due(later).unwrap();
            assert_eq!(due.len(), 1);
            assert_eq!(due[0].etag.as_deref(), Some("W/\"a\""));
            assert_eq!(due[0].unchanged, 1);
            assert!(due[0].checked_at.is_some());
            assert_eq!(store.next_pr_due().unwrap(), Some(due[0].next_check_at));
        }
    }

    #[test]
    fn the_end_of_a_pull_request_is_claimed_exactly_once() {
        for store in crate::store::testing::stores() {
            let id = session(&store, "1");
            store.watch_pr(id, URL).unwrap();
            let merged = PrState::Merged {
                by: Some("octocat".into()),
            };

            assert!(!store.claim_pr_end(URL, &PrState::Open).unwrap());
            assert!(store.claim_pr_end(URL, &merged).unwrap());
            assert!(
                !store.claim_pr_end(URL, &merged).unwrap(),
                "claimed already"
            );
            assert!(!store.claim_pr_end(URL, &PrState::Closed).unwrap());

            let row = store.watched_pr(URL).unwrap().unwrap();
            assert_eq!(row.state, merged);
            assert!(store
                .prs_due(Utc::now() + Duration::days(1))
                .unwrap()
                .is_empty());
            assert_eq!(store.next_pr_due().unwrap(), None);
            // A late look at a settled pull request changes nothing.
            store
                .pr_still_open(URL, Some("W/\"b\""), 0, Utc::now())
                .unwrap();
            assert_eq!(store.watched_pr(URL).unwrap().unwrap().state, merged);
        }
    }

    #[test]
    fn a_closed_pull_request_keeps_no_merger() {
        for store in crate::store::testing::stores() {
            let id = session(&store, "1");
            store.watch_pr(id, URL).unwrap();
            assert!(store.claim_pr_end(URL, &PrState::Closed).unwrap());
            assert_eq!(
                store.watched_pr(URL).unwrap().unwrap().state,
                PrState::Closed
            );
        }
    }
}
