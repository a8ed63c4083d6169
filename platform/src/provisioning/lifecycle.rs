//! A cluster's life after deploy: agents' workload reports (running once every device runs),
//! extension, termination and the end with its settlement, and the start-up reload of assignments.

use std::sync::Arc;

use domain::agent_protocol::{WorkloadAssignment, WorkloadState};
use domain::cluster::{
    parse_duration, ClusterEvent, ClusterKind, ClusterRole, ClusterStatus, ClusterSummary,
    ExtendRequest, FailureCause, PaymentMethod,
};
use domain::device_status::{DeviceEvent, Transition};
use domain::fleet::DeviceStatus;
use domain::ledger::{Account, Posting, PostingKind};
use domain::money::MicroUsd;
use domain::pricing::{self, split_by_units};
use domain::time::UnixMillis;
use sqlx::{AnyConnection, Row};

use super::deploy::charge;
use super::read::{cluster_row, summary_of, token_price_in};
use super::settle::{active_members, Member, Settling};
use super::{lock_cluster, record, ProvisioningService};
use crate::idempotency::{key_or_fresh, GivenKey};
use crate::ledger::{post, usdc_in};
use crate::lifecycle::stored_status;
use crate::lifecycle::{apply_event, mirror};
use crate::live::HOUR_MS;
use crate::rows::json_in;
use crate::rows::{enum_in, money_in};
use crate::Error;

