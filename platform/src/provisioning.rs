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

use domain::agent_protocol::{WorkloadAssignment, WorkloadState};
use domain::allocator::{self, Asked, Filters, Want};
use domain::catalog::GpuCatalog;
use domain::cluster::{
    parse_duration, ClusterDetail, ClusterEvent, ClusterEventLine, ClusterKind, ClusterMember,
    ClusterRole, ClusterStatus, ClusterSummary, CountrySupply, DeployOptions, DeployOrder,
    DeployRequest, ExtendRequest, Hardware, HardwareOffer, HireEarning, PaymentMethod, Purpose,
    QuoteAnswer, SecurityCompliance, Workload,
};
use domain::device_status::{DeviceEvent, Transition};
use domain::fleet::{ConnectivityTier, DeviceStatus};
use domain::ledger::{Account, Posting, TOKEN_EXCHANGE};
use domain::money::{MicroUsd, TokenPrice, TOKEN_SYMBOL};
use domain::pricing::{self, basis_points, split_by_units, Quote, PROVIDER_FEE_BPS};
use domain::time::UnixMillis;
use domain::worker::{utilisation_by_hour, HourlyUptime, UtilisationHour};
use rustc_hash::{FxHashMap, FxHashSet};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::index::FleetIndex;
use crate::ledger::{post, tokens_in, usdc_in};
use crate::live::{LiveFleet, HOUR_MS};
use crate::secret::random_hex;
use crate::store::Store;
use crate::worker::{apply_event, mirror, status_of, uptime_hours};
use crate::Error;

#[derive(Debug, Clone)]
pub struct ProvisioningConfig {
    /// A deploying cluster whose agents do not all run the workload by then fails, refunded.
    pub start_deadline_secs: i64,
    /// Hire earnings of running clusters are paid to providers at least this often.
    pub settle_every_secs: i64,
    /// What the platform takes the network token at for clusters; without it, clusters are paid
    /// in USDC only.
    pub token_price: Option<TokenPrice>,
}

impl Default for ProvisioningConfig {
    fn default() -> ProvisioningConfig {
        ProvisioningConfig {
            start_deadline_secs: 180,
            settle_every_secs: 3_600,
            token_price: None,
        }
    }
}

/// Deploy attempts when devices are taken by a concurrent order between choice and claim.
const CLAIM_ATTEMPTS: usize = 4;

/// Hours of utilisation the cluster page charts.
const UTILISATION_HOURS: i64 = 48;

#[derive(Clone)]
pub struct ProvisioningService {
    store: Store,
    live: Arc<LiveFleet>,
    index: Arc<FleetIndex>,
    catalog: GpuCatalog,
    config: Arc<ProvisioningConfig>,
}

/// What the allocator is asked to place: hardware under the filters, so many units.
struct Placing<'a> {
    hardware: &'a Hardware,
    countries: &'a [String],
    min_tier: Option<ConnectivityTier>,
    compliance: SecurityCompliance,
    want: Want,
}

