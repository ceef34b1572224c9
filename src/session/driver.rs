//! Runs one healing session: it carries out what the session machine asks
//! for (reading the run log, preparing a fresh copy of the repository and
//! dbt, running the agent, then — as the bot, never the agent — verifying
//! the change with dbt and opening the pull request) and feeds each result
//! back to the machine, which decides what comes next.
//!
//! It decides nothing about the session's course and renders nothing: the
//! machine decides, the sink renders. It owns the IO: the store, the clone,
//! dbt, the forge, the agent process, the caps and people's controls.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::closing::Closer;
use super::controls::{Caps, Control, Controls, Slot};
use super::machine::{
    Branch, Brief, Change, DbtReady, Depth, Earlier, Effect, Input, LogRead, Machine, Message,
    PrDraft, Purpose, RerunState, RetryAnswer, Step, Verification, Verified, Workflow,
};
use super::prompt;
use super::sink::Sink;
use crate::agent::command::{self, Output, Running};
use crate::agent::protocol::parse_line;
use crate::agent::{self, llm, AgentDef, Job};
use crate::classify::classify;
use crate::config::HealSettings;
use crate::dbt::isolate::{self, Isolation, Plan};
use crate::dbt::{deps, error_lines, Dbt};
use crate::domain::{
    Ending, EventKind, FailureClass, FollowUp, Mission, Place, PriorAttempt, SessionId,
};
use crate::forge::{Forge, Opened, PrRequest};
use crate::redact::Redactor;
use crate::runlog::{self, RunLog, RunState};
use crate::slack::render;
use crate::store::{RetryClaim, SessionRow, Store};
use crate::workspace::{BuildOutputs, Workspace};

/// What every session needs; cloned per session.
#[derive(Clone)]
pub struct Deps {
    pub store: Store,
    /// Where the session's messages go (a Slack thread, or the terminal).
    pub sink: Sink,
    pub redactor: Redactor,
    pub edit_interval: Duration,
    pub prior_attempts: usize,
    /// Where per-session folders (prompt file, scratch workdir, clones) are made.
    pub work_root: PathBuf,
    pub healing: Arc<Healing>,
    /// How people reach running sessions (Stop, replies in the thread).
    pub controls: Controls,
    /// Limits on concurrent sessions, global and per schedule.
    pub caps: Caps,
    /// Where session ends and agent and verification times are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The parts of real healing: run logs, the repository, dbt and the forge.
pub struct Healing {
    pub settings: HealSettings,
    pub dbt: Dbt,
    /// The only holder of the forge token.
    pub forge: Forge,
}

/// The session to run; its row is already claimed in the store.
#[derive(Debug, Clone)]
pub struct Start {
    pub session_id: SessionId,
    pub schedule: String,
    pub run_id: String,
    /// Where the session's story is told.
    pub place: Place,
    pub agent: AgentDef,
    /// The schedule's `git_branch`; None: the repository's default branch.
    pub base_branch: Option<String>,
    /// The failure notification's text: the run log of last resort.
    pub notification: String,
    /// Set when a person asked for more after an earlier session ended.
    pub followup: Option<FollowUp>,
}

/// Who re-runs a transient failure.
enum Rerunner<'a> {
    /// The scheduler, through its API.
    Scheduler(&'a runlog::Source),
    /// `SELFHEAL_RETRY_COMMAND`.
    Command(&'a str),
}

/// How long the retry command may take to start a re-run.
const RETRY_COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// Grace between SIGTERM and SIGKILL when an agent is stopped.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Runs the session to its end. Never panics on agent, dbt, git or Slack
/// failures: every way out is recorded as the session's outcome.
pub async fn drive(deps: Deps, start: Start, shutdown: CancellationToken) {
    let id = start.session_id;
    let dir = deps.work_root.join(format!("session-{id}"));
    let controls = deps.controls.register(id);
    let result = Session::new(&deps, &start, &dir, controls)
        .run(&shutdown)
        .await;
    deps.controls.unregister(id);
    if let Err(e) = result {
        error!(session = id.0, error = ?e, "healing session failed");
        let ending = Ending::internal_error();
        deps.metrics.sessions_ended.inc(ending.status().as_str());
        if let Ok(true) = deps
            .store
            .finish(id.0, ending.status(), Some(ending.summary()), None)
        {
            let said = Message::Final {
                ending,
                pr_url: None,
            };
            let _ = deps.sink.post(&start.place, &start.run_id, &said).await;
        }
    }
    // The session's folder (and the clone inside it) goes, whatever happened.
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(session = id.0, error = %e, "could not remove the session folder");
        }
    }
}

