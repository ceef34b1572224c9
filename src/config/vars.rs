//! What a setting is, and how settings are read from environment variables.
//!
//! A [`Setting`] declares one variable: its name, what leaving it unset
//! means, its documentation and how its value is parsed; the declarations
//! themselves are in `settings`. [`Vars`] reads settings through a lookup
//! function (the process environment, or a map in tests) and collects every
//! problem instead of stopping at the first, so a person fixes them in one
//! go. An empty variable counts as unset, so a copied `.env.example` with
//! blank values works.
//!
//! Only [`ProcessEnv`] and the `*_process_env` functions touch the real
//! environment (and `.env`); this module reads no other file.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::settings::Section;
use super::{ConfigError, ConfigErrors};
use crate::domain::Secret;

/// One environment variable selfheal reads: declared once in `settings`,
/// read by every command through [`Vars`], documented from the same place.
pub struct Setting<T> {
    /// Everything but the parsing: what the docs are made of.
    pub about: About,
    /// Turns the trimmed, non-empty value into `T`, or says what is wrong
    /// with it (the message follows `NAME: `).
    pub parse: fn(&str) -> Result<T, String>,
}

/// A setting's name and documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct About {
    /// The variable's name.
    pub name: &'static str,
    /// Where `.env.example` and the README list it.
    pub section: Section,
    /// What leaving it unset (or empty) means.
    pub unset: Unset,
    /// One line, Markdown: the README table's "meaning" column.
    pub doc: &'static str,
    /// The comment above it in `.env.example`; empty: the doc says enough.
    pub comment: &'static str,
    /// The value `.env.example` shows; empty: the default.
    pub example: &'static str,
}

/// What an unset (or empty) variable means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// It must be set; the text says to what, after "is required".
    Required(&'static str),
    /// This value is used, parsed like a value that was set, so the docs
    /// show the very default the code uses.
    Use(&'static str),
    /// Something other settings or files decide, said in words (Markdown).
    Means(&'static str),
    /// What it configures is off.
    Off,
}

/// A setting whatever its type: what the docs and their tests need.
pub trait Declared: Sync {
    fn about(&self) -> &About;
    /// Whether `value` is valid for this setting.
    fn check(&self, value: &str) -> Result<(), String>;
}

impl<T> Declared for Setting<T> {
    fn about(&self) -> &About {
        &self.about
    }

    fn check(&self, value: &str) -> Result<(), String> {
        (self.parse)(value).map(drop)
    }
}

impl<T> Setting<T> {
    /// The variable's name.
    pub const fn name(&self) -> &'static str {
        self.about.name
    }

    /// The declared default as written ([`Unset::Use`]), for a library that
    /// parses the value itself; empty when there is none.
    pub const fn default_text(&self) -> &'static str {
        match self.about.unset {
            Unset::Use(text) => text,
            _ => "",
        }
    }

    /// The value through `lookup`, or the default; `None` when it is unset
    /// and has none. A bad or missing required value is an error naming the
    /// variable.
    pub fn read(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<T>, ConfigError> {
        if let Some(value) = self.set(lookup)? {
            return Ok(Some(value));
        }
        match self.about.unset {
            Unset::Required(what) => Err(self.error(format!("is required ({what})"))),
            Unset::Use(_) => Ok(self.default_value()),
            Unset::Means(_) | Unset::Off => Ok(None),
        }
    }

    /// The value through `lookup` when it is set, ignoring any default.
    pub fn set(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<T>, ConfigError> {
        let value = lookup(self.name())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        value
            .map(|v| (self.parse)(&v).map_err(|message| self.error(message)))
            .transpose()
    }

    /// [`Setting::read`] from the process environment as it is (no `.env`),
    /// for the commands that need one setting and not a whole [`super::Config`].
    pub fn from_process_env(&self) -> Result<Option<T>, ConfigError> {
        self.read(&process_var)
    }

    /// [`Setting::set`] from the process environment as it is.
    pub fn set_in_process_env(&self) -> Result<Option<T>, ConfigError> {
        self.set(&process_var)
    }

    /// A problem with this variable.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Env {
            var: self.name().into(),
            message: message.into(),
        }
    }

    /// The declared default, parsed; a test checks that every one parses.
    fn default_value(&self) -> Option<T> {
        match self.about.unset {
            Unset::Use(default) => (self.parse)(default).ok(),
            _ => None,
        }
    }
}

fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads settings through a lookup function and keeps every problem found.
pub struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: RefCell<Vec<ConfigError>>,
}

