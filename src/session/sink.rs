//! Where a session's messages go, and how they look there: a Slack thread
//! (rendered by `slack::render`), or the terminal of `selfheal fix` (the same
//! words as plain text; or a file, for each case of `selfheal drill`).
//!
//! The session machine says what happened ([`Message`], [`Progress`]); this
//! module is the only part of a session that renders it.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::machine::Message;
use crate::domain::{EventKind, Place, Progress, SessionId};
use crate::runlog::RunLog;
use crate::slack::render;
use crate::slack::web::{SlackError, SlackWeb};

#[derive(Clone)]
pub enum Sink {
    Slack(Box<SlackWeb>),
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

    /// Posts the progress message; returns its `ts`, for the edits.
    pub async fn open_progress(
        &self,
        place: &Place,
        view: &Progress,
        id: SessionId,
    ) -> Result<String, SlackError> {
        let (text, blocks) = render::progress(view, id);
        self.send(place, &text, Some(&blocks)).await
    }

    /// Shows the progress message as it is now.
    pub async fn edit_progress(
        &self,
        place: &Place,
        ts: &str,
        view: &Progress,
        id: SessionId,
    ) -> Result<(), SlackError> {
        match self {
            Sink::Slack(web) => {
                let (text, blocks) = render::progress(view, id);
                web.update(&thread(place)?.channel, ts, &text, Some(&blocks))
                    .await
            }
            Sink::Terminal(_) => Ok(()),
        }
    }

    /// Posts what the session says; `run_id` names the run in the final message.
    pub async fn post(
        &self,
        place: &Place,
        run_id: &str,
        message: &Message,
    ) -> Result<(), SlackError> {
        let text = match message {
            Message::Bot(text) => render::escape(text),
            Message::Milestone(text) => render::milestone(text),
            Message::PrFound(url) => render::pr_found(url),
            Message::Sorted { class, why } => render::sorted(*class, why),
            Message::Recurrence(e) => {
                render::recurrence(&e.run_id, &e.channel, &e.thread_ts, e.pr_url.as_deref())
            }
            Message::Final { ending, pr_url } => {
                render::final_message(run_id, ending, pr_url.as_deref())
            }
        };
        self.send(place, &text, None).await.map(|_| ())
    }

    /// Posts what the run log says.
    pub async fn run_log(&self, place: &Place, log: &RunLog) -> Result<(), SlackError> {
        self.send(place, &render::run_log_summary(log), None)
            .await
            .map(|_| ())
    }

    /// A link to the thread, for the pull request.
    pub async fn permalink(&self, place: &Place) -> Option<String> {
        match (self, place) {
            (Sink::Slack(web), Place::Thread(t)) => web.permalink(&t.channel, &t.ts).await.ok(),
            _ => None,
        }
    }

    /// An event of the session's log (already redacted). The terminal shows
    /// the lines of output live; in Slack they reach the thread through
    /// progress edits instead.
    pub fn record(&self, kind: EventKind, text: &str) {
        let Sink::Terminal(t) = self else { return };
        let mark = match kind {
            EventKind::Stderr => "!",
            EventKind::Progress | EventKind::Note | EventKind::Guidance => "│",
            _ => return,
        };
        for line in text.lines() {
            t.say(&format!("  {mark} {line}\n"));
        }
    }

    /// Posts mrkdwn `text` (and `blocks`) in the place; returns the message's `ts`.
    async fn send(
        &self,
        place: &Place,
        text: &str,
        blocks: Option<&Value>,
    ) -> Result<String, SlackError> {
        match self {
            Sink::Slack(web) => {
                let thread = thread(place)?;
                let posted = web
                    .post(&thread.channel, Some(&thread.ts), text, blocks)
                    .await?;
                Ok(posted.ts)
            }
            Sink::Terminal(t) => {
                let n = t.posted.fetch_add(1, Ordering::Relaxed);
                t.say(&format!("\n{}\n", plain(text)));
                Ok(format!("{n}.000000"))
            }
        }
    }
}

/// The Slack thread of a place. The bot's sessions live in threads and
/// `selfheal fix` uses the terminal sink, so a terminal place never reaches
/// Slack; if it did, it is said as a missing target.
fn thread(place: &Place) -> Result<&crate::domain::Thread, SlackError> {
    match place {
        Place::Thread(t) => Ok(t),
        Place::Terminal => Err(SlackError::NotFound(
            "a terminal session has no Slack thread".into(),
        )),
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
    use crate::domain::Ending;

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

    /// A file-backed terminal sink and a way to read what it printed.
    fn transcript() -> (Sink, impl Fn() -> String) {
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        let path = file.path().to_path_buf();
        let sink = Sink::writer(Box::new(file.reopen().expect("reopen")));
        let read = move || {
            let _keep = &file;
            std::fs::read_to_string(&path).expect("the transcript")
        };
        (sink, read)
    }

    #[tokio::test]
    async fn the_terminal_shows_messages_as_plain_text_and_output_lines_live() {
        let (sink, read) = transcript();
        let place = Place::Terminal;
        sink.post(&place, "42", &Message::Milestone("found <it>".into()))
            .await
            .unwrap();
        sink.post(
            &place,
            "42",
            &Message::Final {
                ending: Ending::fixed("renamed the ref"),
                pr_url: None,
            },
        )
        .await
        .unwrap();
        sink.record(EventKind::Progress, "compiling\nrunning");
        sink.record(EventKind::Stderr, "warning");
        sink.record(EventKind::Prompt, "not shown");
        assert_eq!(
            read(),
            "\n📍 found <it>\n\n✅ Fix for run `42` is verified: renamed the ref\n  │ compiling\n  │ running\n  ! warning\n"
        );
    }
}
