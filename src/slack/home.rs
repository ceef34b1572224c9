//! selfheal's Home tab: each schedule's healing switch and where it comes
//! from, the sessions running now and the last sessions, as the `home` view
//! `views.publish` takes. Pure: the app gathers [`HomeData`] and publishes
//! what [`home_view`] makes of it.
//!
//! Slack's limits hold here, whatever the data: at most [`MAX_BLOCKS`]
//! blocks (long lists are cut and say how many more there are), section text
//! of at most [`MAX_SECTION_TEXT`] characters, button text, `action_id` and
//! `value` within theirs. Stored data (schedule names, run ids, agents) is
//! escaped before it goes into mrkdwn.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::render::{channel_mrkdwn, escape, outcome, safe_url, status_emoji, when};
use crate::domain::Status;

/// Blocks a Home tab view may hold.
pub const MAX_BLOCKS: usize = 100;
/// Characters a section's text may hold.
pub const MAX_SECTION_TEXT: usize = 3000;
/// Characters a button's text may hold.
pub const MAX_BUTTON_TEXT: usize = 75;
/// Characters an `action_id` may hold.
pub const MAX_ACTION_ID: usize = 255;
/// Characters a button's `value` may hold.
pub const MAX_VALUE: usize = 2000;

/// How many recent sessions the Home tab lists.
pub const RECENT_SESSIONS: usize = 20;

/// The admin buttons. A schedule's button carries the schedule's name as
/// its value; pausing is workspace-wide, so its buttons carry none.
pub const ENABLE_ACTION: &str = "selfheal_home_enable";
pub const DISABLE_ACTION: &str = "selfheal_home_disable";
pub const PAUSE_ACTION: &str = "selfheal_home_pause";
pub const RESUME_ACTION: &str = "selfheal_home_resume";

/// What the Home tab shows, gathered by the app.
#[derive(Debug, Clone, PartialEq)]
pub struct HomeData {
    /// `/selfheal pause` is on: nothing heals automatically.
    pub paused: Option<Paused>,
    /// Every configured schedule, in file order.
    pub schedules: Vec<HomeSchedule>,
    /// Sessions not ended yet, oldest first.
    pub running: Vec<HomeSession>,
    /// The last [`RECENT_SESSIONS`] sessions, newest first.
    pub recent: Vec<HomeSession>,
    /// Shown first, to this viewer only: the answer to their last click
    /// (mrkdwn, already escaped), since the Home tab has no channel to
    /// answer in.
    pub notice: Option<String>,
    /// When the data was read, so a viewer can tell how fresh it is.
    pub updated_at: DateTime<Utc>,
}

/// Who paused healing, and since when.
#[derive(Debug, Clone, PartialEq)]
pub struct Paused {
    pub by: String,
    pub since: DateTime<Utc>,
}

/// A schedule's healing settings in force.
#[derive(Debug, Clone, PartialEq)]
pub struct HomeSchedule {
    pub name: String,
    /// Self-healing is on for it and it has a channel to heal in (whether or
    /// not healing is paused).
    pub enabled: bool,
    /// The healing channel as configured (a name or an id).
    pub channel: Option<String>,
    /// The agent that heals it: its own, else the default agent.
    pub agent: Option<String>,
    /// Where these settings come from.
    pub source: SettingsSource,
}

/// Where a schedule's healing settings come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingsSource {
    /// The schedules file (its name) that declares it, at this line.
    Yaml { file: String, line: usize },
    /// A `/selfheal enable|disable` (or a Home tab button) by Slack user
    /// `by` at `at`, overriding the YAML, which says `yaml_enabled`.
    Override {
        by: String,
        at: DateTime<Utc>,
        yaml_enabled: bool,
    },
}

/// A session in a list.
#[derive(Debug, Clone, PartialEq)]
pub struct HomeSession {
    pub schedule: String,
    pub run_id: String,
    pub agent: String,
    pub status: Status,
    pub started: DateTime<Utc>,
    pub pr_url: Option<String>,
    /// Its Slack thread (a permalink, or a link built from channel and ts).
    pub thread_url: Option<String>,
}

