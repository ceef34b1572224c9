//! Exactly one session per failure, whatever Slack or the process does.

use std::time::Duration;

use selfheal::store::Status;
use selfheal_fakes::slack::Failure as Fault;

use crate::helpers::*;

fn replies_in(app: &TestApp, channel: &str, ts: &str) -> usize {
    app.thread(channel, ts)
        .iter()
        .filter(|m| m.text == HEALING_REPLY)
        .count()
}

#[tokio::test]
async fn a_redelivered_event_does_not_start_a_second_session() {
    let app = spawn_app().await;

    let ts = app.post_failure(HEALING, "hourly_marts", "1").await;
    app.slack.redeliver_last(1).await;
    app.slack.redeliver_last(2).await;
    app.wait_for_session_end("1").await;

    assert_eq!(replies_in(&app, HEALING, &ts), 1);
    assert_eq!(app.store().sessions(10).unwrap().len(), 1);
}

#[tokio::test]
async fn the_same_failure_in_several_channels_is_one_session() {
    let app = spawn_app().await;

    let (a, b) = tokio::join!(
        app.post_failure(HEALING, "hourly_marts", "1"),
        app.post_failure(ALERTS, "hourly_marts", "1"),
    );
    app.wait_for_session_end("1").await;
    app.wait_for_reply(ALERTS, &b, |m| {
        m.text.starts_with("🦖 Self-healing started")
    })
    .await;

    assert_eq!(replies_in(&app, HEALING, &a), 1);
    assert_eq!(replies_in(&app, ALERTS, &b), 0);
    assert_eq!(app.store().sessions(10).unwrap().len(), 1);
}

#[tokio::test]
async fn every_envelope_is_acknowledged_quickly() {
    let app = spawn_app().await;

    for run in 1..=20 {
        app.post_failure(HEALING, "hourly_marts", &run.to_string())
            .await;
    }
    let sent = app.slack.envelopes_sent().len();
    app.slack
        .wait_until(WAIT, |s| (s.acks().len() >= sent).then_some(()))
        .await
        .expect("all envelopes acked");
    for ack in app.slack.acks() {
        let took = ack
            .acked_at
            .duration_since(ack.sent_at.expect("sent by the fake"));
        // Slack's deadline is 3 s; the bot acks before doing any work.
        assert!(took < Duration::from_millis(500), "ack took {took:?}");
    }
}

#[tokio::test]
async fn a_rate_limited_reply_is_retried_after_the_pause_slack_asked_for() {
    let app = spawn_app().await;
    app.slack.fail_next(
        "chat.postMessage",
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );

    let ts = app.post_failure(HEALING, "hourly_marts", "1").await;
    app.wait_for_reply(HEALING, &ts, |m| m.text == HEALING_REPLY)
        .await;

    let posts: Vec<_> = app
        .slack
        .calls()
        .into_iter()
        .filter(|c| c.method == "chat.postMessage")
        .collect();
    assert_eq!(posts[0].status, 429);
    assert!(posts[1].at.duration_since(posts[0].at) >= Duration::from_millis(950));
    app.wait_for_session_end("1").await;
    assert_eq!(replies_in(&app, HEALING, &ts), 1);
}

#[tokio::test]
async fn writes_to_a_channel_use_slacks_burst_and_keep_its_pace() {
    let app = spawn_app().await;
    // Slack's per-channel limit at the tests' pace: 3 at once, then 1 per 100 ms.
    app.slack
        .set_channel_rate_limit_burst(Duration::from_millis(100), 3);

    for run in 1..=4 {
        app.post_failure(HEALING, "hourly_marts", &run.to_string())
            .await;
    }
    for run in 1..=4 {
        app.wait_for_session_end(&run.to_string()).await;
    }

    let writes: Vec<_> = app
        .slack
        .calls()
        .into_iter()
        .filter(|c| {
            (c.method == "chat.postMessage" || c.method == "chat.update")
                && c.params["channel"] == HEALING
        })
        .collect();
    let limited = writes.iter().filter(|c| c.status == 429).count();
    assert_eq!(limited, 0, "writes Slack refused, of {}", writes.len());
    // The four answers came together: the burst was used, not strict pacing.
    let mut at: Vec<_> = writes.iter().map(|c| c.at).collect();
    at.sort();
    let closest = at.windows(2).map(|p| p[1].duration_since(p[0])).min();
    assert!(
        closest.is_some_and(|gap| gap < Duration::from_millis(50)),
        "closest writes {closest:?} apart"
    );
}

#[tokio::test]
async fn the_bot_reconnects_after_slack_asks_for_a_refresh() {
    let app = spawn_app().await;
    let hellos = app.slack.hellos();

    app.slack.disconnect_all("refresh_requested").await;
    app.slack
        .wait_until(WAIT, |s| (s.hellos() > hellos).then_some(()))
        .await
        .expect("a new Socket Mode connection");
    let ts = app.post_failure(HEALING, "hourly_marts", "1").await;

    app.wait_for_reply(HEALING, &ts, |m| m.text == HEALING_REPLY)
        .await;
}

