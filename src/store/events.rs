//! A session's event log: what it was told (prompt, run log) and what
//! happened (milestones, notes), in order, for follow-ups and transcripts.

use super::db::params;
use anyhow::Result;

use super::db::all;
use super::{now, Store};

/// One entry of a session's event log.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// What the entry is: `prompt`, `run_log`, `milestone`, `note`, `queued`, ….
    pub kind: String,
    pub text: String,
}

impl Store {
    /// Appends a progress event to a session's log.
    pub fn add_event(&self, session_id: i64, kind: &str, text: &str) -> Result<()> {
        self.with_conn("recording a session event", |c| {
            c.execute(
                "INSERT INTO session_events(session_id, at, kind, text) VALUES (?1, ?2, ?3, ?4)",
                params![session_id, now(), kind, text],
            )
        })
        .map(drop)
    }

    /// A session's events in order.
    pub fn events(&self, session_id: i64) -> Result<Vec<EventRow>> {
        self.with_conn("loading session events", |c| {
            all(
                c,
                "SELECT kind, text FROM session_events WHERE session_id = ?1 ORDER BY id",
                params![session_id],
                |r| {
                    Ok(EventRow {
                        kind: r.get(0)?,
                        text: r.get(1)?,
                    })
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Claim;

    #[test]
    fn events_come_back_in_order_per_session() {
        for store in crate::store::testing::stores() {
            let Claim::New(id) = store.claim_session("s", "1", "C", "1.0", "a").unwrap() else {
                panic!("a new session")
            };
            store.add_event(id, "prompt", "fix it").unwrap();
            store.add_event(id, "milestone", "🔍 reading").unwrap();
            let kinds: Vec<String> = store
                .events(id)
                .unwrap()
                .into_iter()
                .map(|e| e.kind)
                .collect();
            assert_eq!(kinds, ["prompt", "milestone"]);
            assert!(store.events(id + 1).unwrap().is_empty());
        }
    }
}
