//! The `selfheal` binary as an operator runs it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

fn selfheal() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_selfheal"));
    // The operator's own environment must not leak into these runs.
    for (k, _) in std::env::vars() {
        if k.starts_with("SELFHEAL_") || k.starts_with("SLACK_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn write_project(dir: &std::path::Path, schedules: &str) {
    std::fs::write(dir.join("paradime_schedules.yml"), schedules).unwrap();
    let agents = dir.join(".dinoai/agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(
        agents.join("scripted.yml"),
        "name: scripted\nversion: 1\nrole: r\ngoal: g\nbackstory: b\nselfheal:\n  runner: command\n  command: [\"true\"]\n",
    )
    .unwrap();
}

#[tokio::test]
async fn check_summarises_a_valid_configuration() {
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), SCHEDULES);
    let dbt = selfheal::dbt::locate(std::env::var_os("SELFHEAL_DBT").map(Into::into))
        .await
        .unwrap();

    let out = selfheal()
        .args(["check", "--offline"])
        .env("SELFHEAL_DBT", &dbt)
        .current_dir(dir.path())
        .env("SLACK_APP_TOKEN", "xapp-1-test")
        .env("SLACK_BOT_TOKEN", "xoxb-test")
        .env("SELFHEAL_SCHEDULES", dir.path())
        .output()
        .unwrap();

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("configuration loaded: every variable and file is valid\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hourly_marts: notifies [#data-alerts, #agent-demo], heals in #agent-demo with agent scripted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("nightly: notifies [#data-alerts], self-healing off"),
        "{stdout}"
    );
}

#[test]
fn check_names_the_file_line_and_key_of_a_broken_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let broken = SCHEDULES.replace("slack_channel: \"#agent-demo\"", "slack_channel: \"#ops\"");
    write_project(dir.path(), &broken);

    let out = selfheal()
        .arg("check")
        .env("SLACK_APP_TOKEN", "xapp-1-test")
        .env("SLACK_BOT_TOKEN", "xoxb-test")
        .env("SELFHEAL_SCHEDULES", dir.path())
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("paradime_schedules.yml:17:")
            && stderr.contains("schedules[0].self_healing.slack_channel: self_healing.slack_channel '#ops' must also appear in notifications.slack_channels for this schedule"),
        "stderr: {stderr}"
    );
}

#[test]
fn check_names_a_missing_token() {
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), SCHEDULES);

    let out = selfheal()
        .arg("check")
        .env("SLACK_BOT_TOKEN", "xoxb-test")
        .env("SELFHEAL_SCHEDULES", dir.path())
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SLACK_APP_TOKEN"));
}

#[test]
fn fix_and_drill_read_the_dbt_settings_as_the_bot_does_and_name_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("48213");
    for (command, args) in [
        ("fix", vec!["--run", run.to_str().unwrap()]),
        ("drill", vec![]),
    ] {
        // Act: the settings are read before the project is looked at.
        let out = selfheal()
            .arg(command)
            .arg("--project")
            .arg(dir.path())
            .args(&args)
            // Where the drill's dbt is, so that it does not install one.
            .env("SELFHEAL_DBT", "/nonexistent/dbt")
            .env("SELFHEAL_DBT_TIMEOUT_SECS", "15m")
            .output()
            .unwrap();

        // Assert: the bot's own words for the same mistake.
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("selfheal {command}: SELFHEAL_DBT_TIMEOUT_SECS (from the environment): '15m' is not a whole number\n")
        );
    }
}

#[test]
fn check_reports_every_configuration_problem_at_once_and_where_each_came_from() {
    // Arrange: one problem in .env, one in the environment, one missing, one in a file.
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        &SCHEDULES.replace(
            "    commands:\n      - dbt build\n    notifications",
            "    command:\n      - dbt build\n    notifications",
        ),
    );
    std::fs::write(
        dir.path().join(".env"),
        "SLACK_BOT_TOKEN=xapp-pasted-the-wrong-one\n",
    )
    .unwrap();

    // Act
    let out = selfheal()
        .arg("check")
        .current_dir(dir.path())
        .env("SELFHEAL_SCHEDULES", dir.path())
        .env("SELFHEAL_PRIOR_ATTEMPTS", "five")
        .output()
        .unwrap();

    // Assert
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let env_file = dir.path().join(".env");
    let schedules = dir.path().join("paradime_schedules.yml");
    let expected = format!(
        "selfheal: 4 configuration problems:\n\
         \x20 - SLACK_APP_TOKEN (in neither the environment nor {env}): is required (a Slack token starting with xapp-)\n\
         \x20 - SLACK_BOT_TOKEN (from {env}): must start with xoxb-\n\
         \x20 - {file}:23:5: schedules[1].command: unknown key 'command'; did you mean 'commands'? (expected one of: ",
        env = env_file.display(),
        file = schedules.display(),
    );
    assert!(
        stderr.starts_with(&expected),
        "expected:\n{expected}\n---- got:\n{stderr}"
    );
    assert!(
        stderr.ends_with(
            "  - SELFHEAL_PRIOR_ATTEMPTS (from the environment): 'five' is not a whole number\n"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("pasted-the-wrong-one"),
        "token values are never echoed"
    );
}

