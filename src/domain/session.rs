//! A healing session's status, its ending, and the data its parts pass on.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::agent::Outcome;

/// Where a session stands. Terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The failure was claimed; the healing reply may not be posted yet.
    Claimed,
    /// The agent is running.
    Running,
    /// The agent reported a fix (usually with a pull request).
    Fixed,
    /// The agent finished without a fix; the summary says why.
    NoFix,
    /// The agent failed (non-zero exit, crash, protocol error).
    Failed,
    /// The wall-clock limit ran out and the agent was killed.
    TimedOut,
    /// selfheal stopped or crashed while the session ran.
    Interrupted,
    /// An open pull request already addresses the same error; none was opened.
    Duplicate,
    /// A person stopped it (Stop button or a `stop` reply).
    Stopped,
    /// A transient failure: the scheduler was asked to re-run it; no agent ran.
    Retried,
    /// People must act (a permissions or configuration problem, or a
    /// transient failure past its retry budget); no agent ran.
    NeedsPeople,
}

impl Status {
    /// The text the store keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Claimed => "claimed",
            Status::Running => "running",
            Status::Fixed => "fixed",
            Status::NoFix => "no_fix",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Interrupted => "interrupted",
            Status::Duplicate => "duplicate",
            Status::Stopped => "stopped",
            Status::Retried => "retried",
            Status::NeedsPeople => "needs_people",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "claimed" => Status::Claimed,
            "running" => Status::Running,
            "fixed" => Status::Fixed,
            "no_fix" => Status::NoFix,
            "failed" => Status::Failed,
            "timed_out" => Status::TimedOut,
            "interrupted" => Status::Interrupted,
            "duplicate" => Status::Duplicate,
            "stopped" => Status::Stopped,
            "retried" => Status::Retried,
            "needs_people" => Status::NeedsPeople,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Claimed | Status::Running)
    }
}

/// How a session ended: a terminal status and the sentence that explains it.
/// Built only by the constructors below, so every way a session can end, and
/// the words stored and shown for it, is listed in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    status: Status,
    summary: String,
}

impl Ending {
    pub fn status(&self) -> Status {
        self.status
    }

    pub fn summary(&self) -> &str {
        &self.summary
    }

    fn new(status: Status, summary: impl Into<String>) -> Ending {
        Ending {
            status,
            summary: summary.into(),
        }
    }

    /// The agent (or the bot after it) fixed the failure.
    pub fn fixed(summary: impl Into<String>) -> Ending {
        Ending::new(Status::Fixed, summary)
    }

    /// The agent's own verdict, in its words.
    pub fn verdict(outcome: Outcome, summary: impl Into<String>) -> Ending {
        let status = match outcome {
            Outcome::Fixed => Status::Fixed,
            Outcome::NoFix => Status::NoFix,
            Outcome::Failed => Status::Failed,
        };
        Ending::new(status, summary)
    }

    /// The agent said it fixed the failure, but nothing can be proposed: it
    /// reported no pull request and there is no repository for the bot.
    pub fn fix_without_pr(summary: &str) -> Ending {
        let why = "the agent reported a fix but no pull request";
        let summary = if summary.trim().is_empty() {
            why.to_string()
        } else {
            format!("{summary} ({why})")
        };
        Ending::new(Status::NoFix, summary)
    }

    /// The agent exited cleanly without a verdict or a pull request.
    pub fn without_report() -> Ending {
        Ending::new(
            Status::NoFix,
            "the agent finished without reporting a pull request",
        )
    }

    /// The agent crashed (`code` None: a signal); `last_words` are its last stderr lines.
    pub fn crashed(code: Option<i32>, last_words: &[String]) -> Ending {
        let how = match code {
            Some(c) => format!("the agent exited with code {c}"),
            None => "the agent was killed by a signal".to_string(),
        };
        let summary = if last_words.is_empty() {
            how
        } else {
            format!("{how}; its last words: {}", last_words.join(" / "))
        };
        Ending::new(Status::Failed, summary)
    }

    /// The agent ran past its wall-clock limit.
    pub fn timed_out(limit: Duration) -> Ending {
        Ending::new(
            Status::TimedOut,
            format!(
                "the agent ran past its {} wall-clock limit and was stopped",
                human_duration(limit)
            ),
        )
    }

    /// selfheal was shut down while the session ran.
    pub fn interrupted() -> Ending {
        Ending::new(
            Status::Interrupted,
            "selfheal was shut down while the session ran",
        )
    }

    /// selfheal was shut down while the session waited for a slot.
    pub fn interrupted_while_queued() -> Ending {
        Ending::new(
            Status::Interrupted,
            "selfheal was shut down while the session waited in the queue",
        )
    }

