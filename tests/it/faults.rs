//! The bot survives Slack and agent faults: connections that fail to open, drop
//! mid-burst, are told to go away or stop answering pings; Web API calls that are
//! rate limited, fail or hang; agents that die badly. Whatever happens, a Slack
//! user sees exactly one healing reply per failure and its final message, every
//! envelope is acknowledged, and no process or folder is left behind.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use selfheal::store::Status;
use selfheal_fakes::slack::Failure as Fault;

use crate::helpers::*;

// ---- Slack: the Socket Mode connection -------------------------------------------

#[tokio::test]
async fn the_bot_keeps_retrying_a_failing_connections_open_and_then_heals() {
    // Arrange: Slack's connection endpoint is down for a while.
    let app = spawn_app().await;
    let hellos = all_connected(&app).await;
    let opens_before = app.slack.calls_to("apps.connections.open").len();
    app.slack
        .fail_next("apps.connections.open", Fault::Status(500), 2);
    app.slack
        .fail_next("apps.connections.open", Fault::error("internal_error"), 1);

    // Act: the network drops the socket, so the bot has to open a new one; a
    // failure is posted while it cannot, and another once it can.
    app.slack.drop_all_connections().await;
    let during = app.post_failure(HEALING, "hourly_marts", "101").await;
    wait_reconnected(
        &app,
        hellos,
        "the bot reconnects once apps.connections.open works again",
    )
    .await;
    let after = app.post_failure(HEALING, "hourly_marts", "102").await;

    // Assert: it went through every refusal before it got back in.
    let opens = app.slack.calls_to("apps.connections.open");
    let outcomes: Vec<(u16, Option<String>)> = opens[opens_before..]
        .iter()
        .map(|c| (c.status, c.error.clone()))
        .collect();
    assert_eq!(
        outcomes[..3],
        [
            (500, None),
            (500, None),
            (200, Some("internal_error".to_string())),
        ],
        "apps.connections.open after the drop: {outcomes:?}"
    );
    assert!(
        outcomes[3..].contains(&(200, None)),
        "no successful open: {outcomes:?}"
    );
    assert_healed_once(&app, HEALING, &during, "101").await;
    assert_healed_once(&app, HEALING, &after, "102").await;
    wait_every_event_acked(&app).await;
}

#[tokio::test]
async fn a_socket_dropped_mid_burst_heals_every_failure_exactly_once() {
    // Arrange: the burst is about delivery, so neither the per-schedule cap nor
    // channel pacing (tested elsewhere) should stretch it.
    let app = spawn_app_with(
        HAPPY_AGENT,
        &[
            ("SELFHEAL_MAX_SESSIONS_PER_SCHEDULE", "10"),
            ("SELFHEAL_CHANNEL_INTERVAL_MS", "20"),
        ],
    )
    .await;
    let runs: Vec<String> = (201..=210).map(|n| n.to_string()).collect();
    let mut threads = HashMap::new();
    let hellos = all_connected(&app).await;

    // Act: the link dies mid-burst. The bot still reads the first failures, but
    // Slack never hears its acks (the fake stops reading), then the socket drops.
    app.slack.set_pongs(false);
    for run in &runs[..4] {
        threads.insert(
            run.clone(),
            app.post_failure(HEALING, "hourly_marts", run).await,
        );
    }
    let sent_before_drop = app.slack.envelopes_sent().len();
    app.slack.drop_all_connections().await;
    app.slack.set_pongs(true);
    wait_reconnected(&app, hellos, "the bot reconnects after the drop").await;
    let sent_before_reconnect = app.slack.envelopes_sent().len();
    for run in &runs[4..] {
        threads.insert(
            run.clone(),
            app.post_failure(HEALING, "hourly_marts", run).await,
        );
    }

    // Assert: Slack redelivered what the dead link swallowed (the first
    // notifications, and the echoes of the bot's first replies)…
    wait_every_event_acked(&app).await;
    let sent = app.slack.envelopes_sent();
    let swallowed: HashSet<&str> = sent[..sent_before_drop]
        .iter()
        .filter_map(|e| e.event_id.as_deref())
        .collect();
    assert!(swallowed.len() >= 4, "{sent:#?}");
    for event in &swallowed {
        assert!(
            sent.iter()
                .any(|e| e.event_id.as_deref() == Some(*event) && e.retry_attempt > 0),
            "event {event} was never redelivered: {sent:#?}"
        );
    }
    // …every envelope sent over a healthy connection was acked…
    wait_envelopes_acked(&app, sent_before_reconnect).await;
    // …and each failure was healed exactly once, redeliveries or not.
    for run in &runs {
        assert_healed_once(&app, HEALING, &threads[run], run).await;
    }
    assert_eq!(app.store().sessions(100).unwrap().len(), runs.len());
}

