//! What a dbt project defines: node, source, macro and documented column names.
//!
//! [`ProjectIndex::scan`] is the only IO here: it reads `dbt_project.yml` for
//! the `*-paths`, lists models, seeds and snapshots, and reads the yml files
//! under the model paths for sources and documented columns. Files that do not
//! parse are skipped (and listed in `unreadable`): a broken schema.yml is the
//! failure being diagnosed, not a reason to stop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

/// The names a project defines, each with the file that defines it (relative to
/// the project).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectIndex {
    pub models: BTreeMap<String, String>,
    pub seeds: BTreeMap<String, String>,
    pub snapshots: BTreeMap<String, String>,
    /// `source name → table names`.
    pub sources: BTreeMap<String, Vec<String>>,
    pub macros: BTreeMap<String, String>,
    /// Documented columns of models, seeds and snapshots, by node name.
    pub columns: BTreeMap<String, Vec<String>>,
    /// Documented columns of source tables, by `(source, table)`.
    pub source_columns: BTreeMap<(String, String), Vec<String>>,
    /// `models` unless dbt_project.yml says otherwise: YAML error paths are relative to these.
    pub model_paths: Vec<String>,
    /// Every file scanned (relative paths), so the pure core can resolve paths.
    pub files: BTreeSet<String>,
    /// yml files that did not parse.
    pub unreadable: Vec<String>,
}

/// Which kind of node a ref can point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Model,
    Seed,
    Snapshot,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Model => "model",
            NodeKind::Seed => "seed",
            NodeKind::Snapshot => "snapshot",
        }
    }
}

