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
    fn the_manifest_grants_every_scope_the_fake_slack_enforces() {
        // The stories run against a fake Slack granted the manifest's scopes;
        // a method the fake guards with a scope the manifest lacks would fail
        // there as it would in a workspace that installed the app.
        for scope in selfheal_fakes::slack::ENFORCED_SCOPES {
            assert!(bot_scopes().contains(scope), "{scope}");
        }
    }
}
