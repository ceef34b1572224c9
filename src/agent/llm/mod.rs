//! The `llm` runner: a native tool-calling loop against any OpenAI-compatible
//! chat-completions endpoint (OpenAI, Ollama, vLLM, LiteLLM, llama.cpp, …).
//!
//! The model gets the agent's role, goal and backstory plus selfheal's rules
//! as the system prompt and the healing prompt as the first user message,
//! then calls tools (Paradime's names: `read_file`, `ripgrep_search`,
//! `run_sql_query`, `get_bolt_run_logs`, …) that this module implements on the
//! session's project directory. It ends when the model answers without a tool
//! call, starting `FIXED:` or `NO_FIX:`, or when a budget (turns, tokens, wall
//! clock) runs out — then it reports what the model had found so far.
//!
//! It reports like a built-in agent: `Output::Event(AgentEvent)`s, then one
//! `Output::Exited { code: Some(0) }`. It never panics the session, never
//! commits, pushes or opens pull requests (the bot does), and never sends the
//! API key anywhere but the endpoint's `Authorization` header.
//!
//! - [`client`]: one model turn over HTTP, with retries.
//! - [`tools`]: the tool definitions and their implementations.
//! - [`sandbox`]: file tools confined to the project directory.
//! - [`sql`], [`terminal`], [`prompt`]: pure checks and texts.

pub mod client;
pub mod prompt;
pub mod sandbox;
pub mod sql;
pub mod terminal;
pub mod tools;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info};

use super::command::Output;
use super::protocol::{AgentEvent, Outcome};
use crate::config::ToolPolicy;
use crate::dbt::Dbt;
use crate::runlog::RunLog;
use client::{ChatError, Client, Reply, Retry};
use tools::{ellipsis, Toolbox};

pub use prompt::agent_system;

/// How to reach the model and how much it may spend: the `selfheal:` section
/// of an agent file with `runner: llm`.
#[derive(Clone, PartialEq)]
pub struct LlmSettings {
    /// `…/v1` of an OpenAI-compatible server, e.g. `http://localhost:11434/v1`.
    pub base_url: String,
    pub model: String,
    /// The name of the environment variable holding the API key (never the
    /// key itself); None for local servers that need none.
    pub api_key_env: Option<String>,
    /// Model replies per session.
    pub max_turns: u32,
    /// Tokens per session: the sum of `usage.total_tokens` (estimated from
    /// the text when a server does not report usage).
    pub max_tokens: u64,
    /// Wall clock per session.
    pub timeout: Duration,
    /// Sampling temperature; None leaves the server's default.
    pub temperature: Option<f32>,
}

// `temperature` is validated to be a finite number when parsed, so equality
// is an equivalence relation here (`Runner` derives `Eq`).
impl Eq for LlmSettings {}

impl std::fmt::Debug for LlmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A base URL may carry credentials (`https://user:pass@host/v1`).
        f.debug_struct("LlmSettings")
            .field("base_url", &without_credentials(&self.base_url))
            .field("model", &self.model)
            .field("api_key_env", &self.api_key_env)
            .field("max_turns", &self.max_turns)
            .field("max_tokens", &self.max_tokens)
            .field("timeout", &self.timeout)
            .field("temperature", &self.temperature)
            .finish()
    }
}

impl LlmSettings {
    pub const DEFAULT_MAX_TURNS: u32 = 30;
    pub const DEFAULT_MAX_TOKENS: u64 = 200_000;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20 * 60);

    /// Settings for `model` at `base_url` with the default budgets.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> LlmSettings {
        LlmSettings {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            max_turns: Self::DEFAULT_MAX_TURNS,
            max_tokens: Self::DEFAULT_MAX_TOKENS,
            timeout: Self::DEFAULT_TIMEOUT,
            temperature: None,
        }
    }

    /// The API key from the environment variable `api_key_env` names.
    pub fn api_key_from_env(&self) -> Option<String> {
        let name = self.api_key_env.as_deref()?;
        std::env::var(name).ok().filter(|k| !k.trim().is_empty())
    }

    /// One line for humans: what runs the agent.
    pub fn describe(&self) -> String {
        format!(
            "llm `{}` at {}, up to {} turns, {} tokens, {}s",
            self.model,
            without_credentials(&self.base_url),
            self.max_turns,
            self.max_tokens,
            self.timeout.as_secs()
        )
    }
}

fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// An open `selfheal/` pull request, as the bot listed it (the agent never
/// holds the forge token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrInfo {
    pub url: String,
    pub title: String,
    /// The error signature from the PR body's `selfheal-signature` marker.
    pub signature: Option<String>,
}

