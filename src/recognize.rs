//! Recognising failure notifications: a Slack message in, `Some(Failure)` or `None` out.
//!
//! This module owns the decision "is this message a scheduler telling us that schedule S
//! failed in run N?". It is pure: no IO, not `async`, no logging, and it never panics on any
//! input (text is capped at [`MAX_TEXT_BYTES`], JSON walking at [`MAX_DEPTH`]).
//!
//! Notifiers differ wildly (Paradime Bolt, dbt Cloud, Dagster, Airflow, CI systems, cron
//! scripts), and the exact layout of Paradime's post is not public, so recognition works on
//! the flattened human-readable text of a message ([`message_text`]) with three independent
//! questions: does it report a failure, which run, which configured schedule. Notifiers with
//! an unusual format get per-sender [`Override`] regexes that are tried first.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// A Slack message as selfheal sees it, already converted from the wire types by the slack module.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InboundMessage {
    /// The channel the message was posted in.
    pub channel: String,
    /// The message's own timestamp, which is also its id within the channel.
    pub ts: String,
    /// The parent's timestamp when the message is a thread reply.
    pub thread_ts: Option<String>,
    /// Slack's subtype: "bot_message", "message_changed", "message_deleted", "thread_broadcast", ...
    pub subtype: Option<String>,
    /// The posting user; bots posting as apps also carry one.
    pub user: Option<String>,
    /// Present on every bot post, modern or classic; its absence marks a human.
    pub bot_id: Option<String>,
    /// `bot_profile.app_id` or the event's `app_id`, so notifiers can be allow-listed by app.
    pub app_id: Option<String>,
    /// A classic bot's `username`, or `bot_profile.name`, so notifiers can be allow-listed by name.
    pub username: Option<String>,
    /// The top-level `text` (for block messages usually a fallback summary).
    pub text: String,
    /// Raw Block Kit JSON.
    pub blocks: Vec<Value>,
    /// Raw legacy attachment JSON.
    pub attachments: Vec<Value>,
    /// The message carries `edited` (or arrived as `message_changed`); edits never start healing.
    pub edited: bool,
}

/// Who selfheal itself is (from auth.test), so it never reacts to its own messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// selfheal's bot user id.
    pub user_id: String,
    /// selfheal's bot id.
    pub bot_id: String,
    /// selfheal's app id, when known.
    pub app_id: Option<String>,
}

/// A notifier with an unusual format: regexes tried before the built-in ones for messages from `source`.
#[derive(Debug, Clone)]
pub struct Override {
    /// A bot id, app id or username (usernames compare case-insensitively).
    pub source: String,
    /// Must have a named group `run_id`; when it does not match, the built-in rules apply.
    pub run_id: Regex,
    /// Optional named group `schedule`; when absent or not matching, configured names are searched.
    pub schedule: Option<Regex>,
    /// Optional: the message is a failure only if this matches (else the built-in failure rule decides).
    pub failure: Option<Regex>,
}

/// "Schedule S failed in run N".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Failure {
    /// The configured spelling of the schedule's name.
    pub schedule: String,
    /// The run id as the notifier wrote it (digits, a UUID, an Airflow run id, ...).
    pub run_id: String,
}

/// The `block_id` of the context block every `selfheal notify` post
/// carries: how the bot tells a notification it may heal from its own
/// chatter when both post with the same token.
pub const NOTIFY_BLOCK_ID: &str = "selfheal-notify";

/// A fresh post of `selfheal notify` (edits of it are still ignored).
fn is_notify_post(msg: &InboundMessage) -> bool {
    !msg.edited
        && msg
            .blocks
            .iter()
            .any(|b| b.get("block_id").and_then(Value::as_str) == Some(NOTIFY_BLOCK_ID))
}

/// "Schedule S passed in run N".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    /// The configured spelling of the schedule's name.
    pub schedule: String,
    pub run_id: String,
}

/// Decides whether Slack messages are failure notifications worth healing.
pub struct Recognizer {
    me: Identity,
    schedules: Vec<ScheduleMatcher>,
    notifiers: Vec<String>,
    overrides: Vec<Override>,
}

impl Recognizer {
    /// `schedules`: configured schedule names; `notifiers`: allowed bot ids / app ids / usernames (empty = any bot except me).
    pub fn new(
        me: Identity,
        schedules: Vec<String>,
        notifiers: Vec<String>,
        overrides: Vec<Override>,
    ) -> Self {
        let schedules = schedules
            .into_iter()
            .filter_map(|name| ScheduleMatcher::new(&name))
            .collect();
        let notifiers = notifiers
            .into_iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        Self {
            me,
            schedules,
            notifiers,
            overrides,
        }
    }

    /// Full decision for automatic healing: sender checks + content.
    pub fn recognize(&self, msg: &InboundMessage) -> Option<Failure> {
        if !self.is_from_notifier(msg) {
            return None;
        }
        self.recognize_content(msg)
    }

    /// A notifier's success notification: "schedule S passed in run N", which
    /// closes the loop of the schedule's earlier failures. The same sender
    /// rules as failures; the headline must report success and no failure.
    pub fn recognize_pass(&self, msg: &InboundMessage) -> Option<Passed> {
        if !self.is_from_notifier(msg) {
            return None;
        }
        self.recognize_pass_content(msg)
    }

    /// Content only, for the passes `selfheal notify` posts with selfheal's token.
    pub fn recognize_pass_content(&self, msg: &InboundMessage) -> Option<Passed> {
        let text = message_text(msg);
        if !reports_success(&text) {
            return None;
        }
        let run_id = find_run_id(&text)?;
        let schedule = self.find_schedule(&text)?;
        Some(Passed { schedule, run_id })
    }

    /// Sender rules: a fresh post by a notifier bot, never by a person,
    /// never by selfheal itself, never an edit.
    fn is_from_notifier(&self, msg: &InboundMessage) -> bool {
        if msg.edited {
            return false;
        }
        // selfheal's own messages are never notifications, except the ones
        // `selfheal notify` posts for dbt Core users with the bot's token.
        if self.is_mine(msg) {
            return is_notify_post(msg);
        }
        // Only fresh top-level posts and thread broadcasts count; every other subtype is an
        // edit, a deletion or housekeeping.
        let is_classic_bot = match msg.subtype.as_deref() {
            None | Some("thread_broadcast") => false,
            Some("bot_message") => true,
            Some(_) => return false,
        };
        if non_empty(&msg.bot_id).is_none() && !is_classic_bot {
            return false;
        }
        self.notifiers.is_empty() || self.notifiers.iter().any(|n| sender_matches(n, msg))
    }

    /// Content only (no sender checks) — used later for manual "fix this" on any recognised notification.
    pub fn recognize_content(&self, msg: &InboundMessage) -> Option<Failure> {
        let text = message_text(msg);
        for o in self
            .overrides
            .iter()
            .filter(|o| sender_matches(&o.source, msg))
        {
            if let Some(decision) = self.apply_override(o, &text) {
                return decision;
            }
        }
        if !reports_failure(&text) {
            return None;
        }
        let run_id = find_run_id(&text)?;
        let schedule = self.find_schedule(&text)?;
        Some(Failure { schedule, run_id })
    }

    /// True when the message was posted by selfheal itself.
    pub fn is_mine(&self, msg: &InboundMessage) -> bool {
        let same = |mine: &str, theirs: &Option<String>| {
            !mine.is_empty() && theirs.as_deref() == Some(mine)
        };
        same(&self.me.user_id, &msg.user)
            || same(&self.me.bot_id, &msg.bot_id)
            || self
                .me
                .app_id
                .as_deref()
                .is_some_and(|app| same(app, &msg.app_id))
    }

