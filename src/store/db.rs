//! The engine adapter: the few operations the store needs (run a statement, fetch rows, read a
//! typed column, begin a transaction), each written once per engine. Everything above this
//! file is engine-neutral.
//!
//! Values cross the boundary as [`Value`]s and come back through [`Row`]'s typed getters, so
//! the one difference in representation lives here: a timestamp is a `TIMESTAMPTZ` on
//! PostgreSQL and an `INTEGER` of microseconds since the Unix epoch on SQLite. Both keep
//! microseconds, and [`Value::from`] truncates every timestamp to whole microseconds before it
//! is bound, so a value reads back identically from either engine.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{PgPool, Postgres, Row as _, Sqlite, SqlitePool, Transaction};

/// The migrations, embedded: `(version, description, SQL)`, one entry per file in
/// `migrations/<engine>/` (a unit test checks that the lists and the folders agree).
/// `sqlx::migrate!` would do this, but it needs sqlx's `macros` feature.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "store",
        include_str!("../../migrations/sqlite/0001_store.sql"),
    ),
    (
        2,
        "webhooks",
        include_str!("../../migrations/sqlite/0002_webhooks.sql"),
    ),
    (
        3,
        "scaler",
        include_str!("../../migrations/sqlite/0003_scaler.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "store",
        include_str!("../../migrations/postgres/0001_store.sql"),
    ),
    (
        2,
        "webhooks",
        include_str!("../../migrations/postgres/0002_webhooks.sql"),
    ),
    (
        3,
        "scaler",
        include_str!("../../migrations/postgres/0003_scaler.sql"),
    ),
];

/// A connection pool for one engine. Cloning shares the pool.
#[derive(Debug, Clone)]
pub(super) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    /// A connection for statements that need no transaction.
    pub(super) async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        Ok(match self {
            Pool::Sqlite(p) => Conn::Sqlite(p.acquire().await?),
            Pool::Postgres(p) => Conn::Postgres(p.acquire().await?),
        })
    }

    /// A write transaction, rolled back if dropped before [`Tx::commit`].
    ///
    /// On SQLite it starts with `BEGIN IMMEDIATE`, which takes the write lock up front (waiting
    /// up to the busy timeout): a deferred transaction that reads and then writes cannot be
    /// upgraded while another connection writes, and fails with `SQLITE_BUSY` at once instead
    /// of waiting.
    pub(super) async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Applies the embedded migrations that have not been applied yet.
    pub(super) async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Pool::Sqlite(p) => {
                // Several processes may open a new file at once (`microbadger up` starts its
                // children together); SQLite's migrator takes no lock, so the loser of that
                // race fails on a table that now exists. Running again sees the migration
                // applied and does nothing.
                let migrator = migrator(SQLITE_MIGRATIONS);
                let mut attempt = 0;
                loop {
                    match migrator.run(p).await {
                        Ok(()) => return Ok(()),
                        Err(e) if attempt >= 2 => return Err(e),
                        Err(_) => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                        }
                    }
                }
            }
            // PostgreSQL's migrator serialises concurrent runs with an advisory lock.
            Pool::Postgres(p) => migrator(POSTGRES_MIGRATIONS).run(p).await,
        }
    }
}

fn migrator(list: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        list.iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sqlx::SqlStr::from_static(sql),
                    false,
                )
            })
            .collect(),
    )
}

/// A pooled connection, returned to the pool on drop.
pub(super) enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Conn {
    pub(super) fn exec(&mut self) -> Exec<'_> {
        match self {
            Conn::Sqlite(c) => Exec::Sqlite(c),
            Conn::Postgres(c) => Exec::Postgres(c),
        }
    }
}

/// An open transaction; dropping it without [`Tx::commit`] rolls it back.
pub(super) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    pub(super) fn exec(&mut self) -> Exec<'_> {
        match self {
            Tx::Sqlite(t) => Exec::Sqlite(t),
            Tx::Postgres(t) => Exec::Postgres(t),
        }
    }

    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        }
    }
}

