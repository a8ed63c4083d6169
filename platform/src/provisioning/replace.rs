//! A device lost while its cluster runs: its provider is paid for the time served, the renter gets
//! back the time it was down, and the rest of its budget hires a replacement when one is free.

use domain::allocator::Want;
use domain::cluster::{ClusterRole, ClusterStatus};
use domain::device_status::Transition;
use domain::ledger::{Posting, PostingKind};
use domain::money::MicroUsd;
use domain::pricing::split_by_units;
use domain::time::UnixMillis;
use rustc_hash::FxHashSet;
use sqlx::AnyConnection;

use super::deploy::{hire, ClusterWork, Seat};
use super::lifecycle::release;
use super::place::Placing;
use super::settle::{active_members, Member, Settling};
use super::{record, ProvisioningService};
use crate::ledger::{post, usdc_in};
use crate::lifecycle::mirror;
use crate::Error;

impl ProvisioningService {
    /// A device of a running cluster that went down (at `down_at`) or failed: its provider is
    /// paid for the time it served, the renter gets back the time it was down, and the rest of
    /// its budget hires a replacement of the same hardware under the same filters if the free
    /// supply has one (or comes back to the renter too). A cluster left with no device fails.
    pub(super) async fn lose(
        &self,
        id: &str,
        device_id: &str,
        why: &str,
        down_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), Error> {
        let mut tx = self.store.begin_write().await?;
        let cluster = Settling::load(&mut tx, id).await?;
        let (ClusterStatus::Running, Some(running_at)) = (cluster.status, cluster.running_at)
        else {
            return Ok(());
        };
        let members = active_members(&mut tx, id).await?;
        let Some(lost) = members.iter().find(|m| m.device_id == device_id) else {
            return Ok(());
        };
        // What was settled already stays paid, even if it ran into the down time.
        let served = lost
            .accrued(running_at, down_at.0.min(now.0), cluster.ends_at)
            .max(lost.earned);
        let through_now = lost.accrued(running_at, now.0, cluster.ends_at).max(served);
        let unused = MicroUsd::from_micros(lost.budget.micros() - through_now.micros());
        let due = MicroUsd::from_micros(served.micros() - lost.earned.micros());
        sqlx::query(
            "UPDATE cluster_devices SET forfeited = $1 WHERE cluster_id = $2 AND device_id = $3",
        )
        .bind(lost.budget.micros() - served.micros())
        .bind(id)
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
        let mut posting = cluster
            .pay(
                &mut tx,
                Posting::new(
                    PostingKind::DeviceLoss,
                    format!("lose:{id}:{device_id}:{}", lost.joined_at),
                    format!("cluster {id} lost {device_id}"),
                )
                .of_cluster(id),
                lost,
                due,
                now,
            )
            .await?;
        let mut refund = MicroUsd::from_micros(through_now.micros() - served.micros());
        let released = release(&mut tx, id, std::slice::from_ref(lost), now).await?;
        let replacement = if now.0 < cluster.ends_at {
            self.replace(&mut tx, &cluster, lost, unused, now).await?
        } else {
            None
        };
        let mut hired = Vec::new();
        let line = match replacement {
            Some(devices) => {
                let names: Vec<&str> = devices.iter().map(|(d, _)| d.as_str()).collect();
                let line = format!(
                    "device {device_id} lost ({why}); {refund} for the time it was down returned; \
                     replaced by {}",
                    names.join(", ")
                );
                hired = devices;
                line
            }
            None => {
                refund = MicroUsd::from_micros(refund.micros() + unused.micros());
                format!(
                    "device {device_id} lost ({why}); no replacement in the free supply; {refund} \
                     of its unused time returned"
                )
            }
        };
        // A lost head is followed by its replacement, or else by a surviving device, so the
        // others have a head to join.
        let new_head = match (lost.role, hired.first()) {
            (ClusterRole::Worker, _) => None,
            (ClusterRole::Head, Some((first, _))) => Some(first.clone()),
            (ClusterRole::Head, None) => {
                promote_a_survivor(&mut tx, id, &members, device_id).await?
            }
        };
        let line = match &new_head {
            Some(head) => format!("{line}; {head} is the cluster's head now"),
            None => line,
        };
        let last = members.len() == 1 && hired.is_empty();
        if last {
            // Nothing runs any more: rounding dust left in escrow goes back as well.
            let escrow = usdc_in(&mut tx, &cluster.escrow_account()).await?;
            refund = MicroUsd::from_micros(escrow.micros() - due.micros());
        }
        if new_head.is_some() {
            // The survivors' parts change with the head: every replica gives them the new one.
            for member in members.iter().filter(|m| m.device_id != device_id) {
                crate::replicas::record_change(&mut tx, &member.device_id, now).await?;
            }
        }
        posting = cluster.refund(posting, cluster.escrow_account(), refund)?;
        post(&mut tx, &posting, now).await?;
        cluster.refunded(&mut tx, refund).await?;
        record(&mut tx, id, now, &line).await?;
        if last {
            cluster.fail_lost(&mut tx, why, now).await?;
        }
        tx.commit().await?;
        self.released(&released, now);
        let head = new_head.as_deref().or_else(|| {
            members
                .iter()
                .find(|m| m.role == ClusterRole::Head && m.device_id != device_id)
                .map(|m| m.device_id.as_str())
        });
        // Under a new head, the devices that stay get their new part: the survivors restart
        // to join it (or, promoted, to be it).
        let survivors: Vec<&str> = match new_head {
            Some(_) => members
                .iter()
                .map(|m| m.device_id.as_str())
                .filter(|d| *d != device_id)
                .collect(),
            None => Vec::new(),
        };
        let work = ClusterWork {
            cluster_id: &cluster.id,
            kind: cluster.kind,
            workload: &cluster.workload,
            head,
            head_address: self.device_address(head).await?,
            notebook_token: cluster.notebook_token.as_deref(),
            devices: u32::try_from(members.len() - 1 + hired.len()).unwrap_or(u32::MAX),
        };
        self.hand_over(&work, lost.role, &hired, &survivors, now);
        tracing::info!(cluster = id, device = device_id, replaced = !hired.is_empty(), refund = %refund, "cluster device lost");
        Ok(())
    }

