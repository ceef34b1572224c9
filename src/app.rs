//! Wires the parts together and runs the bot until it is told to stop.
//!
//! [`App::build`] connects to the store and Slack; [`App::serve`] starts the
//! Socket Mode listener and routes what it delivers. Events of one Slack thread
//! go to one worker and are handled in order; different threads run
//! concurrently. Every spawned task belongs to the app's [`TaskTracker`], and
//! shutdown waits for them (at most [`crate::config::SHUTDOWN_GRACE`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::config::{Config, HealSettings, Runner, Schedule};
use crate::dbt::Dbt;
use crate::domain::{EventKind, FollowUp, Place, SessionId};
use crate::forge::{parse_github_remote, Forge, ForgeToken, GitHub};
use crate::recognize::{Failure, InboundMessage, Recognizer};
use crate::redact::Redactor;
use crate::runlog::SourceSettings;
use crate::session::controls::{Caps, Control, Controls};
use crate::session::driver::{self, Deps, Healing, Start};
use crate::session::sink::Sink;
use crate::slack::channels::Channels;
use crate::slack::socket::{Listener, SocketSettings};
use crate::slack::web::{SlackError, SlackWeb, WebSettings};
use crate::slack::{render, Inbound};
use crate::store::{Claim, Status, Store};

/// A per-thread worker that saw nothing for this long goes away.
const WORKER_IDLE: Duration = Duration::from_secs(30);

/// The running bot's shared parts.
pub struct App {
    cfg: Arc<Config>,
    store: Store,
    web: SlackWeb,
    channels: Channels,
    recognizer: Recognizer,
    /// Who selfheal is in Slack (for mentions).
    me: crate::recognize::Identity,
    /// What `/selfheal` handlers use; one for the app's life (it caches admins).
    commands: crate::commands::CommandContext,
    deps: Deps,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// Builds the app and serves until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let app = App::build(config, shutdown).await?;
    app.serve().await
}

impl App {
    /// Opens the store, checks the bot token, learns the channels and recovers
    /// sessions a previous process left unfinished.
    pub async fn build(cfg: Config, shutdown: CancellationToken) -> Result<Arc<App>> {
        let store = Store::open(&cfg.db_path)?;
        let web = SlackWeb::connect(
            &cfg.slack.api_url,
            cfg.slack.bot_token.expose(),
            WebSettings {
                channel_interval: cfg.channel_interval,
                timeout: cfg.api_timeout,
                max_attempts: 3,
                max_rate_limited_attempts: 5,
            },
        )?;
        let me = match web.auth_test().await {
            Ok(me) => me,
            // Said as what to do: these are the failures a first start meets.
            Err(SlackError::Http(why)) => anyhow::bail!(
                "cannot reach {}: {why} (SLACK_API_URL; `selfheal check` tells more)",
                crate::http::host_of(&cfg.slack.api_url)
            ),
            Err(SlackError::Api(code)) if crate::check::is_token_error(&code) => anyhow::bail!(
                "Slack rejected SLACK_BOT_TOKEN ({code}); `selfheal check` tells what to do"
            ),
            Err(e) => {
                return Err(anyhow::Error::new(e).context("checking the bot token with auth.test"))
            }
        };
        info!(user = %me.user_id, bot = %me.bot_id, "authenticated with Slack");
        if cfg.notifier_bots.is_empty() {
            warn!(
                "SELFHEAL_NOTIFIER_BOTS is empty: any bot's failure notification can start healing; \
                 set it to your scheduler's bot id, app id or username"
            );
        }
        let channels = Channels::new(web.clone());
        channels.load().await;
        let recognizer = Recognizer::new(
            me.clone(),
            cfg.schedules
                .names()
                .into_iter()
                .map(str::to_string)
                .collect(),
            cfg.notifier_bots.clone(),
            cfg.overrides.clone(),
        );
        let redactor = Redactor::new(secret_values(&cfg));
        // One folder per app instance: session ids restart with every database.
        static INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let instance = INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let work_root =
            std::env::temp_dir().join(format!("selfheal-{}-{instance}", std::process::id()));
        let deps = Deps {
            store: store.clone(),
            sink: Sink::Slack(web.clone()),
            redactor,
            edit_interval: cfg.edit_interval,
            prior_attempts: cfg.prior_attempts,
            work_root,
            healing: Arc::new(healing(&cfg.heal)?),
            controls: Controls::default(),
            caps: Caps::new(cfg.max_sessions, cfg.max_sessions_per_schedule),
        };
        let cfg = Arc::new(cfg);
        let commands = crate::commands::CommandContext::new(
            cfg.clone(),
            store.clone(),
            web.clone(),
            channels.clone(),
            cfg.admins.clone(),
        );
        let app = Arc::new(App {
            cfg,
            commands,
            store,
            web,
            channels,
            recognizer,
            me,
            deps,
            tasks: TaskTracker::new(),
            shutdown,
        });
        app.recover().await?;
        Ok(app)
    }

