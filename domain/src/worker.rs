//! What the Worker tab and its JSON API twin show and accept: the new-device form, the one-time
//! registration ticket, a provider's devices and one device in full.

use serde::{Deserialize, Serialize};

use crate::fleet::{ConnectivityTier, DeviceKind, DeviceStatus, OperatingSystem};
use crate::time::UnixMillis;
use crate::uptime::{UptimeDay, UtilisationHour};

pub const MAX_DEVICE_NAME_CHARS: usize = 64;

/// Devices one wallet may have waiting for their agent at once: enough for a rack, too few to
/// flood the network with placeholders (an enrolment ends when its agent registers or its token
/// expires).
pub const MAX_AWAITING_AGENT: i64 = 20;
/// Devices one wallet may add in an hour.
pub const MAX_ENROLMENTS_PER_HOUR: i64 = 60;

/// The "connect new device" form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    pub name: String,
    pub os: OperatingSystem,
    pub kind: DeviceKind,
    /// ISO 3166-1 alpha-2 code of where the machine is.
    pub country: String,
}

/// A device name after the rules: trimmed, 1–64 printable characters.
pub fn valid_device_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("give the device a name (e.g. rack-3-node-7)".into());
    }
    if name.chars().count() > MAX_DEVICE_NAME_CHARS {
        return Err(format!(
            "the device name is longer than {MAX_DEVICE_NAME_CHARS} characters"
        ));
    }
    crate::text::check_name("the device name", name)?;
    Ok(name.to_owned())
}

impl NewDevice {
    /// The form with its name trimmed, or what to fix. `known_country` says whether a code exists.
    pub fn validated(self, known_country: impl Fn(&str) -> bool) -> Result<NewDevice, String> {
        let name = valid_device_name(&self.name)?;
        let country = self.country.trim().to_ascii_uppercase();
        if !known_country(&country) {
            return Err(format!(
                "'{}' is not an ISO country code (e.g. DE, US)",
                self.country
            ));
        }
        Ok(NewDevice {
            name,
            country,
            ..self
        })
    }
}

/// Shown once after the form: the registration token is not stored and cannot be shown again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistrationTicket {
    pub device_id: String,
    pub token: String,
    /// The one line to run on the machine: the server's install script (download, checksum,
    /// service) with this token, or, where the server offers no agent download, the agent
    /// command itself.
    pub command: String,
    /// The agent command with this token, for a machine that has the agent already.
    pub run_command: String,
    pub expires_at: UnixMillis,
}

/// A device added in the Worker tab whose agent has not called in yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AwaitingAgent {
    pub device_id: String,
    pub name: String,
    pub os: OperatingSystem,
    pub kind: DeviceKind,
    pub expires_at: UnixMillis,
}

/// One device as its owner sees it in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OwnedDevice {
    pub id: String,
    pub name: String,
    pub kind: DeviceKind,
    pub status: DeviceStatus,
    pub verified: bool,
    pub gpu_model: Option<String>,
    pub gpu_count: i64,
    pub country: String,
    pub tier: Option<ConnectivityTier>,
    pub simulated: bool,
    pub last_heartbeat_at: Option<UnixMillis>,
    /// Share of the last 30 days (or of its life, if younger) the device was online, in 0.1 %.
    pub uptime_30d_permille: u16,
    /// Hire earnings settled for it so far, before the 0.25% provider fee.
    pub earned: crate::money::MicroUsd,
    /// Its agent runs an older build than the server offers (and will install it once no
    /// cluster runs there, unless its provider turned updates off).
    pub agent_outdated: bool,
}

impl OwnedDevice {
    /// Whether a cluster can hire the device now, or what stands in the way, in words.
    pub fn readiness(&self) -> Result<(), String> {
        match self.status {
            DeviceStatus::Idle if !self.verified => {
                Err("waiting for its proof-of-work verification".into())
            }
            DeviceStatus::Idle if self.tier.is_none() => {
                Err("connectivity not measured yet, or below the lowest tier (100/10 MB/s)".into())
            }
            DeviceStatus::Idle => Ok(()),
            DeviceStatus::Hired => Err("serving a cluster".into()),
            DeviceStatus::Pending => Err("verification running".into()),
            DeviceStatus::Paused => Err("paused by you".into()),
            DeviceStatus::Down | DeviceStatus::Inactive => {
                Err("its agent is not heartbeating".into())
            }
            DeviceStatus::Blocked => Err("blocked: see the device's history".into()),
            DeviceStatus::Unsupported => Err("its hardware is not in the GPU catalog".into()),
            DeviceStatus::Terminated => Err("removed".into()),
        }
    }
}

crate::fleet::named_enum!(
    /// How the Worker tab orders the device list (uptime highest first, last heartbeat most
    /// recent first).
    #[derive(Default)]
    DeviceSort, "sort", {
        #[default]
        Name => "name",
        Status => "status",
        Model => "model",
        Tier => "tier",
        Uptime => "uptime",
        LastHeartbeat => "last_heartbeat",
    }
);

