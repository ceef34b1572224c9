//! The Azure DevOps Git REST API (7.1) client, for Azure DevOps Services
//! (`https://dev.azure.com`) and Azure DevOps Server (a collection URL such
//! as `https://tfs.acme.io/tfs/DefaultCollection`): create a pull request,
//! list active ones, read one's state, comment on one with a thread. It never
//! completes (merges), abandons, approves or votes: no `PATCH` and no
//! reviewer call exists here.
//!
//! Only pull requests of the configured repository are read or commented on:
//! a pull request URL is accepted only when it is this repository's web page
//! (`https://dev.azure.com/{org}/{project}/_git/{repo}/pullrequest/{id}`).
//!
//! The personal access token travels as HTTP Basic credentials with an empty
//! user name, on every request with `api-version=7.1`, to the organization
//! (or collection) and, to find reviewers by name, to its identity service
//! (`vssps.dev.azure.com/{org}` on Azure DevOps Services), nowhere else. Retries are shared
//! with every forge client ([`super::rest`]): 5xx answers, transport
//! errors and timeouts are retried with doubling backoff; a 429 (`TF400733`)
//! is retried after its `Retry-After`.

use anyhow::Context;
use base64::Engine;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use tracing::{info, warn};

use super::rest::{
    self, created_or_existing, error_message, origin, Answer, Api, Dialect, MAX_PAGES,
};
use super::{
    fit_body_noting, ForgeError, ForgeToken, PrRequest, PrSnapshot, PullRequest, RetryPolicy,
    SELFHEAL_BRANCH_PREFIX,
};
use crate::domain::PrState;

/// The REST API version selfheal was written against, sent on every request.
const API_VERSION: &str = "7.1";

/// Azure DevOps refuses a pull request description longer than this (a 400,
/// "must not be longer than 4000 characters").
pub const MAX_DESCRIPTION_CHARS: usize = 4_000;

/// The pull request list cuts descriptions to this many characters; only
/// the pull request read by id has the whole of it.
const LISTED_DESCRIPTION_CHARS: usize = 400;

/// Pull requests per page of the list, and how many pages are read at most.
const PAGE_SIZE: usize = 100;

const BRANCH_REFS: &str = "refs/heads/";

/// An Azure DevOps repository reached through the Git REST API.
pub struct AzureDevOps {
    /// The organization's (or the Server collection's) URL, no trailing
    /// slash: `https://dev.azure.com/{org}` or
    /// `https://tfs.acme.io/tfs/DefaultCollection`. Both the API
    /// (`…/{project}/_apis/git/…`) and the web pages
    /// (`…/{project}/_git/{repo}/pullrequest/{id}`) are under it.
    org_url: url::Url,
    project: String,
    repo: String,
    /// Kept only so that `Debug` can say a token is held, never its value.
    token: ForgeToken,
    /// The token travels inside, as HTTP Basic credentials.
    api: Api,
}

