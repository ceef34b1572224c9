//! The fake driven by the real slack-morphism client and Socket Mode listener, so a
//! shape the bot's library cannot read fails here rather than in a bot test.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

type Client = SlackClient<SlackClientHyperHttpsConnector>;

/// A slack-morphism client pointed at the fake: plain HTTP, HTTP/1.1.
fn client(fake: &FakeSlack) -> Arc<Client> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .expect("the test host has CA roots")
        .https_or_http()
        .enable_http1()
        .build();
    let connector =
        SlackClientHyperConnector::with_connector(https).with_slack_api_url(&fake.api_url());
    Arc::new(SlackClient::new(connector))
}

fn bot_token(fake: &FakeSlack) -> SlackApiToken {
    SlackApiToken::new(SlackApiTokenValue::new(fake.bot_token().to_string()))
}

async fn fake_with_channel() -> FakeSlack {
    let fake = FakeSlack::builder()
        .ack_timeout(Duration::from_millis(300))
        .start()
        .await;
    fake.add_channel("C0ALERTS", "alerts");
    fake.add_user("U0ALICE", "alice", false);
    fake.add_owner("U0BOSS", "boss");
    fake
}

/// Shared with the listener callbacks, which are plain `fn`s.
struct Probe {
    events: mpsc::UnboundedSender<SlackPushEventCallback>,
    interactions: mpsc::UnboundedSender<SlackInteractionEvent>,
    /// How many more push events to refuse (not ack).
    refuse: AtomicU32,
}

async fn on_push(
    event: SlackPushEventCallback,
    _: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let states = states.read().await;
    let probe = states.get_user_state::<Probe>().expect("probe installed");
    let _ = probe.events.send(event);
    if probe.refuse.load(Ordering::SeqCst) > 0 {
        probe.refuse.fetch_sub(1, Ordering::SeqCst);
        return Err("refused by the test".into());
    }
    Ok(())
}

async fn on_command(
    event: SlackCommandEvent,
    _: Arc<Client>,
    _: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    Ok(SlackCommandEventResponse::new(
        SlackMessageContent::new().with_text(format!(
            "ran {} {}",
            event.command.0,
            event.text.unwrap_or_default()
        )),
    ))
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let states = states.read().await;
    let probe = states.get_user_state::<Probe>().expect("probe installed");
    match event {
        SlackInteractionEvent::BlockActions(_) | SlackInteractionEvent::MessageAction(_) => {
            let _ = probe.interactions.send(event);
            Ok(())
        }
        other => Err(format!("unexpected interaction {other:?}").into()),
    }
}

/// A failed callback is not acked, so Slack (the fake) redelivers.
fn on_error(
    _: Box<dyn std::error::Error + Send + Sync>,
    _: Arc<Client>,
    _: SlackClientEventsUserState,
) -> HttpStatusCode {
    StatusCode::BAD_REQUEST
}

struct Listener {
    listener: SlackClientSocketModeListener<SlackClientHyperHttpsConnector>,
    events: mpsc::UnboundedReceiver<SlackPushEventCallback>,
    interactions: mpsc::UnboundedReceiver<SlackInteractionEvent>,
}

impl Listener {
    async fn start(fake: &FakeSlack, refuse: u32, ping_interval_secs: u64) -> Listener {
        let (tx, events) = mpsc::unbounded_channel();
        let (interactions_tx, interactions) = mpsc::unbounded_channel();
        let environment = Arc::new(
            SlackClientEventsListenerEnvironment::new(client(fake))
                .with_error_handler(on_error)
                .with_user_state(Probe {
                    events: tx,
                    interactions: interactions_tx,
                    refuse: AtomicU32::new(refuse),
                }),
        );
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_push_events(on_push)
            .with_command_events(on_command)
            .with_interaction_events(on_interaction);
        let config = SlackClientSocketModeConfig::new()
            .with_max_connections_count(1)
            .with_reconnect_timeout_in_seconds(1)
            .with_ping_interval_in_seconds(ping_interval_secs)
            .with_ping_failure_threshold_times(1);
        let listener = SlackClientSocketModeListener::new(&config, environment, callbacks);
        let app_token = SlackApiToken::new(SlackApiTokenValue::new(fake.app_token().to_string()));
        listener
            .listen_for(&app_token)
            .await
            .expect("listener registers the token");
        listener.start().await;
        Listener {
            listener,
            events,
            interactions,
        }
    }

    async fn next_interaction(&mut self) -> SlackInteractionEvent {
        tokio::time::timeout(WAIT, self.interactions.recv())
            .await
            .expect("an interaction arrives in time")
            .expect("the listener is alive")
    }

    async fn next_message(&mut self) -> (SlackPushEventCallback, SlackMessageEvent) {
        let event = tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an event arrives in time")
            .expect("the listener is alive");
        match event.event.clone() {
            SlackEventCallbackBody::Message(message) => (event, message),
            other => panic!("expected a message event, got {other:?}"),
        }
    }
}

