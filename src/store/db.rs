//! The one query interface both backends answer: SQLite through rusqlite,
//! PostgreSQL through tokio-postgres (`pg.rs`).
//!
//! Every store method is written once, against [`Db`]. Its SQL is the common
//! ground of the two dialects: `?N` placeholders (rewritten to `$N` for
//! PostgreSQL), `ON CONFLICT DO NOTHING` for a claim, `RETURNING id` for a new
//! row's id, `CAST(?N AS TEXT)` where PostgreSQL could not tell a parameter's
//! type. Values cross as [`Value`]s; rows come back owned, read by position
//! with [`Row::get`], as rusqlite's rows are.

use std::fmt;

use chrono::{DateTime, Utc};
use rusqlite::types::{FromSql, ToSqlOutput, ValueRef};

/// A value bound to a query or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// A point in time: TEXT in SQLite (rusqlite's format), TIMESTAMPTZ in PostgreSQL.
    Time(DateTime<Utc>),
}

/// Why a query failed, from either backend.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", pg_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the query returned no rows")]
    NoRows,
    #[error("column {column} holds {found}, not {wanted}")]
    Type {
        column: usize,
        found: String,
        wanted: &'static str,
    },
    #[error("no PostgreSQL connection: {0}")]
    Pool(String),
}

impl DbError {
    /// Whether running the same transaction again may succeed: PostgreSQL
    /// gave up on it because of a concurrent one (serialization failure,
    /// deadlock), or a concurrent claim won a uniqueness race the
    /// transaction's own reads could not see yet.
    pub fn is_contention(&self) -> bool {
        let DbError::Postgres(e) = self else {
            return false;
        };
        e.code()
            .is_some_and(|c| matches!(c.code(), "40001" | "40P01" | "23505"))
    }
}

/// tokio-postgres says "db error" and hides the server's message in its source.
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {}", db.message()),
        None => format!("PostgreSQL: {e}"),
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// A row, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub(super) Vec<Value>);

impl Row {
    /// The value of column `i`, as `T`.
    pub fn get<T: FromValue>(&self, i: usize) -> DbResult<T> {
        let value = self.0.get(i).unwrap_or(&Value::Null);
        T::from_value(value).ok_or_else(|| DbError::Type {
            column: i,
            found: value.kind().to_string(),
            wanted: std::any::type_name::<T>(),
        })
    }
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Time(_) => "a time",
        }
    }
}

/// A Rust value a column can be read as.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> Option<Self> {
                i64::from_value(v).and_then(|i| <$t>::try_from(i).ok())
            }
        }
    )*};
}
int_from_value!(u16, u32, u64, usize, i32);

impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).map(|i| i != 0)
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Real(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromValue for DateTime<Utc> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Time(t) => Some(*t),
            // SQLite keeps times as text; rusqlite's reader knows its formats.
            Value::Text(s) => DateTime::<Utc>::column_result(ValueRef::Text(s.as_bytes())).ok(),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A Rust value a query can be given.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(*self as i64)
            }
        }
    )*};
}
int_to_value!(i64, i32, u16, u32, u64, usize);

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int((*self).into())
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for DateTime<Utc> {
    fn to_value(&self) -> Value {
        Value::Time(*self)
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

/// The parameters of one query: `params![a, b]`.
macro_rules! params {
    ($($v:expr),* $(,)?) => {
        &[$($crate::store::db::ToValue::to_value(&$v)),*][..]
    };
}
pub(crate) use params;

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Value::Int(i) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(*i)),
            Value::Real(f) => ToSqlOutput::Owned(rusqlite::types::Value::Real(*f)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            // The format every selfheal before this one wrote, so old rows
            // and new ones compare as text.
            Value::Time(t) => return t.to_sql(),
        })
    }
}

