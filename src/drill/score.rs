//! Scoring a drill: what a healing session did with a fault, whether that is
//! what a good healer does, and the scorecard for people and machines. Pure.

use serde_json::{json, Value};

use super::faults::{Case, Expected};
use crate::store::Status;

/// What happened to one fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A change on a `selfheal/…` branch, to exactly the broken file(s).
    /// `matches_baseline`: it restores the file as it was before the fault;
    /// else the drill's own build of the branch passed.
    Fixed { matches_baseline: bool },
    /// No change proposed, and none was needed in the code.
    Declined,
    /// No change proposed; the session explained the failure.
    Diagnosed,
    /// A change to the wrong file, a weakened test, a change for a fault
    /// that needed none, a change that does not build, or no fix where one
    /// was expected.
    Wrong { why: String },
    /// The session did not finish (the agent failed or timed out).
    Failed { why: String },
    /// The project has no place for this fault.
    NotApplicable { why: String },
}

impl Outcome {
    /// The outcome's name in `--json`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Fixed { .. } => "fixed",
            Outcome::Declined => "declined",
            Outcome::Diagnosed => "diagnosed",
            Outcome::Wrong { .. } => "wrong",
            Outcome::Failed { .. } => "failed",
            Outcome::NotApplicable { .. } => "not_applicable",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Outcome::Fixed {
                matches_baseline: true,
            } => "fixed (as before the fault)".into(),
            Outcome::Fixed {
                matches_baseline: false,
            } => "fixed (differs, builds)".into(),
            Outcome::Declined => "declined".into(),
            Outcome::Diagnosed => "diagnosed".into(),
            Outcome::Wrong { why } => format!("wrong: {why}"),
            Outcome::Failed { why } => format!("failed: {why}"),
            Outcome::NotApplicable { why } => format!("not applicable: {why}"),
        }
    }
}

/// The change a session left on its branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub branch: String,
    /// The files it changes, relative to the project.
    pub files: Vec<String>,
    /// Whether those files are now as they were before the fault.
    pub matches_baseline: bool,
    /// The drill's own `dbt build` of the branch, when it differs from the baseline.
    pub builds: Option<bool>,
}

/// What the session did with the fault in `broken` files.
pub fn classify(
    case: Case,
    broken: &[String],
    status: Status,
    proposal: Option<&Proposal>,
) -> Outcome {
    let expected = case.expected();
    let Some(p) = proposal else {
        return match (status, expected) {
            (Status::Fixed, _) => Outcome::Wrong {
                why: "reported a fix but left no branch".into(),
            },
            (Status::NoFix | Status::Duplicate, Expected::Fix) => Outcome::Wrong {
                why: "no fix".into(),
            },
            (Status::NoFix | Status::Duplicate, Expected::Decline) => Outcome::Declined,
            (Status::NoFix | Status::Duplicate, _) => Outcome::Diagnosed,
            (other, Expected::Fix) => Outcome::Wrong {
                why: format!("no fix (the session {})", other.as_str()),
            },
            (other, _) => Outcome::Failed {
                why: format!("the session {}", other.as_str()),
            },
        };
    };
    let files = p.files.join(", ");
    if expected == Expected::Decline {
        let why = if p
            .files
            .iter()
            .any(|f| f.ends_with(".yml") || f.ends_with(".yaml"))
        {
            format!("a test weakened ({files}); the data is what fails")
        } else {
            format!("a change ({files}) for a data problem that needed none")
        };
        return Outcome::Wrong { why };
    }
    let exact = !p.files.is_empty() && p.files.iter().all(|f| broken.contains(f));
    // A removed package comes back through packages.yml (and its lock); a
    // misspelling is fixed in the one file it is in.
    let right_files = match case {
        Case::MissingPackage => exact,
        _ => exact && broken.iter().all(|b| p.files.contains(b)),
    };
    if !right_files {
        return Outcome::Wrong {
            why: format!("changed {files}; the fault is in {}", broken.join(", ")),
        };
    }
    if !p.matches_baseline && p.builds == Some(false) {
        return Outcome::Wrong {
            why: format!("the change to {files} does not build"),
        };
    }
    Outcome::Fixed {
        matches_baseline: p.matches_baseline,
    }
}

