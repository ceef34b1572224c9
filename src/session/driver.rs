//! Runs one healing session: starts the agent, feeds the state machine and
//! performs its effects against Slack and the store.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::machine::{Effect, Input, Machine};
use super::prompt;
use crate::agent::command::{self, CommandSpec, Output};
use crate::agent::protocol::parse_line;
use crate::config::{AgentDef, Runner};
use crate::redact::Redactor;
use crate::slack::render;
use crate::slack::web::SlackWeb;
use crate::store::{Status, Store};

/// What every session needs; cloned per session.
#[derive(Clone)]
pub struct Deps {
    pub store: Store,
    pub web: SlackWeb,
    pub redactor: Redactor,
    pub edit_interval: Duration,
    pub prior_attempts: usize,
    /// Where per-session folders (prompt file, scratch workdir) are made.
    pub work_root: PathBuf,
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
}

/// Grace between SIGTERM and SIGKILL when an agent is stopped.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Runs the session to its end. Never panics on agent or Slack failures: every
/// way out is recorded as the session's outcome.
pub async fn drive(deps: Deps, start: Start, shutdown: CancellationToken) {
    let id = start.session_id;
    let dir = deps.work_root.join(format!("session-{id}"));
    if let Err(e) = run(&deps, &start, &dir, shutdown).await {
        error!(session = id, error = ?e, "healing session failed");
        let summary = "selfheal hit an internal error; see its log";
        if let Ok(true) = deps.store.finish(id, Status::Failed, Some(summary), None) {
            let ending = super::machine::Ending {
                status: Status::Failed,
                summary: summary.into(),
            };
            let text = render::final_message(&start.run_id, &ending, None);
            let _ = deps
                .web
                .post(&start.channel, Some(&start.thread_ts), &text, None)
                .await;
        }
    }
    // The session's folder goes, whatever happened.
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(session = id, error = %e, "could not remove the session folder");
        }
    }
}