#[tokio::test]
async fn a_warning_disconnect_is_followed_by_a_reconnect_and_healing_continues() {
    // Arrange
    let app = spawn_app().await;
    let hellos = all_connected(&app).await;

    // Act: Slack warns that this connection is about to go (and closes it).
    app.slack.disconnect_all("warning").await;
    wait_reconnected(
        &app,
        hellos,
        "a new Socket Mode connection after the warning",
    )
    .await;
    let ts = app.post_failure(HEALING, "hourly_marts", "301").await;

    // Assert
    assert_healed_once(&app, HEALING, &ts, "301").await;
    wait_envelopes_acked(&app, 0).await;
}

/// `link_disabled` is what Slack sends when Socket Mode is switched off for the
/// app. The bot does not give up on it: slack-morphism reconnects on every
/// `disconnect` reason (as Slack's Node and Python SDKs do), and while Socket
/// Mode stays off `apps.connections.open` fails and is retried every few
/// seconds (the first story above). That is the behaviour we want: a bot that
/// stopped listening would sit deaf until someone restarted it, whereas this
/// one comes back by itself as soon as Socket Mode is on again.
#[tokio::test]
async fn link_disabled_does_not_leave_the_bot_deaf_once_slack_accepts_it_again() {
    // Arrange
    let app = spawn_app().await;
    let hellos = all_connected(&app).await;

    // Act
    app.slack.disconnect_all("link_disabled").await;
    wait_reconnected(&app, hellos, "the bot connects again once Slack lets it").await;
    let ts = app.post_failure(HEALING, "hourly_marts", "302").await;

    // Assert
    assert_healed_once(&app, HEALING, &ts, "302").await;
    wait_envelopes_acked(&app, 0).await;
}

#[tokio::test]
async fn a_connection_that_stops_answering_pings_is_replaced_and_nothing_is_healed_twice() {
    // Arrange: ping every second (a dead link is noticed after five silent pings).
    let app = spawn_app_with(HAPPY_AGENT, &[("SELFHEAL_SOCKET_PING_SECS", "1")]).await;
    // Redeliveries of what the stalled link swallowed should reach the new one.
    app.slack.set_ack_timeout(Duration::from_secs(4));
    let hellos = all_connected(&app).await;

    // Act: the link stalls: no pongs, no acks read. A failure arrives meanwhile.
    app.slack.set_pongs(false);
    let stalled = app.slack.envelopes_sent().len();
    let during = app.post_failure(HEALING, "hourly_marts", "401").await;
    wait_reconnected(
        &app,
        hellos,
        "the bot notices the dead link and opens a new connection",
    )
    .await;
    app.slack.set_pongs(true);
    let after = app.post_failure(HEALING, "hourly_marts", "402").await;

    // Assert: the stalled notification is redelivered (its ack was lost) but
    // healed once; the one posted afterwards is healed too.
    wait_every_event_acked(&app).await;
    let sent = app.slack.envelopes_sent();
    let notification = sent[stalled].event_id.clone().expect("an event");
    assert!(
        sent.iter()
            .any(|e| e.event_id.as_ref() == Some(&notification) && e.retry_attempt > 0),
        "the stalled notification was never redelivered: {sent:#?}"
    );
    assert_healed_once(&app, HEALING, &during, "401").await;
    assert_healed_once(&app, HEALING, &after, "402").await;
    assert_eq!(app.store().sessions(10).unwrap().len(), 2);
}

