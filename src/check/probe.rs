//! The IO of `selfheal check`: every call it makes to Slack, git, the
//! run-log source, dbt, the forge and model endpoints, each turned at once
//! into an [`Outcome`]. What the outcomes mean is decided in the parent
//! module (pure).
//!
//! It reads and asks; it never writes where the bot works: `dbt debug` runs
//! with a session profile prepared in a temporary folder by
//! [`crate::dbt::isolate`] (so it connects where a session would build,
//! never to a production it could write), with dbt's logs and target folder
//! there too, so the repository is left as it was.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    dbt_debug_errors, git_reason, is_token_error, missing_scopes, parse_scopes, Check, Outcome,
    Problem,
};
use crate::config::{normalize_channel, split_workspace, Config, Runner};
use crate::dbt::isolate::{self, Plan};
use crate::dbt::Dbt;
use crate::domain::ForgeKind;
use crate::forge::{Forge, ForgeError, RetryPolicy};
use crate::http::{host_of, is_loopback, unreachable_reason, Transport};
use crate::runlog::{Source, SourceSettings};
use crate::slack::web::SlackError;
use crate::slack::{manifest, probe as slack};

/// How long one network call of the check may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `dbt debug` may take (it connects to the warehouse).
const DBT_DEBUG_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs every check `cfg` calls for; `offline`: only those that need no
/// network (files, paths, the dbt executable, the isolation plan).
pub async fn run(cfg: &Config, offline: bool) -> Vec<(Check, Outcome)> {
    let mut out = Vec::new();
    if !offline {
        slack_checks(cfg, &mut out).await;
    }
    out.push((Check::Repository, repository(cfg, offline).await));
    out.push((Check::RunLogs, run_logs(cfg, offline).await));
    let dbt = dbt_found(&cfg.heal.dbt.exe).await;
    let dbt_ok = matches!(dbt, Outcome::Pass(_));
    out.push((Check::Dbt, dbt));
    let plan = verification(cfg);
    let plan_ok = matches!(plan, Outcome::Pass(_) | Outcome::Warn(_));
    out.push((Check::Verification, plan));
    out.push((
        Check::DbtDebug,
        dbt_debug(cfg, offline, dbt_ok, plan_ok).await,
    ));
    if !offline {
        out.push((Check::Forge, forge(cfg).await));
        for agent in cfg.agents.values() {
            if let Runner::Llm(llm) = &agent.runner {
                out.push((
                    Check::Agent(agent.name.clone()),
                    model(&llm.base_url, llm.api_key_env.as_deref()).await,
                ));
            }
        }
    }
    out
}

/// What a failed Slack call means for a check made with `var`'s token.
fn slack_problem(
    api_url: &str,
    method: &'static str,
    var: &'static str,
    err: SlackError,
) -> Problem {
    match err {
        SlackError::Api(code) if is_token_error(&code) => Problem::SlackTokenRejected { var, code },
        SlackError::Api(code) | SlackError::NotFound(code) => Problem::SlackApi { method, code },
        SlackError::Http(why) => Problem::Unreachable {
            host: host_of(api_url),
            why,
            var: "SLACK_API_URL",
        },
        SlackError::Timeout => Problem::Unreachable {
            host: host_of(api_url),
            why: format!("no answer within {}s", CALL_TIMEOUT.as_secs()),
            var: "SLACK_API_URL",
        },
        SlackError::RateLimited { retry_after } => Problem::SlackApi {
            method,
            code: format!("ratelimited (retry after {}s)", retry_after.as_secs()),
        },
    }
}

