//! Scrubs secrets from text before it leaves the process.
//!
//! Everything an agent prints, and everything selfheal writes to Slack or SQLite
//! that came from outside, passes through a [`Redactor`]. It knows two kinds of
//! secret: token-shaped strings (Slack, GitHub, cloud keys, passwords inside
//! connection strings or `key=value` pairs) and the exact values of environment
//! variables the operator declared secret. This module does no IO.

use std::sync::LazyLock;

use regex::Regex;

/// What a secret is replaced with.
pub const MASK: &str = "[REDACTED]";

/// Secrets shorter than this are not matched by value: redacting every "1" or
/// "dev" in a log would destroy it without protecting anything.
const MIN_SECRET_LEN: usize = 6;

static TOKEN_PATTERNS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        // Slack bot, user, app-level and refresh tokens.
        r"\bxox[abposre]-[0-9A-Za-z-]{8,}",
        r"\bxapp-[0-9A-Za-z-]{8,}",
        // GitHub personal, OAuth, app and fine-grained tokens.
        r"\bgh[pousr]_[0-9A-Za-z]{20,}",
        r"\bgithub_pat_[0-9A-Za-z_]{20,}",
        // GitLab personal access tokens.
        r"\bglpat-[0-9A-Za-z_-]{20,}",
        // AWS access key ids.
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
        // Google API keys.
        r"\bAIza[0-9A-Za-z_-]{35}",
        // OpenAI-style and Anthropic-style API keys.
        r"\bsk-(?:ant-|proj-)?[0-9A-Za-z_-]{20,}",
        // Bearer tokens in headers that were logged.
        r"(?i)\bbearer\s+[0-9A-Za-z._~+/=-]{12,}",
        // Private key blocks.
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    ]
    .iter()
    .map(|p| Regex::new(p).expect("static regex"))
    .collect()
});

/// `scheme://user:password@host`: the password goes, the rest stays readable.
static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+:)[^\s@/]+(?P<post>@)")
        .expect("static regex")
});

/// `password=...`, `"api_key": "..."`, `SECRET: ...` and friends.
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(?P<key>\b[a-z0-9_.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|private[_-]?key|access[_-]?key)[a-z0-9_.-]*["']?\s*[:=]\s*["']?)(?P<value>[^\s"',;&]{4,})"#,
    )
    .expect("static regex")
});

/// Replaces secrets in text with [`MASK`].
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Exact secret values, longest first so that a secret containing another is
    /// masked whole.
    values: Vec<String>,
}

impl Redactor {
    /// A redactor that also masks these exact values (tokens, passwords from the
    /// environment). Short and empty values are ignored.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Self { values }
    }

    /// The text with every secret replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), MASK);
            }
        }
        for re in TOKEN_PATTERNS.iter() {
            if re.is_match(&out) {
                out = re.replace_all(&out, MASK).into_owned();
            }
        }
        out = URL_PASSWORD
            .replace_all(&out, format!("${{pre}}{MASK}${{post}}").as_str())
            .into_owned();
        out = KEY_VALUE
            .replace_all(&out, |caps: &regex::Captures| {
                if caps["value"].contains(MASK) {
                    caps[0].to_string()
                } else {
                    format!("{}{MASK}", &caps["key"])
                }
            })
            .into_owned();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        let r = Redactor::new(["hunter2-is-secret".to_string(), "abc".to_string()]);
        assert_eq!(r.redact(input), expected, "input: {input}");
    }

    #[test]
    fn secrets_are_masked_and_the_rest_is_kept() {
        check("nothing here", "nothing here");
        check(
            "token xoxb-1234-5678-abcdefgh leaked",
            "token [REDACTED] leaked",
        );
        check("xapp-1-A111-222-abcdef0123", "[REDACTED]");
        check(
            "push with ghp_abcdefghijklmnopqrstuvwxyz0123",
            "push with [REDACTED]",
        );
        check(
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
            "[REDACTED]",
        );
        check("key AKIAIOSFODNN7EXAMPLE used", "key [REDACTED] used");
        check(
            "postgres://loader:s3cr3tpw@db.internal:5432/analytics",
            "postgres://loader:[REDACTED]@db.internal:5432/analytics",
        );
        check("password=correcthorse rest", "password=[REDACTED] rest");
        check(
            r#"{"api_key": "abcd1234efgh"}"#,
            r#"{"api_key": "[REDACTED]"}"#,
        );
        check(
            "DBT_ENV_SECRET_TOKEN: zzzzzz99",
            "DBT_ENV_SECRET_TOKEN: [REDACTED]",
        );
        check(
            "the value hunter2-is-secret appears",
            "the value [REDACTED] appears",
        );
        check("short values like abc stay", "short values like abc stay");
        check(
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload",
            "Authorization: [REDACTED]",
        );
        check("sk-proj-abcdefghijklmnopqrstuvwx", "[REDACTED]");
    }

    #[test]
    fn a_private_key_block_is_masked_whole() {
        let r = Redactor::default();
        let text = "before\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\nabc\n-----END RSA PRIVATE KEY-----\nafter";
        assert_eq!(r.redact(text), "before\n[REDACTED]\nafter");
    }
}