#[tokio::test]
async fn no_envelope_is_left_unacked_whatever_its_payload() {
    // Arrange
    let app = spawn_app().await;
    all_connected(&app).await;
    app.slack.set_org_install("E0GRIDORG1");

    // Act: failures through an org-wide install, with envelopes of every odd
    // shape between them.
    let first = app.post_failure(HEALING, "hourly_marts", "451").await;
    let odd = crate::grid::odd_envelopes();
    for envelope in &odd {
        app.slack.send_envelope(envelope.clone()).await;
    }
    let second = app.post_failure(HEALING, "hourly_marts", "452").await;

    // Assert: every envelope Slack sent, odd or not, was acked.
    crate::grid::wait_acked(&app, &odd).await;
    assert_healed_once(&app, HEALING, &first, "451").await;
    assert_healed_once(&app, HEALING, &second, "452").await;
    wait_envelopes_acked(&app, 0).await;
}

#[tokio::test]
async fn a_slash_commands_answer_whose_connection_closed_first_is_posted_to_the_person() {
    // Arrange: checking the admin takes Slack a second.
    let app = spawn_app().await;
    all_connected(&app).await;
    app.slack.add_user("U0ADMIN", "admin", true);
    app.slack
        .fail_next("users.info", Fault::LateReply(Duration::from_secs(1)), 1);

    // Act: the connection closes while the answer is awaited.
    let envelope = app
        .slack
        .send_slash_command("U0ADMIN", ALERTS, "/selfheal", "disable hourly_marts")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.slack.drop_all_connections().await;

    // Assert: the command ran once, and its answer reached the person.
    let posted = app
        .slack
        .wait_until(WAIT, |s| {
            s.calls_to("chat.postEphemeral")
                .into_iter()
                .find(|c| c.params["user"] == "U0ADMIN")
        })
        .await
        .expect("the answer is posted ephemerally");
    let text = posted.params["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("⛔ Self-healing is off for `hourly_marts`"),
        "{text}"
    );
    assert_eq!(posted.params["channel"], ALERTS);
    assert!(
        !app.slack.acks().iter().any(|a| a.envelope_id == envelope),
        "the ack never went"
    );
    assert_eq!(app.store().audit_log(10).unwrap().len(), 1);
}

// ---- Slack: the Web API ------------------------------------------------------------

#[tokio::test]
async fn a_429_storm_on_every_web_api_method_delays_but_never_duplicates_the_healing() {
    // Arrange: every Web API method answers 429 twice before it works again.
    let app = spawn_app().await;
    let methods = [
        "auth.test",
        "chat.getPermalink",
        "chat.postMessage",
        "chat.update",
        "conversations.info",
        "conversations.list",
        "users.info",
    ];
    for method in methods {
        app.slack.fail_next(
            method,
            Fault::RateLimited {
                retry_after_secs: 1,
            },
            2,
        );
    }
    let calls_before = app.slack.calls().len();

    // Act
    let ts = app.post_failure(HEALING, "hourly_marts", "501").await;

    // Assert: the healing completes, once.
    assert_healed_once(&app, HEALING, &ts, "501").await;
    wait_envelopes_acked(&app, 0).await;
    let calls = app.slack.calls()[calls_before..].to_vec();
    // The storm hit what a session uses: its replies and its progress edits.
    for method in ["chat.postMessage", "chat.update"] {
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.method == method && c.status == 429)
                .count(),
            2,
            "{method} was not rate limited twice"
        );
    }
    // Each rate-limited call was retried, no sooner than Retry-After said.
    for (i, limited) in calls.iter().enumerate().filter(|(_, c)| c.status == 429) {
        let retry = calls[i + 1..]
            .iter()
            .find(|c| c.method == limited.method && c.params == limited.params)
            .unwrap_or_else(|| panic!("{} was never retried", limited.method));
        let waited = retry.at.duration_since(limited.at);
        assert!(
            waited >= Duration::from_secs(1),
            "{} retried after {waited:?}",
            limited.method
        );
    }
}

