//! The healing session: a pure state machine ([`machine`]), its opening prompt
//! ([`prompt`]), the driver that performs the machine's effects ([`driver`]),
//! and where its messages go ([`sink`]: a Slack thread or the terminal).

pub mod driver;
pub mod machine;
pub mod prompt;
pub mod sink;
