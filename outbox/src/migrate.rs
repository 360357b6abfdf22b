//! One schema migration runner for every SQL store: the versions applied
//! are rows of `mailgate_schema`; the migrations not applied yet run in
//! order, each recorded with its version, all in one transaction, so that a
//! failure leaves the schema as it was. A store gives its DDL strings and
//! the few statements its database spells its own way ([`Dialect`]).

use sqlx::{AssertSqlSafe, Database, Executor, Row as _};

/// What a store's database spells its own way.
pub(crate) struct Dialect {
    /// Opens the transaction (SQLite: `BEGIN IMMEDIATE`, so that processes
    /// starting together take turns).
    pub(crate) begin: &'static str,
    /// Run first in the transaction, if any (PostgreSQL: an advisory lock
    /// held until the end, so that workers starting together take turns).
    pub(crate) lock: Option<&'static str>,
    /// 1 when `mailgate_schema` exists, else 0, as a `BIGINT` (asked rather
    /// than `CREATE TABLE IF NOT EXISTS`, which PostgreSQL refuses to a
    /// role without `CREATE` even when the table is there).
    pub(crate) has_schema_table: &'static str,
}

/// Why a migration did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MigrateError {
    /// The database said no.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// A newer mailgate migrated it (nothing was changed).
    #[error(
        "its schema is version {found}, newer than this mailgate knows ({known}); use a newer mailgate"
    )]
    Newer {
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        known: usize,
    },
}

/// Brings the schema on `conn` to the last of `migrations` (entry `i`
/// moves it from version `i` to `i + 1`).
pub(crate) async fn migrate<DB>(
    conn: &mut DB::Connection,
    dialect: &Dialect,
    migrations: &[&'static str],
) -> Result<(), MigrateError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    sqlx::raw_sql(dialect.begin).execute(&mut *conn).await?;
    let result = apply::<DB>(conn, dialect, migrations).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    match (result, sqlx::raw_sql(end).execute(&mut *conn).await) {
        (Ok(()), Err(e)) => Err(e.into()),
        (result, _) => result,
    }
}

async fn apply<DB>(
    conn: &mut DB::Connection,
    dialect: &Dialect,
    migrations: &[&'static str],
) -> Result<(), MigrateError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    if let Some(lock) = dialect.lock {
        sqlx::raw_sql(lock).execute(&mut *conn).await?;
    }
    let exists: i64 = sqlx::raw_sql(dialect.has_schema_table)
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    if exists == 0 {
        sqlx::raw_sql("CREATE TABLE mailgate_schema (version INTEGER NOT NULL)")
            .execute(&mut *conn)
            .await?;
    }
    let version: Option<i64> =
        sqlx::raw_sql("SELECT CAST(MAX(version) AS BIGINT) FROM mailgate_schema")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
    let version = version.unwrap_or(0).max(0);
    let done = usize::try_from(version).unwrap_or(usize::MAX);
    if done > migrations.len() {
        return Err(MigrateError::Newer {
            found: version,
            known: migrations.len(),
        });
    }
    for (i, migration) in migrations.iter().enumerate().skip(done) {
        sqlx::raw_sql(*migration).execute(&mut *conn).await?;
        let record = format!("INSERT INTO mailgate_schema (version) VALUES ({})", i + 1);
        sqlx::raw_sql(AssertSqlSafe(record))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
