//! PostgreSQL: the store a fleet of replicas shares.
//!
//! The driver is tokio-postgres behind a deadpool pool. Store methods are
//! synchronous (SQLite's calls are short and never awaited), so the pool and
//! its connections live on a small runtime of their own, on one thread: a
//! caller borrows a connection from there and then drives its query with a
//! plain `block_on` — a query's future only talks over channels to its
//! connection's task, which that runtime keeps polling. No caller ever needs
//! to be inside a runtime, and none blocks the runtime that serves the others.
//!
//! Also here: the schema's own migrations (PostgreSQL's types, one advisory
//! lock so replicas starting together migrate once), and LISTEN/NOTIFY, which
//! carries what one replica tells the others. Notifications are per
//! database, not per schema, so the channel is named after the schema the
//! store lives in (`selfheal.public`): two deployments sharing a database in
//! schemas of their own never hear each other.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result};
use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::FutureExt;
use tokio::sync::broadcast;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::warn;

use super::db::{dollar_placeholders, DbError, DbResult, Row, Value};

/// A pool of connections to one database, and the runtime that drives them.
pub struct Pg {
    pool: Pool,
    rt: tokio::runtime::Handle,
    /// The LISTEN/NOTIFY channel of this store's schema.
    channel: String,
    /// Stops the runtime's thread when the last handle goes.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Pg {
    /// Connects to `url`, brings the schema up to date and starts listening;
    /// what other replicas publish arrives on `notices`.
    pub fn connect(url: &str, notices: broadcast::Sender<String>) -> Result<Pg> {
        let (url_for_driver, ca_file, verify) = split_tls(url);
        let config: tokio_postgres::Config = url_for_driver
            .parse()
            .with_context(|| format!("reading the PostgreSQL URL {}", redact_url(url)))?;
        let tls = tls(ca_file.as_deref(), verify)?;
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("selfheal-pg".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .context("starting the PostgreSQL thread")?;
        let rt = handle_rx
            .recv()
            .context("starting the PostgreSQL runtime")?
            .context("starting the PostgreSQL runtime")?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .context("building the PostgreSQL pool")?;
        let mut pg = Pg {
            pool,
            rt,
            channel: String::new(),
            _stop: stop,
        };
        pg.with_client(migrate)
            .with_context(|| format!("migrating the schema of {}", redact_url(url)))?;
        let schema: String = pg
            .with_client(|c| rows(c, "SELECT current_schema()", &[]))?
            .first()
            .map(|r| r.get(0))
            .transpose()?
            .unwrap_or_else(|| "public".into());
        pg.channel = format!("selfheal.{schema}");
        pg.rt
            .spawn(listen(config, tls, pg.channel.clone(), notices));
        Ok(pg)
    }

    /// Runs `f` with a pooled connection.
    pub fn with_client<T>(&self, f: impl FnOnce(&ClientWrapper) -> DbResult<T>) -> DbResult<T> {
        let pool = self.pool.clone();
        let object = self
            .on_runtime(async move { pool.get().await })
            .map_err(|e| DbError::Pool(e.to_string()))?;
        f(&object)
    }

    /// Runs `f` in a transaction, committed when `f` succeeds. A transaction
    /// PostgreSQL gives up on because of a concurrent one is run again, a few
    /// times: every claim's `SELECT` then `INSERT` is serializable, so two
    /// replicas cannot both see "no session yet".
    pub fn with_tx<T>(&self, mut f: impl FnMut(&ClientWrapper) -> DbResult<T>) -> DbResult<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.with_client(|c| {
                block_on(c.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE"))?;
                match f(c).and_then(|out| {
                    block_on(c.batch_execute("COMMIT"))
                        .map(|_| out)
                        .map_err(DbError::from)
                }) {
                    Ok(out) => Ok(out),
                    Err(e) => {
                        let _ = block_on(c.batch_execute("ROLLBACK"));
                        Err(e)
                    }
                }
            });
            match result {
                Err(e) if e.is_contention() && attempt < 20 => {
                    std::thread::sleep(Duration::from_millis(attempt * 2));
                }
                other => return other,
            }
        }
    }

