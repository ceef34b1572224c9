//! What a column reference can see in a model's SQL: the relations behind a
//! table alias (`from {{ ref('stg_customers') }} c`), through CTEs
//! (`customers as (select * from {{ ref('stg_customers') }})` … `from customers c`)
//! and subqueries, or — for an unqualified name — everything the model reads.
//! Works on the model's Jinja SQL and on its compiled SQL. Pure: no IO.
//!
//! It is a tokenizer and a few patterns, not a SQL parser: it finds `from` and
//! `join` items and CTE definitions in any dialect, and when it cannot name
//! what a select list produces (a `*`, a Jinja loop) it says so by passing the
//! relations behind it through, so the caller compares with a superset.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use super::diagnose::Relation;
use super::index::ProjectIndex;

/// What a qualifier (or an unqualified column) can see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Relations whose columns are visible, in order of appearance.
    pub relations: Vec<Relation>,
    /// Column names the model's own SQL defines on the way (a CTE's select list).
    pub defined: Vec<String>,
    /// The CTEs and subqueries passed through, for the report (`customers`).
    pub via: Vec<String>,
    /// Tables read that are neither a ref, a source nor a CTE (`raw.events`).
    pub unknown: Vec<String>,
}

impl Scope {
    /// True when nothing was found behind the reference.
    pub fn is_empty(&self) -> bool {
        self.relations.is_empty() && self.defined.is_empty()
    }
}

/// What `qualifier` names in `sql` (Jinja or compiled), or with no qualifier,
/// everything the model reads. `ix` maps compiled table names back to nodes
/// and sources.
pub fn resolve(sql: &str, qualifier: Option<&str>, ix: &ProjectIndex) -> Scope {
    let q = Query::new(sql, ix);
    let mut out = Scope::default();
    let mut visited = BTreeSet::new();
    match qualifier {
        Some(name) => {
            let name = unquote(name);
            let mut bound = false;
            for b in q.bindings(0..q.toks.len()) {
                if b.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&name))
                {
                    bound = true;
                    q.target(&b.target, &mut out, &mut visited);
                }
            }
            // Not an alias here: a CTE, model or source table of that name
            // (databases name the table when it had no alias).
            let known = q.cte(&name).is_some()
                || ix.node_names().any(|n| n.eq_ignore_ascii_case(&name))
                || ix
                    .source_tables()
                    .any(|(_, t)| t.eq_ignore_ascii_case(&name));
            if !bound && known {
                q.name(&[name], &mut out, &mut visited);
            }
        }
        None => {
            for t in &q.toks {
                if let Tok::Rel(r) = t {
                    push(&mut out.relations, r.clone());
                }
            }
            for b in q.bindings(0..q.toks.len()) {
                if let Target::Name(parts) = &b.target {
                    if parts.len() > 1 || q.cte(&parts[0]).is_none() {
                        q.name(parts, &mut out, &mut visited);
                    }
                }
            }
            for (name, body) in &q.ctes {
                let p = q.provides(body.clone());
                out.defined.extend(p.names);
                push(&mut out.via, name.clone());
            }
            dedup(&mut out.defined);
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An unquoted identifier or keyword, as written.
    Word(String),
    /// A quoted identifier (`"x"`, `` `x` ``): never a keyword.
    Quoted(String),
    /// `{{ ref('x') }}` or `{{ source('s', 't') }}`.
    Rel(Relation),
    /// Any other `{{ … }}`, with letters glued to it (`{{ m }}_amount`).
    JinjaExpr,
    /// `{% … %}`: a loop or condition may produce any number of columns.
    JinjaStmt,
    Str,
    Dot,
    Comma,
    Open,
    Close,
    Star,
    Other,
}

impl Tok {
    fn is_word(&self, w: &str) -> bool {
        matches!(self, Tok::Word(x) if x.eq_ignore_ascii_case(w))
    }

    /// The identifier this token names, if it is one (keywords included).
    fn ident(&self) -> Option<&str> {
        match self {
            Tok::Word(w) | Tok::Quoted(w) => Some(w),
            _ => None,
        }
    }
}

