//! What the scheduler fakes (Paradime, dbt Cloud) share about the runs a
//! retry starts: how a test says such a run ends ([`FinalState`]), and the
//! countdown of status polls during which it is still in progress
//! ([`Progress`]).
//!
//! It knows no scheduler's words: each fake turns a [`Phase`] into its own
//! (`STARTING`/`RUNNING`/`SUCCESS`…, or status codes 1/2/3/10…).

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