impl<'a> Vars<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Vars<'a> {
        Vars {
            lookup,
            problems: RefCell::new(Vec::new()),
        }
    }

    /// The value or default, or the problem, which is not kept: for settings
    /// that only matter together with others, where the first problem is
    /// the one to tell.
    pub fn read<T>(&self, setting: &Setting<T>) -> Result<Option<T>, ConfigError> {
        setting.read(self.lookup)
    }

    /// The value or default; a problem is kept, and the default (if any)
    /// stands in so that reading goes on.
    pub fn get<T>(&self, setting: &Setting<T>) -> Option<T> {
        self.read(setting).unwrap_or_else(|problem| {
            self.problems.borrow_mut().push(problem);
            setting.default_value()
        })
    }

    /// [`Vars::get`] for a setting declared with a default ([`Unset::Use`]).
    pub fn value<T>(&self, setting: &Setting<T>) -> T {
        self.get(setting)
            .expect("only settings declared with a default are read with `value`")
    }

    /// Keeps `result`'s value, or its problem.
    pub fn keep<T>(&self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.problems.borrow_mut().push(e)).ok()
    }

    /// `result`'s value, or `None` after keeping each of its problems.
    pub fn keep_all<T>(&self, result: Result<T, Vec<ConfigError>>) -> Option<T> {
        result
            .map_err(|e| self.problems.borrow_mut().extend(e))
            .ok()
    }

    /// Every problem kept so far, in the order found.
    pub fn into_problems(self) -> Vec<ConfigError> {
        self.problems.into_inner()
    }

    /// `value` if nothing was wrong, else every problem.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        let problems = self.into_problems();
        if problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors::new(problems))
        }
    }
}

/// The process environment, and what loading `.env` added to it: errors
/// say where each variable came from, or where it was looked for.
pub(super) struct ProcessEnv {
    /// The variables set before `.env` was loaded.
    before: HashSet<String>,
    /// The `.env` file loaded, if any.
    dotenv: Option<PathBuf>,
}

impl ProcessEnv {
    /// Loads `.env` (if present), without overriding variables already set.
    pub(super) fn with_dotenv() -> Result<ProcessEnv, ConfigErrors> {
        let before = ProcessEnv::as_is().before;
        let dotenv = match dotenvy::dotenv() {
            Ok(path) => Some(path),
            Err(e) if e.not_found() => None,
            Err(e) => {
                return Err(ConfigErrors::new(vec![ConfigError::Env {
                    var: ".env".into(),
                    message: e.to_string(),
                }]))
            }
        };
        Ok(ProcessEnv { before, dotenv })
    }

    /// The process environment without `.env`.
    pub(super) fn as_is() -> ProcessEnv {
        let before = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .collect();
        ProcessEnv {
            before,
            dotenv: None,
        }
    }

    /// What `read` makes of the process environment, its errors located.
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&dyn Fn(&str) -> Option<String>) -> Result<T, ConfigErrors>,
    ) -> Result<T, ConfigErrors> {
        let cwd = std::env::current_dir().unwrap_or_default();
        read(&|name| std::env::var(name).ok()).map_err(|e| {
            e.with_origins(|var| {
                origin(
                    var,
                    self.before.contains(var),
                    std::env::var_os(var).is_some(),
                    self.dotenv.as_deref(),
                    &cwd,
                )
            })
        })
    }
}

/// Where a variable came from, or where it was looked for (pure).
fn origin(var: &str, in_env: bool, set_now: bool, dotenv: Option<&Path>, cwd: &Path) -> String {
    match (in_env, set_now, dotenv) {
        (true, _, _) => "from the environment".into(),
        (false, true, Some(file)) => format!("from {}", file.display()),
        (false, _, Some(file)) => format!("in neither the environment nor {}", file.display()),
        (false, _, None) if var == ".env" => format!("in {}", cwd.display()),
        (false, _, None) => format!(
            "not in the environment, and no .env in {} or its parents",
            cwd.display()
        ),
    }
}

// The parsers most settings share. Each gets a trimmed, non-empty value.

pub fn text(value: &str) -> Result<String, String> {
    Ok(value.to_owned())
}

pub fn path(value: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(value))
}

pub fn secret(value: &str) -> Result<Secret, String> {
    Ok(Secret::new(value))
}

/// `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`).
pub fn boolean(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("'{value}' is not true or false")),
    }
}