/// Words that end a `from` item rather than alias it.
const NOT_ALIAS: &[&str] = &[
    "where",
    "group",
    "order",
    "having",
    "limit",
    "qualify",
    "window",
    "union",
    "intersect",
    "except",
    "minus",
    "on",
    "using",
    "join",
    "inner",
    "left",
    "right",
    "full",
    "outer",
    "cross",
    "natural",
    "lateral",
    "as",
    "from",
    "select",
    "with",
    "and",
    "or",
    "not",
    "offset",
    "fetch",
    "pivot",
    "unpivot",
    "tablesample",
    "sample",
    "for",
    "into",
    "values",
    "returning",
    "when",
    "then",
    "else",
    "end",
    "partition",
    "over",
    "asof",
    "positional",
    "semi",
    "anti",
    "set",
    "match_recognize",
    "connect",
    "start",
    "at",
    "before",
    "changes",
    "final",
    "is",
    "null",
    "true",
    "false",
    "in",
    "between",
    "like",
    "ilike",
    "case",
    "distinct",
    "all",
    "by",
];

static REF_EXPR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^\s*ref\s*\(\s*(?:['"][\w.-]+['"]\s*,\s*)?['"]([\w.-]+)['"][^)]*\)\s*$"#)
        .expect("static regex")
});
static SOURCE_EXPR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^\s*source\s*\(\s*['"]([\w.-]+)['"]\s*,\s*['"]([\w.-]+)['"]\s*\)\s*$"#)
        .expect("static regex")
});

fn tokenize(sql: &str) -> Vec<Tok> {
    let b = sql.as_bytes();
    let mut toks = vec![];
    // Where the last token ended, to see letters glued to Jinja.
    let mut last_end = usize::MAX;
    let mut i = 0;
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    let until = |from: usize, end: &str| {
        sql[from..]
            .find(end)
            .map_or(sql.len(), |p| from + p + end.len())
    };
    while i < b.len() {
        let c = b[i];
        let rest = &sql[i..];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if rest.starts_with("--") {
            i = until(i, "\n");
            continue;
        } else if rest.starts_with("/*") {
            i = until(i + 2, "*/");
            continue;
        } else if rest.starts_with("{#") {
            i = until(i + 2, "#}");
            continue;
        } else if rest.starts_with("{{") {
            let (inner, end) = match sql[i + 2..].find("}}") {
                Some(p) => (&sql[i + 2..i + 2 + p], i + 4 + p),
                None => (&sql[i + 2..], sql.len()),
            };
            let inner = inner.trim_matches('-');
            i = end;
            let glued_after = i < b.len() && word(b[i]);
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            let glued_before = last_end == start && matches!(toks.last(), Some(Tok::Word(_)));
            if glued_before {
                toks.pop();
            }
            let tok = match (REF_EXPR.captures(inner), SOURCE_EXPR.captures(inner)) {
                _ if glued_before || glued_after => Tok::JinjaExpr,
                (Some(c), _) => Tok::Rel(Relation::Node(c[1].to_string())),
                (_, Some(c)) => Tok::Rel(Relation::Source(c[1].to_string(), c[2].to_string())),
                _ => Tok::JinjaExpr,
            };
            toks.push(tok);
        } else if rest.starts_with("{%") {
            i = until(i + 2, "%}");
            toks.push(Tok::JinjaStmt);
        } else if c == b'\'' {
            i += 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i = (i + 1).min(b.len());
            toks.push(Tok::Str);
        } else if c == b'"' || c == b'`' {
            let close = sql[i + 1..]
                .find(c as char)
                .map_or(sql.len(), |p| i + 1 + p);
            toks.push(Tok::Quoted(sql[i + 1..close].to_string()));
            i = (close + 1).min(b.len());
        } else if word(c) && !c.is_ascii_digit() {
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            if last_end == start && matches!(toks.last(), Some(Tok::JinjaExpr)) {
                // `{{ m }}_amount`: already one opaque token.
            } else {
                toks.push(Tok::Word(sql[start..i].to_string()));
            }
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            toks.push(match c {
                b'.' => Tok::Dot,
                b',' => Tok::Comma,
                b'(' => Tok::Open,
                b')' => Tok::Close,
                b'*' => Tok::Star,
                _ => Tok::Other,
            });
        }
        last_end = i;
    }
    toks
}

/// What a `from` or `join` item reads.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Rel(Relation),
    /// A table name, possibly qualified: a CTE, or a compiled relation name.
    Name(Vec<String>),
    /// `( select … )`: the token range inside the parentheses.
    Subquery(Range<usize>),
    /// A table function or something else the doctor cannot see into.
    Opaque,
}

