//! The `/selfheal` grammar: text → [`Command`], and the help text generated
//! from the same definitions. Pure: no IO, no config, never panics.

/// Declares [`Command`] and, from the same doc comments, [`HELP`]: one
/// `(usage, description)` row per subcommand, so help can never drift from
/// the commands (poise/teloxide style, without a proc macro).
macro_rules! commands {
    ($(
        $(#[doc = $doc:literal])*
        $usage:literal => $variant:ident $({ $($field:ident : $ty:ty),* $(,)? })?
    ),* $(,)?) => {
        /// A parsed `/selfheal` invocation. The doc comment of each variant is its help line.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Command {
            $( $(#[doc = $doc])* $variant $({ $($field: $ty),* })? ),*
        }

        /// `(usage, description)` of every subcommand, in help order.
        pub const HELP: &[(&str, &str)] = &[ $( ($usage, concat!($($doc),*)) ),* ];
    };
}

commands! {
    /// Turn self-healing on for a schedule, optionally in another of its notification channels or with another agent (admins).
    "enable <schedule> [#channel] [agent]" => Enable { schedule: String, channel: Option<ChannelArg>, agent: Option<String> },
    /// Turn self-healing off for a schedule (admins).
    "disable <schedule>" => Disable { schedule: String },
    /// Forget the enable/disable override: the schedule's YAML decides again (admins).
    "reset <schedule>" => Reset { schedule: String },
    /// Stop all automatic healing in the workspace, e.g. during an incident (admins).
    "pause" => Pause,
    /// Undo `pause` (admins).
    "resume" => Resume,
    /// Effective settings per schedule (YAML or override, who changed it, when) and running sessions.
    "status [schedule]" => Status { schedule: Option<String> },
    /// The 10 most recent healing sessions with outcome, pull request and thread.
    "history [schedule]" => History { schedule: Option<String> },
    /// The agents available and the schedules that use them.
    "agents" => Agents,
    /// This help.
    "help" => Help,
}

/// A channel as typed after `enable <schedule>`: `#name`, a bare id, or
/// Slack's `<#C123|name>` link (which Slack substitutes for a typed `#name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelArg {
    pub id: Option<String>,
    pub name: Option<String>,
}

impl ChannelArg {
    /// How to show it back to the user.
    pub fn display(&self) -> String {
        match (&self.name, &self.id) {
            (Some(name), _) => format!("#{name}"),
            (None, Some(id)) => id.clone(),
            (None, None) => "#?".into(),
        }
    }
}

/// Bad usage: a sentence for the user; the handler adds the help text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

/// Longest accepted argument, in characters; longer is junk, not a name.
const MAX_ARG: usize = 80;

/// Parses the text after `/selfheal`. Empty text is `help`; subcommands are
/// case-insensitive; arguments are separated by any whitespace.
pub fn parse(text: &str) -> Result<Command, UsageError> {
    let mut words = text.split_whitespace();
    let Some(first) = words.next() else {
        return Ok(Command::Help);
    };
    let args: Vec<&str> = words.collect();
    let sub = first.to_lowercase();
    let command = match sub.as_str() {
        "enable" => {
            let (schedule, rest) = schedule_arg(&sub, &args)?;
            let mut channel = None;
            let mut agent = None;
            for arg in rest {
                if let Some(c) = channel_arg(arg) {
                    if channel.replace(c).is_some() {
                        return Err(usage(&sub, "name at most one channel"));
                    }
                } else if arg.starts_with('#') || arg.starts_with('<') {
                    return Err(UsageError(format!(
                        "`{}` is not a channel; write it as #channel-name",
                        shown(arg)
                    )));
                } else {
                    check_word(arg, "agent")?;
                    if agent.replace(arg.to_string()).is_some() {
                        return Err(usage(&sub, "name at most one agent"));
                    }
                }
            }
            Command::Enable {
                schedule,
                channel,
                agent,
            }
        }
        "disable" | "reset" => {
            let (schedule, rest) = schedule_arg(&sub, &args)?;
            no_more(&sub, rest)?;
            if sub == "disable" {
                Command::Disable { schedule }
            } else {
                Command::Reset { schedule }
            }
        }
        "status" | "history" => {
            let schedule = match args.first() {
                Some(s) => {
                    check_word(s, "schedule")?;
                    no_more(&sub, &args[1..])?;
                    Some(s.to_string())
                }
                None => None,
            };
            if sub == "status" {
                Command::Status { schedule }
            } else {
                Command::History { schedule }
            }
        }
        "pause" | "resume" | "agents" | "help" => {
            no_more(&sub, &args)?;
            match sub.as_str() {
                "pause" => Command::Pause,
                "resume" => Command::Resume,
                "agents" => Command::Agents,
                _ => Command::Help,
            }
        }
        _ => {
            return Err(UsageError(format!(
                "Unknown subcommand `{}`.",
                shown(first)
            )))
        }
    };
    Ok(command)
}

/// The help text: one line per subcommand, from [`HELP`].
pub fn help_text() -> String {
    let mut out = String::from("*/selfheal* — control self-healing of failed dbt runs\n");
    for (usage, description) in HELP {
        out.push_str(&format!("• `/selfheal {usage}` — {}\n", description.trim()));
    }
    out
}

/// The usage line of one subcommand.
fn usage_of(sub: &str) -> &'static str {
    HELP.iter()
        .find(|(usage, _)| usage.split(' ').next() == Some(sub))
        .map(|(usage, _)| *usage)
        .unwrap_or("help")
}

