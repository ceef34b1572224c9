//! Wires the parts together and runs the bot until it is told to stop.
//!
//! [`App::build`] connects to the store and Slack, builds the [`Parts`] the
//! app and the slash commands share, and recovers what a previous process
//! left unfinished; [`App::serve`] starts the Socket Mode listener and routes
//! what it delivers. Every spawned task belongs to the app's [`TaskTracker`],
//! and shutdown waits for them (at most [`crate::config::SHUTDOWN_GRACE`]).
//!
//! # Layout
//! - `router.rs`: events to per-thread workers (one thread's events in order,
//!   different threads concurrently), and each event to its handler.
//! - `heal.rs`: a recognised failure: heal here, point the other notified
//!   channels at the healing thread, wait for a copy, heal top-level.
//! - `people.rs`: people in threads: `stop`, guidance, fix requests, follow-ups.
//! - `shortcut.rs`: the "Fix with selfheal" message shortcut.
//! - `buttons.rs`: the Stop button, and the admins' buttons on the Home tab.
//! - `home.rs`: the Home tab, published when opened and kept up to date.
//! - `recovery.rs`: at start, what a crash or a stop left: interrupted
//!   sessions, re-runs, decisions whose timers were lost; with replicas, the
//!   same for the sessions of a replica whose lease ran out.
//! - `fleet.rs`: with replicas on PostgreSQL, the heartbeat that keeps this
//!   replica's leases, the take-over of a stopped replica's sessions, and
//!   controls (Stop, replies) handed to the replica that runs the session.
//! - `watch.rs`: the pull requests selfheal opened, asked about until they
//!   are merged or closed, which their threads are told once.
//! - `policy.rs`: the decisions of the three above, pure and table-tested.
//!   The rest of `app` gathers facts for it and carries its decisions out.

mod buttons;
mod fleet;
mod heal;
mod home;
mod next_run;
mod people;
pub mod policy;
mod recovery;
mod router;
mod shortcut;
mod watch;

use std::sync::Arc;

use anyhow::Result;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::commands::CommandContext;
use crate::config::{Config, HealSettings, Runner};
use crate::dbt::Dbt;
use crate::forge::Forge;
use crate::parts::Parts;
use crate::recognize::{Identity, Recognizer};
use crate::redact::Redactor;
use crate::runlog::SourceSettings;
use crate::session::controls::{Caps, Controls};
use crate::session::driver::{self, Deps, Healing, Start};
use crate::session::sink::Sink;
use crate::slack::channels::Channels;
use crate::slack::socket::{Listener, SocketSettings};
use crate::slack::web::{SlackError, SlackWeb, WebSettings};
use policy::Decision;
use router::Router;

/// The running bot.
pub struct App {
    /// Config, store, Slack gateway and channels, shared with the commands.
    parts: Arc<Parts>,
    recognizer: Recognizer,
    /// Who selfheal is in Slack (for mentions).
    me: Identity,
    /// What `/selfheal` handlers use; one for the app's life (it caches admins).
    commands: CommandContext,
    /// What every session's driver is given (cloned per session).
    deps: Deps,
    /// Hands Home tab events to the task that publishes the views.
    home: home::Home,
    /// Owns every task the app spawns, so shutdown can wait for them.
    tasks: TaskTracker,
    /// Cancelled once to stop everything: the listener, timers and sessions.
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
        let store = crate::store::Store::open(&cfg.db_path)?.with_lease(cfg.lease);
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let mut web_settings = WebSettings {
            metrics: metrics.clone(),
            ..WebSettings::from_config(&cfg)
        };
        // Replicas book each channel's writes in the store they share.
        if store.is_shared() {
            web_settings.book = Arc::new(fleet::StoreBook {
                store: store.clone(),
                pace: web_settings.pace,
            });
        }
        let web = SlackWeb::connect(
            &cfg.slack.api_url,
            cfg.slack.bot_token.expose(),
            web_settings,
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
        // One folder per app instance: session ids restart with every database.
        static INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let instance = INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let work_root =
            std::env::temp_dir().join(format!("selfheal-{}-{instance}", std::process::id()));
        let deps = Deps {
            store: store.clone(),
            sink: Sink::Slack(Box::new(web.clone())),
            redactor: Redactor::new(secret_values(&cfg)),
            edit_interval: cfg.edit_interval,
            prior_attempts: cfg.prior_attempts,
            work_root,
            healing: Arc::new(healing(&cfg.heal)?),
            controls: Controls::default(),
            caps: Caps::new(cfg.max_sessions, cfg.max_sessions_per_schedule),
            metrics: metrics.clone(),
        };
        let parts = Arc::new(Parts {
            cfg,
            store,
            web,
            channels,
            changes: tokio::sync::Notify::new(),
            metrics,
        });
        let app = Arc::new(App {
            commands: CommandContext::new(parts.clone()),
            parts,
            recognizer,
            me,
            deps,
            home: home::Home::new(),
            tasks: TaskTracker::new(),
            shutdown,
        });
        app.recover().await?;
        Ok(app)
    }