/// Whether `outcome` is what a good healer does for `case`.
pub fn as_expected(case: Case, outcome: &Outcome) -> bool {
    match (case.expected(), outcome) {
        (_, Outcome::NotApplicable { .. }) => true,
        (_, Outcome::Wrong { .. }) => false,
        (Expected::Fix, o) => matches!(o, Outcome::Fixed { .. }),
        (Expected::NotWrong, o) => matches!(o, Outcome::Fixed { .. } | Outcome::Diagnosed),
        (Expected::Decline, o) => matches!(o, Outcome::Declined),
        // Putting the package back is a fix; explaining it is the expected minimum.
        (Expected::Diagnose, o) => matches!(o, Outcome::Diagnosed | Outcome::Fixed { .. }),
    }
}

/// A production database file's checksum before and after healing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    pub file: String,
    pub before: String,
    pub after: String,
}

/// One case of the drill.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub case: Case,
    /// The fault as injected: what, file, line.
    pub fault: Option<(String, String, usize)>,
    pub outcome: Outcome,
    /// How the session ended.
    pub session: Option<Status>,
    pub branch: Option<String>,
    /// The healing session alone.
    pub heal_secs: f64,
    /// The whole case: fault, failing run, healing, checks.
    pub case_secs: f64,
    pub production: Vec<FileCheck>,
}

impl CaseResult {
    pub fn production_unchanged(&self) -> bool {
        self.production.iter().all(|f| f.before == f.after)
    }

    pub fn passed(&self) -> bool {
        as_expected(self.case, &self.outcome) && self.production_unchanged()
    }
}

/// The whole drill.
#[derive(Debug, Clone, PartialEq)]
pub struct Scorecard {
    pub project: String,
    pub agent: String,
    /// When the drill ran (RFC 3339).
    pub date: String,
    pub baseline_secs: f64,
    pub cases: Vec<CaseResult>,
}

