//! Runs one healing session: reads the run log, prepares a fresh copy of the
//! repository, runs the agent while feeding the state machine, then — as the
//! bot, never the agent — verifies the change with dbt and opens the pull
//! request (or links the open one that already addresses the same error).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::machine::{Effect, Ending, Input, Machine};
use super::prompt;
use super::sink::Sink;
use crate::agent::command::{self, CommandSpec, Output};
use crate::agent::llm;
use crate::agent::protocol::{parse_line, AgentEvent};
use crate::config::{AgentDef, HealSettings, Runner, DBT_DOCTOR};
use crate::dbt::isolate::{self, Isolation, Plan};
use crate::dbt::{deps, error_lines, Dbt};
use crate::forge::{Forge, Opened, PrRequest};
use crate::redact::Redactor;
use crate::runlog::{self, RunLog};
use crate::slack::render;
use crate::store::{Status, Store};
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
}

/// Concurrency caps. A session holds one global and one per-schedule permit
/// while it runs; without them it waits, shown as queued in its thread.
#[derive(Clone)]
pub struct Caps {
    global: Arc<tokio::sync::Semaphore>,
    per_schedule: usize,
    global_limit: usize,
    schedules:
        Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>>,
}

/// The permits a running session holds.
pub struct Slot(
    #[allow(dead_code)] tokio::sync::OwnedSemaphorePermit,
    #[allow(dead_code)] tokio::sync::OwnedSemaphorePermit,
);

impl Caps {
    pub fn new(global: usize, per_schedule: usize) -> Caps {
        Caps {
            global: Arc::new(tokio::sync::Semaphore::new(global.max(1))),
            per_schedule: per_schedule.max(1),
            global_limit: global.max(1),
            schedules: Arc::default(),
        }
    }

    fn schedule(&self, name: &str) -> Arc<tokio::sync::Semaphore> {
        self.schedules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_schedule)))
            .clone()
    }

    fn try_acquire(&self, schedule: &str) -> Option<Slot> {
        let own = self.schedule(schedule).try_acquire_owned().ok()?;
        let global = self.global.clone().try_acquire_owned().ok()?;
        Some(Slot(own, global))
    }

    async fn acquire(&self, schedule: &str) -> Slot {
        // Per schedule first, so a busy schedule does not hold global slots while it waits.
        let own = self
            .schedule(schedule)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let global = self
            .global
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        Slot(own, global)
    }
}

impl Default for Caps {
    fn default() -> Caps {
        Caps::new(8, 2)
    }
}

/// What a person can do to a running session.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    Stop {
        user: String,
    },
    /// A reply in the thread: guidance for the agent.
    Reply {
        user: String,
        text: String,
    },
}

/// Running sessions by id. A std lock: held only to insert, remove or clone a sender.
#[derive(Clone, Default)]
pub struct Controls(
    Arc<std::sync::Mutex<std::collections::HashMap<i64, mpsc::UnboundedSender<Control>>>>,
);

impl Controls {
    fn register(&self, id: i64) -> mpsc::UnboundedReceiver<Control> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        rx
    }

    fn unregister(&self, id: i64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Delivers `control` to session `id`; false when it is not running.
    pub fn send(&self, id: i64, control: Control) -> bool {
        let tx = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        tx.is_some_and(|tx| tx.send(control).is_ok())
    }
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
    pub session_id: i64,
    pub schedule: String,
    pub run_id: String,
    pub channel: String,
    pub thread_ts: String,
    pub agent: AgentDef,
    /// The schedule's `git_branch`; None: the repository's default branch.
    pub base_branch: Option<String>,
    /// The failure notification's text: the run log of last resort.
    pub notification: String,
    /// Set when a person asked for more after an earlier session ended.
    pub followup: Option<FollowUp>,
}

/// A follow-up request in a healing thread.
#[derive(Debug, Clone)]
pub struct FollowUp {
    /// Who asked, and what (thread text: data from a person).
    pub by: String,
    pub instruction: String,
    /// What the thread has seen so far (earlier sessions' story).
    pub history: String,
    /// The earlier session's pull request: the follow-up adds to its branch.
    pub pr_url: Option<String>,
}

/// Beyond an llm agent's own wall clock, so its budget report arrives first.
const LLM_SLACK: Duration = Duration::from_secs(30);

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

