//! What every fake shares: the lifecycle of its server (bind 127.0.0.1:0,
//! serve an axum router, stop gracefully on request, never outlive the fake
//! that owns it) and the HTTP plumbing of the fakes that answer requests
//! (their state behind one lock, credentials, request records, injected
//! failures, JSON answers).
//!
//! It knows no service's protocol: what a path means and what an error body
//! looks like stay in each fake.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running local server. Dropping it stops it: its clients see the
/// connection close, and every task watching [`Stopping`] ends.
pub struct LocalServer {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// A loopback port bound but not yet served, so that a fake can build its
/// router knowing its own address (and the signal its tasks watch).
pub struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    what: &'static str,
}

/// Resolves when the server is asked to stop, for the tasks a fake spawns
/// beside its server (WebSocket connections, timers).
#[derive(Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl LocalServer {
    /// A free loopback port (`what` names the fake in errors and logs).
    pub async fn bind(what: &'static str) -> anyhow::Result<Bound> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .with_context(|| format!("binding the {what} listener"))?;
        let addr = listener
            .local_addr()
            .with_context(|| format!("reading the {what} address"))?;
        let (stop, _) = watch::channel(false);
        Ok(Bound {
            listener,
            addr,
            stop,
            what,
        })
    }

    /// Stops the server and waits for it.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self.task().take();
        if let Some(task) = task {
            // A panic in the server task already failed the test that caused it.
            let _ = task.await;
        }
    }

    fn task(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.task.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task().take() {
            task.abort();
        }
    }
}

impl Bound {
    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The signal this server's stop sends.
    pub fn stopping(&self) -> Stopping {
        Stopping(self.stop.subscribe())
    }

    /// Serves `app` until stopped.
    pub fn serve(self, app: Router) -> LocalServer {
        let mut stopping = self.stopping();
        let what = self.what;
        // Like real services, no Nagle delay: without it a frame written
        // right after another waits for the client's delayed TCP ack (~40 ms).
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp: &mut TcpStream| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopping.wait().await });
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "{what} stopped with an error");
            }
        });
        LocalServer {
            stop: self.stop,
            task: Mutex::new(Some(task)),
        }
    }
}

impl Stopping {
    /// Resolves once the server is asked to stop (or is gone, which is the same).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

/// A fake that answers HTTP requests with one handler, its state behind one
/// lock shared by the handle tests hold and the handler. Dropping it stops
/// the server.
pub struct HttpFake<S> {
    shared: Shared<S>,
    server: LocalServer,
}

/// What a fake's handler is given as axum state: the fake's state and address.
pub struct Shared<S> {
    state: Arc<Mutex<S>>,
    addr: SocketAddr,
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared {
            state: self.state.clone(),
            addr: self.addr,
        }
    }
}

impl<S> Shared<S> {
    /// The state. A poisoned lock only means a test panicked mid-request;
    /// the data is still usable.
    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl<S: Send + 'static> HttpFake<S> {
    /// Binds a loopback port and answers every request with `handler`.
    pub async fn start<H, T>(what: &'static str, state: S, handler: H) -> anyhow::Result<Self>
    where
        H: axum::handler::Handler<T, Shared<S>>,
        T: 'static,
    {
        let bound = LocalServer::bind(what).await?;
        let shared = Shared {
            state: Arc::new(Mutex::new(state)),
            addr: bound.addr(),
        };
        // Forges accept bodies of a million characters (GitLab: 1,048,576 for a
        // description), up to 4 bytes each: more than axum's default 2 MB.
        let app = Router::new()
            .fallback(handler)
            .layer(axum::extract::DefaultBodyLimit::max(8 * 1024 * 1024))
            .with_state(shared.clone());
        Ok(HttpFake {
            server: bound.serve(app),
            shared,
        })
    }

    /// The state, as the handler sees it.
    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.shared.lock()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.shared.base_url()
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        self.server.stop().await;
    }
}

/// A request as a fake reads it: the whole of it, the body in memory.
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Request {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let (method, uri, headers) = (
            req.method().clone(),
            req.uri().clone(),
            req.headers().clone(),
        );
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Request {
            method,
            uri,
            headers,
            body,
        })
    }
}

impl Request {
    /// The body as text (lossily, as a fake never refuses a body for its bytes).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a request's credentials were, without their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSeen {
    Missing,
    Valid,
    Invalid,
}

