//! Replicas sharing one PostgreSQL store: each keeps the leases of its
//! sessions alive, takes over the sessions of a replica that stopped renewing
//! its own, hands a person's Stop or reply to whichever replica runs the
//! session (NOTIFY on the store, no polling), and books its Slack writes in
//! the store's write slots, so each channel's pace holds for the fleet.
//!
//! With SQLite there is one process: none of this runs, and a control for a
//! session this process does not run finds it ended.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use super::App;
use crate::domain::SessionId;
use crate::session::controls::Control;
use crate::slack::pace::{Booked, Pace, Slots, Write};
use crate::slack::web::SlotBook;
use crate::store::{Store, WriteSlot};

/// Write slots booked in the shared store: every replica's writes to a
/// channel share Slack's one bucket for it.
pub(super) struct StoreBook {
    pub store: Store,
    pub pace: Pace,
}

impl StoreBook {
    /// Turns `channel`'s stored slots into the next ones, in one transaction.
    fn update<T>(&self, channel: &str, next: impl Fn(Slots) -> (Slots, T)) -> Result<T> {
        let mut out = None;
        self.store.book_write_slot(channel, |stored| {
            let slots = Slots {
                tat: stored.map(|s| s.tat.into()),
                opened: stored.and_then(|s| s.opened).map(Into::into),
                answered: stored.and_then(|s| s.answered).map(Into::into),
            };
            let (slots, o) = next(slots);
            out = Some(o);
            WriteSlot {
                // Only a delay leaves a channel never written to without a
                // `tat`; a bucket full now is the same thing.
                tat: slots.tat.unwrap_or_else(SystemTime::now).into(),
                opened: slots.opened.map(Into::into),
                answered: slots.answered.map(Into::into),
            }
        })?;
        out.context("the store never asked for the next slots")
    }
}

impl SlotBook for StoreBook {
    fn book(&self, channel: &str, now: SystemTime, write: Write) -> Result<Booked> {
        self.update(channel, |s| s.book(now, write, &self.pace))
    }

    fn hold(&self, channel: &str, until: SystemTime) -> Result<()> {
        self.update(channel, |s| (s.hold(until, &self.pace), ()))
    }

    fn delay(&self, channel: &str, booked: SystemTime, by: Duration) -> Result<()> {
        self.update(channel, |s| (s.delay(booked, by), ()))
    }
}

/// What one replica tells the others: a control for a session.
#[derive(Debug, Serialize, Deserialize)]
struct Notice {
    session: i64,
    control: Control,
}

/// Guidance longer than this is cut when it is handed to another replica
/// (PostgreSQL's notices stop at 8000 bytes).
const MAX_FORWARDED_TEXT: usize = 6000;