impl ProvisioningService {
    /// Buys `request`'s hours more on the same devices, charged like a new order; the same
    /// `idempotency_key` with the same request again changes nothing (with another request it
    /// is refused).
    pub async fn extend(
        &self,
        user_id: i64,
        id: &str,
        request: &ExtendRequest,
        idempotency_key: Option<&str>,
        now: UnixMillis,
    ) -> Result<ClusterSummary, Error> {
        let hours =
            parse_duration(request.duration_unit, request.duration_count).map_err(|message| {
                Error::InvalidFields(vec![domain::cluster::FieldError {
                    field: "duration_count".into(),
                    message,
                }])
            })?;
        let given = GivenKey::of(format!("extend:{id}"), idempotency_key, request)?;
        let key = key_or_fresh(idempotency_key)?;
        let mut tx = self.store.begin_write().await?;
        lock_cluster(&mut tx, id).await?;
        let row = cluster_row(&mut tx, user_id, id).await?;
        let summary = summary_of(&row)?;
        let posting_key = format!("extend:{id}:{key}");
        let already: Option<i64> =
            sqlx::query("SELECT id FROM ledger_transactions WHERE idempotency_key = $1")
                .bind(&posting_key)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("id"))
                .transpose()?;
        if already.is_some() {
            if let Some(given) = &given {
                given.check(&mut tx).await?;
            }
            return Ok(summary);
        }
        if let Some(given) = &given {
            given.record(&mut tx, now).await?;
        }
        summary
            .status
            .apply(&ClusterEvent::Extended)
            .map_err(|e| Error::Conflict(e.to_string()))?;
        let payment = enum_in(&row, "payment", PaymentMethod::parse)?;
        // Promotional money may not pay the renter's own devices or a new provider's
        // (`domain::promo`); what it extends keeps to that rule from now on.
        let promotional = self
            .promo_standing(&mut tx, user_id, payment.asset())
            .await?
            .binds();
        if promotional {
            let members = active_members(&mut tx, id).await?;
            let ids: Vec<&str> = members.iter().map(|m| m.device_id.as_str()).collect();
            if let Some(device) = super::promo::first_barred(&mut tx, user_id, &ids, now).await? {
                return Err(Error::Conflict(format!(
                    "this cluster cannot be extended while your balance holds promotional credit: \
                     its device {device} is yours or belongs to a provider whose account is less \
                     than {} days old",
                    domain::promo::PROVIDER_MIN_AGE_MS / 86_400_000
                )));
            }
        }
        // At the price the cluster was paid at, so its refunds convert at one price.
        let quote = self.priced(
            pricing::quote(money_in(&row, "rate")?, summary.units, hours, payment),
            token_price_in(&row)?,
        )?;
        charge(
            &mut tx,
            user_id,
            id,
            Posting::new(
                PostingKind::ClusterExtension,
                posting_key,
                format!("cluster {id}: {hours} h more"),
            )
            .of_cluster(id),
            &quote,
            &format!("{hours} more hours cost"),
            now,
        )
        .await?;
        let members = active_members(&mut tx, id).await?;
        let units: Vec<u32> = members.iter().map(|m| m.units).collect();
        for (member, more) in members.iter().zip(split_by_units(quote.escrow(), &units)) {
            sqlx::query(
                "UPDATE cluster_devices SET budget = budget + $1 WHERE cluster_id = $2 AND device_id = $3",
            )
            .bind(more.micros())
            .bind(id)
            .bind(&member.device_id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE clusters SET hours = hours + $1, charged = charged + $2, escrowed = escrowed + $3, \
               ends_at = ends_at + $4, promotional = (promotional OR $5) WHERE id = $6",
        )
        .bind(i64::from(hours))
        .bind(quote.total.micros())
        .bind(quote.escrow().micros())
        .bind(i64::from(hours) * HOUR_MS)
        .bind(promotional)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        record(
            &mut tx,
            id,
            now,
            &format!("extended by {hours} h for {}", quote.shown_total()),
        )
        .await?;
        let summary = self.summary_in(&mut tx, user_id, id).await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// Ends the renter's cluster now: providers are paid for the time served and the unused
    /// escrow comes back (all of it, fees included, if it never ran).
    pub async fn terminate(
        &self,
        user_id: i64,
        id: &str,
        now: UnixMillis,
    ) -> Result<ClusterSummary, Error> {
        let mut conn = self.store.pool().acquire().await?;
        cluster_row(&mut conn, user_id, id).await?;
        drop(conn);
        self.finish(id, ClusterEvent::TerminatedByRenter, now)
            .await?;
        let mut conn = self.store.pool().acquire().await?;
        self.summary_in(&mut conn, user_id, id).await
    }

    /// Moves a cluster to a finished status, settles its escrow and releases its devices.
    pub(super) async fn finish(
        &self,
        id: &str,
        event: ClusterEvent,
        now: UnixMillis,
    ) -> Result<(), Error> {
        let mut tx = self.store.begin_write().await?;
        let cluster = Settling::load(&mut tx, id).await?;
        let to = cluster
            .status
            .apply(&event)
            .map_err(|e| Error::Conflict(e.to_string()))?;
        let mut reason = match &event {
            ClusterEvent::StartFailed { why } => format!("failed to start: {why}; fully refunded"),
            ClusterEvent::WorkloadFailed { why } => format!(
                "the renter's workload failed as it started: {why}; the devices' time was paid \
                 and the fees kept"
            ),
            ClusterEvent::TerminatedByRenter => "terminated by the renter".to_owned(),
            ClusterEvent::Expired => "completed its paid time".to_owned(),
            ClusterEvent::Lost { why } => format!("failed: {why}"),
            _ => to.to_string(),
        };
        cluster.change_status(&mut tx, to, &reason, now).await?;
        let members = active_members(&mut tx, id).await?;
        let escrow = usdc_in(&mut tx, &cluster.escrow_account()).await?;
        let mut posting = Posting::new(
            PostingKind::ClusterEnd,
            format!("finish:{id}"),
            format!("cluster {id} {to}"),
        )
        .of_cluster(id);
        let (unused, fees_back) = match cluster.running_at {
            Some(running_at) => {
                let mut paid = MicroUsd::ZERO;
                let mut unearned = Vec::with_capacity(members.len());
                for member in &members {
                    let due = member.due(running_at, now.0, cluster.ends_at);
                    posting = cluster.pay(&mut tx, posting, member, due, now).await?;
                    paid = MicroUsd::from_micros(paid.micros() + due.micros());
                    unearned.push(MicroUsd::from_micros(
                        member.budget.micros() - member.earned.micros() - due.micros(),
                    ));
                }
                // The budgets less what was earned add up to the escrow: the rest was not used,
                // but for what an early end's re-pricing adds to the devices' pay.
                let left = MicroUsd::from_micros(escrow.micros() - paid.micros());
                let surcharge = match event {
                    ClusterEvent::TerminatedByRenter => cluster.early_end_surcharge(now.0, left),
                    _ => MicroUsd::ZERO,
                };
                for (member, more) in members
                    .iter()
                    .zip(pricing::split_within(surcharge, &unearned))
                {
                    posting = cluster.pay(&mut tx, posting, member, more, now).await?;
                }
                if surcharge > MicroUsd::ZERO {
                    reason.push_str(&format!(
                        " early: its time was re-priced at the rate of a booking that long \
                         ({surcharge} more to its devices)"
                    ));
                }
                (
                    MicroUsd::from_micros(left.micros() - surcharge.micros()),
                    MicroUsd::ZERO,
                )
            }
            // The renter's workload failed as it started: the devices were held for it, so
            // their time is paid, and the fees are kept.
            None if matches!(event, ClusterEvent::WorkloadFailed { .. }) => {
                let mut paid = MicroUsd::ZERO;
                for member in &members {
                    let due = member.held(now.0, cluster.hours);
                    posting = cluster.pay(&mut tx, posting, member, due, now).await?;
                    paid = MicroUsd::from_micros(paid.micros() + due.micros());
                }
                (
                    MicroUsd::from_micros(escrow.micros() - paid.micros()),
                    MicroUsd::ZERO,
                )
            }
            // Never ran through no fault of the renter's: everything back, the fees too.
            None => (
                escrow,
                MicroUsd::from_micros(cluster.charged.micros() - cluster.escrowed.micros()),
            ),
        };
        posting = cluster.refund(posting, cluster.escrow_account(), unused)?;
        posting = cluster.refund(posting, Account::PlatformFees, fees_back)?;
        let refund = MicroUsd::from_micros(unused.micros() + fees_back.micros());
        post(&mut tx, &posting, now).await?;
        cluster.refunded(&mut tx, refund).await?;
        let transitions = release(&mut tx, id, &members, now).await?;
        record(
            &mut tx,
            id,
            now,
            &format!("{reason}; {refund} returned to the balance"),
        )
        .await?;
        tx.commit().await?;
        self.released(&transitions, now);
        tracing::info!(cluster = id, status = %to, refund = %refund, "cluster finished");
        Ok(())
    }

    pub(super) fn released(&self, transitions: &[(String, Option<Transition>)], now: UnixMillis) {
        for (device, t) in transitions {
            if let Some(t) = t {
                mirror(&self.live, &self.index, device, t, now);
            }
            self.live.with(device, |d| d.assign(None, None));
        }
    }

    /// What an agent reported for a cluster's workload: the cluster runs once every device runs
    /// it. A device that fails while starting fails the cluster: refunded in full when the
    /// failure is the device's (`cause` absent or [`FailureCause::Device`]), the held time paid
    /// and the fees kept when it is the renter's own workload. While running, a device's
    /// failure loses it (refund, replacement); the renter's workload failing leaves the device
    /// hired to the renter.
    pub async fn workload_reported(
        &self,
        device_id: &str,
        cluster_id: &str,
        state: WorkloadState,
        detail: &str,
        cause: Option<FailureCause>,
        now: UnixMillis,
    ) -> Result<(), Error> {
        let mut tx = self.store.begin_write().await?;
        lock_cluster(&mut tx, cluster_id).await?;
        let changed = sqlx::query(
            "UPDATE cluster_devices SET state = $1 \
             WHERE cluster_id = $2 AND device_id = $3 AND left_at IS NULL AND state <> $1",
        )
        .bind(state.as_str())
        .bind(cluster_id)
        .bind(device_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(());
        }
        let row = sqlx::query("SELECT status, hours FROM clusters WHERE id = $1")
            .bind(cluster_id)
            .fetch_one(&mut *tx)
            .await?;
        let status = enum_in(&row, "status", ClusterStatus::parse)?;
        let hours: i64 = row.try_get("hours")?;
        let detail = detail.chars().take(300).collect::<String>();
        let said = if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        };
        record(
            &mut tx,
            cluster_id,
            now,
            &format!("device {device_id} reports {}{said}", state.as_str()),
        )
        .await?;
        // A command that already finished cleanly has started, too.
        let started = matches!(state, WorkloadState::Running | WorkloadState::Stopped);
        let ran_after = if started && status == ClusterStatus::Deploying {
            start_when_all_run(&mut tx, cluster_id, hours, now).await?
        } else {
            None
        };
        tx.commit().await?;
        if let Some(ms) = ran_after {
            crate::metrics::running_after(ms);
        }
        if state != WorkloadState::Failed {
            return Ok(());
        }
        let renters = cause == Some(FailureCause::Workload);
        match (status, renters) {
            (ClusterStatus::Deploying, true) => {
                let why = format!("on device {device_id}{said}");
                self.finish(cluster_id, ClusterEvent::WorkloadFailed { why }, now)
                    .await?
            }
            (ClusterStatus::Deploying, false) => {
                let why = format!("device {device_id} could not run the workload{said}");
                self.finish(cluster_id, ClusterEvent::StartFailed { why }, now)
                    .await?
            }
            (ClusterStatus::Running, true) => {
                let mut conn = self.store.pool().acquire().await?;
                record(
                    &mut conn,
                    cluster_id,
                    now,
                    &format!(
                        "the renter's workload ended on device {device_id}; the device stays \
                         hired until the cluster ends or is terminated"
                    ),
                )
                .await?;
            }
            (ClusterStatus::Running, false) => {
                let why = format!("device {device_id} could not run the workload{said}");
                self.lose(cluster_id, device_id, &why, now, now).await?
            }
            _ => {}
        }
        Ok(())
    }

