use super::*;
use crate::doctor::{demo_dir, repo_root};
use crate::runlog::{parse, Artifacts};

/// The demo project's index, plus a source that no node shadows and
/// documented columns for Snowflake-style candidates.
fn index() -> ProjectIndex {
    let mut ix = ProjectIndex::scan(&demo_dir());
    ix.sources
        .insert("events".into(), vec!["raw_events".into()]);
    ix.columns.insert(
        "stg_orders".into(),
        vec![
            "order_id".into(),
            "customer_id".into(),
            "order_date".into(),
            "status".into(),
        ],
    );
    ix
}

fn failure(name: &str, path: &str, kind: ErrorKind, message: &str) -> NodeFailure {
    NodeFailure {
        unique_id: None,
        name: name.into(),
        resource_type: "model".into(),
        path: (!path.is_empty()).then(|| path.to_string()),
        kind,
        message: message.into(),
        compiled_code: None,
    }
}

/// A fixture's first failure, as the run-log parser sees it, and the blamed
/// file's text after the fixture's breakage.
fn fixture(case: &str) -> (NodeFailure, Option<String>) {
    let dir = repo_root().join("tests/fixtures/dbt").join(case);
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).ok();
    let log = parse(
        case,
        &Artifacts {
            console: read("console.txt"),
            run_results: read("run_results.json"),
            ..Artifacts::default()
        },
    );
    let mut f = log
        .failures
        .first()
        .unwrap_or_else(|| panic!("{case}: no failure parsed"))
        .clone();
    if f.resource_type == "project" {
        f.message = complete_message(&f.message, &log.raw);
    }
    let breakage: serde_json::Value =
        serde_json::from_str(&read("breakage.json").expect("breakage.json"))
            .expect("breakage json");
    let text = f.path.as_ref().and_then(|p| {
        let mut t = std::fs::read_to_string(demo_dir().join(p)).ok()?;
        if breakage["file"] == p.as_str() {
            t = t.replacen(
                breakage["find"].as_str().expect("find"),
                breakage["replace"].as_str().expect("replace"),
                1,
            );
        }
        Some(t)
    });
    (f, text)
}

enum Want<'a> {
    /// An edit of `file` at `lines` whose new text contains `contains`.
    Edit {
        file: &'a str,
        lines: &'a [usize],
        contains: &'a str,
    },
    /// No edit; the summary contains all of these.
    Report(&'a [&'a str]),
    /// A data test on `relation.column`, of type `test_type`.
    Test {
        relation: &'a str,
        column: &'a str,
        test_type: &'a str,
    },
}

fn check(what: &str, f: &NodeFailure, text: Option<&str>, want: Want) {
    check_seen(what, f, text, &WarehouseColumns::default(), want);
}

/// [`check`], with the columns the warehouse reported.
fn check_seen(
    what: &str,
    f: &NodeFailure,
    text: Option<&str>,
    seen: &WarehouseColumns,
    want: Want,
) {
    let got = diagnose_with_warehouse(f, &index(), text, seen);
    match (want, &got.action) {
        (
            Want::Edit {
                file,
                lines,
                contains,
            },
            Action::Edit {
                path,
                new_text,
                lines: l,
            },
        ) => {
            assert_eq!(path, file, "{what}");
            assert_eq!(l, lines, "{what}");
            assert!(new_text.contains(contains), "{what}: {new_text}");
            assert!(
                !got.summary.is_empty() && !got.milestone.is_empty(),
                "{what}"
            );
        }
        (Want::Report(parts), Action::Report) => {
            for p in parts {
                assert!(
                    got.summary.contains(p),
                    "{what}: summary lacks {p:?}:\n{}",
                    got.summary
                );
            }
            assert!(got.summary.contains(NEEDS_HELP), "{what}: {}", got.summary);
        }
        (
            Want::Test {
                relation,
                column,
                test_type,
            },
            Action::DataTest(dt),
        ) => {
            assert_eq!(
                dt.relation.as_ref().map(Relation::display).as_deref(),
                Some(relation),
                "{what}"
            );
            assert_eq!(dt.column.as_deref(), Some(column), "{what}");
            assert_eq!(dt.test_type.as_deref(), Some(test_type), "{what}");
        }
        (_, other) => panic!("{what}: unexpected {other:?}\n{}", got.summary),
    }
}