    /// Applies one override. `None` means "not this notifier's format, fall back"; once the
    /// override's run-id regex matches, the override owns the decision (`Some(decision)`), so a
    /// custom format is never half-parsed by the built-in rules.
    fn apply_override(&self, o: &Override, text: &str) -> Option<Option<Failure>> {
        let run_id = o
            .run_id
            .captures(text)
            .and_then(|c| c.name("run_id"))
            .map(|m| clean_run_id(m.as_str()))
            .filter(|id| !id.is_empty())?;
        let failed = match &o.failure {
            Some(re) => re.is_match(text),
            None => reports_failure(text),
        };
        if !failed {
            return Some(None);
        }
        let captured = o
            .schedule
            .as_ref()
            .and_then(|re| re.captures(text))
            .and_then(|c| c.name("schedule").map(|m| m.as_str().to_string()));
        let schedule = match captured {
            // An explicitly captured name must be a configured schedule.
            Some(name) => self.configured_name(&name),
            None => self.find_schedule(text),
        };
        Some(schedule.map(|schedule| Failure { schedule, run_id }))
    }

    /// The configured spelling of `name`, compared case-insensitively.
    fn configured_name(&self, name: &str) -> Option<String> {
        let wanted = name.trim().to_lowercase();
        self.schedules
            .iter()
            .find(|s| s.name.to_lowercase() == wanted)
            .map(|s| s.name.clone())
    }

    /// The longest configured schedule name that appears in `text` as a whole identifier.
    fn find_schedule(&self, text: &str) -> Option<String> {
        let mut best: Option<&ScheduleMatcher> = None;
        for s in self.schedules.iter().filter(|s| s.is_match(text)) {
            if best.is_none_or(|b| s.name.chars().count() > b.name.chars().count()) {
                best = Some(s);
            }
        }
        best.map(|s| s.name.clone())
    }

    /// For a message a person chose (the "Fix with selfheal" shortcut): the
    /// failure it reports, or why it is not one selfheal can heal. The sender
    /// rules are [`Recognizer::recognize`]'s, except that an edited message
    /// counts: a person pointing at a message means what it says now.
    pub fn explain(&self, msg: &InboundMessage) -> Result<Failure, Unrecognized> {
        if self.is_mine(msg) {
            return match is_notify_post(msg) {
                true => self.explain_content(msg),
                false => Err(Unrecognized::Mine),
            };
        }
        let is_classic_bot = msg.subtype.as_deref() == Some("bot_message");
        if non_empty(&msg.bot_id).is_none() && !is_classic_bot {
            return Err(Unrecognized::Person);
        }
        if !self.notifiers.is_empty() && !self.notifiers.iter().any(|n| sender_matches(n, msg)) {
            return Err(Unrecognized::NotANotifier);
        }
        self.explain_content(msg)
    }

    /// [`Recognizer::explain`] without the sender rules (for the failure
    /// notifications `selfheal notify` posts with the bot's own token).
    pub fn explain_content(&self, msg: &InboundMessage) -> Result<Failure, Unrecognized> {
        if let Some(failure) = self.recognize_content(msg) {
            return Ok(failure);
        }
        let text = message_text(msg);
        // An override that found a run id owned the decision, so its failure
        // rule or its schedule refused the message.
        for o in self
            .overrides
            .iter()
            .filter(|o| sender_matches(&o.source, msg))
        {
            let run_id = o.run_id.captures(&text).and_then(|c| c.name("run_id"));
            if run_id.is_some_and(|m| !clean_run_id(m.as_str()).is_empty()) {
                let failed = match &o.failure {
                    Some(re) => re.is_match(&text),
                    None => reports_failure(&text),
                };
                return Err(if failed {
                    Unrecognized::UnknownSchedule
                } else {
                    Unrecognized::NotAFailure
                });
            }
        }
        Err(if !reports_failure(&text) {
            Unrecognized::NotAFailure
        } else if find_run_id(&text).is_none() {
            Unrecognized::NoRunId
        } else {
            Unrecognized::UnknownSchedule
        })
    }
}

/// Why a message a person chose is not a failure selfheal can heal
/// ([`Recognizer::explain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrecognized {
    /// A person wrote it.
    Person,
    /// selfheal posted it.
    Mine,
    /// A bot posted it that is not one of the notifiers (`SELFHEAL_NOTIFIER_BOTS`).
    NotANotifier,
    /// It does not report a failed run.
    NotAFailure,
    /// It reports a failure but names no run id.
    NoRunId,
    /// It names no configured schedule.
    UnknownSchedule,
}

#[cfg(test)]
mod explain_tests {
    use super::*;

    fn recognizer(notifiers: &[&str], overrides: Vec<Override>) -> Recognizer {
        let me = Identity {
            user_id: "U0SELF".into(),
            bot_id: "B0SELF".into(),
            app_id: None,
        };
        let strings = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect();
        Recognizer::new(
            me,
            strings(&["hourly_marts"]),
            strings(notifiers),
            overrides,
        )
    }

    fn bot(bot_id: &str, text: &str) -> InboundMessage {
        InboundMessage {
            ts: "1700000000.000100".into(),
            bot_id: Some(bot_id.into()),
            username: Some("Paradime".into()),
            text: text.into(),
            ..Default::default()
        }
    }

    #[track_caller]
    fn check(r: &Recognizer, msg: InboundMessage, expected: Result<&str, Unrecognized>) {
        let got = r
            .explain(&msg)
            .map(|f| format!("{} {}", f.schedule, f.run_id));
        assert_eq!(got.as_deref().map_err(|e| *e), expected, "{msg:?}");
    }

    const FAILED: &str = ":x: Bolt schedule *hourly_marts* failed\nRun ID: 42";

    #[test]
    fn a_chosen_message_is_a_failure_or_says_why_not() {
        use Unrecognized::*;
        let r = recognizer(&["B0PARADIME"], vec![]);
        check(&r, bot("B0PARADIME", FAILED), Ok("hourly_marts 42"));
        // A person picking a message means its current text, edited or not.
        let mut edited = bot("B0PARADIME", FAILED);
        edited.edited = true;
        check(&r, edited, Ok("hourly_marts 42"));
        let mut person = bot("B0PARADIME", FAILED);
        person.bot_id = None;
        person.user = Some("U0ALICE".into());
        check(&r, person, Err(Person));
        check(&r, bot("B0SELF", FAILED), Err(Mine));
        check(&r, bot("B0OTHER", FAILED), Err(NotANotifier));
        let success = ":white_check_mark: hourly_marts passed, Run ID: 42";
        check(&r, bot("B0PARADIME", success), Err(NotAFailure));
        check(&r, bot("B0PARADIME", "hourly_marts failed"), Err(NoRunId));
        check(
            &r,
            bot("B0PARADIME", "nightly failed, Run ID: 42"),
            Err(UnknownSchedule),
        );
        // Without an allow-list any bot but selfheal may notify.
        check(
            &recognizer(&[], vec![]),
            bot("B0OTHER", FAILED),
            Ok("hourly_marts 42"),
        );
    }