#[tokio::test]
async fn a_restart_never_repeats_a_healing_reply() {
    let mut app = spawn_app().await;
    let ts = app.post_failure(HEALING, "hourly_marts", "1").await;
    app.wait_for_session_end("1").await;

    app.restart().await;
    // Slack redelivers the notification after the reconnect.
    app.slack.redeliver_last(1).await;
    app.post_failure(HEALING, "hourly_marts", "2").await;
    app.wait_for_session_end("2").await;

    assert_eq!(replies_in(&app, HEALING, &ts), 1);
    assert_eq!(app.store().sessions(10).unwrap().len(), 2);
}

#[tokio::test]
async fn shutdown_stops_running_agents_and_tells_their_threads() {
    let mut app = spawn_app_with("echo started; sleep 600 & wait", &[]).await;
    let ts = app.post_failure(HEALING, "hourly_marts", "1").await;
    app.store_wait_running("1").await;

    app.stop().await;

    let row = app.wait_for_session_end("1").await;
    assert_eq!(row.status, Status::Interrupted);
    let last = app.thread(HEALING, &ts).last().cloned().unwrap();
    assert_eq!(
        last.text,
        "🛑 No pull request opened for run `1` (interrupted): selfheal was shut down while the session ran"
    );
}

#[tokio::test]
async fn a_deleted_healing_thread_does_not_break_the_bot() {
    let app = spawn_app().await;
    let ts = app.post_failure(HEALING, "hourly_marts", "1").await;
    app.slack.delete_message(HEALING, &ts);
    app.post_failure(HEALING, "hourly_marts", "1").await;

    // A later failure is still healed.
    let ts2 = app.post_failure(HEALING, "hourly_marts", "2").await;
    app.wait_for_reply(HEALING, &ts2, |m| m.text == HEALING_REPLY)
        .await;
    let _ = app.wait_for_session_end("1").await;
}

#[tokio::test]
async fn a_crash_inside_the_courtesy_window_does_not_lose_the_healing() {
    let mut app = spawn_app().await;
    // Only #data-alerts got the notification; the bot waits for #agent-demo's copy…
    let alerts_ts = app.post_failure(ALERTS, "hourly_marts", "5002").await;
    let store = app.store();
    let deadline = tokio::time::Instant::now() + WAIT;
    while store
        .sighting("hourly_marts", "5002", ALERTS)
        .unwrap()
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "failure never recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // …and crashes before the window ends.
    app.crash().await;
    app.start().await;

    // After the restart the window runs again: healing starts top-level, and
    // #data-alerts is pointed at it, each exactly once.
    let row = app.wait_for_session_end("5002").await;
    assert_eq!(row.status, Status::Fixed);
    app.wait_for_reply(ALERTS, &alerts_ts, |m| {
        m.text.starts_with("🦖 Self-healing started")
    })
    .await;
    let top: Vec<_> = app
        .bot_messages(HEALING)
        .into_iter()
        .filter(|m| m.text == HEALING_REPLY)
        .collect();
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].thread_ts, None);
    assert_eq!(app.bot_messages(ALERTS).len(), 1);
}

#[tokio::test]
async fn a_new_failure_is_answered_before_writes_already_waiting_in_its_channel() {
    // One session at a time, and a slow channel: routine writes (progress,
    // queue notes) pile up behind each healing reply.
    let app = spawn_app_with(
        "echo started; sleep 600 & wait",
        &[
            ("SELFHEAL_MAX_SESSIONS", "1"),
            ("SELFHEAL_CHANNEL_INTERVAL_MS", "400"),
            // Strict pacing, so that writes wait for every slot.
            ("SELFHEAL_CHANNEL_BURST", "1"),
        ],
    )
    .await;
    let posts = |app: &TestApp| -> Vec<String> {
        app.slack
            .calls_to("chat.postMessage")
            .iter()
            .filter(|c| c.params["channel"] == HEALING)
            .map(|c| c.params["text"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    app.post_failure(HEALING, "hourly_marts", "1").await;
    let second = app.post_failure(HEALING, "hourly_marts", "2").await;
    app.wait_for_reply(HEALING, &second, |m| m.text == HEALING_REPLY)
        .await;
    let before = posts(&app).len();

    // A third failure while run 2's queue note and run 1's progress wait for a slot.
    app.post_failure(HEALING, "hourly_marts", "3").await;
    app.slack
        .wait_until(WAIT, |s| {
            (s.calls_to("chat.postMessage").len() > before).then_some(())
        })
        .await
        .expect("the channel's next write");

    let all = posts(&app);
    assert_eq!(
        all[before], HEALING_REPLY,
        "next write after run 2's reply: {all:#?}"
    );
}
