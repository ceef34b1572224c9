//! The GitLab REST v4 API client (gitlab.com or a self-managed instance):
//! open a merge request, list open ones, read one's state (conditionally,
//! with its ETag), comment on one (a note). Merge requests are selfheal's
//! pull requests here, their `iid` its number. It never calls a merge,
//! approve or update endpoint: selfheal never merges, approves or closes.
//!
//! Only merge requests of the configured project are read or commented on:
//! a merge request URL is accepted only when it is this project's web
//! address (`https://HOST/group/sub/project/-/merge_requests/{iid}`), and
//! every request is built from the configured project path, URL-encoded as
//! GitLab's `:id` (`group%2Fsub%2Fproject`).
//!
//! Retries, as for GitHub ([`super::rest::Api::send`]): 5xx answers,
//! transport errors and timeouts with doubling backoff; a 429 after the wait
//! GitLab asks for (`Retry-After`, else `RateLimit-Reset`), bounded by
//! [`RetryPolicy`].

use std::time::Duration;

use anyhow::Context;
use hyper::Method;
use serde::Deserialize;
use tracing::{info, warn};

use super::rest::{
    self, next_link, origin, same_origin, valid_name, Answer, Api, Dialect, Pause, MAX_PAGES,
};
use super::{fit, ForgeToken, RetryPolicy};
use super::{ForgeError, PrRequest, PrSnapshot, PullRequest};
use crate::domain::PrState;

/// GitLab refuses merge request descriptions longer than this many characters.
const MAX_DESCRIPTION_CHARS: usize = 1_048_576;

/// The title prefix that makes a merge request a draft (there is no `draft`
/// attribute when creating one).
const DRAFT_PREFIX: &str = "Draft: ";

/// The least access level that may push and open merge requests (Developer).
const DEVELOPER: u64 = 30;

/// What GitLab's API wants on every request and what its refusals mean.
const DIALECT: Dialect = Dialect {
    name: "GitLab",
    headers: &[("accept", "application/json")],
    rate_limit,
    error_message,
    validation_statuses: &[400, 409, 422],
    validation_message: error_message,
    forbidden_message,
    redirect_is_unauthorized: false,
};

/// A GitLab project reached through the REST v4 API.
pub struct GitLab {
    /// e.g. `https://gitlab.com/api/v4` or `https://HOST/gitlab/api/v4`, no trailing slash.
    api_base: String,
    /// Where the project's web pages start: the API base without `/api/v4`
    /// (`https://gitlab.com`, `https://HOST/gitlab`).
    web_base: String,
    /// The project's full path, nested groups included: `group/sub/project`.
    project: String,
    /// The token travels inside, as the `PRIVATE-TOKEN` header.
    api: Api,
}

impl std::fmt::Debug for GitLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLab")
            .field("api_base", &self.api_base)
            .field("project", &self.project)
            .field("token", &"***")
            .finish_non_exhaustive()
    }
}

impl GitLab {
    /// A client for `project` (its full path, nested groups allowed:
    /// `group/sub/project`) at `api_base` (`https://gitlab.com/api/v4` or
    /// `https://HOST/api/v4`). Plain `http://` is accepted only for loopback
    /// hosts (tests, local fakes): elsewhere the token would travel in clear.
    pub fn new(api_base: &str, project: &str, token: ForgeToken) -> anyhow::Result<GitLab> {
        let api_base = api_base.trim_end_matches('/').to_string();
        let api = Api::new(&api_base, &DIALECT, ("private-token", token.expose()))?;
        let parsed = url::Url::parse(&api_base)?;
        let project = project.trim_matches('/');
        let segments: Vec<&str> = project.split('/').collect();
        anyhow::ensure!(
            segments.len() >= 2 && segments.iter().all(|s| valid_name(s)),
            "GitLab project `{project}` is not a full path such as `group/project` or `group/sub/project`"
        );
        let path = parsed.path().trim_end_matches('/');
        let prefix = path
            .strip_suffix("/api/v4")
            .with_context(|| format!("GitLab API URL {api_base} does not end with /api/v4"))?;
        Ok(GitLab {
            web_base: format!("{}{prefix}", origin(&parsed)),
            api_base,
            project: project.to_string(),
            api,
        })
    }

