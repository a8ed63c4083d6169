//! The fleet across replicas (issue 16): which replica serves each device, devices taken over
//! from a replica that died, and devices changed through other replicas mirrored here.
//!
//! Liveness comes from shared truth. The replica that hears a device's agent claims it in the
//! database (`devices.served_by`, written in batches when an agent arrives, not per heartbeat);
//! only the serving replica's silence marks a device down, and the update is conditional on the
//! claim, so an agent that moved to another replica is never marked down by the one it left.
//! A replica that stops renewing its row is dead: once the down window has passed since its
//! last renewal, the leader marks down what it served and nobody claimed again.

use std::net::IpAddr;

use domain::device_status::DeviceEvent;
use domain::fleet::DeviceStatus;
use domain::time::UnixMillis;
use sqlx::Row;

use super::rebuild::{indexed_device, Interner, LIVE_COLUMNS};
use super::AgentService;
use crate::lifecycle::{apply_event_if_served_by, mirror};
use crate::replicas::FeedPosition;
use crate::rows::enum_in;
use crate::Error;

/// Changes one pass of the feed applies at most; the rest come in the next pass.
const CHANGES_PER_PASS: u32 = 2_000;

impl AgentService {
    /// This replica began to hear `device_id` (from `address`): it is claimed at the next
    /// [`AgentService::write_claims`].
    pub(super) fn note_heard(&self, device_id: &str, address: Option<IpAddr>) {
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(device_id.to_owned(), address);
    }

