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

/// The credential [`seed_agent_fleet`] gives its `n`-th device.
pub fn seeded_credential(n: usize) -> String {
    format!(
        "dev-bench-{n:07}.{}",
        crate::secret::sha256_hex(&format!("seeded agent {n}"))
    )
}

/// Writes `count` agent-run devices straight into the database, verified, measured and idle as
/// if their agents had registered and passed their challenges at `now`, spread over the GPU
/// catalog and a few dozen countries. Their credentials are [`seeded_credential`]`(0..count)`.
/// For load tests and restart benchmarks that need a large fleet in seconds.
pub async fn seed_agent_fleet(
    store: &crate::store::Store,
    count: usize,
    now: domain::time::UnixMillis,
) -> Result<(), crate::Error> {
    const COUNTRIES: &[&str] = &[
        "US", "DE", "CA", "GB", "FR", "NL", "FI", "SE", "SG", "JP", "KR", "IN", "BR", "PL", "NO",
        "AU", "HK", "TW", "AE", "ES", "IT", "CH", "VN", "TH", "MX", "ZA", "NG", "AR", "CL", "IE",
    ];
    const COLUMNS: usize = 24;
    let rows_per_statement = store.rows_per_statement(COLUMNS);
    let catalog = domain::catalog::GpuCatalog::builtin();
    let models = catalog.models();
    let mut tx = store.begin_write().await?;
    for first in (0..count).step_by(rows_per_statement) {
        let rows = rows_per_statement.min(count - first);
        let mut sql = String::from(
            "INSERT INTO devices (id, owner_wallet, name, os, kind, gpu_model, gpu_count, \
             cpu_model, cpu_cores, ram_gb, disk_gb, country, tier, status, verified, simulated, \
             created_at, last_heartbeat_at, agent_version, credential_hash, status_reason, \
             status_changed_at, verified_at, measured_at) VALUES ",
        );
        sql.push_str(&crate::store::values_list(rows, COLUMNS));
        let mut query = sqlx::query(&sql);
        for n in first..first + rows {
            let model = &models[n % models.len()];
            let credential = seeded_credential(n);
            let id = credential
                .split_once('.')
                .map(|(id, _)| id.to_owned())
                .unwrap_or_default();
            query = query
                .bind(id)
                .bind(format!("seeded-owner-{}", n / 8))
                .bind(format!("seeded-{n}"))
                .bind("linux")
                .bind("gpu")
                .bind(model.name.clone())
                .bind([1i64, 2, 4, 8][n % 4])
                .bind("AMD EPYC 9654")
                .bind(96i64)
                .bind(512i64)
                .bind(2000i64)
                .bind(COUNTRIES[n % COUNTRIES.len()])
                .bind(domain::fleet::ConnectivityTier::ALL[n % 4].as_str())
                .bind("idle")
                .bind(true)
                .bind(true)
                .bind(now.0)
                .bind(now.0)
                .bind("seeded")
                .bind(crate::secret::sha256_hex(&credential))
                .bind("seeded for a load test")
                .bind(now.0)
                .bind(now.0)
                .bind(now.0);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// How many heartbeats the database has credited to devices (the sum of merged samples).
pub async fn heartbeats_recorded(store: &crate::store::Store) -> Result<i64, crate::Error> {
    use sqlx::Row;
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(samples), 0) AS BIGINT) AS samples FROM device_uptime",
    )
    .fetch_one(store.pool())
    .await?;
    Ok(row.try_get("samples")?)
}

/// Drops a database made by [`fresh_postgres_url`].
pub async fn drop_postgres_database(url: &str) -> Result<(), crate::Error> {
    let name = url::Url::parse(url)
        .map_err(|e| crate::Error::Invalid(format!("'{url}' is not a URL: {e}")))?
        .path()
        .trim_start_matches('/')
        .to_owned();
    let mut conn = PgConnection::connect(&postgres_server_url()).await?;
    conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await?;
    Ok(())
}

/// One BIGINT from `sql` with `$1` bound to `arg` (when it has a `$1`), for tests that check
/// what was stored.
pub async fn stored_number(
    store: &crate::store::Store,
    sql: &str,
    arg: &str,
) -> Result<i64, crate::Error> {
    let query = sqlx::query_scalar::<_, i64>(sql);
    let query = if sql.contains("$1") {
        query.bind(arg)
    } else {
        query
    };
    Ok(query.fetch_one(store.pool()).await?)
}

