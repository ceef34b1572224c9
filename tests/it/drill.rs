//! `selfheal drill`: a team runs a fire drill on its own dbt project. Faults
//! are injected into a copy, real dbt fails, the healer heals, and the
//! scorecard says what happened — while the team's repository and
//! production stay exactly as they were.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use selfheal::demo::{demo_project, layouts_dir, World};
use serde_json::Value;

/// The faults with one right answer: they must come back fixed and verified.
const ONE_RIGHT_ANSWER: [&str; 4] = ["ref_typo", "source_typo", "column_typo", "macro_typo"];

/// Runs `selfheal drill <args>` as a team member would, with its own temporary folder.
async fn drill(args: &[&str], tmp: &Path) -> Output {
    let dbt = selfheal::dbt::locate(std::env::var_os("SELFHEAL_DBT").map(Into::into))
        .await
        .expect("dbt (run scripts/setup-dbt)");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_selfheal"));
    cmd.arg("drill")
        .args(args)
        .env("SELFHEAL_DBT", dbt)
        .env("TMPDIR", tmp);
    for (k, _) in std::env::vars() {
        if k.starts_with("SLACK_") || (k.starts_with("SELFHEAL_") && k != "SELFHEAL_DBT") {
            cmd.env_remove(k);
        }
    }
    cmd.output().await.expect("running selfheal drill")
}

fn scorecard(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json prints JSON ({e}):\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// case name → its entry.
fn cases(card: &Value) -> BTreeMap<String, Value> {
    card["cases"]
        .as_array()
        .expect("a list of cases")
        .iter()
        .map(|c| {
            (
                c["case"].as_str().expect("a case name").to_string(),
                c.clone(),
            )
        })
        .collect()
}

/// Every file under `dir` and its bytes: equal before and after means untouched.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    files
}

fn explain(out: &Output) -> String {
    format!(
        "exit {:?}\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn the_drill_on_the_demo_fixes_every_one_right_answer_fault_and_leaves_production_alone() {
    // Arrange
    let tmp = tempfile::tempdir().unwrap();
    let project = demo_project();
    let before = snapshot(&project);

    // Act
    let out = drill(
        &["--project", project.to_str().unwrap(), "--json"],
        tmp.path(),
    )
    .await;

    // Assert
    let card = scorecard(&out);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert_eq!(card["passed"], true);
    let names: Vec<&str> = card["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["case"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ref_typo",
            "source_typo",
            "column_typo",
            "macro_typo",
            "syntax_error",
            "yaml_error",
            "not_null_failure",
            "unique_failure",
            "accepted_values_failure",
            "missing_package"
        ],
        "one entry per case"
    );
    let cases = cases(&card);
    for name in ONE_RIGHT_ANSWER {
        let c = &cases[name];
        assert_eq!(c["outcome"], "fixed", "{name}: {c:#}");
        assert_eq!(c["session"], "fixed", "{name}: {c:#}");
        assert!(
            c["branch"].as_str().unwrap().starts_with("selfheal/drill/"),
            "{name}: {c:#}"
        );
    }
    for name in [
        "not_null_failure",
        "unique_failure",
        "accepted_values_failure",
    ] {
        assert_eq!(
            cases[name]["outcome"], "declined",
            "{name}: {:#}",
            cases[name]
        );
    }
    for name in ["syntax_error", "yaml_error"] {
        assert_ne!(cases[name]["outcome"], "wrong", "{name}: {:#}", cases[name]);
    }
    assert_eq!(
        cases["missing_package"]["outcome"], "not_applicable",
        "the demo has no packages"
    );
    assert_eq!(
        cases["missing_package"]["why"],
        "the project has no packages"
    );
    let yaml = &cases["yaml_error"];
    assert_eq!(yaml["expected"], "not wrong");
    assert!(yaml["file"].as_str().unwrap().ends_with(".yml"), "{yaml:#}");
    assert!(yaml["line"].as_u64().unwrap() > 0, "{yaml:#}");
    for (name, c) in &cases {
        assert_eq!(c["production_unchanged"], true, "{name}: {c:#}");
        if c["outcome"] != "not_applicable" {
            for key in ["passed", "fault", "session", "case_secs"] {
                assert!(!c[key].is_null(), "{name}: {key} in {c:#}");
            }
            let sha = c["production"][0]["sha256_before"].as_str().unwrap();
            assert_eq!(sha.len(), 64, "{name}: a sha256 in hex: {sha}");
            assert!(c["heal_secs"].as_f64().unwrap() > 0.0, "{name}: {c:#}");
        }
    }
    assert_eq!(
        snapshot(&project),
        before,
        "the team's project folder is untouched"
    );
}

