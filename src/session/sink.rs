//! Where a session's messages go: a Slack thread, or the terminal for
//! `selfheal fix` (or a file, for each case of `selfheal drill`).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::slack::web::{Posted, SlackError, SlackWeb};

#[derive(Clone)]
pub enum Sink {
    Slack(SlackWeb),
    /// Prints messages and agent output; edits of the progress message are
    /// skipped because every line was already printed as it came.
    Terminal(Arc<Terminal>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sink::Slack(_) => "Sink::Slack",
            Sink::Terminal(_) => "Sink::Terminal",
        })
    }
}

/// A terminal-like transcript: standard output, or a file.
pub struct Terminal {
    /// Numbers the messages, as Slack's `ts` would.
    posted: AtomicU64,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Sink {
    /// Messages printed on standard output.
    pub fn terminal() -> Sink {
        Sink::writer(Box::new(std::io::stdout()))
    }

    /// Messages written to `out` as they would be printed.
    pub fn writer(out: Box<dyn Write + Send>) -> Sink {
        Sink::Terminal(Arc::new(Terminal {
            posted: AtomicU64::new(0),
            out: Mutex::new(out),
        }))
    }

    /// Prints `text` as it is (the session's own preamble).
    pub fn say(&self, text: &str) {
        if let Sink::Terminal(t) = self {
            t.say(text);
        }
    }

    pub async fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        blocks: Option<&Value>,
    ) -> Result<Posted, SlackError> {
        match self {
            Sink::Slack(web) => web.post(channel, thread_ts, text, blocks).await,
            Sink::Terminal(t) => {
                let n = t.posted.fetch_add(1, Ordering::Relaxed);
                t.say(&format!("\n{}\n", plain(text)));
                Ok(Posted {
                    channel: channel.to_string(),
                    ts: format!("{n}.000000"),
                })
            }
        }
    }

    pub async fn update(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: Option<&Value>,
    ) -> Result<(), SlackError> {
        match self {
            Sink::Slack(web) => web.update(channel, ts, text, blocks).await,
            Sink::Terminal(_) => Ok(()),
        }
    }

    pub async fn permalink(&self, channel: &str, ts: &str) -> Option<String> {
        match self {
            Sink::Slack(web) => web.permalink(channel, ts).await.ok(),
            Sink::Terminal(_) => None,
        }
    }

    /// A line of agent output (already redacted): shown live in the terminal;
    /// in Slack it reaches the thread through progress edits instead.
    pub fn line(&self, kind: &str, text: &str) {
        if let Sink::Terminal(t) = self {
            let mark = if kind == "stderr" { "!" } else { "│" };
            for line in text.lines() {
                t.say(&format!("  {mark} {line}\n"));
            }
        }
    }
}

impl Terminal {
    fn say(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A transcript that cannot be written must not stop the session.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// Slack mrkdwn as plain terminal text: entities decoded, links shown as
/// `label (url)`.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &rest[start + 1..start + end];
        match inner.split_once('|') {
            Some((url, label)) => out.push_str(&format!("{label} ({url})")),
            None => out.push_str(inner.trim_start_matches('#')),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrkdwn_becomes_plain_text() {
        for (input, expected) in [
            ("plain", "plain"),
            (
                "see <https://x/pull/1|pull request>",
                "see pull request (https://x/pull/1)",
            ),
            ("in <#C0HEAL>", "in C0HEAL"),
            ("a &lt;b&gt; &amp; c", "a <b> & c"),
            ("unclosed <x", "unclosed <x"),
        ] {
            assert_eq!(plain(input), expected);
        }
    }
}
