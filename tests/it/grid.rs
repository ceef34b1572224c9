//! Enterprise Grid (issue 17): an app installed once for a whole org gets
//! events whose `authorizations[0].team_id` is `null` (payloads as in
//! bolt-python's tests/scenario_tests/test_events_org_apps.py). The bot heals
//! through such an install, in every workspace of the org, and no envelope is
//! lost to its shape: each is acked first, then read or skipped.

use std::collections::HashSet;

use selfheal::store::Status;
use serde_json::{json, Value};

use crate::helpers::*;

/// The org of the stories, and two of its workspaces.
const ORG: &str = "E0GRIDORG1";
const WORKSPACE_1: &str = "T0GRIDWS01";
const WORKSPACE_2: &str = "T0GRIDWS02";
const ADMIN: &str = "U0ADMIN";

#[tokio::test]
async fn an_org_wide_install_whose_events_carry_no_team_heals_a_failure() {
    // Arrange: the app is installed org-wide; its events say `team_id: null`.
    let app = spawn_app().await;
    app.slack.set_org_install(ORG);

    // Act
    let ts = app.post_failure(HEALING, "hourly_marts", "1701").await;

    // Assert
    let row = app.wait_for_session_end("1701").await;
    assert_eq!(row.status, Status::Fixed, "{row:#?}");
    app.wait_for_reply(HEALING, &ts, |m| m.text == HEALING_REPLY)
        .await;
    app.wait_for_reply(HEALING, &ts, |m| {
        m.text
            .starts_with("✅ Fix for run `1701` is ready for review")
    })
    .await;
}

#[tokio::test]
async fn two_workspaces_of_one_org_each_heal_their_own_failure_in_their_own_thread() {
    // Arrange: one org-wide install; #agent-demo is in one workspace,
    // #data-alerts in another, and `nightly` is told to heal in the latter.
    let app = spawn_app_with(HAPPY_AGENT, &[("SELFHEAL_ADMINS", ADMIN)]).await;
    app.slack.add_user(ADMIN, "admin", false);
    app.slack.set_org_install(ORG);
    app.slack.set_channel_team(HEALING, WORKSPACE_1);
    app.slack.set_channel_team(ALERTS, WORKSPACE_2);
    let enabled = slash(
        &app.slack,
        ALERTS,
        ADMIN,
        "enable nightly #data-alerts scripted",
    )
    .await;
    assert!(enabled.starts_with('✅'), "{enabled}");

    // Act: a failure in each workspace.
    let (first, second) = tokio::join!(
        app.post_failure(HEALING, "hourly_marts", "1711"),
        app.post_failure(ALERTS, "nightly", "1712"),
    );

    // Assert: each is healed, in its own workspace's thread, and only there.
    for (channel, ts, run, other) in [
        (HEALING, &first, "1711", "1712"),
        (ALERTS, &second, "1712", "1711"),
    ] {
        let row = app.wait_for_session_end(run).await;
        assert_eq!(row.status, Status::Fixed, "{row:#?}");
        app.wait_for_reply(channel, ts, |m| {
            m.text
                .starts_with(&format!("✅ Fix for run `{run}` is ready for review"))
        })
        .await;
        let thread = app.thread(channel, ts);
        assert_eq!(
            thread.iter().filter(|m| m.text == HEALING_REPLY).count(),
            1,
            "{thread:#?}"
        );
        assert!(
            !thread
                .iter()
                .any(|m| m.text.contains(&format!("`{other}`"))),
            "run {other} leaked into {run}'s thread: {thread:#?}"
        );
    }
    assert_eq!(app.store().sessions(10).unwrap().len(), 2);
}

#[tokio::test]
async fn a_payload_no_model_knows_is_acked_and_skipped_and_the_next_failure_still_heals() {
    // Arrange
    let app = spawn_app().await;
    app.slack
        .wait_until(WAIT, |s| (s.connections() > 0).then_some(()))
        .await
        .expect("the bot connects");

    // Act: envelopes of every odd shape, then a failure.
    let odd = odd_envelopes();
    for envelope in &odd {
        app.slack.send_envelope(envelope.clone()).await;
    }
    let ts = app.post_failure(HEALING, "hourly_marts", "1721").await;

    // Assert: every odd envelope was acked by its id; the failure healed.
    wait_acked(&app, &odd).await;
    let row = app.wait_for_session_end("1721").await;
    assert_eq!(row.status, Status::Fixed, "{row:#?}");
    app.wait_for_reply(HEALING, &ts, |m| m.text == HEALING_REPLY)
        .await;
}

