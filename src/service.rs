//! `SELFHEAL_HTTP_ADDR`: the small HTTP server that lets a supervisor
//! (systemd, Kubernetes, Prometheus) see how the bot is doing.
//!
//! `GET /healthz` answers while the process is up, `GET /readyz` when Slack's
//! Socket Mode connection is up and the store answers ([`readiness`], pure),
//! `GET /metrics` the [`Metrics`] in Prometheus' text format. Anything else
//! is 404 (405 for another method on a known path). It reads and never
//! changes the bot's state. hyper directly, not axum: the bot built without
//! the demo carries no axum.

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::metrics::Metrics;
use crate::session::controls::Caps;
use crate::store::Store;

/// What the endpoints read.
#[derive(Clone)]
pub struct Service {
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// For the running and queued gauges, read on each scrape.
    pub caps: Caps,
}

/// What readiness is decided from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// A `hello` arrived and no connection error since.
    pub slack_connected: bool,
    /// The store's answer to a trivial query: `Err` with why not.
    pub store: Result<(), String>,
}

/// Ready, or the one-line reason why not (Slack first: without it nothing
/// arrives).
pub fn readiness(facts: &Facts) -> Result<(), String> {
    if !facts.slack_connected {
        return Err("not connected to Slack (Socket Mode)".into());
    }
    facts
        .store
        .clone()
        .map_err(|why| format!("the store does not answer: {why}"))
}

/// Binds `addr` and serves on a task of `tasks` until `shutdown`.
/// Returns the bound address (port 0 picks a free one).
pub async fn start(
    addr: std::net::SocketAddr,
    service: Service,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding SELFHEAL_HTTP_ADDR {addr}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    info!(addr = %bound, "serving /healthz, /readyz and /metrics");
    let conns = tasks.clone();
    tasks.spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        debug!(error = %e, "accepting an HTTP connection");
                        continue;
                    }
                },
            };
            let service = service.clone();
            let shutdown = shutdown.clone();
            conns.spawn(async move {
                let handler = hyper::service::service_fn(move |req| answer(service.clone(), req));
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), handler);
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    done = conn => if let Err(e) = done {
                        debug!(error = %e, "an HTTP connection ended with an error");
                    },
                }
            });
        }
    });
    Ok(bound)
}

async fn answer(
    service: Service,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return Ok(reply(StatusCode::NOT_FOUND, "not found\n"));
    }
    if req.method() != Method::GET {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "only GET\n"));
    }
    Ok(match path {
        "/healthz" => reply(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let store = service.store.clone();
            let store = tokio::task::spawn_blocking(move || store.ping())
                .await
                .map_err(|e| e.to_string())
                .and_then(|answer| answer.map_err(|e| format!("{e:#}")));
            let facts = Facts {
                slack_connected: service.metrics.is_slack_connected(),
                store,
            };
            match readiness(&facts) {
                Ok(()) => reply(StatusCode::OK, "ready\n"),
                Err(why) => reply(StatusCode::SERVICE_UNAVAILABLE, &format!("{why}\n")),
            }
        }
        _ => {
            let metrics = &service.metrics;
            metrics.sessions_running.set(service.caps.running() as u64);
            metrics.sessions_queued.set(service.caps.queued() as u64);
            let mut response = reply(StatusCode::OK, &metrics.render());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
    })
}

fn reply(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(slack_connected: bool, store: Result<(), &str>, expected: Result<(), &str>) {
        let facts = Facts {
            slack_connected,
            store: store.map_err(str::to_string),
        };
        assert_eq!(
            readiness(&facts),
            expected.map_err(str::to_string),
            "{facts:?}"
        );
    }

    #[test]
    fn ready_only_when_slack_is_connected_and_the_store_answers() {
        check(true, Ok(()), Ok(()));
        check(false, Ok(()), Err("not connected to Slack (Socket Mode)"));
        check(
            true,
            Err("database is locked"),
            Err("the store does not answer: database is locked"),
        );
        check(
            false,
            Err("database is locked"),
            Err("not connected to Slack (Socket Mode)"),
        );
    }
}
