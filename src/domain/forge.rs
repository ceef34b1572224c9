//! The forges selfheal opens change requests on, and what people ask each
//! change request to carry.

/// The forges selfheal can open change requests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgeKind {
    GitHub,
    GitLab,
    Bitbucket,
    AzureDevOps,
    Gitea,
}

impl ForgeKind {
    pub const ALL: [ForgeKind; 5] = [
        ForgeKind::GitHub,
        ForgeKind::GitLab,
        ForgeKind::Bitbucket,
        ForgeKind::AzureDevOps,
        ForgeKind::Gitea,
    ];

    /// The name configuration uses (`SELFHEAL_FORGE`).
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "github",
            ForgeKind::GitLab => "gitlab",
            ForgeKind::Bitbucket => "bitbucket",
            ForgeKind::AzureDevOps => "azure-devops",
            ForgeKind::Gitea => "gitea",
        }
    }

    /// Reads a configured name; `forgejo` is Gitea's API.
    pub fn parse(s: &str) -> Option<ForgeKind> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        Some(match s.as_str() {
            "github" | "github-enterprise" | "ghe" => ForgeKind::GitHub,
            "gitlab" => ForgeKind::GitLab,
            "bitbucket" => ForgeKind::Bitbucket,
            "azure-devops" | "azure" | "ado" => ForgeKind::AzureDevOps,
            "gitea" | "forgejo" => ForgeKind::Gitea,
            _ => return None,
        })
    }
}

/// What people asked every selfheal pull request to carry
/// (`SELFHEAL_PR_DRAFT`, `SELFHEAL_PR_REVIEWERS`, `SELFHEAL_PR_LABELS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrOptions {
    /// Open it as a draft (GitLab: a `Draft:` title).
    pub draft: bool,
    /// User names (logins) asked to review it.
    pub reviewers: Vec<String>,
    pub labels: Vec<String>,
}
