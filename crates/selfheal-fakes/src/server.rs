//! The lifecycle shared by the local HTTP fakes (GitHub, Paradime, dbt Cloud,
//! the model endpoint): bind 127.0.0.1:0, serve an axum router, stop
//! gracefully on request, and never outlive the fake that owns it.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running local server; dropping it aborts the server task.
pub struct LocalServer {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl LocalServer {
    /// A listener on a free loopback port (`what` names the fake in errors).
    pub async fn bind(what: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .with_context(|| format!("binding the {what} listener"))?;
        let addr = listener
            .local_addr()
            .with_context(|| format!("reading the {what} address"))?;
        Ok((listener, addr))
    }

    /// Serves `app` on `listener` until stopped.
    pub fn serve(listener: TcpListener, app: axum::Router, what: &'static str) -> LocalServer {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "{what} stopped with an error");
            }
        });
        LocalServer {
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