impl std::fmt::Debug for AzureDevOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureDevOps")
            .field("org_url", &self.org_url.as_str())
            .field("repo", &format_args!("{}/{}", self.project, self.repo))
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl AzureDevOps {
    /// A client for `repo` (`org/project/repo`, as [`super::remote`] reads
    /// it; on Azure DevOps Server the first segment is the collection) at
    /// `api_base`: `https://dev.azure.com`, or a Server collection URL
    /// (`https://HOST/tfs/DefaultCollection`), whose last segment then is the
    /// collection and is not repeated (nor is the organization of a legacy
    /// `https://{org}.visualstudio.com`). Plain `http://` only on loopback.
    pub fn new(api_base: &str, repo: &str, token: ForgeToken) -> anyhow::Result<AzureDevOps> {
        let api_base = api_base.trim_end_matches('/');
        let parsed = url::Url::parse(api_base)
            .with_context(|| format!("parsing forge API URL {api_base}"))?;
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!(":{}", token.expose()));
        let api = Api::new(
            api_base,
            &DIALECT,
            ("authorization", &format!("Basic {basic}")),
        )?;
        let parts: Vec<&str> = repo.split('/').collect();
        let [org, project, name] = parts.as_slice() else {
            anyhow::bail!("Azure DevOps repository `{repo}` is not `organization/project/repo`");
        };
        if [org, project, name].iter().any(|s| !valid_name(s)) {
            anyhow::bail!("Azure DevOps repository `{repo}` is not `organization/project/repo`");
        }
        // A Server collection URL ends with the collection; a legacy
        // `https://{org}.visualstudio.com` names the organization in its host.
        let collection_in_base = parsed
            .path_segments()
            .and_then(|mut s| s.rfind(|s| !s.is_empty()))
            .is_some_and(|last| decode(last).eq_ignore_ascii_case(org))
            || parsed
                .host_str()
                .and_then(|h| h.strip_suffix(".visualstudio.com"))
                .is_some_and(|sub| sub.eq_ignore_ascii_case(org));
        let mut org_url = parsed.clone();
        if !collection_in_base {
            org_url
                .path_segments_mut()
                .map_err(|()| anyhow::anyhow!("forge API URL {api_base} cannot have a path"))?
                .pop_if_empty()
                .push(org);
        }
        Ok(AzureDevOps {
            org_url,
            project: project.to_string(),
            repo: name.to_string(),
            token,
            api,
        })
    }

    /// Replaces the default [`RetryPolicy`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> AzureDevOps {
        self.api.retry = retry;
        self
    }

    /// `org/project/repo`.
    pub fn repo(&self) -> String {
        let org = self
            .org_url
            .path_segments()
            .and_then(|mut s| s.rfind(|s| !s.is_empty()))
            .map(decode)
            .unwrap_or_default();
        format!("{org}/{}/{}", self.project, self.repo)
    }

    /// `POST …/pullrequests`. Draft, labels and reviewers come from the
    /// options; reviewers are identity ids, given as such or found by name
    /// or e-mail (see [`AzureDevOps::reviewer_id`]).
    pub(super) async fn create_pull(&self, req: &PrRequest) -> Result<PullRequest, ForgeError> {
        let opts = &req.options;
        let mut reviewers = Vec::new();
        for reviewer in &opts.reviewers {
            if let Some(id) = self.reviewer_id(reviewer).await {
                reviewers.push(serde_json::json!({ "id": id }));
            }
        }
        let labels: Vec<serde_json::Value> = opts
            .labels
            .iter()
            .map(|name| serde_json::json!({ "name": name }))
            .collect();
        let body = serde_json::json!({
            "sourceRefName": format!("{BRANCH_REFS}{}", req.head),
            "targetRefName": format!("{BRANCH_REFS}{}", req.base),
            "title": req.title,
            "description": fit_body_noting(&req.body, MAX_DESCRIPTION_CHARS, DIFF_CUT),
            "isDraft": opts.draft,
            "labels": labels,
            "reviewers": reviewers,
        });
        let body = rest::encode(&body)?;
        let mut ambiguous = false;
        let url = self.url(&["pullrequests"], &[]);
        let result = self
            .send(Method::POST, &url, Some(body), None, &mut ambiguous)
            .await;
        let created = result.and_then(|resp| Ok(self.pull_request(parse_json(&resp.body)?)));
        // An earlier attempt may have created the pull request before its
        // answer was lost; then the retry meets TF401179 ("an active pull
        // request … already exists"), and ours is the one that exists.
        let pr = created_or_existing(
            created,
            ambiguous,
            "TF401179",
            self.find_active(&req.head, &req.base),
        )
        .await?;
        info!(number = pr.number, url = %pr.url, head = %pr.head, "opened pull request");
        Ok(pr)
    }

    /// The identity id of `reviewer`: itself when it is one (a GUID), else
    /// the one identity the identities API finds for it (`searchFilter=General`
    /// matches an account name, a display name or an e-mail). None, with a
    /// warning, when there is no single match or the search fails (the
    /// token may lack `vso.identity`): a missing reviewer never stops a pull
    /// request.
    async fn reviewer_id(&self, reviewer: &str) -> Option<String> {
        if is_guid(reviewer) {
            return Some(reviewer.to_string());
        }
        let url = self.identities_url(reviewer);
        let found = match self.send(Method::GET, &url, None, None, &mut false).await {
            Ok(resp) => parse_json::<ApiIdentities>(&resp.body).map(|list| list.value),
            Err(e) => Err(e),
        };
        match found.as_deref() {
            Ok([one]) => return Some(one.id.clone()),
            Ok(found) => {
                warn!(%reviewer, matches = found.len(), "no single Azure DevOps identity for this reviewer; skipping it")
            }
            Err(e) => {
                warn!(%reviewer, error = %e, "could not look up this Azure DevOps reviewer; skipping it")
            }
        }
        None
    }

    /// Where identities are searched: the organization's identity service
    /// (`https://vssps.dev.azure.com/{org}`) on Azure DevOps Services, the
    /// collection itself on a Server (and on a local fake).
    fn identities_url(&self, filter: &str) -> String {
        let mut url = self.org_url.clone();
        if url.host_str() == Some("dev.azure.com") {
            // Cannot fail: a domain name replaced by a domain name.
            let _ = url.set_host(Some("vssps.dev.azure.com"));
        }
        url.path_segments_mut()
            .expect("the org URL was checked to have a path in new()")
            .pop_if_empty()
            .extend(["_apis", "identities"]);
        url.query_pairs_mut()
            .append_pair("searchFilter", "General")
            .append_pair("filterValue", filter)
            .append_pair("queryMembership", "None")
            .append_pair("api-version", API_VERSION);
        url.into()
    }

    /// `GET …/_apis/git/repositories/{repo}`: true when the token reads the
    /// repository. That proves the token is valid and may see the code
    /// (`vso.code`); Azure DevOps does not say whether it may also push or
    /// open pull requests (`vso.code_write`): a token without it is refused
    /// later, at the push or the pull request, with [`ForgeError::Forbidden`].
    pub async fn can_push(&self) -> Result<bool, ForgeError> {
        let url = self.url(&[], &[]);
        self.send(Method::GET, &url, None, None, &mut false).await?;
        Ok(true)
    }

    /// The id of `pr_url` when it is a pull request page of this repository
    /// (`{org url}/{project}/_git/{repo}/pullrequest/{id}`, names in any
    /// case); None for anything else, which selfheal never asks about.
    pub(super) fn pr_number(&self, pr_url: &str) -> Option<u64> {
        let url = url::Url::parse(pr_url.trim()).ok()?;
        if origin(&url) != origin(&self.org_url)
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return None;
        }
        let mut segments: Vec<String> = url.path_segments()?.map(decode).collect();
        if segments.last().is_some_and(String::is_empty) {
            segments.pop();
        }
        let prefix: Vec<String> = self
            .org_url
            .path_segments()?
            .filter(|s| !s.is_empty())
            .map(decode)
            .chain([self.project.clone(), "_git".into(), self.repo.clone()])
            .collect();
        let rest = segments.len().checked_sub(prefix.len())?;
        let same = segments
            .iter()
            .zip(&prefix)
            .all(|(a, b)| a.eq_ignore_ascii_case(b));
        match &segments[prefix.len().min(segments.len())..] {
            [page, id]
                if same
                    && rest == 2
                    && page == "pullrequest"
                    && id.bytes().all(|b| b.is_ascii_digit()) =>
            {
                id.parse().ok().filter(|n| *n > 0)
            }
            _ => None,
        }
    }

    /// `GET …/pullrequests/{id}`, with `If-None-Match: etag` when there is
    /// one: None when the answer is 304 (unchanged). `active` is open,
    /// `completed` is merged (by `closedBy`), `abandoned` is closed.
    pub(super) async fn pull_state(
        &self,
        number: u64,
        etag: Option<&str>,
    ) -> Result<Option<PrSnapshot>, ForgeError> {
        let url = self.url(&["pullrequests", &number.to_string()], &[]);
        let resp = self.send(Method::GET, &url, None, etag, &mut false).await?;
        if resp.status == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let pull: ApiPull = parse_json(&resp.body)?;
        Ok(Some(PrSnapshot {
            state: pull.pr_state(),
            etag: resp.header("etag").map(str::to_string),
        }))
    }

    /// `POST …/pullRequests/{id}/threads`: a new active thread holding one
    /// text comment. Retried like every call, so a comment whose answer was
    /// lost may appear twice; never lost silently.
    pub(super) async fn comment(&self, number: u64, body: &str) -> Result<(), ForgeError> {
        let url = self.url(&["pullRequests", &number.to_string(), "threads"], &[]);
        let thread = serde_json::json!({
            "comments": [{ "parentCommentId": 0, "content": body, "commentType": 1 }],
            "status": 1,
        });
        let thread = serde_json::to_vec(&thread)
            .map_err(|e| ForgeError::Http(format!("encoding request: {e}")))?;
        self.send(Method::POST, &url, Some(thread), None, &mut false)
            .await?;
        info!(number, "commented on pull request");
        Ok(())
    }

    /// Every active pull request, `$top`/`$skip` pages until a short one.
    /// The list cuts descriptions to 400 characters, so selfheal's own pull
    /// requests whose description may have been cut are read again by id:
    /// their signature marker is at the end.
    pub(super) async fn list_open_pulls(&self) -> Result<Vec<PullRequest>, ForgeError> {
        let mut prs = self.list(&[]).await?;
        for pr in prs.iter_mut() {
            if pr.head.starts_with(SELFHEAL_BRANCH_PREFIX)
                && pr.body.chars().count() >= LISTED_DESCRIPTION_CHARS
            {
                *pr = self.get(pr.number).await?;
            }
        }
        Ok(prs)
    }

    /// The active pull request from `head` into `base`, read in full.
    async fn find_active(&self, head: &str, base: &str) -> Result<Option<PullRequest>, ForgeError> {
        let source = format!("{BRANCH_REFS}{head}");
        let target = format!("{BRANCH_REFS}{base}");
        let criteria = [
            ("searchCriteria.sourceRefName", source.as_str()),
            ("searchCriteria.targetRefName", target.as_str()),
        ];
        match self.list(&criteria).await?.first() {
            Some(pr) => self.get(pr.number).await.map(Some),
            None => Ok(None),
        }
    }

    async fn get(&self, number: u64) -> Result<PullRequest, ForgeError> {
        let url = self.url(&["pullrequests", &number.to_string()], &[]);
        let resp = self.send(Method::GET, &url, None, None, &mut false).await?;
        Ok(self.pull_request(parse_json(&resp.body)?))
    }

    async fn list(&self, criteria: &[(&str, &str)]) -> Result<Vec<PullRequest>, ForgeError> {
        let mut prs = Vec::new();
        for page in 0..MAX_PAGES {
            let (top, skip) = (PAGE_SIZE.to_string(), (page * PAGE_SIZE).to_string());
            let mut query = vec![
                ("searchCriteria.status", "active"),
                ("$top", top.as_str()),
                ("$skip", skip.as_str()),
            ];
            query.extend_from_slice(criteria);
            let url = self.url(&["pullrequests"], &query);
            let resp = self.send(Method::GET, &url, None, None, &mut false).await?;
            let list: ApiList = parse_json(&resp.body)?;
            let short = list.value.len() < PAGE_SIZE;
            prs.extend(list.value.into_iter().map(|p| self.pull_request(p)));
            if short {
                break;
            }
        }
        Ok(prs)
    }

    /// `{org url}/{project}/_apis/git/repositories/{repo}/{tail…}?{query}&api-version=7.1`.
    fn url(&self, tail: &[&str], query: &[(&str, &str)]) -> String {
        let mut url = self.org_url.clone();
        url.path_segments_mut()
            .expect("the org URL was checked to have a path in new()")
            .pop_if_empty()
            .extend([self.project.as_str(), "_apis", "git", "repositories"])
            .push(&self.repo)
            .extend(tail);
        url.query_pairs_mut()
            .extend_pairs(query)
            .append_pair("api-version", API_VERSION);
        url.into()
    }

    /// The web page of pull request `id`, what Slack links to.
    fn web_url(&self, id: u64) -> String {
        let mut url = self.org_url.clone();
        url.path_segments_mut()
            .expect("the org URL was checked to have a path in new()")
            .pop_if_empty()
            .extend([self.project.as_str(), "_git", self.repo.as_str()])
            .extend(["pullrequest", &id.to_string()]);
        url.into()
    }

    fn pull_request(&self, p: ApiPull) -> PullRequest {
        let state = match p.status.as_str() {
            "active" => "open",
            _ => "closed",
        };
        let branch = |r: String| match r.strip_prefix(BRANCH_REFS) {
            Some(name) => name.to_string(),
            None => r,
        };
        PullRequest {
            number: p.pull_request_id,
            url: self.web_url(p.pull_request_id),
            head: branch(p.source_ref_name),
            base: branch(p.target_ref_name),
            title: p.title,
            body: p.description.unwrap_or_default(),
            state: state.to_string(),
        }
    }

    /// Sends one request with retries; `etag` makes it conditional.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        etag: Option<&str>,
        ambiguous: &mut bool,
    ) -> Result<Answer, ForgeError> {
        let conditional: Vec<(&'static str, &str)> =
            etag.map(|e| ("if-none-match", e)).into_iter().collect();
        let answer = self
            .api
            .send(method, url, body, &conditional, ambiguous)
            .await?;
        // A token Azure DevOps does not take often gets a "success": 203 and
        // the sign-in page.
        if answer.status == StatusCode::NON_AUTHORITATIVE_INFORMATION {
            return Err(ForgeError::Unauthorized);
        }
        Ok(answer)
    }
}

