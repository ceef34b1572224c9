//! Paradime schedules-as-code, read as Paradime reads them.
//!
//! A dbt project declares its Bolt schedules in `paradime_schedules.yml` at
//! the project root and/or in any `*.yml`/`*.yaml` under `.bolt/`; their
//! `schedules:` lists are merged. selfheal only needs a few things from a
//! schedule (its name, the Slack channels it notifies on failure and its
//! `self_healing` block), but it accepts every documented key so that real
//! files load unchanged, and it rejects unknown keys like Paradime's validator.
//!
//! Choices where Paradime's docs are silent:
//! - A Slack notification without `events` (and legacy `slack_notify` without
//!   `slack_on`) notifies on `failed` only, the one event every alerting setup wants.
//! - `self_healing` without `slack_channel` heals in the schedule's first
//!   failure channel (see [`Schedule::healing_channel`]).
//! - The `schedule` string is kept as written (a cron expression or `OFF`);
//!   selfheal does not run schedules, so it does not validate cron syntax.
//!
//! This module reads files only in [`load_schedules`]; everything else is pure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::yaml::{self, Node, Source};
use super::{normalize_channel, ConfigError};

/// Keys a schedule may have. Keys outside this list are errors.
const SCHEDULE_KEYS: &[&str] = &[
    "name",
    "schedule",
    "environment",
    "commands",
    "slug",
    "display_name",
    "description",
    "owner_email",
    "git_branch",
    "timezone",
    "continue_on_error",
    "command_settings",
    "sla_minutes",
    "trigger_on_merge",
    "suspended",
    "deferred_schedule",
    "turbo_ci",
    "schedule_trigger",
    "integrations",
    "hightouch",
    "env_overrides",
    "notifications",
    "slack_notify",
    "slack_on",
    "email_notify",
    "email_on",
    "self_healing",
];

/// Every schedule of a dbt project, in file order.
#[derive(Debug, Clone, Default)]
pub struct Schedules {
    list: Vec<Schedule>,
}

impl Schedules {
    /// Builds a set from schedules already in hand (tests, other front-ends).
    /// Names are expected to be unique; [`Schedules::get`] returns the first match.
    pub fn new(list: Vec<Schedule>) -> Self {
        Schedules { list }
    }

    /// The schedule called `name`, compared exactly as Paradime does.
    pub fn get(&self, name: &str) -> Option<&Schedule> {
        self.list.iter().find(|s| s.name == name)
    }

    /// All schedules, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Schedule> {
        self.list.iter()
    }

    /// All schedule names, in file order.
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|s| s.name.as_str()).collect()
    }

    /// How many schedules there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// One Bolt schedule: what selfheal needs from it, plus where it is written.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    /// The schedule's name; failure notifications name it, so it is how a run is matched.
    pub name: String,
    /// A cron expression or `OFF`, as written.
    pub schedule: String,
    /// The Paradime environment the schedule runs in (usually `production`).
    pub environment: String,
    /// The dbt commands the schedule runs, in order (a `{command, continue_on_error}`
    /// entry contributes its `command`). Shown to the agent as context.
    pub commands: Vec<String>,
    /// The branch the schedule runs from, when not the default branch.
    pub git_branch: Option<String>,
    pub slug: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub owner_email: Option<String>,
    pub timezone: Option<String>,
    /// A suspended schedule does not run; its failures can still be healed manually.
    pub suspended: bool,
    /// Slack notifications: `notifications.slack_channels` first, then the
    /// legacy `slack_notify` channels, in file order.
    pub slack: Vec<SlackNotify>,
    /// The `self_healing` block (disabled when absent).
    pub self_healing: SelfHealing,
    /// The file the schedule is written in.
    pub source: PathBuf,
    /// The 1-based line where the schedule's entry starts in `source`.
    pub line: usize,
}

/// One Slack channel a schedule notifies, and on which events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackNotify {
    /// The channel as written (`#data-alerts`, `data-alerts` or an ID); compare with
    /// [`normalize_channel`].
    pub channel: String,
    pub events: Vec<NotifyEvent>,
}

/// A run outcome a notification can be sent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    Failed,
    Passed,
    /// The run exceeded its `sla_minutes`.
    Sla,
}

