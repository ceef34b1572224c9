//! The drill's own production: the team's profile with every DuckDB file it
//! names moved inside the drill folder. Pure: the caller copies the files.
//!
//! The profile keeps its outputs and its default target (production stays
//! production, `ci` stays `ci`), so a healer sees what it would see for
//! real. A path inside the project stays relative (it lands inside the
//! project's copy); any other path — absolute, or relative but leaving the
//! project — is replaced by a file in the drill's warehouse folder, filled
//! with a copy of the team's file when there is one (raw data may live only
//! there). Nothing in the written profile reaches a file of the team's.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::dbt::profile::{render, Profile, Warehouse};

/// The rewritten profile and what the caller must do for it.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillProfile {
    /// The drill's `profiles.yml` (JSON, which is YAML).
    pub yaml: String,
    /// The production target (the profile's default).
    pub prod_target: String,
    /// Production's database files: relative ones are inside the project's
    /// copy, absolute ones inside the drill folder.
    pub production: Vec<PathBuf>,
    /// Team files to copy (read only) → where in the drill folder.
    pub copies: Vec<(PathBuf, PathBuf)>,
    /// Outputs left out, and why.
    pub dropped: Vec<String>,
}

/// Rewrites `profile` for a drill whose warehouse folder is `warehouse`;
/// `project` is the team's project folder (relative paths start there).
pub fn rewrite(
    profile: &Profile,
    project: &Path,
    warehouse: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DrillProfile, String> {
    let prod = profile.default_target.clone().ok_or_else(|| {
        format!(
            "cannot tell which target of profile `{}` is production: its `target:` does not render",
            profile.name
        )
    })?;
    match profile.warehouse(&prod, env) {
        None => {
            return Err(format!(
                "production target `{prod}` is not an output of profile `{}`",
                profile.name
            ))
        }
        Some(Warehouse::Other(adapter)) => {
            return Err(format!(
                "the drill runs on DuckDB projects: production (profile `{}`, target `{prod}`) is on {adapter}",
                profile.name
            ))
        }
        Some(Warehouse::DuckDbElsewhere(path)) => {
            return Err(format!(
                "the drill runs on DuckDB projects with production in a local file: target `{prod}` is at {path}"
            ))
        }
        Some(Warehouse::DuckDbFile(_)) => {}
    }

    let mut placer = Placer {
        project,
        warehouse,
        env,
        copies: vec![],
        placed: BTreeMap::new(),
    };
    let mut outputs = serde_json::Map::new();
    let mut dropped = vec![];
    let mut production = vec![];
    for (target, output) in &profile.outputs {
        let mut output = output.clone();
        match profile.warehouse(target, env) {
            Some(Warehouse::DuckDbFile(path)) => {
                let placed = placer.place(&path);
                if *target == prod {
                    production.push(PathBuf::from(&placed));
                }
                output["path"] = Value::String(placed);
            }
            Some(Warehouse::DuckDbElsewhere(path)) if path == ":memory:" => {}
            Some(Warehouse::DuckDbElsewhere(path)) => {
                dropped.push(format!(
                    "target `{target}` is at {path}, outside this machine"
                ));
                continue;
            }
            Some(Warehouse::Other(adapter)) => {
                dropped.push(format!("target `{target}` is on {adapter}, not DuckDB"));
                continue;
            }
            // Every key of `outputs` is an output.
            None => continue,
        }
        if let Some(attach) = output.get_mut("attach").and_then(Value::as_array_mut) {
            for entry in attach {
                let Some(path) = entry
                    .get("path")
                    .and_then(Value::as_str)
                    .and_then(|p| render(p, env))
                else {
                    continue;
                };
                if is_remote(&path) {
                    continue;
                }
                let placed = placer.place(&path);
                if *target == prod {
                    production.push(PathBuf::from(&placed));
                }
                entry["path"] = Value::String(placed);
            }
        }
        // dbt-duckdb writes external materializations under external_root.
        if let Some(root) = output
            .get("external_root")
            .and_then(Value::as_str)
            .and_then(|r| render(r, env))
        {
            if !is_remote(&root) && placer.outside(&root) {
                let dir = warehouse.join("external").join(target);
                output["external_root"] = Value::String(dir.display().to_string());
            }
        }
        outputs.insert(target.clone(), output);
    }
    let doc = serde_json::json!({ profile.name.clone(): { "target": prod, "outputs": outputs } });
    Ok(DrillProfile {
        yaml: serde_json::to_string_pretty(&doc).expect("JSON values serialize"),
        prod_target: prod,
        production,
        copies: placer.copies,
        dropped,
    })
}

struct Placer<'a> {
    project: &'a Path,
    warehouse: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    copies: Vec<(PathBuf, PathBuf)>,
    /// Team file → drill file, so two targets sharing a file still share it.
    placed: BTreeMap<PathBuf, PathBuf>,
}

impl Placer<'_> {
    /// The team's file that `path` names, when it is not inside the project.
    fn outside(&self, path: &str) -> bool {
        self.team_file(path).is_some()
    }

    fn team_file(&self, path: &str) -> Option<PathBuf> {
        let p = match path.strip_prefix("~/") {
            Some(rest) => PathBuf::from((self.env)("HOME").unwrap_or_default()).join(rest),
            None => PathBuf::from(path),
        };
        if p.is_absolute() {
            return Some(normalize(&p));
        }
        let inside = normalize(&p);
        match inside.components().next() {
            Some(Component::ParentDir) => Some(normalize(&self.project.join(&p))),
            _ => None,
        }
    }

    /// Where the drill keeps the database `path` names.
    fn place(&mut self, path: &str) -> String {
        let Some(team) = self.team_file(path) else {
            return path.to_string();
        };
        if let Some(drill) = self.placed.get(&team) {
            return drill.display().to_string();
        }
        let name = team
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "warehouse.duckdb".into());
        let mut drill = self.warehouse.join(&name);
        let mut n = 2;
        while self.placed.values().any(|d| *d == drill) {
            drill = self.warehouse.join(format!("{n}-{name}"));
            n += 1;
        }
        self.copies.push((team.clone(), drill.clone()));
        self.placed.insert(team, drill.clone());
        drill.display().to_string()
    }
}

