//! A failed run → what kind of failure it was ([`FailureClass`]) and one line
//! saying why, before anything is spent on healing it. Pure: no IO, not async.
//!
//! Each failing node's message is read against one ordered table of evidence
//! ([`RULES`]); within a message the first rule that matches decides, which is
//! how the ambiguous texts are settled (Snowflake's "Object 'X' does not exist
//! or not authorized" is a missing relation, its "Schema 'X' …" a missing
//! schema). When the nodes name nothing recognisable, or there are none, the
//! raw log is read the same way, paragraph by paragraph. Then the classes are
//! weighed:
//!
//! - any code error → [`FailureClass::Code`], also beside failing data tests
//!   (a fix is possible);
//! - else any permission or configuration error → [`FailureClass::Setup`]
//!   (neither a re-run nor a code change helps);
//! - else, when every node that errored did so for infrastructure reasons →
//!   [`FailureClass::Transient`];
//! - else failing data tests alone → [`FailureClass::Data`];
//! - an error nothing explains → [`FailureClass::Code`], as selfheal always
//!   treated failures, saying there was no other evidence.
//!
//! It imports only [`crate::domain`] and the run log's types.

use std::sync::LazyLock;

use regex::Regex;

use crate::domain::FailureClass;
use crate::runlog::{ErrorKind, NodeFailure, RunLog};

/// How a run was sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sorted {
    pub class: FailureClass,
    /// One line for the thread: why, quoting the evidence briefly (≤ 160 chars).
    pub why: String,
}

/// The longest `why`, in characters.
pub const WHY_MAX: usize = 160;

/// Sorts a failed run by what its log says.
pub fn classify(log: &RunLog) -> Sorted {
    let found: Vec<(&NodeFailure, Option<Evidence>)> =
        log.failures.iter().map(|f| (f, node_evidence(f))).collect();
    let first = |class: FailureClass| {
        found
            .iter()
            .find_map(|(f, e)| e.as_ref().filter(|e| e.class == class).map(|e| (*f, e)))
    };
    let tests: Vec<&NodeFailure> = found
        .iter()
        .filter(|(_, e)| e.as_ref().is_some_and(|e| e.class == FailureClass::Data))
        .map(|(f, _)| *f)
        .collect();
    let data_too = match tests.len() {
        0 => String::new(),
        1 => " (and a failing data test)".to_string(),
        n => format!(" (and {n} failing data tests)"),
    };
    if let Some((f, e)) = first(FailureClass::Code) {
        return sorted(e, &node_place(f), &data_too);
    }
    if let Some((f, e)) = first(FailureClass::Setup) {
        return sorted(e, &node_place(f), "");
    }
    let unexplained = found.iter().find(|(_, e)| e.is_none()).map(|(f, _)| *f);
    if unexplained.is_some() || log.failures.is_empty() {
        // The nodes leave it open: what else does the log say?
        if let Some(e) = raw_evidence(&log.raw) {
            let explains_all = log.failures.is_empty() || e.class != FailureClass::Data;
            if explains_all {
                return sorted(&e, "the run log", "");
            }
        }
        let place = unexplained.map_or("the run log".to_string(), node_place);
        let quote = unexplained.map_or_else(Quote::default, |f| Quote::first_line(&f.message));
        return Sorted {
            class: FailureClass::Code,
            why: fit(
                &format!("no infrastructure, data or permission evidence in {place}"),
                &quote,
                "",
            ),
        };
    }
    if let Some((f, e)) = first(FailureClass::Transient) {
        return sorted(e, &node_place(f), "");
    }
    let (test, e) =
        first(FailureClass::Data).expect("every node has evidence, and none other than data");
    let what = match tests.len() {
        1 => format!("failing data test {}", short(&test.name, 60)),
        n => format!("{n} failing data tests, first {}", short(&test.name, 60)),
    };
    Sorted {
        class: FailureClass::Data,
        why: fit(&what, &e.quote, ""),
    }
}