/// One session's machine and the IO it asks for.
struct Session<'a> {
    deps: &'a Deps,
    start: &'a Start,
    /// The session's own folder (prompt file, scratch workdir, clone).
    dir: &'a Path,
    machine: Machine,
    controls: mpsc::UnboundedReceiver<Control>,
    tick: Interval,
    /// The permits under the caps, once the session has them.
    slot: Option<Slot>,
    progress_ts: Option<String>,
    /// The run-log source, built once (its HTTP client serves every poll
    /// of a re-run), or why it could not be.
    run_logs: Option<Result<runlog::Source, String>>,
    log: Option<RunLog>,
    signature: Option<String>,
    /// What kind of failure the run log shows.
    class: Option<FailureClass>,
    workspace: Option<Workspace>,
    /// Where this session's dbt commands run (never production).
    isolation: Option<Isolation>,
    /// The verification command planned when dbt was prepared.
    verify_args: Vec<String>,
    agent: Option<RunningAgent>,
}

/// The agent and its wall clock.
struct RunningAgent {
    running: Running,
    deadline: Instant,
    limit: Duration,
    /// For the agent duration metric, observed when it exits.
    started: Instant,
}

impl<'a> Session<'a> {
    fn new(
        deps: &'a Deps,
        start: &'a Start,
        dir: &'a Path,
        controls: mpsc::UnboundedReceiver<Control>,
    ) -> Self {
        let brief = Brief {
            run_id: start.run_id.clone(),
            schedule: start.schedule.clone(),
            agent: start.agent.name.clone(),
            workflow: match deps.healing.settings.repo {
                Some(_) => Workflow::Clone,
                None => Workflow::AgentAlone,
            },
            purpose: match &start.followup {
                Some(f) => Purpose::FollowUp {
                    pr: f.pr_url.clone(),
                },
                None => Purpose::Heal,
            },
        };
        let mut tick = tokio::time::interval(tick_period(deps.edit_interval));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Session {
            deps,
            start,
            dir,
            machine: Machine::new(brief, Instant::now().into_std(), deps.edit_interval),
            controls,
            tick,
            slot: None,
            progress_ts: None,
            run_logs: deps.healing.settings.run_log_source.as_ref().map(|s| {
                runlog::Source::from_settings(s)
                    .map_err(|e| deps.redactor.redact(&format!("{e:#}")))
            }),
            log: None,
            signature: None,
            class: None,
            workspace: None,
            isolation: None,
            verify_args: vec![],
            agent: None,
        }
    }

    /// Performs the machine's effects and answers its steps until it is over.
    /// A step races selfheal's shutdown; without one, the agent runs.
    async fn run(mut self, shutdown: &CancellationToken) -> Result<()> {
        let mut effects = self.machine.start();
        loop {
            let step = self.apply(effects).await?;
            if self.machine.is_over() {
                break;
            }
            let inputs = match step {
                Some(step) => vec![tokio::select! {
                    input = self.perform(step) => input?,
                    _ = shutdown.cancelled() => Input::Shutdown,
                }],
                None => self.agent_inputs(shutdown).await?,
            };
            effects = vec![];
            for input in inputs {
                effects.extend(self.machine.handle(input, Instant::now().into_std()));
            }
        }
        // Dropping the session kills whatever is left of the agent's process
        // group and gives its slot back.
        Ok(())
    }

    /// Performs effects in order; returns the step the machine asked for, if any.
    async fn apply(&mut self, effects: Vec<Effect>) -> Result<Option<Step>> {
        let (deps, start) = (self.deps, self.start);
        let id = start.session_id;
        let mut step = None;
        for effect in effects {
            match effect {
                Effect::Record { kind, text } => {
                    deps.sink.record(kind, &text);
                    self.record(kind, &text)?;
                }
                Effect::Post(message) => self.post(&message).await,
                Effect::OpenProgress => self.open_progress().await?,
                Effect::ShowRunLog => {
                    if let Some(log) = &self.log {
                        if let Err(e) = deps.sink.run_log(&start.place, log).await {
                            warn!(session = id.0, error = %e, "could not post the run log summary");
                        }
                    }
                }
                Effect::EditProgress => {
                    if let Some(ts) = &self.progress_ts {
                        let view = self.machine.view(Instant::now().into_std());
                        if let Err(e) = deps.sink.edit_progress(&start.place, ts, &view, id).await {
                            warn!(session = id.0, error = %e, "could not edit the progress message");
                        }
                    }
                }
                Effect::SavePr(url) => {
                    deps.store.set_pr_url(id.0, &url)?;
                    // Watched until merged or closed, when the forge can say (not a compare link).
                    if deps.healing.forge.owns_pr(&url) {
                        deps.store.watch_pr(id.0, &url)?;
                    }
                }
                Effect::Kill => {
                    if let Some(agent) = &self.agent {
                        agent.running.terminate(KILL_GRACE);
                    }
                }
                Effect::Do(next) => step = Some(next),
                Effect::Finish { ending, pr_url } => {
                    deps.store.finish(
                        id.0,
                        ending.status(),
                        Some(ending.summary()),
                        pr_url.as_deref(),
                    )?;
                    deps.metrics.sessions_ended.inc(ending.status().as_str());
                    info!(
                        session = id.0,
                        status = ending.status().as_str(),
                        "healing session ended"
                    );
                }
            }
        }
        Ok(step)
    }

