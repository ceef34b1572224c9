//! The words every part of selfheal shares: ids, where a session lives, how a
//! session stands and ends, the kinds of its stored events, where a pull
//! request stands, what an agent says, what kind of failure a run had and
//! what an agent is sent to do, and the plain data the pure core hands to
//! the IO around it.
//!
//! It imports nothing from the crate (only std, serde and chrono), so any
//! module may depend on it and it depends on none; `module_graph_tests`
//! fails the build when that stops being true. It does no IO and renders
//! nothing for Slack: the sinks do.

mod agent;
mod event;
mod failure;
mod forge;
mod ids;
mod pr;
mod secret;
mod session;

pub use agent::{AgentEvent, Outcome, ToolPolicy};
pub use event::EventKind;
pub use failure::{FailureClass, Mission};
pub use forge::{ForgeKind, PrOptions};
pub use ids::{Place, SessionId, Thread};
pub use pr::PrState;
pub use secret::Secret;
pub use session::{Ending, FollowUp, PriorAttempt, Progress, Status};
