//! The healing flow, step by step, as a Slack user sees it.

use std::time::{Duration, Instant};

use selfheal::store::Status;

use crate::helpers::*;

#[tokio::test]
async fn failure_in_healing_channel_threads_the_healing_reply_within_a_second() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let sent = Instant::now();
    let ts = app.post_failure(HEALING, "hourly_marts", "48213").await;

    // Assert
    let reply = app
        .wait_for_reply(HEALING, &ts, |m| m.text == HEALING_REPLY)
        .await;
    let latency = reply.posted_at.duration_since(sent);
    assert!(
        latency < Duration::from_secs(1),
        "healing reply after {latency:?}"
    );
    let thread = app.thread(HEALING, &ts);
    assert_eq!(
        thread[1].text, HEALING_REPLY,
        "the healing reply comes first"
    );
}

#[tokio::test]
async fn the_agent_gets_the_opening_prompt_in_a_file_and_on_stdin() {
    let app = spawn_app().await;

    let ts = app.post_failure(HEALING, "hourly_marts", "48213").await;
    app.wait_for_session_end("48213").await;

    let prompt = app.prompt_of("48213");
    assert!(
        prompt.starts_with("Review the run log and fix run_id 48213\n"),
        "prompt: {prompt}"
    );
    assert!(prompt.contains("Prior attempts for schedule `hourly_marts`: none recorded."));
    let first: serde_json::Value =
        serde_json::from_str(app.stdin_of("48213").trim()).expect("stdin starts with a JSON line");
    assert_eq!(first["type"], "prompt");
    assert_eq!(first["text"].as_str(), Some(prompt.as_str()));
    assert_eq!(first["run_id"], "48213");
    let _ = ts;
}

#[tokio::test]
async fn progress_streams_into_one_edited_message_then_the_pr_link_lands() {
    let app = spawn_app().await;

    let ts = app.post_failure(HEALING, "hourly_marts", "48213").await;
    let row = app.wait_for_session_end("48213").await;
    app.wait_for_reply(HEALING, &ts, |m| m.text.starts_with("✅ Fix for run"))
        .await;

    // One progress message, edited in place; it ends showing the outcome.
    let thread = app.thread(HEALING, &ts);
    let progress: Vec<_> = thread
        .iter()
        .filter(|m| m.text.contains("Healing run `"))
        .collect();
    assert_eq!(progress.len(), 1, "thread: {thread:#?}");
    let progress = progress[0];
    assert!(
        !progress.edits.is_empty(),
        "the progress message was edited"
    );
    let last = progress.edits.last().unwrap();
    assert!(
        last.starts_with("✅ Healing run `48213`"),
        "last edit: {last}"
    );

    // The milestone and the PR each got their own message; the final one links the PR.
    let texts: Vec<&str> = thread.iter().map(|m| m.text.as_str()).collect();
    assert!(
        texts.contains(&"📍 found the cause: a renamed model"),
        "{texts:#?}"
    );
    assert!(texts.contains(&"🔗 Pull request opened: https://github.com/acme/analytics/pull/48213"));
    assert_eq!(
        *texts.last().unwrap(),
        "✅ Fix for run `48213` is ready for review: https://github.com/acme/analytics/pull/48213\n>pointed the ref at the renamed model"
    );

    // The store holds the whole story.
    assert_eq!(row.status, Status::Fixed);
    assert_eq!(row.schedule, "hourly_marts");
    assert_eq!(row.channel, HEALING);
    assert_eq!(row.thread_ts, ts);
    assert_eq!(row.agent, "scripted");
    assert_eq!(
        row.pr_url.as_deref(),
        Some("https://github.com/acme/analytics/pull/48213")
    );
    assert_eq!(
        row.summary.as_deref(),
        Some("pointed the ref at the renamed model")
    );
    assert!(row.ended_at.is_some());
    let kinds: Vec<String> = app
        .store()
        .events(row.id)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for kind in ["prompt", "progress", "milestone", "pr", "result", "end"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} event in {kinds:?}"
        );
    }
}

