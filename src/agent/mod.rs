//! Agent runners and the one place that knows each agent protocol.
//!
//! - [`runner`]: agent definitions and [`start`], the one place that starts
//!   any runner (command, dbt-doctor, llm).
//! - [`protocol`]: what a line of agent output means (pure).
//! - [`command`]: the external-command runner (process group, stdin kept open,
//!   timeouts enforced by the session driver).
//! - [`llm`]: the built-in tool-calling loop against an OpenAI-compatible endpoint.
//!
//! What an agent says ([`crate::domain::AgentEvent`]) is a domain word, so
//! the session machine reads it without depending on any runner.

pub mod command;
pub mod llm;
pub mod protocol;
pub mod runner;

pub use runner::{start, AgentDef, Job, Runner, Started, DBT_DOCTOR};
