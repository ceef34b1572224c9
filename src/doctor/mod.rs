//! dbt-doctor: the deterministic built-in healing agent. No LLM, instant.
//!
//! It fixes the failures that have one right answer — a misspelt `ref()`,
//! `source()`, column (compared with the database's own candidates, else with
//! the real columns of the relation behind the column's table alias, asked of
//! the warehouse, else with the documented ones) or macro — and only when the
//! nearest existing name is clearly better than the next (see [`choose`] for
//! the rule). Everything
//! else becomes a precise diagnosis: for failing data tests, the offending
//! rows (queried through `dbt show`) and the likely upstream cause, never an
//! edit of the test or the data; for syntax, YAML, package and other errors,
//! the file, the line and the error, handed to a human or an LLM agent.
//!
//! Layout: [`index`] scans the project (IO), [`diagnose`] turns one failure
//! into a [`diagnose::Finding`] (pure, table-tested), [`scope`] finds what a
//! table alias names in a model's SQL (pure), [`choose`] is the
//! clearly-better rule (pure), [`warehouse`] asks dbt for real columns, and
//! [`heal`] is the thin shell that applies edits and runs `dbt show`.
//!
//! Invariants: the doctor edits only files inside the project it was given,
//! only the file dbt blamed, and never a test definition or data file; it runs
//! dbt only to look (`dbt show` for data-test rows and for the columns of
//! relations, `dbt compile` when a test's query is missing), with the [`Dbt`]
//! it was handed — it never picks a profile or target; it never panics —
//! every problem ends up in the report.

pub mod choose;
pub mod diagnose;
pub mod index;
pub mod scope;
pub mod warehouse;

use std::path::{Component, Path};

use crate::dbt::Dbt;
use crate::domain::{AgentEvent, Outcome};
use crate::runlog::{ErrorKind, RunLog};

pub use diagnose::{diagnose, Action, DataTest, Finding, Relation, WarehouseColumns};
pub use index::ProjectIndex;

/// What the doctor did and found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// What to show, in order: progress lines, milestones, and one final Result event.
    pub events: Vec<AgentEvent>,
    /// Files changed in the project (relative paths), empty if nothing was edited.
    pub edited: Vec<String>,
    /// True when the failures were data-test failures (for the PR/no-PR decision the bot makes).
    pub data_problem: bool,
}

/// How many failing rows a data-test diagnosis shows.
const SHOW_LIMIT: &str = "10";

