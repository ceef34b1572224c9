//! Editing a team's YAML files the way a person does: a few lines changed,
//! everything else (comments, order, quoting) left as it was. Pure.
//!
//! Every edit is checked by parsing: the edited text must parse to exactly
//! the original document with the intended change made to it, else the edit
//! is refused (`None`) and the drill looks elsewhere.

use serde_json::Value;

/// A generic data test to add to a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataTest {
    NotNull,
    Unique,
    /// `accepted_values` with these values.
    AcceptedValues(Vec<String>),
}

impl DataTest {
    /// The test as the parsed YAML holds it.
    fn value(&self, arguments: bool) -> Value {
        match self {
            DataTest::NotNull => Value::String("not_null".into()),
            DataTest::Unique => Value::String("unique".into()),
            DataTest::AcceptedValues(values) => {
                let values = serde_json::json!({ "values": values });
                let body = if arguments {
                    serde_json::json!({ "arguments": values })
                } else {
                    values
                };
                serde_json::json!({ "accepted_values": body })
            }
        }
    }

    /// The list item's lines, indented relative to the `-`.
    fn lines(&self, arguments: bool) -> Vec<String> {
        match self {
            DataTest::NotNull => vec!["- not_null".into()],
            DataTest::Unique => vec!["- unique".into()],
            DataTest::AcceptedValues(values) => {
                let quoted: Vec<String> = values
                    .iter()
                    .map(|v| format!("'{}'", v.replace('\'', "''")))
                    .collect();
                let list = format!("values: [{}]", quoted.join(", "));
                if arguments {
                    vec![
                        "- accepted_values:".into(),
                        "    arguments:".into(),
                        format!("      {list}"),
                    ]
                } else {
                    vec!["- accepted_values:".into(), format!("    {list}")]
                }
            }
        }
    }
}

/// How a project writes its tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestStyle {
    /// `data_tests` (dbt ≥ 1.8) or `tests`.
    pub key: String,
    /// Whether test arguments go under `arguments:` (dbt ≥ 1.10).
    pub arguments: bool,
}

impl Default for TestStyle {
    /// dbt 1.8's key, arguments written the way every dbt version reads.
    fn default() -> Self {
        TestStyle {
            key: "data_tests".into(),
            arguments: false,
        }
    }
}

/// `text` (a properties file) with `test` added to column `column` of model
/// `model`; the column entry, its test list or the model's `columns:` are
/// added when missing.
pub fn add_column_test(
    text: &str,
    model: &str,
    column: &str,
    test: &DataTest,
    style: &TestStyle,
) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let models = lines
        .iter()
        .position(|l| key_of(l) == Some("models") && indent(l) == 0)?;
    let model_item = items(&lines, models)
        .into_iter()
        .find(|&i| item_name(&lines, i).as_deref() == Some(model))?;
    let model_keys = item_key_indent(lines[model_item]);
    let model_end = item_end(&lines, model_item);
    let test_lines = test.lines(style.arguments);
    let pad = |n: usize, body: &[String]| -> Vec<String> {
        body.iter()
            .map(|l| format!("{}{l}", " ".repeat(n)))
            .collect()
    };

    let (at, insert) = match find_key(&lines, model_item, model_end, model_keys, "columns") {
        None => {
            let mut body = vec![format!("{}columns:", " ".repeat(model_keys))];
            body.push(format!("{}- name: {column}", " ".repeat(model_keys + 2)));
            body.push(format!("{}{}:", " ".repeat(model_keys + 4), style.key));
            body.extend(pad(model_keys + 6, &test_lines));
            (last_content(&lines, model_item, model_end), body)
        }
        Some(columns) => {
            let col_items = items(&lines, columns);
            let list_indent = col_items
                .first()
                .map(|&i| indent(lines[i]))
                .unwrap_or(model_keys + 2);
            match col_items
                .iter()
                .copied()
                .find(|&i| item_name(&lines, i).is_some_and(|n| n.eq_ignore_ascii_case(column)))
            {
                None => {
                    let mut body = vec![format!("{}- name: {column}", " ".repeat(list_indent))];
                    body.push(format!("{}{}:", " ".repeat(list_indent + 2), style.key));
                    body.extend(pad(list_indent + 4, &test_lines));
                    (
                        last_content(&lines, columns, block_end(&lines, columns)),
                        body,
                    )
                }
                Some(col) => {
                    let col_keys = item_key_indent(lines[col]);
                    let col_end = item_end(&lines, col);
                    let tests = find_key(&lines, col, col_end, col_keys, "data_tests")
                        .or_else(|| find_key(&lines, col, col_end, col_keys, "tests"));
                    match tests {
                        None => {
                            let mut body = vec![format!("{}{}:", " ".repeat(col_keys), style.key)];
                            body.extend(pad(col_keys + 2, &test_lines));
                            (last_content(&lines, col, col_end), body)
                        }
                        Some(t) => {
                            let existing = items(&lines, t);
                            let n = existing
                                .first()
                                .map(|&i| indent(lines[i]))
                                .unwrap_or(col_keys + 2);
                            (
                                last_content(&lines, t, block_end(&lines, t)),
                                pad(n, &test_lines),
                            )
                        }
                    }
                }
            }
        }
    };
    let edited = insert_after(&lines, at, &insert, text.ends_with('\n'));
    let want = with_test(&parse(text)?, model, column, test, style)?;
    (parse(&edited)? == want).then_some(edited)
}