async fn slack_checks(cfg: &Config, out: &mut Vec<(Check, Outcome)>) {
    let api = &cfg.slack.api_url;
    let bot = cfg.slack.bot_token.expose();
    let auth = slack::call(api, bot, "auth.test", &[], CALL_TIMEOUT).await;
    let scopes = match auth {
        Ok(answer) => {
            let who = format!(
                "works as @{} in {}",
                answer.body["user"].as_str().unwrap_or("?"),
                answer.body["team"].as_str().unwrap_or("?")
            );
            out.push((Check::BotToken, Outcome::Pass(who)));
            Some(answer.scopes)
        }
        Err(e) => {
            out.push((
                Check::BotToken,
                Outcome::Fail(slack_problem(api, "auth.test", "SLACK_BOT_TOKEN", e)),
            ));
            None
        }
    };

    let app = cfg.slack.app_token.expose();
    let socket = match slack::call(api, app, "apps.connections.open", &[], CALL_TIMEOUT).await {
        Ok(_) => Outcome::Pass("opens a Socket Mode connection".into()),
        Err(e) => Outcome::Fail(slack_problem(
            api,
            "apps.connections.open",
            "SLACK_APP_TOKEN",
            e,
        )),
    };
    out.push((Check::AppToken, socket));

    let channels = configured_channels(cfg);
    let Some(granted) = scopes else {
        let why = "not checked: the bot token does not work";
        out.push((Check::Scopes, Outcome::Skipped(why.into())));
        out.extend(
            channels
                .into_iter()
                .map(|c| (Check::Channel(c), Outcome::Skipped(why.into()))),
        );
        return;
    };
    let wanted = manifest::bot_scopes();
    out.push((
        Check::Scopes,
        match granted {
            None => Outcome::Warn(Problem::ScopesNotReported),
            Some(header) => match missing_scopes(&wanted, &parse_scopes(&header)).as_slice() {
                [] => Outcome::Pass(format!(
                    "has the {} scopes of data/slack-app-manifest.yml",
                    wanted.len()
                )),
                missing => Outcome::Fail(Problem::MissingScopes(missing.to_vec())),
            },
        },
    ));

    match list_channels(api, bot).await {
        Ok(known) => {
            for channel in channels {
                let key = normalize_channel(&channel);
                // The probe lists the token's own workspace: a workspace
                // written before the channel is not checked.
                let key = split_workspace(&key).1;
                let found = known
                    .iter()
                    .find(|(id, name, _)| *id == key || *name == key);
                let outcome = match found {
                    None => Outcome::Fail(Problem::ChannelNotFound {
                        channel: channel.clone(),
                    }),
                    Some((_, _, false)) => Outcome::Fail(Problem::NotInChannel {
                        channel: channel.clone(),
                    }),
                    Some((id, _, true)) => Outcome::Pass(format!("{id}, the bot is a member")),
                };
                out.push((Check::Channel(channel), outcome));
            }
        }
        Err(e) => {
            let why = format!("not checked: conversations.list failed ({e})");
            out.extend(
                channels
                    .into_iter()
                    .map(|c| (Check::Channel(c), Outcome::Skipped(why.clone()))),
            );
        }
    }
}

/// Every channel a schedule notifies or heals in, once each, in file order.
fn configured_channels(cfg: &Config) -> Vec<String> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for s in cfg.schedules.iter() {
        let mut names = s.failure_channels();
        names.extend(s.healing_channel().map(str::to_string));
        for name in names {
            let key = normalize_channel(&name);
            if !seen.contains(&key) {
                seen.push(key);
                out.push(name);
            }
        }
    }
    out
}

/// `(id, normalized name, bot is member)` of every channel the bot can see.
async fn list_channels(api: &str, bot: &str) -> Result<Vec<(String, String, bool)>, SlackError> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    // Bounded: 50 pages of 1000 channels is more than any workspace we serve.
    for _ in 0..50 {
        let mut params = vec![
            ("types", "public_channel,private_channel"),
            ("limit", "1000"),
            ("exclude_archived", "true"),
        ];
        if !cursor.is_empty() {
            params.push(("cursor", cursor.as_str()));
        }
        let answer = slack::call(api, bot, "conversations.list", &params, CALL_TIMEOUT).await?;
        for ch in answer.body["channels"].as_array().into_iter().flatten() {
            out.push((
                ch["id"].as_str().unwrap_or_default().to_string(),
                ch["name"].as_str().unwrap_or_default().to_lowercase(),
                ch["is_member"].as_bool().unwrap_or(false),
            ));
        }
        cursor = answer.body["response_metadata"]["next_cursor"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if cursor.is_empty() {
            break;
        }
    }
    Ok(out)
}

async fn repository(cfg: &Config, offline: bool) -> Outcome {
    let Some(repo) = cfg.heal.repo.as_deref() else {
        return Outcome::Skipped(
            "not set (SELFHEAL_REPO): command agents work in a scratch folder".into(),
        );
    };
    let shown = crate::workspace::redact_credentials(repo);
    if offline && crate::workspace::is_url(repo) {
        return Outcome::Skipped(format!("{shown}: not checked (--offline)"));
    }
    match crate::workspace::probe_remote(repo).await {
        Ok((default, branches)) => Outcome::Pass(format!(
            "{shown}: {branches} branches, default `{}`",
            default.as_deref().unwrap_or("?")
        )),
        Err(e) => Outcome::Fail(Problem::RepositoryUnreachable {
            repo: shown,
            why: git_reason(&format!("{e:#}")),
        }),
    }
}

