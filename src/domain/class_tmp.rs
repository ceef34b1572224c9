//! TEMPORARY until h-classify lands (replaced by its file).

/// What kind of failure a run had, which decides its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    Transient,
    Code,
    Data,
    Setup,
}

impl FailureClass {
    pub fn label(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient infrastructure",
            FailureClass::Code => "code",
            FailureClass::Data => "data",
            FailureClass::Setup => "permissions or configuration",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mission {
    #[default]
    Fix,
    DiagnoseData,
}
