//! The healing session: a pure state machine that holds its whole lifecycle
//! ([`machine`]), its opening prompt ([`prompt`]), the driver that performs
//! the machine's effects ([`driver`]), the caps and controls shared by all
//! sessions ([`controls`]), and where its messages go and how they look
//! there ([`sink`]: a Slack thread or the terminal); and closing the loop
//! when the schedule passes again ([`closing`]).

pub mod closing;
pub mod controls;
pub mod driver;
pub mod machine;
pub mod prompt;
pub mod sink;