    /// Carries out one step and says what came of it.
    async fn perform(&mut self, step: Step) -> Result<Input> {
        let deps = self.deps;
        let redact = move |e: anyhow::Error| deps.redactor.redact(&format!("{e:#}"));
        Ok(match step {
            Step::TakeSlot => match self.deps.caps.try_acquire(&self.start.schedule) {
                Some(slot) => {
                    self.slot = Some(slot);
                    Input::SlotTaken
                }
                None => Input::SlotBusy {
                    at_once: self.deps.caps.global_limit,
                    per_schedule: self.deps.caps.per_schedule,
                },
            },
            Step::WaitForSlot => self.wait_for_slot().await,
            Step::ReadRunLog => Input::RunLogRead(self.read_run_log().await?),
            Step::FindOpenPr => Input::OpenPr(self.open_pr_for_same_error().await?),
            Step::PrepareClone(branch) => {
                let cloned = self.prepare_clone(branch).await;
                Input::Cloned(cloned.map_err(redact))
            }
            Step::PrepareDbt => {
                let prepared = self.prepare_dbt().await;
                Input::DbtPrepared(prepared.map_err(redact))
            }
            Step::StartAgent => self.start_agent().await?,
            Step::ListChanges => Input::Changes(self.workspace()?.changed_files().await?),
            Step::Verify => Input::Verified(self.verify().await?),
            Step::Commit(message) => {
                let ws = self.workspace()?;
                // The diff is read before the commit, which empties the index.
                let change = Change {
                    diff_stat: self.deps.redactor.redact(&ws.diff_stat().await?),
                    diff: self.deps.redactor.redact(&ws.diff().await?),
                    files: ws.changed_files().await?,
                };
                ws.commit(&message).await?;
                Input::Committed(change)
            }
            Step::Push(branch) => {
                self.workspace()?.push(&branch).await?;
                Input::Pushed
            }
            Step::OpenPr(draft) => Input::PrOpened(self.open_pr(*draft).await?),
            Step::Retry => Input::Retry(self.retry().await?),
            Step::PollRerun(run_id) => {
                let poll = self.deps.healing.settings.retries.poll;
                // Following a re-run is the one long step: a person may stop it.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => break Input::Rerun(self.rerun_state(&run_id).await),
                        control = self.controls.recv() => match control {
                            Some(Control::Stop { user }) => break Input::Stop { by: user },
                            // No agent listens while a re-run is followed.
                            Some(Control::Reply { .. }) => continue,
                            None => break Input::Rerun(self.rerun_state(&run_id).await),
                        },
                    }
                }
            }
            Step::ClosePassed(run_id) => {
                self.close_passed(&run_id).await?;
                Input::LoopClosed
            }
        })
    }

    /// What the running agent, people and the clock say next.
    async fn agent_inputs(&mut self, shutdown: &CancellationToken) -> Result<Vec<Input>> {
        let Session {
            agent,
            controls,
            tick,
            deps,
            ..
        } = self;
        let agent = agent
            .as_mut()
            .context("the session waits for an agent that was not started")?;
        let redactor = &deps.redactor;
        Ok(tokio::select! {
            out = agent.running.output.recv() => match out {
                Some(Output::Stdout(line)) => parse_line(&redactor.redact(&line))
                    .into_iter()
                    .map(Input::Agent)
                    .collect(),
                Some(Output::Event(event)) => vec![Input::Agent(event.map_text(|t| redactor.redact(t)))],
                Some(Output::Stderr(line)) => vec![Input::Stderr(redactor.redact(&line))],
                Some(Output::Exited { code }) => {
                    deps.metrics.agent_seconds.observe(agent.started.elapsed());
                    vec![Input::Exited { code }]
                }
                // The supervisor always reports the exit before closing; a
                // closed channel without it means the agent vanished.
                None => {
                    deps.metrics.agent_seconds.observe(agent.started.elapsed());
                    vec![Input::Exited { code: None }]
                }
            },
            Some(control) = controls.recv() => match control {
                Control::Stop { user } => vec![Input::Stop { by: user }],
                Control::Reply { user, text } => {
                    // Thread text is data from a person, passed on as such.
                    let line = serde_json::json!({"type": "reply", "user": user, "text": text}).to_string();
                    agent.running.send_line(line).await;
                    vec![Input::Guidance { by: user, text }]
                }
            },
            _ = tick.tick() => vec![Input::Tick],
            _ = tokio::time::sleep_until(agent.deadline) => vec![Input::TimedOut { limit: agent.limit }],
            _ = shutdown.cancelled() => vec![Input::Shutdown],
        })
    }

    fn record(&self, kind: EventKind, text: &str) -> Result<()> {
        self.deps
            .store
            .add_event(self.start.session_id.0, kind.as_str(), text)
    }

    async fn post(&self, message: &Message) {
        let start = self.start;
        if let Err(e) = self
            .deps
            .sink
            .post(&start.place, &start.run_id, message)
            .await
        {
            warn!(session = start.session_id.0, error = %e, "could not post to the healing thread");
        }
    }

    /// The progress message comes first so that everything after it can edit it.
    async fn open_progress(&mut self) -> Result<()> {
        let (deps, id) = (self.deps, self.start.session_id);
        let view = self.machine.view(Instant::now().into_std());
        let ts = deps
            .sink
            .open_progress(&self.start.place, &view, id)
            .await
            .context("posting the progress message")?;
        deps.store.set_progress_ts(id.0, &ts)?;
        deps.store.mark_running(id.0)?;
        std::fs::create_dir_all(self.dir).context("creating the session folder")?;
        self.progress_ts = Some(ts);
        Ok(())
    }

    /// Waits for a slot under the caps; a person may stop the session meanwhile.
    async fn wait_for_slot(&mut self) -> Input {
        loop {
            tokio::select! {
                slot = self.deps.caps.acquire(&self.start.schedule) => {
                    self.slot = Some(slot);
                    return Input::SlotTaken;
                }
                Some(control) = self.controls.recv() => {
                    if let Control::Stop { user } = control {
                        return Input::Stop { by: user };
                    }
                }
            }
        }
    }

    /// Reads the run log from the configured source; when there is none or it
    /// fails, the notification itself is the last resort. Stores the log and
    /// the error signature it shows.
    async fn read_run_log(&mut self) -> Result<LogRead> {
        let run_id = &self.start.run_id;
        let redact = |e: anyhow::Error| self.deps.redactor.redact(&format!("{e:#}"));
        let fetched = match self.source() {
            Some(Ok(source)) => source.fetch(run_id).await.map_err(|e| Some(redact(e))),
            Some(Err(why)) => Err(Some(why)),
            None => Err(None),
        };
        let (log, unreadable) = match fetched {
            Ok(log) => (log, None),
            Err(why) => (
                runlog::from_notification(run_id, &self.start.notification),
                why,
            ),
        };
        let log = redact_log(&self.deps.redactor, log);
        self.record(EventKind::RunLog, &log.raw)?;
        if let Some(first) = log.failures.first() {
            let signature = runlog::signature(first);
            let error = first.message.lines().take(3).collect::<Vec<_>>().join(" ");
            self.deps
                .store
                .set_error(self.start.session_id.0, &error, &signature)?;
            self.signature = Some(signature);
        }
        let earlier = match &self.signature {
            Some(sig) => self
                .deps
                .store
                .earlier_with_signature(sig, &self.start.schedule, &self.start.run_id)?
                .map(|s| Earlier {
                    run_id: s.run_id,
                    channel: s.channel,
                    thread_ts: s.thread_ts,
                    pr_url: s.pr_url,
                }),
            None => None,
        };
        let sorted = classify(&log);
        self.class = Some(sorted.class);
        let read = LogRead {
            origin: log.origin.clone(),
            failing: log.failures.iter().map(|f| f.name.clone()).collect(),
            unreadable,
            class: sorted.class,
            why: sorted.why,
            earlier,
        };
        self.log = Some(log);
        Ok(read)
    }

    /// The configured run-log source, when there is one, or why it could
    /// not be built (redacted).
    fn source(&self) -> Option<Result<&runlog::Source, String>> {
        self.run_logs
            .as_ref()
            .map(|r| r.as_ref().map_err(Clone::clone))
    }

    /// Asks the scheduler (or the retry command) to re-run the failed run,
    /// within the schedule's budget; the claim in the store makes it once.
    async fn retry(&mut self) -> Result<RetryAnswer> {
        let (deps, start) = (self.deps, self.start);
        let retries = &deps.healing.settings.retries;
        let budget = retries.budget.for_schedule(&start.schedule);
        if budget == 0 {
            return Ok(RetryAnswer::Off);
        }
        // Who re-runs it: the scheduler's API, else the retry command.
        let rerunner = match (self.source(), &retries.command) {
            (Some(Err(why)), _) => return Ok(RetryAnswer::Refused(why)),
            (Some(Ok(source)), _) if source.can_retry() => Rerunner::Scheduler(source),
            (_, Some(command)) => Rerunner::Command(command),
            (_, None) => return Ok(RetryAnswer::NoWay),
        };
        let by_command = matches!(rerunner, Rerunner::Command(_));
        let claim = deps.store.claim_retry(
            &start.schedule,
            &start.run_id,
            start.session_id.0,
            budget,
            by_command,
        )?;
        let (id, attempt) = match claim {
            RetryClaim::Granted { id, attempt, .. } => (id, attempt),
            RetryClaim::Spent { root, used } => return Ok(RetryAnswer::Spent { root, used }),
            RetryClaim::AlreadyAsked {
                attempt, run_id, ..
            } => return Ok(RetryAnswer::AlreadyAsked { attempt, run_id }),
        };
        let asked = match &rerunner {
            Rerunner::Scheduler(source) => source
                .retry(&start.run_id)
                .await
                .map(|run| (source.scheduler().to_string(), Some(run))),
            Rerunner::Command(command) => {
                run_retry_command(command, &start.schedule, &start.run_id)
                    .await
                    .map(|()| ("the retry command".to_string(), None))
            }
        };
        match asked {
            Ok((by, run_id)) => {
                if let Some(run) = &run_id {
                    deps.store.set_retry_run(id, run)?;
                }
                Ok(RetryAnswer::Started {
                    by,
                    run_id,
                    attempt,
                    budget,
                })
            }
            Err(e) => {
                deps.store.release_retry(id)?;
                Ok(RetryAnswer::Refused(
                    deps.redactor.redact(&format!("{e:#}")),
                ))
            }
        }
    }

    /// The re-run's state, as its scheduler reports it.
    async fn rerun_state(&self, run_id: &str) -> Result<RerunState, String> {
        let redact = |e: anyhow::Error| self.deps.redactor.redact(&format!("{e:#}"));
        let source = self
            .source()
            .ok_or_else(|| "no run-log source is configured".to_string())??;
        Ok(match source.run_state(run_id).await.map_err(redact)? {
            RunState::InProgress => RerunState::Running,
            RunState::Passed => RerunState::Passed,
            RunState::Failed(word) => RerunState::Failed(word),
        })
    }

    /// The schedule passed again in `run_id`: every thread of its open
    /// failures hears it (in the terminal, this session's does).
    async fn close_passed(&self, run_id: &str) -> Result<()> {
        let (deps, start) = (self.deps, self.start);
        match &deps.sink {
            Sink::Slack(web) => {
                let closer = Closer {
                    store: &deps.store,
                    web,
                    forge: &deps.healing.forge,
                    redactor: &deps.redactor,
                };
                closer.schedule_passed(&start.schedule, run_id).await?;
            }
            Sink::Terminal(_) => {
                deps.store.resolve_failures(&start.schedule, run_id)?;
                let line = render::passed_again(&start.schedule, run_id);
                self.post(&Message::Bot(line)).await;
            }
        }
        Ok(())
    }

    /// The open pull request an earlier session opened for the same error.
    async fn open_pr_for_same_error(&self) -> Result<Option<String>> {
        let Some(sig) = &self.signature else {
            return Ok(None);
        };
        let marker = render::signature_marker(sig);
        let forge_prs = match self.deps.healing.forge.open_selfheal_prs().await {
            Ok(prs) => Some(prs),
            Err(e) => {
                warn!(error = %e, "could not list open pull requests; relying on history");
                None
            }
        };
        if let Some(prs) = &forge_prs {
            if let Some(pr) = prs.iter().find(|p| p.body.contains(&marker)) {
                return Ok(Some(pr.url.clone()));
            }
        }
        let Some(earlier) = self
            .deps
            .store
            .pr_for_signature(sig, self.start.session_id.0)?
        else {
            return Ok(None);
        };
        let url = earlier.pr_url.unwrap_or_default();
        Ok(match (self.deps.healing.forge.has_api(), forge_prs) {
            // With an API, only a PR that is still open counts.
            (true, Some(prs)) => prs.iter().any(|p| p.url == url).then_some(url),
            // Without one (or when it failed), selfheal cannot tell whether the
            // PR was closed; linking it is better than a duplicate.
            _ => Some(url),
        })
    }

    /// Clones the repository onto the session's branch; says where it stands.
    async fn prepare_clone(&mut self, branch: Branch) -> Result<String> {
        let settings = &self.deps.healing.settings;
        let repo = settings
            .repo
            .as_deref()
            .context("no repository configured")?;
        let mut ws = Workspace::create(repo, self.start.base_branch.as_deref(), self.dir).await?;
        match branch {
            Branch::Continue(name) => ws.continue_branch(&name).await?,
            Branch::Start(name) => ws.start_branch(&name).await?,
        }
        let note = format!(
            "working on a fresh clone of {} at {}",
            ws.base_branch,
            &ws.base_sha[..ws.base_sha.len().min(10)]
        );
        self.workspace = Some(ws);
        Ok(note)
    }

    /// Prepares the clone the way dbt CI prepares one: the isolated place
    /// to build in (never production), the packages, the failing nodes'
    /// parents. Plans the verification and says where the session builds.
    async fn prepare_dbt(&mut self) -> Result<DbtReady> {
        let t0 = std::time::Instant::now();
        let settings = &self.deps.healing.settings;
        let project = self.project_dir().context("no project directory")?;
        let source_project = settings
            .repo
            .as_deref()
            .filter(|r| !crate::workspace::is_url(r))
            .map(|r| Path::new(r).join(&settings.project_subdir));
        let mut state_candidates: Vec<PathBuf> = settings.dbt.state_dir.iter().cloned().collect();
        if let (Some(runlog::SourceSettings::Dir(root)), Some(log)) =
            (&settings.run_log_source, &self.log)
        {
            state_candidates.insert(0, root.join(&log.run_id));
        }
        let iso = isolate::prepare(&isolate::Inputs {
            base: &self.deps.healing.dbt,
            project_dir: &project,
            source_project_dir: source_project.as_deref(),
            session_dir: self.dir,
            ci_target: settings.dbt.ci_target.as_deref(),
            prod_target: settings.dbt.prod_target.as_deref(),
            state_candidates,
            session_name: &format!("selfheal_{}_{}", self.start.session_id, std::process::id()),
        })?;
        let place = iso.describe();
        let outputs = BuildOutputs::for_project(
            &settings.project_subdir,
            &iso.project.target_path,
            &iso.project.log_path,
            &iso.project.packages_path,
        );
        let mut parents_ready = match &iso.plan {
            Plan::CiTarget { defer, .. } => *defer,
            Plan::DuckDbCopy { .. } => iso.copied,
            Plan::CompileOnly { .. } => false,
        };
        let depth = match iso.plan {
            Plan::CompileOnly { .. } => Depth::CompilesOnly {
                hint: isolate::FULL_VERIFICATION_HINT.into(),
            },
            _ => Depth::Builds,
        };
        let packages_path = iso.project.packages_path.clone();
        self.isolation = Some(iso);

        let installed = deps::install(
            &self.dbt(),
            &project,
            &packages_path,
            &std::env::temp_dir().join("selfheal-cache"),
        )
        .await?;
        let mut notes = vec![format!("dbt {place}")];
        match installed {
            deps::Installed::NoPackages => {}
            deps::Installed::FromCache => notes.push("packages copied from the cache".into()),
            deps::Installed::Fresh => notes.push("packages installed with `dbt deps`".into()),
        }
        if !parents_ready && depth == Depth::Builds {
            let (built, note) = self.build_parents(&project).await;
            parents_ready = built;
            notes.push(note);
        }
        if let Some(ws) = self.workspace.as_mut() {
            ws.set_build_outputs(outputs).await?;
        }
        notes.push(format!("ready in {:.1}s", t0.elapsed().as_secs_f64()));

        let iso = self.isolation.as_ref().context("dbt was not prepared")?;
        self.verify_args = isolate::verification_args(
            &iso.plan,
            &failing_nodes(self.log.as_ref(), false),
            parents_ready,
            iso.state.as_deref(),
        );
        Ok(DbtReady {
            note: notes.join("; "),
            verification: Verification {
                command: format!("dbt {}", shown_args(&self.verify_args)),
                place,
                depth,
            },
        })
    }

    /// Builds the failing nodes' parents (not the nodes) into the isolated
    /// place, so the agent and the doctor can query them and verification
    /// only builds the change and its children. A project that does not parse
    /// yet (a broken ref) cannot build them now: verification builds them.
    async fn build_parents(&self, project: &Path) -> (bool, String) {
        let nodes = failing_nodes(self.log.as_ref(), true);
        if nodes.is_empty() {
            return (false, "no failing node to build parents for".into());
        }
        let mut args = vec!["build".to_string(), "--select".into()];
        args.extend(nodes.iter().map(|n| format!("+{n}")));
        args.push("--exclude".into());
        args.extend(nodes.iter().cloned());
        for t in ["model", "seed", "snapshot"] {
            args.extend(["--resource-type".to_string(), t.to_string()]);
        }
        let run = self.dbt().run(project, &args).await;
        match run {
            Ok(r) if r.success => (true, "the failing nodes' parents are built".into()),
            Ok(r) => {
                let output = self.deps.redactor.redact(&r.output);
                let _ = self.record(EventKind::Prepare, &output);
                (
                    false,
                    "the parents could not be built yet; verification builds them".into(),
                )
            }
            Err(e) => (
                false,
                format!("the parents could not be built yet ({e:#}); verification builds them"),
            ),
        }
    }

    /// dbt for this session: its processes carry the session's tag, so a
    /// start after a crash finds and stops the ones still running.
    fn dbt(&self) -> crate::dbt::Dbt {
        let mut dbt = match &self.isolation {
            Some(iso) => iso.dbt.clone(),
            None => self.deps.healing.dbt.clone(),
        };
        dbt.env.push((
            command::SESSION_TAG_ENV.into(),
            self.deps.store.session_tag(self.start.session_id.0),
        ));
        dbt
    }

    fn project_dir(&self) -> Option<PathBuf> {
        self.workspace
            .as_ref()
            .map(|ws| ws.dir.join(&self.deps.healing.settings.project_subdir))
    }

    fn workspace(&self) -> Result<&Workspace> {
        self.workspace.as_ref().context("no workspace")
    }

    /// Builds the prompt and starts the agent (see [`agent::start`]).
    async fn start_agent(&mut self) -> Result<Input> {
        let (deps, start) = (self.deps, self.start);
        let id = start.session_id;
        let prior: Vec<PriorAttempt> = deps
            .store
            .prior_sessions(&start.schedule, id.0, deps.prior_attempts)?
            .iter()
            .map(prior_attempt)
            .collect();
        let mut prompt = prompt::opening(&start.run_id, &start.schedule, &prior);
        if let Some(f) = &start.followup {
            prompt = prompt::followup(f, &prompt);
        }
        self.record(EventKind::Prompt, &prompt)?;
        // The agent never holds the forge token: the bot lists the open
        // selfheal PRs for the runners that read them.
        let open_prs = match start.agent.runner.lists_open_prs() {
            true => self.open_prs_for_agent().await,
            false => vec![],
        };
        let job = Job {
            session_id: id,
            run_id: &start.run_id,
            schedule: &start.schedule,
            prompt: &prompt,
            dir: self.dir,
            project: self.project_dir(),
            log: self.log.as_ref(),
            // A failing data test is diagnosed, never "fixed" (the machine
            // proposes nothing either way; an llm agent is told and gets no edit tool).
            mission: match self.class {
                Some(FailureClass::Data) => Mission::DiagnoseData,
                _ => Mission::Fix,
            },
            dbt: self.dbt(),
            dbt_env: self
                .isolation
                .as_ref()
                .map(Isolation::agent_env)
                .unwrap_or_default(),
            tag: deps.store.session_tag(id.0),
            open_prs,
            redactor: deps.redactor.clone(),
            transcript: llm::Transcript::new(deps.store.clone(), id.0),
        };
        Ok(match agent::start(&start.agent, job).await {
            Ok(started) => {
                info!(session = id.0, run_id = %start.run_id, agent = %start.agent.name, "agent started");
                self.agent = Some(RunningAgent {
                    running: started.running,
                    deadline: Instant::now() + started.limit,
                    limit: started.limit,
                    started: Instant::now(),
                });
                Input::AgentStarted
            }
            Err(e) => Input::SpawnFailed(deps.redactor.redact(&format!("{e:#}"))),
        })
    }

    async fn open_prs_for_agent(&self) -> Vec<llm::PrInfo> {
        match self.deps.healing.forge.open_selfheal_prs().await {
            Ok(prs) => prs
                .into_iter()
                .map(|p| llm::PrInfo {
                    signature: signature_in(&p.body),
                    url: p.url,
                    title: p.title,
                })
                .collect(),
            Err(e) => {
                warn!(error = %e, "could not list open pull requests for the agent");
                vec![]
            }
        }
    }

    /// Runs the planned verification in the isolated place and stores dbt's output.
    async fn verify(&self) -> Result<Verified> {
        let project = self.project_dir().context("no project directory")?;
        let iso = self.isolation.as_ref().context("dbt was not prepared")?;
        let t0 = std::time::Instant::now();
        let _timer = self.deps.metrics.verification_seconds.start();
        let verified = self.dbt().run(&project, &self.verify_args).await;
        let took_secs = t0.elapsed().as_secs_f64();
        let (passed, output) = match verified {
            Ok(run) => (run.success, self.deps.redactor.redact(&run.output)),
            Err(e) => (false, self.deps.redactor.redact(&format!("{e:#}"))),
        };
        self.record(EventKind::Verification, &output)?;
        Ok(match passed {
            true => Verified::Passed {
                took_secs,
                dbt_says: summary_line(&output),
            },
            false => {
                let errors = verification_errors(&project.join(&iso.project.target_path), &output);
                Verified::Failed {
                    errors: self.deps.redactor.redact(&errors),
                }
            }
        })
    }

    /// Opens the pull request the machine drafted; Err is the forge's refusal.
    async fn open_pr(&self, draft: PrDraft) -> Result<Result<Option<String>, String>> {
        let (deps, start) = (self.deps, self.start);
        let thread_link = deps.sink.permalink(&start.place).await;
        let body = render::pr_body(&render::PrBody {
            schedule: &start.schedule,
            run_id: &start.run_id,
            agent: &start.agent.name,
            root_cause: &draft.root_cause,
            diff_stat: &draft.change.diff_stat,
            diff: &draft.change.diff,
            verification_command: &draft.verification.command,
            verification_output: &draft.dbt_says,
            verification_place: &draft.verification.place,
            built: draft.verification.depth == Depth::Builds,
            files: &draft.change.files,
            thread_link: thread_link.as_deref(),
            signature: self.signature.as_deref().unwrap_or(""),
        });
        let req = PrRequest {
            head: draft.branch,
            base: self.workspace()?.base_branch.clone(),
            title: draft.title,
            body: deps.redactor.redact(&body),
            options: deps.healing.settings.pr_options.clone(),
        };
        Ok(match deps.healing.forge.open_pr(&req).await {
            Ok(Opened::Pr(pr)) => Ok(Some(pr.url)),
            Ok(Opened::Compare(link)) => Ok(link),
            Err(e) => Err(e.to_string()),
        })
    }
}

