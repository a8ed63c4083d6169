//! The explorer's read models: the public device list (from the fleet index, never a scan),
//! device, cluster, block and provider pages, and search. Everything here is public, so each
//! query selects only public columns (see `domain::explorer`).

use std::sync::{Arc, Mutex};

use domain::catalog::GpuCatalog;
use domain::cluster::{ClusterKind, ClusterStatus, Purpose};
use domain::country::Country;
use domain::explorer::{
    daily_unit_hours, text_suggestions, BlockDetail, DeviceBlockLine, DeviceListQuery, FleetDevice,
    FleetFilter, NetworkActivity, NetworkEarnings, Page, PageAt, PublicCluster,
    PublicClusterDetail, PublicClusterDevice, PublicDevice, PublicWallet, SearchOutcome,
    SearchShape, ServedSpan, Suggestion, PAGE_ROWS,
};
use domain::fleet::DeviceKind;
use domain::money::{MicroUsd, Tokens};
use domain::time::UnixMillis;
use domain::time::HOUR_MS;
use domain::wallet::WalletAddress;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::compliance::ComplianceService;
use crate::index::FleetIndex;
use crate::rewards::RewardsService;
use crate::rows::{enum_in, money_in};
use crate::store::Store;
use crate::worker::WorkerService;
use crate::Error;

/// Reward lines a device page shows (two days of hourly blocks).
const DEVICE_BLOCK_LINES: u32 = 48;
/// How long the front page's database figures are reused: they sum whole tables.
const ACTIVITY_TTL_MS: i64 = 60_000;
/// Clusters and devices the front page lists, and the days its compute chart covers.
const RECENT_CLUSTERS: usize = 8;
const TRENDING_DEVICES: u32 = 10;
const ACTIVITY_DAYS: i64 = 30;

macro_rules! block_line_select {
    () => {
        "SELECT block_number, device_id, owner_wallet, kind, score, share_ppm, reward, ineligible \
         FROM block_rewards "
    };
}

#[derive(Clone)]
pub struct ExplorerService {
    store: Store,
    index: Arc<FleetIndex>,
    worker: WorkerService,
    rewards: RewardsService,
    compliance: ComplianceService,
    catalog: GpuCatalog,
    /// Every country (code, name, where it is), for filters, suggestions and the map.
    countries: Arc<Vec<Country>>,
    /// The front page's database figures as last read.
    activity: Arc<Mutex<Option<Arc<NetworkActivity>>>>,
    /// The front page as the UI last drew it (its charts take milliseconds), with what it was
    /// drawn from: the fleet index version and the activity's time.
    front: Arc<Mutex<Option<FrontMemo>>>,
}

type FrontMemo = ((u64, i64), Arc<dyn std::any::Any + Send + Sync>);

impl ExplorerService {
    pub(crate) fn new(
        store: Store,
        index: Arc<FleetIndex>,
        worker: WorkerService,
        rewards: RewardsService,
        compliance: ComplianceService,
        catalog: GpuCatalog,
    ) -> ExplorerService {
        let countries = domain::country::all();
        ExplorerService {
            store,
            index,
            worker,
            rewards,
            compliance,
            catalog,
            countries: Arc::new(countries),
            activity: Arc::new(Mutex::new(None)),
            front: Arc::new(Mutex::new(None)),
        }
    }

    pub fn catalog(&self) -> &GpuCatalog {
        &self.catalog
    }

    /// Where a country is on the map, as (longitude, latitude).
    pub fn place(&self, code: &str) -> Option<(f64, f64)> {
        self.countries
            .iter()
            .find(|c| c.code == code)
            .map(|c| (c.lon, c.lat))
    }

    /// A device-list filter from raw query values, with a specific error per field.
    pub fn filter(
        &self,
        hardware: &str,
        country: &str,
        tier: &str,
        status: &str,
    ) -> Result<FleetFilter, Error> {
        FleetFilter::parse(hardware, country, tier, status, &self.catalog, |code| {
            self.countries.iter().any(|c| c.code == code)
        })
        .map_err(Error::Invalid)
    }

