//! The real columns of relations, asked of the warehouse through dbt:
//! `dbt show --inline` renders `adapter.get_columns_in_relation(...)` for each
//! relation and selects the names as one JSON string, so it works on every
//! adapter and uses whatever profile and target the caller's [`Dbt`] points at
//! (the doctor never chooses one). [`query`] and [`parse`] are pure; [`columns`]
//! is the IO.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::diagnose::{Relation, WarehouseColumns};
use crate::dbt::Dbt;

/// The column of the single row [`query`] selects.
const COLUMN: &str = "selfheal_columns";

/// Asks the warehouse for the columns of `relations`. Never fails: when dbt
/// cannot run the query, `error` says why and `columns` is empty; a relation
/// missing from the database comes back with no columns.
pub async fn columns(project_dir: &Path, dbt: &Dbt, relations: &[Relation]) -> WarehouseColumns {
    if relations.is_empty() {
        return WarehouseColumns::default();
    }
    let args: Vec<String> = [
        "show",
        "--inline",
        &query(relations),
        "--output",
        "json",
        "--limit",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let failed = |error: String| WarehouseColumns {
        columns: BTreeMap::new(),
        error: Some(error),
    };
    match dbt.run(project_dir, &args).await {
        Ok(run) if run.success => match parse(&run.output, relations) {
            Ok(columns) => WarehouseColumns {
                columns,
                error: None,
            },
            Err(e) => failed(e),
        },
        Ok(run) => failed(format!(
            "`dbt show` failed: {}",
            crate::dbt::tail_lines(&run.output, 3).replace('\n', " / ")
        )),
        Err(e) => failed(format!("`dbt show` could not run: {e:#}")),
    }
}

/// The Jinja query: one row, one string column holding a JSON list with the
/// column names of each relation, in order.
///
/// The `tojson` filter escapes `'` (as `\u0027`), so the JSON sits safely in a
/// single-quoted SQL literal on every adapter.
pub fn query(relations: &[Relation]) -> String {
    let calls: Vec<String> = relations.iter().map(Relation::call).collect();
    format!(
        "{{%- set found = [] -%}}\
         {{%- for r in [{}] -%}}\
         {{%- do found.append(adapter.get_columns_in_relation(r) | map(attribute='name') | list) -%}}\
         {{%- endfor -%}}\
         select '{{{{ found | tojson }}}}' as {COLUMN}",
        calls.join(", ")
    )
}

/// Reads what `dbt show --output json` printed: log lines, then
/// `{"show": [{"selfheal_columns": "[[…], …]"}]}` (the key may be upper-cased
/// by the warehouse). Pairs each list with its relation.
pub fn parse(
    output: &str,
    relations: &[Relation],
) -> Result<BTreeMap<Relation, Vec<String>>, String> {
    let shown = json_objects(output)
        .into_iter()
        .find_map(|v| v.get("show").and_then(Value::as_array).cloned())
        .ok_or("`dbt show` printed no result")?;
    let cell = shown
        .first()
        .and_then(Value::as_object)
        .and_then(|row| {
            row.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(COLUMN))
                .map(|(_, v)| v)
        })
        .and_then(Value::as_str)
        .ok_or("`dbt show` returned no column list")?;
    let lists: Vec<Vec<String>> = serde_json::from_str(cell)
        .map_err(|e| format!("the column list `dbt show` returned is not JSON ({e})"))?;
    if lists.len() != relations.len() {
        return Err(format!(
            "`dbt show` returned {} column lists for {} relations",
            lists.len(),
            relations.len()
        ));
    }
    Ok(relations.iter().cloned().zip(lists).collect())
}

/// Every JSON object in `text` that starts at the beginning of a line.
fn json_objects(text: &str) -> Vec<Value> {
    let mut out = vec![];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('{') {
            let start = offset + (line.len() - line.trim_start().len());
            let mut stream =
                serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
            if let Some(Ok(v)) = stream.next() {
                out.push(v);
            }
        }
        offset += line.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rels() -> Vec<Relation> {
        vec![
            Relation::Node("stg_customers".into()),
            Relation::Source("jaffle_raw".into(), "raw_orders".into()),
        ]
    }

    #[test]
    fn the_query_asks_dbt_for_every_relation() {
        let q = query(&rels());
        assert!(
            q.contains("[ref('stg_customers'), source('jaffle_raw', 'raw_orders')]"),
            "{q}"
        );
        assert!(q.contains("adapter.get_columns_in_relation(r)"), "{q}");
        assert!(
            q.ends_with("select '{{ found | tojson }}' as selfheal_columns"),
            "{q}"
        );
    }

    #[test]
    fn the_output_of_dbt_show_is_read() {
        // dbt 1.10 with dbt-duckdb, as printed (log lines, then the JSON).
        let duckdb = "15:01:02  Running with dbt=1.10.23\n15:01:03  Concurrency: 1 threads (target='dev')\n15:01:03  \n{\n  \"show\": [\n    {\n      \"selfheal_columns\": \"[[\\\"customer_id\\\", \\\"first_name\\\"], []]\"\n    }\n  ]\n}\n";
        let got = parse(duckdb, &rels()).expect("parsed");
        assert_eq!(got[&rels()[0]], ["customer_id", "first_name"]);
        assert!(got[&rels()[1]].is_empty());

        // Snowflake upper-cases the column; older dbt adds the node name.
        let snowflake = "{\"node\": \"inline_query\", \"show\": [{\"SELFHEAL_COLUMNS\": \"[[\\\"CUSTOMER_ID\\\"], [\\\"ID\\\"]]\"}]}";
        let got = parse(snowflake, &rels()).expect("parsed");
        assert_eq!(got[&rels()[1]], ["ID"]);

        for (what, bad) in [
            ("no JSON", "Encountered an error:\nDatabase Error"),
            (
                "not a list",
                "{\"show\": [{\"selfheal_columns\": \"oops\"}]}",
            ),
            (
                "too few lists",
                "{\"show\": [{\"selfheal_columns\": \"[[]]\"}]}",
            ),
            ("no rows", "{\"show\": []}"),
        ] {
            assert!(parse(bad, &rels()).is_err(), "{what}");
        }
    }
}
