//! Three replicas of the bot, each its own `selfheal run` process with its own
//! Socket Mode connections, sharing one PostgreSQL store, against one fake
//! Slack that spreads envelopes over all their connections: whichever replica
//! a payload reaches, each failure is healed once, a dead replica's sessions
//! are taken over, and a Stop reaches the replica that runs the session.

use std::collections::BTreeSet;
use std::time::Duration;

use selfheal::store::{SessionRow, Status, Store};

use crate::helpers::*;

/// Sleeps until the test says the replica it ran on is gone (the marker
/// file); after that it reports a fix at once.
const SLEEPY_UNTIL_MARKED: &str = r#"
if [ -e "$PROMPT_LOG.marked" ]; then
  echo "second attempt at $SELFHEAL_RUN_ID"
  echo "opened https://github.com/acme/analytics/pull/$SELFHEAL_RUN_ID"
  echo '{"type":"result","status":"fixed","summary":"fixed on the re-run"}'
  exit 0
fi
echo "first attempt at $SELFHEAL_RUN_ID"
touch "$PROMPT_LOG.started.$SELFHEAL_RUN_ID"
sleep 600 & wait
"#;

const HEALING_REPLY: &str = "🦖 Self-healing enabled";

/// Three bot processes and PostgreSQL are a load of their own on two cores:
/// the stories here take turns, so none runs beside another.
static ONE_FLEET_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fresh schema in the test PostgreSQL server that `./scripts/test`
/// starts (`SELFHEAL_TEST_PG_URL`), as a URL for `SELFHEAL_DB`.
fn postgres_url() -> String {
    let url = std::env::var("SELFHEAL_TEST_PG_URL").expect(
        "the replica stories need PostgreSQL: run ./scripts/test, which starts one, \
         or set SELFHEAL_TEST_PG_URL",
    );
    let schema = format!(
        "it_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let created = std::process::Command::new("psql")
        .args([url.as_str(), "-qc", &format!("CREATE SCHEMA {schema}")])
        .status()
        .expect("run psql");
    assert!(created.success(), "create schema {schema}");
    // In plain text: three debug replicas share two cores with the other
    // stories, and over TLS (a handshake per pooled connection, at the
    // storm's start) full-suite runs met one or two 429s in ~3,000 writes.
    // TLS itself is tested in `store::pg`, its cost measured by the bench.
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}&sslmode=disable")
}

/// One `selfheal run` process and the Socket Mode connections it opened.
struct Replica {
    child: tokio::process::Child,
    pid: u32,
    connections: Vec<u64>,
}

/// The world, its store, and the replicas serving it.
struct Fleet {
    app: TestApp,
    replicas: Vec<Replica>,
    url: String,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Fleet {
    /// `n` replicas with `agent`, a 2 s lease, and `extra_env`.
    async fn start(agent: &str, n: usize, extra_env: &[(&str, &str)]) -> Fleet {
        let turn = ONE_FLEET_AT_A_TIME.lock().await;
        let url = postgres_url();
        let mut env = vec![
            ("SELFHEAL_DB", url.as_str()),
            ("SELFHEAL_LEASE_SECS", "2"),
            ("SELFHEAL_MAX_SESSIONS", "20"),
            ("SELFHEAL_MAX_SESSIONS_PER_SCHEDULE", "20"),
        ];
        env.extend_from_slice(extra_env);
        let mut app = spawn_app_with(agent, &env).await;
        // The in-process bot only set the world up; the replicas take over.
        app.stop().await;
        app.slack
            .wait_until(WAIT, |s| (s.connections() == 0).then_some(()))
            .await
            .expect("the set-up bot disconnects");
        let mut fleet = Fleet {
            app,
            replicas: vec![],
            url,
            _turn: turn,
        };
        for _ in 0..n {
            let replica = fleet.start_replica().await;
            fleet.replicas.push(replica);
        }
        fleet
    }

    /// Starts one more replica and waits for both of its connections, so
    /// that the connections opened meanwhile are its own.
    async fn start_replica(&self) -> Replica {
        let before: BTreeSet<u64> = self.app.slack.connection_ids().into_iter().collect();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_selfheal"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.app.env())
            .env("SELFHEAL_LOG", "warn")
            .current_dir(self.app.path())
            .kill_on_drop(true)
            .spawn()
            .expect("start selfheal run");
        let pid = child.id().expect("a running replica");
        let connections = self
            .app
            .slack
            .wait_until(Duration::from_secs(30), |s| {
                let new: Vec<u64> = s
                    .connection_ids()
                    .into_iter()
                    .filter(|c| !before.contains(c))
                    .collect();
                (new.len() >= 2).then_some(new)
            })
            .await
            .expect("the replica opens its two Socket Mode connections");
        Replica {
            child,
            pid,
            connections,
        }
    }

    fn store(&self) -> Store {
        self.app.store()
    }

    /// Every session of `run`, oldest first.
    fn sessions_of(&self, run: &str) -> Vec<SessionRow> {
        let mut rows: Vec<SessionRow> = self
            .store()
            .sessions(10_000)
            .expect("sessions")
            .into_iter()
            .filter(|s| s.run_id == run)
            .collect();
        rows.reverse();
        rows
    }

    /// The pid of the replica that owns `session`.
    fn owner_pid(&self, session: i64) -> u32 {
        let owner = self
            .store()
            .session_owner(session)
            .expect("owner")
            .expect("an owned session");
        owner
            .split('/')
            .nth(1)
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("a replica name with a pid: {owner}"))
    }