/// A stored session as the opening prompt tells it.
fn prior_attempt(s: &SessionRow) -> PriorAttempt {
    PriorAttempt {
        run_id: s.run_id.clone(),
        at: s.created_at,
        status: s.status,
        pr_url: s.pr_url.clone(),
        error: s.error.clone(),
        summary: s.summary.clone(),
    }
}

/// The error signature marker in a selfheal PR body, if any.
fn signature_in(body: &str) -> Option<String> {
    let start = body.find("selfheal-signature: ")? + "selfheal-signature: ".len();
    let rest = &body[start..];
    Some(
        rest[..rest.find(' ').unwrap_or(rest.len())]
            .trim()
            .to_string(),
    )
}

/// The failing models, seeds and snapshots (and, with `tests`, data tests).
fn failing_nodes(log: Option<&RunLog>, tests: bool) -> Vec<String> {
    log.map(|l| {
        l.failures
            .iter()
            .filter(|f| {
                matches!(f.resource_type.as_str(), "model" | "seed" | "snapshot")
                    || (tests && f.resource_type == "test")
            })
            .map(|f| f.name.clone())
            .collect()
    })
    .unwrap_or_default()
}

/// The verification command as a person reads it: no session paths.
fn shown_args(args: &[String]) -> String {
    let mut shown = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            shown.push("<production state>".to_string());
            continue;
        }
        skip = a == "--state";
        shown.push(a.clone());
    }
    shown.join(" ")
}

