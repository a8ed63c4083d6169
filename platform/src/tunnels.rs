//! Tunnels' side in the database: whether a caller may open a tunnel (the cluster's renter,
//! while it runs, to a port one of its current devices serves) and the bytes tunnels carried.
//! The connections themselves are the server's.

use domain::cluster::{ClusterKind, ClusterRole, ClusterStatus, Workload};
use domain::tunnel::{ports_of, TunnelPath};
use sqlx::Row;

use crate::provisioning::cluster_row;
use crate::rows::{enum_in, json_in};
use crate::store::Store;
use crate::Error;

#[derive(Clone)]
pub struct TunnelService {
    store: Store,
}

impl TunnelService {
    pub(crate) fn new(store: Store) -> TunnelService {
        TunnelService { store }
    }

    /// Ok when `user_id` may reach `path`'s port now; otherwise why not (another renter's
    /// cluster is not found, as everywhere).
    pub async fn authorize(&self, user_id: i64, path: &TunnelPath<'_>) -> Result<(), Error> {
        let mut conn = self.store.pool().acquire().await?;
        let cluster = cluster_row(&mut conn, user_id, path.cluster_id).await?;
        let status = enum_in(&cluster, "status", ClusterStatus::parse)?;
        if status != ClusterStatus::Running {
            return Err(Error::Conflict(format!(
                "cluster '{}' is {}: its tunnels are open only while it runs",
                path.cluster_id,
                status.as_str()
            )));
        }
        let member = sqlx::query(
            "SELECT role FROM cluster_devices \
             WHERE cluster_id = $1 AND device_id = $2 AND left_at IS NULL",
        )
        .bind(path.cluster_id)
        .bind(path.device_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "device '{}' is not in cluster '{}' now",
                path.device_id, path.cluster_id
            ))
        })?;
        let role = enum_in(&member, "role", ClusterRole::parse)?;
        let kind = enum_in(&cluster, "kind", ClusterKind::parse)?;
        let workload: Workload = json_in(&cluster, "workload")?;
        let served = ports_of(kind, role, &workload);
        if served.iter().any(|p| p.port == path.port) {
            return Ok(());
        }
        let list: Vec<String> = served.iter().map(|p| p.port.to_string()).collect();
        Err(Error::NotFound(if list.is_empty() {
            format!(
                "device '{}' serves no port in this cluster (its workload declares none)",
                path.device_id
            )
        } else {
            format!(
                "port {} is not one device '{}' serves in this cluster; it serves {}",
                path.port,
                path.device_id,
                list.join(", ")
            )
        }))
    }

    /// Counts `bytes` more carried through the cluster's tunnels.
    pub async fn add_bytes(&self, cluster_id: &str, bytes: u64) -> Result<(), Error> {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        let mut tx = self.store.begin_write().await?;
        sqlx::query("UPDATE clusters SET tunnel_bytes = tunnel_bytes + $1 WHERE id = $2")
            .bind(bytes)
            .bind(cluster_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The cluster's tunnelled bytes (for tests and tools; the cluster page reads them with
    /// the rest of the cluster).
    pub async fn bytes_of(&self, cluster_id: &str) -> Result<u64, Error> {
        let row = sqlx::query("SELECT tunnel_bytes FROM clusters WHERE id = $1")
            .bind(cluster_id)
            .fetch_optional(self.store.pool())
            .await?
            .ok_or_else(|| Error::NotFound(format!("no cluster '{cluster_id}'")))?;
        Ok(u64::try_from(row.try_get::<i64, _>("tunnel_bytes")?).unwrap_or(0))
    }
}
