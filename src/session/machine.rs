//! The healing session as a pure state machine: `handle(input, now) -> effects`.
//!
//! It holds a session's whole lifecycle. It waits for a slot, reads the run
//! log, looks for an open pull request that already addresses the error,
//! prepares the clone and dbt, starts the agent and, once the agent is done,
//! finishes as the bot: it lists the change, verifies it with dbt, looks again
//! for an open pull request, commits, pushes and opens the pull request. Each
//! of those steps is an [`Effect::Do`] that the driver carries out and answers
//! with an [`Input`]; the machine decides what comes next. It also decides
//! what the thread shows and when: which agent lines become milestones, when
//! the progress message is edited (at most once per `edit_interval`, however
//! fast the agent prints), and how the session ends.
//!
//! It performs no IO, is not async and renders nothing. It depends only on
//! [`crate::domain`] and [`crate::agent::protocol`]; what it says is data
//! ([`Message`], [`Progress`]) that `session::sink` renders for Slack or the
//! terminal.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::agent::protocol::truncate;
use crate::domain::{AgentEvent, Ending, EventKind, FailureClass, Outcome, Progress, Status};

/// How long a re-run is followed before the session stops waiting for it.
const RERUN_WAIT: Duration = Duration::from_secs(3 * 3600);
/// How many failed reads of a re-run's state in a row end the wait.
const RERUN_UNREADABLE: u32 = 5;
/// How many recent lines the progress message shows.
const RECENT_LINES: usize = 12;
/// How many stderr lines are kept to explain a crash.
const STDERR_TAIL: usize = 5;

/// What the session is for and how it works; fixed when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Brief {
    pub run_id: String,
    pub schedule: String,
    /// The agent's name, as the progress message shows it.
    pub agent: String,
    pub workflow: Workflow,
    pub purpose: Purpose,
}

/// Who turns the agent's work into a pull request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workflow {
    /// No repository is configured: the agent works wherever it runs, and its
    /// verdict and its own pull request are the outcome.
    AgentAlone,
    /// The bot clones the repository and prepares dbt before the agent, then
    /// verifies the agent's change and proposes it.
    Clone,
}

/// Why the session runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Purpose {
    /// Heal a failure.
    Heal,
    /// A person asked for more after an earlier session of the thread ended.
    /// `pr` is that session's pull request: the follow-up adds to its branch
    /// (and, building on it on purpose, skips the search for a duplicate).
    FollowUp { pr: Option<String> },
}

/// A piece of the bot's own work. The driver carries it out and answers with
/// the input named here.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Take a slot under the concurrency caps if one is free:
    /// [`Input::SlotTaken`] or [`Input::SlotBusy`].
    TakeSlot,
    /// Wait for a slot: [`Input::SlotTaken`] (or [`Input::Stop`]).
    WaitForSlot,
    /// Read the run log, store it and its error signature: [`Input::RunLogRead`].
    ReadRunLog,
    /// Look for an open pull request for the same error: [`Input::OpenPr`].
    FindOpenPr,
    /// Clone the repository and check out the branch: [`Input::Cloned`].
    PrepareClone(Branch),
    /// Prepare the isolated place dbt builds in: [`Input::DbtPrepared`].
    PrepareDbt,
    /// Build the prompt and start the agent: [`Input::AgentStarted`] or [`Input::SpawnFailed`].
    StartAgent,
    /// List (and stage) the source files the agent changed: [`Input::Changes`].
    ListChanges,
    /// Run the verification planned when dbt was prepared: [`Input::Verified`].
    Verify,
    /// Commit the staged change with this message: [`Input::Committed`].
    Commit(String),
    /// Push this branch: [`Input::Pushed`].
    Push(String),
    /// Open the pull request: [`Input::PrOpened`].
    OpenPr(Box<PrDraft>),
    /// Ask the scheduler to re-run the failed run, within the retry budget:
    /// [`Input::Retry`].
    Retry,
    /// Wait a poll interval, then ask for the re-run's state: [`Input::Rerun`]
    /// (or [`Input::Stop`]).
    PollRerun(String),
    /// The schedule passed again in this run: close the loop in every thread
    /// of its failures (the recovery line, the healing reply edited, an open
    /// pull request told): [`Input::LoopClosed`].
    ClosePassed(String),
}

