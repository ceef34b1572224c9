//! selfheal: a self-hosted Slack bot that heals failed dbt pipeline runs.
//!
//! A scheduler posts a failure notification into Slack; selfheal recognises it,
//! replies in its thread, runs an agent that fixes the dbt code, and streams the
//! agent's progress and pull-request link back into the thread.
//!
//! # Layout
//! - [`check`]: `selfheal check` — every setting tried for real, one ✓/⚠/✗ line each (decisions pure, IO in `check::probe`).
//! - [`commands`]: `/selfheal` slash commands (parsing, handlers, answers).
//! - [`domain`]: the shared words — ids, a session's place, status and ending, event kinds, agent events; imports nothing from the crate.
//! - [`config`]: environment, schedules-as-code and agent definitions → a validated [`config::Config`].
//! - [`dbt`]: runs the dbt CLI (verification, the doctor's queries).
//! - [`recognize`]: a Slack message → `Some(Failure)` or `None` (pure).
//! - [`slack`]: the only module that speaks to Slack (Socket Mode listener, Web API gateway, rendering).
//! - [`session`]: the healing session — a pure state machine holding its whole lifecycle, the driver that performs its effects, the sinks that render them.
//! - [`agent`]: agent definitions and runners; the one place that starts one and that knows the agent protocol.
//! - [`doctor`]: dbt-doctor, the deterministic built-in agent.
//! - [`workspace`]: a fresh clone of the dbt repository per session; pushes only `selfheal/` branches.
//! - [`forge`]: pull requests (GitHub REST, or a plain remote's compare link); the only holder of the forge token.
//! - [`http`]: the HTTPS (or loopback http) transport of the hosted-API clients.
//! - [`store`]: SQLite, the source of truth for history.
//! - [`runlog`]: run logs — where they come from (a directory, Paradime, dbt Cloud) and what they say (failing nodes, errors).
//! - [`redact`]: scrubs secrets from anything that leaves the process.
//! - [`notify`]: `selfheal notify` — stores a dbt Core run's artifacts and posts its failure notification.
//! - [`transcript`]: `selfheal session show` — a session's transcript (prompt, model exchanges, outcome, cost).
//! - [`app`]: wires the parts together and runs until shut down.
//! - [`parts`]: the parts the app and the slash commands share (config, store, Slack gateway, channels).
//! - [`demo`]: the demo world (project, origin, scheduler, fakes) behind `selfheal demo` and the end-to-end tests.
//! - [`bench`]: `selfheal bench` — the release binary measured against the local Slack fake.
//! - [`fix`]: `selfheal fix`, one healing session in the terminal.
//! - [`drill`]: `selfheal drill`, a fire drill of realistic faults on a copy of a team's dbt project.
//! - [`fake_dbt_cloud`]: a local dbt Cloud v2 API (runs, steps, lagging artifacts) for tests, the demo and benchmarks.
//! - [`fake_github`]: a local GitHub REST API for tests and the demo.
//! - [`fake_llm`]: a local OpenAI-compatible chat-completions server that replays scripted conversations.
//! - [`fake_paradime`]: a local Paradime GraphQL API (Bolt runs, paged command logs) for tests, the demo and benchmarks.
//! - [`fake_server`]: the lifecycle of the local HTTP fakes.
//! - [`fake_slack`]: a local Slack (Web API + Socket Mode) for tests, the demo and benchmarks.

pub mod agent;
pub mod app;
pub mod bench;
pub mod check;
pub mod commands;
pub mod config;
pub mod dbt;
pub mod demo;
pub mod doctor;
pub mod domain;
pub mod drill;
pub mod fake_dbt_cloud;
pub mod fake_github;
pub mod fake_llm;
pub mod fake_paradime;
pub mod fake_server;
pub mod fake_slack;
pub mod fix;
pub mod forge;
pub mod http;
pub mod notify;
pub mod parts;
pub mod recognize;
pub mod redact;
pub mod runlog;
pub mod session;
pub mod slack;
pub mod store;
pub mod transcript;
pub mod workspace;

#[cfg(test)]
mod module_graph_tests;