/// The parsed document with the test added, as [`add_column_test`] must leave it.
fn with_test(
    doc: &Value,
    model: &str,
    column: &str,
    test: &DataTest,
    style: &TestStyle,
) -> Option<Value> {
    let mut doc = doc.clone();
    let model = doc
        .get_mut("models")?
        .as_array_mut()?
        .iter_mut()
        .find(|m| m.get("name").and_then(Value::as_str) == Some(model))?
        .as_object_mut()?;
    let columns = model
        .entry("columns")
        .or_insert_with(|| Value::Array(vec![]))
        .as_array_mut()?;
    let position = columns.iter().position(|c| {
        c.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.eq_ignore_ascii_case(column))
    });
    let col = match position {
        Some(p) => &mut columns[p],
        None => {
            columns.push(serde_json::json!({ "name": column }));
            columns.last_mut()?
        }
    };
    let col = col.as_object_mut()?;
    let key = if col.contains_key("data_tests") {
        "data_tests"
    } else if col.contains_key("tests") {
        "tests"
    } else {
        style.key.as_str()
    };
    let list = col.entry(key).or_insert_with(|| Value::Array(vec![]));
    if list.is_null() {
        *list = Value::Array(vec![]);
    }
    list.as_array_mut()?.push(test.value(style.arguments));
    Some(doc)
}

/// Lines of a properties file where taking one space of indentation away
/// breaks the YAML: the second key of a list item (as a slip of the
/// keyboard would). Returns each candidate's edited text, best first
/// (descriptions, which people edit most, before other keys).
pub fn breakages(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found: Vec<(bool, usize)> = vec![];
    let mut previous: Option<usize> = None;
    for (i, line) in lines.iter().enumerate() {
        if !is_content(line) {
            continue;
        }
        if let (Some(p), Some(key)) = (previous, key_of(line)) {
            let item = lines[p].trim_start();
            if item.starts_with("- ")
                && key_of(&item[2..]).is_some()
                && indent(line) == item_key_indent(lines[p])
            {
                found.push((key != "description", i));
            }
        }
        previous = Some(i);
    }
    found.sort();
    found
        .into_iter()
        .filter_map(|(_, i)| {
            let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            edited[i] = edited[i][1..].to_string();
            let mut out = edited.join("\n");
            if text.ends_with('\n') {
                out.push('\n');
            }
            parse(&out).is_none().then_some((i + 1, out))
        })
        .collect()
}

/// `text` (packages.yml or dependencies.yml) without the entry of the
/// `packages:` list that `is_it` picks; an emptied list is written `[]`.
pub fn remove_package(text: &str, is_it: impl Fn(&Value) -> bool) -> Option<String> {
    let doc = parse(text)?;
    let entries = doc.get("packages")?.as_array()?;
    let index = entries.iter().position(&is_it)?;
    let lines: Vec<&str> = text.lines().collect();
    let packages = lines
        .iter()
        .position(|l| key_of(l) == Some("packages") && indent(l) == 0)?;
    let item = *items(&lines, packages).get(index)?;
    let end = item_end(&lines, item);
    let mut kept: Vec<String> = vec![];
    for (i, l) in lines.iter().enumerate() {
        if i < item || i >= end {
            kept.push(l.to_string());
        }
    }
    let mut want = doc.clone();
    want.get_mut("packages")?.as_array_mut()?.remove(index);
    if want["packages"].as_array().is_some_and(Vec::is_empty) {
        kept[packages] = "packages: []".into();
    }
    let mut out = kept.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    (parse(&out)? == want).then_some(out)
}

