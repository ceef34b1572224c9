//! The faults a drill injects, and where in a team's project each one goes.
//! Pure: the facts come from the baseline's artifacts (manifest, catalog,
//! a profile of the data) and the project's files, read by the caller.
//!
//! Each fault is what a person really commits: one small edit to one file
//! (two for a package: `packages.yml` and its lock). Candidates come best
//! first; the drill keeps the first one whose `dbt build` really fails.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use serde_json::Value;

use super::text::{jinja_code, line_of, misspell, splice, sql_code, words};
use super::yml::{self, DataTest, TestStyle};

/// A kind of fault. The names are the `--only` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Case {
    RefTypo,
    SourceTypo,
    ColumnTypo,
    MacroTypo,
    SyntaxError,
    YamlError,
    NotNullFailure,
    UniqueFailure,
    AcceptedValuesFailure,
    MissingPackage,
}

/// What a good healer does with a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// One right answer: a fix, verified, on exactly the broken file.
    Fix,
    /// Several reasonable answers (a fix, or a diagnosis), never a wrong change.
    NotWrong,
    /// The data is wrong, not the code: no change at all.
    Decline,
    /// Nothing to edit in the code (a package is missing): a diagnosis.
    Diagnose,
}

impl Expected {
    pub fn describe(self) -> &'static str {
        match self {
            Expected::Fix => "fixed and verified",
            Expected::NotWrong => "not wrong",
            Expected::Decline => "correctly declined",
            Expected::Diagnose => "diagnosed",
        }
    }
}

impl Case {
    pub const ALL: [Case; 10] = [
        Case::RefTypo,
        Case::SourceTypo,
        Case::ColumnTypo,
        Case::MacroTypo,
        Case::SyntaxError,
        Case::YamlError,
        Case::NotNullFailure,
        Case::UniqueFailure,
        Case::AcceptedValuesFailure,
        Case::MissingPackage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Case::RefTypo => "ref_typo",
            Case::SourceTypo => "source_typo",
            Case::ColumnTypo => "column_typo",
            Case::MacroTypo => "macro_typo",
            Case::SyntaxError => "syntax_error",
            Case::YamlError => "yaml_error",
            Case::NotNullFailure => "not_null_failure",
            Case::UniqueFailure => "unique_failure",
            Case::AcceptedValuesFailure => "accepted_values_failure",
            Case::MissingPackage => "missing_package",
        }
    }

    pub fn parse(name: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|c| c.name() == name.trim())
    }

    /// The fault in a few words.
    pub fn title(self) -> &'static str {
        match self {
            Case::RefTypo => "misspelt ref",
            Case::SourceTypo => "misspelt source",
            Case::ColumnTypo => "misspelt column",
            Case::MacroTypo => "misspelt macro",
            Case::SyntaxError => "SQL syntax error",
            Case::YamlError => "broken YAML",
            Case::NotNullFailure => "failing not_null test",
            Case::UniqueFailure => "failing unique test",
            Case::AcceptedValuesFailure => "failing accepted_values test",
            Case::MissingPackage => "missing package",
        }
    }

    pub fn expected(self) -> Expected {
        match self {
            Case::RefTypo | Case::SourceTypo | Case::ColumnTypo | Case::MacroTypo => Expected::Fix,
            Case::SyntaxError | Case::YamlError => Expected::NotWrong,
            Case::NotNullFailure | Case::UniqueFailure | Case::AcceptedValuesFailure => {
                Expected::Decline
            }
            Case::MissingPackage => Expected::Diagnose,
        }
    }
}

/// One injectable fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub case: Case,
    /// What changed, for people: "ref('stg_orders') → ref('stg_roders')".
    pub what: String,
    /// The broken file (relative to the project) and line.
    pub file: String,
    pub line: usize,
    /// Each changed file (relative to the project) and its new content.
    pub edits: Vec<(String, String)>,
}

/// A model of the project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub uid: String,
    pub name: String,
    /// Its SQL file, relative to the project.
    pub file: String,
    /// The unique ids of the nodes and sources it reads.
    pub parents: Vec<String>,
    /// The unique ids of the macros it calls.
    pub macros: Vec<String>,
    /// The properties file that documents it (relative to the project).
    pub patch_file: Option<String>,
    pub ephemeral: bool,
}