/// The session's branch in the clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Branch {
    /// A new branch at the base commit.
    Start(String),
    /// The existing branch of the pull request a follow-up adds to.
    Continue(String),
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The agent said something (already redacted).
    Agent(AgentEvent),
    /// The agent wrote to stderr (already redacted).
    Stderr(String),
    /// A person replied in the thread; the driver passed it to the agent.
    Guidance { by: String, text: String },
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
    /// The session holds a slot.
    SlotTaken,
    /// No slot is free: at most `at_once` sessions run, `per_schedule` per schedule.
    SlotBusy { at_once: usize, per_schedule: usize },
    /// The run log was read.
    RunLogRead(LogRead),
    /// The open pull request that already addresses the error, if any.
    OpenPr(Option<String>),
    /// The clone is ready (what to say about it), or why it is not.
    Cloned(Result<String, String>),
    /// dbt is ready (what to say, how verification will go), or why it is not.
    DbtPrepared(Result<DbtReady, String>),
    /// The agent runs.
    AgentStarted,
    /// The agent could not be started.
    SpawnFailed(String),
    /// The source files the agent changed.
    Changes(Vec<String>),
    /// What verification found.
    Verified(Verified),
    /// The change was committed.
    Committed(Change),
    /// The branch was pushed.
    Pushed,
    /// The pull request's URL; Ok(None) when the forge gives no link (a plain
    /// remote); Err when the forge refused it.
    PrOpened(Result<Option<String>, String>),
    /// What asking for a re-run came to.
    Retry(RetryAnswer),
    /// The re-run's state, or why it could not be read.
    Rerun(Result<RerunState, String>),
    /// The loop is closed.
    LoopClosed,
}

/// What asking the scheduler for a re-run came to.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryAnswer {
    /// `by` (the scheduler, or the retry command) re-runs it, as `run_id`
    /// when it says; attempt `attempt` of a budget of `budget`.
    Started {
        by: String,
        run_id: Option<String>,
        attempt: u32,
        budget: u32,
    },
    /// A re-run of this failure was asked for already (before a restart);
    /// `run_id` is that re-run, when known.
    AlreadyAsked {
        attempt: u32,
        run_id: Option<String>,
    },
    /// The budget is spent: run `root` was re-run `used` times already.
    Spent { root: String, used: u32 },
    /// Re-runs are off for the schedule.
    Off,
    /// Nothing can re-run it: the run-log source has no retry API and no
    /// retry command is configured.
    NoWay,
    /// The scheduler refused, or could not be asked.
    Refused(String),
}

/// A re-run's state, as its scheduler reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum RerunState {
    Running,
    Passed,
    /// It failed too; the scheduler's word for it (`FAILED`, `Error`).
    Failed(String),
}

/// What reading the run log found.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRead {
    /// Which source provided it (`dir:/var/runs/48213`).
    pub origin: String,
    /// The failing nodes' names, in the log's order.
    pub failing: Vec<String>,
    /// Why the configured source could not be read (the notification was read instead).
    pub unreadable: Option<String>,
    /// What kind of failure it is, which decides the session's path.
    pub class: FailureClass,
    /// Why, in one line quoting the evidence.
    pub why: String,
    /// The latest earlier failure with the same error, if any.
    pub earlier: Option<Earlier>,
}

/// An earlier failure with the same error.
#[derive(Debug, Clone, PartialEq)]
pub struct Earlier {
    pub run_id: String,
    /// Its healing thread.
    pub channel: String,
    pub thread_ts: String,
    pub pr_url: Option<String>,
}

/// dbt is prepared.
#[derive(Debug, Clone, PartialEq)]
pub struct DbtReady {
    /// What preparing did (where dbt builds, packages, parents, time).
    pub note: String,
    pub verification: Verification,
}

/// How the bot will verify the agent's change.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    /// The dbt command as a person reads it (no session paths).
    pub command: String,
    /// Where it runs ("builds in a throwaway copy of production's DuckDB").
    pub place: String,
    pub depth: Depth,
}

/// What verification proves.
#[derive(Debug, Clone, PartialEq)]
pub enum Depth {
    /// It builds and tests the change and everything downstream.
    Builds,
    /// It only compiles; `hint` says how to make it build.
    CompilesOnly { hint: String },
}

/// What verification found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verified {
    Passed {
        took_secs: f64,
        /// dbt's closing line (`Done. PASS=5 …`).
        dbt_says: String,
    },
    Failed {
        /// The failing nodes and their errors.
        errors: String,
    },
}

/// The committed change, as the pull request shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub diff_stat: String,
    pub diff: String,
    pub files: Vec<String>,
}

/// What the pull request says, but for what only the driver knows (the
/// thread's link, the error signature).
#[derive(Debug, Clone, PartialEq)]
pub struct PrDraft {
    pub title: String,
    /// The head branch.
    pub branch: String,
    /// The agent's summary.
    pub root_cause: String,
    pub change: Change,
    pub verification: Verification,
    /// dbt's closing line of the verification.
    pub dbt_says: String,
}