/// One `from`/`join` item: the name it is referred to by, and what it reads.
#[derive(Debug, Clone, PartialEq)]
struct Binding {
    name: Option<String>,
    target: Target,
}

/// What a CTE or subquery provides.
struct Provides {
    names: Vec<String>,
    /// The select list has `*`, a Jinja statement or a name Jinja makes: its
    /// names are incomplete, so the relations it reads pass through.
    passthrough: bool,
}

struct Query<'a> {
    toks: Vec<Tok>,
    /// CTE name → token range of its body.
    ctes: Vec<(String, Range<usize>)>,
    ix: &'a ProjectIndex,
}

impl<'a> Query<'a> {
    fn new(sql: &str, ix: &'a ProjectIndex) -> Query<'a> {
        let toks = tokenize(sql);
        let ctes = find_ctes(&toks);
        Query { toks, ctes, ix }
    }

    fn cte(&self, name: &str) -> Option<Range<usize>> {
        self.ctes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, r)| r.clone())
    }

    /// Every `from`/`join` item in `range`, nested ones included.
    fn bindings(&self, range: Range<usize>) -> Vec<Binding> {
        let t = &self.toks;
        let mut out = vec![];
        for i in range.clone() {
            if !(t[i].is_word("from") || t[i].is_word("join")) {
                continue;
            }
            let mut j = i + 1;
            while let Some((b, next)) = self.factor(j, range.end) {
                out.push(b);
                j = next;
                // `from a, b`: a comma join.
                if j < range.end && t[j] == Tok::Comma && t[i].is_word("from") {
                    j += 1;
                } else {
                    break;
                }
            }
        }
        out
    }

    /// The item starting at `i`, and where it ends.
    fn factor(&self, mut i: usize, end: usize) -> Option<(Binding, usize)> {
        let t = &self.toks;
        if i < end && t[i].is_word("lateral") {
            i += 1;
        }
        let (target, mut i) = match t.get(i).filter(|_| i < end)? {
            Tok::Rel(r) => (Target::Rel(r.clone()), i + 1),
            Tok::Open => {
                let close = matching(t, i);
                let inner = i + 1..close;
                let is_query = t
                    .get(i + 1)
                    .is_some_and(|x| x.is_word("select") || x.is_word("with"));
                let target = if is_query {
                    Target::Subquery(inner)
                } else {
                    Target::Opaque
                };
                (target, close + 1)
            }
            tok if tok.ident().is_some() && !matches!(tok, Tok::Word(w) if is_keyword(w)) => {
                let mut parts = vec![tok.ident().unwrap_or_default().to_string()];
                let mut j = i + 1;
                while j + 1 < end && t[j] == Tok::Dot {
                    match t[j + 1].ident() {
                        Some(p) => parts.push(p.to_string()),
                        None => break,
                    }
                    j += 2;
                }
                if j < end && t[j] == Tok::Open {
                    // A table function: `unnest(…)`, `read_csv(…)`.
                    (Target::Opaque, matching(t, j) + 1)
                } else {
                    (Target::Name(parts), j)
                }
            }
            _ => return None,
        };
        if i < end && t[i].is_word("as") {
            i += 1;
        }
        let alias = match t.get(i).filter(|_| i < end) {
            Some(Tok::Quoted(a)) => Some(a.clone()),
            Some(Tok::Word(a)) if !is_keyword(a) => Some(a.clone()),
            _ => None,
        };
        if alias.is_some() {
            i += 1;
            // `as c (a, b)`: column aliases.
            if i < end && t[i] == Tok::Open {
                i = matching(t, i) + 1;
            }
        }
        let name = alias.or_else(|| match &target {
            Target::Rel(Relation::Node(n)) => Some(n.clone()),
            Target::Rel(Relation::Source(_, table)) => Some(table.clone()),
            Target::Name(parts) => parts.last().cloned(),
            _ => None,
        });
        Some((Binding { name, target }, i))
    }

    /// Adds what `target` provides to `out`.
    fn target(&self, target: &Target, out: &mut Scope, visited: &mut BTreeSet<String>) {
        match target {
            Target::Rel(r) => push(&mut out.relations, r.clone()),
            Target::Name(parts) => self.name(parts, out, visited),
            Target::Subquery(body) => {
                push(&mut out.via, "a subquery".into());
                self.body(body.clone(), out, visited);
            }
            Target::Opaque => {}
        }
    }

    /// A table name: a CTE, else a node or source table named like its last part.
    fn name(&self, parts: &[String], out: &mut Scope, visited: &mut BTreeSet<String>) {
        let last = parts.last().map(String::as_str).unwrap_or_default();
        if parts.len() == 1 {
            if let Some(body) = self.cte(last) {
                let key = last.to_lowercase();
                if visited.insert(key) {
                    push(&mut out.via, last.to_string());
                    self.body(body, out, visited);
                }
                return;
            }
        }
        if let Some(node) = self.ix.node_names().find(|n| n.eq_ignore_ascii_case(last)) {
            push(&mut out.relations, Relation::Node(node.to_string()));
        } else if let Some((s, t)) = self
            .ix
            .source_tables()
            .find(|(_, t)| t.eq_ignore_ascii_case(last))
        {
            push(
                &mut out.relations,
                Relation::Source(s.to_string(), t.to_string()),
            );
        } else {
            push(&mut out.unknown, parts.join("."));
        }
    }

    /// A CTE or subquery body: the names its select list defines, and when
    /// those are incomplete, what it reads.
    fn body(&self, body: Range<usize>, out: &mut Scope, visited: &mut BTreeSet<String>) {
        let p = self.provides(body.clone());
        out.defined.extend(p.names);
        dedup(&mut out.defined);
        if p.passthrough {
            for b in self.bindings(body) {
                self.target(&b.target, out, visited);
            }
        }
    }

    /// The output names of the first select in `body`.
    fn provides(&self, body: Range<usize>) -> Provides {
        let t = &self.toks;
        let mut depth = 0usize;
        let mut start = None;
        for i in body.clone() {
            match &t[i] {
                Tok::Open => depth += 1,
                Tok::Close => depth = depth.saturating_sub(1),
                x if depth == 0 && x.is_word("select") => {
                    start = Some(i + 1);
                    break;
                }
                _ => {}
            }
        }
        let Some(mut i) = start else {
            return Provides {
                names: vec![],
                passthrough: true,
            };
        };
        while i < body.end && (t[i].is_word("distinct") || t[i].is_word("all")) {
            i += 1;
            if i < body.end && t[i].is_word("on") && t.get(i + 1) == Some(&Tok::Open) {
                i = matching(t, i + 1) + 1;
            }
        }
        let mut items: Vec<Range<usize>> = vec![];
        let mut from = i;
        let mut depth = 0usize;
        let mut end = body.end;
        for (j, tok) in t.iter().enumerate().take(body.end).skip(i) {
            match tok {
                Tok::Open => depth += 1,
                Tok::Close => depth = depth.saturating_sub(1),
                Tok::Comma if depth == 0 => {
                    items.push(from..j);
                    from = j + 1;
                }
                x if depth == 0
                    && [
                        "from",
                        "union",
                        "intersect",
                        "except",
                        "where",
                        "group",
                        "order",
                    ]
                    .iter()
                    .any(|k| x.is_word(k)) =>
                {
                    end = j;
                    break;
                }
                _ => {}
            }
        }
        items.push(from..end);
        let mut names = vec![];
        let mut passthrough = false;
        for item in items.into_iter().filter(|r| !r.is_empty()) {
            let toks = &t[item.clone()];
            if toks.contains(&Tok::JinjaStmt) {
                passthrough = true;
            }
            let n = toks.len();
            match (n, toks.last()) {
                // `*`, or a name Jinja makes (`{{ col }}`, `as {{ m }}_amount`).
                (_, Some(Tok::Star | Tok::JinjaExpr)) => passthrough = true,
                (_, Some(last)) if last.ident().is_some() => {
                    let name = last.ident().unwrap_or_default();
                    let before = n.checked_sub(2).map(|k| &toks[k]);
                    let keyword = matches!(last, Tok::Word(w) if is_keyword(w));
                    if !keyword || before.is_some_and(|b| b.is_word("as")) {
                        names.push(name.to_string());
                    }
                }
                _ => {}
            }
        }
        Provides { names, passthrough }
    }
}

