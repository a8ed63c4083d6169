//! Clusters: what a renter asks for (a [`DeployRequest`], validated into a [`DeployOrder`] by
//! the same code in the browser and on the server), the cluster status state machine, and the
//! work the agents of a cluster run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::allocator::Fillability;
use crate::catalog::GpuCatalog;
use crate::fleet::{named_enum, ConnectivityTier, DeviceStatus};
use crate::money::MicroUsd;
// How the renter pays is pricing's concept; orders name it from here too.
pub use crate::pricing::PaymentMethod;
use crate::pricing::Quote;

named_enum!(
    /// How the devices of a cluster work together (DESIGN.md §2).
    ClusterKind, "cluster kind", {
        Ray => "ray",
        /// Every device matching the filters.
        MegaRay => "mega_ray",
        Kubernetes => "kubernetes",
        BareMetal => "bare_metal",
        Container => "container",
    }
);

/// What a cluster kind's devices run for the renter; the agent starts it and the console
/// shows its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `ray start` on every device (the head first, the others joining it), unless the renter
    /// gives a command of their own.
    Ray,
    /// A Kubernetes API server on the head.
    Kubernetes,
    /// The renter's container image.
    Container,
    /// The renter's command as a process on the device.
    Process,
}

/// Everything that differs between cluster kinds is decided here, each in an exhaustive
/// match: a new kind is one variant, and the compiler lists what it must decide.
impl ClusterKind {
    pub fn runtime(self) -> Runtime {
        match self {
            ClusterKind::Ray | ClusterKind::MegaRay => Runtime::Ray,
            ClusterKind::Kubernetes => Runtime::Kubernetes,
            ClusterKind::BareMetal => Runtime::Process,
            ClusterKind::Container => Runtime::Container,
        }
    }

    /// Whether its first device is a head that the others join.
    pub fn has_head(self) -> bool {
        match self {
            ClusterKind::Ray | ClusterKind::MegaRay | ClusterKind::Kubernetes => true,
            ClusterKind::BareMetal | ClusterKind::Container => false,
        }
    }

    /// Whether an order takes every free device matching its filters, rather than a count.
    pub fn takes_every_matching_device(self) -> bool {
        match self {
            ClusterKind::MegaRay => true,
            ClusterKind::Ray
            | ClusterKind::Kubernetes
            | ClusterKind::BareMetal
            | ClusterKind::Container => false,
        }
    }

    /// Whether the workload must name a container image.
    pub fn needs_image(self) -> bool {
        self.runtime() == Runtime::Container
    }

    /// Why it cannot be ordered now, if it cannot. Kubernetes is withdrawn until devices run a
    /// real, confined control plane the renter reaches through the platform: a cluster that
    /// showed an API server nothing served was worse than none. Its name stays, so clusters
    /// ordered before read back.
    pub fn not_offered(self) -> Option<&'static str> {
        match self {
            ClusterKind::Kubernetes => Some(
                "Kubernetes clusters are not offered yet: no device runs a Kubernetes control \
                 plane for renters; choose Ray, Container or Bare metal",
            ),
            ClusterKind::Ray
            | ClusterKind::MegaRay
            | ClusterKind::BareMetal
            | ClusterKind::Container => None,
        }
    }

    /// The kinds a renter can order, in the order the wizard lists them.
    pub fn offered() -> impl Iterator<Item = ClusterKind> {
        ClusterKind::ALL
            .iter()
            .copied()
            .filter(|k| k.not_offered().is_none())
    }

    /// How the console names it.
    pub fn label(self) -> &'static str {
        match self {
            ClusterKind::Ray => "Ray",
            ClusterKind::MegaRay => "Mega-Ray (every matching device)",
            ClusterKind::Kubernetes => "Kubernetes",
            ClusterKind::BareMetal => "Bare metal",
            ClusterKind::Container => "Container",
        }
    }
}

named_enum!(
    /// The state of a cluster's workload on one device, as its agent reports it.
    WorkloadState, "workload state", {
        Assigned => "assigned",
        Starting => "starting",
        Running => "running",
        Stopped => "stopped",
        Failed => "failed",
    }
);

