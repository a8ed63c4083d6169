//! The periodic pass over clusters: start deadlines, paid time that ran out, hired devices that
//! went down, and hire earnings due for settlement.

use domain::cluster::{ClusterEvent, ClusterStatus};
use domain::fleet::DeviceStatus;
use domain::time::UnixMillis;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::ProvisioningService;
use crate::rows::enum_in;
use crate::Error;

impl ProvisioningService {
    /// Fails deploying clusters past their start deadline, completes running ones past their
    /// paid time, and handles hired devices that went down. Returns how many changed.
    pub async fn sweep(&self, now: UnixMillis) -> Result<usize, Error> {
        let mut changed = 0;
        let late = self
            .ids_due(
                "SELECT id FROM clusters WHERE status = 'deploying' AND deadline_at <= $1",
                now,
            )
            .await?;
        for id in late {
            let why = format!(
                "not every device ran the workload within {} s",
                self.config.start_deadline_secs
            );
            changed += self.tolerate(
                self.finish(&id, ClusterEvent::StartFailed { why }, now)
                    .await,
            )?;
        }
        let due = self
            .ids_due(
                "SELECT id FROM clusters WHERE status = 'running' AND ends_at <= $1",
                now,
            )
            .await?;
        for id in due {
            changed += self.tolerate(self.finish(&id, ClusterEvent::Expired, now).await)?;
        }
        let gone = sqlx::query(
            "SELECT c.id, c.status AS cluster_status, cd.device_id, d.status AS device_status, \
               d.status_reason, d.status_changed_at, d.last_heartbeat_at FROM cluster_devices cd \
             JOIN clusters c ON c.id = cd.cluster_id JOIN devices d ON d.id = cd.device_id \
             WHERE c.status IN ('deploying', 'running') AND cd.left_at IS NULL AND d.status <> 'hired'",
        )
        .fetch_all(self.store.pool())
        .await?;
        for row in gone {
            let (id, device): (String, String) = (row.try_get("id")?, row.try_get("device_id")?);
            let device_status = enum_in(&row, "device_status", DeviceStatus::parse)?;
            // The device's own reason says why (down, paused, a failed spot check…).
            let reason: String = row.try_get("status_reason")?;
            let why = if reason.is_empty() {
                format!("device {device} is {device_status}")
            } else {
                format!("device {device} is {device_status}: {reason}")
            };
            let outcome = match enum_in(&row, "cluster_status", ClusterStatus::parse)? {
                ClusterStatus::Deploying => {
                    self.finish(&id, ClusterEvent::StartFailed { why }, now)
                        .await
                }
                _ => {
                    let down_at = self.left_service_at(&row, &device, device_status)?;
                    self.lose(&id, &device, &why, down_at, now).await
                }
            };
            changed += self.tolerate(outcome)?;
        }
        let unsettled = self
            .ids_due(
                "SELECT DISTINCT cd.cluster_id FROM cluster_devices cd \
                 JOIN clusters c ON c.id = cd.cluster_id JOIN devices d ON d.id = cd.device_id \
                 WHERE c.status = 'running' AND cd.left_at IS NULL AND d.status = 'hired' \
                   AND COALESCE(cd.settled_at, cd.joined_at) <= $1",
                UnixMillis(now.0 - self.config.settle_every_secs * 1_000),
            )
            .await?;
        for id in unsettled {
            changed += self.tolerate(self.settle(&id, now).await)?;
        }
        Ok(changed)
    }

    /// When a hired device stopped serving: a device that went down did at its last heartbeat
    /// (from this process's memory, else as last written), not when the silence was noticed,
    /// so the renter does not pay for the down-after window; any other change (paused by force,
    /// blocked, removed) when its status changed.
    fn left_service_at(
        &self,
        row: &AnyRow,
        device: &str,
        status: DeviceStatus,
    ) -> Result<UnixMillis, Error> {
        let changed_at: i64 = row.try_get("status_changed_at")?;
        if status != DeviceStatus::Down {
            return Ok(UnixMillis(changed_at));
        }
        let heard = self
            .live
            .with(device, |d| d.last_heartbeat)
            .flatten()
            .or(row.try_get::<Option<i64>, _>("last_heartbeat_at")?);
        Ok(UnixMillis(
            heard.map_or(changed_at, |at| at.min(changed_at)),
        ))
    }

    /// The clusters `sql` selects with `now` as `$1`.
    pub(super) async fn ids_due(&self, sql: &str, now: UnixMillis) -> Result<Vec<String>, Error> {
        Ok(sqlx::query_scalar::<_, String>(sql)
            .bind(now.0)
            .fetch_all(self.store.pool())
            .await?)
    }

    /// A concurrent change (another replica, a report) got there first: not an error.
    pub(super) fn tolerate(&self, outcome: Result<(), Error>) -> Result<usize, Error> {
        match outcome {
            Ok(()) => Ok(1),
            Err(Error::Conflict(why)) => {
                tracing::debug!(%why, "cluster changed concurrently");
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }
}