/// `name as ( … )` preceded by `with`, `recursive` or a comma.
fn find_ctes(t: &[Tok]) -> Vec<(String, Range<usize>)> {
    let mut out = vec![];
    for i in 1..t.len() {
        let Some(name) = t[i].ident() else { continue };
        let lead =
            t[i - 1] == Tok::Comma || t[i - 1].is_word("with") || t[i - 1].is_word("recursive");
        if !lead || matches!(&t[i], Tok::Word(w) if is_keyword(w)) {
            continue;
        }
        let mut j = i + 1;
        if t.get(j) == Some(&Tok::Open) {
            j = matching(t, j) + 1;
        }
        if !t.get(j).is_some_and(|x| x.is_word("as")) {
            continue;
        }
        j += 1;
        while t
            .get(j)
            .is_some_and(|x| x.is_word("not") || x.is_word("materialized"))
        {
            j += 1;
        }
        if t.get(j) == Some(&Tok::Open) {
            let close = matching(t, j);
            out.push((name.to_string(), j + 1..close));
        }
    }
    out
}

/// The index of the `)` closing the `(` at `open` (or the end).
fn matching(t: &[Tok], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, x) in t.iter().enumerate().skip(open) {
        match x {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    t.len()
}

fn is_keyword(w: &str) -> bool {
    NOT_ALIAS.iter().any(|k| k.eq_ignore_ascii_case(w))
}

fn unquote(name: &str) -> String {
    name.trim_matches(|c| c == '"' || c == '`').to_string()
}

fn push<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    v.retain(|x| seen.insert(x.to_lowercase()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ix() -> ProjectIndex {
        let mut ix = ProjectIndex::default();
        for m in ["stg_customers", "stg_orders", "stg_payments", "customers"] {
            ix.models.insert(m.into(), format!("models/{m}.sql"));
        }
        ix.sources.insert(
            "jaffle_raw".into(),
            vec!["raw_orders".into(), "raw_customers".into()],
        );
        ix
    }

    /// `qualifier` in `sql` → (relations, defined names).
    fn check(what: &str, sql: &str, qualifier: Option<&str>, relations: &[&str], defined: &[&str]) {
        let s = resolve(sql, qualifier, &ix());
        let got: Vec<String> = s.relations.iter().map(Relation::display).collect();
        assert_eq!(got, relations, "{what}: {s:?}");
        assert_eq!(s.defined, defined, "{what}: {s:?}");
    }

    #[test]
    fn aliases_resolve_to_the_relations_they_name() {
        let cte = "with customers as (\n    select * from {{ ref('stg_customers') }}\n),\norders as (\n    select * from {{ ref('stg_orders') }}\n)\nselect c.customer_nmae, o.order_id\nfrom customers c\nleft join orders as o on c.customer_id = o.customer_id";
        /// (what, SQL, qualifier, relations, defined names)
        type Case<'a> = (
            &'a str,
            &'a str,
            Option<&'a str>,
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            ("ref with a bare alias", "select c.customer_nmae from {{ ref('stg_customers') }} c", Some("c"), &["stg_customers"], &[]),
            ("ref with as", "select c.x from {{ ref(\"stg_customers\") }} as c where c.x > 1", Some("c"), &["stg_customers"], &[]),
            ("alias case and quotes", "select C.x from {{ ref('stg_customers') }} AS \"C\"", Some("\"c\""), &["stg_customers"], &[]),
            ("package ref", "select c.x from {{ ref('jaffle', 'stg_customers') }} c", Some("c"), &["stg_customers"], &[]),
            ("source with an alias", "select r.x from {{ source('jaffle_raw', 'raw_orders') }} r", Some("r"), &["jaffle_raw.raw_orders"], &[]),
            ("ref without alias, by its name", "select stg_orders.x from {{ ref('stg_orders') }}", Some("stg_orders"), &["stg_orders"], &[]),
            ("one of two joined", "select o.x from {{ ref('stg_customers') }} c join {{ ref('stg_orders') }} o on c.customer_id = o.customer_id", Some("o"), &["stg_orders"], &[]),
            ("comma join", "select o.x from {{ ref('stg_customers') }} c, {{ ref('stg_orders') }} o", Some("o"), &["stg_orders"], &[]),
            ("CTE followed to its ref", cte, Some("c"), &["stg_customers"], &[]),
            ("the other CTE", cte, Some("o"), &["stg_orders"], &[]),
            ("a CTE by its own name", cte, Some("customers"), &["stg_customers"], &[]),
            ("CTE of a CTE", "with source as (select * from {{ source('jaffle_raw', 'raw_customers') }}),\nrenamed as (select * from source)\nselect r.x from renamed r", Some("r"), &["jaffle_raw.raw_customers"], &[]),
            ("explicit select list: its names, not its parent's", "with renamed as (select id as customer_id, first_name, s.last_name, upper(x) nick from {{ ref('stg_customers') }} s)\nselect r.frist_name from renamed r", Some("r"), &[], &["customer_id", "first_name", "last_name", "nick"]),
            ("select list with * passes its parent through", "with x as (select *, 1 as one from {{ ref('stg_orders') }})\nselect a.y from x a", Some("a"), &["stg_orders"], &["one"]),
            ("a Jinja loop in the select list passes through", "with p as (select order_id, {% for m in ms %} sum(a) as {{ m }}_amount, {% endfor %} 1 as k from {{ ref('stg_payments') }})\nselect p.z from p", Some("p"), &["stg_payments"], &["order_id", "k"]),
            ("subquery", "select s.x from (select * from {{ ref('stg_orders') }}) as s", Some("s"), &["stg_orders"], &[]),
            ("compiled SQL names", "select c.x from \"jaffle\".\"main\".\"stg_customers\" c", Some("c"), &["stg_customers"], &[]),
            ("compiled source", "with source as (select * from \"jaffle\".\"main\".\"raw_orders\") select s.x from source s", Some("s"), &["jaffle_raw.raw_orders"], &[]),
            ("a keyword is no alias", "select stg_orders.x from {{ ref('stg_orders') }} where 1 = 1", Some("where"), &[], &[]),
            ("an unknown alias", "select z.x from {{ ref('stg_orders') }} o", Some("z"), &[], &[]),
            ("comments are not read", "-- from {{ ref('stg_orders') }} c\nselect c.x from {{ ref('stg_customers') }} c /* join {{ ref('stg_payments') }} c */", Some("c"), &["stg_customers"], &[]),
            ("unqualified: everything the model reads", "-- depends_on: {{ ref('customers') }}\nwith a as (select order_id as id from {{ ref('stg_orders') }})\nselect x from a join {{ source('jaffle_raw', 'raw_orders') }} r on true", None, &["stg_orders", "jaffle_raw.raw_orders"], &["id"]),
        ];
        for (what, sql, q, rels, defined) in cases {
            check(what, sql, *q, rels, defined);
        }
    }

    #[test]
    fn the_demo_models_resolve() {
        let demo = crate::doctor::demo_dir();
        let ix = ProjectIndex::scan(&demo);
        let sql = std::fs::read_to_string(demo.join("models/marts/customers.sql")).expect("demo");
        let s = resolve(&sql, Some("customers"), &ix);
        assert_eq!(
            s.relations,
            [Relation::Node("stg_customers".into())],
            "{s:?}"
        );
        let s = resolve(&sql, Some("customer_orders"), &ix);
        assert!(s.relations.is_empty(), "{s:?}");
        assert_eq!(
            s.defined,
            [
                "customer_id",
                "first_order",
                "most_recent_order",
                "number_of_orders"
            ]
        );
        let sql = std::fs::read_to_string(demo.join("models/marts/orders.sql")).expect("demo");
        let s = resolve(&sql, Some("order_payments"), &ix);
        assert_eq!(
            s.relations,
            [Relation::Node("stg_payments".into())],
            "{s:?}"
        );
        assert_eq!(s.defined, ["order_id", "total_amount_cents"], "{s:?}");
    }
}
