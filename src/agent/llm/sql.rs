//! Is this SQL a single read-only query? Pure; no IO.
//!
//! `run_sql_query` sends the model's SQL to the warehouse through
//! `dbt show --inline`, so it must not be able to write. The check is
//! conservative on purpose — a refused query costs the model one turn, a
//! dropped table costs a morning:
//!
//! - Jinja is limited to `{{ ref(...) }}`, `{{ source(...) }}` and
//!   `{{ var(...) }}`: `{% ... %}` blocks and any other expression
//!   (`run_query`, `statement`, `adapter`, …) run SQL at compile time.
//! - Comments, string literals and quoted identifiers are blanked out before
//!   looking at keywords, so `'drop'` in a string is fine and a `drop` hidden
//!   behind a comment is still seen.
//! - Exactly one statement (a trailing `;` is dropped), starting with `SELECT`,
//!   `WITH` or `(`.
//! - No keyword that writes anywhere in it (a CTE can `DELETE … RETURNING`,
//!   `SELECT … INTO` creates a table), and no function known to read files or
//!   change state (`read_text`, `pg_read_file`, `nextval`, `query`, …).

use std::sync::LazyLock;

use regex::Regex;

/// Keywords that write or change state wherever they appear. Words that are
/// also common function names (`replace`, `left`) are left out: a statement
/// that starts with them is refused by the first-word rule anyway.
const WRITE_WORDS: &[&str] = &[
    "insert", "update", "delete", "merge", "upsert", "create", "drop", "alter", "truncate",
    "grant", "revoke", "copy", "attach", "detach", "into", "call", "exec", "execute", "vacuum",
    "pragma", "install", "unload", "export", "import", "lock", "undrop", "refresh",
];

/// Functions that read files, reach other systems or change state.
const FORBIDDEN_FUNCTIONS: &[&str] = &[
    "read_text",
    "read_blob",
    "read_csv",
    "read_csv_auto",
    "read_parquet",
    "parquet_scan",
    "read_json",
    "read_json_auto",
    "read_ndjson",
    "read_ndjson_auto",
    "read_xlsx",
    "glob",
    "query",
    "query_table",
    "sqlite_scan",
    "postgres_scan",
    "mysql_scan",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "lo_import",
    "lo_export",
    "dblink",
    "dblink_exec",
    "pg_sleep",
    "set_config",
    "nextval",
    "setval",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "load_extension",
    "external_query",
];

static JINJA_EXPR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)\{\{(.*?)\}\}").expect("static regex"));

/// `ref('a')`, `ref("pkg", "a")`, `source('s', 't')`, `var('x')`.
static ALLOWED_JINJA: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^\s*(?:ref|source|var)\s*\(\s*(?:'[^'{}]*'|"[^"{}]*")(?:\s*,\s*(?:'[^'{}]*'|"[^"{}]*"))*\s*\)\s*$"#,
    )
    .expect("static regex")
});

static WORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z_][A-Za-z0-9_$]*").expect("static regex"));

/// Checks that `sql` is one read-only query. Returns it without a trailing
/// `;` (dbt wraps it in a subquery), or why it is refused.
pub fn check_read_only(sql: &str) -> Result<String, String> {
    if sql.contains("{%") || sql.contains("{#") {
        return Err(
            "Jinja blocks ({% … %}, {# … #}) are not allowed in queries; \
                    only {{ ref(…) }}, {{ source(…) }} and {{ var(…) }}"
                .into(),
        );
    }
    for m in JINJA_EXPR.captures_iter(sql) {
        if !ALLOWED_JINJA.is_match(&m[1]) {
            return Err(format!(
                "the Jinja expression {{{{{}}}}} is not allowed in queries; \
                 only {{{{ ref(…) }}}}, {{{{ source(…) }}}} and {{{{ var(…) }}}}",
                &m[1]
            ));
        }
    }
    // The allowed expressions stand for relations; blank them out so their
    // quoted arguments do not count as SQL strings.
    let plain = JINJA_EXPR.replace_all(sql, " jinja_relation ");
    let skeleton = skeleton(&plain)?;
    let code = skeleton
        .trim_end()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    if code.contains(';') {
        return Err("only one statement is allowed (found a `;` in the middle)".into());
    }
    let words: Vec<(usize, String)> = WORD
        .find_iter(code)
        .map(|m| (m.end(), m.as_str().to_ascii_lowercase()))
        .collect();
    let starts_ok = code.trim_start().starts_with('(')
        || matches!(words.first(), Some((_, w)) if w == "select" || w == "with");
    if !starts_ok {
        let first = words.first().map(|(_, w)| w.as_str()).unwrap_or("nothing");
        return Err(format!(
            "only read-only queries starting with SELECT or WITH are allowed (this one starts with `{first}`)"
        ));
    }
    for (end, word) in &words {
        if WRITE_WORDS.contains(&word.as_str()) {
            return Err(format!(
                "`{}` can write to the warehouse, so this query is refused \
                 (if it is a column name, double-quote it)",
                word.to_ascii_uppercase()
            ));
        }
        let called = code[*end..].trim_start().starts_with('(');
        if called && (FORBIDDEN_FUNCTIONS.contains(&word.as_str()) || word.starts_with("system$")) {
            return Err(format!(
                "the function `{word}` reads files or changes state, so this query is refused"
            ));
        }
    }
    let kept = sql.trim_end();
    let kept = kept.trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    Ok(kept.to_string())
}