#[tokio::test]
async fn run_with_bad_slack_settings_says_what_is_wrong_in_a_sentence() {
    let slack = selfheal::demo::fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), SCHEDULES);
    let cases = [
        (slack.api_url(), "xoxb-revoked", "selfheal run: Slack rejected SLACK_BOT_TOKEN (invalid_auth); `selfheal check` tells what to do\n"),
        ("http://127.0.0.1:1/api/".to_string(), "xoxb-any", "selfheal run: cannot reach 127.0.0.1:1: connection refused (SLACK_API_URL; `selfheal check` tells more)\n"),
    ];
    for (api_url, bot_token, want) in cases {
        // Act: as people run it, with backtraces asked for and stderr to a file.
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_selfheal"))
            .arg("run")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("RUST_BACKTRACE", "1")
            .env("SLACK_APP_TOKEN", slack.app_token())
            .env("SLACK_BOT_TOKEN", bot_token)
            .env("SLACK_API_URL", &api_url)
            .env("SELFHEAL_SCHEDULES", dir.path())
            .env("SELFHEAL_DB", dir.path().join("selfheal.db"))
            .env("SELFHEAL_LOG", "error")
            .current_dir(dir.path())
            .output()
            .await
            .unwrap();

        // Assert: one sentence; no backtrace, no HTTP client internals, no colour codes.
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&out.stderr), want);
    }
}

#[tokio::test]
async fn sigterm_stops_the_bot_within_ten_seconds_and_tells_running_threads() {
    // Arrange: the real binary against the fake, with an agent that never ends.
    let mut app = spawn_app_with("echo started; sleep 600 & wait", &[]).await;
    app.stop().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .arg("run")
        .current_dir(app.path())
        .envs(app.env())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let hellos = app.slack.hellos();
    app.slack
        .wait_until(WAIT, |s| (s.hellos() > hellos).then_some(()))
        .await
        .expect("the binary connects");
    let ts = app.post_failure(HEALING, "hourly_marts", "77").await;
    app.store_wait_running("77").await;

    // Act
    let pid = child.id().unwrap() as i32;
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let sent = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(12), child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();

    // Assert
    assert!(status.success(), "exit status {status:?}");
    assert!(sent.elapsed() < Duration::from_secs(10));
    let row = app.wait_for_session_end("77").await;
    assert_eq!(row.status, selfheal::store::Status::Interrupted);
    let last = app.thread(HEALING, &ts).last().cloned().unwrap();
    assert!(
        last.text
            .starts_with("🛑 No pull request opened for run `77` (interrupted)"),
        "{}",
        last.text
    );
}

