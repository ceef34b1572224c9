//! Pull requests: opening the one a healing session proposes, listing the ones
//! selfheal has open, asking where one stands (merged, by whom, or closed) and
//! commenting on one.
//!
//! What it owns: the forge token (only this module ever holds it, wrapped in a
//! [`ForgeToken`] whose `Debug` prints `***`), the forge HTTP client, retries with
//! bounded backoff, and the mapping from forge responses to [`ForgeError`] variants
//! that callers act on.
//!
//! What it must not do: merge. selfheal never merges, approves or closes a pull
//! request, and no code here calls a merge endpoint; a human reviews and merges.
//! It asks about and comments on only its own repository's pull requests
//! ([`Forge::owns_pr`]). It does no git either: pushing the branch is
//! [`crate::workspace`]'s job.
//!
//! The kinds of forge:
//! - [`Forge::GitHub`]: the GitHub or GitHub Enterprise REST API;
//! - [`Forge::GitLab`]: the GitLab (gitlab.com or self-managed) REST v4 API,
//!   whose merge requests are selfheal's pull requests;
//! - [`Forge::Gitea`]: a Gitea or Forgejo server's API v1;
//! - [`Forge::Bitbucket`]: the Bitbucket Cloud REST 2.0 API;
//! - [`Forge::AzureDevOps`]: the Azure DevOps Services or Server Git REST API;
//! - [`Forge::Plain`]: a git remote with no API, where "opening a pull request"
//!   means handing the user a compare link, if the web address is known.

mod azure;
mod bitbucket;
mod choose;
mod gitea;
mod github;
mod gitlab;
pub mod remote;
mod rest;

use std::time::Duration;

pub use crate::domain::{ForgeKind, PrOptions, PrState};
use crate::redact::Redactor;
pub use azure::AzureDevOps;
pub use bitbucket::Bitbucket;
pub use gitea::Gitea;
pub use github::GitHub;
pub use gitlab::GitLab;
pub use rest::{ForgeToken, RetryPolicy};

/// Branches selfheal creates start with this; it lists only pull requests from them.
pub const SELFHEAL_BRANCH_PREFIX: &str = "selfheal/";

/// What went wrong talking to the forge, as callers act on it.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// The forge asked us to slow down and the wait was longer than we retry for.
    #[error("rate limited by the forge; retry in {}s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// The token is missing, wrong or expired (HTTP 401).
    #[error("the forge rejected the token")]
    Unauthorized,
    /// The token is valid but may not do this (HTTP 403 that is not a rate limit),
    /// e.g. it lacks `pull_requests: write` (GitHub) or `write:repository` (Gitea).
    #[error("the token may not do this: {0}")]
    Forbidden(String),
    /// The repository or pull request does not exist or the token cannot see it.
    #[error("not found on the forge (check the repository name and the token's access)")]
    NotFound,
    /// The forge refused the request as invalid (HTTP 422, or Gitea's 409), e.g.
    /// a pull request for this branch already exists. Carries the forge's own message.
    #[error("the forge refused the request: {0}")]
    Validation(String),
    /// Any other failure: transport errors, unexpected statuses, unreadable bodies.
    #[error("forge request failed: {0}")]
    Http(String),
    /// The forge did not answer in time, after retries.
    #[error("the forge did not answer in time")]
    Timeout,
    /// Not a pull request of selfheal's own repository on this forge (a plain
    /// remote has none): selfheal does not ask about it or comment on it.
    #[error("not a pull request of selfheal's repository: {0}")]
    NotOurs(String),
}

/// GitHub refuses comments longer than this many characters (a 422); Gitea
/// documents no limit, and gets the same cut.
const MAX_COMMENT_CHARS: usize = github::MAX_BODY_CHARS;

/// The line of a pull request body that later sessions find it by
/// (`slack::render::pr_body` writes it): never cut from a body.
const SIGNATURE_MARKER: &str = "<!-- selfheal-signature:";

/// GitLab refuses notes longer than this many characters.
const MAX_GITLAB_NOTE_CHARS: usize = 1_000_000;

/// A pull request selfheal wants opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrRequest {
    /// The pushed session branch, e.g. `selfheal/hourly_marts/run-48213`.
    pub head: String,
    /// The branch the session started from.
    pub base: String,
    pub title: String,
    /// Markdown: what failed, what the agent changed, the diff stat.
    pub body: String,
    pub options: PrOptions,
}

/// A pull request as the forge reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    /// The web page (GitHub's `html_url`), what Slack links to.
    pub url: String,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    /// `open` or `closed`.
    pub state: String,
}

/// Where a pull request stood when the forge last answered in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrSnapshot {
    pub state: PrState,
    /// The answer's `ETag`: asking with it next time gets "unchanged" (a 304,
    /// free of rate limit) until something about the pull request changes.
    pub etag: Option<String>,
}