/// How a fake's clients prove who they are.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// `Authorization: <scheme> <token>`, with any of `schemes`
    /// (`Bearer`, or an API's older `Token`/`token`).
    Authorization {
        schemes: &'static [&'static str],
        token: String,
    },
    /// Each of these headers with its value (an API key and its secret).
    Headers(Vec<(&'static str, String)>),
    /// Any one of these (an API that takes several kinds of credentials).
    AnyOf(Vec<Credentials>),
}

impl Credentials {
    /// `Authorization: Bearer <token>`.
    pub fn bearer(token: &str) -> Credentials {
        Credentials::Authorization {
            schemes: &["Bearer"],
            token: token.to_string(),
        }
    }

    /// Whether `headers` carry these credentials.
    pub fn check(&self, headers: &HeaderMap) -> AuthSeen {
        let given = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or(""));
        let seen = |valid: bool| {
            if valid {
                AuthSeen::Valid
            } else {
                AuthSeen::Invalid
            }
        };
        match self {
            Credentials::Authorization { schemes, token } => match given("authorization") {
                None => AuthSeen::Missing,
                Some(value) => seen(schemes.iter().any(|scheme| {
                    value
                        .strip_prefix(scheme)
                        .and_then(|rest| rest.strip_prefix(' '))
                        == Some(token.as_str())
                })),
            },
            Credentials::Headers(pairs) => {
                let values: Vec<Option<&str>> = pairs.iter().map(|(n, _)| given(n)).collect();
                if values.iter().all(Option::is_none) {
                    return AuthSeen::Missing;
                }
                seen(
                    pairs
                        .iter()
                        .zip(&values)
                        .all(|((_, want), got)| *got == Some(want.as_str())),
                )
            }
            Credentials::AnyOf(kinds) => {
                let seen: Vec<AuthSeen> = kinds.iter().map(|k| k.check(headers)).collect();
                if seen.contains(&AuthSeen::Valid) {
                    AuthSeen::Valid
                } else if seen.iter().all(|s| *s == AuthSeen::Missing) {
                    AuthSeen::Missing
                } else {
                    AuthSeen::Invalid
                }
            }
        }
    }

    /// Whether a header carries a credential, and so stays out of records.
    fn carries(&self, name: &HeaderName) -> bool {
        match self {
            Credentials::Authorization { .. } => name == "authorization",
            Credentials::Headers(pairs) => pairs.iter().any(|(n, _)| name == n),
            Credentials::AnyOf(kinds) => kinds.iter().any(|k| k.carries(name)),
        }
    }
}

/// One request as a fake saw it, without the values of its credentials.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The path without the query, e.g. `/repos/o/r/pulls`.
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names; the headers that carry credentials are left out
    /// (see [`RecordedRequest::auth`]).
    pub headers: BTreeMap<String, String>,
    pub auth: AuthSeen,
    pub body: String,
}

impl RecordedRequest {
    /// The request carried the fake's credentials.
    pub fn authorized(&self) -> bool {
        self.auth == AuthSeen::Valid
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// The front desk of a fake that answers requests: who may call, what was
/// asked, and the failures (of the fake's own kind `F`) to answer next.
pub struct Gate<F> {
    credentials: Credentials,
    requests: Vec<RecordedRequest>,
    failures: VecDeque<F>,
}

impl<F: Clone> Gate<F> {
    pub fn new(credentials: Credentials) -> Self {
        Gate {
            credentials,
            requests: Vec::new(),
            failures: VecDeque::new(),
        }
    }

    /// Checks the request's credentials, records it, and takes the next
    /// injected failure, which comes before anything else (even a 401).
    pub fn admit(&mut self, req: &Request) -> (AuthSeen, Option<F>) {
        let auth = self.credentials.check(&req.headers);
        self.requests.push(RecordedRequest {
            method: req.method.to_string(),
            path: req.uri.path().to_string(),
            query: req.uri.query().map(str::to_string),
            headers: req
                .headers
                .iter()
                .filter(|(name, _)| !self.credentials.carries(name))
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.to_string(), value)
                })
                .collect(),
            auth,
            body: req.text(),
        });
        (auth, self.failures.pop_front())
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.clone()
    }

    /// The next `times` requests answer `failure` before anything else.
    pub fn fail_next(&mut self, failure: F, times: usize) {
        self.failures.extend(std::iter::repeat_n(failure, times));
    }
}

/// A JSON answer.
pub fn json(status: StatusCode, body: Value) -> Response {
    json_text(status, body.to_string())
}

/// An answer that says it is JSON, with this text as is (a stored file, or
/// a malformed body on purpose).
pub fn json_text(status: StatusCode, text: String) -> Response {
    let mut response = (status, text).into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

/// An injected status code as an HTTP status (500 for a number that is none).
pub fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// How a fake answered conditional reads of one kind of thing (a pull
/// request, a merge request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    /// 200 with the thing.
    pub full: usize,
    /// 304: `If-None-Match` named the current ETag.
    pub not_modified: usize,
}

/// Whether an `If-None-Match` list names `etag`, compared weakly (a `W/`
/// prefix does not matter) as GitHub and GitLab do; `*` matches anything.
pub fn matches_etag(if_none_match: &str, etag: &str) -> bool {
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
    if_none_match
        .split(',')
        .any(|t| t.trim() == "*" || weak(t) == weak(etag))
}

