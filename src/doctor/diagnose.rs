//! One failure + the project index + the blamed file's text (+ the columns the
//! warehouse reported, when the IO shell asked) → a [`Finding`]: what is
//! wrong, what was considered, and the edit when there is exactly one right
//! answer. Pure: no IO, not async.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::choose::{choose, describe, max_distance, Choice, Verdict};
use super::index::ProjectIndex;
use super::scope::{self, Scope};
use crate::runlog::{ErrorKind, NodeFailure};

/// What the doctor concluded about one failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The failing node (`orders`, `not_null_stg_orders_customer_id`, `project`).
    pub node: String,
    pub action: Action,
    /// One line for the thread.
    pub milestone: String,
    /// The root cause for people: what is wrong, what was considered, what was done.
    pub summary: String,
    /// What was checked, shown as progress.
    pub checked: Vec<String>,
}

/// What to do about a finding.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write `new_text` to `path`: the one right fix.
    Edit {
        path: String,
        new_text: String,
        lines: Vec<usize>,
    },
    /// Diagnosis only: ambiguous, or needs a human or an LLM agent.
    Report,
    /// A data test failed: its rows have to be looked at (the IO shell does it).
    DataTest(DataTest),
}

/// A failing data test, resolved against the project.
#[derive(Debug, Clone, PartialEq)]
pub struct DataTest {
    pub test: String,
    /// The yml (or singular test) file dbt blamed.
    pub file: Option<String>,
    /// `not_null`, `unique`, `accepted_values`, `relationships`, or a custom name.
    pub test_type: Option<String>,
    /// The tested model, seed, snapshot or source table.
    pub relation: Option<Relation>,
    pub column: Option<String>,
    /// From `Got N results`.
    pub failing_rows: Option<u64>,
    /// The query returning the failing rows, when run_results had it.
    pub compiled_code: Option<String>,
}

/// Something a query reads from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Relation {
    Node(String),
    Source(String, String),
}

impl Relation {
    /// `stg_orders` or `jaffle_raw.raw_orders`.
    pub fn display(&self) -> String {
        match self {
            Relation::Node(n) => n.clone(),
            Relation::Source(s, t) => format!("{s}.{t}"),
        }
    }

    /// The Jinja that selects it.
    pub fn jinja(&self) -> String {
        format!("{{{{ {} }}}}", self.call())
    }

    /// The Jinja call naming it, for use inside a Jinja expression: `ref('x')`.
    pub fn call(&self) -> String {
        match self {
            Relation::Node(n) => format!("ref('{n}')"),
            Relation::Source(s, t) => format!("source('{s}', '{t}')"),
        }
    }
}

/// The real columns of relations, as the warehouse reported them. The IO
/// shell fills it (through `dbt show`) for the relations
/// [`columns_to_look_up`] names; empty when nothing was asked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WarehouseColumns {
    /// Columns by relation, in the warehouse's order. An empty list: the
    /// relation is not in the database dbt was pointed at.
    pub columns: BTreeMap<Relation, Vec<String>>,
    /// Why the warehouse could not be asked, when it could not (then the
    /// documented columns stand in).
    pub error: Option<String>,
}

/// The database whose message named an unknown column (by the message's form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    DuckDb,
    Postgres,
    Redshift,
    Snowflake,
    BigQuery,
    Databricks,
}

impl Database {
    pub fn as_str(self) -> &'static str {
        match self {
            Database::DuckDb => "DuckDB",
            Database::Postgres => "Postgres",
            Database::Redshift => "Redshift",
            Database::Snowflake => "Snowflake",
            Database::BigQuery => "BigQuery",
            Database::Databricks => "Databricks",
        }
    }
}

/// An unknown-column error, read from a database's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownColumn {
    pub database: Database,
    /// The table alias or name the column was qualified with (`c` in
    /// `c.customer_nmae`), without quotes.
    pub qualifier: Option<String>,
    /// The name that does not exist, without qualifier or quotes.
    pub name: String,
    /// The names the database suggests, unqualified; when they were qualified,
    /// only those of the same qualifier (if any are).
    pub candidates: Vec<String>,
}