fn usage(sub: &str, why: &str) -> UsageError {
    UsageError(format!("Usage: `/selfheal {}` ({why}).", usage_of(sub)))
}

fn schedule_arg<'a>(sub: &str, args: &'a [&'a str]) -> Result<(String, &'a [&'a str]), UsageError> {
    let Some(schedule) = args.first() else {
        return Err(usage(sub, "the schedule is missing"));
    };
    check_word(schedule, "schedule")?;
    Ok((schedule.to_string(), &args[1..]))
}

fn no_more(sub: &str, rest: &[&str]) -> Result<(), UsageError> {
    match rest.first() {
        None => Ok(()),
        Some(extra) => Err(usage(sub, &format!("unexpected `{}`", shown(extra)))),
    }
}

/// Schedule and agent names are short words without mrkdwn syntax.
fn check_word(word: &str, what: &str) -> Result<(), UsageError> {
    let ok = word.chars().count() <= MAX_ARG
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'));
    if ok {
        Ok(())
    } else {
        Err(UsageError(format!(
            "`{}` is not a valid {what} name.",
            shown(word)
        )))
    }
}

/// `#name`, `<#C123|name>`, `<#C123>` or a bare channel id.
fn channel_arg(arg: &str) -> Option<ChannelArg> {
    if arg.chars().count() > MAX_ARG {
        return None;
    }
    if let Some(inner) = arg.strip_prefix("<#").and_then(|a| a.strip_suffix('>')) {
        let (id, name) = match inner.split_once('|') {
            Some((id, name)) => (id, Some(name)),
            None => (inner, None),
        };
        let id_ok = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric());
        let name = name.filter(|n| !n.is_empty() && is_channel_name(n));
        return id_ok.then(|| ChannelArg {
            id: Some(id.to_string()),
            name: name.map(str::to_string),
        });
    }
    if let Some(name) = arg.strip_prefix('#') {
        return is_channel_name(name).then(|| ChannelArg {
            id: None,
            name: Some(name.to_string()),
        });
    }
    let is_id = arg.len() >= 8
        && arg.starts_with(['C', 'G'])
        && arg
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && arg.chars().any(|c| c.is_ascii_digit());
    is_id.then(|| ChannelArg {
        id: Some(arg.to_string()),
        name: None,
    })
}