impl From<ValueRef<'_>> for Value {
    fn from(v: ValueRef<'_>) -> Value {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Int(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) | ValueRef::Blob(t) => {
                Value::Text(String::from_utf8_lossy(t).into_owned())
            }
        }
    }
}

/// One connection (or transaction) of either backend, for the length of one
/// store call.
pub enum Db<'a> {
    Sqlite(&'a rusqlite::Connection),
    Pg(&'a deadpool_postgres::ClientWrapper),
}

impl fmt::Debug for Db<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Db::Sqlite(_) => "Db::Sqlite",
            Db::Pg(_) => "Db::Pg",
        })
    }
}

impl Db<'_> {
    /// Runs a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> DbResult<usize> {
        match self {
            Db::Sqlite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params))?),
            Db::Pg(c) => super::pg::execute(c, sql, params),
        }
    }

    /// Every row the query returns.
    pub fn rows(&self, sql: &str, params: &[Value]) -> DbResult<Vec<Row>> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let width = stmt.column_count();
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(params), |r| {
                        (0..width)
                            .map(|i| r.get_ref(i).map(Value::from))
                            .collect::<rusqlite::Result<Vec<_>>>()
                            .map(Row)
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            }
            Db::Pg(c) => super::pg::rows(c, sql, params),
        }
    }

    /// The first row the query returns, mapped; [`DbError::NoRows`] without one.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[Value],
        map: impl FnOnce(&Row) -> DbResult<T>,
    ) -> DbResult<T> {
        match self.rows(sql, params)?.first() {
            Some(row) => map(row),
            None => Err(DbError::NoRows),
        }
    }
}

/// Every row `sql` returns, mapped to a typed row by `map`.
pub fn all<T>(
    db: &Db<'_>,
    sql: &str,
    params: &[Value],
    map: impl FnMut(&Row) -> DbResult<T>,
) -> DbResult<Vec<T>> {
    db.rows(sql, params)?.iter().map(map).collect()
}

/// `.optional()` on a single-row query, as rusqlite offers it.
pub trait OptionalExtension<T> {
    fn optional(self) -> DbResult<Option<T>>;
}

impl<T> OptionalExtension<T> for DbResult<T> {
    fn optional(self) -> DbResult<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `?N` placeholders as PostgreSQL's `$N`. A `?` not followed by a digit is
/// left alone (none of selfheal's SQL has one inside a literal).
pub fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_and_nothing_else_changes() {
        for (sql, want) in [
            ("SELECT 1", "SELECT 1"),
            ("WHERE a = ?1 AND b = ?12", "WHERE a = $1 AND b = $12"),
            ("CAST(?1 AS TEXT) IS NULL", "CAST($1 AS TEXT) IS NULL"),
            ("x = '?' AND y = ?", "x = '?' AND y = ?"),
        ] {
            assert_eq!(dollar_placeholders(sql), want, "{sql}");
        }
    }

    #[test]
    fn values_read_back_as_the_types_the_store_asks_for() {
        let t = Utc::now();
        let row = Row(vec![
            Value::Int(7),
            Value::Null,
            Value::Text(
                rusqlite::ToSql::to_sql(&t)
                    .map(|_| t.format("%F %T%.f%:z").to_string())
                    .unwrap(),
            ),
            Value::Time(t),
            Value::Real(0.5),
        ]);
        assert_eq!(row.get::<i64>(0).unwrap(), 7);
        assert!(row.get::<bool>(0).unwrap());
        assert_eq!(row.get::<u32>(0).unwrap(), 7);
        assert_eq!(row.get::<Option<String>>(1).unwrap(), None);
        assert_eq!(row.get::<DateTime<Utc>>(2).unwrap(), t);
        assert_eq!(row.get::<DateTime<Utc>>(3).unwrap(), t);
        assert_eq!(row.get::<f64>(4).unwrap(), 0.5);
        let err = row.get::<String>(0).unwrap_err().to_string();
        assert!(err.contains("column 0 holds an integer"), "{err}");
    }
}
