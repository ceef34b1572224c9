//! The README's settings tables and `.env.example`, made from the
//! declarations in `settings`, so that the docs cannot drift from the code.
//!
//! Rendering is pure. A test compares the files in the repository with what
//! the declarations render, rewrites them when they differ and fails, so that
//! `cargo test --lib settings` regenerates them and CI catches a change that
//! was not regenerated.

use super::settings::{Section, ALL};
use super::vars::{About, Unset};

/// A settings table of the README, between `<!-- settings: NAME -->` and
/// `<!-- end settings -->`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The "Configuration" section.
    Main,
    /// "Real healing", below it.
    Healing,
    /// The defaults of `llm` agents, in "Agents".
    Llm,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Main, Table::Healing, Table::Llm];

    fn name(self) -> &'static str {
        match self {
            Table::Main => "main",
            Table::Healing => "healing",
            Table::Llm => "llm",
        }
    }

    fn of(section: Section) -> Table {
        match section {
            Section::Healing | Section::PullRequests => Table::Healing,
            Section::Llm => Table::Llm,
            Section::Slack
            | Section::Scope
            | Section::Commands
            | Section::Storage
            | Section::Secrets
            | Section::Manners
            | Section::Sessions
            | Section::Logging => Table::Main,
        }
    }
}

/// The heading of a section in `.env.example`.
fn heading(section: Section) -> &'static str {
    match section {
        Section::Slack => "Slack",
        Section::Scope => "What to heal",
        Section::Healing => "Real healing: the repository, run logs, dbt, pull requests",
        Section::Llm => "LLM agents",
        Section::Commands => "/selfheal",
        Section::Storage => "Storage",
        Section::Secrets => "Secrets",
        Section::Manners => "Slack manners (defaults are right for real Slack)",
        Section::Sessions => "Sessions",
        Section::Logging => "Logging",
        Section::PullRequests => "Pull requests selfheal opened: merged or closed?",
    }
}

/// The line that starts a table in the README.
fn start_marker(table: Table) -> String {
    format!("<!-- settings: {} -->", table.name())
}

const END_MARKER: &str = "<!-- end settings -->";

/// One README table, markers excluded.
pub fn readme_table(table: Table) -> String {
    let mut out = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for about in ALL.iter().map(|s| s.about()) {
        if Table::of(about.section) != table {
            continue;
        }
        let default = match about.unset {
            Unset::Required(_) => "required".to_string(),
            Unset::Use(value) => format!("`{value}`"),
            Unset::Means(words) => words.to_string(),
            Unset::Off => "—".to_string(),
        };
        out.push_str(&format!(
            "| `{}` | {default} | {} |\n",
            about.name, about.doc
        ));
    }
    out
}

/// `readme` with every settings table replaced by what the declarations
/// render; an error names a table whose markers are missing.
pub fn with_readme_tables(readme: &str) -> Result<String, String> {
    let mut out = readme.to_string();
    for table in Table::ALL {
        let start = start_marker(table);
        let at = out
            .find(&start)
            .ok_or_else(|| format!("the README has no `{start}` line"))?;
        let body = at + start.len() + 1;
        let end = out[body..]
            .find(END_MARKER)
            .map(|i| body + i)
            .ok_or_else(|| format!("`{start}` has no `{END_MARKER}` after it"))?;
        out.replace_range(body..end, &readme_table(table));
    }
    Ok(out)
}

/// The whole of `.env.example`.
pub fn env_example() -> String {
    let mut out = comment(
        "selfheal configuration. Copy to .env and fill in; variables already set in the \
         environment win over this file. `selfheal check` tries every setting for real and says \
         what to fix. Generated from src/config/settings.rs by `cargo test --lib settings`: \
         change the declarations there, not this file.",
    );
    let mut section = None;
    for about in ALL.iter().map(|s| s.about()) {
        if section != Some(about.section) {
            section = Some(about.section);
            let title = format!("# --- {} ", heading(about.section));
            out.push_str(&format!("\n{title:-<80}\n"));
        }
        out.push_str(&env_entry(about));
    }
    out
}

/// A setting's comment, default and line in `.env.example`.
fn env_entry(about: &About) -> String {
    let mut out = if about.comment.is_empty() {
        comment(&sentence(about.doc))
    } else {
        comment(about.comment)
    };
    // What leaving it unset means, unless the line below shows it.
    let unset = match about.unset {
        Unset::Means(words) => Some(plain(words)),
        Unset::Use(value) if !about.example.is_empty() && about.example != value => {
            Some(value.to_string())
        }
        _ => None,
    };
    if let Some(unset) = unset {
        out.push_str(&format!("# If unset: {unset}.\n"));
    }
    match about.unset {
        Unset::Required(_) => out.push_str(&format!("{}={}\n", about.name, about.example)),
        Unset::Use(value) if about.example.is_empty() => {
            out.push_str(&format!("# {}={value}\n", about.name))
        }
        _ => out.push_str(&format!("# {}={}\n", about.name, about.example)),
    }
    out
}