    /// Lands every envelope from now on on replica `i`'s connections.
    fn route_to(&self, i: usize) {
        self.app
            .slack
            .route_envelopes_to(Some(self.replicas[i].connections.clone()));
    }

    /// The replica whose connection received envelope `envelope_id`.
    fn receiver_of(&self, envelope_id: &str) -> Option<usize> {
        let sent = self
            .app
            .slack
            .envelopes_sent()
            .into_iter()
            .find(|e| e.envelope_id == envelope_id)?;
        self.replicas
            .iter()
            .position(|r| r.connections.contains(&sent.connection))
    }

    /// A clean stop (SIGTERM), waiting for the process to exit.
    async fn stop(&mut self, i: usize) {
        let replica = &mut self.replicas[i];
        // SAFETY: kill(2) with a pid this test spawned and has not reaped.
        unsafe { libc::kill(replica.pid as i32, libc::SIGTERM) };
        let status = tokio::time::timeout(Duration::from_secs(30), replica.child.wait())
            .await
            .expect("the replica stops within 30 s")
            .expect("wait for the replica");
        assert!(status.success(), "replica {i} stopped cleanly: {status}");
    }

    /// Polls until `done` holds, failing with `what` after `within`.
    async fn until(&self, within: Duration, what: &str, mut done: impl FnMut(&Fleet) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}; sessions: {:#?}",
                self.store().sessions(100)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many healing replies the thread under `ts` holds.
    fn healing_replies(&self, ts: &str) -> usize {
        self.app
            .thread(HEALING, ts)
            .iter()
            .filter(|m| m.text.starts_with(HEALING_REPLY))
            .count()
    }

    /// Posts a failure of each run and waits until each one's first agent
    /// sleeps; the threads, in order.
    async fn post_sleepers(&self, runs: &[String]) -> Vec<String> {
        let mut threads = vec![];
        for run in runs {
            threads.push(self.app.post_failure(HEALING, "hourly_marts", run).await);
        }
        self.until(WAIT, "every agent sleeping", |f| {
            runs.iter().all(|r| f.started(r))
        })
        .await;
        threads
    }

    /// Whether the first attempt's agent at `run` is past its check of the marker.
    fn started(&self, run: &str) -> bool {
        self.app
            .path()
            .join(format!("prompt.started.{run}"))
            .exists()
    }

    fn mark(&self) {
        std::fs::write(self.app.path().join("prompt.marked"), "").expect("marker");
    }

    /// Stops every replica still running, so no agent outlives the story.
    async fn stop_all(mut self) {
        for i in 0..self.replicas.len() {
            if self.replicas[i].child.try_wait().ok().flatten().is_none() {
                self.stop(i).await;
            }
        }
    }
}

/// Processes whose environment names `session` of the store at `url`.
fn agents_of(url: &str, session: i64) -> usize {
    let wanted = format!("SELFHEAL_SESSION_TAG={url}#{session}\0");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read(e.path().join("environ")).ok())
        .filter(|env| {
            let mut env = env.clone();
            env.push(0);
            env.windows(wanted.len()).any(|w| w == wanted.as_bytes())
        })
        .count()
}

