//! The classifier on real error texts: every message below was printed by a
//! warehouse, its driver or dbt, and pasted into the public issue or file
//! named beside it (trimmed to the error, never reworded). The whole-log
//! cases parse the console output of real dbt runs (the team's fixtures,
//! recorded from real dbt against DuckDB, and logs pasted into issues).

use super::*;
use crate::domain::FailureClass::{Code, Data, Setup, Transient};
use crate::runlog::{self, Artifacts};

/// One failing model whose error is `message`, as the run-log parser leaves it.
fn one(message: &str) -> RunLog {
    RunLog {
        run_id: "1".into(),
        failures: vec![NodeFailure {
            unique_id: None,
            name: "orders".into(),
            resource_type: "model".into(),
            path: Some("models/orders.sql".into()),
            kind: ErrorKind::Runtime,
            message: message.into(),
            compiled_code: None,
        }],
        raw: message.into(),
        ..RunLog::default()
    }
}

fn check(adapter: &str, class: FailureClass, what: &str, message: &str) {
    let got = classify(&one(message));
    assert_eq!(got.class, class, "{adapter}: {message:?}\n→ {}", got.why);
    assert!(
        got.why.starts_with(what),
        "{adapter}: {message:?}\n→ {}",
        got.why
    );
    assert!(got.why.chars().count() <= WHY_MAX, "{}", got.why);
}

