//! `selfheal bench`: measures the release binary against the local Slack fake
//! and prints each figure beside its target.
//!
//! The bot runs as its own process (`selfheal run`, started from this very
//! executable, or from the one `--bin` names, such as a build without the
//! demo) so its memory and latency are its own; the fake Slack, the
//! traffic and the clocks live in the bench process. Every scenario runs
//! `runs` times on a fresh bot and database and the median is reported.
//! History at scale runs in-process on a real SQLite file, and on a real
//! PostgreSQL server when given one (`--postgres <URL>`); so does the race
//! of one replica against three sharing that server.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{TimeZone, Utc};
use rusqlite::params;

use selfheal_fakes::slack::{BotPost, FakeSlack};

use crate::domain::EventKind;
use crate::slack::render::HEALING_REPLY;
use crate::store::{Status, Store};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Runs per scenario; the median is reported.
    pub runs: usize,
    /// Only these scenarios (by name); all when empty.
    pub only: Vec<String>,
    /// Stored sessions for the history scenario.
    pub history_sessions: usize,
    /// The bot to measure; `None`: this executable.
    pub bin: Option<PathBuf>,
    /// The PostgreSQL database the `history-postgres` scenario fills (in a
    /// schema of its own, dropped afterwards); `None` skips that scenario.
    pub postgres: Option<String>,
}

/// The scenarios, in the order they run.
pub const SCENARIOS: &[&str] = &[
    "traffic",
    "burst",
    "streaming",
    "memory",
    "history",
    "history-postgres",
    "replicas",
];

/// One measured figure and its target.
#[derive(Debug, Clone)]
struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
    /// The figure passes when `value <= target` (or `>=` for `at_least`).
    target: Option<f64>,
    at_least: bool,
}

impl Figure {
    fn info(name: &str, value: f64, unit: &'static str) -> Self {
        Figure {
            name: name.into(),
            value,
            unit,
            target: None,
            at_least: false,
        }
    }
    fn at_most(name: &str, value: f64, unit: &'static str, target: f64) -> Self {
        Figure {
            target: Some(target),
            ..Figure::info(name, value, unit)
        }
    }
    fn at_least(name: &str, value: f64, unit: &'static str, target: f64) -> Self {
        Figure {
            target: Some(target),
            at_least: true,
            ..Figure::info(name, value, unit)
        }
    }
    fn passed(&self) -> Option<bool> {
        self.target.map(|t| {
            if self.at_least {
                self.value >= t
            } else {
                self.value <= t
            }
        })
    }
}

/// Runs the benchmarks and prints a table; true when every target was met.
pub async fn run_bench(opts: BenchOptions) -> Result<bool> {
    for name in &opts.only {
        if !SCENARIOS.contains(&name.as_str()) {
            bail!("unknown scenario `{name}`; known: {}", SCENARIOS.join(", "));
        }
    }
    let exe = match opts.bin {
        Some(bin) => bin,
        None => std::env::current_exe().context("locating the selfheal binary")?,
    };
    println!("selfheal bench — {}", machine());
    println!(
        "each scenario runs {} time(s) on a fresh bot process; figures are medians\n",
        opts.runs
    );
    let mut all_passed = true;
    for scenario in SCENARIOS {
        if !opts.only.is_empty() && !opts.only.iter().any(|o| o == scenario) {
            continue;
        }
        if matches!(*scenario, "history-postgres" | "replicas") && opts.postgres.is_none() {
            println!("## {scenario}\n  skipped: no PostgreSQL URL (--postgres or SELFHEAL_BENCH_PG_URL)\n");
            continue;
        }
        let runs = if scenario.starts_with("history") {
            1
        } else {
            opts.runs
        };
        let mut samples: Vec<Vec<Figure>> = Vec::new();
        for run in 0..runs {
            eprintln!("… {scenario} run {}/{runs}", run + 1);
            let figures = match *scenario {
                "traffic" => traffic(&exe).await,
                "burst" => burst(&exe).await,
                "streaming" => streaming(&exe).await,
                "memory" => memory(&exe).await,
                "history" => history(opts.history_sessions),
                name => {
                    let url = opts
                        .postgres
                        .as_deref()
                        .expect("skipped above without a URL");
                    if name == "replicas" {
                        replicas(&exe, url).await
                    } else {
                        history_postgres(url, opts.history_sessions).await
                    }
                }
            }
            .with_context(|| format!("scenario {scenario}"))?;
            samples.push(figures);
        }
        println!("## {scenario}");
        for figure in medians(&samples) {
            let verdict = match figure.passed() {
                Some(true) => "pass",
                Some(false) => {
                    all_passed = false;
                    "FAIL"
                }
                None => "",
            };
            let target = figure
                .target
                .map(|t| format!("{} {}", if figure.at_least { "≥" } else { "≤" }, number(t)))
                .unwrap_or_default();
            println!(
                "  {:<52} {:>12} {:<4} {:>10}  {}",
                figure.name,
                number(figure.value),
                figure.unit,
                target,
                verdict
            );
        }
        println!();
    }
    Ok(all_passed)
}

fn medians(samples: &[Vec<Figure>]) -> Vec<Figure> {
    let Some(first) = samples.first() else {
        return vec![];
    };
    first
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut values: Vec<f64> = samples
                .iter()
                .filter_map(|s| s.get(i))
                .map(|f| f.value)
                .collect();
            values.sort_by(f64::total_cmp);
            Figure {
                value: values[values.len() / 2],
                ..f.clone()
            }
        })
        .collect()
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores ({cpu}), {}", std::env::consts::OS)
}

