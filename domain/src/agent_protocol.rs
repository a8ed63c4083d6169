//! The messages between the provider agent and the server's agent API (`/api/agent/v1/…`).
//! Both sides use these types, so the wire format has one definition. Unknown fields are
//! refused so a typo in a hand-written message is an error, not a silent default.

// A workload's state is the cluster's concept; agents report it in these messages.
pub use crate::cluster::{FailureCause, WorkloadState};
use serde::{Deserialize, Serialize};

use crate::cluster::{ClusterKind, ClusterRole, Workload};
use crate::fleet::{ConnectivityTier, DeviceStatus};
use crate::hardware::HardwareReport;
use crate::proof_of_work::Challenge;

/// Idle caps (DESIGN.md §3): an idle device busier than this runs foreign work.
pub const IDLE_CPU_CAP_PERCENT: u8 = 30;
pub const IDLE_GPU_CAP_PERCENT: u8 = 20;

/// Largest clock difference between agent and server that a heartbeat may show.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The single-use registration token from the Worker tab.
    pub token: String,
    pub agent_version: String,
    /// True when the hardware was described from a file (`--simulate`), not detected.
    pub simulated: bool,
    pub hardware: HardwareReport,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Registered {
    pub device_id: String,
    /// Long-lived bearer credential for every later call; shown only in this reply.
    pub credential: String,
    pub heartbeat_interval_secs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Utilisation {
    pub gpu_percent: u8,
    pub cpu_percent: u8,
    pub memory_percent: u8,
}

impl Utilisation {
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("gpu_percent", self.gpu_percent),
            ("cpu_percent", self.cpu_percent),
            ("memory_percent", self.memory_percent),
        ] {
            if value > 100 {
                return Err(format!("utilisation.{name} {value} is above 100"));
            }
        }
        Ok(())
    }

    /// Why an idle device with this utilisation breaks the idle caps, if it does.
    pub fn idle_cap_violation(&self) -> Option<String> {
        let mut over = Vec::new();
        if self.cpu_percent > IDLE_CPU_CAP_PERCENT {
            over.push(format!(
                "CPU {}% (cap {IDLE_CPU_CAP_PERCENT}%)",
                self.cpu_percent
            ));
        }
        if self.gpu_percent > IDLE_GPU_CAP_PERCENT {
            over.push(format!(
                "GPU {}% (cap {IDLE_GPU_CAP_PERCENT}%)",
                self.gpu_percent
            ));
        }
        (!over.is_empty()).then(|| format!("busy while idle: {}", over.join(", ")))
    }
}

/// The state of one cluster workload on the device, as the agent last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WorkloadReport {
    pub cluster_id: String,
    pub state: WorkloadState,
    /// Why it failed or stopped, for the renter's timeline.
    #[serde(default)]
    pub detail: String,
    /// Whose problem a failure is (see [`FailureCause`]); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<FailureCause>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The agent's clock, UTC milliseconds; refused when far from the server's.
    pub sent_at: i64,
    pub agent_version: String,
    pub utilisation: Utilisation,
    pub workloads: Vec<WorkloadReport>,
}

/// A cluster the device is hired into and must run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WorkloadAssignment {
    pub cluster_id: String,
    pub kind: ClusterKind,
    pub role: ClusterRole,
    pub workload: Workload,
    /// The IP address of the cluster's head device, as the server sees its agent, for the
    /// other devices of Ray and Kubernetes clusters (`ray start --address`, `GC_HEAD_ADDRESS`);
    /// None for the head itself, for clusters without one, or while the server has not yet
    /// heard from the head since it started.
    #[serde(default)]
    pub head_address: Option<String>,
    /// The cluster's head device, for the others: when it changes (the head was lost and
    /// replaced) they restart to join the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_device: Option<String>,
    /// For the head of a Ray cluster: the token its JupyterLab (on [`NOTEBOOK_PORT`]) requires.
    #[serde(default)]
    pub notebook_token: Option<String>,
    /// How many devices the cluster has now. A sandboxed workload of a one-device cluster
    /// gets a network of its own (see [`WorkloadAssignment::shares_network`]).
    #[serde(default)]
    pub devices: u32,
}

