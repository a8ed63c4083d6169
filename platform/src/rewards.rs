//! Block rewards: closes each hourly block once (the block's row is its lock: a second server
//! process closing the same block finds it taken and changes nothing), scores the devices that
//! were online in it from the written uptime buckets (`domain::rewards`), stores every device's
//! line, and posts the emission through the rewards pool to the providers' claimable balances.

use std::collections::BTreeMap;
use std::sync::Arc;

use domain::catalog::GpuCatalog;
use domain::fleet::{ConnectivityTier, DeviceKind, DeviceStatus};
use domain::ledger::{Account, Posting, EMISSION};
use domain::money::{MicroUsd, Tokens};
use domain::rewards::{
    block_of, hardware_multiplier, split_block, BlockSplit, BlockSummary, Candidate,
    DeviceBlockReward, BLOCK_MS, STREAK_HOURS, STREAK_HOUR_MIN_ONLINE_MS,
};
use domain::time::UnixMillis;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::ledger::post;
use crate::store::{flag, flag_sql, values_list, Store};
use crate::Error;

#[derive(Debug, Clone)]
pub struct RewardsConfig {
    /// Network tokens each block emits.
    pub emission_per_block: Tokens,
    /// A block closes this long after its hour ends, once every server has written the
    /// heartbeats it merged in that hour (they write online devices every ten minutes).
    pub close_delay_secs: i64,
}

impl Default for RewardsConfig {
    fn default() -> RewardsConfig {
        RewardsConfig {
            emission_per_block: Tokens::from_units(10_000 * 1_000_000),
            close_delay_secs: 15 * 60,
        }
    }
}

/// Blocks one pass closes at most, so a server back after a long stop catches up over a few
/// passes instead of holding the database for all of them.
const BLOCKS_PER_PASS: i64 = 24;

#[derive(Clone)]
pub struct RewardsService {
    store: Store,
    catalog: GpuCatalog,
    config: Arc<RewardsConfig>,
}

impl RewardsService {
    pub(crate) fn new(store: Store, catalog: GpuCatalog, config: RewardsConfig) -> RewardsService {
        RewardsService {
            store,
            catalog,
            config: Arc::new(config),
        }
    }

    /// Closes the blocks that are due and not closed yet, oldest first. The first block a
    /// network closes is the last one due; blocks missed while no server ran close later, a
    /// few per pass. Returns the numbers of the blocks this call closed.
    pub async fn close_due(&self, now: UnixMillis) -> Result<Vec<i64>, Error> {
        let last_due = block_of(now.0 - self.config.close_delay_secs * 1_000) - 1;
        let last_closed: Option<i64> = sqlx::query_scalar("SELECT MAX(number) FROM reward_blocks")
            .fetch_one(self.store.pool())
            .await?;
        let first = last_closed.map_or(last_due, |n| n + 1);
        let mut closed = Vec::new();
        for number in first..=last_due.min(first + BLOCKS_PER_PASS - 1) {
            if self.close(number, now).await? {
                closed.push(number);
            }
        }
        Ok(closed)
    }

    /// Closes block `number`: false when it was closed before (by this or another process).
    pub async fn close(&self, number: i64, now: UnixMillis) -> Result<bool, Error> {
        let mut tx = self.store.begin_write().await?;
        let emission = self.config.emission_per_block;
        // Taking the block's row first: a concurrent closer waits here, then finds it taken.
        let taken = sqlx::query(
            "INSERT INTO reward_blocks (number, closed_at, emission, gpu_pool, cpu_pool, paid, \
               devices_scored, devices_rewarded) VALUES ($1, $2, $3, 0, 0, 0, 0, 0) \
             ON CONFLICT (number) DO NOTHING",
        )
        .bind(number)
        .bind(now.0)
        .bind(emission.units())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken == 0 {
            return Ok(false);
        }
        let candidates = self.candidates(&mut tx, number).await?;
        let split = split_block(emission, &candidates);
        let rewarded = split
            .records
            .iter()
            .filter(|r| r.reward > Tokens::ZERO)
            .count();
        sqlx::query(
            "UPDATE reward_blocks SET gpu_pool = $1, cpu_pool = $2, paid = $3, devices_scored = $4, \
               devices_rewarded = $5 WHERE number = $6",
        )
        .bind(split.gpu_pool.units())
        .bind(split.cpu_pool.units())
        .bind(split.paid.units())
        .bind(split.records.len() as i64)
        .bind(rewarded as i64)
        .bind(number)
        .execute(&mut *tx)
        .await?;
        self.store_records(&mut tx, number, &split).await?;
        post(&mut tx, &block_posting(number, emission, &split)?, now).await?;
        tx.commit().await?;
        tracing::info!(
            block = number,
            devices = split.records.len(),
            rewarded,
            paid = %split.paid,
            "block closed"
        );
        Ok(true)
    }