async fn run_logs(cfg: &Config, offline: bool) -> Outcome {
    let Some(settings) = &cfg.heal.run_log_source else {
        return Outcome::Skipped(
            "not set (SELFHEAL_RUN_LOGS or SELFHEAL_RUN_LOG_SOURCE): sessions read the notification only".into(),
        );
    };
    let what = match settings {
        SourceSettings::Dir(dir) => {
            if !dir.is_dir() {
                let why = if dir.exists() {
                    "not a folder"
                } else {
                    "no such folder"
                };
                return Outcome::Fail(Problem::RunLogsMissing {
                    dir: dir.display().to_string(),
                    why: why.into(),
                });
            }
            "dir"
        }
        SourceSettings::Paradime(_) if offline => {
            return Outcome::Skipped("Paradime: not checked (--offline)".into())
        }
        SourceSettings::DbtCloud(_) if offline => {
            return Outcome::Skipped("dbt Cloud: not checked (--offline)".into())
        }
        SourceSettings::Paradime(_) => "Paradime",
        SourceSettings::DbtCloud(_) => "dbt Cloud",
    };
    let source = match Source::from_settings(settings) {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Fail(Problem::RunLogSource {
                what: what.into(),
                why: format!("{e:#}"),
            })
        }
    };
    match source.probe().await {
        Ok(seen) => Outcome::Pass(format!("{what}: {seen}")),
        Err(e) => match settings {
            SourceSettings::Dir(dir) => Outcome::Fail(Problem::RunLogsMissing {
                dir: dir.display().to_string(),
                why: e.root_cause().to_string(),
            }),
            _ => Outcome::Fail(Problem::RunLogSource {
                what: what.into(),
                why: format!("{e:#}"),
            }),
        },
    }
}

/// The executable as the OS would find it: a path, or a name on PATH.
fn find_executable(exe: &Path) -> Option<PathBuf> {
    if exe.components().count() > 1 {
        return exe.is_file().then(|| exe.to_path_buf());
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(exe))
        .find(|f| f.is_file())
}

async fn dbt_found(exe: &Path) -> Outcome {
    let Some(path) = find_executable(exe) else {
        return Outcome::Fail(Problem::DbtNotFound {
            exe: exe.display().to_string(),
        });
    };
    let version = tokio::process::Command::new(&path)
        .arg("--version")
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(60), version).await {
        Ok(Ok(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            // `Core:\n  - installed: 1.10.2` (dbt ≥ 1.5), or `installed version: 1.4.0`.
            let version = text
                .lines()
                .find_map(|l| {
                    l.split_once("installed")
                        .map(|(_, v)| v.trim_start_matches([':', ' ', 'v']).trim())
                })
                .filter(|v| !v.is_empty())
                .map(|v| v.split_whitespace().next().unwrap_or(v).to_string())
                .unwrap_or_else(|| "?".into());
            Outcome::Pass(format!("{} (dbt-core {version})", path.display()))
        }
        _ => Outcome::Fail(Problem::DbtNotFound {
            exe: format!("{} --version", path.display()),
        }),
    }
}

/// dbt as configured, for planning and the check's `dbt debug`.
fn base_dbt(cfg: &Config) -> Dbt {
    Dbt {
        exe: cfg.heal.dbt.exe.clone(),
        profiles_dir: cfg.heal.dbt.profiles_dir.clone(),
        target: None,
        env: vec![],
        timeout: DBT_DEBUG_TIMEOUT.min(cfg.heal.dbt.timeout),
        read_only: false,
    }
}

/// The local project, when the repository is a local path.
fn local_project(cfg: &Config) -> Option<PathBuf> {
    let repo = cfg.heal.repo.as_deref()?;
    (!crate::workspace::is_url(repo)).then(|| Path::new(repo).join(&cfg.heal.project_subdir))
}

