//! `selfheal notify`: how dbt Core users feed selfheal from cron or CI.
//!
//! After `dbt build`, the job runs `selfheal notify --schedule … --run-id …`:
//! the run's artifacts (`target/run_results.json`, `logs/dbt.log`, the console
//! output and the command) are kept under `SELFHEAL_RUN_LOGS/<run-id>/`, where
//! sessions read run logs, and a failed run is announced in every channel the
//! schedule notifies on failure, like Paradime's or dbt Cloud's notifier would.
//!
//! The notification carries a context block with the id [`BLOCK_ID`]: that is
//! how the running bot tells a notification it may heal from its own chatter
//! when both post with the same token. Deciding the status and building the
//! message are pure ([`decide_status`], [`notification`]); only [`run`] does IO.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::config::{normalize_channel, Config, NotifyEvent, Schedule};
use crate::runlog::{self, Artifacts, RunLog};
use crate::slack::channels::Channels;
use crate::slack::render::escape;
use crate::slack::web::{SlackWeb, WebSettings};

/// The `block_id` of the context block every notification carries.
pub const BLOCK_ID: &str = crate::recognize::NOTIFY_BLOCK_ID;

/// How many failing nodes a notification names.
const NODES_SHOWN: usize = 5;

/// Whether the run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunStatus {
    Failed,
    Passed,
}

/// What to notify about, from the command line.
#[derive(Debug, Clone)]
pub struct Request {
    /// The schedule the run belongs to.
    pub schedule: String,
    pub run_id: String,
    /// The dbt project directory that holds `target/` and `logs/`.
    pub project: PathBuf,
    /// The console output: a file, or `-` for stdin.
    pub console: Option<String>,
    /// The status when the caller knows it; else decided from the artifacts.
    pub status: Option<RunStatus>,
}