    /// Tells every replica (this one included) `payload`.
    pub fn publish(&self, payload: &str) -> DbResult<()> {
        self.with_client(|c| {
            execute(
                c,
                "SELECT pg_notify(?1, ?2)",
                &[
                    Value::Text(self.channel.clone()),
                    Value::Text(payload.into()),
                ],
            )
        })
        .map(drop)
    }

    /// Runs `fut` on the PostgreSQL runtime and waits for its output.
    fn on_runtime<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(fut.map(move |out| {
            let _ = tx.send(out);
        }));
        rx.recv()
            .expect("the PostgreSQL runtime runs as long as the store")
    }
}

/// Drives a query's future on the caller's thread (see the module's docs).
///
/// Unconstrained: called from a tokio task whose cooperative budget is spent,
/// the tokio primitives inside (the statement cache's semaphore) would answer
/// "not yet, yield first" forever, and this loop never yields to tokio.
fn block_on<F: Future>(fut: F) -> F::Output {
    futures_executor::block_on(tokio::task::unconstrained(fut))
}

pub fn execute(c: &ClientWrapper, sql: &str, params: &[Value]) -> DbResult<usize> {
    block_on(async {
        let stmt = c.prepare_cached(&dollar_placeholders(sql)).await?;
        let n = c.execute(&stmt, &as_params(params)).await?;
        Ok(n as usize)
    })
}

pub fn rows(c: &ClientWrapper, sql: &str, params: &[Value]) -> DbResult<Vec<Row>> {
    block_on(async {
        let stmt = c.prepare_cached(&dollar_placeholders(sql)).await?;
        let rows = c.query(&stmt, &as_params(params)).await?;
        rows.iter().map(read_row).collect()
    })
}