    /// Connects Socket Mode and handles events until shutdown, then stops
    /// running sessions (recorded as interrupted, threads told).
    pub async fn serve(self: Arc<Self>) -> Result<()> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let listener = Listener::start(
            &self.cfg.slack.api_url,
            self.cfg.slack.app_token.expose(),
            &SocketSettings {
                connections: 2,
                reconnect_secs: 3,
                ping_secs: self.cfg.socket_ping.as_secs(),
            },
            tx,
        )
        .await?;
        let mut router = Router::default();
        loop {
            tokio::select! {
                inbound = rx.recv() => match inbound {
                    Some(inbound) => router.dispatch(&self, inbound),
                    None => break,
                },
                _ = self.shutdown.cancelled() => break,
            }
        }
        info!("shutting down");
        listener.shutdown().await;
        self.tasks.close();
        if tokio::time::timeout(self.cfg.shutdown_grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!("some sessions did not finish within the shutdown grace period");
        }
        // Sessions remove their own folders; this removes the (now empty) root.
        let _ = std::fs::remove_dir_all(&self.deps.work_root);
        Ok(())
    }

    /// Sessions still marked running belong to a process that died or was
    /// stopped before they ended. Each is recorded as interrupted, what is
    /// left of its agent is killed and its thread is told. Then (unless
    /// `SELFHEAL_ON_RESTART=report`) every session interrupted in the last hour,
    /// by a crash or by a stop, runs again, once.
    async fn recover(self: &Arc<Self>) -> Result<()> {
        let why = "selfheal restarted before it finished";
        let rerun = self.cfg.rerun_interrupted && !crate::commands::paused(&self.store)?;
        for s in self.store.unfinished_sessions()? {
            let killed = crate::agent::command::kill_tagged(&self.store.session_tag(s.id));
            if killed > 0 {
                warn!(
                    session = s.id,
                    killed, "killed processes left over from the session's agent"
                );
            }
            // A re-run claimed just before a crash that never got going: start it now.
            if s.rerun_of.is_some() && s.status == Status::Claimed {
                if let Some(start) = self.rerun_start(&s)? {
                    warn!(session = s.id, run_id = %s.run_id, "starting a re-run claimed before the restart");
                    self.spawn_session(start);
                    continue;
                }
            }
            if !self
                .store
                .finish(s.id, Status::Interrupted, Some(why), None)?
            {
                continue;
            }
            warn!(session = s.id, run_id = %s.run_id, "recovered an interrupted session");
            if s.thread_ts.is_empty() {
                continue;
            }
            if let Some(progress) = &s.progress_ts {
                let (text, blocks) = render::progress_interrupted(&s.run_id, &s.agent);
                if let Err(e) = self
                    .web
                    .update(&s.channel, progress, &text, Some(&blocks))
                    .await
                {
                    warn!(session = s.id, error = %e, "could not close the interrupted progress message");
                }
            }
            if !rerun {
                self.tell(&s, &render::interrupted(&s.run_id, why)).await;
            }
        }
        if rerun {
            let since = chrono::Utc::now() - chrono::Duration::hours(1);
            for s in self.store.rerunnable(since)? {
                if !self.cfg.agents.contains_key(&s.agent)
                    || self.cfg.schedules.get(&s.schedule).is_none()
                {
                    continue;
                }
                let Some(id) = self.store.claim_rerun(s.id)? else {
                    continue;
                };
                self.tell(&s, &render::rerunning(&s.run_id)).await;
                if let Some(start) = self.rerun_start(&self.store.session(id)?)? {
                    self.spawn_session(start);
                }
            }
        }
        self.resume_pending_decisions()
    }

    /// Posts in a session's thread; a failure is logged, not fatal.
    async fn tell(&self, s: &crate::store::SessionRow, text: &str) {
        if let Err(e) = self
            .web
            .post(&s.channel, Some(&s.thread_ts), text, None)
            .await
        {
            warn!(session = s.id, error = %e, "could not post in the session's thread");
        }
    }

    /// What a re-run needs to start: the interrupted session's agent, schedule
    /// and the run log it read. None when the agent or schedule is gone.
    fn rerun_start(&self, row: &crate::store::SessionRow) -> Result<Option<Start>> {
        let (Some(agent), Some(schedule)) = (
            self.cfg.agents.get(&row.agent),
            self.cfg.schedules.get(&row.schedule),
        ) else {
            return Ok(None);
        };
        // The notification text is only the run log of last resort; the
        // interrupted session stored the log it read, which is better.
        let notification = match row.rerun_of {
            Some(before) => self
                .store
                .events(before)?
                .into_iter()
                .find(|(kind, _)| EventKind::parse(kind) == Some(EventKind::RunLog))
                .map(|(_, text)| text)
                .unwrap_or_default(),
            None => String::new(),
        };
        Ok(Some(Start {
            session_id: SessionId(row.id),
            schedule: row.schedule.clone(),
            run_id: row.run_id.clone(),
            place: Place::thread(&row.channel, &row.thread_ts),
            agent: agent.clone(),
            base_branch: schedule.git_branch.clone(),
            notification,
            followup: None,
        }))
    }

    fn spawn_session(&self, start: Start) {
        self.tasks.spawn(driver::drive(
            self.deps.clone(),
            start,
            self.shutdown.clone(),
        ));
    }

    /// Decisions that wait for a window (a courtesy pointer, healing top-level
    /// when the healing channel's copy never came) live in timers, which a
    /// crash loses. For failures seen in the last hour, start them again: the
    /// store's claims keep anything already done from happening twice.
    fn resume_pending_decisions(self: &Arc<Self>) -> Result<()> {
        let since = chrono::Utc::now() - chrono::Duration::hours(1);
        for (schedule_name, run_id, has_session) in self.store.recent_failures(since)? {
            let Some(schedule) = self.cfg.schedules.get(&schedule_name) else {
                continue;
            };
            if self.healing_channel(schedule.name.as_str())?.is_none() {
                continue;
            }
            let f = Failure {
                schedule: schedule_name,
                run_id,
            };
            if !has_session {
                self.await_healing_copy(f, String::new());
                continue;
            }
            let Some(session) = self.store.session_for_failure(&f.schedule, &f.run_id)? else {
                continue;
            };
            let app = self.clone();
            self.tasks.spawn(async move {
                let Some(schedule) = app.cfg.schedules.get(&f.schedule) else {
                    return;
                };
                for other in schedule.failure_channels() {
                    if app.channels.is(&other, &session.channel).await {
                        continue;
                    }
                    let Some(other_id) = app.channels.id_of(&other).await else {
                        continue;
                    };
                    if let Ok(false) = app.store.pointer_claimed(&f.schedule, &f.run_id, &other_id)
                    {
                        app.pointer_after_window(f.clone(), other_id, session.channel.clone());
                    }
                }
            });
        }
        Ok(())
    }

    async fn handle(self: &Arc<Self>, inbound: Inbound) {
        let result = match inbound {
            Inbound::Hello => Ok(()),
            Inbound::Message { event_id, msg } => self.on_message(&event_id, &msg).await,
            Inbound::Command { request, reply } => {
                let answer = crate::commands::handle(&self.commands, &request).await;
                if let Err(answer) = reply.send(answer) {
                    // The ack went out with a holding answer: follow up ephemerally.
                    self.web
                        .post_ephemeral(&request.channel_id, &request.user_id, &answer.text)
                        .await
                        .map_err(anyhow::Error::from)
                } else {
                    Ok(())
                }
            }
            Inbound::Action(action) => self.on_action(&action).await,
        };
        if let Err(e) = result {
            error!(error = ?e, "failed to handle a Slack event");
        }
    }

    async fn on_message(self: &Arc<Self>, event_id: &str, msg: &InboundMessage) -> Result<()> {
        // Recognition is pure and cheap, so ordinary chatter costs no store write.
        // selfheal's own messages are never notifications, except the ones
        // `selfheal notify` posts for dbt Core users (marked by their block id).
        let failure = if self.recognizer.is_mine(msg) {
            is_notify_post(msg)
                .then(|| self.recognizer.recognize_content(msg))
                .flatten()
        } else {
            self.recognizer.recognize(msg)
        };
        let Some(failure) = failure else {
            return self.on_thread_reply(msg).await;
        };
        if !self.store.first_sight_of_event(event_id)? {
            debug!(event_id, "redelivered event ignored");
            return Ok(());
        }
        let text = crate::recognize::message_text(msg);
        self.on_failure(failure, &msg.channel, &msg.ts, &text).await
    }

    /// Where a schedule heals right now: its YAML, overridden by `/selfheal`;
    /// None when self-healing is off for it or paused everywhere.
    fn healing_channel(&self, schedule: &str) -> Result<Option<String>> {
        if crate::commands::paused(&self.store)? {
            return Ok(None);
        }
        Ok(
            crate::commands::effective(&self.cfg, &self.store, schedule)?
                .filter(|e| e.enabled)
                .and_then(|e| e.healing_channel),
        )
    }

    /// Buttons on selfheal's messages: Stop ends the session's agent.
    async fn on_action(self: &Arc<Self>, action: &crate::slack::ActionRequest) -> Result<()> {
        if action.action_id != render::STOP_ACTION {
            // View PR is a link button: Slack opens it; nothing to do.
            return Ok(());
        }
        let Some(id) = action
            .value
            .as_deref()
            .and_then(|v| v.parse::<SessionId>().ok())
        else {
            return Ok(());
        };
        let stop = Control::Stop {
            user: action.user_id.clone(),
        };
        if !self.deps.controls.send(id, stop) {
            self.web
                .post_ephemeral(
                    &action.channel_id,
                    &action.user_id,
                    "That session has already ended.",
                )
                .await?;
        }
        Ok(())
    }

    /// A person's message in a thread: `stop` or guidance for the session
    /// running there, or a mention asking selfheal to fix the failure the
    /// thread is about. Everything else, and threads selfheal does not own,
    /// is ignored.
    async fn on_thread_reply(self: &Arc<Self>, msg: &InboundMessage) -> Result<()> {
        let (Some(thread_ts), Some(user)) = (&msg.thread_ts, &msg.user) else {
            return Ok(());
        };
        let is_person = msg.bot_id.is_none() && msg.subtype.is_none() && !msg.edited;
        if !is_person || self.recognizer.is_mine(msg) {
            return Ok(());
        }
        let mention = format!("<@{}>", self.me.user_id);
        let mentioned = msg.text.contains(&mention);
        let text = msg.text.replace(&mention, "").trim().to_string();
        if let Some(session) = self.store.session_in_thread(&msg.channel, thread_ts)? {
            if session.status.is_terminal() {
                if mentioned {
                    return self.start_followup(session, user, &text).await;
                }
                return Ok(());
            }
            let control = if text.eq_ignore_ascii_case("stop") {
                Control::Stop { user: user.clone() }
            } else {
                Control::Reply {
                    user: user.clone(),
                    text: text.clone(),
                }
            };
            self.deps.controls.send(SessionId(session.id), control);
            return Ok(());
        }
        if !mentioned {
            return Ok(());
        }
        if crate::commands::paused(&self.store)? {
            self.web
                .post_ephemeral(
                    &msg.channel,
                    user,
                    "selfheal is paused (`/selfheal resume` turns it back on).",
                )
                .await?;
            return Ok(());
        }
        // "Fix with DinoAI": a mention under any recognised failure notification.
        let Some((schedule_name, run_id)) = self.store.failure_at(&msg.channel, thread_ts)? else {
            return Ok(());
        };
        let Some(schedule) = self.cfg.schedules.get(&schedule_name) else {
            return Ok(());
        };
        let agent = requested_agent(&text).or(self.cfg.default_agent.clone());
        let f = Failure {
            schedule: schedule_name,
            run_id,
        };
        info!(schedule = %f.schedule, run_id = %f.run_id, user = %user, "fix requested in a thread");
        self.start_session_with(
            &f,
            schedule,
            &msg.channel,
            Some(thread_ts),
            "",
            agent.as_deref(),
        )
        .await
    }

    /// A mention after a session ended: a follow-up session in the same
    /// thread, on the same branch and pull request, told what happened so far.
    async fn start_followup(
        self: &Arc<Self>,
        previous: crate::store::SessionRow,
        user: &str,
        text: &str,
    ) -> Result<()> {
        if crate::commands::paused(&self.store)? {
            self.web
                .post_ephemeral(
                    &previous.channel,
                    user,
                    "selfheal is paused (`/selfheal resume` turns it back on).",
                )
                .await?;
            return Ok(());
        }
        let agent_name = requested_agent(text).unwrap_or_else(|| previous.agent.clone());
        let Some(agent) = self.cfg.agents.get(&agent_name) else {
            self.web
                .post(
                    &previous.channel,
                    Some(&previous.thread_ts),
                    &format!("I don't know the agent `{}`.", render::escape(&agent_name)),
                    None,
                )
                .await?;
            return Ok(());
        };
        let Some(id) = self.store.claim_followup(&previous, &agent.name)? else {
            return Ok(());
        };
        let mut history = String::new();
        for s in self
            .store
            .sessions_in_thread(&previous.channel, &previous.thread_ts)?
        {
            if s.id == id {
                continue;
            }
            history.push_str(&format!(
                "- session {} ({}): {}{}{}\n",
                s.id,
                s.agent,
                s.status.as_str(),
                s.summary
                    .as_deref()
                    .map(|x| format!(" — {x}"))
                    .unwrap_or_default(),
                s.pr_url
                    .as_deref()
                    .map(|p| format!(" — PR {p}"))
                    .unwrap_or_default(),
            ));
            for (kind, event) in self.store.events(s.id)? {
                if EventKind::parse(&kind) == Some(EventKind::Guidance) {
                    history.push_str(&format!("  {event}\n"));
                }
            }
        }
        let pr_url = (previous.status == Status::Fixed)
            .then(|| previous.pr_url.clone())
            .flatten();
        let text_shown = format!("🦖 Follow-up from <@{user}> — starting a new healing session...");
        if let Err(e) = self
            .web
            .post(
                &previous.channel,
                Some(&previous.thread_ts),
                &text_shown,
                None,
            )
            .await
        {
            warn!(session = id, error = %e, "could not post the follow-up reply");
        }
        let base_branch = self
            .cfg
            .schedules
            .get(&previous.schedule)
            .and_then(|s| s.git_branch.clone());
        let start = Start {
            session_id: SessionId(id),
            schedule: previous.schedule.clone(),
            run_id: previous.run_id.clone(),
            place: Place::thread(&previous.channel, &previous.thread_ts),
            agent: agent.clone(),
            base_branch,
            notification: String::new(),
            followup: Some(FollowUp {
                by: user.to_string(),
                instruction: text.to_string(),
                history,
                pr_url,
            }),
        };
        self.spawn_session(start);
        Ok(())
    }

    /// `text` is the notification's text: the run log of last resort.
    async fn on_failure(
        self: &Arc<Self>,
        f: Failure,
        channel: &str,
        ts: &str,
        text: &str,
    ) -> Result<()> {
        let Some(schedule) = self.cfg.schedules.get(&f.schedule) else {
            return Ok(());
        };
        if !self
            .store
            .record_sighting(&f.schedule, &f.run_id, channel, ts)?
        {
            debug!(schedule = %f.schedule, run_id = %f.run_id, channel, "failure already seen in this channel");
            return Ok(());
        }
        info!(schedule = %f.schedule, run_id = %f.run_id, channel, "failure notification recognised");
        let Some(healing) = self.healing_channel(&f.schedule)? else {
            debug!(schedule = %f.schedule, "self-healing is off (YAML, /selfheal or paused)");
            return Ok(());
        };
        if self.channels.is(&healing, channel).await {
            return self
                .start_session(&f, schedule, channel, Some(ts), text)
                .await;
        }
        if !self.is_notified_channel(schedule, channel).await {
            info!(schedule = %f.schedule, channel, "failure posted in a channel the schedule does not notify; ignored");
            return Ok(());
        }
        match self.store.session_for_failure(&f.schedule, &f.run_id)? {
            Some(s) if !s.thread_ts.is_empty() => {
                self.post_pointer(&f, channel, Some(ts), &s.channel).await;
            }
            _ => self.await_healing_copy(f, text.to_string()),
        }
        Ok(())
    }

    async fn is_notified_channel(&self, schedule: &Schedule, channel: &str) -> bool {
        for c in schedule.failure_channels() {
            if self.channels.is(&c, channel).await {
                return true;
            }
        }
        false
    }

    /// The failure showed up in another channel first. If the healing
    /// channel's copy does not arrive within the window, heal top-level there.
    fn await_healing_copy(self: &Arc<Self>, f: Failure, text: String) {
        let app = self.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(app.cfg.courtesy_window) => {}
                _ = app.shutdown.cancelled() => return,
            }
            let result = async {
                if app.store.session_for_failure(&f.schedule, &f.run_id)?.is_some() {
                    return Ok(());
                }
                let Some(schedule) = app.cfg.schedules.get(&f.schedule) else {
                    return Ok(());
                };
                let Some(healing) = app.healing_channel(&f.schedule)? else {
                    return Ok(());
                };
                let Some(healing_id) = app.channels.id_of(&healing).await else {
                    warn!(channel = healing, "the healing channel is unknown to Slack; cannot heal");
                    return Ok(());
                };
                info!(schedule = %f.schedule, run_id = %f.run_id, "no notification in the healing channel; starting top-level");
                app.start_session(&f, schedule, &healing_id, None, &text)
                    .await
            }
            .await;
            if let Err(e) = result {
                error!(error = ?e, "failed to start a top-level healing session");
            }
        });
    }

    /// Claims the failure and, if this call won the claim, posts the healing
    /// reply, starts the agent and points the other channels at the thread.
    async fn start_session(
        self: &Arc<Self>,
        f: &Failure,
        schedule: &Schedule,
        channel: &str,
        thread_ts: Option<&str>,
        notification: &str,
    ) -> Result<()> {
        self.start_session_with(f, schedule, channel, thread_ts, notification, None)
            .await
    }

    /// Starts a session; `manual_agent` is set for a fix someone asked for in
    /// the thread (its agent, and no pointers in other channels).
    async fn start_session_with(
        self: &Arc<Self>,
        f: &Failure,
        schedule: &Schedule,
        channel: &str,
        thread_ts: Option<&str>,
        notification: &str,
        manual_agent: Option<&str>,
    ) -> Result<()> {
        let agent = match manual_agent {
            Some(name) => self.cfg.agents.get(name),
            None => crate::commands::effective(&self.cfg, &self.store, &schedule.name)?
                .and_then(|e| e.agent(&self.cfg).map(str::to_string))
                .and_then(|name| self.cfg.agents.get(&name)),
        };
        let Some(agent) = agent else {
            warn!(schedule = %f.schedule, agent = ?manual_agent, "no such agent; nothing started");
            if let Some(ts) = thread_ts {
                let known: Vec<&str> = self.cfg.agents.keys().map(String::as_str).collect();
                let text = format!(
                    "I don't know the agent `{}`. Known agents: {}.",
                    render::escape(manual_agent.unwrap_or("")),
                    known.join(", ")
                );
                self.web.post(channel, Some(ts), &text, None).await?;
            }
            return Ok(());
        };
        let claim = self.store.claim_session(
            &f.schedule,
            &f.run_id,
            channel,
            thread_ts.unwrap_or(""),
            &agent.name,
        )?;
        let Claim::New(id) = claim else {
            debug!(schedule = %f.schedule, run_id = %f.run_id, "a session for this failure exists already");
            return Ok(());
        };
        let posted = match self
            .web
            .answer(channel, thread_ts, render::HEALING_REPLY)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                warn!(session = id, error = %e, "could not post the healing reply");
                self.store.finish(
                    id,
                    Status::Failed,
                    Some(&format!("could not post in Slack: {e}")),
                    None,
                )?;
                return Ok(());
            }
        };
        let thread = match thread_ts {
            Some(t) => t.to_string(),
            None => {
                self.store.set_thread_ts(id, &posted.ts)?;
                posted.ts.clone()
            }
        };
        let start = Start {
            session_id: SessionId(id),
            schedule: f.schedule.clone(),
            run_id: f.run_id.clone(),
            place: Place::thread(channel, thread),
            agent: agent.clone(),
            base_branch: schedule.git_branch.clone(),
            notification: notification.to_string(),
            followup: None,
        };
        self.spawn_session(start);

        if manual_agent.is_some() {
            return Ok(());
        }
        for other in schedule.failure_channels() {
            if self.channels.is(&other, channel).await {
                continue;
            }
            let Some(other_id) = self.channels.id_of(&other).await else {
                warn!(channel = %other, "a notified channel is unknown to Slack; no pointer posted there");
                continue;
            };
            match self.store.sighting(&f.schedule, &f.run_id, &other_id)? {
                Some(ts) => self.post_pointer(f, &other_id, Some(&ts), channel).await,
                None => self.pointer_after_window(f.clone(), other_id, channel.to_string()),
            }
        }
        Ok(())
    }

    /// Waits for the channel's copy of the notification; posts the pointer
    /// top-level if it never came.
    fn pointer_after_window(self: &Arc<Self>, f: Failure, channel: String, healing: String) {
        let app = self.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(app.cfg.courtesy_window) => {}
                _ = app.shutdown.cancelled() => return,
            }
            match app.store.sighting(&f.schedule, &f.run_id, &channel) {
                Ok(ts) => {
                    app.post_pointer(&f, &channel, ts.as_deref(), &healing)
                        .await
                }
                Err(e) => error!(error = ?e, "failed to look up a sighting"),
            }
        });
    }

    /// Posts the courtesy pointer once per failure and channel.
    async fn post_pointer(
        &self,
        f: &Failure,
        channel: &str,
        thread_ts: Option<&str>,
        healing: &str,
    ) {
        match self.store.claim_pointer(&f.schedule, &f.run_id, channel) {
            Ok(true) => {
                if let Err(e) = self
                    .web
                    .post(channel, thread_ts, &render::pointer(healing), None)
                    .await
                {
                    warn!(channel, error = %e, "could not post the courtesy pointer");
                }
            }
            Ok(false) => {}
            Err(e) => error!(error = ?e, "failed to claim a courtesy pointer"),
        }
    }
}