/// Envelopes whose payloads slack-morphism's models reject or selfheal does
/// not know: an org-app message (`team_id: null`) in a channel nobody heals,
/// org-level events with no workspace at all (bolt-python's
/// `team_access_granted`), payloads of the wrong type, an interaction and an
/// envelope kind that do not exist (yet).
pub fn odd_envelopes() -> Vec<Value> {
    let org_message = json!({
        "token": "verification-token",
        "team_id": WORKSPACE_1,
        "enterprise_id": ORG,
        "api_app_id": "A0SELFHEAL",
        "event": {
            "client_msg_id": "0186b75a-2ad4-4f36-8ccc-18608b0ac5d1",
            "type": "message",
            "text": "<@W222>",
            "user": "W111",
            "ts": "1606810819.000800",
            "team": WORKSPACE_1,
            "channel": OTHER,
            "event_ts": "1606810819.000800",
            "channel_type": "channel"
        },
        "type": "event_callback",
        "event_id": "Ev0GRID0001",
        "event_time": 1606810819,
        "authed_users": [],
        "authorizations": [{
            "enterprise_id": ORG,
            "team_id": null,
            "user_id": "W222",
            "is_bot": true,
            "is_enterprise_install": true
        }],
        "is_ext_shared_channel": false,
        "event_context": "1-message-T111-C111"
    });
    let team_access_granted = json!({
        "token": "verification-token",
        "enterprise_id": ORG,
        "api_app_id": "A0SELFHEAL",
        "event": {
            "type": "team_access_granted",
            "team_ids": [WORKSPACE_1, WORKSPACE_2],
            "event_ts": "111.222"
        },
        "type": "event_callback",
        "event_id": "Ev0GRID0002",
        "event_time": 1606805974
    });
    let envelope = |n: u32, kind: &str, payload: Value| {
        json!({
            "envelope_id": format!("odd-envelope-{n}"),
            "type": kind,
            "payload": payload,
            "accepts_response_payload": false,
            "retry_attempt": 0,
            "retry_reason": ""
        })
    };
    vec![
        envelope(1, "events_api", org_message),
        envelope(2, "events_api", team_access_granted),
        envelope(3, "events_api", Value::Null),
        envelope(4, "events_api", json!("not an object")),
        envelope(
            5,
            "events_api",
            json!({ "type": "event_callback", "event": [1, 2] }),
        ),
        envelope(
            6,
            "interactive",
            json!({ "type": "a_future_interaction", "team": null }),
        ),
        envelope(
            7,
            "interactive",
            json!({ "type": "block_actions", "user": null, "actions": "x" }),
        ),
        envelope(8, "a_future_kind", json!({ "anything": [null] })),
        json!({ "envelope_id": "odd-envelope-9", "type": "events_api" }),
    ]
}

/// Waits until every envelope in `envelopes` was acked by its `envelope_id`.
pub async fn wait_acked(app: &TestApp, envelopes: &[Value]) {
    let ids: HashSet<String> = envelopes
        .iter()
        .filter_map(|e| e["envelope_id"].as_str().map(str::to_string))
        .collect();
    let unacked = |s: &selfheal_fakes::slack::FakeSlack| {
        let acked: HashSet<String> = s.acks().into_iter().map(|a| a.envelope_id).collect();
        ids.difference(&acked).cloned().collect::<Vec<_>>()
    };
    let done = app
        .slack
        .wait_until(WAIT, |s| unacked(s).is_empty().then_some(()))
        .await;
    assert!(done.is_some(), "never acked: {:?}", unacked(&app.slack));
}

#[tokio::test]
async fn an_org_admin_may_change_healing_in_any_workspace_and_a_member_may_not() {
    // Arrange: an org admin who administers no workspace, and a member.
    let app = spawn_app().await;
    app.slack.set_org_install(ORG);
    app.slack.add_org_admin("U0ORGADMIN", "org-admin", ORG);
    app.slack.add_user("U0MEMBER", "member", false);

    // Act
    let member = slash(&app.slack, ALERTS, "U0MEMBER", "disable hourly_marts").await;
    let org_admin = slash(&app.slack, ALERTS, "U0ORGADMIN", "disable hourly_marts").await;

    // Assert
    assert!(member.starts_with("⛔ Only workspace admins"), "{member}");
    assert!(
        org_admin.starts_with("⛔ Self-healing is off for `hourly_marts`"),
        "{org_admin}"
    );
    assert_eq!(app.store().audit_log(10).unwrap().len(), 1);
}