/// What the thread is told; `session::sink` renders it.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Something the bot itself says, as plain text.
    Bot(String),
    /// A milestone the agent reported.
    Milestone(String),
    /// The agent reported its pull request.
    PrFound(String),
    /// What kind of failure this is, and why.
    Sorted { class: FailureClass, why: String },
    /// The same error happened before.
    Recurrence(Earlier),
    /// The session is over: the pull request, or why there is none.
    Final {
        ending: Ending,
        pr_url: Option<String>,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append to the session's stored log.
    Record { kind: EventKind, text: String },
    /// Post a new message in the thread.
    Post(Message),
    /// Post the progress message, which the session edits from then on.
    OpenProgress,
    /// Post what the run log says (the driver holds the log).
    ShowRunLog,
    /// Re-render and edit the progress message.
    EditProgress,
    /// Remember the pull request.
    SavePr(String),
    /// Stop the agent process (and its children), if one runs.
    Kill,
    /// Carry out a step and answer with its input.
    Do(Step),
    /// The session is over: store how it ended.
    Finish {
        ending: Ending,
        pr_url: Option<String>,
    },
}

/// Where the session is.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Waiting for a slot; nothing is posted yet but the queue notice.
    Waiting,
    /// The bot's work before the agent; the step under way.
    Preparing(Prep),
    /// The agent runs.
    Running {
        agent: Agent,
        then: AfterAgent,
    },
    /// A transient failure: the scheduler is asked for a re-run, then the
    /// re-run is followed until it ends.
    Retrying(Rerun),
    /// The bot's work after the agent, on the agent's ending.
    Finishing {
        agent: Ending,
        verification: Verification,
        step: Finish,
    },
    Over(Ending),
}

/// The step under way before the agent.
#[derive(Debug, Clone, PartialEq)]
enum Prep {
    RunLog,
    OpenPr,
    Clone,
    Dbt,
    Agent(AfterAgent),
}

/// Where a re-run stands.
#[derive(Debug, Clone, PartialEq)]
enum Rerun {
    Asking,
    Following {
        run_id: String,
        since: Instant,
        /// Reads of its state that failed in a row.
        unreadable: u32,
    },
    Closing(String),
}

/// What follows the agent's exit.
#[derive(Debug, Clone, PartialEq)]
enum AfterAgent {
    /// Its verdict is the session's ending.
    Verdict,
    /// A data failure: the agent diagnoses, whatever it changed, and nothing
    /// is proposed.
    Diagnose,
    /// The bot verifies (as planned) and proposes its change.
    Finish(Verification),
}

/// What the running agent has said that decides its ending.
#[derive(Debug, Clone, PartialEq, Default)]
struct Agent {
    verdict: Option<(Outcome, String)>,
    stderr_tail: VecDeque<String>,
}

/// The step under way after the agent.
#[derive(Debug, Clone, PartialEq)]
enum Finish {
    Changes,
    Verify,
    Dedupe { dbt_says: String },
    Commit { dbt_says: String },
    Push { change: Change, dbt_says: String },
    OpenPr,
}

pub struct Machine {
    brief: Brief,
    started: Instant,
    edit_interval: Duration,
    recent: VecDeque<String>,
    total_lines: usize,
    pr_url: Option<String>,
    /// The pull request's title: the first failing node, once the run log names it.
    title: String,
    /// The progress message shows less than the machine knows.
    dirty: bool,
    last_edit: Option<Instant>,
    phase: Phase,
    /// What kind of failure it is, once the run log is read.
    class: Option<FailureClass>,
}

impl Machine {
    pub fn new(brief: Brief, now: Instant, edit_interval: Duration) -> Self {
        Machine {
            title: pr_title(&brief.schedule, &brief.run_id, None),
            brief,
            started: now,
            edit_interval,
            recent: VecDeque::with_capacity(RECENT_LINES),
            total_lines: 0,
            pr_url: None,
            dirty: false,
            last_edit: None,
            phase: Phase::Waiting,
            class: None,
        }
    }

    /// The first effects: every session starts by asking for a slot.
    pub fn start(&self) -> Vec<Effect> {
        vec![Effect::Do(Step::TakeSlot)]
    }