#[tokio::test]
async fn a_failure_redelivered_to_the_other_replicas_is_healed_once() {
    // Arrange: three replicas; the bot's own posts are not echoed, so the
    // last event is the failure.
    let fleet = Fleet::start(HAPPY_AGENT, 3, &[]).await;
    fleet.app.slack.set_echo_own_messages(false);

    // Act: the failure reaches replica 0; Slack, missing its ack in time,
    // redelivers it to replica 1 and then to replica 2.
    fleet.route_to(0);
    let ts = fleet.app.post_failure(HEALING, "hourly_marts", "501").await;
    fleet.route_to(1);
    let second = fleet
        .app
        .slack
        .redeliver_last(1)
        .await
        .expect("redelivered");
    fleet.route_to(2);
    let third = fleet
        .app
        .slack
        .redeliver_last(2)
        .await
        .expect("redelivered");
    fleet.app.slack.route_envelopes_to(None);

    // Assert: the copies did land on the other replicas, and the failure
    // has one session and one healing reply.
    assert_eq!(fleet.receiver_of(&second), Some(1));
    assert_eq!(fleet.receiver_of(&third), Some(2));
    let row = fleet.app.wait_for_session_end("501").await;
    assert_eq!(row.status, Status::Fixed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fleet.sessions_of("501").len(), 1);
    assert_eq!(
        fleet.healing_replies(&ts),
        1,
        "{:#?}",
        fleet.app.thread(HEALING, &ts)
    );
    fleet.stop_all().await;
}