// ---- The bot under test --------------------------------------------------------

/// A notifier bot id the bot is configured to trust.
const NOTIFIER: &str = "B0BENCHNOTIFY";

/// A scratch folder with schedules for `channels` healing channels, all
/// healed by the command agent `agent`.
struct World {
    dir: PathBuf,
    slack: FakeSlack,
    channels: Vec<String>,
}

impl World {
    async fn new(channels: usize, agent: &[&str]) -> Result<World> {
        let stamp = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("selfheal-bench-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(dir.join(".dinoai/agents"))?;
        let slack = crate::demo::fake_slack().await;
        let mut schedules = String::from("schedules:\n");
        let mut ids = vec![];
        for c in 0..channels {
            let id = format!("C0HEAL{c:04}");
            slack.add_channel(&id, &format!("heal-{c}"));
            ids.push(id);
            write!(
                schedules,
                "  - name: sched_{c}\n    schedule: \"0 * * * *\"\n    environment: production\n    commands: [\"dbt build\"]\n    notifications:\n      slack_channels:\n        - channel: \"#heal-{c}\"\n          events: [failed]\n    self_healing:\n      enabled: true\n      agent_name: bench\n"
            )?;
        }
        std::fs::write(dir.join("paradime_schedules.yml"), schedules)?;
        let command = serde_json::to_string(agent)?;
        std::fs::write(
            dir.join(".dinoai/agents/bench.yml"),
            format!(
                "name: bench\nversion: 1\nrole: r\ngoal: g\nbackstory: b\nselfheal:\n  runner: command\n  command: {command}\n  timeout: 10m\n"
            ),
        )?;
        Ok(World {
            dir,
            slack,
            channels: ids,
        })
    }

    fn db(&self) -> PathBuf {
        self.dir.join("bench.db")
    }

    /// Starts `selfheal run` and waits for its Socket Mode hello.
    async fn start_bot(&self, exe: &Path, env: &[(&str, &str)]) -> Result<Bot> {
        let started = Instant::now();
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("run")
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("SLACK_APP_TOKEN", self.slack.app_token())
            .env("SLACK_BOT_TOKEN", self.slack.bot_token())
            .env("SLACK_API_URL", self.slack.api_url())
            .env("SELFHEAL_SCHEDULES", &self.dir)
            .env("SELFHEAL_DB", self.db())
            .env("SELFHEAL_NOTIFIER_BOTS", NOTIFIER)
            .env("SELFHEAL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Allocator and runtime knobs, and the pace's leeway, pass through.
        for k in [
            "MALLOC_ARENA_MAX",
            "TOKIO_WORKER_THREADS",
            "SELFHEAL_CHANNEL_LEEWAY_MS",
        ] {
            if let Ok(v) = std::env::var(k) {
                cmd.env(k, v);
            }
        }
        let child = cmd.spawn().context("starting selfheal run")?;
        let hellos = self.slack.hellos();
        self.slack
            .wait_until(Duration::from_secs(10), |s| {
                (s.hellos() > hellos).then_some(())
            })
            .await
            .ok_or_else(|| anyhow!("the bot did not connect to Socket Mode"))?;
        Ok(Bot {
            to_hello: started.elapsed(),
            pid: child.id().unwrap_or(0),
            child,
        })
    }

    /// The notifier posts a Bolt failure of `sched_<c>` into channel `c`.
    async fn post_failure(&self, c: usize, run_id: usize) -> (String, String, Instant) {
        let channel = self.channels[c].clone();
        let text = format!(":x: Bolt schedule *sched_{c}* failed\nRun ID: {run_id}");
        let ts = self.slack.post_as_bot(&channel, notifier(&text)).await;
        (channel, ts, Instant::now())
    }

    /// Waits until every failure has its healing reply. Polls a few times a
    /// second rather than on every change in the fake: checking 1,000 threads
    /// on each of its changes would load the bench process, which shares the
    /// cores with the bot, and show up as the bot's ack latency.
    async fn await_replies(
        &self,
        failures: &[(String, String, Instant)],
        limit: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut pending: Vec<&(String, String, Instant)> = failures.iter().collect();
        loop {
            pending.retain(|(c, ts, _)| self.reply_at(c, ts).is_none());
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} failures got no healing reply within {limit:?}",
                    pending.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// How many of `failures` have exactly one healing reply.
    fn replied_once(&self, failures: &[(String, String, Instant)]) -> usize {
        failures
            .iter()
            .filter(|(c, ts, _)| {
                let thread = self.slack.thread(c, ts);
                thread.iter().filter(|m| m.text == HEALING_REPLY).count() == 1
            })
            .count()
    }

    /// Per channel, the writes Slack accepted before the channel's last
    /// healing reply that were not healing replies (progress, edits): each
    /// took a slot a healing reply waited for.
    fn writes_before_last_reply(&self) -> usize {
        let mut writes: HashMap<String, Vec<(Instant, bool)>> = HashMap::new();
        for call in self.slack.calls() {
            if call.status != 200 || call.error.is_some() {
                continue;
            }
            if call.method != "chat.postMessage" && call.method != "chat.update" {
                continue;
            }
            let Some(channel) = call.params.get("channel").and_then(|c| c.as_str()) else {
                continue;
            };
            let answer = call.params.get("text").and_then(|t| t.as_str()) == Some(HEALING_REPLY);
            writes
                .entry(channel.to_string())
                .or_default()
                .push((call.at, answer));
        }
        writes
            .values()
            .map(|w| {
                let last = w.iter().filter(|(_, a)| *a).map(|(at, _)| *at).max();
                w.iter()
                    .filter(|(at, a)| !a && last.is_some_and(|l| *at < l))
                    .count()
            })
            .sum()
    }

    /// The Web API calls the fake answered 429.
    fn rate_limited(&self) -> usize {
        self.slack
            .calls()
            .iter()
            .filter(|c| c.status == 429)
            .count()
    }

    /// When the healing reply landed in a thread, if it did.
    fn reply_at(&self, channel: &str, ts: &str) -> Option<Instant> {
        self.slack
            .thread(channel, ts)
            .into_iter()
            .skip(1)
            .find(|m| m.text == HEALING_REPLY)
            .map(|m| m.posted_at)
    }

    /// Envelope sent → ack received, for every acked envelope, sorted.
    fn ack_latencies(&self) -> Vec<Duration> {
        let mut acks: Vec<Duration> = self
            .slack
            .acks()
            .iter()
            .filter_map(|a| a.sent_at.map(|s| a.acked_at.duration_since(s)))
            .collect();
        acks.sort();
        acks
    }

    fn healing_replies(&self) -> usize {
        self.slack
            .calls_to("chat.postMessage")
            .iter()
            .filter(|c| c.status == 200 && c.params["text"] == HEALING_REPLY)
            .count()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn notifier(text: &str) -> BotPost {
    BotPost {
        bot_id: NOTIFIER.into(),
        app_id: Some("A0BENCHNOTIFY".into()),
        name: "Paradime".into(),
        text: text.into(),
        ..BotPost::default()
    }
}

struct Bot {
    child: tokio::process::Child,
    pid: u32,
    to_hello: Duration,
}

impl Bot {
    fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS:")
    }

    /// A `/proc/<pid>/status` memory line, in MiB.
    fn status_mib(&self, key: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse::<f64>().ok())
            })
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// SIGTERM, then the time until the process exited.
    async fn stop(mut self) -> Result<Duration> {
        let at = Instant::now();
        // SAFETY: kill(2) with a pid we spawned and have not reaped.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("the bot did not exit within 30 s of SIGTERM")??;
        Ok(at.elapsed())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) * p).div_ceil(100)]
}

