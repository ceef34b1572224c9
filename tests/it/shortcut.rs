//! "Fix with selfheal", the message shortcut: a person picks it from a
//! failure notification's menu and selfheal heals that failure in its
//! thread, whether or not the schedule heals by itself. On anything else the
//! person alone is told why not.

use selfheal::store::Status;
use selfheal_fakes::slack::{BotPost, Ephemeral};

use crate::helpers::*;

const ERIN: &str = "U0ERIN";
const FIX: &str = "selfheal_fix";

/// The bot with `scripted` as the agent asked-for fixes use.
async fn app() -> TestApp {
    spawn_app_with(HAPPY_AGENT, &[("SELFHEAL_DEFAULT_AGENT", "scripted")]).await
}

/// Waits for the next ephemeral message `user` gets in `channel` after the
/// `seen` they had already.
async fn next_ephemeral(app: &TestApp, user: &str, channel: &str, seen: usize) -> Ephemeral {
    app.slack
        .wait_until(WAIT, |s| {
            s.ephemerals()
                .into_iter()
                .filter(|e| e.user == user && e.channel == channel)
                .nth(seen)
        })
        .await
        .unwrap_or_else(|| panic!("no ephemeral for {user}: {:#?}", app.slack.ephemerals()))
}

#[tokio::test]
async fn the_shortcut_heals_a_failure_of_a_schedule_without_self_healing_in_its_thread() {
    // Arrange: `nightly` has no self-healing, so its failure gets no reply.
    let app = app().await;
    let ts = app.post_failure(ALERTS, "nightly", "61").await;

    // Act: Erin uses "Fix with selfheal" on the notification.
    app.slack.use_message_shortcut(ERIN, ALERTS, &ts, FIX).await;

    // Assert: the healing reply in the notification's thread, the agent
    // runs, and its pull request is announced there.
    let reply = app
        .wait_for_reply(ALERTS, &ts, |m| m.text == HEALING_REPLY)
        .await;
    assert_eq!(reply.thread_ts.as_deref(), Some(ts.as_str()));
    let row = app.wait_for_session_end("61").await;
    assert_eq!(row.status, Status::Fixed);
    assert_eq!(
        (row.channel.as_str(), row.thread_ts.as_str()),
        (ALERTS, ts.as_str())
    );
    assert_eq!(row.agent, "scripted");
    assert!(
        app.prompt_of("61").contains("nightly"),
        "the agent was told about the failure"
    );
    app.wait_for_reply(ALERTS, &ts, |m| {
        m.text
            .contains("is ready for review: https://github.com/acme/analytics/pull/61")
    })
    .await;

    // Act: the shortcut again, on the same failure.
    app.slack
        .use_message_shortcut("U0FRANK", ALERTS, &ts, FIX)
        .await;

    // Assert: no second session; Frank alone is shown the first one's thread.
    let told = next_ephemeral(&app, "U0FRANK", ALERTS, 0).await;
    assert!(
        told.text
            .starts_with("✅ Run `61` has a healing session already (fixed): <https://"),
        "{}",
        told.text
    );
    assert!(told.text.contains(&ts.replace('.', "")), "{}", told.text);
    let replies = app.thread(ALERTS, &ts);
    assert_eq!(
        replies.iter().filter(|m| m.text == HEALING_REPLY).count(),
        1
    );
    assert_eq!(app.store().sessions(10).unwrap().len(), 1);
}

#[tokio::test]
async fn the_shortcut_says_why_it_cannot_heal_a_persons_or_a_non_failure_message() {
    // Arrange: a person pastes a failure, the notifier reports a success,
    // and selfheal posts its own message.
    let app = app().await;
    let pasted = app
        .slack
        .post_as_user(ALERTS, "U0HUMAN", &failure_text("hourly_marts", "62"), None)
        .await;
    let success = app
        .slack
        .post_as_bot(
            ALERTS,
            notifier(":white_check_mark: Bolt schedule *hourly_marts* succeeded\nRun ID: 63"),
        )
        .await;
    let healing = app.post_failure(HEALING, "hourly_marts", "64").await;
    let own = app
        .wait_for_reply(HEALING, &healing, |m| m.text == HEALING_REPLY)
        .await;
    let unknown = app
        .slack
        .post_as_bot(ALERTS, notifier(&failure_text("weekly_finance", "65")))
        .await;
    let stranger = app
        .slack
        .post_as_bot(
            ALERTS,
            BotPost {
                bot_id: "B0STRANGER".into(),
                name: "Some other app".into(),
                ..BotPost::text(failure_text("hourly_marts", "66"))
            },
        )
        .await;

    // Act and Assert: one sentence each, to Erin alone.
    let cases = [
        (ALERTS, &pasted, "a person posted it"),
        (ALERTS, &success, "it is not a failure notification"),
        (HEALING, &own.ts, "selfheal posted it"),
        (ALERTS, &unknown, "it names no schedule I know"),
        (ALERTS, &stranger, "not one of selfheal's notifiers"),
    ];
    let mut seen = std::collections::HashMap::new();
    for (channel, ts, why) in cases {
        app.slack.use_message_shortcut(ERIN, channel, ts, FIX).await;
        let n = seen.entry(channel).or_insert(0);
        let told = next_ephemeral(&app, ERIN, channel, *n).await;
        *n += 1;
        assert!(
            told.text.starts_with("I can't heal this message: ") && told.text.contains(why),
            "{why}: {}",
            told.text
        );
    }
    // Nothing was started for any of them, and no thread was written in.
    let store = app.store();
    for run_id in ["62", "63", "65", "66"] {
        assert!(store
            .sessions(10)
            .unwrap()
            .iter()
            .all(|s| s.run_id != run_id));
    }
    assert_eq!(app.thread(ALERTS, &pasted).len(), 1);
}

#[tokio::test]
async fn while_paused_the_shortcut_says_so_and_starts_nothing() {
    // Arrange
    let app = spawn_app_with(
        HAPPY_AGENT,
        &[
            ("SELFHEAL_DEFAULT_AGENT", "scripted"),
            ("SELFHEAL_ADMINS", "U0BOSS"),
        ],
    )
    .await;
    let paused = app
        .slack
        .send_slash_command("U0BOSS", ALERTS, "/selfheal", "pause")
        .await;
    app.slack
        .wait_until(WAIT, |s| {
            s.acks().into_iter().find(|a| a.envelope_id == paused)
        })
        .await
        .expect("the pause is acknowledged");
    let ts = app.post_failure(ALERTS, "nightly", "67").await;

    // Act
    app.slack.use_message_shortcut(ERIN, ALERTS, &ts, FIX).await;

    // Assert
    let told = next_ephemeral(&app, ERIN, ALERTS, 0).await;
    assert!(told.text.starts_with("selfheal is paused"), "{}", told.text);
    assert!(app.store().sessions(10).unwrap().is_empty());
}
