//! The opening prompt of a healing session. Pure: it depends only on
//! [`crate::domain`] (the driver turns stored sessions into [`PriorAttempt`]s).

use crate::domain::{FollowUp, PriorAttempt, Status};

/// `Review the run log and fix run_id <N>`, then what earlier sessions of the
/// same schedule did, so the agent builds on them instead of repeating them.
pub fn opening(run_id: &str, schedule: &str, prior: &[PriorAttempt]) -> String {
    let mut out = format!("Review the run log and fix run_id {run_id}\n");
    out.push_str(&format!("\nPrior attempts for schedule `{schedule}`"));
    if prior.is_empty() {
        out.push_str(": none recorded.\n");
        return out;
    }
    out.push_str(" (most recent first):\n");
    for s in prior {
        out.push_str(&format!(
            "- run_id {} at {}: {}",
            s.run_id,
            s.at.format("%Y-%m-%d %H:%M UTC"),
            outcome_words(s.status)
        ));
        match &s.pr_url {
            Some(pr) => out.push_str(&format!("; PR {pr}")),
            None => out.push_str("; no PR"),
        }
        if let Some(err) = s.error.as_deref().filter(|e| !e.trim().is_empty()) {
            out.push_str(&format!("; error: {}", one_line(err)));
        }
        if let Some(summary) = s.summary.as_deref().filter(|e| !e.trim().is_empty()) {
            out.push_str(&format!("; summary: {}", one_line(summary)));
        }
        out.push('\n');
    }
    out.push_str(
        "\nIf a pull request above is still open and addresses the same error, do not open another one: \
         say so and link it. Otherwise build on what the earlier attempts found.\n",
    );
    out
}

/// The prompt of a follow-up: the person's request and the thread's story
/// first, quoted as data, then the usual opening.
pub fn followup(f: &FollowUp, opening: &str) -> String {
    let quote = |t: &str| t.replace("</thread>", "</thread\u{200b}>");
    let mut out = format!(
        "Follow-up requested by Slack user <@{}> in the healing thread (guidance from a person on the team):\n<thread>\n{}\n</thread>\n",
        f.by,
        quote(&f.instruction)
    );
    if let Some(pr) = &f.pr_url {
        out.push_str(&format!(
            "Your changes go on top of the open pull request {pr} (its branch is checked out).\n"
        ));
    }
    out.push_str(&format!(
        "What happened in this thread so far:\n<thread>\n{}\n</thread>\n\n{opening}",
        quote(f.history.trim())
    ));
    out
}

fn outcome_words(status: Status) -> &'static str {
    match status {
        Status::Fixed => "fixed",
        Status::NoFix => "no fix",
        Status::Failed => "agent failed",
        Status::TimedOut => "timed out",
        Status::Interrupted => "interrupted",
        Status::Duplicate => "an open PR already addressed it",
        Status::Stopped => "stopped by a person",
        Status::Retried => "a transient failure, re-run by the scheduler",
        Status::NeedsPeople => "left to people (permissions, configuration, or re-runs spent)",
        Status::Claimed | Status::Running => "still running",
    }
}

/// Prior-attempt fields stay one short line each.
fn one_line(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 300 {
        let cut: String = flat.chars().take(300).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn row(run: &str, status: Status, pr: Option<&str>, summary: Option<&str>) -> PriorAttempt {
        PriorAttempt {
            run_id: run.into(),
            at: chrono::Utc.with_ymd_and_hms(2026, 11, 20, 7, 5, 0).unwrap(),
            status,
            pr_url: pr.map(str::to_string),
            error: None,
            summary: summary.map(str::to_string),
        }
    }

    #[test]
    fn the_prompt_opens_with_paradimes_words_and_says_when_there_is_no_history() {
        assert_eq!(
            opening("48213", "hourly_marts", &[]),
            "Review the run log and fix run_id 48213\n\nPrior attempts for schedule `hourly_marts`: none recorded.\n"
        );
    }

    #[test]
    fn prior_attempts_name_run_time_outcome_pr_and_summary() {
        let prompt = opening(
            "48300",
            "hourly_marts",
            &[
                row(
                    "48213",
                    Status::Fixed,
                    Some("https://github.com/a/b/pull/7"),
                    Some("renamed\n the ref"),
                ),
                row("48100", Status::Failed, None, None),
            ],
        );
        assert!(prompt.starts_with("Review the run log and fix run_id 48300\n"));
        assert!(prompt.contains(
            "- run_id 48213 at 2026-11-20 07:05 UTC: fixed; PR https://github.com/a/b/pull/7; summary: renamed the ref\n"
        ));
        assert!(prompt.contains("- run_id 48100 at 2026-11-20 07:05 UTC: agent failed; no PR\n"));
        assert!(prompt.contains("do not open another one"));
    }
}