/// Grace between SIGTERM and SIGKILL when an agent is stopped.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Runs the session to its end. Never panics on agent, dbt, git or Slack
/// failures: every way out is recorded as the session's outcome.
pub async fn drive(deps: Deps, start: Start, shutdown: CancellationToken) {
    let id = start.session_id;
    let dir = deps.work_root.join(format!("session-{id}"));
    let mut controls = deps.controls.register(id);
    let result = match wait_for_slot(&deps, &start, &shutdown, &mut controls).await {
        Some(_slot) => run(&deps, &start, &dir, shutdown, controls).await,
        None => Ok(()),
    };
    deps.controls.unregister(id);
    if let Err(e) = result {
        error!(session = id, error = ?e, "healing session failed");
        let summary = "selfheal hit an internal error; see its log";
        if let Ok(true) = deps.store.finish(id, Status::Failed, Some(summary), None) {
            let ending = Ending {
                status: Status::Failed,
                summary: summary.into(),
            };
            let text = render::final_message(&start.run_id, &ending, None);
            let _ = deps
                .sink
                .post(&start.channel, Some(&start.thread_ts), &text, None)
                .await;
        }
    }
    // The session's folder (and the clone inside it) goes, whatever happened.
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(session = id, error = %e, "could not remove the session folder");
        }
    }
}

/// Takes a slot under the caps, saying in the thread when the session has to
/// queue. None when it was stopped or selfheal shut down while it waited
/// (recorded and said in the thread).
async fn wait_for_slot(
    deps: &Deps,
    start: &Start,
    shutdown: &CancellationToken,
    controls: &mut mpsc::UnboundedReceiver<Control>,
) -> Option<Slot> {
    if let Some(slot) = deps.caps.try_acquire(&start.schedule) {
        return Some(slot);
    }
    let text = format!(
        "⏳ Queued: other healing sessions are running (at most {} at once, {} per schedule); this one starts when a slot frees up.",
        deps.caps.global_limit, deps.caps.per_schedule
    );
    let _ = deps.store.add_event(start.session_id, "queued", &text);
    let _ = deps
        .sink
        .post(&start.channel, Some(&start.thread_ts), &text, None)
        .await;
    let ending = loop {
        tokio::select! {
            slot = deps.caps.acquire(&start.schedule) => return Some(slot),
            _ = shutdown.cancelled() => break Ending {
                status: Status::Interrupted,
                summary: "selfheal was shut down while the session waited in the queue".into(),
            },
            Some(control) = controls.recv() => {
                if let Control::Stop { user } = control {
                    break Ending {
                        status: Status::Stopped,
                        summary: format!("stopped by <@{user}> while it waited in the queue"),
                    };
                }
            }
        }
    };
    if let Ok(true) =
        deps.store
            .finish(start.session_id, ending.status, Some(&ending.summary), None)
    {
        let text = render::final_message(&start.run_id, &ending, None);
        let _ = deps
            .sink
            .post(&start.channel, Some(&start.thread_ts), &text, None)
            .await;
    }
    None
}

/// One session's mutable context, shared by its steps.
struct Session<'a> {
    deps: &'a Deps,
    start: &'a Start,
    machine: Machine,
    progress_ts: String,
    log: Option<RunLog>,
    signature: Option<String>,
    workspace: Option<Workspace>,
    /// Where this session's dbt commands run (never production).
    isolation: Option<Isolation>,
    /// Whether the failing nodes' parents exist in the isolated place.
    parents_ready: bool,
}

