//! Read models of the renter's clusters: summaries, the cluster page, its utilisation chart,
//! and the hire earnings of a provider's devices.

use domain::cluster::{
    ClusterDetail, ClusterEventLine, ClusterKind, ClusterMember, ClusterRole, ClusterStatus,
    ClusterSummary, HireEarning, PaymentMethod, Purpose,
};
use domain::fleet::ConnectivityTier;
use domain::ledger::Account;
use domain::money::{MicroUsd, TokenPrice};
use domain::time::UnixMillis;
use domain::uptime::{utilisation_by_hour, HourlyUptime, UtilisationHour};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::settle::active_members;
use super::{split_countries, ProvisioningService};
use crate::hires;
use crate::ledger::usdc_in;
use crate::live::HOUR_MS;
use crate::rows::json_in;
use crate::rows::{self, enum_in, money_in, optional_enum_in, u32_in};
use crate::uptime::uptime_hours;
use crate::Error;

/// Hours of utilisation the cluster page charts.
pub(super) const UTILISATION_HOURS: i64 = 48;

pub(super) const SUMMARY_COLUMNS: &str =
    "id, name, kind, hardware, units, status, status_reason, hours, \
     charged, created_at, running_at, ends_at, finished_at, user_id, escrowed, refunded, rate, \
     purpose, countries, min_tier, payment, workload, token_price, notebook_token, tunnel_bytes, \
     access_token_made_at";

/// The token price a cluster was paid at; None for clusters paid in USDC.
pub(super) fn token_price_in(row: &AnyRow) -> Result<Option<TokenPrice>, Error> {
    row.try_get::<Option<i64>, _>("token_price")?
        .map(|micros| TokenPrice::new(MicroUsd::from_micros(micros)))
        .transpose()
        .map_err(|e| rows::corrupt("token_price", e))
}