/// What [`Forge::open_pr`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// A real pull request was opened.
    Pr(PullRequest),
    /// The forge has no API: a link where a human can open the pull request, if
    /// the remote's web address is known.
    Compare(Option<String>),
}

impl Opened {
    /// The link to show in Slack, if there is one.
    pub fn link(&self) -> Option<&str> {
        match self {
            Opened::Pr(pr) => Some(&pr.url),
            Opened::Compare(url) => url.as_deref(),
        }
    }
}

/// Where pull requests go.
// One long-lived value per bot, so the size difference between variants costs
// nothing, and boxing would only add noise at every construction.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Forge {
    /// GitHub or GitHub Enterprise REST API (`https://api.github.com` or
    /// `https://ghe.example.com/api/v3`).
    GitHub(GitHub),
    /// A Gitea or Forgejo server's API v1 (`https://gitea.example.com/api/v1`).
    Gitea(Gitea),
    /// GitLab's REST v4 API (`https://gitlab.com/api/v4` or
    /// `https://HOST/api/v4`): merge requests are its pull requests.
    GitLab(GitLab),
    /// Bitbucket Cloud's REST 2.0 API (`https://api.bitbucket.org/2.0`).
    Bitbucket(Bitbucket),
    /// Azure DevOps Services (`https://dev.azure.com`) or Server (a
    /// collection URL), Git REST API 7.1.
    AzureDevOps(AzureDevOps),
    /// A plain git remote with no API: nothing to call. The "pull request" is a
    /// compare URL when `web_base` (e.g. `https://github.com/owner/name`) is known.
    Plain {
        web_base: Option<String>,
        /// Whose compare page the link is (GitHub's when unknown).
        kind: ForgeKind,
    },
}

impl Forge {
    /// Opens a pull request from `req.head` into `req.base` (never merges it).
    pub async fn open_pr(&self, req: &PrRequest) -> Result<Opened, ForgeError> {
        match self {
            Forge::GitHub(github) => github.create_pull(req).await.map(Opened::Pr),
            Forge::Gitea(gitea) => gitea.create_pull(req).await.map(Opened::Pr),
            Forge::GitLab(gitlab) => gitlab.create_pull(req).await.map(Opened::Pr),
            Forge::Bitbucket(bitbucket) => bitbucket.create_pull(req).await.map(Opened::Pr),
            Forge::AzureDevOps(azure) => azure.create_pull(req).await.map(Opened::Pr),
            Forge::Plain { web_base, kind } => {
                Ok(Opened::Compare(web_base.as_deref().map(|web| {
                    remote::new_pr_url(*kind, web, &req.base, &req.head)
                })))
            }
        }
    }

    /// Whether `pr_url` is a pull request of selfheal's own repository on this
    /// forge: the only ones it asks about or comments on. A plain remote has none.
    pub fn owns_pr(&self, pr_url: &str) -> bool {
        self.own_pr(pr_url).is_ok()
    }

    /// Where the pull request at `pr_url` stands, asked conditionally: with the
    /// `etag` of the last full answer, `Ok(None)` means unchanged since then.
    pub async fn pr_state(
        &self,
        pr_url: &str,
        etag: Option<&str>,
    ) -> Result<Option<PrSnapshot>, ForgeError> {
        let number = self.own_pr(pr_url)?;
        match self {
            Forge::GitHub(github) => github.pull_state(number, etag).await,
            Forge::GitLab(gitlab) => gitlab.pull_state(number, etag).await,
            Forge::Gitea(gitea) => gitea.pull_state(number, etag).await,
            Forge::Bitbucket(bitbucket) => bitbucket.pull_state(number, etag).await,
            Forge::AzureDevOps(azure) => azure.pull_state(number, etag).await,
            Forge::Plain { .. } => Err(ForgeError::NotOurs(pr_url.to_string())),
        }
    }

    /// Comments `body` on the pull request at `pr_url`, one selfheal opened.
    /// The body is redacted with `redactor` first, as pull request bodies are,
    /// and cut to what the forge accepts (Bitbucket documents no limit: whole).
    pub async fn comment(
        &self,
        pr_url: &str,
        body: &str,
        redactor: &Redactor,
    ) -> Result<(), ForgeError> {
        let number = self.own_pr(pr_url)?;
        let body = redactor.redact(body);
        match self {
            Forge::GitHub(github) => {
                github
                    .comment(number, &fit_comment(&body, MAX_COMMENT_CHARS))
                    .await
            }
            Forge::GitLab(gitlab) => {
                gitlab
                    .comment(number, &fit_comment(&body, MAX_GITLAB_NOTE_CHARS))
                    .await
            }
            Forge::Gitea(gitea) => {
                gitea
                    .comment(number, &fit_comment(&body, MAX_COMMENT_CHARS))
                    .await
            }
            Forge::Bitbucket(bitbucket) => bitbucket.comment(number, &body).await,
            Forge::AzureDevOps(azure) => {
                azure
                    .comment(number, &fit_comment(&body, MAX_COMMENT_CHARS))
                    .await
            }
            Forge::Plain { .. } => Err(ForgeError::NotOurs(pr_url.to_string())),
        }
    }

