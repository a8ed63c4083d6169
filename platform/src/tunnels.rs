//! Tunnels' side in the database: whether a caller may open a tunnel (the cluster's renter,
//! while it runs, to a port one of its current devices serves), the cluster's rotatable access
//! token, and the bytes tunnels carried. The connections themselves are the server's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use domain::cluster::{ClusterKind, ClusterRole, ClusterStatus, Workload};
use domain::time::UnixMillis;
use domain::tunnel::{access_link, ports_of, AccessToken, TunnelLink, TunnelOrigin, TunnelPath};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;

use crate::provisioning::cluster_row;
use crate::rows::{enum_in, json_in};
use crate::secret::{random_hex, sha256_hex};
use crate::store::Store;
use crate::Error;

#[derive(Clone)]
pub struct TunnelService {
    store: Store,
    /// The tunnel origin; None when tunnels are not served.
    origin: Option<TunnelOrigin>,
    meters: Arc<Meters>,
}

/// Bytes carried through this replica's tunnels, counted in memory as they pass and added to
/// their clusters by [`TunnelService::flush_meters`] every few seconds, so a connection that
/// stays open (a WebSocket, a notebook's kernel) is metered while it lasts, with one write per
/// cluster per flush however many connections it has.
#[derive(Default)]
struct Meters {
    /// Each open connection's count since the last flush.
    open: Mutex<Vec<(String, Arc<AtomicU64>)>>,
    /// What connections that closed since the last flush counted last.
    closed: Mutex<HashMap<String, u64>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain counts stay consistent whatever panicked while holding them.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One tunnelled connection's byte count, both ways.
pub struct ConnectionMeter {
    cluster_id: String,
    counted: Arc<AtomicU64>,
    meters: Arc<Meters>,
}

impl Meters {
    fn connection(meters: &Arc<Meters>, cluster_id: &str) -> ConnectionMeter {
        let counted = Arc::new(AtomicU64::new(0));
        locked(&meters.open).push((cluster_id.to_owned(), counted.clone()));
        ConnectionMeter {
            cluster_id: cluster_id.to_owned(),
            counted,
            meters: meters.clone(),
        }
    }