named_enum!(
    /// Whose problem a failed workload is, as the agent that ran it tells: the renter's own
    /// (the command exited non-zero or was not found, the image cannot run) or the device's
    /// (its sandbox or engine could not start the workload). Absent: the device's.
    FailureCause, "failure cause", {
        Workload => "workload",
        Device => "device",
    }
);

named_enum!(Purpose, "purpose", { General => "general", Inference => "inference", Train => "train" });

named_enum!(
    ClusterStatus, "cluster status", {
        PendingPayment => "pending_payment",
        Deploying => "deploying",
        Running => "running",
        Completed => "completed",
        Terminated => "terminated",
        Failed => "failed",
    }
);

named_enum!(DurationUnit, "duration unit", { Hourly => "hourly", Daily => "daily", Weekly => "weekly" });

named_enum!(
    SecurityCompliance, "security compliance", {
        /// All cluster traffic encrypted: every agent does this, so every device qualifies.
        E2eEncrypted => "e2e_encrypted",
        /// Devices in a facility an operator attested as SOC 2 certified.
        Soc2 => "soc2",
        /// Devices in a facility an operator attested as HIPAA compliant.
        Hipaa => "hipaa",
    }
);

named_enum!(
    /// A device's part in a cluster: Ray and Kubernetes put their head on the most reliable one.
    ClusterRole, "cluster role", { Head => "head", Worker => "worker" }
);

impl DurationUnit {
    pub fn hours(self) -> u32 {
        match self {
            DurationUnit::Hourly => 1,
            DurationUnit::Daily => 24,
            DurationUnit::Weekly => 168,
        }
    }

    /// The most of this unit one order (or one extension) may buy: about three months.
    pub fn max_count(self) -> u32 {
        match self {
            DurationUnit::Hourly => 2_160,
            DurationUnit::Daily => 90,
            DurationUnit::Weekly => 13,
        }
    }
}

impl SecurityCompliance {
    /// Whether a device must be attested by an operator for this level.
    pub fn needs_attestation(self) -> bool {
        !matches!(self, SecurityCompliance::E2eEncrypted)
    }

    /// How people name it: "SOC 2", "HIPAA", "end-to-end encrypted".
    pub fn label(self) -> &'static str {
        match self {
            SecurityCompliance::E2eEncrypted => "end-to-end encrypted",
            SecurityCompliance::Soc2 => "SOC 2",
            SecurityCompliance::Hipaa => "HIPAA",
        }
    }
}

/// The hardware a cluster is made of: one GPU model from the catalog, or CPU devices.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Hardware {
    Gpu(String),
    Cpu,
}

impl Hardware {
    /// `cpu` or a canonical GPU model name.
    pub fn parse(text: &str, catalog: &GpuCatalog) -> Result<Hardware, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("cpu") {
            return Ok(Hardware::Cpu);
        }
        match catalog.by_name(text) {
            Some(model) => Ok(Hardware::Gpu(model.name.clone())),
            None if text.is_empty() => Err("choose a GPU model or CPU".into()),
            None => Err(format!("'{text}' is not a GPU model in the catalog")),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Hardware::Gpu(model) => model,
            Hardware::Cpu => "cpu",
        }
    }

    /// What one unit of the order is: a GPU, or a whole CPU device.
    pub fn unit_name(&self) -> &'static str {
        match self {
            Hardware::Gpu(_) => "GPU",
            Hardware::Cpu => "CPU device",
        }
    }
}

// What a cluster runs has a module of its own, with its checks; orders name it from here too.
pub use crate::workload::Workload;

/// A deploy request as the wizard and the JSON API send it; [`DeployRequest::validate`] turns it
/// into an order or says what is wrong with each field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    pub name: String,
    pub kind: ClusterKind,
    #[serde(default = "general")]
    pub purpose: Purpose,
    /// A canonical GPU model name or `cpu`.
    pub hardware: String,
    /// GPUs (or CPU devices) wanted; ignored by `mega_ray`, which takes every match.
    pub quantity: u32,
    /// ISO codes; empty means anywhere.
    #[serde(default)]
    pub countries: Vec<String>,
    /// The lowest connectivity tier accepted; none means any measured tier.
    #[serde(default)]
    pub min_tier: Option<ConnectivityTier>,
    #[serde(default = "e2e")]
    pub compliance: SecurityCompliance,
    pub duration_unit: DurationUnit,
    pub duration_count: u32,
    pub payment: PaymentMethod,
    #[serde(default)]
    pub workload: Workload,
}

