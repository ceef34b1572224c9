//! `/selfheal` slash commands: parsing (pure), the handlers, and their answers.

use std::sync::Arc;

use crate::config::Config;
use crate::slack::channels::Channels;
use crate::slack::web::SlackWeb;
use crate::slack::{CommandReply, CommandRequest};
use crate::store::Store;

/// What command handlers may use.
#[derive(Clone)]
pub struct CommandContext {
    pub cfg: Arc<Config>,
    pub store: Store,
    pub web: SlackWeb,
    pub channels: Channels,
}

/// Answers one `/selfheal …` invocation.
pub async fn handle(_ctx: &CommandContext, _req: &CommandRequest) -> CommandReply {
    CommandReply::text(
        "selfheal's slash commands are being built; try again after the next release.",
    )
}
