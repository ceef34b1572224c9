//! The doctor against real dbt: copy the demo project, break it the way a
//! fixture did, build it for a real failing run, and diagnose. The cases the
//! doctor fixes are told end to end, PR and all, by `tests/it/heal.rs`
//! (`dbt_doctor_fixes_*`); here are the ones it only diagnoses, and the
//! warehouse-column lookups that need a failing build of their own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::dbt::DbtRun;
use crate::runlog::{parse, Artifacts};

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

/// A copy of the demo project with its own DuckDB file.
fn demo_copy() -> Project {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("jaffle_shop");
    copy_dir(&demo_dir(), &dir);
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
        read_only: false,
    };
    Project {
        _tmp: tmp,
        dir,
        dbt,
    }
}

impl Project {
    /// Replaces the one occurrence of `find` in `file`.
    fn replace(&self, file: &str, find: &str, replace: &str) {
        let path = self.dir.join(file);
        let text = std::fs::read_to_string(&path).expect("file to change");
        assert_eq!(
            text.matches(find).count(),
            1,
            "{file}: {find:?} must match once"
        );
        std::fs::write(&path, text.replacen(find, replace, 1)).expect("write change");
    }

    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.dir.join(file), text).expect("write file");
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).expect("read file")
    }
}

fn broken_demo(case: &str) -> Project {
    let p = demo_copy();
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
    p.replace(
        breakage["file"].as_str().expect("file"),
        breakage["find"].as_str().expect("find"),
        breakage["replace"].as_str().expect("replace"),
    );
    p
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
    heal_project(case, broken_demo(case)).await
}

/// Builds the broken project `p` for a real failing run, heals it, and returns
/// the report, the project and the summary.
async fn heal_project(case: &str, p: Project) -> (Report, Project, String) {
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

async fn diagnosed_only(case: &str, expected: &[&str]) -> Report {
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

/// The demo with a column no yml documents (`stg_customers.customer_name`) and
/// a mart that reads `stg_customers` behind the alias `c`, selecting `select`.
fn aliased_column(select: &str) -> Project {
    let p = demo_copy();
    p.replace(
        "models/staging/stg_customers.sql",
        "        last_name\n",
        "        last_name,\n        first_name || ' ' || last_name as customer_name\n",
    );
    p.write(
        "models/marts/customer_names.sql",
        &format!(
            "select\n    c.customer_id,\n    {select}\nfrom {{{{ ref('stg_customers') }}}} c\n"
        ),
    );
    let documented = ProjectIndex::scan(&p.dir);
    assert!(
        !documented
            .columns
            .values()
            .flatten()
            .any(|c| c.ends_with("_name")),
        "no yml may document the names the doctor must find in the warehouse"
    );
    p
}

#[tokio::test]
async fn a_misspelt_column_behind_a_table_alias_is_renamed_from_the_warehouse_columns() {
    // Arrange: DuckDB names no candidates for `c.customer_nmae`, and no yml
    // documents `customer_name`: only the warehouse knows it.
    let p = aliased_column("c.customer_nmae");
    // Act
    let (report, p, summary) = heal_project("alias", p).await;
    // Assert
    assert_eq!(
        report.edited,
        ["models/marts/customer_names.sql"],
        "{summary}"
    );
    assert!(
        p.read("models/marts/customer_names.sql")
            .contains("    c.customer_name\nfrom"),
        "{summary}"
    );
    for part in [
        "`c` reads `stg_customers`",
        "(in the warehouse)",
        "Changed `c.customer_nmae` to `c.customer_name`",
    ] {
        assert!(
            summary.contains(part),
            "the summary lacks {part:?}:\n{summary}"
        );
    }
    let (run, _) = build(&p).await;
    assert!(
        run.success,
        "still failing after the fix ({summary}):\n{}",
        dbt_tail(&run)
    );
}

#[tokio::test]
async fn a_column_behind_an_alias_with_two_near_warehouse_columns_is_reported_not_renamed() {
    // Arrange: `fist_name` is one edit from `first_name` and two from
    // `last_name`; no yml documents either.
    let p = aliased_column("c.fist_name");
    // Act
    let (report, p, summary) = heal_project("alias_ambiguous", p).await;
    // Assert
    assert!(report.edited.is_empty(), "{summary}");
    assert!(matches!(
        report.events.last(),
        Some(AgentEvent::Result {
            outcome: Outcome::NoFix,
            ..
        })
    ));
    for part in [
        "`c.fist_name` (models/marts/customer_names.sql line 3)",
        "`c` reads `stg_customers`",
        "Considered the columns of `stg_customers` (in the warehouse): `first_name` (1), `last_name` (2)",
        "about equally close",
        "needs a human or an LLM agent",
    ] {
        assert!(summary.contains(part), "the summary lacks {part:?}:\n{summary}");
    }
    assert!(p
        .read("models/marts/customer_names.sql")
        .contains("    c.fist_name\n"));
}
