//! dbt artifacts and console output → [`RunLog`]. Pure.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::{Artifacts, ErrorKind, NodeFailure, RunLog};

/// How much raw text a run log keeps for agents and diagnoses.
const RAW_MAX: usize = 48 * 1024;

static TIMESTAMP_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    // Console lines start with `04:21:33  `; dbt.log lines with
    // `[0m04:21:33.123456 [info ] [MainThread]: `.
    Regex::new(r"^(?:\x1b\[[0-9;]*m)*(?:\d{2}:\d{2}:\d{2}(?:\.\d+)?\s+(?:\[[a-z]+\s*\]\s+\[[^\]]*\]:\s?)?)?")
        .expect("static regex")
});
static ANSI: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\x1b\[[0-9;]*[A-Za-z]").expect("static regex"));
static NODE_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(Compilation|Runtime|Database|Parsing) Error in (model|test|seed|snapshot|analysis|unit_test|sql_operation|operation) (\S+) \(([^)]+)\)")
        .expect("static regex")
});
static TEST_FAILURE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^Failure in (test|unit_test) (\S+) \(([^)]+)\)").expect("static regex")
});
static DEPENDS_ON: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:Model|Test|Snapshot|Seed|Analysis|Exposure|Metric|Semantic model) '([a-z_]+)\.[^.']+\.([^']+)' \(([^)]+)\) depends on")
        .expect("static regex")
});

/// Digests what a run left behind.
pub fn parse(run_id: &str, a: &Artifacts) -> RunLog {
    let console = a.console.as_deref().map(clean).unwrap_or_default();
    let dbt_log = a.dbt_log.as_deref().map(clean).unwrap_or_default();
    let mut failures = a
        .run_results
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .map(|v| from_run_results(&v))
        .unwrap_or_default();
    // The console (or, without it, dbt.log) names the file of each failure and
    // carries the errors that stop dbt before run_results.json is written.
    let text = if console.trim().is_empty() {
        &dbt_log
    } else {
        &console
    };
    for found in from_console(text) {
        match failures.iter_mut().find(|f| f.name == found.name) {
            Some(f) => {
                if f.path.is_none() {
                    f.path = found.path;
                }
                if f.message.is_empty() {
                    f.message = found.message;
                }
            }
            None => failures.push(found),
        }
    }
    let command = a.command.clone().or_else(|| {
        a.run_results
            .as_deref()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .and_then(|v| command_from_args(&v["args"]))
    });
    let mut raw = String::new();
    if !console.trim().is_empty() {
        raw.push_str(&console);
    } else {
        raw.push_str(&dbt_log);
    }
    RunLog {
        run_id: run_id.to_string(),
        command,
        failures,
        raw: keep_tail(&raw, RAW_MAX),
        origin: String::new(),
    }
}

