//! The healing session as a pure state machine: `handle(input, now) -> effects`.
//!
//! It decides what the thread shows and when: which agent lines become
//! milestones, when the progress message is edited (at most once per
//! `edit_interval`, however fast the agent prints), and how the session ends.
//! It performs no IO and is not async; the driver performs its effects.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::agent::protocol::{AgentEvent, Outcome};
use crate::store::Status;

/// How many recent lines the progress message shows.
const RECENT_LINES: usize = 12;
/// How many stderr lines are kept to explain a crash.
const STDERR_TAIL: usize = 5;

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The agent said something (already redacted).
    Agent(AgentEvent),
    /// The agent wrote to stderr (already redacted).
    Stderr(String),
    /// The bot itself says something worth a progress line (run log read,
    /// clone ready, verification).
    Note(String),
    /// The agent process exited.
    Exited { code: Option<i32> },
    /// Time passed; edits are coalesced on ticks.
    Tick,
    /// The wall-clock limit ran out.
    TimedOut { limit: Duration },
    /// selfheal is shutting down.
    Shutdown,
    /// A person stopped the session (Stop button or a `stop` reply).
    Stop { by: String },
    /// The agent could not be started.
    SpawnFailed(String),
    /// The bot's own work after the agent (verification, pull request) is done.
    Finalized {
        ending: Ending,
        pr_url: Option<String>,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append to the session's stored log.
    Record { kind: &'static str, text: String },
    /// Post a new message in the thread.
    Post(String),
    /// Re-render and edit the progress message.
    EditProgress,
    /// Remember the pull request.
    SavePr(String),
    /// Stop the agent process (and its children).
    Kill,
    /// The agent is done; verify its change and open the pull request. The
    /// ending is the agent's own verdict, for when there is nothing to verify.
    Finalize(Ending),
    /// The session is over.
    Finish(Ending),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    pub status: Status,
    pub summary: String,
}

/// What the progress message shows.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub run_id: String,
    pub agent: String,
    pub elapsed_secs: u64,
    pub recent: Vec<String>,
    pub total_lines: usize,
    pub pr_url: Option<String>,
    pub ending: Option<Ending>,
}

pub struct Machine {
    run_id: String,
    agent: String,
    started: Instant,
    edit_interval: Duration,
    recent: VecDeque<String>,
    total_lines: usize,
    stderr_tail: VecDeque<String>,
    pr_url: Option<String>,
    result: Option<(Outcome, String)>,
    dirty: bool,
    last_edit: Option<Instant>,
    ending: Option<Ending>,
    /// The bot verifies and opens the pull request after the agent exits.
    finalize: bool,
    finalizing: bool,
}

impl Machine {
    pub fn new(run_id: &str, agent: &str, started: Instant, edit_interval: Duration) -> Self {
        Machine {
            run_id: run_id.to_string(),
            agent: agent.to_string(),
            started,
            edit_interval,
            recent: VecDeque::with_capacity(RECENT_LINES),
            total_lines: 0,
            stderr_tail: VecDeque::with_capacity(STDERR_TAIL),
            pr_url: None,
            result: None,
            dirty: false,
            last_edit: None,
            ending: None,
            finalize: false,
            finalizing: false,
        }
    }

    /// Makes the agent's exit lead to [`Effect::Finalize`] instead of the end.
    pub fn with_finalize(mut self) -> Self {
        self.finalize = true;
        self
    }

    pub fn is_over(&self) -> bool {
        self.ending.is_some()
    }

    pub fn pr_url(&self) -> Option<&str> {
        self.pr_url.as_deref()
    }

