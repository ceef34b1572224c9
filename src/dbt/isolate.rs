//! Where a session may build: never in production.
//!
//! "Production" is the target the scheduler's run used: `SELFHEAL_DBT_PROD_TARGET`,
//! else the profile's default target. [`plan`] (pure) picks the isolated place
//! every dbt command of a session runs in — verification, the doctor's
//! queries, an `llm` agent's terminal, a command agent's environment:
//!
//! 1. a CI target (`SELFHEAL_DBT_TARGET`): dbt's slim-CI pattern, building the
//!    changed nodes and their children there and deferring everything else
//!    to production's manifest (`--defer --state`) when it is known;
//! 2. else, when production is a DuckDB file: a throwaway copy of it per
//!    session (or a fresh file when it cannot be found), with the failing
//!    nodes' parents built into it when they are not there;
//! 3. else nothing is safe to build in: dbt only compiles, read-only, and the
//!    thread, the pull request and `selfheal check` say so.
//!
//! [`prepare`] carries the plan out: it writes a profiles.yml of the session's
//! own whose only output is the isolated place (so even `--target prod`
//! cannot reach production from it), copies the database, fetches the state.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::profile::{self, Profile, ProjectSettings, Warehouse};
use super::Dbt;

/// The output name of the session's own target in its profiles.yml.
pub const SESSION_TARGET: &str = "selfheal_session";

/// Where the session builds, decided from the profile and the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The configured CI target; `defer` when production's manifest is known.
    CiTarget { target: String, defer: bool },
    /// A throwaway copy of production's DuckDB file at `prod_path`.
    DuckDbCopy {
        prod_target: String,
        prod_path: String,
    },
    /// No isolated place exists: compile only, never build.
    CompileOnly { prod_target: String, why: String },
}

impl Plan {
    /// Where a session builds, in a person's words; `copied`: the DuckDB
    /// copy starts from production's data (else a fresh file).
    pub fn describe(&self, copied: bool) -> String {
        match self {
            Plan::CiTarget { target, defer: true } => format!(
                "builds in CI target `{target}` (a schema of its own), deferring unchanged nodes to production's manifest"
            ),
            Plan::CiTarget { target, defer: false } => format!(
                "builds in CI target `{target}` (a schema of its own), parents included"
            ),
            Plan::DuckDbCopy { prod_target, .. } if copied => format!(
                "builds in a throwaway copy of production's DuckDB (`{prod_target}` is never opened)"
            ),
            Plan::DuckDbCopy { prod_target, .. } => format!(
                "builds in a fresh throwaway DuckDB, parents included (`{prod_target}` is never opened)"
            ),
            Plan::CompileOnly { why, .. } => {
                format!("compiles only, nothing is built: {why}; {FULL_VERIFICATION_HINT}")
            }
        }
    }
}

/// What [`plan`] decides from.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub profile: &'a Profile,
    /// `SELFHEAL_DBT_PROD_TARGET`, when set.
    pub prod_target: Option<&'a str>,
    /// `SELFHEAL_DBT_TARGET`, when set.
    pub ci_target: Option<&'a str>,
    /// Whether production's `manifest.json` was found (run log or state dir).
    pub state_known: bool,
}

/// The one setting that turns full verification on, for messages.
pub const FULL_VERIFICATION_HINT: &str =
    "set SELFHEAL_DBT_TARGET to a CI target of the profile to verify by building";