async fn run(
    deps: &Deps,
    start: &Start,
    dir: &Path,
    shutdown: CancellationToken,
    mut controls: mpsc::UnboundedReceiver<Control>,
) -> Result<()> {
    let id = start.session_id;
    let t0 = Instant::now().into_std();
    let with_repo = deps.healing.settings.repo.is_some();
    let mut machine = Machine::new(&start.run_id, &start.agent.name, t0, deps.edit_interval);
    if with_repo {
        machine = machine.with_finalize();
    }

    // The progress message comes first so that everything after it can edit it.
    let (text, blocks) = render::progress(&machine.view(t0), id);
    let progress = deps
        .sink
        .post(&start.channel, Some(&start.thread_ts), &text, Some(&blocks))
        .await
        .context("posting the progress message")?;
    deps.store.set_progress_ts(id, &progress.ts)?;
    deps.store.mark_running(id)?;
    std::fs::create_dir_all(dir).context("creating the session folder")?;

    let mut s = Session {
        deps,
        start,
        machine,
        progress_ts: progress.ts,
        log: None,
        signature: None,
        workspace: None,
        isolation: None,
        parents_ready: false,
    };

    s.read_run_log().await?;
    let duplicate = match start.followup {
        // A follow-up builds on its own pull request on purpose.
        Some(_) => None,
        None => s.open_pr_for_same_error().await?,
    };
    if let Some(pr) = duplicate {
        let ending = Ending {
            status: Status::Duplicate,
            summary: format!("an open pull request already addresses this error: {pr}"),
        };
        return s
            .step(
                Input::Finalized {
                    ending,
                    pr_url: Some(pr),
                },
                None,
            )
            .await;
    }
    if with_repo {
        if let Err(e) = s.prepare_workspace(dir).await {
            let why = format!("could not prepare the repository: {e:#}");
            return s
                .step(Input::SpawnFailed(deps.redactor.redact(&why)), None)
                .await;
        }
        if let Err(e) = s.prepare_dbt(dir).await {
            let why = format!("could not prepare a safe place to run dbt: {e:#}");
            return s
                .step(Input::SpawnFailed(deps.redactor.redact(&why)), None)
                .await;
        }
    }

    let prior = deps
        .store
        .prior_sessions(&start.schedule, id, deps.prior_attempts)?;
    let mut prompt = prompt::opening(&start.run_id, &start.schedule, &prior);
    if let Some(f) = &start.followup {
        prompt = prompt::followup(f, &prompt);
    }
    deps.store.add_event(id, "prompt", &prompt)?;

    let (mut running, timeout) = match s.start_agent(dir, &prompt).await {
        Ok(r) => r,
        Err(e) => {
            let why = deps.redactor.redact(&format!("{e:#}"));
            return s.step(Input::SpawnFailed(why), None).await;
        }
    };
    info!(session = id, run_id = %start.run_id, agent = %start.agent.name, "agent started");

    let deadline = Instant::now() + timeout;
    let mut tick = tokio::time::interval(tick_period(deps.edit_interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !s.machine.is_over() {
        let input = tokio::select! {
            out = running.output.recv() => match out {
                Some(Output::Stdout(line)) => {
                    let line = deps.redactor.redact(&line);
                    for event in parse_line(&line) {
                        s.step(Input::Agent(event), Some(&running)).await?;
                    }
                    continue;
                }
                Some(Output::Event(event)) => Input::Agent(redact_event(&deps.redactor, event)),
                Some(Output::Stderr(line)) => Input::Stderr(deps.redactor.redact(&line)),
                Some(Output::Exited { code }) => Input::Exited { code },
                // The supervisor always reports the exit before closing; a
                // closed channel without it means the agent vanished.
                None => Input::Exited { code: None },
            },
            Some(control) = controls.recv() => match control {
                Control::Stop { user } => Input::Stop { by: user },
                Control::Reply { user, text } => {
                    // Thread text is data from a person, passed on as such.
                    let line = serde_json::json!({"type": "reply", "user": user, "text": text}).to_string();
                    running.send_line(line).await;
                    Input::Note(format!("💬 guidance from <@{user}>: {text}"))
                }
            },
            _ = tick.tick() => Input::Tick,
            _ = tokio::time::sleep_until(deadline) => Input::TimedOut { limit: timeout },
            _ = shutdown.cancelled() => Input::Shutdown,
        };
        if let Some(agent_ending) = s.step_with_finalize(input, &running).await? {
            // The agent is done; the bot's own work may take a while (dbt), so
            // it races the shutdown signal.
            let input = tokio::select! {
                r = s.finalize(agent_ending) => r?,
                _ = shutdown.cancelled() => Input::Shutdown,
            };
            s.step(input, Some(&running)).await?;
        }
    }
    // Dropping the handle kills whatever is left of the agent's process group.
    drop(running);
    Ok(())
}

impl Session<'_> {
    /// Feeds one input to the machine and performs its effects.
    async fn step(&mut self, input: Input, agent: Option<&command::Running>) -> Result<()> {
        let fx = self.machine.handle(input, Instant::now().into_std());
        self.apply(fx, agent).await.map(|_| ())
    }

    /// Like [`Session::step`], but returns the agent's ending when the machine
    /// asks the bot to finalize.
    async fn step_with_finalize(
        &mut self,
        input: Input,
        agent: &command::Running,
    ) -> Result<Option<Ending>> {
        let fx = self.machine.handle(input, Instant::now().into_std());
        self.apply(fx, Some(agent)).await
    }

    async fn apply(
        &mut self,
        effects: Vec<Effect>,
        agent: Option<&command::Running>,
    ) -> Result<Option<Ending>> {
        let (deps, start) = (self.deps, self.start);
        let id = start.session_id;
        let mut finalize = None;
        for effect in effects {
            match effect {
                Effect::Record { kind, text } => {
                    if matches!(kind, "progress" | "stderr" | "note") {
                        deps.sink.line(kind, &text);
                    }
                    deps.store.add_event(id, kind, &text)?
                }
                Effect::Post(text) => self.post(&text).await,
                Effect::EditProgress => {
                    let (text, blocks) =
                        render::progress(&self.machine.view(Instant::now().into_std()), id);
                    if let Err(e) = deps
                        .sink
                        .update(&start.channel, &self.progress_ts, &text, Some(&blocks))
                        .await
                    {
                        warn!(session = id, error = %e, "could not edit the progress message");
                    }
                }
                Effect::SavePr(url) => deps.store.set_pr_url(id, &url)?,
                Effect::Kill => {
                    if let Some(agent) = agent {
                        agent.terminate(KILL_GRACE);
                    }
                }
                Effect::Finalize(ending) => finalize = Some(ending),
                Effect::Finish(ending) => {
                    let pr = self.machine.pr_url().map(str::to_string);
                    deps.store
                        .finish(id, ending.status, Some(&ending.summary), pr.as_deref())?;
                    info!(
                        session = id,
                        status = ending.status.as_str(),
                        "healing session ended"
                    );
                    let text = render::final_message(&start.run_id, &ending, pr.as_deref());
                    self.post(&text).await;
                }
            }
        }
        Ok(finalize)
    }

    async fn post(&self, text: &str) {
        if let Err(e) = self
            .deps
            .sink
            .post(&self.start.channel, Some(&self.start.thread_ts), text, None)
            .await
        {
            warn!(session = self.start.session_id, error = %e, "could not post to the healing thread");
        }
    }

    /// A milestone the bot itself reports: its own message in the thread, and
    /// a line of the progress message.
    async fn milestone(&mut self, text: String) -> Result<()> {
        self.post(&render::escape(&text)).await;
        self.step(Input::Note(text), None).await
    }

    /// Reads the run log, if a source is configured, and says what it found.
    /// Reads the run log from the configured source; when there is none or it
    /// fails, the notification itself is the last resort. The thread is told
    /// which source was used.
    async fn read_run_log(&mut self) -> Result<()> {
        let run_id = &self.start.run_id;
        let fetched = match &self.deps.healing.settings.run_log_source {
            Some(settings) => match runlog::Source::from_settings(settings) {
                Ok(source) => source.fetch(run_id).await.map_err(Some),
                Err(e) => Err(Some(e)),
            },
            None => Err(None),
        };
        let log = match fetched {
            Ok(log) => log,
            Err(why) => {
                if let Some(e) = why {
                    let why = self.deps.redactor.redact(&format!("{e:#}"));
                    self.milestone(format!(
                        "Could not read the run log ({why}); working from the Slack notification instead"
                    ))
                    .await?;
                }
                runlog::from_notification(run_id, &self.start.notification)
            }
        };
        let log = redact_log(&self.deps.redactor, log);
        self.deps
            .store
            .add_event(self.start.session_id, "run_log", &log.raw)?;
        if let Some(first) = log.failures.first() {
            let signature = runlog::signature(first);
            let error = first.message.lines().take(3).collect::<Vec<_>>().join(" ");
            self.deps
                .store
                .set_error(self.start.session_id, &error, &signature)?;
            self.signature = Some(signature);
        }
        let line = format!(
            "read the run log ({}): {} failing node(s)",
            log.origin,
            log.failures.len()
        );
        // A log that names no failing node is not worth a message of its own.
        if !log.failures.is_empty() {
            self.post(&render::run_log_summary(&log)).await;
        }
        self.log = Some(log);
        self.step(Input::Note(line), None).await?;
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
            .pr_for_signature(sig, self.start.session_id)?
        else {
            return Ok(None);
        };
        let url = earlier.pr_url.unwrap_or_default();
        Ok(match (&self.deps.healing.forge, forge_prs) {
            // With an API, only a PR that is still open counts.
            (Forge::GitHub(_), Some(prs)) => prs.iter().any(|p| p.url == url).then_some(url),
            // Without one (or when it failed), selfheal cannot tell whether the
            // PR was closed; linking it is better than a duplicate.
            _ => Some(url),
        })
    }

    async fn prepare_workspace(&mut self, dir: &Path) -> Result<()> {
        let settings = &self.deps.healing.settings;
        let repo = settings
            .repo
            .as_deref()
            .context("no repository configured")?;
        let mut ws = Workspace::create(repo, self.start.base_branch.as_deref(), dir).await?;
        let branch = branch_name(&self.start.schedule, &self.start.run_id);
        match self.start.followup.as_ref().and_then(|f| f.pr_url.as_ref()) {
            Some(_) => ws.continue_branch(&branch).await?,
            None => ws.start_branch(&branch).await?,
        }
        self.step(
            Input::Note(format!(
                "working on a fresh clone of {} at {}",
                ws.base_branch,
                &ws.base_sha[..ws.base_sha.len().min(10)]
            )),
            None,
        )
        .await?;
        self.workspace = Some(ws);
        Ok(())
    }

    /// Prepares the clone the way dbt CI prepares one: the isolated place
    /// to build in (never production), the packages, the failing nodes'
    /// parents. Tells the thread where the session builds.
    async fn prepare_dbt(&mut self, dir: &Path) -> Result<()> {
        let t0 = std::time::Instant::now();
        let settings = &self.deps.healing.settings;
        let project = self.project_dir().context("no project directory")?;
        let source_project = settings
            .repo
            .as_deref()
            .filter(|r| !crate::workspace::is_url(r))
            .map(|r| Path::new(r).join(&settings.project_subdir));
        let mut state_candidates: Vec<PathBuf> = settings.dbt_state_dir.iter().cloned().collect();
        if let (Some(runlog::SourceSettings::Dir(root)), Some(log)) =
            (&settings.run_log_source, &self.log)
        {
            state_candidates.insert(0, root.join(&log.run_id));
        }
        let iso = isolate::prepare(&isolate::Inputs {
            base: &self.deps.healing.dbt,
            project_dir: &project,
            source_project_dir: source_project.as_deref(),
            session_dir: dir,
            ci_target: settings.dbt_target.as_deref(),
            prod_target: settings.dbt_prod_target.as_deref(),
            state_candidates,
            session_name: &format!("selfheal_{}_{}", self.start.session_id, std::process::id()),
        })?;
        let described = iso.describe();
        let outputs = BuildOutputs::for_project(
            &settings.project_subdir,
            &iso.project.target_path,
            &iso.project.log_path,
            &iso.project.packages_path,
        );
        self.parents_ready = match &iso.plan {
            Plan::CiTarget { defer, .. } => *defer,
            Plan::DuckDbCopy { .. } => iso.copied,
            Plan::CompileOnly { .. } => false,
        };
        self.isolation = Some(iso);

        let packages_path = self
            .isolation
            .as_ref()
            .map(|i| i.project.packages_path.clone());
        let installed = deps::install(
            &self.dbt(),
            &project,
            packages_path.as_deref().unwrap_or("dbt_packages"),
            &std::env::temp_dir().join("selfheal-cache"),
        )
        .await?;
        let mut notes = vec![format!("dbt {described}")];
        match installed {
            deps::Installed::NoPackages => {}
            deps::Installed::FromCache => notes.push("packages copied from the cache".into()),
            deps::Installed::Fresh => notes.push("packages installed with `dbt deps`".into()),
        }
        if !self.parents_ready && self.building() {
            notes.push(self.build_parents(&project).await);
        }
        if let Some(ws) = self.workspace.as_mut() {
            ws.set_build_outputs(outputs).await?;
        }
        notes.push(format!("ready in {:.1}s", t0.elapsed().as_secs_f64()));
        self.step(Input::Note(notes.join("; ")), None).await?;
        if let Some(Isolation {
            plan: Plan::CompileOnly { .. },
            ..
        }) = &self.isolation
        {
            self.milestone(format!("⚠️ Verification will only compile: {described}"))
                .await?;
        }
        Ok(())
    }

    /// Whether the isolated place can build (anything but compile-only).
    fn building(&self) -> bool {
        !matches!(
            self.isolation.as_ref().map(|i| &i.plan),
            Some(Plan::CompileOnly { .. }) | None
        )
    }

    /// Builds the failing nodes' parents (not the nodes) into the isolated
    /// place, so the agent and the doctor can query them and verification
    /// only builds the change and its children. A project that does not parse
    /// yet (a broken ref) cannot build them now: verification builds them.
    async fn build_parents(&mut self, project: &Path) -> String {
        let nodes = failing_nodes(self.log.as_ref(), true);
        if nodes.is_empty() {
            return "no failing node to build parents for".into();
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
            Ok(r) if r.success => {
                self.parents_ready = true;
                "the failing nodes' parents are built".into()
            }
            Ok(r) => {
                let output = self.deps.redactor.redact(&r.output);
                let _ = self
                    .deps
                    .store
                    .add_event(self.start.session_id, "prepare", &output);
                "the parents could not be built yet; verification builds them".into()
            }
            Err(e) => {
                format!("the parents could not be built yet ({e:#}); verification builds them")
            }
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
            self.deps.store.session_tag(self.start.session_id),
        ));
        dbt
    }

    fn project_dir(&self) -> Option<PathBuf> {
        self.workspace
            .as_ref()
            .map(|ws| ws.dir.join(&self.deps.healing.settings.project_subdir))
    }

    /// Starts the agent: a command, or a built-in running as a task.
    async fn start_agent(&self, dir: &Path, prompt: &str) -> Result<(command::Running, Duration)> {
        let start = self.start;
        match &start.agent.runner {
            Runner::Command {
                argv,
                timeout,
                env,
                workdir,
            } => {
                let workdir = match (workdir, self.project_dir()) {
                    (Some(w), _) => w.clone(),
                    (None, Some(project)) => project,
                    (None, None) => {
                        let w = dir.join("work");
                        std::fs::create_dir_all(&w).context("creating the agent workdir")?;
                        w
                    }
                };
                let prompt_file = dir.join("prompt.md");
                std::fs::write(&prompt_file, prompt).context("writing the prompt file")?;
                let mut session_env = vec![
                    ("SELFHEAL_SESSION_ID".into(), start.session_id.to_string()),
                    ("SELFHEAL_RUN_ID".into(), start.run_id.clone()),
                    ("SELFHEAL_SCHEDULE".into(), start.schedule.clone()),
                    ("SELFHEAL_AGENT".into(), start.agent.name.clone()),
                    (
                        command::SESSION_TAG_ENV.into(),
                        self.deps.store.session_tag(start.session_id),
                    ),
                ];
                if let Some(log) = &self.log {
                    let file = dir.join("run_log.txt");
                    std::fs::write(&file, &log.raw).context("writing the run log file")?;
                    session_env.push(("SELFHEAL_RUN_LOG_FILE".into(), file.display().to_string()));
                }
                if let Some(project) = self.project_dir() {
                    session_env
                        .push(("SELFHEAL_PROJECT_DIR".into(), project.display().to_string()));
                }
                // The agent's dbt goes where the bot's goes, never to production.
                if let Some(iso) = &self.isolation {
                    session_env.extend(iso.agent_env());
                }
                let spec = CommandSpec {
                    argv: argv.clone(),
                    env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    workdir,
                    prompt_file,
                    session_env,
                };
                let first = serde_json::json!({
                    "type": "prompt",
                    "text": prompt,
                    "run_id": start.run_id,
                    "schedule": start.schedule,
                    "session_id": start.session_id,
                })
                .to_string();
                Ok((command::spawn(&spec, first).await?, *timeout))
            }
            Runner::Builtin(name) if name == DBT_DOCTOR => {
                let project = self
                    .project_dir()
                    .context("dbt-doctor needs the repository (SELFHEAL_REPO)")?;
                let log = self
                    .log
                    .clone()
                    .context("dbt-doctor needs the run log, and it could not be read")?;
                let dbt = self.dbt();
                let (tx, rx) = mpsc::channel(64);
                let task = tokio::spawn(async move {
                    let report = crate::doctor::heal(&project, &log, &dbt).await;
                    for event in report.events {
                        if tx.send(Output::Event(event)).await.is_err() {
                            return;
                        }
                    }
                    let _ = tx.send(Output::Exited { code: Some(0) }).await;
                });
                // dbt-doctor is instant but for the dbt queries it runs; the
                // dbt timeout bounds those, this bounds the whole.
                let limit = self.deps.healing.dbt.timeout * 2;
                Ok((
                    command::Running::in_process(rx, task.abort_handle(), None),
                    limit,
                ))
            }
            Runner::Llm(settings) => {
                let project = self
                    .project_dir()
                    .context("the llm runner needs the repository (SELFHEAL_REPO)")?;
                // The agent never holds the forge token: the bot lists the
                // open selfheal PRs for it.
                let (replies_tx, replies_rx) = mpsc::channel(32);
                let open_prs = match self.deps.healing.forge.open_selfheal_prs().await {
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
                };
                let task = llm::LlmTask {
                    system: llm::agent_system(&start.agent),
                    prompt: prompt.to_string(),
                    project_dir: project,
                    run_log: self.log.clone(),
                    open_prs,
                    tools: start.agent.tools.clone(),
                    dbt: self.dbt(),
                    redactor: self.deps.redactor.clone(),
                    replies: Some(replies_rx),
                    transcript: Some(llm::Transcript::new(
                        self.deps.store.clone(),
                        start.session_id,
                    )),
                };
                let (tx, rx) = mpsc::channel(64);
                let settings = settings.clone();
                let limit = settings.timeout + LLM_SLACK;
                let task = tokio::spawn(async move {
                    let key = settings.api_key_from_env();
                    llm::run(&settings, key, task, tx).await;
                });
                Ok((
                    command::Running::in_process(rx, task.abort_handle(), Some(replies_tx)),
                    limit,
                ))
            }
            other => anyhow::bail!("runner {other:?} is not supported by this version of selfheal"),
        }
    }

    /// The bot's work after the agent: verify the change, look for an open PR
    /// for the same error, commit, push and open the pull request.
    async fn finalize(&mut self, agent: Ending) -> Result<Input> {
        let done = |ending: Ending, pr_url: Option<String>| Ok(Input::Finalized { ending, pr_url });
        let Some(ws) = &self.workspace else {
            return done(agent, None);
        };
        if self.machine.pr_url().is_some() {
            // The agent opened a pull request itself; selfheal does not open another.
            return done(agent, None);
        }
        let changed = ws.changed_files().await?;
        if changed.is_empty() {
            return done(agent, None);
        }
        if agent.status != Status::Fixed {
            let summary = format!(
                "{} (the agent changed {} but did not call it a fix, so nothing was proposed)",
                agent.summary.trim(),
                changed.join(", ")
            );
            return done(
                Ending {
                    status: agent.status,
                    summary,
                },
                None,
            );
        }
        let project = self.project_dir().context("no project directory")?;

        // Verification, in the isolated place: the failing nodes and
        // everything downstream of them.
        let iso = self.isolation.as_ref().context("dbt was not prepared")?;
        let (place, built, target_path) = (
            iso.describe(),
            self.building(),
            iso.project.target_path.clone(),
        );
        let args = isolate::verification_args(
            &iso.plan,
            &failing_nodes(self.log.as_ref(), false),
            self.parents_ready,
            iso.state.as_deref(),
        );
        let shown = format!("dbt {}", shown_args(&args));
        self.milestone(format!(
            "🔎 Verifying the change with `{shown}`: the session {place}"
        ))
        .await?;
        let t0 = std::time::Instant::now();
        let verified = self.dbt().run(&project, &args).await;
        let took = t0.elapsed().as_secs_f64();
        let (passed, output) = match verified {
            Ok(run) => (run.success, self.deps.redactor.redact(&run.output)),
            Err(e) => (false, self.deps.redactor.redact(&format!("{e:#}"))),
        };
        self.deps
            .store
            .add_event(self.start.session_id, "verification", &output)?;
        if !passed {
            let errors = verification_errors(&project.join(&target_path), &output);
            let errors = self.deps.redactor.redact(&errors);
            self.milestone(format!("❌ Verification failed:\n{errors}"))
                .await?;
            let summary = format!(
                "{} — but the change did not pass `{shown}`, so no pull request was opened",
                agent.summary.trim()
            );
            return done(
                Ending {
                    status: Status::NoFix,
                    summary,
                },
                None,
            );
        }
        let tail = summary_line(&output);
        match built {
            true => {
                self.milestone(format!("✅ Verification passed: `{shown}` ({took:.1}s)"))
                    .await?
            }
            false => {
                self.milestone(format!(
                    "✅ Compiles: `{shown}` ({took:.1}s) — nothing was built or tested ({})",
                    isolate::FULL_VERIFICATION_HINT
                ))
                .await?
            }
        }

        // A follow-up pushes to its pull request's branch; the PR picks it up.
        if let Some(pr) = self.start.followup.as_ref().and_then(|f| f.pr_url.clone()) {
            let ws = self.workspace.as_ref().context("no workspace")?;
            let branch = branch_name(&self.start.schedule, &self.start.run_id);
            ws.commit(&format!(
                "selfheal: follow-up for run {}\n\n{}",
                self.start.run_id,
                agent.summary.trim()
            ))
            .await?;
            ws.push(&branch).await?;
            return done(agent, Some(pr));
        }
        // The error may have been fixed by someone else's PR in the meantime.
        if let Some(pr) = self.open_pr_for_same_error().await? {
            let summary = format!("an open pull request already addresses this error: {pr}");
            return done(
                Ending {
                    status: Status::Duplicate,
                    summary,
                },
                Some(pr),
            );
        }

        let ws = self.workspace.as_ref().context("no workspace")?;
        let branch = branch_name(&self.start.schedule, &self.start.run_id);
        let title = pr_title(&self.start.schedule, &self.start.run_id, self.log.as_ref());
        let diff_stat = self.deps.redactor.redact(&ws.diff_stat().await?);
        let diff = self.deps.redactor.redact(&ws.diff().await?);
        let files = ws.changed_files().await?;
        ws.commit(&format!("{title}\n\n{}", agent.summary.trim()))
            .await?;
        ws.push(&branch).await?;
        let thread_link = self
            .deps
            .sink
            .permalink(&self.start.channel, &self.start.thread_ts)
            .await;
        let body = render::pr_body(&render::PrBody {
            schedule: &self.start.schedule,
            run_id: &self.start.run_id,
            agent: &self.start.agent.name,
            root_cause: &agent.summary,
            diff_stat: &diff_stat,
            diff: &diff,
            verification_command: &shown,
            verification_output: &tail,
            verification_place: &place,
            built,
            files: &files,
            thread_link: thread_link.as_deref(),
            signature: self.signature.as_deref().unwrap_or(""),
        });
        let req = PrRequest {
            head: branch.clone(),
            base: ws.base_branch.clone(),
            title,
            body: self.deps.redactor.redact(&body),
        };
        let pr_url = match self.deps.healing.forge.open_pr(&req).await {
            Ok(Opened::Pr(pr)) => Some(pr.url),
            Ok(Opened::Compare(link)) => link,
            Err(e) => {
                let why = format!(
                    "the fix is on branch `{branch}`, but opening the pull request failed: {e}"
                );
                return done(
                    Ending {
                        status: Status::NoFix,
                        summary: why,
                    },
                    None,
                );
            }
        };
        let summary = match &pr_url {
            Some(_) => agent.summary,
            None => format!(
                "{} The verified fix is on branch `{branch}`; open a pull request from it.",
                agent.summary.trim()
            ),
        };
        done(
            Ending {
                status: Status::Fixed,
                summary,
            },
            pr_url,
        )
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

fn pr_title(schedule: &str, run_id: &str, log: Option<&RunLog>) -> String {
    match log.and_then(|l| l.failures.first()) {
        Some(f) => format!("selfheal: fix {} in {schedule} (run {run_id})", f.name),
        None => format!("selfheal: fix {schedule} (run {run_id})"),
    }
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

fn redact_event(r: &Redactor, event: AgentEvent) -> AgentEvent {
    match event {
        AgentEvent::Progress(t) => AgentEvent::Progress(r.redact(&t)),
        AgentEvent::Milestone(t) => AgentEvent::Milestone(r.redact(&t)),
        AgentEvent::Pr(t) => AgentEvent::Pr(r.redact(&t)),
        AgentEvent::Result { outcome, summary } => AgentEvent::Result {
            outcome,
            summary: r.redact(&summary),
        },
        AgentEvent::Tool {
            name,
            input,
            output,
        } => AgentEvent::Tool {
            name,
            input: r.redact(&input),
            output: r.redact(&output),
        },
    }
}

/// Edits are checked a few times per interval so that one lands soon after it is due.
fn tick_period(edit_interval: Duration) -> Duration {
    (edit_interval / 4).max(Duration::from_millis(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_are_safe_for_git() {
        for (schedule, run, expected) in [
            ("hourly_marts", "48213", "selfheal/hourly_marts/run-48213"),
            (
                "Daily Finance!",
                "manual__2024-01-01T00:00:00+00:00",
                "selfheal/Daily-Finance/run-manual__2024-01-01T00-00-00-00-00",
            ),
            ("a..b", "1", "selfheal/a--b/run-1"),
        ] {
            assert_eq!(branch_name(schedule, run), expected);
        }
    }

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
}
