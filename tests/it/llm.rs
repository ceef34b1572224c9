//! LLM agents end to end: a broken commit, the failed run, an `llm` agent
//! against a model server, the bot's verification deciding, the thread, the
//! pull request, the transcript and the cost in SQLite.
//!
//! The first stories run against the local OpenAI-compatible fake; the last
//! one against a real llama.cpp server running a real (tiny) model on the
//! CPU, built and cached by `scripts/setup-llama`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use selfheal::demo::{Breakage, World, HEALING};
use selfheal::store::{SessionRow, Status, Store};
use selfheal_fakes::llm::{FakeLlm, Scripted};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(240);

/// A team whose main branch just got `breakage`, whose scheduled run
/// `run_id` failed on it, and a running selfheal whose schedule heals with an
/// `llm` agent at `base_url` configured by `selfheal_extra` (YAML lines).
struct Story {
    world: World,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    bot: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Story {
    async fn start(run_id: &str, base_url: &str, model: &str, selfheal_extra: &str) -> Story {
        let breakage = Breakage::fixture("ref_typo").unwrap();
        let (world, dir) = crate::helpers::broken_world("demo", &breakage, run_id).await;
        std::fs::write(
            world.prod.join(".dinoai/agents/llm-healer.yml"),
            format!(
                "name: llm-healer\nversion: 1\nrole: On-call analytics engineer for the dbt pipeline\n\
                 goal: Find why the run failed and fix it\n\
                 backstory: Read the run log first, then the model; never guess.\n\
                 tools:\n  mode: allowlist\n  list: [read_file, ripgrep_search, get_bolt_run_logs, apply_patch, write_file, run_terminal_command]\n\
                 selfheal:\n  runner: llm\n  base_url: {base_url}\n  model: {model}\n{selfheal_extra}"
            ),
        )
        .unwrap();
        crate::helpers::heal_hourly_marts_with(&world, "llm-healer");
        let (shutdown, bot) = crate::helpers::start_world_bot(&world, &[]).await;
        Story {
            world,
            _dir: dir,
            shutdown,
            bot,
        }
    }

    fn store(&self) -> Store {
        Store::open(&self.world.root.join("selfheal.db")).unwrap()
    }

    async fn session_end(&self, run_id: &str, within: Duration) -> SessionRow {
        crate::helpers::world_session_end(&self.world, run_id, within).await
    }

    /// The thread's final message (the last bot message saying how it ended).
    async fn final_message(&self, ts: &str) -> String {
        crate::helpers::world_final_message(&self.world, ts, WAIT).await
    }

    async fn history(&self) -> String {
        crate::helpers::slash(&self.world.slack, HEALING, "U0ANYONE", "history").await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.bot).await;
    }
}

const PRICES: &str = "  input_price: 2.5\n  output_price: 10\n";

#[tokio::test]
async fn a_plain_answer_after_a_change_that_builds_becomes_a_pull_request_with_its_cost() {
    // Arrange: a model that fixes the ref, checks it, and says so in its own
    // words — no FIXED: prefix, no finish call.
    let llm = FakeLlm::start().await.unwrap();
    let b = Breakage::fixture("ref_typo").unwrap();
    llm.script(vec![
        Scripted::tool("read_file", json!({"path": "models/marts/orders.sql"})),
        Scripted::tool(
            "apply_patch",
            json!({"path": "models/marts/orders.sql", "find": b.replace, "replace": b.find}),
        ),
        Scripted::tool("run_terminal_command", json!({"command": "dbt parse"})),
        Scripted::answer(
            "Root cause: orders referenced `stg_order`, which does not exist. Fix: changed models/marts/orders.sql \
             via apply_patch to ref `stg_orders`; dbt parse passes.",
        ),
    ]);
    let story = Story::start("810", &llm.base_url(), "gpt-test", PRICES).await;

    // Act
    let (_, ts) = story.world.notify_failure("hourly_marts", "810").await;
    let row = story.session_end("810", WAIT).await;

    // Assert: verified and proposed with the model's words and its cost.
    assert_eq!(row.status, Status::Fixed, "{row:#?}");
    let prs = story.world.github.prs();
    assert_eq!(prs.len(), 1);
    // 4 replies of 1,000 prompt tokens at $2.5/M, 3×30 + 50 completion at $10/M.
    let cost = "$0.0114";
    for (what, text) in [
        ("PR body", prs[0].body.clone()),
        ("final message", story.final_message(&ts).await),
    ] {
        assert!(
            text.contains("Root cause: orders referenced `stg_order`"),
            "{what}: {text}"
        );
        assert!(text.contains(cost), "{what} shows the cost: {text}");
    }
    assert!(story.history().await.contains(cost));
    // The transcript: every request and response, in order.
    let store = story.store();
    let exchanges = store.exchanges(row.id).unwrap();
    assert_eq!(exchanges.len(), 4);
    assert_eq!(store.session_cost(row.id).unwrap(), Some(0.0114));
    let shown =
        selfheal::transcript::show(&story.world.root.join("selfheal.db"), row.id, false).unwrap();
    assert!(
        shown.contains("== model: 4 requests, 4000 tokens in, 140 tokens out, $0.0114 =="),
        "{shown}"
    );
    assert!(shown.contains("[verification]"), "{shown}");
    story.stop().await;
}