    /// Mirrors the replacements hired for a lost device and gives each the lost one's part
    /// (the first a lost head's), and gives the `survivors` theirs under the work's head.
    fn hand_over(
        &self,
        work: &ClusterWork,
        role: ClusterRole,
        hired: &[(String, Transition)],
        survivors: &[&str],
        now: UnixMillis,
    ) {
        let part = |device: &str| match work.head {
            Some(head) if head == device => ClusterRole::Head,
            Some(_) => ClusterRole::Worker,
            None => role,
        };
        for (device, t) in hired {
            mirror(&self.live, &self.index, device, t, now);
            self.assign(device, part(device), work);
        }
        for device in survivors {
            self.assign(device, part(device), work);
        }
    }

    /// Hires devices for `lost`'s units inside the caller's transaction, funded by `budget`.
    /// None when the free supply has no exact fit or a chosen device was taken meanwhile.
    pub(super) async fn replace(
        &self,
        tx: &mut AnyConnection,
        cluster: &Settling,
        lost: &Member,
        budget: MicroUsd,
        now: UnixMillis,
    ) -> Result<Option<Vec<(String, Transition)>>, Error> {
        let seed = {
            use std::hash::BuildHasher;
            rustc_hash::FxBuildHasher.hash_one((&cluster.id, &lost.device_id))
        };
        let placing = Placing {
            hardware: &cluster.hardware,
            countries: &cluster.countries,
            min_tier: cluster.min_tier,
            compliance: cluster.compliance,
            want: Want::Exactly(lost.units),
        };
        // What promotional credit paid for keeps to its rule in its replacements too.
        let excluded = if cluster.promotional {
            super::promo::barred_devices(tx, cluster.user_id, now).await?
        } else {
            FxHashSet::default()
        };
        let Ok(chosen) = self.place(&placing, &excluded, seed, now) else {
            return Ok(None);
        };
        let units: Vec<u32> = chosen.iter().map(|(_, units)| *units).collect();
        let budgets = split_by_units(budget, &units);
        let mut hired = Vec::with_capacity(units.len());
        for (n, ((device, units), budget)) in chosen.into_iter().zip(budgets).enumerate() {
            // Savepoint-free: a device taken meanwhile fails the whole loss, retried next sweep.
            let seat = Seat {
                cluster_id: &cluster.id,
                // A cluster has one head: a head replaced by several devices heads with the first.
                role: if n == 0 {
                    lost.role
                } else {
                    ClusterRole::Worker
                },
                units,
                budget,
                compliance: cluster.compliance,
            };
            let t = hire(tx, &device, seat, now).await?;
            hired.push((device, t));
        }
        Ok(Some(hired))
    }
}

/// Makes the first surviving device (by id) the head of cluster `id`, whose head `lost` was
/// lost with no replacement; None when no device survives.
async fn promote_a_survivor(
    tx: &mut AnyConnection,
    id: &str,
    members: &[Member],
    lost: &str,
) -> Result<Option<String>, Error> {
    let Some(survivor) = members
        .iter()
        .map(|m| m.device_id.as_str())
        .filter(|d| *d != lost)
        .min()
    else {
        return Ok(None);
    };
    sqlx::query(
        "UPDATE cluster_devices SET role = $1 \
         WHERE cluster_id = $2 AND device_id = $3 AND left_at IS NULL",
    )
    .bind(ClusterRole::Head.as_str())
    .bind(id)
    .bind(survivor)
    .execute(&mut *tx)
    .await?;
    Ok(Some(survivor.to_owned()))
}