fn general() -> Purpose {
    Purpose::General
}

fn e2e() -> SecurityCompliance {
    SecurityCompliance::E2eEncrypted
}

/// One field's problem, named as the form and the API name the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Most units one cluster may have.
pub const MAX_QUANTITY: u32 = 1_024;
const MAX_COUNTRIES: usize = 60;
const MAX_NAME_CHARS: usize = 48;

/// A validated request: everything the quote and the allocator need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployOrder {
    pub name: String,
    pub kind: ClusterKind,
    pub purpose: Purpose,
    pub hardware: Hardware,
    /// Zero for `mega_ray` until the allocator knows how many match.
    pub quantity: u32,
    /// Sorted, without duplicates; empty means anywhere.
    pub countries: Vec<String>,
    pub min_tier: Option<ConnectivityTier>,
    pub compliance: SecurityCompliance,
    pub duration_unit: DurationUnit,
    pub duration_count: u32,
    pub payment: PaymentMethod,
    pub workload: Workload,
}

impl DeployOrder {
    pub fn hours(&self) -> u32 {
        self.duration_unit.hours() * self.duration_count
    }
}

/// A cluster name: 1–48 characters of letters, digits, spaces, `-`, `_` and `.`, trimmed.
pub fn parse_cluster_name(text: &str) -> Result<String, String> {
    let name = text.trim();
    if name.is_empty() {
        return Err("give the cluster a name".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "a cluster name has at most {MAX_NAME_CHARS} characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.')))
    {
        return Err(format!(
            "'{bad}' cannot be in a cluster name (letters, digits, spaces, - _ . only)"
        ));
    }
    Ok(name.to_owned())
}

/// Environment variables as the wizard takes them: one `KEY=value` a line, blank lines
/// skipped. The keys themselves are checked by [`DeployRequest::validate`].
pub fn parse_env_lines(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: write KEY=value", number + 1));
        };
        if env
            .insert(key.trim().to_owned(), value.to_owned())
            .is_some()
        {
            return Err(format!("line {}: {} is set twice", number + 1, key.trim()));
        }
    }
    Ok(env)
}

/// The duration of an order or an extension, in hours.
pub fn parse_duration(unit: DurationUnit, count: u32) -> Result<u32, String> {
    if count == 0 || count > unit.max_count() {
        return Err(format!(
            "choose 1 to {} for a {unit} duration",
            unit.max_count()
        ));
    }
    Ok(unit.hours() * count)
}

impl DeployRequest {
    /// Checks every field and returns the order, or every problem at once.
    pub fn validate(&self, catalog: &GpuCatalog) -> Result<DeployOrder, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut fail = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.to_owned(),
                message,
            })
        };
        if let Some(why) = self.kind.not_offered() {
            fail("kind", why.to_owned());
        }
        let name = parse_cluster_name(&self.name)
            .map_err(|m| fail("name", m))
            .ok();
        let hardware = Hardware::parse(&self.hardware, catalog)
            .map_err(|m| fail("hardware", m))
            .ok();
        let quantity = if self.kind.takes_every_matching_device() {
            0
        } else if self.quantity == 0 || self.quantity > MAX_QUANTITY {
            fail("quantity", format!("choose 1 to {MAX_QUANTITY}"));
            0
        } else {
            self.quantity
        };
        let mut countries: Vec<String> = self
            .countries
            .iter()
            .map(|c| c.trim().to_ascii_uppercase())
            .collect();
        countries.sort();
        countries.dedup();
        if countries.len() > MAX_COUNTRIES {
            fail(
                "countries",
                format!("choose at most {MAX_COUNTRIES} countries (or none for anywhere)"),
            );
        }
        if let Some(unknown) = countries.iter().find(|c| !crate::country::is_known(c)) {
            fail("countries", format!("'{unknown}' is not a country code"));
        }
        if let Err(m) = parse_duration(self.duration_unit, self.duration_count) {
            fail("duration_count", m);
        }
        self.workload
            .check(self.kind.needs_image(), |field, message| {
                fail(field, message)
            });
        match (name, hardware) {
            (Some(name), Some(hardware)) if errors.is_empty() => Ok(DeployOrder {
                name,
                kind: self.kind,
                purpose: self.purpose,
                hardware,
                quantity,
                countries,
                min_tier: self.min_tier,
                compliance: self.compliance,
                duration_unit: self.duration_unit,
                duration_count: self.duration_count,
                payment: self.payment,
                workload: self.workload.clone(),
            }),
            _ => Err(errors),
        }
    }
}