impl App {
    /// Starts the heartbeat and take-over task and the notices task, when
    /// the store is shared.
    pub(super) fn start_fleet(self: &Arc<Self>) {
        let store = &self.parts.store;
        if !store.is_shared() {
            return;
        }
        let mut notices = store.subscribe();
        let app = self.clone();
        self.tasks.spawn(async move {
            loop {
                let notice = tokio::select! {
                    notice = notices.recv() => notice,
                    _ = app.shutdown.cancelled() => break,
                };
                match notice {
                    Ok(payload) => app.on_notice(&payload),
                    Err(RecvError::Lagged(n)) => {
                        warn!(missed = n, "missed notices from other replicas")
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        // A third of the lease: two heartbeats may be lost before it runs out.
        let beat = (store.lease() / 3).max(Duration::from_millis(200));
        let app = self.clone();
        self.tasks.spawn(async move {
            let mut ticker = tokio::time::interval(beat);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = app.shutdown.cancelled() => break,
                }
                if let Err(e) = app.parts.store.renew_leases() {
                    warn!(
                        error = format!("{e:#}"),
                        "could not renew this replica's session leases"
                    );
                }
                if let Err(e) = app.take_over().await {
                    warn!(
                        error = format!("{e:#}"),
                        "could not take over the sessions of a stopped replica"
                    );
                }
            }
        });
    }

    /// Delivers a person's control to session `id`, wherever it runs: here,
    /// or through the store to the replica that owns it. False when the
    /// session is not running anywhere.
    pub(super) fn control(&self, id: SessionId, control: Control) -> Result<bool> {
        if self.deps.controls.send(id, control.clone()) {
            return Ok(true);
        }
        let store = &self.parts.store;
        if !store.is_shared() || store.session(id.0)?.status.is_terminal() {
            return Ok(false);
        }
        let control = match control {
            Control::Reply { user, text } if text.len() > MAX_FORWARDED_TEXT => {
                let cut = text.floor_char_boundary(MAX_FORWARDED_TEXT);
                Control::Reply {
                    user,
                    text: format!("{}…", &text[..cut]),
                }
            }
            other => other,
        };
        store.publish(&serde_json::to_string(&Notice {
            session: id.0,
            control,
        })?)?;
        Ok(true)
    }

    /// A notice from a replica (this one included): the control goes to the
    /// session if it runs here.
    fn on_notice(&self, payload: &str) {
        match serde_json::from_str::<Notice>(payload) {
            Ok(n) => {
                let delivered = self.deps.controls.send(SessionId(n.session), n.control);
                debug!(
                    session = n.session,
                    delivered, "a control from another replica"
                );
            }
            Err(e) => warn!(error = %e, "skipped an unreadable notice from another replica"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::StoreBook;
    use crate::slack::pace::{Booked, Pace, Write};
    use crate::slack::web::SlotBook;

    #[test]
    fn a_replicas_progress_waits_for_the_answers_another_replica_books() {
        let Some((a, b)) = crate::store::testing::replicas() else {
            return;
        };
        let pace = Pace::new(Duration::from_secs(1), 3);
        let (a, b) = (StoreBook { store: a, pace }, StoreBook { store: b, pace });
        // PostgreSQL keeps microseconds.
        let micros = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_micros(micros.as_micros() as u64);
        let Booked::Go(answer) = a.book("C1", now, Write::Answer).unwrap() else {
            panic!("an answer always gets a slot");
        };
        // b's progress is told to ask again once a's answer has gone and the
        // channel's pace allows another.
        assert_eq!(
            b.book("C1", now, Write::Routine).unwrap(),
            Booked::AfterAnswers(answer + pace.interval)
        );
        // Then it books, and b's own answers are never held back.
        assert!(matches!(
            b.book("C1", answer + pace.interval, Write::Routine)
                .unwrap(),
            Booked::Go(_)
        ));
        assert!(matches!(
            b.book("C2", now, Write::Routine).unwrap(),
            Booked::Go(at) if at == now
        ));
    }

    #[test]
    fn replicas_booking_one_channel_at_once_get_slacks_pace_between_them() {
        let Some((a, b)) = crate::store::testing::replicas() else {
            return;
        };
        let interval = Duration::from_millis(200);
        let books: Vec<StoreBook> = [a.clone(), b, a]
            .into_iter()
            .map(|store| StoreBook {
                store,
                pace: Pace::new(interval, 3),
            })
            .collect();
        let now = SystemTime::now();
        let mut slots: Vec<SystemTime> = std::thread::scope(|s| {
            let handles: Vec<_> = books
                .iter()
                .map(|book| {
                    s.spawn(move || {
                        (0..4)
                            .map(|_| match book.book("C1", now, Write::Retry).unwrap() {
                                Booked::Go(at) => at,
                                other => panic!("a retry always gets a slot, got {other:?}"),
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        slots.sort();
        // Twelve writes: the burst of three at once, then one per interval.
        let offsets: Vec<u128> = slots
            .iter()
            .map(|t| t.duration_since(now).unwrap().as_millis())
            .collect();
        assert_eq!(offsets.len(), 12);
        for (i, w) in offsets.windows(4).enumerate() {
            assert!(
                w[3] - w[0] >= 200,
                "four writes within one interval from write {i}: {offsets:?}"
            );
        }
    }
}
