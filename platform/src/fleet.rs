//! The network as the pages see it: totals, supply by GPU model and by country, and the seeded
//! demo fleet that makes a fresh install look like a living network. Aggregates come from the
//! in-memory fleet index, not from scanning `devices`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::catalog::GpuCatalog;
use domain::fleet::{ConnectivityTier, DeviceKind, DeviceStatus};
use domain::network::NetworkSummary;
use domain::time::UnixMillis;
use domain::wallet::WalletAddress;
use sqlx::Row;

use crate::index::{FleetIndex, IndexedDevice};
use crate::store::{values_list, Store};
use crate::Error;

#[derive(Clone)]
pub struct FleetService {
    store: Store,
    index: Arc<FleetIndex>,
    catalog: GpuCatalog,
    /// ISO code → English name, parsed once rather than on every page render.
    country_names: Arc<HashMap<String, String>>,
    /// The summary as last tallied, with the index version it was tallied at: tallying reads
    /// every combination of the index's keys (tens of thousands at a million devices), so it
    /// is done once per change of the fleet rather than once per request.
    summary: Arc<Mutex<Option<TalliedSummary>>>,
}

/// A network summary and the fleet index version it was tallied at.
type TalliedSummary = (u64, Arc<NetworkSummary>);

impl FleetService {
    pub(crate) fn new(store: Store, index: Arc<FleetIndex>, catalog: GpuCatalog) -> FleetService {
        let country_names = domain::country::all()
            .into_iter()
            .map(|c| (c.code, c.name))
            .collect();
        FleetService {
            store,
            index,
            catalog,
            country_names: Arc::new(country_names),
            summary: Arc::new(Mutex::new(None)),
        }
    }

    pub async fn network_summary(&self) -> Result<NetworkSummary, Error> {
        Ok((*self.current_summary().1).clone())
    }