/// Something that happened to a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    Paid,
    /// Every device reports its workload running.
    AllRunning,
    /// The workload could not start on every device in time, or a device failed while starting.
    StartFailed {
        why: String,
    },
    /// The renter's own workload failed while starting (a command that exits non-zero, an
    /// image that cannot run): the renter's doing, not the platform's nor the provider's.
    WorkloadFailed {
        why: String,
    },
    TerminatedByRenter,
    Expired,
    /// The renter bought more time (same devices).
    Extended,
    /// Every device of a running cluster went down or failed.
    Lost {
        why: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {from} cluster cannot be {action}")]
pub struct ClusterTransitionError {
    pub from: ClusterStatus,
    pub action: &'static str,
}

impl ClusterStatus {
    /// Whether the cluster holds devices and money (not finished).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            ClusterStatus::PendingPayment | ClusterStatus::Deploying | ClusterStatus::Running
        )
    }

    pub fn apply(self, event: &ClusterEvent) -> Result<ClusterStatus, ClusterTransitionError> {
        use ClusterEvent as E;
        use ClusterStatus as S;
        let (action, to) = match event {
            E::Paid => ("paid", (self == S::PendingPayment).then_some(S::Deploying)),
            E::AllRunning => ("started", (self == S::Deploying).then_some(S::Running)),
            E::StartFailed { .. } | E::WorkloadFailed { .. } => (
                "failed to start",
                (self == S::Deploying).then_some(S::Failed),
            ),
            E::TerminatedByRenter => (
                "terminated",
                matches!(self, S::Deploying | S::Running).then_some(S::Terminated),
            ),
            E::Expired => ("completed", (self == S::Running).then_some(S::Completed)),
            E::Lost { .. } => ("failed", (self == S::Running).then_some(S::Failed)),
            E::Extended => (
                "extended",
                matches!(self, S::Deploying | S::Running).then_some(self),
            ),
        };
        to.ok_or(ClusterTransitionError { from: self, action })
    }
}

/// A deploy request's live answer: the price and whether it can be placed now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuoteAnswer {
    pub quote: Quote,
    pub fillability: Fillability,
}

/// One kind of hardware a cluster can be made of, with its free supply and price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HardwareOffer {
    /// A canonical GPU model name, or `cpu`.
    pub hardware: String,
    /// GPUs, or CPU devices.
    pub free_units: u64,
    pub rate_per_unit_hour: MicroUsd,
}

/// Free units of the chosen hardware in one country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// Named apart from the network summary's `CountrySupply` in the OpenAPI document.
#[cfg_attr(feature = "openapi", schema(as = CountryFreeSupply))]
pub struct CountrySupply {
    pub code: String,
    pub name: String,
    pub free_units: u64,
}

/// What the deploy wizard offers: every catalog model and CPU with what is free now, and every
/// country: those with free units of the chosen hardware first (most first), then the rest
/// by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeployOptions {
    pub hardware: Vec<HardwareOffer>,
    pub countries: Vec<CountrySupply>,
    /// The price clusters paid in the network token are paid at; none: USDC only.
    pub token_price: Option<crate::money::TokenPrice>,
}

