//! Deploy: pay from the renter's balance and hire the chosen devices in one transaction,
//! retried with other devices when a concurrent order took one; then tell each agent its part.

use std::sync::Arc;

use domain::agent_protocol::{WorkloadAssignment, WorkloadState};
use domain::cluster::{
    ClusterKind, ClusterRole, ClusterSummary, DeployOrder, DeployRequest, SecurityCompliance,
    Workload,
};
use domain::device_status::{DeviceEvent, Transition};
use domain::fleet::ConnectivityTier;
use domain::ledger::{Account, Posting, PostingKind, TOKEN_EXCHANGE};
use domain::money::MicroUsd;
use domain::pricing::{split_by_units, Quote};
use domain::time::UnixMillis;
use rustc_hash::FxHashSet;
use sqlx::AnyConnection;

use super::place::Placing;
use super::promo;
use super::settle::invalid_posting;
use super::{record, role_of, ProvisioningService};
use crate::idempotency::{check_given, key_or_fresh, GivenKey};
use crate::ledger::{post, tokens_in, usdc_in};
use crate::lifecycle::{apply_event, mirror};
use crate::secret::random_hex;
use crate::Error;

/// Deploy attempts when devices are taken by a concurrent order between choice and claim.
pub(super) const CLAIM_ATTEMPTS: usize = 4;

/// Why one deploy attempt did not commit.
pub(super) enum Attempt {
    /// Another order claimed this device first: choose again without it.
    Taken(String),
    /// Promotional credit may not pay this device (`domain::promo`): choose again without it.
    Barred(String),
    Failed(Error),
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Attempt {
        Attempt::Failed(e)
    }
}

impl From<sqlx::Error> for Attempt {
    fn from(e: sqlx::Error) -> Attempt {
        Attempt::Failed(e.into())
    }
}

impl ProvisioningService {
    /// Pays for `request` from the renter's balance and hires its devices, in one transaction.
    /// The same `idempotency_key` with the same request again returns the cluster it created
    /// (with another request it is refused); without one, every call is a new order.
    pub async fn deploy(
        &self,
        user_id: i64,
        request: &DeployRequest,
        idempotency_key: Option<&str>,
        now: UnixMillis,
    ) -> Result<ClusterSummary, Error> {
        let deployed = self
            .place_and_pay(user_id, request, idempotency_key, now)
            .await;
        crate::metrics::deployed(match &deployed {
            Ok(_) => "placed",
            Err(Error::Invalid(_) | Error::InvalidFields(_)) => "invalid",
            Err(Error::Conflict(_) | Error::NotFound(_)) => "refused",
            Err(_) => "failed",
        });
        deployed
    }

