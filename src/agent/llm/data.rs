//! What a data diagnosis is shown before its first turn: each failing data
//! test's offending rows and the lineage of what it tests.
//!
//! The rows come from the test's own query (its `compiled_code` in the run
//! log, else `dbt compile`, as dbt-doctor gets it), run through
//! [`Toolbox::query_table`], the very path of `run_sql_query`: read-only
//! checked, `dbt show`, redacted. The lineage comes from the clone's
//! `manifest.json`; a fresh clone has none, so `dbt parse` writes one (one
//! command gives the whole graph, where `dbt ls` would first need the tested
//! model's name). Nothing here edits a file of the project.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::time::Instant;

use super::prompt::{self, FailingTest, Lineage, Node, FAILING_ROWS};
use super::tools::{head, Toolbox};
use crate::dbt::Dbt;
use crate::runlog::{ErrorKind, NodeFailure, RunLog};

/// At most this many failing tests are shown; the rest are named as a count.
pub const MAX_TESTS: usize = 5;
/// At most this much of each test's rows.
const ROWS_BYTES: usize = 4 * 1024;

/// What a data diagnosis is shown after the run-log digest (see
/// [`prompt::data_context`]), gathered before `deadline`, or why it is missing.
pub async fn context(
    log: &RunLog,
    tools: &Toolbox,
    project: &Path,
    dbt: &Dbt,
    deadline: Instant,
) -> String {
    match tokio::time::timeout_at(deadline, gather(log, tools, project, dbt)).await {
        Ok((tests, more)) => prompt::data_context(&tests, more),
        Err(_) => "\nThe failing tests' rows and lineage could not be read before the wall clock ran out.\n"
            .to_string(),
    }
}

/// The failing data tests of `log` (at most [`MAX_TESTS`]) with their rows
/// and lineage, and how many more there were.
pub async fn gather(
    log: &RunLog,
    tools: &Toolbox,
    project: &Path,
    dbt: &Dbt,
) -> (Vec<FailingTest>, usize) {
    let failing: Vec<&NodeFailure> = log
        .failures
        .iter()
        .filter(|f| f.kind == ErrorKind::TestFailure && f.resource_type != "unit_test")
        .collect();
    let more = failing.len().saturating_sub(MAX_TESTS);
    let mut graph = Graph::Unread;
    let mut out = Vec::new();
    for f in failing.into_iter().take(MAX_TESTS) {
        // The graph first: reading it must not depend on what the query's
        // `dbt show` happens to leave in the target folder.
        let lineage = graph.lineage(f, project, dbt).await;
        let rows = rows(f, tools, project, dbt).await;
        out.push(FailingTest {
            name: f.name.clone(),
            rows,
            lineage,
        });
    }
    (out, more)
}

/// The test's offending rows, as `run_sql_query` would return them.
async fn rows(
    f: &NodeFailure,
    tools: &Toolbox,
    project: &Path,
    dbt: &Dbt,
) -> Result<String, String> {
    let sql = match &f.compiled_code {
        Some(sql) => sql.clone(),
        None => crate::doctor::compile_test(project, &f.name, dbt).await?,
    };
    let table = tools.query_table(&sql, FAILING_ROWS).await?;
    Ok(head(&table, ROWS_BYTES))
}

/// The project's graph, read once per session.
enum Graph {
    Unread,
    Read { manifest: Manifest, from: String },
    Unknown(String),
}

impl Graph {
    async fn lineage(&mut self, test: &NodeFailure, project: &Path, dbt: &Dbt) -> Lineage {
        if let Graph::Unread = self {
            *self = Graph::read(project, dbt).await;
        }
        match self {
            Graph::Read { manifest, from } => manifest.lineage(test, from).unwrap_or_else(|| {
                Lineage::Unknown("the test is not in the project's manifest.json".into())
            }),
            Graph::Unknown(why) => Lineage::Unknown(why.clone()),
            // Read just above; said plainly rather than panicking.
            Graph::Unread => Lineage::Unknown("the project's graph was not read".into()),
        }
    }

