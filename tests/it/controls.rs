//! People in the loop: Stop, replies to a running agent, "fix this" mentions.

use std::time::Duration;

use selfheal::store::Status;

use crate::helpers::*;

const SLEEPER: &str = "echo reading the run log; sleep 600 & wait";

/// The progress message of the session threaded under `ts`, once it has its Stop button.
async fn progress_with_stop(app: &TestApp, ts: &str) -> (String, String) {
    app.slack
        .wait_until(WAIT, |s| {
            s.thread(HEALING, ts).into_iter().find_map(|m| {
                let blocks = m.blocks.clone()?;
                let button = blocks
                    .as_array()?
                    .iter()
                    .filter(|b| b["type"] == "actions")
                    .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
                    .find(|e| e["action_id"] == "selfheal_stop")?;
                Some((m.ts.clone(), button["value"].as_str()?.to_string()))
            })
        })
        .await
        .expect("a progress message with a Stop button")
}

#[tokio::test]
async fn the_stop_button_ends_the_agent_and_the_thread_says_what_was_done() {
    let app = spawn_app_with(SLEEPER, &[]).await;
    let ts = app.post_failure(HEALING, "hourly_marts", "1").await;
    app.store_wait_running("1").await;
    let (progress_ts, session) = progress_with_stop(&app, &ts).await;

    app.slack
        .click_button("U0ALICE", HEALING, &progress_ts, "selfheal_stop", &session)
        .await;

    let row = app.wait_for_session_end("1").await;
    assert_eq!(row.status, Status::Stopped);
    let fin = app
        .wait_for_reply(HEALING, &ts, |m| m.text.starts_with("✋ No pull request"))
        .await;
    assert!(
        fin.text.starts_with(
            "✋ No pull request opened for run `1` (stopped): stopped by <@U0ALICE>; what it had done so far: "
        ) && fin.text.ends_with("reading the run log"),
        "{}",
        fin.text
    );
}

#[tokio::test]
async fn a_stop_reply_in_the_thread_stops_the_session() {
    let app = spawn_app_with(SLEEPER, &[]).await;
    let ts = app.post_failure(HEALING, "hourly_marts", "2").await;
    app.store_wait_running("2").await;

    app.slack
        .post_as_user(HEALING, "U0BOB", "stop", Some(&ts))
        .await;

    let row = app.wait_for_session_end("2").await;
    assert_eq!(row.status, Status::Stopped);
    assert!(row.summary.unwrap().starts_with("stopped by <@U0BOB>"));
}

#[tokio::test]
async fn replies_reach_the_running_command_agent_on_stdin() {
    let listener = r#"
read -r prompt
while read -r line; do
  echo "heard: $line"
  case "$line" in *"that is all"*) echo '{"type":"result","status":"no_fix","summary":"listened"}'; exit 0;; esac
done
"#;
    let app = spawn_app_with(listener, &[]).await;
    let ts = app.post_failure(HEALING, "hourly_marts", "3").await;
    app.store_wait_running("3").await;

    app.slack
        .post_as_user(
            HEALING,
            "U0CAROL",
            "the source renamed user_id last night",
            Some(&ts),
        )
        .await;
    // Slack spreads envelopes over the bot's connections and keeps no order
    // between them: Carol's second reply follows once the first was heard.
    let store = app.store();
    let session = store
        .session_for_failure("hourly_marts", "3")
        .unwrap()
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !store
        .events(session.id)
        .unwrap()
        .iter()
        .any(|e| e.text.starts_with("heard: "))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first reply was never heard"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.slack
        .post_as_user(HEALING, "U0CAROL", "that is all", Some(&ts))
        .await;

    let row = app.wait_for_session_end("3").await;
    let heard: Vec<String> = app
        .store()
        .events(row.id)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "progress" && e.text.starts_with("heard: "))
        .map(|e| e.text)
        .collect();
    assert_eq!(heard.len(), 2, "{heard:?}");
    let first: serde_json::Value =
        serde_json::from_str(heard[0].trim_start_matches("heard: ")).unwrap();
    assert_eq!(first["type"], "reply");
    assert_eq!(first["user"], "U0CAROL");
    assert_eq!(first["text"], "the source renamed user_id last night");
}