    /// One page of the public device list, for a query as given.
    pub fn device_list(&self, q: &DeviceListQuery) -> Result<Page<FleetDevice>, Error> {
        let filter = self.filter(&q.hardware, &q.country, &q.tier, &q.status)?;
        let at = PageAt::parse(&q.after, &q.before, q.last).map_err(Error::Invalid)?;
        Ok(self.devices(&filter, &at))
    }

    /// Makes the device list's ordered index now, so the first visitor does not wait for it.
    pub fn prepare(&self) {
        self.index.prepare_lists();
    }

    /// One page of the public device list.
    pub fn devices(&self, filter: &FleetFilter, at: &PageAt) -> Page<FleetDevice> {
        self.index.page(filter, at, PAGE_ROWS)
    }

    /// Recent clusters, the most rewarded devices of the newest block, compute hours per day
    /// and what the network paid: read from the database at most once a minute.
    pub async fn activity(&self, now: UnixMillis) -> Result<Arc<NetworkActivity>, Error> {
        let cached = self
            .activity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(activity) =
            cached.filter(|a| (0..ACTIVITY_TTL_MS).contains(&(now.0 - a.as_of.0)))
        {
            return Ok(activity);
        }
        let pool = self.store.pool();
        let mut recent_clusters = self.clusters("", "", now).await?.rows;
        recent_clusters.truncate(RECENT_CLUSTERS);
        let trending = match self.rewards.blocks(None, 1).await?.first() {
            Some(newest) => {
                self.block_lines(BlockLines::TopOfBlock(newest.number))
                    .await?
            }
            None => Vec::new(),
        };
        let since = now.0 - ACTIVITY_DAYS * domain::time::DAY_MS;
        let spans: Vec<ServedSpan> = sqlx::query_as::<_, (i64, i64, Option<i64>)>(
            "SELECT units, joined_at, left_at FROM cluster_devices \
             WHERE left_at IS NULL OR left_at >= $1",
        )
        .bind(since)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|(units, joined_at, left_at)| ServedSpan {
            units,
            joined_at,
            left_at,
        })
        .collect();
        let (hire_earned, rewards_paid, blocks): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT CAST(COALESCE(SUM(earned), 0) AS BIGINT) FROM cluster_devices), \
                    (SELECT CAST(COALESCE(SUM(paid), 0) AS BIGINT) FROM reward_blocks), \
                    (SELECT COUNT(*) FROM reward_blocks)",
        )
        .fetch_one(pool)
        .await?;
        let activity = Arc::new(NetworkActivity {
            recent_clusters,
            trending,
            daily_compute_hours: daily_unit_hours(&spans, now.0, ACTIVITY_DAYS),
            earnings: NetworkEarnings {
                hire_earned: MicroUsd::from_micros(hire_earned),
                rewards_paid: Tokens::from_units(rewards_paid),
                blocks,
            },
            as_of: now,
        });
        *self.activity.lock().unwrap_or_else(|p| p.into_inner()) = Some(activity.clone());
        Ok(activity)
    }

    /// The front page drawn from the fleet at index version `key.0` and the activity read at
    /// `key.1`: `draw` runs only when either moved since the last drawing.
    pub fn front_page<T, E>(
        &self,
        key: (u64, i64),
        draw: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
    {
        if let Some((at, drawn)) = &*self.front.lock().unwrap_or_else(|p| p.into_inner()) {
            if *at == key {
                if let Ok(page) = drawn.clone().downcast::<T>() {
                    return Ok(page);
                }
            }
        }
        let page = Arc::new(draw()?);
        *self.front.lock().unwrap_or_else(|p| p.into_inner()) = Some((key, page.clone()));
        Ok(page)
    }

    /// A device's public page.
    pub async fn device(&self, id: &str, now: UnixMillis) -> Result<PublicDevice, Error> {
        domain::id::IdKind::Device
            .check(id)
            .map_err(Error::NotFound)?;
        let owner: Option<String> =
            sqlx::query_scalar("SELECT owner_wallet FROM devices WHERE id = $1")
                .bind(id)
                .fetch_optional(self.store.pool())
                .await?;
        let owner = owner.ok_or_else(|| Error::NotFound(format!("no device '{id}'")))?;
        let detail = self.worker.detail_of(&owner, id, now).await?;
        let rewards = self.block_lines(BlockLines::OfDevice(id)).await?;
        let facility = self.compliance.facility_of_device(id).await?;
        Ok(PublicDevice::of(detail, owner, facility, rewards, now))
    }

    /// The newest clusters (of one `status`, if not empty), older than the cluster `after`
    /// (from the start if empty).
    pub async fn clusters(
        &self,
        status: &str,
        after: &str,
        now: UnixMillis,
    ) -> Result<Page<PublicCluster>, Error> {
        let status_text = given(status)
            .map(|s| ClusterStatus::parse(s).map_err(|e| Error::Invalid(e.to_string())))
            .transpose()?
            .map(|s| s.as_str());
        let after = given(after);
        let matching: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM clusters WHERE ($1 IS NULL OR status = $1)")
                .bind(status_text)
                .fetch_one(self.store.pool())
                .await?;
        let rows = sqlx::query(&format!(
            "SELECT {PUBLIC_CLUSTER_COLUMNS} FROM clusters c \
             WHERE ($2 IS NULL OR c.status = $2) \
               AND ($3 IS NULL OR (c.created_at, c.id) < \
                    (SELECT created_at, id FROM clusters WHERE id = $3)) \
             ORDER BY c.created_at DESC, c.id DESC LIMIT $4"
        ))
        .bind(now.0)
        .bind(status_text)
        .bind(after)
        .bind(PAGE_ROWS as i64 + 1)
        .fetch_all(self.store.pool())
        .await?;
        let mut clusters = rows
            .iter()
            .map(public_cluster)
            .collect::<Result<Vec<_>, _>>()?;
        let more = clusters.len() > PAGE_ROWS;
        clusters.truncate(PAGE_ROWS);
        Ok(Page {
            next: more
                .then(|| clusters.last().map(|c| c.id.clone()))
                .flatten(),
            previous: None,
            rows: clusters,
            matching,
        })
    }

    /// A cluster's public page: what was hired and which devices served it.
    pub async fn cluster(&self, id: &str, now: UnixMillis) -> Result<PublicClusterDetail, Error> {
        domain::id::IdKind::Cluster
            .check(id)
            .map_err(Error::NotFound)?;
        let pool = self.store.pool();
        let row = sqlx::query(&format!(
            "SELECT {PUBLIC_CLUSTER_COLUMNS} FROM clusters c WHERE c.id = $2"
        ))
        .bind(now.0)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no cluster '{id}'")))?;
        let devices = sqlx::query(
            "SELECT cd.device_id, cd.role, cd.units, d.country, cd.joined_at, cd.left_at \
             FROM cluster_devices cd JOIN devices d ON d.id = cd.device_id \
             WHERE cd.cluster_id = $1 ORDER BY cd.joined_at, cd.device_id",
        )
        .bind(id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(PublicClusterDevice {
                device_id: r.try_get("device_id")?,
                role: enum_in(r, "role", domain::cluster::ClusterRole::parse)?,
                units: r.try_get("units")?,
                country: r.try_get("country")?,
                joined_at: UnixMillis(r.try_get("joined_at")?),
                left_at: r.try_get::<Option<i64>, _>("left_at")?.map(UnixMillis),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
        Ok(PublicClusterDetail {
            cluster: public_cluster(&row)?,
            devices,
        })
    }

    /// The newest reward blocks, older than block `after` (from the newest if empty).
    pub async fn blocks(&self, after: &str) -> Result<Page<domain::rewards::BlockSummary>, Error> {
        let after = Some(after.trim_matches(|c: char| c.is_ascii_whitespace()))
            .filter(|a| !a.is_empty())
            .map(block_number)
            .transpose()?;
        let matching: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reward_blocks")
            .fetch_one(self.store.pool())
            .await?;
        let mut blocks = self.rewards.blocks(after, PAGE_ROWS as u32 + 1).await?;
        let more = blocks.len() > PAGE_ROWS;
        blocks.truncate(PAGE_ROWS);
        Ok(Page {
            next: more
                .then(|| blocks.last().map(|b| b.number.to_string()))
                .flatten(),
            previous: None,
            rows: blocks,
            matching,
        })
    }

    /// A block with one page of its per-device lines, after device `after` (from the first if
    /// empty).
    pub async fn block(&self, number: &str, after: &str) -> Result<BlockDetail, Error> {
        let number = block_number(number)?;
        let pools: Option<(i64, i64)> =
            sqlx::query_as("SELECT gpu_pool, cpu_pool FROM reward_blocks WHERE number = $1")
                .bind(number)
                .fetch_optional(self.store.pool())
                .await?;
        let (gpu_pool, cpu_pool) =
            pools.ok_or_else(|| Error::NotFound(format!("no closed block {number}")))?;
        let block = self
            .rewards
            .blocks(Some(number + 1), 1)
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(format!("no closed block {number}")))?;
        let mut lines = self
            .block_lines(BlockLines::OfBlock {
                number,
                after,
                limit: PAGE_ROWS as u32 + 1,
            })
            .await?;
        let more = lines.len() > PAGE_ROWS;
        lines.truncate(PAGE_ROWS);
        Ok(BlockDetail {
            lines: Page {
                next: more
                    .then(|| lines.last().map(|l| l.device_id.clone()))
                    .flatten(),
                previous: None,
                matching: block.devices_scored,
                rows: lines,
            },
            block,
            gpu_pool: Tokens::from_units(gpu_pool),
            cpu_pool: Tokens::from_units(cpu_pool),
        })
    }

    /// Every line of a block as CSV (device id order), for download.
    pub async fn block_csv(&self, number: &str) -> Result<String, Error> {
        let detail = self.block(number, "").await?;
        let number = detail.block.number;
        let lines = self
            .block_lines(BlockLines::OfBlock {
                number,
                after: "",
                limit: u32::try_from(detail.block.devices_scored.max(0)).unwrap_or(u32::MAX),
            })
            .await?;
        Ok(domain::explorer::block_csv(&lines))
    }

    async fn block_lines(&self, which: BlockLines<'_>) -> Result<Vec<DeviceBlockLine>, Error> {
        let query = match which {
            BlockLines::OfDevice(id) => sqlx::query(concat!(
                block_line_select!(),
                "WHERE device_id = $1 ORDER BY block_number DESC LIMIT $2"
            ))
            .bind(id.to_owned())
            .bind(i64::from(DEVICE_BLOCK_LINES)),
            BlockLines::TopOfBlock(number) => sqlx::query(concat!(
                block_line_select!(),
                "WHERE block_number = $1 AND reward > 0 ORDER BY reward DESC, device_id LIMIT $2"
            ))
            .bind(number)
            .bind(i64::from(TRENDING_DEVICES)),
            BlockLines::OfBlock {
                number,
                after,
                limit,
            } => sqlx::query(concat!(
                block_line_select!(),
                "WHERE block_number = $1 AND device_id > $2 ORDER BY device_id LIMIT $3"
            ))
            .bind(number)
            .bind(after.to_owned())
            .bind(i64::from(limit)),
        };
        query
            .fetch_all(self.store.pool())
            .await?
            .iter()
            .map(|r| {
                Ok(DeviceBlockLine {
                    block: r.try_get("block_number")?,
                    device_id: r.try_get("device_id")?,
                    provider: r.try_get("owner_wallet")?,
                    kind: enum_in(r, "kind", DeviceKind::parse)?,
                    score: r.try_get("score")?,
                    share_ppm: r.try_get("share_ppm")?,
                    reward: Tokens::from_units(r.try_get("reward")?),
                    ineligible: r.try_get("ineligible")?,
                })
            })
            .collect()
    }

    /// A provider's public page: their first devices and what they were paid.
    pub async fn wallet(&self, address: &str) -> Result<PublicWallet, Error> {
        let wallet = WalletAddress::parse(address)
            .map_err(|e| Error::Invalid(format!("'{address}' is not a wallet address: {e}")))?;
        let pool = self.store.pool();
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM devices WHERE owner_wallet = $1 ORDER BY id LIMIT $2",
        )
        .bind(wallet.as_str())
        .bind(PAGE_ROWS as i64 + 1)
        .fetch_all(pool)
        .await?;
        let (matching, hire_earned, rewards, blocks): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM devices WHERE owner_wallet = $1), \
                    (SELECT CAST(COALESCE(SUM(cd.earned), 0) AS BIGINT) FROM cluster_devices cd \
                     JOIN devices d ON d.id = cd.device_id WHERE d.owner_wallet = $1), \
                    CAST(COALESCE(SUM(reward), 0) AS BIGINT), COUNT(DISTINCT block_number) \
             FROM block_rewards WHERE owner_wallet = $1 AND reward > 0",
        )
        .bind(wallet.as_str())
        .fetch_one(pool)
        .await?;
        if matching == 0 && blocks == 0 {
            return Err(Error::NotFound(format!(
                "no provider with wallet {address} in the network"
            )));
        }
        let more = ids.len() > PAGE_ROWS;
        let rows = self.index.rows(&ids[..ids.len().min(PAGE_ROWS)]);
        Ok(PublicWallet {
            address: wallet.as_str().to_owned(),
            devices: Page {
                next: more.then(|| rows.last().map(|r| r.id.clone())).flatten(),
                previous: None,
                rows,
                matching,
            },
            hire_earned: MicroUsd::from_micros(hire_earned),
            rewards_earned: Tokens::from_units(rewards),
            blocks_rewarded: blocks,
        })
    }

    /// Where a search box entry leads: a device, cluster, block or provider page if one
    /// matches exactly; otherwise pages that may be what was meant.
    pub async fn search(&self, query: &str) -> Result<SearchOutcome, Error> {
        let (exists, path, mut suggestions) = match SearchShape::of(query) {
            SearchShape::Device(id) => (
                self.count("SELECT COUNT(*) FROM devices WHERE id = $1", &id).await? > 0,
                format!("/explorer/devices/{id}"),
                self.ids_starting(IdTable::Devices, &id).await?,
            ),
            SearchShape::Cluster(id) => (
                self.count("SELECT COUNT(*) FROM clusters WHERE id = $1", &id).await? > 0,
                format!("/explorer/clusters/{id}"),
                self.ids_starting(IdTable::Clusters, &id).await?,
            ),
            SearchShape::Block(number) => (
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM reward_blocks WHERE number = $1")
                    .bind(number)
                    .fetch_one(self.store.pool())
                    .await?
                    > 0,
                format!("/explorer/blocks/{number}"),
                Vec::new(),
            ),
            SearchShape::Wallet(address) => (
                self.count(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM devices WHERE owner_wallet = $1 LIMIT 1) w",
                    &address,
                )
                .await?
                    > 0,
                format!("/explorer/wallets/{address}"),
                Vec::new(),
            ),
            SearchShape::Text(text) => (
                false,
                String::new(),
                text_suggestions(&text, &self.catalog, &self.countries),
            ),
        };
        if exists {
            return Ok(SearchOutcome::Found(path));
        }
        if suggestions.is_empty() {
            suggestions = text_suggestions("", &self.catalog, &self.countries);
        }
        Ok(SearchOutcome::NotFound {
            query: query.trim().to_owned(),
            suggestions,
        })
    }

    async fn count(&self, sql: &'static str, value: &str) -> Result<i64, Error> {
        Ok(sqlx::query_scalar(sql)
            .bind(value.to_owned())
            .fetch_one(self.store.pool())
            .await?)
    }

    /// Up to five ids of `table` that start with `prefix`, as suggestions.
    async fn ids_starting(&self, table: IdTable, prefix: &str) -> Result<Vec<Suggestion>, Error> {
        // A range on the primary key, not LIKE, so it is a seek on both databases.
        let (sql, path) = match table {
            IdTable::Devices => (
                "SELECT id FROM devices WHERE id >= $1 ORDER BY id LIMIT 5",
                "/explorer/devices/",
            ),
            IdTable::Clusters => (
                "SELECT id FROM clusters WHERE id >= $1 ORDER BY id LIMIT 5",
                "/explorer/clusters/",
            ),
        };
        let ids: Vec<String> = sqlx::query_scalar(sql)
            .bind(prefix)
            .fetch_all(self.store.pool())
            .await?;
        Ok(ids
            .into_iter()
            .filter(|id| id.starts_with(prefix))
            .map(|id| Suggestion {
                label: id.clone(),
                path: format!("{path}{id}"),
            })
            .collect())
    }
}

