//! A fresh, disposable copy of the dbt repository for one healing session.
//!
//! What it owns: a temporary directory under the configured root, the clone inside
//! it, the session's branch, its commit and its push. Every git operation runs the
//! `git` CLI (no libgit2) with a timeout, no terminal prompts, a fixed identity and
//! stderr captured into the error, with credentials in URLs redacted.
//!
//! What it must not do:
//! - push to a base branch. [`Workspace::push`] refuses the branch the session
//!   started from, the remote's default branch and the usual long-lived names
//!   (`main`, `master`, `develop`, `production`), and it never force-pushes;
//! - modify the source repository. A local path is cloned with `--no-hardlinks`,
//!   so the clone shares no files with it;
//! - commit what dbt builds. Only the project's source files are staged: never
//!   dbt's target, log and package folders, database files, nor what the
//!   session's preparation created ([`BuildOutputs`]), whatever `.gitignore` says;
//! - leave anything behind. The temporary directory is removed by
//!   [`Workspace::remove`] or, best effort, when the workspace is dropped, also when
//!   [`Workspace::create`] fails half-way;
//! - leak a token. A remote URL such as `https://x-access-token:TOKEN@host/o/r.git`
//!   is never logged or put into an error, and it is not left in the clone's
//!   `.git/config` either (the agent works in that directory): origin is rewritten
//!   to the credential-free URL and the authenticated one is kept in memory for push.
//!
//! Depth: a local path is cloned in full (it is cheap and needs no network); a URL is
//! cloned with `--depth 50` of the base branch only, which is plenty for an agent
//! that edits the tip and for a push whose parent the remote already has.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use tokio::process::Command;

/// Every git command is killed after this long: a hung fetch must not hang a session.
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// How deep a clone over the network goes (see the module docs).
const URL_CLONE_DEPTH: &str = "50";

/// Branch names the bot never pushes to, whatever the schedule's base branch is.
const PROTECTED_BRANCHES: &[&str] = &["main", "master", "develop", "production"];

/// The identity used for commits unless [`Workspace::with_author`] says otherwise.
pub const DEFAULT_AUTHOR_NAME: &str = "selfheal";
/// See [`DEFAULT_AUTHOR_NAME`].
pub const DEFAULT_AUTHOR_EMAIL: &str = "selfheal@users.noreply.github.com";

/// A clone of the dbt repository in its own temporary directory.
pub struct Workspace {
    /// The work tree the agent edits.
    pub dir: PathBuf,
    /// The branch the session started from; pull requests target it.
    pub base_branch: String,
    /// The commit the session started from; diffs are taken against it.
    pub base_sha: String,
    /// The remote's default branch (what `origin/HEAD` points at), never pushed to.
    default_branch: String,
    /// The remote as given, possibly with credentials; only ever passed to git.
    remote: String,
    author_name: String,
    author_email: String,
    /// What is never committed.
    outputs: BuildOutputs,
    /// The temporary directory that holds `dir`; removed on drop.
    root: TempRoot,
}

/// The paths dbt and the session's preparation write, which are never source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOutputs {
    /// Folders relative to the repository root (`target`, `jaffle/logs`, …).
    pub folders: Vec<String>,
    /// Files the preparation created or changed (`package-lock.yml`).
    pub files: Vec<String>,
}

/// File endings of databases and their journals.
const DATABASE_ENDINGS: &[&str] = &[
    ".duckdb",
    ".duckdb.wal",
    ".db",
    ".db-wal",
    ".db-shm",
    ".sqlite",
    ".sqlite3",
    ".wal",
];

impl BuildOutputs {
    /// dbt's folders for a project at `project` (relative to the repository)
    /// whose `dbt_project.yml` names `target`, `logs` and `packages`.
    pub fn for_project(project: &Path, target: &str, logs: &str, packages: &str) -> BuildOutputs {
        let prefix = |f: &str| -> String {
            let p = project.join(f);
            let s = p.to_string_lossy();
            s.trim_start_matches("./").trim_end_matches('/').to_string()
        };
        let mut folders: Vec<String> = [target, logs, packages, "dbt_modules", "logs"]
            .iter()
            .map(|f| prefix(f))
            .collect();
        // dbt also writes logs/ where it was started.
        folders.push("logs".into());
        folders.sort();
        folders.dedup();
        BuildOutputs {
            folders,
            files: vec![],
        }
    }

