//! The kinds of event a session stores, in the words the store keeps.

/// What a stored session event is. The store keeps [`EventKind::as_str`], the
/// same text it always kept, so existing databases read the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The opening prompt the agent got.
    Prompt,
    /// The run log the session read (whole, redacted).
    RunLog,
    /// Why the session waited for a slot.
    Queued,
    /// dbt's output when the failing nodes' parents could not be built.
    Prepare,
    /// A line of agent progress.
    Progress,
    /// Something the agent found worth its own message.
    Milestone,
    /// The pull request the agent reported.
    Pr,
    /// A built-in agent's tool call and what it returned.
    Tool,
    /// The agent's own verdict.
    Result,
    /// A line of the agent's stderr.
    Stderr,
    /// Something the bot itself did (run log read, clone ready, verification).
    Note,
    /// A person's reply in the thread, passed to the agent.
    Guidance,
    /// The agent's ending, before the bot verifies and proposes its change.
    AgentEnd,
    /// dbt's output when the bot verified the change.
    Verification,
    /// How the session ended.
    End,
}

impl EventKind {
    /// Every kind, for tests that each one reads back.
    pub const ALL: [EventKind; 15] = [
        EventKind::Prompt,
        EventKind::RunLog,
        EventKind::Queued,
        EventKind::Prepare,
        EventKind::Progress,
        EventKind::Milestone,
        EventKind::Pr,
        EventKind::Tool,
        EventKind::Result,
        EventKind::Stderr,
        EventKind::Note,
        EventKind::Guidance,
        EventKind::AgentEnd,
        EventKind::Verification,
        EventKind::End,
    ];

    /// The text the store keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Prompt => "prompt",
            EventKind::RunLog => "run_log",
            EventKind::Queued => "queued",
            EventKind::Prepare => "prepare",
            EventKind::Progress => "progress",
            EventKind::Milestone => "milestone",
            EventKind::Pr => "pr",
            EventKind::Tool => "tool",
            EventKind::Result => "result",
            EventKind::Stderr => "stderr",
            EventKind::Note => "note",
            EventKind::Guidance => "guidance",
            EventKind::AgentEnd => "agent_end",
            EventKind::Verification => "verification",
            EventKind::End => "end",
        }
    }

    /// The kind a stored text names; None for a kind this version does not know.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_the_text_the_store_keeps() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        // The texts of databases written before the enum existed.
        for text in [
            "prompt",
            "run_log",
            "queued",
            "prepare",
            "progress",
            "milestone",
            "pr",
            "tool",
            "result",
            "stderr",
            "note",
            "agent_end",
            "verification",
            "end",
        ] {
            assert!(EventKind::parse(text).is_some(), "{text}");
        }
        assert_eq!(EventKind::parse("something_else"), None);
    }
}