    /// The summary of the fleet as it is now, with the index version it was tallied at (what
    /// is drawn from it can be kept under that version).
    pub fn current_summary(&self) -> (u64, Arc<NetworkSummary>) {
        let version = self.index.version();
        let mut cached = self.summary.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, summary)) = &*cached {
            if *at == version {
                return (version, summary.clone());
            }
        }
        let summary = Arc::new(
            self.index
                .summary(|code| self.country_names.get(code).cloned()),
        );
        *cached = Some((version, summary.clone()));
        (version, summary)
    }

    /// How many devices are in each status now (from the fleet index).
    pub fn devices_by_status(&self) -> Vec<(domain::fleet::DeviceStatus, i64)> {
        self.index.devices_by_status()
    }

    /// Fills an empty network with `count` simulated devices (deterministic for a `seed`),
    /// marked as simulated everywhere. Does nothing if simulated devices already exist, so it is
    /// safe on every start.
    pub async fn seed_demo_fleet(
        &self,
        count: usize,
        seed: u64,
        now: UnixMillis,
    ) -> Result<usize, Error> {
        let existing: i64 =
            sqlx::query("SELECT COUNT(*) AS simulated FROM devices WHERE simulated")
                .fetch_one(self.store.pool())
                .await?
                .try_get("simulated")?;
        if existing > 0 || count == 0 {
            return Ok(0);
        }
        let devices = demo::fleet(&self.catalog, count, seed, now);
        let mut tx = self.store.begin_write().await?;
        const COLUMNS: usize = 19;
        for chunk in devices.chunks(self.store.rows_per_statement(COLUMNS)) {
            let mut sql = String::from(
                "INSERT INTO devices (id, owner_wallet, name, os, kind, gpu_model, gpu_count, cpu_model, cpu_cores, \
                 ram_gb, country, tier, status, verified, simulated, created_at, last_heartbeat_at, \
                 status_reason, status_changed_at) VALUES ",
            );
            sql.push_str(&values_list(chunk.len(), COLUMNS));
            let mut query = sqlx::query(&sql);
            for d in chunk {
                query = query
                    .bind(d.id.clone())
                    .bind(d.owner.clone())
                    .bind(d.name.clone())
                    .bind(d.os)
                    .bind(d.kind.as_str())
                    .bind(d.gpu_model.clone())
                    .bind(d.gpu_count)
                    .bind(d.cpu_model)
                    .bind(d.cpu_cores)
                    .bind(d.ram_gb)
                    .bind(d.country.clone())
                    .bind(d.tier.as_str())
                    .bind(d.status.as_str())
                    .bind(d.verified)
                    .bind(true)
                    .bind(d.created_at)
                    .bind(d.last_heartbeat_at)
                    .bind("demo fleet: simulated device without an agent")
                    .bind(d.created_at);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        for d in &devices {
            self.index.upsert(
                &d.id,
                &IndexedDevice {
                    kind: d.kind,
                    gpu_model: d.gpu_model.as_deref(),
                    gpu_count: d.gpu_count,
                    country: &d.country,
                    tier: Some(d.tier),
                    status: d.status,
                    verified: d.verified,
                    owner: &d.owner,
                    agent_run: false,
                    status_changed_at: d.created_at,
                },
            );
        }
        tracing::info!(devices = devices.len(), "seeded the demo fleet");
        Ok(devices.len())
    }
}

/// One day, and one hour, in milliseconds.
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

impl FleetService {
    /// Gives every simulated device in service (idle, hired, paused or down) an uptime history:
    /// one merged row per UTC day for the `days` days before today (20–24 h online each), and one
    /// per hour for the last `recent_hours` hours (55–60 min each, so each counts toward a reward
    /// streak). Day charts and block rewards then have data. Generated inside the database (a
    /// million devices write tens of millions of rows); returns how many it wrote.
    pub async fn seed_uptime_history(
        &self,
        days: i64,
        recent_hours: i64,
        now: UnixMillis,
    ) -> Result<u64, Error> {
        // Each backend's pseudo-random integer in 0..n (SQL has no portable one).
        let random_below = |n: i64| match self.store.backend() {
            crate::store::Backend::Sqlite => format!("(abs(random()) % {n})"),
            crate::store::Backend::Postgres => format!("CAST(floor(random() * {n}) AS BIGINT)"),
        };
        let today = now.0.div_euclid(DAY_MS) * DAY_MS;
        let this_hour = now.0.div_euclid(HOUR_MS) * HOUR_MS;
        let mut written = 0;
        for (count, step, start, min_online, spread) in [
            (days, DAY_MS, today, 20 * HOUR_MS, 4 * HOUR_MS),
            (recent_hours, HOUR_MS, this_hour, 55 * 60_000, 5 * 60_000),
        ] {
            if count <= 0 {
                continue;
            }
            let sql = format!(
                "WITH RECURSIVE back(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM back WHERE n < $1) \
                 INSERT INTO device_uptime (device_id, hour, online_ms, samples, gpu_util_sum, cpu_util_sum) \
                 SELECT d.id, $2 - back.n * $3, $4 + {}, 1, 0, 0 FROM devices d CROSS JOIN back \
                 WHERE d.simulated AND d.status IN ('idle', 'hired', 'paused', 'down') \
                 ON CONFLICT (device_id, hour) DO NOTHING",
                random_below(spread + 1)
            );
            written += sqlx::query(&sql)
                .bind(count)
                .bind(start)
                .bind(step)
                .bind(min_online)
                .execute(self.store.pool())
                .await?
                .rows_affected();
        }
        tracing::info!(rows = written, "seeded the demo fleet's uptime history");
        Ok(written)
    }
}

impl FleetService {
    /// Gives the simulated fleet a history of finished clusters: about one per `per` verified
    /// GPU devices, each of 1–8 devices of one model, hired for 1–48 hours within the last 30
    /// days, for the explorer's cluster pages and compute-hours chart. They belong to one demo
    /// renter and moved no money (`charged` 0: the ledger holds only real movements). Returns how
    /// many it made.
    pub async fn seed_cluster_history(
        &self,
        per: usize,
        seed: u64,
        now: UnixMillis,
    ) -> Result<usize, Error> {
        let pool = self.store.pool();
        let renter = WalletAddress::from_public_key(&[0xC1; 32]).to_string();
        sqlx::query("INSERT INTO users (wallet, created_at) VALUES ($1, $2) ON CONFLICT (wallet) DO NOTHING")
            .bind(&renter)
            .bind(now.0)
            .execute(pool)
            .await?;
        let user_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE wallet = $1")
            .bind(&renter)
            .fetch_one(pool)
            .await?;
        let devices: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT id, gpu_model, gpu_count FROM devices \
             WHERE simulated AND verified AND gpu_model IS NOT NULL ORDER BY gpu_model, id",
        )
        .fetch_all(pool)
        .await?;
        let plan = demo::cluster_history(&self.catalog, &devices, per.max(1), seed, now);
        let mut tx = self.store.begin_write().await?;
        const CLUSTER_COLUMNS: usize = 23;
        for chunk in plan.chunks(self.store.rows_per_statement(CLUSTER_COLUMNS)) {
            let mut sql = String::from(
                "INSERT INTO clusters (id, user_id, name, kind, purpose, hardware, units, countries, \
                 compliance, payment, workload, status, status_reason, rate, hours, charged, escrowed, \
                 idempotency_key, created_at, deadline_at, running_at, ends_at, finished_at) VALUES ",
            );
            sql.push_str(&values_list(chunk.len(), CLUSTER_COLUMNS));
            let mut query = sqlx::query(&sql);
            for c in chunk {
                query = query
                    .bind(c.id.clone())
                    .bind(user_id)
                    .bind(format!("demo-{}", c.id))
                    .bind(c.kind)
                    .bind("train")
                    .bind(c.model.clone())
                    .bind(c.units())
                    .bind("")
                    .bind("e2e_encrypted")
                    .bind("usdc")
                    .bind("{}")
                    .bind("completed")
                    .bind("simulated history: ran its paid time")
                    .bind(c.rate)
                    .bind(c.hours)
                    .bind(0i64)
                    .bind(0i64)
                    .bind(c.id.clone())
                    .bind(c.started_at)
                    .bind(c.started_at)
                    .bind(c.started_at)
                    .bind(c.ended_at)
                    .bind(c.ended_at);
            }
            query.execute(&mut *tx).await?;
        }
        let members: Vec<(&demo::DemoCluster, usize)> = plan
            .iter()
            .flat_map(|c| (0..c.devices.len()).map(move |i| (c, i)))
            .collect();
        const MEMBER_COLUMNS: usize = 8;
        for chunk in members.chunks(self.store.rows_per_statement(MEMBER_COLUMNS)) {
            let mut sql = String::from(
                "INSERT INTO cluster_devices (cluster_id, device_id, role, units, budget, state, \
                 joined_at, left_at) VALUES ",
            );
            sql.push_str(&values_list(chunk.len(), MEMBER_COLUMNS));
            let mut query = sqlx::query(&sql);
            for (c, i) in chunk {
                let (device, units) = &c.devices[*i];
                query = query
                    .bind(c.id.clone())
                    .bind(device.clone())
                    .bind(if *i == 0 { "head" } else { "worker" })
                    .bind(*units)
                    .bind(0i64)
                    .bind("stopped")
                    .bind(c.started_at)
                    .bind(c.ended_at);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        tracing::info!(
            clusters = plan.len(),
            "seeded the demo fleet's cluster history"
        );
        Ok(plan.len())
    }
}

/// The demo fleet's shape: a plausible mix of models, countries, tiers and states.
mod demo {
    use super::*;

    pub struct DemoDevice {
        pub id: String,
        pub owner: String,
        pub name: String,
        pub os: &'static str,
        pub kind: DeviceKind,
        pub gpu_model: Option<String>,
        pub gpu_count: i64,
        pub cpu_model: &'static str,
        pub cpu_cores: i64,
        pub ram_gb: i64,
        pub country: String,
        pub tier: ConnectivityTier,
        pub status: DeviceStatus,
        pub verified: bool,
        pub created_at: i64,
        pub last_heartbeat_at: Option<i64>,
    }

    // Where GPU supply concentrates, most first; earlier entries are picked more often.
    const COUNTRIES: &[&str] = &[
        "US", "US", "US", "DE", "DE", "CA", "GB", "FR", "NL", "FI", "SE", "SG", "JP", "KR", "IN",
        "BR", "PL", "NO", "AU", "HK", "TW", "AE", "ES", "IT", "CH", "VN", "TH", "MX", "ZA", "NG",
    ];
    const CPUS: &[(&str, i64)] = &[
        ("AMD EPYC 9654", 96),
        ("Intel Xeon Platinum 8480+", 56),
        ("AMD Ryzen 9 7950X", 16),
        ("Intel Core i9-14900K", 24),
    ];

    /// splitmix64: tiny, deterministic, good enough to spread demo data.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        /// Skews towards the front of a list.
        fn front_weighted(&mut self, n: usize) -> usize {
            self.below(n).min(self.below(n))
        }
    }

    /// A finished cluster of the demo history.
    pub struct DemoCluster {
        pub id: String,
        pub kind: &'static str,
        pub model: String,
        /// (device id, its GPUs), the head first.
        pub devices: Vec<(String, i64)>,
        pub rate: i64,
        pub hours: i64,
        pub started_at: i64,
        pub ended_at: i64,
    }

    impl DemoCluster {
        pub fn units(&self) -> i64 {
            self.devices.iter().map(|(_, gpus)| gpus).sum()
        }
    }

    /// About one finished cluster per `per` of `devices` (id, model, GPUs; sorted by model),
    /// each of 1–8 devices of one model in a row, hired for 1–48 h within the last 30 days.
    pub fn cluster_history(
        catalog: &GpuCatalog,
        devices: &[(String, String, i64)],
        per: usize,
        seed: u64,
        now: UnixMillis,
    ) -> Vec<DemoCluster> {
        const KINDS: &[&str] = &["ray", "kubernetes", "bare_metal", "container", "ray"];
        let mut rng = Rng(seed ^ 0xC1C1);
        let mut clusters = Vec::new();
        let mut at = 0;
        while at < devices.len() {
            let size = 1 + rng.below(8);
            let Some((_, model, _)) = devices.get(at) else {
                break;
            };
            let members: Vec<(String, i64)> = devices[at..]
                .iter()
                .take_while(|(_, m, _)| m == model)
                .take(size)
                .map(|(id, _, gpus)| (id.clone(), *gpus))
                .collect();
            at += members.len();
            let hours = 1 + rng.below(48) as i64;
            let ended_at = now.0 - 3_600_000 - rng.below(29 * 24) as i64 * 3_600_000;
            clusters.push(DemoCluster {
                id: format!("cl-{:016x}", rng.next()),
                kind: KINDS[rng.below(KINDS.len())],
                rate: catalog
                    .by_name(model)
                    .map_or(0, |m| m.default_price_per_hour.micros()),
                model: model.clone(),
                devices: members,
                hours,
                started_at: ended_at - hours * 3_600_000,
                ended_at,
            });
            // Skip ahead so that about one cluster is made per `per` devices.
            at += rng.below(per * 2);
        }
        clusters
    }

    pub fn fleet(
        catalog: &GpuCatalog,
        count: usize,
        seed: u64,
        now: UnixMillis,
    ) -> Vec<DemoDevice> {
        let mut rng = Rng(seed);
        let owners: Vec<String> = (0..(count / 6).max(1))
            .map(|_| {
                let mut key = [0u8; 32];
                for chunk in key.chunks_mut(8) {
                    chunk.copy_from_slice(&rng.next().to_le_bytes());
                }
                WalletAddress::from_public_key(&key).to_string()
            })
            .collect();
        let everywhere: Vec<String> = domain::country::all().into_iter().map(|c| c.code).collect();
        let nvidia: Vec<_> = catalog
            .models()
            .iter()
            .filter(|m| m.brand == "NVIDIA")
            .collect();
        let apple: Vec<_> = catalog
            .models()
            .iter()
            .filter(|m| m.brand == "Apple")
            .collect();
        (0..count)
            .map(|i| {
                let roll = rng.below(100);
                let (kind, os, gpu_model, gpu_count) = if roll < 10 {
                    (DeviceKind::Cpu, "linux", None, 0)
                } else if roll < 14 && !apple.is_empty() {
                    (
                        DeviceKind::Gpu,
                        "macos",
                        Some(apple[rng.below(apple.len())].name.clone()),
                        1,
                    )
                } else {
                    // Consumer cards come singly, data-centre cards in boxes of 2, 4 or 8.
                    let model = nvidia[rng.front_weighted(nvidia.len())];
                    let count = if model.name.starts_with("RTX") {
                        1
                    } else {
                        [1, 2, 4, 8, 8][rng.below(5)]
                    };
                    let os = if model.name.starts_with("RTX") && rng.below(3) == 0 {
                        "windows"
                    } else {
                        "linux"
                    };
                    (DeviceKind::Gpu, os, Some(model.name.clone()), count)
                };
                let status = match rng.below(100) {
                    0..=54 => DeviceStatus::Idle,
                    55..=79 => DeviceStatus::Hired,
                    80..=84 => DeviceStatus::Pending,
                    85..=91 => DeviceStatus::Down,
                    92..=95 => DeviceStatus::Paused,
                    _ => DeviceStatus::Inactive,
                };
                let verified = !matches!(status, DeviceStatus::Pending);
                let (cpu_model, cpu_cores) = CPUS[rng.below(CPUS.len())];
                let age_ms = (rng.below(90 * 24) as i64 + 1) * 3_600_000;
                let seen = match status {
                    DeviceStatus::Down | DeviceStatus::Inactive => {
                        now.0 - (rng.below(6 * 24) as i64 + 1) * 3_600_000
                    }
                    _ => now.0 - rng.below(20_000) as i64,
                };
                DemoDevice {
                    id: format!("dev-{:016x}", rng.next()),
                    owner: owners[rng.below(owners.len())].clone(),
                    name: format!("node-{:04}", i + 1),
                    os,
                    kind,
                    gpu_model,
                    gpu_count,
                    cpu_model,
                    cpu_cores,
                    ram_gb: [32, 64, 128, 256, 512][rng.below(5)],
                    // Most supply sits where data centres are; one device in five is anywhere.
                    country: if rng.below(5) == 0 {
                        everywhere[rng.below(everywhere.len())].clone()
                    } else {
                        COUNTRIES[rng.front_weighted(COUNTRIES.len())].to_owned()
                    },
                    tier: ConnectivityTier::ALL[rng.below(ConnectivityTier::ALL.len())],
                    status,
                    verified,
                    created_at: now.0 - age_ms,
                    last_heartbeat_at: Some(seen),
                }
            })
            .collect()
    }
}
