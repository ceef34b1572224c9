//! The healing session: a pure state machine ([`machine`]), its opening prompt
//! ([`prompt`]) and the driver that performs the machine's effects ([`driver`]).

pub mod driver;
pub mod machine;
pub mod prompt;