    /// Replaces the default [`RetryPolicy`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> GitLab {
        self.api.retry = retry;
        self
    }

    /// The project's full path, `group/sub/project`.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// `{api}/projects/group%2Fsub%2Fproject`: the project by its encoded path.
    fn project_url(&self) -> String {
        format!(
            "{}/projects/{}",
            self.api_base,
            self.project.replace('/', "%2F")
        )
    }

    fn merge_requests_url(&self) -> String {
        format!("{}/merge_requests", self.project_url())
    }

    /// `POST /projects/:id/merge_requests`. Never followed by a merge:
    /// selfheal never merges.
    pub(super) async fn create_pull(&self, req: &PrRequest) -> Result<PullRequest, ForgeError> {
        let options = &req.options;
        let title = if options.draft && !is_draft_title(&req.title) {
            format!("{DRAFT_PREFIX}{}", req.title)
        } else {
            req.title.clone()
        };
        let mut body = serde_json::json!({
            "source_branch": req.head,
            "target_branch": req.base,
            "title": title,
            "description": fit(
                &req.body,
                MAX_DESCRIPTION_CHARS,
                "\n\n… (cut: too long for a merge request)\n\n",
            ),
        });
        if !options.labels.is_empty() {
            body["labels"] = options.labels.join(",").into();
        }
        let reviewer_ids = self.user_ids(&options.reviewers).await;
        if !reviewer_ids.is_empty() {
            body["reviewer_ids"] = reviewer_ids.into();
        }
        let existing = self.find_open(&req.head, &req.base);
        let pr = self
            .api
            .create::<ApiMergeRequest>(
                &self.merge_requests_url(),
                &body,
                "already exists",
                existing,
            )
            .await?;
        info!(iid = pr.number, url = %pr.url, head = %pr.head, "opened merge request");
        Ok(pr)
    }

    /// The ids of the users `names`, looked up one by one with
    /// `GET /users?username=`. A name that resolves to nobody, or whose
    /// lookup fails, is skipped with a warning: reviewers never cost the
    /// merge request.
    async fn user_ids(&self, names: &[String]) -> Vec<u64> {
        let mut ids = Vec::new();
        for name in names {
            let mut url = match url::Url::parse(&format!("{}/users", self.api_base)) {
                Ok(url) => url,
                Err(_) => break,
            };
            url.query_pairs_mut().append_pair("username", name);
            let found = match self
                .api
                .send(Method::GET, url.as_str(), None, &[], &mut false)
                .await
            {
                Ok(resp) => self
                    .api
                    .parse::<Vec<ApiUser>>(&resp.body)
                    .map(|users| users.into_iter().next().map(|u| u.id)),
                Err(e) => Err(e),
            };
            match found {
                Ok(Some(id)) => ids.push(id),
                Ok(None) => warn!(reviewer = %name, "no such GitLab user; not asked to review"),
                Err(e) => {
                    warn!(reviewer = %name, error = %e, "could not look up a GitLab reviewer; not asked to review")
                }
            }
        }
        ids
    }

    /// `GET /projects/:id`: whether the token may push to the project, which
    /// opening a merge request from a pushed branch needs (Developer, access
    /// level 30, or more, given on the project or by its group).
    pub async fn can_push(&self) -> Result<bool, ForgeError> {
        let resp = self
            .api
            .send(Method::GET, &self.project_url(), None, &[], &mut false)
            .await?;
        let project: serde_json::Value = self.api.parse(&resp.body)?;
        let level = |kind: &str| project["permissions"][kind]["access_level"].as_u64();
        Ok(["project_access", "group_access"]
            .iter()
            .filter_map(|kind| level(kind))
            .any(|l| l >= DEVELOPER))
    }

    /// The iid of `pr_url` when it is a merge request of this project
    /// (`{web base}/{project}/-/merge_requests/{iid}`, or without the `-`
    /// as older GitLab wrote it; the path in any case); None for anything
    /// else, which selfheal never asks about.
    pub(super) fn pr_number(&self, pr_url: &str) -> Option<u64> {
        let url = url::Url::parse(pr_url.trim()).ok()?;
        if url.query().is_some() || url.fragment().is_some() {
            return None;
        }
        let page = format!("{}{}", origin(&url), url.path().trim_end_matches('/'));
        let rest = strip_prefix_ignore_case(&page, &self.web_base)?;
        let rest = rest.strip_prefix('/')?;
        let rest = strip_prefix_ignore_case(rest, &self.project)?;
        let iid = rest
            .strip_prefix("/-/merge_requests/")
            .or_else(|| rest.strip_prefix("/merge_requests/"))?;
        if iid.is_empty() || !iid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        iid.parse().ok().filter(|n| *n > 0)
    }

    /// `GET /projects/:id/merge_requests/:iid`, with `If-None-Match: etag`
    /// when there is one: None when GitLab answers 304 (unchanged since that
    /// ETag).
    pub(super) async fn pull_state(
        &self,
        iid: u64,
        etag: Option<&str>,
    ) -> Result<Option<PrSnapshot>, ForgeError> {
        let url = format!("{}/{iid}", self.merge_requests_url());
        let Some((mr, etag)) = self
            .api
            .get_if_changed::<ApiMergeRequest>(&url, etag)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(PrSnapshot {
            state: mr.pr_state(),
            etag,
        }))
    }

    /// `POST /projects/:id/merge_requests/:iid/notes`. Retried like every
    /// call, so a note whose answer was lost may appear twice; never lost
    /// silently.
    pub(super) async fn comment(&self, iid: u64, body: &str) -> Result<(), ForgeError> {
        let url = format!("{}/{iid}/notes", self.merge_requests_url());
        self.api
            .post(&url, &serde_json::json!({ "body": body }))
            .await?;
        info!(iid, "commented on merge request");
        Ok(())
    }

    /// Every open merge request, page by page (`Link: rel="next"`, else
    /// `x-next-page`).
    pub(super) async fn list_open_pulls(&self) -> Result<Vec<PullRequest>, ForgeError> {
        self.list(&[("state", "opened")]).await
    }

    async fn find_open(&self, head: &str, base: &str) -> Result<Option<PullRequest>, ForgeError> {
        let query = [
            ("state", "opened"),
            ("source_branch", head),
            ("target_branch", base),
        ];
        Ok(self
            .list(&query)
            .await?
            .into_iter()
            .find(|pr| pr.head == head))
    }

    async fn list(&self, query: &[(&str, &str)]) -> Result<Vec<PullRequest>, ForgeError> {
        let page_url = |page: &str| -> Result<String, ForgeError> {
            let mut url = url::Url::parse(&self.merge_requests_url())
                .map_err(|e| ForgeError::Http(e.to_string()))?;
            url.query_pairs_mut()
                .extend_pairs(query)
                .append_pair("per_page", "100")
                .append_pair("page", page);
            // `Url` decodes nothing, so the project's `%2F`s stay as they are.
            Ok(url.to_string())
        };
        let mut prs = Vec::new();
        let mut next = Some(page_url("1")?);
        for _ in 0..MAX_PAGES {
            let Some(url) = next.take() else { break };
            let resp = self
                .api
                .send(Method::GET, &url, None, &[], &mut false)
                .await?;
            let page: Vec<ApiMergeRequest> = self.api.parse(&resp.body)?;
            prs.extend(page.into_iter().map(PullRequest::from));
            next = match resp.header("link").and_then(next_link) {
                // The token goes only where the API is: never follow a link elsewhere.
                Some(link) => Some(link).filter(|l| same_origin(l, &self.api_base)),
                None => match resp.header("x-next-page") {
                    Some(page) if !page.is_empty() && page.bytes().all(|b| b.is_ascii_digit()) => {
                        Some(page_url(page)?)
                    }
                    _ => None,
                },
            };
        }
        Ok(prs)
    }
}