    /// The clone's manifest, or the one `dbt parse` writes.
    async fn read(project: &Path, dbt: &Dbt) -> Graph {
        let path = manifest_path(project);
        if let Ok(manifest) = Manifest::load(&path) {
            return Graph::Read {
                manifest,
                from: "the clone's manifest.json".into(),
            };
        }
        match dbt.run(project, &["parse".to_string()]).await {
            Ok(run) if run.success => match Manifest::load(&path) {
                Ok(manifest) => Graph::Read {
                    manifest,
                    from: "`dbt parse` of the clone".into(),
                },
                Err(why) => Graph::Unknown(why),
            },
            // dbt's output would reach the prompt unquoted here; the model can
            // run `dbt parse` itself and read it as a tool result.
            Ok(_) => Graph::Unknown(
                "`dbt parse` failed; run it with run_terminal_command to see why".into(),
            ),
            Err(e) => Graph::Unknown(format!("`dbt parse` could not run: {e:#}")),
        }
    }
}

/// `<project>/<target-path>/manifest.json` (`target` unless dbt_project.yml says otherwise).
fn manifest_path(project: &Path) -> PathBuf {
    let target = std::fs::read_to_string(project.join("dbt_project.yml"))
        .ok()
        .and_then(|t| crate::dbt::profile::project_settings(&t).ok())
        .map_or_else(|| "target".to_string(), |s| s.target_path);
    project.join(target).join("manifest.json")
}

/// The parts of `manifest.json` lineage needs (a large project's manifest
/// is hundreds of megabytes; the SQL and docs in it are skipped).
#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    nodes: HashMap<String, ManifestNode>,
    #[serde(default)]
    sources: HashMap<String, ManifestNode>,
    #[serde(default)]
    parent_map: HashMap<String, Vec<String>>,
    #[serde(default)]
    child_map: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct ManifestNode {
    #[serde(default)]
    name: String,
    #[serde(default)]
    resource_type: String,
    #[serde(default)]
    original_file_path: Option<String>,
    /// The node a generic test is attached to (dbt ≥ 1.5).
    #[serde(default)]
    attached_node: Option<String>,
    #[serde(default)]
    depends_on: DependsOn,
}

#[derive(Deserialize, Default)]
struct DependsOn {
    #[serde(default)]
    nodes: Vec<String>,
}

impl Manifest {
    fn load(path: &Path) -> Result<Manifest, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("no manifest.json ({e})"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("manifest.json does not parse ({e})"))
    }

    /// What `test` tests, with its parents and children (tests left out).
    fn lineage(&self, test: &NodeFailure, from: &str) -> Option<Lineage> {
        let id = test
            .unique_id
            .as_deref()
            .filter(|id| self.nodes.contains_key(*id))
            .map(str::to_string)
            .or_else(|| {
                self.nodes
                    .iter()
                    .find(|(_, n)| n.resource_type == "test" && n.name == test.name)
                    .map(|(id, _)| id.clone())
            })?;
        let node = &self.nodes[&id];
        let tested = node
            .attached_node
            .clone()
            .or_else(|| node.depends_on.nodes.first().cloned())?;
        let related = |map: &HashMap<String, Vec<String>>| {
            let mut ids: Vec<&String> = map
                .get(&tested)
                .into_iter()
                .flatten()
                .filter(|c| !c.starts_with("test.") && !c.starts_with("unit_test."))
                .collect();
            ids.sort();
            ids.into_iter().map(|c| self.node(c)).collect()
        };
        Some(Lineage::Known {
            from: from.to_string(),
            parents: related(&self.parent_map),
            children: related(&self.child_map),
            tested: self.node(&tested),
        })
    }

    fn node(&self, id: &str) -> Node {
        let path = self
            .nodes
            .get(id)
            .or_else(|| self.sources.get(id))
            .and_then(|n| n.original_file_path.clone());
        Node {
            id: id.to_string(),
            path,
        }
    }
}