    /// Gives every device of an active cluster its assignment in the live fleet (start-up).
    pub(crate) async fn load_assignments(&self) -> Result<usize, Error> {
        let assignments = self.assignments_where("TRUE", None).await?;
        let count = assignments.len();
        for (device, assignment, state) in assignments {
            self.live
                .with(&device, |d| d.assign(Some(assignment), Some(state)));
        }
        Ok(count)
    }

    /// Gives `device_id` the assignment the database holds for it (its cluster changed
    /// through another replica), or none; its agent is woken only when it differs.
    pub(crate) async fn reload_assignment(&self, device_id: &str) -> Result<(), Error> {
        let assignment = self
            .assignments_where(
                "c.id IN (SELECT cluster_id FROM cluster_devices \
                   WHERE device_id = $1 AND left_at IS NULL)",
                Some(device_id),
            )
            .await?
            .into_iter()
            .find(|(device, _, _)| device == device_id);
        self.live.with(device_id, |d| match assignment {
            Some((_, assignment, state)) => {
                if d.assignment.as_deref() != Some(&*assignment) {
                    // A report this replica took meanwhile is newer than what was stored.
                    let state = d
                        .workload_state
                        .filter(|_| {
                            d.assignment
                                .as_ref()
                                .is_some_and(|a| a.cluster_id == assignment.cluster_id)
                        })
                        .unwrap_or(state);
                    d.assign(Some(assignment), Some(state));
                }
            }
            None => {
                if d.assignment.is_some() {
                    d.assign(None, None);
                }
            }
        });
        Ok(())
    }

