//! What the load tools share.

use std::time::Instant;

use platform::store::Store;
use platform::testing;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Which backend a load tool runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Database {
    Sqlite,
    Postgres,
}

/// The URL of a database with `devices` agent-run, verified, idle devices: `reuse` as it is
/// (seeded by an earlier run), or a new SQLite file or PostgreSQL database seeded now.
pub async fn seeded_fleet(
    database: Database,
    reuse: Option<&str>,
    devices: usize,
) -> Result<String> {
    if let Some(url) = reuse {
        return Ok(url.to_owned());
    }
    let url = match database {
        Database::Sqlite => testing::fresh_sqlite_url(),
        Database::Postgres => testing::fresh_postgres_url()
            .await
            .ok_or("PostgreSQL is unreachable (set TEST_POSTGRES_URL)")?,
    };
    let seeding = Instant::now();
    let store = Store::open(&url).await?;
    testing::seed_agent_fleet(&store, devices, platform::now()).await?;
    store.close().await;
    println!(
        "seeded {devices} devices on {database:?} in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    Ok(url)
}

/// The value below which a share `q` of the sorted samples fall.
pub fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_pick_from_the_sorted_samples() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.5), 51);
        assert_eq!(percentile(&samples, 0.99), 99);
        assert_eq!(percentile(&samples, 1.0), 100);
        assert_eq!(percentile(&[], 0.99), 0);
    }
}