/// Diagnoses `log` against the dbt project at `project_dir` (a fresh workspace
/// the doctor may edit), applying the unambiguous fixes. Runs dbt (`dbt show`)
/// only to look: at a failing data test's rows, and at the real columns of the
/// relations behind an unknown column the database named no candidates for —
/// those relations must exist where `dbt` points, else the documented columns
/// stand in. Never panics; every problem becomes part of the report.
pub async fn heal(project_dir: &Path, log: &RunLog, dbt: &Dbt) -> Report {
    let mut events = vec![];
    let mut edited: Vec<String> = vec![];
    let mut summaries: Vec<String> = vec![];
    let ix = ProjectIndex::scan(project_dir);
    events.push(AgentEvent::Progress(format!(
        "dbt-doctor: indexed the project: {} models, {} seeds, {} snapshots, {} source tables, {} macros",
        ix.models.len(),
        ix.seeds.len(),
        ix.snapshots.len(),
        ix.source_tables().count(),
        ix.macros.len()
    )));
    if !ix.unreadable.is_empty() {
        events.push(AgentEvent::Progress(format!(
            "could not parse {}",
            ix.unreadable.join(", ")
        )));
    }
    if log.failures.is_empty() {
        let tail = crate::dbt::tail_lines(&log.raw, 8);
        summaries.push(format!(
            "The run log names no failing node, so dbt-doctor has nothing to diagnose; this needs a human or an LLM agent. Last lines of the log:\n```\n{tail}\n```"
        ));
    }
    for f in &log.failures {
        let path = f.path.as_deref().filter(|p| is_inside(p));
        events.push(AgentEvent::Progress(format!(
            "checking {} {}{}",
            f.resource_type,
            f.name,
            path.map(|p| format!(" ({p})")).unwrap_or_default()
        )));
        let text = path.and_then(|p| std::fs::read_to_string(project_dir.join(p)).ok());
        let finding = if f.resource_type == "project" {
            let mut whole = f.clone();
            whole.message = diagnose::complete_message(&f.message, &log.raw);
            diagnose(&whole, &ix, text.as_deref())
        } else {
            let wanted = diagnose::columns_to_look_up(f, &ix, text.as_deref());
            let seen = if wanted.is_empty() {
                WarehouseColumns::default()
            } else {
                let names: Vec<String> = wanted.iter().map(Relation::display).collect();
                events.push(AgentEvent::Progress(format!(
                    "asking the warehouse for the columns of {} (dbt show)",
                    names.join(", ")
                )));
                warehouse::columns(project_dir, dbt, &wanted).await
            };
            diagnose::diagnose_with_warehouse(f, &ix, text.as_deref(), &seen)
        };
        events.extend(finding.checked.iter().cloned().map(AgentEvent::Progress));
        match finding.action {
            Action::Edit { path, new_text, .. } if is_inside(&path) => {
                match std::fs::write(project_dir.join(&path), new_text) {
                    Ok(()) => {
                        if !edited.contains(&path) {
                            edited.push(path);
                        }
                        events.push(AgentEvent::Milestone(finding.milestone));
                        summaries.push(finding.summary);
                    }
                    Err(e) => {
                        let s = format!(
                            "{} The edit could not be written ({e}), so nothing was changed.",
                            finding.summary
                        );
                        events.push(AgentEvent::Milestone(format!(
                            "{}: could not write {path}: {e}",
                            f.name
                        )));
                        summaries.push(s);
                    }
                }
            }
            Action::Edit { path, .. } => {
                events.push(AgentEvent::Milestone(format!(
                    "{}: refusing to edit {path}, which is outside the project",
                    f.name
                )));
                summaries.push(format!(
                    "{} Not applied: {path} is outside the project.",
                    finding.summary
                ));
            }
            Action::Report => {
                events.push(AgentEvent::Milestone(finding.milestone));
                summaries.push(finding.summary);
            }
            Action::DataTest(dt) => {
                events.push(AgentEvent::Milestone(finding.milestone));
                summaries.push(data_test(project_dir, &ix, &dt, dbt, &mut events).await);
            }
        }
    }
    let outcome = if edited.is_empty() {
        Outcome::NoFix
    } else {
        Outcome::Fixed
    };
    events.push(AgentEvent::Result {
        outcome,
        summary: summaries.join("\n\n"),
    });
    Report {
        events,
        edited,
        data_problem: !log.failures.is_empty()
            && log
                .failures
                .iter()
                .all(|f| f.kind == ErrorKind::TestFailure),
    }
}

/// Shows a failing data test's rows and explains where they likely come from.
async fn data_test(
    project_dir: &Path,
    ix: &ProjectIndex,
    dt: &DataTest,
    dbt: &Dbt,
    events: &mut Vec<AgentEvent>,
) -> String {
    let compiled = match &dt.compiled_code {
        Some(sql) => Ok(sql.clone()),
        None => {
            events.push(AgentEvent::Progress(format!(
                "compiling {} to get its query",
                dt.test
            )));
            compile_test(project_dir, &dt.test, dbt).await
        }
    };
    events.push(AgentEvent::Progress(format!(
        "running the query of {} with dbt show",
        dt.test
    )));
    let rows = match compiled {
        Ok(sql) => show(project_dir, dbt, &sql, false).await,
        Err(e) => Err(e),
    };
    // A not_null test's rows are all nulls; the rows around them say which records they are.
    let context = match (&dt.test_type, &dt.relation, &dt.column) {
        (Some(t), Some(rel), Some(col)) if t == "not_null" => {
            events.push(AgentEvent::Progress(format!(
                "looking up the rows of {} where {col} is null",
                rel.display()
            )));
            Some(
                show(
                    project_dir,
                    dbt,
                    &format!("select * from {} where {col} is null", rel.jinja()),
                    true,
                )
                .await,
            )
        }
        _ => None,
    };
    let model_sql = match &dt.relation {
        Some(Relation::Node(n)) => ix
            .node_path(n)
            .filter(|p| p.ends_with(".sql"))
            .and_then(|p| std::fs::read_to_string(project_dir.join(p)).ok()),
        _ => None,
    };
    let upstream = diagnose::upstream_cause(dt, ix, model_sql.as_deref());
    diagnose::data_test_summary(dt, &rows, context.as_ref(), &upstream)
}