    /// The assignments of the devices of the active clusters that `condition` (SQL on `c`, the
    /// cluster, with `bind` as `$1`) selects: `(device, assignment, stored workload state)`.
    async fn assignments_where(
        &self,
        condition: &str,
        bind: Option<&str>,
    ) -> Result<Vec<(String, Arc<WorkloadAssignment>, WorkloadState)>, Error> {
        let sql = format!(
            "SELECT cd.device_id, c.id, c.kind, cd.role, c.workload, cd.state, c.notebook_token, \
               d.last_address \
             FROM cluster_devices cd JOIN clusters c ON c.id = cd.cluster_id \
             JOIN devices d ON d.id = cd.device_id \
             WHERE cd.left_at IS NULL AND c.status IN ('deploying', 'running') AND {condition}"
        );
        let mut query = sqlx::query(&sql);
        if let Some(bind) = bind {
            query = query.bind(bind);
        }
        let rows = query.fetch_all(self.store.pool()).await?;
        // Each cluster's head device (and where it is reached), which the others' assignments
        // name, and its size.
        let mut heads = std::collections::HashMap::new();
        let mut sizes: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        for row in &rows {
            *sizes.entry(row.try_get::<String, _>("id")?).or_default() += 1;
            if enum_in(row, "role", ClusterRole::parse)? == ClusterRole::Head {
                let device: String = row.try_get("device_id")?;
                let address = self
                    .address_of(&device)
                    .or(row.try_get::<Option<String>, _>("last_address")?);
                heads.insert(row.try_get::<String, _>("id")?, (device, address));
            }
        }
        let mut assignments = Vec::with_capacity(rows.len());
        for row in &rows {
            let device: String = row.try_get("device_id")?;
            let role = enum_in(row, "role", ClusterRole::parse)?;
            let cluster_id: String = row.try_get("id")?;
            let head = heads.get(&cluster_id).filter(|(h, _)| *h != device);
            let assignment = Arc::new(WorkloadAssignment {
                kind: enum_in(row, "kind", ClusterKind::parse)?,
                role,
                workload: json_in(row, "workload")?,
                head_address: head.and_then(|(_, address)| address.clone()),
                head_device: head.map(|(h, _)| h.clone()),
                notebook_token: row
                    .try_get::<Option<String>, _>("notebook_token")?
                    .filter(|_| role == ClusterRole::Head),
                devices: sizes.get(&cluster_id).copied().unwrap_or(1),
                cluster_id,
            });
            let state = enum_in(row, "state", WorkloadState::parse)?;
            assignments.push((device, assignment, state));
        }
        Ok(assignments)
    }
}

