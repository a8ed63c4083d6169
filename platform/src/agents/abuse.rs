//! Abuse: idle-cap violations recorded and counted, the block for abuse they lead to, and the
//! operator's command that lifts a block (the device is then verified again).

use domain::device_status::{DeviceEvent, VIOLATIONS_BEFORE_BLOCK, VIOLATION_WINDOW_MS};
use domain::fleet::DeviceStatus;
use domain::time::UnixMillis;
use domain::worker::DeviceEventKind;
use sqlx::Row;

use super::AgentService;
use crate::lifecycle::stored_status;
use crate::lifecycle::{apply_event, mirror, record_event};
use crate::Error;

impl AgentService {
    /// Records an idle-cap violation (`why`); the [`VIOLATIONS_BEFORE_BLOCK`]th within
    /// [`VIOLATION_WINDOW_MS`] blocks the device for abuse. The block close forfeits the
    /// reward of every hour with a violation (`domain::rewards`).
    pub(super) async fn record_violation(
        &self,
        device_id: &str,
        why: &str,
        now: UnixMillis,
    ) -> Result<(), Error> {
        let mut tx = self.store.begin_write().await?;
        record_event(
            &mut tx,
            device_id,
            now,
            DeviceEventKind::Violation,
            None,
            why,
        )
        .await?;
        let recent: i64 = sqlx::query(
            "SELECT COUNT(*) AS recent FROM device_events \
             WHERE kind = 'violation' AND device_id = $1 AND at > $2",
        )
        .bind(device_id)
        .bind(now.0 - VIOLATION_WINDOW_MS)
        .fetch_one(&mut *tx)
        .await?
        .try_get("recent")?;
        let block = DeviceEvent::BlockedForAbuse {
            reason: format!("{recent} idle-cap violations within a day (the last: {why})"),
        };
        let blocked = if recent >= VIOLATIONS_BEFORE_BLOCK {
            Some(apply_event(&mut tx, device_id, &block, now).await?)
        } else {
            None
        };
        tx.commit().await?;
        tracing::warn!(device = device_id, %why, recent, "idle-cap violation");
        if let Some(t) = &blocked {
            mirror(&self.live, &self.index, device_id, t, now);
            tracing::warn!(device = device_id, reason = %t.reason, "device blocked for abuse");
        }
        Ok(())
    }

    /// Lifts the block of a blocked device (for abuse or failed verification): it goes back to
    /// pending and must pass verification again. An operator's command; servers that hold the
    /// device in memory learn it from its next heartbeats (see [`Self::reload_if_unblocked`]).
    pub async fn unblock(&self, device_id: &str, now: UnixMillis) -> Result<String, Error> {
        let mut tx = self.store.begin_write().await?;
        let t = apply_event(&mut tx, device_id, &DeviceEvent::UnblockedByOperator, now).await?;
        // The last pass no longer counts: the device is challenged at once, here or wherever
        // it is loaded from the database.
        sqlx::query(
            "UPDATE devices SET verification_failures = 0, verified_at = NULL WHERE id = $1",
        )
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        mirror(&self.live, &self.index, device_id, &t, now);
        self.live.with(device_id, |d| {
            d.consecutive_failures = 0;
            d.next_challenge_at = now.0;
        });
        tracing::info!(device = device_id, "block lifted by the operator");
        Ok(t.reason)
    }

    /// Reads a blocked device's stored status; if an operator lifted the block (in another
    /// process), loads the device afresh so its agent is challenged again.
    pub(super) async fn reload_if_unblocked(
        &self,
        device_id: &str,
        now: UnixMillis,
    ) -> Result<(), Error> {
        let mut conn = self.store.pool().acquire().await?;
        if stored_status(&mut conn, device_id).await? != DeviceStatus::Blocked {
            self.load_one(device_id, now).await?;
            tracing::info!(
                device = device_id,
                "block lifted elsewhere; device reloaded"
            );
        }
        Ok(())
    }
}