/// One session's work.
#[derive(Debug)]
pub struct LlmTask {
    /// The agent's own part of the system prompt: role, goal and backstory
    /// (see [`agent_system`]). selfheal's rules are appended to it.
    pub system: String,
    /// The healing prompt, with the prior attempts.
    pub prompt: String,
    /// The dbt project inside the session's fresh clone.
    pub project_dir: PathBuf,
    /// The run log, already redacted.
    pub run_log: Option<RunLog>,
    pub open_prs: Vec<PrInfo>,
    /// Which tools the agent may use.
    pub tools: ToolPolicy,
    /// How to run dbt for queries and builds.
    pub dbt: Dbt,
    /// Scrubs every tool result before the model sees it (files and query
    /// results can hold credentials).
    pub redactor: crate::redact::Redactor,
    /// People's replies in the healing thread, as the JSON lines a command
    /// agent would get on stdin (`{"type":"reply","user":…,"text":…}`).
    pub replies: Option<mpsc::Receiver<String>>,
}

/// Runs the loop; reports through `tx` (`Output::Event(AgentEvent::…)`, then
/// `Output::Exited { code: Some(0) }`) and never panics. Dropping the future
/// (the driver stopping the agent) stops the loop and any dbt it runs.
///
/// The session's wall clock is `settings.timeout`: give the driver's own
/// limit some slack beyond it, so that the runner reports what it found
/// before it is stopped.
pub async fn run(
    settings: &LlmSettings,
    api_key: Option<String>,
    task: LlmTask,
    tx: mpsc::Sender<Output>,
) {
    run_with(settings, api_key, task, tx, Retry::default()).await
}

/// [`run`] with its own retry policy (tests use short backoffs).
pub(crate) async fn run_with(
    settings: &LlmSettings,
    api_key: Option<String>,
    task: LlmTask,
    tx: mpsc::Sender<Output>,
    retry: Retry,
) {
    let settings = settings.clone();
    let out = tx.clone();
    // A task of its own, so that a bug that panics is reported as a failed
    // agent instead of a silent end; aborted if this future is dropped.
    let handle = tokio::spawn(async move {
        Session::start(settings, api_key, task, out, retry).await;
    });
    let _abort = AbortOnDrop(handle.abort_handle());
    if let Err(e) = handle.await {
        if e.is_panic() {
            error!(error = %e, "the llm runner panicked");
            let _ = tx
                .send(Output::Event(AgentEvent::Result {
                    outcome: Outcome::Failed,
                    summary: "the llm runner crashed (a bug in selfheal; see its log)".into(),
                }))
                .await;
        }
    }
    let _ = tx.send(Output::Exited { code: Some(0) }).await;
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Which budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    Turns,
    Tokens,
    WallClock,
}

/// One running conversation.
struct Session {
    settings: LlmSettings,
    client: Client,
    tools: Toolbox,
    tx: mpsc::Sender<Output>,
    messages: Vec<Value>,
    tool_schemas: Vec<Value>,
    turns: u32,
    tokens: u64,
    deadline: Instant,
    /// What the model said along the way, for a partial report.
    findings: Vec<String>,
    /// Set when the receiver is gone: the session was stopped.
    closed: bool,
    redactor: crate::redact::Redactor,
    replies: Option<mpsc::Receiver<String>>,
}

/// Lines of one assistant message shown as progress.
const PROGRESS_LINES: usize = 6;
/// Sizes of a tool call's record.
const EVENT_INPUT: usize = 300;
const EVENT_OUTPUT: usize = 500;
/// The final summary is posted to Slack: keep it readable.
const MAX_SUMMARY: usize = 3000;

impl Session {
    async fn start(
        settings: LlmSettings,
        api_key: Option<String>,
        task: LlmTask,
        tx: mpsc::Sender<Output>,
        retry: Retry,
    ) {
        let deadline = Instant::now() + settings.timeout;
        let fail = |why: String| {
            let tx = tx.clone();
            async move {
                let _ = tx
                    .send(Output::Event(AgentEvent::Result {
                        outcome: Outcome::Failed,
                        summary: why,
                    }))
                    .await;
            }
        };
        let sandbox = match sandbox::Sandbox::new(&task.project_dir) {
            Ok(s) => s,
            Err(e) => {
                return fail(format!(
                    "the project directory {} cannot be used: {e}",
                    task.project_dir.display()
                ))
                .await
            }
        };
        let client = match Client::new(&settings.base_url, api_key, retry) {
            Ok(c) => c,
            Err(e) => return fail(format!("the model endpoint cannot be used: {e:#}")).await,
        };
        let redactor = task.redactor.clone();
        let replies = task.replies;
        let raw_log = task.run_log.as_ref().map(|l| l.raw.clone());
        let tools = Toolbox::new(sandbox, raw_log, task.open_prs, task.tools, task.dbt);
        let offered = tools.offered();
        let system = prompt::system_prompt(
            &task.system,
            &prompt::Rules {
                tools: &offered,
                max_turns: settings.max_turns,
                max_tokens: settings.max_tokens,
                timeout_secs: settings.timeout.as_secs(),
            },
        );
        let can_page = offered
            .iter()
            .any(|t| t == "get_run_logs" || t == "get_bolt_run_logs");
        let first = prompt::first_message(&task.prompt, task.run_log.as_ref(), can_page);
        let mut session = Session {
            tool_schemas: tools.schemas(),
            tools,
            client,
            tx,
            messages: vec![
                json!({"role": "system", "content": system}),
                json!({"role": "user", "content": first}),
            ],
            turns: 0,
            tokens: 0,
            deadline,
            findings: Vec::new(),
            closed: false,
            settings,
            redactor,
            replies,
        };
        session.converse().await;
    }

