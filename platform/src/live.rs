//! The live fleet: for every device run by an agent, what the heartbeat path needs without a
//! database round trip (credential digest, status, last heartbeat, open challenge) and the
//! heartbeats merged since the last flush. A cache rebuilt from the database at start-up and
//! updated after every committed change, never the source of truth (DESIGN.md §4).

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use rustc_hash::{FxBuildHasher, FxHashMap};

use domain::agent_protocol::{Utilisation, WorkloadAssignment, WorkloadState};
use domain::fleet::{DeviceKind, DeviceStatus};
use domain::proof_of_work::Challenge;
use domain::uptime::HourlyUptime;

/// Shards keep concurrent heartbeats from queueing on one lock.
const SHARDS: usize = 64;

pub(crate) const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone)]
pub(crate) struct OpenChallenge {
    pub challenge: Challenge,
    pub deadline_at: i64,
}

/// A million of these live in memory: text that many devices share (reasons, agent versions)
/// is reference-counted, the credential's digest is inline, the rare open challenge is boxed.
#[derive(Debug, Clone)]
pub(crate) struct LiveDevice {
    /// SHA-256 of the agent's credential; None once the owner revoked it: the device is still
    /// watched (and goes down).
    pub credential_digest: Option<[u8; 32]>,
    pub status: DeviceStatus,
    pub verified: bool,
    pub reason: Arc<str>,
    pub status_changed_at: i64,
    pub kind: DeviceKind,
    pub gpu_count: i64,
    pub last_seen: i64,
    pub agent_version: Arc<str>,
    pub utilisation: Utilisation,
    pub challenge: Option<Box<OpenChallenge>>,
    pub next_challenge_at: i64,
    pub consecutive_failures: u32,
    pub last_violation_at: i64,
    /// When a blocked device's stored status was last read (an operator may lift the block
    /// from another process).
    pub block_checked_at: i64,
    pub measured_at: Option<i64>,
    /// Measurements in a row, up to the last, that found no tier
    /// (see [`domain::fleet::remeasure_after_ms`]).
    pub tierless_measurements: u32,
    pub speed_test_started_at: i64,
    /// The last heartbeat this process took (None since start-up until one comes); unlike
    /// `last_seen`, never moved by a restart.
    pub last_heartbeat: Option<i64>,
    /// When the merged heartbeats were last written to the database.
    pub written_at: i64,
    /// Heartbeat time and utilisation credited per UTC hour and not yet written; `heartbeat_dirty` says `last_heartbeat` moved.
    pub unflushed: Vec<HourlyUptime>,
    pub heartbeat_dirty: bool,
    /// The cluster workload the device must run while hired (shared with the cluster's
    /// other devices' heartbeat replies), and what its agent last reported for it.
    pub assignment: Option<Arc<WorkloadAssignment>>,
    pub workload_state: Option<WorkloadState>,
    /// Rung when the assignment changes, for an agent long-polling for it (made when one
    /// first waits; most devices never need one).
    pub assignment_changed: Option<Arc<tokio::sync::Notify>>,
    /// Where the agent's last heartbeat came from: where renters reach what the device runs.
    /// Written to the database when it changes (`devices.last_address`), for other replicas.
    pub address: Option<std::net::IpAddr>,
    /// This replica hears the device's agent (and has claimed it, or will at the next claim
    /// write): only then does its silence here mean anything (issue 16).
    pub watched: bool,
}

impl LiveDevice {
    /// Gives the device its cluster workload (or none) and wakes its agent if it is waiting.
    pub fn assign(
        &mut self,
        assignment: Option<Arc<WorkloadAssignment>>,
        state: Option<WorkloadState>,
    ) {
        self.assignment = assignment;
        self.workload_state = state;
        if let Some(changed) = &self.assignment_changed {
            // A permit is kept if the agent is between two waits, so no change is missed.
            changed.notify_one();
        }
    }

    /// Whether the server's workloads for the device differ from the clusters `known` to its agent.
    pub fn assignment_differs(&self, known: &[String]) -> bool {
        match &self.assignment {
            Some(a) => known.len() != 1 || known[0] != a.cluster_id,
            None => !known.is_empty(),
        }
    }