pub(super) fn summary_of(row: &AnyRow) -> Result<ClusterSummary, Error> {
    Ok(ClusterSummary {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: enum_in(row, "kind", ClusterKind::parse)?,
        hardware: row.try_get("hardware")?,
        units: u32_in(row, "units")?,
        status: enum_in(row, "status", ClusterStatus::parse)?,
        status_reason: row.try_get("status_reason")?,
        hours: u32_in(row, "hours")?,
        charged: money_in(row, "charged")?,
        created_at: row.try_get("created_at")?,
        running_at: row.try_get("running_at")?,
        ends_at: row.try_get("ends_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

impl ProvisioningService {
    pub(super) async fn by_key(
        &self,
        user_id: i64,
        key: &str,
    ) -> Result<Option<ClusterSummary>, Error> {
        let row = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM clusters WHERE user_id = $1 AND idempotency_key = $2"
        ))
        .bind(user_id)
        .bind(key)
        .fetch_optional(self.store.pool())
        .await?;
        row.as_ref().map(summary_of).transpose()
    }

    pub(super) async fn summary_in(
        &self,
        conn: &mut AnyConnection,
        user_id: i64,
        id: &str,
    ) -> Result<ClusterSummary, Error> {
        summary_of(&cluster_row(conn, user_id, id).await?)
    }

    /// The renter's clusters, newest first, optionally with one status and a name/id search.
    pub async fn clusters_of(
        &self,
        user_id: i64,
        status: Option<ClusterStatus>,
        search: &str,
    ) -> Result<Vec<ClusterSummary>, Error> {
        let search = search.trim().to_lowercase();
        let rows = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM clusters WHERE user_id = $1 \
               AND ($2 = '' OR status = $2) \
               AND ($3 = '' OR lower(name) LIKE $4 OR id = $3) \
             ORDER BY created_at DESC, id LIMIT 500"
        ))
        .bind(user_id)
        .bind(status.map_or("", ClusterStatus::as_str))
        .bind(&search)
        .bind(format!("%{search}%"))
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(summary_of).collect()
    }

    /// Everything the cluster page shows; other renters' clusters are not found.
    pub async fn cluster(
        &self,
        user_id: i64,
        id: &str,
        now: UnixMillis,
    ) -> Result<ClusterDetail, Error> {
        let mut conn = self.store.pool().acquire().await?;
        let row = cluster_row(&mut conn, user_id, id).await?;
        let summary = summary_of(&row)?;
        let refunded = money_in(&row, "refunded")?;
        let escrow = usdc_in(&mut conn, &Account::ClusterEscrow(id.to_owned())).await?;
        let accrued = match (summary.status, summary.running_at, summary.ends_at) {
            (ClusterStatus::Running, Some(start), Some(end)) => active_members(&mut conn, id)
                .await?
                .iter()
                .map(|m| m.due(start, now.0, end).micros())
                .sum(),
            _ => 0,
        };
        let accrued = MicroUsd::from_micros(accrued);
        // Fees, settled pay and what the devices earned since they were last settled.
        let spent =
            summary.charged.micros() - refunded.micros() - escrow.micros() + accrued.micros();
        let members = sqlx::query(
            "SELECT cd.device_id, cd.role, cd.units, d.country, d.tier, d.status, cd.state, \
               cd.joined_at, cd.left_at, d.last_address \
             FROM cluster_devices cd JOIN devices d ON d.id = cd.device_id \
             WHERE cd.cluster_id = $1 ORDER BY cd.left_at IS NOT NULL, cd.role, cd.device_id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            let device_id: String = r.try_get("device_id")?;
            let left_at: Option<i64> = r.try_get("left_at")?;
            Ok(ClusterMember {
                address: match left_at {
                    None => self.address_of(&device_id).or(r.try_get("last_address")?),
                    Some(_) => None,
                },
                device_id,
                role: enum_in(r, "role", ClusterRole::parse)?,
                units: u32_in(r, "units")?,
                country: r.try_get("country")?,
                tier: optional_enum_in(r, "tier", ConnectivityTier::parse)?,
                device_status: enum_in(r, "status", domain::fleet::DeviceStatus::parse)?,
                workload_state: enum_in(r, "state", domain::cluster::WorkloadState::parse)?,
                joined_at: r.try_get("joined_at")?,
                left_at,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
        let events =
            sqlx::query("SELECT at, detail FROM cluster_events WHERE cluster_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| {
                    Ok(ClusterEventLine {
                        at: r.try_get("at")?,
                        detail: r.try_get("detail")?,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
        let utilisation_hours = self.utilisation(&mut conn, &members, now).await?;
        let workload: domain::cluster::Workload = json_in(&row, "workload")?;
        let tunnels = match (&self.config.tunnel_origin, summary.status) {
            (Some(origin), ClusterStatus::Running) => {
                let current: Vec<(&str, ClusterRole)> = members
                    .iter()
                    .filter(|m| m.left_at.is_none())
                    .map(|m| (m.device_id.as_str(), m.role))
                    .collect();
                domain::tunnel::links(origin, id, summary.kind, &workload, &current)
            }
            _ => Vec::new(),
        };
        Ok(ClusterDetail {
            tunnels,
            tunnel_bytes: u64::try_from(row.try_get::<i64, _>("tunnel_bytes")?).unwrap_or(0),
            access_token_made_at: row.try_get("access_token_made_at")?,
            utilisation_hours,
            purpose: enum_in(&row, "purpose", Purpose::parse)?,
            countries: split_countries(row.try_get("countries")?),
            min_tier: optional_enum_in(&row, "min_tier", ConnectivityTier::parse)?,
            payment: enum_in(&row, "payment", PaymentMethod::parse)?,
            token_price: token_price_in(&row)?,
            rate_per_unit_hour: money_in(&row, "rate")?,
            workload,
            notebook_token: row.try_get("notebook_token")?,
            members,
            events,
            cost_so_far: MicroUsd::from_micros(spent),
            remaining: MicroUsd::from_micros(escrow.micros() - accrued.micros()),
            summary,
        })
    }

    /// Mean GPU and CPU utilisation of the cluster's devices per hour over the last
    /// [`UTILISATION_HOURS`], counting each device only for the hours it was in the cluster
    /// (what is still only in memory included).
    pub(super) async fn utilisation(
        &self,
        conn: &mut AnyConnection,
        members: &[ClusterMember],
        now: UnixMillis,
    ) -> Result<Vec<UtilisationHour>, Error> {
        let since = now.0 - UTILISATION_HOURS * HOUR_MS;
        let mut hours: Vec<HourlyUptime> = Vec::new();
        for member in members {
            let first = member.joined_at.div_euclid(HOUR_MS) * HOUR_MS;
            let last = member.left_at.unwrap_or(now.0);
            let served = |h: &HourlyUptime| h.hour >= first && h.hour <= last;
            let written = uptime_hours(&mut *conn, &member.device_id, since.max(first)).await?;
            hours.extend(written.into_iter().filter(|h| served(h)));
            self.live.with(&member.device_id, |d| {
                hours.extend(d.unflushed.iter().filter(|h| served(h)));
            });
        }
        Ok(utilisation_by_hour(&hours, now, UTILISATION_HOURS))
    }

    /// What `owner_wallet`'s devices (or just `device_id`) earned per cluster, newest first.
    pub async fn hires_of(
        &self,
        owner_wallet: &str,
        device_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<HireEarning>, Error> {
        hires::hires(&self.store, owner_wallet, device_id, limit).await
    }

    /// What `owner_wallet`'s devices earned and forfeited in all their hires (before the fee).
    pub async fn hire_totals(&self, owner_wallet: &str) -> Result<(MicroUsd, MicroUsd), Error> {
        hires::totals(&self.store, owner_wallet).await
    }
}

/// The renter's cluster's row; another renter's cluster is not found.
pub(crate) async fn cluster_row(
    conn: &mut AnyConnection,
    user_id: i64,
    id: &str,
) -> Result<AnyRow, Error> {
    domain::id::IdKind::Cluster
        .check(id)
        .map_err(Error::NotFound)?;
    sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM clusters WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::NotFound(format!("no cluster '{id}'")))
}