    /// Whether `path` (relative to the repository) is build output.
    pub fn contains(&self, path: &str) -> bool {
        let lower = path.to_ascii_lowercase();
        self.files.iter().any(|f| f == path)
            || DATABASE_ENDINGS.iter().any(|e| lower.ends_with(e))
            || self.folders.iter().any(|f| {
                path.strip_prefix(f.as_str())
                    .is_some_and(|r| r.starts_with('/'))
            })
    }
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("dir", &self.dir)
            .field("base_branch", &self.base_branch)
            .field("base_sha", &self.base_sha)
            .field("default_branch", &self.default_branch)
            .field("remote", &redact_credentials(&self.remote))
            .finish_non_exhaustive()
    }
}

impl Workspace {
    /// Clones `repo` (a URL or a local path) into a new temporary directory under
    /// `root` and checks out `base` (the schedule's `git_branch`) or, when `None`,
    /// the remote's default branch. The source repository is never modified.
    pub async fn create(repo: &str, base: Option<&str>, root: &Path) -> anyhow::Result<Workspace> {
        let root = TempRoot::create(root).await?;
        let dir = root.path.join("repo");
        let shown = redact_credentials(repo);

        // Ask the remote what its default branch is and whether `base` exists, before
        // cloning, so that a wrong schedule gives a clear error rather than git's.
        let (default_branch, heads) = remote_heads(repo)
            .await
            .with_context(|| format!("reading branches of {shown}"))?;
        let base_branch = match base {
            Some(base) => {
                check_branch_name(base).context("checking the base branch name")?;
                if !heads.iter().any(|h| h == base) {
                    bail!(
                        "base branch `{base}` does not exist in {shown} (it has: {})",
                        heads.join(", ")
                    );
                }
                base.to_string()
            }
            None => default_branch.clone().ok_or_else(|| {
                anyhow!(
                    "{shown} has no default branch (is it empty?); set the schedule's git_branch"
                )
            })?,
        };

        let dir_arg = dir.to_string_lossy().into_owned();
        let mut args = vec!["clone", "--quiet", "--no-tags", "--branch", &base_branch];
        if is_url(repo) {
            args.extend(["--depth", URL_CLONE_DEPTH]);
        } else {
            args.push("--no-hardlinks");
        }
        args.extend(["--", repo, &dir_arg]);
        git(None, &args)
            .await
            .with_context(|| format!("cloning {shown}"))?;

        // Keep credentials out of the work tree the agent can read.
        let clean = strip_credentials(repo);
        if clean != repo {
            git(Some(&dir), &["remote", "set-url", "origin", &clean])
                .await
                .context("removing credentials from the clone's origin")?;
        }

        let base_sha = git(Some(&dir), &["rev-parse", "--verify", "HEAD^{commit}"])
            .await
            .context("reading the base commit")?
            .trim()
            .to_string();

        Ok(Workspace {
            dir,
            base_branch: base_branch.clone(),
            base_sha,
            default_branch: default_branch.unwrap_or(base_branch),
            remote: repo.to_string(),
            author_name: DEFAULT_AUTHOR_NAME.to_string(),
            author_email: DEFAULT_AUTHOR_EMAIL.to_string(),
            outputs: BuildOutputs::for_project(Path::new("."), "target", "logs", "dbt_packages"),
            root,
        })
    }

    /// Commits as `name <email>` instead of the default selfheal identity.
    pub fn with_author(mut self, name: &str, email: &str) -> Workspace {
        self.author_name = name.to_string();
        self.author_email = email.to_string();
        self
    }

    /// Says what is build output (never committed): dbt's folders of the
    /// project, and the changes present now (made by the preparation).
    pub async fn set_build_outputs(&mut self, mut outputs: BuildOutputs) -> anyhow::Result<()> {
        self.outputs = outputs.clone();
        outputs.files = self.changed_files().await?;
        self.outputs = outputs;
        Ok(())
    }

    /// The remote's default branch (what `origin/HEAD` points at).
    pub fn default_branch(&self) -> &str {
        &self.default_branch
    }

    /// Creates and checks out `branch` (e.g. `selfheal/hourly_marts/run-48213`) at
    /// the base commit. Refuses protected names, so that the branch can be pushed.
    pub async fn start_branch(&self, branch: &str) -> anyhow::Result<()> {
        self.check_pushable(branch)?;
        self.git(&["checkout", "--quiet", "-b", branch, &self.base_sha])
            .await
            .with_context(|| format!("creating branch {branch}"))?;
        Ok(())
    }