// ---- Scenarios ------------------------------------------------------------------

/// Steady traffic: 200 envelopes/s for 5 s into 50 channels. One in twenty is a
/// failure (one per channel); the rest is chatter the bot must read and ignore:
/// people talking and "passed" notifications.
async fn traffic(exe: &Path) -> Result<Vec<Figure>> {
    const CHANNELS: usize = 50;
    const ENVELOPES: usize = 1000;
    let world = World::new(CHANNELS, &["sleep", "600"]).await?;
    world.slack.add_user("U0ANALYST", "analyst", false);
    let bot = world.start_bot(exe, &[]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = bot.rss_mib();
    let (idle_anon, idle_file) = (bot.status_mib("RssAnon:"), bot.status_mib("RssFile:"));

    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut failures = vec![];
    let began = Instant::now();
    for i in 0..ENVELOPES {
        ticker.tick().await;
        let c = i % CHANNELS;
        if i % 20 == 10 {
            failures.push(world.post_failure(i / 20, 5000 + i).await);
        } else if i % 2 == 0 {
            let channel = &world.channels[c];
            world
                .slack
                .post_as_user(
                    channel,
                    "U0ANALYST",
                    "is the warehouse slow for anyone else today?",
                    None,
                )
                .await;
        } else {
            let text = format!(
                ":white_check_mark: Bolt schedule *sched_{c}* passed\nRun ID: {}",
                9000 + i
            );
            world
                .slack
                .post_as_bot(&world.channels[c], notifier(&text))
                .await;
        }
    }
    let sent_in = began.elapsed();
    world
        .await_replies(&failures, Duration::from_secs(60))
        .await?;
    // Let the acks of the bot's own echoes come in too.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let acks = world.ack_latencies();
    let unacked = world
        .slack
        .envelopes_sent()
        .len()
        .saturating_sub(acks.len());
    let mut replies: Vec<Duration> = failures
        .iter()
        .filter_map(|(c, ts, at)| world.reply_at(c, ts).map(|r| r.duration_since(*at)))
        .collect();
    replies.sort();
    let to_hello = bot.to_hello;
    bot.stop().await?;
    Ok(vec![
        Figure::at_most("start → Socket Mode hello", ms(to_hello), "ms", 200.0),
        Figure::at_most("idle RSS", idle_rss, "MiB", 20.0),
        Figure::info("… of which heap and stacks (RssAnon)", idle_anon, "MiB"),
        Figure::info(
            "… of which the mapped binary and libraries (RssFile)",
            idle_file,
            "MiB",
        ),
        Figure::info(
            "envelopes/s offered",
            ENVELOPES as f64 / sent_in.as_secs_f64(),
            "/s",
        ),
        Figure::info("envelopes acked", acks.len() as f64, ""),
        Figure::at_most("envelopes never acked", unacked as f64, "", 0.0),
        Figure::info("ack p50", ms(percentile(&acks, 50)), "ms"),
        Figure::at_most("ack p99", ms(percentile(&acks, 99)), "ms", 5.0),
        Figure::info(
            "ack max",
            ms(acks.last().copied().unwrap_or_default()),
            "ms",
        ),
        Figure::at_most(
            "failure → healing reply p50 (50 channels)",
            ms(percentile(&replies, 50)),
            "ms",
            20.0,
        ),
        Figure::at_most(
            "failure → healing reply p99 (50 channels)",
            ms(percentile(&replies, 99)),
            "ms",
            100.0,
        ),
        Figure::at_most(
            "healing replies missing or doubled",
            (world.healing_replies() as f64 - failures.len() as f64).abs(),
            "",
            0.0,
        ),
    ])
}

/// A storm: 1,000 failures over 50 channels within a second, against a Slack
/// that answers 429 to any channel write sooner than the limit the bot is
/// configured with (1 message/s). Floor: 19 s for the 20th reply in a channel.
async fn burst(exe: &Path) -> Result<Vec<Figure>> {
    const CHANNELS: usize = 50;
    const FAILURES: usize = 1000;
    // Slack's per-channel limit as we model it: a burst of 3, then 1 a second.
    const BURST: u32 = 3;
    let interval = Duration::from_secs(1);
    let world = World::new(CHANNELS, &["sleep", "600"]).await?;
    world.slack.set_channel_rate_limit_burst(interval, BURST);
    let bot = world
        .start_bot(
            exe,
            &[
                ("SELFHEAL_CHANNEL_INTERVAL_MS", "1000"),
                ("SELFHEAL_CHANNEL_BURST", "3"),
            ],
        )
        .await?;

    let mut failures = Vec::with_capacity(FAILURES);
    let mut ticker = tokio::time::interval(Duration::from_micros(900));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..FAILURES {
        ticker.tick().await;
        failures.push(world.post_failure(i % CHANNELS, 10_000 + i).await);
    }
    let first = failures[0].2;
    let posted_in = failures[FAILURES - 1].2.duration_since(first);
    world
        .await_replies(&failures, Duration::from_secs(120))
        .await?;
    let last = failures
        .iter()
        .filter_map(|(c, ts, _)| world.reply_at(c, ts))
        .max()
        .unwrap_or(first);
    let took = last.duration_since(first);
    let per_channel = FAILURES.div_ceil(CHANNELS);
    // A channel's first `BURST` replies may go at once, the rest 1 a second.
    let floor = interval * (per_channel as u32 - BURST);
    let rate_limited = world.rate_limited();
    // Every 429 must have been waited out and retried: the healing replies
    // all landing exactly once shows it.
    let exactly_once = world.replied_once(&failures);
    let acks = world.ack_latencies();
    // The envelopes that arrived while the storm was being posted, apart
    // from the echoes of the bot's own replies that come later, one batch a
    // second as the 50 channels' write slots open together.
    let storm_end = failures[FAILURES - 1].2;
    let mut storm_acks: Vec<Duration> = world
        .slack
        .acks()
        .iter()
        .filter_map(|a| {
            a.sent_at
                .filter(|s| *s <= storm_end)
                .map(|s| a.acked_at.duration_since(s))
        })
        .collect();
    storm_acks.sort();
    bot.stop().await?;
    Ok(vec![
        Figure::info("failures posted in", ms(posted_in), "ms"),
        Figure::at_least(
            "threads with exactly one healing reply",
            exactly_once as f64,
            "",
            FAILURES as f64,
        ),
        Figure::info("floor: (20 − burst 3) × 1 s per channel", ms(floor), "ms"),
        Figure::info("first failure → last healing reply", ms(took), "ms"),
        Figure::at_most(
            "… as a share of the floor",
            took.as_secs_f64() / floor.as_secs_f64(),
            "×",
            1.05,
        ),
        Figure::at_most("429s answered by the fake", rate_limited as f64, "", 0.0),
        Figure::info(
            "ack p99 while the storm was posted (~1,100/s)",
            ms(percentile(&storm_acks, 99)),
            "ms",
        ),
        Figure::info(
            "ack p50, all envelopes incl. echoes of replies",
            ms(percentile(&acks, 50)),
            "ms",
        ),
        Figure::info(
            "ack p99, all envelopes incl. echoes of replies",
            ms(percentile(&acks, 99)),
            "ms",
        ),
    ])
}

/// The race of 200 failures over 20 channels against Slack's limits (a burst
/// of 3, then 1 write/s per channel, counted for the whole app), by one
/// replica and by three sharing one PostgreSQL store.
async fn replicas(exe: &Path, url: &str) -> Result<Vec<Figure>> {
    let mut figures = vec![];
    for n in [1, 3] {
        let Race {
            took,
            floor,
            rate_limited,
            once,
            overtaken,
        } = race(exe, url, n).await?;
        let who = if n == 1 { "1 replica" } else { "3 replicas" };
        figures.extend([
            Figure::at_least(
                &format!("{who}: threads with exactly one healing reply"),
                once as f64,
                "",
                200.0,
            ),
            Figure::info(
                &format!("{who}: first failure → last healing reply"),
                ms(took),
                "ms",
            ),
            Figure::at_most(
                &format!("{who}: … as a share of the floor ((10 − 3) × 1 s)"),
                took.as_secs_f64() / floor.as_secs_f64(),
                "×",
                1.05,
            ),
            Figure::at_most(
                &format!("{who}: 429s from the fake"),
                rate_limited as f64,
                "",
                0.0,
            ),
            Figure::at_most(
                &format!("{who}: progress writes before a channel's last healing reply"),
                overtaken as f64,
                "",
                0.0,
            ),
        ]);
    }
    Ok(figures)
}

/// What one race showed.
struct Race {
    /// First failure → last healing reply.
    took: Duration,
    /// The least `took` can be under the channels' pace.
    floor: Duration,
    /// Writes the fake answered 429.
    rate_limited: usize,
    /// Threads with exactly one healing reply.
    once: usize,
    /// Other writes that took a slot before their channel's last healing reply.
    overtaken: usize,
}

/// One race with `n` replicas on a fresh schema.
async fn race(exe: &Path, url: &str, n: usize) -> Result<Race> {
    const CHANNELS: usize = 20;
    const FAILURES: usize = 200;
    const BURST: u32 = 3;
    let interval = Duration::from_secs(1);
    let world = World::new(CHANNELS, &["sleep", "600"]).await?;
    world.slack.set_channel_rate_limit_burst(interval, BURST);
    let admin = pg_connect(url).await?;
    let schema = create_bench_schema(&admin).await?;
    let db = in_schema(url, &schema);
    let result = async {
        let mut bots = vec![];
        for _ in 0..n {
            bots.push(
                world
                    .start_bot(
                        exe,
                        &[
                            ("SELFHEAL_DB", &db),
                            ("SELFHEAL_CHANNEL_INTERVAL_MS", "1000"),
                            ("SELFHEAL_CHANNEL_BURST", "3"),
                        ],
                    )
                    .await?,
            );
        }
        let mut failures = Vec::with_capacity(FAILURES);
        for i in 0..FAILURES {
            failures.push(world.post_failure(i % CHANNELS, 30_000 + i).await);
        }
        world
            .await_replies(&failures, Duration::from_secs(120))
            .await?;
        let first = failures[0].2;
        let last = failures
            .iter()
            .filter_map(|(c, ts, _)| world.reply_at(c, ts))
            .max()
            .unwrap_or(first);
        let once = world.replied_once(&failures);
        let rate_limited = world.rate_limited();
        let overtaken = world.writes_before_last_reply();
        for bot in bots {
            bot.stop().await?;
        }
        let floor = interval * (FAILURES.div_ceil(CHANNELS) as u32 - BURST);
        Ok(Race {
            took: last.duration_since(first),
            floor,
            rate_limited,
            once,
            overtaken,
        })
    }
    .await;
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .with_context(|| format!("dropping the schema {schema}"))?;
    result
}

/// An agent printing 10,000 lines over 10 s into one thread.
async fn streaming(exe: &Path) -> Result<Vec<Figure>> {
    const LINES: usize = 10_000;
    let script = "import sys, time\nfor i in range(1, 10001):\n    print(f'line {i} of the agent transcript', flush=(i % 100 == 0))\n    if i % 100 == 0:\n        time.sleep(0.1)\n";
    let world = World::new(1, &["python3", "-c", script]).await?;
    let bot = world.start_bot(exe, &[]).await?;
    let (channel, ts, at) = world.post_failure(0, 77).await;
    let store = Store::open(&world.db())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let row = loop {
        if let Some(row) = store
            .sessions(10)?
            .into_iter()
            .find(|s| s.run_id == "77" && s.status.is_terminal())
        {
            break row;
        }
        if Instant::now() > deadline {
            bail!("the streaming session did not end within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = at.elapsed();
    let progress_ts = row
        .progress_ts
        .clone()
        .ok_or_else(|| anyhow!("no progress message was posted"))?;
    // Wait for the final edit to land before reading the message.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let edits = world
        .slack
        .calls_to("chat.update")
        .iter()
        .filter(|c| c.params["ts"] == progress_ts.as_str() && c.status == 200)
        .count();
    let message = world
        .slack
        .thread(&channel, &ts)
        .into_iter()
        .find(|m| m.ts == progress_ts)
        .ok_or_else(|| anyhow!("the progress message is gone"))?;
    let shown = message
        .blocks
        .as_ref()
        .map(|b| b.to_string())
        .unwrap_or_default();
    // The count includes the bot's own closing note, hence "at least".
    let counted = shown
        .split(" lines of agent output")
        .next()
        .and_then(|head| head.rsplit('"').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let complete =
        counted >= LINES && shown.contains(&format!("line {LINES} of the agent transcript"));
    if !complete {
        eprintln!("the final progress message is incomplete: {shown}");
    }
    let stored: std::collections::HashSet<String> = store
        .events(row.id)?
        .into_iter()
        .filter(|e| EventKind::parse(&e.kind) == Some(EventKind::Progress))
        .map(|e| e.text)
        .collect();
    let lost = (1..=LINES)
        .filter(|i| !stored.contains(&format!("line {i} of the agent transcript")))
        .count();
    bot.stop().await?;
    Ok(vec![
        Figure::info("notification → session ended", ms(took), "ms"),
        Figure::at_most("edits of the progress message", edits as f64, "", 15.0),
        Figure::at_least(
            "final message shows all lines and the last",
            f64::from(u8::from(complete)),
            "",
            1.0,
        ),
        Figure::at_most("lines missing from the stored log", lost as f64, "", 0.0),
    ])
}

/// 100 sessions running at once (command agents that sleep): the bot's RSS,
/// then how long SIGTERM takes to stop them all.
async fn memory(exe: &Path) -> Result<Vec<Figure>> {
    const SESSIONS: usize = 100;
    let world = World::new(50, &["sleep", "600"]).await?;
    let bot = world
        .start_bot(
            exe,
            &[
                ("SELFHEAL_MAX_SESSIONS", "100"),
                ("SELFHEAL_MAX_SESSIONS_PER_SCHEDULE", "100"),
                ("SELFHEAL_CHANNEL_INTERVAL_MS", "20"),
            ],
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = bot.rss_mib();
    for i in 0..SESSIONS {
        world.post_failure(i % 50, 20_000 + i).await;
    }
    let store = Store::open(&world.db())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = store
            .sessions(SESSIONS + 10)?
            .iter()
            .filter(|s| s.status == Status::Running)
            .count();
        if running == SESSIONS {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {running} of {SESSIONS} sessions were running after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = bot.rss_mib();
    let stop = bot.stop().await?;
    Ok(vec![
        Figure::at_most("idle RSS", idle, "MiB", 20.0),
        Figure::at_most("RSS with 100 sessions running", busy, "MiB", 100.0),
        Figure::at_most(
            "SIGTERM → exit with 100 sessions running",
            ms(stop),
            "ms",
            10_000.0,
        ),
    ])
}

/// An SQLite file holding `n` sessions of 200 schedules over ten years: the
/// queries a new session and `/selfheal history` make.
fn history(n: usize) -> Result<Vec<Figure>> {
    let dir = std::env::temp_dir().join(format!("selfheal-bench-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("history.db");
    let _ = std::fs::remove_file(&path);
    let store = Store::open(&path)?;
    drop(store);
    let fill = Instant::now();
    fill_history(&path, n)?;
    let filled_in = fill.elapsed();
    let store = Store::open(&path)?;
    let queries = history_queries(&store, n, SQLITE_TARGET_MS)?;
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    let mut figures = vec![
        Figure::info("sessions stored", n as f64, ""),
        Figure::info("database size", size as f64 / 1024.0 / 1024.0, "MiB"),
        Figure::info("filled in", filled_in.as_secs_f64(), "s"),
    ];
    figures.extend(queries);
    Ok(figures)
}

/// Each history query's target on SQLite: a p50 in process, from the page
/// cache.
const SQLITE_TARGET_MS: f64 = 2.0;

/// Each history query's target on PostgreSQL. The same as SQLite's: each call
/// adds a round trip over loopback and a hop to the store's PostgreSQL
/// thread (0.1–0.2 ms in all at 1M sessions on 2 cores, see
/// docs/BENCHMARKS.md), and the queries use the same indexes.
const POSTGRES_TARGET_MS: f64 = 2.0;

/// The same database as [`history`]'s, in a schema of its own in the
/// PostgreSQL database `url` names, dropped at the end (so every run starts
/// empty); filled by the server itself (see [`fill_history_postgres`]).
async fn history_postgres(url: &str, n: usize) -> Result<Vec<Figure>> {
    let admin = pg_connect(url).await?;
    let schema = create_bench_schema(&admin).await?;
    let figures = history_in_schema(&in_schema(url, &schema), &schema, n).await;
    let dropped = admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .with_context(|| format!("dropping the schema {schema}"));
    let figures = figures?;
    dropped?;
    Ok(figures)
}

/// The history scenario in `schema`, which `url` puts first on the search path.
async fn history_in_schema(url: &str, schema: &str, n: usize) -> Result<Vec<Figure>> {
    // Opening the store first creates the tables, in the schema `url` puts
    // first on the search path.
    let store = Store::open(Path::new(url))?;
    let client = pg_connect(url).await?;
    let fill = Instant::now();
    fill_history_postgres(&client, n).await?;
    let filled_in = fill.elapsed();
    let queries = history_queries(&store, n, POSTGRES_TARGET_MS)?;
    // Tables with their indexes and TOAST, as SQLite's file size counts them.
    let size: i64 = client
        .query_one(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::BIGINT
             FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
             WHERE s.nspname = $1 AND c.relkind = 'r'",
            &[&schema],
        )
        .await
        .context("measuring the bench schema")?
        .get(0);
    let mut figures = vec![
        Figure::info("sessions stored", n as f64, ""),
        Figure::info("database size", size as f64 / 1024.0 / 1024.0, "MiB"),
        Figure::info("filled in (with ANALYZE)", filled_in.as_secs_f64(), "s"),
    ];
    figures.extend(queries);
    Ok(figures)
}

/// Times (p50 of 200 calls) each store query a new session, a notification,
/// a thread reply, a start-up and `/selfheal history` make, in a store
/// filled with `n` sessions; each figure's target is `target_ms`.
fn history_queries(store: &Store, n: usize, target_ms: f64) -> Result<Vec<Figure>> {
    let time = |f: &dyn Fn(usize) -> Result<usize>| -> Result<Duration> {
        let mut samples = Vec::with_capacity(200);
        for i in 0..200 {
            let at = Instant::now();
            let rows = f(i)?;
            samples.push(at.elapsed());
            if rows == 0 {
                bail!("the query found nothing");
            }
        }
        samples.sort();
        Ok(percentile(&samples, 50))
    };
    let prior = time(&|i| {
        Ok(store
            .prior_sessions(&format!("sched_{}", i % 200), -1, 5)?
            .len())
    })?;
    let history_one = time(&|i| {
        Ok(store
            .recent_sessions(Some(&format!("sched_{}", i % 200)), 10)?
            .len())
    })?;
    let history_all = time(&|_| Ok(store.recent_sessions(None, 10)?.len()))?;
    let rare = time(&|_| Ok(store.recent_sessions(Some("sched_rare"), 10)?.len()))?;
    let run = |i: usize| (i * 997 + 1) % n;
    let by_failure = time(&|i| {
        let r = run(i);
        Ok(store
            .session_for_failure(&schedule_of(r, n), &r.to_string())?
            .map_or(0, |_| 1))
    })?;
    let thread_ts = |r: usize| format!("{}.000100", 1_500_000_000 + r);
    let by_thread = time(&|i| {
        Ok(store
            .session_in_thread("C0HEALING1", &thread_ts(run(i)))?
            .map_or(0, |_| 1))
    })?;
    let by_message = time(&|i| {
        Ok(store
            .failure_at("C0HEALING1", &thread_ts(run(i)))?
            .map_or(0, |_| 1))
    })?;
    let recent = time(&|_| {
        Ok(store
            .recent_failures(Utc::now() - chrono::Duration::hours(1))?
            .len()
            + 1)
    })?;
    Ok(vec![
        Figure::at_most(
            "prior attempts of a schedule (5 newest)",
            ms(prior),
            "ms",
            target_ms,
        ),
        Figure::at_most(
            "/selfheal history <schedule> (10 newest)",
            ms(history_one),
            "ms",
            target_ms,
        ),
        Figure::at_most(
            "/selfheal history (10 newest overall)",
            ms(history_all),
            "ms",
            target_ms,
        ),
        Figure::at_most(
            "/selfheal history of a schedule with 3 sessions",
            ms(rare),
            "ms",
            target_ms,
        ),
        Figure::at_most(
            "session of a failure (every notification)",
            ms(by_failure),
            "ms",
            target_ms,
        ),
        Figure::at_most(
            "session of a thread (every thread reply)",
            ms(by_thread),
            "ms",
            target_ms,
        ),
        Figure::at_most(
            "failure of a notification (thread replies)",
            ms(by_message),
            "ms",
            target_ms,
        ),
        Figure::at_most(
            "failures of the last hour (start-up)",
            ms(recent),
            "ms",
            target_ms,
        ),
    ])
}

/// Writes `n` finished sessions (and their failures) straight into the schema,
/// in one transaction; three belong to `sched_rare`, spread over the decade.
fn fill_history(path: &Path, n: usize) -> Result<()> {
    let mut conn = rusqlite::Connection::open(path)?;
    let tx = conn.transaction()?;
    {
        let mut failure = tx.prepare(
            "INSERT INTO failures (id, schedule, run_id, first_seen_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut sighting = tx.prepare(
            "INSERT INTO sightings (failure_id, channel, ts, seen_at) VALUES (?1, 'C0HEALING1', ?2, ?3)",
        )?;
        let mut session = tx.prepare(
            "INSERT INTO sessions (id, failure_id, attempt, schedule, run_id, channel, thread_ts, progress_ts, agent, status, created_at, started_at, ended_at, pr_url, summary, error, signature)
             VALUES (?1, ?1, 1, ?2, ?3, 'C0HEALING1', ?4, ?4, 'healer', ?5, ?6, ?6, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let (start, step) = (history_start()?, history_step(n));
        for i in 0..n {
            let schedule = schedule_of(i, n);
            let at = start + chrono::Duration::seconds((i as f64 * step) as i64);
            let run_id = i.to_string();
            let id = i as i64 + 1;
            let ts = format!("{}.000100", 1_500_000_000 + i);
            failure.execute(params![id, schedule, run_id, at])?;
            sighting.execute(params![id, ts, at])?;
            let status = if i % 3 == 0 {
                Status::Fixed
            } else {
                Status::Failed
            };
            let pr = (i % 3 == 0).then(|| format!("https://github.com/acme/analytics/pull/{i}"));
            session.execute(params![
                id,
                schedule,
                run_id,
                ts,
                status.as_str(),
                at,
                pr,
                HISTORY_SUMMARY,
                HISTORY_ERROR,
                format!("orders:{}", i % 50),
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The schedule of the `i`th of `n` stored sessions: three of them are
/// `sched_rare`'s, the rest round-robin over 200 schedules.
fn schedule_of(i: usize, n: usize) -> String {
    if i % (n / 3).max(1) == 7 {
        "sched_rare".to_string()
    } else {
        format!("sched_{}", i % 200)
    }
}

/// When the first stored session was created; the rest follow over ten years.
fn history_start() -> Result<chrono::DateTime<Utc>> {
    Utc.with_ymd_and_hms(2016, 1, 1, 0, 0, 0)
        .single()
        .ok_or_else(|| anyhow!("bad start date"))
}

/// Seconds between two of `n` stored sessions.
fn history_step(n: usize) -> f64 {
    (10 * 365 * 24 * 3600) as f64 / n as f64
}

/// What every stored session's agent said it did, and the error it met.
const HISTORY_SUMMARY: &str = "pointed the ref at the renamed model";
const HISTORY_ERROR: &str =
    "Compilation Error in model orders: depends on a node named 'stg_order' which was not found";

/// The rows [`fill_history`] writes, one per `i` in 0..n, computed by
/// PostgreSQL as [`schedule_of`], [`history_start`] and [`history_step`] do
/// (`$1` is n, `$2` the step, `$3` the start).
const HISTORY_ROWS_PG: &str = "
    SELECT i,
           CASE WHEN i % GREATEST($1::BIGINT / 3, 1) = 7 THEN 'sched_rare'
                ELSE 'sched_' || (i % 200) END AS schedule,
           $3::TIMESTAMPTZ + make_interval(secs => trunc(i * $2::FLOAT8)) AS at,
           (1500000000 + i) || '.000100' AS ts
    FROM generate_series(0, $1::BIGINT - 1) AS i";

/// Writes the same rows as [`fill_history`] into the PostgreSQL schema
/// `client` sees, with one `INSERT … SELECT` per table that the server
/// computes itself (a million rows sent one by one over loopback would take
/// minutes), then `ANALYZE`s them.
async fn fill_history_postgres(client: &tokio_postgres::Client, n: usize) -> Result<()> {
    let (step, start, n) = (history_step(n), history_start()?, n as i64);
    let rows = [
        &n as &(dyn tokio_postgres::types::ToSql + Sync),
        &step,
        &start,
    ];
    client
        .execute(
            &format!(
                "INSERT INTO failures (id, schedule, run_id, first_seen_at)
                 SELECT i + 1, schedule, i::TEXT, at FROM ({HISTORY_ROWS_PG}) AS h"
            ),
            &rows,
        )
        .await
        .context("filling failures")?;
    client
        .execute(
            &format!(
                "INSERT INTO sightings (failure_id, channel, ts, seen_at)
                 SELECT i + 1, 'C0HEALING1', ts, at FROM ({HISTORY_ROWS_PG}) AS h"
            ),
            &rows,
        )
        .await
        .context("filling sightings")?;
    let (fixed, failed) = (Status::Fixed.as_str(), Status::Failed.as_str());
    client
        .execute(
            &format!(
                "INSERT INTO sessions (id, failure_id, attempt, schedule, run_id, channel, thread_ts, progress_ts, agent, status, created_at, started_at, ended_at, pr_url, summary, error, signature)
                 SELECT i + 1, i + 1, 1, schedule, i::TEXT, 'C0HEALING1', ts, ts, 'healer',
                        CASE WHEN i % 3 = 0 THEN $4::TEXT ELSE $5::TEXT END, at, at, at,
                        CASE WHEN i % 3 = 0 THEN 'https://github.com/acme/analytics/pull/' || i END,
                        $6::TEXT, $7::TEXT, 'orders:' || (i % 50)
                 FROM ({HISTORY_ROWS_PG}) AS h"
            ),
            &[
                rows[0],
                rows[1],
                rows[2],
                &fixed,
                &failed,
                &HISTORY_SUMMARY,
                &HISTORY_ERROR,
            ],
        )
        .await
        .context("filling sessions")?;
    // The ids were given, so move the identity sequences past them, as
    // SQLite's rowids move by themselves.
    client
        .batch_execute(&format!(
            "SELECT setval(pg_get_serial_sequence('failures', 'id'), {n});
             SELECT setval(pg_get_serial_sequence('sessions', 'id'), {n});
             ANALYZE failures, sightings, sessions;"
        ))
        .await
        .context("analyzing the filled tables")?;
    Ok(())
}

/// A connection of the bench's own, beside the store's pool; its task runs
/// on the caller's runtime.
async fn pg_connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("the bench's PostgreSQL connection failed: {e}");
        }
    });
    Ok(client)
}

/// Creates an empty schema, named after this process and the time, and
/// returns its name.
async fn create_bench_schema(admin: &tokio_postgres::Client) -> Result<String> {
    let schema = format!(
        "bench_{}_{}",
        std::process::id(),
        Utc::now().timestamp_micros()
    );
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .with_context(|| format!("creating the schema {schema}"))?;
    Ok(schema)
}

/// `url` with `schema` alone on its search path, so the store's tables go
/// there (the form of `store::testing::fresh_schema`).
fn in_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank_at_or_above() {
        let d = |ms: u64| Duration::from_millis(ms);
        let sorted: Vec<Duration> = (1..=100).map(d).collect();
        for (p, want) in [(0, 1), (50, 51), (99, 100), (100, 100)] {
            assert_eq!(percentile(&sorted, p), d(want), "p{p}");
        }
        assert_eq!(percentile(&[], 99), Duration::ZERO);
        assert_eq!(percentile(&[d(7)], 50), d(7));
    }

    #[test]
    fn medians_are_taken_figure_by_figure_across_runs() {
        let run = |a: f64, b: f64| vec![Figure::info("a", a, ""), Figure::at_most("b", b, "", 5.0)];
        let m = medians(&[run(3.0, 9.0), run(1.0, 4.0), run(2.0, 1.0)]);
        assert_eq!((m[0].value, m[1].value), (2.0, 4.0));
        assert_eq!((m[0].passed(), m[1].passed()), (None, Some(true)));
        assert!(medians(&[]).is_empty());
    }

    #[test]
    fn postgres_history_fill_stores_what_the_sqlite_fill_stores() {
        let Some(url) = crate::store::testing::postgres_url() else {
            return;
        };
        const N: usize = 1000;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Arrange: the same history on both backends.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("history.db");
            drop(Store::open(&path).unwrap());
            fill_history(&path, N).unwrap();
            let sqlite = Store::open(&path).unwrap();
            let admin = pg_connect(&url).await.unwrap();
            let schema = create_bench_schema(&admin).await.unwrap();
            let scoped = in_schema(&url, &schema);
            let postgres = Store::open(Path::new(&scoped)).unwrap();
            fill_history_postgres(&pg_connect(&scoped).await.unwrap(), N)
                .await
                .unwrap();

            // Act and assert: every session, every failure, and a sighting,
            // read back through the store, are the same.
            let sessions = postgres.sessions(N + 1).unwrap();
            assert_eq!(sessions.len(), N);
            assert_eq!(sessions, sqlite.sessions(N + 1).unwrap());
            let rare = postgres.recent_sessions(Some("sched_rare"), 10).unwrap();
            assert_eq!(rare.len(), 3);
            let since = history_start().unwrap();
            let failures = postgres.recent_failures(since).unwrap();
            assert_eq!(failures.len(), N);
            assert_eq!(failures, sqlite.recent_failures(since).unwrap());
            let ts = format!("{}.000100", 1_500_000_000 + 997);
            let seen = postgres.failure_at("C0HEALING1", &ts).unwrap();
            assert_eq!(seen, sqlite.failure_at("C0HEALING1", &ts).unwrap());
            assert!(seen.is_some());

            drop(postgres);
            admin
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await
                .unwrap();
        });
    }
}
