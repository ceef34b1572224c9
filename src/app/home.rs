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
    /// The answer to their last click, shown on their view.
    notice: Option<String>,
}

impl Viewer {
    /// When their view may be published next, if it is out of date: at
    /// once (when they opened the tab, a moment ago) if it never was.
    fn due(&self) -> Option<Instant> {
        self.stale
            .then(|| self.published.map_or(self.opened, |at| at + MIN_GAP))
    }
}

/// Who is kept up to date, and when each may be published next. Plain
/// data: the task around it does the waiting and the publishing.
#[derive(Default)]
struct Viewers {
    by_user: HashMap<String, Viewer>,
}

impl Viewers {
    /// `user` opened the Home tab at `now`: a fresh visit, without the
    /// answer to an earlier click.
    fn opened(&mut self, user: String, now: Instant) {
        let viewer = self.viewer(user, now);
        viewer.opened = now;
        viewer.notice = None;
        viewer.stale = true;
    }

    /// `user` clicked a button and got `notice` for an answer.
    fn answered(&mut self, user: String, notice: String, now: Instant) {
        let viewer = self.viewer(user, now);
        viewer.notice = Some(notice);
        viewer.stale = true;
    }

    /// What the Home tab shows changed: every recent viewer's view is out
    /// of date; the others are forgotten.
    fn changed(&mut self, now: Instant) {
        self.by_user
            .retain(|_, v| now.saturating_duration_since(v.opened) < VIEWER_TTL);
        for v in self.by_user.values_mut() {
            v.stale = true;
        }
    }

    /// When the next view is due.
    fn next_due(&self) -> Option<Instant> {
        self.by_user.values().filter_map(Viewer::due).min()
    }

    /// The viewers whose view is due at `now`, with their notice, counted
    /// as published then.
    fn take_due(&mut self, now: Instant) -> Vec<(String, Option<String>)> {
        let mut due = vec![];
        for (user, v) in &mut self.by_user {
            if v.due().is_some_and(|at| at <= now) {
                v.stale = false;
                v.published = Some(now);
                due.push((user.clone(), v.notice.clone()));
            }
        }
        due.sort();
        due
    }

    /// The viewer `user`, added (and the set kept bounded) if new.
    fn viewer(&mut self, user: String, now: Instant) -> &mut Viewer {
        if !self.by_user.contains_key(&user) && self.by_user.len() >= MAX_VIEWERS {
            let oldest = self
                .by_user
                .iter()
                .min_by_key(|(_, v)| v.opened)
                .map(|(u, _)| u.clone());
            if let Some(oldest) = oldest {
                self.by_user.remove(&oldest);
            }
        }
        self.by_user.entry(user).or_insert_with(|| Viewer {
            opened: now,
            published: None,
            stale: true,
            notice: None,
        })
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
    let mut viewers = Viewers::default();
    let mut links: HashMap<(String, String), String> = HashMap::new();
    loop {
        let due = viewers.next_due();
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            event = rx.recv() => match event {
                None => return,
                Some(HomeEvent::Opened { user }) => viewers.opened(user, Instant::now()),
                Some(HomeEvent::Answered { user, notice }) => {
                    viewers.answered(user, notice, Instant::now())
                }
            },
            _ = app.parts.changes.notified() => viewers.changed(Instant::now()),
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let due = viewers.take_due(Instant::now());
                app.publish_homes(&due, &mut links).await;
            }
        }
    }
}

impl App {
    /// Publishes the Home tab of `users` (each with their notice), from
    /// data read once for them all.
    async fn publish_homes(
        &self,
        users: &[(String, Option<String>)],
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
        let publishes = users.iter().map(|(user, notice)| {
            let mut data = data.clone();
            data.notice = notice.clone();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn users(due: &[(String, Option<String>)]) -> Vec<&str> {
        due.iter().map(|(u, _)| u.as_str()).collect()
    }

    #[test]
    fn a_viewer_is_published_at_once_then_at_most_once_per_gap() {
        let t0 = Instant::now();
        let mut v = Viewers::default();
        assert_eq!(v.next_due(), None);
        v.opened("U1".into(), t0);
        assert_eq!(v.next_due(), Some(t0));
        assert_eq!(users(&v.take_due(t0)), ["U1"]);
        assert_eq!(v.next_due(), None, "up to date");

        // Changes within the gap wait for its end, and are one publish.
        v.changed(t0 + Duration::from_millis(100));
        v.changed(t0 + Duration::from_millis(200));
        assert_eq!(v.next_due(), Some(t0 + MIN_GAP));
        assert!(v.take_due(t0 + Duration::from_millis(300)).is_empty());
        assert_eq!(users(&v.take_due(t0 + MIN_GAP)), ["U1"]);
        assert_eq!(v.next_due(), None);
    }

    #[test]
    fn a_clicks_answer_shows_until_the_next_visit() {
        let t0 = Instant::now();
        let mut v = Viewers::default();
        v.opened("U1".into(), t0);
        v.take_due(t0);
        v.answered("U1".into(), "⛔ no".into(), t0);
        let later = t0 + MIN_GAP;
        assert_eq!(
            v.take_due(later),
            [("U1".to_string(), Some("⛔ no".to_string()))]
        );
        v.changed(later);
        assert_eq!(v.take_due(later + MIN_GAP)[0].1.as_deref(), Some("⛔ no"));
        v.opened("U1".into(), later + MIN_GAP * 2);
        assert_eq!(v.take_due(later + MIN_GAP * 2)[0].1, None);
    }

    #[test]
    fn viewers_of_over_an_hour_ago_are_forgotten_and_their_number_is_bounded() {
        let t0 = Instant::now();
        let mut v = Viewers::default();
        v.opened("U1".into(), t0);
        v.opened("U2".into(), t0 + Duration::from_secs(30 * 60));
        v.take_due(t0 + Duration::from_secs(30 * 60));
        v.changed(t0 + VIEWER_TTL + Duration::from_secs(1));
        assert_eq!(users(&v.take_due(t0 + VIEWER_TTL * 2)), ["U2"]);

        let mut v = Viewers::default();
        for i in 0..=MAX_VIEWERS {
            v.opened(format!("U{i}"), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(v.by_user.len(), MAX_VIEWERS);
        assert!(
            !v.by_user.contains_key("U0"),
            "the longest ago is forgotten"
        );
    }
}