impl WorkloadAssignment {
    /// Whether the workload's sandbox shares the device's network: only when the cluster has
    /// several devices, whose processes must reach each other (`ray start --address`,
    /// `torchrun --master-addr`, NCCL) until a private network joins a cluster's devices. A
    /// one-device cluster (or one whose size is not said) is cut off from the provider's
    /// loopback and interfaces, and reached through its tunnels alone.
    pub fn shares_network(&self) -> bool {
        self.devices > 1
    }
}

/// Where a Ray head's JupyterLab listens (Jupyter's default), as the console links it.
pub const NOTEBOOK_PORT: u16 = 8888;

/// The agent's long poll for new work: the server answers when its workloads for the device
/// differ from `known` (then the agent heartbeats at once to get them), or after `wait_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AssignmentWait {
    /// The clusters whose workloads the agent runs now.
    pub known: Vec<String>,
    pub wait_secs: u32,
}

/// The longest an assignment wait is held, under every proxy's and the server's time limit.
pub const MAX_ASSIGNMENT_WAIT_SECS: u32 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssignmentChange {
    pub changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeartbeatReply {
    pub status: DeviceStatus,
    /// Why the device has that status, in words for the provider.
    pub reason: String,
    /// When to send the next heartbeat.
    pub heartbeat_interval_secs: u32,
    /// Work to prove the hardware; answer it at `/challenges/{id}`.
    pub challenge: Option<Challenge>,
    /// The clusters this device must run now (empty until it is hired).
    pub workloads: Vec<WorkloadAssignment>,
    /// The server wants a fresh connectivity measurement.
    pub speed_test_due: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SpeedTestStarted {
    pub id: String,
    /// Bytes to download from, then upload to, the server, in each round.
    pub bytes: u64,
    /// Download-and-upload rounds to run; each direction keeps its best round, so a moment of
    /// congestion does not set the device's tier for a day.
    pub rounds: u32,
}

/// What the server measured, never what the agent claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SpeedTestResult {
    pub download_mb_per_s: i64,
    pub upload_mb_per_s: i64,
    pub latency_ms: i64,
    /// None when below the lowest tier.
    pub tier: Option<ConnectivityTier>,
    /// Rounds still to run: the figures are the best so far, recorded once this reaches 0.
    pub rounds_left: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VerificationOutcome {
    pub passed: bool,
    pub status: DeviceStatus,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_caps_name_each_resource_over_its_cap() {
        let calm = Utilisation {
            gpu_percent: 20,
            cpu_percent: 30,
            memory_percent: 90,
        };
        assert_eq!(calm.idle_cap_violation(), None);
        let busy = Utilisation {
            gpu_percent: 95,
            cpu_percent: 31,
            memory_percent: 10,
        };
        assert_eq!(
            busy.idle_cap_violation().unwrap(),
            "busy while idle: CPU 31% (cap 30%), GPU 95% (cap 20%)"
        );
    }

    #[test]
    fn utilisation_above_100_is_refused() {
        let u = Utilisation {
            gpu_percent: 101,
            ..Utilisation::default()
        };
        assert_eq!(
            u.validate().unwrap_err(),
            "utilisation.gpu_percent 101 is above 100"
        );
    }

    #[test]
    fn heartbeats_with_unknown_fields_are_refused() {
        let text = r#"{"sent_at":1,"agent_version":"0.1.0","utilisation":{"gpu_percent":0,"cpu_percent":0,"memory_percent":0},"workloads":[],"tier":"ultra"}"#;
        let err = serde_json::from_str::<Heartbeat>(text).unwrap_err();
        assert!(err.to_string().contains("unknown field `tier`"), "{err}");
    }
}
