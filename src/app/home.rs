//! The Home tab. A person who opens it gets their view published at once;
//! whoever opened it in the last hour gets it published again when what it
//! shows changes (a session starts or ends, a schedule is switched, healing
//! is paused or resumed: [`Parts::changed`](crate::parts::Parts::changed)),
//! at most once every [`MIN_GAP`] per person. One task owns the viewers, so
//! a storm of changes costs each viewer one publish per gap.
//!
//! The Home tab has no channel to answer a button in: the answer to a
//! person's click (a refusal included) is shown at the top of their view,
//! until their next click or their next visit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::App;
use crate::commands::{effective, Source};
use crate::slack::home::{
    home_view, HomeData, HomeSchedule, HomeSession, Paused, SettingsSource, RECENT_SESSIONS,
};
use crate::store::SessionRow;

/// At most one publish per person in this time.
pub(super) const MIN_GAP: Duration = Duration::from_secs(2);

/// A person who has not opened the Home tab for this long is not kept up
/// to date any more.
const VIEWER_TTL: Duration = Duration::from_secs(60 * 60);

/// At most this many viewers are kept up to date; past it, whoever opened
/// the tab longest ago is forgotten.
const MAX_VIEWERS: usize = 1000;

/// Thread links kept, so that a publish does not ask Slack for permalinks
/// it was given before.
const MAX_LINKS: usize = 2000;

/// The handle the app keeps: it hands events to the Home tab task.
pub(super) struct Home {
    tx: mpsc::UnboundedSender<HomeEvent>,
    /// Taken once, by [`Home::start`].
    rx: Mutex<Option<mpsc::UnboundedReceiver<HomeEvent>>>,
}

enum HomeEvent {
    /// A person opened the Home tab.
    Opened { user: String },
    /// The answer to a person's click on their Home tab.
    Answered { user: String, notice: String },
}

/// A person who opened the Home tab lately.
struct Viewer {
    opened: Instant,
    published: Option<Instant>,
    /// Their view is out of date.
    stale: bool,
    notice: Option<String>,
}

impl Viewer {
    /// When their view may be published next.
    fn due(&self) -> Option<Instant> {
        self.stale
            .then(|| self.published.map_or_else(Instant::now, |at| at + MIN_GAP))
    }
}

impl Home {
    pub(super) fn new() -> Home {
        let (tx, rx) = mpsc::unbounded_channel();
        Home {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Starts the Home tab task, owned by the app's task tracker.
    pub(super) fn start(&self, app: &Arc<App>) {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(rx) = rx {
            app.tasks.spawn(run(app.clone(), rx));
        }
    }

    pub(super) fn opened(&self, user: String) {
        // Closed only at shutdown, when no view needs publishing.
        let _ = self.tx.send(HomeEvent::Opened { user });
    }

    pub(super) fn answered(&self, user: String, notice: String) {
        let _ = self.tx.send(HomeEvent::Answered { user, notice });
    }
}

/// The Home tab task: keeps the viewers and publishes their views when due.
async fn run(app: Arc<App>, mut rx: mpsc::UnboundedReceiver<HomeEvent>) {
    let mut viewers: HashMap<String, Viewer> = HashMap::new();
    let mut links: HashMap<(String, String), String> = HashMap::new();
    loop {
        let due = viewers.values().filter_map(Viewer::due).min();
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            event = rx.recv() => match event {
                None => return,
                Some(HomeEvent::Opened { user }) => {
                    let viewer = viewer(&mut viewers, user);
                    viewer.opened = Instant::now();
                    viewer.notice = None;
                    viewer.stale = true;
                }
                Some(HomeEvent::Answered { user, notice }) => {
                    let viewer = viewer(&mut viewers, user);
                    viewer.notice = Some(notice);
                    viewer.stale = true;
                }
            },
            _ = app.parts.changes.notified() => {
                viewers.retain(|_, v| v.opened.elapsed() < VIEWER_TTL);
                for v in viewers.values_mut() {
                    v.stale = true;
                }
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let now = Instant::now();
                let users: Vec<String> = viewers
                    .iter()
                    .filter(|(_, v)| v.due().is_some_and(|at| at <= now))
                    .map(|(user, _)| user.clone())
                    .collect();
                for user in &users {
                    if let Some(v) = viewers.get_mut(user) {
                        v.stale = false;
                        v.published = Some(now);
                    }
                }
                app.publish_homes(&users, &viewers, &mut links).await;
            }
        }
    }
}

/// The viewer `user`, added (and the set kept bounded) if new.
fn viewer(viewers: &mut HashMap<String, Viewer>, user: String) -> &mut Viewer {
    if !viewers.contains_key(&user) && viewers.len() >= MAX_VIEWERS {
        let oldest = viewers
            .iter()
            .min_by_key(|(_, v)| v.opened)
            .map(|(u, _)| u.clone());
        if let Some(oldest) = oldest {
            viewers.remove(&oldest);
        }
    }
    viewers.entry(user).or_insert_with(|| Viewer {
        opened: Instant::now(),
        published: None,
        stale: true,
        notice: None,
    })
}

impl App {
    /// Publishes the Home tab of `users`, from data read once for them all.
    async fn publish_homes(
        &self,
        users: &[String],
        viewers: &HashMap<String, Viewer>,
        links: &mut HashMap<(String, String), String>,
    ) {
        if users.is_empty() {
            return;
        }
        let data = match self.home_data(links).await {
            Ok(data) => data,
            Err(e) => {
                warn!(error = ?e, "could not read what the Home tab shows");
                return;
            }
        };
        let publishes = users.iter().map(|user| {
            let mut data = data.clone();
            data.notice = viewers.get(user).and_then(|v| v.notice.clone());
            async move {
                // Someone whose rights cannot be checked sees no buttons.
                let admin = crate::commands::is_admin(&self.commands, user)
                    .await
                    .unwrap_or(false);
                let view = home_view(&data, admin);
                match self.parts.web.views_publish(user, &view).await {
                    Ok(()) => debug!(user, "Home tab published"),
                    Err(e) => warn!(
                        user,
                        error = %e,
                        "could not publish the Home tab (is it enabled in the app manifest?)"
                    ),
                }
            }
        });
        futures_util::future::join_all(publishes).await;
    }

