//! `agents`: the agent definitions available and which schedules heal with
//! them right now (overrides included). SQLite reads only.

use super::effective::combine;
use super::CommandContext;
use crate::config::{AgentDef, Runner};
use crate::slack::render::escape;

pub(super) fn agents(ctx: &CommandContext) -> anyhow::Result<String> {
    let cfg = &ctx.parts.cfg;
    // (schedule, agent) for every schedule that heals now.
    let mut uses: Vec<(String, String)> = vec![];
    for s in cfg.schedules.iter() {
        let e = combine(s, ctx.parts.store.schedule_override(&s.name)?.as_ref());
        if let (true, Some(agent)) = (e.enabled, e.agent(cfg)) {
            uses.push((s.name.clone(), agent.to_string()));
        }
    }
    let mut out = String::from("*Agents*\n");
    for agent in cfg.agents.values() {
        let users: Vec<String> = uses
            .iter()
            .filter(|(_, a)| *a == agent.name)
            .map(|(s, _)| format!("`{}`", escape(s)))
            .collect();
        let default = if cfg.default_agent.as_deref() == Some(agent.name.as_str()) {
            " (default)"
        } else {
            ""
        };
        out.push_str(&format!(
            "• *{}*{default} — {} — {}\n",
            escape(&agent.name),
            runner(agent),
            if users.is_empty() {
                "used by no schedule".to_string()
            } else {
                format!("heals {}", users.join(", "))
            }
        ));
    }
    Ok(out.trim_end().to_string())
}

/// What runs the agent, without its command line or environment (which may
/// hold paths or secrets that do not belong in a channel).
fn runner(agent: &AgentDef) -> String {
    match &agent.runner {
        Runner::Unspecified => "no selfheal runner (cannot heal)".into(),
        Runner::Command { timeout, .. } => {
            format!("external command, limit {}s", timeout.as_secs())
        }
        Runner::Builtin(name) => format!("built-in `{}`", escape(name)),
        Runner::Llm(settings) => format!("LLM `{}`", escape(&settings.model)),
    }
}
