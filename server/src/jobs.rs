//! Background jobs: the fleet and cluster sweeps, heartbeat flushes, compliance refreshes,
//! reward blocks, payouts, deposits, tunnel meters and the session purge. Each has its own named cadence and
//! runs in its own `tracing` span; one loop runs them one after another, so no two of them
//! write at once (SQLite has one writer) and a stop lands between jobs, never inside one.
//! Each job runs on every replica (it works on what this replica holds in memory) or on the
//! leader alone ([`Scope`]; issue 16), so nothing runs twice across replicas.

use std::time::Duration;

use platform::agents::Flush;
use platform::Platform;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::Config;

/// Sign-in nonces and sessions past their expiry are deleted this often.
const SESSION_PURGE_EVERY: Duration = Duration::from_secs(300);
/// Attestations are read again this often: operator commands run in their own process, and
/// certifications lapse. The commands promise "within a minute".
const COMPLIANCE_REFRESH_EVERY: Duration = Duration::from_secs(60);
/// Reward blocks close hourly; looking every few seconds closes each soon after its hour.
const BLOCK_CLOSE_EVERY: Duration = Duration::from_secs(5);
/// The sweeps never run less often than this, however long `--down-after-secs` is.
const SWEEP_AT_MOST_EVERY: Duration = Duration::from_secs(5);
/// Nor more often than this, however short.
const SWEEP_AT_LEAST_EVERY: Duration = Duration::from_millis(250);
/// Payouts and deposits wait on the chain; this is how often their next step is tried.
const CHAIN_WORK_EVERY: Duration = Duration::from_secs(1);
/// Bytes through tunnels are added to their clusters this often, open connections' included.
const TUNNEL_METERS_EVERY: Duration = Duration::from_secs(5);
/// Devices this replica began to hear are claimed this often: well inside the down window,
/// so the replica an agent left sees the claim before it would judge the silence.
const CLAIMS_EVERY: Duration = Duration::from_secs(1);
/// Old entries of the change feed are deleted this often.
const FEED_PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Where a job runs when several replicas serve one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// On every replica: it works on what the replica holds in memory.
    EachReplica,
    /// On the leader alone: it works on shared rows.
    Leader,
}

/// The background jobs, each with its cadence in [`Cadences`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Silent devices down, long-down ones inactive, unanswered challenges settled.
    FleetSweep,
    /// Start deadlines, paid time that ran out, hired devices that went down, hourly settlement.
    ClusterSweep,
    /// Merged heartbeats written to the database.
    HeartbeatFlush,
    /// The fleet index's attested devices read again.
    ComplianceRefresh,
    /// Reward blocks whose hour has passed.
    BlockClose,
    /// Claims sent to the chain and confirmed.
    Payouts,
    /// Deposits confirmed on the chain and credited.
    Deposits,
    /// Dead sign-in nonces and sessions deleted.
    SessionPurge,
    /// Bytes counted through tunnels added to their clusters.
    TunnelMeters,
    /// Devices this replica began to hear claimed as served by it.
    Claims,
    /// Devices of replicas that died, and never claimed ones, marked down once silent.
    Orphans,
    /// Change-feed entries every replica has read deleted.
    FeedPrune,
}

impl Job {
    pub const ALL: [Job; 12] = [
        Job::Claims,
        Job::FleetSweep,
        Job::Orphans,
        Job::ClusterSweep,
        Job::HeartbeatFlush,
        Job::ComplianceRefresh,
        Job::BlockClose,
        Job::Payouts,
        Job::Deposits,
        Job::SessionPurge,
        Job::TunnelMeters,
        Job::FeedPrune,
    ];

    pub fn scope(self) -> Scope {
        match self {
            Job::Claims
            | Job::FleetSweep
            | Job::HeartbeatFlush
            | Job::ComplianceRefresh
            | Job::TunnelMeters => Scope::EachReplica,
            Job::Orphans
            | Job::ClusterSweep
            | Job::BlockClose
            | Job::Payouts
            | Job::Deposits
            | Job::SessionPurge
            | Job::FeedPrune => Scope::Leader,
        }
    }

    /// The name its span and log lines carry.
    pub fn name(self) -> &'static str {
        match self {
            Job::FleetSweep => "fleet_sweep",
            Job::ClusterSweep => "cluster_sweep",
            Job::HeartbeatFlush => "heartbeat_flush",
            Job::ComplianceRefresh => "compliance_refresh",
            Job::BlockClose => "block_close",
            Job::Payouts => "payouts",
            Job::Deposits => "deposits",
            Job::SessionPurge => "session_purge",
            Job::TunnelMeters => "tunnel_meters",
            Job::Claims => "claims",
            Job::Orphans => "orphans",
            Job::FeedPrune => "feed_prune",
        }
    }

    /// Runs one pass; a failure is logged and the pass is tried again at the next due time.
    /// Returns whether it failed.
    async fn run(self, platform: &Platform) -> bool {
        let now = platform::now();
        let failed = match self {
            Job::FleetSweep => platform.agents.sweep(now).await.err(),
            Job::ClusterSweep => platform.provisioning.sweep(now).await.err(),
            Job::HeartbeatFlush => platform.agents.flush(Flush::Due, now).await.err(),
            Job::ComplianceRefresh => platform.compliance.refresh(now).await.err(),
            Job::BlockClose => platform.rewards.close_due(now).await.err(),
            Job::Payouts => platform.payouts.work(now).await.err(),
            Job::Deposits => platform.deposits.work(now).await.err(),
            Job::TunnelMeters => platform.tunnels.flush_meters().await.err(),
            Job::Claims => platform.agents.write_claims().await.err(),
            Job::Orphans => platform.agents.take_over_orphans(now).await.err(),
            Job::FeedPrune => platform.replicas.prune_changes(now).await.err(),
            Job::SessionPurge => match platform.auth.purge_expired(now).await {
                Ok(removed) => {
                    tracing::debug!(removed, "purged expired sign-in nonces and sessions");
                    None
                }
                Err(e) => Some(e),
            },
        };
        if let Some(e) = &failed {
            tracing::warn!(error = %e, "background job failed; trying again when next due");
        }
        failed.is_some()
    }
}

