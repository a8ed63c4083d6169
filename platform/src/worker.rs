//! The Worker tab's service, the provider-facing side of devices: adding a device (a single-use
//! registration token for its agent), a provider's devices, one device in full, and the owner's
//! actions on it. The status changes those actions make go through [`crate::lifecycle`].

use std::sync::Arc;

use domain::device_status::{DeviceEvent, Transition};
use domain::fleet::{ConnectivityTier, DeviceKind, DeviceStatus, OperatingSystem, OwnerAction};
use domain::id::IdKind;
use domain::time::UnixMillis;
use domain::uptime::{uptime_by_day, uptime_permille, utilisation_by_hour, UPTIME_WINDOW_MS};
use domain::wallet::WalletAddress;
use domain::worker::{
    valid_device_name, AwaitingAgent, ChallengeOutcome, DeviceDetail, DeviceEventKind,
    DeviceHistoryEntry, NewDevice, OwnedDevice, RegistrationTicket, VerificationRecord,
    WorkerDevices, MAX_AWAITING_AGENT, MAX_ENROLMENTS_PER_HOUR,
};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::hires;
use crate::index::FleetIndex;
use crate::lifecycle::{apply_event, mirror, record_event};
use crate::live::LiveFleet;
use crate::rows::{enum_in, optional_enum_in};
use crate::secret::{random_hex, sha256_hex};
use crate::store::{flag, flag_sql, Store};
use crate::uptime::uptime_hours;
use crate::Error;

/// Rows of history and verifications the device page shows.
const HISTORY_ROWS: i64 = 50;
/// Hours of utilisation the device page charts.
const UTILISATION_HOURS: i64 = 48;

/// What the Worker tab needs to know about the deployment.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The server URL agents are told to call (the public URL).
    pub agent_server_url: String,
    pub registration_ttl_secs: i64,
    /// The agent build the server offers for download, if any: devices running another are
    /// flagged, and new devices get the install script's command.
    pub offered_agent: Option<domain::agent_release::AgentVersion>,
}

#[derive(Clone)]
pub struct WorkerService {
    store: Store,
    live: Arc<LiveFleet>,
    index: Arc<FleetIndex>,
    config: Arc<WorkerConfig>,
}

impl WorkerService {
    pub(crate) fn new(
        store: Store,
        live: Arc<LiveFleet>,
        index: Arc<FleetIndex>,
        config: WorkerConfig,
    ) -> WorkerService {
        WorkerService {
            store,
            live,
            index,
            config: Arc::new(config),
        }
    }

    /// Reserves a device id and issues a single-use registration token for its agent. Only the
    /// token's SHA-256 is stored; the ticket is the one time it is shown. A wallet may have
    /// [`MAX_AWAITING_AGENT`] devices waiting for their agent and add
    /// [`MAX_ENROLMENTS_PER_HOUR`] an hour.
    pub async fn add_device(
        &self,
        owner: &WalletAddress,
        form: NewDevice,
        now: UnixMillis,
    ) -> Result<RegistrationTicket, Error> {
        self.enrol(owner, form, Limits::PerWallet, now).await
    }

    /// Adds one of the operator's own devices (the demo network's agents), which the per-wallet
    /// limits on enrolments do not apply to.
    pub async fn add_operator_device(
        &self,
        owner: &WalletAddress,
        form: NewDevice,
        now: UnixMillis,
    ) -> Result<RegistrationTicket, Error> {
        self.enrol(owner, form, Limits::None, now).await
    }

