//! The Gitea (and Forgejo) API v1 client: create a pull request (a draft as a
//! `WIP: ` title, labels by their ids, then its reviewers), list open ones,
//! read one's state, comment on one. It never calls a merge, review or update
//! endpoint: selfheal never merges, approves or closes.
//!
//! Only pull requests of the configured repository are read or commented on: a
//! pull request URL is accepted only when it is this repository's web address
//! on this server (`https://HOST/{owner}/{repo}/pulls/{n}`, under the server's
//! sub-path if it has one), and the request is always built from the
//! configured owner and name.
//!
//! What Gitea and Forgejo differ on, and how this client copes with both
//! (shared/reference/forges.md): `CreatePullRequestOption` has no draft flag
//! (a draft is a title with a WIP prefix, `WIP:` by default) and takes labels
//! as ids, so names are looked up first; reviewers are a second call, which
//! both have. An existing open pull request for the same head and base is a
//! 409. Self-hosted servers document no rate limit, but a proxy in front may
//! answer 429: retried like GitHub's, with `Retry-After`.

use serde::Deserialize;
use tracing::warn;

use super::rest::{self, error_message, next_linked, Answer, Api, Dialect};
use super::{fit_body, ForgeError, PrRequest, PrSnapshot, PullRequest};
use super::{ForgeToken, RetryPolicy};

/// Gitea documents no body limit; GitHub's keeps a body readable and the
/// same wherever it goes.
const MAX_BODY_CHARS: usize = super::github::MAX_BODY_CHARS;

/// Items per page asked for; a server answers at most its
/// `MAX_RESPONSE_ITEMS` (50 by default) whatever is asked.
const PAGE_LIMIT: usize = 50;

/// Gitea's default `WORK_IN_PROGRESS_PREFIXES` start with this one.
const DRAFT_PREFIX: &str = "WIP: ";

/// The token scope opening a pull request needs (Gitea 1.19+).
const WRITE_SCOPE: &str = "write:repository";

const GITEA: Dialect = Dialect {
    name: "Gitea",
    headers: &[("accept", "application/json")],
    // Gitea itself documents no rate limit; a proxy in front of it may.
    rate_limit: rest::retry_after_or_a_minute,
    error_message,
    validation_statuses: &[409, 422],
    validation_message: error_message,
    forbidden_message,
    redirect_is_unauthorized: false,
};

/// A Gitea or Forgejo repository reached through its API v1.
pub struct Gitea {
    api: Api,
    /// Kept only so that `Debug` can say a token is held, never its value.
    token: ForgeToken,
    /// The server's web root (the API base without `/api/v1`): where the
    /// pull request pages selfheal accepts are.
    web_base: String,
    owner: String,
    repo: String,
}