#[tokio::test]
async fn edits_are_coalesced_when_the_agent_floods_output() {
    let flood = r#"
for i in $(seq 1 3000); do echo "line $i"; done
sleep 1
for i in $(seq 3001 6000); do echo "line $i"; done
echo '{"type":"result","status":"no_fix","summary":"just noise"}'
"#;
    let app = spawn_app_with(flood, &[]).await;

    let ts = app.post_failure(HEALING, "hourly_marts", "7").await;
    let row = app.wait_for_session_end("7").await;
    app.wait_for_reply(HEALING, &ts, |m| m.text.starts_with("⚠️ No pull request"))
        .await;

    let thread = app.thread(HEALING, &ts);
    let progress = thread
        .iter()
        .find(|m| m.text.contains("Healing run `"))
        .expect("progress message");
    // The edit interval is 300 ms in tests; the flood takes about a second.
    assert!(progress.edits.len() <= 8, "{} edits", progress.edits.len());
    let last = progress.edits.last().unwrap();
    assert!(last.starts_with("⚠️ Healing run `7`"), "{last}");
    // Nothing lost from the stored log.
    let lines = app
        .store()
        .events(row.id)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "progress")
        .count();
    assert_eq!(lines, 6000);
    assert_eq!(row.status, Status::NoFix);
    // No thread spam: parent, healing reply, progress, the failure's kind, final message.
    assert_eq!(thread.len(), 5, "thread: {thread:#?}");
    assert!(
        thread[3].text.starts_with("🛠️ Sorted as *code*"),
        "{thread:#?}"
    );
}

#[tokio::test]
async fn other_notified_channels_get_a_threaded_pointer_to_the_healing_thread() {
    let app = spawn_app().await;

    let alerts_ts = app.post_failure(ALERTS, "hourly_marts", "48213").await;
    let healing_ts = app.post_failure(HEALING, "hourly_marts", "48213").await;

    app.wait_for_reply(HEALING, &healing_ts, |m| m.text == HEALING_REPLY)
        .await;
    let pointer = app
        .wait_for_reply(ALERTS, &alerts_ts, |m| {
            m.text.starts_with("🦖 Self-healing started")
        })
        .await;
    assert_eq!(
        pointer.text,
        format!("🦖 Self-healing started in <#{HEALING}>")
    );
    app.wait_for_session_end("48213").await;
    // Exactly one pointer, and nothing else from the bot in #data-alerts.
    assert_eq!(app.bot_messages(ALERTS).len(), 1);
}

#[tokio::test]
async fn a_pointer_goes_top_level_when_the_channel_copy_never_arrives() {
    let app = spawn_app().await;

    let healing_ts = app.post_failure(HEALING, "hourly_marts", "48213").await;
    app.wait_for_reply(HEALING, &healing_ts, |m| m.text == HEALING_REPLY)
        .await;

    // The courtesy window is 2 s in tests.
    let pointer = app
        .slack
        .wait_until(WAIT, |s| {
            s.messages(ALERTS)
                .into_iter()
                .find(|m| m.text.starts_with("🦖 Self-healing started"))
        })
        .await
        .expect("a top-level pointer in #data-alerts");
    assert_eq!(pointer.thread_ts, None);
    assert_eq!(
        pointer.text,
        format!("🦖 Self-healing started in <#{HEALING}>")
    );
}

#[tokio::test]
async fn healing_starts_top_level_when_the_healing_channel_copy_never_arrives() {
    let app = spawn_app().await;

    let alerts_ts = app.post_failure(ALERTS, "hourly_marts", "5001").await;

    let top = app
        .slack
        .wait_until(WAIT, |s| {
            s.messages(HEALING)
                .into_iter()
                .find(|m| m.text == HEALING_REPLY && m.thread_ts.is_none())
        })
        .await
        .expect("a top-level healing message in #agent-demo");
    let row = app.wait_for_session_end("5001").await;
    assert_eq!(row.thread_ts, top.ts);
    assert_eq!(row.status, Status::Fixed);
    app.wait_for_reply(ALERTS, &alerts_ts, |m| {
        m.text.starts_with("🦖 Self-healing started")
    })
    .await;
}

#[tokio::test]
async fn the_second_session_hears_about_the_first_across_a_restart() {
    let mut app = spawn_app().await;
    app.post_failure(HEALING, "hourly_marts", "100").await;
    app.wait_for_session_end("100").await;

    app.restart().await;
    app.post_failure(HEALING, "hourly_marts", "101").await;
    app.wait_for_session_end("101").await;

    let prompt = app.prompt_of("101");
    assert!(prompt.starts_with("Review the run log and fix run_id 101\n"));
    assert!(
        prompt.contains("- run_id 100 at ")
            && prompt.contains(": fixed; PR https://github.com/acme/analytics/pull/100"),
        "prompt: {prompt}"
    );
    assert!(prompt.contains("do not open another one"));
}

