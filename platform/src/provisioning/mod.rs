//! Provisioning: quotes with honest fillability, deploys that pay from the renter's balance and
//! hire devices in one transaction, and the cluster lifecycle (running once every agent runs the
//! workload, extend, terminate with a pro-rata refund, expiry, failure with a full refund, a
//! device lost while running).
//!
//! Money: a deploy moves the order's escrow part from `user:<id>:available` to
//! `cluster:<id>:escrow` and the fees to `platform:fees`. The escrow covers the active devices
//! from `running_at` to `ends_at`, spread evenly over time and over units; settling a device
//! (lost, or the end) pays its providers for the time served (less the provider fee) and
//! returns the rest to the renter.

use std::sync::Arc;

use domain::catalog::GpuCatalog;
use domain::cluster::{ClusterKind, ClusterRole};
use domain::money::TokenPrice;
use domain::time::UnixMillis;
use sqlx::AnyConnection;

use crate::index::FleetIndex;
use crate::live::LiveFleet;
use crate::store::Store;
use crate::Error;

mod deploy;
mod lifecycle;
mod place;
mod promo;
mod quote;
mod read;
pub(crate) use read::cluster_row;
mod replace;
mod settle;
mod sweep;

#[derive(Debug, Clone)]
pub struct ProvisioningConfig {
    /// A deploying cluster whose agents do not all run the workload by then fails, refunded.
    pub start_deadline_secs: i64,
    /// Hire earnings of running clusters are paid to providers at least this often.
    pub settle_every_secs: i64,
    /// What the platform takes the network token at for clusters; without it, clusters are paid
    /// in USDC only.
    pub token_price: Option<TokenPrice>,
    /// The tunnel origin renters reach their clusters' ports at (see `domain::tunnel`); None
    /// where the server runs no tunnels.
    pub tunnel_origin: Option<domain::tunnel::TunnelOrigin>,
    /// Whether promotional credit pays only other, established providers (`domain::promo`).
    /// Off only on a demo network, whose devices are simulated and whose credit is play money,
    /// so a visitor can rent the device they just added.
    pub limit_promotional_credit: bool,
}

impl Default for ProvisioningConfig {
    fn default() -> ProvisioningConfig {
        ProvisioningConfig {
            start_deadline_secs: 180,
            settle_every_secs: 3_600,
            token_price: None,
            tunnel_origin: None,
            limit_promotional_credit: true,
        }
    }
}

#[derive(Clone)]
pub struct ProvisioningService {
    store: Store,
    live: Arc<LiveFleet>,
    index: Arc<FleetIndex>,
    catalog: GpuCatalog,
    config: Arc<ProvisioningConfig>,
}

impl ProvisioningService {
    pub(crate) fn new(
        store: Store,
        live: Arc<LiveFleet>,
        index: Arc<FleetIndex>,
        catalog: GpuCatalog,
        config: ProvisioningConfig,
    ) -> ProvisioningService {
        ProvisioningService {
            store,
            live,
            index,
            catalog,
            config: Arc::new(config),
        }
    }
}

pub(super) fn role_of(kind: ClusterKind, position: usize) -> ClusterRole {
    if kind.has_head() && position == 0 {
        ClusterRole::Head
    } else {
        ClusterRole::Worker
    }
}

/// Takes the cluster's row lock for the rest of the transaction, so changes to one cluster
/// (agents' reports, a loss, an extension, the end) happen one after another. Without it, on
/// PostgreSQL two devices reporting "running" at once each count the other as still starting
/// and neither moves the cluster on. (SQLite's write transactions are serial anyway.)
pub(super) async fn lock_cluster(conn: &mut AnyConnection, id: &str) -> Result<(), Error> {
    sqlx::query("UPDATE clusters SET status = status WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) async fn record(
    conn: &mut AnyConnection,
    cluster_id: &str,
    at: UnixMillis,
    detail: &str,
) -> Result<(), Error> {
    sqlx::query("INSERT INTO cluster_events (cluster_id, at, detail) VALUES ($1, $2, $3)")
        .bind(cluster_id)
        .bind(at.0)
        .bind(detail)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) fn split_countries(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}