/// Slack channel names: letters (any script, lower case), digits, `-`, `_`, `.`.
fn is_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// User input shown back inside backticks: shortened and stripped of what
/// would break the code span or mrkdwn.
fn shown(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| {
            !c.is_control()
                // Zero-width and bidirectional controls would garble the answer.
                && !matches!(c, '\u{200b}'..='\u{206f}' | '\u{feff}')
                && !matches!(c, '`' | '<' | '>' | '&')
        })
        .take(40)
        .collect();
    if clean.chars().count() < s.chars().count() {
        format!("{clean}…")
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(id: Option<&str>, name: Option<&str>) -> Option<ChannelArg> {
        Some(ChannelArg {
            id: id.map(str::to_string),
            name: name.map(str::to_string),
        })
    }

    fn enable(schedule: &str, channel: Option<ChannelArg>, agent: Option<&str>) -> Command {
        Command::Enable {
            schedule: schedule.into(),
            channel,
            agent: agent.map(str::to_string),
        }
    }

    fn check(input: &str, expected: Result<Command, &str>) {
        let got = parse(input);
        match (&got, &expected) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "input {input:?}"),
            (Err(UsageError(msg)), Err(fragment)) => {
                assert!(
                    msg.contains(fragment),
                    "input {input:?}: {msg:?} lacks {fragment:?}"
                );
                assert!(msg.len() < 300, "input {input:?}: message too long: {msg}");
            }
            _ => panic!("input {input:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn parses_every_subcommand_and_rejects_bad_usage_clearly() {
        let s = |x: &str| x.to_string();
        check("", Ok(Command::Help));
        check("   \t ", Ok(Command::Help));
        check("help", Ok(Command::Help));
        check("HELP", Ok(Command::Help));
        check(
            "enable hourly_marts",
            Ok(enable("hourly_marts", None, None)),
        );
        check(
            "enable hourly_marts #agent-demo bolt-healer",
            Ok(enable(
                "hourly_marts",
                ch(None, Some("agent-demo")),
                Some("bolt-healer"),
            )),
        );
        check(
            "enable hourly_marts <#C0AGENTDEMO|agent-demo>",
            Ok(enable(
                "hourly_marts",
                ch(Some("C0AGENTDEMO"), Some("agent-demo")),
                None,
            )),
        );
        check(
            "enable hourly_marts <#C0AGENTDEMO>",
            Ok(enable("hourly_marts", ch(Some("C0AGENTDEMO"), None), None)),
        );
        check(
            "enable hourly_marts C0AGENTDEMO",
            Ok(enable("hourly_marts", ch(Some("C0AGENTDEMO"), None), None)),
        );
        check(
            "enable hourly_marts bolt-healer",
            Ok(enable("hourly_marts", None, Some("bolt-healer"))),
        );
        check(
            "  Enable   hourly_marts \u{a0} bolt-healer   #agent-demo ",
            Ok(enable(
                "hourly_marts",
                ch(None, Some("agent-demo")),
                Some("bolt-healer"),
            )),
        );
        check(
            "disable nightly",
            Ok(Command::Disable {
                schedule: s("nightly"),
            }),
        );
        check(
            "reset nightly",
            Ok(Command::Reset {
                schedule: s("nightly"),
            }),
        );
        check("pause", Ok(Command::Pause));
        check("Resume", Ok(Command::Resume));
        check("status", Ok(Command::Status { schedule: None }));
        check(
            "status nightly",
            Ok(Command::Status {
                schedule: Some(s("nightly")),
            }),
        );
        check("history", Ok(Command::History { schedule: None }));
        check(
            "history nightly",
            Ok(Command::History {
                schedule: Some(s("nightly")),
            }),
        );
        check("agents", Ok(Command::Agents));
        check("frobnicate", Err("Unknown subcommand `frobnicate`"));
        check(
            "enable",
            Err(
                "Usage: `/selfheal enable <schedule> [#channel] [agent]` (the schedule is missing)",
            ),
        );
        check("disable", Err("Usage: `/selfheal disable <schedule>`"));
        check("reset", Err("the schedule is missing"));
        check("disable a b", Err("unexpected `b`"));
        check(
            "pause now",
            Err("Usage: `/selfheal pause` (unexpected `now`)"),
        );
        check("enable s #a #b", Err("at most one channel"));
        check("enable s x y", Err("at most one agent"));
        check("enable s <@U123>", Err("is not a channel"));
        check("enable <script>", Err("is not a valid schedule name"));
        check("status `rm -rf`", Err("is not a valid schedule name"));
        check("💥🦖\u{0}\u{202e}", Err("Unknown subcommand"));
        check("enable 💥 \u{202e}", Err("is not a valid schedule name"));
    }

    #[test]
    fn huge_or_junk_input_never_panics_and_answers_briefly() {
        let big = "x".repeat(10 * 1024);
        for input in [
            big.clone(),
            format!("enable {big}"),
            format!("enable s #{big}"),
            format!("enable s <#{big}|{big}>"),
            format!("status {big}"),
            "é".repeat(5000),
            format!("enable s {}", "<#C1|".repeat(2000)),
            "\u{0}\u{1}\u{7f}".repeat(3000),
        ] {
            if let Err(UsageError(msg)) = parse(&input) {
                assert!(
                    msg.len() < 300,
                    "message too long for input of {} bytes",
                    input.len()
                );
            }
        }
    }

    #[test]
    fn help_lists_every_subcommand_from_the_doc_comments() {
        let help = help_text();
        for sub in [
            "enable", "disable", "reset", "pause", "resume", "status", "history", "agents", "help",
        ] {
            assert!(
                help.contains(&format!("`/selfheal {sub}")),
                "help lacks {sub}: {help}"
            );
        }
        assert!(help.contains("Stop all automatic healing in the workspace"));
        assert_eq!(HELP.len(), 9);
    }
}
