//! Which forge the configuration names, built: the remote's host (or
//! `SELFHEAL_FORGE` for a self-managed one) says which forge, that forge's
//! token says whether selfheal may use its API. Without the token, the
//! branch is pushed and a compare link is what people get.

use anyhow::{bail, Context, Result};

use super::remote::{parse_remote, Remote};
use super::{AzureDevOps, Bitbucket, Forge, ForgeToken, GitHub, GitLab, Gitea};
use crate::config::HealSettings;
use crate::domain::{ForgeKind, Secret};

impl Forge {
    /// The forge `heal` configures (see the module docs).
    pub fn from_settings(heal: &HealSettings) -> Result<Forge> {
        let f = &heal.forge;
        let remote = heal
            .repo
            .as_deref()
            .and_then(|url| parse_remote(url, f.kind));
        let kind = f
            .kind
            .or(remote.as_ref().map(|r| r.kind))
            .unwrap_or(ForgeKind::GitHub);
        let plain = || Forge::Plain {
            web_base: heal
                .repo_web_url
                .clone()
                .or_else(|| remote.as_ref().map(Remote::web_url)),
            kind,
        };
        match kind {
            ForgeKind::GitHub => {
                let repo = heal.github_repo.clone().or_else(|| {
                    remote
                        .as_ref()
                        .filter(|r| r.kind == ForgeKind::GitHub)
                        .map(|r| r.path.clone())
                });
                match (&heal.github_token, repo) {
                    (Some(token), Some(repo)) => Ok(Forge::GitHub(
                        GitHub::new(&heal.github_api_url, &repo, token_of(token))
                            .context("configuring the GitHub API")?,
                    )),
                    (Some(_), None) => bail!(
                        "SELFHEAL_GITHUB_TOKEN is set but the repository is unknown: set SELFHEAL_GITHUB_REPO=owner/name"
                    ),
                    (None, _) => Ok(plain()),
                }
            }
            ForgeKind::AzureDevOps => match &f.azure_devops_token {
                Some(token) => {
                    let var = "SELFHEAL_AZURE_DEVOPS_TOKEN";
                    let (project, api) = project_and_api(heal, remote.as_ref(), var)?;
                    Ok(Forge::AzureDevOps(
                        AzureDevOps::new(&api, &project, token_of(token))
                            .context("configuring the Azure DevOps API")?,
                    ))
                }
                None => Ok(plain()),
            },
            ForgeKind::Bitbucket => match &f.bitbucket_token {
                Some(token) => {
                    let remote = remote.as_ref().filter(|r| r.kind == ForgeKind::Bitbucket);
                    let (repo, api) = project_and_api(heal, remote, "SELFHEAL_BITBUCKET_TOKEN")?;
                    Ok(Forge::Bitbucket(
                        Bitbucket::new(&api, &repo, token_of(token))
                            .context("configuring the Bitbucket API")?,
                    ))
                }
                None => Ok(plain()),
            },
            ForgeKind::GitLab => match &f.gitlab_token {
                Some(token) => {
                    let (project, api) =
                        project_and_api(heal, remote.as_ref(), "SELFHEAL_GITLAB_TOKEN")?;
                    Ok(Forge::GitLab(
                        GitLab::new(&api, &project, token_of(token))
                            .context("configuring the GitLab API")?,
                    ))
                }
                None => Ok(plain()),
            },
            ForgeKind::Gitea => match &f.gitea_token {
                Some(token) => {
                    let (repo, api) =
                        project_and_api(heal, remote.as_ref(), "SELFHEAL_GITEA_TOKEN")?;
                    Ok(Forge::Gitea(
                        Gitea::new(&api, &repo, token_of(token))
                            .context("configuring the Gitea API")?,
                    ))
                }
                None => Ok(plain()),
            },
        }
    }
}

/// The project on the forge and its API: configured, else read from the remote.
fn project_and_api(
    heal: &HealSettings,
    remote: Option<&Remote>,
    token_var: &str,
) -> Result<(String, String)> {
    let f = &heal.forge;
    let project = f
        .project
        .clone()
        .or_else(|| remote.map(|r| r.path.clone()))
        .with_context(|| {
            format!("{token_var} is set but the project is unknown: set SELFHEAL_FORGE_PROJECT")
        })?;
    let api = f
        .api_url
        .clone()
        .or_else(|| remote.map(Remote::default_api_url))
        .with_context(|| {
            format!("{token_var} is set but the forge's API is unknown: set SELFHEAL_FORGE_API_URL")
        })?;
    Ok((project, api))
}

fn token_of(secret: &Secret) -> ForgeToken {
    ForgeToken::new(secret.expose())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heal(repo: &str, bitbucket_token: Option<&str>) -> HealSettings {
        let mut heal = HealSettings {
            repo: Some(repo.to_string()),
            ..HealSettings::default()
        };
        heal.forge.bitbucket_token = bitbucket_token.map(Secret::new);
        heal
    }

    #[test]
    fn a_bitbucket_remote_with_its_token_builds_the_bitbucket_api_and_without_it_a_plain_remote() {
        let with = Forge::from_settings(&heal(
            "git@bitbucket.org:acme/dbt.git",
            Some("ATCTT3xtoken"),
        ))
        .expect("built");
        match &with {
            Forge::Bitbucket(bitbucket) => assert_eq!(bitbucket.repo(), "acme/dbt"),
            other => panic!("expected Bitbucket, got {other:?}"),
        }
        assert!(with.owns_pr("https://bitbucket.org/acme/dbt/pull-requests/3"));

        let without =
            Forge::from_settings(&heal("https://bitbucket.org/acme/dbt.git", None)).expect("built");
        assert!(matches!(without, Forge::Plain { .. }), "{without:?}");

        // The GitHub token does not open Bitbucket pull requests.
        let mut github_only = heal("https://bitbucket.org/acme/dbt.git", None);
        github_only.github_token = Some(Secret::new("ghp_x"));
        let github_only = Forge::from_settings(&github_only).expect("built");
        assert!(
            matches!(github_only, Forge::Plain { .. }),
            "{github_only:?}"
        );
    }

    fn azure_heal(remote: &str, azure_token: Option<&str>) -> HealSettings {
        let mut heal = heal(remote, None);
        heal.forge.azure_devops_token = azure_token.map(Secret::new);
        heal
    }

    #[test]
    fn an_azure_devops_remote_with_its_token_gets_the_azure_devops_api() {
        let remote = "https://acme@dev.azure.com/acme/Data%20Platform/_git/dbt";
        let forge = Forge::from_settings(&azure_heal(remote, Some("pat"))).expect("built");
        match forge {
            Forge::AzureDevOps(azure) => assert_eq!(azure.repo(), "acme/Data Platform/dbt"),
            other => panic!("expected Azure DevOps, got {other:?}"),
        }
        let ssh = "git@ssh.dev.azure.com:v3/acme/Data%20Platform/dbt";
        let forge = Forge::from_settings(&azure_heal(ssh, Some("pat"))).expect("built");
        assert!(forge.owns_pr("https://dev.azure.com/acme/Data%20Platform/_git/dbt/pullrequest/4"));
    }

    #[test]
    fn an_azure_devops_remote_without_its_token_is_a_plain_remote() {
        let remote = "https://dev.azure.com/acme/Data%20Platform/_git/dbt";
        let forge = Forge::from_settings(&azure_heal(remote, None)).expect("built");
        assert!(matches!(forge, Forge::Plain { .. }), "{forge:?}");
    }
}
