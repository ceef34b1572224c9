//! The external-command agent protocol: what a line of agent output means.
//!
//! Each stdout line is either plain text (progress) or one JSON object:
//!
//! | line | meaning |
//! |---|---|
//! | `{"type":"progress","text":"…"}` | progress, shown in the edited progress message |
//! | `{"type":"milestone","text":"…"}` | something worth its own thread message |
//! | `{"type":"pr","url":"…"}` | the pull request the agent opened |
//! | `{"type":"result","status":"fixed"\|"no_fix"\|"failed","summary":"…"}` | how it ended |
//!
//! Any pull-request URL in any line counts as the PR link. A line that looks
//! like JSON but is not one of these is shown as plain text. Pure; no IO.
//! What a line means is a [`crate::domain::AgentEvent`].

use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

use crate::domain::{AgentEvent, Outcome};

/// Lines longer than this are cut: a single line of output must not be able to
/// exhaust memory or a Slack message.
pub const MAX_LINE: usize = 4000;

static PR_URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"https?://[^\s<>|()\x22']+/(?:pull|pulls|merge_requests|pull-requests)/\d+")
        .expect("static regex")
});

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire {
    Progress {
        text: String,
    },
    Milestone {
        text: String,
    },
    Pr {
        url: String,
    },
    Result {
        status: String,
        #[serde(default)]
        summary: String,
    },
}

/// Interprets one line of agent stdout.
pub fn parse_line(line: &str) -> Vec<AgentEvent> {
    let line = truncate(line.trim_end_matches(['\r', '\n']), MAX_LINE);
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return vec![];
    }
    if trimmed.starts_with('{') {
        if let Ok(wire) = serde_json::from_str::<Wire>(trimmed) {
            return from_wire(wire);
        }
    }
    let mut events = vec![AgentEvent::Progress(line.to_string())];
    if let Some(url) = find_pr_url(line) {
        events.push(AgentEvent::Pr(url));
    }
    events
}

fn from_wire(wire: Wire) -> Vec<AgentEvent> {
    match wire {
        Wire::Progress { text } => with_pr(AgentEvent::Progress(text.clone()), &text),
        Wire::Milestone { text } => with_pr(AgentEvent::Milestone(text.clone()), &text),
        Wire::Pr { url } => vec![AgentEvent::Pr(url)],
        Wire::Result { status, summary } => {
            let outcome = match status.to_ascii_lowercase().as_str() {
                "fixed" | "success" | "ok" => Outcome::Fixed,
                "no_fix" | "nofix" | "diagnosed" | "skipped" => Outcome::NoFix,
                _ => Outcome::Failed,
            };
            with_pr(
                AgentEvent::Result {
                    outcome,
                    summary: summary.clone(),
                },
                &summary,
            )
        }
    }
}

fn with_pr(event: AgentEvent, text: &str) -> Vec<AgentEvent> {
    let mut events = vec![event];
    if let Some(url) = find_pr_url(text) {
        events.push(AgentEvent::Pr(url));
    }
    events
}

/// The first pull-request (or merge-request) URL in the text.
pub fn find_pr_url(text: &str) -> Option<String> {
    PR_URL.find(text).map(|m| m.as_str().to_string())
}

/// Cuts text to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use AgentEvent::*;

    fn check(line: &str, expected: &[AgentEvent]) {
        assert_eq!(parse_line(line), expected, "line: {line}");
    }

    #[test]
    fn lines_are_interpreted_by_the_protocol() {
        check("", &[]);
        check("   ", &[]);
        check(
            "reading the run log",
            &[Progress("reading the run log".into())],
        );
        check(
            r#"{"type":"progress","text":"compiling"}"#,
            &[Progress("compiling".into())],
        );
        check(
            r#"{"type":"milestone","text":"found the cause"}"#,
            &[Milestone("found the cause".into())],
        );
        check(
            r#"{"type":"pr","url":"https://github.com/acme/dbt/pull/7"}"#,
            &[Pr("https://github.com/acme/dbt/pull/7".into())],
        );
        check(
            r#"{"type":"result","status":"fixed","summary":"renamed the ref"}"#,
            &[Result {
                outcome: Outcome::Fixed,
                summary: "renamed the ref".into(),
            }],
        );
        check(
            r#"{"type":"result","status":"no_fix","summary":"data problem"}"#,
            &[Result {
                outcome: Outcome::NoFix,
                summary: "data problem".into(),
            }],
        );
        check(
            r#"{"type":"result","status":"weird"}"#,
            &[Result {
                outcome: Outcome::Failed,
                summary: String::new(),
            }],
        );
        check(
            "Opened https://github.com/acme/dbt/pull/42 for review",
            &[
                Progress("Opened https://github.com/acme/dbt/pull/42 for review".into()),
                Pr("https://github.com/acme/dbt/pull/42".into()),
            ],
        );
        check(
            "MR: https://gitlab.example.com/data/dbt/-/merge_requests/9",
            &[
                Progress("MR: https://gitlab.example.com/data/dbt/-/merge_requests/9".into()),
                Pr("https://gitlab.example.com/data/dbt/-/merge_requests/9".into()),
            ],
        );
        check(
            r#"{"type":"unknown"}"#,
            &[Progress(r#"{"type":"unknown"}"#.into())],
        );
        check("{not json", &[Progress("{not json".into())]);
        check("line\r\n", &[Progress("line".into())]);
    }

    #[test]
    fn an_overlong_line_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_LINE);
        let events = parse_line(&long);
        let [Progress(text)] = events.as_slice() else {
            panic!("expected one progress event")
        };
        assert!(text.len() <= MAX_LINE);
        assert!(text.chars().all(|c| c == 'é'));
    }
}