/// The Home tab view for one viewer: the same for everybody, but an admin
/// also gets the buttons (enable or disable a schedule, pause or resume).
pub fn home_view(data: &HomeData, viewer_is_admin: bool) -> Value {
    let mut head = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": "🦖 selfheal"}
    })];
    if let Some(notice) = &data.notice {
        head.push(section(notice, None));
    }
    head.push(switch_section(data, viewer_is_admin));
    head.push(json!({"type": "divider"}));
    head.push(section(
        &format!("*Schedules* ({})", data.schedules.len()),
        None,
    ));

    let mut tail = vec![json!({"type": "divider"})];
    let running: Vec<String> = data.running.iter().map(running_line).collect();
    tail.extend(listed("*Running now*", &running, "Nothing is running.", 2));
    tail.push(json!({"type": "divider"}));
    let recent: Vec<String> = data.recent.iter().map(recent_line).collect();
    tail.extend(listed(
        &format!("*Last {RECENT_SESSIONS} sessions*"),
        &recent,
        "No healing sessions yet.",
        3,
    ));
    tail.push(context(&format!(
        "Updated {} · `/selfheal help` for the commands",
        when(data.updated_at)
    )));

    let room = MAX_BLOCKS - head.len() - tail.len();
    let mut schedules: Vec<Value> = data
        .schedules
        .iter()
        .map(|s| schedule_section(s, data.paused.is_some(), viewer_is_admin))
        .collect();
    if schedules.is_empty() {
        schedules.push(context(
            "No schedules are configured: selfheal reads them from `SELFHEAL_SCHEDULES`.",
        ));
    } else if schedules.len() > room {
        let shown = room - 1;
        let more = schedules.len() - shown;
        schedules.truncate(shown);
        schedules.push(context(&format!(
            "…and {more} more schedules: `/selfheal status` lists them all."
        )));
    }
    let mut blocks = head;
    blocks.extend(schedules);
    blocks.extend(tail);
    json!({"type": "home", "blocks": blocks})
}

/// Whether healing is active or paused; for an admin, the button that
/// switches it.
fn switch_section(data: &HomeData, admin: bool) -> Value {
    let (text, button) = match &data.paused {
        None => (
            "▶️ *Self-healing is active.* Failures of the schedules below that are on heal \
             by themselves; on any other failure notification, *Fix with selfheal* \
             (in the message's ⋮ menu) starts a session."
                .to_string(),
            json!({
                "type": "button",
                "action_id": PAUSE_ACTION,
                "text": {"type": "plain_text", "text": "Pause all healing"},
                "style": "danger",
                "confirm": {
                    "title": {"type": "plain_text", "text": "Pause all healing?"},
                    "text": {"type": "mrkdwn", "text": "No failure heals automatically until someone resumes healing."},
                    "confirm": {"type": "plain_text", "text": "Pause"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                    "style": "danger"
                }
            }),
        ),
        Some(p) => (
            format!(
                "⏸ *Paused workspace-wide* by {} since {}: nothing heals automatically until healing is resumed.",
                mention(&p.by),
                when(p.since)
            ),
            json!({
                "type": "button",
                "action_id": RESUME_ACTION,
                "text": {"type": "plain_text", "text": "Resume healing"},
                "style": "primary"
            }),
        ),
    };
    section(&text, admin.then_some(button))
}

/// A schedule: its switch, channel and agent, where they come from; for an
/// admin, the button that turns it on or off.
fn schedule_section(s: &HomeSchedule, paused: bool, admin: bool) -> Value {
    let agent = match &s.agent {
        Some(agent) => format!("`{}`", name(agent)),
        None => "no agent".to_string(),
    };
    let heals = match &s.channel {
        Some(channel) => format!("in {} with {agent}", channel_mrkdwn(channel)),
        None => format!("with {agent}"),
    };
    let switch = match (s.enabled, paused) {
        (true, false) => format!("✅ On: heals {heals}"),
        (true, true) => format!("⏸ Paused: heals {heals} once healing is resumed"),
        (false, _) => "⛔ Off: its failures heal only when someone asks".to_string(),
    };
    let source = match &s.source {
        SettingsSource::Yaml { file, line } => {
            format!("from `{}`, line {line}", name(file))
        }
        SettingsSource::Override {
            by,
            at,
            yaml_enabled,
        } => format!(
            "from an override by {} on {} (its YAML says {})",
            mention(by),
            when(*at),
            if *yaml_enabled { "on" } else { "off" }
        ),
    };
    let text = format!("*`{}`*\n{switch}\n_{source}_", name(&s.name));
    let button = (admin && s.name.chars().count() <= MAX_VALUE).then(|| {
        let (action_id, label, style) = if s.enabled {
            (DISABLE_ACTION, "Disable", "danger")
        } else {
            (ENABLE_ACTION, "Enable", "primary")
        };
        json!({
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label},
            "style": style,
            "value": s.name,
        })
    });
    section(&text, button)
}

