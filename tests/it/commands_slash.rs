//! `/selfheal`: people look at and change self-healing from Slack. Answers
//! arrive ephemerally in the Socket Mode ack; changes are admin-only,
//! stored, audited and announced where healing happens.

use selfheal::commands::{effective, paused, Source};

use crate::helpers::{
    spawn_app, spawn_app_with, TestApp, ALERTS, HAPPY_AGENT, HEALING, HEALING_REPLY, WAIT,
};

const BOSS: &str = "U0BOSS";
const ADMIN: &str = "U0ADMIN";
const ALICE: &str = "U0ALICE";

/// Runs `/selfheal <text>` as `user` and returns the ephemeral answer from the ack.
async fn slash(app: &TestApp, user: &str, text: &str) -> String {
    crate::helpers::slash(&app.slack, ALERTS, user, text).await
}

async fn app_with_people() -> TestApp {
    let app = spawn_app_with(
        HAPPY_AGENT,
        &[("SELFHEAL_ADMINS", &format!("{ADMIN}, U0OTHER"))],
    )
    .await;
    app.slack.add_user(BOSS, "boss", true);
    app.slack.add_user(ADMIN, "admin-by-env", false);
    app.slack.add_user(ALICE, "alice", false);
    app
}

/// Waits until the bot has posted a top-level message containing `needle` in `channel`.
async fn wait_for_announcement(app: &TestApp, channel: &str, needle: &str) {
    let bot = app.slack.bot_user_id().to_string();
    app.slack
        .wait_until(WAIT, |s| {
            s.messages(channel)
                .into_iter()
                .find(|m| m.user.as_deref() == Some(bot.as_str()) && m.text.contains(needle))
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "no announcement containing {needle:?} in {channel}: {:#?}",
                app.slack.messages(channel)
            )
        });
}

fn announcements(app: &TestApp, channel: &str, needle: &str) -> usize {
    app.bot_messages(channel)
        .iter()
        .filter(|m| m.text.contains(needle))
        .count()
}

#[tokio::test]
async fn help_lists_every_subcommand_and_bad_usage_gets_a_short_error_with_help() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let help = slash(&app, ALICE, "help").await;
    let empty = slash(&app, ALICE, "").await;
    let unknown = slash(&app, ALICE, "frobnicate now").await;
    let missing = slash(&app, ALICE, "disable").await;

    // Assert
    for sub in [
        "enable <schedule> [#channel] [agent]",
        "disable <schedule>",
        "reset <schedule>",
        "pause",
        "resume",
        "status [schedule]",
        "history [schedule]",
        "agents",
        "help",
    ] {
        assert!(
            help.contains(&format!("`/selfheal {sub}`")),
            "help lacks {sub}: {help}"
        );
    }
    assert_eq!(empty, help);
    assert!(
        unknown.starts_with("Unknown subcommand `frobnicate`."),
        "{unknown}"
    );
    assert!(
        unknown.contains("`/selfheal status [schedule]`"),
        "{unknown}"
    );
    assert!(
        missing.starts_with("Usage: `/selfheal disable <schedule>`"),
        "{missing}"
    );
}

#[tokio::test]
async fn people_who_are_not_admins_cannot_change_anything() {
    // Arrange
    let app = app_with_people().await;

    // Act
    let answers = [
        slash(&app, ALICE, "disable hourly_marts").await,
        slash(&app, ALICE, "pause").await,
        slash(&app, ALICE, "enable nightly").await,
    ];

    // Assert
    for answer in answers {
        assert!(answer.starts_with("⛔ Only workspace admins"), "{answer}");
    }
    let store = app.store();
    assert!(store.audit_log(10).unwrap().is_empty());
    assert_eq!(store.schedule_override("hourly_marts").unwrap(), None);
    assert!(!paused(&store).unwrap());
    assert!(slash(&app, ALICE, "status")
        .await
        .contains("`hourly_marts`: ✅ on"));
}

