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
//! - [`classify`]: a failed run → transient, code, data or setup, and why (pure).
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
//! - [`metrics`]: the bot's counters and histograms, and their Prometheus text (pure).
//! - [`service`]: `SELFHEAL_HTTP_ADDR` — `/healthz`, `/readyz` and `/metrics` over hyper.
//! - [`parts`]: the parts the app and the slash commands share (config, store, Slack gateway, channels).
//! - `demo` (feature `demo`): the demo world (project, origin, scheduler, fakes) behind `selfheal demo` and the end-to-end tests.
//! - `bench` (feature `demo`): `selfheal bench` — the release binary measured against the local Slack fake.
//! - [`fix`]: `selfheal fix`, one healing session in the terminal.
//! - [`drill`]: `selfheal drill`, a fire drill of realistic faults on a copy of a team's dbt project.
//!
//! The fakes of Slack, GitHub, the model endpoint, Paradime and dbt Cloud are
//! the `selfheal-fakes` crate: a dev-dependency, and a dependency of the
//! `demo` feature (on by default) only, so a build without it carries none.

pub mod agent;
pub mod app;
#[cfg(feature = "demo")]
pub mod bench;
pub mod check;
pub mod classify;
pub mod commands;
pub mod config;
pub mod dbt;
#[cfg(feature = "demo")]
pub mod demo;
pub mod doctor;
pub mod domain;
pub mod drill;
pub mod fix;
pub mod forge;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod parts;
pub mod recognize;
pub mod redact;
pub mod runlog;
pub mod service;
pub mod session;
pub mod slack;
pub mod store;
pub mod transcript;
pub mod workspace;

#[cfg(test)]
mod module_graph_tests;