/// Releases `members` from the cluster: hired devices go back to idle; devices that are no
/// longer hired (down, say) just leave. Returns the transitions to mirror after commit.
pub(super) async fn release(
    conn: &mut AnyConnection,
    cluster_id: &str,
    members: &[Member],
    now: UnixMillis,
) -> Result<Vec<(String, Option<Transition>)>, Error> {
    let mut transitions = Vec::with_capacity(members.len());
    for member in members {
        let released = DeviceEvent::Released {
            cluster_id: cluster_id.to_owned(),
        };
        let t = if stored_status(conn, &member.device_id).await? == DeviceStatus::Hired {
            Some(apply_event(conn, &member.device_id, &released, now).await?)
        } else {
            None
        };
        sqlx::query(
            "UPDATE cluster_devices SET left_at = $1, budget = 0, \
               state = CASE WHEN state = 'failed' THEN state ELSE 'stopped' END \
             WHERE cluster_id = $2 AND device_id = $3",
        )
        .bind(now.0)
        .bind(cluster_id)
        .bind(&member.device_id)
        .execute(&mut *conn)
        .await?;
        if t.is_none() {
            // Its status stays, but not its assignment: every replica drops it.
            crate::replicas::record_change(conn, &member.device_id, now).await?;
        }
        transitions.push((member.device_id.clone(), t));
    }
    Ok(transitions)
}

/// Moves a deploying cluster to running once no device is still starting the workload: its paid
/// time starts now. Returns how long after its deploy it started, when it did.
async fn start_when_all_run(
    conn: &mut AnyConnection,
    cluster_id: &str,
    hours: i64,
    now: UnixMillis,
) -> Result<Option<i64>, Error> {
    let waiting: i64 = sqlx::query(
        "SELECT COUNT(*) AS waiting FROM cluster_devices \
         WHERE cluster_id = $1 AND left_at IS NULL AND state NOT IN ('running', 'stopped')",
    )
    .bind(cluster_id)
    .fetch_one(&mut *conn)
    .await?
    .try_get("waiting")?;
    if waiting > 0 {
        return Ok(None);
    }
    let to = ClusterStatus::Deploying
        .apply(&ClusterEvent::AllRunning)
        .map_err(|e| Error::Conflict(e.to_string()))?;
    let ends_at = now.0 + hours * HOUR_MS;
    let deployed_at: Option<i64> = sqlx::query_scalar(
        "UPDATE clusters SET status = $1, status_reason = $2, running_at = $3, ends_at = $4 \
         WHERE id = $5 AND status = 'deploying' RETURNING created_at",
    )
    .bind(to.as_str())
    .bind("every device runs the workload")
    .bind(now.0)
    .bind(ends_at)
    .bind(cluster_id)
    .fetch_optional(&mut *conn)
    .await?;
    record(
        conn,
        cluster_id,
        now,
        &format!(
            "running on every device; paid time ends at {}",
            UnixMillis(ends_at).to_rfc3339()
        ),
    )
    .await?;
    tracing::info!(cluster = cluster_id, "cluster running");
    Ok(deployed_at.map(|at| now.0 - at))
}
