//! Paradime programmable agents (`.dinoai/agents/<name>.yml`), plus how selfheal runs them.
//!
//! The Paradime part of the file (`name`, `version`, `role`, `goal`,
//! `backstory`, `tools`, …) is read as Paradime documents it. How selfheal
//! runs the agent lives in a separate top-level `selfheal:` section of the same
//! file, so the Paradime part stays portable:
//!
//! ```yaml
//! selfheal:
//!   runner: command            # or `llm`, or `builtin` (with `builtin: dbt-doctor`)
//!   command: ["./heal.sh", "--flag"]   # or one string, run with `sh -c`
//!   timeout: 30m               # "90s", "30m", "2h" or seconds; default 30m
//!   env: {DBT_TARGET: prod}
//!   workdir: ./dbt             # optional
//! ```
//!
//! or, for the built-in tool-calling loop against an OpenAI-compatible server:
//!
//! ```yaml
//! selfheal:
//!   runner: llm
//!   base_url: http://localhost:11434/v1   # required
//!   model: llama3.1                       # required
//!   api_key_env: OPENAI_API_KEY           # the variable holding the key; optional for local servers
//!   max_turns: 30                         # model replies per session (default 30)
//!   max_tokens: 200000                    # total tokens per session (default 200000)
//!   timeout: 20m                          # wall clock (default 20m)
//!   temperature: 0                        # optional, 0 to 2
//! ```
//!
//! This module reads files only in [`load_agents`]; it never starts an agent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::yaml::{self, Node, Source};
use super::ConfigError;
use crate::agent::llm::LlmSettings;
use crate::agent::{AgentDef, Runner};
use crate::domain::ToolPolicy;

/// How long a command agent may run when `selfheal.timeout` is not set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

const AGENT_KEYS: &[&str] = &[
    "name",
    "version",
    "role",
    "goal",
    "backstory",
    "tools",
    "model_family",
    "environment",
    "slack",
    "agents_squad",
    "selfheal",
];

/// Loads every `*.yml`/`*.yaml` agent file directly in `dir`, keyed by name.
///
/// A missing directory means no agents (schedules that do not heal need none).
pub fn load_agents(dir: &Path) -> Result<BTreeMap<String, AgentDef>, ConfigError> {
    let mut agents = BTreeMap::new();
    if !dir.exists() {
        return Ok(agents);
    }
    let io = |source| ConfigError::Io {
        file: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && super::schedules::is_yaml(&path) {
            files.push(path);
        }
    }
    files.sort();
    for file in files {
        let text = yaml::read(&file)?;
        let root = yaml::parse(&file, &text)?;
        let agent = parse_agent(yaml::source(&file), &root)?;
        if let Some(earlier) = agents.get(&agent.name) {
            let earlier: &AgentDef = earlier;
            return Err(ConfigError::Invalid {
                file: file.clone(),
                line: 0,
                column: 0,
                key: String::new(),
                message: format!(
                    "agent '{}' is also defined in {}",
                    agent.name,
                    earlier.source.display()
                ),
            });
        }
        agents.insert(agent.name.clone(), agent);
    }
    Ok(agents)
}

fn parse_agent(src: Source, root: &Node) -> Result<AgentDef, ConfigError> {
    let m = src.map(root, "", AGENT_KEYS)?;
    let name = m.req_string("name")?;
    let stem = src
        .file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if name != stem {
        return Err(m.err(
            "name",
            format!("agent name '{name}' must equal the file name without extension ('{stem}')"),
        ));
    }
    let version = m.require("version")?;
    if src.integer(version, "version")? != 1 {
        return Err(src.err(version, "version", "only version 1 is supported"));
    }
    let tools = match m.get("tools") {
        None => ToolPolicy::All,
        Some(n) => {
            let t = src.map(n, "tools", &["mode", "list"])?;
            let list = t.opt_strings("list")?.unwrap_or_default();
            match t.req_string("mode")?.as_str() {
                "allowlist" => ToolPolicy::Allow(list),
                "denylist" => ToolPolicy::Deny(list),
                other => {
                    return Err(t.err(
                        "mode",
                        format!("unknown mode '{other}'; expected one of: allowlist, denylist"),
                    ))
                }
            }
        }
    };
    m.opt_string("environment")?;
    m.opt_strings("agents_squad")?;
    if let Some(n) = m.get("slack") {
        src.map(n, "slack", &["channel"])?.opt_string("channel")?;
    }
    let runner = match m.get("selfheal") {
        None => Runner::Unspecified,
        Some(n) => parse_runner(src, n)?,
    };
    Ok(AgentDef {
        name,
        role: m.req_string("role")?,
        goal: m.req_string("goal")?,
        backstory: m.req_string("backstory")?,
        tools,
        model_family: m.opt_string("model_family")?,
        runner,
        source: src.file.to_path_buf(),
    })
}

