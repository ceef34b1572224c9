//! When a channel's next write may go: Slack's per-channel pace with its burst
//! allowance and answers first, as a pure core ([`Slots`], on GCRA) and the
//! in-memory book ([`MemoryBook`]) one process uses. A book kept in a store
//! that a fleet of replicas shares runs the same core on the same stored value.
//!
//! The core does no IO and reads no clock: `now` is always given.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::web::SlotBook;

/// A channel's pace: `interval` apart once `burst` writes went at once, and
/// `leeway` behind Slack's bucket (see [`gcra`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub interval: Duration,
    pub burst: u32,
    pub leeway: Duration,
}

impl Pace {
    /// A leeway of a tenth of `interval`.
    pub fn new(interval: Duration, burst: u32) -> Pace {
        Pace {
            interval,
            burst,
            leeway: interval / 10,
        }
    }
}

/// Books one write under the generic cell rate algorithm (GCRA): writes are
/// `interval` apart on average, and up to `burst` of them may go at once after
/// a quiet spell. `tat` is the channel's stored "theoretical arrival time"
/// (`None` for a channel never written to); the answer is the new `tat` to
/// store and when the write may go (`now`, or later when the burst is spent).
///
/// A `burst` of 1 (or 0) is strict pacing: one write per `interval`.
///
/// The book keeps a leeway (by default a tenth of `interval`) behind Slack's own bucket:
/// a write reaches Slack a little after it is booked, some later than others
/// (the first on a connection still being opened), and at the exact pace one
/// that Slack counts late makes the next look early, which Slack answers 429.
/// With a burst the leeway costs that much once per busy spell; with strict
/// pacing it spaces writes `1.1 × interval` apart.
fn gcra(
    tat: Option<SystemTime>,
    now: SystemTime,
    pace: &Pace,
) -> (SystemTime /*new tat*/, SystemTime /*may go at*/) {
    let Pace {
        interval,
        burst,
        leeway,
    } = *pace;
    let Some(tat) = tat else {
        return (now + interval, now);
    };
    let tolerance = interval * burst.max(1).saturating_sub(1);
    // The burst allowance lets a write go `tolerance` before its theoretical
    // time, but never before now.
    let go = if tat + leeway > now + tolerance {
        tat + leeway - tolerance
    } else {
        now
    };
    (tat.max(go) + interval, go)
}

/// What a write to a channel is, for the order writes go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The first answer to a notification: it goes before routine writes,
    /// whichever replica makes them.
    Answer,
    /// Progress, edits and the rest: they wait until the channel's answers
    /// are done.
    Routine,
    /// A write Slack refused with 429, asking again: it already had its turn.
    Retry,
}

/// A channel's booked slots, as a book keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Slots {
    /// GCRA's theoretical arrival time; `None` before the first write.
    pub tat: Option<SystemTime>,
    /// When the write that opened the current spell was booked to go.
    pub opened: Option<SystemTime>,
    /// When the latest answer booked goes.
    pub answered: Option<SystemTime>,
}

/// What booking a write gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Booked {
    /// The write has its slot and may go at this time.
    Go(SystemTime),
    /// A routine write booked nothing: answers are still going to the
    /// channel. It asks again at this time.
    AfterAnswers(SystemTime),
}

impl Slots {
    /// Books a `write` at `now`: the new slots to keep, and what it got.
    ///
    /// Answers go first. A routine write books nothing until an interval
    /// after the latest answer booked went, so answers that other replicas
    /// book one after the other keep the channel's slots between them.
    pub fn book(self, now: SystemTime, write: Write, pace: &Pace) -> (Slots, Booked) {
        let quiet = self.answered.map(|a| a + pace.interval);
        if let Some(quiet) = quiet.filter(|q| write == Write::Routine && *q > now) {
            return (self, Booked::AfterAnswers(quiet));
        }
        let (tat, go) = gcra(self.tat, now, pace);
        // Whether this write opens a spell: Slack's bucket is full again (the
        // stored `tat` is past), so it starts refilling when this write arrives.
        let opens = self.tat.is_none_or(|tat| tat <= now);
        let slots = Slots {
            tat: Some(tat),
            opened: if opens { Some(go) } else { self.opened },
            answered: if write == Write::Answer {
                self.answered.max(Some(go))
            } else {
                self.answered
            },
        };
        (slots, Booked::Go(go))
    }

