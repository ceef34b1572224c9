//! When a channel's next write may go: Slack's per-channel pace with its burst
//! allowance, as a pure GCRA core ([`gcra`], [`held`]) and the in-memory book
//! ([`MemoryBook`]) one process uses. A book kept in a store that a fleet of
//! replicas shares runs the same core on the same stored value.
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
pub fn gcra(
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

/// Whether a write booked at `now` opens a spell: Slack's bucket is full
/// again (the stored `tat` is past), so it starts refilling when this write
/// arrives.
pub fn opens(tat: Option<SystemTime>, now: SystemTime) -> bool {
    tat.is_none_or(|tat| tat <= now)
}

/// Whether the write booked for `booked` is the one that opened the spell
/// (`opened`), give or take the store's microseconds.
pub fn is_opener(opened: Option<SystemTime>, booked: SystemTime) -> bool {
    opened.is_some_and(|o| {
        let gap = o
            .duration_since(booked)
            .or_else(|e| Ok::<_, ()>(e.duration()));
        gap.is_ok_and(|g| g < Duration::from_millis(1))
    })
}

/// The new `tat` after Slack answered 429 with `Retry-After`: no write before
/// `until`, and then none of the burst either, since Slack's bucket is empty.
pub fn held(tat: Option<SystemTime>, until: SystemTime, pace: &Pace) -> SystemTime {
    let emptied = until + pace.interval * pace.burst.max(1).saturating_sub(1);
    tat.map_or(emptied, |tat| tat.max(emptied))
}

/// Slots booked in this process's memory: right for a single replica.
pub struct MemoryBook {
    pace: Pace,
    /// Each channel's theoretical arrival time, and when its spell's opener
    /// was booked to go.
    tats: Mutex<HashMap<String, (SystemTime, Option<SystemTime>)>>,
}

impl MemoryBook {
    /// Writes at `pace`, per channel.
    pub fn new(pace: Pace) -> MemoryBook {
        MemoryBook {
            pace,
            tats: Mutex::default(),
        }
    }
}

impl SlotBook for MemoryBook {
    fn book(&self, channel: &str, now: SystemTime) -> anyhow::Result<SystemTime> {
        // A poisoned map still holds valid times: each update is one insert.
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        let (tat, opened) = tats.get(channel).copied().unzip();
        let (new, go) = gcra(tat, now, &self.pace);
        let opened = if opens(tat, now) {
            Some(go)
        } else {
            opened.flatten()
        };
        tats.insert(channel.to_string(), (new, opened));
        Ok(go)
    }

    fn hold(&self, channel: &str, until: SystemTime) -> anyhow::Result<()> {
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        let tat = held(tats.get(channel).map(|s| s.0), until, &self.pace);
        tats.insert(channel.to_string(), (tat, None));
        Ok(())
    }

    fn delay(&self, channel: &str, booked: SystemTime, by: Duration) -> anyhow::Result<()> {
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((tat, opened)) = tats.get_mut(channel) {
            if is_opener(*opened, booked) {
                *tat += by;
                *opened = None;
            }
        }
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
        let mut tat = hold.map(|until| held(None, t(until), &Pace::new(S, burst)));
        let went: Vec<u64> = at
            .iter()
            .map(|&now| {
                let (new_tat, may_go) = gcra(tat, t(now), &Pace::new(S, burst));
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
    fn a_hold_never_brings_slots_forward() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let later = now + Duration::from_secs(60);
        assert_eq!(held(Some(later), now, &Pace::new(S, 3)), later);
    }

    #[test]
    fn memory_book_paces_channels_apart() {
        let book = MemoryBook::new(Pace::new(S, 2));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let go = |channel| book.book(channel, now).expect("memory never fails");
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
