//! The `llm` runner: a native tool-calling loop against any OpenAI-compatible
//! chat-completions endpoint (OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp,
//! LM Studio, OpenRouter, …).
//!
//! The model gets the agent's role, goal and backstory plus selfheal's rules
//! as the system prompt and the healing prompt as the first user message,
//! then calls tools (Paradime's names: `read_file`, `ripgrep_search`,
//! `run_sql_query`, `get_bolt_run_logs`, …) that this module implements on the
//! session's project directory. It ends when the model calls `finish`, or
//! answers without a tool call, or when a budget (turns, tokens, cost, wall
//! clock, context window) runs out — then it reports what the model had
//! found so far. Whether the model changed files, not what it says, decides
//! the outcome ([`finish::decide`]): a change goes to the bot, which verifies
//! it with dbt before proposing anything.
//!
//! It reports like a built-in agent: `Output::Event(AgentEvent)`s, then one
//! `Output::Exited { code: Some(0) }`. It never panics the session, never
//! commits, pushes or opens pull requests (the bot does), and never sends the
//! API key anywhere but the endpoint's `Authorization` header. Every request
//! and response is stored, redacted, in the session's [`Transcript`].
//!
//! - [`client`]: one model turn over HTTP, with retries.
//! - [`wire`]: what real servers answer, read into one shape (pure).
//! - [`finish`]: how a session ends (pure).
//! - [`context`]: keeping the conversation inside the model's window (pure).
//! - [`tools`]: the tool definitions and their implementations.
//! - [`sandbox`]: file tools confined to the project directory.
//! - [`sql`], [`terminal`], [`prompt`]: pure checks and texts.
//! - [`data`]: what a data diagnosis ([`Mission::DiagnoseData`]) is shown
//!   before its first turn: the failing tests' rows and lineage. Such a
//!   session is offered no tool that edits files.

pub mod client;
pub mod context;
pub mod data;
pub mod finish;
pub mod prompt;
pub mod sandbox;
pub mod sql;
pub mod terminal;
pub mod tools;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::command::Output;
use crate::dbt::Dbt;
use crate::domain::{AgentEvent, Mission, Outcome, ToolPolicy};
use crate::runlog::RunLog;
use client::{ChatError, Client, Reply, Retry};
use context::{Window, TOOL_RESULTS_HEADER};
use finish::{Claim, FINISH};
use tools::{ellipsis, Toolbox};
use wire::{IdBook, Param};

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
    /// The model's context window in tokens; None: `SELFHEAL_LLM_CONTEXT_TOKENS`,
    /// else [`context::DEFAULT_CONTEXT_TOKENS`]. The conversation is kept inside it.
    pub context_tokens: Option<u64>,
    /// The most one reply may take, in tokens (sent as `max_tokens`); None:
    /// a quarter of the window, at most 4,096.
    pub max_reply_tokens: Option<u64>,
    /// USD per million prompt (input) tokens; with `output_price`, the cost
    /// of a session is counted and shown.
    pub input_price: Option<f64>,
    /// USD per million completion (output) tokens.
    pub output_price: Option<f64>,
    /// USD per session: a budget like the others.
    pub max_cost: Option<f64>,
}

// `temperature`, the prices and `max_cost` are validated to be finite numbers
// when parsed, so equality
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
            .field("context_tokens", &self.context_tokens)
            .field("max_reply_tokens", &self.max_reply_tokens)
            .field("input_price", &self.input_price)
            .field("output_price", &self.output_price)
            .field("max_cost", &self.max_cost)
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
            context_tokens: None,
            max_reply_tokens: None,
            input_price: None,
            output_price: None,
            max_cost: None,
        }
    }

    /// The context window in force.
    pub fn context_window(&self) -> u64 {
        self.context_tokens
            .unwrap_or(context::DEFAULT_CONTEXT_TOKENS)
    }

    /// Whether the session's cost can be counted (a price is set).
    pub fn priced(&self) -> bool {
        self.input_price.is_some() || self.output_price.is_some()
    }

    /// The cost of `prompt` and `completion` tokens, in USD.
    pub fn cost(&self, prompt: u64, completion: u64) -> f64 {
        (prompt as f64 * self.input_price.unwrap_or(0.0)
            + completion as f64 * self.output_price.unwrap_or(0.0))
            / 1_000_000.0
    }

    /// The API key from the environment variable `api_key_env` names.
    pub fn api_key_from_env(&self) -> Option<String> {
        let name = self.api_key_env.as_deref()?;
        std::env::var(name).ok().filter(|k| !k.trim().is_empty())
    }

    /// One line for humans: what runs the agent.
    pub fn describe(&self) -> String {
        let cost = self
            .max_cost
            .map(|c| format!(", {}", usd(c)))
            .unwrap_or_default();
        format!(
            "llm `{}` at {}, up to {} turns, {} tokens, {}s{cost}, {}-token window",
            self.model,
            without_credentials(&self.base_url),
            self.max_turns,
            self.max_tokens,
            self.timeout.as_secs(),
            self.context_window()
        )
    }
}