impl UnknownColumn {
    /// `c.customer_nmae`, or `customer_nmae`.
    pub fn shown(&self) -> String {
        match &self.qualifier {
            Some(q) => format!("{q}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The closing words of every finding the doctor does not fix.
pub const NEEDS_HELP: &str = "needs a human or an LLM agent";

static MISSING_NODE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"depends on a node named '([^']+)'(?: with version '[^']*')? which was not found")
        .expect("static regex")
});
static MISSING_SOURCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"depends on a source named '([^'.]+)\.([^']+)' which was not found")
        .expect("static regex")
});
static UNDEFINED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"'(\w+)' is undefined").expect("static regex"));
/// The unknown-column message forms, most specific first (Redshift's form
/// starts like Postgres's). Group 1 is the name as written (maybe qualified),
/// except for [`Form::Binding`], where group 1 is the qualifier and group 2
/// the name. A further group holds the database's suggestions, if any.
static COLUMN: LazyLock<Vec<(Form, Regex)>> = LazyLock::new(|| {
    [
        (
            Form::Spark,
            r"\[UNRESOLVED_COLUMN\.\w+\][^\n]*? with name ((?:`[^`]*`|[^\s`.]+)(?:\.(?:`[^`]*`|[^\s`.]+))*) cannot be resolved\.(?: Did you mean one of the following\? \[((?:`[^`]*`|[^\]`])*)\])?",
        ),
        (
            Form::Spark,
            r"cannot resolve '([^']+)' given input columns: \[((?:`[^`]*`|[^\]`])*)\]",
        ),
        (Form::DuckDb, r#"Referenced column "([^"]+)" not found in FROM clause"#),
        (Form::Binding, r#""([^"]+)" does not have a column named "([^"]+)""#),
        (
            Form::Redshift,
            r#"\bcolumn "([^"]+)" does not exist in ("[^"]+"|[\w$]+)"#,
        ),
        (
            Form::Postgres,
            r#"\bcolumn ((?:"[^"]*"|[\w$]+)(?:\.(?:"[^"]*"|[\w$]+))*) does not exist"#,
        ),
        (Form::Snowflake, r"invalid identifier '((?:[^']|'')+)'"),
        (
            Form::BigQueryInside,
            r"\bName (`[^`]+`|[\w$]+) not found inside (`[^`]+`|[\w$]+)(?:; Did you mean (`[^`]+`|[\w$.]+)\?)?",
        ),
        (
            Form::BigQuery,
            r"Unrecognized name: (`[^`]+`|[\w$.]+)(?:; Did you mean (`[^`]+`|[\w$.]+)\?)?",
        ),
    ]
    .into_iter()
    .map(|(form, p)| (form, Regex::new(p).expect("static regex")))
    .collect()
});

/// How to read a match of one of the [`COLUMN`] patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Databricks / Spark: `` `c`.`x` ``, suggestions in brackets.
    Spark,
    /// DuckDB's `Referenced column "x" not found`, suggestions on the next line.
    DuckDb,
    /// DuckDB's `Table "c" does not have a column named "x"` (or `Values list "c"`).
    Binding,
    /// `column "x" does not exist in c`.
    Redshift,
    /// `column "x"` or `column c.x does not exist`, suggestions in a HINT.
    Postgres,
    /// `invalid identifier 'C.X'`.
    Snowflake,
    /// `Name x not found inside c`.
    BigQueryInside,
    /// `Unrecognized name: x`.
    BigQuery,
}

static DUCKDB_CANDIDATES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"Candidate bindings: ([^\n]+)").expect("static regex"));
static POSTGRES_HINT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"Perhaps you meant to reference ([^\n]+)").expect("static regex"));
static QUOTED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#""([^"]+)""#).expect("static regex"));
static SQL_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\s*LINE (\d+):(.*)$").expect("static regex"));
static YAML_FILE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"Error reading \S+: (\S+) - ").expect("static regex"));
static YAML_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"Syntax error near line (\d+)|line (\d+), column (\d+)"#).expect("static regex")
});
static GOT_RESULTS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"Got (\d+) results?").expect("static regex"));
static RELATION_IN_SQL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\bfrom\s+(?:"?\w+"?\.){0,2}"?(\w+)"?"#).expect("static regex")
});
static REF_CALL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\bref\s*\(\s*(?:['"][\w.-]+['"]\s*,\s*)?['"]([\w.-]+)['"]"#)
        .expect("static regex")
});
static SOURCE_CALL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\bsource\s*\(\s*['"]([\w.-]+)['"]\s*,\s*['"]([\w.-]+)['"]"#)
        .expect("static regex")
});

/// Diagnoses one failure. `file_text` is the current text of the file dbt
/// blamed (`failure.path`), when it could be read.
pub fn diagnose(f: &NodeFailure, ix: &ProjectIndex, file_text: Option<&str>) -> Finding {
    diagnose_with_warehouse(f, ix, file_text, &WarehouseColumns::default())
}

/// [`diagnose`], knowing the real columns of the relations
/// [`columns_to_look_up`] asked for.
pub fn diagnose_with_warehouse(
    f: &NodeFailure,
    ix: &ProjectIndex,
    file_text: Option<&str>,
    seen: &WarehouseColumns,
) -> Finding {
    let msg = f.message.as_str();
    if f.kind == ErrorKind::TestFailure {
        return data_test(f, ix);
    }
    if let Some(c) = MISSING_SOURCE.captures(msg) {
        return missing_source(f, ix, file_text, &c[1], &c[2]);
    }
    if let Some(c) = MISSING_NODE.captures(msg) {
        return missing_ref(f, ix, file_text, &c[1]);
    }
    if let Some(c) = UNDEFINED.captures(msg) {
        return undefined_macro(f, ix, file_text, &c[1]);
    }
    if let Some(col) = unknown_column_error(msg) {
        return unknown_column(f, ix, file_text, &col, seen);
    }
    needs_help(f, ix, file_text)
}

/// The relations whose real columns would settle an unknown-column failure:
/// those behind the column's qualifier (or all the model reads), when the
/// database named no candidates. Empty for every other failure.
pub fn columns_to_look_up(
    f: &NodeFailure,
    ix: &ProjectIndex,
    file_text: Option<&str>,
) -> Vec<Relation> {
    let msg = f.message.as_str();
    if f.kind == ErrorKind::TestFailure
        || MISSING_SOURCE.is_match(msg)
        || MISSING_NODE.is_match(msg)
        || UNDEFINED.is_match(msg)
    {
        return vec![];
    }
    match unknown_column_error(msg) {
        Some(col) if col.candidates.is_empty() => {
            column_scope(f, ix, file_text, col.qualifier.as_deref()).relations
        }
        _ => vec![],
    }
}

/// Reads an unknown-column error in any of the forms of DuckDB, Postgres,
/// Redshift, Snowflake, BigQuery and Databricks/Spark.
pub fn unknown_column_error(msg: &str) -> Option<UnknownColumn> {
    let (form, c) = COLUMN
        .iter()
        .find_map(|(form, re)| re.captures(msg).map(|c| (*form, c)))?;
    let group = |i: usize| c.get(i).map(|m| m.as_str());
    let (database, mut qualifier, written, suggested): (_, Option<String>, &str, Vec<String>) =
        match form {
            Form::Spark => (
                Database::Databricks,
                None,
                group(1)?,
                group(2).map(split_list).unwrap_or_default(),
            ),
            Form::DuckDb => (Database::DuckDb, None, group(1)?, duckdb_candidates(msg)),
            Form::Binding => (
                Database::DuckDb,
                group(1).map(|q| last_part(q).to_string()),
                group(2)?,
                duckdb_candidates(msg),
            ),
            Form::Redshift => (
                Database::Redshift,
                group(2).map(|q| unquote_ident(q).to_string()),
                group(1)?,
                vec![],
            ),
            Form::Postgres => (
                Database::Postgres,
                None,
                group(1)?,
                POSTGRES_HINT
                    .captures(msg)
                    .map(|h| quoted(&h[1]))
                    .unwrap_or_default(),
            ),
            Form::Snowflake => (Database::Snowflake, None, group(1)?, vec![]),
            Form::BigQueryInside => (
                Database::BigQuery,
                group(2).map(|q| unquote_ident(q).to_string()),
                group(1)?,
                group(3).map(|s| vec![s.to_string()]).unwrap_or_default(),
            ),
            Form::BigQuery => (
                Database::BigQuery,
                None,
                group(1)?,
                group(2).map(|s| vec![s.to_string()]).unwrap_or_default(),
            ),
        };
    let written = written.replace("''", "'");
    let mut parts = split_ident(&written);
    // BigQuery's backquoted `service.id` is one name.
    if database == Database::BigQuery && written.starts_with('`') {
        parts = vec![unquote_ident(&written).to_string()];
    }
    let name = parts.pop().filter(|n| !n.is_empty())?;
    if qualifier.is_none() {
        qualifier = parts.pop();
    }
    let split: Vec<Vec<String>> = suggested.iter().map(|s| split_ident(s)).collect();
    let same: Vec<&Vec<String>> = match &qualifier {
        Some(q) => split
            .iter()
            .filter(|p| p.len() > 1 && p[p.len() - 2].eq_ignore_ascii_case(q))
            .collect(),
        None => vec![],
    };
    let chosen: Vec<&Vec<String>> = if same.is_empty() {
        split.iter().collect()
    } else {
        same
    };
    let mut candidates: Vec<String> = vec![];
    for p in chosen {
        if let Some(n) = p.last().filter(|n| !n.is_empty()) {
            if !candidates.contains(n) {
                candidates.push(n.clone());
            }
        }
    }
    Some(UnknownColumn {
        database,
        qualifier,
        name,
        candidates,
    })
}

fn duckdb_candidates(msg: &str) -> Vec<String> {
    DUCKDB_CANDIDATES
        .captures(msg)
        .map(|c| quoted(&c[1]))
        .unwrap_or_default()
}

/// What `qualifier` (or an unqualified column) can see: from the blamed
/// file's SQL, else from the compiled SQL.
fn column_scope(
    f: &NodeFailure,
    ix: &ProjectIndex,
    text: Option<&str>,
    qualifier: Option<&str>,
) -> Scope {
    let from_text = text
        .map(|t| scope::resolve(t, qualifier, ix))
        .unwrap_or_default();
    if !from_text.is_empty() {
        return from_text;
    }
    f.compiled_code
        .as_deref()
        .map(|c| scope::resolve(c, qualifier, ix))
        .filter(|s| !s.is_empty())
        .unwrap_or(from_text)
}

fn missing_ref(f: &NodeFailure, ix: &ProjectIndex, text: Option<&str>, name: &str) -> Finding {
    let file = f.path.clone().unwrap_or_default();
    let mut checked = vec![format!(
        "{}: `ref('{name}')` names no node; comparing with {} models, seeds and snapshots",
        f.name,
        ix.node_names().count()
    )];
    // A node never refs itself, so it is no candidate.
    let choice = choose(name, ix.node_names().filter(|n| *n != f.name));
    let sources = choose(name, ix.source_tables().map(|(_, t)| t));
    let site =
        text.and_then(|t| first_line(t, &ref_pattern(name)).map(|l| format!("{file} line {l}")));
    let site = site.unwrap_or_else(|| file.clone());
    let what = format!("{} refs `{name}` ({site}), which does not exist", f.name);
    let kind = |n: &str| ix.node(n).map(|k| k.as_str()).unwrap_or("node");

    // A source table closer than any node: the ref probably meant source(), which
    // is not a rename (it changes what kind of dependency this is).
    if let Some(s) = sources.best() {
        let node_best = choice.best().map(|b| b.distance).unwrap_or(usize::MAX);
        if s.distance < node_best && s.distance <= max_distance(name.chars().count()) {
            let (src, _) = ix
                .source_tables()
                .find(|(_, t)| *t == s.name)
                .unwrap_or(("?", ""));
            checked.push(format!(
                "`{}` is a source table of `{src}`, not a node",
                s.name
            ));
            return report(
                f,
                format!("{}: ref `{name}` does not exist; `{}` is a source, not a node — not changed", f.name, s.name),
                format!(
                    "{what}. The closest name, `{}` (distance {}), is a table of source `{src}`, not a model, seed or snapshot, so it would be `source('{src}', '{}')` rather than a ref. Nearest nodes: {}. Nothing was changed: switching a ref to a source {NEEDS_HELP}.",
                    s.name,
                    s.distance,
                    s.name,
                    describe(&choice.ranked, 3)
                ),
                checked,
            );
        }
    }
    match choice.clear() {
        Some(best) => {
            let to = best.name.clone();
            let next = next_best(&choice);
            let edit = text.and_then(|t| replace_group(t, &ref_pattern(name), 1, &to));
            let Some((new_text, lines)) = edit else {
                return not_literal(f, &file, &format!("ref('{name}')"), &to, checked);
            };
            let at = format!("{file} {}", lines_word(&lines));
            Finding {
                node: f.name.clone(),
                milestone: format!(
                    "{}: ref `{name}` does not exist; nearest {} is `{to}` — fixed in {at}",
                    f.name,
                    kind(&to)
                ),
                summary: format!(
                    "{} refs `{name}`, which does not exist; the nearest {} is `{to}` (distance {}{next}). Changed the ref in {at}.",
                    f.name,
                    kind(&to),
                    best.distance
                ),
                checked,
                action: Action::Edit { path: file, new_text, lines },
            }
        }
        None => {
            let considered: Vec<String> = choice
                .ranked
                .iter()
                .take(4)
                .map(|s| format!("`{}` ({}, distance {})", s.name, kind(&s.name), s.distance))
                .collect();
            let why = why_not(&choice, name);
            report(
                f,
                format!(
                    "{}: ref `{name}` does not exist; {why} — not changed",
                    f.name
                ),
                format!(
                    "{what}. {}. Considered: {}. Nothing was changed; this {NEEDS_HELP}.",
                    capitalize(&why),
                    if considered.is_empty() {
                        "none".into()
                    } else {
                        considered.join(", ")
                    }
                ),
                checked,
            )
        }
    }
}

fn missing_source(
    f: &NodeFailure,
    ix: &ProjectIndex,
    text: Option<&str>,
    source: &str,
    table: &str,
) -> Finding {
    let file = f.path.clone().unwrap_or_default();
    let wanted = format!("source('{source}', '{table}')");
    let mut checked = vec![format!(
        "{}: `{wanted}` is not defined; sources: {}",
        f.name,
        ix.sources
            .iter()
            .map(|(s, ts)| format!("{s} ({} tables)", ts.len()))
            .collect::<Vec<_>>()
            .join(", ")
    )];
    // A known source with an unknown table: compare tables of that source.
    // Otherwise compare whole `source.table` names, so either part may be the typo.
    let (target, choice) = match ix.sources.get(source) {
        Some(tables) => (
            table.to_string(),
            choose(table, tables.iter().map(String::as_str)),
        ),
        None => {
            let all: Vec<String> = ix
                .source_tables()
                .map(|(s, t)| format!("{s}.{t}"))
                .collect();
            let target = format!("{source}.{table}");
            let c = choose(&target, all.iter().map(String::as_str));
            (target, c)
        }
    };
    let pattern = source_pattern(source, table);
    let site = text
        .and_then(|t| first_line(t, &pattern))
        .map(|l| format!("{file} line {l}"))
        .unwrap_or_else(|| file.clone());
    let what = format!("{} reads `{wanted}` ({site}), which is not defined", f.name);
    match choice.clear() {
        Some(best) => {
            let (to_source, to_table) = match best.name.split_once('.') {
                Some((s, t)) if !ix.sources.contains_key(source) => (s.to_string(), t.to_string()),
                _ => (source.to_string(), best.name.clone()),
            };
            let next = next_best(&choice);
            let edit = text.and_then(|t| {
                let (t1, mut l1) = replace_group(t, &pattern, 2, &to_table)?;
                if to_source == source {
                    return Some((t1, l1));
                }
                let (t2, l2) =
                    replace_group(&t1, &source_pattern(source, &to_table), 1, &to_source)?;
                l1.extend(l2);
                l1.sort();
                l1.dedup();
                Some((t2, l1))
            });
            let to = format!("{to_source}.{to_table}");
            let Some((new_text, lines)) = edit else {
                return not_literal(f, &file, &wanted, &to, checked);
            };
            checked.push(format!(
                "`{target}` is {} edit(s) from `{}`",
                best.distance, best.name
            ));
            let at = format!("{file} {}", lines_word(&lines));
            Finding {
                node: f.name.clone(),
                milestone: format!(
                    "{}: source `{source}.{table}` does not exist; nearest is `{to}` — fixed in {at}",
                    f.name
                ),
                summary: format!(
                    "{} reads `{wanted}`, which is not defined; the nearest source table is `{to}` (distance {}{next}). Changed the source in {at}.",
                    f.name, best.distance
                ),
                checked,
                action: Action::Edit { path: file, new_text, lines },
            }
        }
        None => {
            let why = why_not(&choice, &target);
            report(
                f,
                format!(
                    "{}: source `{source}.{table}` does not exist; {why} — not changed",
                    f.name
                ),
                format!(
                    "{what}. {}. Considered: {}. Nothing was changed; this {NEEDS_HELP}.",
                    capitalize(&why),
                    describe(&choice.ranked, 4)
                ),
                checked,
            )
        }
    }
}

fn unknown_column(
    f: &NodeFailure,
    ix: &ProjectIndex,
    text: Option<&str>,
    col: &UnknownColumn,
    seen: &WarehouseColumns,
) -> Finding {
    let file = f.path.clone().unwrap_or_default();
    let column = col.name.as_str();
    let shown = col.shown();
    let db = col.database.as_str();
    let mut checked = vec![format!(
        "{}: {db} says column `{shown}` does not exist; candidates: {}",
        f.name,
        if col.candidates.is_empty() {
            "none".into()
        } else {
            col.candidates.join(", ")
        }
    )];
    // The database's own suggestions first; otherwise the real columns of
    // what the qualifier names (from the warehouse, else documented in yml).
    let pool = if col.candidates.is_empty() {
        let scope = column_scope(f, ix, text, col.qualifier.as_deref());
        let pool = Pool::gather(&scope, col.qualifier.as_deref(), ix, seen);
        checked.extend(pool.checked.iter().cloned());
        pool
    } else {
        Pool {
            names: col.candidates.clone(),
            from: format!("{db} suggests"),
            source: format!("the names {db} suggests"),
            behind: String::new(),
            checked: vec![],
            complete: true,
        }
    };
    let choice = choose(column, pool.names.iter().map(String::as_str));
    // yml documents a subset of the columns: the right name may be among the
    // others, so only a plain typo is trusted there.
    let partial = choice
        .clear()
        .filter(|b| !pool.complete && b.distance > PARTIAL_MAX)
        .cloned();
    let bare = format!(r"(?i)\b({})\b", regex::escape(column));
    let qualified = col.qualifier.as_ref().map(|q| {
        format!(
            r#"(?i)"?\b{}\b"?\s*\.\s*"?\b({})\b"#,
            regex::escape(q),
            regex::escape(column)
        )
    });
    // The qualified spelling when the file has it, else the name anywhere.
    let pattern = qualified
        .filter(|p| text.is_some_and(|t| Regex::new(p).is_ok_and(|re| re.is_match(t))))
        .unwrap_or(bare);
    let site = text
        .and_then(|t| first_line(t, &pattern))
        .map(|l| format!(" ({file} line {l})"))
        .unwrap_or_default();
    let what = format!(
        "{} selects column `{shown}`{site}, which does not exist{}",
        f.name, pool.behind
    );
    // The name is there after all: the relation the run read differs from the
    // one looked at now (stale, or the documentation is wrong). No rename helps.
    if let Some(same) = choice.best().filter(|b| b.distance == 0) {
        return report(
            f,
            format!(
                "{}: column \"{shown}\" does not exist, yet {} lists `{}` — not changed",
                f.name, pool.source, same.name
            ),
            format!(
                "{what}, but {} lists `{}`: what the run read differs from what is there now (rebuild the parents, or fix the documentation). Nothing was changed; this {NEEDS_HELP}.",
                pool.source, same.name
            ),
            checked,
        );
    }
    match choice.clear().filter(|_| partial.is_none()) {
        Some(best) => {
            let to = text
                .and_then(|t| first_match(t, &pattern))
                .map(|found| fit_case(&found, &best.name))
                .unwrap_or_else(|| best.name.clone());
            let next = next_best(&choice);
            let Some((new_text, lines)) = text.and_then(|t| replace_group(t, &pattern, 1, &to))
            else {
                return not_literal(f, &file, column, &to, checked);
            };
            checked.push(format!(
                "`{column}` is {} edit(s) from `{to}`",
                best.distance
            ));
            let at = format!("{file} {}", lines_word(&lines));
            let renamed = match &col.qualifier {
                Some(q) if pattern.contains(r"\s*\.\s*") => format!("`{q}.{column}` to `{q}.{to}`"),
                _ => format!("`{column}` to `{to}`"),
            };
            Finding {
                node: f.name.clone(),
                milestone: format!(
                    "{}: column \"{shown}\" does not exist; {} \"{to}\" — fixed in {at}",
                    f.name, pool.from
                ),
                summary: format!(
                    "{what}; {} `{to}` (distance {}{next}). Changed {renamed} in {at}.",
                    pool.from, best.distance
                ),
                checked,
                action: Action::Edit {
                    path: file,
                    new_text,
                    lines,
                },
            }
        }
        None => {
            let why = match &partial {
                Some(b) => format!(
                    "the nearest, `{}`, is {} edits away, and only documented columns were compared (the warehouse did not list them), so a closer undocumented column may exist",
                    b.name, b.distance
                ),
                None => why_not(&choice, column),
            };
            let considered = if pool.names.is_empty() && pool.source == NOTHING {
                "Considered: none".to_string()
            } else if pool.names.is_empty() {
                format!("Considered {}: none", pool.source)
            } else {
                format!(
                    "Considered {}: {}",
                    pool.source,
                    describe(&choice.ranked, 4)
                )
            };
            report(
                f,
                format!(
                    "{}: column \"{shown}\" does not exist; {why} — not changed",
                    f.name
                ),
                format!(
                    "{what}. {}. {considered}. Nothing was changed; this {NEEDS_HELP}.",
                    capitalize(&why),
                ),
                checked,
            )
        }
    }
}

/// Where a [`Pool`] found nothing to compare with.
const NOTHING: &str = "nothing it reads";

/// The most edits trusted when the names compared with are not all of them
/// (documented in yml rather than listed by the warehouse or the database).
const PARTIAL_MAX: usize = 2;

/// The names an unknown column is compared with when the database named none,
/// and where they came from.
struct Pool {
    names: Vec<String>,
    /// `the columns of `stg_customers` (in the warehouse) suggest`.
    from: String,
    /// `the columns of `stg_customers` (in the warehouse)`.
    source: String,
    /// `; `c` reads `stg_customers``: what the qualifier names, for the summary.
    behind: String,
    /// What was looked at, shown as progress.
    checked: Vec<String>,
    /// Whether `names` are all the names there are (from the database or the
    /// warehouse), not a documented subset.
    complete: bool,
}

impl Pool {
    fn gather(
        scope: &Scope,
        qualifier: Option<&str>,
        ix: &ProjectIndex,
        seen: &WarehouseColumns,
    ) -> Pool {
        let mut names: Vec<String> = vec![];
        let mut described: Vec<String> = vec![];
        let mut defined_by: Option<String> = None;
        let mut checked: Vec<String> = vec![];
        let mut complete = true;
        for r in &scope.relations {
            let real = seen.columns.get(r);
            let documented = match r {
                Relation::Node(n) => ix.columns.get(n),
                Relation::Source(s, t) => ix.source_columns.get(&(s.clone(), t.clone())),
            }
            .filter(|c| !c.is_empty());
            let rel = format!("`{}`", r.display());
            let (cols, how) = match (real, documented) {
                (Some(cols), _) if !cols.is_empty() => (Some(cols), "in the warehouse"),
                (Some(_), Some(doc)) => (Some(doc), "documented; not found in the warehouse"),
                (Some(_), None) => (None, "not found in the warehouse, none documented"),
                (None, Some(doc)) if seen.error.is_some() => {
                    (Some(doc), "documented; the warehouse could not be asked")
                }
                (None, Some(doc)) => (Some(doc), "documented"),
                (None, None) if seen.error.is_some() => {
                    (None, "the warehouse could not be asked, none documented")
                }
                (None, None) => (None, "no columns known"),
            };
            complete &= real.is_some_and(|c| !c.is_empty());
            checked.push(format!(
                "{rel}: {how}{}",
                cols.map(|c| format!(": {}", c.join(", ")))
                    .unwrap_or_default()
            ));
            described.push(format!("{rel} ({how})"));
            for c in cols.into_iter().flatten() {
                if !names.contains(c) {
                    names.push(c.clone());
                }
            }
        }
        if !scope.defined.is_empty() {
            let via: Vec<String> = scope
                .via
                .iter()
                .filter(|v| !v.contains(' '))
                .map(|v| format!("`{v}`"))
                .collect();
            let whose = if via.is_empty() {
                "the columns named in the model's SQL".to_string()
            } else {
                format!("the columns named by the select list of {}", via.join(", "))
            };
            checked.push(format!("{whose}: {}", scope.defined.join(", ")));
            defined_by = Some(whose);
            for c in &scope.defined {
                if !names.contains(c) {
                    names.push(c.clone());
                }
            }
        }
        if let Some(e) = &seen.error {
            checked.push(format!("the warehouse could not be asked: {e}"));
        }
        let reads: Vec<String> = scope
            .relations
            .iter()
            .map(|r| format!("`{}`", r.display()))
            .collect();
        let through = if scope.via.is_empty() || qualifier.is_none() {
            String::new()
        } else {
            let via: Vec<String> = scope.via.iter().map(|v| format!("`{v}`")).collect();
            format!(" through {}", via.join(", "))
        };
        let behind = match (qualifier, reads.is_empty(), scope.defined.is_empty()) {
            (Some(q), true, true) if !scope.unknown.is_empty() => format!(
                "; `{q}` reads `{}`, which is no ref, source or CTE of the project",
                scope.unknown.join("`, `")
            ),
            (Some(q), true, true) => {
                format!("; `{q}` is no table, alias or CTE the doctor could find in the model")
            }
            (Some(q), true, false) if !scope.via.is_empty() => {
                let via: Vec<String> = scope.via.iter().map(|v| format!("`{v}`")).collect();
                format!("; `{q}` is {}", via.join(", "))
            }
            (Some(_), true, false) => String::new(),
            (Some(q), false, _) => format!("; `{q}` reads {}{through}", reads.join(" and ")),
            (None, true, _) => String::new(),
            (None, false, _) => format!("; the model reads {}", reads.join(" and ")),
        };
        let mut sources: Vec<String> = vec![];
        if !described.is_empty() {
            sources.push(format!("the columns of {}", described.join(", ")));
        }
        sources.extend(defined_by);
        let source = if sources.is_empty() {
            NOTHING.to_string()
        } else {
            sources.join(" and ")
        };
        Pool {
            names,
            from: format!("{source} suggest"),
            source,
            behind,
            checked,
            complete,
        }
    }
}

/// The text of the first match of `pattern`'s group 1.
fn first_match(text: &str, pattern: &str) -> Option<String> {
    let re = Regex::new(pattern).ok()?;
    re.captures(text)?.get(1).map(|m| m.as_str().to_string())
}

/// `to` in the case the file writes: a warehouse that upper-cases names
/// (Snowflake) must not turn `c.customer_nmae` into `c.CUSTOMER_NAME`.
fn fit_case(written: &str, to: &str) -> String {
    let upper = |s: &str| s.chars().any(char::is_uppercase);
    let lower = |s: &str| s.chars().any(char::is_lowercase);
    if upper(to) && !lower(to) && !upper(written) {
        to.to_lowercase()
    } else {
        to.to_string()
    }
}

fn undefined_macro(f: &NodeFailure, ix: &ProjectIndex, text: Option<&str>, name: &str) -> Finding {
    let file = f.path.clone().unwrap_or_default();
    let mut checked = vec![format!(
        "{}: `{name}` is undefined; project macros: {}",
        f.name,
        ix.macros.keys().cloned().collect::<Vec<_>>().join(", ")
    )];
    // `dbt_utils.x(...)`: the undefined name is a package namespace.
    let namespace = format!(r"\b{}\s*\.\s*(\w+)", regex::escape(name));
    if let Some((line, call)) = text.and_then(|t| {
        let re = Regex::new(&namespace).ok()?;
        let m = re.captures(t)?;
        Some((line_of(t, m.get(0)?.start()), m[1].to_string()))
    }) {
        checked.push(format!("`{name}.{call}` is a package call"));
        let why = if ix.files.contains("packages.yml") || ix.files.contains("dependencies.yml") {
            format!("the package `{name}` is not installed (is it in packages.yml, and did `dbt deps` run?)")
        } else {
            format!("the project has no packages.yml, so the package `{name}` is not installed")
        };
        return report(
            f,
            format!("{}: `{name}.{call}` is undefined — package `{name}` is missing", f.name),
            format!(
                "{} calls `{name}.{call}` ({file} line {line}), but {why}. Nothing was changed: adding a package dependency (or replacing the call) {NEEDS_HELP}.",
                f.name
            ),
            checked,
        );
    }
    let call = format!(r"(^|[^.\w])({})\s*\(", regex::escape(name));
    let choice = choose(name, ix.macros.keys().map(String::as_str));
    match choice.clear() {
        Some(best) => {
            let to = best.name.clone();
            let next = next_best(&choice);
            let Some((new_text, lines)) = text.and_then(|t| replace_group(t, &call, 2, &to)) else {
                return not_literal(f, &file, &format!("{name}("), &to, checked);
            };
            let defined = ix
                .macros
                .get(&to)
                .map(|p| format!(", defined in {p}"))
                .unwrap_or_default();
            checked.push(format!(
                "`{name}` is {} edit(s) from macro `{to}`",
                best.distance
            ));
            let at = format!("{file} {}", lines_word(&lines));
            Finding {
                node: f.name.clone(),
                milestone: format!(
                    "{}: macro `{name}` is undefined; nearest macro is `{to}` — fixed in {at}",
                    f.name
                ),
                summary: format!(
                    "{} calls macro `{name}`, which is not defined; the nearest project macro is `{to}` (distance {}{next}{defined}). Changed the call in {at}.",
                    f.name, best.distance
                ),
                checked,
                action: Action::Edit { path: file, new_text, lines },
            }
        }
        None => {
            let why = why_not(&choice, name);
            let site = text
                .and_then(|t| first_line(t, &call))
                .map(|l| format!(" ({file} line {l})"))
                .unwrap_or_default();
            report(
                f,
                format!("{}: `{name}` is undefined; {why} — not changed", f.name),
                format!(
                    "{} uses `{name}`{site}, which is not a defined macro or variable. {}. Considered: {}. Nothing was changed; this {NEEDS_HELP}.",
                    f.name,
                    capitalize(&why),
                    describe(&choice.ranked, 4)
                ),
                checked,
            )
        }
    }
}

fn data_test(f: &NodeFailure, ix: &ProjectIndex) -> Finding {
    let (relation, column, test_type) = match tested_column(&f.name, ix) {
        Some((r, c, t)) => (Some(r), Some(c), Some(t)),
        None => (
            f.compiled_code
                .as_deref()
                .and_then(|sql| relation_in_sql(sql, ix)),
            None,
            None,
        ),
    };
    let failing_rows = GOT_RESULTS
        .captures(&f.message)
        .and_then(|c| c[1].parse().ok());
    let target = match (&relation, &column) {
        (Some(r), Some(c)) => format!("{}.{c}", r.display()),
        (Some(r), None) => r.display(),
        _ => "its model".into(),
    };
    let dt = DataTest {
        test: f.name.clone(),
        file: f.path.clone(),
        test_type,
        relation,
        column,
        failing_rows,
        compiled_code: f.compiled_code.clone(),
    };
    Finding {
        node: f.name.clone(),
        milestone: format!(
            "{}: data test failed on {target} ({}) — data problem, showing the rows",
            f.name,
            rows_word(failing_rows)
        ),
        summary: String::new(),
        checked: vec![format!(
            "{}: data test on {target}; running its query",
            f.name
        )],
        action: Action::DataTest(dt),
    }
}

fn needs_help(f: &NodeFailure, ix: &ProjectIndex, text: Option<&str>) -> Finding {
    let msg = &f.message;
    // YAML: the path is relative to a model path, the line is a file line.
    if let Some(c) = YAML_FILE.captures(msg) {
        let rel = &c[1];
        let file = ix
            .model_paths
            .iter()
            .map(|p| format!("{p}/{rel}"))
            .find(|p| ix.files.contains(p))
            .unwrap_or_else(|| rel.to_string());
        let (mut line, mut col) = (None, None);
        for c in YAML_LINE.captures_iter(msg) {
            if let Some(l) = c.get(1) {
                line = line.or(Some(l.as_str().to_string()));
            } else if let (Some(l), Some(k)) = (c.get(2), c.get(3)) {
                if line.as_deref() == Some(l.as_str()) || line.is_none() {
                    line = Some(l.as_str().to_string());
                    col = Some(k.as_str().to_string());
                }
            }
        }
        let raw = yaml_raw_error(msg);
        let at = match (&line, &col) {
            (Some(l), Some(k)) => format!("{file} line {l}, column {k}"),
            (Some(l), None) => format!("{file} line {l}"),
            _ => file.clone(),
        };
        return report(
            f,
            format!("YAML error in {at}: {raw} — {NEEDS_HELP}"),
            format!(
                "The project does not parse: {at} is not valid YAML: {raw}. dbt-doctor only fixes misspelt refs, sources, columns and macros; this {NEEDS_HELP}."
            ),
            vec![format!("YAML error in {file}")],
        );
    }
    let error = error_line(msg);
    let file = f.path.clone();
    let mut at = file.clone().unwrap_or_else(|| "the project".into());
    let mut near = String::new();
    if let Some(c) = SQL_LINE.captures(msg) {
        let quoted = c[2].trim().to_string();
        let found = text.and_then(|t| find_text_line(t, &quoted));
        match found {
            Some(l) => at = format!("{at} line {l}"),
            None => {
                let compiled = f
                    .compiled_code
                    .as_deref()
                    .and_then(|t| find_text_line(t, &quoted));
                if let Some(l) = compiled {
                    at = format!("{at} (line {l} of the compiled SQL)");
                } else {
                    at = format!("{at} (line {} of the executed statement)", &c[1]);
                }
            }
        }
        if !quoted.is_empty() {
            near = format!(", at `{quoted}`");
        }
    }
    let name = if f.resource_type == "project" {
        "The project".to_string()
    } else {
        format!("{} {}", f.resource_type, f.name)
    };
    report(
        f,
        format!("{}: {error} ({at}) — {NEEDS_HELP}", f.name),
        format!(
            "{name} failed in {at}: {error}{near}. dbt-doctor only fixes misspelt refs, sources, columns and macros; this {NEEDS_HELP}."
        ),
        vec![format!("{}: no rule for this error", f.name)],
    )
}

fn report(f: &NodeFailure, milestone: String, summary: String, checked: Vec<String>) -> Finding {
    Finding {
        node: f.name.clone(),
        action: Action::Report,
        milestone,
        summary,
        checked,
    }
}

/// The fix is clear but the misspelt text is not in the file as written
/// (built by Jinja, or the path is unknown): say so instead of guessing.
fn not_literal(f: &NodeFailure, file: &str, what: &str, to: &str, checked: Vec<String>) -> Finding {
    report(
        f,
        format!("{}: `{what}` should probably be `{to}`, but it is not in {file} as written — not changed", f.name),
        format!(
            "{} fails on `{what}`; the clear nearest name is `{to}`, but `{what}` does not appear literally in {} (it may be built by Jinja), so nothing was changed; this {NEEDS_HELP}.",
            f.name,
            if file.is_empty() { "the blamed file" } else { file }
        ),
        checked,
    )
}

/// The generic test's model (or source table) and column, matched in its name
/// (`not_null_stg_orders_customer_id`, `source_unique_jaffle_raw_raw_orders_id`).
pub fn tested_column(test: &str, ix: &ProjectIndex) -> Option<(Relation, String, String)> {
    let mut best: Option<(usize, Relation, String, String)> = None;
    let mut consider = |needle: String, rel: Relation, col: &str| {
        let mut from = 0;
        while let Some(i) = test[from..].find(&needle) {
            let p = from + i;
            let end = p + needle.len();
            let bounded = p > 0
                && test.as_bytes()[p - 1] == b'_'
                && (end == test.len() || test[end..].starts_with('_'));
            if bounded && best.as_ref().is_none_or(|b| needle.len() > b.0) {
                let kind = test[..p - 1].trim_start_matches("source_").to_string();
                best = Some((needle.len(), rel.clone(), col.to_string(), kind));
            }
            from = p + 1;
        }
    };
    for (node, cols) in &ix.columns {
        for c in cols {
            consider(format!("{node}_{c}"), Relation::Node(node.clone()), c);
        }
    }
    for ((s, t), cols) in &ix.source_columns {
        for c in cols {
            consider(
                format!("{s}_{t}_{c}"),
                Relation::Source(s.clone(), t.clone()),
                c,
            );
        }
    }
    best.map(|(_, r, c, k)| (r, c, k))
}

/// A project-level message with the rest of its block from the raw log.
///
/// The run-log parser stops an `Encountered an error:` block at its first blank
/// line, which cuts a YAML error before its `Raw Error:` part (the line and
/// column and what YAML expected). Returns the message unchanged when the raw
/// log has nothing more.
pub fn complete_message(message: &str, raw: &str) -> String {
    let first = message.lines().map(str::trim).find(|l| !l.is_empty());
    let last = message.lines().map(str::trim).rev().find(|l| !l.is_empty());
    let (Some(first), Some(last)) = (first, last) else {
        return message.to_string();
    };
    let lines: Vec<&str> = raw.lines().collect();
    let Some(start) = lines.iter().position(|l| l.trim() == first) else {
        return message.to_string();
    };
    let Some(end) = (start..lines.len()).find(|&i| lines[i].trim() == last) else {
        return message.to_string();
    };
    let mut extra: Vec<&str> = lines[end + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || l.starts_with(char::is_whitespace))
        .map(|l| l.trim())
        .collect();
    while extra.last() == Some(&"") {
        extra.pop();
    }
    if extra.is_empty() {
        message.to_string()
    } else {
        format!("{message}\n{}", extra.join("\n"))
    }
}

/// The first known node a query reads `from`.
fn relation_in_sql(sql: &str, ix: &ProjectIndex) -> Option<Relation> {
    RELATION_IN_SQL
        .captures_iter(sql)
        .map(|c| c[1].to_string())
        .find(|n| ix.node(n).is_some())
        .map(Relation::Node)
}

/// The refs and sources a model's SQL reads, in order of appearance.
pub fn parents_of(sql: &str) -> Vec<Relation> {
    let mut found: Vec<(usize, Relation)> = REF_CALL
        .captures_iter(sql)
        .map(|c| {
            (
                c.get(0).map_or(0, |m| m.start()),
                Relation::Node(c[1].to_string()),
            )
        })
        .chain(SOURCE_CALL.captures_iter(sql).map(|c| {
            (
                c.get(0).map_or(0, |m| m.start()),
                Relation::Source(c[1].to_string(), c[2].to_string()),
            )
        }))
        .collect();
    found.sort_by_key(|(i, _)| *i);
    let mut out: Vec<Relation> = vec![];
    for (_, r) in found {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// Where a model's column comes from: `(line, text)` of the line defining it
/// (`user_id as customer_id`), else the first line naming it.
pub fn column_origin(sql: &str, column: &str) -> Option<(usize, String)> {
    let alias = Regex::new(&format!(r"(?i)\bas\s+{}\b", regex::escape(column))).ok()?;
    let word = Regex::new(&format!(r"(?i)\b{}\b", regex::escape(column))).ok()?;
    let lines: Vec<&str> = sql.lines().collect();
    let pick = |re: &Regex| {
        lines
            .iter()
            .enumerate()
            .find(|(_, l)| re.is_match(l) && !l.trim_start().starts_with("--"))
            .map(|(i, l)| (i + 1, l.trim().trim_end_matches(',').to_string()))
    };
    pick(&alias).or_else(|| pick(&word))
}

/// The likely upstream cause of a data-test failure: where the tested column
/// is defined and which parents the model reads.
pub fn upstream_cause(dt: &DataTest, ix: &ProjectIndex, model_sql: Option<&str>) -> String {
    let (Some(rel), col) = (&dt.relation, &dt.column) else {
        return "The tested model could not be determined from the test name.".into();
    };
    let Relation::Node(model) = rel else {
        return format!(
            "The tested relation is source table `{}`: the bad rows arrive from the source system.",
            rel.display()
        );
    };
    if let Some(seed) = ix.seeds.get(model) {
        return format!("`{model}` is a seed: the bad rows are in {seed}.");
    }
    let Some(sql) = model_sql else {
        return format!("The model `{model}` could not be read.");
    };
    let path = ix.node_path(model).unwrap_or("its file");
    let mut out = String::new();
    if let Some(c) = col {
        match column_origin(sql, c) {
            Some((line, text)) => out.push_str(&format!(
                "`{model}.{c}` comes from `{text}` ({path} line {line}). "
            )),
            None => out.push_str(&format!(
                "`{c}` is not named in {path} (it may come from `select *`). "
            )),
        }
    }
    let parents: Vec<String> = parents_of(sql)
        .iter()
        .map(|p| match p {
            Relation::Source(s, t) => format!("source `{s}.{t}`"),
            Relation::Node(n) => match (ix.node(n), ix.node_path(n)) {
                (Some(k), Some(p)) => format!("{} `{n}` ({p})", k.as_str()),
                _ => format!("`{n}`"),
            },
        })
        .collect();
    if parents.is_empty() {
        out.push_str(&format!(
            "`{model}` has no ref or source; the rows are produced by its own SQL."
        ));
    } else {
        out.push_str(&format!(
            "`{model}` reads {}, so the offending rows most likely arrive from there.",
            parents.join(" and ")
        ));
    }
    out
}

/// The thread text for a failed data test, once its rows were queried.
/// `rows` is the rendered `dbt show` table, or why it could not be shown.
pub fn data_test_summary(
    dt: &DataTest,
    rows: &Result<String, String>,
    context: Option<&Result<String, String>>,
    upstream: &str,
) -> String {
    let target = match (&dt.relation, &dt.column) {
        (Some(r), Some(c)) => format!("`{}.{c}`", r.display()),
        (Some(r), None) => format!("`{}`", r.display()),
        _ => "its model".into(),
    };
    let problem = match dt.test_type.as_deref() {
        Some("not_null") => "has null values".to_string(),
        Some("unique") => "has duplicate values".to_string(),
        Some("accepted_values") => "has values outside the accepted list".to_string(),
        Some("relationships") => "has values with no match in the referenced model".to_string(),
        Some(t) => format!("fails the `{t}` test"),
        None => "returned failing rows".to_string(),
    };
    let file = dt
        .file
        .as_deref()
        .map(|f| format!(" ({f})"))
        .unwrap_or_default();
    let mut s = format!(
        "Data test `{}`{file} failed with {}: {target} {problem}.",
        dt.test,
        rows_word(dt.failing_rows)
    );
    match rows {
        Ok(table) => s.push_str(&format!(
            "\nFailing rows (the test's query, via `dbt show`):\n```\n{table}\n```"
        )),
        Err(e) => s.push_str(&format!("\nThe failing rows could not be shown: {e}")),
    }
    if let Some(Ok(table)) = context {
        s.push_str(&format!("\nThe full rows behind them:\n```\n{table}\n```"));
    }
    s.push_str(&format!("\nLikely upstream cause: {upstream}"));
    s.push_str("\nThis is a data problem: the test and the data were not changed.");
    s
}

fn rows_word(n: Option<u64>) -> String {
    match n {
        Some(1) => "1 failing row".into(),
        Some(n) => format!("{n} failing rows"),
        None => "failing rows".into(),
    }
}

fn why_not(choice: &Choice, target: &str) -> String {
    match (choice.verdict.clone(), choice.best(), choice.runner_up()) {
        (Verdict::Ambiguous, Some(a), Some(b)) => format!(
            "no clear nearest name: `{}` ({}) and `{}` ({}) are about equally close",
            a.name, a.distance, b.name, b.distance
        ),
        (Verdict::TooFar, Some(a), _) => format!(
            "nothing defined is close: the nearest, `{}`, is {} edits away (a typo is at most {})",
            a.name,
            a.distance,
            max_distance(target.chars().count())
        ),
        _ => "there are no candidates to compare with".into(),
    }
}

fn next_best(choice: &Choice) -> String {
    choice
        .runner_up()
        .map(|r| format!(", next best `{}` at {}", r.name, r.distance))
        .unwrap_or_else(|| ", no other candidate".into())
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn lines_word(lines: &[usize]) -> String {
    let l: Vec<String> = lines.iter().map(usize::to_string).collect();
    match l.len() {
        0 => String::new(),
        1 => format!("line {}", l[0]),
        _ => format!("lines {}", l.join(", ")),
    }
}

/// `ref('x')`, `ref("x")`, `ref('pkg', 'x')`, `ref('x', v=2)`: group 1 is the name.
fn ref_pattern(name: &str) -> String {
    format!(
        r#"\bref\s*\(\s*(?:['"][\w.-]+['"]\s*,\s*)?['"]({})['"]"#,
        regex::escape(name)
    )
}

/// `source('s', 't')`: group 1 is the source, group 2 the table.
fn source_pattern(source: &str, table: &str) -> String {
    format!(
        r#"\bsource\s*\(\s*['"]({})['"]\s*,\s*['"]({})['"]"#,
        regex::escape(source),
        regex::escape(table)
    )
}

/// Replaces capture group `group` of every match of `pattern` with `to`,
/// leaving the rest (quotes, whitespace) as it was. None when nothing matched.
pub fn replace_group(
    text: &str,
    pattern: &str,
    group: usize,
    to: &str,
) -> Option<(String, Vec<usize>)> {
    let re = Regex::new(pattern).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut lines = vec![];
    for c in re.captures_iter(text) {
        let Some(m) = c.get(group) else { continue };
        out.push_str(&text[last..m.start()]);
        out.push_str(to);
        last = m.end();
        let l = line_of(text, m.start());
        if !lines.contains(&l) {
            lines.push(l);
        }
    }
    if lines.is_empty() {
        return None;
    }
    out.push_str(&text[last..]);
    Some((out, lines))
}

fn first_line(text: &str, pattern: &str) -> Option<usize> {
    let re = Regex::new(pattern).ok()?;
    re.find(text).map(|m| line_of(text, m.start()))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// The file line holding `quoted` (a line of SQL the database quoted back).
fn find_text_line(text: &str, quoted: &str) -> Option<usize> {
    let q = quoted.trim().trim_end_matches("...").trim();
    if q.is_empty() {
        return None;
    }
    text.lines()
        .position(|l| l.contains(q))
        .or_else(|| {
            let head: String = q.chars().take(30).collect();
            text.lines().position(|l| l.contains(head.as_str()))
        })
        .map(|i| i + 1)
}

/// The error sentence of a message, without dbt's `… Error in model x (path)` heading.
fn error_line(msg: &str) -> String {
    let heading = Regex::new(r"^(?:Compilation|Runtime|Database|Parsing) Error(?: in .*)?$")
        .expect("static regex");
    msg.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !heading.is_match(l) && !l.starts_with("Failure in "))
        .unwrap_or("unknown error")
        .to_string()
}

/// `did not find expected '-' indicator (while parsing a block collection)` from a YAML error.
fn yaml_raw_error(msg: &str) -> String {
    let Some((_, raw)) = msg.split_once("Raw Error:") else {
        return error_line(msg);
    };
    let parts: Vec<&str> = raw
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("---") && !l.starts_with("in \""))
        .collect();
    match parts.as_slice() {
        [] => error_line(msg),
        [one] => one.to_string(),
        [context, .., last] => format!("{last} ({context})"),
    }
}

/// `c.customer_nmae` → `[c, customer_nmae]`; `"c"."Name"` → `[c, Name]`;
/// `` `c`.`x` `` → `[c, x]`. Dots inside quotes belong to the name.
fn split_ident(s: &str) -> Vec<String> {
    let mut parts = vec![];
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for ch in s.trim().chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '`') => quote = Some(ch),
            (None, '.') => parts.push(std::mem::take(&mut cur)),
            (None, c) => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

/// `` `a`, `b`.`c` `` → the items of a list, split at commas outside quotes.
fn split_list(s: &str) -> Vec<String> {
    let mut items = vec![];
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for ch in s.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (None, '"' | '`') => {
                quote = Some(ch);
                cur.push(ch);
            }
            (None, ',') => items.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    items.push(cur);
    items
        .into_iter()
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty())
        .collect()
}

/// The last part of a possibly qualified name, unquoted.
fn last_part(s: &str) -> &str {
    let s = s.rsplit('.').next().unwrap_or(s);
    unquote_ident(s)
}

fn unquote_ident(s: &str) -> &str {
    s.trim().trim_matches(|c| c == '"' || c == '`')
}

fn quoted(list: &str) -> Vec<String> {
    QUOTED
        .captures_iter(list)
        .map(|c| c[1].to_string())
        .collect()
}

#[cfg(test)]
mod tests;