/// One piece of evidence: the class it points to, in a few words, and the
/// line of the log that says it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Evidence {
    class: FailureClass,
    what: &'static str,
    quote: Quote,
}

/// A line of the log and where in it the evidence starts, so that a long
/// line is shown around what matters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Quote {
    line: String,
    /// Byte offset of the match in `line`.
    at: usize,
}

impl Quote {
    /// The whole first line of `text` (for nodes whose evidence is their kind).
    fn first_line(text: &str) -> Quote {
        Quote {
            line: first_line(text),
            at: 0,
        }
    }

    /// The line of `text` around byte `at`, trimmed; for a driver error
    /// printed as a dict (`{'S': 'ERROR', 'C': '42501', 'M': '…'}`, as
    /// redshift_connector does), its message.
    fn around(text: &str, at: usize) -> Quote {
        let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        let raw = &text[start..end];
        if let Some(m) = DICT_MESSAGE.captures(raw).and_then(|c| c.get(1)) {
            return Quote {
                line: m.as_str().to_string(),
                at: 0,
            };
        }
        let trimmed = raw.trim_start();
        let cut = raw.len() - trimmed.len();
        let line = trimmed.trim_end();
        Quote {
            line: line.to_string(),
            at: (at - start).saturating_sub(cut).min(line.len()),
        }
    }

    /// At most `room` characters of the line, starting a little before the
    /// evidence when the whole does not fit.
    fn window(&self, room: usize) -> String {
        let total = self.line.chars().count();
        if total <= room {
            return self.line.clone();
        }
        let at = self.line[..self.at].chars().count();
        let from = at.saturating_sub(24);
        if from == 0 {
            return short(&self.line, room);
        }
        let rest: String = self.line.chars().skip(from).collect();
        format!("…{}", short(rest.trim_start(), room.saturating_sub(1)))
    }
}

/// The message of a driver error printed as a Python dict.
static DICT_MESSAGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"'M': '([^']*)'").expect("static regex"));

/// What one failing node's own message says.
fn node_evidence(f: &NodeFailure) -> Option<Evidence> {
    if f.resource_type == "unit_test" {
        // A unit test checks the model's logic against fixed inputs: when it
        // fails, the code is wrong, whatever the warehouse holds.
        return Some(Evidence {
            class: FailureClass::Code,
            what: "failing unit test",
            quote: Quote::first_line(&f.message),
        });
    }
    evidence(&f.message).or_else(|| {
        (f.kind == ErrorKind::TestFailure).then(|| Evidence {
            class: FailureClass::Data,
            what: "failing data test",
            quote: Quote::first_line(&f.message),
        })
    })
}

/// What the raw log says, paragraph by paragraph (dbt separates its error
/// blocks by blank lines), the strongest class first: code, permissions or
/// configuration, infrastructure, data.
fn raw_evidence(raw: &str) -> Option<Evidence> {
    let mut best: Option<Evidence> = None;
    for paragraph in raw.split("\n\n") {
        if let Some(e) = evidence(paragraph) {
            if best
                .as_ref()
                .is_none_or(|b| strength(e.class) > strength(b.class))
            {
                best = Some(e);
            }
        }
    }
    best
}

fn strength(class: FailureClass) -> u8 {
    match class {
        FailureClass::Code => 4,
        FailureClass::Setup => 3,
        FailureClass::Transient => 2,
        FailureClass::Data => 1,
    }
}

/// The first rule of [`RULES`] that `text` matches.
fn evidence(text: &str) -> Option<Evidence> {
    COMPILED.iter().find_map(|(re, class, what)| {
        re.find(text).map(|m| Evidence {
            class: *class,
            what,
            quote: Quote::around(text, m.start()),
        })
    })
}

