//! The `SELFHEAL_RECOGNIZERS` file: per-notifier regexes for notification
//! formats the built-in recogniser does not read, checked when loaded so that
//! a bad regex is reported with its file, line, column and key.
//!
//! It only reads the one file it is given; matching messages is
//! `crate::recognize`'s job.

use std::path::Path;

use super::yaml::{self, Node, Source};
use super::ConfigError;
use crate::recognize::Override;

/// Loads a `recognizers:` file (`SELFHEAL_RECOGNIZERS`).
pub fn load_recognizers(file: &Path) -> Result<Vec<Override>, ConfigError> {
    let text = yaml::read(file)?;
    let root = yaml::parse(file, &text)?;
    let src = yaml::source(file);
    let top = src.map(&root, "", &["recognizers"])?;
    let mut out = Vec::new();
    for (i, node) in src
        .list(top.require("recognizers")?, "recognizers")?
        .iter()
        .enumerate()
    {
        let m = src.map(
            node,
            &format!("recognizers[{i}]"),
            &["source", "run_id", "schedule", "failure"],
        )?;
        let regex = |key: &str, group: Option<&str>| -> Result<Option<regex::Regex>, ConfigError> {
            let Some(n) = m.get(key) else { return Ok(None) };
            compile(src, n, &m.path_of(key), group).map(Some)
        };
        out.push(Override {
            source: m.req_string("source")?,
            run_id: regex("run_id", Some("run_id"))?
                .ok_or_else(|| m.err("run_id", "missing required key 'run_id'"))?,
            schedule: regex("schedule", Some("schedule"))?,
            failure: regex("failure", None)?,
        });
    }
    Ok(out)
}

fn compile(
    src: Source,
    node: &Node,
    path: &str,
    group: Option<&str>,
) -> Result<regex::Regex, ConfigError> {
    let pattern = src.string(node, path)?;
    let re = regex::Regex::new(&pattern).map_err(|e| {
        // Regex errors span several lines (pattern, caret, message); keep them on one.
        let detail = e
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        src.err(node, path, format!("invalid regex: {detail}"))
    })?;
    if let Some(group) = group {
        if !re.capture_names().any(|n| n == Some(group)) {
            return Err(src.err(
                node,
                path,
                format!("the regex must have a named group (?P<{group}>…)"),
            ));
        }
    }
    Ok(re)
}