    /// Continues an existing `selfheal/…` branch from the remote (a follow-up
    /// on an open pull request): checks it out and makes its head the new
    /// base, so diffs and changed files show only the follow-up's changes.
    pub async fn continue_branch(&mut self, branch: &str) -> anyhow::Result<()> {
        self.check_pushable(branch)?;
        let refspec = format!("refs/heads/{branch}");
        self.git(&["fetch", "--quiet", &self.remote, &refspec])
            .await
            .with_context(|| {
                format!(
                    "fetching {branch} from {}",
                    redact_credentials(&self.remote)
                )
            })?;
        self.git(&["checkout", "--quiet", "-B", branch, "FETCH_HEAD"])
            .await
            .with_context(|| format!("checking out {branch}"))?;
        self.base_sha = self.git(&["rev-parse", "HEAD"]).await?.trim().to_string();
        Ok(())
    }

    /// The full diff of the session's changes against the base commit, committed or
    /// not, new files included (for the pull-request body).
    ///
    /// This stages the source changes: the index is the workspace's, and
    /// [`Workspace::commit`] stages the same.
    pub async fn diff(&self) -> anyhow::Result<String> {
        self.stage_sources().await?;
        self.git(&[
            "diff",
            "--cached",
            "--no-color",
            "--no-ext-diff",
            &self.base_sha,
            "--",
        ])
        .await
        .context("diffing against the base commit")
    }

    /// `git diff --stat` of the same changes as [`Workspace::diff`].
    pub async fn diff_stat(&self) -> anyhow::Result<String> {
        self.stage_sources().await?;
        self.git(&[
            "diff",
            "--cached",
            "--no-color",
            "--stat",
            &self.base_sha,
            "--",
        ])
        .await
        .context("summarising the diff against the base commit")
    }

    /// The source paths changed since the base commit (both sides of a
    /// rename), sorted; build output is left out and unstaged.
    pub async fn changed_files(&self) -> anyhow::Result<Vec<String>> {
        self.stage_sources().await
    }

    /// Stages exactly the changed source files and returns them.
    async fn stage_sources(&self) -> anyhow::Result<Vec<String>> {
        // What changed, as git status sees it (it hashes nothing new), less
        // the build output; only that is staged (a database file can be large).
        let status = self
            .git(&[
                "status",
                "--porcelain=v1",
                "-z",
                "--untracked-files=all",
                "--no-renames",
            ])
            .await
            .context("listing changes")?;
        let candidates: Vec<&str> = status
            .split('\0')
            .filter_map(|entry| entry.get(3..))
            .filter(|path| !path.is_empty() && !self.outputs.contains(path))
            .collect();
        self.git(&["reset", "--quiet"])
            .await
            .context("clearing the index")?;
        for batch in candidates.chunks(200) {
            let mut args = vec!["add", "--all", "--"];
            args.extend(batch.iter().copied());
            self.git(&args).await.context("staging changes")?;
        }
        let out = self
            .git(&[
                "diff",
                "--cached",
                "--name-only",
                "--no-renames",
                "-z",
                &self.base_sha,
                "--",
            ])
            .await
            .context("listing changed files")?;
        let mut files: Vec<String> = out
            .split('\0')
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect();
        files.sort();
        Ok(files)
    }

    /// Commits every change in the work tree with `message` and returns the new sha.
    /// Fails when there is nothing to commit or when the current branch is one the
    /// bot may not push (call [`Workspace::start_branch`] first).
    pub async fn commit(&self, message: &str) -> anyhow::Result<String> {
        let current = self
            .git(&["symbolic-ref", "--quiet", "--short", "HEAD"])
            .await
            .context("reading the current branch")?;
        self.check_pushable(current.trim())
            .context("committing needs a session branch")?;
        self.stage_sources().await?;
        if self.git_status(&["diff", "--cached", "--quiet"]).await? {
            bail!("nothing to commit: the work tree has no changes");
        }
        self.git(&["commit", "--quiet", "--no-verify", "-m", message])
            .await
            .context("committing")?;
        Ok(self
            .git(&["rev-parse", "--verify", "HEAD^{commit}"])
            .await
            .context("reading the new commit")?
            .trim()
            .to_string())
    }