/// Builds what sessions need for real healing: dbt and the forge.
pub fn healing(settings: &HealSettings) -> Result<Healing> {
    let dbt = Dbt {
        exe: settings.dbt.clone(),
        profiles_dir: settings.dbt_profiles_dir.clone(),
        target: settings.dbt_target.clone(),
        env: vec![],
        timeout: settings.dbt_timeout,
        read_only: false,
    };
    let github_repo = settings.github_repo.clone().or_else(|| {
        settings
            .repo
            .as_deref()
            .and_then(parse_github_remote)
            .map(|(owner, name)| format!("{owner}/{name}"))
    });
    let forge = match (&settings.github_token, github_repo) {
        (Some(token), Some(repo)) => Forge::GitHub(
            GitHub::new(&settings.github_api_url, &repo, ForgeToken::new(token.expose()))
                .context("configuring the GitHub API")?,
        ),
        (Some(_), None) => anyhow::bail!(
            "SELFHEAL_GITHUB_TOKEN is set but the repository is unknown: set SELFHEAL_GITHUB_REPO=owner/name"
        ),
        (None, _) => Forge::Plain {
            web_base: settings.repo_web_url.clone(),
        },
    };
    Ok(Healing {
        settings: settings.clone(),
        dbt,
        forge,
    })
}

