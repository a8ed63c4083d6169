//! Hire earnings of a provider's devices, per cluster and per device: read by the renter-side
//! cluster records and by the Worker tab alike.

use domain::cluster::HireEarning;
use domain::money::MicroUsd;
use sqlx::Row;

use crate::rows::money_in;
use crate::store::Store;
use crate::Error;

/// What `owner_wallet`'s devices (or just `device_id`) earned per cluster, newest first.
pub(crate) async fn hires(
    store: &Store,
    owner_wallet: &str,
    device_id: Option<&str>,
    limit: u32,
) -> Result<Vec<HireEarning>, Error> {
    sqlx::query(
        "SELECT cd.cluster_id, cd.device_id, d.name, cd.joined_at, cd.left_at, cd.earned, \
           cd.forfeited \
         FROM cluster_devices cd JOIN devices d ON d.id = cd.device_id \
         WHERE d.owner_wallet = $1 AND ($2 = '' OR cd.device_id = $2) \
         ORDER BY cd.joined_at DESC, cd.device_id LIMIT $3",
    )
    .bind(owner_wallet)
    .bind(device_id.unwrap_or_default())
    .bind(i64::from(limit))
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|row| {
        Ok(HireEarning {
            cluster_id: row.try_get("cluster_id")?,
            device_id: row.try_get("device_id")?,
            device_name: row.try_get("name")?,
            joined_at: row.try_get("joined_at")?,
            left_at: row.try_get("left_at")?,
            earned: money_in(row, "earned")?,
            forfeited: money_in(row, "forfeited")?,
        })
    })
    .collect()
}

/// What each of `owner_wallet`'s devices earned in all its clusters.
pub(crate) async fn earned_per_device(
    store: &Store,
    owner_wallet: &str,
) -> Result<std::collections::HashMap<String, MicroUsd>, Error> {
    sqlx::query(
        "SELECT cd.device_id, CAST(SUM(cd.earned) AS BIGINT) AS earned FROM cluster_devices cd \
         JOIN devices d ON d.id = cd.device_id WHERE d.owner_wallet = $1 GROUP BY cd.device_id",
    )
    .bind(owner_wallet)
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|row| Ok((row.try_get("device_id")?, money_in(row, "earned")?)))
    .collect()
}

/// What `owner_wallet`'s devices earned and forfeited in all their hires (before the fee).
pub(crate) async fn totals(
    store: &Store,
    owner_wallet: &str,
) -> Result<(MicroUsd, MicroUsd), Error> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(cd.earned), 0) AS BIGINT) AS earned, \
           CAST(COALESCE(SUM(cd.forfeited), 0) AS BIGINT) AS forfeited \
         FROM cluster_devices cd JOIN devices d ON d.id = cd.device_id \
         WHERE d.owner_wallet = $1",
    )
    .bind(owner_wallet)
    .fetch_one(store.pool())
    .await?;
    Ok((money_in(&row, "earned")?, money_in(&row, "forfeited")?))
}
