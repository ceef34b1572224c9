//! The Slack app manifest selfheal ships (`data/slack-app-manifest.yml`),
//! read at compile time so that `selfheal check` and the fake Slack agree
//! with it on the bot's scopes. Pure.

/// The manifest as shipped.
pub const MANIFEST: &str = include_str!("../../data/slack-app-manifest.yml");

/// The bot scopes the manifest lists (`oauth_config.scopes.bot`), in its order.
pub fn bot_scopes() -> Vec<&'static str> {
    scopes_in(MANIFEST)
}

/// The items of the `bot:` list under `scopes:`. A line reader rather than a
/// YAML parser: the manifest is ours, and its layout is tested below.
fn scopes_in(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_scopes = false;
    let mut in_bot = false;
    for line in text.lines() {
        let content = line.split('#').next().unwrap_or("").trim_end();
        let trimmed = content.trim();
        if trimmed.is_empty() {
            continue;
        }
        if trimmed == "scopes:" {
            in_scopes = true;
            continue;
        }
        if in_scopes && trimmed == "bot:" {
            in_bot = true;
            continue;
        }
        if in_bot {
            match trimmed.strip_prefix("- ") {
                Some(scope) => out.push(scope.trim()),
                None => break,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_lists_the_scopes_the_bot_uses() {
        assert_eq!(
            bot_scopes(),
            [
                "channels:history",
                "groups:history",
                "channels:read",
                "groups:read",
                "chat:write",
                "commands",
                "users:read"
            ]
        );
        assert_eq!(
            scopes_in(
                "oauth_config:\n  scopes:\n    bot:\n      - a:b   # why\n      - c\nsettings:\n"
            ),
            ["a:b", "c"]
        );
    }

    #[test]
    fn the_manifest_declares_the_shortcut_and_the_home_tab_the_bot_answers() {
        // Read with slack-morphism's model of Slack's manifest: a key it does
        // not know, or a value of the wrong shape, fails here.
        let m: slack_morphism::prelude::SlackAppManifest =
            serde_saphyr::from_str(MANIFEST).expect("the manifest is a Slack app manifest");
        let features = m.features.expect("features");
        let shortcut = &features.shortcuts.expect("shortcuts")[0];
        assert_eq!(
            shortcut.callback_id.to_string(),
            super::super::render::FIX_SHORTCUT
        );
        assert_eq!(shortcut.name, "Fix with selfheal");
        assert_eq!(serde_json::to_value(&shortcut.ty).unwrap(), "message");
        assert!(shortcut.description.chars().count() <= 150);
        let home = features.app_home.expect("app_home");
        assert_eq!(home.home_tab_enabled, Some(true));
        // The Messages tab is left as it was.
        assert_eq!(home.messages_tab_enabled, None);
        let settings = m.settings.expect("settings");
        let events: Vec<String> = settings
            .event_subscriptions
            .and_then(|e| e.bot_events)
            .unwrap_or_default()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            events,
            ["app_home_opened", "message.channels", "message.groups"]
        );
        assert!(settings.interactivity.expect("interactivity").is_enabled);
        assert_eq!(settings.socket_mode_enabled, Some(true));
    }

    #[test]
    fn the_manifest_grants_every_scope_the_fake_slack_enforces() {
        // The stories run against a fake Slack granted the manifest's scopes;
        // a method the fake guards with a scope the manifest lacks would fail
        // there as it would in a workspace that installed the app.
        for scope in selfheal_fakes::slack::ENFORCED_SCOPES {
            assert!(bot_scopes().contains(scope), "{scope}");
        }
    }
}
