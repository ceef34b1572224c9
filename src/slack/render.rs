//! The words and Block Kit of every message selfheal posts. Pure; no IO.
//!
//! Anything that came from outside (agent output, schedule names) is escaped
//! before it is put into mrkdwn, so an agent cannot ping `@channel` or forge a
//! link by printing Slack markup.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::domain::{Ending, FailureClass, Progress, SessionId, Status};
use crate::recognize::Unrecognized;

/// The healing reply, byte for byte as Paradime posts it.
pub const HEALING_REPLY: &str = "🦖 Self-healing enabled — starting healing session...";

/// The courtesy pointer posted in every other notified channel.
pub fn pointer(healing_channel_id: &str) -> String {
    format!("🦖 Self-healing started in <#{healing_channel_id}>")
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // Control characters (binary junk from an agent) are dropped.
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// The `callback_id` of the "Fix with selfheal" message shortcut, as the app
/// manifest (`data/slack-app-manifest.yml`) declares it.
pub const FIX_SHORTCUT: &str = "selfheal_fix";

/// Said, only to them, to a person who asks for a fix while healing is paused.
pub const PAUSED: &str = "selfheal is paused (`/selfheal resume` turns it back on).";

/// Why the "Fix with selfheal" shortcut cannot heal a message, in one sentence.
pub fn shortcut_refusal(why: Unrecognized) -> &'static str {
    match why {
        Unrecognized::Person => {
            "I can't heal this message: a person posted it, and I heal a scheduler's failure notifications."
        }
        Unrecognized::Mine => {
            "I can't heal this message: selfheal posted it; use the shortcut on the scheduler's failure notification."
        }
        Unrecognized::NotANotifier => {
            "I can't heal this message: the bot that posted it is not one of selfheal's notifiers (`SELFHEAL_NOTIFIER_BOTS`)."
        }
        Unrecognized::NotAFailure => {
            "I can't heal this message: it is not a failure notification."
        }
        Unrecognized::NoRunId => {
            "I can't heal this message: it names no run id, so I cannot find the failed run."
        }
        Unrecognized::UnknownSchedule => {
            "I can't heal this message: it names no schedule I know (`/selfheal status` lists them)."
        }
    }
}

/// Said, only to them, to a person who used the shortcut on a failure that
/// has a session already; `thread_url` is that session's thread.
pub fn session_exists(run_id: &str, status: Status, thread_url: Option<&str>) -> String {
    let thread = match thread_url {
        Some(url) if safe_url(url) => format!(": <{url}|its thread>"),
        _ => String::new(),
    };
    format!(
        "{} Run `{}` has a healing session already ({}){thread}.",
        status_emoji(status),
        escape(run_id),
        outcome(status)
    )
}

/// A time as people read it in selfheal's answers.
pub fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A configured channel (name or id) as mrkdwn: `#name`, or a channel link for an id.
/// A workspace written before it is left out, as Slack shows channels.
pub fn channel_mrkdwn(configured: &str) -> String {
    let key = crate::config::normalize_channel(configured);
    let key = crate::config::split_workspace(&key).1;
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        format!("<#{key}>")
    } else {
        format!("#{}", escape(key))
    }
}

/// A URL that can go inside `<…|…>` unchanged.
pub fn safe_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '|'))
}

/// A link to a message built from its channel and ts, as Slack's permalinks
/// are shaped (`https://slack.com/archives/C…/p16…`); Slack redirects it to
/// the workspace. `None` for a channel or ts that is not Slack's.
pub fn archive_url(channel: &str, ts: &str) -> Option<String> {
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
    (ok(channel) && ok(ts)).then(|| {
        format!(
            "https://slack.com/archives/{channel}/p{}",
            ts.replace('.', "")
        )
    })
}

/// A session's status at a glance, in lists of sessions.
pub fn status_emoji(status: Status) -> &'static str {
    match status {
        Status::Claimed => "⏳",
        Status::Running => "🔄",
        Status::Fixed => "✅",
        Status::NoFix => "🤷",
        Status::Failed => "❌",
        Status::TimedOut => "⏱️",
        Status::Interrupted => "⏹️",
        Status::Duplicate => "🔁",
        Status::Stopped => "✋",
        Status::Retried => "🔁",
        Status::NeedsPeople => "🙋",
    }
}

