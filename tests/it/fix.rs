//! `selfheal fix`: healing in the terminal, no Slack.

use std::process::Command;

use selfheal::demo::{Breakage, World};

/// A repository whose main just broke, and the failed run's log directory.
async fn broken_world(case: &str, run_id: &str) -> (World, tempfile::TempDir) {
    crate::helpers::broken_world("demo", &Breakage::fixture(case).unwrap(), run_id).await
}

fn fix(world: &World, run_id: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .args(["fix", "--project"])
        .arg(&world.prod)
        .arg("--run")
        .arg(world.run_logs.join(run_id))
        .env("SELFHEAL_DBT", &world.dbt)
        .env("SELFHEAL_DBT_PROFILES_DIR", &world.profiles_dir)
        .env_remove("SLACK_APP_TOKEN")
        .env_remove("SLACK_BOT_TOKEN")
        .output()
        .unwrap()
}

fn branches(world: &World) -> String {
    let out = Command::new("git")
        .args(["branch", "--list", "selfheal/*"])
        .current_dir(&world.prod)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn fix_leaves_a_verified_fix_on_a_selfheal_branch() {
    let (world, _dir) = broken_world("column_typo", "9001").await;

    let out = fix(&world, "9001");

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("✅ Verification passed: `dbt build --select stg_orders+`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("✅ Fix for run `9001` is verified:"),
        "{stdout}"
    );
    assert!(stdout.contains("selfheal/manual/run-9001"), "{stdout}");
    assert!(branches(&world).contains("selfheal/manual/run-9001"));
    // The user's checkout stays on main, untouched.
    let head = Command::new("git")
        .args(["rev-parse", "--abbrev-ref", "HEAD"])
        .current_dir(&world.prod)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), "main");
}

#[tokio::test]
async fn fix_prints_the_diagnosis_and_fails_when_there_is_no_fix() {
    let (world, _dir) = broken_world("syntax_error", "9002").await;

    let out = fix(&world, "9002");

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("models/marts/orders.sql line 22"),
        "{stdout}"
    );
    assert!(stdout.contains("needs a human or an LLM agent"), "{stdout}");
    assert!(branches(&world).is_empty());
}