/// A query value, or None when it was left empty.
fn given(text: &str) -> Option<&str> {
    Some(text.trim()).filter(|t| !t.is_empty())
}

/// A block number, spaces, tabs and line breaks around it allowed (what the OpenAPI document
/// states as its pattern).
fn block_number(text: &str) -> Result<i64, Error> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    text.parse()
        .map_err(|_| Error::Invalid(format!("'{text}' is not a block number")))
}

/// Which block lines to read.
enum BlockLines<'a> {
    /// A device's newest.
    OfDevice(&'a str),
    /// A block's most rewarded.
    TopOfBlock(i64),
    /// A block's, in device id order after `after`.
    OfBlock {
        number: i64,
        after: &'a str,
        limit: u32,
    },
}

/// The tables whose ids a search can complete.
enum IdTable {
    Devices,
    Clusters,
}

/// The public columns of a cluster, and the unit-milliseconds its devices served by `$1` (now).
const PUBLIC_CLUSTER_COLUMNS: &str = "c.id, c.kind, c.purpose, c.hardware, c.units, c.countries, \
     c.status, c.hours, c.rate, c.created_at, c.running_at, c.ends_at, c.finished_at, \
     (SELECT CAST(COALESCE(SUM(cd.units * (COALESCE(cd.left_at, $1) - cd.joined_at)), 0) AS BIGINT) \
      FROM cluster_devices cd WHERE cd.cluster_id = c.id) AS compute_ms";

fn public_cluster(row: &AnyRow) -> Result<PublicCluster, Error> {
    let at = |column: &str| -> Result<Option<UnixMillis>, Error> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(UnixMillis))
    };
    let served_unit_ms: i64 = row.try_get("compute_ms")?;
    Ok(PublicCluster {
        id: row.try_get("id")?,
        kind: enum_in(row, "kind", ClusterKind::parse)?,
        purpose: enum_in(row, "purpose", Purpose::parse)?,
        hardware: row.try_get("hardware")?,
        units: row.try_get("units")?,
        countries: crate::provisioning::split_countries(&row.try_get::<String, _>("countries")?),
        status: enum_in(row, "status", ClusterStatus::parse)?,
        hours: row.try_get("hours")?,
        rate_per_unit_hour: money_in(row, "rate")?,
        created_at: UnixMillis(row.try_get("created_at")?),
        running_at: at("running_at")?,
        ends_at: at("ends_at")?,
        finished_at: at("finished_at")?,
        compute_hours: served_unit_ms.max(0) / HOUR_MS,
    })
}