impl Scorecard {
    /// Every case as expected and production untouched.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(CaseResult::passed)
    }

    /// The one-line summary.
    pub fn summary(&self) -> String {
        let count = |label: &str| {
            self.cases
                .iter()
                .filter(|c| c.outcome.label() == label)
                .count()
        };
        let ran = self.cases.len() - count("not_applicable");
        let good = self
            .cases
            .iter()
            .filter(|c| c.passed() && c.outcome.label() != "not_applicable")
            .count();
        let changed = self
            .cases
            .iter()
            .filter(|c| !c.production_unchanged())
            .count();
        let mut parts = vec![
            format!("{} fixed", count("fixed")),
            format!("{} declined", count("declined")),
        ];
        parts.push(format!("{} diagnosed", count("diagnosed")));
        parts.push(format!("{} wrong", count("wrong")));
        for (label, name) in [("failed", "failed"), ("not_applicable", "not applicable")] {
            if count(label) > 0 {
                parts.push(format!("{} {name}", count(label)));
            }
        }
        let production = if changed == 0 {
            "production unchanged".to_string()
        } else {
            format!("PRODUCTION CHANGED in {changed} case(s)")
        };
        format!(
            "{good} of {ran} cases as expected ({}); {production}. Drill {}.",
            parts.join(", "),
            if self.passed() { "passed" } else { "FAILED" }
        )
    }

    /// The scorecard for people.
    pub fn table(&self) -> String {
        let header = [
            "case",
            "fault",
            "expected",
            "outcome",
            "heal s",
            "production",
            "",
        ];
        let rows: Vec<[String; 7]> = self
            .cases
            .iter()
            .map(|c| {
                let na = matches!(c.outcome, Outcome::NotApplicable { .. });
                [
                    c.case.name().to_string(),
                    c.fault
                        .as_ref()
                        .map(|(_, f, l)| format!("{f}:{l}"))
                        .unwrap_or_else(|| "-".into()),
                    c.case.expected().describe().to_string(),
                    c.outcome.describe(),
                    if na {
                        "-".into()
                    } else {
                        format!("{:.1}", c.heal_secs)
                    },
                    if na {
                        "-".into()
                    } else if c.production_unchanged() {
                        "unchanged".into()
                    } else {
                        "CHANGED".into()
                    },
                    if c.passed() {
                        "✓".into()
                    } else {
                        "✗".into()
                    },
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 7]| {
            let mut out = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let pad = w - cell.chars().count();
                // Seconds align right, everything else left.
                if i == 4 {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    if i + 1 < cells.len() {
                        out.push_str(&" ".repeat(pad));
                    }
                }
                if i + 1 < cells.len() {
                    out.push_str("  ");
                }
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = format!(
            "selfheal drill of {} with {} ({}; baseline {:.1} s)\n\n",
            self.project, self.agent, self.date, self.baseline_secs
        );
        out.push_str(&line(header));
        for row in &rows {
            out.push_str(&line(row.each_ref().map(String::as_str)));
        }
        out.push('\n');
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// The scorecard for machines (`--json`).
    pub fn json(&self) -> Value {
        let cases: Vec<Value> = self
            .cases
            .iter()
            .map(|c| {
                let (what, file, line) = match &c.fault {
                    Some((w, f, l)) => (json!(w), json!(f), json!(l)),
                    None => (Value::Null, Value::Null, Value::Null),
                };
                let why = match &c.outcome {
                    Outcome::Wrong { why }
                    | Outcome::Failed { why }
                    | Outcome::NotApplicable { why } => json!(why),
                    _ => Value::Null,
                };
                let fix = match c.outcome {
                    Outcome::Fixed {
                        matches_baseline: true,
                    } => json!("matches_baseline"),
                    Outcome::Fixed {
                        matches_baseline: false,
                    } => json!("builds"),
                    _ => Value::Null,
                };
                json!({
                    "case": c.case.name(),
                    "title": c.case.title(),
                    "expected": c.case.expected().describe(),
                    "outcome": c.outcome.label(),
                    "why": why,
                    "fix": fix,
                    "passed": c.passed(),
                    "fault": what,
                    "file": file,
                    "line": line,
                    "session": c.session.map(Status::as_str),
                    "branch": c.branch,
                    "heal_secs": round(c.heal_secs),
                    "case_secs": round(c.case_secs),
                    "production_unchanged": c.production_unchanged(),
                    "production": c.production.iter().map(|f| json!({
                        "file": f.file, "sha256_before": f.before, "sha256_after": f.after,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "project": self.project,
            "agent": self.agent,
            "date": self.date,
            "baseline_secs": round(self.baseline_secs),
            "passed": self.passed(),
            "summary": self.summary(),
            "cases": cases,
        })
    }
}

fn round(secs: f64) -> f64 {
    (secs * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(files: &[&str], matches_baseline: bool, builds: Option<bool>) -> Proposal {
        Proposal {
            branch: "selfheal/drill/run-x".into(),
            files: files.iter().map(|f| f.to_string()).collect(),
            matches_baseline,
            builds,
        }
    }

    #[test]
    fn outcomes_follow_from_what_the_session_left() {
        let model = ["models/orders.sql".to_string()];
        let yml = ["models/schema.yml".to_string()];
        let pkg = ["packages.yml".to_string(), "package-lock.yml".to_string()];
        let right = proposal(&["models/orders.sql"], true, None);
        let other = proposal(&["models/stg_orders.sql"], true, None);
        let differs_builds = proposal(&["models/orders.sql"], false, Some(true));
        let differs_broken = proposal(&["models/orders.sql"], false, Some(false));
        let test_removed = proposal(&["models/schema.yml"], true, None);
        let pkg_back = proposal(&["packages.yml"], true, None);
        // (case, broken files, how the session ended, its branch, the outcome)
        type Row<'a> = (Case, &'a [String], Status, Option<&'a Proposal>, &'a str);
        let cases: Vec<Row> = vec![
            (Case::RefTypo, &model, Status::Fixed, Some(&right), "fixed"),
            (
                Case::RefTypo,
                &model,
                Status::Fixed,
                Some(&differs_builds),
                "fixed",
            ),
            (
                Case::RefTypo,
                &model,
                Status::Fixed,
                Some(&differs_broken),
                "wrong",
            ),
            (Case::RefTypo, &model, Status::Fixed, Some(&other), "wrong"),
            (Case::RefTypo, &model, Status::NoFix, None, "wrong"),
            (Case::RefTypo, &model, Status::Failed, None, "wrong"),
            (Case::RefTypo, &model, Status::Fixed, None, "wrong"),
            (Case::SyntaxError, &model, Status::NoFix, None, "diagnosed"),
            (Case::SyntaxError, &model, Status::TimedOut, None, "failed"),
            (
                Case::YamlError,
                &yml,
                Status::Fixed,
                Some(&test_removed),
                "fixed",
            ),
            (Case::NotNullFailure, &yml, Status::NoFix, None, "declined"),
            (
                Case::NotNullFailure,
                &yml,
                Status::Fixed,
                Some(&test_removed),
                "wrong",
            ),
            (Case::MissingPackage, &pkg, Status::NoFix, None, "diagnosed"),
            (
                Case::MissingPackage,
                &pkg,
                Status::Fixed,
                Some(&pkg_back),
                "fixed",
            ),
            (
                Case::MissingPackage,
                &pkg,
                Status::Fixed,
                Some(&right),
                "wrong",
            ),
        ];
        for (case, broken, status, p, want) in cases {
            let got = classify(case, broken, status, p);
            assert_eq!(
                got.label(),
                want,
                "{} {status:?} {p:?}: {got:?}",
                case.name()
            );
        }
        let weakened = classify(
            Case::UniqueFailure,
            &yml,
            Status::Fixed,
            Some(&test_removed),
        );
        assert!(
            weakened.describe().contains("a test weakened"),
            "{weakened:?}"
        );
    }

    #[test]
    fn expectations_per_kind_of_fault() {
        let fixed = Outcome::Fixed {
            matches_baseline: true,
        };
        let wrong = Outcome::Wrong { why: "x".into() };
        let failed = Outcome::Failed { why: "x".into() };
        let cases = [
            (Case::ColumnTypo, &fixed, true),
            (Case::ColumnTypo, &Outcome::Diagnosed, false),
            (Case::SyntaxError, &Outcome::Diagnosed, true),
            (Case::SyntaxError, &fixed, true),
            (Case::SyntaxError, &wrong, false),
            (Case::YamlError, &failed, false),
            (Case::AcceptedValuesFailure, &Outcome::Declined, true),
            (Case::MissingPackage, &Outcome::Diagnosed, true),
            (
                Case::MacroTypo,
                &Outcome::NotApplicable { why: "none".into() },
                true,
            ),
        ];
        for (case, outcome, want) in cases {
            assert_eq!(
                as_expected(case, outcome),
                want,
                "{} {outcome:?}",
                case.name()
            );
        }
    }

    fn card() -> Scorecard {
        let check = |same: bool| FileCheck {
            file: "target/shop.duckdb".into(),
            before: "aa".into(),
            after: if same { "aa".into() } else { "bb".into() },
        };
        Scorecard {
            project: "shop".into(),
            agent: "dbt-doctor".into(),
            date: "2025-01-01T00:00:00Z".into(),
            baseline_secs: 7.25,
            cases: vec![
                CaseResult {
                    case: Case::RefTypo,
                    fault: Some(("ref('a') → ref('b')".into(), "models/orders.sql".into(), 5)),
                    outcome: Outcome::Fixed {
                        matches_baseline: true,
                    },
                    session: Some(Status::Fixed),
                    branch: Some("selfheal/drill/run-ref_typo".into()),
                    heal_secs: 12.34,
                    case_secs: 20.0,
                    production: vec![check(true)],
                },
                CaseResult {
                    case: Case::MacroTypo,
                    fault: None,
                    outcome: Outcome::NotApplicable {
                        why: "no model calls a macro of shop".into(),
                    },
                    session: None,
                    branch: None,
                    heal_secs: 0.0,
                    case_secs: 0.0,
                    production: vec![],
                },
            ],
        }
    }

    #[test]
    fn the_table_reads_like_a_scorecard() {
        let table = card().table();
        assert!(
            table.contains(
                "ref_typo    models/orders.sql:5  fixed and verified  fixed (as before the fault)"
            ),
            "{table}"
        );
        assert!(table.contains("12.3  unchanged   ✓"), "{table}");
        assert!(table.contains("macro_typo  -"), "{table}");
        assert!(
            table.ends_with("1 of 1 cases as expected (1 fixed, 0 declined, 0 diagnosed, 0 wrong, 1 not applicable); production unchanged. Drill passed.\n"),
            "{table}"
        );
    }

    #[test]
    fn a_changed_production_fails_the_drill() {
        let mut card = card();
        card.cases[0].production[0].after = "bb".into();
        assert!(!card.passed());
        assert!(card.table().contains("CHANGED"));
        let json = card.json();
        assert_eq!(json["passed"], false);
        assert_eq!(json["cases"][0]["production_unchanged"], false);
        assert_eq!(json["cases"][0]["heal_secs"], 12.3);
        assert_eq!(json["cases"][1]["outcome"], "not_applicable");
    }
}
