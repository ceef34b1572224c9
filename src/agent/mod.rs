//! Agent runners and the one place that knows each agent protocol.
//!
//! - [`protocol`]: what a line of agent output means (pure).
//! - [`command`]: the external-command runner (process group, stdin kept open,
//!   timeouts enforced by the session driver).

pub mod command;
pub mod protocol;