/// A session's status in words, in lists of sessions.
pub fn outcome(status: Status) -> &'static str {
    match status {
        Status::Claimed => "starting",
        Status::Running => "running",
        Status::Fixed => "fixed",
        Status::NoFix => "no fix",
        Status::Failed => "agent failed",
        Status::TimedOut => "timed out",
        Status::Interrupted => "interrupted",
        Status::Duplicate => "already addressed",
        Status::Stopped => "stopped by a person",
        Status::Retried => "re-run by the scheduler",
        Status::NeedsPeople => "needs a person",
    }
}

/// Slack rejects message text over 40,000 characters and section text over
/// 3,000; progress stays well inside both.
const MAX_SECTION: usize = 2800;

/// The action id of the Stop button; its value is the session id.
pub const STOP_ACTION: &str = "selfheal_stop";
/// The action id of the View PR link button (Slack still reports the click).
pub const VIEW_PR_ACTION: &str = "selfheal_view_pr";

/// The progress message: text (for notifications and fallbacks) and blocks,
/// with a Stop button while the session runs and View PR once there is one.
pub fn progress(view: &Progress, session_id: SessionId) -> (String, Value) {
    let head = match &view.ending {
        None => format!(
            "⏳ Healing run `{}` with agent `{}` — {}",
            escape(&view.run_id),
            escape(&view.agent),
            elapsed(view.elapsed_secs)
        ),
        Some(ending) => format!(
            "{} Healing run `{}` with agent `{}` — {} after {}",
            icon(ending.status()),
            escape(&view.run_id),
            escape(&view.agent),
            status_words(ending.status()),
            elapsed(view.elapsed_secs)
        ),
    };
    let mut lines: Vec<String> = view.recent.iter().map(|l| escape(l)).collect();
    // Keep the newest lines that fit.
    let mut body = String::new();
    while let Some(last) = lines.pop() {
        if body.len() + last.len() + 1 > MAX_SECTION {
            break;
        }
        body = if body.is_empty() {
            last
        } else {
            format!("{last}\n{body}")
        };
    }
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": head}
    })];
    if !body.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("```{body}```")}
        }));
    }
    let mut context = format!("{} lines of agent output", view.total_lines);
    if let Some(pr) = &view.pr_url {
        context.push_str(&format!(" · <{}|pull request>", escape(pr)));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": context}]
    }));
    let mut buttons = vec![];
    if view.ending.is_none() {
        buttons.push(json!({
            "type": "button",
            "action_id": STOP_ACTION,
            "text": {"type": "plain_text", "text": "Stop"},
            "style": "danger",
            "value": session_id.to_string(),
        }));
    }
    if let Some(pr) = &view.pr_url {
        buttons.push(json!({
            "type": "button",
            "action_id": VIEW_PR_ACTION,
            "text": {"type": "plain_text", "text": "View PR"},
            "url": pr,
        }));
    }
    if !buttons.is_empty() {
        blocks
            .push(json!({"type": "actions", "block_id": "selfheal-controls", "elements": buttons}));
    }
    (head, Value::Array(blocks))
}

/// The last message of a session: the PR link, or why there is none.
pub fn final_message(run_id: &str, ending: &Ending, pr_url: Option<&str>) -> String {
    let run = escape(run_id);
    let summary = escape_keeping_stopper(ending);
    match (ending.status(), pr_url) {
        (Status::Duplicate, Some(pr)) => format!(
            "🔁 An open pull request already addresses this error: {} — no new pull request for run `{run}`.",
            escape(pr)
        ),
        (Status::Fixed, Some(pr)) => {
            let mut text = format!("✅ Fix for run `{run}` is ready for review: {}", escape(pr));
            if !summary.is_empty() {
                text.push_str(&format!("\n>{}", summary.replace('\n', "\n>")));
            }
            text
        }
        (Status::Fixed, None) => format!("✅ Fix for run `{run}` is verified: {summary}"),
        (Status::Retried, _) => format!("🔁 Run `{run}`: {summary}"),
        (Status::NeedsPeople, _) => format!("🙋 Run `{run}` needs a person: {summary}"),
        (status, _) => {
            let reason = if summary.is_empty() {
                "the agent gave no reason".to_string()
            } else {
                summary
            };
            format!(
                "{} No pull request opened for run `{run}` ({}): {reason}",
                icon(status),
                status_words(status)
            )
        }
    }
}