/// Parses YAML into a JSON value; None when it does not parse.
pub fn parse(text: &str) -> Option<Value> {
    serde_saphyr::from_str::<Value>(text).ok()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The key of a `key: value` or `key:` line (not a list item).
fn key_of(line: &str) -> Option<&str> {
    let t = line.trim();
    if t.starts_with('-') || t.starts_with('#') {
        return None;
    }
    let (key, rest) = t.split_once(':')?;
    let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || "_-.".contains(c));
    (ok && (rest.is_empty() || rest.starts_with(' '))).then_some(key)
}

/// The indentation of the keys of the list item starting at `line`
/// (`  - name: x` → 4).
fn item_key_indent(line: &str) -> usize {
    let after_dash = &line.trim_start()[1..];
    indent(line) + 1 + (after_dash.len() - after_dash.trim_start().len())
}

/// The end (exclusive) of the block under the key line `key`: more indented
/// lines, or a list at the key's own indentation.
fn block_end(lines: &[&str], key: usize) -> usize {
    let k = indent(lines[key]);
    let first = (key + 1..lines.len()).find(|&i| is_content(lines[i]));
    let compact =
        first.is_some_and(|i| indent(lines[i]) == k && lines[i].trim_start().starts_with('-'));
    (key + 1..lines.len())
        .find(|&i| {
            is_content(lines[i])
                && (indent(lines[i]) < k
                    || (indent(lines[i]) == k
                        && !(compact && lines[i].trim_start().starts_with('-'))))
        })
        .unwrap_or(lines.len())
}

/// The end (exclusive) of the list item starting at `item`.
fn item_end(lines: &[&str], item: usize) -> usize {
    let i0 = indent(lines[item]);
    (item + 1..lines.len())
        .find(|&i| is_content(lines[i]) && indent(lines[i]) <= i0)
        .unwrap_or(lines.len())
}

/// The list items directly under the key line `key`.
fn items(lines: &[&str], key: usize) -> Vec<usize> {
    let end = block_end(lines, key);
    let Some(first) = (key + 1..end).find(|&i| is_content(lines[i])) else {
        return vec![];
    };
    let n = indent(lines[first]);
    (first..end)
        .filter(|&i| indent(lines[i]) == n && lines[i].trim_start().starts_with('-'))
        .collect()
}

/// The `name:` of the list item at `item`.
fn item_name(lines: &[&str], item: usize) -> Option<String> {
    let keys = item_key_indent(lines[item]);
    let first = lines[item].trim_start()[1..].trim_start();
    let unquote = |v: &str| {
        let v = v.split(" #").next().unwrap_or(v).trim();
        v.trim_matches(|c| c == '"' || c == '\'').to_string()
    };
    if let Some(v) = first.strip_prefix("name:") {
        return Some(unquote(v));
    }
    let end = item_end(lines, item);
    (item + 1..end)
        .find(|&i| indent(lines[i]) == keys && key_of(lines[i]) == Some("name"))
        .map(|i| unquote(lines[i].trim_start()["name:".len()..].trim()))
}

/// The line of key `key` at indentation `at` inside `from..to` (the item's
/// first line counts too: `- columns:`).
fn find_key(lines: &[&str], from: usize, to: usize, at: usize, key: &str) -> Option<usize> {
    (from + 1..to).find(|&i| indent(lines[i]) == at && key_of(lines[i]) == Some(key))
}

/// The last line with content in `from..to`.
fn last_content(lines: &[&str], from: usize, to: usize) -> usize {
    (from..to)
        .rev()
        .find(|&i| is_content(lines[i]))
        .unwrap_or(from)
}