/// The Worker tab's filters over a provider's devices; the JSON API takes the same as query
/// parameters (`?status=idle&model=RTX%204090%2024GB&tier=high&sort=uptime`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct DeviceFilter {
    pub status: Option<DeviceStatus>,
    /// Canonical GPU model; `cpu` selects devices without GPUs in the catalog.
    pub model: Option<String>,
    pub tier: Option<ConnectivityTier>,
    #[serde(default)]
    pub sort: DeviceSort,
}

impl DeviceFilter {
    fn admits(&self, d: &OwnedDevice) -> bool {
        self.status.is_none_or(|s| d.status == s)
            && self.tier.is_none_or(|t| d.tier == Some(t))
            && self.model.as_deref().is_none_or(|m| match &d.gpu_model {
                Some(model) => model == m,
                None => m == "cpu",
            })
    }

    /// The devices this filter admits, in its order (ties by name, then id).
    pub fn apply(&self, devices: &[OwnedDevice]) -> Vec<OwnedDevice> {
        let mut kept: Vec<OwnedDevice> =
            devices.iter().filter(|d| self.admits(d)).cloned().collect();
        kept.sort_by(|a, b| {
            let by = match self.sort {
                DeviceSort::Name => std::cmp::Ordering::Equal,
                DeviceSort::Status => a.status.cmp(&b.status),
                DeviceSort::Model => a.gpu_model.cmp(&b.gpu_model),
                // Best tier first, unmeasured last.
                DeviceSort::Tier => a
                    .tier
                    .map(|t| t as u8)
                    .unwrap_or(u8::MAX)
                    .cmp(&b.tier.map(|t| t as u8).unwrap_or(u8::MAX)),
                DeviceSort::Uptime => b.uptime_30d_permille.cmp(&a.uptime_30d_permille),
                DeviceSort::LastHeartbeat => b.last_heartbeat_at.cmp(&a.last_heartbeat_at),
            };
            by.then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.id.cmp(&b.id))
        });
        kept
    }
}