impl std::fmt::Debug for Gitea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gitea")
            .field("api_base", &self.api.base)
            .field("repo", &format_args!("{}/{}", self.owner, self.repo))
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Gitea {
    /// A client for `repo` (`owner/name`) on the server whose API is at
    /// `api_base` (`https://HOST/api/v1`; the server's root, to which
    /// `/api/v1` is added, is accepted too). Plain `http://` is accepted only
    /// for loopback hosts (tests, local fakes): elsewhere the token would
    /// travel in clear.
    pub fn new(api_base: &str, repo: &str, token: ForgeToken) -> anyhow::Result<Gitea> {
        let trimmed = api_base.trim().trim_end_matches('/');
        let (web_base, api_base) = match trimmed.strip_suffix("/api/v1") {
            Some(web) => (web.to_string(), trimmed.to_string()),
            None => (trimmed.to_string(), format!("{trimmed}/api/v1")),
        };
        let (owner, repo) = rest::owner_and_name(repo)?;
        Ok(Gitea {
            api: Api::new(
                &api_base,
                &GITEA,
                ("authorization", &format!("token {}", token.expose())),
            )?,
            token,
            web_base,
            owner,
            repo,
        })
    }

    /// Replaces the default [`RetryPolicy`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> Gitea {
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

    /// `POST /repos/{owner}/{repo}/pulls` (a `WIP: ` title for a draft, the
    /// labels that exist by id, the body cut to fit), then its reviewers.
    /// Never followed by a merge: selfheal never merges.
    pub(super) async fn create_pull(&self, req: &PrRequest) -> Result<PullRequest, ForgeError> {
        let title = match req.options.draft && !is_draft_title(&req.title) {
            true => format!("{DRAFT_PREFIX}{}", req.title),
            false => req.title.clone(),
        };
        let body = serde_json::json!({
            "title": title,
            "head": req.head,
            "base": req.base,
            "body": fit_body(&req.body, MAX_BODY_CHARS),
            "labels": self.label_ids(&req.options.labels).await,
        });
        let head = (req.head.as_str(), req.base.as_str());
        let pr = self
            .api
            .create_pull(&self.pulls_url(), &body, self.find_open(head.0, head.1))
            .await?;
        self.request_reviewers(pr.number, &req.options.reviewers)
            .await;
        Ok(pr)
    }

    /// The ids of the repository's labels named `names`. Gitea takes only
    /// ids; a name it does not know is skipped with a warning, and a failed
    /// lookup leaves the pull request unlabelled rather than unopened.
    async fn label_ids(&self, names: &[String]) -> Vec<u64> {
        if names.is_empty() {
            return Vec::new();
        }
        let first = format!("{}/labels?page=1&limit={PAGE_LIMIT}", self.repo_url());
        let known: Vec<ApiLabel> = match self.api.pages(&first, next_page).await {
            Ok(labels) => labels,
            Err(e) => {
                warn!(error = %e, labels = ?names, "could not read the repository's labels; opening the pull request without them");
                return Vec::new();
            }
        };
        names
            .iter()
            .filter_map(|name| {
                let found = known.iter().find(|l| l.name == *name).or_else(|| {
                    known
                        .iter()
                        .find(|l| l.name.eq_ignore_ascii_case(name))
                });
                if found.is_none() {
                    warn!(label = %name, repo = %self.repo(), "no such label in the repository; skipped");
                }
                found.map(|l| l.id)
            })
            .collect()
    }

    /// `POST …/pulls/{n}/requested_reviewers`. The pull request is open
    /// whatever happens here: a refusal is logged, not returned.
    async fn request_reviewers(&self, number: u64, reviewers: &[String]) {
        if reviewers.is_empty() {
            return;
        }
        let url = format!("{}/{number}/requested_reviewers", self.pulls_url());
        let body = serde_json::json!({ "reviewers": reviewers });
        if let Err(e) = self.api.post(&url, &body).await {
            warn!(number, error = %e, ?reviewers, "could not request reviewers on the pull request");
        }
    }

    /// `GET /repos/{owner}/{repo}`: whether the token may push to the
    /// repository (`permissions.push`), which opening a pull request from a
    /// pushed branch needs.
    pub async fn can_push(&self) -> Result<bool, ForgeError> {
        self.api.can_push(&self.repo_url()).await
    }

    /// The number of `pr_url` when it is a pull request of this repository
    /// (`{web base}/{owner}/{repo}/pulls/{n}`, owner and name in any case);
    /// None for anything else, which selfheal never asks about.
    pub(super) fn pr_number(&self, pr_url: &str) -> Option<u64> {
        rest::pr_number_in(pr_url, &self.web_base, &self.owner, &self.repo, "pulls")
    }

    /// `GET /repos/{owner}/{repo}/pulls/{number}`. With an `etag` it asks
    /// conditionally, and a 304 is `None`; Gitea sends no ETag for this
    /// answer, so then every answer is a full one, which is only dearer.
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

    /// Every open pull request, page after page.
    pub(super) async fn list_open_pulls(&self) -> Result<Vec<PullRequest>, ForgeError> {
        let first = format!("{}?state=open&page=1&limit={PAGE_LIMIT}", self.pulls_url());
        self.api.pulls(&first, next_page).await
    }

    /// The open pull request from `head` into `base`, if there is one. Gitea
    /// lists with no head filter, so this reads the open ones.
    async fn find_open(&self, head: &str, base: &str) -> Result<Option<PullRequest>, ForgeError> {
        Ok(self
            .list_open_pulls()
            .await?
            .into_iter()
            .find(|pr| pr.head == head && pr.base == base))
    }
}

/// The page after `answer` (read from `url`, `seen` items so far): Gitea's
/// `Link: rel="next"`, or, when a server or proxy drops that header, the next
/// `page` while `X-Total-Count` says there are more.
fn next_page(answer: &Answer, url: &str, seen: usize) -> Option<String> {
    if let Some(next) = next_linked(answer) {
        return Some(next);
    }
    let total: usize = answer.header("x-total-count")?.trim().parse().ok()?;
    if seen >= total {
        return None;
    }
    let mut next = url::Url::parse(url).ok()?;
    let page = next
        .query_pairs()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(1);
    let others: Vec<(String, String)> = next
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    next.query_pairs_mut()
        .clear()
        .extend_pairs(others)
        .append_pair("page", &(page + 1).to_string());
    Some(next.into())
}

/// Whether a title already says "work in progress" the way Gitea's default
/// `WORK_IN_PROGRESS_PREFIXES` (`WIP:`, `[WIP]`) do.
fn is_draft_title(title: &str) -> bool {
    let upper = title.trim_start().to_ascii_uppercase();
    upper.starts_with("WIP:") || upper.starts_with("[WIP]")
}

/// Gitea's 403, naming the scope a token needs when Gitea does not already.
fn forbidden_message(body: &[u8]) -> String {
    let message = error_message(body);
    if message.contains("scope") {
        message
    } else {
        format!("{message} (a Gitea token needs the `{WRITE_SCOPE}` scope)")
    }
}

