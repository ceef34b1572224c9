//! How a session ends: the `finish` tool, a plain final answer, and the rule
//! that turns either into an outcome. Pure; no IO.
//!
//! The model's word does not decide alone. What decides is whether it changed
//! files: a change is reported as `fixed`, so that the bot verifies it with
//! dbt and proposes it only when the build passes (and never otherwise); no
//! change means the answer is a diagnosis. A `FIXED:`/`NO_FIX:` prefix is
//! still read when a model writes one, but nothing depends on it: no fix is
//! lost for a missing word.

use serde_json::{json, Map, Value};

use crate::domain::Outcome;

/// The name of the tool that ends the session.
pub const FINISH: &str = "finish";

/// What the model says about its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Fixed,
    NoFix,
    NeedsHuman,
    /// A plain answer that names no status.
    Unstated,
}

/// A `finish` call's arguments, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub claim: Claim,
    pub root_cause: String,
    pub summary: String,
    /// As the model gave it (`0.8`, `"high"`), for people to weigh.
    pub confidence: Option<String>,
}

/// The `finish` tool as offered to the model.
pub fn schema() -> Value {
    json!({"type": "function", "function": {
        "name": FINISH,
        "description": "End the session and report. Call it once, when you are done (and only then). \
                        status: `fixed` if you changed files to fix the failure (the bot then verifies your \
                        change with dbt and proposes it), `no_fix` if you changed nothing (a data problem, an \
                        open pull request, not enough information), `needs_human` if a person must decide or act.",
        "parameters": {"type": "object", "properties": {
            "status": {"type": "string", "enum": ["fixed", "no_fix", "needs_human"]},
            "root_cause": {"type": "string", "description": "why the run failed, in one or two sentences"},
            "summary": {"type": "string", "description": "what you changed and how you checked it, or the concrete fix a human should make"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1, "description": "optional: how sure you are, 0 to 1"}
        }, "required": ["status", "root_cause", "summary"]}
    }})
}

/// Reads a `finish` call's arguments; the error is a tool result the model
/// can act on.
pub fn parse(args: &Map<String, Value>) -> Result<Finish, String> {
    let text = |k: &str| {
        args.get(k)
            .and_then(Value::as_str)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let status = text("status").to_ascii_lowercase().replace([' ', '-'], "_");
    let claim = match status.as_str() {
        "fixed" | "fix" | "success" => Claim::Fixed,
        "no_fix" | "nofix" | "not_fixed" | "diagnosed" => Claim::NoFix,
        "needs_human" | "human" | "needs_a_human" => Claim::NeedsHuman,
        "" => {
            return Err("missing required argument `status` (fixed, no_fix or needs_human)".into())
        }
        other => {
            return Err(format!(
                "`status` must be fixed, no_fix or needs_human, not `{other}`"
            ))
        }
    };
    let (root_cause, summary) = (text("root_cause"), text("summary"));
    if root_cause.is_empty() && summary.is_empty() {
        return Err("give at least `root_cause` or `summary`: what you found".into());
    }
    let confidence = match args.get("confidence") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    };
    Ok(Finish {
        claim,
        root_cause,
        summary,
        confidence,
    })
}

impl Finish {
    /// The report in the model's words.
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        if !self.root_cause.is_empty() {
            parts.push(format!("Root cause: {}", self.root_cause));
        }
        if !self.summary.is_empty() {
            parts.push(self.summary.clone());
        }
        if let Some(c) = &self.confidence {
            parts.push(format!("(confidence: {c})"));
        }
        parts.join("\n")
    }
}

/// A plain final answer: its claim (from a `FIXED:`/`NO_FIX:` prefix, when
/// there is one) and its text without the prefix.
pub fn plain(answer: &str) -> (Claim, String) {
    match super::prompt::verdict(answer) {
        Some((true, rest)) => (Claim::Fixed, rest),
        Some((false, rest)) => (Claim::NoFix, rest),
        None => (Claim::Unstated, answer.trim().to_string()),
    }
}