    pub fn view(&self, now: Instant) -> View {
        View {
            run_id: self.run_id.clone(),
            agent: self.agent.clone(),
            elapsed_secs: now.saturating_duration_since(self.started).as_secs(),
            recent: self.recent.iter().cloned().collect(),
            total_lines: self.total_lines,
            pr_url: self.pr_url.clone(),
            ending: self.ending.clone(),
        }
    }

    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        if self.ending.is_some() {
            // Nothing after the end changes the outcome.
            return vec![];
        }
        let mut fx = vec![];
        match input {
            Input::Agent(AgentEvent::Progress(text)) => {
                self.push_line(&text);
                fx.push(Effect::Record {
                    kind: "progress",
                    text,
                });
            }
            Input::Agent(AgentEvent::Milestone(text)) => {
                self.push_line(&text);
                fx.push(Effect::Post(crate::slack::render::milestone(&text)));
                fx.push(Effect::Record {
                    kind: "milestone",
                    text,
                });
            }
            Input::Agent(AgentEvent::Pr(url)) => {
                if self.pr_url.as_deref() != Some(url.as_str()) {
                    let first = self.pr_url.is_none();
                    self.pr_url = Some(url.clone());
                    self.dirty = true;
                    fx.push(Effect::SavePr(url.clone()));
                    if first {
                        fx.push(Effect::Post(crate::slack::render::pr_found(&url)));
                    }
                    fx.push(Effect::Record {
                        kind: "pr",
                        text: url,
                    });
                }
            }
            Input::Agent(AgentEvent::Tool {
                name,
                input,
                output,
            }) => {
                // The call itself was already shown as progress when it
                // started; this line says what came of it.
                let first = output.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                self.push_line(&format!(
                    "↳ {name}: {}",
                    crate::agent::protocol::truncate(first.trim(), 160)
                ));
                fx.push(Effect::Record {
                    kind: "tool",
                    text: format!("{name} {input} -> {output}"),
                });
            }
            Input::Agent(AgentEvent::Result { outcome, summary }) => {
                fx.push(Effect::Record {
                    kind: "result",
                    text: format!("{outcome:?}: {summary}"),
                });
                self.result = Some((outcome, summary));
            }
            Input::Note(text) => {
                self.push_line(&text);
                fx.push(Effect::Record { kind: "note", text });
            }
            Input::Stderr(line) => {
                if self.stderr_tail.len() == STDERR_TAIL {
                    self.stderr_tail.pop_front();
                }
                self.stderr_tail.push_back(line.clone());
                fx.push(Effect::Record {
                    kind: "stderr",
                    text: line,
                });
            }
            Input::Tick => {
                let due = self
                    .last_edit
                    .is_none_or(|at| now.saturating_duration_since(at) >= self.edit_interval);
                if self.dirty && due {
                    self.dirty = false;
                    self.last_edit = Some(now);
                    fx.push(Effect::EditProgress);
                }
            }
            Input::Exited { code } => {
                let ending = self.ending_on_exit(code);
                if self.finalize && !self.finalizing {
                    self.finalizing = true;
                    fx.push(Effect::Record {
                        kind: "agent_end",
                        text: format!("{}: {}", ending.status.as_str(), ending.summary),
                    });
                    fx.push(Effect::Finalize(ending));
                } else {
                    fx.extend(self.finish(ending));
                }
            }
            Input::Finalized { ending, pr_url } => {
                if let Some(url) = pr_url {
                    if self.pr_url.as_deref() != Some(url.as_str()) {
                        self.pr_url = Some(url.clone());
                        fx.push(Effect::SavePr(url));
                    }
                }
                fx.extend(self.finish(ending));
            }
            Input::TimedOut { limit } => {
                fx.push(Effect::Kill);
                let summary = format!(
                    "the agent ran past its {} wall-clock limit and was stopped",
                    human_duration(limit)
                );
                fx.extend(self.finish(Ending {
                    status: Status::TimedOut,
                    summary,
                }));
            }
            Input::Shutdown => {
                fx.push(Effect::Kill);
                fx.extend(self.finish(Ending {
                    status: Status::Interrupted,
                    summary: "selfheal was shut down while the session ran".into(),
                }));
            }
            Input::Stop { by } => {
                fx.push(Effect::Kill);
                let so_far: Vec<&str> = self
                    .recent
                    .iter()
                    .rev()
                    .take(3)
                    .map(String::as_str)
                    .collect();
                let mut summary = format!("stopped by <@{by}>");
                if !so_far.is_empty() {
                    let so_far: Vec<&str> = so_far.into_iter().rev().collect();
                    summary.push_str(&format!(
                        "; what it had done so far: {}",
                        so_far.join(" / ")
                    ));
                }
                fx.extend(self.finish(Ending {
                    status: Status::Stopped,
                    summary,
                }));
            }
            Input::SpawnFailed(why) => {
                fx.extend(self.finish(Ending {
                    status: Status::Failed,
                    summary: format!("the agent could not be started: {why}"),
                }));
            }
        }
        fx
    }

    fn push_line(&mut self, text: &str) {
        for line in text.lines() {
            if self.recent.len() == RECENT_LINES {
                self.recent.pop_front();
            }
            self.recent.push_back(line.to_string());
            self.total_lines += 1;
        }
        self.dirty = true;
    }

    /// The session's verdict once the agent has exited.
    fn ending_on_exit(&self, code: Option<i32>) -> Ending {
        let crashed = code != Some(0);
        match (&self.result, &self.pr_url) {
            (Some((Outcome::Fixed, summary)), Some(_)) => Ending {
                status: Status::Fixed,
                summary: summary.clone(),
            },
            // With finalize, the bot itself verifies the change and opens the PR.
            (Some((Outcome::Fixed, summary)), None) if self.finalize => Ending {
                status: Status::Fixed,
                summary: summary.clone(),
            },
            (Some((Outcome::Fixed, summary)), None) => Ending {
                status: Status::NoFix,
                summary: join(summary, "the agent reported a fix but no pull request"),
            },
            (Some((Outcome::NoFix, summary)), _) => Ending {
                status: Status::NoFix,
                summary: summary.clone(),
            },
            (Some((Outcome::Failed, summary)), _) => Ending {
                status: Status::Failed,
                summary: summary.clone(),
            },
            (None, Some(_)) if !crashed => Ending {
                status: Status::Fixed,
                summary: String::new(),
            },
            (None, None) if !crashed => Ending {
                status: Status::NoFix,
                summary: "the agent finished without reporting a pull request".into(),
            },
            (None, _) => {
                let how = match code {
                    Some(c) => format!("the agent exited with code {c}"),
                    None => "the agent was killed by a signal".to_string(),
                };
                let tail: Vec<&str> = self.stderr_tail.iter().map(String::as_str).collect();
                let summary = if tail.is_empty() {
                    how
                } else {
                    format!("{how}; its last words: {}", tail.join(" / "))
                };
                Ending {
                    status: Status::Failed,
                    summary,
                }
            }
        }
    }

    fn finish(&mut self, ending: Ending) -> Vec<Effect> {
        self.ending = Some(ending.clone());
        vec![
            Effect::Record {
                kind: "end",
                text: format!("{}: {}", ending.status.as_str(), ending.summary),
            },
            Effect::EditProgress,
            Effect::Finish(ending),
        ]
    }
}

