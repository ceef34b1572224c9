//! Healing real projects safely: for each layout teams use (see
//! tests/fixtures/projects/README.md), a broken commit fails the real
//! scheduled `dbt build`; selfheal verifies its fix in isolation — never in
//! production — and proposes a commit that changes exactly the broken file.
//! Production's database is checked byte for byte before and after.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use selfheal::demo::{Breakage, World, HEALING};
use selfheal::store::{Status, Store};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(240);
const BROKEN_FILE: &str = "models/marts/customers.sql";

fn ref_typo() -> Breakage {
    Breakage {
        file: BROKEN_FILE.into(),
        find: "ref('stg_orders')".into(),
        replace: "ref('stg_order')".into(),
        description: "a misspelt ref".into(),
    }
}

/// The column behind the alias `c` (DuckDB names no candidates for it).
fn aliased_column_typo() -> Breakage {
    Breakage {
        file: BROKEN_FILE.into(),
        find: "c.customer_name,".into(),
        replace: "c.customer_nmae,".into(),
        description: "a misspelt column behind a table alias".into(),
    }
}

/// A team on `layout` whose main just got `breakage`, and the failed run `run_id`.
async fn broken(
    layout: &str,
    breakage: &Breakage,
    run_id: &str,
    baseline: bool,
) -> (World, tempfile::TempDir) {
    if baseline {
        return crate::helpers::broken_world(layout, breakage, run_id).await;
    }
    let (world, dir) = crate::helpers::staged_world(layout).await;
    crate::helpers::break_main(&world, layout, breakage, run_id).await;
    (world, dir)
}