    /// What the Home tab shows now: the settings in force and where they
    /// come from, the pause, the running and the last sessions.
    async fn home_data(&self, links: &mut HashMap<(String, String), String>) -> Result<HomeData> {
        let (cfg, store) = (&self.parts.cfg, &self.parts.store);
        let mut schedules = vec![];
        for s in cfg.schedules.iter() {
            let Some(e) = effective(cfg, store, &s.name)? else {
                continue;
            };
            let source = match &e.source {
                Source::Yaml => SettingsSource::Yaml {
                    file: s
                        .source
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    line: s.line,
                },
                Source::Override { by, at } => SettingsSource::Override {
                    by: by.clone(),
                    at: *at,
                    yaml_enabled: s.healing_channel().is_some(),
                },
            };
            let enabled = e.enabled && e.healing_channel.is_some();
            schedules.push(HomeSchedule {
                name: s.name.clone(),
                enabled,
                agent: e.agent(cfg).map(str::to_string),
                channel: e.healing_channel,
                source,
            });
        }
        let running = store.unfinished_sessions()?;
        let recent = store.recent_sessions(None, RECENT_SESSIONS)?;
        self.learn_links(links, running.iter().chain(&recent)).await;
        let session = |r: &SessionRow| HomeSession {
            schedule: r.schedule.clone(),
            run_id: r.run_id.clone(),
            agent: r.agent.clone(),
            status: r.status,
            started: r.created_at,
            pr_url: r.pr_url.clone(),
            thread_url: links
                .get(&(r.channel.clone(), r.thread_ts.clone()))
                .cloned(),
        };
        Ok(HomeData {
            paused: store.pause()?.map(|p| Paused {
                by: p.paused_by,
                since: p.paused_at,
            }),
            schedules,
            running: running.iter().map(session).collect(),
            recent: recent.iter().map(session).collect(),
            notice: None,
            updated_at: chrono::Utc::now(),
        })
    }

    /// Adds the threads of `rows` not known yet to `links`, as `history`
    /// links them (permalinks within a budget, else built from channel and ts).
    async fn learn_links<'a>(
        &self,
        links: &mut HashMap<(String, String), String>,
        rows: impl Iterator<Item = &'a SessionRow>,
    ) {
        let mut missing: Vec<SessionRow> = vec![];
        for row in rows {
            let key = (row.channel.clone(), row.thread_ts.clone());
            if !row.thread_ts.is_empty()
                && !links.contains_key(&key)
                && !missing.iter().any(|m| m.id == row.id)
            {
                missing.push(row.clone());
            }
        }
        if missing.is_empty() {
            return;
        }
        if links.len() + missing.len() > MAX_LINKS {
            links.clear();
        }
        let urls = crate::commands::thread_urls(&self.commands, &missing).await;
        for (row, url) in missing.into_iter().zip(urls) {
            if let Some(url) = url {
                links.insert((row.channel, row.thread_ts), url);
            }
        }
    }
}