    /// A device as first seen: nothing merged, no challenge, never measured or violating.
    pub fn new(
        status: DeviceStatus,
        kind: DeviceKind,
        gpu_count: i64,
        last_seen: i64,
    ) -> LiveDevice {
        LiveDevice {
            credential_digest: None,
            status,
            verified: false,
            reason: Arc::from(""),
            status_changed_at: last_seen,
            kind,
            gpu_count,
            last_seen,
            last_heartbeat: None,
            written_at: 0,
            agent_version: Arc::from(""),
            utilisation: Utilisation::default(),
            challenge: None,
            next_challenge_at: 0,
            consecutive_failures: 0,
            last_violation_at: 0,
            block_checked_at: 0,
            measured_at: None,
            tierless_measurements: 0,
            speed_test_started_at: 0,
            unflushed: Vec::new(),
            heartbeat_dirty: false,
            assignment: None,
            workload_state: None,
            assignment_changed: None,
            address: None,
            watched: false,
        }
    }

    /// Credits `online_ms` and one utilisation sample to the hour of `now`.
    pub fn credit(&mut self, now: i64, online_ms: i64, utilisation: Utilisation) {
        let hour = now.div_euclid(HOUR_MS) * HOUR_MS;
        let sample = HourlyUptime {
            hour,
            online_ms,
            samples: 1,
            gpu_util_sum: utilisation.gpu_percent.into(),
            cpu_util_sum: utilisation.cpu_percent.into(),
        };
        self.merge(sample);
    }

    pub fn merge(&mut self, delta: HourlyUptime) {
        match self.unflushed.iter_mut().find(|d| d.hour == delta.hour) {
            Some(d) => {
                d.online_ms += delta.online_ms;
                d.samples += delta.samples;
                d.gpu_util_sum += delta.gpu_util_sum;
                d.cpu_util_sum += delta.cpu_util_sum;
            }
            None => self.unflushed.push(delta),
        }
    }
}

// Device ids are made by the server, never chosen by a caller, so a fast non-keyed hash is safe.
pub(crate) struct LiveFleet {
    shards: Vec<Mutex<FxHashMap<Box<str>, LiveDevice>>>,
}

impl LiveFleet {
    pub fn new() -> LiveFleet {
        LiveFleet {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Makes room for `devices` more, so a rebuild does not grow the maps step by step.
    pub fn reserve(&self, devices: usize) {
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .reserve(devices / SHARDS + 1);
        }
    }

    fn shard(&self, id: &str) -> std::sync::MutexGuard<'_, FxHashMap<Box<str>, LiveDevice>> {
        // The high bits: the map inside the shard uses the low ones.
        let index = (FxBuildHasher.hash_one(id) >> 58) as usize % SHARDS;
        // A panic while holding a shard leaves plain data behind; keep serving it.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn insert(&self, id: String, device: LiveDevice) {
        self.shard(&id).insert(id.into_boxed_str(), device);
    }

    pub fn remove(&self, id: &str) {
        self.shard(id).remove(id);
    }

    /// Runs `f` on the device under its shard's lock; None if it is not live.
    pub fn with<R>(&self, id: &str, f: impl FnOnce(&mut LiveDevice) -> R) -> Option<R> {
        self.shard(id).get_mut(id).map(f)
    }

    /// Visits every device, one shard at a time, collecting what `f` returns.
    pub fn collect<R>(&self, mut f: impl FnMut(&str, &mut LiveDevice) -> Option<R>) -> Vec<R> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut devices = shard.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(devices.iter_mut().filter_map(|(id, d)| f(id, d)));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> LiveDevice {
        LiveDevice {
            verified: true,
            ..LiveDevice::new(DeviceStatus::Idle, DeviceKind::Gpu, 1, 0)
        }
    }

    #[test]
    fn heartbeats_merge_per_hour() {
        let mut d = device();
        let busy = Utilisation {
            gpu_percent: 50,
            cpu_percent: 10,
            memory_percent: 0,
        };
        d.credit(HOUR_MS + 1, 10_000, busy);
        d.credit(HOUR_MS + 2, 10_000, busy);
        d.credit(2 * HOUR_MS, 5_000, Utilisation::default());
        assert_eq!(d.unflushed.len(), 2);
        assert_eq!(
            d.unflushed[0],
            HourlyUptime {
                hour: HOUR_MS,
                online_ms: 20_000,
                samples: 2,
                gpu_util_sum: 100,
                cpu_util_sum: 20
            }
        );
    }

    #[test]
    fn devices_are_found_across_shards() {
        let fleet = LiveFleet::new();
        for i in 0..500 {
            fleet.insert(format!("dev-{i}"), device());
        }
        assert_eq!(fleet.len(), 500);
        assert_eq!(fleet.with("dev-7", |d| d.gpu_count), Some(1));
        fleet.remove("dev-7");
        assert_eq!(fleet.with("dev-7", |d| d.gpu_count), None);
        let idle = fleet.collect(|id, d| (d.status == DeviceStatus::Idle).then(|| id.to_owned()));
        assert_eq!(idle.len(), 499);
    }
}