/// What the run log says, in one message.
pub fn run_log_summary(log: &crate::runlog::RunLog) -> String {
    let mut text = format!(
        "📄 Run log ({}): {} failing node{}",
        escape(&log.origin),
        log.failures.len(),
        if log.failures.len() == 1 { "" } else { "s" }
    );
    if let Some(cmd) = &log.command {
        text.push_str(&format!(" in `{}`", escape(cmd)));
    }
    for f in log.failures.iter().take(5) {
        let first = f
            .message
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.ends_with("Error") && !l.contains(" Error in "))
            .unwrap_or("");
        let path = f
            .path
            .as_deref()
            .map(|p| format!(" ({})", escape(p)))
            .unwrap_or_default();
        text.push_str(&format!(
            "\n• `{}`{path}: {}",
            escape(&f.name),
            escape(first)
        ));
    }
    text
}

/// What a pull request opened by selfheal says.
pub struct PrBody<'a> {
    pub schedule: &'a str,
    pub run_id: &'a str,
    pub agent: &'a str,
    pub root_cause: &'a str,
    pub diff_stat: &'a str,
    pub diff: &'a str,
    pub verification_command: &'a str,
    pub verification_output: &'a str,
    /// Where verification ran and what it proved (built, or compiled only).
    pub verification_place: &'a str,
    /// Whether verification built and tested, or only compiled.
    pub built: bool,
    /// The files the commit holds.
    pub files: &'a [String],
    pub thread_link: Option<&'a str>,
    pub signature: &'a str,
}

/// GitHub caps a PR body at 65,536 characters; the diff gets what is left.
const PR_DIFF_MAX: usize = 40_000;

/// The pull request body: root cause, change, verification, way back to Slack.
pub fn pr_body(b: &PrBody<'_>) -> String {
    let diff = if b.diff.len() > PR_DIFF_MAX {
        let mut end = PR_DIFF_MAX;
        while !b.diff.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}\n… (diff cut; see the Files tab)", &b.diff[..end])
    } else {
        b.diff.to_string()
    };
    let thread = b
        .thread_link
        .map(|l| format!("[the Slack thread]({l})"))
        .unwrap_or_else(|| "the Slack thread".to_string());
    let files: String = b.files.iter().map(|f| format!("- `{f}`\n")).collect();
    let proved = if b.built {
        "built and tested"
    } else {
        "compiled only: nothing was built or tested"
    };
    format!(
        "## Root cause\n{root}\n\n## Change\nFiles committed:\n{files}\n```\n{stat}\n```\n<details><summary>Diff</summary>\n\n```diff\n{diff}\n```\n</details>\n\n\
         ## Verification ({proved})\nThe session {place}.\n`{cmd}` passed:\n```\n{out}\n```\n\n\
         ## Context\nSchedule `{schedule}`, run `{run}`, healed by `{agent}` — discussion in {thread}.\n\
         selfheal opened this pull request and will never merge it: review it and merge it yourself.\n\n\
         <!-- selfheal-signature: {sig} -->\n",
        root = b.root_cause.trim(),
        stat = b.diff_stat.trim(),
        cmd = b.verification_command,
        place = b.verification_place,
        out = b.verification_output.trim(),
        schedule = b.schedule,
        run = b.run_id,
        agent = b.agent,
        sig = signature_marker(b.signature),
    )
}

/// A short, stable fingerprint of an error signature (FNV-1a, 64 bits), as
/// written into PR bodies so later sessions can find the PR.
pub fn signature_marker(signature: &str) -> String {
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in signature.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("{hash:016x}")
}

/// Escapes a summary; the one mention selfheal itself writes — who stopped
/// the session — stays a real mention.
fn escape_keeping_stopper(ending: &Ending) -> String {
    let summary = ending.summary().trim();
    if ending.status() == Status::Stopped {
        if let Some(rest) = summary.strip_prefix("stopped by <@") {
            if let Some((user, tail)) = rest.split_once('>') {
                if !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return format!("stopped by <@{user}>{}", escape(tail));
                }
            }
        }
    }
    escape(summary)
}

/// A milestone: something the agent said that deserves its own message.
pub fn milestone(text: &str) -> String {
    format!("📍 {}", escape(text))
}

/// Announces the pull request as soon as the agent reports it.
pub fn pr_found(url: &str) -> String {
    format!("🔗 Pull request opened: {}", escape(url))
}

/// What kind of failure the run log shows, and why: the session's path.
pub fn sorted(class: FailureClass, why: &str) -> String {
    let (icon, path) = match class {
        FailureClass::Transient => ("🌩️", "no agent: the scheduler is asked to re-run it"),
        FailureClass::Code => ("🛠️", "an agent fixes the code"),
        FailureClass::Data => (
            "🧪",
            "diagnosed only: a failing test is never edited to pass",
        ),
        FailureClass::Setup => ("🔐", "no agent: this is for people"),
    };
    format!(
        "{icon} Sorted as *{}* ({path}): {}",
        class.label(),
        escape(why)
    )
}

