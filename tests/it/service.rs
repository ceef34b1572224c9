//! Running as a service: with `SELFHEAL_HTTP_ADDR`, a supervisor sees that the
//! bot is up, whether it is ready, and what it has done, over plain HTTP.

use std::net::SocketAddr;

use selfheal_fakes::slack::Failure as Fault;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

#[tokio::test]
async fn a_supervisor_sees_health_readiness_and_metrics_and_readiness_follows_slack() {
    // Arrange: the bot serves its endpoints on a port of the test's choosing.
    let addr = free_port();
    let app = spawn_app_with(HAPPY_AGENT, &[("SELFHEAL_HTTP_ADDR", &addr.to_string())]).await;

    // Act: a failure is healed.
    app.post_failure(HEALING, "hourly_marts", "48213").await;
    app.wait_for_session_end("48213").await;

    // Assert: up, ready, and the metrics count the failure and its fix.
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_string()));
    let metrics = wait_for(addr, "/metrics", |status, body| {
        status == 200 && body.contains("selfheal_sessions_ended_total{outcome=\"fixed\"} 1\n")
    })
    .await;
    assert!(
        metrics.contains("\nselfheal_failures_recognised_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("selfheal_socket_envelopes_total{type=\"events_api\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE selfheal_agent_seconds histogram\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("selfheal_agent_seconds_count 1\n"),
        "{metrics}"
    );
    assert_eq!(get(addr, "/nothing").await.0, 404);

    // Act: Slack's connections drop and new ones cannot be opened.
    app.slack
        .fail_next("apps.connections.open", Fault::Status(500), 1000);
    app.slack.drop_all_connections().await;

    // Assert: still up, no longer ready, and says why in one line.
    let why = wait_for(addr, "/readyz", |status, _| status == 503).await;
    assert_eq!(why, "not connected to Slack (Socket Mode)\n");
    assert_eq!(get(addr, "/healthz").await.0, 200);
}

/// A loopback port nothing listens on (free when asked; the bot binds it
/// right after).
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address")
}

/// Polls `path` until `done(status, body)` holds, and returns the body.
async fn wait_for(addr: SocketAddr, path: &str, done: impl Fn(u16, &str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = get(addr, path).await;
        if done(status, &body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GET {path}: {status} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// One `GET` over HTTP/1.1 with a fresh connection: status and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to SELFHEAL_HTTP_ADDR");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_string())
}
