//! `spawn_app()`: the real bot against a local Slack fake, a temporary dbt
//! project with schedules-as-code and agent files, and a temporary database.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use selfheal::config::Config;
use selfheal::demo::{Breakage, World};
use selfheal::store::{SessionRow, Store};
use selfheal_fakes::slack::{BotPost, FakeSlack, Message};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const ALERTS: &str = "C0ALERTS01";
pub const HEALING: &str = "C0HEALING1";
pub const OTHER: &str = "C0RANDOM01";
pub const NOTIFIER_BOT: &str = "B0PARADIME";
pub const NOTIFIER_APP: &str = "A0PARADIME";

/// Long enough for slow CI, short enough that a failing test does not hang.
pub const WAIT: Duration = Duration::from_secs(20);

/// `hourly_marts` notifies #data-alerts and heals in #agent-demo (Paradime's
/// own example); `nightly` notifies #data-alerts without self-healing.
pub const SCHEDULES: &str = r##"
version: 1
schedules:
  - name: hourly_marts
    schedule: "0 * * * *"
    environment: production
    commands:
      - dbt build --select marts
    notifications:
      slack_channels:
        - channel: "#data-alerts"
          events: [failed]
        - channel: "#agent-demo"
          events: [failed, passed]
    self_healing:
      enabled: true
      slack_channel: "#agent-demo"
      agent_name: scripted
    slug: hourly-marts
  - name: nightly
    schedule: "0 3 * * *"
    environment: production
    commands:
      - dbt build
    notifications:
      slack_channels:
        - channel: "#data-alerts"
          events: [failed]
"##;

/// A command agent that logs its prompt, prints progress, a milestone, a PR
/// link and a result. Tests swap in other scripts with [`TestApp::set_agent`].
pub const HAPPY_AGENT: &str = r#"
cat "$SELFHEAL_PROMPT_FILE" > "$PROMPT_LOG.$SELFHEAL_RUN_ID"
read -r first_line
echo "$first_line" > "$PROMPT_LOG.$SELFHEAL_RUN_ID.stdin"
echo "reading the run log for $SELFHEAL_RUN_ID"
echo '{"type":"milestone","text":"found the cause: a renamed model"}'
echo "compiling"
echo "opened https://github.com/acme/analytics/pull/$SELFHEAL_RUN_ID"
echo '{"type":"result","status":"fixed","summary":"pointed the ref at the renamed model"}'
"#;

pub struct TestApp {
    pub slack: FakeSlack,
    pub dir: tempfile::TempDir,
    pub db_path: PathBuf,
    env: HashMap<String, String>,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Starts the fake Slack and the bot with the default schedules and agent.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(HAPPY_AGENT, &[]).await
}

/// Starts the bot with a given agent script and extra environment.
pub async fn spawn_app_with(agent_script: &str, extra_env: &[(&str, &str)]) -> TestApp {
    spawn_app_timed(agent_script, "5m", extra_env).await
}