/// The same error happened before, in another thread.
pub fn recurrence(run_id: &str, channel: &str, thread_ts: &str, pr_url: Option<&str>) -> String {
    let thread = archive_link(channel, thread_ts, "its thread");
    let mut text = format!(
        "🔁 This error happened before, in run `{}` ({thread})",
        escape(run_id)
    );
    if let Some(pr) = pr_url {
        text.push_str(&format!(", pull request {}", escape(pr)));
    }
    text.push('.');
    text
}

/// A link to a message, labelled (see [`archive_url`]); junk ids give the label alone.
pub fn archive_link(channel: &str, ts: &str, label: &str) -> String {
    match archive_url(channel, ts) {
        Some(url) => format!("<{url}|{}>", escape(label)),
        None => escape(label),
    }
}

/// Closes the loop in a healing thread: the schedule passed again.
pub fn passed_again(schedule: &str, run_id: &str) -> String {
    format!(
        "✅ {} passed again (run {})",
        escape(schedule),
        escape(run_id)
    )
}

/// The healing reply, edited once the schedule passed again.
pub fn resolved_reply(schedule: &str, run_id: &str) -> String {
    format!(
        "🦖 Self-healing enabled — ✅ resolved: {} passed again (run {})",
        escape(schedule),
        escape(run_id)
    )
}

/// Said in the thread when the schedule recovered while the session's pull
/// request is still open.
pub fn pr_left_open(schedule: &str, pr_url: &str) -> String {
    format!(
        "📝 {} passed without {}, which is still open: I said so on the pull request. Merge it if the change is still wanted, or close it.",
        escape(schedule),
        escape(pr_url)
    )
}

/// The comment on a selfheal pull request the schedule recovered without (Markdown).
pub fn pr_recovered_comment(schedule: &str, run_id: &str, thread: Option<&str>) -> String {
    let mut text = format!(
        "`{schedule}` passed again in run {run_id} without this change. It may still be worth merging if it fixes the cause; otherwise close it."
    );
    if let Some(link) = thread {
        text.push_str(&format!("\n\nSlack thread: {link}"));
    }
    text.push_str("\n\n_selfheal_");
    text
}

/// Said in a session's thread when a person merged its pull request.
pub fn pr_merged(url: &str, by: Option<&str>) -> String {
    match by {
        Some(login) => format!("🔀 {} was merged by @{}", escape(url), escape(login)),
        None => format!("🔀 {} was merged", escape(url)),
    }
}

/// Said in a session's thread when its pull request was closed unmerged.
pub fn pr_closed(url: &str) -> String {
    format!("❌ {} was closed without merging", escape(url))
}

/// Posted in the thread of a session that was running when selfheal stopped or crashed.
pub fn interrupted(run_id: &str, why: &str) -> String {
    format!(
        "🛑 The healing session for run `{}` was interrupted: {}. Re-run the schedule or ask a human to take over.",
        escape(run_id),
        escape(why)
    )
}

/// The progress message of a session a restart interrupted: it loses its
/// Stop button and says how it ended.
pub fn progress_interrupted(run_id: &str, agent: &str) -> (String, Value) {
    let text = format!(
        "🛑 Healing run `{}` with agent `{}` — interrupted by a restart",
        escape(run_id),
        escape(agent)
    );
    let blocks = json!([{"type": "section", "text": {"type": "mrkdwn", "text": text}}]);
    (text, blocks)
}

/// Said in the thread when a restart interrupted the session and it runs again.
pub fn rerunning(run_id: &str) -> String {
    format!(
        "🔁 selfheal restarted after interrupting the healing of run `{}`; starting the session again (once: if this one is interrupted too, a human takes over).",
        escape(run_id)
    )
}

fn icon(status: Status) -> &'static str {
    match status {
        Status::Fixed => "✅",
        Status::NoFix => "⚠️",
        Status::TimedOut => "⏱️",
        Status::Interrupted => "🛑",
        Status::Duplicate => "🔁",
        Status::Stopped => "✋",
        Status::Retried => "🔁",
        Status::NeedsPeople => "🙋",
        Status::Failed | Status::Claimed | Status::Running => "❌",
    }
}

