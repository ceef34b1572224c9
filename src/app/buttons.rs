//! Buttons. In a message: Stop ends the session's agent (through
//! `session::controls::Controls`, like a `stop` reply); View PR is a link
//! Slack opens itself, so it needs nothing here. On the Home tab: an admin's
//! Enable, Disable, Pause and Resume run what `/selfheal enable|disable|pause|resume`
//! runs, admin check included; the answer, a refusal too, shows on the
//! clicker's view, as the Home tab has no channel to answer in.

use std::sync::Arc;

use anyhow::Result;

use super::App;
use crate::commands::Command;
use crate::domain::SessionId;
use crate::session::controls::Control;
use crate::slack::home::{DISABLE_ACTION, ENABLE_ACTION, PAUSE_ACTION, RESUME_ACTION};
use crate::slack::{render, ActionRequest, Surface};

impl App {
    pub(super) async fn on_action(self: &Arc<Self>, action: &ActionRequest) -> Result<()> {
        match &action.surface {
            Surface::Message { channel_id, .. } => self.on_stop(action, channel_id).await,
            Surface::Home => {
                self.on_home_button(action).await;
                Ok(())
            }
        }
    }

    async fn on_stop(self: &Arc<Self>, action: &ActionRequest, channel_id: &str) -> Result<()> {
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
        if !self.control(id, stop)? {
            self.parts
                .web
                .post_ephemeral(
                    channel_id,
                    &action.user_id,
                    "That session has already ended.",
                )
                .await?;
        }
        Ok(())
    }

    /// A Home tab button: the command it stands for, run as the clicker.
    async fn on_home_button(self: &Arc<Self>, action: &ActionRequest) {
        let schedule = action.value.clone().unwrap_or_default();
        let command = match action.action_id.as_str() {
            ENABLE_ACTION => Command::Enable {
                schedule,
                channel: None,
                agent: None,
            },
            DISABLE_ACTION => Command::Disable { schedule },
            PAUSE_ACTION => Command::Pause,
            RESUME_ACTION => Command::Resume,
            _ => return,
        };
        let answer = crate::commands::run(&self.commands, &action.user_id, command).await;
        self.home.answered(action.user_id.clone(), answer.text);
    }
}