/// A cost for people: `$0.0042`, `$0.0114`, `$1.25` (cents alone would
/// round most sessions to nothing).
pub fn usd(x: f64) -> String {
    if x < 1.0 {
        format!("${x:.4}")
    } else {
        format!("${x:.2}")
    }
}

/// Where a session's requests and responses are stored, redacted, for
/// `selfheal session show`.
#[derive(Clone)]
pub struct Transcript {
    store: crate::store::Store,
    session_id: i64,
}

impl Transcript {
    pub fn new(store: crate::store::Store, session_id: i64) -> Transcript {
        Transcript { store, session_id }
    }

    fn record(&self, exchange: &crate::store::Exchange) {
        // A transcript is for debugging: a failed write is logged, and the
        // session goes on.
        if let Err(e) = self.store.add_exchange(self.session_id, exchange) {
            warn!(session = self.session_id, error = %format!("{e:#}"), "could not store a model exchange");
        }
    }
}

impl std::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transcript(session {})", self.session_id)
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
    /// What the session is for. A data diagnosis is told to change nothing,
    /// is shown the failing rows and lineage first, and gets no edit tools.
    pub mission: Mission,
    /// How to run dbt for queries and builds.
    pub dbt: Dbt,
    /// Scrubs every tool result before the model sees it (files and query
    /// results can hold credentials).
    pub redactor: crate::redact::Redactor,
    /// People's replies in the healing thread, as the JSON lines a command
    /// agent would get on stdin (`{"type":"reply","user":…,"text":…}`).
    pub replies: Option<mpsc::Receiver<String>>,
    /// Where every request and response goes; None keeps no transcript.
    pub transcript: Option<Transcript>,
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
    Cost,
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
    /// Names a call may use: the tools (and their aliases) and `finish`.
    known: Vec<&'static str>,
    turns: u32,
    tokens: u64,
    /// USD so far (0 when the agent sets no prices).
    cost: f64,
    deadline: Instant,
    window: Window,
    ids: IdBook,
    /// Request parameters this server refused; never sent again.
    dropped: BTreeSet<Param>,
    /// Context-overflow answers so far; each one compacts the history.
    overflows: u32,
    /// Set once the model was asked to finish after a reply cut at its limit.
    length_nudged: bool,
    /// What the model said along the way, for a partial report.
    findings: Vec<String>,
    /// Lines already shown as progress: a model that repeats itself does not
    /// fill the progress message.
    shown: HashSet<String>,
    /// Set when the receiver is gone: the session was stopped.
    closed: bool,
    redactor: crate::redact::Redactor,
    replies: Option<mpsc::Receiver<String>>,
    transcript: Option<Transcript>,
    /// Messages already in the transcript: each exchange stores what is new.
    recorded: usize,
}

