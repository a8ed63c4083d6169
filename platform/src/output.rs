//! What workloads print: a device's agent ships its workload's output lines for a cluster that
//! hired it; the cluster's renter reads them (the console's cluster page, `GET
//! /api/v1/cloud/clusters/{id}/logs`). Only the newest [`KEPT_LINES`] of each device and
//! cluster are kept, so no agent can fill the database.

use domain::output::{stored_text, ClusterOutput, OutputLine, OutputShipment, MAX_LINES_PER_READ};
use domain::time::UnixMillis;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::provisioning::cluster_row;
use crate::store::Store;
use crate::Error;

/// Lines kept per device and cluster.
pub const KEPT_LINES: i64 = 2_000;
/// Lines one INSERT writes (two parameters each, well under every backend's limit).
const LINES_PER_INSERT: usize = 250;

#[derive(Clone)]
pub struct OutputService {
    store: Store,
}

fn line_of(row: &AnyRow) -> Result<OutputLine, Error> {
    Ok(OutputLine {
        device_id: row.try_get("device_id")?,
        line: row.try_get("line")?,
        at: row.try_get("at")?,
        text: row.try_get("text")?,
    })
}

impl OutputService {
    pub(crate) fn new(store: Store) -> OutputService {
        OutputService { store }
    }

    /// Stores the lines device `device_id` shipped. Only a device the cluster hired (now or
    /// before: its last lines arrive after the end) writes there; a line already stored (a
    /// retried shipment) stays once; then the device's oldest lines beyond [`KEPT_LINES`] go.
    pub async fn ship(
        &self,
        device_id: &str,
        shipment: &OutputShipment,
        now: UnixMillis,
    ) -> Result<(), Error> {
        shipment.check().map_err(Error::Invalid)?;
        if shipment.lines.is_empty() {
            return Ok(());
        }
        let mut tx = self.store.begin_write().await?;
        let hired = sqlx::query(
            "SELECT 1 AS hired FROM cluster_devices WHERE cluster_id = $1 AND device_id = $2",
        )
        .bind(&shipment.cluster_id)
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?;
        if hired.is_none() {
            return Err(Error::NotFound(format!(
                "cluster '{}' never hired this device",
                shipment.cluster_id
            )));
        }
        // A statement per batch, not per line: shipments come every half second per device,
        // and the write lock is held meanwhile.
        for batch in shipment.lines.chunks(LINES_PER_INSERT) {
            let rows: Vec<String> = (0..batch.len())
                .map(|n| format!("($1, $2, $3, ${}, ${})", 4 + 2 * n, 5 + 2 * n))
                .collect();
            let sql = format!(
                "INSERT INTO workload_output (cluster_id, device_id, at, line, text) VALUES {} \
                 ON CONFLICT (cluster_id, device_id, line) DO NOTHING",
                rows.join(", ")
            );
            let mut insert = sqlx::query(&sql)
                .bind(&shipment.cluster_id)
                .bind(device_id)
                .bind(now.0);
            for line in batch {
                insert = insert.bind(line.id).bind(stored_text(&line.text));
            }
            insert.execute(&mut *tx).await?;
        }
        let oldest_kept: Option<i64> = sqlx::query(
            "SELECT line FROM workload_output WHERE cluster_id = $1 AND device_id = $2 \
             ORDER BY line DESC LIMIT 1 OFFSET $3",
        )
        .bind(&shipment.cluster_id)
        .bind(device_id)
        .bind(KEPT_LINES - 1)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.try_get("line"))
        .transpose()?;
        if let Some(oldest) = oldest_kept {
            sqlx::query(
                "DELETE FROM workload_output WHERE cluster_id = $1 AND device_id = $2 AND line < $3",
            )
            .bind(&shipment.cluster_id)
            .bind(device_id)
            .bind(oldest)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Lines of the renter's cluster after line `since`, oldest first (by device, then line),
    /// of one device or all, at most `limit` (up to [`MAX_LINES_PER_READ`]). Another renter's
    /// cluster is not found.
    pub async fn read(
        &self,
        user_id: i64,
        cluster_id: &str,
        device: Option<&str>,
        since: i64,
        limit: u32,
    ) -> Result<ClusterOutput, Error> {
        let mut conn = self.store.pool().acquire().await?;
        cluster_row(&mut conn, user_id, cluster_id).await?;
        let limit = i64::from(limit.clamp(1, MAX_LINES_PER_READ));
        let rows = sqlx::query(
            "SELECT device_id, line, at, text FROM workload_output \
             WHERE cluster_id = $1 AND ($2 = '' OR device_id = $2) AND line > $3 \
             ORDER BY device_id, line LIMIT $4",
        )
        .bind(cluster_id)
        .bind(device.unwrap_or(""))
        .bind(since)
        .bind(limit + 1)
        .fetch_all(&mut *conn)
        .await?;
        let more = rows.len() as i64 > limit;
        let lines = rows
            .iter()
            .take(limit as usize)
            .map(line_of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClusterOutput { lines, more })
    }

    /// The last `per_device` lines of each device of the renter's cluster, oldest first.
    pub async fn tail(
        &self,
        user_id: i64,
        cluster_id: &str,
        per_device: u32,
    ) -> Result<Vec<OutputLine>, Error> {
        let mut conn = self.store.pool().acquire().await?;
        cluster_row(&mut conn, user_id, cluster_id).await?;
        let devices = sqlx::query(
            "SELECT device_id FROM cluster_devices WHERE cluster_id = $1 ORDER BY device_id",
        )
        .bind(cluster_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut lines = Vec::new();
        for device in devices {
            let device: String = device.try_get("device_id")?;
            let mut last = sqlx::query(
                "SELECT device_id, line, at, text FROM workload_output \
                 WHERE cluster_id = $1 AND device_id = $2 ORDER BY line DESC LIMIT $3",
            )
            .bind(cluster_id)
            .bind(&device)
            .bind(i64::from(per_device))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(line_of)
            .collect::<Result<Vec<_>, _>>()?;
            last.reverse();
            lines.extend(last);
        }
        Ok(lines)
    }
}