/// Picks the isolated place, or says why the settings are unsafe.
pub fn plan(f: &Facts, env: &dyn Fn(&str) -> Option<String>) -> Result<Plan, String> {
    let profile = f.profile;
    let prod = match f.prod_target.map(str::to_string).or_else(|| profile.default_target.clone()) {
        Some(t) => t,
        None => {
            return Err(format!(
                "cannot tell which target of profile `{}` is production (its `target:` does not render); set SELFHEAL_DBT_PROD_TARGET",
                profile.name
            ))
        }
    };
    let prod_wh = profile.warehouse(&prod, env).ok_or_else(|| {
        format!(
            "production target `{prod}` is not an output of profile `{}` (it has: {})",
            profile.name,
            profile
                .outputs
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    if let Some(ci) = f.ci_target {
        if ci == prod {
            return Err(format!(
                "SELFHEAL_DBT_TARGET is `{ci}`, the target the scheduler runs in: selfheal never builds into production; name a CI target"
            ));
        }
        let ci_wh = profile.warehouse(ci, env).ok_or_else(|| {
            format!(
                "SELFHEAL_DBT_TARGET `{ci}` is not an output of profile `{}` (it has: {})",
                profile.name,
                profile
                    .outputs
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if ci_wh == prod_wh && matches!(ci_wh, Warehouse::DuckDbFile(_)) {
            return Err(format!(
                "SELFHEAL_DBT_TARGET `{ci}` builds into the same DuckDB file as production `{prod}`"
            ));
        }
        return Ok(Plan::CiTarget {
            target: ci.to_string(),
            defer: f.state_known,
        });
    }
    Ok(match prod_wh {
        Warehouse::DuckDbFile(path) => Plan::DuckDbCopy {
            prod_target: prod,
            prod_path: path,
        },
        Warehouse::DuckDbElsewhere(place) => Plan::CompileOnly {
            why: format!("production `{prod}` is DuckDB at {place}, which selfheal cannot copy, and no CI target is configured"),
            prod_target: prod,
        },
        Warehouse::Other(adapter) => Plan::CompileOnly {
            why: format!("production `{prod}` is a {adapter} warehouse and no CI target is configured"),
            prod_target: prod,
        },
    })
}

/// The dbt arguments that verify a change to `nodes` (the failing models,
/// seeds and snapshots) in the isolated place.
///
/// `parents_ready`: the nodes' parents exist where the build runs (a copy of
/// production, parents built in preparation, or deferral to production);
/// otherwise they are built too (`+node+`). No node known: `dbt parse`
/// (building) or `dbt compile` proves what can be proved.
pub fn verification_args(
    plan: &Plan,
    nodes: &[String],
    parents_ready: bool,
    state: Option<&Path>,
) -> Vec<String> {
    let compile_only = matches!(plan, Plan::CompileOnly { .. });
    // Compiling needs no warehouse connection when dbt skips its cache.
    let compile = || vec!["compile".to_string(), "--no-populate-cache".into()];
    if nodes.is_empty() {
        return if compile_only {
            compile()
        } else {
            vec!["parse".into()]
        };
    }
    let prefix = if parents_ready || compile_only {
        ""
    } else {
        "+"
    };
    let mut args = if compile_only {
        compile()
    } else {
        vec!["build".into()]
    };
    args.push("--select".into());
    args.extend(nodes.iter().map(|n| format!("{prefix}{n}+")));
    if let (Plan::CiTarget { defer: true, .. }, Some(state)) = (plan, state) {
        args.extend([
            "--defer".into(),
            "--state".into(),
            state.display().to_string(),
        ]);
    }
    args
}

/// What [`prepare`] needs.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// dbt as configured (executable, `--profiles-dir`, timeout, environment).
    pub base: &'a Dbt,
    /// The dbt project in the session's clone.
    pub project_dir: &'a Path,
    /// The project in the local repository the clone came from, if local:
    /// where a relative DuckDB path of production points.
    pub source_project_dir: Option<&'a Path>,
    /// The session's own folder (outside the clone).
    pub session_dir: &'a Path,
    pub ci_target: Option<&'a str>,
    pub prod_target: Option<&'a str>,
    /// Folders that may hold production's `manifest.json`, in order.
    pub state_candidates: Vec<PathBuf>,
    /// Names the session's own schema in a CI target (`selfheal_7_4242`).
    pub session_name: &'a str,
}

/// The isolated place, ready.
#[derive(Debug, Clone)]
pub struct Isolation {
    pub plan: Plan,
    /// dbt pointed at the isolated place (read-only when compiling only).
    pub dbt: Dbt,
    /// Where production's manifest was put, for `--defer --state`.
    pub state: Option<PathBuf>,
    /// The project's `dbt_project.yml` settings (where dbt writes).
    pub project: ProjectSettings,
    /// Whether the DuckDB copy started from production's data (false: a fresh file).
    pub copied: bool,
    /// The profiles folder a command agent gets (empty when compiling only).
    pub agent_profiles_dir: PathBuf,
}

impl Isolation {
    /// One line for the thread and the pull request: where the session builds.
    pub fn describe(&self) -> String {
        self.plan.describe(self.copied)
    }

    /// Environment for a command agent: its `dbt` goes to the same place.
    /// When compiling only, the agent's profiles folder is empty: a command
    /// agent could run anything, and production is not for it.
    pub fn agent_env(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "DBT_PROFILES_DIR".to_string(),
            self.agent_profiles_dir.display().to_string(),
        )];
        if !self.dbt.read_only {
            env.push((
                "DBT_TARGET".into(),
                self.dbt.target.clone().unwrap_or_default(),
            ));
            env.extend(
                self.dbt
                    .env
                    .iter()
                    .filter(|(k, _)| k.starts_with("DBT_"))
                    .cloned(),
            );
        }
        env
    }
}

/// Finds profiles.yml the way dbt does: `--profiles-dir`, `DBT_PROFILES_DIR`,
/// the project folder, `~/.dbt`.
pub fn profiles_file(profiles_dir: Option<&Path>, project_dir: &Path) -> Option<PathBuf> {
    let env_dir = std::env::var_os("DBT_PROFILES_DIR").map(PathBuf::from);
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".dbt"));
    [
        profiles_dir.map(Path::to_path_buf),
        env_dir,
        Some(project_dir.to_path_buf()),
        home,
    ]
    .into_iter()
    .flatten()
    .map(|d| d.join("profiles.yml"))
    .find(|f| f.is_file())
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads the project's profile and decides the plan, without preparing anything
/// (for `selfheal check` and [`prepare`]).
pub fn load_plan(
    base: &Dbt,
    project_dir: &Path,
    ci_target: Option<&str>,
    prod_target: Option<&str>,
    state_known: bool,
) -> Result<(Plan, Profile, ProjectSettings)> {
    let project_file = project_dir.join("dbt_project.yml");
    let text = std::fs::read_to_string(&project_file)
        .with_context(|| format!("reading {}", project_file.display()))?;
    let project = profile::project_settings(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", project_file.display()))?;
    let file = profiles_file(base.profiles_dir.as_deref(), project_dir).with_context(|| {
        format!(
            "no profiles.yml for profile `{}` (looked in SELFHEAL_DBT_PROFILES_DIR, DBT_PROFILES_DIR, the project and ~/.dbt)",
            project.profile
        )
    })?;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let profile = profile::profile(&text, &project.profile, &process_env)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let facts = Facts {
        profile: &profile,
        prod_target,
        ci_target,
        state_known,
    };
    let plan = plan(&facts, &process_env).map_err(anyhow::Error::msg)?;
    Ok((plan, profile, project))
}

/// Carries out the plan for one session: the session's profiles.yml, the
/// DuckDB copy, production's manifest.
pub fn prepare(inputs: &Inputs) -> Result<Isolation> {
    let state_src = inputs
        .state_candidates
        .iter()
        .map(|d| d.join("manifest.json"))
        .find(|f| f.is_file());
    let (plan, profile, project) = load_plan(
        inputs.base,
        inputs.project_dir,
        inputs.ci_target,
        inputs.prod_target,
        state_src.is_some(),
    )?;

    let profiles_dir = inputs.session_dir.join("profiles");
    std::fs::create_dir_all(&profiles_dir).context("creating the session's profiles folder")?;
    std::fs::create_dir_all(inputs.session_dir.join("ci"))
        .context("creating the session's CI folder")?;
    let mut copied = false;
    let mut state = None;
    let (target, output) = match &plan {
        Plan::CiTarget { target, defer } => {
            if *defer {
                if let Some(src) = &state_src {
                    let dir = inputs.session_dir.join("state");
                    std::fs::create_dir_all(&dir).context("creating the state folder")?;
                    std::fs::copy(src, dir.join("manifest.json"))
                        .with_context(|| format!("copying {}", src.display()))?;
                    state = Some(dir);
                }
            }
            let mut out = profile.outputs[target].clone();
            separate_session(&mut out, inputs.session_dir, inputs.session_name);
            (target.clone(), out)
        }
        Plan::DuckDbCopy {
            prod_target,
            prod_path,
        } => {
            let dir = inputs.session_dir.join("warehouse");
            std::fs::create_dir_all(&dir).context("creating the session's warehouse folder")?;
            let name = Path::new(prod_path)
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_else(|| "warehouse.duckdb".into());
            let copy = dir.join(&name);
            if let Some(src) = find_prod_file(prod_path, inputs.source_project_dir) {
                copy_database(&src, &copy)?;
                copied = true;
            }
            let mut out = profile.outputs[prod_target].clone();
            if let Some(map) = out.as_object_mut() {
                map.insert("path".into(), Value::String(copy.display().to_string()));
            }
            (SESSION_TARGET.to_string(), out)
        }
        Plan::CompileOnly { prod_target, .. } => {
            (prod_target.clone(), profile.outputs[prod_target].clone())
        }
    };
    let mut output = output;
    attach_read_only(&mut output);
    // JSON is YAML: the session's profiles.yml holds one profile with one output.
    let doc = serde_json::json!({
        profile.name.clone(): { "target": target, "outputs": { target.clone(): output } }
    });
    std::fs::write(
        profiles_dir.join("profiles.yml"),
        serde_json::to_string_pretty(&doc)?,
    )
    .context("writing the session's profiles.yml")?;

    let agent_profiles_dir = if matches!(plan, Plan::CompileOnly { .. }) {
        let empty = inputs.session_dir.join("agent-profiles");
        std::fs::create_dir_all(&empty).context("creating the agent's profiles folder")?;
        empty
    } else {
        profiles_dir.clone()
    };
    let mut dbt = inputs.base.clone();
    dbt.profiles_dir = Some(profiles_dir);
    dbt.target = Some(target);
    if let Some(state) = &state {
        // Every dbt command of the session defers (the doctor's and the
        // agent's queries too), not only verification.
        dbt.env.push(("DBT_DEFER".into(), "true".into()));
        dbt.env
            .push(("DBT_STATE".into(), state.display().to_string()));
    }
    dbt.read_only = matches!(plan, Plan::CompileOnly { .. });
    Ok(Isolation {
        plan,
        dbt,
        state,
        project,
        copied,
        agent_profiles_dir,
    })
}

/// Makes every DuckDB `attach:` of the session's output read-only: an
/// attached database may be production's, and a model that writes there
/// must fail rather than change it.
fn attach_read_only(out: &mut Value) {
    let Some(attach) = out.get_mut("attach").and_then(Value::as_array_mut) else {
        return;
    };
    for entry in attach.iter_mut().filter_map(Value::as_object_mut) {
        entry.insert("read_only".into(), Value::Bool(true));
    }
}

/// Gives the session a CI place of its own, as CI gives each pull request
/// one: its own schema (`<schema>_<session>`), and for a DuckDB file, its own
/// file (DuckDB lets one process write a file at a time).
fn separate_session(out: &mut Value, session_dir: &Path, session_name: &str) {
    let Some(map) = out.as_object_mut() else {
        return;
    };
    // BigQuery calls the schema a dataset.
    let key = if map.contains_key("dataset") {
        "dataset"
    } else {
        "schema"
    };
    let base = map
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("main")
        .to_string();
    map.insert(key.into(), Value::String(format!("{base}_{session_name}")));
    let is_duckdb_file = map.get("type").and_then(Value::as_str) == Some("duckdb")
        && map
            .get("path")
            .and_then(Value::as_str)
            .is_some_and(|p| !p.contains("{{"));
    if is_duckdb_file {
        let name = map
            .get("path")
            .and_then(Value::as_str)
            .and_then(|p| Path::new(p).file_name())
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "ci.duckdb".into());
        let file = session_dir.join("ci").join(name);
        map.insert("path".into(), Value::String(file.display().to_string()));
    }
}

/// Production's DuckDB file, if selfheal can find it: an absolute path, or a
/// relative one inside the local repository's project.
fn find_prod_file(path: &str, source_project: Option<&Path>) -> Option<PathBuf> {
    let p = Path::new(path);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        source_project?.join(p)
    };
    full.is_file().then_some(full)
}

/// Copies a DuckDB file and its write-ahead log, reading only.
pub(crate) fn copy_database(src: &Path, dst: &Path) -> Result<()> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::copy(src, dst).with_context(|| format!("copying {}", src.display()))?;
    let mut wal = src.as_os_str().to_owned();
    wal.push(".wal");
    let wal = PathBuf::from(wal);
    if wal.is_file() {
        let mut dst_wal = dst.as_os_str().to_owned();
        dst_wal.push(".wal");
        std::fs::copy(&wal, PathBuf::from(dst_wal))
            .with_context(|| format!("copying {}", wal.display()))?;
    }
    Ok(())
}