    /// Every device online in block `number`, with what scoring needs: its hardware, tier,
    /// verification and status now, and its online time in the hours leading up to it.
    async fn candidates(
        &self,
        conn: &mut AnyConnection,
        number: i64,
    ) -> Result<Vec<Candidate>, Error> {
        let hour = number * BLOCK_MS;
        let first_hour = hour - i64::from(STREAK_HOURS - 1) * BLOCK_MS;
        let mut online: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        let rows = sqlx::query(
            "SELECT device_id, hour, online_ms FROM device_uptime \
             WHERE hour BETWEEN $1 AND $2 AND device_id IN \
               (SELECT device_id FROM device_uptime WHERE hour = $2)",
        )
        .bind(first_hour)
        .bind(hour)
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            online
                .entry(row.try_get(0)?)
                .or_default()
                .push((row.try_get(1)?, row.try_get(2)?));
        }
        let devices = sqlx::query(concat!(
            "SELECT d.id, d.owner_wallet, d.kind, d.gpu_model, d.gpu_count, d.cpu_cores, d.tier, ",
            flag_sql!("d.verified"),
            ", d.status FROM devices d JOIN device_uptime u ON u.device_id = d.id AND u.hour = $1 \
             ORDER BY d.id"
        ))
        .bind(hour)
        .fetch_all(&mut *conn)
        .await?;
        devices
            .iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                let hours = online.get(&id).map(Vec::as_slice).unwrap_or_default();
                self.candidate(row, id.clone(), hours, hour)
            })
            .collect()
    }

    fn candidate(
        &self,
        row: &AnyRow,
        device_id: String,
        hours: &[(i64, i64)],
        block_hour: i64,
    ) -> Result<Candidate, Error> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            Error::Corrupt(format!("device {device_id}: {what}: {e}"))
        };
        let kind = DeviceKind::parse(row.try_get(2)?).map_err(|e| corrupt("kind", &e))?;
        let gpu_price = row
            .try_get::<Option<&str>, _>(3)?
            .and_then(|model| self.catalog.by_name(model))
            .map_or(MicroUsd::ZERO, |m| m.default_price_per_hour);
        let count = |index: usize| -> Result<u32, Error> {
            u32::try_from(row.try_get::<i64, _>(index)?).map_err(|e| corrupt("count", &e))
        };
        let online_in = |h: i64| {
            hours
                .iter()
                .find(|(at, _)| *at == h)
                .map_or(0, |(_, ms)| *ms)
        };
        let streak_hours = (0..STREAK_HOURS)
            .take_while(|back| {
                online_in(block_hour - i64::from(*back) * BLOCK_MS) >= STREAK_HOUR_MIN_ONLINE_MS
            })
            .count() as u32;
        Ok(Candidate {
            owner_wallet: row.try_get(1)?,
            kind,
            multiplier: hardware_multiplier(kind, gpu_price, count(4)?, count(5)?),
            online_ms: online_in(block_hour),
            tier: row
                .try_get::<Option<&str>, _>(6)?
                .map(ConnectivityTier::parse)
                .transpose()
                .map_err(|e| corrupt("tier", &e))?,
            verified: flag(row, 7)?,
            status: DeviceStatus::parse(row.try_get(8)?).map_err(|e| corrupt("status", &e))?,
            streak_hours,
            device_id,
        })
    }

    async fn store_records(
        &self,
        conn: &mut AnyConnection,
        number: i64,
        split: &BlockSplit,
    ) -> Result<(), Error> {
        const COLUMNS: usize = 8;
        for chunk in split.records.chunks(self.store.rows_per_statement(COLUMNS)) {
            let sql = format!(
                "INSERT INTO block_rewards (block_number, device_id, owner_wallet, kind, score, \
                   share_ppm, reward, ineligible) VALUES {}",
                values_list(chunk.len(), COLUMNS)
            );
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query
                    .bind(number)
                    .bind(&r.device_id)
                    .bind(&r.owner_wallet)
                    .bind(r.kind.as_str())
                    .bind(i64::try_from(r.score).unwrap_or(i64::MAX))
                    .bind(i64::from(r.share_ppm))
                    .bind(r.reward.units())
                    .bind(r.ineligible.map(|why| why.to_string()));
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// The newest closed blocks numbered below `before` (all when None), at most `limit`.
    pub async fn blocks(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<BlockSummary>, Error> {
        sqlx::query(
            "SELECT number, closed_at, emission, paid, devices_scored, devices_rewarded \
             FROM reward_blocks WHERE number < $1 ORDER BY number DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(self.store.pool())
        .await?
        .iter()
        .map(|row| {
            Ok(BlockSummary {
                number: row.try_get(0)?,
                closed_at_ms: row.try_get(1)?,
                emission: Tokens::from_units(row.try_get(2)?),
                paid: Tokens::from_units(row.try_get(3)?),
                devices_scored: row.try_get(4)?,
                devices_rewarded: row.try_get(5)?,
            })
        })
        .collect()
    }

    /// A provider's devices' lines in the newest blocks, newest first, at most `limit`.
    pub async fn rewards_of(
        &self,
        owner_wallet: &str,
        limit: u32,
    ) -> Result<Vec<DeviceBlockReward>, Error> {
        sqlx::query(
            "SELECT r.block_number, r.device_id, d.name, r.score, r.share_ppm, r.reward, r.ineligible \
             FROM block_rewards r JOIN devices d ON d.id = r.device_id \
             WHERE r.owner_wallet = $1 ORDER BY r.block_number DESC, r.device_id LIMIT $2",
        )
        .bind(owner_wallet)
        .bind(i64::from(limit))
        .fetch_all(self.store.pool())
        .await?
        .iter()
        .map(|row| {
            Ok(DeviceBlockReward {
                block_number: row.try_get(0)?,
                device_id: row.try_get(1)?,
                device_name: row.try_get(2)?,
                score: row.try_get(3)?,
                share_ppm: row.try_get(4)?,
                reward: Tokens::from_units(row.try_get(5)?),
                ineligible: row.try_get(6)?,
            })
        })
        .collect()
    }
}

/// The block's money: its emission enters the rewards pool and the rewards leave it, one
/// transfer per provider; what no device earned stays in the pool.
fn block_posting(number: i64, emission: Tokens, split: &BlockSplit) -> Result<Posting, Error> {
    let mut per_owner: BTreeMap<&str, i64> = BTreeMap::new();
    for r in &split.records {
        *per_owner.entry(&r.owner_wallet).or_default() += r.reward.units();
    }
    let invalid = |e: domain::ledger::PostingError| Error::Invalid(e.to_string());
    let mut posting = Posting::new(format!("block:{number}"), format!("block {number} rewards"))
        .transfer_tokens(EMISSION, Account::RewardsPool, emission)
        .map_err(invalid)?;
    for (owner, units) in per_owner {
        posting = posting
            .transfer_tokens(
                Account::RewardsPool,
                Account::ProviderClaimable(owner.to_owned()),
                Tokens::from_units(units),
            )
            .map_err(invalid)?;
    }
    Ok(posting)
}