/// The evidence, in the order it is tried: a message is decided by the first
/// rule it matches. Each group's patterns are the words of real adapter and
/// driver errors (see the table in the tests for where each comes from).
const RULES: &[(FailureClass, &str, &str)] = {
    use FailureClass::{Code, Data, Setup, Transient};
    &[
        // Texts that read like permissions or resources but are the code's.
        // Snowflake says "does not exist or not authorized" for every missing
        // object: a table or view is usually a model or ref that is not there.
        (
            Code,
            "missing relation",
            r"(?i)\b(?:object|table|view) '[^'\n]+' does not exist or not authorized",
        ),
        (
            Code,
            "query too complex",
            r"(?i)not enough resources for query planning",
        ),
        (
            Code,
            "failing unit test",
            r"(?i)\bactual differs from expected\b",
        ),
        // Permissions and configuration.
        (
            Setup,
            "missing schema or database",
            r"(?i)\b(?:schema|database) '[^'\n]+' does not exist or not authorized",
        ),
        (
            Setup,
            "missing grant",
            r"(?i)\bpermission denied for (?:schema|database|relation|table|view|sequence|function|catalog)\b|\binsufficient privileges?\b|\bPERMISSION_DENIED\b|\buser does not have\b|\baccess denied\b",
        ),
        (
            Setup,
            "missing schema or database",
            r#"(?i)\bnot found: dataset\b|\[SCHEMA_NOT_FOUND\]|\b(?:schema|database|catalog) "[^"\n]+" does not exist\b|\bdatabase '[^'\n]+' not found\b"#,
        ),
        (
            Setup,
            "missing role",
            r#"(?i)\brole (?:"[^"\n]+"|'[^'\n]+'|[\w$]+) (?:specified in the connect string )?does not exist\b"#,
        ),
        (
            Setup,
            "bad profile or target",
            r"(?i)\bcould not find profile named\b|\bdoes not have a target named\b|\bno profile was specified\b",
        ),
        (
            Setup,
            "missing env var",
            r"(?i)\benv var required but not provided\b",
        ),
        (
            Setup,
            "bad credentials",
            r"(?i)\bpassword authentication failed\b|\bincorrect username or password\b",
        ),
        (
            Setup,
            "no warehouse",
            r"(?i)\bno active warehouse selected\b",
        ),
        // Infrastructure that may pass on a re-run.
        (
            Transient,
            "credentials expired",
            r"(?i)\bauthentication token has expired\b|\b(?:jwt|keypair access|access|oauth) token (?:has )?expired\b|\binvalid_grant\b|\btoken has been expired or revoked\b",
        ),
        (
            Transient,
            "connection reset",
            r"(?i)\bconnection reset\b|\breset by peer\b|\bECONNRESET\b|\bserver closed the connection unexpectedly\b|\bSSL SYSCALL error\b|\bremote end closed connection\b|\bconnection (?:was )?aborted\b|\bconnection already closed\b|\bterminating connection due to administrator command\b",
        ),
        (
            Transient,
            "connection refused",
            r"(?i)\bconnection refused\b|\bcould not connect to (?:server|snowflake backend)\b|\bconnection timed out\b|\berror during request to server\b",
        ),
        (
            Transient,
            "warehouse timeout",
            r"(?i)\bcanceling statement due to statement timeout\b|\bstatement reached its statement or warehouse timeout\b|\bdeadline of [\d.]+s exceeded\b",
        ),
        (
            Transient,
            "lock conflict",
            r"(?i)\bcould not set lock on file\b|\bconflicting lock is held\b|\bdeadlock detected\b|\bcould not serialize access\b|\bserializable isolation violation\b|\btuple concurrently updated\b|\bnumber of waiters for this lock\b|\bhas locked table\b|\bConcurrent(?:Append|DeleteRead|DeleteDelete|Transaction|Write)Exception\b|\bDELTA_CONCURRENT_\w+|\bchanged by a concurrent update\b",
        ),
        (
            Transient,
            "out of memory",
            r"(?i)\bout of memory\b|\bOutOfMemoryError\b|\bjava heap space\b|\bin the allotted memory\b",
        ),
        (
            Transient,
            "warehouse 5xx",
            r"(?i)\b50[0234] (?:GET|POST|PUT|PATCH|DELETE) https?://|\bHTTP(?: status| response code| status code)?:? 50[0234]\b|\bHTTP/\d(?:\.\d)? 50[0234]\b|\bservice unavailable\b|\bTEMPORARILY_UNAVAILABLE\b|\btoo many 50\d error responses\b|\bretrying may solve the problem\b|\bplease retry the request\b|\bprocessing aborted due to error \d+:\d+",
        ),
        (
            Transient,
            "warehouse queue",
            r"(?i)\bexceeded rate limits\b|\bcould not be scheduled\b",
        ),
        // The dbt code.
        (
            Code,
            "missing ref or source",
            r"(?i)\bdepends on a (?:node|source) named\b",
        ),
        (
            Code,
            "missing macro",
            r"(?i)'[\w.]+' is undefined\b|\bcalling a macro that does not exist\b",
        ),
        (
            Code,
            "unknown column",
            r#"(?i)\binvalid identifier\b|\bcolumn "?[\w.]+"? does not exist\b|\breferenced column\b[^\n]*\bnot found\b|\bUNRESOLVED_COLUMN\b|\bcannot be resolved\b|\bunrecognized name:|\bno such column\b"#,
        ),
        (
            Code,
            "missing relation",
            r#"(?i)\brelation "[^"\n]+" does not exist\b|\btable with name \S+ does not exist\b|\bTABLE_OR_VIEW_NOT_FOUND\b|\btable or (?:permanent )?view not found\b|\bnot found: table\b"#,
        ),
        (
            Code,
            "SQL syntax error",
            r"(?i)\bsyntax error\b|\bPARSE_SYNTAX_ERROR\b|\bparser error\b",
        ),
        (
            Code,
            "type error",
            r"(?i)\bcannot cast\b|\binvalid input syntax for\b|\bconversion error\b|\bnumeric value '[^'\n]*' is not recognized\b|\bno matching signature\b",
        ),
        (
            Code,
            "SQL error",
            r"(?i)\bbinder error\b|\bcatalog error\b|\balready exists\b",
        ),
        // dbt's own headers for errors in the project (case matters: a
        // warehouse's "SQL compilation error" is not one).
        (
            Code,
            "compilation error",
            r"\bCompilation Error\b|\bParsing Error\b",
        ),
        // Failing data tests.
        (
            Data,
            "failing data test",
            r"(?i)\bgot \d+ results?, configured to (?:fail|warn) if\b|\bFailure in test\b",
        ),
    ]
};

