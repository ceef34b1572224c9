//! The drill's world: a copy of the team's project in a git repository of
//! its own (with a bare "origin"), a production of its own, and a scheduler
//! that runs real dbt there and keeps each run's artifacts as a run log.
//!
//! Everything lives in one drill folder. The team's files are only read:
//! the project folder is copied, the database files the profile names are
//! copied, and every dbt command gets the drill's profiles dir, whose
//! profile reaches no file outside the drill folder.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::process::Command;

use super::faults::{Case, Facts, Fault};
use super::profile::{rewrite, DrillProfile};
use super::score::FileCheck;
use super::yml;
use crate::dbt::profile::{profile, project_settings, ProjectSettings};
use crate::workspace::git_out;

/// The files that declare a project's packages.
const PACKAGE_FILES: &[&str] = &["packages.yml", "dependencies.yml"];
/// Pins the declared packages; dbt deps rewrites it.
const LOCK_FILE: &str = "package-lock.yml";
/// Folders that are never part of a dbt project's source.
const NOT_SOURCE: &[&str] = &[
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".user.yml",
];
/// Who commits in the drill's repository.
const AUTHOR: [&str; 4] = [
    "-c",
    "user.name=Drill Engineer",
    "-c",
    "user.email=drill@selfheal.invalid",
];

/// Where a drill starts from.
pub struct Setup<'a> {
    /// The team's dbt project folder.
    pub project: &'a Path,
    /// The folder holding the team's profiles.yml; None: dbt's own search.
    pub profiles_dir: Option<&'a Path>,
    /// The drill folder (created; must not exist or be empty).
    pub root: &'a Path,
    pub dbt: &'a Path,
    /// The limit of one dbt command.
    pub timeout: Duration,
}

/// The staged world.
pub struct Stage {
    pub root: PathBuf,
    /// The project's copy: the repository healed, and the scheduler's checkout.
    pub project: PathBuf,
    /// The drill's private profiles dir.
    pub profiles_dir: PathBuf,
    pub run_logs: PathBuf,
    pub profile: DrillProfile,
    pub settings: ProjectSettings,
    /// The package file, when the project declares packages.
    pub package_file: Option<String>,
    /// The commit every case starts from.
    pub baseline: String,
    dbt: PathBuf,
    timeout: Duration,
}

/// One dbt command's result.
pub struct DbtOutput {
    pub success: bool,
    /// stdout then stderr.
    pub console: String,
    pub took: Duration,
}

impl Stage {
    /// Copies the project, gives it a production of its own and a repository
    /// with an origin. Fails before touching anything when the project is
    /// not on DuckDB.
    pub async fn create(setup: &Setup<'_>) -> Result<Stage> {
        let team = setup
            .project
            .canonicalize()
            .with_context(|| format!("no dbt project at {}", setup.project.display()))?;
        let project_yml = std::fs::read_to_string(team.join("dbt_project.yml"))
            .with_context(|| format!("{} has no dbt_project.yml", team.display()))?;
        let settings =
            project_settings(&project_yml).map_err(|e| anyhow::anyhow!("dbt_project.yml: {e}"))?;
        let profiles_file = find_profiles(setup.profiles_dir, &team)?;
        let profiles_text = std::fs::read_to_string(&profiles_file)
            .with_context(|| format!("reading {}", profiles_file.display()))?;
        let env = |k: &str| std::env::var(k).ok();
        let team_profile = profile(&profiles_text, &settings.profile, &env)
            .map_err(|e| anyhow::anyhow!("{}: {e}", profiles_file.display()))?;
        let root = setup.root.to_path_buf();
        let drill_profile = rewrite(&team_profile, &team, &root.join("warehouse"), &env)
            .map_err(|e| anyhow::anyhow!("{e}"))?;

        let name = team
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "project".into());
        let project = root.join(&name);
        let profiles_dir = root.join("profiles");
        let run_logs = root.join("run-logs");
        for dir in [
            &profiles_dir,
            &run_logs,
            &root.join("warehouse"),
            &root.join("baseline"),
        ] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let skip: Vec<PathBuf> = [
            &settings.target_path,
            &settings.log_path,
            &settings.packages_path,
        ]
        .into_iter()
        .map(PathBuf::from)
        .chain(
            drill_profile
                .production
                .iter()
                .filter(|p| p.is_relative())
                .cloned(),
        )
        .collect();
        copy_project(&team, &project, Path::new(""), &skip)?;
        std::fs::write(profiles_dir.join("profiles.yml"), &drill_profile.yaml)?;
        // A profiles.yml in the project would be found by anyone running dbt
        // in the copy without --profiles-dir: it must be the drill's too.
        if project.join("profiles.yml").is_file() {
            std::fs::write(project.join("profiles.yml"), &drill_profile.yaml)?;
        }
        for (from, to) in &drill_profile.copies {
            copy_database(from, to)?;
        }
        let package_file = PACKAGE_FILES
            .iter()
            .find(|f| {
                std::fs::read_to_string(project.join(f))
                    .ok()
                    .and_then(|t| yml::parse(&t))
                    .is_some_and(|d| {
                        d.get("packages")
                            .and_then(Value::as_array)
                            .is_some_and(|l| !l.is_empty())
                    })
            })
            .map(|f| f.to_string());
        if let Some(file) = &package_file {
            pin_outside_local_packages(&project.join(file), &team)?;
        }