fn as_params(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

fn read_row(r: &tokio_postgres::Row) -> DbResult<Row> {
    let mut values = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?
                .map(|n| Value::Int(n.into()))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?
                .map(|n| Value::Int(n.into()))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?
                .map(|b| Value::Int(b.into()))
        } else if *ty == Type::FLOAT8 {
            r.try_get::<_, Option<f64>>(i)?.map(Value::Real)
        } else if *ty == Type::FLOAT4 {
            r.try_get::<_, Option<f32>>(i)?
                .map(|f| Value::Real(f.into()))
        } else if *ty == Type::TIMESTAMPTZ {
            r.try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)?
                .map(Value::Time)
        } else if *ty == Type::VOID {
            None
        } else {
            r.try_get::<_, Option<String>>(i)?.map(Value::Text)
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Value::Real(f) => f.to_sql(ty, out),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Time(t) => match *ty {
                Type::TEXT | Type::VARCHAR => t.to_rfc3339().to_sql(ty, out),
                _ => t.to_sql(ty, out),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Listens on `channel` for as long as the store lives, reconnecting after
/// a lost connection; every payload goes to `notices`.
async fn listen(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    channel: String,
    notices: broadcast::Sender<String>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let sender = notices.clone();
                let pump = tokio::spawn(async move {
                    loop {
                        let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                        match message {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                let _ = sender.send(n.payload().to_owned());
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                warn!(error = %e, "the PostgreSQL LISTEN connection failed");
                                break;
                            }
                            None => break,
                        }
                    }
                });
                let listen = format!("LISTEN \"{}\"", channel.replace('"', "\"\""));
                match client.batch_execute(&listen).await {
                    Ok(()) => {
                        delay = Duration::from_millis(100);
                        let _ = pump.await;
                    }
                    Err(e) => {
                        warn!(error = %e, "could not LISTEN on PostgreSQL");
                        pump.abort();
                    }
                }
                drop(client);
            }
            Err(e) => warn!(error = %e, "could not connect to PostgreSQL to LISTEN"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Each entry moves PostgreSQL's schema one version up; the same tables as
/// SQLite's (see `schema.rs`), in PostgreSQL's types. Never edit a released
/// entry; append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: everything SQLite's migrations 1–9 built.
    r#"
    CREATE TABLE seen_events (
        event_id TEXT PRIMARY KEY,
        seen_at  TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE failures (
        id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        schedule      TEXT NOT NULL,
        run_id        TEXT NOT NULL,
        first_seen_at TIMESTAMPTZ NOT NULL,
        resolved_run  TEXT,
        resolved_at   TIMESTAMPTZ,
        UNIQUE (schedule, run_id)
    );
    CREATE INDEX failures_by_first_seen ON failures(first_seen_at);
    CREATE INDEX failures_unresolved ON failures(schedule) WHERE resolved_run IS NULL;
    CREATE TABLE sightings (
        failure_id BIGINT NOT NULL REFERENCES failures(id),
        channel    TEXT NOT NULL,
        ts         TEXT NOT NULL,
        seen_at    TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (failure_id, channel)
    );
    CREATE INDEX sightings_by_message ON sightings(channel, ts);
    CREATE TABLE pointers (
        failure_id BIGINT NOT NULL REFERENCES failures(id),
        channel    TEXT NOT NULL,
        claimed_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (failure_id, channel)
    );
    CREATE TABLE sessions (
        id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        failure_id  BIGINT NOT NULL REFERENCES failures(id),
        attempt     BIGINT NOT NULL,
        schedule    TEXT NOT NULL,
        run_id      TEXT NOT NULL,
        channel     TEXT NOT NULL,
        thread_ts   TEXT NOT NULL,
        progress_ts TEXT,
        agent       TEXT NOT NULL,
        status      TEXT NOT NULL,
        created_at  TIMESTAMPTZ NOT NULL,
        started_at  TIMESTAMPTZ,
        ended_at    TIMESTAMPTZ,
        pr_url      TEXT,
        summary     TEXT,
        error       TEXT,
        signature   TEXT,
        rerun_of    BIGINT REFERENCES sessions(id),
        reply_ts    TEXT,
        owner       TEXT,
        lease_until TIMESTAMPTZ,
        UNIQUE (failure_id, attempt)
    );
    CREATE INDEX sessions_by_schedule ON sessions(schedule, created_at);
    CREATE INDEX sessions_by_status ON sessions(status);
    CREATE INDEX sessions_by_signature ON sessions(signature);
    CREATE INDEX sessions_by_run ON sessions(schedule, run_id);
    CREATE INDEX sessions_by_schedule_id ON sessions(schedule, id);
    CREATE INDEX sessions_by_thread ON sessions(channel, thread_ts);
    CREATE INDEX sessions_by_rerun ON sessions(rerun_of) WHERE rerun_of IS NOT NULL;
    CREATE TABLE session_events (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        session_id BIGINT NOT NULL REFERENCES sessions(id),
        at         TIMESTAMPTZ NOT NULL,
        kind       TEXT NOT NULL,
        text       TEXT NOT NULL
    );
    CREATE INDEX session_events_by_session ON session_events(session_id, id);
    CREATE TABLE schedule_overrides (
        schedule      TEXT PRIMARY KEY,
        enabled       BIGINT NOT NULL,
        slack_channel TEXT,
        agent_name    TEXT,
        changed_by    TEXT NOT NULL,
        changed_at    TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE pause (
        id        BIGINT PRIMARY KEY CHECK (id = 1),
        paused_by TEXT NOT NULL,
        paused_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE audit_log (
        id      BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at      TIMESTAMPTZ NOT NULL,
        user_id TEXT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        before  TEXT NOT NULL,
        after   TEXT NOT NULL
    );
    CREATE TABLE llm_exchanges (
        id                BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        session_id        BIGINT NOT NULL REFERENCES sessions(id),
        at                TIMESTAMPTZ NOT NULL,
        turn              BIGINT NOT NULL,
        request           TEXT NOT NULL,
        status            BIGINT NOT NULL,
        response          TEXT NOT NULL,
        prompt_tokens     BIGINT,
        completion_tokens BIGINT,
        cost_usd          DOUBLE PRECISION
    );
    CREATE INDEX llm_exchanges_by_session ON llm_exchanges(session_id, id);
    CREATE TABLE pull_requests (
        id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        session_id    BIGINT NOT NULL REFERENCES sessions(id),
        url           TEXT NOT NULL UNIQUE,
        state         TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'merged', 'closed')),
        merged_by     TEXT,
        etag          TEXT,
        created_at    TIMESTAMPTZ NOT NULL,
        checked_at    TIMESTAMPTZ,
        next_check_at TIMESTAMPTZ NOT NULL,
        unchanged     BIGINT NOT NULL DEFAULT 0,
        settled_at    TIMESTAMPTZ
    );
    CREATE INDEX pull_requests_due ON pull_requests(state, next_check_at);
    CREATE TABLE retries (
        id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        schedule      TEXT NOT NULL,
        root_run_id   TEXT NOT NULL,
        attempt       BIGINT NOT NULL,
        failed_run_id TEXT NOT NULL,
        run_id        TEXT,
        by_command    BIGINT NOT NULL,
        session_id    BIGINT NOT NULL REFERENCES sessions(id),
        asked_at      TIMESTAMPTZ NOT NULL,
        UNIQUE (schedule, root_run_id, attempt),
        UNIQUE (schedule, failed_run_id)
    );
    CREATE UNIQUE INDEX retries_by_run ON retries(schedule, run_id) WHERE run_id IS NOT NULL;
    CREATE TABLE write_slots (
        channel TEXT PRIMARY KEY,
        tat     TIMESTAMPTZ NOT NULL,
        opened  TIMESTAMPTZ
    );
    "#,
    // 2: SQLite's migration 10.
    r#"
    ALTER TABLE write_slots ADD COLUMN answered TIMESTAMPTZ;
    "#,
];

/// Applies the migrations not applied yet, under an advisory lock, recording
/// each in `schema_migrations`.
fn migrate(c: &ClientWrapper) -> DbResult<()> {
    block_on(async {
        c.batch_execute(
            "BEGIN;
             SELECT pg_advisory_xact_lock(7383001);
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    BIGINT PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );",
        )
        .await?;
        let result = async {
            let row = c
                .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
                .await?;
            let current: i64 = row.get(0);
            let current = usize::try_from(current).unwrap_or(usize::MAX);
            if current > MIGRATIONS.len() {
                return Err(DbError::Pool(format!(
                    "the database is at schema version {current}, newer than this selfheal knows ({}); upgrade selfheal",
                    MIGRATIONS.len()
                )));
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
                c.batch_execute(sql).await?;
                c.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[&((i + 1) as i64)],
                )
                .await?;
            }
            c.batch_execute("COMMIT").await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = c.batch_execute("ROLLBACK").await;
        }
        result
    })
}