    #[test]
    fn an_override_that_reads_a_run_id_decides_why_not() {
        use Unrecognized::*;
        let o = Override {
            source: "Paradime".into(),
            run_id: Regex::new(r"ID=(?P<run_id>\d+)").expect("test regex"),
            schedule: Some(Regex::new(r"JOB<<(?P<schedule>\w+)>>").expect("test regex")),
            failure: Some(Regex::new(r"STATE=KO").expect("test regex")),
        };
        let r = recognizer(&[], vec![o]);
        check(
            &r,
            bot("B1", "JOB<<hourly_marts>> STATE=KO ID=7"),
            Ok("hourly_marts 7"),
        );
        check(
            &r,
            bot("B1", "JOB<<hourly_marts>> STATE=OK ID=7"),
            Err(NotAFailure),
        );
        check(
            &r,
            bot("B1", "JOB<<weekly>> STATE=KO ID=7"),
            Err(UnknownSchedule),
        );
    }

    #[test]
    fn selfheals_own_notify_posts_are_read_for_content_only() {
        let r = recognizer(&["B0PARADIME"], vec![]);
        assert_eq!(r.explain(&bot("B0SELF", FAILED)), Err(Unrecognized::Mine));
        assert_eq!(
            r.explain_content(&bot("B0SELF", FAILED)),
            Ok(Failure {
                schedule: "hourly_marts".into(),
                run_id: "42".into()
            })
        );
    }
}

/// All human-readable text of a message: `text`, every text-bearing field in blocks (header, section text and fields, context elements, rich_text elements, buttons' urls), attachments (pretext, title, title_link, text, fallback, fields' title/value, footer, and blocks inside attachments). Slack link markup `<url|label>` must keep both url and label available to the matcher.
///
/// Pieces are joined with newlines, link markup `<url|label>` becomes `url label`, HTML
/// entities are decoded, and the result never exceeds [`MAX_TEXT_BYTES`].
pub fn message_text(msg: &InboundMessage) -> String {
    let mut out = String::new();
    push_piece(&mut out, &msg.text);
    for block in &msg.blocks {
        walk(block, 0, &mut out);
    }
    for attachment in &msg.attachments {
        walk(attachment, 0, &mut out);
    }
    let expanded = LINK_WITH_LABEL.replace_all(&out, "$url $label");
    let expanded = BARE_LINK.replace_all(&expanded, "$url");
    let mut text = expanded
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    truncate_at_char_boundary(&mut text, MAX_TEXT_BYTES);
    text
}

/// The most text considered per message; notifications are far smaller, and the cap keeps
/// regex work bounded on hostile or accidental megabyte posts.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// The deepest JSON nesting walked; real Block Kit nests fewer than ten levels.
pub const MAX_DEPTH: usize = 32;

/// Keys whose values carry human-readable text, in the order a reader meets them.
/// Containers (`fields`, `elements`, `accessory`, `blocks`, text objects) are walked;
/// everything else (ids, styles, colours, image urls, action values) is skipped.
const TEXT_KEYS: &[&str] = &[
    "pretext",
    "author_name",
    "title",
    "title_link",
    "text",
    "fields",
    "elements",
    "accessory",
    "blocks",
    "url",
    "value",
    "footer",
    "fallback",
];