#[tokio::test]
async fn kill_9_of_a_replica_hands_its_sessions_to_the_others_once() {
    // Arrange: nine failures spread over three replicas, every agent busy.
    let mut fleet = Fleet::start(SLEEPY_UNTIL_MARKED, 3, &[]).await;
    let runs: Vec<String> = (601..=609).map(|r| r.to_string()).collect();
    let threads = fleet.post_sleepers(&runs).await;
    let first: Vec<SessionRow> = runs
        .iter()
        .map(|r| fleet.sessions_of(r)[0].clone())
        .collect();
    let victim_pid = fleet.owner_pid(first[0].id);
    let victim = fleet
        .replicas
        .iter()
        .position(|r| r.pid == victim_pid)
        .expect("the owner is one of the replicas");
    let (lost, kept): (Vec<&SessionRow>, Vec<&SessionRow>) = first
        .iter()
        .partition(|s| fleet.owner_pid(s.id) == victim_pid);

    // Act: kill -9 the replica running run 601's session; from now on a
    // re-run fixes at once.
    fleet.replicas[victim].child.start_kill().expect("kill -9");
    fleet.replicas[victim].child.wait().await.expect("reaped");
    fleet.mark();

    // Assert: once the lease runs out, each of its sessions is recorded as
    // interrupted and re-run exactly once by a live replica, which fixes it.
    fleet
        .until(
            Duration::from_secs(30),
            "the lost sessions re-run and fixed",
            |f| {
                lost.iter().all(|s| {
                    f.sessions_of(&s.run_id)
                        .iter()
                        .any(|r| r.status == Status::Fixed)
                })
            },
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for s in &lost {
        let rows = fleet.sessions_of(&s.run_id);
        assert_eq!(
            rows.len(),
            2,
            "run {}: one session and one re-run: {rows:#?}",
            s.run_id
        );
        assert_eq!(rows[0].status, Status::Interrupted);
        assert_eq!(rows[1].rerun_of, Some(rows[0].id));
        assert_ne!(fleet.owner_pid(rows[1].id), victim_pid);
        assert_eq!(
            agents_of(&fleet.url, s.id),
            0,
            "the dead replica's agent was killed"
        );
    }
    // The live replicas' sessions were not touched: still running, still theirs.
    for s in &kept {
        let rows = fleet.sessions_of(&s.run_id);
        assert_eq!(rows.len(), 1, "run {}: {rows:#?}", s.run_id);
        assert_eq!(rows[0].status, Status::Running, "{rows:#?}");
        assert_eq!(fleet.owner_pid(s.id), fleet.owner_pid(rows[0].id));
    }
    for ts in &threads {
        assert_eq!(fleet.healing_replies(ts), 1);
    }
    assert!(
        !lost.is_empty() && !kept.is_empty(),
        "the sessions were spread"
    );
    fleet.stop_all().await;
}

#[tokio::test]
async fn stop_clicked_on_a_replica_that_does_not_run_the_session_stops_it() {
    // Arrange: replica 0 gets the failure and runs its session.
    let fleet = Fleet::start("echo reading the run log; sleep 600 & wait", 3, &[]).await;
    fleet.route_to(0);
    let ts = fleet.app.post_failure(HEALING, "hourly_marts", "701").await;
    fleet.app.store_wait_running("701").await;
    let session = fleet.sessions_of("701")[0].clone();
    assert_eq!(fleet.owner_pid(session.id), fleet.replicas[0].pid);
    let progress = fleet
        .app
        .wait_for_reply(HEALING, &ts, |m| {
            m.blocks
                .as_ref()
                .is_some_and(|b| b.to_string().contains("selfheal_stop"))
        })
        .await;

    // Act: Alice's click reaches replica 1.
    fleet.route_to(1);
    let click = fleet
        .app
        .slack
        .click_button(
            "U0ALICE",
            HEALING,
            &progress.ts,
            "selfheal_stop",
            &session.id.to_string(),
        )
        .await;

    // Assert: replica 0 stopped its agent, and the thread says who stopped it.
    assert_eq!(fleet.receiver_of(&click), Some(1));
    let row = fleet.app.wait_for_session_end("701").await;
    assert_eq!(row.status, Status::Stopped);
    fleet
        .app
        .wait_for_reply(HEALING, &ts, |m| m.text.contains("stopped by <@U0ALICE>"))
        .await;
    assert!(
        fleet
            .app
            .slack
            .ephemerals()
            .iter()
            .all(|e| !e.text.contains("already ended")),
        "nobody was told the running session had ended"
    );
    fleet.stop_all().await;
}

#[tokio::test]
async fn a_rolling_restart_of_all_three_replicas_loses_and_doubles_nothing() {
    // Arrange: six sessions running over three replicas.
    let mut fleet = Fleet::start(SLEEPY_UNTIL_MARKED, 3, &[]).await;
    let runs: Vec<String> = (801..=806).map(|r| r.to_string()).collect();
    let threads = fleet.post_sleepers(&runs).await;
    fleet.mark();

    // Act: each replica in turn is stopped (SIGTERM) and replaced, as a
    // Deployment's rolling update does, the next once the sessions the last
    // one stopped are running again (a re-run is never re-run: a stop in the
    // middle of one would leave its failure to people, by design).
    for i in 0..3 {
        fleet.stop(i).await;
        let replacement = fleet.start_replica().await;
        fleet.replicas.push(replacement);
        fleet
            .until(
                Duration::from_secs(120),
                "the stopped sessions re-run",
                |f| {
                    runs.iter().all(|r| {
                        f.sessions_of(r).last().is_some_and(|s| {
                            s.status == Status::Fixed
                                || (s.status == Status::Running && s.rerun_of.is_none())
                        })
                    })
                },
            )
            .await;
    }

    // Assert: every failure ends fixed, by exactly one re-run of its
    // interrupted session; one healing reply each; nothing left running.
    fleet
        .until(Duration::from_secs(120), "every failure fixed", |f| {
            runs.iter()
                .all(|r| f.sessions_of(r).iter().any(|s| s.status == Status::Fixed))
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for run in &runs {
        let rows = fleet.sessions_of(run);
        assert_eq!(rows.len(), 2, "run {run}: {rows:#?}");
        assert_eq!(rows[0].status, Status::Interrupted);
        assert_eq!(rows[1].rerun_of, Some(rows[0].id));
        assert_eq!(rows[1].status, Status::Fixed);
    }
    for ts in &threads {
        assert_eq!(fleet.healing_replies(ts), 1);
    }
    assert!(fleet.store().unfinished_sessions().unwrap().is_empty());
    fleet.stop_all().await;
}

// The fake Slack serves three bots here: it gets a runtime of its own threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_failures_over_50_channels_gets_one_reply_and_one_session_each_without_a_429(
) {
    // Arrange: 50 schedules, each notifying and healing in a channel of its
    // own, and Slack's per-channel limit — a burst of 3, then one write a
    // second — counted for the whole app.
    const CHANNELS: usize = 50;
    const FAILURES: usize = 1000;
    let mut fleet = Fleet::start(
        "echo reading; sleep 600 & wait",
        0,
        &[
            ("SELFHEAL_CHANNEL_INTERVAL_MS", "1000"),
            ("SELFHEAL_CHANNEL_BURST", "3"),
            // Three debug builds, PostgreSQL and the fake share two cores
            // with the other stories: a write can take more than a second to
            // reach it (500 and 750 ms each met 1–13 429s in ~3,000 writes in
            // full-suite runs; the default, 250 ms, is for release builds,
            // see the bench). Below the burst's 2 s it never slows the steady
            // pace.
            ("SELFHEAL_CHANNEL_LEEWAY_MS", "1500"),
            ("SELFHEAL_MAX_SESSIONS", "4"),
            ("SELFHEAL_API_TIMEOUT_SECS", "10"),
        ],
    )
    .await;
    let mut schedules = String::from("schedules:\n");
    for c in 0..CHANNELS {
        fleet
            .app
            .slack
            .add_channel(&format!("C0BURST{c:04}"), &format!("burst-{c}"));
        schedules.push_str(&format!(
            "  - name: sched_{c}\n    schedule: \"0 * * * *\"\n    environment: production\n    commands: [\"dbt build\"]\n    notifications:\n      slack_channels:\n        - channel: \"#burst-{c}\"\n          events: [failed]\n    self_healing:\n      enabled: true\n      agent_name: scripted\n"
        ));
    }
    std::fs::write(fleet.app.path().join("paradime_schedules.yml"), schedules).unwrap();
    fleet
        .app
        .slack
        .set_channel_rate_limit_burst(Duration::from_secs(1), 3);
    for _ in 0..3 {
        let replica = fleet.start_replica().await;
        fleet.replicas.push(replica);
    }

    // Act: the scheduler posts 1,000 failures in about three seconds, spread
    // over the 50 channels and so over every replica's connections. (Posted
    // at once, the fake — in this process, on the same two cores as three
    // debug builds of the bot and PostgreSQL — stamps the replicas' first
    // writes up to a second late, behind its own backlog, and counts them as
    // bunched: a storm of its own making, not the bot's.)
    let mut failures = Vec::with_capacity(FAILURES);
    let mut ticker = tokio::time::interval(Duration::from_millis(3));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..FAILURES {
        ticker.tick().await;
        let channel = format!("C0BURST{:04}", i % CHANNELS);
        let text = format!(
            ":x: Bolt schedule *sched_{}* failed\nRun ID: {}",
            i % CHANNELS,
            20_000 + i
        );
        let ts = fleet.app.slack.post_as_bot(&channel, notifier(&text)).await;
        failures.push((channel, ts));
    }

    // Assert: each failure has exactly one healing reply and one session,
    // and Slack never had to say 429.
    let replied = |f: &Fleet| {
        failures
            .iter()
            .filter(|(c, ts)| {
                f.app
                    .slack
                    .thread(c, ts)
                    .iter()
                    .any(|m| m.text.starts_with(HEALING_REPLY))
            })
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while replied(&fleet) < FAILURES {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {FAILURES} failures had a healing reply after 120 s",
            replied(&fleet)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (c, ts) in &failures {
        let replies = fleet
            .app
            .slack
            .thread(c, ts)
            .iter()
            .filter(|m| m.text.starts_with(HEALING_REPLY))
            .count();
        assert_eq!(replies, 1, "thread {c}/{ts}");
    }
    let sessions = fleet.store().sessions(5000).unwrap();
    assert_eq!(sessions.len(), FAILURES);
    let runs: BTreeSet<&str> = sessions.iter().map(|s| s.run_id.as_str()).collect();
    assert_eq!(runs.len(), FAILURES, "one session per failure");
    let owners: BTreeSet<u32> = sessions.iter().map(|s| fleet.owner_pid(s.id)).collect();
    assert_eq!(owners.len(), 3, "every replica took part");
    let rate_limited = fleet
        .app
        .slack
        .calls()
        .iter()
        .filter(|c| c.status == 429)
        .count();
    assert_eq!(rate_limited, 0, "Slack answered 429");
    fleet.stop_all().await;
}
