//! selfheal's Home tab: whoever opens it sees every schedule — on or off,
//! where it heals, with which agent, and whether the YAML or an override
//! says so — the sessions running and the last ones. Admins also get the
//! buttons that switch healing, and what they change shows at once.

use selfheal::commands::{effective, Source};
use serde_json::Value;

use crate::helpers::*;

const ADMIN: &str = "U0ADMIN";
const ALICE: &str = "U0ALICE";

async fn app_with_people() -> TestApp {
    let app = spawn_app_with(HAPPY_AGENT, &[("SELFHEAL_ADMINS", ADMIN)]).await;
    app.slack.add_user(ADMIN, "admin", false);
    app.slack.add_user(ALICE, "alice", false);
    app
}

/// The texts of a view's blocks (sections and context lines), in order.
fn texts(view: &Value) -> Vec<String> {
    view["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .filter_map(|b| {
            b.pointer("/text/text")
                .or_else(|| b.pointer("/elements/0/text"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

/// The `(action_id, value)` of every button in a view.
fn buttons(view: &Value) -> Vec<(String, String)> {
    view["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .filter_map(|b| b.get("accessory"))
        .map(|a| {
            let field = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            (field("action_id"), field("value"))
        })
        .collect()
}

/// The text of the section about `schedule`.
fn schedule_text(view: &Value, schedule: &str) -> String {
    texts(view)
        .into_iter()
        .find(|t| t.starts_with(&format!("*`{schedule}`*")))
        .unwrap_or_else(|| panic!("no section for {schedule}: {:#?}", texts(view)))
}

/// Waits until the view published for `user` satisfies `pred`.
async fn wait_for_view(app: &TestApp, user: &str, pred: impl Fn(&Value) -> bool) -> Value {
    app.slack
        .wait_until(WAIT, |s| s.home_view(user).filter(|v| pred(v)))
        .await
        .unwrap_or_else(|| {
            panic!(
                "no such view for {user}: {:#?}; views.publish calls: {:#?}",
                app.slack.home_view(user),
                app.slack.calls_to("views.publish")
            )
        })
}

fn says(view: &Value, needle: &str) -> bool {
    texts(view).iter().any(|t| t.contains(needle))
}

#[tokio::test]
async fn an_admin_and_a_member_see_each_schedules_settings_their_source_and_the_last_sessions() {
    // Arrange: a failure healed, and `nightly` switched on by an admin.
    let app = app_with_people().await;
    let ts = app.post_failure(HEALING, "hourly_marts", "71").await;
    app.wait_for_session_end("71").await;
    let enabled = app
        .slack
        .send_slash_command(ADMIN, ALERTS, "/selfheal", "enable nightly")
        .await;
    app.slack
        .wait_until(WAIT, |s| {
            s.acks().into_iter().find(|a| a.envelope_id == enabled)
        })
        .await
        .expect("the command is answered");

    // Act: both open the Home tab.
    app.slack.open_home_tab(ADMIN).await;
    app.slack.open_home_tab(ALICE).await;

    // Assert: the same schedules, sources and sessions for both.
    let finished = format!(
        "✅ `hourly_marts` run `71` — fixed · <https://github.com/acme/analytics/pull/71|pull request> · <https://fake.slack.local/archives/{HEALING}/p{}|thread>",
        ts.replace('.', "")
    );
    let admin = wait_for_view(&app, ADMIN, |v| says(v, "run `71`")).await;
    let member = wait_for_view(&app, ALICE, |v| says(v, "run `71`")).await;
    for view in [&admin, &member] {
        assert_eq!(view["type"], "home");
        assert!(view["blocks"].as_array().unwrap().len() <= 100);
        let hourly = schedule_text(view, "hourly_marts");
        assert!(
            hourly.contains("✅ On: heals in #agent-demo with `scripted`"),
            "{hourly}"
        );
        assert!(
            hourly.contains("_from `paradime_schedules.yml`, line "),
            "{hourly}"
        );
        let nightly = schedule_text(view, "nightly");
        assert!(
            nightly.contains("✅ On: heals in #data-alerts"),
            "{nightly}"
        );
        assert!(
            nightly.contains(&format!("from an override by <@{ADMIN}> on ")),
            "{nightly}"
        );
        assert!(nightly.contains("(its YAML says off)"), "{nightly}");
        assert!(says(view, "▶️ *Self-healing is active.*"));
        assert!(says(view, "*Running now*\nNothing is running."));
        assert!(says(view, &finished), "{:#?}", texts(view));
    }
    // Only the admin gets buttons, each carrying its schedule.
    assert_eq!(buttons(&member), []);
    assert_eq!(
        buttons(&admin),
        [
            ("selfheal_home_pause".to_string(), String::new()),
            (
                "selfheal_home_disable".to_string(),
                "hourly_marts".to_string()
            ),
            ("selfheal_home_disable".to_string(), "nightly".to_string()),
        ]
    );

    // Act: a member clicks a button anyway (a view from before they lost their rights).
    app.slack
        .click_home_button(ALICE, "selfheal_home_disable", Some("hourly_marts"))
        .await;

    // Assert: refused on her view, as the Home tab has no channel; nothing changed.
    let refused = wait_for_view(&app, ALICE, |v| says(v, "Only workspace admins")).await;
    assert!(texts(&refused)[1].starts_with("⛔ Only workspace admins"));
    assert!(app
        .store()
        .audit_log(10)
        .unwrap()
        .iter()
        .all(|a| a.target != "hourly_marts"));
}

#[tokio::test]
async fn an_admins_disable_click_turns_healing_off_and_the_view_follows() {
    // Arrange
    let app = app_with_people().await;
    app.slack.open_home_tab(ADMIN).await;
    wait_for_view(&app, ADMIN, |v| says(v, "hourly_marts")).await;

    // Act: the admin clicks Disable on `hourly_marts`.
    app.slack
        .click_home_button(ADMIN, "selfheal_home_disable", Some("hourly_marts"))
        .await;

    // Assert: the view is published again with the answer and the new setting.
    let view = wait_for_view(&app, ADMIN, |v| {
        says(v, "⛔ Self-healing is off for `hourly_marts`")
    })
    .await;
    let hourly = schedule_text(&view, "hourly_marts");
    assert!(hourly.contains("⛔ Off"), "{hourly}");
    assert!(
        hourly.contains(&format!("from an override by <@{ADMIN}>")),
        "{hourly}"
    );
    assert!(buttons(&view).contains(&(
        "selfheal_home_enable".to_string(),
        "hourly_marts".to_string()
    )));
    let eff = effective(&app.config(), &app.store(), "hourly_marts")
        .unwrap()
        .unwrap();
    assert!(!eff.enabled);
    assert!(matches!(eff.source, Source::Override { ref by, .. } if by == ADMIN));
    let audit = app.store().audit_log(10).unwrap();
    assert_eq!(
        (audit[0].user_id.as_str(), audit[0].action.as_str()),
        (ADMIN, "disable")
    );
    assert!(app.slack.calls_to("views.publish").len() >= 2);

    // Act: a failure now, then healing switched back on and another failure.
    let off = app.post_failure(HEALING, "hourly_marts", "72").await;
    app.slack
        .click_home_button(ADMIN, "selfheal_home_enable", Some("hourly_marts"))
        .await;
    wait_for_view(&app, ADMIN, |v| {
        schedule_text(v, "hourly_marts").contains("✅ On")
    })
    .await;
    let on = app.post_failure(HEALING, "hourly_marts", "73").await;

    // Assert: the failure while off was not healed; the one after was, and
    // the admin's view lists it.
    app.wait_for_reply(HEALING, &on, |m| m.text == HEALING_REPLY)
        .await;
    assert!(
        !app.thread(HEALING, &off)
            .iter()
            .any(|m| m.text == HEALING_REPLY),
        "healed while off"
    );
    assert!(app
        .store()
        .session_for_failure("hourly_marts", "72")
        .unwrap()
        .is_none());
    wait_for_view(&app, ADMIN, |v| says(v, "run `73` — fixed")).await;
}