fn is_remote(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains("://")
        || lower.starts_with("md:")
        || lower.starts_with("motherduck:")
        || path == ":memory:"
}

/// `path` with `.` and `..` resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbt::profile::profile;

    fn env(name: &str) -> Option<String> {
        match name {
            "WAREHOUSE" => Some("/srv/prod.duckdb".into()),
            "HOME" => Some("/home/dana".into()),
            _ => None,
        }
    }

    fn drill(yaml: &str) -> Result<DrillProfile, String> {
        let p = profile(yaml, "shop", &env).map_err(|e| e.to_string())?;
        rewrite(
            &p,
            Path::new("/work/shop"),
            Path::new("/tmp/drill/warehouse"),
            &env,
        )
    }

    fn outputs(d: &DrillProfile) -> Value {
        let doc: Value = serde_json::from_str(&d.yaml).unwrap();
        doc["shop"]["outputs"].clone()
    }

    #[test]
    fn production_at_an_absolute_path_moves_into_the_drill_and_ci_stays() {
        let d = drill(
            "shop:\n  target: prod\n  outputs:\n    prod:\n      type: duckdb\n      path: \"{{ env_var('WAREHOUSE') }}\"\n      attach:\n        - path: /srv/raw.duckdb\n          alias: raw\n          read_only: true\n        - path: s3://bucket/x.parquet\n    ci:\n      type: duckdb\n      path: ci.duckdb\n      attach:\n        - path: /srv/raw.duckdb\n          alias: raw\n",
        )
        .unwrap();
        let out = outputs(&d);
        assert_eq!(out["prod"]["path"], "/tmp/drill/warehouse/prod.duckdb");
        assert_eq!(
            out["prod"]["attach"][0]["path"],
            "/tmp/drill/warehouse/raw.duckdb"
        );
        assert_eq!(out["prod"]["attach"][1]["path"], "s3://bucket/x.parquet");
        assert_eq!(
            out["ci"]["path"], "ci.duckdb",
            "inside the project: stays relative"
        );
        assert_eq!(
            out["ci"]["attach"][0]["path"], "/tmp/drill/warehouse/raw.duckdb",
            "one copy per team file"
        );
        assert_eq!(d.prod_target, "prod");
        assert_eq!(
            d.production,
            [
                PathBuf::from("/tmp/drill/warehouse/prod.duckdb"),
                PathBuf::from("/tmp/drill/warehouse/raw.duckdb")
            ]
        );
        // Outputs are visited by name: `ci` placed the shared file first.
        assert_eq!(
            d.copies,
            [
                (
                    PathBuf::from("/srv/raw.duckdb"),
                    PathBuf::from("/tmp/drill/warehouse/raw.duckdb")
                ),
                (
                    PathBuf::from("/srv/prod.duckdb"),
                    PathBuf::from("/tmp/drill/warehouse/prod.duckdb")
                ),
            ]
        );
        let doc: Value = serde_json::from_str(&d.yaml).unwrap();
        assert_eq!(doc["shop"]["target"], "prod");
    }

    #[test]
    fn relative_paths_stay_inside_the_copy_unless_they_leave_the_project() {
        let d = drill(
            "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: \"{{ env_var('NOPE', 'target/shop.duckdb') }}\"\n    other:\n      type: duckdb\n      path: ../data/shop.duckdb\n    home:\n      type: duckdb\n      path: ~/dbs/shop.duckdb\n",
        )
        .unwrap();
        let out = outputs(&d);
        assert_eq!(out["dev"]["path"], "target/shop.duckdb");
        assert_eq!(d.production, [PathBuf::from("target/shop.duckdb")]);
        assert_eq!(out["home"]["path"], "/tmp/drill/warehouse/shop.duckdb");
        assert_eq!(
            out["other"]["path"], "/tmp/drill/warehouse/2-shop.duckdb",
            "same name, another file"
        );
        assert_eq!(d.copies[0].0, PathBuf::from("/home/dana/dbs/shop.duckdb"));
        assert_eq!(d.copies[1].0, PathBuf::from("/work/data/shop.duckdb"));
    }

    #[test]
    fn other_warehouses_are_refused_or_left_out() {
        let err = drill("shop:\n  target: prod\n  outputs:\n    prod:\n      type: snowflake\n      account: x\n").unwrap_err();
        assert!(err.contains("the drill runs on DuckDB projects"), "{err}");
        assert!(err.contains("snowflake"), "{err}");
        let err = drill("shop:\n  target: prod\n  outputs:\n    prod:\n      type: duckdb\n      path: md:analytics\n").unwrap_err();
        assert!(err.contains("md:analytics"), "{err}");
        let d = drill(
            "shop:\n  target: prod\n  outputs:\n    prod:\n      type: duckdb\n      path: p.duckdb\n    snow:\n      type: snowflake\n",
        )
        .unwrap();
        assert!(outputs(&d).get("snow").is_none());
        assert_eq!(d.dropped, ["target `snow` is on snowflake, not DuckDB"]);
    }
}