fn clean(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = ANSI.replace_all(l, "");
            TIMESTAMP_PREFIX.replace(&l, "").into_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn from_run_results(v: &Value) -> Vec<NodeFailure> {
    let Some(results) = v["results"].as_array() else {
        return vec![];
    };
    results
        .iter()
        .filter(|r| {
            matches!(
                r["status"].as_str(),
                Some("error" | "fail" | "runtime error")
            )
        })
        .filter_map(|r| {
            let unique_id = r["unique_id"].as_str()?.to_string();
            // `<type>.<package>.<name>[.<hash or version>]`
            let mut parts = unique_id.split('.');
            let resource_type = parts.next().unwrap_or("model").to_string();
            let name = parts.nth(1).unwrap_or(&unique_id).to_string();
            let message = r["message"].as_str().unwrap_or("").trim().to_string();
            let kind = if r["status"] == "fail" {
                ErrorKind::TestFailure
            } else {
                kind_of(&message)
            };
            Some(NodeFailure {
                unique_id: Some(unique_id),
                name,
                resource_type,
                path: None,
                kind,
                message,
                compiled_code: r["compiled_code"].as_str().map(str::to_string),
            })
        })
        .collect()
}

fn kind_of(message: &str) -> ErrorKind {
    let m = message.trim_start();
    if m.starts_with("Compilation Error") || m.starts_with("Parsing Error") {
        ErrorKind::Compilation
    } else if m.starts_with("Database Error")
        || m.contains("Binder Error")
        || m.contains("Parser Error")
        || m.contains("Catalog Error")
        || m.contains("Conversion Error")
    {
        ErrorKind::Database
    } else {
        ErrorKind::Runtime
    }
}

/// Failures named in console output: `Compilation Error in model orders (models/orders.sql)`,
/// `Failure in test not_null_x (models/schema.yml)`, and errors that stopped
/// dbt before it ran anything (`Encountered an error:`).
fn from_console(text: &str) -> Vec<NodeFailure> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<NodeFailure> = vec![];
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(c) = NODE_ERROR.captures(line) {
            let message = block(&lines, i + 1);
            // dbt-duckdb reports warehouse errors as "Runtime Error"; the body tells.
            let kind = match (&c[1], kind_of(&message)) {
                ("Compilation" | "Parsing", _) => ErrorKind::Compilation,
                ("Database", _) | (_, ErrorKind::Database) => ErrorKind::Database,
                _ => ErrorKind::Runtime,
            };
            push_unique(
                &mut out,
                NodeFailure {
                    unique_id: None,
                    name: c[3].to_string(),
                    resource_type: c[2].to_string(),
                    path: Some(c[4].to_string()),
                    kind,
                    message: format!(
                        "{} Error in {} {} ({})\n{message}",
                        &c[1], &c[2], &c[3], &c[4]
                    ),
                    compiled_code: None,
                },
            );
        } else if let Some(c) = TEST_FAILURE.captures(line) {
            let message = block(&lines, i + 1);
            push_unique(
                &mut out,
                NodeFailure {
                    unique_id: None,
                    name: c[2].to_string(),
                    resource_type: "test".into(),
                    path: Some(c[3].to_string()),
                    kind: ErrorKind::TestFailure,
                    message,
                    compiled_code: None,
                },
            );
        } else if line == "Encountered an error:" {
            let message = block_until_blank(&lines, i + 1);
            let (name, resource_type, path) = match DEPENDS_ON.captures(&message) {
                Some(c) => (c[2].to_string(), c[1].to_string(), Some(c[3].to_string())),
                None => ("project".to_string(), "project".to_string(), None),
            };
            let kind = kind_of(&message);
            push_unique(
                &mut out,
                NodeFailure {
                    unique_id: None,
                    name,
                    resource_type,
                    path,
                    kind: if kind == ErrorKind::Runtime && message.contains("Error") {
                        ErrorKind::Compilation
                    } else {
                        kind
                    },
                    message,
                    compiled_code: None,
                },
            );
        }
        i += 1;
    }
    out
}

fn push_unique(out: &mut Vec<NodeFailure>, f: NodeFailure) {
    if !out.iter().any(|o| o.name == f.name) {
        out.push(f);
    }
}

/// The indented lines after a heading (dbt indents an error's body by two spaces).
fn block(lines: &[&str], from: usize) -> String {
    let mut body = vec![];
    for line in lines.iter().skip(from) {
        if line.trim().is_empty() {
            if body.is_empty() {
                continue;
            }
            // Blank lines inside the block are kept only if more indented text follows.
            body.push("");
            continue;
        }
        if !line.starts_with(' ') {
            break;
        }
        body.push(line.trim());
    }
    while body.last() == Some(&"") {
        body.pop();
    }
    body.join("\n")
}

fn block_until_blank(lines: &[&str], from: usize) -> String {
    lines
        .iter()
        .skip(from)
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join("\n")
}

fn command_from_args(args: &Value) -> Option<String> {
    let which = args["which"].as_str()?;
    let mut cmd = format!("dbt {which}");
    for key in ["select", "exclude"] {
        if let Some(list) = args[key].as_array().filter(|l| !l.is_empty()) {
            let items: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
            cmd.push_str(&format!(" --{key} {}", items.join(" ")));
        }
    }
    Some(cmd)
}

fn keep_tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