    /// A person (Slack user id `by`) stopped the session; `so_far` are the
    /// last lines of its progress, oldest first. The mention stays a real
    /// mention when shown (see `slack::render::final_message`).
    pub fn stopped(by: &str, so_far: &[String]) -> Ending {
        let mut summary = format!("stopped by <@{by}>");
        if !so_far.is_empty() {
            summary.push_str(&format!(
                "; what it had done so far: {}",
                so_far.join(" / ")
            ));
        }
        Ending::new(Status::Stopped, summary)
    }

    /// A person stopped the session before it got a slot.
    pub fn stopped_while_queued(by: &str) -> Ending {
        Ending::new(
            Status::Stopped,
            format!("stopped by <@{by}> while it waited in the queue"),
        )
    }

    /// The agent, or what it needs (the clone, dbt), could not be started.
    pub fn not_started(why: &str) -> Ending {
        Ending::new(
            Status::Failed,
            format!("the agent could not be started: {why}"),
        )
    }

    /// An open pull request already addresses the error.
    pub fn duplicate(pr: &str) -> Ending {
        Ending::new(
            Status::Duplicate,
            format!("an open pull request already addresses this error: {pr}"),
        )
    }

    /// selfheal itself failed; its log says how (the thread is not told details).
    pub fn internal_error() -> Ending {
        Ending::new(
            Status::Failed,
            "selfheal hit an internal error; see its log",
        )
    }

    /// A permissions or configuration problem (`why`): people act, no agent runs.
    pub fn for_people(why: &str) -> Ending {
        Ending::new(
            Status::NeedsPeople,
            format!(
                "a person must fix this permissions or configuration problem ({why}); selfheal changes no grants, schemas or profiles, so no agent ran"
            ),
        )
    }

    /// A transient failure selfheal could not have re-run (`why`).
    pub fn rerun_by_hand(why: &str) -> Ending {
        Ending::new(
            Status::NeedsPeople,
            format!("a transient failure: re-run it ({why}); no agent ran and no pull request was opened"),
        )
    }

    /// A transient failure again, past its retry budget.
    pub fn retries_spent(root: &str, used: u32) -> Ending {
        let times = if used == 1 {
            "once".to_string()
        } else {
            format!("{used} times")
        };
        Ending::new(
            Status::NeedsPeople,
            format!(
                "a transient failure again, and run {root} was re-run {times} already, its whole retry budget: re-run it by hand once the warehouse is healthy"
            ),
        )
    }

    /// `by` was asked to re-run the run and names no run to follow.
    pub fn rerun_asked(by: &str) -> Ending {
        Ending::new(
            Status::Retried,
            format!("a transient failure: {by} was asked to re-run it; no agent ran"),
        )
    }

    /// The re-run passed.
    pub fn rerun_passed(run_id: &str) -> Ending {
        Ending::new(
            Status::Retried,
            format!("a transient failure: the re-run (run {run_id}) passed, with no change and no pull request"),
        )
    }

    /// The re-run failed too (`word`: the scheduler's state).
    pub fn rerun_failed(run_id: &str, word: &str) -> Ending {
        Ending::new(
            Status::Retried,
            format!("the re-run (run {run_id}) failed too ({word}); its own notification decides what comes next"),
        )
    }

    /// The re-run's state could not be read.
    pub fn rerun_unknown(run_id: &str, why: &str) -> Ending {
        Ending::new(
            Status::Retried,
            format!(
                "the re-run (run {run_id}) was started, but its state could not be read: {why}"
            ),
        )
    }

    /// The re-run ran longer than selfheal follows one.
    pub fn rerun_still_running(run_id: &str, waited: Duration) -> Ending {
        Ending::new(
            Status::Retried,
            format!(
                "the re-run (run {run_id}) was still running after {}; selfheal stopped following it",
                human_duration(waited)
            ),
        )
    }

    /// The agent of a data failure ended: it diagnoses only, so a "fix" is
    /// its diagnosis, and nothing it changed is proposed.
    pub fn diagnosis_only(&self) -> Ending {
        let note = "a failing data test is diagnosed only: nothing was changed or proposed";
        match self.status {
            Status::Fixed => {
                Ending::new(Status::NoFix, format!("{} ({note})", self.summary.trim()))
            }
            _ => self.clone(),
        }
    }

    /// The agent changed files but did not call it a fix: its ending stands,
    /// and says that nothing was proposed.
    pub fn not_proposed(&self, changed: &[String]) -> Ending {
        Ending::new(
            self.status,
            format!(
                "{} (the agent changed {} but did not call it a fix, so nothing was proposed)",
                self.summary.trim(),
                changed.join(", ")
            ),
        )
    }

