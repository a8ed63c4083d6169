//! Settling a cluster's money: what each member earned of its budget, payment to providers less
//! the provider fee, refunds to the renter (in the asset the cluster was paid in).

use domain::cluster::{
    ClusterEvent, ClusterKind, ClusterRole, ClusterStatus, Hardware, SecurityCompliance, Workload,
};
use domain::fleet::ConnectivityTier;
use domain::ledger::{Account, Posting, PostingKind, TOKEN_EXCHANGE};
use domain::money::{MicroUsd, TokenPrice};
use domain::pricing::{self};
use domain::time::UnixMillis;
use sqlx::{AnyConnection, Row};

use super::read::token_price_in;
use super::{lock_cluster, split_countries, ProvisioningService};
use crate::ledger::post;
use crate::rows::json_in;
use crate::rows::{enum_in, money_in, optional_enum_in, u32_in};
use crate::store::{flag, flag_sql};
use crate::Error;

impl ProvisioningService {
    /// Pays the providers of a running cluster what its devices (those still hired) earned
    /// since they were last settled, less the provider fee.
    pub(super) async fn settle(&self, id: &str, now: UnixMillis) -> Result<(), Error> {
        let mut tx = self.store.begin_write().await?;
        let cluster = Settling::load(&mut tx, id).await?;
        let (ClusterStatus::Running, Some(running_at)) = (cluster.status, cluster.running_at)
        else {
            return Ok(());
        };
        // A device that went down is settled by `lose`, up to when it went down.
        let hired: Vec<String> = sqlx::query_scalar(
            "SELECT cd.device_id FROM cluster_devices cd JOIN devices d ON d.id = cd.device_id \
             WHERE cd.cluster_id = $1 AND cd.left_at IS NULL AND d.status = 'hired'",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let until = now.0.min(cluster.ends_at);
        let mut paid = MicroUsd::ZERO;
        for member in active_members(&mut tx, id).await? {
            if !hired.contains(&member.device_id) {
                continue;
            }
            let due = member.due(running_at, until, cluster.ends_at);
            let settled_through = MicroUsd::from_micros(member.earned.micros() + due.micros());
            let posting = Posting::new(
                PostingKind::HireSettlement,
                format!(
                    "settle:{id}:{}:{}:{}",
                    member.device_id,
                    member.joined_at,
                    settled_through.micros()
                ),
                format!("cluster {id}: hire earnings of {}", member.device_id),
            )
            .of_cluster(id);
            let posting = cluster.pay(&mut tx, posting, &member, due, now).await?;
            post(&mut tx, &posting, now).await?;
            paid = MicroUsd::from_micros(paid.micros() + due.micros());
        }
        tx.commit().await?;
        tracing::debug!(cluster = id, paid = %paid, "hire earnings settled");
        Ok(())
    }
}

/// A device still in a cluster, with its provider and the escrow still held for it.
pub(super) struct Member {
    pub(super) device_id: String,
    pub(super) role: ClusterRole,
    pub(super) units: u32,
    pub(super) owner: String,
    pub(super) joined_at: i64,
    pub(super) budget: MicroUsd,
    /// What was settled of the budget so far (gross, provider fee included).
    pub(super) earned: MicroUsd,
}

impl Member {
    /// What the device has earned of its budget by `until`: its hire runs from the cluster's
    /// start (or its own joining, for a replacement) to the cluster's end.
    pub(super) fn accrued(&self, running_at: i64, until: i64, ends_at: i64) -> MicroUsd {
        pricing::accrued(self.budget, self.joined_at.max(running_at), until, ends_at)
    }

    /// What it earned for being held from its joining to `until`, in a cluster of `hours`
    /// that never ran (the renter's workload failed as it started): the hire at its rate.
    pub(super) fn held(&self, until: i64, hours: i64) -> MicroUsd {
        let end = self.joined_at + hours * crate::live::HOUR_MS;
        let accrued = pricing::accrued(self.budget, self.joined_at, until.min(end), end);
        MicroUsd::from_micros((accrued.micros() - self.earned.micros()).max(0))
    }