    /// Pushes `branch` to the remote as a new branch of the same name, without force.
    /// Refuses, pushing nothing, when `branch` is the base branch, the remote's
    /// default branch or a protected name: the bot never pushes to a base branch.
    pub async fn push(&self, branch: &str) -> anyhow::Result<()> {
        self.check_pushable(branch)?;
        let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
        // The in-memory remote carries the credentials that origin no longer has.
        self.git(&["push", "--quiet", "--no-verify", &self.remote, &refspec])
            .await
            .with_context(|| format!("pushing {branch} to {}", redact_credentials(&self.remote)))?;
        Ok(())
    }

    /// Removes the temporary directory now (dropping the workspace does the same,
    /// best effort, without reporting errors).
    pub async fn remove(mut self) -> anyhow::Result<()> {
        let path = self.root.path.clone();
        self.root.removed = true;
        tokio::fs::remove_dir_all(&path)
            .await
            .with_context(|| format!("removing workspace {}", path.display()))
    }

    /// Why `branch` may not be pushed, if it may not.
    fn check_pushable(&self, branch: &str) -> anyhow::Result<()> {
        check_branch_name(branch)?;
        let short = branch.strip_prefix("refs/heads/").unwrap_or(branch);
        let protected = PROTECTED_BRANCHES
            .iter()
            .copied()
            .chain([self.base_branch.as_str(), self.default_branch.as_str()])
            .any(|p| p.eq_ignore_ascii_case(short));
        if protected {
            bail!(
                "refusing to use `{branch}`: selfheal never pushes to a base or protected branch"
            );
        }
        Ok(())
    }

    async fn git(&self, args: &[&str]) -> anyhow::Result<String> {
        let ident = self.identity();
        let mut full: Vec<&str> = ident.iter().map(String::as_str).collect();
        full.extend_from_slice(args);
        git(Some(&self.dir), &full).await
    }

    /// Runs a git command whose exit status is the answer: `Ok(true)` for 0,
    /// `Ok(false)` for 1, an error otherwise.
    async fn git_status(&self, args: &[&str]) -> anyhow::Result<bool> {
        let out = run_git(Some(&self.dir), args).await?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(git_failure(args, &out)),
        }
    }

    fn identity(&self) -> [String; 6] {
        [
            "-c".into(),
            format!("user.name={}", self.author_name),
            "-c".into(),
            format!("user.email={}", self.author_email),
            "-c".into(),
            // The bot has no signing key; a global signing setting must not break it.
            "commit.gpgsign=false".into(),
        ]
    }
}

/// The temporary directory of one workspace. Dropping it removes it, so a workspace
/// that fails half-way through [`Workspace::create`] leaves nothing behind.
struct TempRoot {
    path: PathBuf,
    removed: bool,
}

impl TempRoot {
    async fn create(parent: &Path) -> anyhow::Result<TempRoot> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("creating workspace root {}", parent.display()))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "selfheal-ws-{}-{}-{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = parent.join(name);
        // `create_dir`, not `create_dir_all`: an existing directory is a collision.
        tokio::fs::create_dir(&path)
            .await
            .with_context(|| format!("creating workspace {}", path.display()))?;
        Ok(TempRoot {
            path,
            removed: false,
        })
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if !self.removed {
            // Best effort: Drop cannot report, and a leftover directory is harmless.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs git in `dir` and returns its trimmed stdout: for the repositories
/// the demo and the drill build for themselves.
pub(crate) async fn git_out(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    Ok(git(Some(dir), args).await?.trim().to_string())
}

/// Runs git and returns its stdout, or an error with its (redacted) stderr.
async fn git(cwd: Option<&Path>, args: &[&str]) -> anyhow::Result<String> {
    let out = run_git(cwd, args).await?;
    if !out.status.success() {
        return Err(git_failure(args, &out));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| anyhow!("git {} printed non-UTF-8 output", shown_args(args)))
}

async fn run_git(cwd: Option<&Path>, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        // Never open an editor or a pager, and keep messages in English for errors.
        .env("GIT_EDITOR", "true")
        .env("GIT_PAGER", "cat")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting git {}", shown_args(args)))?;
    match tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => out.with_context(|| format!("running git {}", shown_args(args))),
        // Dropping the future drops the child, which kills it (`kill_on_drop`).
        Err(_) => bail!(
            "git {} timed out after {}s",
            shown_args(args),
            GIT_TIMEOUT.as_secs()
        ),
    }
}

fn git_failure(args: &[&str], out: &std::process::Output) -> anyhow::Error {
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow!(
        "git {} failed ({}): {}",
        shown_args(args),
        out.status,
        redact_credentials(stderr.trim())
    )
}