/// A column of a relation, as the warehouse has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub data_type: String,
}

/// What the data of one column looks like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnStats {
    pub uid: String,
    pub column: String,
    pub nulls: u64,
    /// Rows whose non-null value another row already has.
    pub duplicates: u64,
    /// The distinct values, when there are only a few.
    pub values: Option<Vec<String>>,
}

/// Everything the candidates are chosen from.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub project: String,
    /// The project's own SQL models.
    pub models: Vec<Model>,
    /// The names `ref` reaches: models, seeds, snapshots.
    pub ref_names: BTreeSet<String>,
    /// (source name, table name).
    pub sources: Vec<(String, String)>,
    /// The properties files that declare sources.
    pub source_files: BTreeSet<String>,
    /// (package, macro name) for every macro dbt knows.
    pub macros: Vec<(String, String)>,
    /// Columns by unique id: the catalog's when there is one.
    pub columns: BTreeMap<String, Vec<Column>>,
    /// Existing generic tests: (node uid, lower-case column, test name).
    pub tests: BTreeSet<(String, String, String)>,
    /// Project files by path: the models, their properties files, the package file.
    pub files: BTreeMap<String, String>,
    pub stats: Vec<ColumnStats>,
    /// The package file (`packages.yml` or `dependencies.yml`), when the project has one.
    pub package_file: Option<String>,
    /// Names of `local:` packages by the path written in the package file.
    pub local_packages: BTreeMap<String, String>,
    pub test_style: TestStyle,
}