/// A comma- or space-separated list, without empty items.
pub fn list(value: &str) -> Result<Vec<String>, String> {
    Ok(value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

/// A whole number (a count, a budget, an id).
pub fn whole<N: FromStr>(value: &str) -> Result<N, String> {
    value
        .parse()
        .map_err(|_| format!("'{value}' is not a whole number"))
}

/// A whole number of seconds.
pub fn seconds(value: &str) -> Result<Duration, String> {
    whole(value).map(Duration::from_secs)
}

/// A whole number of milliseconds.
pub fn millis(value: &str) -> Result<Duration, String> {
    whole(value).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const NUMBER: Setting<u64> = Setting {
        about: About {
            name: "N",
            section: Section::Sessions,
            unset: Unset::Use("7"),
            doc: "a number",
            comment: "",
            example: "",
        },
        parse: whole,
    };
    const NEEDED: Setting<String> = Setting {
        about: About {
            name: "R",
            unset: Unset::Required("a name"),
            ..NUMBER.about
        },
        parse: text,
    };
    const OPTIONAL: Setting<String> = Setting {
        about: About {
            name: "O",
            unset: Unset::Off,
            ..NUMBER.about
        },
        parse: text,
    };

    #[test]
    fn a_setting_reads_its_value_its_default_or_says_what_is_wrong() {
        // (variables set, what N, R and O read as)
        type Case = (
            &'static [(&'static str, &'static str)],
            [Result<Option<&'static str>, &'static str>; 3],
        );
        let cases: &[Case] = &[
            (&[("R", "x")], [Ok(Some("7")), Ok(Some("x")), Ok(None)]),
            (
                &[("N", " 12 "), ("R", " y "), ("O", "o")],
                [Ok(Some("12")), Ok(Some("y")), Ok(Some("o"))],
            ),
            (
                &[("N", ""), ("R", "  "), ("O", "")],
                [Ok(Some("7")), Err("R: is required (a name)"), Ok(None)],
            ),
            (
                &[("N", "1s")],
                [
                    Err("N: '1s' is not a whole number"),
                    Err("R: is required (a name)"),
                    Ok(None),
                ],
            ),
            (
                &[("N", "-1")],
                [
                    Err("N: '-1' is not a whole number"),
                    Err("R: is required (a name)"),
                    Ok(None),
                ],
            ),
        ];
        for (set, want) in cases {
            let env: HashMap<&str, &str> = set.iter().copied().collect();
            let lookup = |name: &str| env.get(name).map(|v| v.to_string());
            let shown = |r: Result<Option<String>, ConfigError>| r.map_err(|e| e.to_string());
            let got = [
                shown(NUMBER.read(&lookup).map(|n| n.map(|n| n.to_string()))),
                shown(NEEDED.read(&lookup)),
                shown(OPTIONAL.read(&lookup)),
            ];
            let want = (*want).map(|w| w.map(|v| v.map(str::to_owned)).map_err(str::to_owned));
            assert_eq!(got, want, "{set:?}");
        }
    }

    #[test]
    fn vars_keep_every_problem_and_go_on_with_the_default() {
        let env: HashMap<&str, &str> = [("N", "five")].into();
        let lookup = |name: &str| env.get(name).map(|v| v.to_string());
        let vars = Vars::new(&lookup);
        assert_eq!(vars.value(&NUMBER), 7, "the default stands in");
        assert_eq!(vars.get(&NEEDED), None);
        assert_eq!(vars.get(&OPTIONAL), None);
        let problems: Vec<String> = vars.into_problems().iter().map(|e| e.to_string()).collect();
        assert_eq!(
            problems,
            ["N: 'five' is not a whole number", "R: is required (a name)"]
        );
        assert_eq!(
            NUMBER.set(&lookup).map_err(|e| e.to_string()),
            Err("N: 'five' is not a whole number".into())
        );
        assert_eq!(
            NUMBER.set(&|_: &str| None).ok(),
            Some(None),
            "set ignores the default"
        );
    }

    #[test]
    fn a_variable_is_said_to_come_from_the_environment_or_the_dotenv_file() {
        let file = Path::new("/srv/bot/.env");
        let cwd = Path::new("/srv/bot");
        let cases = [
            ("X", true, true, Some(file), "from the environment"),
            ("X", false, true, Some(file), "from /srv/bot/.env"),
            (
                "X",
                false,
                false,
                Some(file),
                "in neither the environment nor /srv/bot/.env",
            ),
            (
                "X",
                false,
                false,
                None,
                "not in the environment, and no .env in /srv/bot or its parents",
            ),
            ("X", true, true, None, "from the environment"),
        ];
        for (var, in_env, set_now, dotenv, want) in cases {
            assert_eq!(origin(var, in_env, set_now, dotenv, cwd), want);
        }
    }

    #[test]
    fn lists_split_on_commas_and_spaces() {
        assert_eq!(
            list("B01, B02 paradime,,").unwrap(),
            vec!["B01", "B02", "paradime"]
        );
    }
}
