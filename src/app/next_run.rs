//! Asks the scheduler whether a schedule with an open failure has passed
//! since, for schedulers that are not told to announce passes in Slack.
//!
//! One task, owned by the app's tracker and stopped by its shutdown token,
//! runs only with a hosted run-log source (Paradime, dbt Cloud). Every
//! `SELFHEAL_NEXT_RUN_POLL_SECS` it takes each schedule's latest failure that
//! is still open and asks the scheduler for a later run of the same schedule
//! (Paradime: by the schedule's `slug`) or job (dbt Cloud) that passed: one
//! question per schedule with an open failure, one at a time. A pass closes
//! the loop exactly as a success notification does (`session::closing`), and the
//! store's resolution claim makes whichever comes first the only one.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tracing::{info, warn};

use super::App;
use crate::runlog::Source;

/// Failures older than this are not asked about any more.
const HORIZON: chrono::Duration = chrono::Duration::days(7);

impl App {
    /// Asks about each schedule with an open failure every `interval`, until shutdown.
    pub(super) async fn watch_next_runs(self: Arc<Self>, source: Source, interval: Duration) {
        info!(
            scheduler = source.scheduler(),
            every_secs = interval.as_secs(),
            "asking the scheduler whether failed schedules passed since"
        );
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.shutdown.cancelled() => return,
            }
            let open = match self.parts.store.open_failures(Utc::now() - HORIZON) {
                Ok(open) => open,
                Err(e) => {
                    warn!(error = format!("{e:#}"), "could not load the open failures");
                    continue;
                }
            };
            for failure in open {
                let slug = self
                    .parts
                    .cfg
                    .schedules
                    .get(&failure.schedule)
                    .and_then(|s| s.slug.as_deref());
                let passed = tokio::select! {
                    passed = source.passed_after(&failure.run_id, slug) => passed,
                    _ = self.shutdown.cancelled() => return,
                };
                let run = match passed {
                    Ok(Some(run)) => run,
                    Ok(None) => continue,
                    Err(e) => {
                        warn!(schedule = %failure.schedule, error = format!("{e:#}"), "could not ask the scheduler for later runs");
                        continue;
                    }
                };
                if let Err(e) = self.closer().schedule_passed(&failure.schedule, &run).await {
                    warn!(schedule = %failure.schedule, error = format!("{e:#}"), "could not close the loop");
                }
            }
        }
    }
}