    pub fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Over(_))
    }

    /// What the progress message shows now.
    pub fn view(&self, now: Instant) -> Progress {
        Progress {
            run_id: self.brief.run_id.clone(),
            agent: self.brief.agent.clone(),
            elapsed_secs: now.saturating_duration_since(self.started).as_secs(),
            recent: self.recent.iter().cloned().collect(),
            total_lines: self.total_lines,
            pr_url: self.pr_url.clone(),
            ending: match &self.phase {
                Phase::Over(ending) => Some(ending.clone()),
                _ => None,
            },
        }
    }

    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        if self.is_over() {
            // Nothing after the end changes the outcome.
            return vec![];
        }
        let waiting = self.phase == Phase::Waiting;
        match input {
            Input::Agent(event) => self.agent_said(event),
            Input::Stderr(line) => {
                if let Phase::Running { agent, .. } = &mut self.phase {
                    if agent.stderr_tail.len() == STDERR_TAIL {
                        agent.stderr_tail.pop_front();
                    }
                    agent.stderr_tail.push_back(line.clone());
                }
                vec![Effect::Record {
                    kind: EventKind::Stderr,
                    text: line,
                }]
            }
            Input::Guidance { by, text } => {
                let text = format!("💬 guidance from <@{by}>: {text}");
                self.push_line(&text);
                vec![Effect::Record {
                    kind: EventKind::Guidance,
                    text,
                }]
            }
            Input::Tick => self.tick(now),
            Input::Exited { code } => self.agent_exited(code),
            Input::TimedOut { limit } => self.kill_and_finish(Ending::timed_out(limit)),
            Input::Shutdown if waiting => self.end(Ending::interrupted_while_queued(), None),
            Input::Shutdown => self.kill_and_finish(Ending::interrupted()),
            Input::Stop { by } if waiting => self.end(Ending::stopped_while_queued(&by), None),
            Input::Stop { by } => {
                let so_far: Vec<String> = self.recent.iter().rev().take(3).rev().cloned().collect();
                self.kill_and_finish(Ending::stopped(&by, &so_far))
            }
            answer => self.answer(answer, now),
        }
    }

    /// The answer to a step: the machine decides the next one.
    fn answer(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        // The phase is taken and every arm puts the next one back (a step, or
        // the end); an answer the machine did not ask for changes nothing.
        let phase = std::mem::replace(&mut self.phase, Phase::Waiting);
        let mut fx = vec![];
        match (phase, input) {
            (Phase::Waiting, Input::SlotTaken) => {
                // The session's clock starts when it gets to work.
                self.started = now;
                fx.push(Effect::OpenProgress);
                fx.push(self.go(Phase::Preparing(Prep::RunLog), Step::ReadRunLog));
            }
            (
                Phase::Waiting,
                Input::SlotBusy {
                    at_once,
                    per_schedule,
                },
            ) => {
                let text = format!(
                    "⏳ Queued: other healing sessions are running (at most {at_once} at once, {per_schedule} per schedule); this one starts when a slot frees up."
                );
                fx.push(Effect::Record {
                    kind: EventKind::Queued,
                    text: text.clone(),
                });
                fx.push(Effect::Post(Message::Bot(text)));
                fx.push(self.go(Phase::Waiting, Step::WaitForSlot));
            }
            (Phase::Preparing(Prep::RunLog), Input::RunLogRead(read)) => {
                if let Some(why) = &read.unreadable {
                    fx.extend(self.bot_milestone(format!(
                        "Could not read the run log ({why}); working from the Slack notification instead"
                    )));
                }
                // A log that names no failing node is not worth a message of its own.
                if !read.failing.is_empty() {
                    fx.push(Effect::ShowRunLog);
                }
                fx.extend(self.note(format!(
                    "read the run log ({}): {} failing node(s)",
                    read.origin,
                    read.failing.len()
                )));
                self.title = pr_title(
                    &self.brief.schedule,
                    &self.brief.run_id,
                    read.failing.first().map(String::as_str),
                );
                if let Purpose::FollowUp { .. } = self.brief.purpose {
                    // A follow-up builds on its own pull request on purpose:
                    // people asked for it, whatever the failure's kind.
                    fx.push(self.prepare());
                    return fx;
                }
                self.class = Some(read.class);
                fx.push(Effect::Post(Message::Sorted {
                    class: read.class,
                    why: read.why.clone(),
                }));
                fx.extend(self.note(format!("sorted as {}: {}", read.class.label(), read.why)));
                if let Some(earlier) = read.earlier {
                    fx.push(Effect::Post(Message::Recurrence(earlier)));
                }
                match read.class {
                    FailureClass::Code => {
                        fx.push(self.go(Phase::Preparing(Prep::OpenPr), Step::FindOpenPr));
                    }
                    // Nothing will be proposed, so there is no duplicate to look for.
                    FailureClass::Data => fx.push(self.prepare()),
                    FailureClass::Transient => {
                        fx.push(self.go(Phase::Retrying(Rerun::Asking), Step::Retry));
                    }
                    FailureClass::Setup => {
                        fx.extend(self.finish(Ending::for_people(&read.why), None))
                    }
                }
            }
            (Phase::Retrying(Rerun::Asking), Input::Retry(answer)) => {
                fx.extend(self.retry_answered(answer, now));
            }
            (
                Phase::Retrying(Rerun::Following {
                    run_id,
                    since,
                    unreadable,
                }),
                Input::Rerun(state),
            ) => match state {
                Ok(RerunState::Passed) => {
                    fx.push(self.go(
                        Phase::Retrying(Rerun::Closing(run_id.clone())),
                        Step::ClosePassed(run_id),
                    ));
                }
                Ok(RerunState::Failed(word)) => {
                    fx.extend(self.finish(Ending::rerun_failed(&run_id, &word), None));
                }
                Err(why) if unreadable + 1 >= RERUN_UNREADABLE => {
                    fx.extend(self.finish(Ending::rerun_unknown(&run_id, &why), None));
                }
                _ if now.saturating_duration_since(since) >= RERUN_WAIT => {
                    fx.extend(self.finish(Ending::rerun_still_running(&run_id, RERUN_WAIT), None));
                }
                state => {
                    let unreadable = if state.is_err() { unreadable + 1 } else { 0 };
                    let next = Phase::Retrying(Rerun::Following {
                        run_id: run_id.clone(),
                        since,
                        unreadable,
                    });
                    fx.push(self.go(next, Step::PollRerun(run_id)));
                }
            },
            (Phase::Retrying(Rerun::Closing(run_id)), Input::LoopClosed) => {
                fx.extend(self.finish(Ending::rerun_passed(&run_id), None));
            }
            (Phase::Preparing(Prep::OpenPr), Input::OpenPr(found)) => match found {
                Some(pr) => fx.extend(self.finish(Ending::duplicate(&pr), Some(pr))),
                None => fx.push(self.prepare()),
            },
            (Phase::Preparing(Prep::Clone), Input::Cloned(Ok(note))) => {
                fx.extend(self.note(note));
                fx.push(self.go(Phase::Preparing(Prep::Dbt), Step::PrepareDbt));
            }
            (Phase::Preparing(Prep::Clone), Input::Cloned(Err(why))) => {
                let why = format!("could not prepare the repository: {why}");
                fx.extend(self.finish(Ending::not_started(&why), None));
            }
            (Phase::Preparing(Prep::Dbt), Input::DbtPrepared(Ok(ready))) => {
                fx.extend(self.note(ready.note));
                let verification = ready.verification;
                if let Depth::CompilesOnly { .. } = verification.depth {
                    fx.extend(self.bot_milestone(format!(
                        "⚠️ Verification will only compile: {}",
                        verification.place
                    )));
                }
                let then = match self.class {
                    Some(FailureClass::Data) => AfterAgent::Diagnose,
                    _ => AfterAgent::Finish(verification),
                };
                fx.push(self.go(Phase::Preparing(Prep::Agent(then)), Step::StartAgent));
            }
            (Phase::Preparing(Prep::Dbt), Input::DbtPrepared(Err(why))) => {
                let why = format!("could not prepare a safe place to run dbt: {why}");
                fx.extend(self.finish(Ending::not_started(&why), None));
            }
            (Phase::Preparing(Prep::Agent(then)), Input::AgentStarted) => {
                self.phase = Phase::Running {
                    agent: Agent::default(),
                    then,
                };
            }
            (Phase::Preparing(Prep::Agent(_)), Input::SpawnFailed(why)) => {
                fx.extend(self.finish(Ending::not_started(&why), None));
            }
            (
                Phase::Finishing {
                    agent,
                    verification,
                    step: Finish::Changes,
                },
                Input::Changes(files),
            ) => {
                if files.is_empty() {
                    fx.extend(self.finish(agent, None));
                } else if agent.status() != Status::Fixed {
                    fx.extend(self.finish(agent.not_proposed(&files), None));
                } else {
                    // Verification runs in the isolated place: the failing
                    // nodes and everything downstream of them.
                    fx.extend(self.bot_milestone(format!(
                        "🔎 Verifying the change with `{}`: the session {}",
                        verification.command, verification.place
                    )));
                    let next = Phase::Finishing {
                        agent,
                        verification,
                        step: Finish::Verify,
                    };
                    fx.push(self.go(next, Step::Verify));
                }
            }
            (
                Phase::Finishing {
                    agent,
                    verification,
                    step: Finish::Verify,
                },
                Input::Verified(verified),
            ) => match verified {
                Verified::Failed { errors } => {
                    fx.extend(self.bot_milestone(format!("❌ Verification failed:\n{errors}")));
                    fx.extend(self.finish(agent.unverified(&verification.command), None));
                }
                Verified::Passed {
                    took_secs,
                    dbt_says,
                } => {
                    let command = &verification.command;
                    fx.extend(self.bot_milestone(match &verification.depth {
                        Depth::Builds => {
                            format!("✅ Verification passed: `{command}` ({took_secs:.1}s)")
                        }
                        Depth::CompilesOnly { hint } => format!(
                            "✅ Compiles: `{command}` ({took_secs:.1}s) — nothing was built or tested ({hint})"
                        ),
                    }));
                    fx.push(match self.followup_pr() {
                        // A follow-up pushes to its pull request's branch; the PR picks it up.
                        Some(_) => {
                            let message = format!(
                                "selfheal: follow-up for run {}\n\n{}",
                                self.brief.run_id,
                                agent.summary().trim()
                            );
                            let next = Phase::Finishing {
                                agent,
                                verification,
                                step: Finish::Commit { dbt_says },
                            };
                            self.go(next, Step::Commit(message))
                        }
                        // The error may have been fixed by someone else's PR in the meantime.
                        None => {
                            let next = Phase::Finishing {
                                agent,
                                verification,
                                step: Finish::Dedupe { dbt_says },
                            };
                            self.go(next, Step::FindOpenPr)
                        }
                    });
                }
            },
            (
                Phase::Finishing {
                    agent,
                    verification,
                    step: Finish::Dedupe { dbt_says },
                },
                Input::OpenPr(found),
            ) => match found {
                Some(pr) => fx.extend(self.finish(Ending::duplicate(&pr), Some(pr))),
                None => {
                    let message = format!("{}\n\n{}", self.title, agent.summary().trim());
                    let next = Phase::Finishing {
                        agent,
                        verification,
                        step: Finish::Commit { dbt_says },
                    };
                    fx.push(self.go(next, Step::Commit(message)));
                }
            },
            (
                Phase::Finishing {
                    agent,
                    verification,
                    step: Finish::Commit { dbt_says },
                },
                Input::Committed(change),
            ) => {
                let next = Phase::Finishing {
                    agent,
                    verification,
                    step: Finish::Push { change, dbt_says },
                };
                fx.push(self.go(next, Step::Push(self.branch())));
            }
            (
                Phase::Finishing {
                    agent,
                    verification,
                    step: Finish::Push { change, dbt_says },
                },
                Input::Pushed,
            ) => match self.followup_pr().map(str::to_string) {
                Some(pr) => fx.extend(self.finish(agent, Some(pr))),
                None => {
                    let draft = PrDraft {
                        title: self.title.clone(),
                        branch: self.branch(),
                        root_cause: agent.summary().to_string(),
                        change,
                        verification: verification.clone(),
                        dbt_says,
                    };
                    let next = Phase::Finishing {
                        agent,
                        verification,
                        step: Finish::OpenPr,
                    };
                    fx.push(self.go(next, Step::OpenPr(Box::new(draft))));
                }
            },
            (
                Phase::Finishing {
                    agent,
                    step: Finish::OpenPr,
                    ..
                },
                Input::PrOpened(opened),
            ) => {
                let branch = self.branch();
                fx.extend(match opened {
                    Ok(Some(url)) => self.finish(agent, Some(url)),
                    Ok(None) => self.finish(agent.on_branch(&branch), None),
                    Err(why) => self.finish(Ending::pr_failed(&branch, &why), None),
                });
            }
            (phase, _) => self.phase = phase,
        }
        fx
    }

    /// The step after the run log (and the search for a duplicate): the
    /// clone, or straight to the agent when there is no repository.
    fn prepare(&mut self) -> Effect {
        match self.brief.workflow {
            Workflow::Clone => {
                let name = self.branch();
                let branch = match self.followup_pr() {
                    Some(_) => Branch::Continue(name),
                    None => Branch::Start(name),
                };
                self.go(Phase::Preparing(Prep::Clone), Step::PrepareClone(branch))
            }
            Workflow::AgentAlone => {
                let then = match self.class {
                    Some(FailureClass::Data) => AfterAgent::Diagnose,
                    _ => AfterAgent::Verdict,
                };
                self.go(Phase::Preparing(Prep::Agent(then)), Step::StartAgent)
            }
        }
    }

    fn go(&mut self, phase: Phase, step: Step) -> Effect {
        self.phase = phase;
        Effect::Do(step)
    }

    /// What the scheduler's answer to a re-run request means for the session.
    fn retry_answered(&mut self, answer: RetryAnswer, now: Instant) -> Vec<Effect> {
        let schedule = self.brief.schedule.clone();
        let mut fx = vec![];
        let follow = |run_id: String| {
            (
                Phase::Retrying(Rerun::Following {
                    run_id: run_id.clone(),
                    since: now,
                    unreadable: 0,
                }),
                Step::PollRerun(run_id),
            )
        };
        match answer {
            RetryAnswer::Started {
                by,
                run_id: Some(run_id),
                attempt,
                budget,
            } => {
                fx.extend(self.bot_milestone(format!(
                    "🔁 Asked {by} to re-run the failed part, with no agent and no pull request (re-run {attempt} of {budget}): run {run_id}. Its result comes here."
                )));
                let (phase, step) = follow(run_id);
                fx.push(self.go(phase, step));
            }
            RetryAnswer::Started {
                by,
                run_id: None,
                attempt,
                budget,
            } => {
                fx.extend(self.bot_milestone(format!(
                    "🔁 Ran {by} (re-run {attempt} of {budget}); this thread hears when {schedule} passes again."
                )));
                fx.extend(self.finish(Ending::rerun_asked(&by), None));
            }
            RetryAnswer::AlreadyAsked {
                run_id: Some(run_id),
                ..
            } => {
                fx.extend(self.note(format!(
                    "a re-run was asked for already: following run {run_id}"
                )));
                let (phase, step) = follow(run_id);
                fx.push(self.go(phase, step));
            }
            RetryAnswer::AlreadyAsked { run_id: None, .. } => {
                fx.extend(self.finish(Ending::rerun_asked("the retry command"), None));
            }
            RetryAnswer::Spent { root, used } => {
                fx.extend(self.finish(Ending::retries_spent(&root, used), None));
            }
            RetryAnswer::Off => {
                fx.extend(self.finish(
                    Ending::rerun_by_hand(&format!("re-runs are off for {schedule}")),
                    None,
                ));
            }
            RetryAnswer::NoWay => {
                let why = "selfheal cannot re-run this scheduler's runs (no retry API and no SELFHEAL_RETRY_COMMAND)";
                fx.extend(self.finish(Ending::rerun_by_hand(why), None));
            }
            RetryAnswer::Refused(why) => {
                let why = format!("asking for a re-run failed: {why}");
                fx.extend(self.finish(Ending::rerun_by_hand(&why), None));
            }
        }
        fx
    }

    /// True while the agent of a data failure runs: it diagnoses only.
    fn diagnosing(&self) -> bool {
        matches!(
            &self.phase,
            Phase::Running {
                then: AfterAgent::Diagnose,
                ..
            } | Phase::Preparing(Prep::Agent(AfterAgent::Diagnose))
        )
    }

    fn followup_pr(&self) -> Option<&str> {
        match &self.brief.purpose {
            Purpose::FollowUp { pr } => pr.as_deref(),
            Purpose::Heal => None,
        }
    }

    fn branch(&self) -> String {
        branch_name(&self.brief.schedule, &self.brief.run_id)
    }

    fn agent_said(&mut self, event: AgentEvent) -> Vec<Effect> {
        let mut fx = vec![];
        match event {
            AgentEvent::Progress(text) => {
                self.push_line(&text);
                fx.push(Effect::Record {
                    kind: EventKind::Progress,
                    text,
                });
            }
            AgentEvent::Milestone(text) => {
                self.push_line(&text);
                fx.push(Effect::Post(Message::Milestone(text.clone())));
                fx.push(Effect::Record {
                    kind: EventKind::Milestone,
                    text,
                });
            }
            AgentEvent::Pr(url) if self.diagnosing() => {
                // A data failure is diagnosed only: no pull request is shown as its outcome.
                fx.push(Effect::Record {
                    kind: EventKind::Note,
                    text: format!("ignored a pull request reported for a data failure: {url}"),
                });
            }
            AgentEvent::Pr(url) => {
                if self.pr_url.as_deref() != Some(url.as_str()) {
                    let first = self.pr_url.is_none();
                    self.pr_url = Some(url.clone());
                    self.dirty = true;
                    fx.push(Effect::SavePr(url.clone()));
                    if first {
                        fx.push(Effect::Post(Message::PrFound(url.clone())));
                    }
                    fx.push(Effect::Record {
                        kind: EventKind::Pr,
                        text: url,
                    });
                }
            }
            AgentEvent::Tool {
                name,
                input,
                output,
            } => {
                // The call itself was already shown as progress when it
                // started; this line says what came of it.
                let first = output.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                self.push_line(&format!("↳ {name}: {}", truncate(first.trim(), 160)));
                fx.push(Effect::Record {
                    kind: EventKind::Tool,
                    text: format!("{name} {input} -> {output}"),
                });
            }
            AgentEvent::Result { outcome, summary } => {
                fx.push(Effect::Record {
                    kind: EventKind::Result,
                    text: format!("{outcome:?}: {summary}"),
                });
                if let Phase::Running { agent, .. } = &mut self.phase {
                    agent.verdict = Some((outcome, summary));
                }
            }
        }
        fx
    }

    fn agent_exited(&mut self, code: Option<i32>) -> Vec<Effect> {
        let Phase::Running { agent, then } = &self.phase else {
            return vec![];
        };
        let ending = self.ending_on_exit(agent, then, code);
        let verification = match then.clone() {
            AfterAgent::Finish(verification) => verification,
            AfterAgent::Verdict => return self.finish(ending, None),
            AfterAgent::Diagnose => return self.finish(ending.diagnosis_only(), None),
        };
        let mut fx = vec![Effect::Record {
            kind: EventKind::AgentEnd,
            text: ending.to_string(),
        }];
        if self.pr_url.is_some() {
            // The agent opened a pull request itself; selfheal does not open another.
            fx.extend(self.finish(ending, None));
        } else {
            let next = Phase::Finishing {
                agent: ending,
                verification,
                step: Finish::Changes,
            };
            fx.push(self.go(next, Step::ListChanges));
        }
        fx
    }

    /// The agent's ending once it has exited.
    fn ending_on_exit(&self, agent: &Agent, then: &AfterAgent, code: Option<i32>) -> Ending {
        let crashed = code != Some(0);
        // With a clone, the bot itself verifies the change and opens the PR;
        // a diagnosis proposes nothing, so no pull request is missing.
        let bot_proposes = matches!(then, AfterAgent::Finish(_) | AfterAgent::Diagnose);
        match (&agent.verdict, &self.pr_url) {
            (Some((Outcome::Fixed, summary)), Some(_)) => Ending::fixed(summary.as_str()),
            (Some((Outcome::Fixed, summary)), None) if bot_proposes => {
                Ending::fixed(summary.as_str())
            }
            (Some((Outcome::Fixed, summary)), None) => Ending::fix_without_pr(summary),
            (Some((outcome, summary)), _) => Ending::verdict(*outcome, summary.as_str()),
            (None, Some(_)) if !crashed => Ending::fixed(""),
            (None, None) if !crashed => Ending::without_report(),
            (None, _) => {
                let tail: Vec<String> = agent.stderr_tail.iter().cloned().collect();
                Ending::crashed(code, &tail)
            }
        }
    }

    fn tick(&mut self, now: Instant) -> Vec<Effect> {
        let due = self
            .last_edit
            .is_none_or(|at| now.saturating_duration_since(at) >= self.edit_interval);
        if self.dirty && due {
            self.dirty = false;
            self.last_edit = Some(now);
            return vec![Effect::EditProgress];
        }
        vec![]
    }

    /// Something the bot did: a progress line, kept in the session log.
    fn note(&mut self, text: String) -> Vec<Effect> {
        self.push_line(&text);
        vec![Effect::Record {
            kind: EventKind::Note,
            text,
        }]
    }

    /// Something the bot did that deserves its own message in the thread too.
    fn bot_milestone(&mut self, text: String) -> Vec<Effect> {
        let mut fx = vec![Effect::Post(Message::Bot(text.clone()))];
        fx.extend(self.note(text));
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

    fn kill_and_finish(&mut self, ending: Ending) -> Vec<Effect> {
        let mut fx = vec![Effect::Kill];
        fx.extend(self.finish(ending, None));
        fx
    }

    /// Ends a session whose progress message is posted: the message shows
    /// the end too, before the ending is stored and said.
    fn finish(&mut self, ending: Ending, pr_url: Option<String>) -> Vec<Effect> {
        let mut fx = self.end(ending, pr_url);
        fx.insert(fx.len() - 2, Effect::EditProgress);
        fx
    }

    /// Ends the session: the ending is recorded, stored and said (the last
    /// two effects, [`Effect::Finish`] and the final [`Message`]).
    fn end(&mut self, ending: Ending, pr_url: Option<String>) -> Vec<Effect> {
        let mut fx = vec![];
        if let Some(url) = pr_url {
            if self.pr_url.as_deref() != Some(url.as_str()) {
                self.pr_url = Some(url.clone());
                fx.push(Effect::SavePr(url));
            }
        }
        fx.push(Effect::Record {
            kind: EventKind::End,
            text: ending.to_string(),
        });
        self.phase = Phase::Over(ending.clone());
        fx.push(Effect::Finish {
            ending: ending.clone(),
            pr_url: self.pr_url.clone(),
        });
        fx.push(Effect::Post(Message::Final {
            ending,
            pr_url: self.pr_url.clone(),
        }));
        fx
    }
}

/// `selfheal/<schedule>/run-<id>`, with characters git refuses replaced.
pub fn branch_name(schedule: &str, run_id: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>()
            .trim_matches('-')
            .to_string()
    };
    format!("selfheal/{}/run-{}", clean(schedule), clean(run_id))
}

fn pr_title(schedule: &str, run_id: &str, first_failing: Option<&str>) -> String {
    match first_failing {
        Some(node) => format!("selfheal: fix {node} in {schedule} (run {run_id})"),
        None => format!("selfheal: fix {schedule} (run {run_id})"),
    }
}

#[cfg(test)]
mod tests;