    /// Every cluster's bytes since the last take, open connections' and closed ones'.
    fn take(&self) -> HashMap<String, u64> {
        let mut counts = std::mem::take(&mut *locked(&self.closed));
        locked(&self.open).retain(|(cluster_id, counted)| {
            let bytes = counted.swap(0, Ordering::Relaxed);
            if bytes > 0 {
                *counts.entry(cluster_id.clone()).or_default() += bytes;
            }
            // Only this list holds it once its connection has closed.
            Arc::strong_count(counted) > 1
        });
        counts
    }
}

impl ConnectionMeter {
    pub fn count(&self, bytes: u64) {
        self.counted.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Drop for ConnectionMeter {
    fn drop(&mut self) {
        let rest = self.counted.swap(0, Ordering::Relaxed);
        if rest > 0 {
            *locked(&self.meters.closed)
                .entry(std::mem::take(&mut self.cluster_id))
                .or_default() += rest;
        }
    }
}

impl TunnelService {
    pub(crate) fn new(store: Store, origin: Option<TunnelOrigin>) -> TunnelService {
        TunnelService {
            store,
            origin,
            meters: Arc::default(),
        }
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

    /// Whose tunnels `token` opens: the renter of cluster `cluster_id` when the token is its
    /// current access token, then the same checks as for the renter signed in.
    pub async fn authorize_token(&self, token: &str, path: &TunnelPath<'_>) -> Result<(), Error> {
        let shaped = domain::id::IdKind::Cluster.check(path.cluster_id).is_ok();
        if !shaped || !domain::tunnel::is_access_token(token) {
            return Err(Error::AccessTokenRejected);
        }
        let renter: i64 =
            sqlx::query("SELECT user_id FROM clusters WHERE id = $1 AND access_token_sha256 = $2")
                .bind(path.cluster_id)
                .bind(sha256_hex(token))
                .fetch_optional(self.store.pool())
                .await?
                // One answer for a wrong, rotated or malformed token and for a cluster that does not
                // exist, so a guess learns nothing.
                .ok_or(Error::AccessTokenRejected)?
                .try_get("user_id")?;
        self.authorize(renter, path).await
    }

    /// Makes cluster `cluster_id`'s access token anew for its renter `user_id`; the one
    /// before stops working at once. The token is returned this once and never kept, with the
    /// cluster's tunnel links (while it runs) that open with it.
    pub async fn rotate_access_token(
        &self,
        user_id: i64,
        cluster_id: &str,
        now: UnixMillis,
    ) -> Result<AccessToken, Error> {
        if self.origin.is_none() {
            return Err(Error::Conflict(
                "this platform serves no tunnels (--tunnel-listen is off), so an access token \
                 would open nothing"
                    .into(),
            ));
        }
        let mut tx = self.store.begin_write().await?;
        let cluster = cluster_row(&mut tx, user_id, cluster_id).await?;
        let status = enum_in(&cluster, "status", ClusterStatus::parse)?;
        if !status.is_active() {
            return Err(Error::Conflict(format!(
                "cluster '{cluster_id}' is {}: it has no tunnels to open",
                status.as_str()
            )));
        }
        let token = format!("{}{}", domain::tunnel::ACCESS_TOKEN_PREFIX, random_hex(32));
        sqlx::query(
            "UPDATE clusters SET access_token_sha256 = $1, access_token_made_at = $2 \
             WHERE id = $3 AND user_id = $4",
        )
        .bind(sha256_hex(&token))
        .bind(now.0)
        .bind(cluster_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let links = self.links(&mut tx, &cluster, status).await?;
        tx.commit().await?;
        Ok(AccessToken {
            cluster_id: cluster_id.to_owned(),
            links: links
                .into_iter()
                .map(|link| TunnelLink {
                    url: access_link(&link.url, &token),
                    ..link
                })
                .collect(),
            token,
            made_at: now.0,
        })
    }

    /// The cluster's tunnel links now: its current devices' ports while it runs.
    async fn links(
        &self,
        conn: &mut AnyConnection,
        cluster: &AnyRow,
        status: ClusterStatus,
    ) -> Result<Vec<TunnelLink>, Error> {
        let Some(origin) = self
            .origin
            .as_ref()
            .filter(|_| status == ClusterStatus::Running)
        else {
            return Ok(Vec::new());
        };
        let id: String = cluster.try_get("id")?;
        let members = sqlx::query(
            "SELECT device_id, role FROM cluster_devices \
             WHERE cluster_id = $1 AND left_at IS NULL ORDER BY device_id",
        )
        .bind(&id)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|m| {
            Ok((
                m.try_get::<String, _>("device_id")?,
                enum_in(m, "role", ClusterRole::parse)?,
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
        let members: Vec<(&str, ClusterRole)> =
            members.iter().map(|(d, r)| (d.as_str(), *r)).collect();
        let kind = enum_in(cluster, "kind", ClusterKind::parse)?;
        let workload: Workload = json_in(cluster, "workload")?;
        Ok(domain::tunnel::links(
            origin, &id, kind, &workload, &members,
        ))
    }

    /// A meter for a new connection through one of cluster `cluster_id`'s tunnels.
    pub fn meter(&self, cluster_id: &str) -> ConnectionMeter {
        Meters::connection(&self.meters, cluster_id)
    }

    /// Adds what every connection counted since the last flush to its cluster, in one
    /// transaction; on failure the counts wait for the next flush, so nothing is lost.
    pub async fn flush_meters(&self) -> Result<(), Error> {
        let counts = self.meters.take();
        if counts.is_empty() {
            return Ok(());
        }
        let written = self.add_counts(&counts).await;
        if written.is_err() {
            let mut closed = locked(&self.meters.closed);
            for (cluster_id, bytes) in counts {
                *closed.entry(cluster_id).or_default() += bytes;
            }
        }
        written
    }

    async fn add_counts(&self, counts: &HashMap<String, u64>) -> Result<(), Error> {
        let mut tx = self.store.begin_write().await?;
        for (cluster_id, bytes) in counts {
            sqlx::query("UPDATE clusters SET tunnel_bytes = tunnel_bytes + $1 WHERE id = $2")
                .bind(i64::try_from(*bytes).unwrap_or(i64::MAX))
                .bind(cluster_id)
                .execute(&mut *tx)
                .await?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_and_closed_connections_are_counted_once_per_take() {
        let meters = Arc::new(Meters::default());
        let long = Meters::connection(&meters, "cl-1");
        let short = Meters::connection(&meters, "cl-1");
        let other = Meters::connection(&meters, "cl-2");
        long.count(100);
        short.count(20);
        drop(short);
        assert_eq!(
            meters.take(),
            HashMap::from([("cl-1".to_owned(), 120)]),
            "the open connection's bytes so far and the closed one's"
        );
        assert_eq!(locked(&meters.open).len(), 2, "the closed one is forgotten");
        long.count(5);
        other.count(7);
        drop(long);
        assert_eq!(
            meters.take(),
            HashMap::from([("cl-1".to_owned(), 5), ("cl-2".to_owned(), 7)])
        );
        assert!(meters.take().is_empty(), "nothing is counted twice");
        drop(other);
        assert!(meters.take().is_empty());
        assert!(locked(&meters.open).is_empty());
    }
}