fn running_line(s: &HomeSession) -> String {
    format!(
        "{} `{}` run `{}` with `{}` since {}{}",
        status_emoji(s.status),
        name(&s.schedule),
        name(&s.run_id),
        name(&s.agent),
        when(s.started),
        link(s.thread_url.as_deref(), "thread"),
    )
}

fn recent_line(s: &HomeSession) -> String {
    format!(
        "{} `{}` run `{}` — {}{}{} · {}",
        status_emoji(s.status),
        name(&s.schedule),
        name(&s.run_id),
        outcome(s.status),
        link(s.pr_url.as_deref(), "pull request"),
        link(s.thread_url.as_deref(), "thread"),
        when(s.started),
    )
}

/// ` · <url|label>`, or nothing for a missing, unsafe or absurdly long URL.
fn link(url: Option<&str>, label: &str) -> String {
    match url {
        Some(url) if safe_url(url) && url.len() <= MAX_URL => format!(" · <{url}|{label}>"),
        _ => String::new(),
    }
}

/// Longer URLs are not shown: a list line must stay far inside a section.
const MAX_URL: usize = 1000;

/// Characters of a stored name shown before it is cut.
const MAX_NAME: usize = 100;

/// A stored name (schedule, run id, agent, file), cut and escaped.
fn name(raw: &str) -> String {
    escape(&cut(raw, MAX_NAME))
}

/// A Slack user id as a mention; anything else is shown as text.
fn mention(user: &str) -> String {
    if !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric()) {
        format!("<@{user}>")
    } else {
        escape(user)
    }
}

/// `text` cut to `max` characters, an ellipsis marking the cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((at, _)) if text.chars().count() > max => format!("{}…", &text[..at]),
        _ => text.to_string(),
    }
}

/// A mrkdwn section, its text cut to Slack's limit.
fn section(text: &str, accessory: Option<Value>) -> Value {
    let mut block = json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": cut(text, MAX_SECTION_TEXT)}
    });
    if let Some(accessory) = accessory {
        block["accessory"] = accessory;
    }
    block
}

fn context(text: &str) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(text, MAX_SECTION_TEXT)}]})
}