/// Appends the text of one JSON value (a block, attachment, element or text object).
fn walk(value: &Value, depth: usize, out: &mut String) {
    if depth > MAX_DEPTH || out.len() >= MAX_TEXT_BYTES {
        return;
    }
    match value {
        Value::String(s) => push_piece(out, s),
        Value::Array(items) => {
            for item in items {
                walk(item, depth + 1, out);
            }
        }
        Value::Object(map) => {
            // Rich text carries emoji as elements; render them as Slack's `:name:` shortcode so
            // `:x:` in a rich_text block reads the same as `:x:` in mrkdwn.
            if map.get("type").and_then(Value::as_str) == Some("emoji") {
                if let Some(name) = map.get("name").and_then(Value::as_str) {
                    push_piece(out, &format!(":{name}:"));
                }
                return;
            }
            for key in TEXT_KEYS {
                // A `value` is human text only in an attachment field (next to its `title`);
                // on buttons and menus it is an opaque action payload.
                if *key == "value" && !map.contains_key("title") {
                    continue;
                }
                if let Some(v) = map.get(*key) {
                    walk(v, depth + 1, out);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Appends one non-blank piece of text on its own line, respecting the overall cap.
fn push_piece(out: &mut String, piece: &str) {
    if piece.trim().is_empty() || out.len() >= MAX_TEXT_BYTES {
        return;
    }
    if !out.is_empty() {
        out.push('\n');
    }
    let room = MAX_TEXT_BYTES.saturating_sub(out.len());
    let mut end = piece.len().min(room);
    while !piece.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(&piece[..end]);
}

fn truncate_at_char_boundary(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// True when `source` names the message's bot id, app id or username. Ids are Slack's
/// upper-case tokens; usernames are display names people type in config with any casing.
fn sender_matches(source: &str, msg: &InboundMessage) -> bool {
    let source = source.trim();
    if source.is_empty() {
        return false;
    }
    let id_eq = |v: &Option<String>| non_empty(v).is_some_and(|v| v.eq_ignore_ascii_case(source));
    id_eq(&msg.bot_id)
        || id_eq(&msg.app_id)
        || non_empty(&msg.username).is_some_and(|u| u.to_lowercase() == source.to_lowercase())
}

/// One configured schedule name and the regex that finds it as a whole identifier.
struct ScheduleMatcher {
    name: String,
    pattern: Regex,
}

impl ScheduleMatcher {
    /// Identifier boundaries: the name may not be glued to letters, digits, `_` or `-` on either
    /// side, so `hourly_marts` does not match inside `hourly_marts_v2` or `hourly_marts-dev`;
    /// quotes, spaces, slashes and punctuation are boundaries (`Job "Nightly"` matches
    /// `Nightly`). Inner whitespace matches any whitespace run.
    fn new(name: &str) -> Option<Self> {
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        let body = name
            .split_whitespace()
            .map(regex::escape)
            .collect::<Vec<_>>()
            .join(r"\s+");
        // The boundaries are checked in code, not with Unicode classes in the
        // pattern: those made each schedule's regex about 120 KB, which a bot
        // with fifty schedules kept resident for nothing.
        let pattern = format!(r"(?i)(?:{body})");
        // A name too large for the regex engine cannot appear in a capped message anyway.
        let pattern = Regex::new(&pattern).ok()?;
        Some(Self {
            name: name.to_string(),
            pattern,
        })
    }

    /// Whether the name appears in `text` as a whole identifier.
    fn is_match(&self, text: &str) -> bool {
        let glued = |c: char| c.is_alphabetic() || c.is_numeric() || c == '_' || c == '-';
        let mut from = 0;
        while let Some(m) = self.pattern.find_at(text, from) {
            let before = text[..m.start()].chars().next_back();
            let after = text[m.end()..].chars().next();
            if !before.is_some_and(glued) && !after.is_some_and(glued) {
                return true;
            }
            // Try again one character later: a later occurrence may overlap this one.
            from = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
        }
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Failure detection.
//
// The rule, in order:
// 1. Urls are ignored (a link to `/errors` or `?status=success` says nothing about this run),
//    and zero counts are neutralised: "0 failed", "no errors", "ERROR=0", "Failures: 0".
// 2. No failure signal at all (failed, failure, error(ed), FAILED, RUN_FAILURE, Task Failed,
//    timed out, ❌, :x:, :red_circle:, 🔴, 🚨) → not a failure.
// 3. A recovery notice ("recovered", "back to normal/green") → not a failure, even though it
//    usually quotes the failure it recovers from.
// 4. The headline (first non-blank line) states the overall status. If it has a success
//    signal (succeeded, success, passed, ✅, :white_check_mark:) before any failure signal,
//    the run succeeded and later failure words are history ("succeeded after a failed
//    attempt"). Success *counts* ("2 passed") are removed first, because they describe steps
//    or tests, not the run.
// 5. Otherwise any failure signal wins: a dbt Cloud failure lists ✅ for the steps that passed
//    and ❌ for the one that failed, and Paradime-style posts say "2 passed, 1 failed".
// ---------------------------------------------------------------------------------------------

/// True when the text reports a failed run (see the rule above).
fn reports_failure(text: &str) -> bool {
    let r = Reading::of(text);
    if !r.failure || r.recovered {
        return false;
    }
    match (
        SUCCESS_SIGNAL.find(&r.headline),
        FAILURE_SIGNAL.find(&r.headline),
    ) {
        (Some(success), Some(failure)) => failure.start() < success.start(),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// True when the text reports a passed run: a "recovered" / "back to green"
/// anywhere, or no failure signal anywhere (a "0 failed" count aside) and a
/// success word in its headline.
fn reports_success(text: &str) -> bool {
    let r = Reading::of(text);
    r.recovered || (!r.failure && SUCCESS_SIGNAL.is_match(&r.headline))
}

/// What a notification's text says about its run, read the same way for
/// failures and passes: links and "0 failed" counts do not count, and the
/// headline is read without run numbers and "5 passed" counts.
struct Reading {
    recovered: bool,
    /// A failure signal anywhere.
    failure: bool,
    headline: String,
}

impl Reading {
    fn of(text: &str) -> Reading {
        let text = URL.replace_all(text, " ");
        let text = ZERO_FAILURES.replace_all(&text, " ");
        let recovered = RECOVERED.is_match(&text);
        let failure = FAILURE_SIGNAL.is_match(&text);
        let text = RUN_NUMBER.replace_all(&text, "run");
        let text = SUCCESS_COUNT.replace_all(&text, " ");
        let headline = text
            .lines()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("")
            .to_string();
        Reading {
            recovered,
            failure,
            headline,
        }
    }
}

fn static_regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static regex")
}

static URL: LazyLock<Regex> = LazyLock::new(|| static_regex(r"(?i)\b(?:https?|ftp)://[^\s<>|]+"));

static FAILURE_SIGNAL: LazyLock<Regex> = LazyLock::new(|| {
    static_regex(
        r"(?i)\bfail(?:ed|ure|ures|ing|s)?\b|\berror(?:ed|s)?\b|_fail(?:ure|ed)\b|\btimed[ _]out\b|❌|✖|🔴|🚨|:x:|:red_circle:|:rotating_light:|:heavy_multiplication_x:",
    )
});

static ZERO_FAILURES: LazyLock<Regex> = LazyLock::new(|| {
    static_regex(
        r"(?i)\b(?:0|no|zero|without(?:\s+any)?)\s+(?:\w+\s+)?(?:fail(?:ed|ures?|s)?|errors?|errored)\b|\b(?:fail(?:ed|ures?)|errors?|errored)(?:\s+\w+)?\s*[:=]\s*(?:0|none)\b",
    )
});

static RECOVERED: LazyLock<Regex> = LazyLock::new(|| {
    static_regex(r"(?i)\brecovered\b|\bback\s+to\s+(?:normal|green|passing|healthy)\b")
});

/// "Run 48213" and "run ID: 48213": removed before counting successes so that "Run 48213
/// succeeded" keeps its success word.
static RUN_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| static_regex(r"(?i)\brun(?:[ _\-]?id)?[\s*:#=\-]*\d+\b"));

static SUCCESS_COUNT: LazyLock<Regex> = LazyLock::new(|| {
    static_regex(
        r"(?i)\b\d+\s+(?:\w+\s+)?(?:passed|pass|succeeded|successful|successes|success|ok)\b|\b(?:pass(?:ed)?|success(?:es)?|succeeded|ok)\s*[:=]\s*\d+\b",
    )
});

static SUCCESS_SIGNAL: LazyLock<Regex> = LazyLock::new(|| {
    static_regex(
        r"(?i)\bsucceed(?:ed|s)?\b|\bsuccess(?:ful(?:ly)?|es)?\b|\bpass(?:ed|es)?\b|✅|✔|🟢|:white_check_mark:|:heavy_check_mark:|:large_green_circle:",
    )
});

// ---------------------------------------------------------------------------------------------
// Run ids and link markup.
// ---------------------------------------------------------------------------------------------

/// A run id: an Airflow run id (`scheduled__2024-...`), a UUID (Dagster), or digits.
const RUN_ID: &str = r"(?:[A-Za-z][A-Za-z0-9_]*__[0-9A-Za-z:+.%\-]+|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b|[0-9]+\b)";

/// Characters that may not precede a labelled run id: word characters (so `dag_run_id` and
/// `rerun` are not labels) and url punctuation (so `?run_id=` counts as url-derived).
const NOT_IN_URL: &str = r"(?:^|[^\w?&/=%.\-])";

/// Labelled ids, most trusted: `run_id 48213`, `run_id: 48213`, `run ID: 48213`,
/// `Run Id - 48213`, `*Run ID*\n48213`, `Run #48213`.
static LABELLED_RUN_ID: LazyLock<Regex> = LazyLock::new(|| {
    static_regex(&format!(
        r#"(?i){NOT_IN_URL}run(?:[ _\-]?id\b[\s*_`'"]*[:=#\-–—]?[\s*_`'"]*|\s*#\s*)(?P<id>{RUN_ID})"#
    ))
});

/// Bare `Run 48213`.
static BARE_RUN_ID: LazyLock<Regex> =
    LazyLock::new(|| static_regex(&format!(r"(?i){NOT_IN_URL}run\b[\s*:]*(?P<id>{RUN_ID})")));

/// Run-log url paths: `/runs/48213`, `/run/48213`, `/run_id/48213`, Dagster `/runs/<uuid>`.
static URL_PATH_RUN_ID: LazyLock<Regex> =
    LazyLock::new(|| static_regex(&format!(r"(?i)/runs?(?:[_\-]?ids?)?/(?P<id>{RUN_ID})")));

/// Url query ids: `?run_id=48213`, Airflow `dag_run_id=scheduled__...`.
static URL_QUERY_RUN_ID: LazyLock<Regex> =
    LazyLock::new(|| static_regex(&format!(r"(?i)[?&;_]run[_\-]?id=(?P<id>{RUN_ID})")));

/// `<url|label>` (also `<#C1|name>`, `<@U1|name>`).
static LINK_WITH_LABEL: LazyLock<Regex> =
    LazyLock::new(|| static_regex(r"<(?P<url>[^<>|\s]+)\|(?P<label>[^<>]*)>"));

/// `<https://...>` without a label.
static BARE_LINK: LazyLock<Regex> =
    LazyLock::new(|| static_regex(r"<(?P<url>(?:https?|ftp|mailto):[^<>|\s]*)>"));

/// The run id, preferring labelled ids over bare "Run N" over url-derived ones; within a tier
/// the first occurrence wins.
fn find_run_id(text: &str) -> Option<String> {
    [
        &LABELLED_RUN_ID,
        &BARE_RUN_ID,
        &URL_PATH_RUN_ID,
        &URL_QUERY_RUN_ID,
    ]
    .into_iter()
    .flat_map(|re| re.captures_iter(text))
    .filter_map(|c| c.name("id").map(|m| clean_run_id(m.as_str())))
    .find(|id| !id.is_empty())
}

/// Decodes url escapes (Airflow ids arrive as `...T00%3A00%3A00%2B00%3A00` in links) and drops
/// sentence punctuation glued to the end.
fn clean_run_id(raw: &str) -> String {
    let decoded = percent_decode(raw.trim());
    decoded
        .trim_end_matches(['.', ',', ':', ';', '-', ')'])
        .to_string()
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEDULES: &[&str] = &[
        "hourly_marts",
        "Nightly",
        "Nightly Finance",
        "daily_orders",
        "customer_assets_job",
        "orders_dag",
    ];

    const DBT_CLOUD_ERRORED: &str = "*<https://cloud.getdbt.com/deploy/1/projects/2/runs/48213/|Errored for Run #48213 on Job \"hourly_marts\">*\nEnvironment: Production | Trigger: Scheduled | Duration: 2m 3s\n:white_check_mark: `dbt deps` (4s)\n:white_check_mark: `dbt seed` (10s)\n:x: `dbt build --select marts` (1m 49s)";
    const DBT_CLOUD_SUCCESS: &str = "*<https://cloud.getdbt.com/deploy/1/projects/2/runs/48213/|Success for Run #48213 on Job \"hourly_marts\">*\nEnvironment: Production | Trigger: Scheduled\n:white_check_mark: `dbt deps` (4s)\n:white_check_mark: `dbt build` (1m 2s)";
    const DAGSTER_UUID: &str = "8b2f1c4e-1d2a-4c5e-9f00-123456789abc";

    fn me() -> Identity {
        Identity {
            user_id: "U0SELF".into(),
            bot_id: "B0SELF".into(),
            app_id: Some("A0SELF".into()),
        }
    }

    fn recognizer(schedules: &[&str], notifiers: &[&str], overrides: Vec<Override>) -> Recognizer {
        let strings = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect();
        Recognizer::new(me(), strings(schedules), strings(notifiers), overrides)
    }

    fn rec() -> Recognizer {
        recognizer(SCHEDULES, &[], vec![])
    }

    fn allow(notifiers: &[&str]) -> Recognizer {
        recognizer(SCHEDULES, notifiers, vec![])
    }

    /// An override for a notifier that writes `JOB<<name>> STATE=KO ID=777`.
    fn legacy_override() -> Recognizer {
        let o = Override {
            source: "Legacy-Notifier".into(),
            run_id: Regex::new(r"ID=(?P<run_id>\d+)").expect("test regex"),
            schedule: Some(Regex::new(r"JOB<<(?P<schedule>\w+)>>").expect("test regex")),
            failure: Some(Regex::new(r"STATE=KO").expect("test regex")),
        };
        recognizer(SCHEDULES, &[], vec![o])
    }

    /// A modern app bot post: bot_id + bot_profile, no subtype.
    fn app_bot(text: &str) -> InboundMessage {
        InboundMessage {
            channel: "C0ALERTS".into(),
            ts: "1700000000.000100".into(),
            user: Some("U0PARADIME".into()),
            bot_id: Some("B0PARADIME".into()),
            app_id: Some("A0PARADIME".into()),
            username: Some("Paradime Bolt".into()),
            text: text.into(),
            ..Default::default()
        }
    }

    /// A classic integration post: subtype bot_message + username.
    fn classic_bot(username: &str, text: &str) -> InboundMessage {
        InboundMessage {
            channel: "C0ALERTS".into(),
            ts: "1700000000.000200".into(),
            subtype: Some("bot_message".into()),
            bot_id: Some("B0CLASSIC".into()),
            username: Some(username.into()),
            text: text.into(),
            ..Default::default()
        }
    }

    #[test]
    fn success_notifications_close_the_loop_and_failures_never_do() {
        let passed = |schedule: &str, run_id: &str| {
            Some(Passed {
                schedule: schedule.into(),
                run_id: run_id.into(),
            })
        };
        let cases: &[(&str, Option<Passed>)] = &[
            (DBT_CLOUD_SUCCESS, passed("hourly_marts", "48213")),
            (
                "✅ hourly_marts passed (run 48250): 12 models, 0 failures",
                passed("hourly_marts", "48250"),
            ),
            (
                ":white_check_mark: Bolt schedule *daily_orders* succeeded. Run ID: 912",
                passed("daily_orders", "912"),
            ),
            (
                "Nightly recovered: run 77 is back to green",
                passed("Nightly", "77"),
            ),
            ("Run 48213 of hourly_marts: 5 passed, 1 failed", None),
            (DBT_CLOUD_ERRORED, None),
            ("❌ hourly_marts failed (run 48213)", None),
            // A success with nothing to tie it to a schedule or a run.
            ("✅ all good today", None),
            ("✅ unknown_schedule passed (run 5)", None),
        ];
        for (text, want) in cases {
            assert_eq!(&rec().recognize_pass(&app_bot(text)), want, "{text}");
        }
        // People, edits and selfheal itself never close the loop.
        assert_eq!(
            rec().recognize_pass(&human("✅ hourly_marts passed (run 1)")),
            None
        );
        let mut edited = app_bot("✅ hourly_marts passed (run 1)");
        edited.edited = true;
        assert_eq!(rec().recognize_pass(&edited), None);
        let mut mine = app_bot("✅ hourly_marts passed (run 1)");
        mine.bot_id = Some("B0SELF".into());
        assert_eq!(rec().recognize_pass(&mine), None);
        // A notifier allowlist applies to passes as to failures.
        assert_eq!(
            allow(&["B0OTHER"]).recognize_pass(&app_bot("✅ hourly_marts passed (run 1)")),
            None
        );
    }

    #[test]
    fn selfheals_own_posts_count_only_when_selfheal_notify_posted_them() {
        let notify = |text: &str, edited: bool| {
            let mut m = app_bot(text);
            m.bot_id = Some("B0SELF".into());
            m.edited = edited;
            m.blocks = vec![json!({"type": "context", "block_id": NOTIFY_BLOCK_ID})];
            m
        };
        let failed = "❌ hourly_marts failed (run 9)";
        let passed = "✅ hourly_marts passed (run 10)";
        assert!(rec().recognize(&notify(failed, false)).is_some());
        assert!(rec().recognize_pass(&notify(passed, false)).is_some());
        assert!(rec().explain(&notify(failed, false)).is_ok());
        // An edit of it, or selfheal's other messages, never.
        assert_eq!(rec().recognize(&notify(failed, true)), None);
        let mut chatter = notify(failed, false);
        chatter.blocks.clear();
        assert_eq!(rec().recognize(&chatter), None);
        assert_eq!(rec().explain(&chatter), Err(Unrecognized::Mine));
    }

    fn human(text: &str) -> InboundMessage {
        InboundMessage {
            channel: "C0ALERTS".into(),
            ts: "1700000000.000300".into(),
            user: Some("U0ALICE".into()),
            text: text.into(),
            ..Default::default()
        }
    }

    fn blocks(mut msg: InboundMessage, blocks: Value) -> InboundMessage {
        msg.blocks = blocks.as_array().cloned().unwrap_or_default();
        msg
    }

    fn attachments(mut msg: InboundMessage, attachments: Value) -> InboundMessage {
        msg.attachments = attachments.as_array().cloned().unwrap_or_default();
        msg
    }

    fn with(msg: InboundMessage, edit: impl FnOnce(&mut InboundMessage)) -> InboundMessage {
        let mut msg = msg;
        edit(&mut msg);
        msg
    }

    /// Paradime Bolt style blocks: header, schedule/run fields, a "View run logs" button.
    fn bolt_blocks(header: &str, schedule: &str, run_field: Option<&str>) -> Value {
        let mut fields = vec![json!({"type": "mrkdwn", "text": format!("*Schedule*\n{schedule}")})];
        if let Some(run) = run_field {
            fields.push(json!({"type": "mrkdwn", "text": format!("*Run ID*\n{run}")}));
        }
        fields.push(json!({"type": "mrkdwn", "text": "*Environment*\nproduction"}));
        json!([
            {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}},
            {"type": "section", "fields": fields},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Command*\n`dbt build --select marts`"}},
            {"type": "actions", "elements": [
                {"type": "button", "action_id": "logs", "value": "open_logs",
                 "text": {"type": "plain_text", "text": "View run logs"},
                 "url": "https://app.paradime.io/bolt/runs/48213/logs"}
            ]}
        ])
    }

    fn check(r: &Recognizer, msg: InboundMessage, want: Option<(&str, &str)>) {
        let got = r.recognize(&msg);
        let want = want.map(|(schedule, run_id)| Failure {
            schedule: schedule.into(),
            run_id: run_id.into(),
        });
        assert_eq!(got, want, "\nmessage text: {:?}", message_text(&msg));
    }

    const HOURLY: Option<(&str, &str)> = Some(("hourly_marts", "48213"));

    // Paradime Bolt.
    #[test]
    fn paradime_text_failure_is_recognised() {
        check(
            &rec(),
            app_bot(":x: Bolt run failed\nSchedule: hourly_marts\nRun ID: 48213"),
            HOURLY,
        );
    }
    #[test]
    fn paradime_blocks_failure_is_recognised() {
        check(
            &rec(),
            blocks(
                app_bot("Bolt run failed"),
                bolt_blocks(":x: Bolt run failed", "hourly_marts", Some("48213")),
            ),
            HOURLY,
        );
    }
    #[test]
    fn paradime_blocks_without_top_level_text_are_recognised() {
        check(
            &rec(),
            blocks(
                app_bot(""),
                bolt_blocks(":x: Bolt run failed", "hourly_marts", Some("48213")),
            ),
            HOURLY,
        );
    }
    #[test]
    fn paradime_run_id_comes_from_the_log_button_url_when_unlabelled() {
        check(
            &rec(),
            blocks(
                app_bot(""),
                bolt_blocks(":x: Bolt run failed", "hourly_marts", None),
            ),
            HOURLY,
        );
    }
    #[test]
    fn paradime_two_passed_one_failed_is_a_failure() {
        check(
            &rec(),
            app_bot("Schedule hourly_marts: 2 passed, 1 failed (run_id=48213)"),
            HOURLY,
        );
    }
    #[test]
    fn paradime_success_post_is_ignored() {
        check(
            &rec(),
            blocks(
                app_bot(""),
                bolt_blocks(
                    ":white_check_mark: Bolt run succeeded",
                    "hourly_marts",
                    Some("48213"),
                ),
            ),
            None,
        );
    }
    #[test]
    fn paradime_all_passed_with_zero_failed_is_ignored() {
        check(
            &rec(),
            app_bot("hourly_marts run_id 48213: 3 passed, 0 failed, 0 errors"),
            None,
        );
    }
    #[test]
    fn passed_notification_is_ignored() {
        check(
            &rec(),
            app_bot("Bolt schedule hourly_marts passed (Run ID: 48213)"),
            None,
        );
    }

    // dbt Cloud.
    #[test]
    fn dbt_cloud_errored_post_with_passed_steps_is_a_failure() {
        check(&rec(), app_bot(DBT_CLOUD_ERRORED), HOURLY);
    }
    #[test]
    fn dbt_cloud_success_post_is_ignored() {
        check(&rec(), app_bot(DBT_CLOUD_SUCCESS), None);
    }
    #[test]
    fn dbt_cloud_quoted_job_name_matches_the_schedule() {
        check(&rec(), app_bot("*<https://cloud.getdbt.com/deploy/1/projects/2/runs/777/|Errored for Run #777 on Job \"Nightly\">*"), Some(("Nightly", "777")));
    }
    #[test]
    fn dbt_cloud_post_in_blocks_is_recognised() {
        let b = json!([{"type": "section", "text": {"type": "mrkdwn", "text": DBT_CLOUD_ERRORED}}]);
        check(&rec(), blocks(app_bot("Errored for Run #48213"), b), HOURLY);
    }
    #[test]
    fn dbt_cloud_url_alone_gives_the_run_id() {
        check(&rec(), app_bot("Job hourly_marts errored: <https://cloud.getdbt.com/deploy/1/projects/2/runs/48213/|details>"), HOURLY);
    }

    // Dagster.
    #[test]
    fn dagster_run_failed_with_uuid_in_url_is_recognised() {
        let text = format!("Dagster run failed for job customer_assets_job\n<http://dagit.local/runs/{DAGSTER_UUID}|View run>");
        check(
            &rec(),
            app_bot(&text),
            Some(("customer_assets_job", DAGSTER_UUID)),
        );
    }
    #[test]
    fn dagster_run_failure_event_with_labelled_id_is_recognised() {
        check(
            &rec(),
            app_bot(&format!(
                "RUN_FAILURE customer_assets_job run_id: {DAGSTER_UUID}"
            )),
            Some(("customer_assets_job", DAGSTER_UUID)),
        );
    }
    #[test]
    fn dagster_run_success_event_is_ignored() {
        check(
            &rec(),
            app_bot(&format!(
                "RUN_SUCCESS customer_assets_job run_id: {DAGSTER_UUID}"
            )),
            None,
        );
    }

    // Airflow.
    #[test]
    fn airflow_task_failed_with_run_id_label_is_recognised() {
        let text = "Task Failed\nDAG: orders_dag\nTask: dbt_run\nRun ID: manual__2024-01-01T00:00:00+00:00\n<http://airflow.local/log?dag_id=orders_dag|Log>";
        check(
            &rec(),
            app_bot(text),
            Some(("orders_dag", "manual__2024-01-01T00:00:00+00:00")),
        );
    }
    #[test]
    fn airflow_dag_run_id_in_a_log_url_is_decoded() {
        let text = "Task Failed: orders_dag.dbt_run <https://airflow.example/dags/orders_dag/grid?dag_run_id=scheduled__2024-01-01T00%3A00%3A00%2B00%3A00&task_id=dbt_run|Log>";
        check(
            &rec(),
            app_bot(text),
            Some(("orders_dag", "scheduled__2024-01-01T00:00:00+00:00")),
        );
    }

    // Classic integrations with attachments only.
    #[test]
    fn classic_bot_with_attachments_only_is_recognised() {
        let a = json!([{"color": "danger", "fallback": "hourly_marts failed", "title": "hourly_marts failed",
                        "title_link": "https://ci.example/job/hourly_marts/runs/48213", "text": "dbt build exited 1", "footer": "CI"}]);
        check(&rec(), attachments(classic_bot("CI Bot", ""), a), HOURLY);
    }
    #[test]
    fn attachment_fields_carry_the_run_id() {
        let a = json!([{"color": "#FF0000", "pretext": "Pipeline failure", "title": "daily_orders",
                        "fields": [{"title": "Run ID", "value": "48213", "short": true}, {"title": "Status", "value": "FAILED", "short": true}]}]);
        check(
            &rec(),
            attachments(classic_bot("CI Bot", ""), a),
            Some(("daily_orders", "48213")),
        );
    }
    #[test]
    fn attachment_blocks_are_read() {
        let a = json!([{"color": "danger", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": ":red_circle: hourly_marts Run #48213"}}]}]);
        check(&rec(), attachments(classic_bot("CI Bot", ""), a), HOURLY);
    }
    #[test]
    fn green_attachment_that_passed_is_ignored() {
        let a = json!([{"color": "good", "title": "hourly_marts passed", "title_link": "https://ci.example/runs/48213"}]);
        check(&rec(), attachments(classic_bot("CI Bot", ""), a), None);
    }

    // GitHub Actions style and plain scripts.
    #[test]
    fn github_actions_style_blocks_are_recognised() {
        let b = json!([
            {"type": "header", "text": {"type": "plain_text", "text": ":x: daily_orders failed", "emoji": true}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Workflow:* <https://github.example/org/repo/actions/runs/42|daily_orders #42>\n*Branch:* `main`"},
             "fields": [{"type": "mrkdwn", "text": "*Status*\nfailure"}, {"type": "mrkdwn", "text": "*Commit*\nabc1234"}]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "triggered by <@U111>"}]}
        ]);
        check(
            &rec(),
            blocks(app_bot("Workflow daily_orders failed on main"), b),
            Some(("daily_orders", "42")),
        );
    }
    #[test]
    fn cron_script_plain_text_is_recognised() {
        check(
            &rec(),
            classic_bot("cron", "[cron] daily_orders FAILED (exit 1), run 48213"),
            Some(("daily_orders", "48213")),
        );
    }
    #[test]
    fn rich_text_with_an_emoji_element_is_recognised() {
        let b = json!([{"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
            {"type": "emoji", "name": "x"}, {"type": "text", "text": " hourly_marts, run "},
            {"type": "link", "url": "https://app.paradime.io/bolt/runs/48213", "text": "48213"}]}]}]);
        check(&rec(), blocks(app_bot(""), b), HOURLY);
    }

    // Run id spellings.
    #[test]
    fn run_id_with_a_space_is_read() {
        check(&rec(), app_bot("hourly_marts failed, run_id 48213"), HOURLY);
    }
    #[test]
    fn run_id_with_a_colon_is_read() {
        check(
            &rec(),
            app_bot("hourly_marts failed. run_id: 48213."),
            HOURLY,
        );
    }
    #[test]
    fn run_id_with_a_dash_label_is_read() {
        check(
            &rec(),
            app_bot("Failure: hourly_marts | Run Id - 48213"),
            HOURLY,
        );
    }
    #[test]
    fn run_id_in_backticks_after_bold_label_is_read() {
        check(
            &rec(),
            app_bot("hourly_marts errored\n*run ID:* `48213`"),
            HOURLY,
        );
    }
    #[test]
    fn run_id_from_a_query_string_is_read() {
        check(
            &rec(),
            app_bot("hourly_marts failed <https://scheduler.local/logs?run_id=48213|logs>"),
            HOURLY,
        );
    }
    #[test]
    fn run_id_from_a_singular_run_path_is_read() {
        check(
            &rec(),
            app_bot("hourly_marts failed https://scheduler.local/run/48213"),
            HOURLY,
        );
    }
    #[test]
    fn labelled_run_id_beats_a_url_derived_one() {
        check(
            &rec(),
            app_bot("hourly_marts failed <https://x.local/runs/99999|previous> Run ID: 48213"),
            HOURLY,
        );
    }

    // Who posted it.
    #[test]
    fn human_message_is_ignored() {
        check(
            &rec(),
            human(":x: hourly_marts failed, Run ID: 48213"),
            None,
        );
    }
    #[test]
    fn human_thread_broadcast_is_ignored() {
        check(
            &rec(),
            with(human("hourly_marts failed run_id 48213"), |m| {
                m.subtype = Some("thread_broadcast".into())
            }),
            None,
        );
    }
    #[test]
    fn bot_thread_broadcast_is_recognised() {
        check(
            &rec(),
            with(app_bot("hourly_marts failed run_id 48213"), |m| {
                m.subtype = Some("thread_broadcast".into())
            }),
            HOURLY,
        );
    }
    #[test]
    fn own_message_by_user_id_is_ignored() {
        check(
            &rec(),
            with(app_bot("hourly_marts failed run_id 48213"), |m| {
                m.user = Some("U0SELF".into())
            }),
            None,
        );
    }
    #[test]
    fn own_message_by_bot_id_is_ignored() {
        check(
            &rec(),
            with(app_bot("hourly_marts failed run_id 48213"), |m| {
                m.bot_id = Some("B0SELF".into())
            }),
            None,
        );
    }
    #[test]
    fn own_message_by_app_id_is_ignored() {
        check(
            &rec(),
            with(app_bot("hourly_marts failed run_id 48213"), |m| {
                m.app_id = Some("A0SELF".into())
            }),
            None,
        );
    }
    #[test]
    fn edited_message_is_ignored() {
        check(
            &rec(),
            with(app_bot("hourly_marts failed run_id 48213"), |m| {
                m.edited = true
            }),
            None,
        );
    }
    #[test]
    fn message_changed_is_ignored() {
        check(
            &rec(),
            with(app_bot("hourly_marts failed run_id 48213"), |m| {
                m.subtype = Some("message_changed".into())
            }),
            None,
        );
    }
    #[test]
    fn message_deleted_is_ignored() {
        check(
            &rec(),
            with(app_bot("hourly_marts failed run_id 48213"), |m| {
                m.subtype = Some("message_deleted".into())
            }),
            None,
        );
    }
    #[test]
    fn other_subtypes_are_ignored() {
        check(
            &rec(),
            with(app_bot("hourly_marts failed run_id 48213"), |m| {
                m.subtype = Some("channel_join".into())
            }),
            None,
        );
    }
    #[test]
    fn bot_not_in_the_allow_list_is_ignored() {
        check(
            &allow(&["B0OTHER"]),
            app_bot("hourly_marts failed run_id 48213"),
            None,
        );
    }
    #[test]
    fn bot_allowed_by_bot_id_is_recognised() {
        check(
            &allow(&["B0PARADIME"]),
            app_bot("hourly_marts failed run_id 48213"),
            HOURLY,
        );
    }
    #[test]
    fn bot_allowed_by_app_id_is_recognised() {
        check(
            &allow(&["A0PARADIME"]),
            app_bot("hourly_marts failed run_id 48213"),
            HOURLY,
        );
    }
    #[test]
    fn bot_allowed_by_username_ignores_case() {
        check(
            &allow(&["paradime bolt"]),
            app_bot("hourly_marts failed run_id 48213"),
            HOURLY,
        );
    }
    #[test]
    fn classic_bot_allowed_by_username_is_recognised() {
        check(
            &allow(&["CRON"]),
            classic_bot("cron", "daily_orders failed run 5"),
            Some(("daily_orders", "5")),
        );
    }

    // What the content says.
    #[test]
    fn recovered_notification_is_ignored() {
        check(
            &rec(),
            app_bot("hourly_marts recovered in Run #48214 (Run #48213 failed)"),
            None,
        );
    }
    #[test]
    fn success_headline_with_an_earlier_failed_attempt_is_ignored() {
        check(&rec(), app_bot(":white_check_mark: hourly_marts succeeded (run_id 48213)\nattempt 1 failed, retried"), None);
    }
    #[test]
    fn success_with_zero_error_summary_is_ignored() {
        check(
            &rec(),
            app_bot(
                "hourly_marts Run #48213 finished\nDone. PASS=12 WARN=1 ERROR=0 SKIP=0 TOTAL=13",
            ),
            None,
        );
    }
    #[test]
    fn dbt_summary_with_errors_is_a_failure() {
        check(
            &rec(),
            app_bot(
                "hourly_marts Run #48213 finished\nDone. PASS=11 WARN=1 ERROR=1 SKIP=0 TOTAL=13",
            ),
            HOURLY,
        );
    }
    #[test]
    fn unknown_schedule_is_ignored() {
        check(
            &rec(),
            app_bot(":x: weekly_finance failed, run_id 48213"),
            None,
        );
    }
    #[test]
    fn failure_without_a_run_id_is_ignored() {
        check(&rec(), app_bot(":x: hourly_marts failed, see logs"), None);
    }
    #[test]
    fn failure_words_only_inside_a_url_do_not_count() {
        check(
            &rec(),
            app_bot("hourly_marts run_id 48213 <https://x.local/errors/failed|details>"),
            None,
        );
    }

    // Schedule names.
    #[test]
    fn longer_unconfigured_identifier_does_not_match_a_prefix_schedule() {
        check(
            &rec(),
            app_bot("hourly_marts_v2 failed, run_id 48213"),
            None,
        );
    }
    #[test]
    fn hyphenated_suffix_does_not_match_a_prefix_schedule() {
        check(
            &rec(),
            app_bot("hourly_marts-dev failed, run_id 48213"),
            None,
        );
    }
    #[test]
    fn both_prefix_names_configured_picks_the_one_written() {
        check(
            &recognizer(&["hourly_marts", "hourly_marts_v2"], &[], vec![]),
            app_bot("hourly_marts_v2 failed, run_id 9"),
            Some(("hourly_marts_v2", "9")),
        );
    }
    #[test]
    fn longest_matching_schedule_wins() {
        check(
            &rec(),
            app_bot("Job \"Nightly Finance\" failed, Run #7"),
            Some(("Nightly Finance", "7")),
        );
    }
    #[test]
    fn schedule_match_ignores_case_and_returns_configured_spelling() {
        check(
            &rec(),
            app_bot("NIGHTLY FAILED run_id=5"),
            Some(("Nightly", "5")),
        );
    }

    // Overrides.
    #[test]
    fn override_regexes_read_an_unusual_format() {
        check(
            &legacy_override(),
            classic_bot("legacy-notifier", "JOB<<hourly_marts>> STATE=KO ID=777"),
            Some(("hourly_marts", "777")),
        );
    }
    #[test]
    fn override_failure_regex_that_does_not_match_means_no_failure() {
        check(
            &legacy_override(),
            classic_bot(
                "legacy-notifier",
                "JOB<<hourly_marts>> STATE=OK ID=777 (0 failed)",
            ),
            None,
        );
    }
    #[test]
    fn override_falls_back_to_built_ins_when_its_run_id_does_not_match() {
        check(
            &legacy_override(),
            classic_bot("legacy-notifier", "hourly_marts failed, run_id 48213"),
            HOURLY,
        );
    }
    #[test]
    fn override_is_not_used_for_other_senders() {
        check(
            &legacy_override(),
            classic_bot("someone-else", "JOB<<hourly_marts>> STATE=KO ID=777"),
            None,
        );
    }
    #[test]
    fn override_capturing_an_unknown_schedule_is_ignored() {
        check(
            &legacy_override(),
            classic_bot("legacy-notifier", "JOB<<weekly_finance>> STATE=KO ID=777"),
            None,
        );
    }

    // Hostile input.
    #[test]
    fn oversized_text_is_capped_and_does_not_panic() {
        let text = format!(
            "{}\nhourly_marts failed run_id 48213",
            "x".repeat(2 * 1024 * 1024)
        );
        check(&rec(), app_bot(&text), None);
    }
    #[test]
    fn multibyte_text_across_the_cap_does_not_panic() {
        check(&rec(), app_bot(&"é❌🦖".repeat(40_000)), None);
    }
    #[test]
    fn odd_unicode_around_a_failure_is_recognised() {
        check(
            &rec(),
            app_bot("\u{202e}🦖 ❌ hourly_marts\u{200b} — Run #48213 ̈ ﬁnal\u{0}"),
            HOURLY,
        );
    }
    #[test]
    fn deeply_nested_blocks_do_not_panic() {
        let mut v = json!({"type": "text", "text": "hourly_marts failed run_id 48213"});
        for _ in 0..300 {
            v = json!({"type": "rich_text_section", "elements": [v]});
        }
        check(&rec(), blocks(app_bot(""), json!([v])), None);
    }
    #[test]
    fn odd_json_types_in_blocks_do_not_panic() {
        let b = json!([null, 3, "hourly_marts", {"text": 5}, {"fields": {"x": true}}, {"elements": [[["failed run_id 48213"]]]}]);
        check(&rec(), blocks(app_bot(""), b), HOURLY);
    }

    // Manual "fix this" and text extraction.
    #[test]
    fn recognize_content_accepts_any_sender() {
        let msg = human(":x: hourly_marts failed, Run ID: 48213");
        assert_eq!(
            rec().recognize_content(&msg),
            Some(Failure {
                schedule: "hourly_marts".into(),
                run_id: "48213".into()
            })
        );
    }
    #[test]
    fn recognize_content_still_rejects_successes() {
        assert_eq!(rec().recognize_content(&human(DBT_CLOUD_SUCCESS)), None);
    }
    #[test]
    fn is_mine_recognises_each_identity_field() {
        let r = rec();
        assert!(r.is_mine(&with(human("x"), |m| m.user = Some("U0SELF".into()))));
        assert!(r.is_mine(&with(app_bot("x"), |m| m.bot_id = Some("B0SELF".into()))));
        assert!(r.is_mine(&with(app_bot("x"), |m| m.app_id = Some("A0SELF".into()))));
        assert!(!r.is_mine(&app_bot("x")));
        assert!(!Recognizer::new(Identity::default(), vec![], vec![], vec![]).is_mine(&human("x")));
    }
    #[test]
    fn message_text_keeps_both_url_and_label_of_links() {
        let text = message_text(&app_bot("<https://cloud.getdbt.com/deploy/1/projects/2/runs/48213/|Errored for Run #48213> &amp; <https://x.local/a>"));
        assert_eq!(text, "https://cloud.getdbt.com/deploy/1/projects/2/runs/48213/ Errored for Run #48213 & https://x.local/a");
    }
    #[test]
    fn message_text_reads_attachment_fields_and_button_urls() {
        let msg = attachments(
            blocks(
                app_bot("top"),
                json!([{"type": "actions", "elements": [{"type": "button", "value": "secret_payload", "text": {"type": "plain_text", "text": "Logs"}, "url": "https://l.local/runs/1"}]}]),
            ),
            json!([{"pretext": "pre", "title": "t", "fields": [{"title": "Run ID", "value": "48213"}], "footer": "foot", "fallback": "fb"}]),
        );
        assert_eq!(
            message_text(&msg),
            "top\nLogs\nhttps://l.local/runs/1\npre\nt\nRun ID\n48213\nfoot\nfb"
        );
    }
}