/// A session's status in its own thread, where who stopped it is said
/// beside it and a session not ended yet is running.
fn status_words(status: Status) -> &'static str {
    match status {
        Status::Stopped => "stopped",
        Status::Retried => "re-run",
        Status::NeedsPeople => "needs a person",
        Status::Claimed | Status::Running => "running",
        other => outcome(other),
    }
}

fn elapsed(secs: u64) -> String {
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_links_are_built_from_stored_data_and_never_from_junk() {
        assert_eq!(
            archive_link("C0HEALING1", "1700000000.000100", "thread"),
            "<https://slack.com/archives/C0HEALING1/p1700000000000100|thread>"
        );
        assert_eq!(archive_link("C1>|x", "1.2", "thread"), "thread");
    }

    #[test]
    fn the_healing_reply_is_byte_for_byte_paradimes() {
        assert_eq!(
            HEALING_REPLY.as_bytes(),
            "\u{1F996} Self-healing enabled \u{2014} starting healing session...".as_bytes()
        );
    }

    #[test]
    fn links_are_built_from_stored_data_and_never_from_junk() {
        assert_eq!(
            archive_url("C0HEALING1", "1700000000.000100").as_deref(),
            Some("https://slack.com/archives/C0HEALING1/p1700000000000100")
        );
        assert_eq!(archive_url("C1>|x", "1.2"), None);
        assert_eq!(archive_url("C1", ""), None);
        assert!(safe_url("https://github.com/acme/analytics/pull/7"));
        assert!(!safe_url("https://x|<!channel>"));
        assert!(!safe_url("javascript:alert(1)"));
    }

    #[test]
    fn a_shortcut_on_a_failure_with_a_session_links_its_thread() {
        assert_eq!(
            session_exists("42", Status::Running, Some("https://slack.com/archives/C1/p1")),
            "🔄 Run `42` has a healing session already (running): <https://slack.com/archives/C1/p1|its thread>."
        );
        assert_eq!(
            session_exists("<!here>", Status::Fixed, Some("javascript:x")),
            "✅ Run `&lt;!here&gt;` has a healing session already (fixed)."
        );
    }

    #[test]
    fn every_shortcut_refusal_is_one_sentence() {
        use Unrecognized::*;
        for why in [
            Person,
            Mine,
            NotANotifier,
            NotAFailure,
            NoRunId,
            UnknownSchedule,
        ] {
            let text = shortcut_refusal(why);
            assert!(text.starts_with("I can't heal this message: "), "{text}");
            assert_eq!(text.matches(". ").count(), 0, "{text}");
            assert!(text.ends_with('.'), "{text}");
        }
    }

    #[test]
    fn the_pointer_links_the_healing_channel() {
        assert_eq!(pointer("C0HEAL"), "🦖 Self-healing started in <#C0HEAL>");
    }

    #[test]
    fn slack_markup_from_outside_is_escaped() {
        for (input, expected) in [
            ("plain", "plain"),
            ("<!channel> wake up", "&lt;!channel&gt; wake up"),
            ("a & b", "a &amp; b"),
            ("<https://evil|click>", "&lt;https://evil|click&gt;"),
            ("bell\u{7}junk\u{0}", "belljunk"),
            ("keeps\nnewlines\tand tabs", "keeps\nnewlines\tand tabs"),
        ] {
            assert_eq!(escape(input), expected, "input: {input:?}");
        }
    }

    fn view(lines: &[&str], ending: Option<Ending>) -> Progress {
        Progress {
            run_id: "48213".into(),
            agent: "healer".into(),
            elapsed_secs: 75,
            recent: lines.iter().map(|s| s.to_string()).collect(),
            total_lines: lines.len(),
            pr_url: None,
            ending,
        }
    }

    #[test]
    fn progress_shows_the_run_the_agent_and_the_newest_lines() {
        let (text, blocks) = progress(&view(&["reading log", "<b>"], None), SessionId(7));
        assert_eq!(text, "⏳ Healing run `48213` with agent `healer` — 1m15s");
        let body = blocks[1]["text"]["text"].as_str().unwrap();
        assert_eq!(body, "```reading log\n&lt;b&gt;```");
        assert_eq!(
            blocks[2]["elements"][0]["text"].as_str().unwrap(),
            "2 lines of agent output"
        );
        assert_eq!(blocks[3]["elements"][0]["action_id"], STOP_ACTION);
        assert_eq!(blocks[3]["elements"][0]["value"], "7");
    }

    #[test]
    fn progress_keeps_only_what_fits_in_a_section() {
        let long = "x".repeat(1000);
        let lines: Vec<&str> = std::iter::repeat_n(long.as_str(), 10).collect();
        let (_, blocks) = progress(&view(&lines, None), SessionId(7));
        let body = blocks[1]["text"]["text"].as_str().unwrap();
        assert!(body.len() <= MAX_SECTION + 6, "len {}", body.len());
    }

    #[test]
    fn a_pr_body_carries_cause_change_verification_thread_and_signature() {
        let body = pr_body(&PrBody {
            schedule: "hourly_marts",
            run_id: "48213",
            agent: "dbt-doctor",
            root_cause: "orders refs stg_order",
            diff_stat: " models/orders.sql | 2 +-",
            diff: "-a\n+b",
            verification_command: "dbt build --select orders+",
            verification_output: "Done. PASS=5",
            verification_place: "builds in a throwaway copy of production's DuckDB",
            built: true,
            files: &["models/orders.sql".to_string()],
            thread_link: Some("https://x.slack.com/archives/C1/p1"),
            signature: "model:orders: x",
        });
        assert!(body.starts_with("## Root cause\norders refs stg_order\n"));
        assert!(
            body.contains("Files committed:\n- `models/orders.sql`\n"),
            "{body}"
        );
        assert!(
            body.contains(
                "## Verification (built and tested)\nThe session builds in a throwaway copy"
            ),
            "{body}"
        );
        assert!(body.contains("```diff\n-a\n+b\n```"));
        assert!(body.contains("`dbt build --select orders+` passed:\n```\nDone. PASS=5\n```"));
        assert!(body.contains("[the Slack thread](https://x.slack.com/archives/C1/p1)"));
        assert!(body.contains(&format!(
            "<!-- selfheal-signature: {} -->",
            signature_marker("model:orders: x")
        )));
        assert!(body.contains("will never merge it"));
    }

    #[test]
    fn a_compile_only_pr_says_nothing_was_built() {
        let body = pr_body(&PrBody {
            schedule: "s",
            run_id: "1",
            agent: "a",
            root_cause: "r",
            diff_stat: "",
            diff: "",
            verification_command: "dbt compile --select orders+",
            verification_output: "Done.",
            verification_place: "compiles only",
            built: false,
            files: &[],
            thread_link: None,
            signature: "",
        });
        assert!(
            body.contains("## Verification (compiled only: nothing was built or tested)"),
            "{body}"
        );
    }

    #[test]
    fn signature_markers_are_stable() {
        assert_eq!(signature_marker(""), "cbf29ce484222325");
        assert_ne!(signature_marker("a"), signature_marker("b"));
    }

    #[test]
    fn final_messages_give_the_pr_or_the_reason() {
        let fixed = Ending::fixed("renamed ref");
        assert_eq!(
            final_message("7", &fixed, Some("https://github.com/a/b/pull/1")),
            "✅ Fix for run `7` is ready for review: https://github.com/a/b/pull/1\n>renamed ref"
        );
        let timed_out = Ending::timed_out(std::time::Duration::from_secs(30));
        assert_eq!(
            final_message("7", &timed_out, None),
            "⏱️ No pull request opened for run `7` (timed out): the agent ran past its 30s wall-clock limit and was stopped"
        );
        let stopped = Ending::stopped("U1", &["read <it>".to_string()]);
        assert_eq!(
            final_message("7", &stopped, None),
            "✋ No pull request opened for run `7` (stopped): stopped by <@U1>; what it had done so far: read &lt;it&gt;"
        );
        let no_fix = Ending::verdict(crate::domain::Outcome::NoFix, "");
        assert_eq!(
            final_message("7", &no_fix, None),
            "⚠️ No pull request opened for run `7` (no fix): the agent gave no reason"
        );
    }

    #[test]
    fn a_pull_requests_end_is_one_line_naming_who_merged() {
        let url = "https://github.com/acme/dbt/pull/7";
        let cases = [
            (
                pr_merged(url, Some("octocat")),
                "🔀 https://github.com/acme/dbt/pull/7 was merged by @octocat",
            ),
            (
                pr_merged(url, None),
                "🔀 https://github.com/acme/dbt/pull/7 was merged",
            ),
            (
                pr_merged(url, Some("<!channel>")),
                "🔀 https://github.com/acme/dbt/pull/7 was merged by @&lt;!channel&gt;",
            ),
            (
                pr_closed(url),
                "❌ https://github.com/acme/dbt/pull/7 was closed without merging",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
