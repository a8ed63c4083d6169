//! The start-up rebuild: one streamed pass over `devices` fills the fleet index and the live fleet,
//! and loads one device on demand (registered through another replica).

use std::collections::HashMap;
use std::time::Instant;

use domain::fleet::{ConnectivityTier, DeviceKind};
use domain::time::UnixMillis;
use futures_util::TryStreamExt;
use sqlx::Row;

use super::flush::staggered;
use super::verify::open_challenge;
use super::AgentService;
use crate::index::IndexedDevice;
use crate::live::LiveDevice;
use crate::rows::enum_in;
use crate::secret::digest_from_hex;
use crate::store::{flag, flag_sql};
use crate::Error;

/// Rows a rebuild decodes before taking the fleet index's lock once for all of them.
pub(super) const REBUILD_BATCH: usize = 1_024;

pub(super) const LIVE_COLUMNS: &str = concat!(
    "SELECT id, credential_hash, status, ",
    flag_sql!("verified"),
    ", status_reason, status_changed_at, kind, gpu_count, last_heartbeat_at, agent_version, \
     measured_at, verified_at, verification_failures, gpu_model, country, tier, owner_wallet FROM devices"
);

/// One shared copy of each distinct text seen during a rebuild.
#[derive(Default)]
pub(super) struct Interner(HashMap<String, std::sync::Arc<str>>);

impl Interner {
    pub(super) fn get(&mut self, text: &str) -> std::sync::Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return shared.clone();
        }
        let shared: std::sync::Arc<str> = text.into();
        // Per-device texts (there are none today) must not grow this without bound.
        if self.0.len() < 10_000 {
            self.0.insert(text.to_owned(), shared.clone());
        }
        shared
    }
}

/// The fleet index's view of a row selected with [`LIVE_COLUMNS`].
pub(super) fn indexed_device<'r>(
    row: &'r sqlx::any::AnyRow,
    device: &LiveDevice,
    agent_run: bool,
) -> Result<IndexedDevice<'r>, Error> {
    Ok(IndexedDevice {
        kind: device.kind,
        gpu_model: row.try_get("gpu_model")?,
        gpu_count: device.gpu_count,
        country: row.try_get("country")?,
        tier: row
            .try_get::<Option<&str>, _>("tier")?
            .map(ConnectivityTier::parse)
            .transpose()
            .map_err(|e| Error::Corrupt(e.to_string()))?,
        status: device.status,
        verified: device.verified,
        owner: row.try_get("owner_wallet")?,
        agent_run,
        status_changed_at: device.status_changed_at,
    })
}

impl AgentService {
    /// Loads every device still in the network into the fleet index and every agent-run one
    /// (with its open challenge) into the live fleet, in one streamed pass over `devices`.
    /// Each device's silence is counted from `now` at the earliest, so a server restart marks
    /// nobody down. Returns how many devices the live fleet watches.
    pub async fn rebuild(&self, now: UnixMillis) -> Result<usize, Error> {
        let started = Instant::now();
        let expected: i64 =
            sqlx::query("SELECT COUNT(*) AS devices FROM devices WHERE status <> 'terminated'")
                .fetch_one(self.store.pool())
                .await?
                .try_get("devices")?;
        let expected = usize::try_from(expected).unwrap_or(0);
        self.index.reserve(expected);
        self.live.reserve(expected);
        // Decoding rows is most of the work: read disjoint parts of the table on separate
        // connections and cores, split by the last character of the id (ids end in a hex digit).
        const EVEN: &str = "('0','2','4','6','8','a','c','e')";
        const ODD: &str = "('1','3','5','7','9','b','d','f')";
        let last = "substr(id, length(id), 1)";
        let parts = [
            format!("{last} IN {EVEN}"),
            format!("{last} IN {ODD}"),
            format!("{last} NOT IN {EVEN} AND {last} NOT IN {ODD}"),
        ];
        let loads: Vec<_> = parts
            .into_iter()
            .map(|part| {
                let this = self.clone();
                tokio::spawn(async move { this.load_part(&part, now).await })
            })
            .collect();
        let (mut indexed, mut live) = (0, 0);
        for load in loads {
            let (part_indexed, part_live) = load
                .await
                .map_err(|e| Error::Task(format!("rebuilding the fleet: {e}")))??;
            indexed += part_indexed;
            live += part_live;
        }
        let open = sqlx::query(
            "SELECT id, device_id, seed, size, products, openings, issued_at, deadline_at \
             FROM device_challenges WHERE outcome IS NULL",
        )
        .fetch_all(self.store.pool())
        .await?;
        for row in open {
            let device_id: String = row.try_get("device_id")?;
            let open = open_challenge(&row)?;
            self.live
                .with(&device_id, |d| d.challenge = Some(Box::new(open)));
        }
        let hired = self.provisioning.load_assignments().await?;
        tracing::info!(
            devices = indexed,
            agent_run = live,
            hired,
            ms = started.elapsed().as_millis() as u64,
            "fleet index and live fleet rebuilt"
        );
        Ok(live)
    }