/// The SQL with comments removed and the insides of string literals and
/// quoted identifiers blanked, so that only code is left to inspect.
fn skeleton(sql: &str) -> Result<String, String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '-' if next == Some('-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                out.push(' ');
            }
            '/' if next == Some('*') => {
                let mut depth = 0;
                loop {
                    if i >= chars.len() {
                        return Err("unterminated /* comment".into());
                    }
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            '\'' | '"' | '`' => {
                // A doubled quote inside is an escaped quote; a backslash
                // escapes the next character (MySQL, BigQuery, Postgres E'').
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("unterminated {c}…{c} literal")),
                        Some('\\') => i += 2,
                        Some(&q) if q == c && chars.get(i + 1) == Some(&c) => i += 2,
                        Some(&q) if q == c => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                // A literal reads as a value, never as a keyword.
                out.push_str(" lit ");
            }
            '$' if !after_word(&out) && dollar_tag(&chars[i..]).is_some() => {
                // Postgres dollar quoting: $$…$$ or $tag$…$tag$.
                let tag: Vec<char> = dollar_tag(&chars[i..]).expect("checked above");
                i += tag.len();
                loop {
                    if i >= chars.len() {
                        return Err("unterminated $$ literal".into());
                    }
                    if chars[i..].starts_with(&tag) {
                        i += tag.len();
                        break;
                    }
                    i += 1;
                }
                out.push_str(" lit ");
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Whether the text so far ends inside a word (`system$…` is a name, not a quote).
fn after_word(out: &str) -> bool {
    out.chars()
        .last()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `$$` or `$tag$` at the start of `chars`.
fn dollar_tag(chars: &[char]) -> Option<Vec<char>> {
    let end = chars[1..].iter().position(|c| *c == '$')? + 1;
    let inner = &chars[1..end];
    inner
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == '_')
        .then(|| chars[..=end].to_vec())
        .filter(|_| inner.first().is_none_or(|c| !c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str, allowed: bool) {
        let got = check_read_only(sql);
        assert_eq!(got.is_ok(), allowed, "{sql:?} → {got:?}");
    }

    #[test]
    fn only_single_read_only_queries_pass() {
        let cases: &[(&str, bool)] = &[
            ("select 1", true),
            ("SELECT * FROM orders LIMIT 5;", true),
            ("  select 1 ;  \n", true),
            ("with a as (select 1 as x) select * from a", true),
            ("(select 1) union all (select 2)", true),
            (
                "select * from {{ ref('orders') }} where status = 'returned'",
                true,
            ),
            ("select * from {{ source('jaffle', 'raw_orders') }}", true),
            ("select 'drop table x' as s", true),
            ("select \"update\" from t", true),
            ("select replace(name, 'a', 'b') from t", true),
            ("select 1 -- drop table x", true),
            ("select 1 /* delete from t */", true),
            ("select $$drop$$ as s", true),
            ("select created_at, updated_at from t", true),
            ("select 'it''s; fine' as s", true),
            ("delete from orders", false),
            ("DELETE FROM orders WHERE 1=1", false),
            ("-- comment\ndrop table orders", false),
            ("/* hi */ drop table orders", false),
            ("select 1; drop table x", false),
            ("select 1; select 2", false),
            ("insert into t values (1)", false),
            ("update t set a = 1", false),
            (
                "merge into t using s on t.id = s.id when matched then delete",
                false,
            ),
            ("create table t as select 1", false),
            ("alter table t add column c int", false),
            ("truncate t", false),
            ("grant select on t to public", false),
            ("copy t to '/tmp/x.csv'", false),
            ("attach 'x.db' as x", false),
            (
                "with d as (delete from t returning *) select * from d",
                false,
            ),
            ("select * into new_table from t", false),
            ("select * from read_text('/etc/passwd')", false),
            ("select pg_read_file('/etc/passwd')", false),
            ("select * from query('drop table t')", false),
            ("select nextval('seq')", false),
            ("select system$cancel_all_queries()", false),
            ("select 1 where 'a' = 'b", false),
            ("select 1 /* never closed", false),
            ("{% do run_query('drop table t') %} select 1", false),
            ("select {{ run_query('drop table t') }}", false),
            (
                "select * from {{ adapter.get_relation('a', 'b', 'c') }}",
                false,
            ),
            ("show tables", false),
            ("explain analyze delete from t", false),
            ("", false),
        ];
        for (sql, allowed) in cases {
            check(sql, *allowed);
        }
    }

    #[test]
    fn the_trailing_semicolon_is_dropped() {
        assert_eq!(check_read_only("select 1;\n").as_deref(), Ok("select 1"));
    }

    #[test]
    fn refusals_say_why() {
        let why = check_read_only("select 1; drop table x").unwrap_err();
        assert!(why.contains("one statement"), "{why}");
        let why = check_read_only("delete from t").unwrap_err();
        assert!(why.contains("SELECT or WITH"), "{why}");
        let why = check_read_only("with d as (delete from t returning *) select 1").unwrap_err();
        assert!(why.contains("DELETE"), "{why}");
    }
}