        // The repository: main, pushed to a bare origin, build output excluded.
        git(
            &root,
            &[
                "init",
                "-q",
                "--bare",
                "--initial-branch=main",
                "origin.git",
            ],
        )
        .await?;
        git(&project, &["init", "-q", "--initial-branch=main"]).await?;
        let mut exclude: Vec<String> = [
            &settings.target_path,
            &settings.log_path,
            &settings.packages_path,
        ]
        .iter()
        .map(|p| format!("/{}/", p.trim_matches('/')))
        .collect();
        exclude.extend(["*.duckdb", "*.duckdb.wal", ".user.yml"].map(String::from));
        exclude.extend(
            drill_profile
                .production
                .iter()
                .filter(|p| p.is_relative())
                .map(|p| format!("/{}", p.display())),
        );
        std::fs::write(project.join(".git/info/exclude"), exclude.join("\n") + "\n")?;
        git(&project, &["add", "-A"]).await?;
        commit(&project, &format!("{name} as the team has it")).await?;
        git(
            &project,
            &[
                "remote",
                "add",
                "origin",
                &root.join("origin.git").display().to_string(),
            ],
        )
        .await?;
        git(&project, &["push", "-q", "origin", "main"]).await?;
        let baseline = git_out(&project, &["rev-parse", "HEAD"]).await?;