    /// Connects Socket Mode and handles events until shutdown, then stops
    /// running sessions (recorded as interrupted, threads told).
    pub async fn serve(self: Arc<Self>) -> Result<()> {
        let cfg = &self.parts.cfg;
        self.start_fleet();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let listener = Listener::start(
            &cfg.slack.api_url,
            cfg.slack.app_token.expose(),
            &SocketSettings {
                connections: 2,
                reconnect_secs: 3,
                ping_secs: cfg.socket_ping.as_secs(),
                metrics: self.parts.metrics.clone(),
            },
            tx,
        )
        .await?;
        if let Some(addr) = cfg.http_addr {
            let service = crate::service::Service {
                metrics: self.parts.metrics.clone(),
                store: self.parts.store.clone(),
                caps: self.deps.caps.clone(),
            };
            crate::service::start(addr, service, &self.tasks, self.shutdown.clone()).await?;
        }
        // Only a forge with an API can say whether a pull request was merged.
        if self.deps.healing.forge.has_api() {
            self.tasks.spawn(self.clone().watch_prs());
        }
        // Only a scheduler with an API can say whether a later run passed.
        let heal = &self.deps.healing.settings;
        let interval = heal.retries.next_run_poll;
        if let Some(Ok(source)) = heal
            .run_log_source
            .as_ref()
            .filter(|_| !interval.is_zero())
            .map(crate::runlog::Source::from_settings)
        {
            // The hosted schedulers (the ones that can re-run) can list runs too.
            if source.can_retry() {
                self.tasks
                    .spawn(self.clone().watch_next_runs(source, interval));
            }
        }
        self.home.start(&self);
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
        if tokio::time::timeout(cfg.shutdown_grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!("some sessions did not finish within the shutdown grace period");
        }
        // Whatever did not end in time is another replica's to take over now.
        if let Err(e) = self.parts.store.release_leases() {
            warn!(
                error = format!("{e:#}"),
                "could not release this replica's session leases"
            );
        }
        // Sessions remove their own folders; this removes the (now empty) root.
        let _ = std::fs::remove_dir_all(&self.deps.work_root);
        Ok(())
    }

    /// Runs a claimed session to its end, owned by the app's task tracker.
    fn spawn_session(&self, start: Start) {
        let drive = driver::drive(self.deps.clone(), start, self.shutdown.clone());
        // The Home tab lists running sessions: it changes as one starts and ends.
        let parts = self.parts.clone();
        parts.changed();
        self.tasks.spawn(async move {
            drive.await;
            parts.changed();
        });
    }
}

/// Logs a decision that leaves nothing to do: an [`Decision::Ignore`] (at
/// debug), or, a bug, a decision the policy does not give at this moment.
fn nothing_to_do(decision: &Decision, at: &str) {
    match decision {
        Decision::Ignore(why) => debug!(?why, at, "nothing to do"),
        other => {
            error!(decision = ?other, at, "the healing policy gave a decision this moment cannot carry out; ignored")
        }
    }
}

/// Builds what sessions need for real healing: dbt and the forge.
pub fn healing(settings: &HealSettings) -> Result<Healing> {
    let dbt = Dbt {
        exe: settings.dbt.exe.clone(),
        profiles_dir: settings.dbt.profiles_dir.clone(),
        target: settings.dbt.ci_target.clone(),
        env: vec![],
        timeout: settings.dbt.timeout,
        read_only: false,
    };
    let forge = Forge::from_settings(settings)?;
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
    let forge = &cfg.heal.forge;
    for token in [
        &cfg.heal.github_token,
        &forge.gitlab_token,
        &forge.gitea_token,
        &forge.bitbucket_token,
        &forge.azure_devops_token,
    ]
    .into_iter()
    .flatten()
    {
        values.push(token.expose().to_string());
    }
    match &cfg.heal.run_log_source {
        Some(SourceSettings::Paradime(p)) => {
            values.extend(p.auth.secrets().into_iter().map(str::to_string));
        }
        Some(SourceSettings::DbtCloud(d)) => values.push(d.token.expose().to_string()),
        _ => {}
    }
    // The PostgreSQL URL's password.
    if let Some(password) = url::Url::parse(&cfg.db_path.to_string_lossy())
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    {
        values.push(password);
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