/// Lines of one assistant message shown as progress.
const PROGRESS_LINES: usize = 6;
/// Sizes of a tool call's record.
const EVENT_INPUT: usize = 300;
const EVENT_OUTPUT: usize = 500;
/// The final summary is posted to Slack: keep it readable.
const MAX_SUMMARY: usize = 3000;
/// Context-overflow answers survived per session before it ends.
const MAX_OVERFLOWS: u32 = 3;

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
        let policy = match task.mission {
            Mission::Fix => task.tools,
            Mission::DiagnoseData => tools::without_edits(&task.tools),
        };
        let dbt = task.dbt.clone();
        let tools = Toolbox::new(sandbox, raw_log, task.open_prs, policy, task.dbt);
        let offered = tools.offered();
        let window =
            Window::new(settings.context_window()).with_reply_cap(settings.max_reply_tokens);
        let system = prompt::system_prompt(
            &task.system,
            &prompt::Rules {
                tools: &offered,
                max_turns: settings.max_turns,
                max_tokens: settings.max_tokens,
                timeout_secs: settings.timeout.as_secs(),
                max_cost: settings.max_cost,
                mission: task.mission,
            },
        );
        let can_page = offered
            .iter()
            .any(|t| t == "get_run_logs" || t == "get_bolt_run_logs");
        let mut first = prompt::first_message(&task.prompt, task.run_log.as_ref(), can_page);
        if let (Mission::DiagnoseData, Some(log)) = (task.mission, task.run_log.as_ref()) {
            let _ = tx
                .send(Output::Event(AgentEvent::Progress(
                    "🔎 reading the failing tests' rows and lineage".into(),
                )))
                .await;
            let context = data::context(log, &tools, &task.project_dir, &dbt, deadline).await;
            // Rows are warehouse data: nothing secret reaches the model.
            first.push_str(&redactor.redact(&context));
        }
        let mut tool_schemas = tools.schemas();
        tool_schemas.push(finish::schema());
        let known = tools::TOOLS
            .iter()
            .flat_map(|t| std::iter::once(t.name).chain(t.aliases.iter().copied()))
            .chain(std::iter::once(FINISH))
            .collect();
        let mut session = Session {
            tool_schemas,
            known,
            tools,
            client,
            tx,
            messages: vec![
                json!({"role": "system", "content": system}),
                json!({"role": "user", "content": first}),
            ],
            turns: 0,
            tokens: 0,
            cost: 0.0,
            deadline,
            window,
            ids: IdBook::default(),
            dropped: BTreeSet::new(),
            overflows: 0,
            length_nudged: false,
            findings: Vec::new(),
            shown: HashSet::new(),
            closed: false,
            settings,
            redactor,
            replies,
            transcript: task.transcript,
            recorded: 0,
        };
        session.converse().await;
    }

    async fn converse(&mut self) {
        let s = &self.settings;
        let cost = s
            .max_cost
            .map(|c| format!(", {}", usd(c)))
            .unwrap_or_default();
        let intro = format!(
            "🤖 {} is on it (up to {} turns, {} tokens, {} min{cost})",
            s.model,
            s.max_turns,
            s.max_tokens,
            s.timeout.as_secs().div_ceil(60)
        );
        self.emit(AgentEvent::Progress(intro)).await;
        while !self.closed {
            if let Some(budget) = self.budget_out() {
                return self.out_of_budget(budget).await;
            }
            self.take_replies();
            match self.fit_window() {
                Ok(0) => {}
                Ok(saved) => {
                    self.emit(AgentEvent::Progress(format!(
                        "🗜 compacted old tool results ({saved} bytes) to stay inside the {}-token window",
                        self.window.context_tokens
                    )))
                    .await
                }
                Err(need) => return self.too_long(need).await,
            }
            let body = self.request();
            let sent_bytes = body.to_string().len();
            let mut notes = Vec::new();
            let result = self.client.chat(&body, self.deadline, &mut notes).await;
            for note in notes {
                self.emit(AgentEvent::Progress(note)).await;
            }
            let answer = match result {
                Ok(a) => a,
                Err(ChatError::Rejected {
                    status,
                    message,
                    param,
                    code,
                }) => {
                    self.record(&body, status, &message, None);
                    let refused = wire::refused_param(status, &message, param.as_deref())
                        .filter(|p| !self.dropped.contains(p) && self.sends(*p, &body));
                    if let Some(p) = refused {
                        // Asked again at once, without it, for the rest of the session.
                        self.dropped.insert(p);
                        warn!(param = p.key(), %message, "the model endpoint refused a parameter; dropping it");
                        self.emit(AgentEvent::Progress(format!(
                            "⚙️ the model endpoint does not take `{}`; asking again without it",
                            p.key()
                        )))
                        .await;
                        continue;
                    }
                    if wire::context_overflow(status, &message, code.as_deref()) {
                        self.overflows += 1;
                        // The server counts more tokens than estimated: estimate higher.
                        self.window.bytes_per_token = (self.window.bytes_per_token * 0.75).max(1.0);
                        let keep = if self.overflows == 1 { 1 } else { 0 };
                        let saved = context::compact(&mut self.messages, keep, usize::MAX);
                        if self.overflows <= MAX_OVERFLOWS && saved > 0 {
                            self.emit(AgentEvent::Progress(format!(
                                "🗜 the model's context window was full; compacted old tool results ({saved} bytes) and asking again"
                            )))
                            .await;
                            continue;
                        }
                        let need = self.window.estimate(sent_bytes);
                        return self.too_long(need).await;
                    }
                    return self
                        .endpoint_failed(ChatError::Rejected {
                            status,
                            message,
                            param,
                            code,
                        })
                        .await;
                }
                Err(ChatError::Deadline) => {
                    // Kept in the transcript too: what was asked, unanswered.
                    self.record(
                        &body,
                        0,
                        "no answer before the wall-clock budget ran out",
                        None,
                    );
                    return self.out_of_budget(Budget::WallClock).await;
                }
                Err(e) => {
                    self.record(&body, 0, &e.to_string(), None);
                    return self.endpoint_failed(e).await;
                }
            };
            let mut reply = answer.reply;
            self.count(&reply, sent_bytes);
            self.record(&body, 200, &answer.raw, Some(&reply));
            self.turns += 1;
            let known = self.known.clone();
            wire::adopt_text_calls(&mut reply, &known);
            self.ids.assign(&mut reply.calls);
            self.messages.push(assistant_message(&reply));
            let text = reply.content.clone().unwrap_or_default();

            if reply.calls.is_empty() {
                if reply.cut_at_length()
                    && !self.length_nudged
                    && self.turns < self.settings.max_turns
                {
                    // A reply cut at the output limit is not an answer yet:
                    // one request for a short one, then it stands as is.
                    self.length_nudged = true;
                    self.note_findings(&text).await;
                    self.messages
                        .push(json!({"role": "user", "content": prompt::CUT_AT_LENGTH}));
                    continue;
                }
                // Small models echo the request to finish back as their
                // answer: that is no answer, and not the model's words.
                let text = text.replace(prompt::CUT_AT_LENGTH, "");
                let text = match (text.trim().is_empty(), self.findings.last()) {
                    (true, Some(last)) => format!(
                        "The model gave no final answer; its last findings: {}",
                        ellipsis(last, 1500)
                    ),
                    _ => text,
                };
                let (claim, said) = finish::plain(&text);
                return self.conclude(claim, said).await;
            }

            self.note_findings(&text).await;
            let mut results: Vec<(String, String, String)> = Vec::new();
            for call in &reply.calls {
                if call.name == FINISH {
                    match finish::parse(&tools::arguments_map(&call.arguments).unwrap_or_default())
                    {
                        Ok(f) => return self.conclude(f.claim, f.text()).await,
                        Err(why) => {
                            results.push((
                                call.id.clone(),
                                call.name.clone(),
                                format!("ERROR: {why}"),
                            ));
                            continue;
                        }
                    }
                }
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
                result.text = context::fit_result(
                    tools::find(&call.name).map_or(call.name.as_str(), |t| t.name),
                    &result.text,
                    self.window.max_result_bytes(),
                );
                self.emit(AgentEvent::Tool {
                    name: call.name.clone(),
                    input: ellipsis(&call.arguments, EVENT_INPUT),
                    output: ellipsis(&result.text, EVENT_OUTPUT),
                })
                .await;
                results.push((call.id.clone(), call.name.clone(), result.text));
            }
            if reply.text_calls {
                // The server did not parse the calls, so it may not render
                // `tool` messages either: the results go back as text too.
                let mut text = format!("{TOOL_RESULTS_HEADER}:\n");
                for (_, name, result) in &results {
                    text.push_str(&format!(
                        "<tool_result name=\"{name}\">\n{result}\n</tool_result>\n"
                    ));
                }
                self.messages.push(json!({"role": "user", "content": text}));
            } else {
                for (id, _, result) in results {
                    self.messages.push(json!({
                        "role": "tool",
                        "tool_call_id": id,
                        "content": result,
                    }));
                }
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
            "tools": self.tool_schemas,
        });
        let keep = |p: Param| !self.dropped.contains(&p);
        if keep(Param::ToolChoice) {
            body["tool_choice"] = json!("auto");
        }
        if let (Some(t), true) = (self.settings.temperature, keep(Param::Temperature)) {
            // f32 → f64 would send 0.20000000298023224.
            body["temperature"] = json!((f64::from(t) * 1000.0).round() / 1000.0);
        }
        if keep(Param::Stream) {
            // The default, said out loud: this runner reads whole answers.
            body["stream"] = json!(false);
        }
        if keep(Param::MaxTokens) {
            body["max_tokens"] = json!(self.window.reply_tokens());
        }
        body
    }

    /// Whether `body` carries `p` (a refusal of something not sent is not ours).
    fn sends(&self, p: Param, body: &Value) -> bool {
        body.get(p.key()).is_some()
    }

    /// Compacts old tool results until the next request fits the window;
    /// the bytes saved, or the tokens it would need when nothing more helps.
    fn fit_window(&mut self) -> Result<usize, u64> {
        let budget = self.window.prompt_budget();
        let need = |s: &Session| s.window.estimate(s.request().to_string().len());
        let first = need(self);
        if first <= budget {
            return Ok(0);
        }
        let over = ((first - budget) as f64 * self.window.bytes_per_token) as usize;
        let mut saved = context::compact(&mut self.messages, 1, over);
        if need(self) > budget {
            saved += context::compact(&mut self.messages, 0, usize::MAX);
        }
        match need(self) {
            n if n <= budget => Ok(saved),
            n => Err(n),
        }
    }

    /// Adds one reply's tokens and cost, and learns the server's token ratio.
    fn count(&mut self, reply: &Reply, sent_bytes: usize) {
        let usage = reply.usage;
        let prompt = usage
            .prompt_tokens
            .unwrap_or_else(|| self.window.estimate(sent_bytes));
        let completion = usage.completion_tokens.unwrap_or_else(|| {
            let got = reply.content.as_deref().map_or(0, str::len)
                + reply.reasoning.as_deref().map_or(0, str::len)
                + reply
                    .calls
                    .iter()
                    .map(|c| c.name.len() + c.arguments.len())
                    .sum::<usize>();
            (got as u64).div_ceil(4).max(1)
        });
        if let Some(p) = usage.prompt_tokens {
            self.window.calibrate(sent_bytes, p);
        }
        self.tokens += usage.total().unwrap_or(prompt + completion);
        self.cost += self.settings.cost(prompt, completion);
    }

    /// Stores one exchange: the messages new since the last one, the
    /// parameters, and the answer, redacted.
    fn record(&mut self, body: &Value, status: u16, response: &str, reply: Option<&Reply>) {
        let Some(transcript) = &self.transcript else {
            return;
        };
        let all = body["messages"].as_array().map_or(&[][..], Vec::as_slice);
        let from = self.recorded.min(all.len());
        let mut stored = body.clone();
        stored["messages"] = Value::Array(all[from..].to_vec());
        if from > 0 {
            // The earlier messages and the tools are in earlier exchanges.
            stored["earlier_messages"] = json!(from);
            if let Some(o) = stored.as_object_mut() {
                o.remove("tools");
            }
        }
        let (prompt_tokens, completion_tokens, cost) = match reply {
            Some(r) => (
                r.usage.prompt_tokens,
                r.usage.completion_tokens,
                self.settings.priced().then(|| {
                    self.settings.cost(
                        r.usage.prompt_tokens.unwrap_or(0),
                        r.usage.completion_tokens.unwrap_or(0),
                    )
                }),
            ),
            None => (None, None, None),
        };
        // Redacted value by value: scrubbing the JSON text as a whole could
        // eat its quotes (`"password": "…"` patterns) and leave it unreadable.
        let response = match serde_json::from_str::<Value>(response) {
            Ok(v) => redact_json(&self.redactor, v).to_string(),
            Err(_) => self.redactor.redact(response),
        };
        transcript.record(&crate::store::Exchange {
            turn: self.turns,
            request: redact_json(&self.redactor, stored).to_string(),
            status,
            response,
            prompt_tokens,
            completion_tokens,
            cost_usd: cost,
        });
        self.recorded = all.len();
    }

    fn budget_out(&self) -> Option<Budget> {
        if self.turns >= self.settings.max_turns {
            Some(Budget::Turns)
        } else if self.tokens >= self.settings.max_tokens {
            Some(Budget::Tokens)
        } else if self.settings.max_cost.is_some_and(|m| self.cost >= m) {
            Some(Budget::Cost)
        } else if Instant::now() >= self.deadline {
            Some(Budget::WallClock)
        } else {
            None
        }
    }

    /// Shows the model's text as progress (lines not shown before) and keeps
    /// it for a partial report.
    async fn note_findings(&mut self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.findings.push(text.to_string());
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| ellipsis(l, 300))
            .filter(|l| self.shown.insert(l.clone()))
            .take(PROGRESS_LINES)
            .collect();
        for line in lines {
            self.emit(AgentEvent::Progress(line)).await;
        }
    }

    /// Ends with what the model claims, in its words, ruled by what it changed.
    async fn conclude(&mut self, claim: Claim, text: String) {
        let edited = self.edited_list();
        let (outcome, body) = finish::decide(claim, &text, &edited);
        info!(
            turns = self.turns,
            tokens = self.tokens,
            ?claim,
            ?outcome,
            "llm agent finished"
        );
        self.result(outcome, body).await;
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
            Budget::Cost => format!(
                "cost budget ran out ({} of {})",
                usd(self.cost),
                usd(s.max_cost.unwrap_or(0.0))
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

    /// The conversation cannot be made to fit the model's window.
    async fn too_long(&mut self, need: u64) {
        info!(
            turns = self.turns,
            need, "llm conversation outgrew the context window"
        );
        let body = format!(
            "Stopped before the agent finished: the conversation no longer fits the model's context window \
             ({} tokens; about {need} needed) even with old tool results compacted. Raise `context_tokens` \
             if the model allows more. {}",
            self.window.context_tokens,
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
        let cost = if self.settings.priced() {
            format!(", {}", usd(self.cost))
        } else {
            String::new()
        };
        let summary = format!(
            "{}\n({}: used {} turns, {} tokens{cost})",
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

/// Every string in `v` (keys included) redacted.
fn redact_json(r: &crate::redact::Redactor, v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(r.redact(&s)),
        Value::Array(items) => items.into_iter().map(|i| redact_json(r, i)).collect(),
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| (r.redact(&k), redact_json(r, v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => other,
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

/// The assistant message as it goes back into the conversation: the visible
/// text (reasoning is not sent back), and the calls in the form they came in.
fn assistant_message(reply: &Reply) -> Value {
    let content = reply.content.clone().unwrap_or_default();
    if reply.text_calls {
        // Written as text, so sent back as text: the model sees its own words.
        let calls: Vec<String> = reply
            .calls
            .iter()
            .map(|c| {
                let args: Value = serde_json::from_str(&c.arguments).unwrap_or(json!({}));
                format!(
                    "<tool_call>\n{}\n</tool_call>",
                    json!({"name": c.name, "arguments": args})
                )
            })
            .collect();
        let text = [content, calls.join("\n")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        return json!({"role": "assistant", "content": text});
    }
    let mut msg = json!({"role": "assistant", "content": content});
    if !reply.calls.is_empty() {
        msg["tool_calls"] = reply
            .calls
            .iter()
            .map(|c| {
                // Servers that render templates parse these arguments
                // (llama.cpp answers 500 to invalid JSON): a call whose
                // arguments were not an object goes back as `{}`; its tool
                // result already told the model what was wrong.
                let arguments = match serde_json::from_str::<Value>(&c.arguments) {
                    Ok(Value::Object(_)) => c.arguments.clone(),
                    _ => "{}".to_string(),
                };
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": arguments},
                })
            })
            .collect();
    }
    msg
}
