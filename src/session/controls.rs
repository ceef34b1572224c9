//! Who may run and who can reach a running session: the concurrency caps
//! (a slot per session, global and per schedule) and the controls people
//! use (Stop, replies in the thread). Shared by every session of the app;
//! the driver takes a slot and registers its controls.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::domain::SessionId;

/// Concurrency caps. A session holds one global and one per-schedule permit
/// while it runs; without them it waits, shown as queued in its thread.
#[derive(Clone)]
pub struct Caps {
    global: Arc<tokio::sync::Semaphore>,
    pub(super) per_schedule: usize,
    pub(super) global_limit: usize,
    schedules:
        Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>>,
    /// Sessions waiting in [`Caps::acquire`] (the queued gauge).
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

/// The permits a running session holds (global, per schedule). They are
/// never read: dropping the slot gives both back.
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
            waiting: Arc::default(),
        }
    }

    /// Sessions holding a slot now.
    pub fn running(&self) -> usize {
        self.global_limit - self.global.available_permits().min(self.global_limit)
    }

    /// Sessions waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn schedule(&self, name: &str) -> Arc<tokio::sync::Semaphore> {
        self.schedules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_schedule)))
            .clone()
    }

    pub(super) fn try_acquire(&self, schedule: &str) -> Option<Slot> {
        let own = self.schedule(schedule).try_acquire_owned().ok()?;
        let global = self.global.clone().try_acquire_owned().ok()?;
        Some(Slot(own, global))
    }

    pub(super) async fn acquire(&self, schedule: &str) -> Slot {
        let _queued = Waiting::new(&self.waiting);
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

/// Counts a waiting session until it is dropped (also when its wait is
/// cancelled).
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Default for Caps {
    fn default() -> Caps {
        Caps::new(8, 2)
    }
}

/// What a person can do to a running session.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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
    Arc<std::sync::Mutex<std::collections::HashMap<SessionId, mpsc::UnboundedSender<Control>>>>,
);

impl Controls {
    pub(super) fn register(&self, id: SessionId) -> mpsc::UnboundedReceiver<Control> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        rx
    }

    pub(super) fn unregister(&self, id: SessionId) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Delivers `control` to session `id`; false when it is not running.
    pub fn send(&self, id: SessionId, control: Control) -> bool {
        let tx = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        tx.is_some_and(|tx| tx.send(control).is_ok())
    }
}