/// Buying more time for a running cluster, on the same devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    pub duration_unit: DurationUnit,
    pub duration_count: u32,
}

/// A cluster in the renter's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterSummary {
    pub id: String,
    pub name: String,
    pub kind: ClusterKind,
    pub hardware: String,
    pub units: u32,
    pub status: ClusterStatus,
    pub status_reason: String,
    pub hours: u32,
    pub charged: MicroUsd,
    pub created_at: i64,
    pub running_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// One device of a cluster, now or in the past.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterMember {
    pub device_id: String,
    pub role: ClusterRole,
    pub units: u32,
    pub country: String,
    pub tier: Option<ConnectivityTier>,
    pub device_status: DeviceStatus,
    /// What the agent last reported for the workload.
    pub workload_state: WorkloadState,
    pub joined_at: i64,
    pub left_at: Option<i64>,
    /// The IP address the device's agent reaches the server from, where the renter reaches
    /// the services the device runs; None until its agent is heard from (or once it left).
    pub address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterEventLine {
    pub at: i64,
    pub detail: String,
}

/// Everything the cluster page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterDetail {
    pub summary: ClusterSummary,
    pub purpose: Purpose,
    pub countries: Vec<String>,
    pub min_tier: Option<ConnectivityTier>,
    pub payment: PaymentMethod,
    /// Set when paid in the network token: the price fixed at the deploy, which also prices
    /// the cluster's extensions and turns its refunds back into tokens.
    pub token_price: Option<crate::money::TokenPrice>,
    pub rate_per_unit_hour: MicroUsd,
    pub workload: Workload,
    pub members: Vec<ClusterMember>,
    pub events: Vec<ClusterEventLine>,
    /// Escrow the providers have earned so far (accrued, not yet settled while running).
    pub cost_so_far: MicroUsd,
    /// Escrow still unspent: what terminating now would refund.
    pub remaining: MicroUsd,
    /// Mean utilisation of its devices per hour, over the last 48 hours.
    pub utilisation_hours: Vec<crate::uptime::UtilisationHour>,
    /// A Ray cluster's JupyterLab token (on its head), for its renter only.
    pub notebook_token: Option<String>,
    /// While it runs: each port its devices serve, through the platform's tunnels.
    pub tunnels: Vec<crate::tunnel::TunnelLink>,
    /// Bytes carried through its tunnels, both ways (counted every few seconds while a
    /// connection stays open).
    pub tunnel_bytes: u64,
    /// When the renter last made the cluster's tunnel access token; None if never.
    pub access_token_made_at: Option<i64>,
}

