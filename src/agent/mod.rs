//! Agent runners and the one place that knows each agent protocol.
//!
//! - [`protocol`]: what a line of agent output means (pure).
//! - [`command`]: the external-command runner (process group, stdin kept open,
//!   timeouts enforced by the session driver).
//! - [`llm`]: the built-in tool-calling loop against an OpenAI-compatible endpoint.

pub mod command;
pub mod llm;
pub mod protocol;