#[test]
fn the_real_fixture_failures_are_diagnosed() {
    let cases: Vec<(&str, Want)> = vec![
        (
            "ref_typo",
            Want::Edit {
                file: "models/marts/orders.sql",
                lines: &[5],
                contains: "{{ ref('stg_orders') }}",
            },
        ),
        (
            "ref_ambiguous",
            Want::Report(&[
                "models/marts/customers.sql line 9",
                "`raw_orders` (seed, distance 3)",
                "`stg_orders` (model, distance 3)",
                "int_orders",
            ]),
        ),
        (
            "source_typo",
            Want::Edit {
                file: "models/staging/stg_orders.sql",
                lines: &[6],
                contains: "source('jaffle_raw', 'raw_orders')",
            },
        ),
        (
            "column_typo",
            Want::Edit {
                file: "models/staging/stg_orders.sql",
                lines: &[15],
                contains: "        order_date,\n",
            },
        ),
        (
            "macro_typo",
            Want::Edit {
                file: "models/marts/customers.sql",
                lines: &[52],
                contains: "{{ cents_to_dollars('coalesce(",
            },
        ),
        (
            "missing_package",
            Want::Report(&[
                "dbt_utils.generate_surrogate_key",
                "models/marts/orders.sql line 31",
                "no packages.yml",
            ]),
        ),
        (
            "syntax_error",
            Want::Report(&[
                "models/marts/orders.sql line 22",
                "Parser Error: syntax error at or near \"as\"",
                "sum(amount_cents as total_amount_cents",
            ]),
        ),
        (
            "yaml_error",
            Want::Report(&[
                "models/marts/schema.yml line 36, column 8",
                "did not find expected '-' indicator",
            ]),
        ),
        (
            "not_null_failure",
            Want::Test {
                relation: "stg_orders",
                column: "customer_id",
                test_type: "not_null",
            },
        ),
        (
            "accepted_values_failure",
            Want::Test {
                relation: "stg_orders",
                column: "status",
                test_type: "accepted_values",
            },
        ),
    ];
    for (case, want) in cases {
        let (f, text) = fixture(case);
        check(case, &f, text.as_deref(), want);
    }
}

#[test]
fn refs_and_sources_are_renamed_keeping_their_quotes() {
    let msg = "Compilation Error\n  Model 'model.jaffle_shop.orders' (models/marts/orders.sql) depends on a node named 'stg_order' which was not found";
    let f = failure(
        "orders",
        "models/marts/orders.sql",
        ErrorKind::Compilation,
        msg,
    );
    let text = "select * from {{ ref(\"stg_order\") }}\njoin {{ ref( 'jaffle_shop' , 'stg_order' ) }}\n-- stg_order stays";
    let got = diagnose(&f, &index(), Some(text));
    let Action::Edit {
        new_text, lines, ..
    } = got.action
    else {
        panic!("{}", got.summary)
    };
    assert_eq!(new_text, "select * from {{ ref(\"stg_orders\") }}\njoin {{ ref( 'jaffle_shop' , 'stg_orders' ) }}\n-- stg_order stays");
    assert_eq!(lines, [1, 2]);
    assert_eq!(
        got.summary,
        "orders refs `stg_order`, which does not exist; the nearest model is `stg_orders` (distance 1, next best `raw_orders` at 4). Changed the ref in models/marts/orders.sql lines 1, 2."
    );

    let msg = "Model 'model.jaffle_shop.stg_orders' (models/staging/stg_orders.sql) depends on a source named 'jafle_raw.raw_orders' which was not found";
    let f = failure(
        "stg_orders",
        "models/staging/stg_orders.sql",
        ErrorKind::Compilation,
        msg,
    );
    check(
        "misspelt source name",
        &f,
        Some("select * from {{ source(\"jafle_raw\", \"raw_orders\") }}"),
        Want::Edit {
            file: "models/staging/stg_orders.sql",
            lines: &[1],
            contains: "source(\"jaffle_raw\", \"raw_orders\")",
        },
    );
}

