//! The agent side of the fleet: registration with a single-use token, bearer device
//! credentials, heartbeats merged in memory and written in batches, proof-of-work verification,
//! server-measured connectivity, and the monitor that marks silent devices down.
//!
//! Hot path: a heartbeat touches only the live fleet (one shard lock). The database sees state
//! changes when they happen and heartbeat time in [`AgentService::flush`] batches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::catalog::GpuCatalog;

use crate::index::FleetIndex;
use crate::live::LiveFleet;
use crate::provisioning::ProvisioningService;
use crate::store::Store;
use crate::Error;

mod abuse;
mod connectivity;
mod flush;
mod heartbeat;
mod monitor;
mod rebuild;
mod register;
mod replicated;
mod verify;

use connectivity::SpeedTest;
pub use connectivity::{
    SpeedTestPayload, SpeedTestUpload, PAYLOAD_CHUNK_BYTES, SPEED_TESTS_PER_PROVIDER,
};
pub use flush::Flush;

/// Timings and sizes of the agent protocol; defaults suit production, tests shrink them.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub heartbeat_interval_secs: u32,
    /// Silence after which a device is marked down.
    pub down_after_secs: i64,
    /// Time down after which a device is marked inactive.
    pub inactive_after_secs: i64,
    /// Matrix side for GPU devices' challenges (one product per GPU).
    pub gpu_challenge_size: u32,
    /// Matrix side for CPU devices' challenges.
    pub cpu_challenge_size: u32,
    pub challenge_openings: u32,
    pub challenge_deadline_secs: u32,
    /// An idle device is challenged again at a random moment within this long after its last
    /// pass (never sooner than a quarter of it).
    pub reverify_after_secs: i64,
    pub speed_test_bytes: u64,
    /// A device's connectivity is measured again after this long.
    pub remeasure_after_secs: i64,
    /// Whether an agent that says its hardware is simulated (`--simulate`) may register: a
    /// demo network's (or a test bench's) choice. Elsewhere nothing self-declared as simulated
    /// joins, so nothing simulated is hired or rewarded for money.
    pub accept_simulated: bool,
}

impl Default for FleetConfig {
    fn default() -> FleetConfig {
        FleetConfig {
            heartbeat_interval_secs: 10,
            down_after_secs: 30,
            inactive_after_secs: 5 * 86_400,
            gpu_challenge_size: 512,
            cpu_challenge_size: 384,
            challenge_openings: 12,
            challenge_deadline_secs: 120,
            reverify_after_secs: 6 * 3600,
            speed_test_bytes: 16 * 1024 * 1024,
            accept_simulated: false,
            remeasure_after_secs: 86_400,
        }
    }
}

#[derive(Clone)]
pub struct AgentService {
    store: Store,
    live: Arc<LiveFleet>,
    index: Arc<FleetIndex>,
    config: Arc<FleetConfig>,
    catalog: GpuCatalog,
    speed_tests: Arc<Mutex<HashMap<String, SpeedTest>>>,
    provisioning: ProvisioningService,
    /// Turns true when the server stops: agents' long polls answer at once.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// This process among the replicas, and the devices it began to hear (with the address
    /// they call from) that it has not yet claimed in the database.
    replicas: crate::replicas::ReplicaService,
    claims: Arc<Mutex<rustc_hash::FxHashMap<String, Option<std::net::IpAddr>>>>,
}

impl AgentService {
    pub(crate) fn new(
        store: Store,
        live: Arc<LiveFleet>,
        index: Arc<FleetIndex>,
        catalog: GpuCatalog,
        config: FleetConfig,
        provisioning: ProvisioningService,
        replicas: crate::replicas::ReplicaService,
    ) -> AgentService {
        AgentService {
            store,
            live,
            index,
            config: Arc::new(config),
            catalog,
            speed_tests: Arc::new(Mutex::new(HashMap::new())),
            provisioning,
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
            replicas,
            claims: Arc::default(),
        }
    }

    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// Devices the live fleet watches.
    pub fn live_devices(&self) -> usize {
        self.live.len()
    }
}

/// An agent's version as it reports it, trimmed: 1–32 characters.
fn checked_agent_version(version: &str) -> Result<&str, Error> {
    let version = version.trim();
    if version.is_empty() || version.len() > 32 {
        return Err(Error::Invalid(
            "agent_version must be 1–32 characters".into(),
        ));
    }
    domain::text::check_name("agent_version", version).map_err(Error::Invalid)?;
    Ok(version)
}
