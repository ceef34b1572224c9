//! Ids that would otherwise travel as bare strings and numbers.

use std::fmt;
use std::str::FromStr;

/// A healing session's row id in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub i64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for SessionId {
    type Err = std::num::ParseIntError;

    /// The Stop button carries the session id as its value.
    fn from_str(s: &str) -> Result<SessionId, Self::Err> {
        s.parse().map(SessionId)
    }
}

/// A Slack thread: the channel and the `ts` of the message it hangs under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Thread {
    /// The channel id (`C0HEAL`), never its name.
    pub channel: String,
    /// The `ts` of the thread's parent message.
    pub ts: String,
}

/// Where a session's story is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A Slack thread (the bot).
    Thread(Thread),
    /// The terminal of `selfheal fix` (and the transcript files of `selfheal drill`).
    Terminal,
}

impl Place {
    /// A Slack thread.
    pub fn thread(channel: impl Into<String>, ts: impl Into<String>) -> Place {
        Place::Thread(Thread {
            channel: channel.into(),
            ts: ts.into(),
        })
    }

    /// The store's `(channel, thread_ts)` columns for this place. A terminal
    /// session has neither, which the store keeps as empty text (the columns
    /// are `NOT NULL`, and an empty `thread_ts` already means "no thread").
    pub fn columns(&self) -> (&str, &str) {
        match self {
            Place::Thread(t) => (&t.channel, &t.ts),
            Place::Terminal => ("", ""),
        }
    }
}