    async fn converse(&mut self) {
        let s = &self.settings;
        let intro = format!(
            "🤖 {} is on it (up to {} turns, {} tokens, {} min)",
            s.model,
            s.max_turns,
            s.max_tokens,
            s.timeout.as_secs().div_ceil(60)
        );
        self.emit(AgentEvent::Progress(intro)).await;
        let mut nudged = false;
        while !self.closed {
            if let Some(budget) = self.budget_out() {
                return self.out_of_budget(budget).await;
            }
            self.take_replies();
            let body = self.request();
            let mut notes = Vec::new();
            let result = self.client.chat(&body, self.deadline, &mut notes).await;
            for note in notes {
                self.emit(AgentEvent::Progress(note)).await;
            }
            let reply = match result {
                Ok(r) => r,
                Err(ChatError::Deadline) => return self.out_of_budget(Budget::WallClock).await,
                Err(e) => return self.endpoint_failed(e).await,
            };
            self.turns += 1;
            self.tokens += reply
                .total_tokens
                .unwrap_or_else(|| estimate_tokens(&body, &reply));
            self.messages.push(assistant_message(&reply));
            let text = reply.content.clone().unwrap_or_default();

            if reply.calls.is_empty() {
                match prompt::verdict(&text) {
                    Some((fixed, rest)) => return self.answered(fixed, rest).await,
                    None if !nudged && self.turns < self.settings.max_turns => {
                        // One reminder of the convention, then the answer stands as is.
                        nudged = true;
                        self.note_findings(&text).await;
                        self.messages.push(json!({"role": "user", "content": format!(
                            "Your reply must start with `{}` or `{}` (see the system prompt). \
                             Continue with tools if you are not done; otherwise give your final answer now.",
                            prompt::FIXED, prompt::NO_FIX
                        )}));
                        continue;
                    }
                    None => return self.unmarked(text).await,
                }
            }

            self.note_findings(&text).await;
            for call in &reply.calls {
                let shown = format!(
                    "🔧 {} {}",
                    call.name,
                    tools::short_args(&call.name, &call.arguments)
                );
                self.emit(AgentEvent::Progress(shown.trim_end().to_string()))
                    .await;
                let run = self.tools.call(&call.name, &call.arguments);
                let mut result = match tokio::time::timeout_at(self.deadline, run).await {
                    Ok(r) => r,
                    Err(_) => return self.out_of_budget(Budget::WallClock).await,
                };
                // Nothing secret reaches the model.
                result.text = self.redactor.redact(&result.text);
                self.emit(AgentEvent::Tool {
                    name: call.name.clone(),
                    input: ellipsis(&call.arguments, EVENT_INPUT),
                    output: ellipsis(&result.text, EVENT_OUTPUT),
                })
                .await;
                self.messages.push(json!({
                    "role": "tool",
                    "tool_call_id": call.id,
                    "content": result.text,
                }));
            }
        }
    }

    /// Appends people's replies from the thread as user messages, marked as
    /// coming from that Slack user and quoted as data.
    fn take_replies(&mut self) {
        let Some(rx) = self.replies.as_mut() else {
            return;
        };
        while let Ok(line) = rx.try_recv() {
            let Ok(reply) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let user = reply["user"].as_str().unwrap_or("someone");
            let text = self.redactor.redact(reply["text"].as_str().unwrap_or(""));
            self.messages.push(json!({
                "role": "user",
                "content": prompt::thread_reply(user, &text),
            }));
        }
    }

    fn request(&self) -> Value {
        let mut body = json!({
            "model": self.settings.model,
            "messages": self.messages,
        });
        if !self.tool_schemas.is_empty() {
            body["tools"] = Value::Array(self.tool_schemas.clone());
            body["tool_choice"] = json!("auto");
        }
        if let Some(t) = self.settings.temperature {
            // f32 → f64 would send 0.20000000298023224.
            body["temperature"] = json!((f64::from(t) * 1000.0).round() / 1000.0);
        }
        body
    }

