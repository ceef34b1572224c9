//! What an agent says (whatever runs it) and which tools it may use.

/// How the agent says it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Fixed,
    NoFix,
    Failed,
}

/// One thing an agent said: a line of a command agent's stdout as
/// `agent::protocol` reads it, or an event of a built-in agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    Progress(String),
    Milestone(String),
    Pr(String),
    Result {
        outcome: Outcome,
        summary: String,
    },
    /// A built-in agent used a tool: what it called, with what, and what came
    /// back (both already shortened for the session log).
    Tool {
        name: String,
        input: String,
        output: String,
    },
}

impl AgentEvent {
    /// The same event with every text passed through `f` (redaction).
    pub fn map_text(self, f: impl Fn(&str) -> String) -> AgentEvent {
        match self {
            AgentEvent::Progress(t) => AgentEvent::Progress(f(&t)),
            AgentEvent::Milestone(t) => AgentEvent::Milestone(f(&t)),
            AgentEvent::Pr(t) => AgentEvent::Pr(f(&t)),
            AgentEvent::Result { outcome, summary } => AgentEvent::Result {
                outcome,
                summary: f(&summary),
            },
            AgentEvent::Tool {
                name,
                input,
                output,
            } => AgentEvent::Tool {
                name,
                input: f(&input),
                output: f(&output),
            },
        }
    }
}

/// Which tools an agent may use (`tools: {mode, list}` of its file).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolPolicy {
    /// No `tools` key: every tool is allowed.
    #[default]
    All,
    /// `mode: allowlist`: only these tools.
    Allow(Vec<String>),
    /// `mode: denylist`: every tool but these.
    Deny(Vec<String>),
}

impl ToolPolicy {
    /// Whether the agent may use `tool`.
    pub fn allows(&self, tool: &str) -> bool {
        match self {
            ToolPolicy::All => true,
            ToolPolicy::Allow(list) => list.iter().any(|t| t == tool),
            ToolPolicy::Deny(list) => !list.iter().any(|t| t == tool),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_the_text_keeps_names_and_outcomes() {
        let upper = |s: &str| s.to_uppercase();
        for (event, expected) in [
            (
                AgentEvent::Progress("a".into()),
                AgentEvent::Progress("A".into()),
            ),
            (
                AgentEvent::Milestone("b".into()),
                AgentEvent::Milestone("B".into()),
            ),
            (AgentEvent::Pr("c".into()), AgentEvent::Pr("C".into())),
            (
                AgentEvent::Result {
                    outcome: Outcome::NoFix,
                    summary: "d".into(),
                },
                AgentEvent::Result {
                    outcome: Outcome::NoFix,
                    summary: "D".into(),
                },
            ),
            (
                AgentEvent::Tool {
                    name: "read_file".into(),
                    input: "e".into(),
                    output: "f".into(),
                },
                AgentEvent::Tool {
                    name: "read_file".into(),
                    input: "E".into(),
                    output: "F".into(),
                },
            ),
        ] {
            assert_eq!(event.map_text(upper), expected);
        }
    }
}