/// The values that must never leave the process: Slack tokens and the
/// configured secret environment variables.
fn secret_values(cfg: &Config) -> Vec<String> {
    let mut values = vec![
        cfg.slack.app_token.expose().to_string(),
        cfg.slack.bot_token.expose().to_string(),
    ];
    if let Some(token) = &cfg.heal.github_token {
        values.push(token.expose().to_string());
    }
    match &cfg.heal.run_log_source {
        Some(SourceSettings::Paradime(p)) => {
            values.push(p.api_key.expose().to_string());
            values.push(p.api_secret.expose().to_string());
        }
        Some(SourceSettings::DbtCloud(d)) => values.push(d.token.expose().to_string()),
        _ => {}
    }
    for agent in cfg.agents.values() {
        if let Runner::Llm(llm) = &agent.runner {
            values.extend(llm.api_key_from_env());
        }
    }
    for name in &cfg.secret_env {
        if let Ok(v) = std::env::var(name) {
            values.push(v);
        }
    }
    values
}

/// The agent named in a fix request: `fix with <agent>`.
fn requested_agent(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let at = lower.find("with ")?;
    text[at + 5..]
        .split_whitespace()
        .next()
        .map(|a| {
            a.trim_matches(|c: char| c == '`' || c == '.' || c == ',')
                .to_string()
        })
        .filter(|a| !a.is_empty())
}