#[test]
fn unclear_or_wrong_kind_candidates_are_reported_not_fixed() {
    let node = |name: &str| {
        format!("Model 'model.jaffle_shop.orders' (models/marts/orders.sql) depends on a node named '{name}' which was not found")
    };
    let f = failure(
        "orders",
        "models/marts/orders.sql",
        ErrorKind::Compilation,
        &node("raw_events"),
    );
    check(
        "a ref that is actually a source",
        &f,
        Some("select * from {{ ref('raw_events') }}"),
        Want::Report(&[
            "source `events`",
            "source('events', 'raw_events')",
            "models/marts/orders.sql line 1",
        ]),
    );
    let f = failure(
        "orders",
        "models/marts/orders.sql",
        ErrorKind::Compilation,
        &node("zzzzzzzz"),
    );
    check(
        "nothing close",
        &f,
        Some("{{ ref('zzzzzzzz') }}"),
        Want::Report(&[
            "Nothing defined is close",
            "`customers` (model, distance 9)",
        ]),
    );
    // A model never refs itself, even when its own name is the nearest.
    let f = failure(
        "orders",
        "models/marts/orders.sql",
        ErrorKind::Compilation,
        &node("order"),
    );
    let got = diagnose(&f, &index(), Some("{{ ref('order') }}"));
    assert!(
        !matches!(&got.action, Action::Edit { new_text, .. } if new_text.contains("ref('orders')")),
        "{}",
        got.summary
    );

    let f = failure(
        "stg_orders",
        "models/staging/stg_orders.sql",
        ErrorKind::Database,
        "Binder Error: Referenced column \"ordr_date\" not found in FROM clause!\nCandidate bindings: \"order_date\", \"ordr_data\", \"id\"",
    );
    check(
        "two column candidates tie",
        &f,
        Some("select ordr_date from source"),
        Want::Report(&["`order_date` (1)", "`ordr_data` (1)", "about equally close"]),
    );
    let f = failure(
        "stg_orders",
        "models/staging/stg_orders.sql",
        ErrorKind::Database,
        "000904 (42000): SQL compilation error: error line 3 at position 4\ninvalid identifier 'SHIP_DATE'",
    );
    check(
        "no documented parent columns",
        &f,
        Some("select ship_date from {{ source('jaffle_raw', 'raw_orders') }}"),
        Want::Report(&["`SHIP_DATE`", "no candidates"]),
    );
}

#[test]
fn columns_are_fixed_from_database_candidates_and_documented_parents() {
    let cases = [
        (
            "Postgres hint",
            "column o.ordr_date does not exist\nLINE 3: select o.ordr_date from ...\nHINT:  Perhaps you meant to reference the column \"o.order_date\".",
            "select\n    o.ordr_date\nfrom {{ ref('stg_orders') }} as o",
            "    o.order_date\n",
        ),
        (
            "Postgres quoted",
            "column \"ordr_date\" does not exist\nHINT:  Perhaps you meant to reference the column \"orders.order_date\".",
            "select\n    ordr_date\nfrom orders",
            "    order_date\n",
        ),
        (
            "Snowflake with yml-documented parent columns",
            "000904 (42000): SQL compilation error: error line 2 at position 4\ninvalid identifier 'ORDR_DATE'",
            "select\n    ORDR_DATE\nfrom {{ ref('stg_orders') }}",
            "    order_date\n",
        ),
    ];
    for (what, msg, text, contains) in cases {
        let f = failure(
            "orders",
            "models/marts/orders.sql",
            ErrorKind::Database,
            msg,
        );
        check(
            what,
            &f,
            Some(text),
            Want::Edit {
                file: "models/marts/orders.sql",
                lines: &[2],
                contains,
            },
        );
    }
}