impl NotifyEvent {
    /// The lower-case name used in schedule files.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Failed => "failed",
            NotifyEvent::Passed => "passed",
            NotifyEvent::Sla => "sla",
        }
    }

    /// Parses an event name, ignoring case as Paradime does.
    pub fn parse(s: &str) -> Option<NotifyEvent> {
        match s.trim().to_ascii_lowercase().as_str() {
            "failed" => Some(NotifyEvent::Failed),
            "passed" => Some(NotifyEvent::Passed),
            "sla" => Some(NotifyEvent::Sla),
            _ => None,
        }
    }
}

/// A schedule's `self_healing` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelfHealing {
    /// Whether failures of this schedule start a healing session (default false).
    pub enabled: bool,
    /// The channel whose copy of the failure notification gets the healing thread.
    pub slack_channel: Option<String>,
    /// The agent to run; `None` (absent or empty) means the default agent.
    pub agent_name: Option<String>,
}

impl Schedule {
    /// The channels notified when a run fails, in file order, without duplicates
    /// (two spellings of one channel count once; the first spelling is kept).
    pub fn failure_channels(&self) -> Vec<String> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for notify in self
            .slack
            .iter()
            .filter(|n| n.events.contains(&NotifyEvent::Failed))
        {
            let key = normalize_channel(&notify.channel);
            if !seen.contains(&key) {
                seen.push(key);
                out.push(notify.channel.clone());
            }
        }
        out
    }

    /// The channel where healing happens, if self-healing is enabled.
    ///
    /// That is `self_healing.slack_channel`, or when it is unset, the first
    /// channel notified on failure: Paradime's docs do not say what an unset
    /// channel means, and healing where the failure is already announced is the
    /// least surprising choice.
    pub fn healing_channel(&self) -> Option<&str> {
        if !self.self_healing.enabled {
            return None;
        }
        if let Some(channel) = &self.self_healing.slack_channel {
            return Some(channel);
        }
        self.slack
            .iter()
            .find(|n| n.events.contains(&NotifyEvent::Failed))
            .map(|n| n.channel.as_str())
    }
}

/// Loads the schedules of a dbt project.
///
/// `path` is either a `paradime_schedules.yml` file, or a dbt project directory:
/// then `paradime_schedules.yml` (or `.yaml`) at its root, if present, and every
/// `*.yml`/`*.yaml` under `.bolt/` (recursively, in path order) are read and
/// their schedules merged. Schedule names must be unique across all files.
pub fn load_schedules(path: &Path) -> Result<Schedules, Vec<ConfigError>> {
    let files = if path.is_dir() {
        schedule_files(path).map_err(|e| vec![e])?
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(vec![ConfigError::Invalid {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message: "no schedule files found: expected paradime_schedules.yml or .bolt/*.yml"
                .into(),
        }]);
    }
    // Every broken schedule is reported, not only the first: each one is
    // parsed on its own, and a file that is not YAML at all is one problem.
    let mut list: Vec<Schedule> = Vec::new();
    let mut problems = Vec::new();
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    for file in &files {
        let parsed = yaml::read(file).and_then(|text| {
            let root = yaml::parse(file, &text)?;
            Ok((text, root))
        });
        let root = match parsed {
            Ok((_, root)) => root,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let src = yaml::source(file);
        for parsed in parse_file(src, &root) {
            let (schedule, name_node, key) = match parsed {
                Ok(one) => one,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            if let Some(&earlier) = first_seen.get(&schedule.name) {
                let first = &list[earlier];
                problems.push(src.err(
                    name_node,
                    &key,
                    format!(
                        "duplicate schedule name '{}' (first defined at {}:{})",
                        schedule.name,
                        first.source.display(),
                        first.line
                    ),
                ));
                continue;
            }
            first_seen.insert(schedule.name.clone(), list.len());
            list.push(schedule);
        }
    }
    if problems.is_empty() {
        Ok(Schedules { list })
    } else {
        Err(problems)
    }
}

/// The schedule files of a project directory, root file first.
fn schedule_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    for name in ["paradime_schedules.yml", "paradime_schedules.yaml"] {
        let candidate = dir.join(name);
        if candidate.is_file() {
            files.push(candidate);
        }
    }
    let bolt = dir.join(".bolt");
    if bolt.is_dir() {
        let mut nested = Vec::new();
        collect_yaml(&bolt, &mut nested)?;
        nested.sort();
        files.extend(nested);
    }
    Ok(files)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ConfigError> {
    let io = |source| ConfigError::Io {
        file: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if is_yaml(&path) {
            out.push(path);
        }
    }
    Ok(())
}

pub(crate) fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    )
}