    async fn enrol(
        &self,
        owner: &WalletAddress,
        form: NewDevice,
        limits: Limits,
        now: UnixMillis,
    ) -> Result<RegistrationTicket, Error> {
        let form = form
            .validated(domain::country::is_known)
            .map_err(Error::Invalid)?;
        let device_id = format!("dev-{}", random_hex(8));
        let token = format!("gcr_{}", random_hex(24));
        let expires_at = now.plus_seconds(self.config.registration_ttl_secs);
        let mut tx = self.store.begin_write().await?;
        if limits == Limits::PerWallet {
            enrolment_allowed(&mut tx, owner, now).await?;
        }
        sqlx::query(
            "INSERT INTO device_registrations \
               (token_hash, device_id, owner_wallet, name, os, kind, country, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(sha256_hex(&token))
        .bind(&device_id)
        .bind(owner.as_str())
        .bind(&form.name)
        .bind(form.os.as_str())
        .bind(form.kind.as_str())
        .bind(&form.country)
        .bind(now.0)
        .bind(expires_at.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let server = self.config.agent_server_url.trim_end_matches('/');
        let run_command = format!("gpu-commons-agent --server {server} --token {token}");
        let command = match self.config.offered_agent {
            Some(_) => format!("curl -fsSL {server}/install.sh | sh -s -- --token {token}"),
            None => run_command.clone(),
        };
        Ok(RegistrationTicket {
            device_id,
            token,
            command,
            run_command,
            expires_at,
        })
    }

    /// The owner's devices (removed ones left out) and the added devices still waiting for
    /// their agent.
    pub async fn devices_of(
        &self,
        owner: &WalletAddress,
        now: UnixMillis,
    ) -> Result<WorkerDevices, Error> {
        let rows = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM devices \
             WHERE owner_wallet = $1 AND status <> 'terminated' ORDER BY created_at, id"
        ))
        .bind(owner.as_str())
        .fetch_all(self.store.pool())
        .await?;
        let online: std::collections::HashMap<String, i64> = sqlx::query(
            "SELECT u.device_id, CAST(SUM(u.online_ms) AS BIGINT) AS online_ms FROM device_uptime u \
             JOIN devices d ON d.id = u.device_id \
             WHERE d.owner_wallet = $1 AND u.hour >= $2 GROUP BY u.device_id",
        )
        .bind(owner.as_str())
        .bind(now.0 - UPTIME_WINDOW_MS)
        .fetch_all(self.store.pool())
        .await?
        .iter()
        .map(|r| Ok((r.try_get("device_id")?, r.try_get("online_ms")?)))
        .collect::<Result<_, Error>>()?;
        let earned = hires::earned_per_device(&self.store, owner.as_str()).await?;
        let devices = rows
            .iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let flushed = online.get(&id).copied().unwrap_or(0);
                let (unflushed, last_heartbeat) = self.unwritten(&id);
                let mut device = owned_device(row, flushed + unflushed, now, self.offered_agent())?;
                device.last_heartbeat_at = last_heartbeat.or(device.last_heartbeat_at);
                device.earned = earned.get(&id).copied().unwrap_or_default();
                Ok::<_, Error>(device)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rows = sqlx::query(
            "SELECT device_id, name, os, kind, expires_at FROM device_registrations \
             WHERE owner_wallet = $1 AND used_at IS NULL AND expires_at > $2 \
             ORDER BY created_at",
        )
        .bind(owner.as_str())
        .bind(now.0)
        .fetch_all(self.store.pool())
        .await?;
        let awaiting_agent = rows
            .iter()
            .map(|row| {
                Ok(AwaitingAgent {
                    device_id: row.try_get("device_id")?,
                    name: row.try_get("name")?,
                    os: enum_in(row, "os", OperatingSystem::parse)?,
                    kind: enum_in(row, "kind", DeviceKind::parse)?,
                    expires_at: UnixMillis(row.try_get("expires_at")?),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(WorkerDevices {
            devices,
            awaiting_agent,
            offered_agent: self.config.offered_agent.as_ref().map(ToString::to_string),
        })
    }

    /// One of the owner's devices with its hardware, history and verifications.
    pub async fn device_detail(
        &self,
        owner: &WalletAddress,
        device_id: &str,
        now: UnixMillis,
    ) -> Result<DeviceDetail, Error> {
        IdKind::Device.check(device_id).map_err(Error::NotFound)?;
        self.detail_of(owner.as_str(), device_id, now).await
    }

    /// [`WorkerService::device_detail`] for the owner as stored (the explorer reads it from the
    /// device itself).
    pub(crate) async fn detail_of(
        &self,
        owner: &str,
        device_id: &str,
        now: UnixMillis,
    ) -> Result<DeviceDetail, Error> {
        let pool = self.store.pool();
        let row = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS}, os, status_reason, status_changed_at, reported_gpus, \
               cpu_model, cpu_cores, ram_gb, disk_gb, download_mb_per_s, upload_mb_per_s, \
               latency_ms, \
               CAST(CASE WHEN credential_hash IS NULL THEN 0 ELSE 1 END AS BIGINT) \
                 AS credential_active \
             FROM devices WHERE id = $1 AND owner_wallet = $2"
        ))
        .bind(device_id)
        .bind(owner)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| not_yours(device_id))?;
        let history = sqlx::query(
            "SELECT at, kind, from_status, to_status, detail FROM device_events \
             WHERE device_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(device_id)
        .bind(HISTORY_ROWS)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(DeviceHistoryEntry {
                at: UnixMillis(r.try_get("at")?),
                kind: enum_in(r, "kind", DeviceEventKind::parse)?,
                from_status: optional_enum_in(r, "from_status", DeviceStatus::parse)?,
                to_status: optional_enum_in(r, "to_status", DeviceStatus::parse)?,
                detail: r.try_get("detail")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
        let verifications = sqlx::query(
            "SELECT id, issued_at, answered_at, outcome, detail, size, products \
             FROM device_challenges WHERE device_id = $1 ORDER BY issued_at DESC LIMIT $2",
        )
        .bind(device_id)
        .bind(HISTORY_ROWS)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(VerificationRecord {
                id: r.try_get("id")?,
                issued_at: UnixMillis(r.try_get("issued_at")?),
                answered_at: r.try_get::<Option<i64>, _>("answered_at")?.map(UnixMillis),
                outcome: optional_enum_in(r, "outcome", ChallengeOutcome::parse)?,
                detail: r.try_get("detail")?,
                size: r.try_get("size")?,
                products: r.try_get("products")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
        let mut hours = uptime_hours(
            &mut *pool.acquire().await?,
            device_id,
            now.0 - UPTIME_WINDOW_MS,
        )
        .await?;
        // What is still only in memory counts too.
        let last_heartbeat = self
            .live
            .with(device_id, |d| {
                hours.extend_from_slice(&d.unflushed);
                d.last_heartbeat.map(UnixMillis)
            })
            .flatten();
        let online_ms = hours.iter().map(|h| h.online_ms).sum();
        let changed_at: i64 = row.try_get("status_changed_at")?;
        let mut summary = owned_device(&row, online_ms, now, self.offered_agent())?;
        summary.last_heartbeat_at = last_heartbeat.or(summary.last_heartbeat_at);
        summary.earned = hires::earned_per_device(&self.store, owner)
            .await?
            .remove(&summary.id)
            .unwrap_or_default();
        let clusters_served = hires::hires(&self.store, owner, Some(&summary.id), 100).await?;
        Ok(DeviceDetail {
            clusters_served,
            created_at: UnixMillis(row.try_get("created_at")?),
            summary,
            os: enum_in(&row, "os", OperatingSystem::parse)?,
            status_reason: row.try_get("status_reason")?,
            status_changed_at: (changed_at > 0).then_some(UnixMillis(changed_at)),
            reported_gpus: row.try_get("reported_gpus")?,
            cpu_model: row.try_get("cpu_model")?,
            cpu_cores: row.try_get("cpu_cores")?,
            ram_gb: row.try_get("ram_gb")?,
            disk_gb: row.try_get("disk_gb")?,
            download_mb_per_s: row.try_get("download_mb_per_s")?,
            upload_mb_per_s: row.try_get("upload_mb_per_s")?,
            latency_ms: row.try_get("latency_ms")?,
            agent_version: row.try_get("agent_version")?,
            credential_active: row.try_get::<i64, _>("credential_active")? != 0,
            history,
            verifications,
            uptime_days: uptime_by_day(&hours, now, UPTIME_WINDOW_MS / domain::time::DAY_MS),
            utilisation_hours: utilisation_by_hour(&hours, now, UTILISATION_HOURS),
        })
    }

    fn offered_agent(&self) -> Option<&domain::agent_release::AgentVersion> {
        self.config.offered_agent.as_ref()
    }

    /// Applies an owner's action (pause, resume, remove) to one of their devices.
    async fn owner_event(
        &self,
        owner: &WalletAddress,
        device_id: &str,
        event: DeviceEvent,
        now: UnixMillis,
    ) -> Result<Transition, Error> {
        let mut tx = self.store.begin_write().await?;
        self.check_owner(&mut tx, owner, device_id).await?;
        let transition = apply_event(&mut tx, device_id, &event, now).await?;
        if event == DeviceEvent::RemovedByOwner {
            // A removed device's agent must not call in again.
            sqlx::query("UPDATE devices SET credential_hash = NULL WHERE id = $1")
                .bind(device_id)
                .execute(&mut *tx)
                .await?;
            // No proof will ever come for the rewards it holds: they go back to the pool
            // rather than stay held for ever (a removal cannot dodge a proof).
            crate::rewards::settle_held(
                &mut tx,
                device_id,
                &format!("removal-{device_id}"),
                false,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        mirror(&self.live, &self.index, device_id, &transition, now);
        Ok(transition)
    }

    /// Applies an owner's action; returns what happened, in words.
    pub async fn act(
        &self,
        owner: &WalletAddress,
        device_id: &str,
        action: OwnerAction,
        now: UnixMillis,
    ) -> Result<String, Error> {
        Ok(match action {
            OwnerAction::Pause => self.pause(owner, device_id, now).await?.reason,
            OwnerAction::Resume => self.resume(owner, device_id, now).await?.reason,
            OwnerAction::Remove => self.remove(owner, device_id, now).await?.reason,
            OwnerAction::RevokeCredential => {
                self.revoke_credential(owner, device_id, now).await?;
                "agent credential revoked; the agent stops at its next call".to_owned()
            }
        })
    }

    pub async fn pause(
        &self,
        owner: &WalletAddress,
        device_id: &str,
        now: UnixMillis,
    ) -> Result<Transition, Error> {
        self.owner_event(owner, device_id, DeviceEvent::PausedByOwner, now)
            .await
    }

    pub async fn resume(
        &self,
        owner: &WalletAddress,
        device_id: &str,
        now: UnixMillis,
    ) -> Result<Transition, Error> {
        self.owner_event(owner, device_id, DeviceEvent::ResumedByOwner, now)
            .await
    }

    /// Removes the device for good (refused while a cluster hires it) and ends its credential.
    pub async fn remove(
        &self,
        owner: &WalletAddress,
        device_id: &str,
        now: UnixMillis,
    ) -> Result<Transition, Error> {
        self.owner_event(owner, device_id, DeviceEvent::RemovedByOwner, now)
            .await
    }

    /// Ends the agent's credential: its next call is refused and it stops. The device stays
    /// listed and goes down when the heartbeats stop.
    pub async fn revoke_credential(
        &self,
        owner: &WalletAddress,
        device_id: &str,
        now: UnixMillis,
    ) -> Result<(), Error> {
        let mut tx = self.store.begin_write().await?;
        self.check_owner(&mut tx, owner, device_id).await?;
        let revoked = sqlx::query(
            "UPDATE devices SET credential_hash = NULL WHERE id = $1 AND credential_hash IS NOT NULL",
        )
        .bind(device_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if revoked == 0 {
            return Err(Error::Conflict(
                "this device has no active agent credential".into(),
            ));
        }
        record_event(
            &mut tx,
            device_id,
            now,
            DeviceEventKind::Credential,
            None,
            "agent credential revoked by the owner",
        )
        .await?;
        crate::replicas::record_change(&mut tx, device_id, now).await?;
        tx.commit().await?;
        self.live.with(device_id, |d| d.credential_digest = None);
        Ok(())
    }

    /// Renames one of the owner's devices; returns the name as stored (trimmed).
    pub async fn rename(
        &self,
        owner: &WalletAddress,
        device_id: &str,
        name: &str,
    ) -> Result<String, Error> {
        let name = valid_device_name(name).map_err(Error::Invalid)?;
        let renamed = sqlx::query(
            "UPDATE devices SET name = $1 WHERE id = $2 AND owner_wallet = $3 \
             AND status <> 'terminated'",
        )
        .bind(&name)
        .bind(device_id)
        .bind(owner.as_str())
        .execute(self.store.pool())
        .await?
        .rows_affected();
        if renamed == 0 {
            return Err(not_yours(device_id));
        }
        Ok(name)
    }

    /// What the live fleet knows and the database may not have yet: online time merged since
    /// the last flush, and the last heartbeat taken.
    fn unwritten(&self, device_id: &str) -> (i64, Option<UnixMillis>) {
        self.live
            .with(device_id, |d| {
                (
                    d.unflushed.iter().map(|u| u.online_ms).sum(),
                    d.last_heartbeat.map(UnixMillis),
                )
            })
            .unwrap_or((0, None))
    }

    async fn check_owner(
        &self,
        conn: &mut AnyConnection,
        owner: &WalletAddress,
        device_id: &str,
    ) -> Result<(), Error> {
        IdKind::Device.check(device_id).map_err(Error::NotFound)?;
        sqlx::query("SELECT 1 FROM devices WHERE id = $1 AND owner_wallet = $2")
            .bind(device_id)
            .bind(owner.as_str())
            .fetch_optional(conn)
            .await?
            .map(|_| ())
            .ok_or_else(|| not_yours(device_id))
    }
}

/// Whether an enrolment is held to the per-wallet limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limits {
    PerWallet,
    None,
}

/// Refuses a new enrolment when `owner` has [`MAX_AWAITING_AGENT`] devices waiting for their
/// agent or added [`MAX_ENROLMENTS_PER_HOUR`] in the last hour: placeholders cost the network
/// nothing to make, so a wallet may not make them without bound.
async fn enrolment_allowed(
    conn: &mut AnyConnection,
    owner: &WalletAddress,
    now: UnixMillis,
) -> Result<(), Error> {
    let row = sqlx::query(
        "SELECT \
           CAST(COALESCE(SUM(CASE WHEN used_at IS NULL AND expires_at > $2 THEN 1 ELSE 0 END), 0) \
             AS BIGINT) AS awaiting, \
           CAST(COALESCE(SUM(CASE WHEN created_at > $3 THEN 1 ELSE 0 END), 0) AS BIGINT) AS recent \
         FROM device_registrations WHERE owner_wallet = $1",
    )
    .bind(owner.as_str())
    .bind(now.0)
    .bind(now.0 - 3_600_000)
    .fetch_one(&mut *conn)
    .await?;
    let awaiting: i64 = row.try_get("awaiting")?;
    if awaiting >= MAX_AWAITING_AGENT {
        return Err(Error::Conflict(format!(
            "{awaiting} of your devices are waiting for their agent (at most \
             {MAX_AWAITING_AGENT}); start their agents, or let their tokens expire, first"
        )));
    }
    let recent: i64 = row.try_get("recent")?;
    if recent >= MAX_ENROLMENTS_PER_HOUR {
        return Err(Error::Conflict(format!(
            "you added {recent} devices in the last hour (at most {MAX_ENROLMENTS_PER_HOUR}); \
             try again later"
        )));
    }
    Ok(())
}

fn not_yours(device_id: &str) -> Error {
    Error::NotFound(format!("you have no device '{device_id}'"))
}

const SUMMARY_COLUMNS: &str = concat!(
    "id, name, kind, status, ",
    flag_sql!("verified"),
    ", gpu_model, gpu_count, country, tier, ",
    flag_sql!("simulated"),
    ", last_heartbeat_at, created_at, agent_version"
);

/// A row selected with [`SUMMARY_COLUMNS`], with the device's online time in the uptime window,
/// its agent's build compared with the one the server `offered`.
fn owned_device(
    row: &AnyRow,
    online_ms: i64,
    now: UnixMillis,
    offered: Option<&domain::agent_release::AgentVersion>,
) -> Result<OwnedDevice, Error> {
    let reported: Option<String> = row.try_get("agent_version")?;
    Ok(OwnedDevice {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: enum_in(row, "kind", DeviceKind::parse)?,
        status: enum_in(row, "status", DeviceStatus::parse)?,
        verified: flag(row, "verified")?,
        gpu_model: row.try_get("gpu_model")?,
        gpu_count: row.try_get("gpu_count")?,
        country: row.try_get("country")?,
        tier: optional_enum_in(row, "tier", ConnectivityTier::parse)?,
        simulated: flag(row, "simulated")?,
        last_heartbeat_at: row
            .try_get::<Option<i64>, _>("last_heartbeat_at")?
            .map(UnixMillis),
        uptime_30d_permille: uptime_permille(
            online_ms,
            UnixMillis(row.try_get("created_at")?),
            now,
        ),
        earned: domain::money::MicroUsd::ZERO,
        agent_outdated: match (offered, reported) {
            (Some(offered), Some(reported)) => {
                domain::agent_release::is_outdated(&reported, offered)
            }
            _ => false,
        },
    })
}