#[tokio::test]
async fn an_admin_disables_a_schedule_and_the_override_is_audited_announced_and_survives_a_restart()
{
    // Arrange
    let mut app = app_with_people().await;

    // Act
    let answer = slash(&app, BOSS, "disable hourly_marts").await;

    // Assert: answered, announced in the healing channel, stored, audited.
    assert!(
        answer.starts_with("⛔ Self-healing is off for `hourly_marts`"),
        "{answer}"
    );
    wait_for_announcement(&app, HEALING, "disabled self-healing for `hourly_marts`").await;
    let audit = app.store().audit_log(10).unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].user_id.as_str(),
            audit[0].action.as_str(),
            audit[0].target.as_str()
        ),
        (BOSS, "disable", "hourly_marts")
    );
    assert!(
        audit[0].before.contains(r#""enabled":true"#),
        "{}",
        audit[0].before
    );
    assert!(
        audit[0].after.contains(r#""enabled":false"#),
        "{}",
        audit[0].after
    );

    // Act: a restart.
    app.restart().await;
    // The fake round-robins envelopes over the connections it knows; wait
    // until it has noticed the old process's socket closing, as Slack would.
    app.slack
        .wait_until(WAIT, |s| (s.connections() == 1).then_some(()))
        .await
        .expect("only the new process is connected");

    // Assert: the override beats the YAML, and status says who and what the YAML says.
    let eff = effective(&app.config(), &app.store(), "hourly_marts")
        .unwrap()
        .expect("a known schedule");
    assert!(!eff.enabled);
    assert_eq!(eff.healing_channel, None);
    assert!(matches!(eff.source, Source::Override { ref by, .. } if by == BOSS));
    assert!(effective(&app.config(), &app.store(), "nope")
        .unwrap()
        .is_none());
    let status = slash(&app, ALICE, "status hourly_marts").await;
    assert!(
        status.contains("`hourly_marts`: ⛔ off — override by <@U0BOSS>"),
        "{status}"
    );
    assert!(
        status.contains("(YAML: ✅ on in #agent-demo with `scripted`)"),
        "{status}"
    );
    assert!(!status.contains("nightly"), "{status}");

    // Act: reset.
    let reset = slash(&app, BOSS, "reset hourly_marts").await;
    assert_eq!(
        app.slack.calls_to("users.info").len(),
        2,
        "one users.info per process: the answer is cached"
    );

    // Assert: the YAML decides again.
    assert!(
        reset.contains("follows its YAML again: self-healing is on"),
        "{reset}"
    );
    let eff = effective(&app.config(), &app.store(), "hourly_marts")
        .unwrap()
        .unwrap();
    assert!(eff.enabled);
    assert_eq!(eff.healing_channel.as_deref(), Some("#agent-demo"));
    assert_eq!(eff.agent_name.as_deref(), Some("scripted"));
    assert_eq!(eff.source, Source::Yaml);
    assert_eq!(app.store().audit_log(10).unwrap()[0].action, "reset");
    let again = slash(&app, BOSS, "reset hourly_marts").await;
    assert!(again.contains("has no override"), "{again}");
}

#[tokio::test]
async fn enable_is_validated_like_the_yaml_and_heals_where_it_is_told() {
    // Arrange
    let app = app_with_people().await;

    // Act + Assert: the channel must be one the schedule notifies.
    let wrong_channel = slash(&app, ADMIN, "enable nightly <#C0HEALING1|agent-demo>").await;
    assert!(
        wrong_channel.contains("is not one of `nightly`'s notification channels (#data-alerts)"),
        "{wrong_channel}"
    );
    let wrong_agent = slash(&app, ADMIN, "enable nightly #data-alerts bolt-healer").await;
    assert!(
        wrong_agent.starts_with("Unknown agent `bolt-healer`."),
        "{wrong_agent}"
    );
    let unknown = slash(&app, ADMIN, "enable weekly").await;
    assert!(unknown.contains("Unknown schedule `weekly`"), "{unknown}");
    assert!(app.store().audit_log(10).unwrap().is_empty());

    // Act: Slack's channel-link form, and an agent.
    let ok = slash(
        &app,
        ADMIN,
        "enable  nightly   <#C0ALERTS01|data-alerts>  scripted",
    )
    .await;

    // Assert
    assert!(
        ok.starts_with("✅ Self-healing is on for `nightly`"),
        "{ok}"
    );
    let eff = effective(&app.config(), &app.store(), "nightly")
        .unwrap()
        .unwrap();
    assert!(eff.enabled);
    assert_eq!(eff.healing_channel.as_deref(), Some("#data-alerts"));
    assert_eq!(eff.agent_name.as_deref(), Some("scripted"));
    wait_for_announcement(&app, ALERTS, "enabled self-healing for `nightly`").await;
    let status = slash(&app, ALICE, "status").await;
    assert!(
        status
            .contains("`nightly`: ✅ on in #data-alerts with `scripted` — override by <@U0ADMIN>"),
        "{status}"
    );
    assert!(status.contains("(YAML: ⛔ off)"), "{status}");
    let agents = slash(&app, ALICE, "agents").await;
    assert!(agents.contains("*scripted* — external command"), "{agents}");
    assert!(
        agents.contains("heals `hourly_marts`, `nightly`"),
        "{agents}"
    );

    // Act: a channel by name where the YAML also names it by name, no agent → the YAML's (default) agent.
    let by_name = slash(&app, ADMIN, "enable hourly_marts #Data-Alerts").await;
    assert!(by_name.starts_with("✅"), "{by_name}");
    let eff = effective(&app.config(), &app.store(), "hourly_marts")
        .unwrap()
        .unwrap();
    assert_eq!(eff.healing_channel.as_deref(), Some("#data-alerts"));
    assert_eq!(eff.agent_name.as_deref(), Some("scripted"));
}

#[tokio::test]
async fn pause_and_resume_are_a_workspace_kill_switch_announced_once_per_healing_channel() {
    // Arrange: hourly_marts heals in #agent-demo, nightly in its first failure channel, #data-alerts.
    let app = app_with_people().await;
    assert!(slash(&app, ADMIN, "enable nightly").await.starts_with("✅"));
    assert!(!paused(&app.store()).unwrap());

    // Act
    let pause = slash(&app, ADMIN, "pause").await;

    // Assert
    assert!(
        pause.starts_with("⏸ Self-healing is paused workspace-wide"),
        "{pause}"
    );
    assert!(paused(&app.store()).unwrap());
    wait_for_announcement(&app, HEALING, "paused self-healing for the whole workspace").await;
    let status = slash(&app, ALICE, "status").await;
    assert!(
        status.starts_with("⏸ *Paused workspace-wide* by <@U0ADMIN>"),
        "{status}"
    );
    assert!(slash(&app, ADMIN, "pause").await.contains("already paused"));

    // Act
    let resume = slash(&app, BOSS, "resume").await;

    // Assert
    assert!(resume.starts_with("▶️ Self-healing resumed."), "{resume}");
    assert!(!paused(&app.store()).unwrap());
    wait_for_announcement(&app, HEALING, "resumed self-healing").await;
    // nightly heals in its first failure channel, #data-alerts: announced there too, once each.
    assert_eq!(announcements(&app, HEALING, "paused self-healing"), 1);
    assert_eq!(announcements(&app, ALERTS, "paused self-healing"), 1);
    let actions: Vec<String> = app
        .store()
        .audit_log(10)
        .unwrap()
        .into_iter()
        .map(|a| format!("{} {} {}", a.user_id, a.action, a.target))
        .collect();
    assert_eq!(
        actions,
        [
            "U0BOSS resume workspace",
            "U0ADMIN pause workspace",
            "U0ADMIN enable nightly"
        ]
    );
}

#[tokio::test]
async fn history_lists_a_finished_session_with_its_pull_request_and_thread() {
    // Arrange
    let app = spawn_app().await;
    app.post_failure(HEALING, "hourly_marts", "48213").await;
    let row = app.wait_for_session_end("48213").await;

    // Act
    let history = slash(&app, "U0ANYONE", "history hourly_marts").await;
    let none = slash(&app, "U0ANYONE", "history nightly").await;

    // Assert
    assert!(
        history.contains("`hourly_marts` run 48213 — fixed"),
        "{history}"
    );
    assert!(
        history.contains("<https://github.com/acme/analytics/pull/48213|pull request>"),
        "{history}"
    );
    assert!(history.contains("|thread>"), "{history}");
    assert!(
        history.contains(&row.channel),
        "the thread link names the channel: {history}"
    );
    assert_eq!(none, "No healing sessions yet for `nightly`.");
}

#[tokio::test]
async fn agents_lists_the_definitions_and_the_schedules_that_use_them() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let agents = slash(&app, "U0ANYONE", "agents").await;

    // Assert
    assert!(
        agents.contains("*scripted* — external command, limit 300s — heals `hourly_marts`"),
        "{agents}"
    );
    assert!(
        agents.contains("*dbt-doctor* (default) — built-in `dbt-doctor` — used by no schedule"),
        "{agents}"
    );
    assert!(
        !agents.contains("bash"),
        "the command line stays private: {agents}"
    );
}