impl<'a> Placing<'a> {
    fn of(order: &'a DeployOrder) -> Placing<'a> {
        Placing {
            hardware: &order.hardware,
            countries: &order.countries,
            min_tier: order.min_tier,
            compliance: order.compliance,
            want: match order.kind {
                ClusterKind::MegaRay => Want::Everything,
                _ => Want::Exactly(order.quantity),
            },
        }
    }
}

/// Why one deploy attempt did not commit.
enum Attempt {
    /// Another order claimed this device first: choose again without it.
    Taken(String),
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

const SUMMARY_COLUMNS: &str = "id, name, kind, hardware, units, status, status_reason, hours, \
     charged, created_at, running_at, ends_at, finished_at, user_id, escrowed, refunded, rate, \
     purpose, countries, min_tier, payment, workload, token_price, notebook_token";

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{what}: {e}"))
}

/// The token price a cluster was paid at, from column `i`; None for clusters paid in USDC.
fn token_price_at(row: &AnyRow, i: usize) -> Result<Option<TokenPrice>, Error> {
    row.try_get::<Option<i64>, _>(i)?
        .map(|micros| TokenPrice::new(MicroUsd::from_micros(micros)))
        .transpose()
        .map_err(|e| corrupt("token price", e))
}

fn summary_of(row: &AnyRow) -> Result<ClusterSummary, Error> {
    let number = |i: usize| -> Result<u32, Error> {
        u32::try_from(row.try_get::<i64, _>(i)?).map_err(|e| corrupt("cluster size", e))
    };
    Ok(ClusterSummary {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        kind: ClusterKind::parse(row.try_get(2)?).map_err(|e| corrupt("cluster kind", e))?,
        hardware: row.try_get(3)?,
        units: number(4)?,
        status: ClusterStatus::parse(row.try_get(5)?).map_err(|e| corrupt("cluster status", e))?,
        status_reason: row.try_get(6)?,
        hours: number(7)?,
        charged: MicroUsd::from_micros(row.try_get(8)?),
        created_at: row.try_get(9)?,
        running_at: row.try_get(10)?,
        ends_at: row.try_get(11)?,
        finished_at: row.try_get(12)?,
    })
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

    fn rate(&self, hardware: &Hardware) -> MicroUsd {
        match hardware {
            Hardware::Cpu => pricing::CPU_DEVICE_PRICE_PER_HOUR,
            Hardware::Gpu(name) => self
                .catalog
                .by_name(name)
                .map_or(MicroUsd::ZERO, |m| m.default_price_per_hour),
        }
    }

    fn order(&self, request: &DeployRequest) -> Result<DeployOrder, Error> {
        request
            .validate(&self.catalog)
            .map_err(Error::InvalidFields)
    }

    /// The price of `request` and whether it can be placed now, from the fleet index alone.
    pub fn quote(&self, request: &DeployRequest) -> Result<QuoteAnswer, Error> {
        let order = self.order(request)?;
        let cells = self.index.free_supply(&order.hardware, order.compliance);
        let want = Placing::of(&order).want;
        // Reasons name the attestation with the hardware: "0 HIPAA-attested H100 … GPUs".
        let hardware = match order.compliance {
            c if c.needs_attestation() => {
                format!("{}-attested {}", c.label(), order.hardware.as_str())
            }
            _ => order.hardware.as_str().to_owned(),
        };
        let mut asked = Asked {
            hardware: &hardware,
            unit_name: order.hardware.unit_name(),
            want,
            countries: &order.countries,
            min_tier: order.min_tier,
        };
        let mut fillability = allocator::fillability(&cells, &asked);
        if !fillability.fillable && order.compliance.needs_attestation() {
            // What the same order finds without the attestation, so the renter can weigh it.
            asked.hardware = order.hardware.as_str();
            let all = self
                .index
                .free_supply(&order.hardware, SecurityCompliance::E2eEncrypted);
            if allocator::fillability(&all, &asked).fillable {
                fillability.reasons.push(format!(
                    "without {} attestation it can be placed now (end-to-end encrypted)",
                    order.compliance.label()
                ));
            }
        }
        let units = match want {
            Want::Exactly(n) => n,
            Want::Everything => fillability.placeable,
        };
        let quote = self.order_quote(&order, units)?;
        Ok(QuoteAnswer { quote, fillability })
    }

    /// The price clusters paid in the network token are paid at; none: USDC only.
    pub fn token_price(&self) -> Option<TokenPrice> {
        self.config.token_price
    }

    /// What `units` of `order`'s hardware cost for its hours, as the renter pays it now.
    fn order_quote(&self, order: &DeployOrder, units: u32) -> Result<Quote, Error> {
        self.priced(
            pricing::quote(
                self.rate(&order.hardware),
                units,
                order.hours(),
                order.payment,
            ),
            self.token_price(),
        )
    }

    /// `quote` as the renter pays it: in tokens at `price` when paying in the token, which
    /// needs a price.
    fn priced(
        &self,
        quote: Result<Quote, pricing::PriceOverflow>,
        price: Option<TokenPrice>,
    ) -> Result<Quote, Error> {
        let quote = quote.map_err(|e| Error::Invalid(e.to_string()))?;
        match (quote.payment, price) {
            (PaymentMethod::Usdc, _) => Ok(quote),
            (PaymentMethod::Token, Some(price)) => quote
                .priced_in_tokens(price)
                .map_err(|e| Error::Invalid(e.to_string())),
            (PaymentMethod::Token, None) => {
                Err(Error::InvalidFields(vec![domain::cluster::FieldError {
                    field: "payment".into(),
                    message: format!(
                        "paying in {TOKEN_SYMBOL} is not offered here: the operator has set no \
                         token price; pay in USDC"
                    ),
                }]))
            }
        }
    }

    /// Every catalog model and CPU with its free units and price (most free first), and the
    /// countries that have free units of `hardware` (none while it is empty).
    pub fn deploy_options(&self, hardware: &str) -> Result<DeployOptions, Error> {
        let free: FxHashMap<Hardware, u64> =
            self.index.free_units_by_hardware().into_iter().collect();
        let mut offers: Vec<HardwareOffer> = self
            .catalog
            .models()
            .iter()
            .map(|m| Hardware::Gpu(m.name.clone()))
            .chain([Hardware::Cpu])
            .map(|h| HardwareOffer {
                free_units: free.get(&h).copied().unwrap_or(0),
                rate_per_unit_hour: self.rate(&h),
                hardware: h.as_str().to_owned(),
            })
            .collect();
        offers.sort_by_key(|o| std::cmp::Reverse(o.free_units));
        let mut by_country: FxHashMap<String, u64> = FxHashMap::default();
        let cells = match hardware.trim() {
            // Nothing chosen yet: the hardware list alone.
            "" => Vec::new(),
            text => {
                let chosen = Hardware::parse(text, &self.catalog).map_err(Error::Invalid)?;
                self.index
                    .free_supply(&chosen, SecurityCompliance::E2eEncrypted)
            }
        };
        for cell in cells {
            *by_country.entry(cell.country).or_default() += cell.devices * u64::from(cell.units);
        }
        let mut countries: Vec<CountrySupply> = by_country
            .into_iter()
            .map(|(code, free_units)| CountrySupply {
                name: domain::country::name_of(&code).unwrap_or_else(|| code.clone()),
                code,
                free_units,
            })
            .collect();
        countries.sort_by(|a, b| b.free_units.cmp(&a.free_units).then(a.name.cmp(&b.name)));
        // Then every other country, by name, so the wizard can offer any of them.
        let mut others: Vec<CountrySupply> = domain::country::all()
            .into_iter()
            .filter(|c| !countries.iter().any(|free| free.code == c.code))
            .map(|c| CountrySupply {
                code: c.code,
                name: c.name,
                free_units: 0,
            })
            .collect();
        others.sort_by(|a, b| a.name.cmp(&b.name));
        countries.extend(others);
        Ok(DeployOptions {
            hardware: offers,
            countries,
            token_price: self.token_price(),
        })
    }

    /// Whether the renter can still use `name` for a new cluster.
    pub async fn name_available(&self, user_id: i64, name: &str) -> Result<bool, Error> {
        let name = domain::cluster::parse_cluster_name(name).map_err(Error::Invalid)?;
        let mut conn = self.store.pool().acquire().await?;
        Ok(!name_taken(&mut conn, user_id, &name).await?)
    }

    /// Pays for `request` from the renter's balance and hires its devices, in one transaction.
    /// The same `idempotency_key` again returns the cluster it created; without one, every
    /// call is a new order.
    pub async fn deploy(
        &self,
        user_id: i64,
        request: &DeployRequest,
        idempotency_key: Option<&str>,
        now: UnixMillis,
    ) -> Result<ClusterSummary, Error> {
        let order = self.order(request)?;
        let key = crate::idempotency(idempotency_key)?;
        let key = key.as_str();
        if let Some(existing) = self.by_key(user_id, key).await? {
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
        let mut excluded = FxHashSet::default();
        for _ in 0..CLAIM_ATTEMPTS {
            let Ok(chosen) = self.place(&Placing::of(&order), &excluded, seed, now) else {
                let answer = self.quote(request)?;
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
            match self.claim(user_id, &order, key, &quote, &chosen, now).await {
                Ok((summary, transitions, notebook_token)) => {
                    let work = ClusterWork {
                        cluster_id: &summary.id,
                        kind: order.kind,
                        workload: &order.workload,
                        head: (role_of(order.kind, 0) == ClusterRole::Head).then(|| chosen[0].0),
                        notebook_token: notebook_token.as_deref(),
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
                Err(Attempt::Failed(e)) => {
                    // A double submit racing this one may have created the cluster.
                    if let Some(existing) = self.by_key(user_id, key).await? {
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

    /// The devices (ids and units) the allocator picks for `placing` among the free ones now,
    /// leaving out `excluded`; the head first. Exact orders look first only in the countries
    /// with the most free units that admit them (the allocator prefers those anyway), so a
    /// placement over a million devices reads a few thousand; the whole supply is read only
    /// when those cannot fit the order exactly.
    fn place(
        &self,
        placing: &Placing,
        excluded: &FxHashSet<String>,
        seed: u64,
        now: UnixMillis,
    ) -> Result<Vec<(String, u32)>, allocator::Shortfall> {
        let narrowed = match placing.want {
            Want::Exactly(wanted) => self.best_supplied(placing, wanted),
            Want::Everything => None,
        };
        let attempt = |countries: &[String]| {
            let (ids, candidates) = self.candidates(placing, countries, excluded, now);
            let placement =
                allocator::allocate(&candidates, &Filters::default(), placing.want, seed)?;
            Ok(placement
                .devices
                .iter()
                .map(|&i| (ids[i].to_string(), candidates[i].units))
                .collect())
        };
        match narrowed {
            Some(countries) => attempt(&countries).or_else(|_| attempt(placing.countries)),
            None => attempt(placing.countries),
        }
    }

    /// The admitted countries with the most free units of the hardware (on devices no larger
    /// than the order), in that order, until they hold twice `wanted`; None when that is all.
    fn best_supplied(&self, placing: &Placing, wanted: u32) -> Option<Vec<String>> {
        let mut units: FxHashMap<String, u64> = FxHashMap::default();
        for cell in self.index.free_supply(placing.hardware, placing.compliance) {
            // Devices larger than the order can never be part of it.
            let admitted = cell.units <= wanted
                && (placing.countries.is_empty() || placing.countries.contains(&cell.country))
                && placing.min_tier.is_none_or(|min| cell.tier <= min);
            if admitted {
                *units.entry(cell.country).or_default() += cell.devices * u64::from(cell.units);
            }
        }
        let mut ranked: Vec<(String, u64)> = units.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut held = 0;
        let enough = ranked
            .iter()
            .position(|(_, u)| {
                held += u;
                held >= 2 * u64::from(wanted)
            })
            .map_or(ranked.len(), |at| at + 1);
        (enough < ranked.len()).then(|| ranked.into_iter().take(enough).map(|(c, _)| c).collect())
    }

    /// The devices a deploy of `request` would hire now, without hiring them (empty when it
    /// cannot be placed): what `cluster-bench` times.
    pub fn plan(
        &self,
        request: &DeployRequest,
        seed: u64,
        now: UnixMillis,
    ) -> Result<Vec<(String, u32)>, Error> {
        let order = self.order(request)?;
        Ok(self
            .place(&Placing::of(&order), &FxHashSet::default(), seed, now)
            .unwrap_or_default())
    }

    /// The free devices in `countries` that `placing`'s other filters admit, as allocator
    /// candidates (with hours idle as reliability), and their ids in the same order.
    fn candidates(
        &self,
        placing: &Placing,
        countries: &[String],
        excluded: &FxHashSet<String>,
        now: UnixMillis,
    ) -> (Vec<Arc<str>>, Vec<allocator::Candidate>) {
        self.index
            .free_devices(
                placing.hardware,
                countries,
                placing.min_tier,
                placing.compliance,
                excluded,
                now.0,
            )
            .into_iter()
            .unzip()
    }

    /// The IP address `device`'s agent last heartbeated from, if this process heard it.
    fn address_of(&self, device: &str) -> Option<String> {
        self.live
            .with(device, |d| d.address)
            .flatten()
            .map(|ip| ip.to_string())
    }

    /// Hands a hired device its part in `work`: the address of the cluster's head device when
    /// it is another, the notebook token when it is the head. Its agent gets it with the next
    /// heartbeat reply.
    fn assign(&self, device: &str, role: ClusterRole, work: &ClusterWork) {
        let assignment = Arc::new(WorkloadAssignment {
            cluster_id: work.cluster_id.to_owned(),
            kind: work.kind,
            role,
            workload: work.workload.clone(),
            head_address: work
                .head
                .filter(|head| *head != device)
                .and_then(|head| self.address_of(head)),
            notebook_token: work
                .notebook_token
                .filter(|_| role == ClusterRole::Head)
                .map(str::to_owned),
        });
        self.live.with(device, |d| {
            d.assign(Some(assignment), Some(WorkloadState::Assigned))
        });
    }

    async fn claim(
        &self,
        user_id: i64,
        order: &DeployOrder,
        key: &str,
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
        charge(
            &mut tx,
            user_id,
            &id,
            Posting::new(
                format!("deploy:{id}"),
                format!("cluster {id}: {}", order.name),
            ),
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
               escrowed, idempotency_key, created_at, deadline_at, token_price, notebook_token) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'deploying', $13, $14, $15, \
               $16, $17, $18, $19, $20, $21, $22)",
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
                "paid {} ({} {unit}s × {} h at {}/h, {} discount, {} fees); hired {} device(s)",
                quote.shown_total(),
                quote.units,
                quote.hours,
                quote.rate_per_unit_hour,
                quote.discount,
                quote.fees(),
                devices.len()
            ),
        )
        .await?;
        let summary = self.summary_in(&mut tx, user_id, &id).await?;
        tx.commit().await?;
        Ok((summary, transitions, notebook_token))
    }

    async fn by_key(&self, user_id: i64, key: &str) -> Result<Option<ClusterSummary>, Error> {
        let row = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM clusters WHERE user_id = $1 AND idempotency_key = $2"
        ))
        .bind(user_id)
        .bind(key)
        .fetch_optional(self.store.pool())
        .await?;
        row.as_ref().map(summary_of).transpose()
    }

    async fn summary_in(
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
        let refunded = MicroUsd::from_micros(row.try_get(15)?);
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
               cd.joined_at, cd.left_at \
             FROM cluster_devices cd JOIN devices d ON d.id = cd.device_id \
             WHERE cd.cluster_id = $1 ORDER BY cd.left_at IS NOT NULL, cd.role, cd.device_id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            let device_id: String = r.try_get(0)?;
            let left_at: Option<i64> = r.try_get(8)?;
            Ok(ClusterMember {
                address: match left_at {
                    None => self.address_of(&device_id),
                    Some(_) => None,
                },
                device_id,
                role: ClusterRole::parse(r.try_get(1)?).map_err(|e| corrupt("role", e))?,
                units: u32::try_from(r.try_get::<i64, _>(2)?).map_err(|e| corrupt("units", e))?,
                country: r.try_get(3)?,
                tier: r
                    .try_get::<Option<&str>, _>(4)?
                    .map(ConnectivityTier::parse)
                    .transpose()
                    .map_err(|e| corrupt("tier", e))?,
                device_status: status_of(r.try_get(5)?)?,
                workload_state: r.try_get(6)?,
                joined_at: r.try_get(7)?,
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
                        at: r.try_get(0)?,
                        detail: r.try_get(1)?,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
        let utilisation_hours = self.utilisation(&mut conn, &members, now).await?;
        Ok(ClusterDetail {
            utilisation_hours,
            purpose: Purpose::parse(row.try_get(17)?).map_err(|e| corrupt("purpose", e))?,
            countries: split_countries(row.try_get(18)?),
            min_tier: row
                .try_get::<Option<&str>, _>(19)?
                .map(ConnectivityTier::parse)
                .transpose()
                .map_err(|e| corrupt("tier", e))?,
            payment: PaymentMethod::parse(row.try_get(20)?).map_err(|e| corrupt("payment", e))?,
            token_price: token_price_at(&row, 22)?,
            rate_per_unit_hour: MicroUsd::from_micros(row.try_get(16)?),
            workload: serde_json::from_str::<Workload>(row.try_get(21)?)
                .map_err(|e| corrupt("workload", e))?,
            notebook_token: row.try_get(23)?,
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
    async fn utilisation(
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

    /// Buys `request`'s hours more on the same devices, charged like a new order; the same
    /// `idempotency_key` again changes nothing.
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
        let key = crate::idempotency(idempotency_key)?;
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
                .map(|r| r.try_get(0))
                .transpose()?;
        if already.is_some() {
            return Ok(summary);
        }
        summary
            .status
            .apply(&ClusterEvent::Extended)
            .map_err(|e| Error::Conflict(e.to_string()))?;
        let payment = PaymentMethod::parse(row.try_get(20)?).map_err(|e| corrupt("payment", e))?;
        // At the price the cluster was paid at, so its refunds convert at one price.
        let quote = self.priced(
            pricing::quote(
                MicroUsd::from_micros(row.try_get(16)?),
                summary.units,
                hours,
                payment,
            ),
            token_price_at(&row, 22)?,
        )?;
        charge(
            &mut tx,
            user_id,
            id,
            Posting::new(posting_key, format!("cluster {id}: {hours} h more")),
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
               ends_at = ends_at + $4 WHERE id = $5",
        )
        .bind(i64::from(hours))
        .bind(quote.total.micros())
        .bind(quote.escrow().micros())
        .bind(i64::from(hours) * HOUR_MS)
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
    async fn finish(&self, id: &str, event: ClusterEvent, now: UnixMillis) -> Result<(), Error> {
        let mut tx = self.store.begin_write().await?;
        let cluster = Settling::load(&mut tx, id).await?;
        let to = cluster
            .status
            .apply(&event)
            .map_err(|e| Error::Conflict(e.to_string()))?;
        let reason = match &event {
            ClusterEvent::StartFailed { why } => format!("failed to start: {why}; fully refunded"),
            ClusterEvent::TerminatedByRenter => "terminated by the renter".to_owned(),
            ClusterEvent::Expired => "completed its paid time".to_owned(),
            ClusterEvent::Lost { why } => format!("failed: {why}"),
            _ => to.to_string(),
        };
        cluster.change_status(&mut tx, to, &reason, now).await?;
        let members = active_members(&mut tx, id).await?;
        let escrow = usdc_in(&mut tx, &cluster.escrow_account()).await?;
        let mut posting = Posting::new(format!("finish:{id}"), format!("cluster {id} {to}"));
        let (unused, fees_back) = match cluster.running_at {
            Some(running_at) => {
                let mut paid = MicroUsd::ZERO;
                for member in &members {
                    let due = member.due(running_at, now.0, cluster.ends_at);
                    posting = cluster.pay(&mut tx, posting, member, due, now).await?;
                    paid = MicroUsd::from_micros(paid.micros() + due.micros());
                }
                // The budgets less what was earned add up to the escrow: the rest was not used.
                (
                    MicroUsd::from_micros(escrow.micros() - paid.micros()),
                    MicroUsd::ZERO,
                )
            }
            // Never ran: everything back, the fees too.
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

    /// A device of a running cluster that went down (at `down_at`) or failed: its provider is
    /// paid for the time it served, the renter gets back the time it was down, and the rest of
    /// its budget hires a replacement of the same hardware under the same filters if the free
    /// supply has one (or comes back to the renter too). A cluster left with no device fails.
    async fn lose(
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
                    format!("lose:{id}:{device_id}:{}", lost.joined_at),
                    format!("cluster {id} lost {device_id}"),
                ),
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
        let last = members.len() == 1 && hired.is_empty();
        if last {
            // Nothing runs any more: rounding dust left in escrow goes back as well.
            let escrow = usdc_in(&mut tx, &cluster.escrow_account()).await?;
            refund = MicroUsd::from_micros(escrow.micros() - due.micros());
        }
        posting = cluster.refund(posting, cluster.escrow_account(), refund)?;
        post(&mut tx, &posting, now).await?;
        cluster.refunded(&mut tx, refund).await?;
        record(&mut tx, id, now, &line).await?;
        if last {
            let why = format!("its last device was lost ({why})");
            let to = cluster
                .status
                .apply(&ClusterEvent::Lost { why: why.clone() })
                .map_err(|e| Error::Conflict(e.to_string()))?;
            cluster
                .change_status(&mut tx, to, &format!("failed: {why}"), now)
                .await?;
        }
        tx.commit().await?;
        self.released(&released, now);
        let work = ClusterWork {
            cluster_id: id,
            kind: cluster.kind,
            workload: &cluster.workload,
            head: members
                .iter()
                .find(|m| m.role == ClusterRole::Head && m.device_id != device_id)
                .map(|m| m.device_id.as_str()),
            notebook_token: cluster.notebook_token.as_deref(),
        };
        for (device, t) in &hired {
            mirror(&self.live, &self.index, device, t, now);
            self.assign(device, lost.role, &work);
        }
        tracing::info!(cluster = id, device = device_id, replaced = !hired.is_empty(), refund = %refund, "cluster device lost");
        Ok(())
    }

    /// Hires devices for `lost`'s units inside the caller's transaction, funded by `budget`.
    /// None when the free supply has no exact fit or a chosen device was taken meanwhile.
    async fn replace(
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
        let Ok(chosen) = self.place(&placing, &FxHashSet::default(), seed, now) else {
            return Ok(None);
        };
        let units: Vec<u32> = chosen.iter().map(|(_, units)| *units).collect();
        let budgets = split_by_units(budget, &units);
        let mut hired = Vec::with_capacity(units.len());
        for ((device, units), budget) in chosen.into_iter().zip(budgets) {
            // Savepoint-free: a device taken meanwhile fails the whole loss, retried next sweep.
            let seat = Seat {
                cluster_id: &cluster.id,
                role: lost.role,
                units,
                budget,
                compliance: cluster.compliance,
            };
            let t = hire(tx, &device, seat, now).await?;
            hired.push((device, t));
        }
        Ok(Some(hired))
    }

    fn released(&self, transitions: &[(String, Option<Transition>)], now: UnixMillis) {
        for (device, t) in transitions {
            if let Some(t) = t {
                mirror(&self.live, &self.index, device, t, now);
            }
            self.live.with(device, |d| d.assign(None, None));
        }
    }

    /// What an agent reported for a cluster's workload: the cluster runs once every device runs
    /// it; a device that fails while starting fails the cluster, while running loses it.
    pub async fn workload_reported(
        &self,
        device_id: &str,
        cluster_id: &str,
        state: WorkloadState,
        detail: &str,
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
        let status =
            ClusterStatus::parse(row.try_get(0)?).map_err(|e| corrupt("cluster status", e))?;
        let hours: i64 = row.try_get(1)?;
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
        if started && status == ClusterStatus::Deploying {
            let waiting: i64 = sqlx::query(
                "SELECT COUNT(*) FROM cluster_devices \
                 WHERE cluster_id = $1 AND left_at IS NULL AND state NOT IN ('running', 'stopped')",
            )
            .bind(cluster_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            if waiting == 0 {
                let to = status
                    .apply(&ClusterEvent::AllRunning)
                    .map_err(|e| Error::Conflict(e.to_string()))?;
                let ends_at = now.0 + hours * HOUR_MS;
                sqlx::query(
                    "UPDATE clusters SET status = $1, status_reason = $2, running_at = $3, ends_at = $4 \
                     WHERE id = $5 AND status = 'deploying'",
                )
                .bind(to.as_str())
                .bind("every device runs the workload")
                .bind(now.0)
                .bind(ends_at)
                .bind(cluster_id)
                .execute(&mut *tx)
                .await?;
                record(
                    &mut tx,
                    cluster_id,
                    now,
                    &format!(
                        "running on every device; paid time ends at {}",
                        UnixMillis(ends_at).to_rfc3339()
                    ),
                )
                .await?;
                tracing::info!(cluster = cluster_id, "cluster running");
            }
        }
        tx.commit().await?;
        if state == WorkloadState::Failed {
            let why = format!("device {device_id} could not run the workload{said}");
            match status {
                ClusterStatus::Deploying => {
                    self.finish(cluster_id, ClusterEvent::StartFailed { why }, now)
                        .await?
                }
                ClusterStatus::Running => self.lose(cluster_id, device_id, &why, now, now).await?,
                _ => {}
            }
        }
        Ok(())
    }

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
            let (id, status, device): (String, String, String) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let why = format!("device {device} is {}", row.try_get::<String, _>(3)?);
            let outcome = if status == "deploying" {
                self.finish(&id, ClusterEvent::StartFailed { why }, now)
                    .await
            } else {
                let down_at = UnixMillis(row.try_get(4)?);
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

    /// Pays the providers of a running cluster what its devices (those still hired) earned
    /// since they were last settled, less the provider fee.
    async fn settle(&self, id: &str, now: UnixMillis) -> Result<(), Error> {
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
                format!(
                    "settle:{id}:{}:{}:{}",
                    member.device_id,
                    member.joined_at,
                    settled_through.micros()
                ),
                format!("cluster {id}: hire earnings of {}", member.device_id),
            );
            let posting = cluster.pay(&mut tx, posting, &member, due, now).await?;
            post(&mut tx, &posting, now).await?;
            paid = MicroUsd::from_micros(paid.micros() + due.micros());
        }
        tx.commit().await?;
        tracing::debug!(cluster = id, paid = %paid, "hire earnings settled");
        Ok(())
    }

    /// The clusters `sql` selects with `now` as `$1`.
    async fn ids_due(&self, sql: &str, now: UnixMillis) -> Result<Vec<String>, Error> {
        Ok(sqlx::query_scalar::<_, String>(sql)
            .bind(now.0)
            .fetch_all(self.store.pool())
            .await?)
    }

    /// A concurrent change (another replica, a report) got there first: not an error.
    fn tolerate(&self, outcome: Result<(), Error>) -> Result<usize, Error> {
        match outcome {
            Ok(()) => Ok(1),
            Err(Error::Conflict(why)) => {
                tracing::debug!(%why, "cluster changed concurrently");
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// What `owner_wallet`'s devices (or just `device_id`) earned per cluster, newest first.
    pub async fn hires_of(
        &self,
        owner_wallet: &str,
        device_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<HireEarning>, Error> {
        hires(&self.store, owner_wallet, device_id, limit).await
    }

    /// What `owner_wallet`'s devices earned and forfeited in all their hires (before the fee).
    pub async fn hire_totals(&self, owner_wallet: &str) -> Result<(MicroUsd, MicroUsd), Error> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(cd.earned), 0) AS BIGINT), \
               CAST(COALESCE(SUM(cd.forfeited), 0) AS BIGINT) \
             FROM cluster_devices cd JOIN devices d ON d.id = cd.device_id \
             WHERE d.owner_wallet = $1",
        )
        .bind(owner_wallet)
        .fetch_one(self.store.pool())
        .await?;
        Ok((
            MicroUsd::from_micros(row.try_get(0)?),
            MicroUsd::from_micros(row.try_get(1)?),
        ))
    }

    /// Gives every device of an active cluster its assignment in the live fleet (start-up).
    pub(crate) async fn load_assignments(&self) -> Result<usize, Error> {
        let rows = sqlx::query(
            "SELECT cd.device_id, c.id, c.kind, cd.role, c.workload, cd.state, c.notebook_token \
             FROM cluster_devices cd JOIN clusters c ON c.id = cd.cluster_id \
             WHERE cd.left_at IS NULL AND c.status IN ('deploying', 'running')",
        )
        .fetch_all(self.store.pool())
        .await?;
        for row in &rows {
            let device: String = row.try_get(0)?;
            let role = ClusterRole::parse(row.try_get(3)?).map_err(|e| corrupt("role", e))?;
            let assignment = Arc::new(WorkloadAssignment {
                cluster_id: row.try_get(1)?,
                kind: ClusterKind::parse(row.try_get(2)?)
                    .map_err(|e| corrupt("cluster kind", e))?,
                role,
                workload: serde_json::from_str(row.try_get(4)?)
                    .map_err(|e| corrupt("workload", e))?,
                // Addresses are learnt from heartbeats, none yet at start-up; running agents
                // keep what they were given.
                head_address: None,
                notebook_token: row
                    .try_get::<Option<String>, _>(6)?
                    .filter(|_| role == ClusterRole::Head),
            });
            let state = workload_state(row.try_get(5)?)?;
            self.live
                .with(&device, |d| d.assign(Some(assignment), Some(state)));
        }
        Ok(rows.len())
    }
}

/// The caller's idempotency key, checked, or a fresh one.
fn workload_state(text: &str) -> Result<WorkloadState, Error> {
    [
        WorkloadState::Assigned,
        WorkloadState::Starting,
        WorkloadState::Running,
        WorkloadState::Stopped,
        WorkloadState::Failed,
    ]
    .into_iter()
    .find(|s| s.as_str() == text)
    .ok_or_else(|| corrupt("workload state", text))
}

fn role_of(kind: ClusterKind, position: usize) -> ClusterRole {
    let headed = matches!(
        kind,
        ClusterKind::Ray | ClusterKind::MegaRay | ClusterKind::Kubernetes
    );
    if headed && position == 0 {
        ClusterRole::Head
    } else {
        ClusterRole::Worker
    }
}

/// Charges `quote` to the renter inside the caller's transaction, as `posting`: the escrow part
/// into the cluster's escrow, the fees to the platform; paid in the token, the renter's tokens
/// go to the exchange, which puts in the dollars. Refuses with both figures when the balance is
/// short (`costs` says what for).
async fn charge(
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

/// Takes the cluster's row lock for the rest of the transaction, so changes to one cluster
/// (agents' reports, a loss, an extension, the end) happen one after another. Without it, on
/// PostgreSQL two devices reporting "running" at once each count the other as still starting
/// and neither moves the cluster on. (SQLite's write transactions are serial anyway.)
async fn lock_cluster(conn: &mut AnyConnection, id: &str) -> Result<(), Error> {
    sqlx::query("UPDATE clusters SET status = status WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

fn name_conflict(name: &str) -> Error {
    Error::Conflict(format!("you already have a cluster named '{name}'"))
}

async fn name_taken(conn: &mut AnyConnection, user_id: i64, name: &str) -> Result<bool, Error> {
    Ok(
        sqlx::query("SELECT 1 FROM clusters WHERE user_id = $1 AND name = $2")
            .bind(user_id)
            .bind(name)
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

async fn cluster_row(conn: &mut AnyConnection, user_id: i64, id: &str) -> Result<AnyRow, Error> {
    sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM clusters WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::NotFound(format!("no cluster '{id}'")))
}

async fn record(
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

/// What `owner_wallet`'s devices (or just `device_id`) earned per cluster, newest first.
pub(crate) async fn hires(
    store: &Store,
    owner_wallet: &str,
    device_id: Option<&str>,
    limit: u32,
) -> Result<Vec<HireEarning>, Error> {
    sqlx::query(
        "SELECT cd.cluster_id, cd.device_id, d.name, cd.joined_at, cd.left_at, cd.earned, \
           cd.forfeited \
         FROM cluster_devices cd JOIN devices d ON d.id = cd.device_id \
         WHERE d.owner_wallet = $1 AND ($2 = '' OR cd.device_id = $2) \
         ORDER BY cd.joined_at DESC, cd.device_id LIMIT $3",
    )
    .bind(owner_wallet)
    .bind(device_id.unwrap_or_default())
    .bind(i64::from(limit))
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|row| {
        Ok(HireEarning {
            cluster_id: row.try_get(0)?,
            device_id: row.try_get(1)?,
            device_name: row.try_get(2)?,
            joined_at: row.try_get(3)?,
            left_at: row.try_get(4)?,
            earned: MicroUsd::from_micros(row.try_get(5)?),
            forfeited: MicroUsd::from_micros(row.try_get(6)?),
        })
    })
    .collect()
}

/// What each of `owner_wallet`'s devices earned in all its clusters.
pub(crate) async fn earned_per_device(
    store: &Store,
    owner_wallet: &str,
) -> Result<std::collections::HashMap<String, MicroUsd>, Error> {
    sqlx::query(
        "SELECT cd.device_id, CAST(SUM(cd.earned) AS BIGINT) FROM cluster_devices cd \
         JOIN devices d ON d.id = cd.device_id WHERE d.owner_wallet = $1 GROUP BY cd.device_id",
    )
    .bind(owner_wallet)
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|row| Ok((row.try_get(0)?, MicroUsd::from_micros(row.try_get(1)?))))
    .collect()
}

/// A device still in a cluster, with its provider and the escrow still held for it.
struct Member {
    device_id: String,
    role: ClusterRole,
    units: u32,
    owner: String,
    joined_at: i64,
    budget: MicroUsd,
    /// What was settled of the budget so far (gross, provider fee included).
    earned: MicroUsd,
}

impl Member {
    /// What the device has earned of its budget by `until`: its hire runs from the cluster's
    /// start (or its own joining, for a replacement) to the cluster's end.
    fn accrued(&self, running_at: i64, until: i64, ends_at: i64) -> MicroUsd {
        pricing::accrued(self.budget, self.joined_at.max(running_at), until, ends_at)
    }

    /// What it earned by `until` and was not settled yet.
    fn due(&self, running_at: i64, until: i64, ends_at: i64) -> MicroUsd {
        let accrued = self.accrued(running_at, until, ends_at);
        MicroUsd::from_micros((accrued.micros() - self.earned.micros()).max(0))
    }
}

async fn active_members(conn: &mut AnyConnection, cluster_id: &str) -> Result<Vec<Member>, Error> {
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
            device_id: r.try_get(0)?,
            role: ClusterRole::parse(r.try_get(1)?).map_err(|e| corrupt("role", e))?,
            units: u32::try_from(r.try_get::<i64, _>(2)?).map_err(|e| corrupt("units", e))?,
            owner: r.try_get(3)?,
            joined_at: r.try_get(4)?,
            budget: MicroUsd::from_micros(r.try_get(5)?),
            earned: MicroUsd::from_micros(r.try_get(6)?),
        })
    })
    .collect()
}

/// Claims an idle device for the cluster (a conditional update: a device another order took
/// first is a conflict) and adds it with its share of the escrow.
/// What every device of one cluster is told, beside its own role.
struct ClusterWork<'a> {
    cluster_id: &'a str,
    kind: ClusterKind,
    workload: &'a Workload,
    /// The head device, whose address the others get.
    head: Option<&'a str>,
    /// The head's JupyterLab token (the head alone gets it).
    notebook_token: Option<&'a str>,
}

/// Whether the head of a cluster of `kind` running `workload` starts a JupyterLab: Ray
/// clusters the agents start themselves (`ray start`), not ones running the renter's command.
fn runs_notebook(kind: ClusterKind, workload: &Workload) -> bool {
    matches!(kind, ClusterKind::Ray | ClusterKind::MegaRay) && workload.command.is_empty()
}

/// A device's place in a cluster it is hired into.
struct Seat<'a> {
    cluster_id: &'a str,
    role: ClusterRole,
    units: u32,
    budget: MicroUsd,
    /// What the cluster asked for, which the device must meet.
    compliance: SecurityCompliance,
}

/// Hires `device_id` into `seat`: a conditional status change (a device another order took is
/// a conflict) and, for an attested order, the device's attestation as the database has it now
/// (the index may be behind an operator's change).
async fn hire(
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

fn invalid_posting(e: domain::ledger::PostingError) -> Error {
    Error::Invalid(e.to_string())
}

/// What settling a cluster's money needs to know about it.
struct Settling {
    id: String,
    status: ClusterStatus,
    user_id: i64,
    kind: ClusterKind,
    hardware: Hardware,
    countries: Vec<String>,
    min_tier: Option<ConnectivityTier>,
    compliance: SecurityCompliance,
    workload: Workload,
    notebook_token: Option<String>,
    running_at: Option<i64>,
    ends_at: i64,
    charged: MicroUsd,
    escrowed: MicroUsd,
    token_price: Option<TokenPrice>,
}

impl Settling {
    /// Locks the cluster (see [`lock_cluster`]) and reads it.
    async fn load(conn: &mut AnyConnection, id: &str) -> Result<Settling, Error> {
        lock_cluster(conn, id).await?;
        let row = sqlx::query(
            "SELECT status, user_id, kind, hardware, countries, min_tier, workload, running_at, \
               ends_at, charged, escrowed, token_price, compliance, notebook_token \
             FROM clusters WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no cluster '{id}'")))?;
        let hardware: &str = row.try_get(3)?;
        Ok(Settling {
            id: id.to_owned(),
            status: ClusterStatus::parse(row.try_get(0)?)
                .map_err(|e| corrupt("cluster status", e))?,
            user_id: row.try_get(1)?,
            kind: ClusterKind::parse(row.try_get(2)?).map_err(|e| corrupt("cluster kind", e))?,
            hardware: if hardware == "cpu" {
                Hardware::Cpu
            } else {
                Hardware::Gpu(hardware.to_owned())
            },
            countries: split_countries(row.try_get(4)?),
            min_tier: row
                .try_get::<Option<&str>, _>(5)?
                .map(ConnectivityTier::parse)
                .transpose()
                .map_err(|e| corrupt("tier", e))?,
            workload: serde_json::from_str(row.try_get(6)?).map_err(|e| corrupt("workload", e))?,
            running_at: row.try_get(7)?,
            ends_at: row.try_get::<Option<i64>, _>(8)?.unwrap_or(0),
            charged: MicroUsd::from_micros(row.try_get(9)?),
            escrowed: MicroUsd::from_micros(row.try_get(10)?),
            token_price: token_price_at(&row, 11)?,
            compliance: SecurityCompliance::parse(row.try_get(12)?)
                .map_err(|e| corrupt("compliance", e))?,
            notebook_token: row.try_get(13)?,
        })
    }

    fn escrow_account(&self) -> Account {
        Account::ClusterEscrow(self.id.clone())
    }

    /// Adds to `posting` the return of `amount` from `from` to the renter: as dollars, or,
    /// for a cluster paid in the token, as tokens at the price it was paid at.
    fn refund(&self, posting: Posting, from: Account, amount: MicroUsd) -> Result<Posting, Error> {
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
    async fn pay(
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
        let fee = basis_points(due, PROVIDER_FEE_BPS);
        posting
            .transfer(
                self.escrow_account(),
                Account::ProviderClaimable(member.owner.clone()),
                MicroUsd::from_micros(due.micros() - fee.micros()),
            )
            .and_then(|p| p.transfer(self.escrow_account(), Account::PlatformFees, fee))
            .map_err(invalid_posting)
    }

    /// Moves the cluster on from the status it was read in; a concurrent change is a conflict.
    async fn change_status(
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

    async fn refunded(&self, conn: &mut AnyConnection, refund: MicroUsd) -> Result<(), Error> {
        sqlx::query("UPDATE clusters SET refunded = refunded + $1 WHERE id = $2")
            .bind(refund.micros())
            .bind(&self.id)
            .execute(conn)
            .await?;
        Ok(())
    }
}

pub(crate) fn split_countries(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Releases `members` from the cluster: hired devices go back to idle; devices that are no
/// longer hired (down, say) just leave. Returns the transitions to mirror after commit.
async fn release(
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
        let status: String = sqlx::query("SELECT status FROM devices WHERE id = $1")
            .bind(&member.device_id)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        let t = if status_of(&status)? == DeviceStatus::Hired {
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
        transitions.push((member.device_id.clone(), t));
    }
    Ok(transitions)
}
