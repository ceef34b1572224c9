//! Which `run_terminal_command` lines may run. Pure; no IO.
//!
//! There is no shell: a line is split into words the way a shell would split
//! it (quotes and backslashes, nothing else), and only two programs are
//! allowed: `dbt compile|parse|build|run|test|show|ls` with selectors and
//! flags, and read-only `git status|diff|log|show`. Shell syntax that would
//! chain, pipe, substitute or redirect is refused outright rather than passed
//! to the program as text, so the model learns at once that it has no shell.

use super::sql;

/// A command the runner may execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// `dbt <args>`; the arguments after `dbt`.
    Dbt(Vec<String>),
    /// `git <args>`; the arguments after `git`.
    Git(Vec<String>),
}

const DBT_SUBCOMMANDS: &[&str] = &[
    "compile", "parse", "build", "run", "test", "show", "ls", "list",
];
const GIT_SUBCOMMANDS: &[&str] = &["status", "diff", "log", "show"];

/// dbt flags that would point dbt at another project, profile, target or
/// folder than the session's: the bot decides those.
const DBT_REFUSED_FLAGS: &[&str] = &[
    "--profiles-dir",
    "--project-dir",
    "--target",
    "-t",
    "--profile",
    "--target-path",
    "--log-path",
    "--state",
    "--defer-state",
    "--macro",
];

/// git options that write files, run other programs or leave the repository.
const GIT_REFUSED_FLAGS: &[&str] = &[
    "--output",
    "--ext-diff",
    "--no-index",
    "--exec-path",
    "--git-dir",
    "--work-tree",
    "--upload-pack",
    "-c",
    "-C",
    "-o",
];

/// Parses `line` and checks it against the allowlist.
pub fn parse(line: &str) -> Result<Allowed, String> {
    let words = split(line)?;
    let Some((program, args)) = words.split_first() else {
        return Err("empty command".into());
    };
    match program.as_str() {
        "dbt" => {
            let sub = args.first().map(String::as_str).unwrap_or("");
            if !DBT_SUBCOMMANDS.contains(&sub) {
                return Err(format!(
                    "`dbt {sub}` is not allowed; allowed: dbt {}",
                    DBT_SUBCOMMANDS.join("|")
                ));
            }
            for (i, arg) in args.iter().enumerate() {
                let flag = arg.split('=').next().unwrap_or(arg);
                if DBT_REFUSED_FLAGS.contains(&flag) {
                    return Err(format!(
                        "`{flag}` is not allowed: the session's project, profile and target are fixed"
                    ));
                }
                // `dbt show --inline` runs SQL: the same rule as run_sql_query.
                if flag == "--inline" {
                    let query = match arg.split_once('=') {
                        Some((_, q)) => Some(q),
                        None => args.get(i + 1).map(String::as_str),
                    };
                    sql::check_read_only(query.unwrap_or(""))?;
                }
            }
            Ok(Allowed::Dbt(args.to_vec()))
        }
        "git" => {
            let sub = args.first().map(String::as_str).unwrap_or("");
            if !GIT_SUBCOMMANDS.contains(&sub) {
                return Err(format!(
                    "`git {sub}` is not allowed; only read-only git {} (the bot commits and pushes)",
                    GIT_SUBCOMMANDS.join("|")
                ));
            }
            for arg in &args[1..] {
                let flag = arg.split('=').next().unwrap_or(arg);
                if GIT_REFUSED_FLAGS.contains(&flag) {
                    return Err(format!("`git {sub} {flag}` is not allowed"));
                }
            }
            Ok(Allowed::Git(args.to_vec()))
        }
        other => Err(format!(
            "`{other}` is not allowed; run_terminal_command runs only dbt {} and git {}, without a shell",
            DBT_SUBCOMMANDS.join("|"),
            GIT_SUBCOMMANDS.join("|")
        )),
    }
}