/// What Azure DevOps wants on every request and what its refusals mean. A
/// bad or expired token is often not a 401 but a 302 to the sign-in page
/// (or a 203 with it, which [`AzureDevOps::send`] catches).
const DIALECT: Dialect = Dialect {
    name: "Azure DevOps",
    headers: &[("accept", "application/json")],
    // A 429 (`TF400733`) comes with `Retry-After`.
    rate_limit: rest::retry_after_or_a_minute,
    error_message,
    validation_statuses: &[400, 409],
    validation_message: error_message,
    forbidden_message,
    redirect_is_unauthorized: true,
};

/// Where a description too long for Azure DevOps had its diff cut.
const DIFF_CUT: &str = "\n… (cut to fit Azure DevOps' limit; see the Files tab)";

/// Azure DevOps' 403, naming the scope a token needs.
fn forbidden_message(body: &[u8]) -> String {
    format!(
        "{} (the token needs the `vso.code_write` scope, Code: Read & write)",
        error_message(body)
    )
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Names as the API allows them; spaces are fine (they are escaped in URLs).
fn valid_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_control() || "/\\?#%".contains(c))
}

fn decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The parts of Azure DevOps' `GitPullRequest` selfheal reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiPull {
    pull_request_id: u64,
    /// `active`, `abandoned` or `completed`.
    status: String,
    title: String,
    /// Cut to 400 characters in lists.
    #[serde(default)]
    description: Option<String>,
    source_ref_name: String,
    target_ref_name: String,
    /// Who completed or abandoned it.
    #[serde(default)]
    closed_by: Option<ApiIdentity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiIdentity {
    #[serde(default)]
    unique_name: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
}

