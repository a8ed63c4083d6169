//! What the Worker tab and its JSON API twin show and accept: the new-device form, the one-time
//! registration ticket, a provider's devices and one device in full.

use serde::{Deserialize, Serialize};

use crate::fleet::{ConnectivityTier, DeviceKind, DeviceStatus, OperatingSystem};
use crate::time::UnixMillis;

pub const MAX_DEVICE_NAME_CHARS: usize = 64;

/// The "connect new device" form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    if name.chars().any(char::is_control) {
        return Err("the device name must not contain control characters".into());
    }
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
pub struct RegistrationTicket {
    pub device_id: String,
    pub token: String,
    /// The one line that starts the agent with this token.
    pub command: String,
    pub expires_at: UnixMillis,
}

/// A device added in the Worker tab whose agent has not called in yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitingAgent {
    pub device_id: String,
    pub name: String,
    pub os: OperatingSystem,
    pub kind: DeviceKind,
    pub expires_at: UnixMillis,
}

/// One device as its owner sees it in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerDevices {
    pub devices: Vec<OwnedDevice>,
    pub awaiting_agent: Vec<AwaitingAgent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceHistoryEntry {
    pub at: UnixMillis,
    /// `status`, `violation` or `credential`.
    pub kind: String,
    pub from_status: Option<DeviceStatus>,
    pub to_status: Option<DeviceStatus>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationRecord {
    pub id: String,
    pub issued_at: UnixMillis,
    pub answered_at: Option<UnixMillis>,
    /// `passed`, `failed`, `expired`, or None while open.
    pub outcome: Option<String>,
    pub detail: Option<String>,
    pub size: i64,
    pub products: i64,
}

/// Everything the device page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}