#[tokio::test]
async fn overrides_and_the_kill_switch_decide_what_gets_healed() {
    let app = spawn_app_with(HAPPY_AGENT, &[("SELFHEAL_ADMINS", "U0BOSS")]).await;

    // Disabled by an admin: a failure gets no healing.
    slash(&app, "U0BOSS", "disable hourly_marts").await;
    let off = app.post_failure(HEALING, "hourly_marts", "900").await;
    // Re-enabled but paused: still nothing.
    slash(&app, "U0BOSS", "reset hourly_marts").await;
    slash(&app, "U0BOSS", "pause").await;
    let paused_ts = app.post_failure(HEALING, "hourly_marts", "901").await;
    // Resumed: healed again.
    slash(&app, "U0BOSS", "resume").await;
    let on = app.post_failure(HEALING, "hourly_marts", "902").await;

    app.wait_for_reply(HEALING, &on, |m| m.text == HEALING_REPLY)
        .await;
    for ts in [off, paused_ts] {
        assert!(
            !app.thread(HEALING, &ts)
                .iter()
                .any(|m| m.text == HEALING_REPLY),
            "healed while off"
        );
    }
    let store = app.store();
    assert!(store
        .session_for_failure("hourly_marts", "900")
        .unwrap()
        .is_none());
    assert!(store
        .session_for_failure("hourly_marts", "901")
        .unwrap()
        .is_none());
}