#[derive(Deserialize)]
struct ApiLabel {
    id: u64,
    name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PrState;
    use crate::forge::rest::ApiPull;

    /// Answers of real Gitea servers, as go-scm recorded them
    /// (tests/fixtures/gitea/README.md).
    #[test]
    fn recorded_gitea_answers_read_as_open_or_merged_by_whom() {
        let open: ApiPull = serde_json::from_str(include_str!(
            "../../tests/fixtures/gitea/pull_open.go-scm.json"
        ))
        .expect("Gitea's answer parses");
        let merged: ApiPull = serde_json::from_str(include_str!(
            "../../tests/fixtures/gitea/pull_merged.from-webhook.go-scm.json"
        ))
        .expect("Gitea's answer parses");
        let listed: Vec<ApiPull> = serde_json::from_str(include_str!(
            "../../tests/fixtures/gitea/pulls_list.go-scm.json"
        ))
        .expect("Gitea's list parses");

        assert_eq!(open.pr_state(), PrState::Open);
        assert_eq!(
            merged.pr_state(),
            PrState::Merged {
                by: Some("jcitizen".into())
            }
        );
        let pr = PullRequest::from(open);
        assert_eq!(
            (
                pr.number,
                pr.url.as_str(),
                pr.head.as_str(),
                pr.base.as_str()
            ),
            (
                1,
                "https://try.gitea.io/jcitizen/my-repo/pulls/1",
                "feature",
                "master"
            )
        );
        assert_eq!(listed.len(), 1);
    }

    #[test]
    fn only_this_repositorys_pull_request_pages_are_ours() {
        fn check(api_base: &str, url: &str, want: Option<u64>) {
            let gitea = Gitea::new(api_base, "acme/dbt", ForgeToken::new("t")).expect("client");
            assert_eq!(gitea.pr_number(url), want, "{api_base} {url}");
        }
        let api = "https://git.example.com/api/v1";
        check(api, "https://git.example.com/acme/dbt/pulls/7", Some(7));
        check(api, "https://git.example.com/Acme/DBT/pulls/7/", Some(7));
        check(
            "https://git.example.com",
            "https://git.example.com/acme/dbt/pulls/7",
            Some(7),
        );
        check(api, "https://git.example.com/acme/dbt/pull/7", None);
        check(api, "https://git.example.com/acme/dbt/issues/7", None);
        check(api, "https://git.example.com/acme/other/pulls/7", None);
        check(api, "https://github.com/acme/dbt/pulls/7", None);
        check(api, "http://git.example.com/acme/dbt/pulls/7", None);
        check(api, "https://git.example.com/api/v1/acme/dbt/pulls/7", None);
        check(api, "https://git.example.com/acme/dbt/pulls/7/files", None);
        check(api, "https://git.example.com/acme/dbt/pulls/7?x=1", None);
        check(api, "https://git.example.com/acme/dbt/pulls/0", None);
        let sub = "https://example.com/git/api/v1";
        check(sub, "https://example.com/git/acme/dbt/pulls/3", Some(3));
        check(sub, "https://example.com/acme/dbt/pulls/3", None);
    }

    #[test]
    fn drafts_are_titles_with_a_wip_prefix() {
        for (title, draft) in [
            ("WIP: fix", true),
            ("wip: fix", true),
            ("[WIP] fix", true),
            ("fix: WIP", false),
            ("fix", false),
        ] {
            assert_eq!(is_draft_title(title), draft, "{title}");
        }
    }

    #[test]
    fn forbidden_answers_name_the_scope_the_token_needs() {
        let cases = [
            (
                r#"{"message":"token does not have at least one of required scope(s): [write:repository]","url":"x"}"#,
                "token does not have at least one of required scope(s): [write:repository]",
            ),
            (
                r#"{"message":"user should have a permission to write to the target branch"}"#,
                "user should have a permission to write to the target branch (a Gitea token needs the `write:repository` scope)",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(forbidden_message(body.as_bytes()), want);
        }
    }

    #[test]
    fn plain_http_is_refused_except_on_loopback_and_the_token_never_shows() {
        let token = || ForgeToken::new("gitea_supersecret");
        assert!(Gitea::new("http://127.0.0.1:9/api/v1", "o/r", token()).is_ok());
        assert!(Gitea::new("http://git.example.com/api/v1", "o/r", token()).is_err());
        assert!(Gitea::new("https://git.example.com/api/v1", "not-a-repo", token()).is_err());
        let shown = format!(
            "{:?}",
            Gitea::new("https://git.example.com", "o/r", token()).expect("client")
        );
        assert!(
            !shown.contains("supersecret") && shown.contains("***"),
            "{shown}"
        );
        assert!(shown.contains("https://git.example.com/api/v1"), "{shown}");
    }
}