/// How much of the server's certificate is checked, as libpq's `sslmode`
/// says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// `prefer` (the default) and `require` without a CA file: encrypted,
    /// the certificate not checked.
    Nothing,
    /// `verify-ca`, or `require` with a CA file: signed by a trusted CA.
    Chain,
    /// `verify-full`: signed by a trusted CA, for the host connected to.
    ChainAndName,
}

/// What libpq's URL says about TLS, as tokio-postgres can take it: the URL
/// without what it does not know (`sslrootcert`; `verify-ca` and
/// `verify-full`, which become `require`), the CA file, and how much to
/// verify.
fn split_tls(url: &str) -> (String, Option<std::path::PathBuf>, Verify) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None, Verify::Nothing);
    };
    let mut ca = None;
    let mut mode = None;
    // The other parameters are kept as written: re-encoding would turn
    // `options=-c%20search_path%3Dx` into `-c+search_path…`, which libpq's
    // URL syntax does not read as a space.
    let mut kept: Vec<&str> = vec![];
    for pair in query.split('&') {
        let decoded = url::form_urlencoded::parse(pair.as_bytes()).next();
        match decoded.as_ref().map(|(k, v)| (k.as_ref(), v.as_ref())) {
            Some(("sslrootcert", path)) => ca = Some(std::path::PathBuf::from(path)),
            Some(("sslmode", m @ ("verify-ca" | "verify-full"))) => {
                mode = Some(m.to_owned());
                kept.push("sslmode=require");
            }
            _ => kept.push(pair),
        }
    }
    let verify = match mode.as_deref() {
        Some("verify-full") => Verify::ChainAndName,
        Some(_) => Verify::Chain,
        // libpq: with a root CA file, `require` behaves as `verify-ca`.
        None if ca.is_some() => Verify::Chain,
        None => Verify::Nothing,
    };
    let url = match kept.join("&") {
        rest if rest.is_empty() => base.to_owned(),
        rest => format!("{base}?{rest}"),
    };
    (url, ca, verify)
}