/// Where sessions build, read from the local repository's profile (a
/// remote one is read per session, from the clone).
fn verification(cfg: &Config) -> Outcome {
    if cfg.heal.repo.is_none() {
        return Outcome::Skipped("none (no SELFHEAL_REPO)".into());
    }
    let Some(project) = local_project(cfg) else {
        return Outcome::Skipped(
            "decided per session from the clone's profile (SELFHEAL_REPO is remote)".into(),
        );
    };
    if !project.is_dir() {
        // The repository line already says why; a second failure would repeat it.
        return Outcome::Skipped("not checked: the repository is not reachable".into());
    }
    match isolate::load_plan(
        &base_dbt(cfg),
        &project,
        cfg.heal.dbt.ci_target.as_deref(),
        cfg.heal.dbt.prod_target.as_deref(),
        cfg.heal.dbt.state_dir.is_some(),
    ) {
        Ok((Plan::CompileOnly { why, .. }, _, _)) => Outcome::Warn(Problem::CompileOnly { why }),
        Ok((plan, _, _)) => Outcome::Pass(plan.describe(true)),
        Err(e) => Outcome::Fail(Problem::PlanRefused {
            why: format!("{e:#}"),
        }),
    }
}

/// `dbt debug` with the profile a session would get: it proves dbt can
/// connect where verification runs, without opening production for writing.
async fn dbt_debug(cfg: &Config, offline: bool, dbt_ok: bool, plan_ok: bool) -> Outcome {
    let Some(project) = local_project(cfg) else {
        return Outcome::Skipped(
            "needs a local SELFHEAL_REPO (a remote one is checked per session)".into(),
        );
    };
    if offline {
        return Outcome::Skipped("not checked (--offline)".into());
    }
    if !dbt_ok || !plan_ok {
        return Outcome::Skipped("not checked: dbt or the verification place is not ready".into());
    }
    let session = match TempDir::new() {
        Ok(d) => d,
        Err(e) => {
            return Outcome::Fail(Problem::DbtDebugFailed {
                errors: format!("cannot make a temporary folder: {e}"),
            })
        }
    };
    let base = base_dbt(cfg);
    let inputs = isolate::Inputs {
        base: &base,
        project_dir: &project,
        // No copy of production's database: `dbt debug` only connects, and a
        // check should not copy a warehouse. A fresh file stands in for it.
        source_project_dir: None,
        session_dir: session.path(),
        ci_target: cfg.heal.dbt.ci_target.as_deref(),
        prod_target: cfg.heal.dbt.prod_target.as_deref(),
        state_candidates: vec![],
        session_name: "check",
    };
    let mut isolation = match isolate::prepare(&inputs) {
        Ok(i) => i,
        Err(e) => {
            return Outcome::Fail(Problem::PlanRefused {
                why: format!("{e:#}"),
            })
        }
    };
    // dbt writes logs and a target folder next to the project unless told otherwise.
    isolation.dbt.env.push((
        "DBT_LOG_PATH".into(),
        session.path().join("logs").display().to_string(),
    ));
    isolation.dbt.env.push((
        "DBT_TARGET_PATH".into(),
        session.path().join("target").display().to_string(),
    ));
    let target = isolation.dbt.target.clone().unwrap_or_default();
    match isolation.dbt.run(&project, &["debug".to_string()]).await {
        Ok(run) if run.success => Outcome::Pass(format!(
            "connects with the session's profile (target `{target}`)"
        )),
        Ok(run) => Outcome::Fail(Problem::DbtDebugFailed {
            errors: dbt_debug_errors(&run.output),
        }),
        Err(e) => Outcome::Fail(Problem::DbtDebugFailed {
            errors: format!("{e:#}"),
        }),
    }
}