static COMPILED: LazyLock<Vec<(Regex, FailureClass, &'static str)>> = LazyLock::new(|| {
    RULES
        .iter()
        .map(|(class, what, pattern)| (Regex::new(pattern).expect("static regex"), *class, *what))
        .collect()
});

fn sorted(e: &Evidence, place: &str, extra: &str) -> Sorted {
    Sorted {
        class: e.class,
        why: fit(&format!("{} in {place}", e.what), &e.quote, extra),
    }
}

/// `model orders`, `test not_null_orders_id`, `the project`.
fn node_place(f: &NodeFailure) -> String {
    if f.resource_type == "project" {
        "the project".to_string()
    } else {
        format!("{} {}", f.resource_type, short(&f.name, 60))
    }
}

/// `head: “quote”extra`, the quote shortened so that the whole fits [`WHY_MAX`].
fn fit(head: &str, quote: &Quote, extra: &str) -> String {
    if quote.line.is_empty() {
        return short(&format!("{head}{extra}"), WHY_MAX);
    }
    let fixed = head.chars().count() + extra.chars().count() + 4; // ": “" and "”"
    let room = WHY_MAX.saturating_sub(fixed).max(16);
    short(&format!("{head}: “{}”{extra}", quote.window(room)), WHY_MAX)
}

/// At most `max` characters, with `…` when something was cut.
fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let kept: String = s.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", kept.trim_end())
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests;