static MACRO_DEF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{%-?\s*macro\s+(\w+)\s*\(").expect("static regex"));
static SNAPSHOT_DEF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{%-?\s*snapshot\s+(\w+)\s*-?%\}").expect("static regex"));

impl ProjectIndex {
    /// Reads the project at `project_dir`. Never fails: what cannot be read is left out.
    pub fn scan(project_dir: &Path) -> ProjectIndex {
        let cfg = std::fs::read_to_string(project_dir.join("dbt_project.yml"))
            .ok()
            .and_then(|s| serde_saphyr::from_str::<ProjectYml>(&s).ok())
            .unwrap_or_default();
        let or = |v: Option<Vec<String>>, d: &str| v.unwrap_or_else(|| vec![d.to_string()]);
        let model_paths = or(cfg.model_paths, "models");
        let seed_paths = or(cfg.seed_paths, "seeds");
        let macro_paths = or(cfg.macro_paths, "macros");
        let snapshot_paths = or(cfg.snapshot_paths, "snapshots");

        let mut ix = ProjectIndex {
            model_paths: model_paths.clone(),
            ..ProjectIndex::default()
        };
        // Only whether they exist matters: a missing package is diagnosed, not fixed.
        for deps in ["packages.yml", "dependencies.yml"] {
            if project_dir.join(deps).is_file() {
                ix.files.insert(deps.to_string());
            }
        }
        for root in &model_paths {
            for rel in walk(project_dir, root) {
                let text = || std::fs::read_to_string(project_dir.join(&rel)).unwrap_or_default();
                match extension(&rel) {
                    "sql" | "py" => {
                        ix.models.insert(stem(&rel), rel.clone());
                        if rel.ends_with(".sql") {
                            ix.add_macros(&rel, &text());
                        }
                    }
                    "yml" | "yaml" => ix.add_yml(&rel, &text()),
                    _ => {}
                }
                ix.files.insert(rel);
            }
        }
        for root in &seed_paths {
            for rel in walk(project_dir, root) {
                if extension(&rel) == "csv" {
                    ix.seeds.insert(stem(&rel), rel.clone());
                }
                ix.files.insert(rel);
            }
        }
        for root in &snapshot_paths {
            for rel in walk(project_dir, root) {
                let text = std::fs::read_to_string(project_dir.join(&rel)).unwrap_or_default();
                match extension(&rel) {
                    "sql" => {
                        for c in SNAPSHOT_DEF.captures_iter(&text) {
                            ix.snapshots.insert(c[1].to_string(), rel.clone());
                        }
                    }
                    "yml" | "yaml" => ix.add_yml(&rel, &text),
                    _ => {}
                }
                ix.files.insert(rel);
            }
        }
        for root in &macro_paths {
            for rel in walk(project_dir, root) {
                if extension(&rel) == "sql" {
                    let text = std::fs::read_to_string(project_dir.join(&rel)).unwrap_or_default();
                    ix.add_macros(&rel, &text);
                }
                ix.files.insert(rel);
            }
        }
        ix
    }

    /// Registers the macros defined in a file.
    pub fn add_macros(&mut self, rel: &str, text: &str) {
        for c in MACRO_DEF.captures_iter(text) {
            self.macros.insert(c[1].to_string(), rel.to_string());
        }
    }

    /// Registers the sources, yml snapshots and documented columns of a yml file.
    pub fn add_yml(&mut self, rel: &str, text: &str) {
        let Ok(doc) = serde_saphyr::from_str::<SchemaYml>(text) else {
            self.unreadable.push(rel.to_string());
            return;
        };
        let names = |cols: &[ColumnYml]| cols.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        for s in doc.sources {
            let tables = self.sources.entry(s.name.clone()).or_default();
            for t in &s.tables {
                tables.push(t.name.clone());
            }
            for t in s.tables {
                if !t.columns.is_empty() {
                    self.source_columns
                        .insert((s.name.clone(), t.name.clone()), names(&t.columns));
                }
            }
        }
        for n in doc.snapshots {
            self.snapshots.insert(n.name.clone(), rel.to_string());
            if !n.columns.is_empty() {
                self.columns.insert(n.name, names(&n.columns));
            }
        }
        for n in doc.models.into_iter().chain(doc.seeds) {
            if !n.columns.is_empty() {
                self.columns.insert(n.name, names(&n.columns));
            }
        }
    }

    /// The node a `ref` can point at, with its kind.
    pub fn node(&self, name: &str) -> Option<NodeKind> {
        if self.models.contains_key(name) {
            Some(NodeKind::Model)
        } else if self.seeds.contains_key(name) {
            Some(NodeKind::Seed)
        } else if self.snapshots.contains_key(name) {
            Some(NodeKind::Snapshot)
        } else {
            None
        }
    }

    /// Every name a `ref` can point at.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.models
            .keys()
            .chain(self.seeds.keys())
            .chain(self.snapshots.keys())
            .map(String::as_str)
    }

    /// The file defining a node.
    pub fn node_path(&self, name: &str) -> Option<&str> {
        self.models
            .get(name)
            .or_else(|| self.seeds.get(name))
            .or_else(|| self.snapshots.get(name))
            .map(String::as_str)
    }

    /// All `(source, table)` pairs.
    pub fn source_tables(&self) -> impl Iterator<Item = (&str, &str)> {
        self.sources
            .iter()
            .flat_map(|(s, ts)| ts.iter().map(move |t| (s.as_str(), t.as_str())))
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct ProjectYml {
    model_paths: Option<Vec<String>>,
    seed_paths: Option<Vec<String>>,
    macro_paths: Option<Vec<String>>,
    snapshot_paths: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
struct SchemaYml {
    #[serde(default)]
    sources: Vec<SourceYml>,
    #[serde(default)]
    models: Vec<NodeYml>,
    #[serde(default)]
    seeds: Vec<NodeYml>,
    #[serde(default)]
    snapshots: Vec<NodeYml>,
}

#[derive(Deserialize)]
struct SourceYml {
    name: String,
    #[serde(default)]
    tables: Vec<NodeYml>,
}

#[derive(Deserialize)]
struct NodeYml {
    name: String,
    #[serde(default)]
    columns: Vec<ColumnYml>,
}

#[derive(Deserialize)]
struct ColumnYml {
    name: String,
}

/// Files under `project_dir/root`, as project-relative paths with `/`,
/// skipping hidden directories.
fn walk(project_dir: &Path, root: &str) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![root.trim_end_matches('/').to_string()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(project_dir.join(&rel)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let child = format!("{rel}/{name}");
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(child),
                Ok(t) if t.is_file() => out.push(child),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

fn extension(rel: &str) -> &str {
    rel.rsplit_once('.').map(|(_, e)| e).unwrap_or("")
}

fn stem(rel: &str) -> String {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    file.rsplit_once('.')
        .map(|(s, _)| s)
        .unwrap_or(file)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_project_is_indexed() {
        let ix = ProjectIndex::scan(&crate::doctor::demo_dir());
        let models: Vec<&str> = ix.models.keys().map(String::as_str).collect();
        assert_eq!(
            models,
            [
                "customers",
                "orders",
                "stg_customers",
                "stg_orders",
                "stg_payments"
            ]
        );
        assert_eq!(ix.models["orders"], "models/marts/orders.sql");
        assert_eq!(
            ix.seeds.keys().collect::<Vec<_>>(),
            ["raw_customers", "raw_orders", "raw_payments"]
        );
        assert_eq!(
            ix.sources["jaffle_raw"],
            ["raw_customers", "raw_orders", "raw_payments"]
        );
        assert_eq!(ix.macros["cents_to_dollars"], "macros/cents_to_dollars.sql");
        assert_eq!(
            ix.columns["stg_orders"],
            ["order_id", "customer_id", "status"]
        );
        assert!(ix.files.contains("models/marts/schema.yml"));
        assert!(ix.unreadable.is_empty(), "{:?}", ix.unreadable);
    }
}