/// Splits a line into words like a POSIX shell does for quoting, refusing
/// every construct a shell would treat specially (`;`, `|`, `&`, `<`, `>`,
/// backticks, `$(`, newlines) outside single quotes. Inside double quotes
/// `<`, `>`, `;`, `|` and `&` are plain text (SQL uses them), but backticks
/// and `$(` are refused there too, as a shell would expand them.
pub fn split(line: &str) -> Result<Vec<String>, String> {
    let refuse = |what: &str| {
        Err(format!(
            "{what} is not allowed: there is no shell; run one dbt or git command at a time"
        ))
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some('`') => return refuse("command substitution (`…`)"),
                        Some('$') if chars.peek() == Some(&'(') => {
                            return refuse("command substitution ($(…))")
                        }
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => return refuse("a line continuation"),
                    Some(c) => word.push(c),
                }
            }
            ';' => return refuse("`;`"),
            '|' => return refuse("a pipe (`|`)"),
            '&' => return refuse("`&`"),
            '<' | '>' => return refuse("redirection"),
            '`' => return refuse("command substitution (`…`)"),
            '\n' | '\r' => return refuse("more than one line"),
            '$' if chars.peek() == Some(&'(') => return refuse("command substitution ($(…))"),
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_allowlist_admits_dbt_and_read_only_git() {
        use Allowed::*;
        let cases: &[(&str, Result<Allowed, &str>)] = &[
            (
                "dbt build --select orders+",
                Ok(Dbt(words(&["build", "--select", "orders+"]))),
            ),
            (
                "dbt compile -s stg_orders",
                Ok(Dbt(words(&["compile", "-s", "stg_orders"]))),
            ),
            ("dbt parse", Ok(Dbt(words(&["parse"])))),
            (
                "dbt ls --resource-type model",
                Ok(Dbt(words(&["ls", "--resource-type", "model"]))),
            ),
            (
                "dbt test --select 'tag:nightly,orders'",
                Ok(Dbt(words(&["test", "--select", "tag:nightly,orders"]))),
            ),
            (
                r#"dbt show --inline "select * from {{ ref('orders') }} where amount > 5" --limit 3"#,
                Ok(Dbt(words(&[
                    "show",
                    "--inline",
                    "select * from {{ ref('orders') }} where amount > 5",
                    "--limit",
                    "3",
                ]))),
            ),
            (
                r#"dbt run --vars '{"day": "2024-01-01"}'"#,
                Ok(Dbt(words(&["run", "--vars", r#"{"day": "2024-01-01"}"#]))),
            ),
            ("git status", Ok(Git(words(&["status"])))),
            (
                "git diff -- models/marts/orders.sql",
                Ok(Git(words(&["diff", "--", "models/marts/orders.sql"]))),
            ),
            (
                "git log --oneline -5",
                Ok(Git(words(&["log", "--oneline", "-5"]))),
            ),
            (
                "git show HEAD~1:models/marts/orders.sql",
                Ok(Git(words(&["show", "HEAD~1:models/marts/orders.sql"]))),
            ),
            ("dbt run-operation drop_all", Err("not allowed")),
            ("dbt deps", Err("not allowed")),
            ("dbt build --target prod", Err("--target")),
            ("dbt build --profiles-dir=/etc", Err("--profiles-dir")),
            (
                "dbt show --inline 'delete from orders'",
                Err("SELECT or WITH"),
            ),
            (
                "dbt show --inline='select 1; drop table t'",
                Err("one statement"),
            ),
            ("git push origin main", Err("not allowed")),
            ("git commit -am x", Err("not allowed")),
            ("git -c core.pager=sh status", Err("not allowed")),
            ("git diff --output=/tmp/x", Err("--output")),
            ("git diff --no-index /etc/passwd x", Err("--no-index")),
            ("rm -rf /", Err("not allowed")),
            ("sh -c 'dbt build'", Err("not allowed")),
            ("dbt build; git push", Err("`;`")),
            ("dbt build && git push", Err("`&`")),
            ("dbt ls | sh", Err("pipe")),
            ("dbt build > out.txt", Err("redirection")),
            ("dbt build --select `whoami`", Err("substitution")),
            ("dbt build --select $(whoami)", Err("substitution")),
            (r#"dbt build --select "$(whoami)""#, Err("substitution")),
            ("dbt build\ngit push", Err("more than one line")),
            ("dbt build --select 'orders", Err("unterminated")),
            ("", Err("empty")),
        ];
        for (line, expected) in cases {
            let got = parse(line);
            match (expected, &got) {
                (Ok(want), Ok(have)) => assert_eq!(want, have, "{line:?}"),
                (Err(want), Err(have)) => assert!(have.contains(want), "{line:?}: {have}"),
                _ => panic!("{line:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn single_quotes_keep_shell_characters_as_text() {
        assert_eq!(
            split("dbt show --inline 'select a || b; -- $(x) `y`'").unwrap(),
            words(&["dbt", "show", "--inline", "select a || b; -- $(x) `y`"])
        );
    }
}