/// (adapter, class, what the thread is told, the message.)
type Row = (&'static str, FailureClass, &'static str, &'static str);

const ROWS: &[Row] = &[
    // ── DuckDB ──
    // AltimateAI/vscode-dbt-power-user#1750 (dbt-duckdb run)
    ("duckdb", Transient, "lock conflict", "Runtime Error\nIO Error: Could not set lock on file \"/data/duckdb/foodpilled.duckdb\": Conflicting lock is held in /usr/local/bin/python3.12 (PID 1637). See also https://duckdb.org/docs/stable/connect/concurrency"),
    // Mause/duckdb_engine#436
    ("duckdb", Transient, "lock conflict", "IO Error: Could not set lock on file \"/tmp/mdsbox.db\": Resource temporarily unavailable"),
    // duckdb/duckdb#15687
    ("duckdb", Transient, "out of memory", "Out of Memory Error: failed to allocate data of size 256.0 MiB (260.3 MiB/476.8 MiB used)"),
    // duckdb/duckdb#12667
    ("duckdb", Transient, "out of memory", "Out of Memory Error: Failed to allocate block of 262144 bytes (bad allocation)"),
    // Meaningful-Data/vtlengine#988
    ("duckdb", Code, "unknown column", "Binder Error: Referenced column \"Me_str\" not found in FROM clause!\nCandidate bindings: \"Va_str\", \"Id_date\", \"int_var\", \"Id_period\""),
    // cwida/duckpgq-extension#95
    ("duckdb", Code, "missing relation", "Catalog Error: Table with name table_that_does_not_exist does not exist!\nDid you mean \"temp.information_schema.tables\"?"),
    // duckdb/dbt-duckdb#101: the profile's database is not the file's catalog.
    ("duckdb", Setup, "missing schema or database", "Runtime Error in model my_first_dbt_model (models/example/my_first_dbt_model.sql)\n  Binder Error: Catalog \"main\" does not exist!"),
    // ── Postgres ──
    // uclouvain/osis-portal#1164 (psycopg2 OperationalError)
    ("postgres", Transient, "connection reset", "OperationalError: server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n\tbefore or while processing the request."),
    // tines/rails-pg-adapter#15 (libpq ≥ 14)
    ("postgres", Transient, "connection refused", "connection to server at \"10.1.209.231\", port 5432 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?"),
    // MerginMaps/db-sync#141 (libpq < 14)
    ("postgres", Transient, "connection refused", "Unable to connect to the database: could not connect to server: Connection refused\n\tIs the server running on host \"localhost\" (::1) and accepting\n\tTCP/IP connections on port 5432?"),
    // xmtp/xmtpd#1213
    ("postgres", Transient, "warehouse timeout", "ERROR: canceling statement due to statement timeout (SQLSTATE 57014)"),
    // divviup/janus#995
    ("postgres", Transient, "lock conflict", "ERROR: deadlock detected\nDETAIL: Process 184495 waits for ShareLock on transaction 2097298; blocked by process 185919.\nProcess 185919 waits for ShareLock on transaction 2097304; blocked by process 184495.\nHINT: See server log for query details."),
    // odoo/runbot#805
    ("postgres", Transient, "lock conflict", "ERROR: could not serialize access due to concurrent update"),
    // dbt-labs/dbt-core#3508 (two dbt threads replacing views over the same sources)
    ("postgres", Transient, "lock conflict", "Database Error in model view2 (models/view2.sql)\n  tuple concurrently updated"),
    // tweag/servant-template#65
    ("postgres", Setup, "missing grant", "psql:schema.sql:5: ERROR:  permission denied for schema public\nLINE 1: CREATE TABLE users"),
    // dbt-labs/dbt-core#2186
    ("postgres", Setup, "missing grant", "ERROR:  permission denied for database analytics"),
    // CivicTechTO/ttc_subway_times#20
    ("postgres", Setup, "missing role", "FATAL:  role \"rad\" does not exist"),
    // dwyl/learn-postgresql#118
    ("postgres", Code, "unknown column", "ERROR:  column d.daticulocale does not exist\nLINE 8:   d.daticulocale as \"ICU Locale\",\n          ^\nHINT:  Perhaps you meant to reference the column \"d.datlocale\"."),
    // ── Redshift ──
    // snowplow/snowplow-rdb-loader#557
    ("redshift", Transient, "lock conflict", "[Amazon](500310) Invalid operation: 1023 \nDetails: Serializable isolation violation on table - 100167, transactions forming the cycle are: 55705701, 55705754 (pid:16606);"),
    // dbt-labs/dbt-redshift#66
    ("redshift", Transient, "connection reset", "Database Error in model orders (models/orders.sql)\n  SSL SYSCALL error: EOF detected"),
    // wankdanker/node-odbc#83
    ("redshift", Transient, "connection reset", "[Amazon][Amazon Redshift] (30) Error occurred while trying to execute a query: [SQLState 08S01] SSL SYSCALL error: EOF detected"),
    // awslabs/amazon-redshift-utils#648 (redshift_connector, as dbt-redshift ≥ 1.5 reports it)
    ("redshift", Setup, "missing grant", "{'S': 'ERROR', 'C': '42501', 'M': 'permission denied for relation stv_tbl_perm', 'F': '../src/pg/src/backend/catalog/aclchk.c', 'L': '2763', 'R': 'aclcheck_error'}"),
    // dbt-labs/dbt-core#4554
    ("redshift", Setup, "missing env var", "Encountered an error:\nParsing Error\n  Env var required but not provided: 'REDSHIFT_DATABASE'"),
    // SQLMesh/sqlmesh#5787 (redshift_connector)
    ("redshift", Code, "SQL syntax error", "{'S': 'ERROR', 'C': '42601', 'M': 'syntax error at end of input', 'P': '142', 'F': '/opt/brazil-pkg-cache/packages/RedshiftPADB/RedshiftPADB-1.0.180974.0/AL2_x86_64/generic-flavor/src/src/pg/src/backend/parser/parser_scan.l', 'L': '892', 'R': 'yyerror'}"),
    // dbeaver/dbeaver#12691 (Redshift JDBC)
    ("redshift", Code, "missing relation", "SQL Error [500310] [42P01]: [Amazon](500310) Invalid operation: relation \"pg_catalog.pg_roles\" does not exist;"),
    // elementary-data/elementary#1540
    ("redshift", Code, "type error", "[42846] ERROR: cannot cast type boolean to character varying"),
    // dbt-labs/dbt-redshift#914
    ("redshift", Code, "SQL error", "Redshift adapter: Redshift error: column \"id\" of relation \"<RELATION_NAME>\" already exists"),
    // dbt-labs/dbt-core#5296 (a dbt test job on Redshift)
    ("redshift", Data, "failing data test", "Got 1 result, configured to fail if != 0"),
    // ── Snowflake ──
    // snowflakedb/snowflake-connector-python#218
    ("snowflake", Transient, "credentials expired", "ProgrammingError: 390114 (08001): Authentication token has expired.  The user must authenticate again."),
    // rinsed-org/rb-snowflake-client#170
    ("snowflake", Transient, "credentials expired", "RubySnowflake::BadResponseError: Bad response! Got code: 401, w/ message {\n  \"code\" : \"390198\",\n  \"message\" : \"Keypair access token expired. ...VUrmjSFgTw\"\n}"),
    // dbt-labs/dbt-snowflake#70
    ("snowflake", Transient, "connection refused", "Database Error\n  250001: Could not connect to Snowflake backend after 0 attempt(s).Aborting"),
    // Snowflake-Labs/semantic-model-generator#221
    ("snowflake", Transient, "warehouse timeout", "ProgrammingError: 000630 (57014): Statement reached its statement or warehouse timeout of 120 second(s) and was canceled."),
    // brooklyn-data/dbt_artifacts#431 (an on-run-end hook of concurrent dbt runs)
    ("snowflake", Transient, "lock conflict", "000625 (57014): Statement '01b43b22-0509-2fce-0003-29019743c0af' has locked table 'MODELS' in transaction 1715330074481000000 and this lock has not yet been released.\nYour statement '01b43b22-0509-2fce-0003-29019743c13b' was aborted because the number of waiters for this lock exceeds the 20 statements limit."),
    // brooklyn-data/dbt_artifacts#109 (Snowflake's internal incident: support says retry)
    ("snowflake", Transient, "warehouse 5xx", "Database Error in model fct_dbt__critical_path\n  Processing aborted due to error 300010:391167117; incident 7185034."),
    // vdesabou/kafka-docker-playground#7348: a missing table is a missing relation.
    ("snowflake", Code, "missing relation", "002003 (42S02): SQL compilation error:\nObject 'PGDBRUNNER810.PUBLIC.FOO' does not exist or not authorized."),
    // Health-Union/snowshu#40: a missing database is configuration.
    ("snowflake", Setup, "missing schema or database", "(snowflake.connector.errors.ProgrammingError) 002003 (02000): 01938587-0027-5d4d-0000-012516bbcafe: SQL compilation error:\nDatabase 'UTIL_DB' does not exist or not authorized."),
    // sodadata/soda-core#1436
    ("snowflake", Setup, "missing schema or database", "002003 (02000): SQL compilation error:\nSchema 'database_name.schema_name' does not exist or not authorized."),
    // dbt-labs/dbt-external-tables#214
    ("snowflake", Setup, "missing grant", "Encountered an error while running operation: Database Error\n  003001 (42501): SQL access control error:\n  Insufficient privileges to operate on database 'XXX'"),
    // get-select/dbt-snowflake-monitoring#52
    ("snowflake", Code, "unknown column", "Database Error in model daily_spend (models/daily_spend.sql)\n  000904 (42000): SQL compilation error: error line 210 at position 45\n  invalid identifier 'STG_METERING_HISTORY.START_TIME'\n  compiled Code at target/run/dbt_snowflake_monitoring/models/daily_spend.sql"),
    // jacopotagliabue/recs-at-resonable-scale#1
    ("snowflake", Code, "SQL syntax error", "Database Error\n  001003 (42000): SQL compilation error:\n  syntax error line 1 at position 53 unexpected '<EOF>'."),
    // ── BigQuery ──
    // dbt-labs/dbt-bigquery#1475
    ("bigquery", Transient, "warehouse 5xx", "Runtime Error in model my_model (dbt/models/some.sql)\n503 GET https://bigquery.googleapis.com/bigquery/v2/projects/my-project/jobs/ffffffff-8d8d-4747-acac-eeeeeeeeeeee?location=US&prettyPrint=false: \nVisibility check was unavailable. Please retry the request and contact support if the problem persists"),
    // unum-io/tyda#86
    ("bigquery", Transient, "warehouse 5xx", "503 Error encountered during execution. Retrying may solve the problem."),
    // googleapis/python-bigquery#945
    ("bigquery", Transient, "warehouse timeout", "google.api_core.exceptions.RetryError: Deadline of 120.0s exceeded while calling functools.partial(functools.partial(<bound method JSONConnection.api_request of <google.cloud.bigquery._http.Connection object at 0x3e7a63fbb2b0>>, method='POST', path='/projects/xx/datasets/xx/tables'), last exception: 503 POST https://bigquery.googleapis.com"),
    // GoogleCloudPlatform/professional-services-data-validator#728
    ("bigquery", Transient, "credentials expired", "google.auth.exceptions.RefreshError: ('invalid_grant: Token has been expired or revoked.'"),
    // trinodb/trino#16416
    ("bigquery", Transient, "warehouse queue", "Exceeded rate limits: too many table update operations for this table. For more information, see https://cloud.google.com/bigquery/docs/troubleshoot-quotas"),
    // fivetran/great_expectations#7286
    ("bigquery", Transient, "out of memory", "400 Resources exceeded during query execution: The query could not be executed in the allotted memory. Peak usage: 120% of limit.\nTop memory consumer(s):\n  ORDER BY operations: 99%"),
    // re-data/re-data#101: the same words for a query too complex to plan are the code's.
    ("bigquery", Code, "query too complex", "Database Error in model re_data_base_metrics (models/intermediate/re_data_base_metrics.sql)\n  Resources exceeded during query execution: Not enough resources for query planning - too many subqueries or query is too complex."),
    // mozilla/bigquery-etl#3193
    ("bigquery", Setup, "missing grant", "403 POST https://bigquery.googleapis.com/bigquery/v2/projects/mozdata/jobs?prettyPrint=false: Access Denied: Table mozdata:telemetry_stable.main_v4: User does not have permission to query table mozdata:telemetry_stable.main_v4, or perhaps it does not exist in location US."),
    // igrigorik/gharchive.org#237
    ("bigquery", Setup, "missing grant", "Access Denied: Project githubarchive: User does not have bigquery.jobs.create permission in project githubarchive."),
    // dbt-labs/docs.getdbt.com#716
    ("bigquery", Setup, "missing grant", "Database Error in model stg_datalocker__inapps (models/staging/appsflyer/inapps/stg_datalocker__inapps.sql)\n  Access Denied: BigQuery BigQuery: Permission denied while globbing file pattern."),
    // dbt-labs/dbt-bigquery#19
    ("bigquery", Setup, "missing schema or database", "Runtime Error in model yo (models/yo.sql)\n404 Not found: Dataset hello-data-pipeline:staging_benjamin was not found in location EU\n(job ID: 4020ce42-ec44-438e-8ea0-9f4fe4adcc8c)"),
    // cal-itp/data-infra#4229
    ("bigquery", Code, "unknown column", "Database Error in model stg_ntd__major_safety_events (models/staging/ntd_safety_and_security/stg_ntd__major_safety_events.sql)\n  Unrecognized name: additional_assault_information at [62:15]\n  compiled Code at target/run/calitp_warehouse/models/staging/ntd_safety_and_security/stg_ntd__major_safety_events.sql"),
    // ── Databricks / Spark ──
    // dbt-labs/coalesce-2022-python-databricks#2
    ("databricks", Code, "unknown column", "Runtime Error in model stg_customers (models/staging/stg_customers.sql)\n  [UNRESOLVED_COLUMN] A column or function parameter with name `id` cannot be resolved. Did you mean one of the following? [`source`.`customer_id`, `source`.`lifetime_spend`, `source`.`customer_name`]; line 29 pos 8"),
    // elementary-data/elementary#1538
    ("databricks", Code, "unknown column", "Runtime Error in model model_run_results (models/edr/run_results/model_run_results.sql)\n  [UNRESOLVED_COLUMN.WITH_SUGGESTION] A column or function parameter with name `models`.`unique_id` cannot be resolved. Did you mean one of the following? [`run_results`.`unique_id`, `models`.`metadata_hash`]"),
    // dbt-labs/dbt-spark#1106
    ("spark", Code, "missing relation", "Spark adapter: Runtime Error\n  [TABLE_OR_VIEW_NOT_FOUND] The table or view `database`.`table` cannot be found. Verify the spelling and correctness of the schema and catalog."),
    // databricks/dbt-databricks#838
    ("databricks", Setup, "missing grant", "[INSUFFICIENT_PERMISSIONS] Insufficient privileges:\n    User does not have USE CATALOG on Catalog 'system'. SQLSTATE: 42501"),
    // ibis-project/ibis#9038
    ("databricks", Setup, "missing grant", "com.databricks.sql.managedcatalog.acl.UnauthorizedAccessException: PERMISSION_DENIED: User does not have USE SCHEMA on Schema 'comms_media_dev.default'."),
    // duneanalytics/spellbook#3774 (dbt Cloud compiling against Spark)
    ("databricks", Setup, "missing schema or database", "databricks.sql.exc.ServerOperationError: [SCHEMA_NOT_FOUND] The schema `looksrare_seaport` cannot be found. Verify the spelling and correctness of the schema and catalog."),
    // flyway/flyway-community-db-support#116
    ("databricks", Transient, "lock conflict", "Error running query: [DELTA_CONCURRENT_APPEND] io.delta.exceptions.ConcurrentAppendException: [DELTA_CONCURRENT_APPEND] ConcurrentAppendException: Files were added to the root of the table by a concurrent update. Please try the operation again."),
    // dbt-labs/dbt-external-tables#228
    ("databricks", Transient, "lock conflict", "Runtime Error in seed people (seeds/people.csv)\n  ('HY000', \"[HY000] [Simba][Hardy] (35) Error from server: error code: '0' error message: 'org.apache.hive.service.cli.HiveSQLException: Error running query: io.delta.exceptions.ProtocolChangedException: The protocol version of the Delta table has been changed by a concurrent update."),
    // databricks/dbt-databricks#352
    ("databricks", Transient, "connection reset", "Error during request to server: [Errno 104] Connection reset by peer."),
    // databricks/dbt-databricks#767
    ("databricks", Transient, "connection reset", "Runtime Error in model xx (models/path/to/xx.sql)\n  Runtime Error\n    ('Connection aborted."),
    // databricks/dbt-databricks#767
    ("databricks", Transient, "warehouse 5xx", "Query could not be scheduled: HTTP Response code: 503. Please try again later. SQLSTATE: XX000"),
    // databricks/dbt-databricks#892
    ("databricks", Transient, "warehouse 5xx", "Max retries exceeded with url: ... (Caused by ResponseError('too many 503 error responses'))"),
    // trinodb/trino#29376 (Databricks JDBC)
    ("databricks", Transient, "warehouse 5xx", "com.databricks.jdbc.exception.DatabricksHttpException: HTTP request failed by code: 503,\n      status line: HTTP/1.1 503 Service Unavailable.\n      Thrift Header: TEMPORARILY_UNAVAILABLE: Cluster 5711-083124-7nybcy05 is temporarily unavailable."),
    // spiceai/spiceai#1949
    ("databricks", Transient, "out of memory", "Job aborted due to stage failure: Task 0 in stage 345.0 failed 4 times, most recent failure: Lost task 0.3 in stage 345.0 (TID 843) (10.139.64.10 executor 50): java.lang.OutOfMemoryError: Java heap space"),
    // ── dbt itself, whatever the adapter ──
    // sqlfluff/sqlfluff#1042
    ("dbt", Setup, "bad profile or target", "dbt.exceptions.DbtProjectError: Runtime Error\n  Could not find profile named 'default'"),
    // dbt-labs/dbt-core#10803
    ("dbt", Setup, "missing env var", "Parsing Error\n  Env var required but not provided: 'DBT_DATABASE'"),
    // elementary-data/elementary#163
    ("dbt", Data, "failing data test", "Got 3100 results, configured to fail if != 0"),
];

#[test]
fn real_adapter_messages_are_sorted_into_their_class() {
    for (adapter, class, what, message) in ROWS {
        check(adapter, *class, what, message);
    }
}

#[test]
fn the_table_covers_every_class_every_transient_kind_and_every_adapter() {
    let count = |f: &dyn Fn(&Row) -> bool| ROWS.iter().filter(|r| f(r)).count();
    assert!(ROWS.len() >= 40, "{} rows", ROWS.len());
    for class in FailureClass::ALL {
        assert!(count(&|r| r.1 == class) >= 2, "{class:?}");
    }
    for kind in [
        "connection reset",
        "connection refused",
        "warehouse timeout",
        "warehouse queue",
        "lock conflict",
        "out of memory",
        "warehouse 5xx",
        "credentials expired",
    ] {
        assert!(count(&|r| r.1 == Transient && r.2 == kind) >= 1, "{kind}");
    }
    for adapter in [
        "duckdb",
        "postgres",
        "redshift",
        "snowflake",
        "bigquery",
        "databricks",
        "spark",
    ] {
        assert!(count(&|r| r.0 == adapter) >= 1, "{adapter}");
    }
}

#[test]
fn the_reason_quotes_the_evidence_and_names_the_node() {
    let got = classify(&one(
        "Database Error\n  250001: Could not connect to Snowflake backend after 0 attempt(s).Aborting",
    ));
    assert_eq!(
        got.why,
        "connection refused in model orders: “250001: Could not connect to Snowflake backend after 0 attempt(s).Aborting”"
    );
    // A long quote is cut to fit one line of the thread.
    let got = classify(&one(ROWS
        .iter()
        .find(|r| r.2 == "credentials expired")
        .expect("row")
        .3));
    assert!(got.why.chars().count() <= WHY_MAX);
    let long = format!("ERROR: deadlock detected {}", "x".repeat(400));
    let got = classify(&one(&long));
    assert_eq!(got.why.chars().count(), WHY_MAX, "{}", got.why);
    assert!(got.why.ends_with("…”"), "{}", got.why);
}

// ── Whole run logs ──

fn fixture(case: &str, file: &str) -> Option<String> {
    std::fs::read_to_string(
        crate::doctor::repo_root()
            .join("tests/fixtures/dbt")
            .join(case)
            .join(file),
    )
    .ok()
}

/// A recorded run of the team's fixtures (real dbt on DuckDB), parsed.
fn recorded(case: &str) -> RunLog {
    runlog::parse(
        case,
        &Artifacts {
            console: fixture(case, "console.plain.txt"),
            run_results: fixture(case, "run_results.json"),
            ..Artifacts::default()
        },
    )
}

fn console(text: &str) -> RunLog {
    runlog::parse(
        "1",
        &Artifacts {
            console: Some(text.to_string()),
            ..Artifacts::default()
        },
    )
}

#[test]
fn whole_run_logs_are_sorted_by_what_they_hold() {
    let cases: Vec<(&str, RunLog, FailureClass, &str)> = vec![
        // Recorded: a misspelt ref stops dbt at parse time.
        ("ref_typo", recorded("ref_typo"), Code, "missing ref or source in model orders"),
        // Recorded: a misspelt column fails the model in DuckDB.
        ("column_typo", recorded("column_typo"), Code, "unknown column in model stg_orders"),
        // Recorded: a null in the seed fails not_null (run_results status `fail`).
        ("not_null_failure", recorded("not_null_failure"), Data, "failing data test not_null_stg_orders_customer_id"),
        ("accepted_values_failure", recorded("accepted_values_failure"), Data, "failing data test accepted_values_stg_orders_status"),
        // jacopotagliabue/recs-at-resonable-scale#1: the whole console of a Snowflake run.
        (
            "snowflake syntax",
            console("10:31:08  Running with dbt=1.0.9\n10:31:08  Found 8 models, 4 tests, 0 snapshots, 0 analyses, 179 macros, 0 operations, 0 seed files, 0 sources, 0 exposures, 0 metrics\n10:31:08  \n10:31:13  Encountered an error:\nDatabase Error\n  001003 (42000): SQL compilation error:\n  syntax error line 1 at position 53 unexpected '<EOF>'.\n"),
            Code,
            "SQL syntax error in the project",
        ),
        // dbt-labs/dbt-core#4554: a Redshift profile reading an unset variable.
        (
            "redshift env var",
            console("13:26:05  Encountered an error:\nParsing Error\n  Env var required but not provided: 'REDSHIFT_DATABASE'\n"),
            Setup,
            "missing env var in the project",
        ),
        // databricks/dbt-databricks#767: the end of a scheduled run's console.
        (
            "databricks dropped connection",
            console("03:35:29  Running with dbt=1.7.17\n03:35:31  Registered adapter: databricks=1.7.10\n03:42:45  134 of 158 START sql table model xx  [RUN]\n03:42:46  134 of 158 ERROR creating sql table model xx  [ERROR in 1.09s]\n03:43:47  Finished running 99 view models, 59 table models, 1 hook in 0 hours 6 minutes and 47.45 seconds (407.45s).\n03:43:47  \n03:43:47  Completed with 1 error and 0 warnings:\n03:43:47  \n03:43:47    Runtime Error in model xx (models/path/to/xx.sql)\n  Runtime Error\n    ('Connection aborted.\n"),
            Transient,
            "connection reset in model xx",
        ),
        // A notification that names no node: the raw text is all there is
        // (dbt-labs/dbt-snowflake#70's error, posted by a scheduler).
        (
            "notification only",
            runlog::from_notification("48213", "Run 48213 of hourly_marts failed: Database Error 250001: Could not connect to Snowflake backend after 0 attempt(s).Aborting"),
            Transient,
            "connection refused in the run log",
        ),
        // Nothing recognisable: today's behaviour, said as such.
        (
            "no evidence",
            runlog::from_notification("48213", "Run 48213 of hourly_marts failed after 4m 12s."),
            Code,
            "no infrastructure, data or permission evidence in the run log",
        ),
    ];
    for (name, log, class, why) in cases {
        let got = classify(&log);
        assert_eq!(got.class, class, "{name}: {}", got.why);
        assert!(got.why.starts_with(why), "{name}: {}", got.why);
        assert!(got.why.chars().count() <= WHY_MAX, "{name}: {}", got.why);
    }
}

#[test]
fn a_code_error_beside_failing_data_tests_is_code() {
    // Two recorded runs' failures in one log: a misspelt column and a null.
    let mut log = recorded("not_null_failure");
    log.failures.extend(recorded("column_typo").failures);
    let got = classify(&log);
    assert_eq!(got.class, Code, "{}", got.why);
    assert!(
        got.why.starts_with("unknown column in model stg_orders"),
        "{}",
        got.why
    );
    assert!(
        got.why.ends_with("(and a failing data test)"),
        "{}",
        got.why
    );
}

#[test]
fn infrastructure_beside_failing_data_tests_is_transient_but_not_beside_unexplained_errors() {
    let node = |name: &str, kind: ErrorKind, message: &str| NodeFailure {
        unique_id: None,
        name: name.into(),
        resource_type: if kind == ErrorKind::TestFailure {
            "test"
        } else {
            "model"
        }
        .into(),
        path: None,
        kind,
        message: message.into(),
        compiled_code: None,
    };
    let test = node(
        "not_null_orders_id",
        ErrorKind::TestFailure,
        "Got 1 result, configured to fail if != 0",
    );
    // databricks/dbt-databricks#352
    let reset = node(
        "orders",
        ErrorKind::Runtime,
        "Error during request to server: [Errno 104] Connection reset by peer.",
    );
    let odd = node("customers", ErrorKind::Runtime, "Runtime Error in model customers (models/customers.sql)\n  'NoneType' object has no attribute 'get'");
    let log = |failures: Vec<NodeFailure>| RunLog {
        failures,
        ..RunLog::default()
    };

    let got = classify(&log(vec![test.clone(), reset.clone()]));
    assert_eq!(got.class, Transient, "{}", got.why);

    let got = classify(&log(vec![reset.clone(), odd.clone()]));
    assert_eq!(got.class, Code, "{}", got.why);
    assert!(
        got.why
            .starts_with("no infrastructure, data or permission evidence in model customers"),
        "{}",
        got.why
    );

    // The raw log can explain what the node's message does not.
    let mut explained = log(vec![odd.clone()]);
    explained.raw = "Runtime Error in model customers\n  'NoneType' object has no attribute 'get'\n\nSnowflake adapter: 390114 (08001): Authentication token has expired.  The user must authenticate again.".into();
    let got = classify(&explained);
    assert_eq!(got.class, Transient, "{}", got.why);
    assert!(
        got.why.starts_with("credentials expired in the run log"),
        "{}",
        got.why
    );

    // Failing data tests alone, several.
    let mut other = test.clone();
    other.name = "unique_orders_id".into();
    let got = classify(&log(vec![test, other]));
    assert_eq!(got.class, Data);
    assert!(
        got.why
            .starts_with("2 failing data tests, first not_null_orders_id"),
        "{}",
        got.why
    );
}

#[test]
fn a_failing_unit_test_is_the_code_not_the_data() {
    let log = RunLog {
        failures: vec![NodeFailure {
            unique_id: Some("unit_test.jaffle_shop.orders.test_order_amount".into()),
            name: "orders".into(),
            resource_type: "unit_test".into(),
            path: None,
            kind: ErrorKind::TestFailure,
            message: String::new(),
            compiled_code: None,
        }],
        ..RunLog::default()
    };
    assert_eq!(classify(&log).class, Code);
}