        Ok(Stage {
            root,
            project,
            profiles_dir,
            run_logs,
            profile: drill_profile,
            settings,
            package_file,
            baseline,
            dbt: setup.dbt.to_path_buf(),
            timeout: setup.timeout,
        })
    }

    /// Runs `dbt <args>` in the copy against the drill's profile.
    pub async fn dbt(&self, dir: &Path, profiles_dir: &Path, args: &[&str]) -> Result<DbtOutput> {
        let started = Instant::now();
        let mut cmd = Command::new(&self.dbt);
        cmd.arg("--no-use-colors")
            .args(args)
            .arg("--profiles-dir")
            .arg(profiles_dir)
            .current_dir(dir)
            .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            // Settings of the team's shell must not steer the drill's dbt elsewhere.
            .env_remove("DBT_TARGET")
            .env_remove("DBT_PROFILES_DIR")
            .env_remove("DBT_PROJECT_DIR")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(self.timeout, cmd.output())
            .await
            .with_context(|| format!("dbt {} took longer than {:?}", args.join(" "), self.timeout))?
            .with_context(|| format!("running {}", self.dbt.display()))?;
        let mut console = String::from_utf8_lossy(&out.stdout).into_owned();
        console.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(DbtOutput {
            success: out.status.success(),
            console,
            took: started.elapsed(),
        })
    }

    async fn dbt_here(&self, args: &[&str]) -> Result<DbtOutput> {
        self.dbt(&self.project, &self.profiles_dir, args).await
    }

    /// `dbt deps` when the project declares packages; None when it declares none.
    pub async fn deps(&self) -> Result<Option<Duration>> {
        if self.package_file.is_none() {
            return Ok(None);
        }
        let out = self.dbt_here(&["deps"]).await?;
        if !out.success {
            bail!(
                "`dbt deps` failed in the drill's copy:\n{}",
                last_lines(&out.console, 15)
            );
        }
        Ok(Some(out.took))
    }

    /// The baseline: packages, a passing `dbt build` into the drill's
    /// production, the catalog, and a snapshot of production to reset to.
    pub async fn baseline(&self) -> Result<Baseline> {
        let deps = self.deps().await?;
        let build = self.dbt_here(&["build"]).await?;
        if !build.success {
            bail!(
                "the baseline `dbt build` fails before any fault is injected; the drill needs a passing project:\n{}",
                last_lines(&build.console, 20)
            );
        }
        let docs = self.dbt_here(&["docs", "generate"]).await?;
        let target = self.project.join(&self.settings.target_path);
        std::fs::copy(
            target.join("manifest.json"),
            self.root.join("baseline/manifest.json"),
        )
        .context("keeping the baseline's manifest.json")?;
        for file in self.production_files() {
            if file.is_file() {
                let saved = self.snapshot_of(&file);
                std::fs::copy(&file, &saved)
                    .with_context(|| format!("snapshotting {}", file.display()))?;
            }
        }
        Ok(Baseline {
            deps,
            build: build.took,
            catalog: docs.success,
        })
    }

    /// What the baseline's artifacts and the project's files say.
    pub async fn facts(&self, catalog: bool) -> Result<Facts> {
        let target = self.project.join(&self.settings.target_path);
        let manifest: Value = read_json(&self.root.join("baseline/manifest.json"))?;
        let catalog: Option<Value> = if catalog {
            read_json(&target.join("catalog.json")).ok()
        } else {
            None
        };
        let mut facts = Facts::from_artifacts(&manifest, catalog.as_ref());
        for file in facts.wanted_files() {
            if let Ok(text) = std::fs::read_to_string(self.project.join(&file)) {
                facts.files.insert(file, text);
            }
        }
        let yml_text: String = facts
            .files
            .iter()
            .filter(|(f, _)| f.ends_with(".yml") || f.ends_with(".yaml"))
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let line_key = |key: &str| yml_text.lines().any(|l| l.trim() == key);
        facts.test_style.key = if line_key("tests:") && !line_key("data_tests:") {
            "tests"
        } else {
            "data_tests"
        }
        .into();
        facts.test_style.arguments = line_key("arguments:");
        if let Some(file) = &self.package_file {
            let text = std::fs::read_to_string(self.project.join(file))?;
            if let Some(entries) =
                yml::parse(&text).and_then(|d| d.get("packages").and_then(Value::as_array).cloned())
            {
                for local in entries
                    .iter()
                    .filter_map(|e| e.get("local").and_then(Value::as_str))
                {
                    let yml =
                        std::fs::read_to_string(self.project.join(local).join("dbt_project.yml"));
                    if let Some(name) = yml
                        .ok()
                        .and_then(|t| yml::parse(&t))
                        .and_then(|d| d.get("name").and_then(Value::as_str).map(String::from))
                    {
                        facts.local_packages.insert(local.to_string(), name);
                    }
                }
            }
            facts.files.insert(file.clone(), text);
            facts.package_file = Some(file.clone());
        }
        if let Some(query) = facts.stats_query() {
            let out = self
                .dbt_here(&[
                    "-q", "show", "--inline", &query, "--output", "json", "--limit", "100000",
                ])
                .await?;
            match out
                .console
                .find('{')
                .and_then(|at| serde_json::from_str::<Value>(out.console[at..].trim()).ok())
            {
                Some(shown) if out.success => facts.read_stats(&shown),
                _ => {
                    tracing::warn!(output = %last_lines(&out.console, 10), "could not profile the data; no data-test faults")
                }
            }
        }
        Ok(facts)
    }

    /// Commits and pushes `fault` to main, as an engineer would. Returns the
    /// bad commit and the files it changed.
    pub async fn inject(&self, fault: &Fault) -> Result<(String, Vec<String>)> {
        for (file, content) in &fault.edits {
            std::fs::write(self.project.join(file), content)
                .with_context(|| format!("writing {file}"))?;
            git(&self.project, &["add", "--", file]).await?;
        }
        if fault.case == Case::MissingPackage {
            // dbt deps installs what package-lock.yml pins even when the
            // package file no longer lists it: the engineer renews the lock
            // (and commits it when the team tracks it); a scheduler starts
            // from a clean checkout, without an untracked lock or packages.
            let _ = std::fs::remove_file(self.project.join(LOCK_FILE));
            let _ = std::fs::remove_dir_all(self.project.join(&self.settings.packages_path));
            let out = self.dbt_here(&["deps"]).await?;
            if !out.success {
                bail!(
                    "`dbt deps` failed after removing a package:\n{}",
                    last_lines(&out.console, 15)
                );
            }
            let tracked = git_out(&self.project, &["ls-files", "--", LOCK_FILE]).await?;
            if !tracked.is_empty() {
                git(&self.project, &["add", "-A", "--", LOCK_FILE]).await?;
            }
        }
        let files = git_out(&self.project, &["diff", "--cached", "--name-only"]).await?;
        let files: Vec<String> = files.lines().map(String::from).collect();
        commit(&self.project, &format!("Update {}", fault.file)).await?;
        git(&self.project, &["push", "-q", "origin", "main"]).await?;
        Ok((git_out(&self.project, &["rev-parse", "HEAD"]).await?, files))
    }

    /// `dbt build` into the drill's production, as the scheduler runs it,
    /// stored as the run log `run-logs/<run_id>/`.
    pub async fn scheduled_run(&self, run_id: &str) -> Result<DbtOutput> {
        let target = self.project.join(&self.settings.target_path);
        let log = self.project.join(&self.settings.log_path).join("dbt.log");
        // What an earlier run left must not pass for this run's.
        let _ = std::fs::remove_file(target.join("run_results.json"));
        let _ = std::fs::remove_file(&log);
        let out = self.dbt_here(&["build"]).await?;
        let dir = crate::runlog::run_dir(&self.run_logs, run_id)?;
        std::fs::create_dir_all(&dir)?;
        let keep = |from: &Path, name: &str| -> Result<()> {
            if from.is_file() {
                std::fs::copy(from, dir.join(name)).with_context(|| format!("keeping {name}"))?;
            }
            Ok(())
        };
        keep(&target.join("run_results.json"), "run_results.json")?;
        keep(&log, "dbt.log")?;
        keep(&target.join("manifest.json"), "manifest.json")?;
        std::fs::write(dir.join("console.txt"), &out.console)?;
        std::fs::write(dir.join("command.txt"), "dbt build")?;
        Ok(out)
    }

    /// Back to the baseline: the bad commit reverted and pushed (as a team
    /// does), packages reinstalled, production and the manifest restored.
    pub async fn reset(&self, bad: &str, case: Case) -> Result<()> {
        let mut revert = AUTHOR.to_vec();
        revert.extend(["revert", "--no-edit", bad]);
        git(&self.project, &revert).await?;
        git(&self.project, &["push", "-q", "origin", "main"]).await?;
        let same = git_out(
            &self.project,
            &["diff", "--name-only", &self.baseline, "HEAD"],
        )
        .await?;
        anyhow::ensure!(
            same.is_empty(),
            "main differs from the baseline after reverting: {same}"
        );
        if case == Case::MissingPackage {
            let _ = std::fs::remove_dir_all(self.project.join(&self.settings.packages_path));
            self.deps().await?;
        }
        for file in self.production_files() {
            let saved = self.snapshot_of(&file);
            if saved.is_file() {
                std::fs::copy(&saved, &file)
                    .with_context(|| format!("restoring {}", file.display()))?;
            }
        }
        let target = self.project.join(&self.settings.target_path);
        std::fs::copy(
            self.root.join("baseline/manifest.json"),
            target.join("manifest.json"),
        )?;
        Ok(())
    }

    /// Production's database files, with their write-ahead logs.
    pub fn production_files(&self) -> Vec<PathBuf> {
        let mut files = vec![];
        for p in &self.profile.production {
            let file = if p.is_absolute() {
                p.clone()
            } else {
                self.project.join(p)
            };
            let wal = PathBuf::from(format!("{}.wal", file.display()));
            files.extend([file, wal]);
        }
        files
    }

    /// The SHA-256 of every production file ("absent" for a missing one).
    pub fn checksums(&self) -> Result<Vec<(String, String)>> {
        self.production_files()
            .into_iter()
            .map(|f| {
                let sum = match std::fs::File::open(&f) {
                    Ok(file) => {
                        sha256_hex(file).with_context(|| format!("reading {}", f.display()))?
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => "absent".into(),
                    Err(e) => return Err(e).with_context(|| format!("opening {}", f.display())),
                };
                Ok((self.shown(&f), sum))
            })
            .collect()
    }

    /// Whether the files on `branch` are as they were in the baseline.
    pub async fn matches_baseline(&self, branch: &str, files: &[String]) -> Result<bool> {
        let mut args = vec!["diff", "--name-only", &self.baseline, branch, "--"];
        args.extend(files.iter().map(String::as_str));
        Ok(git_out(&self.project, &args).await?.is_empty())
    }

    /// The files `branch` changes against `bad`.
    pub async fn changed_files(&self, bad: &str, branch: &str) -> Result<Option<Vec<String>>> {
        let exists = git_out(&self.project, &["branch", "--list", branch]).await?;
        if exists.is_empty() {
            return Ok(None);
        }
        let files = git_out(&self.project, &["diff", "--name-only", bad, branch]).await?;
        Ok(Some(files.lines().map(String::from).collect()))
    }

    /// Builds `branch` in a scratch clone against a scratch copy of
    /// production: does the proposed change really pass?
    pub async fn branch_builds(&self, branch: &str) -> Result<bool> {
        let scratch = self.root.join("check").join(branch.replace('/', "-"));
        let _ = std::fs::remove_dir_all(&scratch);
        let clone = scratch.join("project");
        let project = self.project.display().to_string();
        let clone_s = clone.display().to_string();
        git(
            &self.root,
            &["clone", "-q", "--branch", branch, &project, &clone_s],
        )
        .await?;
        let warehouse = self.root.join("warehouse").display().to_string();
        let scratch_wh = scratch.join("warehouse");
        std::fs::create_dir_all(&scratch_wh)?;
        for p in &self.profile.production {
            let (from, to) = if p.is_absolute() {
                (
                    p.clone(),
                    PathBuf::from(p.display().to_string().replacen(
                        &warehouse,
                        &scratch_wh.display().to_string(),
                        1,
                    )),
                )
            } else {
                (self.project.join(p), clone.join(p))
            };
            if from.is_file() {
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::copy(&from, &to)?;
            }
        }
        let profiles = scratch.join("profiles");
        std::fs::create_dir_all(&profiles)?;
        let yaml = self
            .profile
            .yaml
            .replace(&warehouse, &scratch_wh.display().to_string());
        std::fs::write(profiles.join("profiles.yml"), yaml)?;
        if self.package_file.is_some() {
            let deps = self.dbt(&clone, &profiles, &["deps"]).await?;
            if !deps.success {
                return Ok(false);
            }
        }
        let build = self.dbt(&clone, &profiles, &["build"]).await?;
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(build.success)
    }

    /// A production file as the scorecard shows it: relative to the drill folder.
    fn shown(&self, file: &Path) -> String {
        file.strip_prefix(&self.root)
            .unwrap_or(file)
            .display()
            .to_string()
    }

    fn snapshot_of(&self, file: &Path) -> PathBuf {
        self.root
            .join("baseline")
            .join(self.shown(file).replace('/', "__"))
    }
}