/// Whether a title already makes a draft (`Draft:`, `[Draft]`, `(Draft)`,
/// any case, as GitLab reads them).
fn is_draft_title(title: &str) -> bool {
    let lower = title.trim_start().to_ascii_lowercase();
    ["draft:", "[draft]", "(draft)"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// `text` without `prefix`, compared ignoring ASCII case.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// A 429 is GitLab's rate limit.
fn rate_limit(answer: &Answer, now_epoch: u64) -> Option<Pause> {
    (answer.status.as_u16() == 429).then(|| Pause::For(rate_limit_wait(answer, now_epoch)))
}

/// GitLab's 403, naming what a token needs.
fn forbidden_message(body: &[u8]) -> String {
    format!(
        "{} (a GitLab token needs the `api` scope and at least the Developer role)",
        error_message(body)
    )
}

/// How long a 429 asks us to wait: `Retry-After` (seconds), else until
/// `RateLimit-Reset` (epoch seconds), else a minute.
fn rate_limit_wait(answer: &Answer, now_epoch: u64) -> Duration {
    let secs = |name: &str| answer.header(name).and_then(|v| v.parse::<u64>().ok());
    if let Some(wait) = secs("retry-after") {
        return Duration::from_secs(wait);
    }
    match secs("ratelimit-reset") {
        Some(reset) => Duration::from_secs(reset.saturating_sub(now_epoch)),
        None => Duration::from_secs(60),
    }
}

/// GitLab's error text: `message` (a string, a list of strings, or a map of
/// field to messages: `{"title": ["can't be blank"]}`), else `error` with its
/// `error_description`, else the start of the body (a 429's `Retry later`).
fn error_message(body: &[u8]) -> String {
    fn flatten(value: &serde_json::Value) -> Option<String> {
        use serde_json::Value;
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => {
                let parts: Vec<String> = items.iter().filter_map(flatten).collect();
                (!parts.is_empty()).then(|| parts.join("; "))
            }
            Value::Object(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .filter_map(|(field, v)| flatten(v).map(|m| format!("{field} {m}")))
                    .collect();
                (!parts.is_empty()).then(|| parts.join("; "))
            }
            _ => None,
        }
    }
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    if let Some(message) = flatten(&json["message"]) {
        return message;
    }
    if let Some(error) = json["error"].as_str() {
        return match json["error_description"].as_str() {
            Some(description) => format!("{error}: {description}"),
            None => error.to_string(),
        };
    }
    rest::body_start(body).trim().to_string()
}

/// The parts of GitLab's merge request object selfheal reads.
#[derive(Deserialize)]
struct ApiMergeRequest {
    iid: u64,
    web_url: String,
    /// `opened`, `closed`, `locked` (being merged) or `merged`.
    state: String,
    title: String,
    description: Option<String>,
    source_branch: String,
    target_branch: String,
    /// Who merged it (or set it to merge when the pipeline passes).
    #[serde(default)]
    merge_user: Option<ApiUserName>,
    /// The same, deprecated since GitLab 14.7: read when `merge_user` is absent.
    #[serde(default)]
    merged_by: Option<ApiUserName>,
}

#[derive(Deserialize)]
struct ApiUserName {
    username: String,
}

#[derive(Deserialize)]
struct ApiUser {
    id: u64,
}

impl ApiMergeRequest {
    /// Merged by whom, closed, or open (`opened`, and `locked`: a merge under way).
    fn pr_state(&self) -> PrState {
        match self.state.as_str() {
            "merged" => PrState::Merged {
                by: self
                    .merge_user
                    .as_ref()
                    .or(self.merged_by.as_ref())
                    .map(|u| u.username.clone()),
            },
            "closed" => PrState::Closed,
            _ => PrState::Open,
        }
    }
}

impl From<ApiMergeRequest> for PullRequest {
    fn from(mr: ApiMergeRequest) -> PullRequest {
        let state = match mr.pr_state() {
            PrState::Open => "open",
            _ => "closed",
        };
        PullRequest {
            number: mr.iid,
            url: mr.web_url,
            head: mr.source_branch,
            base: mr.target_branch,
            title: mr.title,
            body: mr.description.unwrap_or_default(),
            state: state.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_projects_merge_request_urls_are_ours() {
        fn check(api_base: &str, url: &str, want: Option<u64>) {
            let gl = GitLab::new(api_base, "acme/data/dbt", ForgeToken::new("t")).expect("client");
            assert_eq!(gl.pr_number(url), want, "{api_base} {url}");
        }
        let com = "https://gitlab.com/api/v4";
        check(
            com,
            "https://gitlab.com/acme/data/dbt/-/merge_requests/7",
            Some(7),
        );
        check(
            com,
            "https://gitlab.com/Acme/Data/DBT/-/merge_requests/7/",
            Some(7),
        );
        check(
            com,
            " https://gitlab.com/acme/data/dbt/merge_requests/12 ",
            Some(12),
        );
        check(
            com,
            "https://gitlab.com/acme/data/other/-/merge_requests/7",
            None,
        );
        check(com, "https://gitlab.com/acme/dbt/-/merge_requests/7", None);
        check(
            com,
            "https://gitlab.com/acme/data/dbt/sub/-/merge_requests/7",
            None,
        );
        check(
            com,
            "https://gitlab.com/evil/acme/data/dbt/-/merge_requests/7",
            None,
        );
        check(
            com,
            "https://github.com/acme/data/dbt/-/merge_requests/7",
            None,
        );
        check(
            com,
            "http://gitlab.com/acme/data/dbt/-/merge_requests/7",
            None,
        );
        check(com, "https://gitlab.com/acme/data/dbt/-/issues/7", None);
        check(
            com,
            "https://gitlab.com/acme/data/dbt/-/merge_requests/7/diffs",
            None,
        );
        check(
            com,
            "https://gitlab.com/acme/data/dbt/-/merge_requests/7?x=1",
            None,
        );
        check(
            com,
            "https://gitlab.com/acme/data/dbt/-/merge_requests/7#note_1",
            None,
        );
        check(
            com,
            "https://gitlab.com/acme/data/dbt/-/merge_requests/0",
            None,
        );
        check(
            com,
            "https://gitlab.com/acme/data/dbt/-/merge_requests/+7",
            None,
        );
        check(com, "not a url", None);
        let hosted = "https://git.example.com/gitlab/api/v4/";
        check(
            hosted,
            "https://git.example.com/gitlab/acme/data/dbt/-/merge_requests/3",
            Some(3),
        );
        check(
            hosted,
            "https://git.example.com/acme/data/dbt/-/merge_requests/3",
            None,
        );
        check(
            hosted,
            "https://git.example.com:8443/gitlab/acme/data/dbt/-/merge_requests/3",
            None,
        );
    }

    #[test]
    fn a_client_needs_a_v4_api_a_full_project_path_and_tls_off_loopback() {
        let token = || ForgeToken::new("t");
        assert!(GitLab::new("https://gitlab.com/api/v4", "a/b", token()).is_ok());
        assert!(GitLab::new("https://gitlab.com/api/v4", "a/b/c/d", token()).is_ok());
        assert!(GitLab::new("http://127.0.0.1:9/api/v4", "a/b", token()).is_ok());
        assert!(GitLab::new("http://gitlab.example.com/api/v4", "a/b", token()).is_err());
        assert!(GitLab::new("https://gitlab.com", "a/b", token()).is_err());
        assert!(GitLab::new("https://gitlab.com/api/v4", "project", token()).is_err());
        assert!(GitLab::new("https://gitlab.com/api/v4", "a/b c", token()).is_err());
        let shown = format!(
            "{:?}",
            GitLab::new(
                "https://gitlab.com/api/v4",
                "a/b",
                ForgeToken::new("glpat-secret")
            )
            .expect("client")
        );
        assert!(
            !shown.contains("glpat-secret") && shown.contains("***"),
            "{shown}"
        );
    }

    /// Real GitLab answers (shared/reference/forge-payloads/gitlab).
    #[test]
    fn recorded_gitlab_answers_read_as_open_or_merged_by_whom() {
        let cases = [
            (
                include_str!("../../tests/fixtures/gitlab/merge_request_opened.go-gitlab.json"),
                PrState::Open,
            ),
            (
                include_str!(
                    "../../tests/fixtures/gitlab/merge_request_merged.gitlab-docs-trimmed.json"
                ),
                PrState::Merged {
                    by: Some("DouweM".into()),
                },
            ),
        ];
        for (body, want) in cases {
            let mr: ApiMergeRequest = serde_json::from_str(body).expect("GitLab's answer parses");
            assert_eq!(mr.pr_state(), want, "{}", mr.web_url);
        }
        let listed: Vec<ApiMergeRequest> = serde_json::from_str(include_str!(
            "../../tests/fixtures/gitlab/merge_requests_list.go-scm.json"
        ))
        .expect("a list parses");
        let pr = PullRequest::from(listed.into_iter().next().expect("one"));
        assert_eq!(
            (
                pr.number,
                pr.head.as_str(),
                pr.base.as_str(),
                pr.state.as_str()
            ),
            (1, "fix", "master", "closed")
        );
        // Only the deprecated `merged_by`: still who merged.
        let old = r#"{"iid":2,"web_url":"w","state":"merged","title":"t","description":null,
            "source_branch":"s","target_branch":"main","merged_by":{"username":"ann"}}"#;
        let mr: ApiMergeRequest = serde_json::from_str(old).expect("parses");
        assert_eq!(
            mr.pr_state(),
            PrState::Merged {
                by: Some("ann".into())
            }
        );
        let locked = old.replace("\"merged\"", "\"locked\"");
        let mr: ApiMergeRequest = serde_json::from_str(&locked).expect("parses");
        assert_eq!(mr.pr_state(), PrState::Open);
    }

    #[test]
    fn error_messages_come_from_gitlabs_shapes() {
        let cases = [
            (
                r#"{"message":["Another open merge request already exists for this source branch: !1"]}"#,
                "Another open merge request already exists for this source branch: !1",
            ),
            (r#"{"message":"401 Unauthorized"}"#, "401 Unauthorized"),
            (
                r#"{"message":{"title":["can't be blank"],"source_branch":["is invalid"]}}"#,
                "source_branch is invalid; title can't be blank",
            ),
            (r#"{"error":"title is missing"}"#, "title is missing"),
            (
                r#"{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api"}"#,
                "insufficient_scope: The request requires higher privileges than provided by the access token.",
            ),
            ("Retry later\n", "Retry later"),
        ];
        for (body, want) in cases {
            assert_eq!(error_message(body.as_bytes()), want, "{body}");
        }
    }

    #[test]
    fn rate_limit_waits_follow_gitlabs_headers() {
        fn check(headers: &[(&'static str, &str)], want: u64) {
            let mut map = hyper::header::HeaderMap::new();
            for (k, v) in headers {
                map.insert(*k, hyper::header::HeaderValue::from_str(v).expect("header"));
            }
            let answer = Answer {
                status: hyper::StatusCode::TOO_MANY_REQUESTS,
                headers: map,
                body: b"Retry later\n".to_vec(),
            };
            assert_eq!(
                rate_limit_wait(&answer, 1_000),
                Duration::from_secs(want),
                "{headers:?}"
            );
        }
        check(&[("retry-after", "7")], 7);
        check(&[("retry-after", "2"), ("ratelimit-reset", "1030")], 2);
        check(&[("ratelimit-reset", "1030")], 30);
        check(&[("ratelimit-reset", "900")], 0);
        check(&[], 60);
    }

    #[test]
    fn draft_titles_are_recognised_as_gitlab_reads_them() {
        for (title, want) in [
            ("Draft: fix", true),
            ("draft: fix", true),
            ("[Draft] fix", true),
            ("(draft) fix", true),
            ("fix the draft model", false),
        ] {
            assert_eq!(is_draft_title(title), want, "{title}");
        }
    }

    #[test]
    fn the_gitlab_client_never_builds_a_request_that_merges_approves_or_closes() {
        // What would merge (`PUT .../merge_requests/:iid/merge`), approve
        // (`POST .../approve`), or close or edit (`PUT`) a merge request: none
        // of it may appear in this file's code. `merge_request(s)` is the
        // resource's name and is taken out first.
        let text = include_str!("gitlab.rs");
        let code = text.split("#[cfg(test)]").next().unwrap_or(text);
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("merge_requests", "")
            .replace("merge_request", "");
        for word in [
            "merge\"",
            "/merge",
            "merges",
            "approve",
            "merge_when_pipeline_succeeds",
            "Method::PUT",
            "Method::PATCH",
            "Method::DELETE",
        ] {
            assert!(
                !code.contains(word),
                "gitlab.rs mentions `{word}` outside comments and tests"
            );
        }
    }
}