    async fn place_and_pay(
        &self,
        user_id: i64,
        request: &DeployRequest,
        idempotency_key: Option<&str>,
        now: UnixMillis,
    ) -> Result<ClusterSummary, Error> {
        let order = self.order(request)?;
        let given = GivenKey::of(format!("deploy:{user_id}"), idempotency_key, request)?;
        let key = key_or_fresh(idempotency_key)?;
        let key = key.as_str();
        if let Some(existing) = self.by_key(user_id, key).await? {
            check_given(&self.store, given.as_ref()).await?;
            return Ok(existing);
        }
        // Said before anything is chosen; the transaction checks again (and the unique index).
        if !self.name_available(user_id, &order.name).await? {
            return Err(name_conflict(&order.name));
        }
        let seed = {
            use std::hash::BuildHasher;
            rustc_hash::FxBuildHasher.hash_one((user_id, key))
        };
        // Promotional money pays only other, established providers: their devices are left out
        // here, and the claim checks again in its transaction.
        let (standing, barred) = {
            let mut conn = self.store.pool().acquire().await?;
            let standing = self
                .promo_standing(&mut conn, user_id, order.payment.asset())
                .await?;
            let barred = if standing.binds() {
                promo::barred_devices(&mut conn, user_id, now).await?
            } else {
                FxHashSet::default()
            };
            (standing, barred)
        };
        let mut excluded = barred;
        for _ in 0..CLAIM_ATTEMPTS {
            let Ok(chosen) = self.place(&Placing::of(&order), &excluded, seed, now) else {
                let everything = FxHashSet::default();
                if standing.binds()
                    && self
                        .place(&Placing::of(&order), &everything, seed, now)
                        .is_ok()
                {
                    return Err(Error::Conflict(format!(
                        "this cluster cannot be placed now: {}",
                        standing.reason()
                    )));
                }
                let answer = self.answer_quote(request)?;
                return Err(Error::Conflict(format!(
                    "this cluster cannot be placed now: {}",
                    answer.fillability.reasons.join("; ")
                )));
            };
            let units = chosen.iter().map(|(_, units)| units).sum();
            let chosen: Vec<(&str, u32)> = chosen
                .iter()
                .map(|(id, units)| (id.as_str(), *units))
                .collect();
            let quote = self.order_quote(&order, units)?;
            let claimed = self
                .claim(user_id, &order, (key, given.as_ref()), &quote, &chosen, now)
                .await;
            match claimed {
                Ok((summary, transitions, notebook_token)) => {
                    let head = (role_of(order.kind, 0) == ClusterRole::Head).then(|| chosen[0].0);
                    let work = ClusterWork {
                        cluster_id: &summary.id,
                        kind: order.kind,
                        workload: &order.workload,
                        head,
                        head_address: self.device_address(head).await?,
                        notebook_token: notebook_token.as_deref(),
                        devices: u32::try_from(chosen.len()).unwrap_or(u32::MAX),
                    };
                    for (position, ((device, _), t)) in chosen.iter().zip(&transitions).enumerate()
                    {
                        mirror(&self.live, &self.index, device, t, now);
                        self.assign(device, role_of(order.kind, position), &work);
                    }
                    tracing::info!(cluster = %summary.id, devices = chosen.len(), total = %quote.shown_total(), "cluster deployed");
                    return Ok(summary);
                }
                Err(Attempt::Taken(device)) => {
                    tracing::info!(device = %device, "device taken by a concurrent order; choosing again");
                    excluded.insert(device);
                }
                Err(Attempt::Barred(device)) => {
                    tracing::info!(device = %device, "promotional credit may not pay this device; choosing again");
                    excluded.insert(device);
                }
                Err(Attempt::Failed(e)) => {
                    // A double submit racing this one may have created the cluster.
                    if let Some(existing) = self.by_key(user_id, key).await? {
                        check_given(&self.store, given.as_ref()).await?;
                        return Ok(existing);
                    }
                    return Err(e);
                }
            }
        }
        Err(Error::Conflict(
            "the chosen devices were hired by other orders at the same moment; try again".into(),
        ))
    }

    /// The IP address `device`'s agent last heartbeated from, if this process heard it.
    pub(super) fn address_of(&self, device: &str) -> Option<String> {
        self.live
            .with(device, |d| d.address)
            .flatten()
            .map(|ip| ip.to_string())
    }

    /// The address `device`'s agent calls from: as this process heard it, else as the replica
    /// hearing it wrote it (`devices.last_address`).
    pub(super) async fn device_address(
        &self,
        device: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let Some(device) = device else {
            return Ok(None);
        };
        if let Some(heard) = self.address_of(device) {
            return Ok(Some(heard));
        }
        Ok(sqlx::query_scalar::<_, Option<String>>(
            "SELECT last_address FROM devices WHERE id = $1",
        )
        .bind(device)
        .fetch_optional(self.store.pool())
        .await?
        .flatten())
    }

    /// Hands a hired device its part in `work`: the address of the cluster's head device when
    /// it is another, the notebook token when it is the head. Its agent gets it with the next
    /// heartbeat reply.
    pub(super) fn assign(&self, device: &str, role: ClusterRole, work: &ClusterWork) {
        let assignment = Arc::new(WorkloadAssignment {
            cluster_id: work.cluster_id.to_owned(),
            kind: work.kind,
            role,
            workload: work.workload.clone(),
            head_address: work
                .head
                .filter(|head| *head != device)
                .and(work.head_address.clone()),
            head_device: work.head.filter(|head| *head != device).map(str::to_owned),
            notebook_token: work
                .notebook_token
                .filter(|_| role == ClusterRole::Head)
                .map(str::to_owned),
            devices: work.devices,
        });
        self.live.with(device, |d| {
            d.assign(Some(assignment), Some(WorkloadState::Assigned))
        });
    }