/// Both workspaces have a `#data-alerts`. `eu_nightly` names its channel
/// with the workspace's name, `us_nightly` with the workspace's id.
const PER_WORKSPACE: &str = r##"
version: 1
schedules:
  - name: eu_nightly
    schedule: "0 3 * * *"
    environment: production
    commands:
      - dbt build
    notifications:
      slack_channels:
        - channel: "Acme EU/#data-alerts"
          events: [failed]
    self_healing:
      enabled: true
      agent_name: scripted
  - name: us_nightly
    schedule: "0 3 * * *"
    environment: production
    commands:
      - dbt build
    notifications:
      slack_channels:
        - channel: "T0GRIDWS02/#data-alerts"
          events: [failed]
    self_healing:
      enabled: true
      agent_name: scripted
"##;
const EU_ALERTS: &str = "C0EUALERTS";
const US_ALERTS: &str = "C0USALERTS";

/// An org-wide install, from its start, with a `#data-alerts` in each of two
/// workspaces ("Acme EU" and "Acme US") and [`PER_WORKSPACE`]'s schedules.
async fn two_workspaces_with_one_channel_name() -> TestApp {
    let mut app = spawn_app().await;
    app.stop().await;
    app.slack.set_org_install(ORG);
    for (channel, workspace, name) in [
        (EU_ALERTS, WORKSPACE_1, "Acme EU"),
        (US_ALERTS, WORKSPACE_2, "Acme US"),
    ] {
        app.slack.add_channel(channel, "data-alerts");
        app.slack.set_channel_team(channel, workspace);
        app.slack.name_team(workspace, name);
    }
    std::fs::write(app.path().join("paradime_schedules.yml"), PER_WORKSPACE).unwrap();
    app.start().await;
    app
}

#[tokio::test]
async fn a_channel_named_with_its_workspace_heals_there_and_only_there() {
    // Arrange
    let app = two_workspaces_with_one_channel_name().await;

    // Act: each schedule fails in its own workspace's #data-alerts, and a copy
    // of eu_nightly's failure is posted in the US workspace's #data-alerts.
    let eu = app.post_failure(EU_ALERTS, "eu_nightly", "1731").await;
    let us = app.post_failure(US_ALERTS, "us_nightly", "1732").await;
    let stray = app.post_failure(US_ALERTS, "eu_nightly", "1733").await;

    // Assert: each healed in its own workspace's thread.
    for (channel, ts, run) in [(EU_ALERTS, &eu, "1731"), (US_ALERTS, &us, "1732")] {
        let row = app.wait_for_session_end(run).await;
        assert_eq!(row.status, Status::Fixed, "{row:#?}");
        assert_eq!(row.channel, channel, "run {run} healed in its workspace");
        app.wait_for_reply(channel, ts, |m| {
            m.text
                .starts_with(&format!("✅ Fix for run `{run}` is ready for review"))
        })
        .await;
    }
    // The same name in the other workspace is not eu_nightly's channel.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let thread = app.thread(US_ALERTS, &stray);
    assert_eq!(
        thread.len(),
        1,
        "nobody answered the stray copy: {thread:#?}"
    );
    let runs: Vec<String> = app
        .store()
        .sessions(10)
        .unwrap()
        .into_iter()
        .map(|s| s.run_id)
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(!runs.contains(&"1733".to_string()), "{runs:?}");
}

#[tokio::test]
async fn a_workspace_admin_may_change_what_heals_in_their_workspace_only() {
    // Arrange: an admin of the EU workspace.
    let app = two_workspaces_with_one_channel_name().await;
    app.slack.add_user("U0EUADMIN", "eu-admin", true);
    app.slack.set_user_team("U0EUADMIN", WORKSPACE_1);

    // Act
    let own = slash(&app.slack, EU_ALERTS, "U0EUADMIN", "disable eu_nightly").await;
    let other = slash(&app.slack, EU_ALERTS, "U0EUADMIN", "disable us_nightly").await;
    let pause = slash(&app.slack, EU_ALERTS, "U0EUADMIN", "pause").await;

    // Assert
    assert!(
        own.starts_with("⛔ Self-healing is off for `eu_nightly`"),
        "{own}"
    );
    assert!(
        other.starts_with("⛔ This schedule heals in a workspace you do not administer"),
        "{other}"
    );
    assert!(
        pause.starts_with("⛔ Pausing and resuming reach every workspace"),
        "{pause}"
    );
    assert_eq!(app.store().audit_log(10).unwrap().len(), 1);
}