/// The arguments as they may appear in an error: no identity noise, no credentials.
fn shown_args(args: &[&str]) -> String {
    let mut shown = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if *arg == "-c" {
            it.next();
            continue;
        }
        shown.push(redact_credentials(arg));
    }
    shown.join(" ")
}

/// What `git ls-remote` sees of `repo`, for `selfheal check`: its default
/// branch and how many branches it has. Reads only.
pub async fn probe_remote(repo: &str) -> anyhow::Result<(Option<String>, usize)> {
    let (default, heads) = remote_heads(repo).await?;
    Ok((default, heads.len()))
}

/// `(default branch, every branch)` of a remote, from `git ls-remote --symref`.
async fn remote_heads(repo: &str) -> anyhow::Result<(Option<String>, Vec<String>)> {
    let out = git(
        None,
        &["ls-remote", "--symref", "--", repo, "HEAD", "refs/heads/*"],
    )
    .await?;
    let mut default = None;
    let mut heads = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("ref: ") {
            // `ref: refs/heads/main\tHEAD`
            if let Some((target, "HEAD")) = rest.split_once('\t') {
                default = target.strip_prefix("refs/heads/").map(str::to_string);
            }
        } else if let Some((_, name)) = line.split_once('\t') {
            if let Some(head) = name.strip_prefix("refs/heads/") {
                heads.push(head.to_string());
            }
        }
    }
    Ok((default, heads))
}

/// Rejects names git would not accept as a branch, and names that would change the
/// meaning of a refspec (`+force`, `a:b`) or of a command line (`-x`).
fn check_branch_name(branch: &str) -> anyhow::Result<()> {
    let valid = !branch.is_empty()
        && !branch.starts_with(['-', '+', '/'])
        && !branch.ends_with(['/', '.'])
        && !branch.ends_with(".lock")
        && branch != "@"
        && !branch.contains("..")
        && !branch.contains("//")
        && !branch.contains("@{")
        && !branch.split('/').any(|part| part.starts_with('.'))
        && !branch.chars().any(|c| {
            c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
        });
    if !valid {
        bail!("`{branch}` is not a valid branch name");
    }
    Ok(())
}

/// True for anything git treats as a URL rather than a local path:
/// `scheme://...` and scp-like `user@host:path`.
/// Whether `repo` is a URL (else a local path).
pub fn is_url(repo: &str) -> bool {
    if repo.contains("://") {
        return true;
    }
    match repo.split_once(':') {
        // `C:\repo` style paths and `./a:b` have a slash before the colon or a
        // one-letter "host"; scp-like remotes have neither.
        Some((host, _)) => host.len() > 1 && !host.contains('/'),
        None => false,
    }
}

/// Replaces the user-info part of every `scheme://user[:password]@host` in `text`
/// with `***`, so that tokens in remote URLs never reach logs or errors.
pub fn redact_credentials(text: &str) -> String {
    rewrite_userinfo(text, Some("***"))
}

/// The URL without its user-info (`https://TOKEN@host/x` → `https://host/x`).
fn strip_credentials(url: &str) -> String {
    rewrite_userinfo(url, None)
}