/// What a failed verification says: its failing nodes and their errors,
/// from the run's own `run_results.json`, else dbt's error lines.
fn verification_errors(target_dir: &Path, output: &str) -> String {
    let artifacts = runlog::Artifacts {
        run_results: std::fs::read_to_string(target_dir.join("run_results.json")).ok(),
        console: Some(output.to_string()),
        ..Default::default()
    };
    let parsed = runlog::parse("verification", &artifacts);
    let lines: Vec<String> = parsed
        .failures
        .iter()
        .take(5)
        .map(|f| {
            let message: Vec<&str> = f
                .message
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(4)
                .collect();
            format!(
                "• `{}` ({}): {}",
                f.name,
                f.resource_type,
                message.join(" ⏎ ")
            )
        })
        .collect();
    if lines.is_empty() {
        error_lines(output, 12)
    } else {
        lines.join("\n")
    }
}

/// dbt's closing line (`Done. PASS=5 …`), or its last lines.
fn summary_line(output: &str) -> String {
    output
        .lines()
        .rev()
        .find(|l| l.contains("Done.") || l.contains("Completed successfully"))
        .map(|l| crate::dbt::strip_timestamp(l).trim().to_string())
        .unwrap_or_else(|| crate::dbt::tail_lines(output, 4))
}