    /// The agent's change failed `command`, the bot's verification.
    pub fn unverified(&self, command: &str) -> Ending {
        Ending::new(
            Status::NoFix,
            format!(
                "{} — but the change did not pass `{command}`, so no pull request was opened",
                self.summary.trim()
            ),
        )
    }

    /// The verified change is on `branch`, but the forge refused the pull request.
    pub fn pr_failed(branch: &str, why: &str) -> Ending {
        Ending::new(
            Status::NoFix,
            format!("the fix is on branch `{branch}`, but opening the pull request failed: {why}"),
        )
    }

    /// The verified change is on `branch` and the forge cannot open pull
    /// requests (a plain remote without a compare link): a person opens one.
    pub fn on_branch(&self, branch: &str) -> Ending {
        Ending::new(
            Status::Fixed,
            format!(
                "{} The verified fix is on branch `{branch}`; open a pull request from it.",
                self.summary.trim()
            ),
        )
    }
}

/// `fixed: renamed the ref`, as the session log keeps an ending.
impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.as_str(), self.summary)
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// What a session's progress message shows, as data; the sinks render it.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub run_id: String,
    pub agent: String,
    pub elapsed_secs: u64,
    /// The newest lines, oldest first.
    pub recent: Vec<String>,
    pub total_lines: usize,
    pub pr_url: Option<String>,
    /// Set once the session is over: the message loses its Stop button.
    pub ending: Option<Ending>,
}

/// A person asked for more in a healing thread after a session ended.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    /// Who asked (a Slack user id), and what (thread text: data from a person).
    pub by: String,
    pub instruction: String,
    /// What the thread has seen so far (earlier sessions' story).
    pub history: String,
    /// The earlier session's pull request: the follow-up adds to its branch.
    pub pr_url: Option<String>,
}

/// An earlier session of the same schedule, as the opening prompt tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorAttempt {
    pub run_id: String,
    pub at: DateTime<Utc>,
    pub status: Status,
    pub pr_url: Option<String>,
    /// The error the failure showed.
    pub error: Option<String>,
    pub summary: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_from_the_text_the_store_keeps() {
        for status in [
            Status::Claimed,
            Status::Running,
            Status::Fixed,
            Status::NoFix,
            Status::Failed,
            Status::TimedOut,
            Status::Interrupted,
            Status::Duplicate,
            Status::Stopped,
        ] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("other"), None);
    }

    #[test]
    fn endings_say_why_in_one_sentence() {
        let agent = Ending::fixed(" renamed the ref ");
        for (ending, status, summary) in [
            (
                Ending::timed_out(Duration::from_secs(1800)),
                Status::TimedOut,
                "the agent ran past its 30m wall-clock limit and was stopped",
            ),
            (
                Ending::timed_out(Duration::from_secs(7200)),
                Status::TimedOut,
                "the agent ran past its 2h wall-clock limit and was stopped",
            ),
            (
                Ending::timed_out(Duration::from_secs(90)),
                Status::TimedOut,
                "the agent ran past its 90s wall-clock limit and was stopped",
            ),
            (
                Ending::fix_without_pr(""),
                Status::NoFix,
                "the agent reported a fix but no pull request",
            ),
            (
                Ending::fix_without_pr("done"),
                Status::NoFix,
                "done (the agent reported a fix but no pull request)",
            ),
            (
                Ending::crashed(None, &[]),
                Status::Failed,
                "the agent was killed by a signal",
            ),
            (
                Ending::stopped("U1", &[]),
                Status::Stopped,
                "stopped by <@U1>",
            ),
            (
                Ending::stopped_while_queued("U1"),
                Status::Stopped,
                "stopped by <@U1> while it waited in the queue",
            ),
            (
                agent.not_proposed(&["a.sql".into(), "b.yml".into()]),
                Status::Fixed,
                "renamed the ref (the agent changed a.sql, b.yml but did not call it a fix, so nothing was proposed)",
            ),
            (
                agent.unverified("dbt build --select a+"),
                Status::NoFix,
                "renamed the ref — but the change did not pass `dbt build --select a+`, so no pull request was opened",
            ),
            (
                agent.on_branch("selfheal/s/run-1"),
                Status::Fixed,
                "renamed the ref The verified fix is on branch `selfheal/s/run-1`; open a pull request from it.",
            ),
            (
                Ending::verdict(Outcome::Failed, "x"),
                Status::Failed,
                "x",
            ),
        ] {
            assert_eq!((ending.status(), ending.summary()), (status, summary));
        }
        assert_eq!(
            Ending::duplicate("https://x/pull/1").to_string(),
            "duplicate: an open pull request already addresses this error: https://x/pull/1"
        );
    }
}