/// The keys of an `llm` runner.
const LLM_KEYS: &[&str] = &[
    "runner",
    "base_url",
    "model",
    "api_key_env",
    "max_turns",
    "max_tokens",
    "timeout",
    "temperature",
    "context_tokens",
    "max_reply_tokens",
    "input_price",
    "output_price",
    "max_cost",
];

fn parse_runner(src: Source, node: &Node) -> Result<Runner, ConfigError> {
    // Every key any runner takes: the runner's own check below is the strict one.
    let mut all = vec!["command", "builtin", "env", "workdir"];
    all.extend_from_slice(LLM_KEYS);
    let kind = src.map(node, "selfheal", &all)?;
    match kind.req_string("runner")?.as_str() {
        "command" => {
            let m = src.map(
                node,
                "selfheal",
                &["runner", "command", "timeout", "env", "workdir"],
            )?;
            let command = m.require("command")?;
            let argv = match &command.value {
                yaml::Value::Seq(_) => src.strings(command, &m.path_of("command"))?,
                _ => vec![
                    "sh".into(),
                    "-c".into(),
                    src.string(command, &m.path_of("command"))?,
                ],
            };
            if argv.first().is_none_or(|p| p.trim().is_empty()) {
                return Err(m.err("command", "must name a program to run"));
            }
            let timeout = match m.get("timeout") {
                None => DEFAULT_TIMEOUT,
                Some(n) => parse_timeout(src, n, &m.path_of("timeout"))?,
            };
            let mut env = BTreeMap::new();
            if let Some(n) = m.get("env") {
                let epath = m.path_of("env");
                let yaml::Value::Map(entries) = &n.value else {
                    return Err(src.err(
                        n,
                        &epath,
                        format!("expected a mapping, found {}", n.value.kind()),
                    ));
                };
                for (k, v) in entries {
                    env.insert(k.name.clone(), src.string(v, &yaml::join(&epath, &k.name))?);
                }
            }
            let workdir = m.opt_string("workdir")?.map(PathBuf::from);
            Ok(Runner::Command {
                argv,
                timeout,
                env,
                workdir,
            })
        }
        "builtin" => {
            let m = src.map(node, "selfheal", &["runner", "builtin"])?;
            Ok(Runner::Builtin(m.req_string("builtin")?))
        }
        "llm" => parse_llm(src, node).map(Runner::Llm),
        other => Err(kind.err(
            "runner",
            format!("unknown runner '{other}'; expected one of: command, llm, builtin"),
        )),
    }
}