/// The distinct GPU models among a provider's devices, for the filter's choices.
pub fn models_of(devices: &[OwnedDevice]) -> Vec<String> {
    let mut models: Vec<String> = devices.iter().filter_map(|d| d.gpu_model.clone()).collect();
    models.sort();
    models.dedup();
    models
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerDevices {
    pub devices: Vec<OwnedDevice>,
    pub awaiting_agent: Vec<AwaitingAgent>,
    /// The agent build the server offers (`CORE+BUILD`), when it offers one.
    pub offered_agent: Option<String>,
}

crate::fleet::named_enum!(
    /// What a line of a device's history records.
    DeviceEventKind, "device event kind", {
        /// A status change.
        Status => "status",
        /// An idle-cap violation.
        Violation => "violation",
        /// The agent's credential was revoked.
        Credential => "credential",
    }
);

crate::fleet::named_enum!(
    /// How a verification challenge ended.
    ChallengeOutcome, "challenge outcome", {
        Passed => "passed",
        Failed => "failed",
        /// Not answered before its deadline.
        Expired => "expired",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceHistoryEntry {
    pub at: UnixMillis,
    pub kind: DeviceEventKind,
    pub from_status: Option<DeviceStatus>,
    pub to_status: Option<DeviceStatus>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerificationRecord {
    pub id: String,
    pub issued_at: UnixMillis,
    pub answered_at: Option<UnixMillis>,
    /// None while open.
    pub outcome: Option<ChallengeOutcome>,
    pub detail: Option<String>,
    pub size: i64,
    pub products: i64,
}

/// Everything the device page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceDetail {
    pub summary: OwnedDevice,
    pub os: OperatingSystem,
    pub status_reason: String,
    pub status_changed_at: Option<UnixMillis>,
    pub reported_gpus: String,
    pub cpu_model: String,
    pub cpu_cores: i64,
    pub ram_gb: i64,
    pub disk_gb: i64,
    pub download_mb_per_s: Option<i64>,
    pub upload_mb_per_s: Option<i64>,
    pub latency_ms: Option<i64>,
    pub agent_version: Option<String>,
    /// Whether an agent credential is active (false once revoked).
    pub credential_active: bool,
    pub created_at: UnixMillis,
    /// Newest first.
    pub history: Vec<DeviceHistoryEntry>,
    /// Newest first.
    pub verifications: Vec<VerificationRecord>,
    /// The last 30 UTC days, oldest first, each with the time the device was online.
    pub uptime_days: Vec<UptimeDay>,
    /// The last 48 UTC hours, oldest first: online time and mean utilisation reported.
    pub utilisation_hours: Vec<UtilisationHour>,
    /// The clusters it served (or serves), newest first, with what it earned in each.
    pub clusters_served: Vec<crate::cluster::HireEarning>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(name: &str, country: &str) -> NewDevice {
        NewDevice {
            name: name.into(),
            os: OperatingSystem::Linux,
            kind: DeviceKind::Gpu,
            country: country.into(),
        }
    }

    #[test]
    fn forms_are_trimmed_and_checked_with_specific_messages() {
        let known = |c: &str| c == "DE";
        let ok = form("  rack-1 ", "de").validated(known).unwrap();
        assert_eq!((ok.name.as_str(), ok.country.as_str()), ("rack-1", "DE"));
        assert!(form(" ", "DE")
            .validated(known)
            .unwrap_err()
            .contains("give the device a name"));
        assert!(form(&"x".repeat(65), "DE")
            .validated(known)
            .unwrap_err()
            .contains("longer than 64"));
        assert!(form("a\u{7}b", "DE")
            .validated(known)
            .unwrap_err()
            .contains("control"));
        assert_eq!(
            form("a", "XX").validated(known).unwrap_err(),
            "'XX' is not an ISO country code (e.g. DE, US)"
        );
    }

    fn device(
        name: &str,
        status: DeviceStatus,
        model: Option<&str>,
        tier: Option<ConnectivityTier>,
        uptime: u16,
    ) -> OwnedDevice {
        OwnedDevice {
            id: format!("dev-{name}"),
            name: name.into(),
            kind: if model.is_some() {
                DeviceKind::Gpu
            } else {
                DeviceKind::Cpu
            },
            status,
            verified: status == DeviceStatus::Idle,
            gpu_model: model.map(Into::into),
            gpu_count: 1,
            country: "DE".into(),
            tier,
            simulated: false,
            last_heartbeat_at: Some(UnixMillis(i64::from(uptime))),
            uptime_30d_permille: uptime,
            earned: crate::money::MicroUsd::ZERO,
            agent_outdated: false,
        }
    }

    #[test]
    fn only_a_verified_measured_idle_device_is_ready_for_hire() {
        use ConnectivityTier::High;
        assert_eq!(
            device("a", DeviceStatus::Idle, None, Some(High), 0).readiness(),
            Ok(())
        );
        let unmeasured = device("a", DeviceStatus::Idle, None, None, 0).readiness();
        assert!(unmeasured
            .unwrap_err()
            .contains("connectivity not measured"));
        let unverified = OwnedDevice {
            verified: false,
            ..device("a", DeviceStatus::Idle, None, Some(High), 0)
        };
        assert!(unverified.readiness().unwrap_err().contains("verification"));
        assert!(device("a", DeviceStatus::Paused, None, Some(High), 0)
            .readiness()
            .unwrap_err()
            .contains("paused"));
    }

    #[test]
    fn filters_and_sorts_the_device_list() {
        use ConnectivityTier::{High, Ultra};
        let devices = vec![
            device(
                "c",
                DeviceStatus::Idle,
                Some("RTX 4090 24GB"),
                Some(High),
                900,
            ),
            device(
                "a",
                DeviceStatus::Down,
                Some("H100 80GB SXM"),
                Some(Ultra),
                500,
            ),
            device("b", DeviceStatus::Idle, None, None, 999),
        ];
        let names = |f: DeviceFilter| -> Vec<String> {
            f.apply(&devices).into_iter().map(|d| d.name).collect()
        };
        assert_eq!(names(DeviceFilter::default()), ["a", "b", "c"]);
        let idle = DeviceFilter {
            status: Some(DeviceStatus::Idle),
            ..Default::default()
        };
        assert_eq!(names(idle.clone()), ["b", "c"]);
        assert_eq!(
            names(DeviceFilter {
                sort: DeviceSort::Uptime,
                ..idle
            }),
            ["b", "c"]
        );
        assert_eq!(
            names(DeviceFilter {
                sort: DeviceSort::Tier,
                ..Default::default()
            }),
            ["a", "c", "b"]
        );
        assert_eq!(
            names(DeviceFilter {
                model: Some("cpu".into()),
                ..Default::default()
            }),
            ["b"]
        );
        assert_eq!(
            names(DeviceFilter {
                tier: Some(High),
                ..Default::default()
            }),
            ["c"]
        );
        assert_eq!(
            names(DeviceFilter {
                sort: DeviceSort::LastHeartbeat,
                ..Default::default()
            }),
            ["b", "c", "a"]
        );
        assert_eq!(models_of(&devices), ["H100 80GB SXM", "RTX 4090 24GB"]);
        assert_eq!(DeviceSort::parse("uptime"), Ok(DeviceSort::Uptime));
        assert!(DeviceSort::parse("price")
            .unwrap_err()
            .to_string()
            .contains("expected one of: name, status"));
    }
}