/// `selfheal fix` on the scheduler's checkout, as an engineer would run it.
fn fix(world: &World, run_id: &str, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_selfheal"));
    cmd.args(["fix", "--project"])
        .arg(&world.prod)
        .arg("--run")
        .arg(world.run_logs.join(run_id))
        .env("SELFHEAL_DBT", &world.dbt)
        .env_remove("SELFHEAL_DBT_PROFILES_DIR")
        .env_remove("SELFHEAL_DBT_TARGET")
        .env_remove("SLACK_APP_TOKEN")
        .env_remove("SLACK_BOT_TOKEN")
        // The world's own temporary folder: its package cache starts empty.
        .env("TMPDIR", world.root.join("tmp"));
    std::fs::create_dir_all(world.root.join("tmp")).unwrap();
    if world.profiles_outside {
        cmd.env("SELFHEAL_DBT_PROFILES_DIR", &world.profiles_dir);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let text = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The files the branch's commits change against main, in the repository at `git_dir`.
fn files_changed(git_dir: &Path, branch: &str) -> Vec<String> {
    let out = Command::new("git")
        .args(["diff", "--name-only", &format!("main...{branch}")])
        .current_dir(git_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

async fn fix_heals(layout: &str, breakage: Breakage, env: &[(&str, &str)], expect_place: &str) {
    // Arrange
    let (world, _dir) = broken(layout, &breakage, "7001", true).await;
    let before = world.production_checksums();
    assert!(
        !before.is_empty() && before.iter().all(|(_, s)| s != "absent"),
        "{before:?}"
    );

    // Act
    let (code, out) = fix(&world, "7001", env);

    // Assert
    assert_eq!(code, 0, "{layout}: {out}");
    assert!(out.contains("✅ Verification passed"), "{layout}: {out}");
    assert!(
        out.contains(expect_place),
        "{layout}: where it built: {out}"
    );
    assert_eq!(
        files_changed(&world.prod, "selfheal/manual/run-7001"),
        [BROKEN_FILE],
        "{layout}: the commit changes exactly the broken file"
    );
    assert_eq!(
        world.production_checksums(),
        before,
        "{layout}: production is byte-identical"
    );
}

#[tokio::test]
async fn fix_heals_a_project_whose_git_ignored_database_holds_its_seeds() {
    fix_heals(
        "ignored_db",
        ref_typo(),
        &[],
        "throwaway copy of production's DuckDB",
    )
    .await;
}

#[tokio::test]
async fn fix_heals_a_project_with_a_local_package() {
    fix_heals(
        "local_package",
        ref_typo(),
        &[],
        "packages installed with `dbt deps`",
    )
    .await;
}

#[tokio::test]
async fn a_second_session_copies_the_packages_from_the_cache() {
    // Arrange: the same broken commit fails two scheduled runs.
    let (world, _dir) = broken("local_package", &ref_typo(), "7101", true).await;
    assert!(!world.scheduled_run("7102").await.unwrap().passed);

    // Act
    let (first, first_out) = fix(&world, "7101", &[]);
    let (second, second_out) = fix(&world, "7102", &[]);

    // Assert
    assert_eq!((first, second), (0, 0), "{first_out}\n{second_out}");
    assert!(
        first_out.contains("packages installed with `dbt deps`"),
        "{first_out}"
    );
    assert!(
        second_out.contains("packages copied from the cache"),
        "{second_out}"
    );
}

#[tokio::test]
async fn fix_heals_in_the_ci_target_deferring_to_production_whose_raw_data_lives_only_there() {
    // The failed run got as far as the warehouse: its manifest is production's state.
    fix_heals(
        "prod_warehouse",
        aliased_column_typo(),
        &[("SELFHEAL_DBT_TARGET", "ci")],
        "deferring unchanged nodes to production's manifest",
    )
    .await;
}

#[tokio::test]
async fn fix_builds_the_parents_in_the_ci_target_when_the_failed_run_left_no_manifest() {
    // A ref typo fails while dbt parses: the run leaves no manifest to defer to.
    fix_heals(
        "prod_warehouse",
        ref_typo(),
        &[("SELFHEAL_DBT_TARGET", "ci")],
        "builds in CI target `ci` (a schema of its own), parents included",
    )
    .await;
}

#[tokio::test]
async fn fix_heals_on_a_copy_of_a_production_warehouse_at_an_absolute_path() {
    fix_heals(
        "prod_warehouse",
        ref_typo(),
        &[],
        "throwaway copy of production's DuckDB",
    )
    .await;
}

#[tokio::test]
async fn fix_commits_only_the_source_file_in_a_project_without_gitignore() {
    fix_heals(
        "no_gitignore",
        aliased_column_typo(),
        &[],
        "throwaway copy of production's DuckDB",
    )
    .await;
}

/// The bot against a local Slack, for one layout.
struct Bot {
    world: World,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Bot {
    async fn start(
        layout: &str,
        breakage: &Breakage,
        run_id: &str,
        baseline: bool,
        env: &[(&str, &str)],
    ) -> Bot {
        let (world, dir) = broken(layout, breakage, run_id, baseline).await;
        let (shutdown, task) = crate::helpers::start_world_bot(&world, env).await;
        Bot {
            world,
            _dir: dir,
            shutdown,
            task,
        }
    }

    async fn session_end(&self, run_id: &str) -> selfheal::store::SessionRow {
        crate::helpers::world_session_end(&self.world, run_id, WAIT).await
    }

    /// The thread once its final message is there.
    async fn final_thread(&self, ts: &str) -> String {
        crate::helpers::world_final_message(&self.world, ts, WAIT).await;
        self.thread_text(ts)
    }

    fn thread_text(&self, ts: &str) -> String {
        self.world
            .slack
            .thread(HEALING, ts)
            .iter()
            .map(|m| m.text.clone())
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

async fn bot_heals(layout: &str, breakage: Breakage, env: &[(&str, &str)], expect_place: &str) {
    // Arrange
    let bot = Bot::start(layout, &breakage, "8001", true, env).await;
    let before = bot.world.production_checksums();

    // Act
    let (_, ts) = bot.world.notify_failure("hourly_marts", "8001").await;
    let row = bot.session_end("8001").await;

    // Assert
    let thread = bot.final_thread(&ts).await;
    assert_eq!(row.status, Status::Fixed, "{layout}: {thread}");
    assert!(thread.contains(expect_place), "{layout}: {thread}");
    let prs = bot.world.github.prs();
    assert_eq!(prs.len(), 1, "{layout}: {prs:#?}");
    assert!(
        prs[0]
            .body
            .contains(&format!("Files committed:\n- `{BROKEN_FILE}`\n")),
        "{layout}: {}",
        prs[0].body
    );
    assert!(
        prs[0].body.contains("## Verification (built and tested)"),
        "{}",
        prs[0].body
    );
    assert_eq!(
        files_changed(&bot.world.origin, "selfheal/hourly_marts/run-8001"),
        [BROKEN_FILE]
    );
    assert_eq!(
        bot.world.production_checksums(),
        before,
        "{layout}: production is byte-identical"
    );
    assert_eq!(bot.world.github.merge_calls(), 0);
    bot.stop().await;
}

#[tokio::test]
async fn the_bot_heals_a_fresh_clone_whose_database_is_git_ignored_by_building_the_parents() {
    // The bot clones from the remote: no database comes with it.
    bot_heals(
        "ignored_db",
        aliased_column_typo(),
        &[],
        "✅ Verification passed: `dbt build --select customers+`",
    )
    .await;
}

#[tokio::test]
async fn the_bot_installs_the_packages_of_a_fresh_clone() {
    bot_heals(
        "local_package",
        ref_typo(),
        &[],
        "builds in a fresh throwaway DuckDB",
    )
    .await;
}

#[tokio::test]
async fn the_bot_verifies_in_the_ci_target_deferring_to_production() {
    bot_heals(
        "prod_warehouse",
        aliased_column_typo(),
        &[("SELFHEAL_DBT_TARGET", "ci")],
        "deferring unchanged nodes to production's manifest",
    )
    .await;
}

#[tokio::test]
async fn the_bot_commits_only_source_files_without_a_gitignore() {
    bot_heals(
        "no_gitignore",
        ref_typo(),
        &[],
        "builds in a fresh throwaway DuckDB",
    )
    .await;
}

#[tokio::test]
async fn the_bot_refuses_a_ci_target_that_is_production() {
    // Arrange
    let bot = Bot::start(
        "prod_warehouse",
        &ref_typo(),
        "8101",
        true,
        &[("SELFHEAL_DBT_TARGET", "prod")],
    )
    .await;
    let before = bot.world.production_checksums();

    // Act
    let (_, ts) = bot.world.notify_failure("hourly_marts", "8101").await;
    let row = bot.session_end("8101").await;

    // Assert: nothing ran, the thread says why, production is untouched.
    let thread = bot.final_thread(&ts).await;
    assert_ne!(row.status, Status::Fixed, "{thread}");
    assert!(thread.contains("never builds into production"), "{thread}");
    assert!(bot.world.github.prs().is_empty());
    assert_eq!(bot.world.production_checksums(), before);
    bot.stop().await;
}

#[tokio::test]
async fn a_warehouse_with_only_production_is_verified_by_compiling_and_says_so() {
    // Arrange: production is a Postgres warehouse (no server here: a ref
    // typo fails the scheduled build before dbt connects, and compiling
    // needs no connection).
    let bot = Bot::start("warehouse_only", &ref_typo(), "8201", false, &[]).await;

    // Act
    let (_, ts) = bot.world.notify_failure("hourly_marts", "8201").await;
    let row = bot.session_end("8201").await;

    // Assert: the thread and the pull request say it was only compiled.
    let thread = bot.final_thread(&ts).await;
    assert_eq!(row.status, Status::Fixed, "{thread}");
    assert!(
        thread.contains("⚠️ Verification will only compile"),
        "{thread}"
    );
    assert!(
        thread.contains("SELFHEAL_DBT_TARGET"),
        "the one setting to change: {thread}"
    );
    assert!(
        thread.contains("✅ Compiles: `dbt compile --no-populate-cache --select customers+`"),
        "{thread}"
    );
    let prs = bot.world.github.prs();
    assert_eq!(prs.len(), 1);
    assert!(
        prs[0]
            .body
            .contains("## Verification (compiled only: nothing was built or tested)"),
        "{}",
        prs[0].body
    );
    assert_eq!(
        files_changed(&bot.world.origin, "selfheal/hourly_marts/run-8201"),
        [BROKEN_FILE]
    );
    bot.stop().await;
}

#[tokio::test]
async fn a_command_agent_that_builds_the_whole_project_builds_in_the_session_place_not_production()
{
    // Arrange: an agent that fixes the ref, then runs a plain `dbt build` of
    // everything, as an agent checking its work would.
    let bot = Bot::start("prod_warehouse", &ref_typo(), "8301", true, &[]).await;
    let world = &bot.world;
    let agents = world.prod.join(".dinoai/agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(
        world.root.join("agent.sh"),
        r#"sed -i "s/ref('stg_order')/ref('stg_orders')/" models/marts/customers.sql
"$DBT" --no-use-colors build 2>&1 | grep -E "target=|Done\." 
echo '{"type":"result","status":"fixed","summary":"customers referenced stg_order; it now refs stg_orders"}'
"#,
    )
    .unwrap();
    std::fs::write(
        agents.join("builder.yml"),
        format!(
            "name: builder\nversion: 1\nrole: r\ngoal: g\nbackstory: b\nselfheal:\n  runner: command\n  command: [\"bash\", \"{}\"]\n  env:\n    DBT: \"{}\"\n",
            world.root.join("agent.sh").display(),
            world.dbt.display()
        ),
    )
    .unwrap();
    crate::helpers::heal_hourly_marts_with(world, "builder");
    let before = world.production_checksums();

    // Act
    let (_, ts) = world.notify_failure("hourly_marts", "8301").await;
    let row = bot.session_end("8301").await;

    // Assert: the agent's dbt built into the session's own target; production is untouched.
    let store = Store::open(&world.root.join("selfheal.db")).unwrap();
    let events: String = store
        .events(row.id)
        .unwrap()
        .into_iter()
        .map(|e| e.text)
        .collect::<Vec<_>>()
        .join("\n");
    let thread = bot.final_thread(&ts).await;
    assert_eq!(row.status, Status::Fixed, "{thread}\n{events}");
    assert!(events.contains("target='selfheal_session'"), "{events}");
    assert!(
        events.contains("Done. PASS="),
        "the agent's build ran: {events}"
    );
    assert_eq!(
        world.production_checksums(),
        before,
        "production is byte-identical"
    );
    bot.stop().await;
}