/// Parses one file's schedules, each with its `name` node and key path (for
/// duplicate errors), or the problem that stopped it.
fn parse_file<'n>(
    src: Source,
    root: &'n Node,
) -> Vec<Result<(Schedule, &'n Node, String), ConfigError>> {
    let list = src
        .map(root, "", &["version", "schedules"])
        .and_then(|top| {
            if top.get("version").is_some() {
                top.opt_int("version")?;
            }
            src.list(top.require("schedules")?, "schedules")
        });
    let list = match list {
        Ok(list) => list,
        Err(e) => return vec![Err(e)],
    };
    list.iter()
        .enumerate()
        .map(|(i, node)| {
            let path = format!("schedules[{i}]");
            let schedule = parse_schedule(src, node, &path)?;
            let map = src.map(node, &path, SCHEDULE_KEYS)?;
            Ok((schedule, map.require("name")?, map.path_of("name")))
        })
        .collect()
}

fn parse_schedule(src: Source, node: &Node, path: &str) -> Result<Schedule, ConfigError> {
    let m = src.map(node, path, SCHEDULE_KEYS)?;

    let commands_node = m.require("commands")?;
    let commands_path = m.path_of("commands");
    let mut commands = Vec::new();
    for (i, entry) in src.list(commands_node, &commands_path)?.iter().enumerate() {
        let key = format!("{commands_path}[{i}]");
        let command = match &entry.value {
            yaml::Value::Map(_) => {
                let c = src.map(entry, &key, &["command", "continue_on_error"])?;
                c.opt_bool("continue_on_error")?;
                c.req_string("command")?
            }
            _ => src.string(entry, &key)?,
        };
        commands.push(command);
    }
    if commands.is_empty() {
        return Err(src.err(
            commands_node,
            &commands_path,
            "must list at least one command",
        ));
    }

    // Accepted keys we do not use are still type-checked where their type is plain.
    for key in ["continue_on_error", "trigger_on_merge"] {
        m.opt_bool(key)?;
    }
    m.opt_int("sla_minutes")?;
    if let Some(n) = m.get("env_overrides") {
        src.list(n, &m.path_of("env_overrides"))?;
    }

    let mut slack = Vec::new();
    if let Some(n) = m.get("notifications") {
        let npath = m.path_of("notifications");
        let notifications = src.map(n, &npath, &["emails", "slack_channels", "microsoft_teams"])?;
        for (list_key, target_key) in [
            ("slack_channels", "channel"),
            ("emails", "address"),
            ("microsoft_teams", "channel"),
        ] {
            let Some(list) = notifications.get(list_key) else {
                continue;
            };
            let lpath = notifications.path_of(list_key);
            for (i, entry) in src.list(list, &lpath)?.iter().enumerate() {
                let epath = format!("{lpath}[{i}]");
                let e = src.map(entry, &epath, &[target_key, "events"])?;
                let target = e.req_string(target_key)?;
                let events = parse_events(src, e.get("events"), &e.path_of("events"))?;
                if list_key == "slack_channels" {
                    slack.push(SlackNotify {
                        channel: target,
                        events,
                    });
                }
            }
        }
    }

    // Legacy keys: `slack_notify` (one channel or a list) with `slack_on` events.
    let legacy_events = parse_events(src, m.get("slack_on"), &m.path_of("slack_on"))?;
    if let Some(n) = m.get("slack_notify") {
        for channel in string_or_list(src, n, &m.path_of("slack_notify"))? {
            slack.push(SlackNotify {
                channel,
                events: legacy_events.clone(),
            });
        }
    }
    if let Some(n) = m.get("email_notify") {
        string_or_list(src, n, &m.path_of("email_notify"))?;
    }
    parse_events(src, m.get("email_on"), &m.path_of("email_on"))?;

    let mut schedule = Schedule {
        name: m.req_string("name")?,
        schedule: m.req_string("schedule")?,
        environment: m.req_string("environment")?,
        commands,
        git_branch: m.opt_string("git_branch")?,
        slug: m.opt_string("slug")?,
        display_name: m.opt_string("display_name")?,
        description: m.opt_string("description")?,
        owner_email: m.opt_string("owner_email")?,
        timezone: m.opt_string("timezone")?,
        suspended: m.opt_bool("suspended")?.unwrap_or(false),
        slack,
        self_healing: SelfHealing::default(),
        source: src.file.to_path_buf(),
        line: node.line,
    };

    if let Some(n) = m.get("self_healing") {
        let hpath = m.path_of("self_healing");
        let h = src.map(n, &hpath, &["enabled", "slack_channel", "agent_name"])?;
        let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        schedule.self_healing = SelfHealing {
            enabled: h.opt_bool("enabled")?.unwrap_or(false),
            slack_channel: non_empty(h.opt_string("slack_channel")?),
            agent_name: non_empty(h.opt_string("agent_name")?).map(|s| s.trim().to_owned()),
        };
        if schedule.self_healing.enabled {
            if let Some(channel) = &schedule.self_healing.slack_channel {
                let wanted = normalize_channel(channel);
                if !schedule
                    .slack
                    .iter()
                    .any(|n| normalize_channel(&n.channel) == wanted)
                {
                    return Err(h.err(
                        "slack_channel",
                        format!(
                            "self_healing.slack_channel '{channel}' must also appear in \
                             notifications.slack_channels for this schedule"
                        ),
                    ));
                }
            } else if schedule.healing_channel().is_none() {
                return Err(h.err(
                    "enabled",
                    "self-healing is enabled but the schedule has no Slack channel to heal in: \
                     set self_healing.slack_channel and list it in notifications.slack_channels \
                     with the failed event",
                ));
            }
        }
    }
    Ok(schedule)
}