/// Refuses a dbt command that writes when dbt is read-only.
pub fn check_read_only(args: &[String]) -> Result<()> {
    const READS: &[&str] = &[
        "compile",
        "parse",
        "show",
        "ls",
        "list",
        "debug",
        "deps",
        "docs",
        "--version",
    ];
    let sub = args
        .iter()
        .find(|a| !a.starts_with('-') || *a == "--version");
    match sub {
        Some(s) if READS.contains(&s.as_str()) => Ok(()),
        Some(s) => bail!(
            "`dbt {s}` would write to production, and no isolated place is configured ({FULL_VERIFICATION_HINT})"
        ),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "PROD_DB").then(|| "/srv/warehouse.duckdb".into())
    }

    fn profile_of(yaml: &str) -> Profile {
        profile::profile(yaml, "shop", &env).unwrap()
    }

    const DUCK: &str = "shop:\n  target: prod\n  outputs:\n    prod:\n      type: duckdb\n      path: \"{{ env_var('PROD_DB') }}\"\n    ci:\n      type: duckdb\n      path: /tmp/ci.duckdb\n    twin:\n      type: duckdb\n      path: /srv/warehouse.duckdb\n";
    const SNOW: &str = "shop:\n  target: prod\n  outputs:\n    prod:\n      type: snowflake\n    ci:\n      type: snowflake\n";
    const CLOUD: &str = "shop:\n  target: prod\n  outputs:\n    prod:\n      type: duckdb\n      path: 'md:analytics'\n";

    #[test]
    fn the_plan_never_builds_into_production() {
        type Case = (
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            bool,
            Result<Plan, &'static str>,
        );
        let cases: Vec<Case> = vec![
            // A DuckDB production without a CI target: a throwaway copy.
            (DUCK, None, None, false, Ok(Plan::DuckDbCopy { prod_target: "prod".into(), prod_path: "/srv/warehouse.duckdb".into() })),
            // A CI target: slim CI, deferring when the manifest is known.
            (DUCK, Some("ci"), None, true, Ok(Plan::CiTarget { target: "ci".into(), defer: true })),
            (DUCK, Some("ci"), None, false, Ok(Plan::CiTarget { target: "ci".into(), defer: false })),
            (SNOW, Some("ci"), None, false, Ok(Plan::CiTarget { target: "ci".into(), defer: false })),
            // The CI target is production, or writes to the same file.
            (DUCK, Some("prod"), None, false, Err("never builds into production")),
            (DUCK, Some("twin"), None, false, Err("same DuckDB file")),
            (DUCK, Some("nope"), None, false, Err("not an output")),
            // Production named explicitly: `ci` is the scheduler's target here.
            (DUCK, Some("ci"), Some("ci"), false, Err("never builds into production")),
            (DUCK, None, Some("ci"), false, Ok(Plan::DuckDbCopy { prod_target: "ci".into(), prod_path: "/tmp/ci.duckdb".into() })),
            // A warehouse with only production: compile only.
            (SNOW, None, None, false, Ok(Plan::CompileOnly { prod_target: "prod".into(), why: "production `prod` is a snowflake warehouse and no CI target is configured".into() })),
            (CLOUD, None, None, false, Ok(Plan::CompileOnly { prod_target: "prod".into(), why: "production `prod` is DuckDB at md:analytics, which selfheal cannot copy, and no CI target is configured".into() })),
            (SNOW, None, Some("staging"), false, Err("not an output")),
        ];
        for (yaml, ci, prod, state, want) in cases {
            let p = profile_of(yaml);
            let got = plan(
                &Facts {
                    profile: &p,
                    prod_target: prod,
                    ci_target: ci,
                    state_known: state,
                },
                &env,
            );
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "ci={ci:?} prod={prod:?}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{g}"),
                (g, w) => panic!("ci={ci:?} prod={prod:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn an_unrenderable_default_target_asks_for_the_setting() {
        let p = profile_of(
            "shop:\n  target: \"{{ var('t') }}\"\n  outputs:\n    prod:\n      type: duckdb\n",
        );
        let err = plan(
            &Facts {
                profile: &p,
                prod_target: None,
                ci_target: None,
                state_known: false,
            },
            &env,
        )
        .unwrap_err();
        assert!(err.contains("SELFHEAL_DBT_PROD_TARGET"), "{err}");
    }

    #[test]
    fn verification_builds_what_the_place_lacks() {
        let copy = Plan::DuckDbCopy {
            prod_target: "prod".into(),
            prod_path: "p".into(),
        };
        let slim = Plan::CiTarget {
            target: "ci".into(),
            defer: true,
        };
        let compile = Plan::CompileOnly {
            prod_target: "prod".into(),
            why: "w".into(),
        };
        let nodes = vec!["customers".to_string(), "orders".to_string()];
        let state = Path::new("/s/state");
        let cases: Vec<(&Plan, &[String], bool, &str)> = vec![
            (&copy, &nodes, true, "build --select customers+ orders+"),
            (&copy, &nodes, false, "build --select +customers+ +orders+"),
            (
                &slim,
                &nodes,
                true,
                "build --select customers+ orders+ --defer --state /s/state",
            ),
            (
                &compile,
                &nodes,
                false,
                "compile --no-populate-cache --select customers+ orders+",
            ),
            (&copy, &[], true, "parse"),
            (&compile, &[], false, "compile --no-populate-cache"),
        ];
        for (plan, nodes, ready, want) in cases {
            assert_eq!(
                verification_args(plan, nodes, ready, Some(state)).join(" "),
                want
            );
        }
    }

    #[test]
    fn a_ci_session_gets_a_schema_and_a_duckdb_file_of_its_own() {
        let cases = [
            (
                serde_json::json!({"type": "snowflake", "schema": "ci"}),
                serde_json::json!({"type": "snowflake", "schema": "ci_selfheal_7"}),
            ),
            (
                serde_json::json!({"type": "bigquery", "dataset": "ci"}),
                serde_json::json!({"type": "bigquery", "dataset": "ci_selfheal_7"}),
            ),
            (
                serde_json::json!({"type": "duckdb", "path": "/w/ci.duckdb"}),
                serde_json::json!({"type": "duckdb", "path": "/s/ci/ci.duckdb", "schema": "main_selfheal_7"}),
            ),
        ];
        for (mut out, want) in cases {
            separate_session(&mut out, Path::new("/s"), "selfheal_7");
            assert_eq!(out, want);
        }
    }

    #[test]
    fn attached_databases_are_only_read() {
        let mut out = serde_json::json!({
            "type": "duckdb",
            "attach": [{"path": "/srv/warehouse.duckdb"}, {"path": "/srv/raw.duckdb", "read_only": false}]
        });
        attach_read_only(&mut out);
        assert_eq!(
            out["attach"],
            serde_json::json!([
                {"path": "/srv/warehouse.duckdb", "read_only": true},
                {"path": "/srv/raw.duckdb", "read_only": true}
            ])
        );
        let mut plain = serde_json::json!({"type": "duckdb", "path": "x.duckdb"});
        attach_read_only(&mut plain);
        assert_eq!(
            plain,
            serde_json::json!({"type": "duckdb", "path": "x.duckdb"})
        );
    }

    #[test]
    fn read_only_dbt_only_reads() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        for ok in [
            "compile --select x",
            "show --inline select 1",
            "--no-use-colors parse",
            "ls",
            "deps",
        ] {
            assert!(check_read_only(&args(ok)).is_ok(), "{ok}");
        }
        for refused in [
            "build --select x",
            "run",
            "--no-use-colors test",
            "seed",
            "snapshot",
            "run-operation m",
            "clone",
        ] {
            let err = check_read_only(&args(refused)).unwrap_err().to_string();
            assert!(
                err.contains("would write to production"),
                "{refused}: {err}"
            );
        }
    }
}