static NOISE: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (
            r"(?i)\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?",
            "<time>",
        ),
        (r"\b\d{2}:\d{2}:\d{2}(?:\.\d+)?\b", "<time>"),
        (
            r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
            "<uuid>",
        ),
        (r"\b[0-9a-f]{10,}\b", "<hex>"),
        (r"\b\d+\.\d+s\b", "<duration>"),
        (r"(?:/[\w.-]+)+/target/", "target/"),
        (r"\s+", " "),
    ]
    .into_iter()
    .map(|(p, r)| (Regex::new(p).expect("static regex"), r))
    .collect()
});

/// The failure's error signature: the failing node and its error with
/// run-specific noise (times, ids, durations, absolute paths) removed. Two runs
/// failing for the same reason have the same signature.
pub fn signature(f: &NodeFailure) -> String {
    let mut msg = f.message.to_lowercase();
    for (re, with) in NOISE.iter() {
        msg = re.replace_all(&msg, *with).into_owned();
    }
    let msg = msg.trim();
    let msg: String = msg.chars().take(300).collect();
    format!("{}:{}: {}", f.resource_type, f.name, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifacts(console: &str, run_results: Option<&str>) -> Artifacts {
        Artifacts {
            console: Some(console.to_string()),
            run_results: run_results.map(str::to_string),
            ..Artifacts::default()
        }
    }

    #[test]
    fn a_parse_time_ref_error_names_the_model_and_its_file() {
        let console = "04:21:30  Running with dbt=1.10.23\n04:21:31  Encountered an error:\nCompilation Error\n  Model 'model.jaffle_shop.orders' (models/marts/orders.sql) depends on a node named 'stg_order' which was not found\n";
        let log = parse("1", &artifacts(console, None));
        assert_eq!(log.failures.len(), 1);
        let f = &log.failures[0];
        assert_eq!(f.name, "orders");
        assert_eq!(f.resource_type, "model");
        assert_eq!(f.path.as_deref(), Some("models/marts/orders.sql"));
        assert_eq!(f.kind, ErrorKind::Compilation);
        assert!(f.message.contains("depends on a node named 'stg_order'"));
    }

    #[test]
    fn run_results_and_console_are_merged() {
        let run_results = r#"{"results":[
            {"status":"success","unique_id":"model.p.stg_orders","message":"OK"},
            {"status":"fail","unique_id":"test.p.not_null_orders_customer_id.abc","message":"Got 1 result, configured to fail if != 0","failures":1},
            {"status":"error","unique_id":"model.p.orders","message":"Runtime Error in model orders (models/orders.sql)\n  Binder Error: Referenced column \"ordr_date\" not found"}
        ],"args":{"which":"build","select":["marts"]}}"#;
        let console = "Failure in test not_null_orders_customer_id (models/schema.yml)\n  Got 1 result, configured to fail if != 0\n\nRuntime Error in model orders (models/orders.sql)\n  Binder Error: Referenced column \"ordr_date\" not found\n";
        let log = parse("9", &artifacts(console, Some(run_results)));
        assert_eq!(log.command.as_deref(), Some("dbt build --select marts"));
        let names: Vec<&str> = log.failures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["not_null_orders_customer_id", "orders"]);
        assert_eq!(log.failures[0].path.as_deref(), Some("models/schema.yml"));
        assert_eq!(log.failures[0].kind, ErrorKind::TestFailure);
        assert_eq!(log.failures[1].kind, ErrorKind::Database);
    }

    #[test]
    fn signatures_ignore_run_specific_noise() {
        let f = |msg: &str| NodeFailure {
            unique_id: None,
            name: "orders".into(),
            resource_type: "model".into(),
            path: None,
            kind: ErrorKind::Database,
            message: msg.into(),
            compiled_code: None,
        };
        assert_eq!(
            signature(&f(
                "Error at 2026-11-24T04:21:33Z in /home/a/proj/target/run/x.sql after 1.23s"
            )),
            signature(&f(
                "Error at 2026-11-25T05:00:00Z in /srv/b/target/run/x.sql after 9.99s"
            )),
        );
        assert_ne!(
            signature(&f("column a not found")),
            signature(&f("column b not found"))
        );
    }
}