    /// After Slack answered 429 with `Retry-After`: no write before `until`,
    /// and then none of the burst either, since Slack's bucket is empty.
    pub fn hold(self, until: SystemTime, pace: &Pace) -> Slots {
        let emptied = until + pace.interval * pace.burst.max(1).saturating_sub(1);
        Slots {
            tat: Some(self.tat.map_or(emptied, |tat| tat.max(emptied))),
            opened: None,
            ..self
        }
    }

    /// The write booked for `booked` reached Slack `by` late. When it opened
    /// its spell (give or take the store's microseconds), Slack's bucket
    /// started refilling that much later, so later slots move on, once.
    pub fn delay(self, booked: SystemTime, by: Duration) -> Slots {
        let opener = self.opened.is_some_and(|o| {
            let gap = o.duration_since(booked).unwrap_or_else(|e| e.duration());
            gap < Duration::from_millis(1)
        });
        match self.tat {
            Some(tat) if opener => Slots {
                tat: Some(tat + by),
                opened: None,
                ..self
            },
            _ => self,
        }
    }
}

/// Slots booked in this process's memory: right for a single replica.
pub struct MemoryBook {
    pace: Pace,
    slots: Mutex<HashMap<String, Slots>>,
}

impl MemoryBook {
    /// Writes at `pace`, per channel.
    pub fn new(pace: Pace) -> MemoryBook {
        MemoryBook {
            pace,
            slots: Mutex::default(),
        }
    }

    /// Turns `channel`'s slots into the next ones.
    fn update<T>(&self, channel: &str, next: impl FnOnce(Slots) -> (Slots, T)) -> T {
        // A poisoned map still holds valid slots: each update is one insert.
        let mut all = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let (slots, out) = next(all.get(channel).copied().unwrap_or_default());
        all.insert(channel.to_string(), slots);
        out
    }
}

impl SlotBook for MemoryBook {
    fn book(&self, channel: &str, now: SystemTime, write: Write) -> anyhow::Result<Booked> {
        Ok(self.update(channel, |s| s.book(now, write, &self.pace)))
    }

    fn hold(&self, channel: &str, until: SystemTime) -> anyhow::Result<()> {
        self.update(channel, |s| (s.hold(until, &self.pace), ()));
        Ok(())
    }