#[test]
fn generic_tests_are_matched_to_their_model_and_column() {
    let ix = index();
    let mut ix2 = ix.clone();
    ix2.source_columns.insert(
        ("jaffle_raw".into(), "raw_orders".into()),
        vec!["id".into()],
    );
    type Expected<'a> = Option<(&'a str, &'a str, &'a str)>;
    let cases: Vec<(&str, Expected)> = vec![
        (
            "not_null_stg_orders_customer_id",
            Some(("stg_orders", "customer_id", "not_null")),
        ),
        (
            "unique_stg_orders_order_id",
            Some(("stg_orders", "order_id", "unique")),
        ),
        (
            "relationships_orders_customer_id__customer_id__ref_customers_",
            Some(("orders", "customer_id", "relationships")),
        ),
        (
            "source_unique_jaffle_raw_raw_orders_id",
            Some(("jaffle_raw.raw_orders", "id", "unique")),
        ),
        ("assert_order_amount_matches_payments", None),
    ];
    for (test, want) in cases {
        let got = tested_column(test, &ix2).map(|(r, c, t)| (r.display(), c, t));
        let want = want.map(|(r, c, t)| (r.to_string(), c.to_string(), t.to_string()));
        assert_eq!(got, want, "{test}");
    }
}

#[test]
fn the_upstream_of_a_tested_column_is_traced() {
    let ix = index();
    let sql = std::fs::read_to_string(demo_dir().join("models/staging/stg_orders.sql"))
        .expect("demo model");
    let dt = DataTest {
        test: "not_null_stg_orders_customer_id".into(),
        file: Some("models/staging/schema.yml".into()),
        test_type: Some("not_null".into()),
        relation: Some(Relation::Node("stg_orders".into())),
        column: Some("customer_id".into()),
        failing_rows: Some(1),
        compiled_code: None,
    };
    let up = upstream_cause(&dt, &ix, Some(&sql));
    assert_eq!(
        up,
        "`stg_orders.customer_id` comes from `user_id as customer_id` (models/staging/stg_orders.sql line 14). `stg_orders` reads seed `raw_orders` (seeds/raw_orders.csv) and source `jaffle_raw.raw_orders`, so the offending rows most likely arrive from there."
    );
    let s = data_test_summary(&dt, &Ok("| customer_id |\n| --- |\n|  |".into()), None, &up);
    assert!(s.starts_with("Data test `not_null_stg_orders_customer_id` (models/staging/schema.yml) failed with 1 failing row: `stg_orders.customer_id` has null values."), "{s}");
    assert!(
        s.ends_with("the test and the data were not changed."),
        "{s}"
    );
}

#[test]
fn sql_error_lines_are_mapped_to_the_file() {
    let f = failure(
        "orders",
        "models/marts/orders.sql",
        ErrorKind::Database,
        "Runtime Error in model orders (models/marts/orders.sql)\n  Conversion Error: Could not convert string 'x' to INT32\n\n  LINE 40:     cast(status as int) as s\n",
    );
    check(
        "cast error",
        &f,
        Some("select\n  1,\n    cast(status as int) as s\nfrom t"),
        Want::Report(&[
            "models/marts/orders.sql line 3",
            "Conversion Error: Could not convert string 'x' to INT32",
        ]),
    );
}