#[tokio::test]
async fn a_plain_answer_after_a_change_that_breaks_the_build_proposes_nothing() {
    // A model that "fixes" the ref to another model that does not exist.
    let llm = FakeLlm::start().await.unwrap();
    let b = Breakage::fixture("ref_typo").unwrap();
    llm.script(vec![
        Scripted::tool(
            "apply_patch",
            json!({"path": "models/marts/orders.sql", "find": b.replace, "replace": "ref('stg_orderz')"}),
        ),
        Scripted::answer("I renamed the ref; that should do it."),
    ]);
    let story = Story::start("820", &llm.base_url(), "gpt-test", "").await;

    let (_, ts) = story.world.notify_failure("hourly_marts", "820").await;
    let row = story.session_end("820", WAIT).await;

    assert_eq!(row.status, Status::NoFix, "{row:#?}");
    assert!(
        story.world.github.prs().is_empty(),
        "nothing unverified is proposed"
    );
    let last = story.final_message(&ts).await;
    assert!(
        last.contains("I renamed the ref; that should do it."),
        "{last}"
    );
    assert!(last.contains("did not pass"), "{last}");
    story.stop().await;
}

#[tokio::test]
async fn a_plain_answer_without_a_change_is_the_diagnosis() {
    let llm = FakeLlm::start().await.unwrap();
    llm.script(vec![
        Scripted::tool("read_file", json!({"path": "models/marts/orders.sql"})),
        Scripted::answer("orders refs `stg_order`; it should ref `stg_orders`."),
    ]);
    let story = Story::start("830", &llm.base_url(), "gpt-test", "").await;

    let (_, ts) = story.world.notify_failure("hourly_marts", "830").await;
    let row = story.session_end("830", WAIT).await;

    assert_eq!(row.status, Status::NoFix, "{row:#?}");
    assert!(story.world.github.prs().is_empty());
    let last = story.final_message(&ts).await;
    assert!(
        last.contains("orders refs `stg_order`; it should ref `stg_orders`."),
        "{last}"
    );
    assert!(!last.contains("FIXED"), "{last}");
    story.stop().await;
}

// ---------------------------------------------------------------------------
// A real model server.

/// `llama-server` and the SmolLM2-135M-Instruct GGUF built and cached by
/// `scripts/setup-llama` (or named by SELFHEAL_LLAMA_SERVER / SELFHEAL_LLAMA_MODEL).
fn llama() -> (PathBuf, PathBuf) {
    let dir = std::env::var_os("SELFHEAL_LLAMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/selfheal/llama-11434")
        });
    let server = std::env::var_os("SELFHEAL_LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("bin/llama-server"));
    let model = std::env::var_os("SELFHEAL_LLAMA_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(
        server.is_file() && model.is_file(),
        "llama-server ({}) or the model ({}) is missing: run scripts/setup-llama (scripts/test does)",
        server.display(),
        model.display()
    );
    (server, model)
}

/// A running `llama-server`; killed on drop.
struct LlamaServer {
    child: tokio::process::Child,
    base_url: String,
}

