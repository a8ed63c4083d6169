//! Registration (a single-use token exchanged for a long-lived credential) and the bearer
//! credential check of every later call.

use domain::agent_protocol::{RegisterRequest, Registered};
use domain::device_status::DeviceEvent;
use domain::fleet::{DeviceKind, DeviceStatus};
use domain::hardware::Classification;
use domain::time::UnixMillis;
use domain::worker::DeviceEventKind;
use sqlx::{AnyConnection, Row};

use super::rebuild::{indexed_device, Interner, LIVE_COLUMNS};
use super::{checked_agent_version, AgentService};
use crate::index::IndexedDevice;
use crate::lifecycle::{apply_event, record_event};
use crate::live::LiveDevice;
use crate::rows::enum_in;
use crate::secret::{hex, random_hex, same_digest, sha256, sha256_hex};
use crate::{AgentRefusal, Error};

impl AgentService {
    /// Exchanges a registration token for the device's long-lived credential. The token is
    /// consumed by one conditional update, so a second use (even racing) is refused.
    pub async fn register(
        &self,
        request: RegisterRequest,
        now: UnixMillis,
    ) -> Result<Registered, Error> {
        let version = checked_agent_version(&request.agent_version)?;
        request
            .hardware
            .validate()
            .map_err(|e| Error::Invalid(format!("hardware report: {e}")))?;
        // Before the token is claimed: a refused agent's token still works for a real start.
        if request.simulated && !self.config.accept_simulated {
            return Err(Error::Invalid(
                "this network takes no simulated devices (it is not a demo network): start the \
                 agent without --simulate, on the machine whose hardware it reports"
                    .into(),
            ));
        }
        let mut tx = self.store.begin_write().await?;
        let enrolled = claim_token(&mut tx, request.token.trim(), now).await?;
        let classification = request.hardware.classify(enrolled.kind, &self.catalog);
        let (gpu_model, gpu_count) = match &classification {
            Classification::Supported {
                gpu_model,
                gpu_count,
            } => (gpu_model.clone(), *gpu_count),
            Classification::Unsupported { .. } => (None, request.hardware.gpus.len() as i64),
        };
        let device_id = enrolled.device_id.clone();
        let credential = format!("{device_id}.{}", random_hex(32));
        let credential_digest = sha256(&credential);
        let new_device = NewAgentDevice {
            enrolled: &enrolled,
            request: &request,
            version,
            gpu_model: gpu_model.as_deref(),
            gpu_count,
            credential_hash: &hex(&credential_digest),
        };
        let (status, reason) = insert_device(&mut tx, &new_device, classification, now).await?;
        tx.commit().await?;
        self.index.upsert(
            &device_id,
            &IndexedDevice {
                kind: enrolled.kind,
                gpu_model: gpu_model.as_deref(),
                gpu_count,
                country: &enrolled.country,
                tier: None,
                status,
                verified: false,
                owner: &enrolled.owner,
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
                ..LiveDevice::new(status, enrolled.kind, gpu_count, now.0)
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

    pub(super) async fn load_one(&self, device_id: &str, now: UnixMillis) -> Result<(), Error> {
        let row = sqlx::query(&format!("{LIVE_COLUMNS} WHERE id = $1"))
            .bind(device_id)
            .fetch_optional(self.store.pool())
            .await?
            .ok_or_else(|| AgentRefusal::UnknownDevice(device_id.to_owned()))?;
        if enum_in(&row, "status", DeviceStatus::parse)? == DeviceStatus::Terminated {
            return Err(AgentRefusal::DeviceRemoved.into());
        }
        if row.try_get::<Option<String>, _>("agent_version")?.is_none() {
            // A demo device: no agent ever ran it.
            return Err(AgentRefusal::CredentialRejected.into());
        }
        let (id, device) = self.live_device(&row, now, &mut Interner::default())?;
        self.index
            .upsert(&id, &indexed_device(&row, &device, true)?);
        self.live.insert(id, device);
        Ok(())
    }
}

/// What the Worker tab enrolled for a device, read back when its agent's token is used.
struct Enrolled {
    device_id: String,
    owner: String,
    name: String,
    kind: DeviceKind,
    country: String,
}

/// Consumes a registration token with one conditional update and returns what it enrolled; a
/// token unknown, used or expired is refused with which of the three it was.
async fn claim_token(
    conn: &mut AnyConnection,
    token: &str,
    now: UnixMillis,
) -> Result<Enrolled, Error> {
    let token_hash = sha256_hex(token);
    let claimed = sqlx::query(
        "UPDATE device_registrations SET used_at = $1 \
         WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
         RETURNING device_id, owner_wallet, name, kind, country",
    )
    .bind(now.0)
    .bind(&token_hash)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = claimed else {
        let found = sqlx::query("SELECT used_at FROM device_registrations WHERE token_hash = $1")
            .bind(&token_hash)
            .fetch_optional(&mut *conn)
            .await?;
        let refusal = match found {
            None => AgentRefusal::TokenUnknown,
            Some(row) if row.try_get::<Option<i64>, _>("used_at")?.is_some() => {
                AgentRefusal::TokenUsed
            }
            Some(_) => AgentRefusal::TokenExpired,
        };
        return Err(refusal.into());
    };
    Ok(Enrolled {
        device_id: row.try_get("device_id")?,
        owner: row.try_get("owner_wallet")?,
        name: row.try_get("name")?,
        kind: DeviceKind::parse(row.try_get("kind")?).map_err(|e| Error::Corrupt(e.to_string()))?,
        country: row.try_get("country")?,
    })
}

/// A device about to be written by its agent's registration.
struct NewAgentDevice<'a> {
    enrolled: &'a Enrolled,
    request: &'a RegisterRequest,
    version: &'a str,
    gpu_model: Option<&'a str>,
    gpu_count: i64,
    credential_hash: &'a str,
}

/// Writes the device row and its first history line; hardware the catalog does not support
/// moves it on at once. Returns the status and reason it ends in.
async fn insert_device(
    conn: &mut AnyConnection,
    new: &NewAgentDevice<'_>,
    classification: Classification,
    now: UnixMillis,
) -> Result<(DeviceStatus, String), Error> {
    let reason = "registered; waiting for the proof-of-work verification";
    let hw = &new.request.hardware;
    let device_id = new.enrolled.device_id.as_str();
    sqlx::query(
        "INSERT INTO devices (id, owner_wallet, name, os, kind, gpu_model, gpu_count, cpu_model, \
           cpu_cores, ram_gb, disk_gb, country, status, verified, simulated, created_at, \
           last_heartbeat_at, reported_gpus, agent_version, credential_hash, status_reason, \
           status_changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', $13, $14, $15, \
           $16, $17, $18, $19, $20, $21)",
    )
    .bind(device_id)
    .bind(&new.enrolled.owner)
    .bind(&new.enrolled.name)
    .bind(hw.os.as_str())
    .bind(new.enrolled.kind.as_str())
    .bind(new.gpu_model)
    .bind(new.gpu_count)
    .bind(hw.cpu_model.trim())
    .bind(i64::from(hw.cpu_cores))
    .bind(i64::from(hw.ram_gb))
    .bind(i64::from(hw.disk_gb))
    .bind(&new.enrolled.country)
    .bind(false)
    .bind(new.request.simulated)
    .bind(now.0)
    .bind(now.0)
    .bind(hw.gpu_summary())
    .bind(new.version)
    .bind(new.credential_hash)
    .bind(reason)
    .bind(now.0)
    .execute(&mut *conn)
    .await?;
    let detail = format!(
        "registered by agent {}{}",
        new.version,
        if new.request.simulated {
            " (simulated hardware)"
        } else {
            ""
        }
    );
    record_event(
        conn,
        device_id,
        now,
        DeviceEventKind::Status,
        Some((None, DeviceStatus::Pending)),
        &detail,
    )
    .await?;
    crate::replicas::record_change(conn, device_id, now).await?;
    match classification {
        Classification::Unsupported { reported } => {
            let event = DeviceEvent::HardwareUnsupported { reported };
            let t = apply_event(conn, device_id, &event, now).await?;
            Ok((t.to.status, t.reason))
        }
        Classification::Supported { .. } => Ok((DeviceStatus::Pending, reason.to_owned())),
    }
}
