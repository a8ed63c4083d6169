//! The one store API both backends sit behind. Queries are written once in the SQL that SQLite
//! and PostgreSQL share (`$n` parameters, `ON CONFLICT`, `RETURNING`, BIGINT times and money)
//! and run through sqlx's `Any` driver; each backend keeps its own migrations under
//! `migrations/<backend>/`. Where the dialects differ, code matches on [`Backend`].

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

use crate::Error;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// Selects a BOOLEAN column as 0/1: sqlx's `Any` driver cannot decode SQLite's BOOLEAN, so
/// flags are read through [`flag`].
macro_rules! flag_sql {
    ($column:literal) => {
        concat!(
            "CAST(CASE WHEN ",
            $column,
            " THEN 1 ELSE 0 END AS BIGINT) AS ",
            $column
        )
    };
    ($column:literal as $name:literal) => {
        concat!(
            "CAST(CASE WHEN ",
            $column,
            " THEN 1 ELSE 0 END AS BIGINT) AS ",
            $name
        )
    };
}
pub(crate) use flag_sql;

/// Reads a column selected with [`flag_sql!`], by its name.
pub(crate) fn flag(row: &sqlx::any::AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    use sqlx::Row;
    Ok(row.try_get::<i64, _>(column)? != 0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a connection talks to (what a function given only a connection needs).
    pub(crate) fn of_connection(conn: &sqlx::AnyConnection) -> Backend {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    /// See [`Store::rows_per_statement`].
    pub(crate) fn rows_per_statement(self, columns: usize) -> usize {
        let parameters = match self {
            Backend::Sqlite => 240,
            Backend::Postgres => 12_000,
        };
        (parameters / columns.max(1)).max(1)
    }

    /// Picks the backend from a database URL, with a clear error for anything else.
    pub fn of_url(url: &str) -> Result<Backend, Error> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(Error::Invalid(format!(
                "database URL '{url}' must start with sqlite: (e.g. sqlite://data/gpu-commons.db) or postgres:// (e.g. postgres://user@host:5432/db)"
            ))),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connects (creating an SQLite file and its folder if missing) and applies every pending
    /// migration of the backend.
    pub async fn open(url: &str) -> Result<Store, Error> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(|e| {
            Error::Invalid(format!("database URL '{}' is not valid: {e}", redact(&url)))
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                // One writer at a time is all SQLite allows; a few readers overlap under WAL.
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| Error::Unreachable {
                url: redact(&url),
                source,
            })?;
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), Error> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// Readiness: the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool's connections now: `(open, idle)`, for the operator's metrics.
    pub fn connections(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// A transaction that reads and then writes. SQLite takes its write lock at the start
    /// (`BEGIN IMMEDIATE`): a deferred transaction that upgrades from reading fails at once
    /// with "database is locked" when another connection wrote meanwhile, where this one
    /// waits its turn under the busy timeout. PostgreSQL locks rows as it writes them.
    #[allow(clippy::disallowed_methods)] // the one place write transactions open
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, Error> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// [`Store::begin_write`] on a connection the caller holds (to set it up first).
    #[allow(clippy::disallowed_methods)]
    pub(crate) async fn begin_write_on<'c>(
        &self,
        conn: &'c mut sqlx::pool::PoolConnection<sqlx::Any>,
    ) -> Result<sqlx::Transaction<'c, sqlx::Any>, Error> {
        use sqlx::Connection;
        Ok(match self.backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => conn.begin().await?,
        })
    }

    /// How many rows of `columns` parameters one multi-row statement should carry. sqlx binds
    /// SQLite parameters by name, and SQLite finds each name by walking the statement's list,
    /// so binding costs grow with the square of the parameters per statement: SQLite gets
    /// short statements (many of them are cheap in-process), PostgreSQL long ones (each is a
    /// round trip).
    pub(crate) fn rows_per_statement(&self, columns: usize) -> usize {
        self.backend.rows_per_statement(columns)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The `VALUES` list of a multi-row statement: `($1, $2), ($3, $4)` for 2 rows of 2 columns.
/// [`Store::rows_per_statement`] for the backend `conn` talks to.
pub(crate) fn rows_per_statement(conn: &sqlx::AnyConnection, columns: usize) -> usize {
    Backend::of_connection(conn).rows_per_statement(columns)
}

pub(crate) fn values_list(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=columns)
                .map(|c| format!("${}", r * columns + c))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sqlite://path` (or `sqlite:path`) → an URL that creates the file, after creating its folder.
/// The file of a SQLite URL (`sqlite://data/x.db?mode=rwc` → `data/x.db`), and its query.
fn sqlite_parts(url: &str) -> (&str, &str) {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    rest.split_once('?').unwrap_or((rest, ""))
}

/// On SQLite, takes the file's serving lock for as long as the returned file is kept: SQLite
/// serves one process, so a second `gpu-commons` serving the same file is refused at start-up
/// with what to do instead (issue 16). The kernel releases the lock when the process ends,
/// however it ends. None on PostgreSQL, where any number of replicas serve.
pub fn lock_for_serving(url: &str) -> Result<Option<std::fs::File>, Error> {
    if Backend::of_url(url)? != Backend::Sqlite {
        return Ok(None);
    }
    let (path, _) = sqlite_parts(url);
    let lock_path = format!("{path}.serving");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::Invalid(format!("cannot open the serving lock '{lock_path}': {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Invalid(format!(
            "another gpu-commons process is serving the SQLite database '{path}' (its lock \
             '{lock_path}' is held): SQLite serves one process; stop that one, or run several \
             replicas on PostgreSQL"
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::Invalid(format!("cannot lock '{lock_path}': {e}")))
        }
    }
}

fn prepare_sqlite_url(url: &str) -> Result<String, Error> {
    let (path, query) = sqlite_parts(url);
    if path.is_empty() || path == ":memory:" {
        return Err(Error::Invalid(
            "the SQLite database needs a file path (e.g. sqlite://data/gpu-commons.db): an in-memory database would lose everything on restart".into(),
        ));
    }
    if let Some(parent) = std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::Invalid(format!(
                "cannot create the folder '{}' for the SQLite database: {e}",
                parent.display()
            ))
        })?;
    }
    let mode = if query.contains("mode=") {
        String::new()
    } else {
        create_private(std::path::Path::new(path))?;
        "mode=rwc".into()
    };
    let query = [query, mode.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("&");
    Ok(format!("sqlite://{path}?{query}"))
}

