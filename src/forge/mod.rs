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
//! - [`Forge::AzureDevOps`]: the Azure DevOps Services or Server Git REST API;
//! - [`Forge::Plain`]: a git remote with no API, where "opening a pull request"
//!   means handing the user a compare link, if the web address is known.

mod azure;
mod choose;
mod exchange;
mod github;
pub mod remote;

use std::time::Duration;

pub use crate::domain::{PrOptions, PrState};
use crate::redact::Redactor;
pub use azure::AzureDevOps;
pub use github::{ForgeToken, GitHub, RetryPolicy};

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
    /// e.g. it lacks `pull_requests: write`.
    #[error("the token may not do this: {0}")]
    Forbidden(String),
    /// The repository or pull request does not exist or the token cannot see it.
    #[error("not found on the forge (check the repository name and the token's access)")]
    NotFound,
    /// The forge refused the request as invalid (HTTP 422), e.g. a pull request
    /// for this branch already exists. Carries the forge's own message.
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

/// GitHub refuses comments longer than this many characters (a 422).
const MAX_COMMENT_CHARS: usize = 65_536;

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
    /// Azure DevOps Services (`https://dev.azure.com`) or Server (a
    /// collection URL), Git REST API 7.1.
    AzureDevOps(AzureDevOps),
    /// A plain git remote with no API: nothing to call. The "pull request" is a
    /// compare URL when `web_base` (e.g. `https://github.com/owner/name`) is known.
    Plain { web_base: Option<String> },
}

impl Forge {
    /// Opens a pull request from `req.head` into `req.base` (never merges it).
    pub async fn open_pr(&self, req: &PrRequest) -> Result<Opened, ForgeError> {
        match self {
            Forge::GitHub(github) => github.create_pull(req).await.map(Opened::Pr),
            Forge::AzureDevOps(azure) => azure.create_pull(req).await.map(Opened::Pr),
            Forge::Plain { web_base } => Ok(Opened::Compare(
                web_base
                    .as_deref()
                    .map(|web| compare_url(web, &req.base, &req.head)),
            )),
        }
    }

    /// Whether the forge has an API: it can say whether a pull request is
    /// still open, or was merged. A plain remote cannot.
    pub fn has_api(&self) -> bool {
        !matches!(self, Forge::Plain { .. })
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
        match self.own_pr(pr_url)? {
            (Api::GitHub(github), number) => github.pull_state(number, etag).await,
            (Api::AzureDevOps(azure), number) => azure.pull_state(number, etag).await,
        }
    }

    /// Comments `body` on the pull request at `pr_url`, one selfheal opened.
    /// The body is redacted with `redactor` first, as pull request bodies are,
    /// and cut to what the forge accepts.
    pub async fn comment(
        &self,
        pr_url: &str,
        body: &str,
        redactor: &Redactor,
    ) -> Result<(), ForgeError> {
        let body = fit_comment(&redactor.redact(body));
        match self.own_pr(pr_url)? {
            (Api::GitHub(github), number) => github.comment(number, &body).await,
            (Api::AzureDevOps(azure), number) => azure.comment(number, &body).await,
        }
    }

    /// The API and the number of `pr_url`, when it is one of ours.
    fn own_pr(&self, pr_url: &str) -> Result<(Api<'_>, u64), ForgeError> {
        match self {
            Forge::GitHub(github) => github.pr_number(pr_url).map(|n| (Api::GitHub(github), n)),
            Forge::AzureDevOps(azure) => azure
                .pr_number(pr_url)
                .map(|n| (Api::AzureDevOps(azure), n)),
            Forge::Plain { .. } => None,
        }
        .ok_or_else(|| ForgeError::NotOurs(pr_url.to_string()))
    }

    /// The open pull requests whose head branch starts with [`SELFHEAL_BRANCH_PREFIX`].
    /// A plain remote has none that we could know of.
    pub async fn open_selfheal_prs(&self) -> Result<Vec<PullRequest>, ForgeError> {
        let open = match self {
            Forge::GitHub(github) => github.list_open_pulls().await?,
            Forge::AzureDevOps(azure) => azure.list_open_pulls().await?,
            Forge::Plain { .. } => Vec::new(),
        };
        Ok(open
            .into_iter()
            .filter(|pr| pr.head.starts_with(SELFHEAL_BRANCH_PREFIX))
            .collect())
    }
}

/// The API behind a [`Forge`] that has one.
enum Api<'a> {
    GitHub(&'a GitHub),
    AzureDevOps(&'a AzureDevOps),
}

/// `body` cut to [`MAX_COMMENT_CHARS`], saying so at the end when it was.
fn fit_comment(body: &str) -> String {
    const CUT: &str = "\n\n… (cut: too long for a comment)";
    if body.chars().count() <= MAX_COMMENT_CHARS {
        return body.to_string();
    }
    let keep = MAX_COMMENT_CHARS - CUT.chars().count();
    let mut out: String = body.chars().take(keep).collect();
    out.push_str(CUT);
    out
}

/// The web page where a human can open a pull request from `head` into `base`:
/// `https://github.com/o/r/compare/main...selfheal/x?expand=1`.
pub fn compare_url(web_base: &str, base: &str, head: &str) -> String {
    let web = web_base.trim_end_matches('/');
    let web = web.strip_suffix(".git").unwrap_or(web);
    format!(
        "{web}/compare/{}...{}?expand=1",
        escape_ref(base),
        escape_ref(head)
    )
}

/// Escapes the few characters a valid ref may contain that would break a URL path.
fn escape_ref(name: &str) -> String {
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
    let (owner, repo) = remote.path.split_once('/')?;
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (valid(owner) && valid(repo)).then(|| (owner.to_string(), repo.to_string()))
}

#[cfg(test)]
mod azure_tests;
#[cfg(test)]
mod tests;