/// Starts the bot with an agent script, its wall-clock limit and extra environment.
pub async fn spawn_app_timed(
    agent_script: &str,
    timeout: &str,
    extra_env: &[(&str, &str)],
) -> TestApp {
    let slack = selfheal::demo::fake_slack().await;
    slack.add_channel(ALERTS, "data-alerts");
    slack.add_channel(HEALING, "agent-demo");
    slack.add_channel(OTHER, "random");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("paradime_schedules.yml"), SCHEDULES).expect("schedules");
    // A story on PostgreSQL names its database (a URL) in SELFHEAL_DB.
    let db_path = extra_env
        .iter()
        .find(|(k, _)| *k == "SELFHEAL_DB")
        .map_or_else(|| dir.path().join("selfheal.db"), |(_, v)| PathBuf::from(v));
    let mut env: HashMap<String, String> = [
        ("SLACK_APP_TOKEN", slack.app_token().to_string()),
        ("SLACK_BOT_TOKEN", slack.bot_token().to_string()),
        ("SLACK_API_URL", slack.api_url()),
        ("SELFHEAL_DB", db_path.display().to_string()),
        ("SELFHEAL_SCHEDULES", dir.path().display().to_string()),
        ("SELFHEAL_NOTIFIER_BOTS", NOTIFIER_BOT.to_string()),
        ("SELFHEAL_CHANNEL_INTERVAL_MS", "100".to_string()),
        ("SELFHEAL_EDIT_INTERVAL_MS", "300".to_string()),
        ("SELFHEAL_COURTESY_WINDOW_SECS", "2".to_string()),
        ("SELFHEAL_API_TIMEOUT_SECS", "3".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra_env {
        env.insert(k.to_string(), v.to_string());
    }
    let mut app = TestApp {
        slack,
        dir,
        db_path,
        env,
        shutdown: CancellationToken::new(),
        handle: None,
    };
    app.set_agent(agent_script, timeout);
    app.start().await;
    app
}

/// Like [`spawn_app_with`], but the bot is the real `selfheal run` binary in
/// its own process, so a test can `kill -9` it. Returns the app (not started
/// in-process) and the bot's process.
pub async fn spawn_bot_process(
    agent_script: &str,
    extra_env: &[(&str, &str)],
) -> (TestApp, tokio::process::Child) {
    let mut app = spawn_app_with(agent_script, extra_env).await;
    // The in-process bot only set the world up; the process takes over.
    app.stop().await;
    let hellos = app.slack.hellos();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(app.env())
        .env("SELFHEAL_LOG", "warn")
        .current_dir(app.path())
        .kill_on_drop(true)
        .spawn()
        .expect("start selfheal run");
    app.slack
        .wait_until(WAIT, |s| (s.hellos() > hellos).then_some(()))
        .await
        .expect("the bot process connects to Socket Mode");
    (app, child)
}

impl TestApp {
    /// Writes `.dinoai/agents/scripted.yml` running `script` with bash.
    pub fn set_agent(&self, script: &str, timeout: &str) {
        let agents = self.dir.path().join(".dinoai/agents");
        std::fs::create_dir_all(&agents).expect("agents dir");
        let script_path = self.dir.path().join("agent.sh");
        std::fs::write(&script_path, script).expect("agent script");
        let yaml = format!(
            r#"name: scripted
version: 1
role: On-call analytics engineer for the dbt pipeline
goal: Find why the run failed and come back with the cause and a concrete fix
backstory: Most failures are upstream data, a schema change, or an unchecked edit.
selfheal:
  runner: command
  command: ["bash", "{script}"]
  timeout: {timeout}
  env:
    PROMPT_LOG: "{log}"
"#,
            script = script_path.display(),
            log = self.prompt_log_prefix().display(),
        );
        std::fs::write(agents.join("scripted.yml"), yaml).expect("agent file");
    }

    fn prompt_log_prefix(&self) -> PathBuf {
        self.dir.path().join("prompt")
    }

    /// The prompt file the agent saw for a run.
    pub fn prompt_of(&self, run_id: &str) -> String {
        let path = PathBuf::from(format!("{}.{run_id}", self.prompt_log_prefix().display()));
        std::fs::read_to_string(&path).unwrap_or_default()
    }

    /// The first stdin line the agent read for a run.
    pub fn stdin_of(&self, run_id: &str) -> String {
        let path = PathBuf::from(format!(
            "{}.{run_id}.stdin",
            self.prompt_log_prefix().display()
        ));
        std::fs::read_to_string(&path).unwrap_or_default()
    }

    pub fn config(&self) -> Config {
        let env = self.env.clone();
        Config::from_env(&|k: &str| env.get(k).cloned()).expect("test config is valid")
    }

    /// Starts (or restarts) the bot process-equivalent.
    pub async fn start(&mut self) {
        let config = self.config();
        self.shutdown = CancellationToken::new();
        let token = self.shutdown.clone();
        let hellos = self.slack.hellos();
        self.handle = Some(tokio::spawn(selfheal::app::run(config, token)));
        self.slack
            .wait_until(WAIT, |s| (s.hellos() > hellos).then_some(()))
            .await
            .expect("the bot connects to Socket Mode");
    }

    /// A clean stop, as on SIGTERM: returns once the bot has shut down.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(15), handle)
                .await
                .expect("shutdown within the grace period")
                .expect("the bot task did not panic")
                .expect("the bot stopped without error");
        }
    }

    /// A crash: the bot's task is aborted mid-flight, nothing is cleaned up.
    pub async fn crash(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
            let _ = handle.await;
        }
        self.slack.drop_all_connections().await;
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    /// The notifier posts a Paradime-style failure of `schedule` run `run_id`.
    pub async fn post_failure(&self, channel: &str, schedule: &str, run_id: &str) -> String {
        self.slack
            .post_as_bot(channel, notifier(&failure_text(schedule, run_id)))
            .await
    }

    /// The healing thread's messages, parent first.
    pub fn thread(&self, channel: &str, ts: &str) -> Vec<Message> {
        self.slack.thread(channel, ts)
    }

    /// Waits until the thread has a message from the bot satisfying `pred`.
    pub async fn wait_for_reply(
        &self,
        channel: &str,
        ts: &str,
        pred: impl Fn(&Message) -> bool,
    ) -> Message {
        let bot = self.slack.bot_user_id().to_string();
        self.slack
            .wait_until(WAIT, |s| {
                s.thread(channel, ts)
                    .into_iter()
                    .skip(1)
                    .find(|m| m.user.as_deref() == Some(bot.as_str()) && pred(m))
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no matching reply in thread {channel}/{ts}; thread: {:#?}",
                    self.slack.thread(channel, ts)
                )
            })
    }

    /// Waits for the session of a run to end and returns its row.
    pub async fn wait_for_session_end(&self, run_id: &str) -> SessionRow {
        let store = self.store();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(row) = store
                .sessions(100)
                .expect("sessions")
                .into_iter()
                .find(|s| s.run_id == run_id && s.status.is_terminal())
            {
                return row;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "session for run {run_id} did not end; sessions: {:#?}",
                store.sessions(100)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the session of a run is running (its agent started).
    pub async fn store_wait_running(&self, run_id: &str) {
        let store = self.store();
        let deadline = tokio::time::Instant::now() + WAIT;
        while !store
            .sessions(100)
            .expect("sessions")
            .iter()
            .any(|s| s.run_id == run_id && s.status == selfheal::store::Status::Running)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "session {run_id} never ran"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Give the agent a moment to start printing.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    /// A second handle on the bot's database, as an operator would open it.
    pub fn store(&self) -> Store {
        Store::open(&self.db_path).expect("open the bot's database")
    }

    /// Messages the bot posted in a channel (top-level and replies).
    pub fn bot_messages(&self, channel: &str) -> Vec<Message> {
        let bot = self.slack.bot_user_id().to_string();
        self.slack
            .messages(channel)
            .into_iter()
            .filter(|m| m.user.as_deref() == Some(bot.as_str()))
            .collect()
    }

    /// The environment the bot runs with.
    pub fn env(&self) -> HashMap<String, String> {
        self.env.clone()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A modern app message from the notifier (bot_id + bot_profile, no subtype).
pub fn notifier(text: &str) -> BotPost {
    BotPost {
        bot_id: NOTIFIER_BOT.into(),
        app_id: Some(NOTIFIER_APP.into()),
        name: "Paradime".into(),
        text: text.into(),
        ..BotPost::default()
    }
}

/// What a Paradime Bolt failure notification says.
pub fn failure_text(schedule: &str, run_id: &str) -> String {
    format!(
        ":x: Bolt schedule *{schedule}* failed\nRun ID: {run_id}\nCommand: dbt build --select marts\n<https://app.paradime.io/bolt/runs/{run_id}|View run logs>"
    )
}

pub const HEALING_REPLY: &str = "🦖 Self-healing enabled — starting healing session...";

/// Waits until the session of `run_id` in a staged world's database ends
/// (the demo's world or a team layout's, `World`).
pub async fn world_session_end(world: &World, run_id: &str, within: Duration) -> SessionRow {
    let store = Store::open(&world.root.join("selfheal.db")).unwrap();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(s) = store
            .sessions(50)
            .unwrap()
            .into_iter()
            .find(|s| s.run_id == run_id && s.status.is_terminal())
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no end for run {run_id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The final message of a staged world's healing thread (the last bot
/// message saying how the session ended).
pub async fn world_final_message(world: &World, ts: &str, within: Duration) -> String {
    let bot = world.slack.bot_user_id().to_string();
    world
        .slack
        .wait_until(within, |s| {
            s.thread(selfheal::demo::HEALING, ts)
                .into_iter()
                .rev()
                .find(|m| {
                    m.user.as_deref() == Some(bot.as_str())
                        && (m.text.contains("No pull request opened")
                            || m.text.contains("is ready for review")
                            || m.text.contains("already addresses this error"))
                })
        })
        .await
        .expect("a final message")
        .text
}

/// Runs `/selfheal <text>` as `user` in `channel` of `slack` and returns the
/// ephemeral answer from the ack.
pub async fn slash(slack: &FakeSlack, channel: &str, user: &str, text: &str) -> String {
    let envelope = slack
        .send_slash_command(user, channel, "/selfheal", text)
        .await;
    slack
        .wait_until(WAIT, |s| {
            s.acks()
                .into_iter()
                .find(|a| a.envelope_id == envelope)
                .and_then(|a| a.payload)
                .map(|p| p["text"].as_str().unwrap_or_default().to_string())
        })
        .await
        .unwrap_or_else(|| panic!("no ack with an answer for `/selfheal {text}`"))
}

/// Starts the bot in-process on a staged world and waits until it is
/// connected to the world's Slack.
pub async fn start_world_bot(
    world: &World,
    env: &[(&str, &str)],
) -> (CancellationToken, JoinHandle<anyhow::Result<()>>) {
    let shutdown = CancellationToken::new();
    let config = world.config(env).expect("config");
    let bot = tokio::spawn(selfheal::app::run(config, shutdown.clone()));
    world
        .slack
        .wait_until(WAIT, |s| (s.hellos() > 0).then_some(()))
        .await
        .expect("the bot connects");
    (shutdown, bot)
}

/// Makes the staged world's `hourly_marts` heal with agent `name` (its file
/// written under `.dinoai/agents/` by the caller).
pub fn heal_hourly_marts_with(world: &World, name: &str) {
    let schedules = world.prod.join("paradime_schedules.yml");
    let text = std::fs::read_to_string(&schedules).unwrap();
    std::fs::write(
        &schedules,
        text.replace("agent_name: dbt-doctor", &format!("agent_name: {name}")),
    )
    .unwrap();
}

/// A staged world: the demo's project (`"demo"`) or a layout of
/// `tests/fixtures/projects`, in a folder of its own.
pub async fn staged_world(project: &str) -> (World, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let dbt = selfheal::dbt::locate(std::env::var_os("SELFHEAL_DBT").map(Into::into))
        .await
        .expect("dbt (run scripts/setup-dbt)");
    let world = match project {
        "demo" => World::create(dir.path(), &dbt).await,
        layout => World::create_layout(dir.path(), &dbt, layout).await,
    }
    .expect("world");
    (world, dir)
}

/// A team whose main just got `breakage`, after yesterday's passing run, and
/// whose scheduled run `run_id` failed on it.
pub async fn broken_world(
    project: &str,
    breakage: &Breakage,
    run_id: &str,
) -> (World, tempfile::TempDir) {
    let (world, dir) = staged_world(project).await;
    yesterdays_run_passed(&world, project).await;
    break_main(&world, project, breakage, run_id).await;
    (world, dir)
}

/// Yesterday's scheduled run of `project` passed: production holds every table.
pub async fn yesterdays_run_passed(world: &World, project: &str) {
    if restore_kept(project, world, None) {
        return;
    }
    let run = world.scheduled_run("baseline").await.unwrap();
    assert!(
        run.passed,
        "{project}: yesterday's run passes:\n{}",
        run.console
    );
    keep(project, world, None);
}

/// Pushes `breakage` to main; the scheduled run `run_id` then fails on it.
pub async fn break_main(world: &World, project: &str, breakage: &Breakage, run_id: &str) {
    world.push_breakage(breakage).await.expect("breakage");
    // A project with packages keeps what `dbt deps` installed in the
    // scheduler's checkout too: its runs are not kept.
    let key = format!(
        "{project} {}: {:?} → {:?}",
        breakage.file, breakage.find, breakage.replace
    );
    let keepable = !world.prod.join("packages.yml").exists();
    if keepable && restore_kept(&key, world, Some(run_id)) {
        return;
    }
    let run = world.scheduled_run(run_id).await.unwrap();
    assert!(
        !run.passed,
        "the broken commit must fail dbt:\n{}",
        run.console
    );
    if keepable {
        keep(&key, world, Some(run_id));
    }
}

// What a scheduled run left, kept for later stories of the same project (and
// breakage): production's database files and the run's log.
//
// Every story of a project starts from the same passing run, and many from
// the same failing one, so the first story of the test process runs `dbt
// build` for real (and asserts its outcome), and later stories copy what it
// left instead of building the same tables again. The run log names the
// first story's folder; the copy names the new world's.

/// Kept runs by key: the folder holding the copies, and the world's root then.
static KEPT: Mutex<BTreeMap<String, (PathBuf, PathBuf)>> = Mutex::new(BTreeMap::new());

/// Copies the run kept as `key` into `world` (its log as `run_id`'s); false
/// when nothing is kept yet.
fn restore_kept(key: &str, world: &World, run_id: Option<&str>) -> bool {
    let Some((dir, root)) = KEPT.lock().unwrap().get(key).cloned() else {
        return false;
    };
    for file in &world.production {
        let relative = file
            .strip_prefix(&world.root)
            .expect("production is in the world");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::copy(dir.join("production").join(relative), file).expect("copying a kept run");
    }
    if let Some(run_id) = run_id {
        let to = world.run_logs.join(run_id);
        std::fs::create_dir_all(&to).unwrap();
        let (old, new) = (root.display().to_string(), world.root.display().to_string());
        for entry in std::fs::read_dir(dir.join("log")).unwrap() {
            let from = entry.unwrap().path();
            let text = std::fs::read_to_string(&from).unwrap();
            std::fs::write(to.join(from.file_name().unwrap()), text.replace(&old, &new)).unwrap();
        }
    }
    true
}

/// Keeps, as `key`, what the run `run_id` (or the baseline) left in `world`.
fn keep(key: &str, world: &World, run_id: Option<&str>) {
    // A folder per story: two first stories may keep theirs at once.
    static STORIES: AtomicUsize = AtomicUsize::new(0);
    let dir = kept_dir().join(STORIES.fetch_add(1, Ordering::Relaxed).to_string());
    for file in &world.production {
        let relative = file
            .strip_prefix(&world.root)
            .expect("production is in the world");
        let to = dir.join("production").join(relative);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(file, &to).expect("keeping a run");
    }
    if let Some(run_id) = run_id {
        std::fs::create_dir_all(dir.join("log")).unwrap();
        for entry in std::fs::read_dir(world.run_logs.join(run_id)).unwrap() {
            let from = entry.unwrap().path();
            std::fs::copy(&from, dir.join("log").join(from.file_name().unwrap())).unwrap();
        }
    }
    KEPT.lock()
        .unwrap()
        .insert(key.to_string(), (dir, world.root.clone()));
}

/// This test process's folder of kept runs, under cargo's temporary folder
/// for integration tests (earlier processes' folders are removed).
fn kept_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let all = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kept-runs");
        let _ = std::fs::remove_dir_all(&all);
        all.join(std::process::id().to_string())
    })
    .clone()
}