#[test]
fn unknown_column_messages_of_every_database_are_read() {
    // (what, message, database, qualifier, name, candidates)
    type Case<'a> = (
        &'a str,
        &'a str,
        Database,
        Option<&'a str>,
        &'a str,
        &'a [&'a str],
    );
    let cases: &[Case] = &[
        (
            "DuckDB, a view behind an alias (dbt-duckdb 1.10, as printed)",
            "Runtime Error in model customer_names (models/marts/customer_names.sql)\n  Binder Error: Values list \"c\" does not have a column named \"customer_nmae\"\n  \n  LINE 13:     c.customer_nmae\n               ^",
            Database::DuckDb, Some("c"), "customer_nmae", &[],
        ),
        (
            "DuckDB, a table behind an alias",
            "Binder Error: Table \"c\" does not have a column named \"customer_nmae\"",
            Database::DuckDb, Some("c"), "customer_nmae", &[],
        ),
        (
            "DuckDB, a table behind an alias, with candidates",
            "Binder Error: Table \"c\" does not have a column named \"customer_nmae\"\n\nCandidate bindings: \"c.customer_name\", \"c.customer_id\"",
            Database::DuckDb, Some("c"), "customer_nmae", &["customer_name", "customer_id"],
        ),
        (
            "DuckDB, unqualified",
            "Binder Error: Referenced column \"ordr_date\" not found in FROM clause!\n  Candidate bindings: \"order_date\", \"user_id\", \"id\"\n  \n  LINE 19:         ordr_date,",
            Database::DuckDb, None, "ordr_date", &["order_date", "user_id", "id"],
        ),
        (
            "Postgres, qualified, with a hint",
            "column c.customer_nmae does not exist\nLINE 3:     c.customer_nmae,\n            ^\nHINT:  Perhaps you meant to reference the column \"c.customer_name\".",
            Database::Postgres, Some("c"), "customer_nmae", &["customer_name"],
        ),
        (
            "Postgres, qualified, no hint",
            "Database Error in model customer_names (models/marts/customer_names.sql)\n  column c.customer_nmae does not exist\n  LINE 3:     c.customer_nmae\n              ^",
            Database::Postgres, Some("c"), "customer_nmae", &[],
        ),
        (
            "Postgres, unqualified, two hints",
            "column \"nmae\" does not exist\nLINE 2: select nmae from ...\nHINT:  Perhaps you meant to reference the column \"c.name\" or the column \"o.name\".",
            Database::Postgres, None, "nmae", &["name"],
        ),
        (
            "Redshift",
            "Database Error in model customer_names (models/marts/customer_names.sql)\n  column \"customer_nmae\" does not exist in c",
            Database::Redshift, Some("c"), "customer_nmae", &[],
        ),
        (
            "Snowflake, qualified",
            "000904 (42000): SQL compilation error: error line 3 at position 4\ninvalid identifier 'C.CUSTOMER_NMAE'",
            Database::Snowflake, Some("C"), "CUSTOMER_NMAE", &[],
        ),
        (
            "Snowflake, quoted",
            "000904 (42000): SQL compilation error: error line 6 at position 7\ninvalid identifier '\"Company Symbol\"'",
            Database::Snowflake, None, "Company Symbol", &[],
        ),
        (
            "BigQuery, inside an alias",
            "Database Error in model labeled_projects (models/labeled_projects.sql)\n  Name id not found inside t at [9:13]",
            Database::BigQuery, Some("t"), "id", &[],
        ),
        (
            "BigQuery, unrecognized, with a suggestion",
            "Unrecognized name: customer_nmae; Did you mean customer_name? at [3:5]",
            Database::BigQuery, None, "customer_nmae", &["customer_name"],
        ),
        (
            "BigQuery, unrecognized",
            "Database Error in model stg_ntd__major_safety_events (models/staging/x.sql)\n  Unrecognized name: additional_assault_information at [62:15]",
            Database::BigQuery, None, "additional_assault_information", &[],
        ),
        (
            "Databricks, with suggestions of two tables",
            "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, or function parameter with name `c`.`customer_nmae` cannot be resolved. Did you mean one of the following? [`c`.`customer_name`, `c`.`customer_id`, `o`.`customer_nam`]. SQLSTATE: 42703; line 3 pos 4;",
            Database::Databricks, Some("c"), "customer_nmae", &["customer_name", "customer_id"],
        ),
        (
            "Databricks, a suggestion with a dot in its name",
            "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column or function parameter with name `warehouse_state` cannot be resolved. Did you mean one of the following? [`warehouse_name`, `emp.var.rate`];",
            Database::Databricks, None, "warehouse_state", &["warehouse_name", "emp.var.rate"],
        ),
        (
            "Databricks, without suggestion",
            "[UNRESOLVED_COLUMN.WITHOUT_SUGGESTION] A column or function parameter with name `customer_nmae` cannot be resolved. SQLSTATE: 42703",
            Database::Databricks, None, "customer_nmae", &[],
        ),
        (
            "Spark before 3.4",
            "cannot resolve 'c.customer_nmae' given input columns: [c.customer_id, c.customer_name]; line 1 pos 7",
            Database::Databricks, Some("c"), "customer_nmae", &["customer_id", "customer_name"],
        ),
    ];
    for (what, msg, db, q, name, cands) in cases {
        let got = unknown_column_error(msg).unwrap_or_else(|| panic!("{what}: not read"));
        assert_eq!(got.database, *db, "{what}");
        assert_eq!(got.qualifier.as_deref(), *q, "{what}");
        assert_eq!(got.name, *name, "{what}");
        assert_eq!(got.candidates, *cands, "{what}");
    }
    // Not a misspelt column: a new column an incremental model's table lacks,
    // or a misspelt table alias.
    for msg in [
        "column \"new_col\" of relation \"orders\" does not exist",
        "Binder Error: Referenced table \"c\" not found!\nCandidate tables: \"o\"",
    ] {
        assert_eq!(unknown_column_error(msg), None, "{msg}");
    }
}