/// True for a failure notification posted by `selfheal notify` (with the bot's
/// own token): it carries a block with this id, which no other selfheal
/// message has. Edits of it are still ignored.
fn is_notify_post(msg: &InboundMessage) -> bool {
    !msg.edited
        && msg
            .blocks
            .iter()
            .any(|b| b.get("block_id").and_then(serde_json::Value::as_str) == Some(NOTIFY_BLOCK_ID))
}

/// The block id that marks `selfheal notify`'s posts.
pub const NOTIFY_BLOCK_ID: &str = "selfheal-notify";

/// Hands memory freed since start-up (config parsing, TLS roots, the first
/// connection) back to the OS: glibc keeps it otherwise, and an idle bot's
/// resident size is what people see beside their other services.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own heap bookkeeping.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Routes events to per-thread workers so one thread's events are handled in order.
#[derive(Default)]
struct Router {
    workers: HashMap<String, Worker>,
}

struct Worker {
    tx: mpsc::UnboundedSender<Inbound>,
    handle: JoinHandle<()>,
}

impl Router {
    fn dispatch(&mut self, app: &Arc<App>, inbound: Inbound) {
        let key = match &inbound {
            Inbound::Hello => {
                release_freed_memory();
                return;
            }
            Inbound::Message { msg, .. } => format!(
                "{}:{}",
                msg.channel,
                msg.thread_ts.as_deref().unwrap_or(&msg.ts)
            ),
            // One person's commands in order; they touch no thread.
            Inbound::Command { request, .. } => format!("command:{}", request.user_id),
            Inbound::Action(action) => {
                format!("action:{}:{}", action.channel_id, action.message_ts)
            }
        };
        let mut inbound = inbound;
        if let Some(w) = self.workers.get(&key) {
            match w.tx.send(inbound) {
                Ok(()) => return,
                // The worker went idle and closed; start a new one below.
                Err(mpsc::error::SendError(back)) => inbound = back,
            }
        }
        let previous = self.workers.remove(&key).map(|w| w.handle);
        let (tx, rx) = mpsc::unbounded_channel();
        // The receiver is alive, so this cannot fail.
        let _ = tx.send(inbound);
        let handle = app.tasks.spawn(worker(app.clone(), rx, previous));
        self.workers.insert(key, Worker { tx, handle });
        if self.workers.len() > 4096 {
            self.workers.retain(|_, w| !w.tx.is_closed());
        }
    }
}

/// Handles one thread's events in order. A new worker for the same thread
/// waits for its predecessor, so order holds across worker restarts.
async fn worker(
    app: Arc<App>,
    mut rx: mpsc::UnboundedReceiver<Inbound>,
    previous: Option<JoinHandle<()>>,
) {
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(WORKER_IDLE, rx.recv()) => next.map_err(|_| ()),
            // Events already acknowledged must not be lost: handle what is
            // queued, then go.
            _ = app.shutdown.cancelled() => Err(()),
        };
        match next {
            Ok(Some(inbound)) => app.handle(inbound).await,
            Ok(None) => return,
            Err(_) => {
                rx.close();
                while let Ok(inbound) = rx.try_recv() {
                    app.handle(inbound).await;
                }
                return;
            }
        }
    }
}