fn parse_llm(src: Source, node: &Node) -> Result<LlmSettings, ConfigError> {
    let m = src.map(node, "selfheal", LLM_KEYS)?;
    let base_url = m.req_string("base_url")?.trim().to_string();
    let parsed = url::Url::parse(&base_url).ok();
    let api_key_env = m.opt_string("api_key_env")?.map(|s| s.trim().to_string());
    match parsed.as_ref().map(|u| u.scheme()) {
        Some("http") | Some("https") => {}
        _ => {
            return Err(m.err(
                "base_url",
                "expected an http(s) URL such as http://localhost:11434/v1",
            ))
        }
    }
    let mut settings = LlmSettings::new(base_url, m.req_string("model")?.trim());
    if let Some(name) = api_key_env {
        let looks_like_a_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !looks_like_a_name {
            return Err(m.err(
                "api_key_env",
                "expected the NAME of the environment variable that holds the key (e.g. OPENAI_API_KEY), \
                 never the key itself",
            ));
        }
        settings.api_key_env = Some(name);
    }
    let positive = |key: &str| -> Result<Option<u64>, ConfigError> {
        match m.opt_int(key)? {
            None => Ok(None),
            Some(n) if n > 0 => Ok(Some(n as u64)),
            Some(_) => Err(m.err(key, "must be a positive number")),
        }
    };
    if let Some(n) = positive("max_turns")? {
        settings.max_turns =
            u32::try_from(n).map_err(|_| m.err("max_turns", "must be at most 4294967295"))?;
    }
    if let Some(n) = positive("max_tokens")? {
        settings.max_tokens = n;
    }
    if let Some(n) = m.get("timeout") {
        settings.timeout = parse_timeout(src, n, &m.path_of("timeout"))?;
    }
    if let Some(n) = positive("context_tokens")? {
        if n < 1024 {
            return Err(m.err(
                "context_tokens",
                "must be at least 1024 (the model's context window, in tokens)",
            ));
        }
        settings.context_tokens = Some(n);
    }
    if let Some(n) = positive("max_reply_tokens")? {
        settings.max_reply_tokens = Some(n);
    }
    // Prices (USD per million tokens) and the cost budget (USD).
    let usd = |key: &str| -> Result<Option<f64>, ConfigError> {
        let Some(n) = m.get(key) else {
            return Ok(None);
        };
        let v = match &n.value {
            yaml::Value::Int(i) => Some(*i as f64),
            yaml::Value::Float(f) => Some(*f),
            _ => None,
        };
        match v {
            Some(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
            _ => Err(src.err(
                n,
                &m.path_of(key),
                "expected a number of US dollars, 0 or more",
            )),
        }
    };
    settings.input_price = usd("input_price")?;
    settings.output_price = usd("output_price")?;
    settings.max_cost = usd("max_cost")?;
    if settings.max_cost.is_some() && !settings.priced() {
        return Err(m.err(
            "max_cost",
            "needs input_price and output_price (USD per million tokens) to count the cost",
        ));
    }
    if let Some(n) = m.get("temperature") {
        let t = match &n.value {
            yaml::Value::Int(i) => Some(*i as f64),
            yaml::Value::Float(f) => Some(*f),
            _ => None,
        };
        match t {
            Some(t) if (0.0..=2.0).contains(&t) => settings.temperature = Some(t as f32),
            _ => {
                return Err(src.err(
                    n,
                    &m.path_of("temperature"),
                    "expected a number from 0 to 2",
                ))
            }
        }
    }
    Ok(settings)
}

fn parse_timeout(src: Source, node: &Node, path: &str) -> Result<Duration, ConfigError> {
    let parsed = match &node.value {
        yaml::Value::Int(secs) => u64::try_from(*secs).ok().map(Duration::from_secs),
        yaml::Value::Str(s) => parse_duration(s),
        _ => None,
    };
    match parsed {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(src.err(
            node,
            path,
            "expected a positive duration such as 90s, 30m, 2h or a number of seconds",
        )),
    }
}

/// Parses `"90s"`, `"30m"`, `"2h"` or a plain number of seconds (`"600"`).
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEALER: &str = "\
name: bolt-pipeline-healer
version: 1
role: On-call analytics engineer for the dbt pipeline
goal: Find why the run failed and come back with the cause and a concrete fix.
backstory: Most failures are upstream source data, a schema change, or a model edited without checking its children.
model_family: anthropic
environment: production
slack: {channel: '#agent-demo'}
agents_squad: [helper]
tools:
  mode: allowlist
  list: [read_file, ripgrep_search, run_sql_query, list_bolt_schedules, get_bolt_run_logs, list_pull_requests, run_terminal_command]
selfheal:
  runner: command
  command: [./heal.sh, --flag]
  timeout: 45m
  env: {DBT_TARGET: prod, RETRIES: 3}
  workdir: dbt
";

    fn agents_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        dir
    }

    fn error_of(file: &str, text: &str) -> String {
        let dir = agents_dir(&[(file, text)]);
        let err = load_agents(dir.path()).expect_err("rejected").to_string();
        let at = err.find(file).expect("the error names the file");
        err[at..].to_owned()
    }

    #[test]
    fn the_healer_template_loads_with_its_command_runner() {
        let dir = agents_dir(&[("bolt-pipeline-healer.yml", HEALER)]);
        let agents = load_agents(dir.path()).expect("loads");
        let a = &agents["bolt-pipeline-healer"];
        assert!(a.role.starts_with("On-call"));
        assert_eq!(a.model_family.as_deref(), Some("anthropic"));
        assert!(a.tools.allows("read_file"));
        assert!(!a.tools.allows("post_slack_message"));
        let Runner::Command {
            argv,
            timeout,
            env,
            workdir,
        } = &a.runner
        else {
            panic!("{:?}", a.runner)
        };
        assert_eq!(argv, &vec!["./heal.sh".to_owned(), "--flag".to_owned()]);
        assert_eq!(*timeout, Duration::from_secs(45 * 60));
        assert_eq!(env.get("RETRIES").map(String::as_str), Some("3"));
        assert_eq!(workdir.as_deref(), Some(Path::new("dbt")));
    }

    #[test]
    fn runners_are_unspecified_shell_strings_or_builtins() {
        let base = "name: a\nversion: 1\nrole: r\ngoal: g\nbackstory: b\n";
        let cases: Vec<(String, Runner)> = vec![
            (base.to_owned(), Runner::Unspecified),
            (
                format!("{base}selfheal:\n  runner: command\n  command: ./heal.sh \"$RUN_ID\"\n"),
                Runner::Command {
                    argv: vec!["sh".into(), "-c".into(), "./heal.sh \"$RUN_ID\"".into()],
                    timeout: DEFAULT_TIMEOUT,
                    env: BTreeMap::new(),
                    workdir: None,
                },
            ),
            (
                format!("{base}selfheal: {{runner: builtin, builtin: dbt-doctor}}\n"),
                Runner::Builtin("dbt-doctor".into()),
            ),
        ];
        for (text, expected) in cases {
            let dir = agents_dir(&[("a.yaml", &text)]);
            let agents = load_agents(dir.path()).expect("loads");
            assert_eq!(agents["a"].runner, expected, "{text}");
            assert_eq!(agents["a"].tools, ToolPolicy::All);
        }
    }

    #[test]
    fn the_llm_runner_reads_its_settings_and_budgets() {
        let base = "name: a\nversion: 1\nrole: r\ngoal: g\nbackstory: b\n";
        let full = format!(
            "{base}selfheal:\n  runner: llm\n  base_url: http://localhost:11434/v1\n  model: llama3.1\n  \
             api_key_env: OPENAI_API_KEY\n  max_turns: 12\n  max_tokens: 50000\n  timeout: 5m\n  temperature: 0\n  \
             context_tokens: 8192\n  max_reply_tokens: 512\n  input_price: 2.5\n  output_price: 10\n  max_cost: 0.5\n"
        );
        let minimal = format!("{base}selfheal: {{runner: llm, base_url: 'https://api.openai.com/v1', model: gpt-4.1}}\n");
        let mut expected_full = LlmSettings::new("http://localhost:11434/v1", "llama3.1");
        expected_full.api_key_env = Some("OPENAI_API_KEY".into());
        expected_full.max_turns = 12;
        expected_full.max_tokens = 50_000;
        expected_full.timeout = Duration::from_secs(300);
        expected_full.temperature = Some(0.0);
        expected_full.context_tokens = Some(8192);
        expected_full.max_reply_tokens = Some(512);
        expected_full.input_price = Some(2.5);
        expected_full.output_price = Some(10.0);
        expected_full.max_cost = Some(0.5);
        let cases = [
            (full, expected_full),
            (
                minimal,
                LlmSettings::new("https://api.openai.com/v1", "gpt-4.1"),
            ),
        ];
        for (text, expected) in cases {
            let dir = agents_dir(&[("a.yml", &text)]);
            let agents = load_agents(dir.path()).expect("loads");
            assert_eq!(agents["a"].runner, Runner::Llm(expected), "{text}");
        }
        let defaults = LlmSettings::new("u", "m");
        assert_eq!(
            (defaults.max_turns, defaults.max_tokens, defaults.timeout),
            (30, 200_000, Duration::from_secs(20 * 60))
        );
    }

    #[test]
    fn llm_settings_never_print_credentials() {
        let mut s = LlmSettings::new("https://user:hunter2secret@llm.example.com/v1", "m");
        s.api_key_env = Some("OPENAI_API_KEY".into());
        let shown = format!("{s:?} {}", Runner::Llm(s.clone()).describe());
        assert!(!shown.contains("hunter2secret"), "{shown}");
        assert!(shown.contains("llm.example.com") && shown.contains("OPENAI_API_KEY"));
    }

    #[test]
    fn a_missing_agents_directory_is_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(load_agents(&dir.path().join("nope"))
            .expect("ok")
            .is_empty());
    }

    #[test]
    fn tool_policies_allow_and_deny() {
        let deny = ToolPolicy::Deny(vec!["post_slack_message".into()]);
        assert!(deny.allows("read_file"));
        assert!(!deny.allows("post_slack_message"));
        assert!(ToolPolicy::All.allows("anything"));
    }

    #[test]
    fn durations_parse_in_seconds_minutes_and_hours() {
        let cases = [
            ("90s", Some(90)),
            ("30m", Some(1800)),
            ("2h", Some(7200)),
            ("600", Some(600)),
            (" 5 m", Some(300)),
            ("1d", None),
            ("m", None),
            ("", None),
            ("-5s", None),
        ];
        for (input, secs) in cases {
            assert_eq!(
                parse_duration(input),
                secs.map(Duration::from_secs),
                "{input:?}"
            );
        }
    }

    #[test]
    fn agent_file_errors_name_the_file_the_line_and_the_key() {
        let base = "name: a\nversion: 1\nrole: r\ngoal: g\nbackstory: b\n";
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "b.yml",
                base.into(),
                "b.yml:1:7: name: agent name 'a' must equal the file name without extension ('b')",
            ),
            (
                "a.yml",
                format!("{base}temperature: 0.2\n"),
                "a.yml:6:1: temperature: unknown key 'temperature'",
            ),
            (
                "a.yml",
                base.replace("version: 1", "version: 2"),
                "a.yml:2:10: version: only version 1 is supported",
            ),
            (
                "a.yml",
                base.replace("goal: g\n", ""),
                "a.yml:1:1: goal: missing required key 'goal'",
            ),
            (
                "a.yml",
                format!("{base}tools: {{mode: maybe, list: []}}\n"),
                "a.yml:6:15: tools.mode: unknown mode 'maybe'",
            ),
            (
                "a.yml",
                format!("{base}selfheal:\n  runner: command\n  command: [x]\n  timeout: soon\n"),
                "a.yml:9:12: selfheal.timeout: expected a positive duration",
            ),
            (
                "a.yml",
                format!("{base}selfheal:\n  runner: gpt\n"),
                "a.yml:7:11: selfheal.runner: unknown runner 'gpt'; expected one of: command, llm, builtin",
            ),
            (
                "a.yml",
                format!("{base}selfheal:\n  runner: llm\n  model: m\n"),
                "a.yml:7:3: selfheal.base_url: missing required key 'base_url'",
            ),
            (
                "a.yml",
                format!("{base}selfheal:\n  runner: llm\n  base_url: localhost:11434\n  model: m\n"),
                "a.yml:8:13: selfheal.base_url: expected an http(s) URL",
            ),
            (
                "a.yml",
                format!("{base}selfheal:\n  runner: llm\n  base_url: http://h/v1\n  model: m\n  api_key_env: sk-abc123\n"),
                "a.yml:10:16: selfheal.api_key_env: expected the NAME of the environment variable",
            ),
            (
                "a.yml",
                format!("{base}selfheal:\n  runner: llm\n  base_url: http://h/v1\n  model: m\n  max_turns: 0\n"),
                "a.yml:10:14: selfheal.max_turns: must be a positive number",
            ),
            (
                "a.yml",
                format!("{base}selfheal:\n  runner: llm\n  base_url: http://h/v1\n  model: m\n  temperature: hot\n"),
                "a.yml:10:16: selfheal.temperature: expected a number from 0 to 2",
            ),
            (
                "a.yml",
                format!("{base}selfheal:\n  runner: llm\n  base_url: http://h/v1\n  model: m\n  context_tokens: 512\n"),
                "a.yml:10:19: selfheal.context_tokens: must be at least 1024",
            ),
            (
                "a.yml",
                format!("{base}selfheal:\n  runner: llm\n  base_url: http://h/v1\n  model: m\n  input_price: cheap\n"),
                "a.yml:10:16: selfheal.input_price: expected a number of US dollars",
            ),
            (
                "a.yml",
                format!("{base}selfheal:\n  runner: llm\n  base_url: http://h/v1\n  model: m\n  max_cost: 1\n"),
                "a.yml:10:13: selfheal.max_cost: needs input_price and output_price",
            ),
            (
                "a.yml",
                format!("{base}selfheal:\n  runner: llm\n  base_url: http://h/v1\n  model: m\n  command: [x]\n"),
                "a.yml:10:3: selfheal.command: unknown key 'command'",
            ),
            (
                "a.yml",
                format!("{base}selfheal:\n  runner: command\n"),
                "a.yml:7:3: selfheal.command: missing required key 'command'",
            ),
            (
                "a.yml",
                format!("{base}selfheal:\n  runner: builtin\n  builtin: x\n  timeout: 5m\n"),
                "a.yml:9:3: selfheal.timeout: unknown key 'timeout'",
            ),
        ];
        for (file, text, expected) in cases {
            let got = error_of(file, &text);
            assert!(
                got.starts_with(expected),
                "\nexpected: {expected}\n     got: {got}"
            );
        }
    }
}