/// What one device earned in one cluster, as the provider's earnings page and the device page
/// list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HireEarning {
    pub cluster_id: String,
    pub device_id: String,
    pub device_name: String,
    pub joined_at: i64,
    /// None while the device is still in the cluster.
    pub left_at: Option<i64>,
    /// Settled so far, before the 0.25% provider fee.
    pub earned: MicroUsd,
    /// Not earned because the device went down or its workload failed during the hire: the
    /// rest of its budget, which went to a replacement or back to the renter (before the fee).
    pub forfeited: MicroUsd,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_become_variables_or_say_which_line_is_wrong() {
        let env = parse_env_lines("A=1\n\n B = x=y \n").unwrap();
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert_eq!(env.get("B").map(String::as_str), Some(" x=y"));
        assert_eq!(
            parse_env_lines("A=1\nnope"),
            Err("line 2: write KEY=value".into())
        );
        assert_eq!(
            parse_env_lines("A=1\nA=2"),
            Err("line 2: A is set twice".into())
        );
    }

    fn request() -> DeployRequest {
        DeployRequest {
            name: " train-1 ".into(),
            kind: ClusterKind::Ray,
            purpose: Purpose::Train,
            hardware: "RTX 4090 24GB".into(),
            quantity: 8,
            countries: vec!["de".into(), "FR".into(), "DE".into()],
            min_tier: Some(ConnectivityTier::High),
            compliance: SecurityCompliance::E2eEncrypted,
            duration_unit: DurationUnit::Daily,
            duration_count: 2,
            payment: PaymentMethod::Usdc,
            workload: Workload::default(),
        }
    }

    #[test]
    fn a_good_request_becomes_a_normalised_order() {
        let order = request().validate(&GpuCatalog::builtin()).unwrap();
        assert_eq!(order.name, "train-1");
        assert_eq!(order.countries, ["DE", "FR"]);
        assert_eq!(order.hours(), 48);
        assert_eq!(order.hardware, Hardware::Gpu("RTX 4090 24GB".into()));
    }

    #[test]
    fn every_bad_field_is_named_with_its_problem() {
        let mut bad = request();
        bad.name = "a/b".into();
        bad.hardware = "Voodoo 2".into();
        bad.quantity = 0;
        bad.countries = vec!["XX".into()];
        bad.duration_count = 91;
        bad.kind = ClusterKind::Container;
        bad.workload.env.insert("1BAD".into(), "x".into());
        let errors = bad.validate(&GpuCatalog::builtin()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "hardware",
                "quantity",
                "countries",
                "duration_count",
                "workload.image",
                "workload.env"
            ]
        );
        assert_eq!(
            errors[1].message,
            "'Voodoo 2' is not a GPU model in the catalog"
        );
        assert_eq!(errors[4].message, "choose 1 to 90 for a daily duration");
    }

    #[test]
    fn kubernetes_is_not_offered_until_devices_serve_it() {
        let mut kubernetes = request();
        kubernetes.kind = ClusterKind::Kubernetes;
        let errors = kubernetes.validate(&GpuCatalog::builtin()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "kind");
        assert!(errors[0].message.contains("not offered"), "{errors:?}");
        assert!(!ClusterKind::offered().any(|k| k == ClusterKind::Kubernetes));
        assert_eq!(ClusterKind::offered().count(), ClusterKind::ALL.len() - 1);
        // Clusters ordered before still read back.
        assert_eq!(
            ClusterKind::parse("kubernetes").ok(),
            Some(ClusterKind::Kubernetes)
        );
    }

    #[test]
    fn mega_ray_needs_no_quantity_and_cpu_is_hardware() {
        let mut mega = request();
        mega.kind = ClusterKind::MegaRay;
        mega.quantity = 0;
        mega.hardware = "CPU".into();
        let order = mega.validate(&GpuCatalog::builtin()).unwrap();
        assert_eq!((order.quantity, order.hardware), (0, Hardware::Cpu));
    }

    #[test]
    fn unknown_json_fields_are_refused() {
        let text = r#"{"name":"x","kind":"ray","hardware":"cpu","quantity":1,"duration_unit":"hourly","duration_count":1,"payment":"usdc","gpus":3}"#;
        let err = serde_json::from_str::<DeployRequest>(text).unwrap_err();
        assert!(err.to_string().contains("unknown field `gpus`"), "{err}");
    }

    #[test]
    fn cluster_status_moves_only_forward() {
        use ClusterStatus as S;
        assert_eq!(
            S::Deploying.apply(&ClusterEvent::AllRunning),
            Ok(S::Running)
        );
        assert_eq!(S::Running.apply(&ClusterEvent::Expired), Ok(S::Completed));
        assert_eq!(
            S::Deploying.apply(&ClusterEvent::StartFailed { why: "x".into() }),
            Ok(S::Failed)
        );
        assert_eq!(
            S::Deploying.apply(&ClusterEvent::WorkloadFailed { why: "x".into() }),
            Ok(S::Failed)
        );
        let err = S::Completed
            .apply(&ClusterEvent::TerminatedByRenter)
            .unwrap_err();
        assert_eq!(err.to_string(), "a completed cluster cannot be terminated");
        assert!(S::Failed.apply(&ClusterEvent::Extended).is_err());
        for s in S::ALL {
            for e in [
                ClusterEvent::AllRunning,
                ClusterEvent::Expired,
                ClusterEvent::TerminatedByRenter,
            ] {
                if let Ok(to) = s.apply(&e) {
                    assert!(s.is_active(), "{s} moved to {to}");
                }
            }
        }
    }
}