/// `title` and `lines` in at most `max_sections` sections within Slack's
/// limit; lines that do not fit are counted in an "…and N more" line.
fn listed(title: &str, lines: &[String], empty: &str, max_sections: usize) -> Vec<Value> {
    if lines.is_empty() {
        return vec![section(&format!("{title}\n{empty}"), None)];
    }
    // Room kept in every section for the "…and N more" line.
    const MORE: usize = 40;
    let mut texts = vec![title.to_string()];
    let mut shown = 0;
    for line in lines {
        let current = texts.last_mut().expect("one section at least");
        if current.chars().count() + 1 + line.chars().count() <= MAX_SECTION_TEXT - MORE {
            current.push('\n');
            current.push_str(line);
        } else if texts.len() < max_sections && line.chars().count() <= MAX_SECTION_TEXT - MORE {
            texts.push(line.clone());
        } else {
            break;
        }
        shown += 1;
    }
    if shown < lines.len() {
        let current = texts.last_mut().expect("one section at least");
        current.push_str(&format!("\n_…and {} more_", lines.len() - shown));
    }
    texts.iter().map(|t| section(t, None)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, hour, 0, 0).unwrap()
    }

    fn schedule(name: &str, enabled: bool, source: SettingsSource) -> HomeSchedule {
        HomeSchedule {
            name: name.into(),
            enabled,
            channel: enabled.then(|| "#agent-demo".to_string()),
            agent: Some("scripted".into()),
            source,
        }
    }

    fn yaml(line: usize) -> SettingsSource {
        SettingsSource::Yaml {
            file: "paradime_schedules.yml".into(),
            line,
        }
    }

    fn session(run_id: &str, status: Status) -> HomeSession {
        HomeSession {
            schedule: "hourly_marts".into(),
            run_id: run_id.into(),
            agent: "scripted".into(),
            status,
            started: at(9),
            pr_url: (status == Status::Fixed)
                .then(|| format!("https://github.com/acme/analytics/pull/{run_id}")),
            thread_url: Some(format!("https://slack.com/archives/C0HEAL/p{run_id}")),
        }
    }

    fn data() -> HomeData {
        HomeData {
            paused: None,
            schedules: vec![
                schedule("hourly_marts", true, yaml(3)),
                schedule(
                    "nightly",
                    false,
                    SettingsSource::Override {
                        by: "U0BOSS".into(),
                        at: at(8),
                        yaml_enabled: true,
                    },
                ),
            ],
            running: vec![session("43", Status::Running)],
            recent: vec![session("43", Status::Running), session("42", Status::Fixed)],
            notice: None,
            updated_at: at(10),
        }
    }

    fn blocks(view: &Value) -> &Vec<Value> {
        view["blocks"].as_array().expect("blocks")
    }

    fn texts(view: &Value) -> Vec<String> {
        blocks(view)
            .iter()
            .map(|b| {
                b.pointer("/text/text")
                    .or_else(|| b.pointer("/elements/0/text"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    fn buttons(view: &Value) -> Vec<(String, String)> {
        blocks(view)
            .iter()
            .filter_map(|b| b.get("accessory"))
            .map(|a| {
                (
                    a["action_id"].as_str().unwrap_or_default().to_string(),
                    a["value"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn schedules_show_their_switch_channel_agent_and_source() {
        let view = home_view(&data(), false);
        assert_eq!(view["type"], "home");
        let texts = texts(&view);
        assert!(texts.contains(
            &"*`hourly_marts`*\n✅ On: heals in #agent-demo with `scripted`\n_from `paradime_schedules.yml`, line 3_"
                .to_string()
        ), "{texts:#?}");
        assert!(texts.contains(
            &"*`nightly`*\n⛔ Off: its failures heal only when someone asks\n_from an override by <@U0BOSS> on 2025-03-01 08:00 UTC (its YAML says on)_"
                .to_string()
        ), "{texts:#?}");
    }

    #[test]
    fn sessions_show_their_outcome_pull_request_and_thread() {
        let texts = texts(&home_view(&data(), false));
        assert!(texts.contains(
            &"*Running now*\n🔄 `hourly_marts` run `43` with `scripted` since 2025-03-01 09:00 UTC · <https://slack.com/archives/C0HEAL/p43|thread>"
                .to_string()
        ), "{texts:#?}");
        assert!(texts.iter().any(|t| t.contains(
            "✅ `hourly_marts` run `42` — fixed · <https://github.com/acme/analytics/pull/42|pull request> · <https://slack.com/archives/C0HEAL/p42|thread> · 2025-03-01 09:00 UTC"
        )), "{texts:#?}");
    }

    #[test]
    fn only_an_admin_gets_buttons() {
        assert_eq!(buttons(&home_view(&data(), false)), []);
        assert_eq!(
            buttons(&home_view(&data(), true)),
            [
                (PAUSE_ACTION.to_string(), String::new()),
                (DISABLE_ACTION.to_string(), "hourly_marts".to_string()),
                (ENABLE_ACTION.to_string(), "nightly".to_string()),
            ]
        );
        let paused = HomeData {
            paused: Some(Paused {
                by: "U0BOSS".into(),
                since: at(7),
            }),
            ..data()
        };
        let view = home_view(&paused, true);
        assert_eq!(buttons(&view)[0].0, RESUME_ACTION);
        assert!(texts(&view)
            .iter()
            .any(|t| t
                .starts_with("⏸ *Paused workspace-wide* by <@U0BOSS> since 2025-03-01 07:00 UTC")));
        assert!(texts(&view).iter().any(|t| t
            .contains("⏸ Paused: heals in #agent-demo with `scripted` once healing is resumed")));
    }

    #[test]
    fn the_answer_to_a_click_comes_first() {
        let view = home_view(
            &HomeData {
                notice: Some("⛔ Only workspace admins can change self-healing.".into()),
                ..data()
            },
            false,
        );
        assert_eq!(
            texts(&view)[1],
            "⛔ Only workspace admins can change self-healing."
        );
    }

    #[test]
    fn stored_markup_is_escaped_and_junk_links_are_dropped() {
        let mut d = data();
        d.schedules[0].name = "<!channel> & co".into();
        d.recent[1].pr_url = Some("https://x|<!here>".into());
        d.recent[1].run_id = "<@U1>".into();
        d.schedules[1].source = SettingsSource::Override {
            by: "<!here>".into(),
            at: at(8),
            yaml_enabled: false,
        };
        let all = texts(&home_view(&d, true)).join("\n");
        assert!(all.contains("*`&lt;!channel&gt; &amp; co`*"), "{all}");
        assert!(
            all.contains("run `&lt;@U1&gt;` — fixed · <https://slack"),
            "{all}"
        );
        assert!(all.contains("override by &lt;!here&gt;"), "{all}");
        assert!(!all.contains("<!"), "{all}");
    }

    #[test]
    fn two_hundred_schedules_and_sessions_stay_within_slacks_limits() {
        let long = "s".repeat(5000);
        let mut d = data();
        d.schedules = (0..200)
            .map(|i| {
                schedule(
                    &format!("schedule_{i}_{}", &long[..i * 20]),
                    i % 2 == 0,
                    yaml(i),
                )
            })
            .collect();
        d.running = (0..200)
            .map(|i| session(&format!("{i}{}", &long[..i * 10]), Status::Running))
            .collect();
        d.recent = (0..RECENT_SESSIONS)
            .map(|i| session(&i.to_string(), Status::Fixed))
            .collect();
        d.notice = Some(long.clone());
        for admin in [false, true] {
            let view = home_view(&d, admin);
            let blocks = blocks(&view);
            assert!(blocks.len() <= MAX_BLOCKS, "{} blocks", blocks.len());
            assert_eq!(blocks.len(), MAX_BLOCKS, "the schedules fill what is left");
            for block in blocks {
                for pointer in ["/text/text", "/elements/0/text"] {
                    if let Some(text) = block.pointer(pointer).and_then(Value::as_str) {
                        assert!(
                            text.chars().count() <= MAX_SECTION_TEXT,
                            "{} chars",
                            text.chars().count()
                        );
                    }
                }
                if let Some(button) = block.get("accessory") {
                    assert!(
                        button["text"]["text"].as_str().unwrap().chars().count() <= MAX_BUTTON_TEXT
                    );
                    assert!(button["action_id"].as_str().unwrap().chars().count() <= MAX_ACTION_ID);
                    let value = button["value"].as_str().unwrap_or_default();
                    assert!(value.chars().count() <= MAX_VALUE);
                }
            }
            let all = texts(&view).join("\n");
            assert!(
                all.contains("more schedules: `/selfheal status` lists them all."),
                "{all}"
            );
            assert!(
                all.contains("more_"),
                "the running list says how many are left out"
            );
            // Every recent session fits.
            assert!(all.contains("run `19` — fixed"), "{all}");
        }
        // A name too long for a button's value gets no button.
        d.schedules = vec![schedule(&long, true, yaml(1))];
        assert_eq!(
            buttons(&home_view(&d, true)).len(),
            1,
            "only the pause button"
        );
    }

    #[test]
    fn the_view_is_one_the_slack_client_sends_unchanged() {
        let view = home_view(&data(), true);
        let typed: slack_morphism::prelude::SlackView =
            serde_json::from_value(view.clone()).expect("slack-morphism reads the view");
        let back = serde_json::to_value(typed).unwrap();
        assert_eq!(back["type"], "home");
        assert_eq!(back["blocks"], view["blocks"]);
    }
}
