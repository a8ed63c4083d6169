//! The periodic pass over clusters: start deadlines, paid time that ran out, hired devices that
//! went down, and hire earnings due for settlement.

use domain::cluster::ClusterEvent;
use domain::time::UnixMillis;
use sqlx::Row;

use super::ProvisioningService;
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
            "SELECT c.id, c.status, cd.device_id, d.status, d.status_changed_at FROM cluster_devices cd \
             JOIN clusters c ON c.id = cd.cluster_id JOIN devices d ON d.id = cd.device_id \
             WHERE c.status IN ('deploying', 'running') AND cd.left_at IS NULL AND d.status <> 'hired'",
        )
        .fetch_all(self.store.pool())
        .await?;
        for row in gone {
            let (id, status, device): (String, String, String) = (
                row.try_get("id")?,
                row.try_get("status")?,
                row.try_get("device_id")?,
            );
            let why = format!("device {device} is {}", row.try_get::<String, _>("status")?);
            let outcome = if status == "deploying" {
                self.finish(&id, ClusterEvent::StartFailed { why }, now)
                    .await
            } else {
                let down_at = UnixMillis(row.try_get("status_changed_at")?);
                self.lose(&id, &device, &why, down_at, now).await
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
