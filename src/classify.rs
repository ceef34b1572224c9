//! TEMPORARY until h-classify lands.
use crate::domain::FailureClass;
use crate::runlog::RunLog;
pub struct Sorted {
    pub class: FailureClass,
    pub why: String,
}
pub fn classify(_log: &RunLog) -> Sorted {
    Sorted { class: FailureClass::Code, why: "tmp".into() }
}