#[test]
fn columns_behind_an_alias_are_compared_with_the_warehouse() {
    let stg_customers = Relation::Node("stg_customers".into());
    let stg_orders = Relation::Node("stg_orders".into());
    let seen = |rel: &Relation, cols: &[&str]| WarehouseColumns {
        columns: [(rel.clone(), cols.iter().map(|c| c.to_string()).collect())].into(),
        error: None,
    };
    let customers = seen(
        &stg_customers,
        &["customer_id", "first_name", "last_name", "customer_name"],
    );
    let model = |msg: &str| {
        failure(
            "customer_names",
            "models/marts/customer_names.sql",
            ErrorKind::Database,
            msg,
        )
    };
    let duckdb = |q: &str, col: &str| {
        format!("Binder Error: Values list \"{q}\" does not have a column named \"{col}\"\n\n  LINE 3:     {q}.{col}")
    };
    let aliased =
        "select\n    c.customer_id,\n    c.customer_nmae\nfrom {{ ref('stg_customers') }} c\n";
    let file = "models/marts/customer_names.sql";

    check_seen(
        "a ref behind an alias, from the warehouse",
        &model(&duckdb("c", "customer_nmae")),
        Some(aliased),
        &customers,
        Want::Edit {
            file,
            lines: &[3],
            contains: "    c.customer_name\nfrom",
        },
    );
    let got = diagnose_with_warehouse(
        &model(&duckdb("c", "customer_nmae")),
        &index(),
        Some(aliased),
        &customers,
    );
    for part in [
        "`c` reads `stg_customers`",
        "(in the warehouse)",
        "Changed `c.customer_nmae` to `c.customer_name`",
    ] {
        assert!(
            got.summary.contains(part),
            "lacks {part:?}: {}",
            got.summary
        );
    }

    check_seen(
        "a CTE behind an alias, Snowflake upper-cases",
        &model("000904 (42000): SQL compilation error: error line 5 at position 4\ninvalid identifier 'C.CUSTOMER_NMAE'"),
        Some("with customers as (\n    select * from {{ ref('stg_customers') }}\n)\nselect\n    c.customer_nmae\nfrom customers as c\n"),
        &seen(&stg_customers, &["CUSTOMER_ID", "CUSTOMER_NAME"]),
        Want::Edit { file, lines: &[5], contains: "    c.customer_name\n" },
    );
    check_seen(
        "two columns about as close",
        &model(&duckdb("c", "fist_name")),
        Some("select c.customer_id, c.fist_name\nfrom {{ ref('stg_customers') }} as c"),
        &customers,
        Want::Report(&[
            "`first_name` (1)",
            "`last_name` (2)",
            "about equally close",
            "in the warehouse",
            "line 1",
        ]),
    );
    check_seen(
        "not in the warehouse: the documented columns stand in",
        &model(&duckdb("o", "ordr_date")),
        Some("select\n    o.ordr_date\nfrom {{ ref('stg_orders') }} o"),
        &seen(&stg_orders, &[]),
        Want::Edit {
            file,
            lines: &[2],
            contains: "o.order_date",
        },
    );
    let failed = WarehouseColumns {
        columns: Default::default(),
        error: Some("`dbt show` failed".into()),
    };
    let got = diagnose_with_warehouse(
        &model(&duckdb("o", "ordr_date")),
        &index(),
        Some("select\n    o.ordr_date\nfrom {{ ref('stg_orders') }} o"),
        &failed,
    );
    assert!(matches!(got.action, Action::Edit { .. }), "{}", got.summary);
    assert!(
        got.summary.contains("the warehouse could not be asked"),
        "{}",
        got.summary
    );
    check_seen(
        "the column is there now: stale parents, nothing to rename",
        &model(&duckdb("c", "first_name")),
        Some("select c.first_name from {{ ref('stg_customers') }} c"),
        &customers,
        Want::Report(&["lists `first_name`", "rebuild the parents"]),
    );
    check_seen(
        "a qualifier the model does not define",
        &model(&duckdb("z", "customer_nmae")),
        Some(aliased),
        &customers,
        Want::Report(&["`z` is no table, alias or CTE", "no candidates"]),
    );
    check_seen(
        "an alias of a table that is no ref, source or CTE",
        &model(&duckdb("e", "customer_nmae")),
        Some("select e.customer_nmae from raw.events e"),
        &WarehouseColumns::default(),
        Want::Report(&[
            "`e` reads `raw.events`, which is no ref, source or CTE",
            "no candidates",
        ]),
    );
    check_seen(
        "the warehouse could not be asked: a far documented column is not trusted",
        &model(&duckdb("c", "customer_nmae")),
        Some(aliased),
        &failed,
        Want::Report(&[
            "The nearest, `customer_id`, is 4 edits away, and only documented columns were compared",
            "(documented; the warehouse could not be asked): `customer_id` (4)",
        ]),
    );
    check_seen(
        "a source the warehouse could not list, nothing documented",
        &model(&duckdb("r", "customer_nmae")),
        Some("select r.customer_nmae from {{ source('jaffle_raw', 'raw_customers') }} r"),
        &failed,
        Want::Report(&["Considered the columns of `jaffle_raw.raw_customers` (the warehouse could not be asked, none documented): none"]),
    );
    check_seen(
        "a CTE's own select list, no warehouse needed",
        &model("Name frist_name not found inside r at [3:10]"),
        Some("with renamed as (\n    select id as customer_id, first_name from {{ ref('stg_customers') }}\n)\nselect r.frist_name from renamed r"),
        &WarehouseColumns::default(),
        Want::Edit { file, lines: &[4], contains: "select r.first_name from renamed r" },
    );
    check_seen(
        "the database's suggestion wins",
        &model("Unrecognized name: customer_nmae; Did you mean customer_name? at [2:5]"),
        Some("select\n    customer_nmae\nfrom {{ ref('stg_customers') }}"),
        &WarehouseColumns::default(),
        Want::Edit {
            file,
            lines: &[2],
            contains: "    customer_name\n",
        },
    );
}

