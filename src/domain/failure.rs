//! What kind of failure a run had, and what an agent is sent to do about it.

/// What kind of failure a run had, which decides its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// Infrastructure that may pass on a re-run: connection reset/refused, warehouse timeouts or queueing,
    /// lock/serialisation conflicts, out of memory, 5xx from the warehouse, credentials expired mid-run.
    Transient,
    /// The dbt code: compilation, missing refs/sources/macros, SQL errors (unknown column, syntax, types).
    Code,
    /// Failing data tests (the data is wrong, not the code).
    Data,
    /// Permissions and configuration: grants/privileges, missing schema/database, bad profile/target, missing env var.
    Setup,
}

impl FailureClass {
    /// Every class, for tests that each one reads back.
    pub const ALL: [FailureClass; 4] = [
        FailureClass::Transient,
        FailureClass::Code,
        FailureClass::Data,
        FailureClass::Setup,
    ];

    /// The text the store keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Code => "code",
            FailureClass::Data => "data",
            FailureClass::Setup => "setup",
        }
    }

    /// The class a stored text names; None for a class this version does not know.
    pub fn parse(s: &str) -> Option<FailureClass> {
        FailureClass::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// How the thread names it: "a transient infrastructure failure".
    pub fn label(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient infrastructure",
            FailureClass::Code => "code",
            FailureClass::Data => "data",
            FailureClass::Setup => "permissions or configuration",
        }
    }
}

/// What an agent is sent to do. Runners that cannot tell the difference (an
/// external command, dbt-doctor) ignore it: the bot verifies and proposes only
/// what builds, whatever the agent was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mission {
    /// Find the cause and change the dbt code so the run passes.
    #[default]
    Fix,
    /// Data tests failed: find which rows fail and where they come from, and
    /// say who should act. Change nothing, above all not the tests.
    DiagnoseData,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_reads_back_from_the_text_the_store_keeps() {
        for class in FailureClass::ALL {
            assert_eq!(FailureClass::parse(class.as_str()), Some(class));
        }
        for (text, label) in [
            ("transient", "transient infrastructure"),
            ("code", "code"),
            ("data", "data"),
            ("setup", "permissions or configuration"),
        ] {
            let class = FailureClass::parse(text).expect(text);
            assert_eq!(class.label(), label);
        }
        assert_eq!(FailureClass::parse("Transient"), None);
        assert_eq!(FailureClass::parse(""), None);
    }
}
