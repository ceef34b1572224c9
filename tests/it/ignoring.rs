//! What selfheal must leave alone. Each case posts something that must not
//! start healing, then a real failure in another thread as a barrier: once the
//! bot has answered the barrier, it has handled (and ignored) what came before.

use selfheal_fakes::slack::{BotPost, MessageEdit};

use crate::helpers::*;

/// Posts a real failure and waits for its healing reply.
async fn barrier(app: &TestApp, run_id: &str) {
    let ts = app.post_failure(HEALING, "hourly_marts", run_id).await;
    app.wait_for_reply(HEALING, &ts, |m| m.text == HEALING_REPLY)
        .await;
}

fn healing_replies(app: &TestApp) -> usize {
    app.bot_messages(HEALING)
        .iter()
        .filter(|m| m.text == HEALING_REPLY)
        .count()
}

#[tokio::test]
async fn a_human_pasting_a_failure_does_not_start_healing() {
    let app = spawn_app().await;

    app.slack
        .post_as_user(
            HEALING,
            "U0HUMAN001",
            &failure_text("hourly_marts", "1"),
            None,
        )
        .await;
    barrier(&app, "2").await;

    assert_eq!(healing_replies(&app), 1);
    assert!(app
        .store()
        .session_for_failure("hourly_marts", "1")
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_bot_that_is_not_a_configured_notifier_is_ignored() {
    let app = spawn_app().await;

    let stranger = BotPost {
        bot_id: "B0STRANGER".into(),
        app_id: Some("A0STRANGER".into()),
        name: "Some other app".into(),
        text: failure_text("hourly_marts", "1"),
        ..BotPost::default()
    };
    app.slack.post_as_bot(HEALING, stranger).await;
    barrier(&app, "2").await;

    assert_eq!(healing_replies(&app), 1);
}

#[tokio::test]
async fn success_notifications_are_ignored() {
    let app = spawn_app().await;

    app.slack
        .post_as_bot(
            HEALING,
            notifier(":white_check_mark: Bolt schedule *hourly_marts* succeeded\nRun ID: 1"),
        )
        .await;
    app.slack
        .post_as_bot(
            HEALING,
            notifier("Bolt schedule hourly_marts passed. Run ID: 3"),
        )
        .await;
    barrier(&app, "2").await;

    assert_eq!(healing_replies(&app), 1);
}

#[tokio::test]
async fn unknown_schedules_are_ignored() {
    let app = spawn_app().await;

    app.post_failure(HEALING, "weekly_finance", "1").await;
    barrier(&app, "2").await;

    assert_eq!(healing_replies(&app), 1);
}

#[tokio::test]
async fn schedules_without_self_healing_get_no_reply() {
    let app = spawn_app().await;

    let ts = app.post_failure(ALERTS, "nightly", "1").await;
    barrier(&app, "2").await;

    assert_eq!(
        app.thread(ALERTS, &ts).len(),
        1,
        "no reply under the nightly failure"
    );
    assert!(app
        .store()
        .session_for_failure("nightly", "1")
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn an_edited_notification_does_not_start_healing() {
    let app = spawn_app().await;

    // The notifier edits an old post into a failure; Slack sends message_changed.
    let ts = app
        .slack
        .post_as_bot(
            HEALING,
            notifier("Bolt schedule hourly_marts is running, run ID 1"),
        )
        .await;
    app.slack
        .edit_message(
            HEALING,
            &ts,
            MessageEdit::text(failure_text("hourly_marts", "1")),
        )
        .await;
    barrier(&app, "2").await;

    assert_eq!(healing_replies(&app), 1);
}

#[tokio::test]
async fn the_bot_never_reacts_to_its_own_messages() {
    let app = spawn_app().await;

    // The bot's own healing reply, progress and outcome are echoed back by Slack;
    // the final message mentions the run and a PR, like a notification would.
    let ts = app.post_failure(HEALING, "hourly_marts", "48213").await;
    app.wait_for_session_end("48213").await;
    app.wait_for_reply(HEALING, &ts, |m| m.text.starts_with("✅ Fix for run"))
        .await;
    barrier(&app, "2").await;

    assert_eq!(healing_replies(&app), 2);
    assert_eq!(app.store().sessions(100).unwrap().len(), 2);
}

#[tokio::test]
async fn a_malformed_payload_is_acknowledged_and_skipped() {
    let app = spawn_app().await;

    app.slack
        .send_envelope(serde_json::json!({
            "envelope_id": "bad-envelope-1",
            "type": "events_api",
            "accepts_response_payload": false,
            "payload": {"type": "event_callback", "event": "this is not an object"}
        }))
        .await;
    barrier(&app, "2").await;

    let acks = app.slack.acks();
    assert!(
        acks.iter().any(|a| a.envelope_id == "bad-envelope-1"),
        "acks: {acks:?}"
    );
}