fn insert_after(lines: &[&str], at: usize, insert: &[String], trailing_newline: bool) -> String {
    let mut out: Vec<String> = lines[..=at].iter().map(|l| l.to_string()).collect();
    out.extend(insert.iter().cloned());
    out.extend(lines[at + 1..].iter().map(|l| l.to_string()));
    let mut text = out.join("\n");
    if trailing_newline {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "\
version: 2

models:
  - name: stg_orders
    description: One row per order.
    columns:
      - name: order_id
        data_tests:
          - unique
      - name: status
        description: Order status.

  - name: customers
    columns:
      - name: customer_id
";

    fn style() -> TestStyle {
        TestStyle {
            key: "data_tests".into(),
            arguments: true,
        }
    }

    fn check(model: &str, column: &str, test: DataTest, want_lines: &[&str]) {
        let edited = add_column_test(SCHEMA, model, column, &test, &style())
            .unwrap_or_else(|| panic!("no edit for {model}.{column}"));
        // One block of lines is inserted; everything else stays as it was.
        let (old, new): (Vec<&str>, Vec<&str>) =
            (SCHEMA.lines().collect(), edited.lines().collect());
        let at = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
        let added = &new[at..at + new.len() - old.len()];
        assert_eq!(added, want_lines, "{model}.{column}:\n{edited}");
        assert_eq!(new[at + added.len()..], old[at..]);
    }

    #[test]
    fn a_test_is_added_where_a_person_would_add_it() {
        // Into an existing test list.
        check(
            "stg_orders",
            "order_id",
            DataTest::NotNull,
            &["          - not_null"],
        );
        // A column without tests gets a list.
        check(
            "stg_orders",
            "status",
            DataTest::AcceptedValues(vec!["placed".into(), "it's".into()]),
            &[
                "        data_tests:",
                "          - accepted_values:",
                "              arguments:",
                "                values: ['placed', 'it''s']",
            ],
        );
        // A column not yet documented gets an entry.
        check(
            "stg_orders",
            "customer_id",
            DataTest::Unique,
            &[
                "      - name: customer_id",
                "        data_tests:",
                "          - unique",
            ],
        );
        // The last model of the file, last column.
        check(
            "customers",
            "customer_id",
            DataTest::NotNull,
            &["        data_tests:", "          - not_null"],
        );
        assert_eq!(
            add_column_test(SCHEMA, "nope", "x", &DataTest::NotNull, &style()),
            None
        );
    }

    #[test]
    fn compact_lists_and_legacy_tests_keys_are_kept() {
        let text = "models:\n- name: m\n  columns:\n  - name: a\n    tests:\n    - unique\n";
        let style = TestStyle {
            key: "tests".into(),
            arguments: false,
        };
        let edited = add_column_test(
            text,
            "m",
            "a",
            &DataTest::AcceptedValues(vec!["x".into()]),
            &style,
        )
        .unwrap();
        assert_eq!(
            edited,
            "models:\n- name: m\n  columns:\n  - name: a\n    tests:\n    - unique\n    - accepted_values:\n        values: ['x']\n"
        );
        let edited = add_column_test(text, "m", "b", &DataTest::NotNull, &style).unwrap();
        assert!(
            edited.ends_with("  - name: b\n    tests:\n      - not_null\n"),
            "{edited}"
        );
    }

    #[test]
    fn flow_style_lists_are_left_alone() {
        let text = "models:\n  - name: m\n    columns: [{name: a}]\n";
        assert_eq!(
            add_column_test(text, "m", "a", &DataTest::NotNull, &style()),
            None
        );
    }

    #[test]
    fn breakages_dedent_a_list_items_second_key() {
        let found = breakages(SCHEMA);
        let lines: Vec<usize> = found.iter().map(|(l, _)| *l).collect();
        // The descriptions first, then the other second keys.
        assert_eq!(lines, [5, 11, 8, 14]);
        assert!(found[1].1.contains("\n       description: Order status.\n"));
    }

    #[test]
    fn a_package_is_removed_and_an_empty_list_stays_valid() {
        let text = "packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n  - local: ../shared\n";
        let out = remove_package(text, |p| p.get("local").is_some()).unwrap();
        assert_eq!(
            out,
            "packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n"
        );
        let out = remove_package(&out, |p| p.get("package").is_some()).unwrap();
        assert_eq!(out, "packages: []\n");
        assert_eq!(remove_package(text, |_| false), None);
    }
}