/// `text` as `# ` lines of at most 80 characters (longer words stay whole).
fn comment(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.chars().count() + 1 + word.chars().count() > 80 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// A README doc as a sentence of plain text.
fn sentence(doc: &str) -> String {
    let text = plain(doc);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => text,
    }
}

/// Markdown without code marks and with links reduced to their text.
fn plain(markdown: &str) -> String {
    let link = regex::Regex::new(r"\[([^\]]*)\]\([^)]*\)").expect("a valid regex");
    link.replace_all(markdown, "$1").replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_settings_docs_are_generated_from_the_declarations() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let readme_path = root.join("README.md");
        let readme = std::fs::read_to_string(&readme_path).expect("README.md");
        let readme = with_readme_tables(&readme).unwrap_or_else(|e| panic!("{e}"));
        // A stale file is rewritten, so that the next run passes, and the test fails.
        let mut stale = vec![];
        for (path, want) in [
            (readme_path, readme),
            (root.join(".env.example"), env_example()),
        ] {
            if std::fs::read_to_string(&path).unwrap_or_default() != want {
                std::fs::write(&path, want).expect("rewrite the stale file");
                stale.push(path.display().to_string());
            }
        }
        assert!(
            stale.is_empty(),
            "{} did not match the declarations in src/config/settings.rs and have been \
             regenerated: review and commit them",
            stale.join(" and ")
        );
    }

    #[test]
    fn each_section_is_listed_in_one_piece() {
        let mut seen = vec![];
        for about in ALL.iter().map(|s| s.about()) {
            if seen.last() != Some(&about.section) {
                assert!(
                    !seen.contains(&about.section),
                    "{:?} comes back at {}",
                    about.section,
                    about.name
                );
                seen.push(about.section);
            }
        }
    }

    #[test]
    fn a_setting_renders_as_a_table_row_and_an_env_entry() {
        use crate::config::settings::*;
        let row = |name: &str| {
            let table = Table::ALL.map(readme_table).concat();
            table
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}` |")))
                .map(str::to_owned)
        };
        // (setting, its README row, its .env.example entry)
        let cases: [(&dyn crate::config::vars::Declared, &str, &str); 4] = [
            (
                &SLACK_BOT_TOKEN,
                "| `SLACK_BOT_TOKEN` | required | bot token (`xoxb-…`) for the Web API |",
                "# Bot User OAuth Token (OAuth & Permissions, after installing the app).\nSLACK_BOT_TOKEN=xoxb-0000000000-0000000000000-replace-me\n",
            ),
            (
                &SELFHEAL_DEFAULT_AGENT,
                "| `SELFHEAL_DEFAULT_AGENT` | `dbt-doctor` | agent for schedules whose `self_healing.agent_name` is empty; `dbt-doctor` is the built-in deterministic agent |",
                "# Agent for schedules whose self_healing.agent_name is empty; dbt-doctor is the\n# built-in deterministic agent.\n# If unset: dbt-doctor.\n# SELFHEAL_DEFAULT_AGENT=bolt-pipeline-healer\n",
            ),
            (
                &SELFHEAL_DBT_TIMEOUT_SECS,
                "| `SELFHEAL_DBT_TIMEOUT_SECS` | `900` | limit of one dbt command |",
                "# Limit of one dbt command.\n# SELFHEAL_DBT_TIMEOUT_SECS=900\n",
            ),
            (
                &SELFHEAL_RUN_LOGS,
                "| `SELFHEAL_RUN_LOGS` | — | run-log directory, one folder per run id (see [Run logs](#run-logs)) |",
                "# Run logs: one folder per run id with run_results.json, dbt.log, console.txt\n# (what `selfheal notify` stores). dbt-doctor needs these or\n# SELFHEAL_RUN_LOG_SOURCE.\n# SELFHEAL_RUN_LOGS=/var/lib/selfheal/run-logs\n",
            ),
        ];
        for (setting, want_row, want_entry) in cases {
            let about = setting.about();
            assert_eq!(row(about.name).as_deref(), Some(want_row));
            assert_eq!(env_entry(about), want_entry);
        }
    }

    #[test]
    fn a_readme_without_a_table_marker_is_refused() {
        let err = with_readme_tables(
            "# selfheal\n<!-- settings: main -->\n| old |\n<!-- end settings -->\n",
        )
        .expect_err("two tables are missing");
        assert_eq!(err, "the README has no `<!-- settings: healing -->` line");
    }
}