/// The outcome and the summary to report, from what the model claims, in its
/// words, and the files it changed.
pub fn decide(claim: Claim, text: &str, changed: &[String]) -> (Outcome, String) {
    let text = text.trim();
    let files = changed.join(", ");
    match (claim, changed.is_empty()) {
        // A change is always handed to the bot, which verifies it: only a
        // change whose build passes is ever proposed.
        (Claim::Fixed | Claim::Unstated, false) => (
            Outcome::Fixed,
            if text.is_empty() {
                format!("The model changed {files} and gave no explanation.")
            } else {
                text.to_string()
            },
        ),
        (Claim::Fixed, true) => (
            Outcome::NoFix,
            format!("{text}\n(The model said it fixed the run but changed no file, so there is nothing to propose.)"),
        ),
        (Claim::Unstated, true) if text.is_empty() => {
            (Outcome::NoFix, "The model ended without an answer.".into())
        }
        (Claim::Unstated | Claim::NoFix, _) => (Outcome::NoFix, text.to_string()),
        (Claim::NeedsHuman, _) => (
            Outcome::NoFix,
            if text.is_empty() {
                "A human is needed: the model gave no details.".into()
            } else {
                format!("A human is needed: {text}")
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_follows_the_change_not_the_word() {
        let some = vec!["models/marts/orders.sql".to_string()];
        let none: Vec<String> = vec![];
        let cases: &[(Claim, &str, &[String], Outcome, &str)] = &[
            // (claim, text, changed files, outcome, summary)
            (Claim::Fixed, "renamed the ref", &some, Outcome::Fixed, "renamed the ref"),
            (Claim::Unstated, "Root cause: … Fix: changed … via write_file", &some, Outcome::Fixed,
             "Root cause: … Fix: changed … via write_file"),
            (Claim::Unstated, "", &some, Outcome::Fixed, "The model changed models/marts/orders.sql and gave no explanation."),
            (Claim::Unstated, "a data problem in raw_orders", &none, Outcome::NoFix, "a data problem in raw_orders"),
            (Claim::Unstated, "  ", &none, Outcome::NoFix, "The model ended without an answer."),
            (Claim::Fixed, "done", &none, Outcome::NoFix,
             "done\n(The model said it fixed the run but changed no file, so there is nothing to propose.)"),
            (Claim::NoFix, "an open PR has it", &none, Outcome::NoFix, "an open PR has it"),
            // An explicit no_fix is respected; the bot says what was left unproposed.
            (Claim::NoFix, "tried, unsure", &some, Outcome::NoFix, "tried, unsure"),
            (Claim::NeedsHuman, "the source team must backfill", &none, Outcome::NoFix,
             "A human is needed: the source team must backfill"),
            (Claim::NeedsHuman, "", &some, Outcome::NoFix, "A human is needed: the model gave no details."),
        ];
        for (claim, text, changed, outcome, summary) in cases {
            let got = decide(*claim, text, changed);
            assert_eq!(
                got,
                (*outcome, summary.to_string()),
                "{claim:?} {text:?} {changed:?}"
            );
        }
    }

    #[test]
    fn a_plain_answer_keeps_accepting_the_old_prefixes() {
        let cases: &[(&str, Claim, &str)] = &[
            ("FIXED: renamed the ref", Claim::Fixed, "renamed the ref"),
            ("**NO_FIX:** data", Claim::NoFix, "data"),
            (
                "Root cause: a typo.",
                Claim::Unstated,
                "Root cause: a typo.",
            ),
        ];
        for (answer, claim, text) in cases {
            assert_eq!(plain(answer), (*claim, text.to_string()), "{answer:?}");
        }
    }

    #[test]
    fn finish_arguments_are_checked() {
        let args = |v: Value| v.as_object().cloned().unwrap();
        let ok = parse(&args(
            json!({"status": "needs_human", "root_cause": "rc", "summary": "s", "confidence": 0.4}),
        ))
        .unwrap();
        assert_eq!(ok.claim, Claim::NeedsHuman);
        assert_eq!(ok.text(), "Root cause: rc\ns\n(confidence: 0.4)");
        assert_eq!(
            parse(&args(json!({"status": "Fixed", "summary": "s"})))
                .unwrap()
                .claim,
            Claim::Fixed
        );
        assert_eq!(
            parse(&args(json!({"status": "no-fix", "root_cause": "r"})))
                .unwrap()
                .text(),
            "Root cause: r"
        );
        for (bad, why) in [
            (
                json!({"root_cause": "r"}),
                "missing required argument `status`",
            ),
            (json!({"status": "done", "summary": "s"}), "not `done`"),
            (
                json!({"status": "fixed"}),
                "at least `root_cause` or `summary`",
            ),
        ] {
            let err = parse(&args(bad)).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        assert_eq!(schema()["function"]["name"], FINISH);
    }
}