    /// Hires `devices` for `order` in one transaction, keyed by `key` (and the fingerprint of
    /// the request, when the caller gave the key).
    pub(super) async fn claim(
        &self,
        user_id: i64,
        order: &DeployOrder,
        (key, given): (&str, Option<&GivenKey>),
        quote: &Quote,
        devices: &[(&str, u32)],
        now: UnixMillis,
    ) -> Result<(ClusterSummary, Vec<Transition>, Option<String>), Attempt> {
        let id = format!("cl-{}", random_hex(8));
        let notebook_token = runs_notebook(order.kind, &order.workload).then(|| random_hex(16));
        let mut tx = self.store.begin_write().await?;
        if name_taken(&mut tx, user_id, &order.name).await? {
            return Err(name_conflict(&order.name).into());
        }
        if let Some(given) = given {
            given.record(&mut tx, now).await?;
        }
        let promotional = self
            .promo_standing(&mut tx, user_id, order.payment.asset())
            .await?
            .binds();
        if promotional {
            let ids: Vec<&str> = devices.iter().map(|(id, _)| *id).collect();
            if let Some(device) = promo::first_barred(&mut tx, user_id, &ids, now).await? {
                return Err(Attempt::Barred(device));
            }
        }
        charge(
            &mut tx,
            user_id,
            &id,
            Posting::new(
                PostingKind::ClusterCharge,
                format!("deploy:{id}"),
                format!("cluster {id}: {}", order.name),
            )
            .of_cluster(&id),
            quote,
            "this cluster costs",
            now,
        )
        .await?;
        let workload = serde_json::to_string(&order.workload)
            .map_err(|e| Error::Invalid(format!("workload: {e}")))?;
        sqlx::query(
            "INSERT INTO clusters (id, user_id, name, kind, purpose, hardware, units, countries, \
               min_tier, compliance, payment, workload, status, status_reason, rate, hours, charged, \
               escrowed, idempotency_key, created_at, deadline_at, token_price, notebook_token, \
               promotional) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'deploying', $13, $14, $15, \
               $16, $17, $18, $19, $20, $21, $22, $23)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(&order.name)
        .bind(order.kind.as_str())
        .bind(order.purpose.as_str())
        .bind(order.hardware.as_str())
        .bind(i64::from(quote.units))
        .bind(order.countries.join(","))
        .bind(order.min_tier.map(ConnectivityTier::as_str))
        .bind(order.compliance.as_str())
        .bind(order.payment.as_str())
        .bind(&workload)
        .bind("paid; waiting for every device to start the workload")
        .bind(quote.rate_per_unit_hour.micros())
        .bind(i64::from(quote.hours))
        .bind(quote.total.micros())
        .bind(quote.escrow().micros())
        .bind(key)
        .bind(now.0)
        .bind(now.0 + self.config.start_deadline_secs * 1000)
        .bind(quote.in_tokens.map(|t| t.price.per_token().micros()))
        .bind(&notebook_token)
        .bind(promotional)
        .execute(&mut *tx)
        .await?;
        let units: Vec<u32> = devices.iter().map(|(_, units)| *units).collect();
        let budgets = split_by_units(quote.escrow(), &units);
        let mut transitions = Vec::with_capacity(devices.len());
        for (position, ((device, units), budget)) in devices.iter().zip(budgets).enumerate() {
            let role = role_of(order.kind, position);
            let seat = Seat {
                cluster_id: &id,
                role,
                units: *units,
                budget,
                compliance: order.compliance,
            };
            match hire(&mut tx, device, seat, now).await {
                Ok(t) => transitions.push(t),
                Err(Error::Conflict(_)) | Err(Error::NotFound(_)) => {
                    return Err(Attempt::Taken(device.to_string()))
                }
                Err(e) => return Err(e.into()),
            }
        }
        let unit = order.hardware.unit_name();
        record(
            &mut tx,
            &id,
            now,
            &format!(
                "paid {} ({} {unit}s × {} h at {}/h, {} discount, {} fees); hired {} device(s){}",
                quote.shown_total(),
                quote.units,
                quote.hours,
                quote.rate_per_unit_hour,
                quote.discount,
                quote.fees(),
                devices.len(),
                if promotional {
                    "; paid while your balance held promotional credit, so its devices are \
                     never yours nor a new provider's"
                } else {
                    ""
                }
            ),
        )
        .await?;
        let summary = self.summary_in(&mut tx, user_id, &id).await?;
        tx.commit().await?;
        Ok((summary, transitions, notebook_token))
    }
}

/// Charges `quote` to the renter inside the caller's transaction, as `posting`: the escrow part
/// into the cluster's escrow, the fees to the platform; paid in the token, the renter's tokens
/// go to the exchange, which puts in the dollars. Refuses with both figures when the balance is
/// short (`costs` says what for).
pub(super) async fn charge(
    conn: &mut AnyConnection,
    user_id: i64,
    cluster_id: &str,
    posting: Posting,
    quote: &Quote,
    costs: &str,
    now: UnixMillis,
) -> Result<(), Error> {
    let available = Account::UserAvailable(user_id);
    let (payer, posting) = match quote.in_tokens {
        None => {
            let have = usdc_in(&mut *conn, &available).await?;
            if have < quote.total {
                return Err(Error::Conflict(format!(
                    "your balance is {have}; {costs} {}",
                    quote.total
                )));
            }
            (available, posting)
        }
        Some(paid) => {
            let have = tokens_in(&mut *conn, &available).await?;
            if have < paid.tokens {
                return Err(Error::Conflict(format!(
                    "your token balance is {have}; {costs} {}",
                    quote.shown_total()
                )));
            }
            let mut posting = posting
                .transfer_tokens(available, TOKEN_EXCHANGE, paid.tokens)
                .map_err(invalid_posting)?;
            posting.memo = format!("{} ({} at {})", posting.memo, quote.total, paid.price);
            (TOKEN_EXCHANGE, posting)
        }
    };
    let posting = posting
        .transfer(
            payer.clone(),
            Account::ClusterEscrow(cluster_id.to_owned()),
            quote.escrow(),
        )
        .and_then(|p| p.transfer(payer, Account::PlatformFees, quote.fees()))
        .map_err(invalid_posting)?;
    post(conn, &posting, now).await?;
    Ok(())
}

pub(super) fn name_conflict(name: &str) -> Error {
    Error::Conflict(format!("you already have a cluster named '{name}'"))
}

pub(super) async fn name_taken(
    conn: &mut AnyConnection,
    user_id: i64,
    name: &str,
) -> Result<bool, Error> {
    Ok(
        sqlx::query("SELECT 1 FROM clusters WHERE user_id = $1 AND name = $2")
            .bind(user_id)
            .bind(name)
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

/// What every device of one cluster is told, beside its own role.
pub(super) struct ClusterWork<'a> {
    pub(super) cluster_id: &'a str,
    pub(super) kind: ClusterKind,
    pub(super) workload: &'a Workload,
    /// The head device, and the address the others get to reach it.
    pub(super) head: Option<&'a str>,
    pub(super) head_address: Option<String>,
    /// The head's JupyterLab token (the head alone gets it).
    pub(super) notebook_token: Option<&'a str>,
    /// How many devices the cluster has.
    pub(super) devices: u32,
}

/// Whether the head of a cluster of `kind` running `workload` starts a JupyterLab: Ray
/// clusters the agents start themselves (`ray start`), not ones running the renter's command.
pub(super) fn runs_notebook(kind: ClusterKind, workload: &Workload) -> bool {
    kind.runtime() == domain::cluster::Runtime::Ray && workload.command.is_empty()
}

/// A device's place in a cluster it is hired into.
pub(super) struct Seat<'a> {
    pub(super) cluster_id: &'a str,
    pub(super) role: ClusterRole,
    pub(super) units: u32,
    pub(super) budget: MicroUsd,
    /// What the cluster asked for, which the device must meet.
    pub(super) compliance: SecurityCompliance,
}

/// Hires `device_id` into `seat`: a conditional status change (a device another order took is
/// a conflict) and, for an attested order, the device's attestation as the database has it now
/// (the index may be behind an operator's change).
pub(super) async fn hire(
    conn: &mut AnyConnection,
    device_id: &str,
    seat: Seat<'_>,
    now: UnixMillis,
) -> Result<Transition, Error> {
    let Seat {
        cluster_id,
        role,
        units,
        budget,
        compliance,
    } = seat;
    let hired = DeviceEvent::Hired {
        cluster_id: cluster_id.to_owned(),
    };
    let t = apply_event(conn, device_id, &hired, now).await?;
    if !crate::compliance::device_meets(conn, device_id, compliance, now).await? {
        return Err(Error::Conflict(format!(
            "device {device_id} is no longer attested for {}",
            compliance.label()
        )));
    }
    sqlx::query(
        "INSERT INTO cluster_devices (cluster_id, device_id, role, units, budget, state, joined_at) \
         VALUES ($1, $2, $3, $4, $5, 'assigned', $6)",
    )
    .bind(cluster_id)
    .bind(device_id)
    .bind(role.as_str())
    .bind(i64::from(units))
    .bind(budget.micros())
    .bind(now.0)
    .execute(conn)
    .await?;
    Ok(t)
}