/// What the baseline cost.
pub struct Baseline {
    pub deps: Option<Duration>,
    pub build: Duration,
    /// Whether `dbt docs generate` wrote a catalog (real column names).
    pub catalog: bool,
}

/// Checksums before and after, paired by file.
pub fn compare(before: &[(String, String)], after: &[(String, String)]) -> Vec<FileCheck> {
    before
        .iter()
        .map(|(file, b)| FileCheck {
            file: file.clone(),
            before: b.clone(),
            after: after
                .iter()
                .find(|(f, _)| f == file)
                .map(|(_, a)| a.clone())
                .unwrap_or_else(|| "absent".into()),
        })
        .filter(|c| !(c.before == "absent" && c.after == "absent"))
        .collect()
}

/// The team's profiles.yml, found the way dbt finds it.
fn find_profiles(dir: Option<&Path>, project: &Path) -> Result<PathBuf> {
    crate::dbt::isolate::profiles_file(dir, project).with_context(|| {
        format!(
            "no profiles.yml (looked in {}DBT_PROFILES_DIR, {} and ~/.dbt); pass --profiles-dir",
            dir.map(|d| format!("{}, ", d.display()))
                .unwrap_or_default(),
            project.display()
        )
    })
}

/// Copies the project's source, leaving out build output, installed
/// packages, database files and `skip` (paths relative to the project).
fn copy_project(from_root: &Path, to_root: &Path, rel: &Path, skip: &[PathBuf]) -> Result<()> {
    let from = from_root.join(rel);
    let to = to_root.join(rel);
    std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(&from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name_s = name.to_string_lossy();
        let rel_path = rel.join(&name);
        let database = [".duckdb", ".duckdb.wal", ".ddb"]
            .iter()
            .any(|ext| name_s.ends_with(ext));
        if NOT_SOURCE.contains(&name_s.as_ref()) || database || skip.contains(&rel_path) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            let link = std::fs::read_link(entry.path())?;
            std::os::unix::fs::symlink(&link, to.join(&name))?;
        } else if kind.is_dir() {
            copy_project(from_root, to_root, &rel_path, skip)?;
        } else {
            std::fs::copy(entry.path(), to.join(&name))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Copies a team database file (and its write-ahead log) into the drill,
/// reading only. A missing file is not an error: the baseline build creates it.
fn copy_database(from: &Path, to: &Path) -> Result<()> {
    if from.is_file() {
        crate::dbt::isolate::copy_database(from, to)?;
    }
    Ok(())
}

/// `local:` packages outside the project would not be found from the copy:
/// they are pinned to their absolute path (dbt only reads them).
fn pin_outside_local_packages(file: &Path, team: &Path) -> Result<()> {
    let text = std::fs::read_to_string(file)?;
    let mut changed = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let Some((head, value)) = line.split_once("local:") else {
                return line.to_string();
            };
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            if !value.starts_with("..") {
                return line.to_string();
            }
            changed = true;
            format!("{head}local: \"{}\"", team.join(value).display())
        })
        .collect();
    if changed {
        std::fs::write(file, lines.join("\n") + "\n")?;
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The lower-case hex SHA-256 of everything `reader` yields (database files
/// can be large: read in blocks).
pub fn sha256_hex(mut reader: impl std::io::Read) -> std::io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut block = vec![0u8; 1 << 16];
    loop {
        match reader.read(&mut block)? {
            0 => break,
            n => hasher.update(&block[..n]),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

async fn git(dir: &Path, args: &[&str]) -> Result<()> {
    git_out(dir, args).await.map(|_| ())
}

async fn commit(dir: &Path, message: &str) -> Result<()> {
    let mut args = AUTHOR.to_vec();
    args.extend(["commit", "-q", "-m", message]);
    git(dir, &args).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_sha256_in_hex() {
        assert_eq!(
            sha256_hex(&b"abc"[..]).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let big = vec![b'a'; 200_000];
        assert_eq!(
            sha256_hex(&big[..]).unwrap(),
            sha256_hex(std::io::Cursor::new(big.clone())).unwrap(),
            "read in blocks"
        );
    }

    #[test]
    fn the_copy_leaves_out_build_output_databases_and_what_it_is_told() {
        let team = tempfile::tempdir().unwrap();
        let copy = tempfile::tempdir().unwrap();
        for file in [
            "dbt_project.yml",
            "models/a.sql",
            "target/manifest.json",
            "build_out/run_results.json",
            "logs/dbt.log",
            "dbt_packages/p/dbt_project.yml",
            "prod.duckdb",
            "data/prod.duckdb.wal",
            "data/keep.csv",
            ".git/HEAD",
            ".venv/bin/dbt",
        ] {
            let path = team.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        let skip = [
            PathBuf::from("build_out"),
            PathBuf::from("logs"),
            PathBuf::from("dbt_packages"),
        ];
        copy_project(team.path(), copy.path(), Path::new(""), &skip).unwrap();
        let mut copied: Vec<String> = vec![];
        let mut stack = vec![copy.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    copied.push(
                        path.strip_prefix(copy.path())
                            .unwrap()
                            .display()
                            .to_string(),
                    );
                }
            }
        }
        copied.sort();
        // `target` is not in `skip` here: only what dbt_project.yml names is left out.
        assert_eq!(
            copied,
            [
                "data/keep.csv",
                "dbt_project.yml",
                "models/a.sql",
                "target/manifest.json"
            ]
        );
    }

    #[test]
    fn only_local_packages_outside_the_project_are_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("packages.yml");
        std::fs::write(
            &file,
            "packages:\n  - local: packages/inside\n  - local: \"../shared\"\n  - package: dbt-labs/dbt_utils\n",
        )
        .unwrap();
        pin_outside_local_packages(&file, Path::new("/team/shop")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "packages:\n  - local: packages/inside\n  - local: \"/team/shop/../shared\"\n  - package: dbt-labs/dbt_utils\n"
        );
    }

    #[test]
    fn checksums_pair_up_by_file_and_ignore_files_absent_throughout() {
        let before = [
            ("a.duckdb".to_string(), "1".to_string()),
            ("a.duckdb.wal".to_string(), "absent".to_string()),
        ];
        let after = [
            ("a.duckdb".to_string(), "2".to_string()),
            ("a.duckdb.wal".to_string(), "absent".to_string()),
        ];
        let checks = compare(&before, &after);
        assert_eq!(checks.len(), 1);
        assert_eq!(
            (checks[0].before.as_str(), checks[0].after.as_str()),
            ("1", "2")
        );
    }
}