#[tokio::test]
async fn slack_5xx_and_hung_calls_on_replies_and_edits_still_land_each_message_once() {
    // Arrange: a one-second timeout; the first reply and the first edit each
    // meet an outage and then a hung call.
    let app = spawn_app_with(HAPPY_AGENT, &[("SELFHEAL_API_TIMEOUT_SECS", "1")]).await;
    let hang = Fault::Hang(Duration::from_secs(3));
    app.slack
        .fail_next("chat.postMessage", Fault::Status(500), 1);
    app.slack.fail_next("chat.postMessage", hang.clone(), 1);
    app.slack.fail_next("chat.update", Fault::Status(503), 1);
    app.slack.fail_next("chat.update", hang, 1);

    // Act
    let ts = app.post_failure(HEALING, "hourly_marts", "601").await;

    // Assert
    assert_healed_once(&app, HEALING, &ts, "601").await;
    let thread = app.thread(HEALING, &ts);
    let progress = thread
        .iter()
        .find(|m| m.text.contains("Healing run `601`"))
        .expect("the progress message");
    assert!(
        progress.text.starts_with("✅ Healing run `601`"),
        "the progress message ends showing the outcome: {}",
        progress.text
    );
    let failed: Vec<u16> = app
        .slack
        .calls()
        .iter()
        .filter(|c| c.status >= 500)
        .map(|c| c.status)
        .collect();
    assert_eq!(failed, [500, 503], "both outages were met");
    wait_envelopes_acked(&app, 0).await;
}

#[tokio::test]
async fn a_reply_slack_posted_but_answered_too_late_is_not_posted_again() {
    // Arrange: Slack posts the healing reply at once but answers only after the
    // bot's one-second timeout, so the bot cannot tell that it landed.
    let app = spawn_app_with(HAPPY_AGENT, &[("SELFHEAL_API_TIMEOUT_SECS", "1")]).await;
    app.slack.fail_next(
        "chat.postMessage",
        Fault::LateReply(Duration::from_secs(3)),
        1,
    );

    // Act
    let ts = app.post_failure(HEALING, "hourly_marts", "602").await;

    // Assert: one healing reply, and the session carried on in its thread.
    assert_healed_once(&app, HEALING, &ts, "602").await;
    wait_envelopes_acked(&app, 0).await;
}

// ---- Agents ------------------------------------------------------------------------

/// Agent preamble: records the agent's pid (its process group id too: the bot
/// starts it in a group of its own) and its session folder, then leaves a child
/// behind in its group that would outlive it.
const RECORD_AGENT: &str = r#"
echo $$ > "$PROMPT_LOG.$SELFHEAL_RUN_ID.pid"
dirname "$SELFHEAL_PROMPT_FILE" > "$PROMPT_LOG.$SELFHEAL_RUN_ID.dir"
sleep 6021 &
"#;

#[tokio::test]
async fn an_agent_that_dies_without_a_word_fails_cleanly() {
    let cases = [
        (
            "exit 4",
            "701",
            "❌ No pull request opened for run `701` (agent failed): the agent exited with code 4",
        ),
        (
            "kill -KILL $$",
            "702",
            "❌ No pull request opened for run `702` (agent failed): the agent was killed by a signal",
        ),
    ];
    for (death, run, said) in cases {
        // Arrange
        let app = spawn_app_with(&format!("{RECORD_AGENT}{death}\n"), &[]).await;

        // Act
        let ts = app.post_failure(HEALING, "hourly_marts", run).await;

        // Assert
        let row = app.wait_for_session_end(run).await;
        assert_eq!(row.status, Status::Failed, "{death}");
        let fin = app
            .wait_for_reply(HEALING, &ts, |m| m.text.starts_with("❌ No pull request"))
            .await;
        assert_eq!(fin.text, said);
        assert_one_reply_no_duplicates(&app, HEALING, &ts, run);
        assert_agent_left_nothing_behind(&app, run).await;
    }
}