    /// What it earned by `until` and was not settled yet.
    pub(super) fn due(&self, running_at: i64, until: i64, ends_at: i64) -> MicroUsd {
        let accrued = self.accrued(running_at, until, ends_at);
        MicroUsd::from_micros((accrued.micros() - self.earned.micros()).max(0))
    }
}

pub(super) async fn active_members(
    conn: &mut AnyConnection,
    cluster_id: &str,
) -> Result<Vec<Member>, Error> {
    sqlx::query(
        "SELECT cd.device_id, cd.role, cd.units, d.owner_wallet, cd.joined_at, cd.budget, cd.earned \
         FROM cluster_devices cd JOIN devices d ON d.id = cd.device_id \
         WHERE cd.cluster_id = $1 AND cd.left_at IS NULL ORDER BY cd.device_id",
    )
    .bind(cluster_id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Member {
            device_id: r.try_get("device_id")?,
            role: enum_in(r, "role", ClusterRole::parse)?,
            units: u32_in(r, "units")?,
            owner: r.try_get("owner_wallet")?,
            joined_at: r.try_get("joined_at")?,
            budget: money_in(r, "budget")?,
            earned: money_in(r, "earned")?,
        })
    })
    .collect()
}

pub(super) fn invalid_posting(e: domain::ledger::PostingError) -> Error {
    Error::Invalid(e.to_string())
}

/// What settling a cluster's money needs to know about it.
pub(super) struct Settling {
    pub(super) id: String,
    pub(super) status: ClusterStatus,
    pub(super) user_id: i64,
    pub(super) kind: ClusterKind,
    pub(super) hardware: Hardware,
    pub(super) countries: Vec<String>,
    pub(super) min_tier: Option<ConnectivityTier>,
    pub(super) compliance: SecurityCompliance,
    pub(super) workload: Workload,
    pub(super) notebook_token: Option<String>,
    pub(super) running_at: Option<i64>,
    pub(super) ends_at: i64,
    /// The hours paid for.
    pub(super) hours: i64,
    /// The price per unit-hour and the units, which re-price an early end.
    pub(super) rate: MicroUsd,
    pub(super) units: u32,
    /// What was refunded before (a lost device's time).
    pub(super) refunded: MicroUsd,
    pub(super) charged: MicroUsd,
    pub(super) escrowed: MicroUsd,
    pub(super) token_price: Option<TokenPrice>,
    /// Paid while its renter held promotional credit: its hires keep to `domain::promo`.
    pub(super) promotional: bool,
}

impl Settling {
    /// When the renter ends the running cluster early at `now`: what the time it served costs
    /// beyond what its devices were paid in all, at the rate of a booking of that length
    /// ([`pricing::early_end_cost`]), out of `left` (the escrow still held). Nothing for a
    /// cluster a loss already refunded part of (its time was re-priced by that loss).
    pub(super) fn early_end_surcharge(&self, now: i64, left: MicroUsd) -> MicroUsd {
        let Some(running_at) = self.running_at else {
            return MicroUsd::ZERO;
        };
        if self.refunded > MicroUsd::ZERO || now >= self.ends_at {
            return MicroUsd::ZERO;
        }
        let paid_in_all = self.escrowed.micros() - left.micros();
        let cost = pricing::early_end_cost(self.rate, self.units, now - running_at, self.escrowed);
        MicroUsd::from_micros((cost.micros() - paid_in_all).clamp(0, left.micros()))
    }