async fn wait_for_hellos(fake: &FakeSlack, n: usize) {
    fake.wait_until(WAIT, |f| {
        (f.hellos() >= n && f.connections() >= 1).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("expected {n} hellos, saw {}", fake.hellos()));
}

/// A bare HTTP/1.1 request, for what slack-morphism will not send (no token, form
/// bodies, unknown methods).
async fn raw_http(
    fake: &FakeSlack,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(fake.addr())
        .await
        .expect("connect");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response[9..12].parse().expect("status code");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(json!(null)))
}

#[tokio::test]
async fn post_message_and_update_round_trip_through_slack_morphism() {
    let fake = fake_with_channel().await;
    let client = client(&fake);
    let token = bot_token(&fake);
    let session = client.open_session(&token);

    let posted = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "#alerts".into(),
            SlackMessageContent::new().with_text("Healing started".into()),
        ))
        .await
        .expect("chat.postMessage succeeds");
    assert_eq!(posted.channel.0, "C0ALERTS");
    assert_eq!(
        posted.message.sender.bot_id.as_ref().map(|b| b.0.as_str()),
        Some(fake.bot_id())
    );

    let reply = session
        .chat_post_message(
            &SlackApiChatPostMessageRequest::new(
                "C0ALERTS".into(),
                SlackMessageContent::new().with_text("step 1".into()),
            )
            .with_thread_ts(posted.ts.clone()),
        )
        .await
        .expect("a threaded reply succeeds");
    assert!(reply.ts.0 > posted.ts.0, "ts values increase");

    let updated = session
        .chat_update(&SlackApiChatUpdateRequest::new(
            "C0ALERTS".into(),
            SlackMessageContent::new().with_text("Healed".into()),
            posted.ts.clone(),
        ))
        .await
        .expect("chat.update succeeds");
    assert_eq!(updated.ts, posted.ts);

    let link = session
        .chat_get_permalink(&SlackApiChatGetPermalinkRequest::new(
            "C0ALERTS".into(),
            reply.ts.clone(),
        ))
        .await
        .expect("chat.getPermalink succeeds");
    assert_eq!(
        link.permalink.as_str(),
        format!(
            "https://fake.slack.local/archives/C0ALERTS/p{}?thread_ts={}&cid=C0ALERTS",
            reply.ts.0.replace('.', ""),
            posted.ts.0
        )
    );

    let thread = fake.thread("C0ALERTS", &posted.ts.0);
    assert_eq!(thread.len(), 2);
    assert_eq!(thread[0].text, "Healed");
    assert_eq!(thread[0].edits, vec!["Healed".to_string()]);
    assert!(thread.iter().all(|m| m.by_bot));
    assert_eq!(thread[1].thread_ts.as_deref(), Some(posted.ts.0.as_str()));
    let methods: Vec<String> = fake.calls().into_iter().map(|c| c.method).collect();
    assert_eq!(
        methods,
        [
            "chat.postMessage",
            "chat.postMessage",
            "chat.update",
            "chat.getPermalink"
        ]
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn deleted_parent_refuses_replies_and_updates_like_slack() {
    let fake = fake_with_channel().await;
    let client = client(&fake);
    let token = bot_token(&fake);
    let session = client.open_session(&token);
    let never_seen = session
        .chat_post_message(
            &SlackApiChatPostMessageRequest::new(
                "C0ALERTS".into(),
                SlackMessageContent::new().with_text("x".into()),
            )
            .with_thread_ts("1600000000.000001".into()),
        )
        .await;
    assert!(
        never_seen.is_ok(),
        "Slack accepts an unknown thread_ts silently"
    );

    let alert = fake
        .post_as_bot("C0ALERTS", BotPost::text("dbt run failed"))
        .await;
    let not_ours = session
        .chat_update(&SlackApiChatUpdateRequest::new(
            "C0ALERTS".into(),
            SlackMessageContent::new().with_text("mine now".into()),
            alert.clone().into(),
        ))
        .await;
    assert!(
        matches!(not_ours, Err(SlackClientError::ApiError(e)) if e.code == "cant_update_message")
    );

    assert!(fake.delete_message("C0ALERTS", &alert));
    let reply = session
        .chat_post_message(
            &SlackApiChatPostMessageRequest::new(
                "C0ALERTS".into(),
                SlackMessageContent::new().with_text("x".into()),
            )
            .with_thread_ts(alert.clone().into()),
        )
        .await;
    assert!(matches!(reply, Err(SlackClientError::ApiError(e)) if e.code == "thread_not_found"));
    let update = session
        .chat_update(&SlackApiChatUpdateRequest::new(
            "C0ALERTS".into(),
            SlackMessageContent::new().with_text("y".into()),
            alert.into(),
        ))
        .await;
    assert!(matches!(update, Err(SlackClientError::ApiError(e)) if e.code == "message_not_found"));
    let unknown = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "#nowhere".into(),
            SlackMessageContent::new().with_text("x".into()),
        ))
        .await;
    assert!(matches!(unknown, Err(SlackClientError::ApiError(e)) if e.code == "channel_not_found"));
    fake.shutdown().await;
}

