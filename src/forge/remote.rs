//! Which forge a git remote lives on, and the project's path there: read
//! from the remote URL, so configuration guesses right.
//!
//! HTTPS (with or without user info), `ssh://` (with a port) and scp-like
//! `git@host:path` forms are read alike. The well-known hosts name their
//! forge (github.com, gitlab.com, bitbucket.org, dev.azure.com and the
//! legacy `*.visualstudio.com`); a self-managed host (GitHub Enterprise,
//! GitLab self-managed, Gitea/Forgejo) cannot be recognised by its name, so
//! its kind comes from configuration (`SELFHEAL_FORGE`). Pure, no IO.

pub use crate::domain::ForgeKind;

/// The forge a well-known host belongs to.
fn kind_of_host(host: &str) -> Option<ForgeKind> {
    let host = host.to_ascii_lowercase();
    Some(match host.as_str() {
        "github.com" | "www.github.com" => ForgeKind::GitHub,
        "gitlab.com" | "www.gitlab.com" => ForgeKind::GitLab,
        "bitbucket.org" | "www.bitbucket.org" => ForgeKind::Bitbucket,
        "dev.azure.com" | "ssh.dev.azure.com" => ForgeKind::AzureDevOps,
        h if h.ends_with(".visualstudio.com") => ForgeKind::AzureDevOps,
        _ => return None,
    })
}

/// A remote, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub kind: ForgeKind,
    /// The web host, without user info or port (`gitlab.com`, `git.acme.io`;
    /// Azure DevOps: `dev.azure.com`, also for its SSH and legacy hosts).
    pub host: String,
    /// Where the repository is on the forge: `owner/name` (GitHub, Gitea),
    /// `group/sub/name` (GitLab, nested groups kept), `workspace/slug`
    /// (Bitbucket), `org/project/repo` (Azure DevOps, percent-decoded; on
    /// Azure DevOps Server the org is the collection).
    pub path: String,
    /// Azure DevOps Server: where the collection is on the host
    /// (`tfs/DefaultCollection`); None everywhere else.
    pub collection: Option<String>,
}

impl Remote {
    /// The repository's web page, where compare pages hang from.
    pub fn web_url(&self) -> String {
        match self.kind {
            ForgeKind::AzureDevOps if self.collection.is_some() => {
                let (_, project_and_repo) = self.path.split_once('/').unwrap_or(("", ""));
                let (project, repo) = project_and_repo.split_once('/').unwrap_or(("", ""));
                let collection = self.collection.as_deref().unwrap_or("");
                format!("https://{}/{collection}/{project}/_git/{repo}", self.host)
            }
            ForgeKind::AzureDevOps => {
                let mut parts = self.path.splitn(3, '/');
                let (org, project, repo) = (
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or(""),
                );
                let enc = |s: &str| s.replace('%', "%25").replace(' ', "%20");
                format!(
                    "https://dev.azure.com/{}/{}/_git/{}",
                    enc(org),
                    enc(project),
                    enc(repo)
                )
            }
            _ => format!("https://{}/{}", self.host, self.path),
        }
    }

    /// The API every request goes to, when configuration does not say
    /// (`SELFHEAL_FORGE_API_URL`).
    pub fn default_api_url(&self) -> String {
        let host = &self.host;
        match self.kind {
            ForgeKind::GitHub if host == "github.com" => "https://api.github.com".into(),
            ForgeKind::GitHub => format!("https://{host}/api/v3"),
            ForgeKind::GitLab => format!("https://{host}/api/v4"),
            ForgeKind::Gitea => format!("https://{host}/api/v1"),
            ForgeKind::Bitbucket => "https://api.bitbucket.org/2.0".into(),
            ForgeKind::AzureDevOps => match &self.collection {
                Some(collection) => format!("https://{host}/{collection}"),
                None => "https://dev.azure.com".into(),
            },
        }
    }
}

/// The page of `kind`'s web UI where a human opens a change request from
/// `head` into `base`, for a remote selfheal has no token for (a page for
/// people: selfheal never requests it).
pub fn new_pr_url(kind: ForgeKind, web_base: &str, base: &str, head: &str) -> String {
    let web = web_base.trim_end_matches('/');
    let web = web.strip_suffix(".git").unwrap_or(web);
    let (base, head) = (super::escape_ref(base), super::escape_ref(head));
    match kind {
        ForgeKind::GitHub => format!("{web}/compare/{base}...{head}?expand=1"),
        ForgeKind::Gitea => format!("{web}/compare/{base}...{head}"),
        ForgeKind::GitLab => format!(
            "{web}/-/merge_requests/new?merge_request%5Bsource_branch%5D={head}&merge_request%5Btarget_branch%5D={base}"
        ),
        ForgeKind::Bitbucket => format!("{web}/pull-requests/new?source={head}&dest={base}"),
        ForgeKind::AzureDevOps => {
            format!("{web}/pullrequestcreate?sourceRef={head}&targetRef={base}")
        }
    }
}

