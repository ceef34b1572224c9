//! What the scheduler fakes (Paradime, dbt Cloud) share about the runs a
//! retry starts: how a test says such a run ends ([`FinalState`]), the
//! countdown of status polls during which it is still in progress
//! ([`Progress`]), and the bookkeeping of retries (`Retries`: the plans,
//! which run retried which, the calls).
//!
//! It knows no scheduler's words: each fake turns a [`Phase`] into its own
//! (`STARTING`/`RUNNING`/`SUCCESS`…, or status codes 1/2/3/10…).

use std::collections::BTreeMap;

/// How a run started by a retry ends, once its polls are over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalState {
    Success,
    Failed,
    Error,
    Canceled,
}

/// A run started by a retry: in progress for its first `after_polls` status
/// polls, then in its final state for good.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    ends: FinalState,
    after_polls: usize,
    polls: usize,
}

/// Where a run started by a retry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Still going; `earlier_polls` status polls saw it before this one.
    InProgress {
        earlier_polls: usize,
    },
    Ended(FinalState),
}

impl Progress {
    pub(crate) fn new(ends: FinalState, after_polls: usize) -> Progress {
        Progress {
            ends,
            after_polls,
            polls: 0,
        }
    }

    /// The phase now, without counting a poll (for listings and answers to
    /// the retry itself).
    pub(crate) fn peek(&self) -> Phase {
        if self.polls < self.after_polls {
            Phase::InProgress {
                earlier_polls: self.polls,
            }
        } else {
            Phase::Ended(self.ends)
        }
    }

    /// The phase a status poll sees; the poll is counted.
    pub(crate) fn poll(&mut self) -> Phase {
        let phase = self.peek();
        self.polls += 1;
        phase
    }
}

/// The retries a fake has seen and been told about.
#[derive(Debug, Default)]
pub(crate) struct Retries {
    /// How the run a retry of a run starts ends: (final state, polls before it).
    plans: BTreeMap<u64, (FinalState, usize)>,
    /// Each run a retry started → the run it retried.
    parents: BTreeMap<u64, u64>,
    /// Retry requests that reached a run, refused ones included.
    calls: usize,
}

impl Retries {
    /// A retry of `run_id` starts a run that ends as `ends` after `after_polls` polls.
    pub(crate) fn plan(&mut self, run_id: u64, ends: FinalState, after_polls: usize) {
        self.plans.insert(run_id, (ends, after_polls));
    }

    /// How the retry of `run_id` ends: as planned, else as `otherwise`.
    pub(crate) fn planned(
        &self,
        run_id: u64,
        otherwise: (FinalState, usize),
    ) -> (FinalState, usize) {
        self.plans.get(&run_id).copied().unwrap_or(otherwise)
    }

    /// Counts a retry request.
    pub(crate) fn count_call(&mut self) {
        self.calls += 1;
    }

    /// Records that run `new` was started by a retry of `parent`.
    pub(crate) fn started(&mut self, new: u64, parent: u64) {
        self.parents.insert(new, parent);
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls
    }

    /// The run that `run_id` retried, if a retry started it.
    pub(crate) fn parent(&self, run_id: u64) -> Option<u64> {
        self.parents.get(&run_id).copied()
    }

    /// The runs started by retries of `run_id`, oldest first.
    pub(crate) fn of(&self, run_id: u64) -> Vec<u64> {
        self.parents
            .iter()
            .filter(|(_, parent)| **parent == run_id)
            .map(|(new, _)| *new)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_run_is_in_progress_for_its_polls_then_ends() {
        let mut progress = Progress::new(FinalState::Success, 2);
        assert_eq!(progress.peek(), Phase::InProgress { earlier_polls: 0 });
        assert_eq!(progress.poll(), Phase::InProgress { earlier_polls: 0 });
        assert_eq!(progress.poll(), Phase::InProgress { earlier_polls: 1 });
        assert_eq!(progress.poll(), Phase::Ended(FinalState::Success));
        assert_eq!(progress.poll(), Phase::Ended(FinalState::Success));

        let mut at_once = Progress::new(FinalState::Error, 0);
        assert_eq!(at_once.poll(), Phase::Ended(FinalState::Error));
    }
}