/// Creates the database file readable and writable by its owner only (0600), if it does not
/// exist: it holds session and credential digests and the ledger. SQLite gives the `-wal` and
/// `-shm` files it makes next to it the same permissions.
fn create_private(path: &std::path::Path) -> Result<(), Error> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Invalid(format!(
            "cannot create the SQLite database '{}': {e}",
            path.display()
        ))),
    }
}

/// Hides a password in a URL before it reaches a log or an error message.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Whether `error` is a unique constraint refusing a second row with the same key.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_backend_from_the_url_scheme() {
        assert_eq!(Backend::of_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::of_url("postgresql://h/db").unwrap(),
            Backend::Postgres
        );
        let err = Backend::of_url("mysql://h/db").unwrap_err().to_string();
        assert!(err.contains("must start with sqlite:"), "{err}");
    }

    #[test]
    fn sqlite_urls_create_their_file_and_refuse_memory() {
        let dir = std::env::temp_dir().join(format!("gc-store-url-{}", std::process::id()));
        let url = format!("sqlite://{}/sub/db.sqlite", dir.display());
        assert!(prepare_sqlite_url(&url)
            .unwrap()
            .ends_with("db.sqlite?mode=rwc"));
        assert!(dir.join("sub").is_dir());
        assert!(prepare_sqlite_url("sqlite::memory:").is_err());
        assert!(prepare_sqlite_url("sqlite://x.db?mode=ro")
            .unwrap()
            .ends_with("?mode=ro"));
    }

    /// Sessions, credential digests and the ledger are no other local user's to read.
    #[cfg(unix)]
    #[tokio::test]
    async fn the_sqlite_database_and_its_wal_are_its_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("gc-store-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = dir.join("gc.db");
        let store = Store::open(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        store.ping().await.unwrap();
        for file in ["gc.db", "gc.db-wal", "gc.db-shm"] {
            let mode = std::fs::metadata(dir.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file} has mode {:o}", mode & 0o777);
        }
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn values_lists_number_parameters_row_by_row() {
        assert_eq!(values_list(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values_list(1, 1), "($1)");
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://a.db"), "sqlite://a.db");
    }
}