#[tokio::test]
async fn injected_failures_surface_as_slack_morphism_errors() {
    let fake = fake_with_channel().await;
    let client = client(&fake);
    let token = bot_token(&fake);
    let session = client.open_session(&token);
    let post = SlackApiChatPostMessageRequest::new(
        "C0ALERTS".into(),
        SlackMessageContent::new().with_text("hi".into()),
    );
    fake.fail_next(
        "chat.postMessage",
        Failure::RateLimited {
            retry_after_secs: 7,
        },
        1,
    );
    fake.fail_next("chat.postMessage", Failure::Status(503), 1);
    fake.fail_next("chat.postMessage", Failure::error("fatal_error"), 1);

    match session.chat_post_message(&post).await {
        Err(SlackClientError::RateLimitError(e)) => {
            assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
            assert_eq!(e.code.as_deref(), Some("ratelimited"));
        }
        other => panic!("expected a rate limit error, got {other:?}"),
    }
    match session.chat_post_message(&post).await {
        Err(SlackClientError::HttpError(e)) => assert_eq!(e.status_code.as_u16(), 503),
        other => panic!("expected an HTTP error, got {other:?}"),
    }
    assert!(
        matches!(session.chat_post_message(&post).await, Err(SlackClientError::ApiError(e)) if e.code == "fatal_error")
    );
    assert!(
        session.chat_post_message(&post).await.is_ok(),
        "failures are used up"
    );

    let statuses: Vec<u16> = fake.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 503, 200, 200]);
    assert_eq!(fake.messages("C0ALERTS").len(), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_channel_takes_a_burst_of_writes_then_answers_429_until_its_bucket_refills() {
    let fake = fake_with_channel().await;
    fake.set_channel_rate_limit_burst(Duration::from_millis(300), 3);
    let client = client(&fake);
    let token = bot_token(&fake);
    let session = client.open_session(&token);
    let post = |channel: &str| {
        SlackApiChatPostMessageRequest::new(
            channel.into(),
            SlackMessageContent::new().with_text("hi".into()),
        )
    };

    for _ in 0..3 {
        session
            .chat_post_message(&post("C0ALERTS"))
            .await
            .expect("the burst is allowed");
    }
    match session.chat_post_message(&post("C0ALERTS")).await {
        Err(SlackClientError::RateLimitError(e)) => {
            assert_eq!(e.retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("expected a rate limit error, got {other:?}"),
    }
    fake.add_channel("C0OTHER", "other");
    session
        .chat_post_message(&post("C0OTHER"))
        .await
        .expect("another channel has its own bucket");
    tokio::time::sleep(Duration::from_millis(350)).await;
    session
        .chat_post_message(&post("C0ALERTS"))
        .await
        .expect("one write refilled after the gap");

    let statuses: Vec<u16> = fake.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 200, 200]);
    fake.shutdown().await;
}

#[tokio::test]
async fn lookups_answer_with_slack_shapes() {
    let fake = fake_with_channel().await;
    for i in 0..5 {
        fake.add_channel(&format!("C0PAGE{i}"), &format!("page-{i}"));
    }
    fake.add_private_channel("G0SECRET", "secret");
    let client = client(&fake);
    let token = bot_token(&fake);
    let session = client.open_session(&token);

    let auth = session.auth_test().await.expect("auth.test succeeds");
    assert_eq!(auth.user_id.0, fake.bot_user_id());
    assert_eq!(auth.bot_id.map(|b| b.0).as_deref(), Some(fake.bot_id()));

    let mut names = Vec::new();
    let mut cursor = None;
    loop {
        let mut request = SlackApiConversationsListRequest::new().with_limit(4);
        if let Some(cursor) = cursor.take() {
            request = request.with_cursor(cursor);
        }
        let page = session
            .conversations_list(&request)
            .await
            .expect("conversations.list succeeds");
        names.extend(page.channels.iter().filter_map(|c| c.name.clone()));
        match page
            .response_metadata
            .and_then(|m| m.next_cursor)
            .filter(|c| !c.0.is_empty())
        {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        names.len(),
        6,
        "public channels only, over two pages: {names:?}"
    );

    let info = session
        .conversations_info(&SlackApiConversationsInfoRequest::new("G0SECRET".into()))
        .await
        .expect("conversations.info succeeds");
    assert_eq!(info.channel.flags.is_private, Some(true));

    let boss = session
        .users_info(&SlackApiUsersInfoRequest::new("U0BOSS".into()))
        .await
        .expect("users.info succeeds");
    assert_eq!(boss.user.flags.is_admin, Some(true));
    assert_eq!(boss.user.flags.is_owner, Some(true));
    let me = session
        .users_info(&SlackApiUsersInfoRequest::new(fake.bot_user_id().into()))
        .await
        .expect("users.info knows the bot");
    assert_eq!(me.user.flags.is_bot, Some(true));
    let nobody = session
        .users_info(&SlackApiUsersInfoRequest::new("U0NOBODY".into()))
        .await;
    assert!(matches!(nobody, Err(SlackClientError::ApiError(e)) if e.code == "user_not_found"));
    fake.shutdown().await;
}

#[tokio::test]
async fn raw_requests_get_slack_auth_errors_and_forms_work() {
    let fake = fake_with_channel().await;
    let json_ct = "Content-Type: application/json\r\n";
    let (status, body) = raw_http(&fake, "/api/auth.test", json_ct, "{}").await;
    assert_eq!((status, body["error"].as_str()), (200, Some("not_authed")));
    let bad = "Content-Type: application/json\r\nAuthorization: Bearer xoxb-wrong\r\n";
    let (_, body) = raw_http(&fake, "/api/auth.test", bad, "{}").await;
    assert_eq!(body["error"], "invalid_auth");
    let app = format!(
        "Content-Type: application/json\r\nAuthorization: Bearer {}\r\n",
        fake.app_token()
    );
    let (_, body) = raw_http(&fake, "/api/chat.postMessage", &app, "{}").await;
    assert_eq!(body["error"], "not_allowed_token_type");
    let (_, body) = raw_http(&fake, "/api/files.upload", &app, "{}").await;
    assert_eq!(body["error"], "unknown_method");

    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let blocks = url::form_urlencoded::byte_serialize(
        br#"[{"type":"section","text":{"type":"mrkdwn","text":"*hi*"}}]"#,
    )
    .collect::<String>();
    let body = format!(
        "token={}&channel=alerts&text=hello&blocks={blocks}",
        fake.bot_token()
    );
    let (_, reply) = raw_http(&fake, "/api/chat.postMessage", form, &body).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let stored = &fake.messages("alerts")[0];
    assert_eq!(
        stored.blocks.as_ref().expect("blocks parsed")[0]["text"]["text"],
        "*hi*"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn socket_mode_listener_gets_hello_events_and_acks_them() {
    let fake = fake_with_channel().await;
    // Queued before any connection: delivered after the first hello.
    let modern = fake
        .post_as_bot(
            "C0ALERTS",
            BotPost::text("dbt run failed")
                .from_bot("B0DBT", "dbt Cloud")
                .app_id("A0DBT"),
        )
        .await;
    let mut bot = Listener::start(&fake, 0, 15).await;
    wait_for_hellos(&fake, 1).await;

    let (callback, message) = bot.next_message().await;
    assert_eq!(message.origin.ts.0, modern);
    assert_eq!(message.sender.bot_id.map(|b| b.0).as_deref(), Some("B0DBT"));
    assert_eq!(
        message.sender.bot_profile.map(|p| p.name),
        Some("dbt Cloud".to_string())
    );
    assert_eq!(message.subtype, None);
    assert_eq!(callback.api_app_id.0, fake.app_id());

    fake.post_as_bot(
        "C0ALERTS",
        BotPost::text("")
            .classic()
            .from_bot("B0CI", "CI Bot")
            .attachments(json!([{"title": "Build failed", "color": "danger"}])),
    )
    .await;
    let (_, classic) = bot.next_message().await;
    assert_eq!(classic.subtype, Some(SlackMessageEventType::BotMessage));
    assert_eq!(classic.sender.username.as_deref(), Some("CI Bot"));

    fake.post_as_user("C0ALERTS", "U0ALICE", "is it fixed?", Some(&modern))
        .await;
    let (_, human) = bot.next_message().await;
    assert_eq!(human.sender.user.map(|u| u.0).as_deref(), Some("U0ALICE"));
    assert_eq!(human.origin.thread_ts.map(|t| t.0), Some(modern.clone()));

    // The bot's own post comes back, marked as the bot's.
    let client = client(&fake);
    let token = bot_token(&fake);
    let session = client.open_session(&token);
    let own = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "C0ALERTS".into(),
            SlackMessageContent::new().with_text("on it".into()),
        ))
        .await
        .expect("post succeeds");
    let (_, echo) = bot.next_message().await;
    assert_eq!(echo.origin.ts, own.ts);
    assert_eq!(
        echo.sender.bot_id.map(|b| b.0).as_deref(),
        Some(fake.bot_id())
    );
    session
        .chat_update(&SlackApiChatUpdateRequest::new(
            "C0ALERTS".into(),
            SlackMessageContent::new().with_text("done".into()),
            own.ts.clone(),
        ))
        .await
        .expect("update succeeds");
    let (_, changed) = bot.next_message().await;
    assert_eq!(changed.subtype, Some(SlackMessageEventType::MessageChanged));

    let sent = fake.envelopes_sent();
    assert_eq!(sent.len(), 5);
    let acked = fake
        .wait_until(WAIT, |f| (f.acks().len() == 5).then(|| f.acks()))
        .await
        .expect("all five envelopes acked");
    for (ack, sent) in acked.iter().zip(&sent) {
        assert_eq!(ack.envelope_id, sent.envelope_id);
        assert!(ack.sent_at.is_some() && ack.payload.is_none());
    }
    bot.listener.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn unacked_event_is_redelivered_with_the_same_event_id() {
    let fake = fake_with_channel().await;
    let mut bot = Listener::start(&fake, 1, 15).await;
    wait_for_hellos(&fake, 1).await;

    let ts = fake
        .post_as_bot("C0ALERTS", BotPost::text("dbt run failed"))
        .await;
    let (first, _) = bot.next_message().await;
    let (second, message) = bot.next_message().await;
    assert_eq!(message.origin.ts.0, ts);
    assert_eq!(first.event_id, second.event_id);

    let sent = fake.envelopes_sent();
    assert_eq!(sent.len(), 2);
    assert_ne!(sent[0].envelope_id, sent[1].envelope_id);
    assert_eq!((sent[0].retry_attempt, sent[1].retry_attempt), (0, 1));
    let acks = fake
        .wait_until(WAIT, |f| (!f.acks().is_empty()).then(|| f.acks()))
        .await
        .expect("an ack");
    assert_eq!(
        acks[0].envelope_id, sent[1].envelope_id,
        "only the retry is acked"
    );

    fake.redeliver_last(2).await.expect("there was an event");
    let (third, _) = bot.next_message().await;
    assert_eq!(third.event_id, first.event_id);
    assert_eq!(fake.envelopes_sent()[2].retry_attempt, 2);
    bot.listener.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn redelivery_stops_after_three_retries() {
    let fake = fake_with_channel().await;
    let mut bot = Listener::start(&fake, 10, 15).await;
    wait_for_hellos(&fake, 1).await;
    fake.post_as_bot("C0ALERTS", BotPost::text("dbt run failed"))
        .await;
    for _ in 0..4 {
        bot.next_message().await;
    }
    let fifth = fake
        .wait_until(Duration::from_millis(900), |f| {
            (f.envelopes_sent().len() > 4).then_some(())
        })
        .await;
    assert!(fifth.is_none(), "no delivery after the third retry");
    let attempts: Vec<u32> = fake
        .envelopes_sent()
        .iter()
        .map(|e| e.retry_attempt)
        .collect();
    assert_eq!(attempts, [0, 1, 2, 3]);
    bot.listener.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn listener_reconnects_after_disconnect_frame_and_after_a_dropped_socket() {
    let fake = fake_with_channel().await;
    let mut bot = Listener::start(&fake, 0, 15).await;
    wait_for_hellos(&fake, 1).await;

    fake.disconnect_all("refresh_requested").await;
    wait_for_hellos(&fake, 2).await;
    fake.wait_until(WAIT, |f| (f.connections() == 1).then_some(()))
        .await
        .expect("the old connection closes after the grace period");

    fake.drop_all_connections().await;
    fake.post_as_bot("C0ALERTS", BotPost::text("sent while down"))
        .await;
    wait_for_hellos(&fake, 3).await;
    let (_, message) = bot.next_message().await;
    assert_eq!(
        message.content.and_then(|c| c.text).as_deref(),
        Some("sent while down")
    );
    bot.listener.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn missing_pongs_make_the_listener_reconnect() {
    let fake = fake_with_channel().await;
    let _bot = Listener::start(&fake, 0, 1).await;
    wait_for_hellos(&fake, 1).await;
    fake.set_pongs(false);
    wait_for_hellos(&fake, 2).await;
    fake.set_pongs(true);
    _bot.listener.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn slash_commands_and_button_clicks_are_acked() {
    let fake = fake_with_channel().await;
    let bot = Listener::start(&fake, 0, 15).await;
    wait_for_hellos(&fake, 1).await;

    let command = fake
        .send_slash_command("U0ALICE", "C0ALERTS", "/selfheal", "status")
        .await;
    let ack = fake
        .wait_until(WAIT, |f| {
            f.acks().into_iter().find(|a| a.envelope_id == command)
        })
        .await
        .expect("the command is acked");
    assert_eq!(
        ack.payload.expect("a response payload")["text"],
        "ran /selfheal status"
    );

    let alert = fake.post_as_bot("C0ALERTS", BotPost::text("failed")).await;
    let click = fake
        .click_button("U0ALICE", "C0ALERTS", &alert, "retry", "42")
        .await;
    fake.wait_until(WAIT, |f| {
        f.acks().into_iter().find(|a| a.envelope_id == click)
    })
    .await
    .expect("the click is acked");
    let kinds: Vec<String> = fake.envelopes_sent().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["slash_commands", "events_api", "interactive"]);
    bot.listener.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn raw_frames_reach_the_listener() {
    let fake = fake_with_channel().await;
    let mut bot = Listener::start(&fake, 0, 15).await;
    wait_for_hellos(&fake, 1).await;
    fake.send_raw("{not json").await;
    let fixture = json!({
        "envelope_id": "ac2cfd40-6f8c-4d5e-a1ad-646e532baa19",
        "payload": {
            "token": "verification-token", "team_id": "T111", "api_app_id": "A111",
            "event": {"type": "message", "text": "from a fixture", "user": "U222", "ts": "1610241741.000200",
                      "team": "T111", "channel": "C111", "event_ts": "1610241741.000200", "channel_type": "channel"},
            "type": "event_callback", "event_id": "Ev111", "event_time": 1610241741,
            "authorizations": [{"enterprise_id": null, "team_id": "T111", "user_id": "U333", "is_bot": true, "is_enterprise_install": false}],
            "is_ext_shared_channel": false, "event_context": "1-message-T111-C111"
        },
        "type": "events_api", "accepts_response_payload": false, "retry_attempt": 0, "retry_reason": ""
    });
    fake.send_envelope(fixture).await;
    let (callback, _) = bot.next_message().await;
    assert_eq!(callback.event_id.0, "Ev111");
    fake.wait_until(WAIT, |f| {
        f.acks()
            .into_iter()
            .find(|a| a.envelope_id == "ac2cfd40-6f8c-4d5e-a1ad-646e532baa19")
    })
    .await
    .expect("the fixture is acked");
    bot.listener.shutdown().await;
    fake.shutdown().await;
}

/// The keys of a JSON object, to compare the fake's shapes with real payloads.
fn keys(v: &serde_json::Value) -> std::collections::BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn fixture(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("a JSON fixture")
}

#[tokio::test]
async fn views_publish_keeps_the_view_and_refuses_what_slack_refuses() {
    let fake = fake_with_channel().await;
    let session_client = client(&fake);
    let token = bot_token(&fake);
    let session = session_client.open_session(&token);
    let view = |blocks: serde_json::Value| -> SlackView {
        serde_json::from_value(json!({"type": "home", "blocks": blocks})).expect("a home view")
    };
    let section = json!({"type": "section", "text": {"type": "mrkdwn", "text": "*Schedules*"}});

    let published = session
        .views_publish(&SlackApiViewsPublishRequest::new(
            "U0ALICE".into(),
            view(json!([section.clone()])),
        ))
        .await
        .expect("views.publish succeeds");
    let kept = fake.home_view("U0ALICE").expect("the view is kept");
    assert_eq!(
        published.view.state_params.id.0,
        kept["id"].as_str().unwrap()
    );
    assert_eq!(kept["blocks"][0]["text"]["text"], "*Schedules*");
    assert!(
        kept["blocks"][0]["block_id"].is_string(),
        "Slack names every block"
    );
    let real = fixture(include_str!(
        "../../../../tests/fixtures/slack/views.publish.success.slack-api-ref.json"
    ));
    assert_eq!(keys(&kept), keys(&real["view"]));

    // Over Slack's limits, or for no user: invalid_arguments, as Slack says it.
    let too_many: Vec<serde_json::Value> = (0..101).map(|_| json!({"type": "divider"})).collect();
    let refused = session
        .views_publish(&SlackApiViewsPublishRequest::new(
            "U0ALICE".into(),
            view(json!(too_many)),
        ))
        .await;
    assert!(
        matches!(&refused, Err(SlackClientError::ApiError(e)) if e.code == "invalid_arguments"),
        "{refused:?}"
    );
    let (status, body) = raw_http(
        &fake,
        "/api/views.publish",
        &format!(
            "Authorization: Bearer {}\r\nContent-Type: application/json\r\n",
            fake.bot_token()
        ),
        &json!({"view": {"type": "home", "blocks": []}}).to_string(),
    )
    .await;
    let real = fixture(include_str!(
        "../../../../tests/fixtures/slack/views.publish.error.slack-api-ref.json"
    ));
    assert_eq!((status, body), (200, real));
    assert_eq!(
        fake.home_view("U0ALICE").unwrap()["blocks"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "a refused view replaces nothing"
    );

    // An app whose Home tab is off cannot publish one.
    fake.set_home_tab_enabled(false);
    let off = session
        .views_publish(&SlackApiViewsPublishRequest::new(
            "U0ALICE".into(),
            view(json!([section])),
        ))
        .await;
    assert!(
        matches!(&off, Err(SlackClientError::ApiError(e)) if e.code == "not_enabled"),
        "{off:?}"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn shortcuts_home_tab_opens_and_home_clicks_arrive_in_slacks_shapes() {
    let fake = fake_with_channel().await;
    let mut bot = Listener::start(&fake, 0, 15).await;
    wait_for_hellos(&fake, 1).await;

    // A message shortcut on a bot's message carries the whole message.
    let alert = fake
        .post_as_bot(
            "C0ALERTS",
            BotPost::text("run 7 failed").from_bot("B0DBT", "dbt Cloud"),
        )
        .await;
    let _ = bot.next_message().await;
    let envelope = fake
        .use_message_shortcut("U0ALICE", "C0ALERTS", &alert, "selfheal_fix")
        .await;
    let SlackInteractionEvent::MessageAction(action) = bot.next_interaction().await else {
        panic!("a message action");
    };
    assert_eq!(action.callback_id.0, "selfheal_fix");
    assert_eq!(action.user.id.0, "U0ALICE");
    assert_eq!(
        action.channel.as_ref().map(|c| c.id.0.as_str()),
        Some("C0ALERTS")
    );
    let message = action.message.expect("the message");
    assert_eq!(message.origin.ts.0, alert);
    assert_eq!(message.sender.bot_id.map(|b| b.0).as_deref(), Some("B0DBT"));
    let sent = fake
        .envelopes_sent()
        .into_iter()
        .find(|e| e.envelope_id == envelope)
        .expect("the shortcut was sent");
    assert_eq!(sent.kind, "interactive");
    fake.wait_until(WAIT, |f| {
        f.acks().into_iter().find(|a| a.envelope_id == envelope)
    })
    .await
    .expect("the shortcut is acked");

    // The Home tab: no view yet, then the published one comes with the event.
    fake.open_home_tab("U0ALICE").await;
    let opened = bot.events.recv().await.expect("an event");
    let SlackEventCallbackBody::AppHomeOpened(first) = opened.event else {
        panic!("app_home_opened");
    };
    assert_eq!(
        (first.tab.as_deref(), first.view.is_none()),
        (Some("home"), true)
    );
    let session_client = client(&fake);
    let token = bot_token(&fake);
    let home: SlackView = serde_json::from_value(json!({"type": "home", "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "hourly_marts"},
         "accessory": {"type": "button", "action_id": "disable", "value": "hourly_marts",
                       "text": {"type": "plain_text", "text": "Disable"}}}
    ]}))
    .unwrap();
    session_client
        .open_session(&token)
        .views_publish(&SlackApiViewsPublishRequest::new("U0ALICE".into(), home))
        .await
        .expect("published");
    fake.open_home_tab("U0ALICE").await;
    let again = bot.events.recv().await.expect("an event");
    let SlackEventCallbackBody::AppHomeOpened(second) = again.event.clone() else {
        panic!("app_home_opened");
    };
    assert!(matches!(second.view, Some(SlackView::Home(_))));
    fake.open_messages_tab("U0ALICE").await;
    let messages = bot.events.recv().await.expect("an event");
    let SlackEventCallbackBody::AppHomeOpened(tab) = messages.event else {
        panic!("app_home_opened");
    };
    assert_eq!(tab.tab.as_deref(), Some("messages"));

    // A click on the Home tab: from the view, with no channel or message.
    fake.click_home_button("U0ALICE", "disable", Some("hourly_marts"))
        .await;
    let SlackInteractionEvent::BlockActions(click) = bot.next_interaction().await else {
        panic!("block actions");
    };
    assert!(matches!(
        click.container,
        SlackInteractionActionContainer::View(_)
    ));
    assert!(click.channel.is_none() && click.message.is_none() && click.response_url.is_none());
    let pressed = &click.actions.expect("actions")[0];
    assert_eq!(pressed.action_id.0, "disable");
    assert_eq!(pressed.value.as_deref(), Some("hourly_marts"));
    assert_eq!(
        pressed.block_id.as_ref().map(|b| b.0.clone()),
        fake.home_view("U0ALICE").unwrap()["blocks"][0]["block_id"]
            .as_str()
            .map(str::to_string)
    );
    bot.listener.shutdown().await;
    fake.shutdown().await;
}

#[test]
fn the_fakes_interactive_payloads_have_the_keys_of_real_ones() {
    // Built without a socket: the payload functions against the real files.
    let config = super::Config {
        team_id: "T1".into(),
        team_name: "t".into(),
        team_domain: "t".into(),
        bot_user_id: "U0BOT".into(),
        bot_id: "B0BOT".into(),
        bot_name: "selfheal".into(),
        app_id: "A0APP".into(),
        app_token: "xapp-1".into(),
        bot_token: "xoxb-1".into(),
        max_retries: 3,
        disconnect_grace: Duration::from_millis(1),
        addr: "127.0.0.1:1".parse().unwrap(),
    };
    let mut st = super::state::State::new(Duration::from_secs(3), false, vec![]);
    let channel = super::state::Channel {
        id: "C1".into(),
        name: "alerts".into(),
        is_private: false,
        is_member: true,
    };
    let message = super::state::Message {
        bot_id: Some("B0DBT".into()),
        app_id: Some("A0DBT".into()),
        user: Some("U0DBT".into()),
        username: Some("dbt Cloud".into()),
        text: "run 7 failed".into(),
        ..st.new_message("C1", None)
    };
    let shortcut =
        payloads::message_action_envelope(&config, &mut st, "e1", "U1", &channel, &message, "x");
    let real = fixture(include_str!(
        "../../../../tests/fixtures/slack/socket_mode_interactive_message_action_on_bot_message_envelope.java-slack-sdk.json"
    ));
    assert_eq!(keys(&shortcut), keys(&real));
    assert_eq!(keys(&shortcut["payload"]), keys(&real["payload"]));
    assert_eq!(
        keys(&shortcut["payload"]["user"]),
        keys(&real["payload"]["user"])
    );
    assert_eq!(
        shortcut["payload"]["message_ts"],
        shortcut["payload"]["message"]["ts"]
    );

    let view = json!({"id": "V1", "type": "home", "blocks": [{
        "type": "actions", "block_id": "b1",
        "elements": [{"type": "button", "action_id": "a", "value": "v", "style": "primary",
                      "text": {"type": "plain_text", "text": "Go", "emoji": true}}]
    }]});
    st.views.insert("U1".into(), view.clone());
    let opened = payloads::app_home_opened_event(&mut st, "U1", "home");
    let real = fixture(include_str!(
        "../../../../tests/fixtures/slack/socket_mode_events_api_app_home_opened_envelope.java-slack-sdk.json"
    ));
    assert_eq!(keys(&opened), keys(&real["payload"]["event"]));
    let no_view = payloads::app_home_opened_event(&mut st, "U2", "home");
    let real = fixture(include_str!(
        "../../../../tests/fixtures/slack/event_callback_app_home_opened_home_no_view.slack-web.json"
    ));
    assert_eq!(keys(&no_view), keys(&real["event"]));
    let click =
        payloads::home_block_actions_envelope(&config, &mut st, "e2", "U1", &view, "a", Some("v"));
    let real = fixture(include_str!(
        "../../../../tests/fixtures/slack/socket_mode_interactive_block_actions_app_home_envelope.java-slack-sdk.json"
    ));
    assert_eq!(keys(&click), keys(&real));
    assert_eq!(keys(&click["payload"]), keys(&real["payload"]));
    assert_eq!(
        keys(&click["payload"]["container"]),
        keys(&real["payload"]["container"])
    );
    assert_eq!(
        keys(&click["payload"]["actions"][0]),
        keys(&real["payload"]["actions"][0])
    );
}

#[tokio::test]
async fn transcript_indents_threads_and_wait_until_gives_up_at_the_deadline() {
    let fake = FakeSlack::builder().echo_own_messages(false).start().await;
    fake.add_channel("C0ALERTS", "alerts");
    fake.add_user("U0ALICE", "alice", false);
    let alert = fake
        .post_as_bot(
            "alerts",
            BotPost::text("")
                .from_bot("B0DBT", "dbt Cloud")
                .blocks(json!([
                    {"type": "header", "text": {"type": "plain_text", "text": "Run failed"}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": "model `orders`"}}
                ])),
        )
        .await;
    fake.post_as_user("alerts", "U0ALICE", "looking", Some(&alert))
        .await;
    fake.post_as_user(
        "alerts",
        "U0ALICE",
        "<@U0ALICE> see <#C0ALERTS> and <https://x.test/r/1|the run> &lt;3",
        Some(&alert),
    )
    .await;
    fake.edit_message("alerts", &alert, MessageEdit::text("Run failed (retrying)"))
        .await
        .expect("edited");
    assert_eq!(
        fake.transcript("alerts"),
        "#alerts (C0ALERTS)\n  dbt Cloud [app]: Run failed (retrying) (edited 1×)\n      ↳ alice: looking\n      ↳ alice: @alice see #alerts and the run (https://x.test/r/1) <3\n"
    );

    let started = std::time::Instant::now();
    let never = fake
        .wait_until(Duration::from_millis(200), |f| {
            (f.hellos() > 0).then_some(())
        })
        .await;
    assert!(never.is_none());
    assert!(started.elapsed() >= Duration::from_millis(200));
    fake.shutdown().await;
}

#[tokio::test]
async fn an_org_wide_install_sends_events_with_no_team_in_their_authorizations() {
    let fake = FakeSlack::start().await;
    fake.add_channel("C0ALERTS", "data-alerts");
    fake.add_channel("C0OTHER", "other");
    fake.set_org_install("E0ORG");
    fake.set_channel_team("C0OTHER", "T0SECOND");

    for (channel, team) in [
        ("C0ALERTS", fake.team_id().to_string()),
        ("C0OTHER", "T0SECOND".to_string()),
    ] {
        fake.post_as_bot(channel, BotPost::text("dbt run failed"))
            .await;
        let payload = fake
            .inner
            .state()
            .last_event_payload
            .clone()
            .expect("an event");

        // As bolt-python's test_events_org_apps.py has it.
        assert_eq!(payload["team_id"], json!(team));
        assert_eq!(payload["enterprise_id"], "E0ORG");
        assert_eq!(payload["authorizations"][0]["team_id"], json!(null));
        assert_eq!(payload["authorizations"][0]["enterprise_id"], "E0ORG");
        assert_eq!(payload["authorizations"][0]["is_enterprise_install"], true);
        assert_eq!(payload["event"]["channel"], channel);
    }
}