impl LlamaServer {
    async fn start() -> LlamaServer {
        let (server, model) = llama();
        // A free loopback port: bound, read, released for the server.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("llama-server-{port}.log")))
                .unwrap();
        let child = tokio::process::Command::new(server)
            .args(["--model"])
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // Tool calling through the model's own chat template.
            .arg("--jinja")
            .args(["--ctx-size", "8192", "--threads", "2", "--parallel", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("llama-server starts");
        let s = LlamaServer {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
        };
        // Ready when /health answers 200 (the model is loaded).
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ok = tokio::process::Command::new("curl")
                .args([
                    "-sf",
                    "-o",
                    "/dev/null",
                    &format!("http://127.0.0.1:{port}/health"),
                ])
                .status()
                .await
                .map(|st| st.success())
                .unwrap_or(false);
            if ok {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "llama-server did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn a_real_tiny_model_on_llama_cpp_runs_a_session_to_a_clear_end_within_its_budgets() {
    // Arrange: llama.cpp's own server with SmolLM2-135M-Instruct on the CPU,
    // tool calling on (--jinja). A 135M model will not fix dbt code; what this
    // story proves is that the runner speaks a real server's wire format,
    // survives whatever the model answers, and ends within its budgets with
    // an outcome the thread and SQLite both tell.
    let server = LlamaServer::start().await;
    // The server's own window, and short replies: on a busy 2-core machine
    // the model writes 10 to 80 tokens/s, so a reply's length is its time.
    let budget = "  max_turns: 4\n  max_tokens: 60000\n  timeout: 4m\n  context_tokens: 8192\n  \
                  max_reply_tokens: 256\n  temperature: 0\n  input_price: 0.1\n  output_price: 0.1\n";
    let story = Story::start("900", &server.base_url, "smollm2-135m", budget).await;

    // Act
    let started = Instant::now();
    let (_, ts) = story.world.notify_failure("hourly_marts", "900").await;
    let row = story.session_end("900", Duration::from_secs(6 * 60)).await;
    let took = started.elapsed();

    // Assert: a clear outcome, and nothing unverified proposed.
    let summary = row.summary.clone().unwrap_or_default();
    assert!(
        matches!(row.status, Status::NoFix | Status::Fixed),
        "the runner survived the model: {row:#?}"
    );
    for pr in story.world.github.prs() {
        // Only a change that passed verification can have become a PR.
        assert!(story.world.build_branch(&pr.head).await.unwrap(), "{pr:?}");
    }
    let last = story.final_message(&ts).await;
    assert!(last.contains("run `900`"), "{last}");
    assert!(summary.contains("(smollm2-135m: used "), "{summary}");
    // Within its budgets: at most 6 replies, and the wall clock.
    let store = story.store();
    let exchanges = store.exchanges(row.id).unwrap();
    let replies = exchanges
        .iter()
        .filter(|e| e.exchange.status == 200)
        .count();
    assert!((1..=4).contains(&replies), "{replies} replies");
    assert!(took < Duration::from_secs(6 * 60));
    // The real wire format: llama.cpp's own answers, read by the runner.
    let mut speeds = Vec::new();
    for e in exchanges.iter().filter(|e| e.exchange.status == 200) {
        let body: Value =
            serde_json::from_str(&e.exchange.response).expect("stored answers are JSON");
        assert_eq!(body["object"], "chat.completion");
        assert!(
            body["system_fingerprint"]
                .as_str()
                .is_some_and(|f| f.starts_with('b')),
            "{body}"
        );
        selfheal::agent::llm::wire::parse_reply(e.exchange.response.as_bytes())
            .expect("the runner reads it");
        assert!(
            e.exchange.prompt_tokens.is_some(),
            "llama.cpp reports usage"
        );
        if let Some(tps) = body["timings"]["predicted_per_second"].as_f64() {
            speeds.push(tps);
        }
    }
    let first: Value = serde_json::from_str(&exchanges[0].exchange.request).unwrap();
    assert!(first["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["function"]["name"] == "finish")));
    assert!(
        first["max_tokens"].as_u64().is_some_and(|m| m <= 2048),
        "replies are capped for an 8k window"
    );
    // The progress message stays readable whatever the model repeats.
    let progress = story
        .world
        .slack
        .thread(HEALING, &ts)
        .into_iter()
        .find(|m| m.text.contains("Healing run `900`"))
        .expect("a progress message");
    let latest = progress
        .edits
        .last()
        .cloned()
        .unwrap_or(progress.text.clone());
    assert!(latest.lines().count() <= 40, "{latest}");
    // What the model saw and did, for whoever runs this with --nocapture.
    eprintln!(
        "{}",
        selfheal::transcript::show(&story.world.root.join("selfheal.db"), row.id, false).unwrap()
    );
    eprintln!(
        "real model: {:?} in {:.1}s, {replies} replies, {:.0} tokens/s; outcome {:?}: {summary}",
        row.status,
        took.as_secs_f64(),
        speeds.iter().sum::<f64>() / speeds.len().max(1) as f64,
        row.status,
    );
    story.stop().await;
    drop(server);
}