    /// Locks the cluster (see [`lock_cluster`]) and reads it.
    pub(super) async fn load(conn: &mut AnyConnection, id: &str) -> Result<Settling, Error> {
        lock_cluster(conn, id).await?;
        let row = sqlx::query(concat!(
            "SELECT status, user_id, kind, hardware, countries, min_tier, workload, running_at, \
               ends_at, hours, rate, units, refunded, charged, escrowed, token_price, compliance, \
               notebook_token, ",
            flag_sql!("promotional"),
            " FROM clusters WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no cluster '{id}'")))?;
        let hardware: &str = row.try_get("hardware")?;
        Ok(Settling {
            id: id.to_owned(),
            status: enum_in(&row, "status", ClusterStatus::parse)?,
            user_id: row.try_get("user_id")?,
            kind: enum_in(&row, "kind", ClusterKind::parse)?,
            hardware: if hardware == "cpu" {
                Hardware::Cpu
            } else {
                Hardware::Gpu(hardware.to_owned())
            },
            countries: split_countries(row.try_get("countries")?),
            min_tier: optional_enum_in(&row, "min_tier", ConnectivityTier::parse)?,
            workload: json_in(&row, "workload")?,
            running_at: row.try_get("running_at")?,
            ends_at: row.try_get::<Option<i64>, _>("ends_at")?.unwrap_or(0),
            hours: row.try_get("hours")?,
            rate: money_in(&row, "rate")?,
            units: u32_in(&row, "units")?,
            refunded: money_in(&row, "refunded")?,
            charged: money_in(&row, "charged")?,
            escrowed: money_in(&row, "escrowed")?,
            token_price: token_price_in(&row)?,
            compliance: enum_in(&row, "compliance", SecurityCompliance::parse)?,
            notebook_token: row.try_get("notebook_token")?,
            promotional: flag(&row, "promotional")?,
        })
    }

    pub(super) fn escrow_account(&self) -> Account {
        Account::ClusterEscrow(self.id.clone())
    }

    /// Adds to `posting` the return of `amount` from `from` to the renter: as dollars, or,
    /// for a cluster paid in the token, as tokens at the price it was paid at.
    pub(super) fn refund(
        &self,
        posting: Posting,
        from: Account,
        amount: MicroUsd,
    ) -> Result<Posting, Error> {
        let renter = Account::UserAvailable(self.user_id);
        match self.token_price {
            None => posting.transfer(from, renter, amount),
            Some(price) => posting
                .transfer(from, TOKEN_EXCHANGE, amount)
                .and_then(|p| {
                    p.transfer_tokens(TOKEN_EXCHANGE, renter, price.tokens_returned(amount))
                }),
        }
        .map_err(invalid_posting)
    }

    /// Adds to `posting` the payment of `due` from escrow to `member`'s provider, less the
    /// provider fee, and records it as settled for the device.
    pub(super) async fn pay(
        &self,
        conn: &mut AnyConnection,
        posting: Posting,
        member: &Member,
        due: MicroUsd,
        now: UnixMillis,
    ) -> Result<Posting, Error> {
        sqlx::query(
            "UPDATE cluster_devices SET earned = earned + $1, settled_at = $2 \
             WHERE cluster_id = $3 AND device_id = $4",
        )
        .bind(due.micros())
        .bind(now.0)
        .bind(&self.id)
        .bind(&member.device_id)
        .execute(conn)
        .await?;
        posting
            .transfer(
                self.escrow_account(),
                Account::ProviderClaimable(member.owner.clone()),
                pricing::provider_share(due),
            )
            .and_then(|p| {
                p.transfer(
                    self.escrow_account(),
                    Account::PlatformFees,
                    pricing::provider_fee(due),
                )
            })
            .map_err(invalid_posting)
    }

    /// Moves the cluster on from the status it was read in; a concurrent change is a conflict.
    pub(super) async fn change_status(
        &self,
        conn: &mut AnyConnection,
        to: ClusterStatus,
        reason: &str,
        now: UnixMillis,
    ) -> Result<(), Error> {
        let changed = sqlx::query(
            "UPDATE clusters SET status = $1, status_reason = $2, finished_at = $3 \
             WHERE id = $4 AND status = $5",
        )
        .bind(to.as_str())
        .bind(reason)
        .bind(now.0)
        .bind(&self.id)
        .bind(self.status.as_str())
        .execute(conn)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(Error::Conflict(
                "the cluster changed at the same moment; try again".into(),
            ));
        }
        Ok(())
    }

    /// Fails the running cluster whose last device was lost (`why`).
    pub(super) async fn fail_lost(
        &self,
        conn: &mut AnyConnection,
        why: &str,
        now: UnixMillis,
    ) -> Result<(), Error> {
        let why = format!("its last device was lost ({why})");
        let to = self
            .status
            .apply(&ClusterEvent::Lost { why: why.clone() })
            .map_err(|e| Error::Conflict(e.to_string()))?;
        self.change_status(conn, to, &format!("failed: {why}"), now)
            .await
    }

    pub(super) async fn refunded(
        &self,
        conn: &mut AnyConnection,
        refund: MicroUsd,
    ) -> Result<(), Error> {
        sqlx::query("UPDATE clusters SET refunded = refunded + $1 WHERE id = $2")
            .bind(refund.micros())
            .bind(&self.id)
            .execute(conn)
            .await?;
        Ok(())
    }
}
