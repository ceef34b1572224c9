//! The HTTP transport shared by the clients of hosted APIs (GitHub, Paradime,
//! dbt Cloud, model endpoints): TLS with the system's roots, or plain TCP
//! for loopback (local fakes, a model on localhost). Each client keeps its
//! own retry rules; this module only connects and sends.

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A connection pool for one scheme (cheap to clone).
#[derive(Clone)]
pub enum Transport {
    Https(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
    Plain(Client<HttpConnector, Full<Bytes>>),
}

impl Transport {
    /// TLS for `https`, plain TCP for `http`. Callers decide beforehand
    /// whether plain http is acceptable for their URL (see [`is_loopback`]).
    pub fn for_url(url: &url::Url) -> Result<Transport> {
        match url.scheme() {
            "https" => {
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .context("loading the system's root certificates")?
                    .https_only()
                    .enable_http1()
                    .build();
                Ok(Transport::Https(
                    Client::builder(TokioExecutor::new()).build(https),
                ))
            }
            "http" => Ok(Transport::Plain(
                Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            )),
            other => anyhow::bail!("unsupported URL scheme `{other}` in {url}"),
        }
    }

    pub async fn request(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        match self {
            Transport::Https(c) => c.request(req).await,
            Transport::Plain(c) => c.request(req).await,
        }
    }
}

/// Whether a URL points at this machine (where plain http cannot leak a secret).
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Why a request never got an answer, in a person's words ("DNS lookup
/// failed", "connection refused"), from an error and its causes.
///
/// HTTP clients wrap the OS error in several layers whose `Debug` output is
/// what people used to see (`hyper_util::client::legacy::Error(Connect, …)`);
/// this walks the chain and keeps the one fact that says what to fix.
pub fn unreachable_reason(err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let kind = e.downcast_ref::<std::io::Error>().map(|io| io.kind());
        chain.push((e.to_string(), kind));
        next = e.source();
    }
    reason_of(&chain)
}

/// The pure part of [`unreachable_reason`]: each cause's message and, for
/// OS errors, its kind, outermost first.
fn reason_of(chain: &[(String, Option<std::io::ErrorKind>)]) -> String {
    use std::io::ErrorKind;
    let has = |needle: &str| {
        chain
            .iter()
            .any(|(m, _)| m.to_ascii_lowercase().contains(needle))
    };
    let kind = |k: ErrorKind| chain.iter().any(|(_, kind)| *kind == Some(k));
    if has("dns error") || has("failed to lookup address") || has("name or service not known") {
        "DNS lookup failed".into()
    } else if kind(ErrorKind::ConnectionRefused) || has("connection refused") {
        "connection refused".into()
    } else if kind(ErrorKind::TimedOut) || has("timed out") {
        "the connection timed out".into()
    } else if has("certificate") || has("tls") || has("handshake") {
        "the TLS handshake failed (a proxy or an untrusted certificate?)".into()
    } else if kind(ErrorKind::ConnectionReset) || has("connection reset") {
        "the connection was reset".into()
    } else if has("connection closed") || has("incomplete message") {
        "the server closed the connection".into()
    } else {
        // The innermost cause is the most specific; its wrappers only repeat it.
        chain
            .last()
            .map(|(m, _)| m.clone())
            .unwrap_or_else(|| "unknown error".into())
    }
}

/// The host of a URL, for messages ("cannot reach slack.com: …").
pub fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_said_in_a_few_words() {
        use std::io::ErrorKind;
        let m = |s: &str| (s.to_string(), None);
        let io = |s: &str, k| (s.to_string(), Some(k));
        type Chain = Vec<(String, Option<ErrorKind>)>;
        let cases: Vec<(Chain, &str)> = vec![
            (
                vec![
                    m("client error (Connect)"),
                    m("dns error"),
                    io(
                        "failed to lookup address information: Name or service not known",
                        ErrorKind::Other,
                    ),
                ],
                "DNS lookup failed",
            ),
            (
                vec![
                    m("client error (Connect)"),
                    m("tcp connect error"),
                    io(
                        "Connection refused (os error 111)",
                        ErrorKind::ConnectionRefused,
                    ),
                ],
                "connection refused",
            ),
            (
                vec![
                    m("client error (Connect)"),
                    io("deadline", ErrorKind::TimedOut),
                ],
                "the connection timed out",
            ),
            (
                vec![
                    m("client error (Connect)"),
                    m("invalid peer certificate: UnknownIssuer"),
                ],
                "the TLS handshake failed (a proxy or an untrusted certificate?)",
            ),
            (
                vec![
                    m("client error (SendRequest)"),
                    m("connection closed before message completed"),
                ],
                "the server closed the connection",
            ),
            (
                vec![m("outer"), m("the innermost cause")],
                "the innermost cause",
            ),
        ];
        for (chain, want) in cases {
            assert_eq!(reason_of(&chain), want, "{chain:?}");
        }
    }

    #[test]
    fn hosts_are_named_with_their_port_when_they_have_one() {
        assert_eq!(host_of("https://slack.com/api/"), "slack.com");
        assert_eq!(host_of("http://127.0.0.1:9/api/"), "127.0.0.1:9");
        assert_eq!(host_of("not a url"), "not a url");
    }

    #[test]
    fn only_this_machine_is_loopback() {
        for (url, expected) in [
            ("http://127.0.0.1:8080/x", true),
            ("http://localhost/x", true),
            ("http://LOCALHOST/x", true),
            ("http://[::1]:9/x", true),
            ("http://10.0.0.1/x", false),
            ("https://api.github.com", false),
            ("http://localhost.evil.com/", false),
        ] {
            assert_eq!(
                is_loopback(&url::Url::parse(url).unwrap()),
                expected,
                "{url}"
            );
        }
    }
}