fn redact_log(r: &Redactor, mut log: RunLog) -> RunLog {
    log.raw = r.redact(&log.raw);
    for f in &mut log.failures {
        f.message = r.redact(&f.message);
        f.compiled_code = f.compiled_code.as_deref().map(|c| r.redact(c));
    }
    log
}

/// Edits are checked a few times per interval so that one lands soon after it is due.
fn tick_period(edit_interval: Duration) -> Duration {
    (edit_interval / 4).max(Duration::from_millis(10))
}

/// Runs the configured retry command for a schedule fed by `selfheal notify`
/// (`sh -c`, with `SELFHEAL_SCHEDULE` and `SELFHEAL_RUN_ID` set and nothing
/// else of selfheal's environment: no token reaches it).
async fn run_retry_command(command: &str, schedule: &str, run_id: &str) -> Result<()> {
    let mut child = tokio::process::Command::new("sh");
    child
        .arg("-c")
        .arg(command)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("SELFHEAL_SCHEDULE", schedule)
        .env("SELFHEAL_RUN_ID", run_id)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(RETRY_COMMAND_LIMIT, child.output())
        .await
        .context("the retry command ran past its minute")?
        .context("could not start the retry command")?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    anyhow::bail!("the retry command failed ({}): {last}", out.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failing_nodes_are_models_seeds_snapshots_and_optionally_tests() {
        let f = |name: &str, rt: &str| crate::runlog::NodeFailure {
            unique_id: None,
            name: name.into(),
            resource_type: rt.into(),
            path: None,
            kind: crate::runlog::ErrorKind::Compilation,
            message: String::new(),
            compiled_code: None,
        };
        let log = RunLog {
            failures: vec![
                f("orders", "model"),
                f("not_null_x", "test"),
                f("raw", "seed"),
            ],
            ..RunLog::default()
        };
        assert_eq!(failing_nodes(Some(&log), false), ["orders", "raw"]);
        assert_eq!(
            failing_nodes(Some(&log), true),
            ["orders", "not_null_x", "raw"]
        );
        assert!(failing_nodes(None, true).is_empty());
    }

    #[test]
    fn the_shown_command_hides_session_paths() {
        let args: Vec<String> = "build --select a+ --defer --state /tmp/selfheal-1/session-3/state"
            .split(' ')
            .map(String::from)
            .collect();
        assert_eq!(
            shown_args(&args),
            "build --select a+ --defer --state <production state>"
        );
    }

    #[test]
    fn the_signature_is_read_back_from_a_pr_body() {
        // The marker as `render::pr_body` writes it, at the end of the body.
        let body = "## Context\nselfheal opened this pull request.\n\n<!-- selfheal-signature: d1296dccbe5463ad -->\n";
        assert_eq!(signature_in(body), Some("d1296dccbe5463ad".to_string()));
        assert_eq!(signature_in("no marker"), None);
    }
}
