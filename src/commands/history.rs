//! `history [schedule]`: the 10 most recent sessions with their outcome,
//! pull request (merged by whom, closed or open, when selfheal watches it)
//! and thread. Links come from `chat.getPermalink` when Slack
//! answers quickly, else from the stored channel and ts.

use std::time::Duration;

use super::{unknown_schedule, when, CommandContext};
use crate::domain::PrState;
use crate::slack::render::{archive_url, escape, outcome, safe_url, status_emoji};
use crate::store::SessionRow;

/// At most this many sessions: the answer stays short and fast.
const ROWS: usize = 10;

/// How long permalinks may take, all together, before stored data is used.
const PERMALINK_BUDGET: Duration = Duration::from_millis(800);

pub(super) async fn history(ctx: &CommandContext, only: Option<&str>) -> anyhow::Result<String> {
    if let Some(name) = only {
        if ctx.parts.cfg.schedules.get(name).is_none() {
            return Ok(unknown_schedule(&ctx.parts.cfg, name));
        }
    }
    let rows = ctx.parts.store.recent_sessions(only, ROWS)?;
    if rows.is_empty() {
        return Ok(match only {
            Some(name) => format!("No healing sessions yet for `{}`.", escape(name)),
            None => "No healing sessions yet.".to_string(),
        });
    }
    let links = thread_urls(ctx, &rows).await;
    let mut out = match only {
        Some(name) => format!("*Recent healing sessions of `{}`*\n", escape(name)),
        None => "*Recent healing sessions*\n".to_string(),
    };
    for (row, link) in rows.iter().zip(links) {
        let thread = match link {
            Some(url) => format!("<{url}|thread>"),
            None => "thread".to_string(),
        };
        let pr = match &row.pr_url {
            Some(url) if safe_url(url) => format!(" · <{url}|pull request>"),
            Some(url) => format!(" · {}", escape(url)),
            None => String::new(),
        };
        // Where it stands, when selfheal watches it (not a compare link).
        let pr_state = match &row.pr_url {
            Some(url) => match ctx.parts.store.watched_pr(url) {
                Ok(Some(watched)) => format!(" {}", pr_state(&watched.state)),
                _ => String::new(),
            },
            None => String::new(),
        };
        // What an llm agent's model calls cost, when its agent has prices.
        let cost = match ctx.parts.store.session_cost(row.id) {
            Ok(Some(c)) => format!(" · {}", crate::agent::llm::usd(c)),
            _ => String::new(),
        };
        out.push_str(&format!(
            "• {} `{}` run {} — {}{pr}{pr_state}{cost} · {thread} · {}\n",
            status_emoji(row.status),
            escape(&row.schedule),
            escape(&row.run_id),
            outcome(row.status),
            when(row.created_at),
        ));
    }
    Ok(out.trim_end().to_string())
}

/// Links to the rows' threads: Slack's permalinks when it answers within
/// the budget, else links built from the stored channel and ts (`None` only
/// for stored data that is not Slack's). Every link is safe in `<…|…>`.
pub async fn thread_urls(ctx: &CommandContext, rows: &[SessionRow]) -> Vec<Option<String>> {
    permalinks(ctx, rows)
        .await
        .into_iter()
        .zip(rows)
        .map(|(link, row)| {
            link.filter(|url| safe_url(url))
                .or_else(|| archive_url(&row.channel, &row.thread_ts))
        })
        .collect()
}

/// Permalinks of the rows' threads, asked concurrently within a budget.
async fn permalinks(ctx: &CommandContext, rows: &[SessionRow]) -> Vec<Option<String>> {
    let asks = rows
        .iter()
        .map(|r| async move { ctx.parts.web.permalink(&r.channel, &r.thread_ts).await.ok() });
    tokio::time::timeout(PERMALINK_BUDGET, futures_util::future::join_all(asks))
        .await
        .unwrap_or_else(|_| vec![None; rows.len()])
}

/// A pull request's state in a history line.
fn pr_state(state: &PrState) -> String {
    match state {
        PrState::Open => "(open)".to_string(),
        PrState::Merged { by: Some(login) } => format!("(merged by @{})", escape(login)),
        PrState::Merged { by: None } => "(merged)".to_string(),
        PrState::Closed => "(closed)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_requests_state_says_who_merged_it() {
        let cases = [
            (PrState::Open, "(open)"),
            (
                PrState::Merged {
                    by: Some("octocat".into()),
                },
                "(merged by @octocat)",
            ),
            (PrState::Merged { by: None }, "(merged)"),
            (PrState::Closed, "(closed)"),
        ];
        for (state, want) in cases {
            assert_eq!(pr_state(&state), want);
        }
    }
}
