//! Block rewards: closes each hourly block once (the block's row is its lock: a second server
//! process closing the same block finds it taken and changes nothing), scores the devices that
//! were online in it from the written uptime buckets (`domain::rewards`), stores every device's
//! line, and posts the emission through the rewards pool to the providers' held balances.
//! Held rewards are time-locked (issue 23): [`settle_held`] releases a device's to claimable
//! when it next passes a proof of its hardware, or forfeits them to the pool when it fails.

use std::collections::BTreeMap;
use std::sync::Arc;

use domain::catalog::GpuCatalog;
use domain::fleet::{ConnectivityTier, DeviceKind, DeviceStatus};
use domain::ledger::{Account, Posting, PostingKind, EMISSION};
use domain::money::{MicroUsd, Tokens};
use domain::rewards::{
    block_of, hardware_multiplier, split_block, BlockSplit, BlockSummary, Candidate,
    DeviceBlockReward, RewardHold, BLOCK_MS, STREAK_HOURS, STREAK_HOUR_MIN_ONLINE_MS,
};
use domain::time::UnixMillis;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::ledger::post;
use crate::rows::{enum_in, optional_enum_in};
use crate::store::{flag, flag_sql, values_list, Backend, Store};
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

/// SQLite's page cache while a block is written, in KiB (see [`RewardsService::close`]).
const BLOCK_CACHE_KIB: i64 = 256 * 1024;

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
    ///
    /// The devices are read and scored before the write transaction: at a million devices
    /// that takes seconds, and SQLite has one writer, so holding its lock meanwhile would
    /// stall every heartbeat flush and deploy. The block's hour ended `close_delay_secs` ago,
    /// so what is read no longer changes; a second closer computes the same and then finds the
    /// block taken.
    pub async fn close(&self, number: i64, now: UnixMillis) -> Result<bool, Error> {
        let closed: Option<i64> =
            sqlx::query_scalar("SELECT number FROM reward_blocks WHERE number = $1")
                .bind(number)
                .fetch_optional(self.store.pool())
                .await?;
        if closed.is_some() {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        let mut conn = self.store.pool().acquire().await?;
        let candidates = self.candidates(&mut conn, number).await?;
        let split = split_block(self.config.emission_per_block, &candidates);
        drop(candidates);
        let read = started.elapsed();
        // A block writes a row per device into several indexes: with SQLite's small default
        // page cache, pages are written out and read back many times over (measured: 15 s →
        // 7 s for a million rows with 256 MiB). The connection gets its cache back after.
        let sqlite = self.store.backend() == Backend::Sqlite;
        let usual_cache: i64 = if sqlite {
            let usual = sqlx::query_scalar("PRAGMA cache_size")
                .fetch_one(&mut *conn)
                .await?;
            sqlx::query(&format!("PRAGMA cache_size = -{BLOCK_CACHE_KIB}"))
                .execute(&mut *conn)
                .await?;
            usual
        } else {
            0
        };
        let written = self.write_block(&mut conn, number, &split, now).await;
        if sqlite {
            sqlx::query(&format!("PRAGMA cache_size = {usual_cache}"))
                .execute(&mut *conn)
                .await?;
        }
        if written? {
            crate::metrics::block_closed(started.elapsed());
            tracing::info!(
                block = number,
                devices = split.records.len(),
                rewarded = split.rewarded(),
                paid = %split.paid,
                read_ms = read.as_millis() as u64,
                write_ms = (started.elapsed() - read).as_millis() as u64,
                "block closed"
            );
            return Ok(true);
        }
        Ok(false)
    }

    /// Records block `number` as `split` in one transaction on `conn`: false when another
    /// closer took it first (its row is the lock: a concurrent closer waits here, then finds
    /// it taken).
    async fn write_block(
        &self,
        conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
        number: i64,
        split: &BlockSplit,
        now: UnixMillis,
    ) -> Result<bool, Error> {
        let emission = self.config.emission_per_block;
        let mut tx = self.store.begin_write_on(conn).await?;
        let taken = sqlx::query(
            "INSERT INTO reward_blocks (number, closed_at, emission, gpu_pool, cpu_pool, paid, \
               devices_scored, devices_rewarded) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (number) DO NOTHING",
        )
        .bind(number)
        .bind(now.0)
        .bind(emission.units())
        .bind(split.gpu_pool.units())
        .bind(split.cpu_pool.units())
        .bind(split.paid.units())
        .bind(split.records.len() as i64)
        .bind(split.rewarded() as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken == 0 {
            return Ok(false);
        }
        self.store_records(&mut tx, number, split).await?;
        post(&mut tx, &block_posting(number, emission, split)?, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every device online in block `number`, with what scoring needs: its hardware, tier,
    /// verification and status now, and its online time in the hours leading up to it.
    ///
    /// One pass over the devices, each reading its own few uptime rows by the table's
    /// `(device_id, hour)` key (SQLite takes the left side of a CROSS JOIN as the outer loop):
    /// reading the hours first would scan the whole uptime table, which has no index by hour
    /// (one would slow every heartbeat flush). The hours are summed per device in SQL, so one
    /// row per device comes back.
    async fn candidates(
        &self,
        conn: &mut AnyConnection,
        number: i64,
    ) -> Result<Vec<Candidate>, Error> {
        let hour = number * BLOCK_MS;
        // Online time in the block and each hour before it, newest first: $2, $3, …
        let per_hour: Vec<String> = (0..STREAK_HOURS)
            .map(|back| {
                format!(
                    "CAST(SUM(CASE WHEN u.hour = ${} THEN u.online_ms ELSE 0 END) AS BIGINT) \
                     AS online_{back}",
                    back + 2
                )
            })
            .collect();
        let sql = format!(
            concat!(
                "SELECT d.id, d.owner_wallet, d.kind, d.gpu_model, d.gpu_count, d.cpu_cores, d.tier, ",
                flag_sql!("d.verified" as "verified"),
                ", d.status, {} FROM devices d CROSS JOIN device_uptime u \
                 WHERE u.device_id = d.id AND u.hour BETWEEN $1 AND $2 \
                 GROUP BY d.id HAVING SUM(CASE WHEN u.hour = $2 THEN 1 ELSE 0 END) > 0 \
                 ORDER BY d.id"
            ),
            per_hour.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(hour - i64::from(STREAK_HOURS - 1) * BLOCK_MS);
        for back in 0..STREAK_HOURS {
            query = query.bind(hour - i64::from(back) * BLOCK_MS);
        }
        let rows = query.fetch_all(&mut *conn).await?;
        // Few devices break the idle caps, fewer still fail a proof: one indexed read each.
        let violated = devices_in_hour(
            conn,
            "SELECT DISTINCT device_id FROM device_events \
             WHERE kind = 'violation' AND at >= $1 AND at < $2",
            hour,
        )
        .await?;
        let failed_proof = devices_in_hour(
            conn,
            "SELECT DISTINCT device_id FROM device_challenges \
             WHERE outcome IN ('failed', 'expired') AND deadline_at >= $1 AND deadline_at < $2",
            hour,
        )
        .await?;
        rows.iter()
            .map(|row| self.candidate(row, &violated, &failed_proof))
            .collect()
    }

    /// A device's row from [`Self::candidates`]: its columns, then its online time in the block
    /// and in each of the hours before it.
    fn candidate(
        &self,
        row: &AnyRow,
        violated: &rustc_hash::FxHashSet<String>,
        failed_proof: &rustc_hash::FxHashSet<String>,
    ) -> Result<Candidate, Error> {
        let device_id: String = row.try_get("id")?;
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            Error::Corrupt(format!("device {device_id}: {what}: {e}"))
        };
        let kind = enum_in(row, "kind", DeviceKind::parse)?;
        let gpu_price = row
            .try_get::<Option<&str>, _>("gpu_model")?
            .and_then(|model| self.catalog.by_name(model))
            .map_or(MicroUsd::ZERO, |m| m.default_price_per_hour);
        let count = |column: &str| -> Result<u32, Error> {
            u32::try_from(row.try_get::<i64, _>(column)?).map_err(|e| corrupt(column, &e))
        };
        let online_back = |back: u32| -> Result<i64, Error> {
            Ok(row.try_get(format!("online_{back}").as_str())?)
        };
        let mut streak_hours = 0;
        for back in 0..STREAK_HOURS {
            if online_back(back)? < STREAK_HOUR_MIN_ONLINE_MS {
                break;
            }
            streak_hours += 1;
        }
        Ok(Candidate {
            owner_wallet: row.try_get("owner_wallet")?,
            kind,
            multiplier: hardware_multiplier(
                kind,
                gpu_price,
                count("gpu_count")?,
                count("cpu_cores")?,
            ),
            online_ms: online_back(0)?,
            tier: optional_enum_in(row, "tier", ConnectivityTier::parse)?,
            verified: flag(row, "verified")?,
            status: enum_in(row, "status", DeviceStatus::parse)?,
            streak_hours,
            violated_idle_cap: violated.contains(&device_id),
            failed_proof: failed_proof.contains(&device_id),
            device_id,
        })
    }

    async fn store_records(
        &self,
        conn: &mut AnyConnection,
        number: i64,
        split: &BlockSplit,
    ) -> Result<(), Error> {
        const COLUMNS: usize = 9;
        for chunk in split.records.chunks(self.store.rows_per_statement(COLUMNS)) {
            let sql = format!(
                "INSERT INTO block_rewards (block_number, device_id, owner_wallet, kind, score, \
                   share_ppm, reward, ineligible, hold) VALUES {}",
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
                    .bind(r.ineligible.map(|why| why.to_string()))
                    // Nothing to hold where nothing was earned.
                    .bind(if r.reward > Tokens::ZERO {
                        RewardHold::Held.as_str()
                    } else {
                        RewardHold::Released.as_str()
                    });
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
                number: row.try_get("number")?,
                closed_at_ms: row.try_get("closed_at")?,
                emission: Tokens::from_units(row.try_get("emission")?),
                paid: Tokens::from_units(row.try_get("paid")?),
                devices_scored: row.try_get("devices_scored")?,
                devices_rewarded: row.try_get("devices_rewarded")?,
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
            "SELECT r.block_number, r.device_id, d.name, r.score, r.share_ppm, r.reward, \
               r.ineligible, r.hold \
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
                block_number: row.try_get("block_number")?,
                device_id: row.try_get("device_id")?,
                device_name: row.try_get("name")?,
                score: row.try_get("score")?,
                share_ppm: row.try_get("share_ppm")?,
                reward: Tokens::from_units(row.try_get("reward")?),
                ineligible: row.try_get("ineligible")?,
                hold: enum_in(row, "hold", RewardHold::parse)?,
            })
        })
        .collect()
    }
}

/// Settles every reward of `device_id` held until its next proof, in the caller's transaction:
/// released to its provider's claimable balance when `passed`, else forfeited to the rewards
/// pool. `challenge_id` (the proof's, or what else settles them, e.g. the device's removal)
/// keys the posting, so settling one proof twice moves nothing twice. Returns what moved.
pub(crate) async fn settle_held(
    conn: &mut AnyConnection,
    device_id: &str,
    challenge_id: &str,
    passed: bool,
    now: UnixMillis,
) -> Result<Tokens, Error> {
    let (to, kind, prefix, verb) = if passed {
        (
            RewardHold::Released,
            PostingKind::RewardsReleased,
            "release",
            "released",
        )
    } else {
        (
            RewardHold::Forfeited,
            PostingKind::RewardsForfeited,
            "forfeit",
            "forfeited",
        )
    };
    // Each row moves once: a concurrent settle re-reads it after this one and finds it taken.
    let rows = sqlx::query(
        "UPDATE block_rewards SET hold = $1 WHERE device_id = $2 AND hold = 'held' \
         RETURNING owner_wallet, reward",
    )
    .bind(to.as_str())
    .bind(device_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut per_owner: BTreeMap<String, i64> = BTreeMap::new();
    for row in &rows {
        let reward: i64 = row.try_get("reward")?;
        *per_owner.entry(row.try_get("owner_wallet")?).or_default() += reward;
    }
    let invalid = |e: domain::ledger::PostingError| Error::Invalid(e.to_string());
    let mut posting = Posting::new(
        kind,
        format!("{prefix}:{challenge_id}"),
        format!(
            "device {device_id}: {} block rewards {verb} ({challenge_id})",
            rows.len()
        ),
    );
    let mut moved = 0i64;
    for (owner, units) in per_owner {
        let destination = if passed {
            Account::ProviderClaimable(owner.clone())
        } else {
            Account::RewardsPool
        };
        posting = posting
            .transfer_tokens(
                Account::ProviderHeld(owner),
                destination,
                Tokens::from_units(units),
            )
            .map_err(invalid)?;
        moved = moved
            .checked_add(units)
            .ok_or_else(|| Error::Corrupt(format!("device {device_id}: held rewards overflow")))?;
    }
    if !posting.is_empty() {
        post(conn, &posting, now).await?;
        tracing::info!(
            device = device_id,
            challenge = challenge_id,
            blocks = rows.len(),
            moved,
            "held rewards {verb}"
        );
    }
    Ok(Tokens::from_units(moved))
}

/// The block's money: its emission enters the rewards pool and the rewards leave it, one
/// transfer per provider, held until each device's next proof; what no device earned stays in
/// the pool.
fn block_posting(number: i64, emission: Tokens, split: &BlockSplit) -> Result<Posting, Error> {
    let mut per_owner: BTreeMap<&str, i64> = BTreeMap::new();
    for r in &split.records {
        *per_owner.entry(&r.owner_wallet).or_default() += r.reward.units();
    }
    let invalid = |e: domain::ledger::PostingError| Error::Invalid(e.to_string());
    let mut posting = Posting::new(
        PostingKind::BlockRewards,
        format!("block:{number}"),
        format!("block {number} rewards"),
    )
    .transfer_tokens(EMISSION, Account::RewardsPool, emission)
    .map_err(invalid)?;
    for (owner, units) in per_owner {
        posting = posting
            .transfer_tokens(
                Account::RewardsPool,
                Account::ProviderHeld(owner.to_owned()),
                Tokens::from_units(units),
            )
            .map_err(invalid)?;
    }
    Ok(posting)
}

/// The devices a query of one block's hour names (`$1` its start, `$2` its end).
async fn devices_in_hour(
    conn: &mut AnyConnection,
    sql: &str,
    hour: i64,
) -> Result<rustc_hash::FxHashSet<String>, Error> {
    let ids: Vec<String> = sqlx::query_scalar(sql)
        .bind(hour)
        .bind(hour + BLOCK_MS)
        .fetch_all(conn)
        .await?;
    Ok(ids.into_iter().collect())
}