/// How often each job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadences {
    pub fleet_sweep: Duration,
    pub cluster_sweep: Duration,
    pub heartbeat_flush: Duration,
    pub compliance_refresh: Duration,
    pub block_close: Duration,
    pub payouts: Duration,
    pub deposits: Duration,
    pub session_purge: Duration,
    pub tunnel_meters: Duration,
    pub claims: Duration,
    pub feed_prune: Duration,
}

impl Cadences {
    /// The cadences for `config`. The fleet sweep looks four times per `--down-after-secs`
    /// window, so a silent device is marked down at most a quarter late; the cluster sweep
    /// follows it, so a hired device marked down is settled and replaced on the next pass.
    /// Flushes follow `--flush-interval-secs`; the rest have fixed cadences of their own.
    pub fn for_config(config: &Config) -> Cadences {
        let down_after = Duration::from_secs(config.fleet.down_after_secs.max(0) as u64);
        let sweep = (down_after / 4).clamp(SWEEP_AT_LEAST_EVERY, SWEEP_AT_MOST_EVERY);
        Cadences {
            fleet_sweep: sweep,
            cluster_sweep: sweep,
            heartbeat_flush: config.flush_interval,
            compliance_refresh: COMPLIANCE_REFRESH_EVERY,
            block_close: BLOCK_CLOSE_EVERY,
            payouts: CHAIN_WORK_EVERY,
            deposits: CHAIN_WORK_EVERY,
            session_purge: SESSION_PURGE_EVERY,
            tunnel_meters: TUNNEL_METERS_EVERY,
            claims: CLAIMS_EVERY,
            feed_prune: FEED_PRUNE_EVERY,
        }
    }

    pub fn of(&self, job: Job) -> Duration {
        match job {
            Job::FleetSweep | Job::Orphans => self.fleet_sweep,
            Job::ClusterSweep => self.cluster_sweep,
            Job::HeartbeatFlush => self.heartbeat_flush,
            Job::ComplianceRefresh => self.compliance_refresh,
            Job::BlockClose => self.block_close,
            Job::Payouts => self.payouts,
            Job::Deposits => self.deposits,
            Job::SessionPurge => self.session_purge,
            Job::TunnelMeters => self.tunnel_meters,
            Job::Claims => self.claims,
            Job::FeedPrune => self.feed_prune,
        }
    }

    /// How long the loop sleeps between looks: the shortest cadence, so no job runs late by
    /// more than that.
    fn tick(&self) -> Duration {
        Job::ALL
            .iter()
            .map(|&job| self.of(job))
            .min()
            .unwrap_or(SWEEP_AT_MOST_EVERY)
            .max(SWEEP_AT_LEAST_EVERY)
    }
}

/// Runs every job when it falls due, one after another, until `stop` turns true; it stops only
/// between jobs. Every job runs once at the start, then at its cadence; a leader's job only
/// while this replica leads.
pub fn spawn(
    platform: Platform,
    cadences: Cadences,
    leadership: crate::replication::Leadership,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut next: Vec<(Job, Instant)> = Job::ALL.iter().map(|&job| (job, started)).collect();
        let mut every = tokio::time::interval(cadences.tick());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            for (job, due) in next.iter_mut() {
                if *stop.borrow() {
                    return;
                }
                if Instant::now() < *due {
                    continue;
                }
                if job.scope() == Scope::Leader && !leadership.leads() {
                    *due = Instant::now() + cadences.of(*job);
                    continue;
                }
                let span = tracing::info_span!("job", name = job.name());
                let started = Instant::now();
                let failed = job.run(&platform).instrument(span).await;
                crate::metrics::job_ran(job.name(), started.elapsed(), failed);
                *due = Instant::now() + cadences.of(*job);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cadences(down_after_secs: i64, flush_secs: u64) -> Cadences {
        let mut config = Config::for_database("sqlite::memory:").expect("a valid configuration");
        config.fleet.down_after_secs = down_after_secs;
        config.flush_interval = Duration::from_secs(flush_secs);
        Cadences::for_config(&config)
    }

    #[test]
    fn sweeps_follow_the_down_window_within_bounds_and_the_rest_keep_their_own() {
        let quick = cadences(2, 1);
        assert_eq!(quick.fleet_sweep, Duration::from_millis(500));
        assert_eq!(quick.cluster_sweep, quick.fleet_sweep);
        assert_eq!(quick.heartbeat_flush, Duration::from_secs(1));
        assert_eq!(quick.tick(), Duration::from_millis(500));

        let slow = cadences(3_600, 60);
        assert_eq!(slow.fleet_sweep, SWEEP_AT_MOST_EVERY, "capped");
        assert_eq!(slow.heartbeat_flush, Duration::from_secs(60));
        // Changing the down window changes no other job's pace.
        for job in [
            Job::ComplianceRefresh,
            Job::BlockClose,
            Job::Payouts,
            Job::Deposits,
            Job::SessionPurge,
            Job::TunnelMeters,
            Job::Claims,
            Job::FeedPrune,
        ] {
            assert_eq!(quick.of(job), slow.of(job), "{}", job.name());
        }
        assert_eq!(slow.tick(), CLAIMS_EVERY);
    }

    #[test]
    fn every_job_has_a_distinct_name() {
        let mut names: Vec<&str> = Job::ALL.iter().map(|j| j.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Job::ALL.len());
    }
}