impl Facts {
    /// The facts a manifest (and, when there is one, a catalog) tell.
    pub fn from_artifacts(manifest: &Value, catalog: Option<&Value>) -> Facts {
        let str_of = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let list_of = |v: &Value, a: &str, b: &str| -> Vec<String> {
            v.get(a)
                .and_then(|d| d.get(b))
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let project = manifest
            .pointer("/metadata/project_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut facts = Facts {
            project: project.clone(),
            ..Facts::default()
        };
        let empty = serde_json::Map::new();
        let nodes = manifest
            .get("nodes")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for (uid, node) in nodes {
            let kind = str_of(node, "resource_type");
            let own = str_of(node, "package_name") == project;
            if matches!(kind.as_str(), "model" | "seed" | "snapshot") {
                facts.ref_names.insert(str_of(node, "name"));
            }
            if kind == "model" && own && str_of(node, "language") != "python" {
                facts.models.push(Model {
                    uid: uid.clone(),
                    name: str_of(node, "name"),
                    file: str_of(node, "original_file_path"),
                    parents: list_of(node, "depends_on", "nodes"),
                    macros: list_of(node, "depends_on", "macros"),
                    patch_file: node
                        .get("patch_path")
                        .and_then(Value::as_str)
                        .and_then(|p| p.split_once("://"))
                        .map(|(_, p)| p.to_string()),
                    ephemeral: node.pointer("/config/materialized").and_then(Value::as_str)
                        == Some("ephemeral"),
                });
            }
            if kind == "test" {
                if let (Some(name), Some(col)) = (
                    node.pointer("/test_metadata/name").and_then(Value::as_str),
                    node.get("column_name").and_then(Value::as_str),
                ) {
                    let attached = node
                        .get("attached_node")
                        .and_then(Value::as_str)
                        .map(String::from)
                        .or_else(|| list_of(node, "depends_on", "nodes").into_iter().next())
                        .unwrap_or_default();
                    facts
                        .tests
                        .insert((attached, col.to_lowercase(), name.to_string()));
                }
            }
            if let Some(cols) = node.get("columns").and_then(Value::as_object) {
                let documented = cols
                    .values()
                    .map(|c| Column {
                        name: str_of(c, "name"),
                        data_type: str_of(c, "data_type"),
                    })
                    .collect();
                facts.columns.insert(uid.clone(), documented);
            }
        }
        if let Some(sources) = manifest.get("sources").and_then(Value::as_object) {
            for (uid, s) in sources {
                facts
                    .sources
                    .push((str_of(s, "source_name"), str_of(s, "name")));
                if str_of(s, "package_name") == project {
                    facts.source_files.insert(str_of(s, "original_file_path"));
                }
                if let Some(cols) = s.get("columns").and_then(Value::as_object) {
                    let documented = cols
                        .values()
                        .map(|c| Column {
                            name: str_of(c, "name"),
                            data_type: str_of(c, "data_type"),
                        })
                        .collect();
                    facts.columns.insert(uid.clone(), documented);
                }
            }
        }
        if let Some(macros) = manifest.get("macros").and_then(Value::as_object) {
            facts.macros = macros
                .values()
                .map(|m| (str_of(m, "package_name"), str_of(m, "name")))
                .collect();
        }
        // The warehouse's columns beat the documented ones: undocumented
        // columns are real too, and documented ones may be stale.
        for part in ["nodes", "sources"] {
            if let Some(entries) = catalog.and_then(|c| c.get(part)).and_then(Value::as_object) {
                for (uid, entry) in entries {
                    if let Some(cols) = entry.get("columns").and_then(Value::as_object) {
                        let real = cols
                            .values()
                            .map(|c| Column {
                                name: str_of(c, "name"),
                                data_type: str_of(c, "type"),
                            })
                            .collect();
                        facts.columns.insert(uid.clone(), real);
                    }
                }
            }
        }
        facts.models.sort_by(|a, b| a.file.cmp(&b.file));
        facts.sources.sort();
        facts
    }

    /// The project files the candidates read.
    pub fn wanted_files(&self) -> BTreeSet<String> {
        let mut files: BTreeSet<String> = self.models.iter().map(|m| m.file.clone()).collect();
        files.extend(self.models.iter().filter_map(|m| m.patch_file.clone()));
        files.extend(self.source_files.iter().cloned());
        files
    }

    /// One query that profiles every column of every documented model:
    /// nulls, duplicates and (for a few distinct values) the values. None
    /// when no model has known columns.
    pub fn stats_query(&self) -> Option<String> {
        let mut parts = vec![];
        for m in self
            .models
            .iter()
            .filter(|m| m.patch_file.is_some() && !m.ephemeral)
        {
            for c in self.columns.get(&m.uid).into_iter().flatten() {
                let ident = format!("\"{}\"", c.name.replace('"', "\"\""));
                let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
                parts.push(format!(
                    "select {uid} as uid, {col} as col, count(*) - count({ident}) as nulls, \
                     count({ident}) - count(distinct {ident}) as duplicates, \
                     case when count(distinct {ident}) between 2 and 8 \
                     then string_agg(distinct cast({ident} as varchar), chr(31)) end as vals \
                     from {{{{ ref({name}) }}}}",
                    uid = lit(&m.uid),
                    col = lit(&c.name),
                    name = lit(&m.name),
                ));
            }
        }
        (!parts.is_empty()).then(|| parts.join("\nunion all\n"))
    }

    /// Reads the rows of [`Facts::stats_query`] (`dbt show --output json`).
    pub fn read_stats(&mut self, shown: &Value) {
        let rows = shown
            .get("show")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0) as u64;
        self.stats = rows
            .iter()
            .map(|r| ColumnStats {
                uid: r
                    .get("uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                column: r
                    .get("col")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                nulls: num(r, "nulls"),
                duplicates: num(r, "duplicates"),
                values: r
                    .get("vals")
                    .and_then(Value::as_str)
                    .map(|v| v.split('\u{1f}').map(String::from).collect()),
            })
            .collect();
    }

    fn text(&self, file: &str) -> Option<&str> {
        self.files.get(file).map(String::as_str)
    }
}

/// The candidates for `case`, best first; empty when the project has no
/// place for this fault (the case is then not applicable).
pub fn candidates(case: Case, facts: &Facts) -> Vec<Fault> {
    match case {
        Case::RefTypo => name_typos(facts, case),
        Case::SourceTypo => name_typos(facts, case),
        Case::ColumnTypo => column_typos(facts),
        Case::MacroTypo => macro_typos(facts),
        Case::SyntaxError => syntax_errors(facts),
        Case::YamlError => yaml_errors(facts),
        Case::NotNullFailure | Case::UniqueFailure | Case::AcceptedValuesFailure => {
            data_tests(facts, case)
        }
        Case::MissingPackage => missing_packages(facts),
    }
}

/// Why a case has no candidate, for the scorecard.
pub fn not_applicable(case: Case, facts: &Facts) -> String {
    match case {
        Case::RefTypo => "no model refs another node".into(),
        Case::SourceTypo => "no model selects from a source".into(),
        Case::ColumnTypo => "no model names a column of its parents".into(),
        Case::MacroTypo => format!("no model calls a macro of {}", facts.project),
        Case::SyntaxError => "no model has a function call to break".into(),
        Case::YamlError => "no properties file to break".into(),
        Case::NotNullFailure => "no documented model has a column with nulls".into(),
        Case::UniqueFailure => "no documented model has a column with duplicates".into(),
        Case::AcceptedValuesFailure => {
            "no documented model has a text column with a few values".into()
        }
        Case::MissingPackage if facts.package_file.is_none() => {
            "the project has no packages".into()
        }
        Case::MissingPackage => "no model calls a macro of an installed package".into(),
    }
}

/// Misspelt `ref('…')` or `source('…', '…')` names.
fn name_typos(facts: &Facts, case: Case) -> Vec<Fault> {
    let re = match case {
        Case::RefTypo => Regex::new(r#"\bref\(\s*['"](\w+)['"]\s*\)"#),
        _ => Regex::new(r#"\bsource\(\s*['"](\w+)['"]\s*,\s*['"](\w+)['"]\s*\)"#),
    }
    .expect("a valid pattern");
    let mut found: Vec<(bool, Fault)> = vec![];
    for m in &facts.models {
        let Some(text) = facts.text(&m.file) else {
            continue;
        };
        let masked = jinja_code(text);
        for cap in re.captures_iter(&masked) {
            let (name, known): (regex::Match, Vec<&str>) = match case {
                Case::RefTypo => (
                    cap.get(1).expect("group 1"),
                    facts.ref_names.iter().map(String::as_str).collect(),
                ),
                _ => {
                    let source = &cap[1];
                    let table = cap.get(2).expect("group 2");
                    if !facts
                        .sources
                        .iter()
                        .any(|(s, t)| s == source && t == table.as_str())
                    {
                        continue;
                    }
                    (
                        table,
                        facts.sources.iter().map(|(_, t)| t.as_str()).collect(),
                    )
                }
            };
            if case == Case::RefTypo && !facts.ref_names.contains(name.as_str()) {
                continue;
            }
            let Some(typo) = misspell(name.as_str(), known.iter().copied()) else {
                continue;
            };
            let call = cap.get(0).expect("the match");
            let before = &text[call.start()..call.end()];
            let after = before.replacen(name.as_str(), &typo, 1);
            // A ref in a `-- depends_on:` comment is a hint, less typical to misspell.
            let line_start = text[..call.start()].rfind('\n').map_or(0, |p| p + 1);
            let in_comment = text[line_start..call.start()].contains("--");
            found.push((
                in_comment,
                Fault {
                    case,
                    what: format!("{before} → {after}"),
                    file: m.file.clone(),
                    line: line_of(text, call.start()),
                    edits: vec![(
                        m.file.clone(),
                        splice(text, name.start(), name.len(), &typo),
                    )],
                },
            ));
        }
    }
    found.sort_by_key(|(in_comment, _)| *in_comment);
    found.into_iter().map(|(_, f)| f).collect()
}

/// A column of a parent, misspelt where a model names it.
fn column_typos(facts: &Facts) -> Vec<Fault> {
    let mut found: Vec<(u8, Fault)> = vec![];
    for m in &facts.models {
        let Some(text) = facts.text(&m.file) else {
            continue;
        };
        let parent_columns: BTreeSet<String> = m
            .parents
            .iter()
            .filter_map(|p| facts.columns.get(p))
            .flatten()
            .map(|c| c.name.to_lowercase())
            .collect();
        if parent_columns.is_empty() {
            continue;
        }
        let masked = sql_code(text);
        let all = words(&masked);
        let mut known: BTreeSet<&str> = all.iter().map(|w| w.text).collect();
        known.extend(parent_columns.iter().map(String::as_str));
        known.extend(facts.ref_names.iter().map(String::as_str));
        for (i, w) in all.iter().enumerate() {
            if !parent_columns.contains(&w.text.to_lowercase()) {
                continue;
            }
            let before = masked[..w.at].trim_end();
            let after = masked[w.at + w.text.len()..].trim_start();
            let previous = i.checked_sub(1).map(|p| all[p].text.to_lowercase());
            // An alias being defined, a relation's name, a function: not a column reference.
            if matches!(previous.as_deref(), Some("as" | "from" | "join"))
                || after.starts_with('(')
                || after.starts_with('.')
            {
                continue;
            }
            let Some(typo) = misspell(w.text, known.iter().copied()) else {
                continue;
            };
            // `alias.column` is unmistakably a column; a bare name comes next.
            let rank = if before.ends_with('.') { 0 } else { 1 };
            found.push((
                rank,
                Fault {
                    case: Case::ColumnTypo,
                    what: format!("column {} → {typo}", w.text),
                    file: m.file.clone(),
                    line: line_of(text, w.at),
                    edits: vec![(m.file.clone(), splice(text, w.at, w.text.len(), &typo))],
                },
            ));
        }
    }
    found.sort_by_key(|(rank, _)| *rank);
    found.into_iter().map(|(_, f)| f).collect()
}

/// A call of one of the project's own macros, misspelt.
fn macro_typos(facts: &Facts) -> Vec<Fault> {
    let all: BTreeSet<&str> = facts.macros.iter().map(|(_, n)| n.as_str()).collect();
    let mut found = vec![];
    for m in &facts.models {
        let Some(text) = facts.text(&m.file) else {
            continue;
        };
        let masked = jinja_code(text);
        let own = m
            .macros
            .iter()
            .filter_map(|uid| uid.strip_prefix(&format!("macro.{}.", facts.project)));
        for name in own {
            let re =
                Regex::new(&format!(r"\b{}\s*\(", regex::escape(name))).expect("a valid pattern");
            for call in re.find_iter(&masked) {
                if masked[..call.start()].ends_with('.') {
                    continue;
                }
                let Some(typo) = misspell(name, all.iter().copied()) else {
                    continue;
                };
                found.push(Fault {
                    case: Case::MacroTypo,
                    what: format!("{name}(…) → {typo}(…)"),
                    file: m.file.clone(),
                    line: line_of(text, call.start()),
                    edits: vec![(
                        m.file.clone(),
                        splice(text, call.start(), name.len(), &typo),
                    )],
                });
            }
        }
    }
    found
}

/// A function call that lost its closing parenthesis.
fn syntax_errors(facts: &Facts) -> Vec<Fault> {
    let re = Regex::new(r"\b[A-Za-z_][A-Za-z0-9_]*\([^()\n]*\)").expect("a valid pattern");
    let as_next = Regex::new(r"^\s+as\s").expect("a valid pattern");
    let mut found: Vec<(u8, Fault)> = vec![];
    for m in &facts.models {
        let Some(text) = facts.text(&m.file) else {
            continue;
        };
        let masked = sql_code(text);
        for call in re.find_iter(&masked) {
            // Inside a Jinja loop the one slip would be repeated per iteration.
            let opened = text[..call.start()].matches("{% for").count()
                + text[..call.start()].matches("{%- for").count();
            let closed = text[..call.start()].matches("endfor").count();
            if opened > closed {
                continue;
            }
            let close = call.end() - 1;
            let rank = if as_next.is_match(&masked[call.end()..]) {
                0
            } else {
                1
            };
            found.push((
                rank,
                Fault {
                    case: Case::SyntaxError,
                    what: format!("`{}` lost its `)`", &text[call.start()..call.end()]),
                    file: m.file.clone(),
                    line: line_of(text, call.start()),
                    edits: vec![(m.file.clone(), splice(text, close, 1, ""))],
                },
            ));
        }
    }
    found.sort_by_key(|(rank, _)| *rank);
    found.into_iter().map(|(_, f)| f).collect()
}

/// A properties file with one line indented a space too little.
fn yaml_errors(facts: &Facts) -> Vec<Fault> {
    let mut files: BTreeSet<&String> = facts
        .models
        .iter()
        .filter_map(|m| m.patch_file.as_ref())
        .collect();
    files.extend(facts.source_files.iter());
    let mut found = vec![];
    for file in files {
        let Some(text) = facts.text(file) else {
            continue;
        };
        for (line, edited) in yml::breakages(text) {
            let shown = text.lines().nth(line - 1).unwrap_or_default().trim();
            found.push(Fault {
                case: Case::YamlError,
                what: format!("`{shown}` indented one space too little"),
                file: file.clone(),
                line,
                edits: vec![(file.clone(), edited)],
            });
        }
    }
    found
}

/// A generic test added to a column whose data violates it.
fn data_tests(facts: &Facts, case: Case) -> Vec<Fault> {
    let test_name = match case {
        Case::NotNullFailure => "not_null",
        Case::UniqueFailure => "unique",
        _ => "accepted_values",
    };
    let mut found: Vec<(bool, Fault)> = vec![];
    for s in &facts.stats {
        let Some(model) = facts.models.iter().find(|m| m.uid == s.uid) else {
            continue;
        };
        let Some(file) = &model.patch_file else {
            continue;
        };
        let Some(text) = facts.text(file) else {
            continue;
        };
        let tested = facts.tests.contains(&(
            s.uid.clone(),
            s.column.to_lowercase(),
            test_name.to_string(),
        ));
        let column_type = facts
            .columns
            .get(&s.uid)
            .and_then(|cs| cs.iter().find(|c| c.name.eq_ignore_ascii_case(&s.column)))
            .map(|c| c.data_type.to_lowercase())
            .unwrap_or_default();
        let (test, why) = match case {
            Case::NotNullFailure if s.nulls > 0 && !tested => {
                (DataTest::NotNull, format!("{} null rows", s.nulls))
            }
            Case::UniqueFailure if s.duplicates > 0 && !tested => (
                DataTest::Unique,
                format!("{} repeated values", s.duplicates),
            ),
            Case::AcceptedValuesFailure => {
                let Some(values) = &s.values else { continue };
                let textual = ["varchar", "text", "string", "char"]
                    .iter()
                    .any(|t| column_type.contains(t));
                if !textual
                    || values
                        .iter()
                        .any(|v| v.is_empty() || v.contains(['\n', '\'']))
                {
                    continue;
                }
                let mut allowed = values.clone();
                allowed.sort();
                let left_out = allowed.pop().expect("at least two values");
                (
                    DataTest::AcceptedValues(allowed),
                    format!("'{left_out}' is not accepted"),
                )
            }
            _ => continue,
        };
        let Some(edited) =
            yml::add_column_test(text, &model.name, &s.column, &test, &facts.test_style)
        else {
            continue;
        };
        let at = edited
            .lines()
            .zip(text.lines())
            .take_while(|(a, b)| a == b)
            .count()
            + 1;
        found.push((
            tested,
            Fault {
                case,
                what: format!("{test_name} on {}.{} ({why})", model.name, s.column),
                file: file.clone(),
                line: at,
                edits: vec![(file.clone(), edited)],
            },
        ));
    }
    // A column that already has a test of this kind comes last (accepted_values only).
    found.sort_by_key(|(tested, _)| *tested);
    found.into_iter().map(|(_, f)| f).collect()
}

/// An installed package that a model calls, removed from the package file.
fn missing_packages(facts: &Facts) -> Vec<Fault> {
    let Some(file) = &facts.package_file else {
        return vec![];
    };
    let Some(text) = facts.text(file) else {
        return vec![];
    };
    let mut found = vec![];
    let mut seen = BTreeSet::new();
    for m in &facts.models {
        let Some(model_text) = facts.text(&m.file) else {
            continue;
        };
        let jinja = jinja_code(model_text);
        for uid in &m.macros {
            let Some((package, name)) = uid.strip_prefix("macro.").and_then(|r| r.split_once('.'))
            else {
                continue;
            };
            if package == facts.project
                || !jinja.contains(&format!("{package}."))
                || !seen.insert(package)
            {
                continue;
            }
            let Some(edited) = yml::remove_package(text, |entry| {
                package_name(entry, &facts.local_packages).as_deref() == Some(package)
            }) else {
                continue;
            };
            found.push(Fault {
                case: Case::MissingPackage,
                what: format!(
                    "removed {package} from {file}; {} calls {package}.{name}",
                    m.file
                ),
                file: file.clone(),
                line: 1,
                edits: vec![(file.clone(), edited)],
            });
        }
    }
    found
}

/// The project name a package entry installs, as far as the entry tells.
fn package_name(entry: &Value, local_packages: &BTreeMap<String, String>) -> Option<String> {
    let normal = |s: &str| s.trim_end_matches(".git").replace('-', "_").to_lowercase();
    if let Some(local) = entry.get("local").and_then(Value::as_str) {
        return local_packages.get(local).cloned();
    }
    let spec = entry
        .get("package")
        .or_else(|| entry.get("git"))
        .or_else(|| entry.get("private"))
        .and_then(Value::as_str)?;
    spec.trim_end_matches('/').rsplit('/').next().map(normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        let manifest = serde_json::json!({
            "metadata": {"project_name": "shop"},
            "nodes": {
                "model.shop.stg_orders": {
                    "resource_type": "model", "package_name": "shop", "name": "stg_orders",
                    "original_file_path": "models/stg_orders.sql",
                    "patch_path": "shop://models/schema.yml",
                    "depends_on": {"nodes": ["source.shop.raw.orders"], "macros": []},
                    "config": {"materialized": "view"}, "columns": {}
                },
                "model.shop.orders": {
                    "resource_type": "model", "package_name": "shop", "name": "orders",
                    "original_file_path": "models/orders.sql",
                    "depends_on": {"nodes": ["model.shop.stg_orders"],
                                   "macros": ["macro.shop.cents", "macro.dbt_utils.star"]},
                    "config": {"materialized": "table"}, "columns": {}
                },
                "test.shop.unique_stg_orders_order_id": {
                    "resource_type": "test", "package_name": "shop", "name": "unique_stg_orders_order_id",
                    "test_metadata": {"name": "unique"}, "column_name": "order_id",
                    "attached_node": "model.shop.stg_orders"
                }
            },
            "sources": {
                "source.shop.raw.orders": {"source_name": "raw", "name": "orders", "package_name": "shop",
                                           "original_file_path": "models/sources.yml", "columns": {}}
            },
            "macros": {
                "macro.shop.cents": {"package_name": "shop", "name": "cents"},
                "macro.dbt_utils.star": {"package_name": "dbt_utils", "name": "star"}
            }
        });
        let catalog = serde_json::json!({
            "nodes": {"model.shop.stg_orders": {"columns": {
                "ORDER_ID": {"name": "order_id", "type": "INTEGER"},
                "STATUS": {"name": "status", "type": "VARCHAR"},
                "AMOUNT": {"name": "amount", "type": "INTEGER"}}}},
            "sources": {"source.shop.raw.orders": {"columns": {
                "ID": {"name": "id", "type": "INTEGER"},
                "STATUS": {"name": "status", "type": "VARCHAR"},
                "AMOUNT": {"name": "amount", "type": "INTEGER"}}}}
        });
        let mut f = Facts::from_artifacts(&manifest, Some(&catalog));
        f.files.insert(
            "models/stg_orders.sql".into(),
            "-- depends_on: {{ ref('orders') }}\nselect id as order_id, status, amount\nfrom {{ source('raw', 'orders') }}\n".into(),
        );
        f.files.insert(
            "models/orders.sql".into(),
            "select o.order_id, {{ cents('o.amount') }} as dollars, {{ dbt_utils.star(ref('stg_orders')) }}\n\
             from {{ ref('stg_orders') }} as o\nwhere upper(o.status) != 'X'\n"
                .into(),
        );
        f.files.insert(
            "models/schema.yml".into(),
            "models:\n  - name: stg_orders\n    description: Orders.\n    columns:\n      - name: order_id\n".into(),
        );
        f.files.insert(
            "packages.yml".into(),
            "packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n".into(),
        );
        f.package_file = Some("packages.yml".into());
        f
    }

    fn check(case: Case, want_what: &str, want_file: &str) {
        let f = facts();
        let found = candidates(case, &f);
        let first = found
            .first()
            .unwrap_or_else(|| panic!("{}: no candidate", case.name()));
        assert_eq!(
            (first.what.as_str(), first.file.as_str()),
            (want_what, want_file),
            "{}",
            case.name()
        );
        let (file, content) = &first.edits[0];
        assert_ne!(
            f.files[file],
            *content,
            "{}: the edit changes the file",
            case.name()
        );
    }

    #[test]
    fn each_case_finds_its_place_in_a_small_project() {
        check(
            Case::RefTypo,
            "ref('stg_orders') → ref('stg_roders')",
            "models/orders.sql",
        );
        check(
            Case::SourceTypo,
            "source('raw', 'orders') → source('raw', 'oredrs')",
            "models/stg_orders.sql",
        );
        check(
            Case::ColumnTypo,
            "column order_id → ordre_id",
            "models/orders.sql",
        );
        check(Case::MacroTypo, "cents(…) → cnets(…)", "models/orders.sql");
        check(
            Case::SyntaxError,
            "`upper(o.status)` lost its `)`",
            "models/orders.sql",
        );
        check(
            Case::YamlError,
            "`description: Orders.` indented one space too little",
            "models/schema.yml",
        );
        check(
            Case::MissingPackage,
            "removed dbt_utils from packages.yml; models/orders.sql calls dbt_utils.star",
            "packages.yml",
        );
    }

    #[test]
    fn data_tests_are_chosen_from_the_data() {
        let mut f = facts();
        f.read_stats(&serde_json::json!({"show": [
            {"uid": "model.shop.stg_orders", "col": "order_id", "nulls": 0, "duplicates": 2, "vals": null},
            {"uid": "model.shop.stg_orders", "col": "amount", "nulls": 3, "duplicates": 5, "vals": null},
            {"uid": "model.shop.stg_orders", "col": "status", "nulls": 0, "duplicates": 9,
             "vals": "shipped\u{1f}placed\u{1f}returned"}
        ]}));
        let whats = |case| {
            candidates(case, &f)
                .into_iter()
                .map(|c| c.what)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            whats(Case::NotNullFailure),
            ["not_null on stg_orders.amount (3 null rows)"]
        );
        // order_id already has a unique test (it passes): not a candidate.
        assert_eq!(
            whats(Case::UniqueFailure),
            [
                "unique on stg_orders.amount (5 repeated values)",
                "unique on stg_orders.status (9 repeated values)"
            ]
        );
        assert_eq!(
            whats(Case::AcceptedValuesFailure),
            ["accepted_values on stg_orders.status ('shipped' is not accepted)"]
        );
        let edit = &candidates(Case::AcceptedValuesFailure, &f)[0].edits[0].1;
        assert!(edit.contains("values: ['placed', 'returned']"), "{edit}");
    }

    #[test]
    fn a_project_without_a_place_for_a_fault_says_so() {
        let mut f = facts();
        f.package_file = None;
        assert!(candidates(Case::MissingPackage, &f).is_empty());
        assert_eq!(
            not_applicable(Case::MissingPackage, &f),
            "the project has no packages"
        );
        assert!(
            candidates(Case::NotNullFailure, &f).is_empty(),
            "no stats, no data test"
        );
    }

    #[test]
    fn package_entries_name_what_they_install() {
        let locals = BTreeMap::from([("../shared".to_string(), "shared_macros".to_string())]);
        let cases = [
            (
                serde_json::json!({"package": "dbt-labs/dbt_utils", "version": "1.3.0"}),
                Some("dbt_utils"),
            ),
            (
                serde_json::json!({"git": "https://github.com/dbt-labs/dbt-utils.git"}),
                Some("dbt_utils"),
            ),
            (
                serde_json::json!({"local": "../shared"}),
                Some("shared_macros"),
            ),
            (serde_json::json!({"local": "elsewhere"}), None),
        ];
        for (entry, want) in cases {
            assert_eq!(package_name(&entry, &locals).as_deref(), want, "{entry}");
        }
    }

    #[test]
    fn case_names_round_trip() {
        for case in Case::ALL {
            assert_eq!(Case::parse(case.name()), Some(case));
        }
        assert_eq!(Case::parse("nope"), None);
    }
}
