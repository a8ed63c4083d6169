//! The agent side of the fleet: registration with a single-use token, bearer device
//! credentials, heartbeats merged in memory and written in batches, proof-of-work verification,
//! server-measured connectivity, and the monitor that marks silent devices down.
//!
//! Hot path: a heartbeat touches only the live fleet (one shard lock). The database sees state
//! changes when they happen and heartbeat time in [`AgentService::flush`] batches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::agent_protocol::{
    AssignmentWait, Heartbeat, HeartbeatReply, RegisterRequest, Registered, SpeedTestResult,
    SpeedTestStarted, VerificationOutcome, WorkloadState, MAX_ASSIGNMENT_WAIT_SECS,
    MAX_CLOCK_SKEW_MS,
};
use domain::catalog::GpuCatalog;
use domain::device_status::DeviceEvent;
use domain::fleet::{ConnectivityTier, DeviceKind, DeviceStatus, SpeedFigures};
use domain::hardware::Classification;
use domain::proof_of_work::{self, Answer, Challenge};
use domain::time::UnixMillis;
use domain::worker::HourlyUptime;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::index::{FleetIndex, IndexedDevice};
use crate::live::{LiveDevice, LiveFleet, OpenChallenge};
use crate::provisioning::ProvisioningService;
use crate::secret::{
    digest_from_hex, hex, random_hex, random_u64, same_digest, sha256, sha256_hex,
};
use crate::store::{flag, flag_sql, values_list, Store};
use crate::worker::{apply_event, mirror, record_event, status_of};
use crate::{AgentRefusal, Error};

/// Timings and sizes of the agent protocol; defaults suit production, tests shrink them.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub heartbeat_interval_secs: u32,
    /// Silence after which a device is marked down.
    pub down_after_secs: i64,
    /// Time down after which a device is marked inactive.
    pub inactive_after_secs: i64,
    /// Matrix side for GPU devices' challenges (one product per GPU).
    pub gpu_challenge_size: u32,
    /// Matrix side for CPU devices' challenges.
    pub cpu_challenge_size: u32,
    pub challenge_openings: u32,
    pub challenge_deadline_secs: u32,
    /// An idle device is challenged again after this long.
    pub reverify_after_secs: i64,
    pub speed_test_bytes: u64,
    /// A device's connectivity is measured again after this long.
    pub remeasure_after_secs: i64,
}

impl Default for FleetConfig {
    fn default() -> FleetConfig {
        FleetConfig {
            heartbeat_interval_secs: 10,
            down_after_secs: 30,
            inactive_after_secs: 5 * 86_400,
            gpu_challenge_size: 512,
            cpu_challenge_size: 384,
            challenge_openings: 12,
            challenge_deadline_secs: 120,
            reverify_after_secs: 6 * 3600,
            speed_test_bytes: 16 * 1024 * 1024,
            remeasure_after_secs: 86_400,
        }
    }
}

/// Idle-cap violations of one device are recorded at most this often.
const VIOLATION_EVERY_MS: i64 = 3_600_000;
/// A device may start a speed test at most this often.
const SPEED_TEST_EVERY_MS: i64 = 60_000;
/// How often an online device's merged heartbeats are written (pages read them from memory);
/// what a crash can lose.
const WRITE_ONLINE_EVERY_MS: i64 = 10 * 60_000;
/// Rows a rebuild decodes before taking the fleet index's lock once for all of them.
const REBUILD_BATCH: usize = 1_024;
/// Devices whose merged heartbeats one flush transaction writes.
const FLUSH_DEVICES_PER_TRANSACTION: usize = 2_000;
/// Speed tests not finished within this are forgotten.
const SPEED_TEST_TTL_MS: i64 = 300_000;
/// Download-and-upload rounds in one speed test; each direction keeps its best round.
const SPEED_TEST_ROUNDS: u32 = 3;

struct SpeedTest {
    device_id: String,
    bytes: u64,
    started_at: i64,
    /// When the server last answered the agent (the start, or a round's upload): the wait for
    /// the next download request is a round trip.
    answered: Instant,
    download: Option<(Instant, String)>,
    rounds_left: u32,
    best: Option<SpeedFigures>,
}

