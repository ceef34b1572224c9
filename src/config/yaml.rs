//! A YAML document as a tree of located nodes, and a small reader over it.
//!
//! serde-saphyr parses the text and reports syntax errors with their line and
//! column; it also gives every node its location through `Spanned`. We keep that
//! location on each node of a plain tree, then read the tree by hand. Reading by
//! hand (rather than deriving `Deserialize` for the config types) is what lets
//! every error — a wrong type, a missing or unknown key, a bad enum value or a
//! broken semantic rule — carry the file, the line, the column *and* the key
//! path (`schedules[1].self_healing.slack_channel`).
//!
//! This module only parses text it is given; it never reads files itself.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned};

use super::ConfigError;

/// A YAML node together with where it starts in the source (1-based).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub line: usize,
    pub column: usize,
    pub value: Value,
}

/// The value of a node. Mapping entries keep their order and their key's location.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it is written.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub name: String,
    pub line: usize,
    pub column: usize,
}

impl Value {
    /// A short noun for error messages ("expected a string, found a list").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses `text` (the contents of `file`) into a located tree.
///
/// An empty document yields a `Null` node at line 1.
pub(crate) fn parse(file: &Path, text: &str) -> Result<Node, ConfigError> {
    // YAML 1.1 booleans are off so that an unquoted `schedule: OFF` stays the
    // string Paradime means; numbers with leading zeros stay strings for the
    // same reason. Duplicate keys are reported by the reader below, with a key path.
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
    };
    let parsed: Result<Option<Spanned<Value>>, _> =
        serde_saphyr::from_str_with_options(text, options);
    match parsed {
        Ok(Some(spanned)) => Ok(node_from(spanned)),
        Ok(None) => Ok(Node {
            line: 1,
            column: 1,
            value: Value::Null,
        }),
        Err(err) => {
            let (line, column) = err
                .location()
                .map(|l| (l.line() as usize, l.column() as usize))
                .unwrap_or((0, 0));
            let message = serde_saphyr::DefaultMessageFormatter
                .format_message(&err)
                .into_owned();
            Err(ConfigError::Invalid {
                file: file.to_path_buf(),
                line,
                column,
                key: String::new(),
                message: format!("invalid YAML: {message}"),
            })
        }
    }
}