#[tokio::test]
async fn an_agent_that_closes_its_output_and_hangs_is_stopped_at_its_limit() {
    // Arrange: after closing stdout and stderr the agent can no longer be heard,
    // only stopped.
    let script = format!("{RECORD_AGENT}exec >/dev/null 2>&1 </dev/null\nsleep 6022\n");
    let app = spawn_app_timed(&script, "2s", &[]).await;

    // Act
    let ts = app.post_failure(HEALING, "hourly_marts", "703").await;

    // Assert
    let row = app.wait_for_session_end("703").await;
    assert_eq!(row.status, Status::TimedOut);
    app.wait_for_reply(HEALING, &ts, |m| m.text.starts_with("⏱️ No pull request"))
        .await;
    assert_one_reply_no_duplicates(&app, HEALING, &ts, "703");
    assert_agent_left_nothing_behind(&app, "703").await;
}

// ---- Connections -------------------------------------------------------------------

/// How many Socket Mode connections the bot keeps open (`App::serve`).
const CONNECTIONS: usize = 2;

/// Waits until the bot has all its Socket Mode connections open (the second
/// opens a moment after the first) and returns the `hello`s so far, so that a
/// later reconnect is not confused with that second connection.
async fn all_connected(app: &TestApp) -> usize {
    app.slack
        .wait_until(WAIT, |s| {
            (s.connections() >= CONNECTIONS).then(|| s.hellos())
        })
        .await
        .expect("the bot opens all its Socket Mode connections")
}

/// Waits until each connection the bot had when `hellos` were counted has
/// been replaced by a new one.
async fn wait_reconnected(app: &TestApp, hellos: usize, what: &str) {
    app.slack
        .wait_until(WAIT, |s| (s.hellos() >= hellos + CONNECTIONS).then_some(()))
        .await
        .unwrap_or_else(|| panic!("{what}: {} hellos", app.slack.hellos()));
}

// ---- What a Slack user (and the operator) would notice -----------------------------

/// The failure of `run_id`, posted at `ts`, was healed: one healing reply, the
/// final message, no bot message twice, one session row.
async fn assert_healed_once(app: &TestApp, channel: &str, ts: &str, run_id: &str) {
    let row = app.wait_for_session_end(run_id).await;
    assert_eq!(row.status, Status::Fixed, "{row:#?}");
    app.wait_for_reply(channel, ts, |m| {
        m.text
            .starts_with(&format!("✅ Fix for run `{run_id}` is ready for review"))
    })
    .await;
    assert_one_reply_no_duplicates(app, channel, ts, run_id);
}

/// Exactly one healing reply and one session for `run_id`, and no message from
/// the bot twice in its thread.
fn assert_one_reply_no_duplicates(app: &TestApp, channel: &str, ts: &str, run_id: &str) {
    let thread = app.thread(channel, ts);
    let bot = app.slack.bot_user_id().to_string();
    let bot_texts: Vec<&str> = thread
        .iter()
        .filter(|m| m.user.as_deref() == Some(bot.as_str()))
        .map(|m| m.text.as_str())
        .collect();
    let replies = bot_texts.iter().filter(|t| **t == HEALING_REPLY).count();
    assert_eq!(
        replies, 1,
        "healing replies in {run_id}'s thread: {thread:#?}"
    );
    let unique: HashSet<&&str> = bot_texts.iter().collect();
    assert_eq!(
        unique.len(),
        bot_texts.len(),
        "a bot message appears twice in {run_id}'s thread: {bot_texts:#?}"
    );
    let sessions = app
        .store()
        .sessions(100)
        .unwrap()
        .into_iter()
        .filter(|s| s.run_id == run_id)
        .count();
    assert_eq!(sessions, 1, "sessions for run {run_id}");
}