/// Reads `url`. `configured` is the kind configuration names: it decides
/// for a host no forge is known by, and overrides the guess for a known one.
/// `None` when the URL is not a remote selfheal can read (a local path, a
/// host of no known forge with no kind configured, a path too short).
pub fn parse_remote(url: &str, configured: Option<ForgeKind>) -> Option<Remote> {
    let (host, path) = split_remote(url.trim())?;
    let kind = configured.or_else(|| kind_of_host(&host))?;
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let mut collection = None;
    let (host, path) = match kind {
        // A host of its own is Azure DevOps Server: `…/{collection}/{project}/_git/{repo}`.
        ForgeKind::AzureDevOps if kind_of_host(&host) != Some(ForgeKind::AzureDevOps) => {
            let git = segments.iter().position(|s| s == "_git")?;
            (git >= 2).then_some(())?;
            let repo = segments.get(git + 1)?;
            let (coll, project) = (&segments[git - 2], &segments[git - 1]);
            collection = Some(segments[..git - 1].join("/"));
            (host, format!("{coll}/{project}/{repo}"))
        }
        ForgeKind::AzureDevOps => azure(&host, &segments)?,
        ForgeKind::GitLab => {
            // A web URL's sub-pages follow `/-/`.
            let end = segments
                .iter()
                .position(|s| s == "-")
                .unwrap_or(segments.len());
            let project = &segments[..end];
            (project.len() >= 2).then_some(())?;
            (host, project.join("/"))
        }
        // A remote is `owner/name`; a longer path is a web page, not a remote.
        ForgeKind::GitHub | ForgeKind::Gitea | ForgeKind::Bitbucket => {
            (segments.len() == 2).then_some(())?;
            (host, format!("{}/{}", segments[0], segments[1]))
        }
    };
    let valid = path
        .split('/')
        .all(|s| !s.is_empty() && !s.chars().any(|c| c.is_control() || c == '\\'));
    valid.then_some(Remote {
        kind,
        host,
        path,
        collection,
    })
}

/// `(host, path)` of an HTTPS, `ssh://`, `git://` or scp-like remote.
fn split_remote(url: &str) -> Option<(String, String)> {
    let (authority, path) = match url.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            if !matches!(
                scheme.as_str(),
                "https" | "http" | "ssh" | "git" | "git+ssh"
            ) {
                return None;
            }
            rest.split_once('/')?
        }
        // scp-like: user@host:path (a Windows drive or a bare path is not one).
        None => {
            let (authority, path) = url.split_once(':')?;
            if authority.contains('/') || authority.len() < 2 {
                return None;
            }
            (authority, path)
        }
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    (!host.is_empty()).then_some((host, path.to_string()))
}

/// Azure DevOps' forms, as `(dev.azure.com, org/project/repo)`:
/// `dev.azure.com/{org}/{project}/_git/{repo}` (the project may be left
/// out when it is named like the repository; a team segment may sit
/// between project and `_git`), `ssh.dev.azure.com:v3/{org}/{project}/{repo}`,
/// and the legacy `{org}.visualstudio.com/[DefaultCollection/]{project}/_git/{repo}`.
fn azure(host: &str, segments: &[String]) -> Option<(String, String)> {
    let legacy_org = host
        .strip_suffix(".visualstudio.com")
        .filter(|org| *org != "vs-ssh")
        .map(str::to_string);
    let (org, rest): (String, &[String]) = match (&legacy_org, segments.first()) {
        (_, Some(v3)) if v3 == "v3" => (segments.get(1)?.clone(), segments.get(2..)?),
        (Some(org), _) => {
            let rest = match segments.first() {
                Some(c) if c.eq_ignore_ascii_case("DefaultCollection") => &segments[1..],
                _ => segments,
            };
            (org.clone(), rest)
        }
        (None, Some(org)) => (org.clone(), &segments[1..]),
        (None, None) => return None,
    };
    let (project, repo) = match rest.iter().position(|s| s == "_git") {
        Some(git) => {
            let repo = rest.get(git + 1)?.clone();
            // The project is the first segment before `_git` (a team may follow it).
            let project = rest[..git].first().cloned().unwrap_or_else(|| repo.clone());
            (project, repo)
        }
        // SSH: {project}/{repo}
        None if rest.len() == 2 => (rest[0].clone(), rest[1].clone()),
        None => return None,
    };
    Some(("dev.azure.com".into(), format!("{org}/{project}/{repo}")))
}