#[tokio::test]
async fn an_agent_past_its_time_limit_is_killed_and_the_thread_says_so() {
    let app = spawn_app_timed("echo working; sleep 600 & wait", "2s", &[]).await;

    let started = Instant::now();
    let ts = app.post_failure(HEALING, "hourly_marts", "9").await;
    let row = app.wait_for_session_end("9").await;

    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(row.status, Status::TimedOut);
    let fin = app
        .wait_for_reply(HEALING, &ts, |m| m.text.starts_with("⏱️ No pull request"))
        .await;
    assert_eq!(
        fin.text,
        "⏱️ No pull request opened for run `9` (timed out): the agent ran past its 2s wall-clock limit and was stopped"
    );
}

#[tokio::test]
async fn a_crashing_agent_ends_the_session_with_its_last_words() {
    let app = spawn_app_with("echo 'Traceback: boom' >&2; exit 3", &[]).await;

    let ts = app.post_failure(HEALING, "hourly_marts", "11").await;
    let row = app.wait_for_session_end("11").await;

    assert_eq!(row.status, Status::Failed);
    let fin = app
        .wait_for_reply(HEALING, &ts, |m| m.text.starts_with("❌ No pull request"))
        .await;
    assert_eq!(
        fin.text,
        "❌ No pull request opened for run `11` (agent failed): the agent exited with code 3; its last words: Traceback: boom"
    );
}

#[tokio::test]
async fn secrets_in_agent_output_never_reach_slack_or_the_store() {
    let leaky = r#"
echo "connecting with xoxb-1234567890-abcdefghij"
echo "DB url postgres://loader:hunter2pass@db:5432/x"
echo '{"type":"result","status":"failed","summary":"token ghp_abcdefghijklmnopqrstuvwxyz012345 rejected"}'
"#;
    let app = spawn_app_with(leaky, &[]).await;

    let ts = app.post_failure(HEALING, "hourly_marts", "12").await;
    let row = app.wait_for_session_end("12").await;
    app.wait_for_reply(HEALING, &ts, |m| m.text.starts_with("❌ No pull request"))
        .await;

    let secrets = [
        "xoxb-1234567890-abcdefghij",
        "hunter2pass",
        "ghp_abcdefghijklmnopqrstuvwxyz012345",
    ];
    for m in app.slack.messages(HEALING) {
        for text in std::iter::once(&m.text).chain(m.edits.iter()) {
            for s in secrets {
                assert!(!text.contains(s), "secret {s} in Slack: {text}");
            }
        }
        let blocks = format!("{:?}", m.blocks);
        for s in secrets {
            assert!(!blocks.contains(s), "secret {s} in blocks");
        }
    }
    for event in app.store().events(row.id).unwrap() {
        for s in secrets {
            assert!(
                !event.text.contains(s),
                "secret {s} in the store: {}",
                event.text
            );
        }
    }
    assert!(!row.summary.unwrap_or_default().contains("ghp_"));
}

#[tokio::test]
async fn junk_output_and_orphaned_children_end_cleanly() {
    // Binary junk, a broken JSON line, and a grandchild that would outlive the agent.
    let junk = r#"
printf '\000\377\376{"type":\n'
head -c 4000 /dev/urandom
echo
(sleep 6017 &)
echo '{"type":"result","status":'
exit 0
"#;
    let app = spawn_app_with(junk, &[]).await;

    let ts = app.post_failure(HEALING, "hourly_marts", "31").await;
    let row = app.wait_for_session_end("31").await;

    assert_eq!(row.status, Status::NoFix, "{row:#?}");
    app.wait_for_reply(HEALING, &ts, |m| m.text.starts_with("⚠️ No pull request"))
        .await;
    // Nothing the agent started is left running.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let out = std::process::Command::new("pgrep")
            .args(["-f", "sleep 6017"])
            .output()
            .unwrap();
        if out.stdout.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent's child outlived it"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Slack got readable text: no control characters from the junk.
    for m in app.thread(HEALING, &ts) {
        for text in std::iter::once(&m.text).chain(m.edits.iter()) {
            assert!(
                !text
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t'),
                "{text:?}"
            );
        }
    }
}