/// What `run` did, printed for the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub run_id: String,
    pub status: RunStatus,
    /// Where the artifacts were stored, and which files.
    pub stored_in: PathBuf,
    pub files: Vec<&'static str>,
    /// `(channel as configured, channel id)` of each notification posted.
    pub posted: Vec<(String, String)>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Stored the run log of run {} in {}: {}",
            self.run_id,
            self.stored_in.display(),
            if self.files.is_empty() {
                "no files (nothing was found)".to_string()
            } else {
                self.files.join(", ")
            }
        )?;
        match self.status {
            RunStatus::Passed if self.posted.is_empty() => {
                writeln!(f, "Run {} passed; nothing posted.", self.run_id)
            }
            RunStatus::Passed => writeln!(
                f,
                "Run {} passed: posted to {}",
                self.run_id,
                self.posted
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            RunStatus::Failed => {
                for (name, id) in &self.posted {
                    writeln!(
                        f,
                        "Posted the failure of run {} to {name} ({id})",
                        self.run_id
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Stores the run's artifacts and, when it failed, posts the notification to
/// each of the schedule's failure channels.
pub async fn run(cfg: &Config, req: &Request) -> Result<Report> {
    let Some(run_logs) = cfg.heal.run_logs.as_deref() else {
        bail!("SELFHEAL_RUN_LOGS is not set: it names the directory where run logs are kept (one folder per run id)");
    };
    let Some(schedule) = cfg.schedules.get(&req.schedule) else {
        bail!(
            "no schedule {:?} in {}; known schedules: {}",
            req.schedule,
            cfg.schedules_path.display(),
            cfg.schedules.names().join(", ")
        );
    };
    let artifacts = collect(&req.project, req.console.as_deref())?;
    let status = match req.status {
        Some(s) => s,
        None => decide_status(artifacts.run_results.as_deref(), artifacts.console.as_deref())
            .with_context(|| {
                format!(
                    "cannot tell whether run {} failed: there is no readable {} and no console output; pass --status or --console",
                    req.run_id,
                    req.project.join("target/run_results.json").display()
                )
            })?,
    };
    let stored_in = runlog::store_artifacts(run_logs, &req.run_id, &artifacts)
        .with_context(|| format!("storing the run log under {}", run_logs.display()))?;
    runlog::store_manifest(run_logs, &req.run_id, &req.project.join("target"))
        .context("storing the run's manifest.json")?;
    let files = [
        ("run_results.json", artifacts.run_results.is_some()),
        ("dbt.log", artifacts.dbt_log.is_some()),
        ("console.txt", artifacts.console.is_some()),
        ("command.txt", artifacts.command.is_some()),
        ("manifest.json", stored_in.join("manifest.json").is_file()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    let mut report = Report {
        run_id: req.run_id.clone(),
        status,
        stored_in,
        files,
        posted: vec![],
    };
    let recovering = remember_status(run_logs, &req.schedule, status);
    let (text, blocks, channels) = match status {
        RunStatus::Failed => {
            let log = runlog::parse(&req.run_id, &artifacts);
            let (text, blocks) = notification(&req.schedule, &log);
            (text, blocks, schedule.failure_channels())
        }
        RunStatus::Passed => {
            let channels = pass_channels(schedule, recovering);
            if channels.is_empty() {
                return Ok(report);
            }
            let (text, blocks) = pass_notification(&req.schedule, &req.run_id);
            (text, blocks, channels)
        }
    };
    let token = cfg
        .slack
        .notify_token
        .as_ref()
        .unwrap_or(&cfg.slack.bot_token);
    let web = SlackWeb::connect(
        &cfg.slack.api_url,
        token.expose(),
        WebSettings::from_config(cfg),
    )?;
    let directory = Channels::new(web.clone());
    directory.load().await;
    let mut failed = vec![];
    for name in channels {
        let Some(id) = directory.id_of(&name, None).await else {
            failed.push(format!(
                "{name}: no such channel visible to the notifier (invite it to the channel)"
            ));
            continue;
        };
        match web.post(&id, None, &text, Some(&blocks)).await {
            Ok(_) => report.posted.push((name, id)),
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    if !failed.is_empty() {
        let posted: Vec<&str> = report.posted.iter().map(|(n, _)| n.as_str()).collect();
        bail!(
            "stored the run log in {}, but could not post the {} of run {} to {} (posted to: {})",
            report.stored_in.display(),
            match status {
                RunStatus::Failed => "failure",
                RunStatus::Passed => "recovery",
            },
            req.run_id,
            failed.join("; "),
            if posted.is_empty() {
                "none".to_string()
            } else {
                posted.join(", ")
            }
        );
    }
    if report.posted.is_empty() {
        bail!(
            "schedule {} notifies no channel on failure (notifications.slack_channels with events: [failed])",
            req.schedule
        );
    }
    Ok(report)
}

/// Where the last status `notify` saw for each schedule is kept.
const LAST_STATUS_DIR: &str = ".selfheal-last-status";

/// Records `status` as the schedule's last; true when the run before it
/// failed (so a pass now is a recovery). Best effort: a read-only folder
/// only costs the recovery notice.
fn remember_status(run_logs: &Path, schedule: &str, status: RunStatus) -> bool {
    let dir = run_logs.join(LAST_STATUS_DIR);
    let file = dir.join(
        schedule
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>(),
    );
    let before = std::fs::read_to_string(&file).unwrap_or_default();
    let now = match status {
        RunStatus::Failed => "failed",
        RunStatus::Passed => "passed",
    };
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, now)) {
        tracing::warn!(error = %e, file = %file.display(), "could not record the run's status");
    }
    before.trim() == "failed"
}

/// Where a passing run is announced: the channels the schedule notifies on
/// `passed`, and — when it recovers from a failure — the ones that heard of
/// the failure, so their healing threads close. A pass after a pass in a
/// schedule that notifies no one on `passed` says nothing.
pub fn pass_channels(schedule: &Schedule, recovering: bool) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    let passed = schedule
        .slack
        .iter()
        .filter(|n| n.events.contains(&NotifyEvent::Passed))
        .map(|n| n.channel.clone());
    let failed = if recovering {
        schedule.failure_channels()
    } else {
        vec![]
    };
    for channel in failed.into_iter().chain(passed) {
        let key = normalize_channel(&channel);
        if !out.iter().any(|c| normalize_channel(c) == key) {
            out.push(channel);
        }
    }
    out
}

/// The success notification of a passing run (with the block the bot
/// recognises as `notify`'s).
pub fn pass_notification(schedule: &str, run_id: &str) -> (String, Value) {
    let text = format!(
        ":white_check_mark: *dbt run passed* — schedule *{}*\nRun ID: {}",
        escape(schedule),
        escape(run_id)
    );
    let blocks = json!([
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "context",
            "block_id": BLOCK_ID,
            "elements": [{"type": "mrkdwn", "text": "Sent by `selfheal notify`."}]
        }
    ]);
    (text, blocks)
}

/// Reads what dbt left in `project` and the console output (`-`: stdin).
fn collect(project: &Path, console: Option<&str>) -> Result<Artifacts> {
    anyhow::ensure!(
        project.is_dir(),
        "the dbt project directory {} does not exist",
        project.display()
    );
    let read = |p: PathBuf| {
        std::fs::read(&p)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let console = match console {
        None => None,
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading the console output from stdin")?;
            Some(String::from_utf8_lossy(&buf).into_owned())
        }
        Some(file) => Some(
            std::fs::read(file)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .with_context(|| format!("reading the console output {file}"))?,
        ),
    };
    let run_results = read(project.join("target/run_results.json"));
    let command = command_of(run_results.as_deref());
    Ok(Artifacts {
        run_results,
        dbt_log: read(project.join("logs/dbt.log")),
        console,
        command: Some(command),
    })
}

/// The dbt command of a run: `args.invocation_command` of run_results.json,
/// else `dbt <args.which>`, else `dbt build`.
pub fn command_of(run_results: Option<&str>) -> String {
    let args = run_results
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .map(|v| v["args"].clone())
        .unwrap_or(Value::Null);
    if let Some(cmd) = args["invocation_command"]
        .as_str()
        .filter(|c| !c.is_empty())
    {
        return cmd.to_string();
    }
    match args["which"].as_str() {
        Some(which) if !which.is_empty() => format!("dbt {which}"),
        _ => "dbt build".to_string(),
    }
}

/// Failed or passed, from the artifacts: run_results.json decides when it can
/// be read (any result `error`, `fail` or `runtime error` is a failure);
/// otherwise the console does (`Encountered an error`, or `ERROR=<n>` with
/// n > 0). `None` when there is nothing to decide from.
pub fn decide_status(run_results: Option<&str>, console: Option<&str>) -> Option<RunStatus> {
    let results = run_results
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v["results"].as_array().cloned());
    if let Some(results) = results {
        let failed = results.iter().any(|r| {
            matches!(
                r["status"].as_str(),
                Some("error" | "fail" | "runtime error")
            )
        });
        return Some(if failed {
            RunStatus::Failed
        } else {
            RunStatus::Passed
        });
    }
    let console = console?;
    let errors_counted = console.split("ERROR=").skip(1).any(|rest| {
        let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
        n.parse::<u64>().is_ok_and(|n| n > 0)
    });
    Some(
        if errors_counted || console.contains("Encountered an error") {
            RunStatus::Failed
        } else {
            RunStatus::Passed
        },
    )
}

/// The failure notification: its text and Block Kit blocks (a section with
/// the text, and the context block the bot recognises, [`BLOCK_ID`]).
pub fn notification(schedule: &str, log: &RunLog) -> (String, Value) {
    let command = log.command.as_deref().unwrap_or("dbt build");
    let mut text = format!(
        ":x: *dbt run failed* — schedule *{}*\nRun ID: {}\nCommand: `{}`",
        escape(schedule),
        escape(&log.run_id),
        escape(command).replace('`', "'")
    );
    let names: Vec<String> = log
        .failures
        .iter()
        .take(NODES_SHOWN)
        .map(|f| format!("`{}`", escape(&f.name)))
        .collect();
    if !names.is_empty() {
        text.push_str(&format!("\nFailed: {}", names.join(", ")));
        let more = log.failures.len().saturating_sub(NODES_SHOWN);
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
    }
    let blocks = json!([
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "context",
            "block_id": BLOCK_ID,
            "elements": [{"type": "mrkdwn", "text": "Sent by `selfheal notify`; the run log is stored for healing."}]
        }
    ]);
    (text, blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runlog::{ErrorKind, NodeFailure};

    fn results(statuses: &[&str]) -> String {
        let results: Vec<Value> = statuses
            .iter()
            .map(|s| json!({"unique_id": "model.p.m", "status": s}))
            .collect();
        json!({"results": results, "args": {"which": "build"}}).to_string()
    }

    fn check(run_results: Option<&str>, console: Option<&str>, want: Option<RunStatus>) {
        assert_eq!(
            decide_status(run_results, console),
            want,
            "run_results {run_results:?}, console {console:?}"
        );
    }

    #[test]
    fn the_status_comes_from_run_results_then_the_console() {
        use RunStatus::*;
        check(Some(&results(&["success", "pass"])), None, Some(Passed));
        check(Some(&results(&["success", "error"])), None, Some(Failed));
        check(Some(&results(&["pass", "fail"])), None, Some(Failed));
        check(Some(&results(&["runtime error"])), None, Some(Failed));
        check(Some(&results(&["warn", "skipped"])), None, Some(Passed));
        // run_results.json wins over the console.
        check(
            Some(&results(&["success"])),
            Some("Encountered an error"),
            Some(Passed),
        );
        // Missing or unreadable run_results.json: the console decides.
        check(
            None,
            Some("Encountered an error:\nCompilation Error"),
            Some(Failed),
        );
        check(
            Some("{not json"),
            Some("Done. PASS=3 WARN=0 ERROR=2 SKIP=1"),
            Some(Failed),
        );
        check(
            None,
            Some("Done. PASS=3 WARN=0 ERROR=0 SKIP=0 TOTAL=3"),
            Some(Passed),
        );
        check(None, None, None);
        check(Some("{not json"), None, None);
    }

    #[test]
    fn the_command_comes_from_run_results_args() {
        let invoked =
            json!({"args": {"invocation_command": "dbt build --select marts", "which": "build"}});
        assert_eq!(
            command_of(Some(&invoked.to_string())),
            "dbt build --select marts"
        );
        assert_eq!(command_of(Some(&results(&[]))), "dbt build");
        let run = json!({"args": {"which": "run"}}).to_string();
        assert_eq!(command_of(Some(&run)), "dbt run");
        assert_eq!(command_of(None), "dbt build");
        assert_eq!(command_of(Some("garbage")), "dbt build");
    }

    fn failure(name: &str) -> NodeFailure {
        NodeFailure {
            unique_id: None,
            name: name.into(),
            resource_type: "model".into(),
            path: None,
            kind: ErrorKind::Database,
            message: String::new(),
            compiled_code: None,
        }
    }

    #[test]
    fn the_notification_names_the_schedule_run_command_and_failing_nodes() {
        let log = RunLog {
            run_id: "48213".into(),
            command: Some("dbt build --select marts".into()),
            failures: vec![failure("stg_orders"), failure("orders")],
            ..RunLog::default()
        };
        let (text, blocks) = notification("hourly_marts", &log);
        assert_eq!(
            text,
            ":x: *dbt run failed* — schedule *hourly_marts*\nRun ID: 48213\nCommand: `dbt build --select marts`\nFailed: `stg_orders`, `orders`"
        );
        assert_eq!(blocks[0]["type"], "section");
        assert_eq!(blocks[0]["text"]["text"], text);
        assert_eq!(blocks[1]["type"], "context");
        assert_eq!(blocks[1]["block_id"], BLOCK_ID);
    }

    #[test]
    fn the_bot_recognises_the_notification_as_a_failure_of_the_schedule() {
        use crate::recognize::{Identity, InboundMessage, Recognizer};
        let log = RunLog {
            run_id: "48213".into(),
            failures: vec![failure("orders")],
            ..RunLog::default()
        };
        let (text, blocks) = notification("hourly_marts", &log);
        let recognizer = Recognizer::new(
            Identity::default(),
            vec!["hourly_marts".into(), "nightly".into()],
            vec![],
            vec![],
        );
        let msg = InboundMessage {
            channel: "C1".into(),
            ts: "1.1".into(),
            bot_id: Some("B0NOTIFIER".into()),
            text,
            blocks: blocks.as_array().cloned().unwrap_or_default(),
            ..InboundMessage::default()
        };
        let found = recognizer.recognize_content(&msg).expect("recognised");
        assert_eq!(
            (found.schedule.as_str(), found.run_id.as_str()),
            ("hourly_marts", "48213")
        );
    }

    #[test]
    fn the_notification_names_at_most_five_nodes_and_escapes_mrkdwn() {
        let log = RunLog {
            run_id: "7".into(),
            command: None,
            failures: (1..=7).map(|i| failure(&format!("m{i}"))).collect(),
            ..RunLog::default()
        };
        let (text, _) = notification("a<b>&c", &log);
        assert!(text.contains("schedule *a&lt;b&gt;&amp;c*"), "{text}");
        assert!(text.contains("Command: `dbt build`"), "{text}");
        assert!(
            text.ends_with("Failed: `m1`, `m2`, `m3`, `m4`, `m5` and 2 more"),
            "{text}"
        );
    }

    #[test]
    fn a_pass_is_announced_where_the_failure_was_only_when_it_recovers() {
        use crate::config::SlackNotify;
        let notify = |channel: &str, events: &[NotifyEvent]| SlackNotify {
            channel: channel.into(),
            events: events.to_vec(),
        };
        let schedule = Schedule {
            name: "hourly_marts".into(),
            slack: vec![
                notify("#data-alerts", &[NotifyEvent::Failed]),
                notify("#agent-demo", &[NotifyEvent::Failed, NotifyEvent::Passed]),
                notify("wins", &[NotifyEvent::Passed]),
            ],
            ..Default::default()
        };
        assert_eq!(
            pass_channels(&schedule, true),
            ["#data-alerts", "#agent-demo", "wins"]
        );
        assert_eq!(pass_channels(&schedule, false), ["#agent-demo", "wins"]);
        let quiet = Schedule {
            slack: vec![notify("#data-alerts", &[NotifyEvent::Failed])],
            ..schedule
        };
        assert!(pass_channels(&quiet, false).is_empty());
    }

    #[test]
    fn the_last_status_makes_a_pass_a_recovery_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!remember_status(dir.path(), "a/b", RunStatus::Passed));
        assert!(!remember_status(dir.path(), "a/b", RunStatus::Failed));
        assert!(remember_status(dir.path(), "a/b", RunStatus::Passed));
        assert!(!remember_status(dir.path(), "a/b", RunStatus::Passed));
    }

    #[test]
    fn the_bot_reads_a_pass_notification_as_the_schedule_passing() {
        use crate::recognize::{Identity, InboundMessage, Passed, Recognizer};
        let (text, blocks) = pass_notification("hourly_marts", "48250");
        let msg = InboundMessage {
            text,
            blocks: blocks.as_array().unwrap().clone(),
            ..Default::default()
        };
        let recognizer = Recognizer::new(
            Identity::default(),
            vec!["hourly_marts".into()],
            vec![],
            vec![],
        );
        assert_eq!(
            recognizer.recognize_pass_content(&msg),
            Some(Passed {
                schedule: "hourly_marts".into(),
                run_id: "48250".into()
            })
        );
        assert_eq!(recognizer.recognize_content(&msg), None);
    }
}
