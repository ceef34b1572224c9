//! Measures the release binary against the local Slack fake: idle memory,
//! Socket Mode ack latency and notification → healing-reply latency over a
//! burst of failures.
//!
//! ```text
//! cargo build --release && cargo run --release --example latency -- [failures] [channels]
//! ```
//! Defaults: 100 failures spread over 50 healing channels (two per channel, so
//! half the replies wait for the channel's 1 message/s slot).

use std::fmt::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use selfheal::fake_slack::{BotPost, FakeSlack};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let failures: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let channels: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(50);

    let slack = FakeSlack::start().await;
    let dir = tempfile_dir()?;
    let mut schedules = String::from("schedules:\n");
    for c in 0..channels {
        let id = format!("C0HEAL{c:04}");
        slack.add_channel(&id, &format!("heal-{c}"));
        write!(
            schedules,
            "  - name: sched_{c}\n    schedule: \"0 * * * *\"\n    environment: production\n    commands: [\"dbt build\"]\n    notifications:\n      slack_channels:\n        - channel: \"#heal-{c}\"\n          events: [failed]\n    self_healing:\n      enabled: true\n      agent_name: sleeper\n"
        )?;
    }
    std::fs::write(dir.join("paradime_schedules.yml"), schedules)?;
    std::fs::create_dir_all(dir.join(".dinoai/agents"))?;
    std::fs::write(
        dir.join(".dinoai/agents/sleeper.yml"),
        "name: sleeper\nversion: 1\nrole: r\ngoal: g\nbackstory: b\nselfheal:\n  runner: command\n  command: [\"sleep\", \"60\"]\n",
    )?;

    let exe = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("selfheal"))
        .ok_or_else(|| anyhow::anyhow!("cannot locate the selfheal binary"))?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&exe)
        .arg("run")
        .current_dir(&dir)
        .env("SLACK_APP_TOKEN", slack.app_token())
        .env("SLACK_BOT_TOKEN", slack.bot_token())
        .env("SLACK_API_URL", slack.api_url())
        .env("SELFHEAL_SCHEDULES", &dir)
        .env("SELFHEAL_DB", dir.join("bench.db"))
        .env("SELFHEAL_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    slack
        .wait_until(Duration::from_secs(10), |s| (s.hellos() > 0).then_some(()))
        .await
        .ok_or_else(|| anyhow::anyhow!("the bot did not connect"))?;
    let to_hello = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = child.id().unwrap_or(0);
    let idle_rss = rss_kib(pid);

    // The burst: every failure posted as fast as the fake can deliver.
    let mut posted = Vec::with_capacity(failures);
    for i in 0..failures {
        let c = i % channels;
        let channel = format!("C0HEAL{c:04}");
        let text = format!(":x: Bolt schedule *sched_{c}* failed\nRun ID: {}", 1000 + i);
        let post = BotPost {
            bot_id: "B0NOTIFIER".into(),
            app_id: Some("A0NOTIFIER".into()),
            name: "Paradime".into(),
            text,
            ..BotPost::default()
        };
        let ts = slack.post_as_bot(&channel, post).await;
        posted.push((channel, ts, Instant::now()));
    }
    let burst_sent = Instant::now();
    let reply_of = |s: &FakeSlack, channel: &str, ts: &str| {
        s.thread(channel, ts)
            .into_iter()
            .skip(1)
            .find(|m| m.text.starts_with("🦖 Self-healing enabled"))
            .map(|m| m.posted_at)
    };
    slack
        .wait_until(Duration::from_secs(120), |s| {
            posted
                .iter()
                .all(|(c, ts, _)| reply_of(s, c, ts).is_some())
                .then_some(())
        })
        .await
        .ok_or_else(|| anyhow::anyhow!("not every failure got its healing reply"))?;
    let busy_rss = rss_kib(pid);

    let mut reply: Vec<Duration> = posted
        .iter()
        .filter_map(|(c, ts, at)| reply_of(&slack, c, ts).map(|r| r.duration_since(*at)))
        .collect();
    let mut ack: Vec<Duration> = slack
        .acks()
        .iter()
        .filter_map(|a| a.sent_at.map(|s| a.acked_at.duration_since(s)))
        .collect();
    reply.sort();
    ack.sort();
    let replies = slack
        .calls_to("chat.postMessage")
        .iter()
        .filter(|c| {
            c.params["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("🦖 Self-healing enabled"))
        })
        .count();

    println!(
        "machine: {} cores",
        std::thread::available_parallelism()?.get()
    );
    println!(
        "failures: {failures} over {channels} channels (burst posted in {:?})",
        burst_sent.duration_since(posted[0].2)
    );
    println!("start → Socket Mode hello: {to_hello:?}");
    println!(
        "idle RSS: {} KiB; RSS with {failures} sessions running: {} KiB",
        idle_rss, busy_rss
    );
    println!(
        "acks: {} envelopes, p50 {:?}, p99 {:?}, max {:?}",
        ack.len(),
        pct(&ack, 50),
        pct(&ack, 99),
        ack.last().copied().unwrap_or_default()
    );
    println!(
        "notification → healing reply: p50 {:?}, p99 {:?}, max {:?}",
        pct(&reply, 50),
        pct(&reply, 99),
        reply.last().copied().unwrap_or_default()
    );
    println!("healing replies posted: {replies} (expected {failures})");

    // SIGTERM and time the clean shutdown.
    let stop = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = child.wait().await?;
    println!(
        "SIGTERM → exit with {failures} sessions running: {:?} ({status})",
        stop.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) * p) / 100]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("selfheal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