async fn forge(cfg: &Config) -> Outcome {
    let heal = &cfg.heal;
    let forge = match Forge::from_settings(heal) {
        Ok(forge) => forge.with_retry(RetryPolicy {
            max_attempts: 1,
            request_timeout: CALL_TIMEOUT,
            ..RetryPolicy::default()
        }),
        Err(_) if heal.github_token.is_some() => return Outcome::Fail(Problem::ForgeRepoUnknown),
        Err(e) => {
            return Outcome::Fail(Problem::Forge {
                why: format!("{e:#}"),
            })
        }
    };
    let (Some(repo), Some(asked)) = (forge.repo(), forge.can_push().await) else {
        let kind = heal
            .forge
            .kind
            .or_else(|| {
                let remote = heal.repo.as_deref()?;
                crate::forge::remote::parse_remote(remote, None).map(|r| r.kind)
            })
            .unwrap_or(ForgeKind::GitHub);
        return Outcome::Skipped(format!(
            "no {}: sessions push the branch and post a compare link",
            token_var(kind)
        ));
    };
    // Where the API is, for an unreachable forge.
    let (api, var) = match &forge {
        Forge::GitHub(_) => (heal.github_api_url.clone(), "SELFHEAL_GITHUB_API_URL"),
        _ => (
            heal.forge.api_url.clone().unwrap_or_default(),
            "SELFHEAL_FORGE_API_URL",
        ),
    };
    match asked {
        Ok(true) => Outcome::Pass(format!(
            "the token can push to {repo} and open pull requests"
        )),
        Ok(false) => Outcome::Fail(Problem::ForgeCannotPush { repo }),
        Err(ForgeError::Unauthorized) => Outcome::Fail(Problem::ForgeTokenRejected { repo }),
        Err(ForgeError::NotFound) => Outcome::Fail(Problem::ForgeRepoNotFound { repo }),
        Err(ForgeError::Http(why)) if why.starts_with("sending request") => {
            Outcome::Fail(Problem::Unreachable {
                host: host_of(&api),
                why: why.trim_start_matches("sending request: ").to_string(),
                var,
            })
        }
        Err(ForgeError::Timeout) => Outcome::Fail(Problem::Unreachable {
            host: host_of(&api),
            why: format!("no answer within {}s", CALL_TIMEOUT.as_secs()),
            var,
        }),
        Err(e) => Outcome::Fail(Problem::Forge { why: e.to_string() }),
    }
}

/// The variable that holds `kind`'s token.
fn token_var(kind: ForgeKind) -> &'static str {
    match kind {
        ForgeKind::GitHub => "SELFHEAL_GITHUB_TOKEN",
        ForgeKind::GitLab => "SELFHEAL_GITLAB_TOKEN",
        ForgeKind::Gitea => "SELFHEAL_GITEA_TOKEN",
        ForgeKind::Bitbucket => "SELFHEAL_BITBUCKET_TOKEN",
        ForgeKind::AzureDevOps => "SELFHEAL_AZURE_DEVOPS_TOKEN",
    }
}

/// `GET {base}/models`: the endpoint answers and takes the key.
async fn model(base_url: &str, key_env: Option<&str>) -> Outcome {
    let url = format!("{}/models", base_url.trim_end_matches('/'));
    let unreachable = |why: String| {
        Outcome::Fail(Problem::Unreachable {
            host: host_of(base_url),
            why,
            var: "the agent's base_url",
        })
    };
    let parsed = match url::Url::parse(&url) {
        Ok(u) => u,
        Err(e) => return unreachable(format!("not a URL: {e}")),
    };
    let transport = match Transport::for_url(&parsed) {
        Ok(t) => t,
        Err(e) => return unreachable(format!("{e:#}")),
    };
    let mut request = hyper::Request::builder()
        .method("GET")
        .uri(url.as_str())
        .header("user-agent", "selfheal-check");
    let key = key_env
        .and_then(|k| std::env::var(k).ok())
        .filter(|k| !k.is_empty());
    // A key goes only over TLS or to this machine.
    if let Some(key) = key.filter(|_| parsed.scheme() == "https" || is_loopback(&parsed)) {
        match hyper::header::HeaderValue::from_str(&format!("Bearer {key}")) {
            Ok(mut v) => {
                v.set_sensitive(true);
                request = request.header("authorization", v);
            }
            Err(_) => return unreachable("the API key is not a valid header value".into()),
        }
    }
    let Ok(request) = request.body(http_body_util::Full::new(hyper::body::Bytes::new())) else {
        return unreachable("cannot build the request".into());
    };
    match tokio::time::timeout(CALL_TIMEOUT, transport.request(request)).await {
        Err(_) => unreachable(format!("no answer within {}s", CALL_TIMEOUT.as_secs())),
        Ok(Err(e)) => unreachable(unreachable_reason(&e)),
        Ok(Ok(resp)) if resp.status().is_success() => Outcome::Pass(format!("{url} answers")),
        Ok(Ok(resp)) => Outcome::Fail(Problem::ModelRejected {
            url: crate::workspace::redact_credentials(&url),
            status: resp.status().as_u16(),
            key_env: key_env.map(str::to_string),
        }),
    }
}

/// The check's own session folder, removed when the check is done.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("selfheal-check-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