/// One TEXT from `sql` with `$1` bound to `arg`.
pub async fn stored_text(
    store: &crate::store::Store,
    sql: &str,
    arg: &str,
) -> Result<String, crate::Error> {
    Ok(sqlx::query_scalar::<_, String>(sql)
        .bind(arg)
        .fetch_one(store.pool())
        .await?)
}

/// Every TEXT of the first column of `sql` with `$1` bound to `arg`.
pub async fn stored_texts(
    store: &crate::store::Store,
    sql: &str,
    arg: &str,
) -> Result<Vec<String>, crate::Error> {
    Ok(sqlx::query_scalar::<_, String>(sql)
        .bind(arg)
        .fetch_all(store.pool())
        .await?)
}

/// Writes `online_ms` of uptime for `device_id` in the UTC hour starting at `hour_ms`, as the
/// heartbeat flush would: for reward tests that need hours of history in an instant.
pub async fn record_uptime(
    store: &crate::store::Store,
    device_id: &str,
    hour_ms: i64,
    online_ms: i64,
) -> Result<(), crate::Error> {
    sqlx::query(
        "INSERT INTO device_uptime (device_id, hour, online_ms, samples, gpu_util_sum, cpu_util_sum) \
         VALUES ($1, $2, $3, 1, 0, 0)",
    )
    .bind(device_id)
    .bind(hour_ms)
    .bind(online_ms)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Credits `units` of `asset` to `wallet`'s claimable balance from the operator's account, as
/// earnings would: for payout tests that need a balance to claim without running clusters.
pub async fn grant_claimable(
    store: &crate::store::Store,
    wallet: &str,
    asset: domain::money::Asset,
    units: i64,
    key: &str,
) -> Result<(), crate::Error> {
    use domain::ledger::{Account, Posting, PostingKind, OPERATOR_CREDITS};
    let posting = Posting::new(
        PostingKind::OperatorCredit,
        format!("grant:{key}"),
        "granted for a test",
    )
    .transfer_units(
        asset,
        OPERATOR_CREDITS,
        Account::ProviderClaimable(wallet.to_owned()),
        units,
    )
    .map_err(|e| crate::Error::Invalid(e.to_string()))?;
    let mut tx = store.begin_write().await?;
    crate::ledger::post(&mut tx, &posting, domain::time::UnixMillis(0)).await?;
    tx.commit().await?;
    Ok(())
}

/// Credits `units` of `asset` to renter `user_id`'s balance as a confirmed deposit would (from
/// the chain's account): money of the renter's own, for tests of what promotional credit may
/// not pay for, without a chain.
pub async fn grant_deposit(
    store: &crate::store::Store,
    user_id: i64,
    asset: domain::money::Asset,
    units: i64,
    key: &str,
) -> Result<(), crate::Error> {
    use domain::ledger::{Account, Posting, PostingKind, SOLANA};
    let posting = Posting::new(
        PostingKind::Deposit,
        format!("deposit:{key}"),
        "deposited for a test",
    )
    .transfer_units(asset, SOLANA, Account::UserAvailable(user_id), units)
    .map_err(|e| crate::Error::Invalid(e.to_string()))?;
    let mut tx = store.begin_write().await?;
    crate::ledger::post(&mut tx, &posting, domain::time::UnixMillis(0)).await?;
    tx.commit().await?;
    Ok(())
}

/// The store's pool, for tests that read what no service exposes (the schema, say).
pub fn pool_of(store: &crate::store::Store) -> &sqlx::AnyPool {
    store.pool()
}

/// Services configured as a plain server's are (no credit, no chain), whose enrolment tickets
/// name `agent_server_url`: for tests and benches that run services beside real servers.
pub fn plain_config(agent_server_url: &str) -> crate::PlatformConfig {
    crate::PlatformConfig {
        auth: crate::auth::AuthConfig {
            domain: "127.0.0.1".into(),
            uri: "http://127.0.0.1".into(),
            chain_id: "solana:devnet".into(),
            nonce_ttl_secs: 300,
            session_idle_secs: 3600,
            session_max_secs: 86_400,
            welcome_credit: domain::money::MicroUsd::ZERO,
        },
        worker: crate::worker::WorkerConfig {
            agent_server_url: agent_server_url.to_owned(),
            registration_ttl_secs: 3600,
            offered_agent: None,
        },
        fleet: crate::agents::FleetConfig::default(),
        provisioning: crate::provisioning::ProvisioningConfig::default(),
        rewards: crate::rewards::RewardsConfig::default(),
        solana_access: None,
    }
}
