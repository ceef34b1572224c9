//! Runs the dbt CLI: the one place that knows how selfheal invokes dbt.
//!
//! dbt runs in its own process group with a timeout, without colours, without
//! usage statistics, and without selfheal's own tokens in its environment (it
//! keeps everything else: warehouse credentials live there).
//!
//! - `profile.rs` reads `dbt_project.yml` and `profiles.yml` (pure);
//! - `isolate.rs` decides and prepares where a session may build, never in
//!   production;
//! - `deps.rs` installs a clone's packages, cached between sessions.

pub mod deps;
pub mod isolate;
pub mod profile;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// The dbt executable: `configured` (`SELFHEAL_DBT`), else the project's
/// pinned venv (installed by `scripts/setup-dbt` on first use).
pub async fn locate(configured: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = configured {
        return Ok(p);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv_dbt = repo.join(".venv/bin/dbt");
    if venv_dbt.is_file() {
        return Ok(venv_dbt);
    }
    eprintln!("Installing the pinned dbt toolchain into .venv (first run only, about a minute)…");
    let out = Command::new(repo.join("scripts/setup-dbt"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("running scripts/setup-dbt")?;
    if !out.status.success() {
        anyhow::bail!("scripts/setup-dbt failed; see its message above");
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Whether dbt must not see the variable `name`: selfheal's own settings
/// and Slack's (every token the bot holds among them: forges, schedulers,
/// models), and the usual names of forge and model vendors' tokens. dbt
/// still gets everything else, the warehouse's credentials included.
fn withheld(name: &str) -> bool {
    const TOKENS: &[&str] = &[
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GITLAB_TOKEN",
        "GL_TOKEN",
        "GITEA_TOKEN",
        "BITBUCKET_TOKEN",
        "AZURE_DEVOPS_EXT_PAT",
        "SYSTEM_ACCESSTOKEN",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
    ];
    const PREFIXES: &[&str] = &["SELFHEAL_", "SLACK_", "PARADIME_API_", "DBT_CLOUD_API_"];
    PREFIXES.iter().any(|p| name.starts_with(p)) || TOKENS.contains(&name)
}

/// How to run dbt.
#[derive(Debug, Clone)]
pub struct Dbt {
    /// The `dbt` executable.
    pub exe: PathBuf,
    /// `--profiles-dir`; None: the project's own `profiles.yml` if it has one, else dbt's default.
    pub profiles_dir: Option<PathBuf>,
    /// `--target`, e.g. a CI target that is safe to build into.
    pub target: Option<String>,
    /// Extra environment for dbt.
    pub env: Vec<(String, String)>,
    /// Wall-clock limit of one dbt command.
    pub timeout: Duration,
    /// Refuse every command that writes (`build`, `run`, `seed`…): set when
    /// the only target is production (see [`isolate`]).
    pub read_only: bool,
}

/// What one dbt command did.
#[derive(Debug, Clone, PartialEq)]
pub struct DbtRun {
    /// The command as a person would type it.
    pub command: String,
    pub success: bool,
    /// stdout followed by stderr, without ANSI colours.
    pub output: String,
}

impl Dbt {
    /// Runs `dbt <args>` in `project_dir`.
    pub async fn run(&self, project_dir: &Path, args: &[String]) -> Result<DbtRun> {
        if self.read_only {
            isolate::check_read_only(args)?;
        }
        let mut full: Vec<String> = vec!["--no-use-colors".into()];
        full.extend(args.iter().cloned());
        let profiles = self.profiles_dir.clone().or_else(|| {
            project_dir
                .join("profiles.yml")
                .is_file()
                .then(|| project_dir.to_path_buf())
        });
        if let Some(p) = &profiles {
            full.push("--profiles-dir".into());
            full.push(p.display().to_string());
        }
        if let Some(t) = &self.target {
            full.push("--target".into());
            full.push(t.clone());
        }
        let command = format!("dbt {}", args.join(" "));
        let mut cmd = Command::new(&self.exe);
        cmd.args(&full)
            .current_dir(project_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            .env("DO_NOT_TRACK", "1");
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(withheld) {
                cmd.env_remove(name);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} (is dbt installed?)", self.exe.display()))?;
        let pgid = child.id().map(|p| p as i32);
        let mut stdout = child.stdout.take().context("dbt stdout")?;
        let mut stderr = child.stderr.take().context("dbt stderr")?;
        let work = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            a?;
            b?;
            let status = child.wait().await?;
            anyhow::Ok((status, out, err))
        };
        let (status, out, err) = match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r.with_context(|| format!("running {command}"))?,
            Err(_) => {
                if let Some(pgid) = pgid {
                    // SAFETY: kill(2) on the process group we created for dbt.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                }
                anyhow::bail!(
                    "{command} ran past its {}s limit and was stopped",
                    self.timeout.as_secs()
                );
            }
        };
        let mut output = String::from_utf8_lossy(&out).into_owned();
        let err = String::from_utf8_lossy(&err);
        if !err.trim().is_empty() {
            output.push('\n');
            output.push_str(&err);
        }
        Ok(DbtRun {
            command,
            success: status.success(),
            output: strip_ansi(&output),
        })
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The last `lines` lines of dbt output, for a Slack message or a PR body.
pub fn tail_lines(output: &str, lines: usize) -> String {
    let all: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The lines of dbt output that carry its errors (at most `max`), without
/// the deprecation warnings and progress around them; the tail when no line
/// looks like an error.
pub fn error_lines(output: &str, max: usize) -> String {
    let lines: Vec<&str> = output.lines().map(strip_timestamp).collect();
    let mut picked = Vec::new();
    let mut i = 0;
    while i < lines.len() && picked.len() < max {
        let l = lines[i];
        let lower = l.to_ascii_lowercase();
        let is_error =
            (lower.contains("error") && !lower.contains("warn") && !lower.contains("error=0"))
                || lower.trim_start().starts_with("failure in")
                || lower.contains("encountered an error");
        if is_error && !lower.starts_with("done.") && !lower.contains("completed with") {
            picked.push(l.trim_end());
            // The indented lines that follow belong to the error.
            i += 1;
            while i < lines.len()
                && picked.len() < max
                && lines[i].starts_with("  ")
                && !lines[i].trim().is_empty()
            {
                picked.push(lines[i].trim_end());
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    if picked.is_empty() {
        return tail_lines(output, max);
    }
    picked.dedup();
    picked.join("\n")
}

/// `12:01:02  Completed…` → `Completed…` (dbt prefixes console lines with a time).
pub fn strip_timestamp(line: &str) -> &str {
    let b = line.as_bytes();
    if b.len() > 10
        && b[2] == b':'
        && b[5] == b':'
        && b[..8].iter().all(|c| c.is_ascii_digit() || *c == b':')
    {
        // dbt separates the time from the text with two spaces; more is indentation.
        let rest = &line[8..];
        rest.strip_prefix("  ").unwrap_or(rest)
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbt_sees_the_warehouse_and_none_of_the_bots_tokens() {
        for name in [
            "SLACK_BOT_TOKEN",
            "SELFHEAL_GITHUB_TOKEN",
            "SELFHEAL_GITLAB_TOKEN",
            "SELFHEAL_AZURE_DEVOPS_TOKEN",
            "SELFHEAL_LLM_API_KEY_ENV",
            "PARADIME_API_SECRET",
            "DBT_CLOUD_API_TOKEN",
            "GITHUB_TOKEN",
            "OPENAI_API_KEY",
        ] {
            assert!(withheld(name), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "DBT_ENV_SECRET_PASSWORD",
            "SNOWFLAKE_PASSWORD",
            "DBT_PROFILES_DIR",
        ] {
            assert!(!withheld(name), "{name}");
        }
    }

    #[test]
    fn colours_are_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[31mFailure\u{1b}[0m in model"),
            "Failure in model"
        );
    }

    #[test]
    fn error_lines_skip_warnings_and_keep_the_error() {
        let output = "\
12:00:01  Running with dbt=1.10.23
12:00:02  [WARNING]: Deprecated functionality
12:00:02  The `tests` config has been renamed to `data_tests`.
12:00:03  1 of 2 ERROR creating sql table model main.customers ........ [ERROR in 0.02s]
12:00:03  Completed with 1 error, 0 partial successes, and 0 warnings:
12:00:03  Failure in model customers (models/customers.sql)
12:00:03    Binder Error: Referenced column \"customer_nmae\" not found
12:00:03    LINE 4: select customer_nmae
12:00:03  Done. PASS=1 WARN=0 ERROR=1 SKIP=0 NO-OP=0 TOTAL=2
";
        let got = error_lines(output, 6);
        assert_eq!(
            got,
            "1 of 2 ERROR creating sql table model main.customers ........ [ERROR in 0.02s]\nFailure in model customers (models/customers.sql)\n  Binder Error: Referenced column \"customer_nmae\" not found\n  LINE 4: select customer_nmae"
        );
        assert_eq!(error_lines("a\nb\nc", 2), "b\nc", "no error line: the tail");
    }

    #[test]
    fn the_tail_skips_blank_lines() {
        assert_eq!(tail_lines("a\n\nb\nc\n\n", 2), "b\nc");
    }
}