/// Waits until every event Slack delivered was acked at least once (an
/// envelope written to a connection that then died may go unacked; Slack
/// redelivers its event under a new envelope id).
async fn wait_every_event_acked(app: &TestApp) {
    let unacked = |s: &selfheal_fakes::slack::FakeSlack| {
        let acked: HashSet<String> = s.acks().into_iter().map(|a| a.envelope_id).collect();
        let sent = s.envelopes_sent();
        let delivered: HashSet<&str> = sent
            .iter()
            .filter(|e| acked.contains(&e.envelope_id))
            .filter_map(|e| e.event_id.as_deref())
            .collect();
        sent.iter()
            .filter_map(|e| e.event_id.clone())
            .filter(|id| !delivered.contains(id.as_str()))
            .collect::<HashSet<_>>()
    };
    let done = app
        .slack
        .wait_until(WAIT, |s| unacked(s).is_empty().then_some(()))
        .await;
    assert!(
        done.is_some(),
        "events never acked: {:?}",
        unacked(&app.slack)
    );
}

/// Waits until every envelope sent from index `from` on was acked.
async fn wait_envelopes_acked(app: &TestApp, from: usize) {
    let unacked = |s: &selfheal_fakes::slack::FakeSlack| {
        let acked: HashSet<String> = s.acks().into_iter().map(|a| a.envelope_id).collect();
        s.envelopes_sent()
            .into_iter()
            .skip(from)
            .filter(|e| !acked.contains(&e.envelope_id))
            .map(|e| e.envelope_id)
            .collect::<Vec<_>>()
    };
    let done = app
        .slack
        .wait_until(WAIT, |s| unacked(s).is_empty().then_some(()))
        .await;
    assert!(
        done.is_some(),
        "envelopes never acked: {:?}",
        unacked(&app.slack)
    );
}

/// The agent of `run_id` (see [`RECORD_AGENT`]) left no process in its group,
/// no zombie of ours, and its session folder is gone.
async fn assert_agent_left_nothing_behind(app: &TestApp, run_id: &str) {
    let recorded = |what: &str| {
        let path = app.path().join(format!("prompt.{run_id}.{what}"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the agent did not record {}: {e}", path.display()))
            .trim()
            .to_string()
    };
    let pgid: i32 = recorded("pid").parse().expect("a pid");
    let folder = PathBuf::from(recorded("dir"));
    assert!(
        folder.starts_with(std::env::temp_dir()),
        "unexpected session folder {}",
        folder.display()
    );

    let ours = std::process::id() as i32;
    let leftovers = || -> Vec<Proc> {
        processes()
            .into_iter()
            // Anything still running in the agent's group is an orphan; a zombie
            // is a leak only if it is ours to reap (init reaps the others).
            .filter(|p| p.pgrp == pgid && (p.state != 'Z' || p.ppid == ours))
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (processes, folder_exists) = (leftovers(), folder.exists());
        if processes.is_empty() && !folder_exists {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "left behind: processes {processes:?}, session folder {} exists: {folder_exists}",
            folder.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One line of `/proc/<pid>/stat`.
#[derive(Debug)]
#[allow(dead_code)] // `comm` is only read through Debug, in failure messages.
struct Proc {
    pid: i32,
    comm: String,
    state: char,
    ppid: i32,
    pgrp: i32,
}

/// Every process on the machine, as far as /proc shows them now.
fn processes() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| parse_stat(pid, &Path::new("/proc").join(pid.to_string()).join("stat")))
        .collect()
}

fn parse_stat(pid: i32, path: &Path) -> Option<Proc> {
    // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
    let stat = std::fs::read_to_string(path).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let mut rest = stat[close + 1..].split_whitespace();
    Some(Proc {
        pid,
        comm: stat[open + 1..close].to_string(),
        state: rest.next()?.chars().next()?,
        ppid: rest.next()?.parse().ok()?,
        pgrp: rest.next()?.parse().ok()?,
    })
}