    /// Loads the devices matching `part` (an SQL condition on `devices`); returns how many
    /// went into the index and how many into the live fleet.
    pub(super) async fn load_part(
        &self,
        part: &str,
        now: UnixMillis,
    ) -> Result<(usize, usize), Error> {
        // Reasons and agent versions repeat across devices: one copy each.
        let mut texts = Interner::default();
        let sql = format!("{LIVE_COLUMNS} WHERE status <> 'terminated' AND {part}");
        let mut rows = sqlx::query(&sql).fetch(self.store.pool());
        let (mut indexed, mut live) = (0, 0);
        let mut batch = Vec::with_capacity(REBUILD_BATCH);
        loop {
            let row = rows.try_next().await?;
            let done = row.is_none();
            batch.extend(row);
            if batch.len() < REBUILD_BATCH && !done {
                continue;
            }
            let mut devices = Vec::with_capacity(batch.len());
            for row in &batch {
                let (id, device) = self.live_device(row, now, &mut texts)?;
                // Demo devices have no agent version: no agent runs them, nobody watches them.
                let agent_run = row.try_get::<Option<&str>, _>("agent_version")?.is_some();
                let index = indexed_device(row, &device, agent_run)?;
                devices.push((id, device, index, agent_run));
            }
            self.index
                .upsert_many(devices.iter().map(|(id, _, index, _)| (id.as_str(), index)));
            indexed += devices.len();
            for (id, device, _, agent_run) in devices {
                if agent_run {
                    self.live.insert(id, device);
                    live += 1;
                }
            }
            batch.clear();
            if done {
                return Ok((indexed, live));
            }
        }
    }

    pub(super) fn live_device(
        &self,
        row: &sqlx::any::AnyRow,
        now: UnixMillis,
        texts: &mut Interner,
    ) -> Result<(String, LiveDevice), Error> {
        let kind: String = row.try_get("kind")?;
        let verified_at: Option<i64> = row.try_get("verified_at")?;
        let id: String = row.try_get("id")?;
        let credential_digest = row
            .try_get::<Option<&str>, _>("credential_hash")?
            .map(|hash| {
                digest_from_hex(hash)
                    .ok_or_else(|| Error::Corrupt(format!("credential digest '{hash}'")))
            })
            .transpose()?;
        let written_at = staggered(now, &id);
        Ok((
            id,
            LiveDevice {
                credential_digest,
                verified: flag(row, "verified")?,
                reason: texts.get(row.try_get("status_reason")?),
                status_changed_at: row.try_get("status_changed_at")?,
                agent_version: texts.get(
                    row.try_get::<Option<&str>, _>("agent_version")?
                        .unwrap_or_default(),
                ),
                next_challenge_at: verified_at.map_or(0, |at| {
                    domain::proof_of_work::next_challenge_at(
                        at,
                        self.config.reverify_after_secs * 1000,
                        crate::secret::random_u64(),
                    )
                }),
                consecutive_failures: row
                    .try_get::<i64, _>("verification_failures")?
                    .try_into()
                    .unwrap_or(u32::MAX),
                written_at,
                measured_at: row.try_get("measured_at")?,
                // One tierless measurement is all a restart remembers: the next comes soon.
                tierless_measurements: u32::from(
                    row.try_get::<Option<i64>, _>("measured_at")?.is_some()
                        && row.try_get::<Option<&str>, _>("tier")?.is_none(),
                ),
                ..LiveDevice::new(
                    enum_in(row, "status", domain::fleet::DeviceStatus::parse)?,
                    DeviceKind::parse(&kind).map_err(|e| Error::Corrupt(e.to_string()))?,
                    row.try_get("gpu_count")?,
                    row.try_get::<Option<i64>, _>("last_heartbeat_at")?
                        .unwrap_or(0)
                        .max(now.0),
                )
            },
        ))
    }
}