#[derive(Clone)]
pub struct AgentService {
    store: Store,
    live: Arc<LiveFleet>,
    index: Arc<FleetIndex>,
    config: Arc<FleetConfig>,
    catalog: GpuCatalog,
    speed_tests: Arc<Mutex<HashMap<String, SpeedTest>>>,
    provisioning: ProvisioningService,
    /// Turns true when the server stops: agents' long polls answer at once.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Something the heartbeat decided to do after releasing the shard lock.
enum FollowUp {
    Resume,
    Violation(String),
    Challenge(Challenge),
    NewAgentVersion,
    /// The agent reports a new state of its cluster workload.
    Workload {
        cluster_id: String,
        state: WorkloadState,
        detail: String,
    },
}

impl AgentService {
    pub(crate) fn new(
        store: Store,
        live: Arc<LiveFleet>,
        index: Arc<FleetIndex>,
        catalog: GpuCatalog,
        config: FleetConfig,
        provisioning: ProvisioningService,
    ) -> AgentService {
        AgentService {
            store,
            live,
            index,
            config: Arc::new(config),
            catalog,
            speed_tests: Arc::new(Mutex::new(HashMap::new())),
            provisioning,
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// Loads every device still in the network into the fleet index and every agent-run one
    /// (with its open challenge) into the live fleet, in one streamed pass over `devices`.
    /// Each device's silence is counted from `now` at the earliest, so a server restart marks
    /// nobody down. Returns how many devices the live fleet watches.
    pub async fn rebuild(&self, now: UnixMillis) -> Result<usize, Error> {
        let started = Instant::now();
        let expected: i64 =
            sqlx::query("SELECT COUNT(*) FROM devices WHERE status <> 'terminated'")
                .fetch_one(self.store.pool())
                .await?
                .try_get(0)?;
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
            let device_id: String = row.try_get(1)?;
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
    async fn load_part(&self, part: &str, now: UnixMillis) -> Result<(usize, usize), Error> {
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
                let agent_run = row.try_get::<Option<&str>, _>(9)?.is_some();
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

    fn live_device(
        &self,
        row: &sqlx::any::AnyRow,
        now: UnixMillis,
        texts: &mut Interner,
    ) -> Result<(String, LiveDevice), Error> {
        let kind: String = row.try_get(6)?;
        let verified_at: Option<i64> = row.try_get(11)?;
        let id: String = row.try_get(0)?;
        let credential_digest = row
            .try_get::<Option<&str>, _>(1)?
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
                verified: flag(row, 3)?,
                reason: texts.get(row.try_get(4)?),
                status_changed_at: row.try_get(5)?,
                agent_version: texts.get(row.try_get::<Option<&str>, _>(9)?.unwrap_or_default()),
                next_challenge_at: verified_at
                    .map_or(0, |at| at + self.config.reverify_after_secs * 1000),
                consecutive_failures: row.try_get::<i64, _>(12)?.try_into().unwrap_or(u32::MAX),
                written_at,
                measured_at: row.try_get(10)?,
                ..LiveDevice::new(
                    status_of(&row.try_get::<String, _>(2)?)?,
                    DeviceKind::parse(&kind).map_err(|e| Error::Corrupt(e.to_string()))?,
                    row.try_get(7)?,
                    row.try_get::<Option<i64>, _>(8)?.unwrap_or(0).max(now.0),
                )
            },
        ))
    }

    /// Exchanges a registration token for the device's long-lived credential. The token is
    /// consumed by one conditional update, so a second use (even racing) is refused.
    pub async fn register(
        &self,
        request: RegisterRequest,
        now: UnixMillis,
    ) -> Result<Registered, Error> {
        let version = request.agent_version.trim();
        if version.is_empty() || version.len() > 32 {
            return Err(Error::Invalid(
                "agent_version must be 1–32 characters".into(),
            ));
        }
        request
            .hardware
            .validate()
            .map_err(|e| Error::Invalid(format!("hardware report: {e}")))?;
        let token_hash = sha256_hex(request.token.trim());
        let mut tx = self.store.pool().begin().await?;
        let claimed = sqlx::query(
            "UPDATE device_registrations SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING device_id, owner_wallet, name, kind, country",
        )
        .bind(now.0)
        .bind(&token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = claimed else {
            let found =
                sqlx::query("SELECT used_at FROM device_registrations WHERE token_hash = $1")
                    .bind(&token_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
            let refusal = match found {
                None => AgentRefusal::TokenUnknown,
                Some(row) if row.try_get::<Option<i64>, _>(0)?.is_some() => AgentRefusal::TokenUsed,
                Some(_) => AgentRefusal::TokenExpired,
            };
            return Err(refusal.into());
        };
        let device_id: String = row.try_get(0)?;
        let kind = DeviceKind::parse(&row.try_get::<String, _>(3)?)
            .map_err(|e| Error::Corrupt(e.to_string()))?;
        let classification = request.hardware.classify(kind, &self.catalog);
        let (gpu_model, gpu_count) = match &classification {
            Classification::Supported {
                gpu_model,
                gpu_count,
            } => (gpu_model.clone(), *gpu_count),
            Classification::Unsupported { .. } => (None, request.hardware.gpus.len() as i64),
        };
        let credential = format!("{device_id}.{}", random_hex(32));
        let credential_digest = sha256(&credential);
        let credential_hash = hex(&credential_digest);
        let reason = "registered; waiting for the proof-of-work verification";
        let hw = &request.hardware;
        let country: String = row.try_get(4)?;
        let owner: String = row.try_get(1)?;
        sqlx::query(
            "INSERT INTO devices (id, owner_wallet, name, os, kind, gpu_model, gpu_count, cpu_model, \
               cpu_cores, ram_gb, disk_gb, country, status, verified, simulated, created_at, \
               last_heartbeat_at, reported_gpus, agent_version, credential_hash, status_reason, \
               status_changed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', $13, $14, $15, \
               $16, $17, $18, $19, $20, $21)",
        )
        .bind(&device_id)
        .bind(row.try_get::<String, _>(1)?)
        .bind(row.try_get::<String, _>(2)?)
        .bind(hw.os.as_str())
        .bind(kind.as_str())
        .bind(gpu_model.as_deref())
        .bind(gpu_count)
        .bind(hw.cpu_model.trim())
        .bind(i64::from(hw.cpu_cores))
        .bind(i64::from(hw.ram_gb))
        .bind(i64::from(hw.disk_gb))
        .bind(&country)
        .bind(false)
        .bind(request.simulated)
        .bind(now.0)
        .bind(now.0)
        .bind(hw.gpu_summary())
        .bind(version)
        .bind(&credential_hash)
        .bind(reason)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        let detail = format!(
            "registered by agent {version}{}",
            if request.simulated {
                " (simulated hardware)"
            } else {
                ""
            }
        );
        record_event(
            &mut tx,
            &device_id,
            now,
            "status",
            Some((None, DeviceStatus::Pending)),
            &detail,
        )
        .await?;
        let mut status = DeviceStatus::Pending;
        let mut reason = reason.to_owned();
        if let Classification::Unsupported { reported } = classification {
            let t = apply_event(
                &mut tx,
                &device_id,
                &DeviceEvent::HardwareUnsupported { reported },
                now,
            )
            .await?;
            status = t.to.status;
            reason = t.reason;
        }
        tx.commit().await?;
        self.index.upsert(
            &device_id,
            &IndexedDevice {
                kind,
                gpu_model: gpu_model.as_deref(),
                gpu_count,
                country: &country,
                tier: None,
                status,
                verified: false,
                owner: &owner,
                agent_run: true,
                status_changed_at: now.0,
            },
        );
        self.live.insert(
            device_id.clone(),
            LiveDevice {
                credential_digest: Some(credential_digest),
                reason: reason.into(),
                agent_version: version.into(),
                written_at: now.0,
                ..LiveDevice::new(status, kind, gpu_count, now.0)
            },
        );
        tracing::info!(device = %device_id, %status, "device registered");
        Ok(Registered {
            device_id,
            credential,
            heartbeat_interval_secs: self.config.heartbeat_interval_secs,
        })
    }

    /// Checks a bearer credential (`<device id>.<secret>`) and returns the device id. A device
    /// missing from the live fleet (registered through another replica) is loaded once.
    pub async fn authenticate(&self, credential: &str, now: UnixMillis) -> Result<String, Error> {
        let credential = credential.trim();
        let device_id = credential
            .rsplit_once('.')
            .map(|(id, _)| id)
            .filter(|id| !id.is_empty())
            .ok_or(AgentRefusal::CredentialRejected)?;
        let presented = sha256(credential);
        if self.live.with(device_id, |_| ()).is_none() {
            self.load_one(device_id, now).await?;
        }
        let verdict = self.live.with(device_id, |d| match &d.credential_digest {
            Some(digest) if same_digest(digest, &presented) => Ok(()),
            _ => Err(AgentRefusal::CredentialRejected),
        });
        match verdict {
            Some(Ok(())) => Ok(device_id.to_owned()),
            Some(Err(refusal)) => Err(refusal.into()),
            None => Err(AgentRefusal::UnknownDevice(device_id.to_owned()).into()),
        }
    }

    async fn load_one(&self, device_id: &str, now: UnixMillis) -> Result<(), Error> {
        let row = sqlx::query(&format!("{LIVE_COLUMNS} WHERE id = $1"))
            .bind(device_id)
            .fetch_optional(self.store.pool())
            .await?
            .ok_or_else(|| AgentRefusal::UnknownDevice(device_id.to_owned()))?;
        if status_of(&row.try_get::<String, _>(2)?)? == DeviceStatus::Terminated {
            return Err(AgentRefusal::DeviceRemoved.into());
        }
        if row.try_get::<Option<String>, _>(9)?.is_none() {
            // A demo device: no agent ever ran it.
            return Err(AgentRefusal::CredentialRejected.into());
        }
        let (id, device) = self.live_device(&row, now, &mut Interner::default())?;
        self.index
            .upsert(&id, &indexed_device(&row, &device, true)?);
        self.live.insert(id, device);
        Ok(())
    }

    /// Answers every agent's long poll now and any later one at once: the server is stopping.
    pub fn release_waits(&self) {
        self.stopping.send_replace(true);
    }

    /// Holds an agent's long poll until the server's workloads for the device differ from the
    /// clusters it knows, or `wait` passes (at most [`MAX_ASSIGNMENT_WAIT_SECS`]). Returns
    /// whether they differ. A hired device's agent learns of its cluster within a round trip
    /// instead of a heartbeat interval.
    pub async fn wait_for_assignment(
        &self,
        device_id: &str,
        wait: &AssignmentWait,
    ) -> Result<bool, Error> {
        let waiting = self.live.with(device_id, |d| {
            if d.assignment_differs(&wait.known) {
                return None;
            }
            Some(
                d.assignment_changed
                    .get_or_insert_with(Default::default)
                    .clone(),
            )
        });
        let changed = match waiting {
            None => return Err(AgentRefusal::UnknownDevice(device_id.to_owned()).into()),
            Some(None) => return Ok(true),
            Some(Some(changed)) => changed,
        };
        let secs = wait.wait_secs.min(MAX_ASSIGNMENT_WAIT_SECS);
        let mut stopping = self.stopping.subscribe();
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(u64::from(secs))) => {}
            // A stopping server waits for requests in flight: do not hold it up.
            _ = stopping.wait_for(|stopping| *stopping) => {}
        }
        Ok(self
            .live
            .with(device_id, |d| d.assignment_differs(&wait.known))
            .unwrap_or(false))
    }

    /// Takes one heartbeat: merges it in memory and answers with the device's status, any open
    /// challenge and whether a speed test is due. State changes it causes are written at once.
    pub async fn heartbeat(
        &self,
        device_id: &str,
        heartbeat: Heartbeat,
        from: Option<std::net::IpAddr>,
        now: UnixMillis,
    ) -> Result<HeartbeatReply, Error> {
        let skew = heartbeat.sent_at - now.0;
        if skew.abs() > MAX_CLOCK_SKEW_MS {
            return Err(AgentRefusal::ClockSkew {
                skew_secs: skew / 1000,
            }
            .into());
        }
        heartbeat.utilisation.validate().map_err(Error::Invalid)?;
        if heartbeat.workloads.len() > 64 {
            return Err(Error::Invalid("at most 64 workloads per heartbeat".into()));
        }
        let version = heartbeat.agent_version.trim();
        if version.is_empty() || version.len() > 32 {
            return Err(Error::Invalid(
                "agent_version must be 1–32 characters".into(),
            ));
        }
        let config = &self.config;
        let down_after_ms = config.down_after_secs * 1000;
        let follow_ups = self
            .live
            .with(device_id, |d| {
                let mut follow_ups = Vec::new();
                let gap = now.0 - d.last_seen;
                let online_ms = if (0..=down_after_ms).contains(&gap) {
                    gap
                } else {
                    0
                };
                d.credit(now.0, online_ms, heartbeat.utilisation);
                d.last_seen = d.last_seen.max(now.0);
                d.last_heartbeat = Some(now.0);
                d.utilisation = heartbeat.utilisation;
                d.heartbeat_dirty = true;
                if from.is_some() {
                    d.address = from;
                }
                if *d.agent_version != *version {
                    d.agent_version = version.into();
                    follow_ups.push(FollowUp::NewAgentVersion);
                }
                if matches!(d.status, DeviceStatus::Down | DeviceStatus::Inactive) {
                    follow_ups.push(FollowUp::Resume);
                }
                if let Some(assignment) = &d.assignment {
                    let report = heartbeat
                        .workloads
                        .iter()
                        .find(|w| w.cluster_id == assignment.cluster_id);
                    if let Some(report) = report.filter(|r| d.workload_state != Some(r.state)) {
                        d.workload_state = Some(report.state);
                        follow_ups.push(FollowUp::Workload {
                            cluster_id: assignment.cluster_id.clone(),
                            state: report.state,
                            detail: report.detail.clone(),
                        });
                    }
                }
                if d.status == DeviceStatus::Idle
                    && now.0 - d.last_violation_at >= VIOLATION_EVERY_MS
                {
                    if let Some(why) = heartbeat.utilisation.idle_cap_violation() {
                        d.last_violation_at = now.0;
                        follow_ups.push(FollowUp::Violation(why));
                    }
                }
                // Never while hired, paused, blocked or unsupported.
                let challengeable = matches!(d.status, DeviceStatus::Pending | DeviceStatus::Idle);
                if challengeable && d.challenge.is_none() && now.0 >= d.next_challenge_at {
                    let challenge = self.new_challenge(d.kind, d.gpu_count);
                    d.challenge = Some(Box::new(OpenChallenge {
                        deadline_at: now.0 + i64::from(challenge.deadline_secs) * 1000,
                        challenge: challenge.clone(),
                    }));
                    follow_ups.push(FollowUp::Challenge(challenge));
                }
                follow_ups
            })
            .ok_or_else(|| AgentRefusal::UnknownDevice(device_id.to_owned()))?;

        for follow_up in follow_ups {
            match follow_up {
                FollowUp::Resume => {
                    self.transition(device_id, DeviceEvent::HeartbeatsResumed, now)
                        .await?;
                }
                FollowUp::Violation(why) => {
                    let mut conn = self.store.pool().acquire().await?;
                    record_event(&mut conn, device_id, now, "violation", None, &why).await?;
                    tracing::warn!(device = device_id, %why, "idle-cap violation");
                }
                FollowUp::Challenge(challenge) => {
                    if let Err(e) = self.store_challenge(device_id, &challenge, now).await {
                        self.live.with(device_id, |d| d.challenge = None);
                        return Err(e);
                    }
                }
                FollowUp::Workload {
                    cluster_id,
                    state,
                    detail,
                } => {
                    let reported = self
                        .provisioning
                        .workload_reported(device_id, &cluster_id, state, &detail, now)
                        .await;
                    if let Err(e) = reported {
                        // Taken again from the next heartbeat's report.
                        self.live.with(device_id, |d| d.workload_state = None);
                        return Err(e);
                    }
                }
                FollowUp::NewAgentVersion => {
                    sqlx::query("UPDATE devices SET agent_version = $1 WHERE id = $2")
                        .bind(version)
                        .bind(device_id)
                        .execute(self.store.pool())
                        .await?;
                }
            }
        }

        let remeasure_ms = config.remeasure_after_secs * 1000;
        self.live
            .with(device_id, |d| HeartbeatReply {
                status: d.status,
                reason: d.reason.to_string(),
                heartbeat_interval_secs: config.heartbeat_interval_secs,
                challenge: d.challenge.as_ref().map(|c| c.challenge.clone()),
                workloads: d.assignment.iter().map(|a| (**a).clone()).collect(),
                speed_test_due: d.measured_at.is_none_or(|at| now.0 - at >= remeasure_ms),
            })
            .ok_or_else(|| AgentRefusal::UnknownDevice(device_id.to_owned()).into())
    }

    fn new_challenge(&self, kind: DeviceKind, gpu_count: i64) -> Challenge {
        let config = &self.config;
        let (size, products) = match kind {
            DeviceKind::Gpu => (config.gpu_challenge_size, gpu_count.clamp(1, 16) as u32),
            DeviceKind::Cpu => (config.cpu_challenge_size, 1),
        };
        Challenge {
            id: format!("chl-{}", random_hex(8)),
            seed: random_u64(),
            size,
            products,
            openings: config.challenge_openings,
            deadline_secs: config.challenge_deadline_secs,
        }
    }

    async fn store_challenge(
        &self,
        device_id: &str,
        challenge: &Challenge,
        now: UnixMillis,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO device_challenges (id, device_id, seed, size, products, openings, \
               issued_at, deadline_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&challenge.id)
        .bind(device_id)
        // The seed's bits, stored in a signed column.
        .bind(challenge.seed as i64)
        .bind(i64::from(challenge.size))
        .bind(i64::from(challenge.products))
        .bind(i64::from(challenge.openings))
        .bind(now.0)
        .bind(now.0 + i64::from(challenge.deadline_secs) * 1000)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// One state-machine step, committed, then mirrored into the live fleet.
    async fn transition(
        &self,
        device_id: &str,
        event: DeviceEvent,
        now: UnixMillis,
    ) -> Result<domain::device_status::Transition, Error> {
        let mut tx = self.store.pool().begin().await?;
        let t = apply_event(&mut tx, device_id, &event, now).await?;
        tx.commit().await?;
        mirror(&self.live, &self.index, device_id, &t, now);
        tracing::info!(device = device_id, status = %t.to.status, reason = %t.reason, "device status changed");
        Ok(t)
    }

    /// Checks a challenge answer (off the async threads: it multiplies a few rows) and records
    /// the outcome: passing makes the device idle and verified, failing counts towards blocking.
    pub async fn answer_challenge(
        &self,
        device_id: &str,
        challenge_id: &str,
        answer: Answer,
        now: UnixMillis,
    ) -> Result<VerificationOutcome, Error> {
        let open = self
            .live
            .with(device_id, |d| match &d.challenge {
                Some(open) if open.challenge.id == challenge_id => d.challenge.take(),
                _ => None,
            })
            .flatten()
            .ok_or_else(|| AgentRefusal::NoSuchChallenge(challenge_id.to_owned()))?;
        let verdict = if now.0 > open.deadline_at {
            Err(format!(
                "answered after the {} s deadline",
                open.challenge.deadline_secs
            ))
        } else {
            let challenge = open.challenge.clone();
            tokio::task::spawn_blocking(move || proof_of_work::check(&challenge, &answer))
                .await
                .map_err(|e| Error::Invalid(format!("checking the answer failed: {e}")))?
                .map_err(|failure| failure.to_string())
        };
        self.settle_challenge(device_id, &open.challenge, verdict, "failed", now)
            .await
    }

    /// Records a challenge's outcome and applies it to the device's status.
    async fn settle_challenge(
        &self,
        device_id: &str,
        challenge: &Challenge,
        verdict: Result<(), String>,
        failed_as: &str,
        now: UnixMillis,
    ) -> Result<VerificationOutcome, Error> {
        let failures = self
            .live
            .with(device_id, |d| {
                d.consecutive_failures = if verdict.is_ok() {
                    0
                } else {
                    d.consecutive_failures + 1
                };
                d.consecutive_failures
            })
            .unwrap_or(1);
        let (outcome, detail) = match &verdict {
            Ok(()) => (
                "passed",
                format!(
                    "{} × {}³ matrix products checked",
                    challenge.products, challenge.size
                ),
            ),
            Err(why) => (failed_as, why.clone()),
        };
        let mut tx = self.store.pool().begin().await?;
        sqlx::query(
            "UPDATE device_challenges SET answered_at = $1, outcome = $2, detail = $3 WHERE id = $4",
        )
        .bind((failed_as != "expired").then_some(now.0))
        .bind(outcome)
        .bind(&detail)
        .bind(&challenge.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE devices SET verification_failures = $1, \
               verified_at = CASE WHEN $2 = 1 THEN $3 ELSE verified_at END WHERE id = $4",
        )
        .bind(i64::from(failures))
        .bind(i64::from(verdict.is_ok()))
        .bind(now.0)
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
        let event = match &verdict {
            Ok(()) => DeviceEvent::VerificationPassed,
            Err(_) => DeviceEvent::VerificationFailed {
                consecutive: failures,
            },
        };
        // The challenge is settled even where the status cannot follow (the device went down
        // or was hired meanwhile); the record stays true either way.
        let transition = match apply_event(&mut tx, device_id, &event, now).await {
            Ok(t) => Some(t),
            Err(Error::Conflict(why)) => {
                tracing::debug!(device = device_id, %why, "verification outcome left the status as it was");
                None
            }
            Err(e) => return Err(e),
        };
        tx.commit().await?;
        if let Some(t) = &transition {
            mirror(&self.live, &self.index, device_id, t, now);
        }
        let next = match verdict {
            Ok(()) => now.0 + self.config.reverify_after_secs * 1000,
            Err(_) => now.0,
        };
        self.live.with(device_id, |d| d.next_challenge_at = next);
        tracing::info!(device = device_id, outcome, %detail, "verification settled");
        let (status, reason) = self
            .live
            .with(device_id, |d| (d.status, d.reason.to_string()))
            .ok_or_else(|| AgentRefusal::UnknownDevice(device_id.to_owned()))?;
        Ok(VerificationOutcome {
            passed: outcome == "passed",
            status,
            reason,
        })
    }

    /// Starts a connectivity measurement: in each of `rounds` rounds the agent downloads
    /// `bytes`, then uploads as many.
    pub fn start_speed_test(
        &self,
        device_id: &str,
        now: UnixMillis,
    ) -> Result<SpeedTestStarted, Error> {
        let allowed = self
            .live
            .with(device_id, |d| {
                let ok = now.0 - d.speed_test_started_at >= SPEED_TEST_EVERY_MS;
                if ok {
                    d.speed_test_started_at = now.0;
                }
                ok
            })
            .ok_or_else(|| AgentRefusal::UnknownDevice(device_id.to_owned()))?;
        if !allowed {
            return Err(AgentRefusal::TooSoon(format!(
                "a speed test was started less than {} s ago",
                SPEED_TEST_EVERY_MS / 1000
            ))
            .into());
        }
        let id = format!("spd-{}", random_hex(8));
        let mut tests = self.speed_tests.lock().unwrap_or_else(|p| p.into_inner());
        tests.retain(|_, t| now.0 - t.started_at < SPEED_TEST_TTL_MS);
        tests.insert(
            id.clone(),
            SpeedTest {
                device_id: device_id.to_owned(),
                bytes: self.config.speed_test_bytes,
                started_at: now.0,
                answered: Instant::now(),
                download: None,
                rounds_left: SPEED_TEST_ROUNDS,
                best: None,
            },
        );
        Ok(SpeedTestStarted {
            id,
            bytes: self.config.speed_test_bytes,
            rounds: SPEED_TEST_ROUNDS,
        })
    }

    /// The download half: random bytes whose digest the agent must return with its upload,
    /// which proves it received them.
    pub fn speed_test_payload(&self, device_id: &str, test_id: &str) -> Result<Vec<u8>, Error> {
        let mut tests = self.speed_tests.lock().unwrap_or_else(|p| p.into_inner());
        let test = tests
            .get_mut(test_id)
            .filter(|t| t.device_id == device_id && t.download.is_none())
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no speed test '{test_id}' waiting for its download"
                ))
            })?;
        let mut payload = vec![0u8; test.bytes as usize];
        let mut state = random_u64();
        for chunk in payload.chunks_mut(8) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let bytes = (state ^ (state >> 31))
                .wrapping_mul(0xBF58_476D_1CE4_E5B9)
                .to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        test.download = Some((Instant::now(), hex(&Sha256::digest(&payload))));
        Ok(payload)
    }

    /// The upload half, timed by the server: `upload_arrived` when the request came in,
    /// `upload_finished` when its body was read. Download time is from the download request to
    /// the upload request, so it can only be over-, never under-estimated. The device's figures
    /// and tier are recorded after the last round, from each direction's best round.
    pub async fn finish_speed_test(
        &self,
        device_id: &str,
        test_id: &str,
        download_digest: &str,
        upload: SpeedTestUpload,
        now: UnixMillis,
    ) -> Result<SpeedTestResult, Error> {
        let mut test = {
            let mut tests = self.speed_tests.lock().unwrap_or_else(|p| p.into_inner());
            match tests.get(test_id) {
                Some(t) if t.device_id == device_id && t.download.is_some() => {
                    tests.remove(test_id)
                }
                _ => None,
            }
        }
        .ok_or_else(|| {
            Error::NotFound(format!("no speed test '{test_id}' waiting for its upload"))
        })?;
        let Some((download_started, digest)) = test.download.take() else {
            return Err(Error::Invalid("the download half was not taken".into()));
        };
        if !same_digest(digest.as_bytes(), download_digest.trim().as_bytes()) {
            return Err(Error::Invalid(
                "the downloaded data's SHA-256 does not match what was sent".into(),
            ));
        }
        if upload.bytes != test.bytes {
            return Err(Error::Invalid(format!(
                "expected {} uploaded bytes, got {}",
                test.bytes, upload.bytes
            )));
        }
        let per_s = |bytes: u64, from: Instant, to: Instant| -> i64 {
            // Bytes per microsecond is megabytes per second.
            let micros = to.saturating_duration_since(from).as_micros().max(1);
            (u128::from(bytes) / micros) as i64
        };
        let round = SpeedFigures {
            download_mb_per_s: per_s(test.bytes, download_started, upload.arrived),
            upload_mb_per_s: per_s(test.bytes, upload.arrived, upload.finished),
            latency_ms: download_started
                .saturating_duration_since(test.answered)
                .as_millis() as i64,
        };
        let best = round.best_with(test.best);
        let tier = best.tier();
        test.rounds_left -= 1;
        let result = SpeedTestResult {
            download_mb_per_s: best.download_mb_per_s,
            upload_mb_per_s: best.upload_mb_per_s,
            latency_ms: best.latency_ms,
            tier,
            rounds_left: test.rounds_left,
        };
        if test.rounds_left > 0 {
            test.best = Some(best);
            test.answered = Instant::now();
            let mut tests = self.speed_tests.lock().unwrap_or_else(|p| p.into_inner());
            tests.insert(test_id.to_owned(), test);
            return Ok(result);
        }
        sqlx::query(
            "UPDATE devices SET download_mb_per_s = $1, upload_mb_per_s = $2, latency_ms = $3, \
               measured_at = $4, tier = $5 WHERE id = $6",
        )
        .bind(best.download_mb_per_s)
        .bind(best.upload_mb_per_s)
        .bind(best.latency_ms)
        .bind(now.0)
        .bind(tier.map(ConnectivityTier::as_str))
        .bind(device_id)
        .execute(self.store.pool())
        .await?;
        self.live.with(device_id, |d| d.measured_at = Some(now.0));
        self.index.set_tier(device_id, tier);
        tracing::info!(device = device_id, download_mb_per_s = best.download_mb_per_s, upload_mb_per_s = best.upload_mb_per_s, latency_ms = best.latency_ms, tier = ?tier, "connectivity measured");
        Ok(result)
    }

    /// Visits every live device on a blocking thread: a pass over a large fleet takes tens of
    /// milliseconds of cache misses, which would stall every request waiting on the async
    /// worker that ran it.
    async fn scan<R: Send + 'static>(
        &self,
        visit: impl FnMut(&str, &mut LiveDevice) -> Option<R> + Send + 'static,
    ) -> Result<Vec<R>, Error> {
        let live = self.live.clone();
        tokio::task::spawn_blocking(move || live.collect(visit))
            .await
            .map_err(|e| Error::Task(format!("scanning the live fleet: {e}")))
    }

    /// The monitor's pass: marks silent devices down, long-down devices inactive, and settles
    /// challenges nobody answered in time. Returns how many devices changed.
    pub async fn sweep(&self, now: UnixMillis) -> Result<usize, Error> {
        let down_after_ms = self.config.down_after_secs * 1000;
        let inactive_after_ms = self.config.inactive_after_secs * 1000;
        enum Due {
            Silent,
            DownTooLong,
            Unanswered(Challenge),
        }
        let due = self
            .scan(move |id, d| {
                let mut due = Vec::new();
                if matches!(
                    d.status,
                    DeviceStatus::Pending | DeviceStatus::Idle | DeviceStatus::Hired
                ) && now.0 - d.last_seen > down_after_ms
                {
                    due.push(Due::Silent);
                }
                if d.status == DeviceStatus::Down && now.0 - d.status_changed_at > inactive_after_ms
                {
                    due.push(Due::DownTooLong);
                }
                if let Some(open) = d.challenge.take_if(|c| now.0 > c.deadline_at) {
                    due.push(Due::Unanswered(open.challenge));
                }
                (!due.is_empty()).then(|| (id.to_owned(), due))
            })
            .await?;
        let mut changed = 0;
        for (device_id, due) in due {
            for item in due {
                let result = match item {
                    Due::Silent => self
                        .transition(&device_id, DeviceEvent::HeartbeatsMissed, now)
                        .await
                        .map(|_| ()),
                    Due::DownTooLong => self
                        .transition(&device_id, DeviceEvent::DownTooLong, now)
                        .await
                        .map(|_| ()),
                    Due::Unanswered(challenge) => {
                        let why = format!("no answer within {} s", challenge.deadline_secs);
                        self.settle_challenge(&device_id, &challenge, Err(why), "expired", now)
                            .await
                            .map(|_| ())
                    }
                };
                match result {
                    Ok(()) => changed += 1,
                    // Another event got there first (a heartbeat, the owner): nothing to do.
                    Err(Error::Conflict(why)) => {
                        tracing::debug!(device = %device_id, %why, "sweep skipped")
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(changed)
    }

    /// Writes merged heartbeats (uptime per device-hour, last heartbeat) of the devices that
    /// `scope` says are due, in multi-row statements, a few thousand devices per transaction
    /// so other writers (state changes, registrations) get the database between them. What
    /// fails to be written goes back to be written next time. Returns how many devices were
    /// written.
    pub async fn flush(&self, scope: Flush, now: UnixMillis) -> Result<usize, Error> {
        let taken = self
            .scan(move |id, d| {
                let online = matches!(
                    d.status,
                    DeviceStatus::Pending | DeviceStatus::Idle | DeviceStatus::Hired
                );
                // Pages read an online device's merged heartbeats from memory: the database needs
                // them for a device that stopped, and every few minutes against a crash.
                let due = scope == Flush::Everything
                    || !online
                    || now.0 - d.written_at >= WRITE_ONLINE_EVERY_MS;
                let last_heartbeat = d.last_heartbeat.filter(|_| d.heartbeat_dirty);
                if !due || (last_heartbeat.is_none() && d.unflushed.is_empty()) {
                    return None;
                }
                d.heartbeat_dirty = false;
                d.written_at = now.0;
                Some((
                    id.to_owned(),
                    last_heartbeat,
                    std::mem::take(&mut d.unflushed),
                ))
            })
            .await?;
        let mut written = 0;
        let mut chunks = taken.chunks(FLUSH_DEVICES_PER_TRANSACTION);
        while let Some(chunk) = chunks.next() {
            if let Err(e) = self.write_flush(chunk).await {
                for (id, last_heartbeat, deltas) in std::iter::once(chunk).chain(chunks).flatten() {
                    self.live.with(id, |d| {
                        d.heartbeat_dirty |= last_heartbeat.is_some();
                        d.written_at = 0;
                        deltas.iter().for_each(|delta| d.merge(*delta));
                    });
                }
                return Err(e);
            }
            written += chunk.len();
        }
        Ok(written)
    }

    async fn write_flush(
        &self,
        taken: &[(String, Option<i64>, Vec<HourlyUptime>)],
    ) -> Result<(), Error> {
        let mut tx = self.store.pool().begin().await?;
        let heartbeats: Vec<(&str, i64)> = taken
            .iter()
            .filter_map(|(id, at, _)| at.map(|at| (id.as_str(), at)))
            .collect();
        for chunk in heartbeats.chunks(self.store.rows_per_statement(3)) {
            let mut sql = String::from("UPDATE devices SET last_heartbeat_at = CASE id");
            for i in 0..chunk.len() {
                sql.push_str(&format!(" WHEN ${} THEN ${}", 2 * i + 1, 2 * i + 2));
            }
            sql.push_str(" ELSE last_heartbeat_at END WHERE id IN (");
            let ids: Vec<String> = (0..chunk.len())
                .map(|i| format!("${}", 2 * chunk.len() + i + 1))
                .collect();
            sql.push_str(&ids.join(", "));
            sql.push(')');
            let mut query = sqlx::query(&sql);
            for (id, at) in chunk {
                query = query.bind(*id).bind(*at);
            }
            for (id, _) in chunk {
                query = query.bind(*id);
            }
            query.execute(&mut *tx).await?;
        }
        let rows: Vec<(&str, &HourlyUptime)> = taken
            .iter()
            .flat_map(|(id, _, deltas)| deltas.iter().map(move |d| (id.as_str(), d)))
            .collect();
        for chunk in rows.chunks(self.store.rows_per_statement(6)) {
            let mut sql = String::from(
                "INSERT INTO device_uptime (device_id, hour, online_ms, samples, gpu_util_sum, cpu_util_sum) VALUES ",
            );
            sql.push_str(&values_list(chunk.len(), 6));
            sql.push_str(
                " ON CONFLICT (device_id, hour) DO UPDATE SET \
                   online_ms = device_uptime.online_ms + excluded.online_ms, \
                   samples = device_uptime.samples + excluded.samples, \
                   gpu_util_sum = device_uptime.gpu_util_sum + excluded.gpu_util_sum, \
                   cpu_util_sum = device_uptime.cpu_util_sum + excluded.cpu_util_sum",
            );
            let mut query = sqlx::query(&sql);
            for (id, d) in chunk {
                query = query
                    .bind(*id)
                    .bind(d.hour)
                    .bind(d.online_ms)
                    .bind(d.samples)
                    .bind(d.gpu_util_sum)
                    .bind(d.cpu_util_sum);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Devices the live fleet watches.
    pub fn live_devices(&self) -> usize {
        self.live.len()
    }
}

/// What [`AgentService::flush`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Devices that stopped, and online ones not written for a while. The periodic flush.
    Due,
    /// Everything held in memory: when the server stops.
    Everything,
}

/// When and how much of a speed test's upload the server received.
#[derive(Debug, Clone, Copy)]
pub struct SpeedTestUpload {
    pub arrived: Instant,
    pub finished: Instant,
    pub bytes: u64,
}

const LIVE_COLUMNS: &str = concat!(
    "SELECT id, credential_hash, status, ",
    flag_sql!("verified"),
    ", status_reason, status_changed_at, kind, gpu_count, last_heartbeat_at, agent_version, \
     measured_at, verified_at, verification_failures, gpu_model, country, tier, owner_wallet FROM devices"
);

/// A point in the last write period, different for each device, so devices loaded together
/// are not all due in the same flush.
fn staggered(now: UnixMillis, id: &str) -> i64 {
    use std::hash::BuildHasher;
    let offset = rustc_hash::FxBuildHasher.hash_one(id) % WRITE_ONLINE_EVERY_MS as u64;
    now.0 - offset as i64
}

/// One shared copy of each distinct text seen during a rebuild.
#[derive(Default)]
struct Interner(HashMap<String, std::sync::Arc<str>>);

impl Interner {
    fn get(&mut self, text: &str) -> std::sync::Arc<str> {
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
fn indexed_device<'r>(
    row: &'r sqlx::any::AnyRow,
    device: &LiveDevice,
    agent_run: bool,
) -> Result<IndexedDevice<'r>, Error> {
    Ok(IndexedDevice {
        kind: device.kind,
        gpu_model: row.try_get(13)?,
        gpu_count: device.gpu_count,
        country: row.try_get(14)?,
        tier: row
            .try_get::<Option<&str>, _>(15)?
            .map(ConnectivityTier::parse)
            .transpose()
            .map_err(|e| Error::Corrupt(e.to_string()))?,
        status: device.status,
        verified: device.verified,
        owner: row.try_get(16)?,
        agent_run,
        status_changed_at: device.status_changed_at,
    })
}

fn open_challenge(row: &sqlx::any::AnyRow) -> Result<OpenChallenge, Error> {
    let bounded = |i: usize| -> Result<u32, Error> {
        let v: i64 = row.try_get(i)?;
        u32::try_from(v).map_err(|_| Error::Corrupt(format!("challenge parameter {v}")))
    };
    let issued_at: i64 = row.try_get(6)?;
    let deadline_at: i64 = row.try_get(7)?;
    Ok(OpenChallenge {
        challenge: Challenge {
            id: row.try_get(0)?,
            seed: row.try_get::<i64, _>(2)? as u64,
            size: bounded(3)?,
            products: bounded(4)?,
            openings: bounded(5)?,
            deadline_secs: ((deadline_at - issued_at) / 1000).max(0) as u32,
        },
        deadline_at,
    })
}