    fn delay(&self, channel: &str, booked: SystemTime, by: Duration) -> anyhow::Result<()> {
        self.update(channel, |s| (s.delay(booked, by), ()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Books writes at the given milliseconds on a fresh channel (1 s apart,
    /// burst `burst`), after holding it until `hold` if given, and checks when
    /// each may go.
    fn check(burst: u32, hold: Option<u64>, at: &[u64], go: &[u64]) {
        let t = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000 + ms);
        let pace = Pace::new(S, burst);
        let mut tat = hold.and_then(|until| Slots::default().hold(t(until), &pace).tat);
        let went: Vec<u64> = at
            .iter()
            .map(|&now| {
                let (new_tat, may_go) = gcra(tat, t(now), &pace);
                tat = Some(new_tat);
                let after = may_go.duration_since(t(0)).expect("never before t(0)");
                after.as_millis() as u64
            })
            .collect();
        assert_eq!(went, go, "burst {burst}, hold {hold:?}, writes at {at:?}");
    }

    #[test]
    fn gcra_lets_a_burst_go_at_once_then_paces_it() {
        // The first write goes at once, whatever the burst.
        check(3, None, &[0], &[0]);
        check(1, None, &[0], &[0]);
        // A burst of 3 goes at once (the third a leeway of 100 ms later), then
        // one per interval.
        check(3, None, &[0, 0, 0, 0, 0], &[0, 0, 100, 1100, 2100]);
        // Burst 1 is strict pacing, the leeway added to each gap.
        check(1, None, &[0, 0, 0], &[0, 1100, 2200]);
        check(0, None, &[0, 0, 0], &[0, 1100, 2200]);
        check(1, None, &[0, 1000, 1100, 5000], &[0, 1100, 2200, 5000]);
        // Idle time refills the burst, one write per interval, up to `burst`.
        check(
            3,
            None,
            &[0, 0, 0, 1100, 3100, 3100, 3100],
            &[0, 0, 100, 1100, 3100, 3100, 4100],
        );
        check(
            3,
            None,
            &[0, 0, 0, 10_000, 10_000, 10_000, 10_000],
            &[0, 0, 100, 10_000, 10_000, 10_100, 11_100],
        );
        // Writes slower than the pace never wait.
        check(
            3,
            None,
            &[0, 1000, 2000, 3000, 4000],
            &[0, 1000, 2000, 3000, 4000],
        );
        // After a 429 until 5 s: nothing before then, and no burst then either.
        check(3, Some(5000), &[0, 0, 0], &[5100, 6100, 7100]);
        check(
            3,
            Some(5000),
            &[0, 20_000, 20_000, 20_000, 20_000],
            &[5100, 20_000, 20_000, 20_100, 21_100],
        );
    }

    #[test]
    fn answers_go_first_and_routine_writes_wait_until_they_are_done() {
        use Write::{Answer, Retry, Routine};
        /// What a booking got, in ms.
        enum Got {
            Go(u64),
            After(u64),
        }
        use Got::{After, Go};
        let t = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000 + ms);
        let pace = Pace::new(S, 3);
        // (booked at, what, what it got), in order, on one channel.
        let table = [
            // A routine write on a quiet channel goes at once.
            (0, Routine, Go(0)),
            (0, Answer, Go(0)),
            // An answer was booked: routine writes wait an interval after it.
            (10, Routine, After(1000)),
            (20, Answer, Go(100)),
            (30, Answer, Go(1100)),
            (500, Routine, After(2100)),
            // A retry had its turn: it never waits for answers.
            (600, Retry, Go(2100)),
            (2000, Routine, After(2100)),
            // An interval after the last answer went, routine writes book.
            (2100, Routine, Go(3100)),
            // A new answer queues behind the routine slot already booked.
            (3200, Answer, Go(4100)),
            (3300, Routine, After(5100)),
        ];
        let mut slots = Slots::default();
        for (i, (at, write, want)) in table.into_iter().enumerate() {
            let (next, got) = slots.book(t(at), write, &pace);
            let want = match want {
                Go(ms) => Booked::Go(t(ms)),
                After(ms) => Booked::AfterAnswers(t(ms)),
            };
            assert_eq!(got, want, "row {i}: {write:?} at {at} ms");
            slots = next;
        }
    }

    #[test]
    fn a_hold_never_brings_slots_forward() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let later = now + Duration::from_secs(60);
        let slots = Slots {
            tat: Some(later),
            ..Slots::default()
        };
        assert_eq!(slots.hold(now, &Pace::new(S, 3)).tat, Some(later));
    }

    #[test]
    fn memory_book_paces_channels_apart() {
        let book = MemoryBook::new(Pace::new(S, 2));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let go = |channel| match book.book(channel, now, Write::Retry) {
            Ok(Booked::Go(at)) => at,
            other => panic!("a retry always gets a slot, got {other:?}"),
        };
        let leeway = S / 10;
        assert_eq!(
            [go("C1"), go("C1"), go("C1")],
            [now, now + leeway, now + S + leeway]
        );
        assert_eq!(go("C2"), now);
        book.hold("C2", now + 5 * S).expect("memory never fails");
        assert_eq!(go("C2"), now + 5 * S + leeway);
        // C1's second write was late: nothing moves (Slack's bucket was
        // refilling already). Its opener reached Slack 300 ms late: the rest
        // move on, once.
        book.delay("C1", now + leeway, S)
            .expect("memory never fails");
        book.delay("C1", now, S * 3 / 10)
            .expect("memory never fails");
        book.delay("C1", now, S * 3 / 10)
            .expect("memory never fails");
        assert_eq!(go("C1"), now + 2 * S + leeway + S * 3 / 10);
    }
}
