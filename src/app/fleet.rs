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

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use super::App;
use crate::domain::SessionId;
use crate::session::controls::Control;
use crate::slack::pace::{gcra, held, is_opener, opens, Pace};
use crate::slack::web::SlotBook;
use crate::store::{Store, WriteSlot};

/// Write slots booked in the shared store: every replica's writes to a
/// channel share Slack's one bucket for it.
pub(super) struct StoreBook {
    pub store: Store,
    pub pace: Pace,
}

impl SlotBook for StoreBook {
    fn book(&self, channel: &str, now: SystemTime) -> Result<SystemTime> {
        let mut go = now;
        self.store.book_write_slot(channel, |slot| {
            let tat = slot.map(|s| SystemTime::from(s.tat));
            let (new, at) = gcra(tat, now, &self.pace);
            go = at;
            WriteSlot {
                tat: new.into(),
                opened: if opens(tat, now) {
                    Some(at.into())
                } else {
                    slot.and_then(|s| s.opened)
                },
            }
        })?;
        Ok(go)
    }

    fn hold(&self, channel: &str, until: SystemTime) -> Result<()> {
        self.store.book_write_slot(channel, |slot| WriteSlot {
            tat: held(slot.map(|s| s.tat.into()), until, &self.pace).into(),
            opened: None,
        })?;
        Ok(())
    }

    fn delay(&self, channel: &str, booked: SystemTime, by: Duration) -> Result<()> {
        let by = chrono::Duration::from_std(by)?;
        self.store.book_write_slot(channel, |slot| match slot {
            Some(s) if is_opener(s.opened.map(Into::into), booked) => WriteSlot {
                tat: s.tat + by,
                opened: None,
            },
            Some(s) => s,
            None => WriteSlot {
                tat: chrono::Utc::now(),
                opened: None,
            },
        })?;
        Ok(())
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
    use crate::slack::pace::Pace;
    use crate::slack::web::SlotBook;

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
                            .map(|_| book.book("C1", now).unwrap())
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