impl ApiPull {
    fn pr_state(&self) -> PrState {
        match self.status.as_str() {
            "completed" => PrState::Merged {
                by: self
                    .closed_by
                    .as_ref()
                    .and_then(|who| who.unique_name.clone().or(who.display_name.clone())),
            },
            "abandoned" => PrState::Closed,
            _ => PrState::Open,
        }
    }
}

#[derive(Deserialize)]
struct ApiIdentities {
    value: Vec<ApiIdentityId>,
}

#[derive(Deserialize)]
struct ApiIdentityId {
    id: String,
}

#[derive(Deserialize)]
struct ApiList {
    value: Vec<ApiPull>,
}

/// `body` read as JSON of type `T`.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ForgeError> {
    rest::parse_json(DIALECT.name, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::rest::{Pause, Refusal};

    /// A description fitted the way [`AzureDevOps::create_pull`] fits it.
    fn fit_body(body: &str, max: usize) -> String {
        fit_body_noting(body, max, DIFF_CUT)
    }

    fn client(api_base: &str, repo: &str) -> AzureDevOps {
        AzureDevOps::new(api_base, repo, ForgeToken::new("pat")).expect("client")
    }

    #[test]
    fn only_this_repositorys_pull_request_pages_are_ours() {
        fn check(api_base: &str, url: &str, want: Option<u64>) {
            let az = client(api_base, "acme/Data Platform/dbt");
            assert_eq!(az.pr_number(url), want, "{api_base} {url}");
        }
        let cloud = "https://dev.azure.com";
        let page = "https://dev.azure.com/acme/Data%20Platform/_git/dbt/pullrequest";
        check(cloud, &format!("{page}/7"), Some(7));
        check(cloud, &format!("{page}/7/"), Some(7));
        check(
            cloud,
            "https://dev.azure.com/ACME/data%20platform/_git/DBT/pullrequest/7",
            Some(7),
        );
        check(cloud, &format!("{page}/0"), None);
        check(cloud, &format!("{page}/7?_a=files"), None);
        check(cloud, &format!("{page}/x7"), None);
        check(
            cloud,
            "https://dev.azure.com/acme/Data%20Platform/_git/other/pullrequest/7",
            None,
        );
        check(
            cloud,
            "https://dev.azure.com/evil/Data%20Platform/_git/dbt/pullrequest/7",
            None,
        );
        check(
            cloud,
            "https://evil.example/acme/Data%20Platform/_git/dbt/pullrequest/7",
            None,
        );
        check(cloud, "https://github.com/acme/dbt/pull/7", None);
        check(cloud, "not a url", None);
        let server = "https://tfs.acme.io/tfs/DefaultCollection";
        let az = AzureDevOps::new(server, "DefaultCollection/Data/dbt", ForgeToken::new("t"))
            .expect("client");
        assert_eq!(
            az.pr_number("https://tfs.acme.io/tfs/DefaultCollection/Data/_git/dbt/pullrequest/3"),
            Some(3)
        );
        assert_eq!(az.repo(), "DefaultCollection/Data/dbt");
    }

    #[test]
    fn api_urls_carry_the_api_version_and_escape_names() {
        let az = client("https://dev.azure.com/", "acme/Data Platform/dbt");
        assert_eq!(
            az.url(&["pullrequests", "7"], &[]),
            "https://dev.azure.com/acme/Data%20Platform/_apis/git/repositories/dbt/pullrequests/7?api-version=7.1"
        );
        let server = AzureDevOps::new(
            "https://tfs.acme.io/tfs/DefaultCollection",
            "DefaultCollection/Data/dbt",
            ForgeToken::new("t"),
        )
        .expect("client");
        assert_eq!(
            server.url(&[], &[("$top", "100")]),
            "https://tfs.acme.io/tfs/DefaultCollection/Data/_apis/git/repositories/dbt?%24top=100&api-version=7.1"
        );
        let legacy = AzureDevOps::new(
            "https://acme.visualstudio.com",
            "acme/Data/dbt",
            ForgeToken::new("t"),
        )
        .expect("client");
        assert_eq!(
            legacy.url(&[], &[]),
            "https://acme.visualstudio.com/Data/_apis/git/repositories/dbt?api-version=7.1"
        );
        assert!(
            AzureDevOps::new("https://dev.azure.com", "acme/dbt", ForgeToken::new("t")).is_err()
        );
        assert!(AzureDevOps::new("http://dev.azure.com", "a/b/c", ForgeToken::new("t")).is_err());
    }

    /// Real answers (shared/reference/forge-payloads/azure-devops).
    #[test]
    fn recorded_azure_answers_read_as_merged_or_open() {
        let completed: ApiPull = parse_json(
            include_str!("../../tests/fixtures/azure-devops/pull_request_completed.go-scm.json")
                .as_bytes(),
        )
        .expect("go-scm's answer parses");
        assert_eq!(completed.pr_state(), PrState::Merged { by: None });
        let created: ApiPull = parse_json(
            include_str!(
                "../../tests/fixtures/azure-devops/create_pull_request.response_201.vsts-rest-api-specs.json"
            )
            .as_bytes(),
        )
        .expect("the spec's answer parses");
        assert_eq!(created.pr_state(), PrState::Open);
        let list: ApiList = parse_json(
            include_str!(
                "../../tests/fixtures/azure-devops/list_pull_requests_completed.vsts-rest-api-specs.json"
            )
            .as_bytes(),
        )
        .expect("the spec's list parses");
        assert!(list
            .value
            .iter()
            .all(|p| matches!(p.pr_state(), PrState::Merged { .. })));
        let too_long = include_str!(
            "../../tests/fixtures/azure-devops/error_400_description_too_long.scala-steward-pr3572.json"
        );
        assert!(error_message(too_long.as_bytes()).contains("longer than 4000 characters"));
    }

    #[test]
    fn long_bodies_lose_their_diff_first_and_never_their_signature() {
        let sig = "<!-- selfheal-signature: d1296dccbe5463ad -->\n";
        let body = |diff: &str, context: &str| {
            format!("## Root cause\nx\n```diff\n{diff}\n```\n</details>\n\n## Context\n{context}\n\n{sig}")
        };
        let short = body("+a", "c");
        assert_eq!(fit_body(&short, 4_000), short);
        let long_diff = body(&"+line\n".repeat(2_000), "c");
        let fitted = fit_body(&long_diff, 4_000);
        assert!(fitted.chars().count() <= 4_000, "{}", fitted.len());
        assert!(fitted.ends_with(sig) && fitted.contains("## Context\nc"));
        assert!(fitted.contains("cut to fit"));
        let long_context = body("+a", &"é".repeat(9_000));
        let fitted = fit_body(&long_context, 4_000);
        assert!(fitted.chars().count() <= 4_000);
        assert!(fitted.ends_with(sig), "{}", &fitted[fitted.len() - 80..]);
        let no_marker = "x".repeat(5_000);
        assert_eq!(fit_body(&no_marker, 4_000).chars().count(), 4_000);
    }

    #[test]
    fn azure_answers_become_the_errors_callers_act_on() {
        fn check(status: u16, retry_after: Option<&str>, body: &str, want: &str) {
            let mut headers = hyper::header::HeaderMap::new();
            if let Some(v) = retry_after {
                headers.insert("retry-after", v.parse().expect("header"));
            }
            let answer = Answer {
                status: StatusCode::from_u16(status).expect("status"),
                headers,
                body: body.as_bytes().to_vec(),
            };
            let got = match DIALECT.refusal(&answer, 0) {
                Refusal::Final(e) => format!("fail: {e}"),
                Refusal::RateLimited(Pause::For(d)) => format!("wait {}s", d.as_secs()),
                Refusal::RateLimited(Pause::Backoff) => "wait the backoff".to_string(),
                Refusal::Transient(e) => format!("retry: {e}"),
            };
            assert_eq!(got, want, "{status} {body}");
        }
        let tf = |m: &str| format!(r#"{{"$id":"1","message":"{m}","typeKey":"X","errorCode":0}}"#);
        let rejected = "fail: the forge rejected the token";
        check(401, None, "", rejected);
        check(302, None, "<html>sign in</html>", rejected);
        check(
            403,
            None,
            &tf("TF401027: You need the Git 'PullRequestContribute' permission."),
            "fail: the token may not do this: TF401027: You need the Git 'PullRequestContribute' permission. (the token needs the `vso.code_write` scope, Code: Read & write)",
        );
        check(
            404,
            None,
            &tf("TF401019: no repo"),
            "fail: not found on the forge (check the repository name and the token's access)",
        );
        check(
            409,
            None,
            &tf("TF401179: An active pull request for the source and target branch already exists."),
            "fail: the forge refused the request: TF401179: An active pull request for the source and target branch already exists.",
        );
        let too_long = include_str!(
            "../../tests/fixtures/azure-devops/error_400_description_too_long.scala-steward-pr3572.json"
        );
        check(
            400,
            None,
            too_long,
            "fail: the forge refused the request: Invalid argument value.\r\nParameter name: A description for a pull request must not be longer than 4000 characters.",
        );
        check(
            429,
            Some("7"),
            &tf("TF400733: The request has been canceled"),
            "wait 7s",
        );
        check(429, None, "", "wait 60s");
        check(
            503,
            None,
            "",
            "retry: forge request failed: 503 Service Unavailable: ",
        );
        check(
            418,
            None,
            "teapot",
            "fail: forge request failed: 418 I'm a teapot: teapot",
        );
    }

    #[test]
    fn identities_are_searched_at_the_organizations_identity_service() {
        let cloud = client("https://dev.azure.com", "acme/Data/dbt");
        assert_eq!(
            cloud.identities_url("ann@acme.example"),
            "https://vssps.dev.azure.com/acme/_apis/identities?searchFilter=General&filterValue=ann%40acme.example&queryMembership=None&api-version=7.1"
        );
        let server = client(
            "https://tfs.acme.io/tfs/DefaultCollection",
            "DefaultCollection/Data/dbt",
        );
        assert!(server
            .identities_url("ann")
            .starts_with("https://tfs.acme.io/tfs/DefaultCollection/_apis/identities?"));
    }

    #[test]
    fn reviewer_ids_are_recognised_as_guids() {
        assert!(is_guid("d6245f20-2af8-44f4-9451-8107cb2767db"));
        assert!(!is_guid("fabrikamfiber16@hotmail.com"));
        assert!(!is_guid("d6245f20-2af8-44f4-9451-8107cb2767dz"));
    }

    #[test]
    fn the_client_never_builds_a_request_that_completes_abandons_or_votes() {
        let code = include_str!("azure.rs");
        let code = code.split("#[cfg(test)]").next().unwrap_or(code);
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for word in [
            "Method::PATCH",
            "Method::PUT",
            "Method::DELETE",
            "vote",
            "autoComplete",
            "completionOptions",
            "/reviewers",
        ] {
            assert!(!code.contains(word), "azure.rs mentions `{word}`");
        }
    }
}
