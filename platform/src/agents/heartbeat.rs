//! Heartbeats: merged into the live fleet under one shard lock; what they change (back from down,
//! a challenge, a violation, a workload report) is written after the lock is released. Also the
//! agents' long poll for new assignments.

use std::time::Duration;

use domain::agent_protocol::{
    AssignmentWait, Heartbeat, HeartbeatReply, WorkloadState, MAX_ASSIGNMENT_WAIT_SECS,
    MAX_CLOCK_SKEW_MS,
};
use domain::device_status::{earns_uptime, DeviceEvent};
use domain::fleet::{remeasure_after_ms, DeviceStatus};
use domain::proof_of_work::Challenge;
use domain::time::UnixMillis;

use super::{checked_agent_version, AgentService};
use crate::lifecycle::{apply_event, mirror};
use crate::live::{LiveDevice, OpenChallenge};
use crate::{AgentRefusal, Error};

/// A blocked device's stored status is read again at most this often.
const BLOCK_CHECK_EVERY_MS: i64 = 60_000;

/// Idle-cap violations of one device are recorded at most this often.
pub(super) const VIOLATION_EVERY_MS: i64 = 3_600_000;

/// Something the heartbeat decided to do after releasing the shard lock.
pub(super) enum FollowUp {
    Resume,
    Violation(String),
    /// A blocked device's stored status is read again: an operator may have lifted the block.
    CheckBlock,
    Challenge(Challenge),
    NewAgentVersion,
    /// The agent reports a new state of its cluster workload.
    Workload {
        cluster_id: String,
        state: WorkloadState,
        detail: String,
        cause: Option<domain::cluster::FailureCause>,
    },
}

impl AgentService {
    /// Takes one heartbeat: merges it in memory and answers with the device's status, any open
    /// challenge and whether a speed test is due. State changes it causes are written at once.
    pub async fn heartbeat(
        &self,
        device_id: &str,
        heartbeat: Heartbeat,
        from: Option<std::net::IpAddr>,
        now: UnixMillis,
    ) -> Result<HeartbeatReply, Error> {
        let version = checked_version(&heartbeat, now)?;
        let follow_ups = self
            .live
            .with(device_id, |d| {
                self.merge(device_id, d, &heartbeat, version, from, now)
            })
            .ok_or_else(|| AgentRefusal::UnknownDevice(device_id.to_owned()))?;
        for follow_up in follow_ups {
            self.follow_up(device_id, follow_up, version, now).await?;
        }
        let config = &self.config;
        let remeasure_ms = config.remeasure_after_secs * 1000;
        self.live
            .with(device_id, |d| HeartbeatReply {
                status: d.status,
                reason: d.reason.to_string(),
                heartbeat_interval_secs: config.heartbeat_interval_secs,
                challenge: d.challenge.as_ref().map(|c| c.challenge.clone()),
                workloads: d.assignment.iter().map(|a| (**a).clone()).collect(),
                speed_test_due: d.measured_at.is_none_or(|at| {
                    now.0 - at >= remeasure_after_ms(d.tierless_measurements, remeasure_ms)
                }),
            })
            .ok_or_else(|| AgentRefusal::UnknownDevice(device_id.to_owned()).into())
    }

    /// Merges one heartbeat into the device's live state (under its shard lock) and says what
    /// must be written once the lock is released.
    fn merge(
        &self,
        id: &str,
        d: &mut LiveDevice,
        heartbeat: &Heartbeat,
        version: &str,
        from: Option<std::net::IpAddr>,
        now: UnixMillis,
    ) -> Vec<FollowUp> {
        let mut follow_ups = Vec::new();
        let down_after_ms = self.config.down_after_secs * 1000;
        let gap = now.0 - d.last_seen;
        let online_ms = if earns_uptime(d.status) && (0..=down_after_ms).contains(&gap) {
            gap
        } else {
            0
        };
        d.credit(now.0, online_ms, heartbeat.utilisation);
        d.last_seen = d.last_seen.max(now.0);
        d.last_heartbeat = Some(now.0);
        d.utilisation = heartbeat.utilisation;
        d.heartbeat_dirty = true;
        let moved = from.is_some() && from != d.address;
        if from.is_some() {
            d.address = from;
        }
        if !d.watched || moved {
            // First heard here (or from elsewhere): claimed in the next batch.
            d.watched = true;
            self.note_heard(id, d.address);
        }
        if *d.agent_version != *version {
            d.agent_version = version.into();
            follow_ups.push(FollowUp::NewAgentVersion);
        }
        if matches!(d.status, DeviceStatus::Down | DeviceStatus::Inactive) {
            follow_ups.push(FollowUp::Resume);
        }
        if let Some(assignment) = &d.assignment {
            let report = heartbeat
                .workloads
                .iter()
                .find(|w| w.cluster_id == assignment.cluster_id);
            if let Some(report) = report.filter(|r| d.workload_state != Some(r.state)) {
                d.workload_state = Some(report.state);
                follow_ups.push(FollowUp::Workload {
                    cluster_id: assignment.cluster_id.clone(),
                    state: report.state,
                    detail: report.detail.clone(),
                    cause: report.cause,
                });
            }
        }
        if d.status == DeviceStatus::Blocked && now.0 - d.block_checked_at >= BLOCK_CHECK_EVERY_MS {
            d.block_checked_at = now.0;
            follow_ups.push(FollowUp::CheckBlock);
        }
        if d.status == DeviceStatus::Idle && now.0 - d.last_violation_at >= VIOLATION_EVERY_MS {
            if let Some(why) = heartbeat.utilisation.idle_cap_violation() {
                d.last_violation_at = now.0;
                follow_ups.push(FollowUp::Violation(why));
            }
        }
        // Never while paused, blocked or unsupported; a spot check while hired (issue 23).
        let challengeable = matches!(
            d.status,
            DeviceStatus::Pending | DeviceStatus::Idle | DeviceStatus::Hired
        );
        if challengeable && d.challenge.is_none() && now.0 >= d.next_challenge_at {
            let spot = d.status == DeviceStatus::Hired;
            let challenge = self.new_challenge(d.kind, d.gpu_count, spot);
            d.challenge = Some(Box::new(OpenChallenge {
                deadline_at: now.0 + i64::from(challenge.deadline_secs) * 1000,
                challenge: challenge.clone(),
            }));
            follow_ups.push(FollowUp::Challenge(challenge));
        }
        follow_ups
    }