fn node_from(spanned: Spanned<Value>) -> Node {
    Node {
        line: spanned.referenced.line() as usize,
        column: spanned.referenced.column() as usize,
        value: spanned.value,
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v)
            .map(Value::Int)
            .unwrap_or(Value::Float(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(node_from(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Value>>()? {
            let name = match key.value {
                Value::Str(s) => s,
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => "null".to_owned(),
                Value::Seq(_) | Value::Map(_) => {
                    return Err(de::Error::custom("mapping keys must be plain scalars"))
                }
            };
            let key = Key {
                name,
                line: key.referenced.line() as usize,
                column: key.referenced.column() as usize,
            };
            let value = node_from(map.next_value::<Spanned<Value>>()?);
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

/// Where errors are reported: the file being read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub file: &'a Path,
}

impl<'a> Source<'a> {
    /// An error located at `node`, about the key path `key`.
    pub fn err(&self, node: &Node, key: &str, message: impl Into<String>) -> ConfigError {
        self.err_at(node.line, node.column, key, message)
    }

    /// An error at an explicit position.
    pub fn err_at(
        &self,
        line: usize,
        column: usize,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// Reads `node` as a string. Integers and floats are accepted and written
    /// back as text (YAML users often leave `version: 2024` unquoted);
    /// booleans and containers are errors.
    pub fn string(&self, node: &Node, key: &str) -> Result<String, ConfigError> {
        match &node.value {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(i) => Ok(i.to_string()),
            Value::Float(f) => Ok(f.to_string()),
            other => Err(self.err(
                node,
                key,
                format!("expected a string, found {}", other.kind()),
            )),
        }
    }

    /// Reads `node` as a boolean.
    pub fn boolean(&self, node: &Node, key: &str) -> Result<bool, ConfigError> {
        match &node.value {
            Value::Bool(b) => Ok(*b),
            other => Err(self.err(
                node,
                key,
                format!("expected true or false, found {}", other.kind()),
            )),
        }
    }

    /// Reads `node` as an integer.
    pub fn integer(&self, node: &Node, key: &str) -> Result<i64, ConfigError> {
        match &node.value {
            Value::Int(i) => Ok(*i),
            other => Err(self.err(
                node,
                key,
                format!("expected an integer, found {}", other.kind()),
            )),
        }
    }

    /// Reads `node` as a list; `key` is the list's own path.
    pub fn list<'n>(&self, node: &'n Node, key: &str) -> Result<&'n [Node], ConfigError> {
        match &node.value {
            Value::Seq(items) => Ok(items),
            other => Err(self.err(
                node,
                key,
                format!("expected a list, found {}", other.kind()),
            )),
        }
    }

    /// Reads `node` as a list of strings.
    pub fn strings(&self, node: &Node, key: &str) -> Result<Vec<String>, ConfigError> {
        self.list(node, key)?
            .iter()
            .enumerate()
            .map(|(i, item)| self.string(item, &format!("{key}[{i}]")))
            .collect()
    }

    /// Reads `node` as a mapping whose keys must all be in `allowed`.
    pub fn map<'n>(
        &self,
        node: &'n Node,
        key: &str,
        allowed: &[&str],
    ) -> Result<MapReader<'a, 'n>, ConfigError> {
        let entries = match &node.value {
            Value::Map(entries) => entries,
            other => {
                return Err(self.err(
                    node,
                    key,
                    format!("expected a mapping, found {}", other.kind()),
                ))
            }
        };
        for (i, (k, _)) in entries.iter().enumerate() {
            let path = join(key, &k.name);
            if entries[..i]
                .iter()
                .any(|(earlier, _)| earlier.name == k.name)
            {
                return Err(self.err_at(
                    k.line,
                    k.column,
                    &path,
                    format!("duplicate key '{}'", k.name),
                ));
            }
            if !allowed.contains(&k.name.as_str()) {
                return Err(self.err_at(
                    k.line,
                    k.column,
                    &path,
                    match closest(&k.name, allowed) {
                        Some(near) => format!(
                            "unknown key '{}'; did you mean '{near}'? (expected one of: {})",
                            k.name,
                            allowed.join(", ")
                        ),
                        None => format!(
                            "unknown key '{}'; expected one of: {}",
                            k.name,
                            allowed.join(", ")
                        ),
                    },
                ));
            }
        }
        Ok(MapReader {
            src: *self,
            node,
            path: key.to_owned(),
            entries,
        })
    }
}

/// Joins a key path and a key: `join("schedules[0]", "name")` is `schedules[0].name`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A mapping whose keys have been checked against an allow-list.
///
/// A key written with a null value (`key:` and nothing after it) reads as absent.
pub(crate) struct MapReader<'a, 'n> {
    pub src: Source<'a>,
    pub node: &'n Node,
    pub path: String,
    entries: &'n [(Key, Node)],
}

impl<'a, 'n> MapReader<'a, 'n> {
    /// The path of `key` inside this mapping.
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The value of `key`, unless it is absent or null.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
            .filter(|v| !matches!(v.value, Value::Null))
    }

    /// The value of a required `key`.
    pub fn require(&self, key: &str) -> Result<&'n Node, ConfigError> {
        self.get(key).ok_or_else(|| {
            self.src.err(
                self.node,
                &self.path_of(key),
                format!("missing required key '{key}'"),
            )
        })
    }

    /// A required, non-empty string.
    pub fn req_string(&self, key: &str) -> Result<String, ConfigError> {
        let node = self.require(key)?;
        let value = self.src.string(node, &self.path_of(key))?;
        if value.trim().is_empty() {
            return Err(self.src.err(node, &self.path_of(key), "must not be empty"));
        }
        Ok(value)
    }

    /// An optional string.
    pub fn opt_string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        self.get(key)
            .map(|n| self.src.string(n, &self.path_of(key)))
            .transpose()
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.get(key)
            .map(|n| self.src.boolean(n, &self.path_of(key)))
            .transpose()
    }

    /// An optional integer.
    pub fn opt_int(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        self.get(key)
            .map(|n| self.src.integer(n, &self.path_of(key)))
            .transpose()
    }

    /// An optional list of strings.
    pub fn opt_strings(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        self.get(key)
            .map(|n| self.src.strings(n, &self.path_of(key)))
            .transpose()
    }

    /// An error about `key` located at its value (or at this mapping when absent).
    pub fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let node = self.get(key).unwrap_or(self.node);
        self.src.err(node, &self.path_of(key), message)
    }
}

/// The file a located error refers to, for callers that only hold a path.
pub(crate) fn source(file: &Path) -> Source<'_> {
    Source { file }
}

/// Reads a file to a string, mapping the failure to [`ConfigError::Io`].
pub(crate) fn read(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|source| ConfigError::Io {
        file: PathBuf::from(file),
        source,
    })
}

/// The valid key a misspelt one most likely meant: the nearest by edit
/// distance, if near enough to be a slip (at most a third of its length, and
/// 3) rather than another word.
pub(crate) fn closest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).clamp(1, 3);
    allowed
        .iter()
        .map(|a| (edit_distance(&key.to_lowercase(), &a.to_lowercase()), *a))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// Levenshtein distance, counting a swap of neighbours as one edit (the
/// commonest typo).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_key_suggests_the_nearest_valid_one() {
        let keys = [
            "commands",
            "schedule",
            "slack_channels",
            "events",
            "name",
            "agent_name",
        ];
        let cases = [
            ("command", Some("commands")),
            ("shedule", Some("schedule")),
            ("slack_chanels", Some("slack_channels")),
            ("event", Some("events")),
            ("Name", Some("name")),
            ("agent", None),
            ("timezone_of_the_moon", None),
            ("x", None),
        ];
        for (key, want) in cases {
            assert_eq!(closest(key, &keys), want, "{key}");
        }
    }
}