/// Somewhere to run statements: a connection, or the connection inside a transaction.
pub(super) enum Exec<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl Exec<'_> {
    /// Runs a statement; returns the number of rows it changed.
    pub(super) async fn execute(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Exec::Sqlite(c) => bind_sqlite(sqlx::query(sql), args)
                .execute(&mut **c)
                .await?
                .rows_affected(),
            Exec::Postgres(c) => bind_postgres(sqlx::query(sql), args)
                .execute(&mut **c)
                .await?
                .rows_affected(),
        })
    }

    pub(super) async fn fetch_all(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<Vec<Row>, sqlx::Error> {
        Ok(match self {
            Exec::Sqlite(c) => bind_sqlite(sqlx::query(sql), args)
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Exec::Postgres(c) => bind_postgres(sqlx::query(sql), args)
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    pub(super) async fn fetch_optional(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<Option<Row>, sqlx::Error> {
        Ok(match self {
            Exec::Sqlite(c) => bind_sqlite(sqlx::query(sql), args)
                .fetch_optional(&mut **c)
                .await?
                .map(Row::Sqlite),
            Exec::Postgres(c) => bind_postgres(sqlx::query(sql), args)
                .fetch_optional(&mut **c)
                .await?
                .map(Row::Postgres),
        })
    }

    pub(super) async fn fetch_one(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<Row, sqlx::Error> {
        self.fetch_optional(sql, args)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

/// A statement parameter. Nulls are typed, because PostgreSQL checks a parameter's type
/// against its column even when the value is `NULL`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Time(Option<DateTime<Utc>>),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(Some(v))
    }
}

impl From<DateTime<Utc>> for Value<'_> {
    fn from(v: DateTime<Utc>) -> Self {
        Value::Time(Some(v.trunc_subsecs(6)))
    }
}

impl From<Option<DateTime<Utc>>> for Value<'_> {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        Value::Time(v.map(|t| t.trunc_subsecs(6)))
    }
}

fn bind_sqlite<'q>(
    mut q: Query<'q, Sqlite, SqliteArguments>,
    args: &[Value<'_>],
) -> Query<'q, Sqlite, SqliteArguments> {
    for arg in args {
        q = match *arg {
            Value::Int(v) => q.bind(v),
            Value::Text(v) => q.bind(v),
            Value::Time(v) => q.bind(v.map(|t| t.timestamp_micros())),
        };
    }
    q
}

fn bind_postgres<'q>(
    mut q: Query<'q, Postgres, PgArguments>,
    args: &[Value<'_>],
) -> Query<'q, Postgres, PgArguments> {
    for arg in args {
        q = match *arg {
            Value::Int(v) => q.bind(v),
            Value::Text(v) => q.bind(v),
            Value::Time(v) => q.bind(v),
        };
    }
    q
}

/// A result row, read by column name.
pub(super) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    pub(super) fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
        match self {
            Row::Sqlite(r) => r.try_get(col),
            Row::Postgres(r) => r.try_get(col),
        }
    }

    pub(super) fn text(&self, col: &str) -> Result<String, sqlx::Error> {
        match self {
            Row::Sqlite(r) => r.try_get(col),
            Row::Postgres(r) => r.try_get(col),
        }
    }

    pub(super) fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        match self {
            Row::Sqlite(r) => r.try_get(col),
            Row::Postgres(r) => r.try_get(col),
        }
    }

    pub(super) fn time(&self, col: &str) -> Result<DateTime<Utc>, sqlx::Error> {
        self.opt_time(col)?
            .ok_or_else(|| sqlx::Error::ColumnDecode {
                index: col.to_string(),
                source: "unexpected NULL timestamp".into(),
            })
    }

    pub(super) fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        match self {
            Row::Sqlite(r) => match r.try_get::<Option<i64>, _>(col)? {
                None => Ok(None),
                Some(micros) => DateTime::from_timestamp_micros(micros)
                    .map(Some)
                    .ok_or_else(|| sqlx::Error::ColumnDecode {
                        index: col.to_string(),
                        source: format!("timestamp {micros} µs is out of range").into(),
                    }),
            },
            Row::Postgres(r) => r.try_get(col),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in `migrations/<engine>/` is embedded, in order, with the version its name
    /// starts with, so adding a migration file without listing it fails here.
    #[test]
    fn embedded_migrations_match_the_folders() {
        for (engine, list) in [
            ("sqlite", SQLITE_MIGRATIONS),
            ("postgres", POSTGRES_MIGRATIONS),
        ] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(engine);
            let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .map(|p| {
                    let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
                    let (version, description) = stem.split_once('_').unwrap();
                    (
                        version.parse().unwrap(),
                        description.replace('_', " "),
                        std::fs::read_to_string(&p).unwrap(),
                    )
                })
                .collect();
            files.sort();
            let listed: Vec<(i64, String, String)> = list
                .iter()
                .map(|&(v, d, sql)| (v, d.to_string(), sql.to_string()))
                .collect();
            assert_eq!(
                listed, files,
                "migrations/{engine} and its embedded list differ"
            );
        }
    }

    #[test]
    fn timestamps_are_truncated_to_microseconds() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let Value::Time(Some(v)) = Value::from(t) else {
            panic!("not a time")
        };
        assert_eq!(v.timestamp_subsec_nanos(), 123_456_000);
        let before_epoch = DateTime::from_timestamp(-10, 999_999_999).unwrap();
        let Value::Time(Some(v)) = Value::from(before_epoch) else {
            panic!("not a time")
        };
        assert_eq!(v, DateTime::from_timestamp(-10, 999_999_000).unwrap());
    }
}