    /// The number of `pr_url`, when it is one of ours.
    fn own_pr(&self, pr_url: &str) -> Result<u64, ForgeError> {
        match self {
            Forge::GitHub(github) => github.pr_number(pr_url),
            Forge::GitLab(gitlab) => gitlab.pr_number(pr_url),
            Forge::Gitea(gitea) => gitea.pr_number(pr_url),
            Forge::Bitbucket(bitbucket) => bitbucket.pr_number(pr_url),
            Forge::AzureDevOps(azure) => azure.pr_number(pr_url),
            Forge::Plain { .. } => None,
        }
        .ok_or_else(|| ForgeError::NotOurs(pr_url.to_string()))
    }

    /// The open pull requests whose head branch starts with [`SELFHEAL_BRANCH_PREFIX`].
    /// A plain remote has none that we could know of.
    pub async fn open_selfheal_prs(&self) -> Result<Vec<PullRequest>, ForgeError> {
        let open = match self {
            Forge::GitHub(github) => github.list_open_pulls().await?,
            Forge::Gitea(gitea) => gitea.list_open_pulls().await?,
            Forge::GitLab(gitlab) => gitlab.list_open_pulls().await?,
            Forge::Bitbucket(bitbucket) => bitbucket.list_open_pulls().await?,
            Forge::AzureDevOps(azure) => azure.list_open_pulls().await?,
            Forge::Plain { .. } => Vec::new(),
        };
        Ok(open
            .into_iter()
            .filter(|pr| pr.head.starts_with(SELFHEAL_BRANCH_PREFIX))
            .collect())
    }

    /// Whether this forge has an API that can say where a pull request stands
    /// (a plain remote has none): what watching pull requests needs.
    pub fn has_api(&self) -> bool {
        !matches!(self, Forge::Plain { .. })
    }

    /// The forge asked with `retry` instead of the default policy (`selfheal
    /// check` asks once).
    pub fn with_retry(self, retry: RetryPolicy) -> Forge {
        match self {
            Forge::GitHub(github) => Forge::GitHub(github.with_retry(retry)),
            Forge::GitLab(gitlab) => Forge::GitLab(gitlab.with_retry(retry)),
            Forge::Gitea(gitea) => Forge::Gitea(gitea.with_retry(retry)),
            Forge::Bitbucket(bitbucket) => Forge::Bitbucket(bitbucket.with_retry(retry)),
            Forge::AzureDevOps(azure) => Forge::AzureDevOps(azure.with_retry(retry)),
            plain @ Forge::Plain { .. } => plain,
        }
    }

    /// The repository as the forge names it (`owner/name`); None for a plain remote.
    pub fn repo(&self) -> Option<String> {
        match self {
            Forge::GitHub(github) => Some(github.repo()),
            Forge::GitLab(gitlab) => Some(gitlab.project().to_string()),
            Forge::Gitea(gitea) => Some(gitea.repo()),
            Forge::Bitbucket(bitbucket) => Some(bitbucket.repo()),
            Forge::AzureDevOps(azure) => Some(azure.repo()),
            Forge::Plain { .. } => None,
        }
    }

    /// Whether the token may push to the repository, which opening a change
    /// request from a pushed branch needs (`selfheal check`); None for a
    /// plain remote, which has no API to ask.
    pub async fn can_push(&self) -> Option<Result<bool, ForgeError>> {
        Some(match self {
            Forge::GitHub(github) => github.can_push().await,
            Forge::GitLab(gitlab) => gitlab.can_push().await,
            Forge::Gitea(gitea) => gitea.can_push().await,
            Forge::Bitbucket(bitbucket) => bitbucket.can_push().await,
            Forge::AzureDevOps(azure) => azure.can_push().await,
            Forge::Plain { .. } => return None,
        })
    }
}

/// `body` cut to at most `limit` characters, for a forge that refuses longer
/// bodies. The diff goes first (the fenced `diff` block: the forge shows the
/// change anyway), then, if that is not enough, the end of the text before
/// the signature. The `<!-- selfheal-signature: … -->` line and what follows
/// it are always kept: later sessions find the pull request by it.
pub fn fit_body(body: &str, limit: usize) -> String {
    fit_body_noting(
        body,
        limit,
        "\n… (diff cut: too long for the pull request; see its files)",
    )
}