#[test]
fn bench_prints_each_figure_beside_its_target_and_rejects_unknown_scenarios() {
    // A small history (the real one stores a million sessions) and a bot
    // process against the fake: the table must be there, whatever the numbers.
    let out = selfheal()
        .args(["bench", "--runs", "1", "--only", "history,memory"])
        .args(["--history-sessions", "1000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Exit 0: every target met; 1: some missed (a debug build may miss them).
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "## history",
        "sessions stored",
        "prior attempts of a schedule (5 newest)",
        "## memory",
        "RSS with 100 sessions running",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    assert!(stdout.contains("≤ 2"), "targets are printed: {stdout}");

    let out = selfheal()
        .args(["bench", "--only", "speed"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("unknown scenario `speed`; known: traffic, burst, streaming, memory, history"));
}

#[test]
fn check_says_where_verification_builds_and_the_setting_that_turns_on_building() {
    // A repository whose profile has only a production Postgres target, and
    // one whose production is a DuckDB file.
    let layouts = selfheal::demo::layouts_dir();
    let cases = [
        (
            "warehouse_only",
            vec![],
            "⚠ verification: compiles only, nothing is built: production `prod` is a postgres warehouse and no CI target is configured\n  → set SELFHEAL_DBT_TARGET to a CI target of the profile to verify by building\n",
        ),
        (
            "ignored_db",
            vec![],
            "✓ verification: builds in a throwaway copy of production's DuckDB (`dev` is never opened)\n",
        ),
        (
            "ignored_db",
            vec![("SELFHEAL_DBT_TARGET", "dev")],
            "✗ verification: SELFHEAL_DBT_TARGET is `dev`, the target the scheduler runs in: selfheal never builds into production; name a CI target\n  → set SELFHEAL_DBT_TARGET to a CI target of the profile that is not production\n",
        ),
    ];
    for (layout, env, want) in cases {
        let project = layouts.join(layout).join("project");
        let profiles = layouts.join(layout);
        let mut cmd = selfheal();
        cmd.args(["check", "--offline"])
            .current_dir(&project)
            .env("SLACK_APP_TOKEN", "xapp-1-test")
            .env("SLACK_BOT_TOKEN", "xoxb-test")
            .env("SELFHEAL_SCHEDULES", &project)
            .env("SELFHEAL_REPO", &project)
            .env("SELFHEAL_RUN_LOGS", &project)
            .envs(env);
        if profiles.join("profiles.yml").is_file() {
            cmd.env("SELFHEAL_DBT_PROFILES_DIR", &profiles);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(want),
            "{layout}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn demo_lists_its_cases_and_its_help_names_every_one() {
    let list = selfheal().args(["demo", "--list"]).output().unwrap();
    let help = selfheal().args(["demo", "--help"]).output().unwrap();

    let list = String::from_utf8_lossy(&list.stdout);
    let help = String::from_utf8_lossy(&help.stdout);
    let cases = selfheal::demo::cases().unwrap();
    assert_eq!(list.lines().count(), cases.len(), "{list}");
    for (name, breakage) in cases {
        assert!(
            list.contains(&format!("{name:<24} {}", breakage.description)),
            "{list}"
        );
        assert!(help.contains(&name), "--help names {name}: {help}");
    }
}

#[test]
fn session_show_prints_a_stored_transcript_without_any_slack_configuration() {
    // Arrange: a database holding one session of an llm agent.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("selfheal.db");
    let store = selfheal::store::Store::open(&db).unwrap();
    let selfheal::store::Claim::New(id) = store
        .claim_session("hourly_marts", "48213", "C0HEAL", "1.0", "llm-healer")
        .unwrap()
    else {
        panic!("a new session")
    };
    store
        .add_event(id, "prompt", "Review the run log and fix run_id 48213")
        .unwrap();
    store
        .add_exchange(
            id,
            &selfheal::store::Exchange {
                turn: 0,
                request: r#"{"model":"m","messages":[{"role":"user","content":"fix it"}]}"#.into(),
                status: 200,
                response: r#"{"choices":[{"message":{"content":"orders refs stg_order"},"finish_reason":"stop"}]}"#.into(),
                prompt_tokens: Some(900),
                completion_tokens: Some(12),
                cost_usd: Some(0.0024),
            },
        )
        .unwrap();
    store
        .finish(
            id,
            selfheal::store::Status::NoFix,
            Some("orders refs stg_order"),
            None,
        )
        .unwrap();
    drop(store);

    // Act: by --db, then by SELFHEAL_DB; and a session that does not exist.
    let by_flag = selfheal()
        .args(["session", "show", &id.to_string(), "--db"])
        .arg(&db)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let by_env = selfheal()
        .args(["session", "show", &id.to_string()])
        .env("SELFHEAL_DB", &db)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let missing = selfheal()
        .args(["session", "show", "999"])
        .env("SELFHEAL_DB", &db)
        .current_dir(dir.path())
        .output()
        .unwrap();

    // Assert
    for out in [&by_flag, &by_env] {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for needle in [
            "schedule `hourly_marts` · run 48213 · agent llm-healer",
            "> [user] fix it",
            "< [answer] orders refs stg_order",
            "$0.0024",
            "== outcome: no_fix ==",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no session 999"));
}
