//! Fresh databases for tests: a new SQLite file, or a new PostgreSQL database on the server at
//! `TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`). Where PostgreSQL
//! is missing, CI (`CI=true`) fails loudly and a developer's run says plainly what it skipped.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, Executor, PgConnection};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A URL of an SQLite file that does not exist yet, in the system's temp folder.
pub fn fresh_sqlite_url() -> String {
    let path = std::env::temp_dir().join(format!("{}.db", unique_name("gpu_commons_test")));
    format!("sqlite://{}", path.display())
}

pub fn postgres_server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates an empty database and returns its URL, or `None` (after saying why) where PostgreSQL
/// is not reachable outside CI.
pub async fn fresh_postgres_url() -> Option<String> {
    let server = postgres_server_url();
    let mut conn = match PgConnection::connect(&server).await {
        Ok(conn) => conn,
        Err(err) => {
            let why = format!(
                "PostgreSQL at {server} is unreachable ({err}); set TEST_POSTGRES_URL to a server"
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true requires PostgreSQL for the store and server tests: {why}");
            }
            eprintln!("SKIPPED PostgreSQL half of this test: {why}");
            return None;
        }
    };
    let name = unique_name("gc_test");
    if let Err(err) = conn
        .execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
    {
        panic!("cannot create test database {name} on {server}: {err}");
    }
    let mut url = url::Url::parse(&server)
        .unwrap_or_else(|e| panic!("TEST_POSTGRES_URL '{server}' is not a URL: {e}"));
    url.set_path(&format!("/{name}"));
    Some(url.to_string())
}
