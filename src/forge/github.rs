//! The GitHub (and GitHub Enterprise) REST API client: create a pull request
//! (asking for its reviewers and labels), list open ones, read one's state
//! (conditionally, with its ETag), comment on one. It never calls a merge,
//! review or update endpoint: selfheal never merges, approves or closes.
//!
//! Only pull requests of the configured repository are read or commented on: a
//! pull request URL is accepted only when it is this repository's web address
//! (`https://github.com/{owner}/{repo}/pull/{n}`, or the GitHub Enterprise host's),
//! and the request is always built from the configured owner and name.
//!
//! Retries (in [`super::rest`]): 5xx answers, transport errors and timeouts are
//! retried with doubling backoff; rate limits (429, or 403 with `retry-after` or
//! an exhausted `x-ratelimit-remaining`) are retried after the wait GitHub asks
//! for. Both are bounded by [`RetryPolicy`]; a rate-limit wait longer than
//! `max_wait` is returned at once as [`ForgeError::RateLimited`] so the caller
//! can decide, instead of a session hanging for an hour.

use std::time::Duration;

use hyper::header::HeaderMap;
use serde::Deserialize;
use tracing::warn;

use super::rest::{self, error_message, next_linked, web_origin, Answer, Api, Dialect, Pause};
pub use super::rest::{ForgeToken, RetryPolicy};
use super::{fit_body, ForgeError, PrRequest, PrSnapshot, PullRequest};

/// The REST API version selfheal was written against.
const API_VERSION: &str = "2022-11-28";

/// GitHub refuses pull request bodies and comments longer than this many
/// characters (a 422).
pub(super) const MAX_BODY_CHARS: usize = 65_536;

const GITHUB: Dialect = Dialect {
    name: "GitHub",
    headers: &[
        ("accept", "application/vnd.github+json"),
        ("x-github-api-version", API_VERSION),
    ],
    rate_limit,
    error_message,
    validation_statuses: &[422],
    validation_message,
    forbidden_message: error_message,
    redirect_is_unauthorized: false,
};

/// A GitHub repository reached through the REST API.
pub struct GitHub {
    api: Api,
    /// Kept only so that `Debug` can say a token is held, never its value.
    token: ForgeToken,
    /// Where the repository's web pages are (`https://github.com`, the GitHub
    /// Enterprise host): the origin of the pull request URLs selfheal accepts.
    web_origin: String,
    owner: String,
    repo: String,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("api_base", &self.api.base)
            .field("repo", &format_args!("{}/{}", self.owner, self.repo))
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl GitHub {
    /// A client for `repo` (`owner/name`) at `api_base`. Plain `http://` is accepted
    /// only for loopback hosts (tests, local fakes): elsewhere the token would
    /// travel in clear.
    pub fn new(api_base: &str, repo: &str, token: ForgeToken) -> anyhow::Result<GitHub> {
        let api_base = api_base.trim_end_matches('/');
        let (owner, repo) = rest::owner_and_name(repo)?;
        let api = Api::new(
            api_base,
            &GITHUB,
            ("authorization", &format!("Bearer {}", token.expose())),
        )?;
        let parsed = url::Url::parse(api_base).map_err(anyhow::Error::from)?;
        Ok(GitHub {
            web_origin: web_origin(&parsed),
            api,
            token,
            owner,
            repo,
        })
    }

    /// Replaces the default [`RetryPolicy`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> GitHub {
        self.api.retry = retry;
        self
    }