/// Reads an events list (`[failed, SLA]`, or a single event); absent means `[failed]`.
fn parse_events(
    src: Source,
    node: Option<&Node>,
    path: &str,
) -> Result<Vec<NotifyEvent>, ConfigError> {
    let Some(node) = node else {
        return Ok(vec![NotifyEvent::Failed]);
    };
    let mut events = Vec::new();
    let items: Vec<(&Node, String)> = match &node.value {
        yaml::Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| (n, format!("{path}[{i}]")))
            .collect(),
        _ => vec![(node, path.to_owned())],
    };
    for (item, key) in items {
        let text = src.string(item, &key)?;
        let event = NotifyEvent::parse(&text).ok_or_else(|| {
            src.err(
                item,
                &key,
                format!("unknown event '{text}'; expected one of: failed, passed, sla"),
            )
        })?;
        if !events.contains(&event) {
            events.push(event);
        }
    }
    Ok(events)
}

fn string_or_list(src: Source, node: &Node, path: &str) -> Result<Vec<String>, ConfigError> {
    match &node.value {
        yaml::Value::Seq(_) => src.strings(node, path),
        _ => Ok(vec![src.string(node, path)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` (relative path, contents) under a fresh temporary directory.
    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (rel, text) in files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        dir
    }

    fn load_one(text: &str) -> Result<Schedules, Vec<ConfigError>> {
        let dir = project(&[("paradime_schedules.yml", text)]);
        load_schedules(&dir.path().join("paradime_schedules.yml"))
    }

    /// Loads `text` as paradime_schedules.yml and returns the error, minus the temp dir prefix.
    fn error_of(text: &str) -> String {
        let errors = load_one(text).expect_err("the file should be rejected");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let full = errors[0].to_string();
        let at = full
            .find("paradime_schedules.yml")
            .expect("the error names the file");
        full[at..].to_owned()
    }

    pub(crate) const PARADIME_EXAMPLE: &str = "\
version: 1
schedules:
  - name: hourly_marts
    schedule: \"0 * * * *\"
    environment: production
    commands:
      - dbt build --select marts
    owner_email: data@example.com
    notifications:
      slack_channels:
        - channel: '#data-alerts'
          events: [failed, sla]
        - channel: '#agent-demo'
          events: [failed]
    self_healing:
      enabled: true
      slack_channel: '#agent-demo'
      agent_name: bolt-pipeline-healer
";

    #[test]
    fn paradimes_own_example_loads() {
        let schedules = load_one(PARADIME_EXAMPLE).expect("loads");
        let s = schedules.get("hourly_marts").expect("schedule present");
        assert_eq!(s.schedule, "0 * * * *");
        assert_eq!(s.environment, "production");
        assert_eq!(s.commands, vec!["dbt build --select marts"]);
        assert_eq!(s.failure_channels(), vec!["#data-alerts", "#agent-demo"]);
        assert_eq!(s.healing_channel(), Some("#agent-demo"));
        assert_eq!(
            s.self_healing,
            SelfHealing {
                enabled: true,
                slack_channel: Some("#agent-demo".into()),
                agent_name: Some("bolt-pipeline-healer".into()),
            }
        );
        assert_eq!(s.line, 3);
        assert!(s.source.ends_with("paradime_schedules.yml"));
        assert_eq!(schedules.names(), vec!["hourly_marts"]);
    }

    #[test]
    fn a_project_directory_merges_the_root_file_and_nested_bolt_files() {
        let one = |name: &str| {
            format!("schedules:\n  - name: {name}\n    schedule: OFF\n    environment: production\n    commands: [dbt run]\n")
        };
        let dir = project(&[
            ("paradime_schedules.yml", &one("root")),
            (".bolt/a.yml", &one("a")),
            (".bolt/team/deep/b.yaml", &one("b")),
            (".bolt/notes.txt", "not yaml"),
        ]);
        let schedules = load_schedules(dir.path()).expect("loads");
        assert_eq!(schedules.names(), vec!["root", "a", "b"]);
        let b = schedules.get("b").expect("b");
        assert!(b.source.ends_with(".bolt/team/deep/b.yaml"));
        assert_eq!(b.schedule, "OFF");
        assert_eq!(b.line, 2);
    }

    #[test]
    fn a_directory_without_schedule_files_is_an_error() {
        let dir = project(&[("models/x.sql", "select 1")]);
        let err = load_schedules(dir.path()).expect_err("rejected");
        assert!(
            err[0].to_string().contains("no schedule files found"),
            "{err:?}"
        );
    }

    #[test]
    fn duplicate_names_across_files_point_at_the_second_one() {
        let one = "schedules:\n  - name: nightly\n    schedule: OFF\n    environment: production\n    commands: [dbt run]\n";
        let dir = project(&[("paradime_schedules.yml", one), (".bolt/more.yml", one)]);
        let err = load_schedules(dir.path()).expect_err("rejected")[0].to_string();
        assert!(
            err.contains(
                ".bolt/more.yml:2:11: schedules[0].name: duplicate schedule name 'nightly'"
            ),
            "{err}"
        );
        assert!(err.contains("paradime_schedules.yml:2)"), "{err}");
    }

    #[test]
    fn every_broken_schedule_is_reported_with_its_own_location() {
        let text = "\
schedules:
  - name: a
    schedule: OFF
    environment: production
    command: [dbt run]
  - name: fine
    schedule: OFF
    environment: production
    commands: [dbt run]
  - name: b
    schedule: OFF
    environment: production
    commands: [dbt run]
    self_healing:
      enabled: maybe
  - name: fine
    schedule: OFF
    environment: production
    commands: [dbt run]
";
        let dir = project(&[("paradime_schedules.yml", text)]);
        let errors: Vec<String> = load_schedules(&dir.path().join("paradime_schedules.yml"))
            .expect_err("rejected")
            .iter()
            .map(|e| {
                let e = e.to_string();
                e[e.find("paradime_schedules.yml").expect("names the file")..].to_string()
            })
            .collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].starts_with("paradime_schedules.yml:5:5: schedules[0].command: unknown key"),
            "{errors:#?}"
        );
        assert!(
            errors[0].contains("did you mean 'commands'?"),
            "{errors:#?}"
        );
        assert!(
            errors[1]
                .starts_with("paradime_schedules.yml:15:16: schedules[2].self_healing.enabled:"),
            "{errors:#?}"
        );
        assert!(
            errors[2].starts_with(
                "paradime_schedules.yml:16:11: schedules[3].name: duplicate schedule name 'fine'"
            ),
            "{errors:#?}"
        );
    }

    #[test]
    fn legacy_slack_notify_accepts_a_string_or_a_list() {
        let cases: &[(&str, &[&str], &[NotifyEvent])] = &[
            (
                "slack_notify: '#alerts'",
                &["#alerts"],
                &[NotifyEvent::Failed],
            ),
            (
                "slack_notify: ['#a', '#b']\n    slack_on: [FAILED, passed]",
                &["#a", "#b"],
                &[NotifyEvent::Failed, NotifyEvent::Passed],
            ),
            (
                "slack_notify: '#a'\n    slack_on: [passed]",
                &["#a"],
                &[NotifyEvent::Passed],
            ),
        ];
        for (extra, channels, events) in cases {
            let text = format!("schedules:\n  - name: s\n    schedule: OFF\n    environment: production\n    commands: [dbt run]\n    {extra}\n");
            let schedules = load_one(&text).expect("loads");
            let s = schedules.get("s").expect("s");
            let got: Vec<&str> = s.slack.iter().map(|n| n.channel.as_str()).collect();
            assert_eq!(&got, channels, "{extra}");
            assert!(s.slack.iter().all(|n| &n.events[..] == *events), "{extra}");
        }
    }

    #[test]
    fn commands_may_be_strings_or_command_objects() {
        let text = "schedules:\n  - name: s\n    schedule: '0 3 * * *'\n    environment: production\n    commands:\n      - dbt seed\n      - command: dbt run\n        continue_on_error: true\n      - {command: dbt test}\n";
        let schedules = load_one(text).expect("loads");
        assert_eq!(
            schedules.get("s").expect("s").commands,
            vec!["dbt seed", "dbt run", "dbt test"]
        );
    }

    #[test]
    fn every_documented_optional_key_is_accepted() {
        let text = "\
schedules:
  - name: full
    schedule: '0 6 * * 1-5'
    environment: production
    commands: [dbt build]
    slug: full
    display_name: Full build
    description: Everything
    owner_email: a@b.c
    git_branch: main
    timezone: Europe/Paris
    continue_on_error: false
    command_settings: {dbt_version: '1.8'}
    sla_minutes: 60
    trigger_on_merge: true
    suspended: true
    deferred_schedule: {enabled: true, deferred_schedule_name: nightly, successful_runs_only: true}
    turbo_ci: {enabled: false, deferred_manifest_schedule: nightly}
    schedule_trigger: {enabled: true, schedule_name: upstream, workspace_name: ws, trigger_on: [passed]}
    integrations: {something: true}
    hightouch: {syncs: []}
    env_overrides: [{key: A, value: b}]
    email_notify: [a@b.c]
    email_on: [failed]
    notifications:
      emails: [{address: a@b.c, events: [failed]}]
      microsoft_teams: [{channel: ops, events: [Failed]}]
      slack_channels: [{channel: '#Data-Alerts', events: [failed]}, {channel: C0123ABC}]
    slack_notify: 'data-alerts'
    self_healing: {enabled: false}
";
        let schedules = load_one(text).expect("loads");
        let s = schedules.get("full").expect("full");
        assert!(s.suspended);
        assert_eq!(s.git_branch.as_deref(), Some("main"));
        assert_eq!(
            s.failure_channels(),
            vec!["#Data-Alerts", "C0123ABC"],
            "two spellings of one channel count once"
        );
        assert_eq!(s.healing_channel(), None, "self-healing is disabled");
    }

    #[test]
    fn healing_defaults_to_the_first_failure_channel_when_no_channel_is_set() {
        let text = "schedules:\n  - name: s\n    schedule: OFF\n    environment: production\n    commands: [dbt run]\n    notifications:\n      slack_channels:\n        - {channel: '#wins', events: [passed]}\n        - {channel: '#alerts'}\n    self_healing: {enabled: true, agent_name: ''}\n";
        let schedules = load_one(text).expect("loads");
        let s = schedules.get("s").expect("s");
        assert_eq!(s.healing_channel(), Some("#alerts"));
        assert_eq!(
            s.self_healing.agent_name, None,
            "an empty agent_name means the default agent"
        );
    }

    /// Each case: the file, then the exact `file:line:col: key: message` expected.
    #[test]
    fn errors_name_the_file_the_line_and_the_key() {
        let head = "schedules:\n  - name: s\n    schedule: OFF\n    environment: production\n    commands: [dbt run]\n";
        let cases: Vec<(String, &str)> = vec![
            // YAML syntax.
            ("schedules:\n  - name: [unclosed\n".into(), "paradime_schedules.yml:2:11: invalid YAML: unclosed bracket"),
            // Wrong type.
            (format!("{head}    suspended: yes please\n"), "paradime_schedules.yml:6:16: schedules[0].suspended: expected true or false, found a string"),
            ("schedules: {}\n".into(), "paradime_schedules.yml:1:12: schedules: expected a list, found a mapping"),
            // Missing required keys.
            ("schedules:\n  - name: s\n    schedule: OFF\n    commands: [dbt run]\n".into(), "paradime_schedules.yml:2:5: schedules[0].environment: missing required key 'environment'"),
            ("version: 1\n".into(), "paradime_schedules.yml:1:1: schedules: missing required key 'schedules'"),
            // Unknown keys, at any depth.
            (format!("{head}    slack_chanels: ['#a']\n"), "paradime_schedules.yml:6:5: schedules[0].slack_chanels: unknown key 'slack_chanels'"),
            (format!("{head}    notifications:\n      slack_channels:\n        - {{channel: '#a', event: [failed]}}\n"), "paradime_schedules.yml:8:27: schedules[0].notifications.slack_channels[0].event: unknown key 'event'"),
            (format!("{head}    self_healing: {{enabled: true, agent: x}}\n"), "paradime_schedules.yml:6:35: schedules[0].self_healing.agent: unknown key 'agent'"),
            ("schedule:\n  - name: s\n".into(), "paradime_schedules.yml:1:1: schedule: unknown key 'schedule'; did you mean 'schedules'?"),
            ("schedules:\n  - name: s\n    schedule: OFF\n    environment: production\n    command: [dbt run]\n".into(), "paradime_schedules.yml:5:5: schedules[0].command: unknown key 'command'; did you mean 'commands'?"),
            // Invalid enum values.
            (format!("{head}    notifications:\n      slack_channels:\n        - channel: '#a'\n          events: [failed, broken]\n"), "paradime_schedules.yml:9:28: schedules[0].notifications.slack_channels[0].events[1]: unknown event 'broken'; expected one of: failed, passed, sla"),
            (format!("{head}    slack_notify: '#a'\n    slack_on: sometimes\n"), "paradime_schedules.yml:7:15: schedules[0].slack_on: unknown event 'sometimes'"),
            // Duplicates within a file, and duplicate keys.
            (format!("{head}{}", head.replace("schedules:\n", "")), "paradime_schedules.yml:6:11: schedules[1].name: duplicate schedule name 's'"),
            (format!("{head}    timezone: UTC\n    timezone: CET\n"), "paradime_schedules.yml:7:5: schedules[0].timezone: duplicate key 'timezone'"),
            // Empty values and commands.
            ("schedules:\n  - name: ''\n    schedule: OFF\n    environment: production\n    commands: [dbt run]\n".into(), "paradime_schedules.yml:2:11: schedules[0].name: must not be empty"),
            ("schedules:\n  - name: s\n    schedule: OFF\n    environment: production\n    commands: []\n".into(), "paradime_schedules.yml:5:15: schedules[0].commands: must list at least one command"),
            ("schedules:\n  - name: s\n    schedule: OFF\n    environment: production\n    commands:\n      - {continue_on_error: true}\n".into(), "paradime_schedules.yml:6:9: schedules[0].commands[0].command: missing required key 'command'"),
        ];
        for (text, expected) in cases {
            let got = error_of(&text);
            assert!(
                got.starts_with(expected),
                "\nexpected: {expected}\n     got: {got}\nfile:\n{text}"
            );
        }
    }

    #[test]
    fn the_healing_channel_must_be_notified_with_paradimes_exact_message() {
        let text = "\
schedules:
  - name: first
    schedule: OFF
    environment: production
    commands: [dbt run]
  - name: second
    schedule: OFF
    environment: production
    commands: [dbt run]
    notifications:
      slack_channels:
        - channel: '#data-alerts'
    self_healing:
      enabled: true
      slack_channel: '#ops'
";
        assert_eq!(
            error_of(text),
            "paradime_schedules.yml:15:22: schedules[1].self_healing.slack_channel: self_healing.slack_channel '#ops' \
             must also appear in notifications.slack_channels for this schedule"
        );
        // Spelling differences do not matter, and the rule only applies when enabled.
        assert!(load_one(&text.replace("'#ops'", "'Data-Alerts'")).is_ok());
        assert!(load_one(&text.replace("enabled: true", "enabled: false")).is_ok());
    }

    #[test]
    fn self_healing_without_any_slack_channel_is_an_error() {
        let text = "schedules:\n  - name: s\n    schedule: OFF\n    environment: production\n    commands: [dbt run]\n    self_healing:\n      enabled: true\n";
        let err = error_of(text);
        assert!(
            err.starts_with("paradime_schedules.yml:7:16: schedules[0].self_healing.enabled: self-healing is enabled but the schedule has no Slack channel"),
            "{err}"
        );
    }
}