    /// Writes what one heartbeat changed; a write that fails undoes its mark in the live fleet
    /// so the next heartbeat tries again.
    async fn follow_up(
        &self,
        device_id: &str,
        follow_up: FollowUp,
        version: &str,
        now: UnixMillis,
    ) -> Result<(), Error> {
        match follow_up {
            FollowUp::Resume => {
                self.transition(device_id, DeviceEvent::HeartbeatsResumed, now)
                    .await?;
            }
            FollowUp::Violation(why) => self.record_violation(device_id, &why, now).await?,
            FollowUp::CheckBlock => self.reload_if_unblocked(device_id, now).await?,
            FollowUp::Challenge(challenge) => {
                if let Err(e) = self.store_challenge(device_id, &challenge, now).await {
                    self.live.with(device_id, |d| d.challenge = None);
                    return Err(e);
                }
            }
            FollowUp::Workload {
                cluster_id,
                state,
                detail,
                cause,
            } => {
                let reported = self
                    .provisioning
                    .workload_reported(device_id, &cluster_id, state, &detail, cause, now)
                    .await;
                if let Err(e) = reported {
                    // Taken again from the next heartbeat's report.
                    self.live.with(device_id, |d| d.workload_state = None);
                    return Err(e);
                }
            }
            FollowUp::NewAgentVersion => {
                sqlx::query("UPDATE devices SET agent_version = $1 WHERE id = $2")
                    .bind(version)
                    .bind(device_id)
                    .execute(self.store.pool())
                    .await?;
            }
        }
        Ok(())
    }

    /// One state-machine step, committed, then mirrored into the live fleet.
    pub(super) async fn transition(
        &self,
        device_id: &str,
        event: DeviceEvent,
        now: UnixMillis,
    ) -> Result<domain::device_status::Transition, Error> {
        let mut tx = self.store.begin_write().await?;
        let t = apply_event(&mut tx, device_id, &event, now).await?;
        tx.commit().await?;
        mirror(&self.live, &self.index, device_id, &t, now);
        tracing::info!(device = device_id, status = %t.to.status, reason = %t.reason, "device status changed");
        Ok(t)
    }

    /// Answers every agent's long poll now and any later one at once: the server is stopping.
    pub fn release_waits(&self) {
        self.stopping.send_replace(true);
    }

    /// Holds an agent's long poll until the server's workloads for the device differ from the
    /// clusters it knows, or `wait` passes (at most [`MAX_ASSIGNMENT_WAIT_SECS`]). Returns
    /// whether they differ. A hired device's agent learns of its cluster within a round trip
    /// instead of a heartbeat interval.
    pub async fn wait_for_assignment(
        &self,
        device_id: &str,
        wait: &AssignmentWait,
    ) -> Result<bool, Error> {
        let waiting = self.live.with(device_id, |d| {
            if d.assignment_differs(&wait.known) {
                return None;
            }
            Some(
                d.assignment_changed
                    .get_or_insert_with(Default::default)
                    .clone(),
            )
        });
        let changed = match waiting {
            None => return Err(AgentRefusal::UnknownDevice(device_id.to_owned()).into()),
            Some(None) => return Ok(true),
            Some(Some(changed)) => changed,
        };
        let secs = wait.wait_secs.min(MAX_ASSIGNMENT_WAIT_SECS);
        let mut stopping = self.stopping.subscribe();
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(u64::from(secs))) => {}
            // A stopping server waits for requests in flight: do not hold it up.
            _ = stopping.wait_for(|stopping| *stopping) => {}
        }
        Ok(self
            .live
            .with(device_id, |d| d.assignment_differs(&wait.known))
            .unwrap_or(false))
    }
}

/// The heartbeat's agent version, once its clock, utilisation and workload list pass the checks.
fn checked_version(heartbeat: &Heartbeat, now: UnixMillis) -> Result<&str, Error> {
    // Saturating: a `sent_at` near the ends of i64 must read as far off, not wrap to near.
    let skew = heartbeat.sent_at.saturating_sub(now.0);
    if skew.unsigned_abs() > MAX_CLOCK_SKEW_MS.unsigned_abs() {
        return Err(AgentRefusal::ClockSkew {
            skew_secs: skew / 1000,
        }
        .into());
    }
    heartbeat.utilisation.validate().map_err(Error::Invalid)?;
    if heartbeat.workloads.len() > 64 {
        return Err(Error::Invalid("at most 64 workloads per heartbeat".into()));
    }
    checked_agent_version(&heartbeat.agent_version)
}
