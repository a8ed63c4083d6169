//! The GPU Commons server: builds the platform from a [`Config`] (`startup`), wires the Leptos
//! app, the JSON API and the health endpoints into one axum router with the HTTP middleware
//! (`router`), runs the background jobs (`jobs`) and the operator commands (`operator`).

pub mod agent_api;
pub mod agent_delivery;
pub mod api;
mod api_docs;
mod api_errors;
mod api_input;
pub mod client_address;
pub mod config;
pub mod demo_agents;
pub mod error;
pub mod explorer_api;
pub mod jobs;
pub mod limiter;
pub mod metrics;
mod openapi;
mod operator;
pub mod replication;
mod router;
mod startup;
pub mod tunnel;

use std::net::SocketAddr;
use std::time::Duration;

use platform::agents::Flush;
use platform::Platform;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

pub use config::{Command, Config, PayoutSettings, Settings};
use demo_agents::DemoAgents;
pub use error::Error;
pub use operator::run_command;
pub use router::router;
pub use startup::start;

/// How long a stop waits for open requests, and then for database connections, to finish.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// A server that is listening. Dropping it does not stop it; call [`RunningServer::stop`].
pub struct RunningServer {
    pub addr: SocketAddr,
    pub public_url: Url,
    /// Where renters reach tunnels; None when the server runs none.
    pub tunnel_url: Option<Url>,
    /// Where the operator's metrics are served; None when they are not.
    pub metrics_addr: Option<SocketAddr>,
    pub platform: Platform,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
    /// The tunnel origin's listener; it stops with the main one.
    tunnel_task: Option<JoinHandle<std::io::Result<()>>>,
    /// The metrics listener's; it stops with the main one.
    metrics_task: Option<JoinHandle<std::io::Result<()>>>,
    jobs: JoinHandle<()>,
    stop_jobs: tokio::sync::watch::Sender<bool>,
    demo_agents: DemoAgents,
    /// The replica's row and leader lease kept alive, and the change feed followed (on
    /// PostgreSQL); both end with the jobs.
    keep_alive: JoinHandle<()>,
    follower: Option<JoinHandle<()>>,
    /// On SQLite, the file's serving lock, held until the process ends.
    _serving_lock: Option<std::fs::File>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, writes the merged heartbeats, and
    /// closes the database. Requests that do not finish within [`STOP_GRACE`] are cut off, and
    /// database connections not handed back by then are left to the process's end: a stop
    /// never hangs.
    pub async fn stop(self) {
        // The agents first, while the server can still hear their workloads stop.
        self.demo_agents.stop().await;
        self.platform.agents.release_waits();
        let _ = self.shutdown.send(());
        if let Some(tunnels) = self.tunnel_task {
            // Open tunnels are long-lived connections to workloads: they are cut, not awaited.
            tunnels.abort();
        }
        if let Some(metrics) = self.metrics_task {
            metrics.abort();
        }
        let task = self.task.abort_handle();
        match tokio::time::timeout(STOP_GRACE, self.task).await {
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "server ended with an error"),
            Err(_) => {
                tracing::warn!(
                    "requests still open after the stop's grace period; cutting them off"
                );
                task.abort();
            }
            _ => {}
        }
        // Let a flush in progress finish: aborting it would drop the heartbeats it had taken.
        let _ = self.stop_jobs.send(true);
        if let Err(e) = self.jobs.await {
            tracing::error!(error = %e, "the background jobs ended abnormally");
        }
        // The leader lease is given up, so another replica leads at once.
        if let Err(e) = self.keep_alive.await {
            tracing::error!(error = %e, "the replica's keep-alive ended abnormally");
        }
        if let Some(follower) = self.follower {
            let _ = follower.await;
        }
        if let Err(e) = self
            .platform
            .agents
            .flush(Flush::Everything, platform::now())
            .await
        {
            tracing::error!(error = %e, "could not write the last heartbeats");
        }
        if let Err(e) = self.platform.tunnels.flush_meters().await {
            tracing::error!(error = %e, "could not count the tunnels' last bytes");
        }
        if tokio::time::timeout(STOP_GRACE, self.platform.store.close())
            .await
            .is_err()
        {
            tracing::warn!("database connections still in use after the stop's grace period");
        }
    }

    /// Waits until the server ends on its own (it does not, short of an I/O failure).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match (&mut self.task).await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        }
    }
}