    fn budget_out(&self) -> Option<Budget> {
        if self.turns >= self.settings.max_turns {
            Some(Budget::Turns)
        } else if self.tokens >= self.settings.max_tokens {
            Some(Budget::Tokens)
        } else if Instant::now() >= self.deadline {
            Some(Budget::WallClock)
        } else {
            None
        }
    }

    /// Shows the model's text as progress and keeps it for a partial report.
    async fn note_findings(&mut self, text: &str) {
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(PROGRESS_LINES)
            .map(|l| ellipsis(l, 300))
            .collect();
        if lines.is_empty() {
            return;
        }
        self.findings.push(text.trim().to_string());
        for line in lines {
            self.emit(AgentEvent::Progress(line)).await;
        }
    }

    async fn answered(&mut self, fixed: bool, text: String) {
        let edited = self.edited_list();
        let (outcome, body) = match (fixed, edited.is_empty()) {
            (true, false) => (Outcome::Fixed, text),
            (true, true) => (
                Outcome::NoFix,
                format!("{text}\n(The model said FIXED but changed no file.)"),
            ),
            (false, _) => (Outcome::NoFix, text),
        };
        info!(
            turns = self.turns,
            tokens = self.tokens,
            ?outcome,
            "llm agent answered"
        );
        self.result(outcome, body).await;
    }

    async fn unmarked(&mut self, text: String) {
        let body = if text.trim().is_empty() {
            "The model ended without an answer.".to_string()
        } else {
            format!("The model did not say FIXED or NO_FIX; its last answer: {text}")
        };
        self.result(Outcome::NoFix, body).await;
    }

    async fn out_of_budget(&mut self, budget: Budget) {
        let s = &self.settings;
        let what = match budget {
            Budget::Turns => format!(
                "turn budget ran out ({} of {} turns)",
                self.turns, s.max_turns
            ),
            Budget::Tokens => format!(
                "token budget ran out ({} of {} tokens)",
                self.tokens, s.max_tokens
            ),
            Budget::WallClock => format!("wall-clock budget ran out ({})", human(s.timeout)),
        };
        info!(
            turns = self.turns,
            tokens = self.tokens,
            ?budget,
            "llm agent ran out of budget"
        );
        let body = format!(
            "Stopped before the agent finished: the {what}. {}",
            self.partial_findings()
        );
        self.result(Outcome::NoFix, body).await;
    }

    async fn endpoint_failed(&mut self, e: ChatError) {
        error!(error = %e, "the model endpoint failed");
        let body = format!("{e}. {}", self.partial_findings());
        self.result(Outcome::Failed, body).await;
    }

    fn partial_findings(&self) -> String {
        let last = self
            .findings
            .last()
            .map(|f| format!("The model's last findings: {}", ellipsis(f, 1500)))
            .unwrap_or_else(|| "The model had not reported findings yet.".into());
        let edited = self.edited_list();
        if edited.is_empty() {
            last
        } else {
            format!("{last}\nFiles it changed: {}.", edited.join(", "))
        }
    }

    fn edited_list(&self) -> Vec<String> {
        let set: &BTreeSet<String> = &self.tools.edited;
        set.iter().cloned().collect()
    }

    async fn result(&mut self, outcome: Outcome, body: String) {
        let summary = format!(
            "{}\n({}: used {} turns, {} tokens)",
            ellipsis(body.trim(), MAX_SUMMARY),
            self.settings.model,
            self.turns,
            self.tokens
        );
        self.emit(AgentEvent::Result { outcome, summary }).await;
    }

    async fn emit(&mut self, event: AgentEvent) {
        if self.closed {
            return;
        }
        if self.tx.send(Output::Event(event)).await.is_err() {
            self.closed = true;
        }
    }
}

/// `20 min`, `90s`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// The assistant message as it goes back into the conversation.
fn assistant_message(reply: &Reply) -> Value {
    let mut msg = json!({
        "role": "assistant",
        "content": reply.content.clone().unwrap_or_default(),
    });
    if !reply.calls.is_empty() {
        msg["tool_calls"] = reply
            .calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                })
            })
            .collect();
    }
    msg
}

/// About four characters per token, for servers that report no usage.
fn estimate_tokens(body: &Value, reply: &Reply) -> u64 {
    let sent = body.to_string().len();
    let got = reply.content.as_deref().map_or(0, str::len)
        + reply
            .calls
            .iter()
            .map(|c| c.name.len() + c.arguments.len())
            .sum::<usize>();
    ((sent + got) / 4).max(1) as u64
}