fn rewrite_userinfo(text: &str, replacement: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        // The authority ends at the first '/', whitespace or quote.
        let end = after
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                if let Some(mask) = replacement {
                    out.push_str(mask);
                    out.push('@');
                }
                out.push_str(&authority[at + 1..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bare "origin" on disk with `main` (one file) and, optionally, more branches.
    struct Origin {
        _tmp: tempfile::TempDir,
        bare: PathBuf,
        root: PathBuf,
    }

    fn sh_git(cwd: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=seed", "-c", "user.email=seed@example.com"])
            .args(args)
            .current_dir(cwd)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn origin(extra_branches: &[&str]) -> Origin {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bare = tmp.path().join("origin.git");
        let seed = tmp.path().join("seed");
        sh_git(
            tmp.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "origin.git",
            ],
        );
        sh_git(tmp.path(), &["clone", "--quiet", "origin.git", "seed"]);
        std::fs::create_dir_all(seed.join("models")).expect("mkdir");
        std::fs::write(seed.join("models/orders.sql"), "select 1 as id\n").expect("write");
        sh_git(&seed, &["checkout", "--quiet", "-b", "main"]);
        sh_git(&seed, &["add", "."]);
        sh_git(&seed, &["commit", "--quiet", "-m", "seed"]);
        sh_git(&seed, &["push", "--quiet", "origin", "main"]);
        for branch in extra_branches {
            sh_git(&seed, &["checkout", "--quiet", "-b", branch]);
            std::fs::write(seed.join(format!("{branch}.txt")), "x\n").expect("write");
            sh_git(&seed, &["add", "."]);
            sh_git(&seed, &["commit", "--quiet", "-m", branch]);
            sh_git(&seed, &["push", "--quiet", "origin", branch]);
        }
        let root = tmp.path().join("workspaces");
        Origin {
            bare,
            root,
            _tmp: tmp,
        }
    }

    fn bare_ref(origin: &Origin, name: &str) -> Option<String> {
        let out = std::process::Command::new("git")
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{name}"),
            ])
            .current_dir(&origin.bare)
            .output()
            .expect("git runs");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn path(p: &Path) -> &str {
        p.to_str().expect("utf-8 path")
    }

    #[tokio::test]
    async fn a_session_branch_is_committed_and_pushed_to_the_remote() {
        // Arrange
        let origin = origin(&[]);
        let ws = Workspace::create(path(&origin.bare), None, &origin.root)
            .await
            .expect("create");
        assert_eq!(ws.base_branch, "main");
        assert_eq!(ws.default_branch(), "main");
        assert_eq!(Some(ws.base_sha.clone()), bare_ref(&origin, "main"));

        // Act
        let branch = "selfheal/hourly_marts/run-48213";
        ws.start_branch(branch).await.expect("start branch");
        std::fs::write(ws.dir.join("models/orders.sql"), "select 2 as id\n").expect("edit");
        std::fs::write(ws.dir.join("models/new.sql"), "select 3\n").expect("add");
        let diff = ws.diff().await.expect("diff");
        let stat = ws.diff_stat().await.expect("stat");
        let files = ws.changed_files().await.expect("files");
        let sha = ws
            .commit("fix(orders): select the right id")
            .await
            .expect("commit");
        ws.push(branch).await.expect("push");

        // Assert
        assert!(
            diff.contains("-select 1 as id") && diff.contains("+select 2 as id"),
            "{diff}"
        );
        assert!(
            diff.contains("models/new.sql"),
            "new files are in the diff: {diff}"
        );
        assert!(stat.contains("2 files changed"), "{stat}");
        assert_eq!(files, vec!["models/new.sql", "models/orders.sql"]);
        assert_eq!(bare_ref(&origin, branch), Some(sha.clone()));
        let log = sh_git(&origin.bare, &["log", "-1", "--format=%an <%ae>|%s", &sha]);
        assert_eq!(
            log.trim(),
            "selfheal <selfheal@users.noreply.github.com>|fix(orders): select the right id"
        );
        assert_eq!(
            bare_ref(&origin, "main"),
            Some(ws.base_sha.clone()),
            "main is untouched"
        );
    }

    #[tokio::test]
    async fn a_commit_holds_only_source_files_whatever_gitignore_says() {
        // Arrange: a repository with no .gitignore, a project in `shop/`.
        let origin = origin(&[]);
        let mut ws = Workspace::create(path(&origin.bare), None, &origin.root)
            .await
            .expect("create");
        ws.start_branch("selfheal/x/run-1").await.expect("branch");
        let dir = ws.dir.clone();
        let write = |rel: &str, text: &str| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        };
        // The preparation: packages and their lock file.
        write(
            "shop/dbt_packages/util/macros/m.sql",
            "{% macro m() %}{% endmacro %}",
        );
        write("shop/package-lock.yml", "packages: []\n");
        ws.set_build_outputs(BuildOutputs::for_project(
            Path::new("shop"),
            "target",
            "logs",
            "dbt_packages",
        ))
        .await
        .expect("outputs");

        // Act: the agent fixes a model; dbt builds.
        write("models/orders.sql", "select 2 as id\n");
        write("shop/target/run_results.json", "{}");
        write("shop/target/compiled/shop/models/orders.sql", "select 2");
        write("shop/logs/dbt.log", "log");
        write("logs/dbt.log", "log");
        write("shop/shop.duckdb", "db");
        write("shop/shop.duckdb.wal", "wal");
        write("/warehouse/Prod.DuckDB".trim_start_matches('/'), "db");
        let files = ws.changed_files().await.expect("files");
        let stat = ws.diff_stat().await.expect("stat");
        let sha = ws.commit("fix").await.expect("commit");

        // Assert
        assert_eq!(files, vec!["models/orders.sql"]);
        assert!(stat.contains("1 file changed"), "{stat}");
        let committed = sh_git(&ws.dir, &["show", "--name-only", "--format=", &sha]);
        assert_eq!(committed.trim(), "models/orders.sql");
    }

    #[test]
    fn build_outputs_are_recognised_by_path() {
        let outputs = BuildOutputs::for_project(Path::new("."), "target", "logs", "dbt_packages");
        let cases = [
            ("target/manifest.json", true),
            ("logs/dbt.log", true),
            ("dbt_packages/dbt_utils/macros/x.sql", true),
            ("jaffle_shop.duckdb", true),
            ("data/warehouse.DB", true),
            ("targets/x.sql", false),
            ("models/target.sql", false),
            ("models/orders.sql", false),
            ("macros/logs.sql", false),
        ];
        for (path, want) in cases {
            assert_eq!(outputs.contains(path), want, "{path}");
        }
    }

    #[tokio::test]
    async fn the_commit_author_can_be_configured() {
        let origin = origin(&[]);
        let ws = Workspace::create(path(&origin.bare), None, &origin.root)
            .await
            .expect("create")
            .with_author("healer", "healer@example.com");
        ws.start_branch("selfheal/x").await.expect("branch");
        std::fs::write(ws.dir.join("a.txt"), "a\n").expect("write");
        let sha = ws.commit("m").await.expect("commit");
        let who = sh_git(&ws.dir, &["log", "-1", "--format=%an <%ae>", &sha]);
        assert_eq!(who.trim(), "healer <healer@example.com>");
    }

    #[tokio::test]
    async fn pushing_a_base_or_protected_branch_is_refused_and_the_remote_is_unchanged() {
        let origin = origin(&["develop", "release"]);
        let ws = Workspace::create(path(&origin.bare), Some("release"), &origin.root)
            .await
            .expect("create");
        // Commit onto a session branch, then point the protected names at it locally,
        // so that a push that got through would really change the remote.
        ws.start_branch("selfheal/x").await.expect("branch");
        std::fs::write(ws.dir.join("a.txt"), "a\n").expect("write");
        ws.commit("m").await.expect("commit");
        for name in ["main", "develop", "release", "master", "production"] {
            sh_git(&ws.dir, &["branch", "-f", name, "HEAD"]);
        }
        let before = sh_git(&origin.bare, &["for-each-ref"]);

        for branch in [
            "main",
            "develop",
            "release",
            "master",
            "production",
            "Main",
            "refs/heads/main",
            "+main",
            "x:main",
            "-f",
            "",
        ] {
            let err = ws.push(branch).await.expect_err(branch);
            let msg = format!("{err:#}");
            assert!(
                msg.contains("refusing") || msg.contains("not a valid branch name"),
                "{branch}: {msg}"
            );
        }

        assert_eq!(sh_git(&origin.bare, &["for-each-ref"]), before);
    }

    #[tokio::test]
    async fn starting_or_committing_on_a_base_branch_is_refused() {
        let origin = origin(&[]);
        let ws = Workspace::create(path(&origin.bare), None, &origin.root)
            .await
            .expect("create");
        assert!(ws.start_branch("main").await.is_err());
        std::fs::write(ws.dir.join("a.txt"), "a\n").expect("write");
        let err = ws.commit("m").await.expect_err("on main");
        assert!(format!("{err:#}").contains("refusing"), "{err:#}");
    }

    #[tokio::test]
    async fn committing_nothing_is_an_error() {
        let origin = origin(&[]);
        let ws = Workspace::create(path(&origin.bare), None, &origin.root)
            .await
            .expect("create");
        ws.start_branch("selfheal/x").await.expect("branch");
        let err = ws.commit("m").await.expect_err("nothing to commit");
        assert!(format!("{err:#}").contains("nothing to commit"), "{err:#}");
    }

    #[tokio::test]
    async fn the_workspace_directory_is_gone_after_drop_and_after_remove() {
        let origin = origin(&[]);
        let ws = Workspace::create(path(&origin.bare), None, &origin.root)
            .await
            .expect("create");
        let dir = ws.dir.clone();
        assert!(dir.join("models/orders.sql").exists());
        drop(ws);
        assert!(!dir.exists());

        let ws = Workspace::create(path(&origin.bare), None, &origin.root)
            .await
            .expect("create");
        let dir = ws.dir.clone();
        ws.remove().await.expect("remove");
        assert!(!dir.exists());
        assert_eq!(std::fs::read_dir(&origin.root).expect("root").count(), 0);
    }

    #[tokio::test]
    async fn a_named_base_branch_is_checked_out_when_it_exists() {
        let origin = origin(&["develop"]);
        let ws = Workspace::create(path(&origin.bare), Some("develop"), &origin.root)
            .await
            .expect("create");
        assert_eq!(ws.base_branch, "develop");
        assert_eq!(ws.default_branch(), "main");
        assert_eq!(Some(ws.base_sha.clone()), bare_ref(&origin, "develop"));
        assert!(ws.dir.join("develop.txt").exists());
    }

    #[tokio::test]
    async fn a_missing_base_branch_is_a_clear_error_and_leaves_nothing_behind() {
        let origin = origin(&[]);
        let err = Workspace::create(path(&origin.bare), Some("develop"), &origin.root)
            .await
            .expect_err("no develop");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("base branch `develop` does not exist") && msg.contains("main"),
            "{msg}"
        );
        assert_eq!(std::fs::read_dir(&origin.root).expect("root").count(), 0);
    }

    #[tokio::test]
    async fn the_source_repository_is_not_modified_by_a_session() {
        let origin = origin(&[]);
        let before = sh_git(&origin.bare, &["for-each-ref"]);
        let objects = std::fs::read_dir(origin.bare.join("objects"))
            .expect("objects")
            .count();
        let ws = Workspace::create(path(&origin.bare), None, &origin.root)
            .await
            .expect("create");
        ws.start_branch("selfheal/x").await.expect("branch");
        std::fs::write(ws.dir.join("a.txt"), "a\n").expect("write");
        ws.commit("m").await.expect("commit");
        assert_eq!(sh_git(&origin.bare, &["for-each-ref"]), before);
        assert_eq!(
            std::fs::read_dir(origin.bare.join("objects"))
                .expect("objects")
                .count(),
            objects
        );
    }

    #[tokio::test]
    async fn an_unreachable_remote_error_does_not_show_its_token() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let url = "https://x-access-token:ghs_SECRET123@127.0.0.1:1/o/r.git";
        let err = Workspace::create(url, None, tmp.path())
            .await
            .expect_err("unreachable");
        let msg = format!("{err:#}");
        assert!(!msg.contains("ghs_SECRET123"), "{msg}");
        assert!(msg.contains("https://***@127.0.0.1:1/o/r.git"), "{msg}");
    }

    #[test]
    fn credentials_in_urls_are_redacted() {
        let cases = [
            (
                "https://x-access-token:ghp_abc@github.com/o/r.git",
                "https://***@github.com/o/r.git",
            ),
            ("https://TOKEN@github.com/o/r", "https://***@github.com/o/r"),
            (
                "fatal: unable to access 'https://u:p@h/x/': 403",
                "fatal: unable to access 'https://***@h/x/': 403",
            ),
            ("https://github.com/o/r.git", "https://github.com/o/r.git"),
            ("git@github.com:o/r.git", "git@github.com:o/r.git"),
            (
                "a https://u:p@h b http://q@k",
                "a https://***@h b http://***@k",
            ),
            ("no urls here", "no urls here"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_credentials(input), want, "{input}");
        }
        assert_eq!(
            strip_credentials("https://u:t@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
    }

    #[test]
    fn urls_and_local_paths_are_told_apart() {
        let cases = [
            ("https://github.com/o/r.git", true),
            ("ssh://git@host/o/r", true),
            ("git@github.com:o/r.git", true),
            ("file:///tmp/r", true),
            ("/tmp/origin.git", false),
            ("../origin.git", false),
            ("./a:b", false),
            ("C:\\repos\\r", false),
        ];
        for (input, want) in cases {
            assert_eq!(is_url(input), want, "{input}");
        }
    }

    #[test]
    fn branch_names_that_could_change_a_refspec_are_rejected() {
        let cases = [
            ("selfheal/hourly_marts/run-48213", true),
            ("fix-1.2", true),
            ("+main", false),
            ("a:b", false),
            ("-f", false),
            ("a..b", false),
            ("a b", false),
            ("a/.hidden", false),
            ("x.lock", false),
            ("", false),
        ];
        for (input, ok) in cases {
            assert_eq!(check_branch_name(input).is_ok(), ok, "{input}");
        }
    }
}
