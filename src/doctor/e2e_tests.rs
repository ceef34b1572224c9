//! The doctor against real dbt: copy the demo project, break it the way a
//! fixture did, build it for a real failing run, heal, and build again.
//! dbt runs one case at a time (each build takes seconds and the machine is small).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::dbt::DbtRun;
use crate::runlog::{parse, Artifacts};

static ONE_DBT_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The pinned dbt: `SELFHEAL_DBT`, else the repository's `.venv`.
fn dbt_exe() -> PathBuf {
    let exe = std::env::var_os("SELFHEAL_DBT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/dbt"));
    assert!(
        exe.is_file(),
        "dbt not found at {}: run scripts/setup-dbt (or set SELFHEAL_DBT to a dbt executable)",
        exe.display()
    );
    exe
}

/// A broken copy of the demo project with its own DuckDB file.
struct Project {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    dbt: Dbt,
}

fn broken_demo(case: &str) -> Project {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("jaffle_shop");
    copy_dir(&demo_dir(), &dir);
    let breakage: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo_root()
                .join("tests/fixtures/dbt")
                .join(case)
                .join("breakage.json"),
        )
        .expect("breakage.json"),
    )
    .expect("breakage json");
    let file = dir.join(breakage["file"].as_str().expect("file"));
    let text = std::fs::read_to_string(&file).expect("file to break");
    let find = breakage["find"].as_str().expect("find");
    assert_eq!(
        text.matches(find).count(),
        1,
        "{case}: the breakage must match once"
    );
    std::fs::write(
        &file,
        text.replacen(find, breakage["replace"].as_str().expect("replace"), 1),
    )
    .expect("write breakage");
    let dbt = Dbt {
        exe: dbt_exe(),
        profiles_dir: None,
        target: None,
        // The catalog is named after the file, as in the fixtures (`jaffle`).
        env: vec![(
            "SELFHEAL_DUCKDB_PATH".into(),
            tmp.path().join("jaffle.duckdb").display().to_string(),
        )],
        timeout: Duration::from_secs(300),
    };
    Project {
        _tmp: tmp,
        dir,
        dbt,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read demo").flatten() {
        let name = e.file_name();
        let n = name.to_string_lossy();
        if matches!(n.as_ref(), "target" | "logs" | "dbt_packages") || n.contains(".duckdb") {
            continue;
        }
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).expect("copy");
        }
    }
}

async fn build(p: &Project) -> (DbtRun, RunLog) {
    let results = p.dir.join("target/run_results.json");
    let _ = std::fs::remove_file(&results);
    let run = p
        .dbt
        .run(&p.dir, &["build".to_string()])
        .await
        .expect("dbt build runs");
    let log = parse(
        "e2e",
        &Artifacts {
            console: Some(run.output.clone()),
            run_results: std::fs::read_to_string(&results).ok(),
            command: Some(run.command.clone()),
            ..Artifacts::default()
        },
    );
    (run, log)
}

/// Breaks the demo like `case`, heals the failing run, and returns the report,
/// the project and the summary.
async fn heal_case(case: &str) -> (Report, Project, String) {
    let p = broken_demo(case);
    let (run, log) = build(&p).await;
    assert!(
        !run.success,
        "{case}: the broken project built:\n{}",
        run.output
    );
    assert!(
        !log.failures.is_empty(),
        "{case}: no failure parsed from:\n{}",
        run.output
    );
    let report = heal(&p.dir, &log, &p.dbt).await;
    let Some(AgentEvent::Result { summary, .. }) = report.events.last() else {
        panic!(
            "{case}: the report does not end with a result: {:?}",
            report.events
        )
    };
    let summary = summary.clone();
    // Shown with --nocapture: what the thread would say.
    eprintln!("=== {case}\n{summary}\n");
    (report, p, summary)
}

async fn fixed_and_builds(case: &str, file: &str) {
    let _one = ONE_DBT_AT_A_TIME.lock().await;
    let (report, p, summary) = heal_case(case).await;
    assert_eq!(report.edited, [file], "{case}: {summary}");
    assert!(
        matches!(
            report.events.last(),
            Some(AgentEvent::Result {
                outcome: Outcome::Fixed,
                ..
            })
        ),
        "{case}"
    );
    assert!(!report.data_problem, "{case}");
    let (run, _) = build(&p).await;
    assert!(
        run.success,
        "{case}: still failing after the fix ({summary}):\n{}",
        dbt_tail(&run)
    );
}

async fn diagnosed_only(case: &str, expected: &[&str]) -> Report {
    let _one = ONE_DBT_AT_A_TIME.lock().await;
    let (report, _p, summary) = heal_case(case).await;
    assert!(
        report.edited.is_empty(),
        "{case}: edited {:?}",
        report.edited
    );
    assert!(
        matches!(
            report.events.last(),
            Some(AgentEvent::Result {
                outcome: Outcome::NoFix,
                ..
            })
        ),
        "{case}"
    );
    for e in expected {
        assert!(
            summary.contains(e),
            "{case}: the summary lacks {e:?}:\n{summary}"
        );
    }
    report
}

fn dbt_tail(run: &DbtRun) -> String {
    crate::dbt::tail_lines(&run.output, 20)
}

#[tokio::test]
async fn a_misspelt_ref_is_renamed_and_the_build_passes() {
    fixed_and_builds("ref_typo", "models/marts/orders.sql").await;
}

#[tokio::test]
async fn a_misspelt_source_table_is_renamed_and_the_build_passes() {
    fixed_and_builds("source_typo", "models/staging/stg_orders.sql").await;
}

#[tokio::test]
async fn a_misspelt_column_is_renamed_from_duckdb_candidates_and_the_build_passes() {
    fixed_and_builds("column_typo", "models/staging/stg_orders.sql").await;
}

#[tokio::test]
async fn a_misspelt_macro_is_renamed_and_the_build_passes() {
    fixed_and_builds("macro_typo", "models/marts/customers.sql").await;
}

#[tokio::test]
async fn a_null_in_the_data_is_shown_not_edited() {
    let report = diagnosed_only(
        "not_null_failure",
        &[
            "not_null_stg_orders_customer_id",
            "2018-01-20",
            "user_id as customer_id",
            "raw_orders",
            "not changed",
        ],
    )
    .await;
    assert!(report.data_problem);
}

#[tokio::test]
async fn a_value_outside_the_accepted_list_is_shown_not_edited() {
    let report = diagnosed_only(
        "accepted_values_failure",
        &[
            "accepted_values_stg_orders_status",
            "delivered",
            "stg_orders.status",
            "not changed",
        ],
    )
    .await;
    assert!(report.data_problem);
}

#[tokio::test]
async fn an_ambiguous_ref_names_its_candidates_and_changes_nothing() {
    diagnosed_only(
        "ref_ambiguous",
        &[
            "models/marts/customers.sql line 9",
            "int_orders",
            "`raw_orders` (seed, distance 3)",
            "`stg_orders` (model, distance 3)",
            "needs a human or an LLM agent",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_syntax_error_is_located_in_the_model_file() {
    diagnosed_only(
        "syntax_error",
        &[
            "models/marts/orders.sql line 22",
            "syntax error at or near \"as\"",
            "needs a human or an LLM agent",
        ],
    )
    .await;
}