/// [`fit_body`], `diff_cut` saying where the diff was cut (a forge may say
/// where else the change can be seen).
fn fit_body_noting(body: &str, limit: usize, diff_cut: &str) -> String {
    const TEXT_CUT: &str = "\n\n… (cut: too long for a pull request)\n\n";
    if chars(body) <= limit {
        return body.to_string();
    }
    let split = body.find(SIGNATURE_MARKER).map_or(body.len(), |at| {
        body[..at].rfind('\n').map_or(0, |nl| nl + 1)
    });
    let (text, signature) = body.split_at(split);
    let Some(budget) = limit.checked_sub(chars(signature)) else {
        return take_chars(signature, limit).to_string();
    };
    let mut text = text.to_string();
    // The diff: from after its opening fence to its closing one.
    if let Some(start) = text.find("```diff\n").map(|at| at + "```diff\n".len()) {
        let end = text[start..]
            .find("\n```")
            .map_or(text.len(), |at| start + at);
        let diff = &text[start..end];
        let over = chars(&text).saturating_sub(budget);
        let keep = chars(diff).saturating_sub(over + chars(diff_cut));
        let cut = format!("{}{diff_cut}", take_chars(diff, keep));
        text.replace_range(start..end, &cut);
    }
    if chars(&text) > budget {
        let keep = budget.saturating_sub(chars(TEXT_CUT));
        text = format!("{}{TEXT_CUT}", take_chars(&text, keep));
        text = take_chars(&text, budget).to_string();
    }
    text + signature
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// The first `n` characters of `s`.
fn take_chars(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(at, _)| &s[..at])
}

/// `body` cut to `max` characters, saying so where it was cut.
fn fit_comment(body: &str, max: usize) -> String {
    fit(body, max, "\n\n… (cut: too long for a comment)")
}

/// `body` cut to at most `max` characters, `note` saying so where the cut
/// is. When the body ends with the signature marker, the cut is made before
/// it and the marker (and all after it) is kept whole.
fn fit(body: &str, max: usize, note: &str) -> String {
    if body.chars().count() <= max {
        return body.to_string();
    }
    let tail = body.rfind(SIGNATURE_MARKER).map_or("", |at| &body[at..]);
    let keep = max.saturating_sub(note.chars().count() + tail.chars().count());
    let mut out: String = body.chars().take(keep).collect();
    out.push_str(note);
    out.push_str(tail);
    out
}

/// The web page where a human can open a pull request from `head` into `base`:
/// `https://github.com/o/r/compare/main...selfheal/x?expand=1`.
pub fn compare_url(web_base: &str, base: &str, head: &str) -> String {
    remote::new_pr_url(ForgeKind::GitHub, web_base, base, head)
}

/// Escapes the few characters a valid ref may contain that would break a URL path.
pub(super) fn escape_ref(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '#' => out.push_str("%23"),
            '&' => out.push_str("%26"),
            '+' => out.push_str("%2B"),
            _ => out.push(c),
        }
    }
    out
}

/// `(owner, repo)` of a github.com remote: `git@github.com:o/r.git`,
/// `ssh://git@github.com/o/r.git`, `https://github.com/o/r` or `.../r.git`
/// (credentials in the URL are ignored). `None` for anything else.
pub fn parse_github_remote(url: &str) -> Option<(String, String)> {
    let remote = remote::parse_remote(url, None)
        .filter(|r| r.kind == remote::ForgeKind::GitHub && r.host.ends_with("github.com"))?;
    let (owner, repo) = rest::split_repo(&remote.path)?;
    Some((owner.to_string(), repo.to_string()))
}

#[cfg(test)]
mod azure_tests;
#[cfg(test)]
mod gitea_tests;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod gitlab_tests;

#[cfg(test)]
mod fit_tests {
    use super::*;

    #[test]
    fn a_cut_body_keeps_its_signature_marker_whole() {
        let signed = |len: usize| {
            format!(
                "{}\n\n<!-- selfheal-signature: d1296dccbe5463ad -->\n",
                "x".repeat(len)
            )
        };
        let note = "\n… (cut)\n";
        // (body, limit)
        let cases = [
            (signed(10), 1_000),
            (signed(5_000), 1_000),
            (signed(999), 1_000),
        ];
        for (body, max) in cases {
            let out = fit(&body, max, note);
            assert!(out.chars().count() <= max, "{} > {max}", out.len());
            assert!(
                out.ends_with("<!-- selfheal-signature: d1296dccbe5463ad -->\n"),
                "{out}"
            );
            assert_eq!(out == body, body.chars().count() <= max);
            if out != body {
                assert!(out.contains(note));
            }
        }
        // Unsigned bodies are cut at the end; multi-byte characters count once.
        assert_eq!(
            fit(&"é".repeat(20), 12, "…"),
            format!("{}…", "é".repeat(11))
        );
    }
}