/// Runs `dbt show --inline <sql>` and returns its result table.
/// `jinja` says whether `sql` is a template (else it is compiled SQL, kept as it is).
async fn show(project_dir: &Path, dbt: &Dbt, sql: &str, jinja: bool) -> Result<String, String> {
    let mut sql = sql.trim().trim_end_matches(';').trim().to_string();
    // dbt renders --inline text as Jinja; compiled SQL must reach the database unchanged.
    if !jinja && (sql.contains("{{") || sql.contains("{%") || sql.contains("{#")) {
        sql = format!("{{% raw %}}{sql}{{% endraw %}}");
    }
    let args: Vec<String> = ["show", "--inline", &sql, "--limit", SHOW_LIMIT]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match dbt.run(project_dir, &args).await {
        Ok(run) if run.success => {
            let table: Vec<&str> = run
                .output
                .lines()
                .filter(|l| l.trim_start().starts_with('|'))
                .collect();
            if table.len() <= 2 {
                Ok("(no rows now: the data changed since the run)".into())
            } else {
                Ok(table.join("\n"))
            }
        }
        Ok(run) => Err(format!(
            "`dbt show` failed:\n```\n{}\n```",
            crate::dbt::tail_lines(&run.output, 6)
        )),
        Err(e) => Err(format!("`dbt show` could not run: {e:#}")),
    }
}

/// A test's query, from `dbt compile --select <test>` (its run_results.json
/// carries the compiled code; the compiled file name may be hashed). The llm
/// runner's data diagnosis gets a test's query the same way.
pub(crate) async fn compile_test(
    project_dir: &Path,
    test: &str,
    dbt: &Dbt,
) -> Result<String, String> {
    let args = vec![
        "compile".to_string(),
        "--select".to_string(),
        test.to_string(),
    ];
    let run = dbt
        .run(project_dir, &args)
        .await
        .map_err(|e| format!("`dbt compile` could not run: {e:#}"))?;
    if !run.success {
        return Err(format!(
            "`dbt compile --select {test}` failed:\n```\n{}\n```",
            crate::dbt::tail_lines(&run.output, 6)
        ));
    }
    let from_results = std::fs::read_to_string(project_dir.join("target/run_results.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| {
            v["results"].as_array()?.iter().find_map(|r| {
                let id = r["unique_id"].as_str()?;
                (id.split('.').nth(2) == Some(test))
                    .then(|| r["compiled_code"].as_str().map(str::to_string))
                    .flatten()
            })
        });
    from_results
        .or_else(|| find_compiled(&project_dir.join("target/compiled"), &format!("{test}.sql")))
        .ok_or_else(|| format!("the compiled query of {test} was not found"))
}

fn find_compiled(dir: &Path, file: &str) -> Option<String> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == file) {
                return std::fs::read_to_string(p).ok();
            }
        }
    }
    None
}

/// A relative path that stays inside the project.
fn is_inside(rel: &str) -> bool {
    let p = Path::new(rel);
    !rel.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// The repository root (for the demo project and the pinned dbt in tests).
#[cfg(test)]
pub(crate) fn repo_root() -> std::path::PathBuf {
    // `file!()` is relative to the manifest in the crate itself, absolute when
    // the module is included from elsewhere (src/doctor/mod.rs → 3 levels up).
    let here = Path::new(file!());
    if here.is_absolute() {
        here.ancestors()
            .nth(3)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    } else {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }
}

/// The demo dbt project.
#[cfg(test)]
pub(crate) fn demo_dir() -> std::path::PathBuf {
    repo_root().join("data/demo")
}

#[cfg(test)]
mod e2e_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_paths_inside_the_project_are_edited() {
        assert!(is_inside("models/marts/orders.sql"));
        assert!(is_inside("./models/x.sql"));
        for bad in ["", "/etc/passwd", "../x.sql", "models/../../x"] {
            assert!(!is_inside(bad), "{bad}");
        }
    }
}