#[tokio::test]
async fn replies_in_threads_selfheal_does_not_own_are_ignored() {
    let app = spawn_app_with(SLEEPER, &[]).await;
    let ts = app.post_failure(HEALING, "hourly_marts", "4").await;
    app.store_wait_running("4").await;
    let other = app
        .slack
        .post_as_user(HEALING, "U0DAN", "lunch?", None)
        .await;

    app.slack
        .post_as_user(HEALING, "U0DAN", "stop", Some(&other))
        .await;
    // A barrier: a later failure is handled, so the reply was handled before it.
    let ts2 = app.post_failure(HEALING, "hourly_marts", "5").await;
    app.wait_for_reply(HEALING, &ts2, |m| m.text == HEALING_REPLY)
        .await;

    let session = app
        .store()
        .session_for_failure("hourly_marts", "4")
        .unwrap()
        .unwrap();
    assert_eq!(session.status, Status::Running);
    assert_eq!(
        app.thread(HEALING, &other).len(),
        2,
        "nothing posted in that thread"
    );
    let _ = ts;
}

#[tokio::test]
async fn a_mention_fixes_a_failure_of_a_schedule_without_self_healing() {
    let app = spawn_app().await;
    // `nightly` has no self-healing: its failure gets no automatic reply.
    let ts = app.post_failure(ALERTS, "nightly", "6").await;
    let bot = app.slack.bot_user_id().to_string();

    app.slack
        .post_as_user(
            ALERTS,
            "U0ERIN",
            &format!("<@{bot}> fix with scripted"),
            Some(&ts),
        )
        .await;

    let reply = app
        .wait_for_reply(ALERTS, &ts, |m| m.text == HEALING_REPLY)
        .await;
    assert_eq!(reply.thread_ts.as_deref(), Some(ts.as_str()));
    let row = app.wait_for_session_end("6").await;
    assert_eq!(row.status, Status::Fixed);
    assert_eq!(row.agent, "scripted");
    assert_eq!(row.channel, ALERTS);
    // A second request for the same failure starts nothing new.
    app.slack
        .post_as_user(ALERTS, "U0FRANK", &format!("<@{bot}> fix this"), Some(&ts))
        .await;
    let ts2 = app.post_failure(HEALING, "hourly_marts", "7").await;
    app.wait_for_reply(HEALING, &ts2, |m| m.text == HEALING_REPLY)
        .await;
    let replies = app
        .thread(ALERTS, &ts)
        .iter()
        .filter(|m| m.text == HEALING_REPLY)
        .count();
    assert_eq!(replies, 1);
}

#[tokio::test]
async fn sessions_over_the_cap_wait_in_the_queue_and_say_so() {
    let app = spawn_app_with(SLEEPER, &[("SELFHEAL_MAX_SESSIONS_PER_SCHEDULE", "1")]).await;
    let first = app.post_failure(HEALING, "hourly_marts", "10").await;
    app.store_wait_running("10").await;

    let second = app.post_failure(HEALING, "hourly_marts", "11").await;

    let queued = app
        .wait_for_reply(HEALING, &second, |m| m.text.starts_with("⏳ Queued"))
        .await;
    assert!(queued.text.contains("1 per schedule"), "{}", queued.text);
    assert_eq!(
        app.store()
            .session_for_failure("hourly_marts", "11")
            .unwrap()
            .unwrap()
            .status,
        Status::Claimed
    );
    // When the first one is stopped, the queued one starts.
    app.slack
        .post_as_user(HEALING, "U0GINA", "stop", Some(&first))
        .await;
    app.store_wait_running("11").await;
    app.slack
        .post_as_user(HEALING, "U0GINA", "stop", Some(&second))
        .await;
    assert_eq!(app.wait_for_session_end("11").await.status, Status::Stopped);
}
