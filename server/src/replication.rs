//! What a replica does beside serving requests (issue 16): keeps its row alive and competes for
//! the leader lease (the leader alone runs the one-replica jobs), and follows the change feed so
//! its live fleet and fleet index mirror what other replicas changed. On SQLite the server holds
//! the file's serving lock instead: one process serves it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use platform::replicas::{ChangeListener, FeedPosition};
use platform::store::Backend;
use platform::Platform;
use tokio::task::JoinHandle;

/// The lease the one-replica jobs run under.
pub const LEADER_LEASE: &str = "leader";
/// The leader renews this often and holds the lease this long, so another replica takes over
/// within about `LEADER_TTL` of the leader's death.
const RENEW_EVERY: Duration = Duration::from_secs(2);
const LEADER_TTL: Duration = Duration::from_secs(10);
/// The change feed is read this often when no notification wakes it sooner.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Whether this replica leads now: read by the job loop before each one-replica job.
#[derive(Clone, Default)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    pub fn leads(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Asks for the leader lease once (at start-up, before the jobs run, so a lone server leads
/// from its first pass).
pub async fn try_to_lead(
    platform: &Platform,
    leadership: &Leadership,
) -> Result<bool, platform::Error> {
    let leads = platform
        .replicas
        .hold(LEADER_LEASE, LEADER_TTL.as_millis() as i64, platform::now())
        .await?;
    leadership.0.store(leads, Ordering::Relaxed);
    Ok(leads)
}

/// Renews the replica's row and the leader lease until `stop` turns true, then gives the lease
/// up so another replica leads at once.
pub fn keep_alive(
    platform: Platform,
    leadership: Leadership,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RENEW_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
            let now = platform::now();
            if let Err(e) = platform.replicas.renew(now).await {
                tracing::warn!(error = %e, "could not renew this replica's row");
            }
            let leads = match platform
                .replicas
                .hold(LEADER_LEASE, LEADER_TTL.as_millis() as i64, now)
                .await
            {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew the leader lease");
                    false
                }
            };
            if leads != leadership.0.swap(leads, Ordering::Relaxed) {
                tracing::info!(
                    replica = platform.replicas.id(),
                    leads,
                    "leadership changed"
                );
            }
        }
        leadership.0.store(false, Ordering::Relaxed);
        if let Err(e) = platform.replicas.release(LEADER_LEASE).await {
            tracing::warn!(error = %e, "could not give the leader lease up");
        }
    })
}

/// Follows the change feed from `position` until `stop` turns true: woken by PostgreSQL's
/// `NOTIFY` when a replica commits a change, and every second regardless (a notification lost
/// with a dropped connection is caught up by sequence). Nothing to follow on SQLite.
pub fn follow(
    platform: Platform,
    database_url: String,
    mut position: FeedPosition,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if Backend::of_url(&database_url).ok()? != Backend::Postgres {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut listener = listen(&database_url).await;
        loop {
            tokio::select! {
                _ = notified(&mut listener) => {}
                _ = tokio::time::sleep(FOLLOW_EVERY) => {
                    if listener.is_none() {
                        listener = listen(&database_url).await;
                    }
                }
                // The guard `wait_for` returns must not live across the awaits above.
                _ = async { drop(stop.wait_for(|stop| *stop).await) } => return,
            }
            if let Err(e) = platform
                .agents
                .follow_changes(&mut position, platform::now())
                .await
            {
                tracing::warn!(error = %e, "could not mirror the change feed; trying again");
            }
        }
    }))
}

/// Waits for a change notification; forever without a listener (the follower polls).
async fn notified(listener: &mut Option<ChangeListener>) {
    match listener {
        Some(l) => {
            if let Err(e) = l.wait().await {
                tracing::debug!(error = %e, "change notifications interrupted");
                tokio::time::sleep(FOLLOW_EVERY).await;
            }
        }
        None => std::future::pending().await,
    }
}

/// A listener on the change feed's channel, or None (logged) when it cannot connect: the
/// follower then polls.
async fn listen(database_url: &str) -> Option<ChangeListener> {
    match ChangeListener::connect(database_url).await {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for change notifications; polling instead");
            None
        }
    }
}