async fn run(deps: &Deps, start: &Start, dir: &PathBuf, shutdown: CancellationToken) -> Result<()> {
    let id = start.session_id;
    let t0 = Instant::now();
    let mut machine = Machine::new(
        &start.run_id,
        &start.agent.name,
        t0.into_std(),
        deps.edit_interval,
    );

    // The progress message comes first so that everything after it can edit it.
    let (text, blocks) = render::progress(&machine.view(t0.into_std()));
    let progress = deps
        .web
        .post(&start.channel, Some(&start.thread_ts), &text, Some(&blocks))
        .await
        .context("posting the progress message")?;
    deps.store.set_progress_ts(id, &progress.ts)?;
    deps.store.mark_running(id)?;

    let prior = deps
        .store
        .prior_sessions(&start.schedule, id, deps.prior_attempts)?;
    let prompt = prompt::opening(&start.run_id, &start.schedule, &prior);
    deps.store.add_event(id, "prompt", &prompt)?;

    std::fs::create_dir_all(dir).context("creating the session folder")?;
    let prompt_file = dir.join("prompt.md");
    std::fs::write(&prompt_file, &prompt).context("writing the prompt file")?;

    let (mut running, timeout) = match &start.agent.runner {
        Runner::Command {
            argv,
            timeout,
            env,
            workdir,
        } => {
            let workdir = match workdir {
                Some(w) => w.clone(),
                None => {
                    let w = dir.join("work");
                    std::fs::create_dir_all(&w).context("creating the agent workdir")?;
                    w
                }
            };
            let spec = CommandSpec {
                argv: argv.clone(),
                env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                workdir,
                prompt_file,
                session_env: vec![
                    ("SELFHEAL_SESSION_ID".into(), id.to_string()),
                    ("SELFHEAL_RUN_ID".into(), start.run_id.clone()),
                    ("SELFHEAL_SCHEDULE".into(), start.schedule.clone()),
                    ("SELFHEAL_AGENT".into(), start.agent.name.clone()),
                ],
            };
            let first = serde_json::json!({
                "type": "prompt",
                "text": prompt,
                "run_id": start.run_id,
                "schedule": start.schedule,
                "session_id": id,
            })
            .to_string();
            match command::spawn(&spec, first).await {
                Ok(r) => (Some(r), *timeout),
                Err(e) => {
                    let fx = machine.handle(Input::SpawnFailed(format!("{e:#}")), t0.into_std());
                    apply(deps, start, &progress.ts, &mut machine, None, fx).await?;
                    return Ok(());
                }
            }
        }
        other => {
            let why = format!("runner {other:?} is not supported by this version of selfheal");
            let fx = machine.handle(Input::SpawnFailed(why), t0.into_std());
            apply(deps, start, &progress.ts, &mut machine, None, fx).await?;
            return Ok(());
        }
    };
    info!(session = id, run_id = %start.run_id, agent = %start.agent.name, "agent started");

    let deadline = t0 + timeout;
    let mut tick = tokio::time::interval(tick_period(deps.edit_interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !machine.is_over() {
        let agent = running
            .as_mut()
            .expect("the agent runs until the machine is over");
        let input = tokio::select! {
            out = agent.output.recv() => match out {
                Some(Output::Stdout(line)) => {
                    let line = deps.redactor.redact(&line);
                    let now = Instant::now().into_std();
                    let mut fx = vec![];
                    for event in parse_line(&line) {
                        fx.extend(machine.handle(Input::Agent(event), now));
                    }
                    apply(deps, start, &progress.ts, &mut machine, running.as_ref(), fx).await?;
                    continue;
                }
                Some(Output::Stderr(line)) => Input::Stderr(deps.redactor.redact(&line)),
                Some(Output::Exited { code }) => Input::Exited { code },
                // The supervisor always reports the exit before closing; a
                // closed channel without it means the process vanished.
                None => Input::Exited { code: None },
            },
            _ = tick.tick() => Input::Tick,
            _ = tokio::time::sleep_until(deadline) => Input::TimedOut { limit: timeout },
            _ = shutdown.cancelled() => Input::Shutdown,
        };
        let fx = machine.handle(input, Instant::now().into_std());
        apply(
            deps,
            start,
            &progress.ts,
            &mut machine,
            running.as_ref(),
            fx,
        )
        .await?;
    }
    // Dropping the handle kills whatever is left of the agent's process group.
    drop(running);
    Ok(())
}

/// Edits are checked a few times per interval so that one lands soon after it is due.
fn tick_period(edit_interval: Duration) -> Duration {
    (edit_interval / 4).max(Duration::from_millis(10))
}

async fn apply(
    deps: &Deps,
    start: &Start,
    progress_ts: &str,
    machine: &mut Machine,
    agent: Option<&command::Running>,
    effects: Vec<Effect>,
) -> Result<()> {
    let id = start.session_id;
    for effect in effects {
        match effect {
            Effect::Record { kind, text } => deps.store.add_event(id, kind, &text)?,
            Effect::Post(text) => {
                if let Err(e) = deps
                    .web
                    .post(&start.channel, Some(&start.thread_ts), &text, None)
                    .await
                {
                    warn!(session = id, error = %e, "could not post to the healing thread");
                }
            }
            Effect::EditProgress => {
                let (text, blocks) = render::progress(&machine.view(Instant::now().into_std()));
                if let Err(e) = deps
                    .web
                    .update(&start.channel, progress_ts, &text, Some(&blocks))
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
            Effect::Finish(ending) => {
                let pr = machine.pr_url().map(str::to_string);
                deps.store
                    .finish(id, ending.status, Some(&ending.summary), pr.as_deref())?;
                info!(
                    session = id,
                    status = ending.status.as_str(),
                    "healing session ended"
                );
                let text = render::final_message(&start.run_id, &ending, pr.as_deref());
                if let Err(e) = deps
                    .web
                    .post(&start.channel, Some(&start.thread_ts), &text, None)
                    .await
                {
                    warn!(session = id, error = %e, "could not post the session's outcome");
                }
            }
        }
    }
    Ok(())
}