#[test]
fn the_warehouse_is_asked_only_about_what_a_column_error_can_see() {
    let ix = index();
    let names = |f: &NodeFailure, text: Option<&str>| -> Vec<String> {
        columns_to_look_up(f, &ix, text)
            .iter()
            .map(Relation::display)
            .collect()
    };
    let db = |msg: &str| failure("m", "models/m.sql", ErrorKind::Database, msg);
    let joined = "select c.x, o.y from {{ ref('stg_customers') }} c join {{ source('jaffle_raw', 'raw_orders') }} o on true";
    let table = |q: &str| format!("Binder Error: Table \"{q}\" does not have a column named \"x\"");
    assert_eq!(names(&db(&table("c")), Some(joined)), ["stg_customers"]);
    assert_eq!(
        names(&db(&table("o")), Some(joined)),
        ["jaffle_raw.raw_orders"]
    );
    assert_eq!(
        names(&db("invalid identifier 'X'"), Some(joined)),
        ["stg_customers", "jaffle_raw.raw_orders"],
        "unqualified: everything the model reads"
    );
    let mut compiled = db(&table("c"));
    compiled.compiled_code = Some("select c.x from \"jaffle\".\"main\".\"stg_customers\" c".into());
    assert_eq!(
        names(&compiled, Some("select 1")),
        ["stg_customers"],
        "from the compiled SQL"
    );
    assert!(names(&db("Binder Error: Referenced column \"x\" not found in FROM clause!\nCandidate bindings: \"y\""), Some(joined)).is_empty(), "the database named candidates");
    assert!(names(
        &db("Parser Error: syntax error at or near \"as\""),
        Some(joined)
    )
    .is_empty());
    let test = failure(
        "not_null_x",
        "models/schema.yml",
        ErrorKind::TestFailure,
        "Got 1 result, configured to fail if != 0",
    );
    assert!(names(&test, Some(joined)).is_empty());
}