/// `%20` → ` ` and the like; anything malformed stays as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ForgeKind::*;

    fn remote(kind: ForgeKind, host: &str, path: &str) -> Option<Remote> {
        Some(Remote {
            kind,
            host: host.into(),
            path: path.into(),
            collection: None,
        })
    }

    #[test]
    fn azure_devops_server_remotes_name_their_collection() {
        let cases = [
            (
                "https://tfs.acme.local/tfs/DefaultCollection/Data/_git/dbt",
                "DefaultCollection/Data/dbt",
                "tfs/DefaultCollection",
                "https://tfs.acme.local/tfs/DefaultCollection",
            ),
            (
                "ssh://tfs.acme.local:22/Analytics/Data%20Platform/_git/dbt",
                "Analytics/Data Platform/dbt",
                "Analytics",
                "https://tfs.acme.local/Analytics",
            ),
        ];
        for (url, path, collection, api) in cases {
            let r = parse_remote(url, Some(AzureDevOps)).expect(url);
            assert_eq!(r.host, "tfs.acme.local");
            assert_eq!(r.path, path);
            assert_eq!(r.collection.as_deref(), Some(collection));
            assert_eq!(r.default_api_url(), api);
        }
        let r = parse_remote(
            "https://tfs.acme.local/tfs/DefaultCollection/Data/_git/dbt",
            Some(AzureDevOps),
        )
        .unwrap();
        assert_eq!(
            r.web_url(),
            "https://tfs.acme.local/tfs/DefaultCollection/Data/_git/dbt"
        );
        // Not enough of a path to name a collection.
        assert_eq!(
            parse_remote("https://tfs.acme.local/Data/_git/dbt", Some(AzureDevOps)),
            None
        );
    }

    #[test]
    fn real_remote_forms_name_their_forge_and_project() {
        // Forms from git-url-parse's tests, vsts-rest-api-specs and the forges' docs.
        let cases: &[(&str, Option<ForgeKind>, Option<Remote>)] = &[
            // GitHub
            ("https://github.com/owner/name.git", None, remote(GitHub, "github.com", "owner/name")),
            ("https://github.com/owner/name", None, remote(GitHub, "github.com", "owner/name")),
            ("git@github.com:owner/name.git", None, remote(GitHub, "github.com", "owner/name")),
            ("ssh://git@github.com:22/owner/name.git", None, remote(GitHub, "github.com", "owner/name")),
            ("https://x-access-token:ghs_abc@github.com/acme/dbt.git", None, remote(GitHub, "github.com", "acme/dbt")),
            ("git://github.com/owner/name.git", None, remote(GitHub, "github.com", "owner/name")),
            // GitHub Enterprise: configured.
            ("https://ghe.acme.io/data/dbt.git", Some(GitHub), remote(GitHub, "ghe.acme.io", "data/dbt")),
            // GitLab, nested groups kept.
            ("https://gitlab.com/group/subgroup/id", None, remote(GitLab, "gitlab.com", "group/subgroup/id")),
            ("git@gitlab.com:a/b/c/d.git", None, remote(GitLab, "gitlab.com", "a/b/c/d")),
            ("https://gitlab.com/acme/data/dbt/-/merge_requests/7", None, remote(GitLab, "gitlab.com", "acme/data/dbt")),
            ("ssh://git@git.acme.io:2222/data/analytics/dbt.git", Some(GitLab), remote(GitLab, "git.acme.io", "data/analytics/dbt")),
            ("https://oauth2:glpat-x@git.acme.io/data/dbt.git", Some(GitLab), remote(GitLab, "git.acme.io", "data/dbt")),
            // Bitbucket Cloud
            ("https://owner@bitbucket.org/owner/name", None, remote(Bitbucket, "bitbucket.org", "owner/name")),
            ("https://x-token-auth:token@bitbucket.org/owner/name.git", None, remote(Bitbucket, "bitbucket.org", "owner/name")),
            ("git@bitbucket.org:workspace/repo.git", None, remote(Bitbucket, "bitbucket.org", "workspace/repo")),
            // Azure DevOps
            ("https://dev.azure.com/MyOrganization/MyProject/_git/MyRepo", None, remote(AzureDevOps, "dev.azure.com", "MyOrganization/MyProject/MyRepo")),
            ("https://dev.azure.com/fabrikam/_git/Fabrikam-Fiber-Git", None, remote(AzureDevOps, "dev.azure.com", "fabrikam/Fabrikam-Fiber-Git/Fabrikam-Fiber-Git")),
            ("https://org@dev.azure.com/org/project/_git/repo", None, remote(AzureDevOps, "dev.azure.com", "org/project/repo")),
            ("git@ssh.dev.azure.com:v3/CompanyName/ProjectName/RepoName", None, remote(AzureDevOps, "dev.azure.com", "CompanyName/ProjectName/RepoName")),
            ("git@ssh.dev.azure.com:v3/CompanyName/Project%20Name/Repo%20Name", None, remote(AzureDevOps, "dev.azure.com", "CompanyName/Project Name/Repo Name")),
            ("https://dev.azure.com/MyOrganization/MatchedName/MyTeam/_git/MatchedName?path=%2Fa&version=GBother", None, remote(AzureDevOps, "dev.azure.com", "MyOrganization/MatchedName/MatchedName")),
            ("https://companyname.visualstudio.com/MyProject/_git/MyRepo", None, remote(AzureDevOps, "dev.azure.com", "companyname/MyProject/MyRepo")),
            ("https://companyname.visualstudio.com/DefaultCollection/MyProject/_git/MyRepo", None, remote(AzureDevOps, "dev.azure.com", "companyname/MyProject/MyRepo")),
            ("CompanyName@vs-ssh.visualstudio.com:v3/CompanyName/ProjectName/RepoName", None, remote(AzureDevOps, "dev.azure.com", "CompanyName/ProjectName/RepoName")),
            // Gitea / Forgejo: self-hosted, so configured.
            ("https://gitea.example.com/owner/repo.git", Some(Gitea), remote(Gitea, "gitea.example.com", "owner/repo")),
            ("git@gitea.example.com:owner/repo.git", Some(Gitea), remote(Gitea, "gitea.example.com", "owner/repo")),
            ("https://codeberg.org/forgejo/forgejo", Some(Gitea), remote(Gitea, "codeberg.org", "forgejo/forgejo")),
            // What cannot be read.
            ("https://gitea.example.com/owner/repo.git", None, None),
            ("/srv/git/analytics.git", None, None),
            ("file:///srv/git/analytics.git", None, None),
            ("C:\\repos\\dbt", Some(GitHub), None),
            ("https://github.com/only-owner", None, None),
            ("https://github.com/acme/dbt/tree/main", None, None),
            ("https://gitlab.com/lonely", None, None),
            ("https://dev.azure.com/org", None, None),
        ];
        for (url, configured, want) in cases {
            assert_eq!(&parse_remote(url, *configured), want, "{url}");
        }
    }

    #[test]
    fn each_forge_has_its_api_where_its_docs_say() {
        let api =
            |url: &str, kind: Option<ForgeKind>| parse_remote(url, kind).unwrap().default_api_url();
        assert_eq!(
            api("git@github.com:a/b.git", None),
            "https://api.github.com"
        );
        assert_eq!(
            api("https://ghe.acme.io/a/b", Some(GitHub)),
            "https://ghe.acme.io/api/v3"
        );
        assert_eq!(
            api("https://gitlab.com/a/b/c", None),
            "https://gitlab.com/api/v4"
        );
        assert_eq!(
            api("https://git.acme.io/a/b", Some(GitLab)),
            "https://git.acme.io/api/v4"
        );
        assert_eq!(
            api("https://gitea.acme.io/a/b", Some(Gitea)),
            "https://gitea.acme.io/api/v1"
        );
        assert_eq!(
            api("git@bitbucket.org:w/r.git", None),
            "https://api.bitbucket.org/2.0"
        );
        assert_eq!(
            api("https://dev.azure.com/o/p/_git/r", None),
            "https://dev.azure.com"
        );
    }

    #[test]
    fn configured_names_are_read_in_the_forms_people_write() {
        for kind in ForgeKind::ALL {
            assert_eq!(ForgeKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ForgeKind::parse("Forgejo"), Some(Gitea));
        assert_eq!(ForgeKind::parse("azure_devops"), Some(AzureDevOps));
        assert_eq!(ForgeKind::parse("sourcehut"), None);
    }
}