/// A stable, sha-shaped stand-in when there is no git repository behind the fake.
pub fn fake_sha(name: &str) -> String {
    // FNV-1a, repeated to 40 hex digits; only needs to look like a sha and be stable.
    let mut out = String::with_capacity(40);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    while out.len() < 40 {
        for b in name.bytes().chain(out.clone().into_bytes()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{hash:016x}"));
    }
    out.truncate(40);
    out
}

/// `2024-05-01T12:00:00Z`, the timestamp format of GitHub's and GitLab's APIs.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A plain HTTP client for the fakes' own tests: one request, its status
/// and its body as JSON (`null` when it is not JSON).
#[cfg(test)]
pub(crate) async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    let client: Client<_, Full<Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(HttpConnector::new());
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let resp = client
        .request(req.body(Full::new(Bytes::from(body))).expect("a request"))
        .await
        .expect("an answer");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        map
    }

    #[test]
    fn credentials_are_missing_valid_or_invalid() {
        let token = Credentials::Authorization {
            schemes: &["Token", "Bearer"],
            token: "t0k".into(),
        };
        let keys = Credentials::Headers(vec![
            ("x-api-key", "k".into()),
            ("x-api-secret", "s".into()),
        ]);
        let either = Credentials::AnyOf(vec![keys.clone(), Credentials::bearer("t0k")]);
        // (the credentials, the headers given, what they are)
        type Case<'a> = (&'a Credentials, &'a [(&'static str, &'a str)], AuthSeen);
        let cases: [Case; 13] = [
            (&token, &[], AuthSeen::Missing),
            (&token, &[("authorization", "Token t0k")], AuthSeen::Valid),
            (&token, &[("authorization", "Bearer t0k")], AuthSeen::Valid),
            (&token, &[("authorization", "Basic t0k")], AuthSeen::Invalid),
            (
                &token,
                &[("authorization", "Bearer t0k2")],
                AuthSeen::Invalid,
            ),
            (&keys, &[], AuthSeen::Missing),
            (
                &keys,
                &[("x-api-key", "k"), ("x-api-secret", "s")],
                AuthSeen::Valid,
            ),
            (&keys, &[("x-api-key", "k")], AuthSeen::Invalid),
            (
                &keys,
                &[("x-api-key", "k"), ("x-api-secret", "x")],
                AuthSeen::Invalid,
            ),
            (&either, &[], AuthSeen::Missing),
            (
                &either,
                &[("x-api-key", "k"), ("x-api-secret", "s")],
                AuthSeen::Valid,
            ),
            (&either, &[("authorization", "Bearer t0k")], AuthSeen::Valid),
            (&either, &[("authorization", "Bearer k")], AuthSeen::Invalid),
        ];
        for (credentials, given, want) in cases {
            assert_eq!(credentials.check(&headers(given)), want, "{given:?}");
        }
    }

    #[test]
    fn records_leave_out_the_credentials_and_failures_come_first() {
        let mut gate = Gate::new(Credentials::bearer("t0k"));
        gate.fail_next(503u16, 1);
        let req = Request {
            method: Method::POST,
            uri: "/a/b?c=d".parse().expect("a uri"),
            headers: headers(&[("authorization", "Bearer t0k"), ("accept", "x/y")]),
            body: Bytes::from_static(b"{\"k\":1}"),
        };
        assert_eq!(gate.admit(&req), (AuthSeen::Valid, Some(503)));
        assert_eq!(gate.admit(&req), (AuthSeen::Valid, None));
        let recorded = &gate.requests()[0];
        assert_eq!(
            (recorded.method.as_str(), recorded.path.as_str()),
            ("POST", "/a/b")
        );
        assert_eq!(recorded.query.as_deref(), Some("c=d"));
        assert_eq!(
            recorded.headers.keys().collect::<Vec<_>>(),
            ["accept"],
            "no authorization"
        );
        assert_eq!(recorded.json(), Some(serde_json::json!({"k": 1})));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_714_564_800, "2024-05-01T12:00:00Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(secs)),
                want
            );
        }
    }

    #[test]
    fn if_none_match_compares_etags_weakly_as_forges_do() {
        let cases = [
            (r#"W/"abc""#, true),
            (r#""abc""#, true),
            (r#""x", W/"abc""#, true),
            ("*", true),
            (r#"W/"abcd""#, false),
            ("", false),
        ];
        for (header, want) in cases {
            assert_eq!(matches_etag(header, r#"W/"abc""#), want, "{header}");
        }
    }

    #[test]
    fn fake_shas_look_like_shas_and_are_stable() {
        let sha = fake_sha("selfheal/x");
        assert_eq!(sha.len(), 40);
        assert!(sha.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(sha, fake_sha("selfheal/x"));
        assert_ne!(sha, fake_sha("selfheal/y"));
    }
}