    /// Writes the claims noted since the last call: this replica serves these devices now,
    /// heard from these addresses. Many devices per statement; what fails is noted again.
    /// Returns how many were claimed.
    pub async fn write_claims(&self) -> Result<usize, Error> {
        let taken: Vec<(String, Option<IpAddr>)> =
            std::mem::take(&mut *self.claims.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        if taken.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.write_claim_rows(&taken).await {
            let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
            for (id, address) in taken {
                // A newer note (heard again meanwhile) wins.
                claims.entry(id).or_insert(address);
            }
            return Err(e);
        }
        Ok(taken.len())
    }

    async fn write_claim_rows(&self, taken: &[(String, Option<IpAddr>)]) -> Result<(), Error> {
        let me = self.replicas.id();
        let mut tx = self.store.begin_write().await?;
        for chunk in taken.chunks(self.store.rows_per_statement(3)) {
            let mut sql =
                String::from("UPDATE devices SET served_by = $1, last_address = COALESCE(CASE id");
            for i in 0..chunk.len() {
                sql.push_str(&format!(" WHEN ${} THEN ${}", 2 * i + 2, 2 * i + 3));
            }
            sql.push_str(" END, last_address) WHERE id IN (");
            let ids: Vec<String> = (0..chunk.len())
                .map(|i| format!("${}", 2 * chunk.len() + i + 2))
                .collect();
            sql.push_str(&ids.join(", "));
            sql.push(')');
            let mut query = sqlx::query(&sql).bind(me);
            for (id, address) in chunk {
                query = query.bind(id.as_str()).bind(address.map(|a| a.to_string()));
            }
            for (id, _) in chunk {
                query = query.bind(id.as_str());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Of `silent` (devices this replica watched and has not heard for the down window), the
    /// ones it still serves, with what the database says serves them (this replica, or none
    /// yet when its claim is still to be written). The others moved to another replica: this
    /// one stops watching them and forgets their open challenge (the new replica answers for
    /// them now).
    pub(super) async fn still_served(
        &self,
        silent: Vec<String>,
    ) -> Result<Vec<(String, Option<String>)>, Error> {
        let me = self.replicas.id();
        let mut served = Vec::with_capacity(silent.len());
        for chunk in silent.chunks(self.store.rows_per_statement(1)) {
            let sql = format!(
                "SELECT id, served_by FROM devices WHERE id IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(self.store.pool()).await? {
                let id: String = row.try_get("id")?;
                let by: Option<String> = row.try_get("served_by")?;
                if by.as_deref().is_none_or(|by| by == me) {
                    served.push((id, by));
                } else {
                    tracing::info!(device = %id, by = by.as_deref().unwrap_or(""), "device moved to another replica");
                    self.live.with(&id, |d| {
                        d.watched = false;
                        d.challenge = None;
                    });
                }
            }
        }
        Ok(served)
    }

    /// Marks `device_id` down for its silence, only while the database still says it is
    /// served by `served_by` (a claim by another replica meanwhile wins).
    pub(super) async fn mark_silent(
        &self,
        device_id: &str,
        served_by: Option<&str>,
        now: UnixMillis,
    ) -> Result<(), Error> {
        let mut tx = self.store.begin_write().await?;
        let t = apply_event_if_served_by(
            &mut tx,
            device_id,
            &DeviceEvent::HeartbeatsMissed,
            now,
            served_by,
        )
        .await?;
        tx.commit().await?;
        mirror(&self.live, &self.index, device_id, &t, now);
        tracing::info!(device = device_id, status = %t.to.status, reason = %t.reason, "device status changed");
        Ok(())
    }

    /// The leader's pass over devices no live replica serves: served by a replica that has not
    /// renewed its row for the down window, or never claimed. Each is marked down unless a
    /// replica claims it first (the update is conditional on the claim it read). Nothing is
    /// judged within a down window of this replica's start, so agents have that long to find
    /// a live replica. Returns how many devices went down.
    pub async fn take_over_orphans(&self, now: UnixMillis) -> Result<usize, Error> {
        let down_after_ms = self.config.down_after_secs * 1000;
        if now.0 - self.replicas.started_at().0 < down_after_ms {
            return Ok(0);
        }
        let dead: Vec<String> = sqlx::query_scalar("SELECT id FROM replicas WHERE renewed_at < $1")
            .bind(now.0 - down_after_ms)
            .fetch_all(self.store.pool())
            .await?;
        let mut orphans: Vec<(String, Option<String>)> = Vec::new();
        let online = "status IN ('pending', 'idle', 'hired') AND agent_version IS NOT NULL";
        for chunk in dead.chunks(self.store.rows_per_statement(1)) {
            let sql = format!(
                "SELECT id, served_by FROM devices WHERE {online} AND served_by IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(self.store.pool()).await? {
                orphans.push((row.try_get("id")?, row.try_get("served_by")?));
            }
        }
        let unclaimed: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT id FROM devices WHERE {online} AND served_by IS NULL"
        ))
        .fetch_all(self.store.pool())
        .await?;
        orphans.extend(unclaimed.into_iter().map(|id| (id, None)));
        let mut changed = 0;
        for (device_id, served_by) in orphans {
            // Heard here lately, with its claim still to be written: not an orphan.
            let heard_here = self
                .live
                .with(&device_id, |d| {
                    d.watched && now.0 - d.last_seen <= down_after_ms
                })
                .unwrap_or(false);
            if heard_here {
                continue;
            }
            match self
                .mark_silent(&device_id, served_by.as_deref(), now)
                .await
            {
                Ok(()) => changed += 1,
                Err(Error::Conflict(why)) => {
                    tracing::debug!(device = %device_id, %why, "orphan claimed or changed meanwhile")
                }
                Err(e) => return Err(e),
            }
        }
        if changed > 0 {
            tracing::info!(devices = changed, "devices of dead replicas marked down");
        }
        Ok(changed)
    }

    /// Mirrors the devices the change feed names after `position` (changed through any
    /// replica, this one included: mirroring is idempotent) into the live fleet and the fleet
    /// index, with their assignments. Returns how many devices were mirrored.
    pub async fn follow_changes(
        &self,
        position: &mut FeedPosition,
        now: UnixMillis,
    ) -> Result<usize, Error> {
        let changes = self
            .replicas
            .changes_since(position.last, now, CHANGES_PER_PASS)
            .await?;
        let devices = position.take_new(&changes);
        for device_id in &devices {
            self.refresh(device_id, now).await?;
        }
        Ok(devices.len())
    }

    /// Reads `device_id` again and mirrors what the database says of it: status, verification,
    /// reason, credential (a revocation), tier and place in the index, and its assignment. What
    /// only this replica knows (heartbeats merged, the open challenge) stays.
    async fn refresh(&self, device_id: &str, now: UnixMillis) -> Result<(), Error> {
        let row = sqlx::query(&format!("{LIVE_COLUMNS} WHERE id = $1"))
            .bind(device_id)
            .fetch_optional(self.store.pool())
            .await?;
        let gone = match &row {
            None => true,
            Some(row) => enum_in(row, "status", DeviceStatus::parse)? == DeviceStatus::Terminated,
        };
        if gone {
            self.live.remove(device_id);
            self.index.remove(device_id);
            return Ok(());
        }
        let row = row.expect("checked above");
        let agent_run = row.try_get::<Option<&str>, _>("agent_version")?.is_some();
        let (_, fresh) = self.live_device(&row, now, &mut Interner::default())?;
        self.index
            .upsert(device_id, &indexed_device(&row, &fresh, agent_run)?);
        let known = self
            .live
            .with(device_id, |d| {
                d.status = fresh.status;
                d.verified = fresh.verified;
                d.reason = fresh.reason.clone();
                d.status_changed_at = fresh.status_changed_at;
                d.credential_digest = fresh.credential_digest;
                d.consecutive_failures = fresh.consecutive_failures;
                d.measured_at = fresh.measured_at;
            })
            .is_some();
        if !known && agent_run {
            self.live.insert(device_id.to_owned(), fresh);
        }
        self.provisioning.reload_assignment(device_id).await
    }
}

/// `$1, $2, …, $count`.
fn placeholders(count: usize) -> String {
    let marks: Vec<String> = (1..=count).map(|i| format!("${i}")).collect();
    marks.join(", ")
}