    /// `owner/name`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    fn repo_url(&self) -> String {
        format!("{}/repos/{}/{}", self.api.base, self.owner, self.repo)
    }

    fn pulls_url(&self) -> String {
        format!("{}/pulls", self.repo_url())
    }

    /// `POST /repos/{owner}/{repo}/pulls` (a draft when asked, the body cut to
    /// what GitHub accepts), then its reviewers and labels. Never followed by
    /// a merge: selfheal never merges.
    pub(super) async fn create_pull(&self, req: &PrRequest) -> Result<PullRequest, ForgeError> {
        let body = serde_json::json!({
            "title": req.title,
            "head": req.head,
            "base": req.base,
            "body": fit_body(&req.body, MAX_BODY_CHARS),
            "maintainer_can_modify": true,
            "draft": req.options.draft,
        });
        let head = (req.head.as_str(), req.base.as_str());
        let pr = self
            .api
            .create_pull(
                &self.pulls_url(),
                &body,
                self.find_open_by_head(head.0, head.1),
            )
            .await?;
        self.follow_up(pr.number, req).await;
        Ok(pr)
    }

    /// Asks for the reviewers and adds the labels people configured. The pull
    /// request is open whatever happens here: a refusal is logged, not returned.
    async fn follow_up(&self, number: u64, req: &PrRequest) {
        let options = &req.options;
        if !options.reviewers.is_empty() {
            let url = format!("{}/{number}/requested_reviewers", self.pulls_url());
            let body = serde_json::json!({ "reviewers": options.reviewers });
            if let Err(e) = self.api.post(&url, &body).await {
                warn!(number, error = %e, reviewers = ?options.reviewers, "could not request reviewers on the pull request");
            }
        }
        if !options.labels.is_empty() {
            let url = format!("{}/issues/{number}/labels", self.repo_url());
            let body = serde_json::json!({ "labels": options.labels });
            if let Err(e) = self.api.post(&url, &body).await {
                warn!(number, error = %e, labels = ?options.labels, "could not label the pull request");
            }
        }
    }

    /// `GET /repos/{owner}/{repo}`: whether the token may push to the
    /// repository, which opening a pull request from a pushed branch needs.
    pub async fn can_push(&self) -> Result<bool, ForgeError> {
        self.api.can_push(&self.repo_url()).await
    }

    /// The number of `pr_url` when it is a pull request of this repository
    /// (`{web origin}/{owner}/{repo}/pull/{n}`, owner and name in any case);
    /// None for anything else, which selfheal never asks about.
    pub(super) fn pr_number(&self, pr_url: &str) -> Option<u64> {
        rest::pr_number_in(pr_url, &self.web_origin, &self.owner, &self.repo, "pull")
    }

    /// `GET /repos/{owner}/{repo}/pulls/{number}`, with `If-None-Match: etag`
    /// when there is one: None when GitHub answers 304 (unchanged since that
    /// ETag; such answers do not count against the rate limit).
    pub(super) async fn pull_state(
        &self,
        number: u64,
        etag: Option<&str>,
    ) -> Result<Option<PrSnapshot>, ForgeError> {
        let url = format!("{}/{number}", self.pulls_url());
        self.api.pull_state(&url, etag).await
    }

    /// `POST /repos/{owner}/{repo}/issues/{number}/comments`.
    pub(super) async fn comment(&self, number: u64, body: &str) -> Result<(), ForgeError> {
        let url = format!("{}/issues/{number}/comments", self.repo_url());
        self.api.comment(&url, body).await
    }

    /// Every open pull request, following `Link: rel="next"` pages.
    pub(super) async fn list_open_pulls(&self) -> Result<Vec<PullRequest>, ForgeError> {
        self.list(&format!("{}?state=open&per_page=100", self.pulls_url()))
            .await
    }

    async fn find_open_by_head(
        &self,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let mut url =
            url::Url::parse(&self.pulls_url()).map_err(|e| ForgeError::Http(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("state", "open")
            .append_pair("head", &format!("{}:{head}", self.owner))
            .append_pair("base", base);
        Ok(self
            .list(url.as_str())
            .await?
            .into_iter()
            .find(|pr| pr.head == head))
    }

    async fn list(&self, first: &str) -> Result<Vec<PullRequest>, ForgeError> {
        self.api
            .pulls(first, |answer, _, _| next_linked(answer))
            .await
    }
}

/// GitHub's error body: `{"message": ..., "errors": [...], "documentation_url": ...}`
/// (the message is read by [`error_message`]).
#[derive(Deserialize, Default)]
struct ApiError {
    #[serde(default)]
    errors: Vec<ApiErrorDetail>,
}

#[derive(Deserialize)]
struct ApiErrorDetail {
    message: Option<String>,
    resource: Option<String>,
    field: Option<String>,
    code: Option<String>,
}

/// The useful part of a 422: the `errors` array's messages (e.g. "A pull request
/// already exists for o:branch."), or `resource.field code` when an error has no
/// message, or the top-level message when there is no array.
fn validation_message(body: &[u8]) -> String {
    let err: ApiError = serde_json::from_slice(body).unwrap_or_default();
    let details: Vec<String> = err
        .errors
        .iter()
        .map(|d| match &d.message {
            Some(m) => m.clone(),
            None => format!(
                "{}.{} {}",
                d.resource.as_deref().unwrap_or("?"),
                d.field.as_deref().unwrap_or("?"),
                d.code.as_deref().unwrap_or("invalid")
            ),
        })
        .collect();
    if details.is_empty() {
        error_message(body)
    } else {
        details.join("; ")
    }
}

/// [`rate_limit_wait`] of an answer.
fn rate_limit(answer: &Answer, now_epoch: u64) -> Option<Pause> {
    rate_limit_wait(
        answer.status.as_u16(),
        &answer.headers,
        &answer.body,
        now_epoch,
    )
    .map(Pause::For)
}

/// How long GitHub asks us to wait, if this answer is a rate limit, following
/// GitHub's documented rules: `retry-after` wins; otherwise an exhausted
/// `x-ratelimit-remaining` means waiting until `x-ratelimit-reset` (epoch seconds);
/// otherwise a 429, or a 403 saying "rate limit", means waiting a minute.
fn rate_limit_wait(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now_epoch: u64,
) -> Option<Duration> {
    if status != 403 && status != 429 {
        return None;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(secs) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        if let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok()) {
            return Some(Duration::from_secs(reset.saturating_sub(now_epoch)));
        }
    }
    if status == 429
        || error_message(body)
            .to_ascii_lowercase()
            .contains("rate limit")
    {
        return Some(Duration::from_secs(60));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PrState;
    use crate::forge::rest::ApiPull;
    use hyper::header::HeaderValue;

    fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> serde_json::Result<T> {
        serde_json::from_slice(body)
    }

    #[test]
    fn rate_limit_waits_follow_githubs_rules() {
        fn check(status: u16, headers: &[(&'static str, &str)], body: &str, want: Option<u64>) {
            let mut map = HeaderMap::new();
            for (k, v) in headers {
                map.insert(*k, HeaderValue::from_str(v).expect("header"));
            }
            let got = rate_limit_wait(status, &map, body.as_bytes(), 1_000);
            assert_eq!(
                got,
                want.map(Duration::from_secs),
                "{status} {headers:?} {body}"
            );
        }
        check(429, &[("retry-after", "7")], "", Some(7));
        check(403, &[("retry-after", "3")], "", Some(3));
        check(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1030"),
            ],
            "",
            Some(30),
        );
        check(
            403,
            &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "900")],
            "",
            Some(0),
        );
        check(
            403,
            &[
                ("retry-after", "2"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1030"),
            ],
            "",
            Some(2),
        );
        check(429, &[], "", Some(60));
        check(
            403,
            &[],
            r#"{"message":"You have exceeded a secondary rate limit."}"#,
            Some(60),
        );
        check(
            403,
            &[("x-ratelimit-remaining", "12")],
            r#"{"message":"Resource not accessible by integration"}"#,
            None,
        );
        check(500, &[("retry-after", "1")], "", None);
        check(422, &[], "", None);
    }

    #[test]
    fn validation_messages_come_from_githubs_errors_array() {
        let cases = [
            (
                r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for o:b."}]}"#,
                "A pull request already exists for o:b.",
            ),
            (
                r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","field":"head","code":"invalid"}]}"#,
                "PullRequest.head invalid",
            ),
            (
                r#"{"message":"Invalid request.\n\n\"head\" wasn't supplied."}"#,
                "Invalid request.\n\n\"head\" wasn't supplied.",
            ),
            ("not json", "not json"),
        ];
        for (body, want) in cases {
            assert_eq!(validation_message(body.as_bytes()), want, "{body}");
        }
    }

    #[test]
    fn only_this_repositorys_pull_request_urls_are_ours() {
        fn check(api_base: &str, url: &str, want: Option<u64>) {
            let gh = GitHub::new(api_base, "acme/dbt", ForgeToken::new("t")).expect("client");
            assert_eq!(gh.pr_number(url), want, "{api_base} {url}");
        }
        let github = "https://api.github.com";
        check(github, "https://github.com/acme/dbt/pull/7", Some(7));
        check(github, "https://github.com/Acme/DBT/pull/7/", Some(7));
        check(github, " https://github.com/acme/dbt/pull/12 ", Some(12));
        check(github, "https://github.com/acme/other/pull/7", None);
        check(github, "https://github.com/evil/dbt/pull/7", None);
        check(github, "https://gitlab.com/acme/dbt/pull/7", None);
        check(github, "https://api.github.com/acme/dbt/pull/7", None);
        check(github, "http://github.com/acme/dbt/pull/7", None);
        check(github, "https://github.com/acme/dbt/issues/7", None);
        check(github, "https://github.com/acme/dbt/pull/7/files", None);
        check(github, "https://github.com/acme/dbt/pull/7?x=1", None);
        check(
            github,
            "https://github.com/acme/dbt/pull/7#discussion",
            None,
        );
        check(github, "https://github.com/acme/dbt/pull/0", None);
        check(github, "https://github.com/acme/dbt/pull/+7", None);
        check(
            github,
            "https://github.com/acme/dbt/compare/main...selfheal/x?expand=1",
            None,
        );
        check(github, "not a url", None);
        let ghe = "https://ghe.example.com/api/v3";
        check(ghe, "https://ghe.example.com/acme/dbt/pull/3", Some(3));
        check(ghe, "https://github.com/acme/dbt/pull/3", None);
        check(ghe, "https://ghe.example.com:8443/acme/dbt/pull/3", None);
        let ghe_cloud = "https://api.octo.ghe.com";
        check(ghe_cloud, "https://octo.ghe.com/acme/dbt/pull/4", Some(4));
        let fake = "http://127.0.0.1:8123";
        check(fake, "http://127.0.0.1:8123/acme/dbt/pull/1", Some(1));
        check(fake, "http://127.0.0.1:9999/acme/dbt/pull/1", None);
    }

    /// Real answers of api.github.com (tests/fixtures/github/README.md).
    #[test]
    fn recorded_github_answers_read_as_open_or_merged_by_whom() {
        let cases = [
            (
                include_str!("../../tests/fixtures/github/pull_open.pygithub-2020.json"),
                PrState::Open,
            ),
            (
                include_str!("../../tests/fixtures/github/pull_merged.pygithub-2026.json"),
                PrState::Merged {
                    by: Some("JLLeitschuh".into()),
                },
            ),
        ];
        for (body, want) in cases {
            let pull: ApiPull = parse_json(body.as_bytes()).expect("GitHub's answer parses");
            assert_eq!(pull.pr_state(), want, "{}", pull.html_url);
        }
        // A list item has no `merged`; a `merged_at` says it all the same.
        let listed = r#"{"number":1,"html_url":"h","state":"closed","title":"t","body":null,
            "head":{"ref":"selfheal/x"},"base":{"ref":"main"},"merged_at":"2025-11-19T17:43:18Z"}"#;
        let pull: ApiPull = parse_json(listed.as_bytes()).expect("parses");
        assert_eq!(pull.pr_state(), PrState::Merged { by: None });
        let closed = listed.replace(r#","merged_at":"2025-11-19T17:43:18Z""#, "");
        let pull: ApiPull = parse_json(closed.as_bytes()).expect("parses");
        assert_eq!(pull.pr_state(), PrState::Closed);
    }

    #[test]
    fn the_forge_never_builds_a_request_that_merges_approves_or_closes() {
        // What would merge (`PUT .../pulls/{n}/merge`, `.../merges`), approve
        // (`POST .../pulls/{n}/reviews`), or close or edit (`PATCH`) a pull
        // request: none of it may appear in the forge's code.
        let forbidden = [
            "merge\"",
            "/merge",
            "merges",
            "reviews",
            "Method::PUT",
            "Method::PATCH",
            "Method::DELETE",
        ];
        for (file, text) in [
            ("github.rs", include_str!("github.rs")),
            ("gitea.rs", include_str!("gitea.rs")),
            ("rest.rs", include_str!("rest.rs")),
            ("mod.rs", include_str!("mod.rs")),
        ] {
            let code = text.split("#[cfg(test)]").next().unwrap_or(text);
            let code: String = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for word in forbidden {
                assert!(
                    !code.contains(word),
                    "{file} mentions `{word}` outside comments and tests"
                );
            }
        }
    }

    #[test]
    fn plain_http_is_refused_except_on_loopback() {
        let token = || ForgeToken::new("t");
        assert!(GitHub::new("http://127.0.0.1:9/api/v3", "o/r", token()).is_ok());
        assert!(GitHub::new("http://localhost:9", "o/r", token()).is_ok());
        assert!(GitHub::new("http://ghe.example.com/api/v3", "o/r", token()).is_err());
        assert!(GitHub::new("http://127.0.0.1:9", "not-a-repo", token()).is_err());
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let gh = GitHub::new(
            "http://127.0.0.1:9",
            "o/r",
            ForgeToken::new("ghp_supersecret"),
        )
        .expect("client");
        let shown = format!("{gh:?}");
        assert!(
            !shown.contains("ghp_supersecret") && shown.contains("***"),
            "{shown}"
        );
    }
}