/// TLS as libpq's `sslmode` asks for it: `prefer` by default (TLS when the
/// server offers it), `disable`, `require`, `verify-ca` and `verify-full`.
fn tls(ca_file: Option<&std::path::Path>, verify: Verify) -> Result<MakeRustlsConnect> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS for PostgreSQL")?
        .dangerous()
        .with_custom_certificate_verifier(server_verifier(ca_file, verify)?)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// What checks the server's certificate, with the system's roots and
/// `ca_file`'s as the trusted CAs.
fn server_verifier(
    ca_file: Option<&std::path::Path>,
    verify: Verify,
) -> Result<std::sync::Arc<ServerVerifier>> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("reading the CA file {} (sslrootcert)", path.display()))?;
        roots.add_parsable_certificates(certs);
    }
    let chain = match verify {
        Verify::Nothing => None,
        Verify::Chain | Verify::ChainAndName => Some(
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                provider.clone(),
            )
            .build()
            .context("no trusted CA to verify PostgreSQL's certificate with (sslrootcert)")?,
        ),
    };
    Ok(std::sync::Arc::new(ServerVerifier {
        chain,
        name: verify == Verify::ChainAndName,
        algorithms: provider.signature_verification_algorithms,
    }))
}

/// Checks the server's certificate as far as [`Verify`] asks; the handshake's
/// signatures are always checked, so the connection is encrypted to the
/// holder of the certificate's key.
#[derive(Debug)]
struct ServerVerifier {
    /// The trusted CAs' verifier, when the chain is checked.
    chain: Option<std::sync::Arc<rustls::client::WebPkiServerVerifier>>,
    /// Whether the certificate must name the host.
    name: bool,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError::*, Error::InvalidCertificate};
        let Some(chain) = &self.chain else {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(InvalidCertificate(NotValidForName | NotValidForNameContext { .. }))
                if !self.name =>
            {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_read_as_libpq_reads_them() {
        use Verify::*;
        // (URL, what tokio-postgres gets, the CA file, how much is verified)
        let table = [
            ("postgres://u@h/db", "postgres://u@h/db", None, Nothing),
            (
                "postgres://u@h/db?sslmode=require",
                "postgres://u@h/db?sslmode=require",
                None,
                Nothing,
            ),
            // libpq: `require` with a root CA file is `verify-ca`.
            (
                "postgres://u:p@h:5432/db?sslmode=require&sslrootcert=/etc/ca.pem",
                "postgres://u:p@h:5432/db?sslmode=require",
                Some("/etc/ca.pem"),
                Chain,
            ),
            (
                "postgres://u@h/db?sslrootcert=/etc/ca.pem",
                "postgres://u@h/db",
                Some("/etc/ca.pem"),
                Chain,
            ),
            (
                "postgres://u@h/db?sslmode=verify-ca",
                "postgres://u@h/db?sslmode=require",
                None,
                Chain,
            ),
            (
                "postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem",
                "postgres://u@h/db?sslmode=require",
                Some("/etc/ca.pem"),
                ChainAndName,
            ),
            // Other parameters are kept exactly as written.
            (
                "postgres://u@h/db?options=-c%20search_path%3Dx&sslrootcert=%2Fetc%2Fca.pem&a=b+c",
                "postgres://u@h/db?options=-c%20search_path%3Dx&a=b+c",
                Some("/etc/ca.pem"),
                Chain,
            ),
        ];
        for (url, want, ca, verify) in table {
            let (got, got_ca, got_verify) = split_tls(url);
            assert_eq!(got, want, "{url}");
            assert_eq!(got_ca.as_deref(), ca.map(std::path::Path::new), "{url}");
            assert_eq!(got_verify, verify, "{url}");
        }
    }

    #[test]
    fn queries_from_a_tokio_task_that_never_yields_do_not_spin() {
        // A store call inside a task is a loop that does not yield to tokio;
        // hundreds in one poll spend the task's cooperative budget.
        let Some(url) = crate::store::testing::postgres_url() else {
            return;
        };
        let url = crate::store::testing::fresh_schema(&url);
        let store = crate::store::Store::open(std::path::Path::new(&url)).unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                // Each new statement is prepared under the statement cache's
                // tokio semaphore, which takes from the budget.
                for i in 0..500 {
                    store
                        .with_conn("a new statement", |c| {
                            c.query_row(&format!("SELECT {i}"), &[], |_| Ok(()))
                        })
                        .unwrap();
                }
            });
            done.send(()).unwrap();
        });
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("500 queries from one poll of a task finish");
    }

    #[test]
    fn a_server_speaking_tls_is_verified_against_the_ca_the_url_names() {
        use crate::store::testing::{fresh_schema, postgres_url};
        use crate::store::Store;
        let Some(url) = postgres_url() else {
            return;
        };
        let query = |store: &Store, sql: &str| -> String {
            store
                .with_conn("a test query", |c| c.query_row(sql, &[], |r| r.get(0)))
                .unwrap()
        };
        let plain = Store::open(std::path::Path::new(&fresh_schema(&url))).unwrap();
        assert_eq!(
            query(&plain, "SHOW ssl"),
            "on",
            "the test server speaks TLS (scripts/setup-postgres sets it up)"
        );
        let cert = std::path::PathBuf::from(query(&plain, "SHOW ssl_cert_file"));
        let ca = cert.with_file_name("ca.pem");
        let with = |root: &std::path::Path| {
            let url = fresh_schema(&url);
            format!("{url}&sslmode=verify-full&sslrootcert={}", root.display())
        };

        // The server's certificate is checked against the CA: the store is
        // on TLS.
        let secure = Store::open(std::path::Path::new(&with(&ca))).unwrap();
        let on_tls = "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
        assert_eq!(query(&secure, on_tls), "true");
        assert_eq!(query(&plain, on_tls), "true", "TLS is preferred by default");

        // A CA that did not sign it: no connection, and the error says why.
        let Err(e) = Store::open(std::path::Path::new(&with(&cert))) else {
            panic!("a certificate no trusted CA signed is refused");
        };
        let why = format!("{e:#}");
        assert!(why.contains("TLS"), "{why}");

        // The name is checked by `verify-full` only (the server's
        // certificate names 127.0.0.1 and localhost).
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime};
        let server = CertificateDer::from_pem_file(&cert).unwrap();
        for (verify, host, ok) in [
            (Verify::ChainAndName, "localhost", true),
            (Verify::ChainAndName, "db.example.com", false),
            (Verify::Chain, "db.example.com", true),
            (Verify::Nothing, "db.example.com", true),
        ] {
            let verifier = server_verifier(Some(&ca), verify).unwrap();
            let name = ServerName::try_from(host).unwrap();
            let verified = verifier.verify_server_cert(&server, &[], &name, &[], UnixTime::now());
            assert_eq!(verified.is_ok(), ok, "{verify:?} for {host}: {verified:?}");
        }
    }

    #[test]
    fn messages_never_show_the_password() {
        assert_eq!(
            redact_url("postgres://selfheal:s3cret@db:5432/selfheal"),
            "postgres://selfheal:***@db:5432/selfheal"
        );
        let Err(e) = tls(
            Some(std::path::Path::new("/nonexistent/ca.pem")),
            Verify::Chain,
        ) else {
            panic!("a missing CA file is an error");
        };
        assert!(e.to_string().contains("sslrootcert"), "{e}");
    }
}
