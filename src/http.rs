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

#[cfg(test)]
mod tests {
    use super::*;

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
