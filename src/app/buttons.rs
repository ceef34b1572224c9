//! Buttons on selfheal's messages. Stop ends the session's agent (through
//! `session::controls::Controls`, like a `stop` reply); View PR is a link Slack opens
//! itself, so it needs nothing here.

use std::sync::Arc;

use anyhow::Result;

use super::App;
use crate::domain::SessionId;
use crate::session::controls::Control;
use crate::slack::{render, ActionRequest};

impl App {
    pub(super) async fn on_action(self: &Arc<Self>, action: &ActionRequest) -> Result<()> {
        if action.action_id != render::STOP_ACTION {
            return Ok(());
        }
        let Some(id) = action
            .value
            .as_deref()
            .and_then(|v| v.parse::<SessionId>().ok())
        else {
            return Ok(());
        };
        let stop = Control::Stop {
            user: action.user_id.clone(),
        };
        if !self.deps.controls.send(id, stop) {
            self.parts
                .web
                .post_ephemeral(
                    &action.channel_id,
                    &action.user_id,
                    "That session has already ended.",
                )
                .await?;
        }
        Ok(())
    }
}
