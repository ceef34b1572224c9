//! The re-runs selfheal asked a scheduler for after a transient failure.
//!
//! A retry budget counts per failed run, across that run's re-runs: when run
//! 100 fails, selfheal asks for a re-run (run 101, attempt 1); when 101 fails
//! too, its failure is a re-run of 100, and a budget of one is spent. Each
//! attempt is a row under `UNIQUE (schedule, root_run_id, attempt)`, and each
//! failed run is re-run at most once (`UNIQUE (schedule, failed_run_id)`), so
//! redeliveries, replicas and restarts cannot ask twice.

use super::db::{params, OptionalExtension};
use anyhow::Result;

use super::{now, Store};

/// What claiming a re-run decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryClaim {
    /// The caller asks the scheduler: this is `attempt` of the budget for
    /// `root` (the run whose failure started the chain). `id` names the claim.
    Granted { id: i64, root: String, attempt: u32 },
    /// The budget for `root` is spent: `used` re-runs were asked for already.
    Spent { root: String, used: u32 },
    /// A re-run of this very failure was asked for already (by an earlier
    /// delivery or process); `run_id` is the re-run, when the scheduler said.
    AlreadyAsked {
        root: String,
        attempt: u32,
        run_id: Option<String>,
    },
}

impl Store {
    /// Claims a re-run of `run_id`'s failure for `session_id`, under a budget
    /// of `budget` re-runs per chain. A failed run that is itself a re-run
    /// selfheal asked for counts against its root's budget; so does the first
    /// failure after a retry command (`by_command`), which reports no run id.
    pub fn claim_retry(
        &self,
        schedule: &str,
        run_id: &str,
        session_id: i64,
        budget: u32,
        by_command: bool,
    ) -> Result<RetryClaim> {
        self.with_tx("claiming a re-run", |tx| {
            let asked = tx
                .query_row(
                    "SELECT root_run_id, attempt, run_id FROM retries WHERE schedule = ?1 AND failed_run_id = ?2",
                    params![schedule, run_id],
                    |r| {
                        Ok(RetryClaim::AlreadyAsked {
                            root: r.get(0)?,
                            attempt: r.get(1)?,
                            run_id: r.get(2)?,
                        })
                    },
                )
                .optional()?;
            if let Some(asked) = asked {
                return Ok(asked);
            }
            let known: Option<String> = tx
                .query_row(
                    "SELECT root_run_id FROM retries WHERE schedule = ?1 AND run_id = ?2",
                    params![schedule, run_id],
                    |r| r.get(0),
                )
                .optional()?;
            let root = match known {
                Some(root) => root,
                None => {
                    // A retry command gives no run id: the schedule's next
                    // failure, unless it passed since, is that re-run's.
                    let pending: Option<(i64, String)> = tx
                        .query_row(
                            "SELECT r.id, r.root_run_id FROM retries r
                             WHERE r.schedule = ?1 AND r.run_id IS NULL AND r.by_command = 1
                               AND NOT EXISTS (SELECT 1 FROM failures f
                                   WHERE f.schedule = r.schedule AND f.resolved_at > r.asked_at)
                             ORDER BY r.id DESC LIMIT 1",
                            params![schedule],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()?;
                    match pending {
                        Some((id, root)) => {
                            tx.execute(
                                "UPDATE retries SET run_id = ?2 WHERE id = ?1",
                                params![id, run_id],
                            )?;
                            root
                        }
                        None => run_id.to_string(),
                    }
                }
            };
            let used: u32 = tx.query_row(
                "SELECT COUNT(*) FROM retries WHERE schedule = ?1 AND root_run_id = ?2",
                params![schedule, root],
                |r| r.get(0),
            )?;
            if used >= budget {
                return Ok(RetryClaim::Spent { root, used });
            }
            let attempt = used + 1;
            let id = tx.query_row(
                "INSERT INTO retries(schedule, root_run_id, attempt, failed_run_id, by_command, session_id, asked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                params![schedule, root, attempt, run_id, by_command, session_id, now()],
                |r| r.get(0),
            )?;
            Ok(RetryClaim::Granted { id, root, attempt })
        })
    }

    /// The scheduler started the re-run as `run_id`.
    pub fn set_retry_run(&self, id: i64, run_id: &str) -> Result<()> {
        self.with_conn("recording a re-run's id", |c| {
            c.execute(
                "UPDATE retries SET run_id = ?2 WHERE id = ?1",
                params![id, run_id],
            )
        })
        .map(drop)
    }

    /// The scheduler refused or could not be asked: the attempt was not spent.
    pub fn release_retry(&self, id: i64) -> Result<()> {
        self.with_conn("releasing a re-run claim", |c| {
            c.execute("DELETE FROM retries WHERE id = ?1", params![id])
        })
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Claim;

    fn session(store: &Store, run: &str) -> i64 {
        match store
            .claim_session("nightly", run, "C1", "1.0", "doctor")
            .unwrap()
        {
            Claim::New(id) => id,
            Claim::Exists(id) => id,
        }
    }

    #[test]
    fn a_budget_of_one_re_runs_a_failed_run_once_across_its_re_runs() {
        for store in crate::store::testing::stores() {
            let s100 = session(&store, "100");
            let RetryClaim::Granted { id, root, attempt } =
                store.claim_retry("nightly", "100", s100, 1, false).unwrap()
            else {
                panic!("the first failure is re-run");
            };
            assert_eq!((root.as_str(), attempt), ("100", 1));
            store.set_retry_run(id, "101").unwrap();

            // The same failure delivered again does not ask twice.
            assert_eq!(
                store.claim_retry("nightly", "100", s100, 1, false).unwrap(),
                RetryClaim::AlreadyAsked {
                    root: "100".into(),
                    attempt: 1,
                    run_id: Some("101".into())
                }
            );
            // The re-run failed too: its budget is its root's, and it is spent.
            let s101 = session(&store, "101");
            assert_eq!(
                store.claim_retry("nightly", "101", s101, 1, false).unwrap(),
                RetryClaim::Spent {
                    root: "100".into(),
                    used: 1
                }
            );
            // With a budget of two it is the second attempt of the same chain.
            assert!(matches!(
                store.claim_retry("nightly", "101", s101, 2, false).unwrap(),
                RetryClaim::Granted { attempt: 2, ref root, .. } if root == "100"
            ));
            // An unrelated run of the schedule has a budget of its own.
            let s200 = session(&store, "200");
            assert!(matches!(
                store.claim_retry("nightly", "200", s200, 1, false).unwrap(),
                RetryClaim::Granted { attempt: 1, ref root, .. } if root == "200"
            ));
        }
    }

    #[test]
    fn a_released_claim_gives_the_attempt_back() {
        for store in crate::store::testing::stores() {
            let s = session(&store, "7");
            let RetryClaim::Granted { id, .. } =
                store.claim_retry("nightly", "7", s, 1, false).unwrap()
            else {
                panic!("granted");
            };
            store.release_retry(id).unwrap();
            assert!(matches!(
                store.claim_retry("nightly", "7", s, 1, false).unwrap(),
                RetryClaim::Granted { attempt: 1, .. }
            ));
        }
    }

    #[test]
    fn after_a_retry_command_the_next_failure_is_its_re_run_unless_the_schedule_passed() {
        for store in crate::store::testing::stores() {
            let s = session(&store, "a");
            assert!(matches!(
                store.claim_retry("nightly", "a", s, 1, true).unwrap(),
                RetryClaim::Granted { .. }
            ));
            // The command reported no run id; the next failure is its re-run.
            let sb = session(&store, "b");
            assert_eq!(
                store.claim_retry("nightly", "b", sb, 1, true).unwrap(),
                RetryClaim::Spent {
                    root: "a".into(),
                    used: 1
                }
            );

            // Once the schedule passed, a later failure starts a chain of its own.
            let other = crate::store::testing::another(&store);
            let s = session(&other, "a");
            other.claim_retry("nightly", "a", s, 1, true).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
            let resolved = other.resolve_failures("nightly", "pass-1").unwrap();
            assert_eq!(resolved.len(), 1);
            let sc = session(&other, "c");
            assert!(matches!(
                other.claim_retry("nightly", "c", sc, 1, true).unwrap(),
                RetryClaim::Granted { attempt: 1, ref root, .. } if root == "c"
            ));
        }
    }
}