fn join(a: &str, b: &str) -> String {
    if a.trim().is_empty() {
        b.to_string()
    } else {
        format!("{a} ({b})")
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

#[cfg(test)]
mod tests {
    use super::*;
    use AgentEvent::*;

    const EDIT: Duration = Duration::from_secs(1);

    fn machine() -> (Machine, Instant) {
        let t0 = Instant::now();
        (Machine::new("42", "healer", t0, EDIT), t0)
    }

    fn edits(fx: &[Effect]) -> usize {
        fx.iter().filter(|e| **e == Effect::EditProgress).count()
    }

    #[test]
    fn a_flood_of_progress_is_coalesced_into_one_edit_per_interval() {
        let (mut m, t0) = machine();
        let mut total_edits = 0;
        // 10,000 lines over 10 seconds, with a tick every 100 ms.
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_millis(i);
            m.handle(Input::Agent(Progress(format!("line {i}"))), now);
            if i % 100 == 0 {
                total_edits += edits(&m.handle(Input::Tick, now));
            }
        }
        assert!((9..=11).contains(&total_edits), "edits: {total_edits}");
        let view = m.view(t0 + Duration::from_secs(10));
        assert_eq!(view.total_lines, 10_000);
        assert_eq!(view.recent.last().unwrap(), "line 9999");
    }

    #[test]
    fn no_edit_without_news() {
        let (mut m, t0) = machine();
        assert_eq!(edits(&m.handle(Input::Tick, t0 + EDIT * 5)), 0);
    }

    #[test]
    fn a_tool_call_is_recorded_and_shown_as_one_line() {
        let (mut m, t0) = machine();
        let fx = m.handle(
            Input::Agent(Tool {
                name: "read_file".into(),
                input: r#"{"path":"models/a.sql"}"#.into(),
                output: "\nselect 1\nfrom x".into(),
            }),
            t0,
        );
        assert_eq!(
            fx,
            [Effect::Record {
                kind: "tool",
                text: "read_file {\"path\":\"models/a.sql\"} -> \nselect 1\nfrom x".into(),
            }]
        );
        assert_eq!(m.view(t0).recent, ["↳ read_file: select 1"]);
    }

    #[test]
    fn the_first_pr_url_is_announced_once() {
        let (mut m, t0) = machine();
        let url = "https://github.com/a/b/pull/1".to_string();
        let fx = m.handle(Input::Agent(Pr(url.clone())), t0);
        assert!(fx.contains(&Effect::SavePr(url.clone())));
        assert_eq!(
            fx.iter().filter(|e| matches!(e, Effect::Post(_))).count(),
            1
        );
        assert!(m.handle(Input::Agent(Pr(url)), t0).is_empty());
    }

    fn ending(fx: &[Effect]) -> Ending {
        fx.iter()
            .find_map(|e| match e {
                Effect::Finish(end) => Some(end.clone()),
                _ => None,
            })
            .expect("a finish effect")
    }

    #[test]
    fn the_exit_decides_the_outcome() {
        let pr = || Pr("https://github.com/a/b/pull/1".into());
        let fixed = || Result {
            outcome: Outcome::Fixed,
            summary: "done".into(),
        };
        let no_fix = || Result {
            outcome: Outcome::NoFix,
            summary: "data issue".into(),
        };
        let cases: Vec<(Vec<AgentEvent>, Option<i32>, Status)> = vec![
            (vec![pr(), fixed()], Some(0), Status::Fixed),
            (vec![pr()], Some(0), Status::Fixed),
            (vec![fixed()], Some(0), Status::NoFix),
            (vec![no_fix()], Some(0), Status::NoFix),
            (vec![], Some(0), Status::NoFix),
            (vec![], Some(3), Status::Failed),
            (vec![], None, Status::Failed),
            (vec![no_fix()], Some(1), Status::NoFix),
        ];
        for (events, code, expected) in cases {
            let (mut m, t0) = machine();
            for e in events.clone() {
                m.handle(Input::Agent(e), t0);
            }
            let end = ending(&m.handle(Input::Exited { code }, t0));
            assert_eq!(end.status, expected, "events {events:?}, code {code:?}");
        }
    }

    #[test]
    fn a_crash_is_explained_with_the_last_stderr_lines() {
        let (mut m, t0) = machine();
        for i in 0..8 {
            m.handle(Input::Stderr(format!("err {i}")), t0);
        }
        let end = ending(&m.handle(Input::Exited { code: Some(2) }, t0));
        assert_eq!(
            end.summary,
            "the agent exited with code 2; its last words: err 3 / err 4 / err 5 / err 6 / err 7"
        );
    }

    #[test]
    fn a_timeout_kills_the_agent_and_ends_the_session_once() {
        let (mut m, t0) = machine();
        let fx = m.handle(
            Input::TimedOut {
                limit: Duration::from_secs(1800),
            },
            t0,
        );
        assert!(fx.contains(&Effect::Kill));
        let end = ending(&fx);
        assert_eq!(end.status, Status::TimedOut);
        assert_eq!(
            end.summary,
            "the agent ran past its 30m wall-clock limit and was stopped"
        );
        assert!(m.handle(Input::Exited { code: None }, t0).is_empty());
        assert!(m.is_over());
    }

    #[test]
    fn shutdown_interrupts_the_session() {
        let (mut m, t0) = machine();
        let fx = m.handle(Input::Shutdown, t0);
        assert!(fx.contains(&Effect::Kill));
        assert_eq!(ending(&fx).status, Status::Interrupted);
    }

    #[test]
    fn with_finalize_the_exit_hands_over_to_the_bot_which_decides_the_end() {
        let t0 = Instant::now();
        let mut m = Machine::new("42", "healer", t0, EDIT).with_finalize();
        m.handle(
            Input::Agent(Result {
                outcome: Outcome::Fixed,
                summary: "edited".into(),
            }),
            t0,
        );
        let fx = m.handle(Input::Exited { code: Some(0) }, t0);
        assert!(fx.iter().any(|e| matches!(e, Effect::Finalize(_))));
        assert!(!m.is_over());
        let pr = "https://github.com/a/b/pull/3".to_string();
        let fx = m.handle(
            Input::Finalized {
                ending: Ending {
                    status: Status::Fixed,
                    summary: "edited".into(),
                },
                pr_url: Some(pr.clone()),
            },
            t0,
        );
        assert!(fx.contains(&Effect::SavePr(pr.clone())));
        assert_eq!(ending(&fx).status, Status::Fixed);
        assert_eq!(m.pr_url(), Some(pr.as_str()));
    }

    #[test]
    fn a_person_can_stop_the_session_and_sees_what_was_done() {
        let (mut m, t0) = machine();
        m.handle(Input::Agent(Progress("read the log".into())), t0);
        let fx = m.handle(Input::Stop { by: "U1".into() }, t0);
        assert!(fx.contains(&Effect::Kill));
        let end = ending(&fx);
        assert_eq!(end.status, Status::Stopped);
        assert_eq!(
            end.summary,
            "stopped by <@U1>; what it had done so far: read the log"
        );
    }

    #[test]
    fn milestones_get_their_own_message() {
        let (mut m, t0) = machine();
        let fx = m.handle(Input::Agent(Milestone("found <it>".into())), t0);
        assert!(fx.contains(&Effect::Post("📍 found &lt;it&gt;".into())));
    }
}