#[tokio::test]
async fn drill_shows_people_its_progress_and_a_scorecard_table() {
    let tmp = tempfile::tempdir().unwrap();
    let project = demo_project();

    let out = drill(
        &[
            "--project",
            project.to_str().unwrap(),
            "--only",
            "syntax_error",
        ],
        tmp.path(),
    )
    .await;

    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    // A line as the case starts and as it ends.
    assert!(
        stderr.contains("▶ syntax_error (SQL syntax error): `"),
        "{stderr}"
    );
    assert!(stderr.contains("✓ syntax_error: "), "{stderr}");
    assert!(stderr.contains("production unchanged"), "{stderr}");
    // The table: a header, the row, the verdict.
    let header = stdout
        .lines()
        .find(|l| l.starts_with("case"))
        .expect("a header row");
    for column in ["fault", "expected", "outcome", "heal s", "production"] {
        assert!(header.contains(column), "{header}");
    }
    let row = stdout
        .lines()
        .find(|l| l.starts_with("syntax_error"))
        .expect("the case's row");
    assert!(
        row.contains("not wrong") && row.contains("unchanged") && row.ends_with('✓'),
        "{row}"
    );
    assert!(stdout.contains("Drill passed."), "{stdout}");
    // The session's own chatter stays in its transcript, out of the scorecard.
    assert!(!stdout.contains("Healing run"), "{stdout}");
}

#[tokio::test]
async fn drill_refuses_a_project_that_is_not_on_duckdb() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = layouts_dir().join("warehouse_only");

    let out = drill(
        &[
            "--project",
            layout.join("project").to_str().unwrap(),
            "--profiles-dir",
            layout.to_str().unwrap(),
        ],
        tmp.path(),
    )
    .await;

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
    assert!(
        stderr.contains("the drill runs on DuckDB projects"),
        "{stderr}"
    );
    assert!(stderr.contains("postgres"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "no scorecard: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Each team-written layout, with the cases that exercise what is special
/// about it (the whole set runs on the demo above; the subsets keep this
/// story to a few minutes on two cores).
#[tokio::test]
async fn drill_runs_on_each_team_layout_without_touching_the_teams_repository_or_production() {
    let layouts: [(&str, &str, &[&str]); 4] = [
        ("ignored_db", "ref_typo,macro_typo", &[]),
        ("local_package", "missing_package,column_typo", &[]),
        (
            "prod_warehouse",
            "source_typo,column_typo",
            &["--ci-target", "ci"],
        ),
        ("no_gitignore", "ref_typo", &[]),
    ];
    let dbt = selfheal::dbt::locate(std::env::var_os("SELFHEAL_DBT").map(Into::into))
        .await
        .expect("dbt (run scripts/setup-dbt)");
    for (layout, only, extra) in layouts {
        // Arrange: the team's repository and production after yesterday's good run.
        let dir = tempfile::tempdir().unwrap();
        let world = World::create_layout(dir.path(), &dbt, layout)
            .await
            .expect("world");
        let run = world.scheduled_run("yesterday").await.unwrap();
        assert!(
            run.passed,
            "{layout}: yesterday's run passes:\n{}",
            run.console
        );
        let production = world.production_checksums();
        let checkout = snapshot(&world.prod);
        let origin = snapshot(&world.origin);

        // Act
        let mut args = vec![
            "--project",
            world.prod.to_str().unwrap(),
            "--json",
            "--only",
            only,
        ];
        if world.profiles_outside {
            args.extend(["--profiles-dir", world.profiles_dir.to_str().unwrap()]);
        }
        args.extend(extra);
        let out = drill(&args, dir.path()).await;

        // Assert
        let card = scorecard(&out);
        assert_eq!(out.status.code(), Some(0), "{layout}: {}", explain(&out));
        let cases = cases(&card);
        assert_eq!(cases.len(), only.split(',').count(), "{layout}: {card:#}");
        for (name, c) in &cases {
            if ONE_RIGHT_ANSWER.contains(&name.as_str()) {
                assert_eq!(c["outcome"], "fixed", "{layout} {name}: {c:#}");
            }
            assert_eq!(c["production_unchanged"], true, "{layout} {name}: {c:#}");
            assert!(
                !c["production"].as_array().unwrap().is_empty(),
                "{layout} {name}: {c:#}"
            );
        }
        if layout == "local_package" {
            assert_eq!(
                cases["missing_package"]["outcome"], "diagnosed",
                "{layout}: {card:#}"
            );
        }
        assert_eq!(
            world.production_checksums(),
            production,
            "{layout}: the team's production is byte-identical"
        );
        assert!(
            snapshot(&world.prod) == checkout,
            "{layout}: the team's checkout is untouched"
        );
        assert!(
            snapshot(&world.origin) == origin,
            "{layout}: the team's origin got no push"
        );
    }
}
