//! Demo agents: with a demo fleet the server also runs a few real agents — the
//! `gpu-commons-agent` binary with simulated hardware (marked as simulated everywhere) — as
//! devices of one demo provider. The seeded fleet has no agents and is never hired; these
//! register with a token, pass verification, heartbeat and run workloads like any provider's
//! machine, so a renter on a fresh network can deploy a cluster that really runs (its commands
//! run on this machine). Their credentials and logs live in one folder; a restart resumes them
//! without registering again.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use domain::fleet::{DeviceKind, OperatingSystem};
use domain::wallet::WalletAddress;
use domain::worker::NewDevice;
use platform::Platform;
use tokio::process::{Child, Command};

use crate::Error;

/// How long a stopped agent gets to stop its workloads before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where and how many demo agents run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoAgentSettings {
    pub count: usize,
    /// The agent binary to run.
    pub binary: PathBuf,
    /// Credentials, hardware files and logs, one set per agent.
    pub dir: PathBuf,
}

/// One simulated machine: what `nvidia-smi` would report, and where it is.
struct DemoMachine {
    gpu: &'static str,
    memory_mb: u32,
    count: u32,
    country: &'static str,
}

/// What the demo agents simulate, in turn: sizes a renter is likely to try first.
const MACHINES: [DemoMachine; 4] = [
    DemoMachine {
        gpu: "NVIDIA H100 80GB HBM3",
        memory_mb: 81_559,
        count: 8,
        country: "US",
    },
    DemoMachine {
        gpu: "NVIDIA H100 80GB HBM3",
        memory_mb: 81_559,
        count: 8,
        country: "DE",
    },
    DemoMachine {
        gpu: "NVIDIA A100 80GB PCIe",
        memory_mb: 81_920,
        count: 4,
        country: "US",
    },
    DemoMachine {
        gpu: "NVIDIA L40S",
        memory_mb: 46_068,
        count: 4,
        country: "CA",
    },
];

/// The most demo agents one server runs: each is a process with its own heartbeats.
pub const MAX_DEMO_AGENTS: usize = 32;

/// How many demo agents a demo network gets unless told otherwise.
pub const DEFAULT_DEMO_AGENTS: usize = MACHINES.len();

/// The demo provider: a wallet nobody holds the key of, so its earnings stay on the platform.
pub fn demo_provider() -> WalletAddress {
    WalletAddress::from_public_key(&[0xA6; 32])
}

/// The running demo agents; [`DemoAgents::stop`] ends them and their workloads.
pub struct DemoAgents {
    children: Vec<Child>,
}

impl DemoAgents {
    /// Starts the agents against the server at `server_url`, registering those that have no
    /// credential for this database yet.
    pub async fn start(
        platform: &Platform,
        settings: &DemoAgentSettings,
        server_url: &str,
    ) -> Result<DemoAgents, Error> {
        let mut children = Vec::new();
        if settings.count == 0 {
            return Ok(DemoAgents { children });
        }
        if !settings.binary.is_file() {
            tracing::warn!(
                agent = %settings.binary.display(),
                "demo agents not started: no agent binary there (build it with `cargo build --release -p agent`, or give --agent-binary); the demo fleet can be browsed but not hired"
            );
            return Ok(DemoAgents { children });
        }
        let folder_error = |e: std::io::Error| {
            Error::Config(format!(
                "demo agents folder '{}': {e}",
                settings.dir.display()
            ))
        };
        std::fs::create_dir_all(&settings.dir).map_err(folder_error)?;
        let owner = demo_provider();
        let registered: Vec<String> = platform
            .worker
            .devices_of(&owner, platform::now())
            .await?
            .devices
            .into_iter()
            .map(|d| d.id)
            .collect();
        for index in 0..settings.count {
            let machine = &MACHINES[index % MACHINES.len()];
            let files = AgentFiles::new(&settings.dir, index);
            std::fs::write(&files.hardware, machine.simulate_toml()).map_err(folder_error)?;
            let mut command = Command::new(&settings.binary);
            command
                .arg("--server")
                .arg(server_url)
                .arg("--credentials")
                .arg(&files.credentials)
                .arg("--simulate")
                .arg(&files.hardware);
            if !files
                .resume(&registered, server_url)
                .map_err(folder_error)?
            {
                let ticket = platform
                    .worker
                    .add_operator_device(
                        &owner,
                        NewDevice {
                            name: format!("demo-{}-{index}", machine.country.to_lowercase()),
                            os: OperatingSystem::Linux,
                            kind: DeviceKind::Gpu,
                            country: machine.country.into(),
                        },
                        platform::now(),
                    )
                    .await?;
                command.arg("--token").arg(ticket.token);
            }
            let log = std::fs::File::create(&files.log).map_err(folder_error)?;
            let errors = log.try_clone().map_err(folder_error)?;
            let child = command
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(errors)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| {
                    Error::Config(format!(
                        "cannot start the demo agent '{}': {e}",
                        settings.binary.display()
                    ))
                })?;
            children.push(child);
        }
        tracing::info!(agents = children.len(), dir = %settings.dir.display(), "demo agents started");
        Ok(DemoAgents { children })
    }

    /// Asks each agent to stop (as Ctrl-C would: it stops its workloads first), and kills
    /// those still running after [`STOP_GRACE`].
    pub async fn stop(self) {
        for mut child in self.children {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .args(["-INT", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status()
                    .await;
            }
            if tokio::time::timeout(STOP_GRACE, child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

impl DemoMachine {
    /// The agent's `--simulate` file for this machine.
    fn simulate_toml(&self) -> String {
        format!(
            "os = \"linux\"\ncpu_model = \"AMD EPYC 9654\"\ncpu_cores = 96\nram_gb = 1024\n\
             disk_gb = 4000\n[utilisation]\ngpu_percent = 0\ncpu_percent = 2\nmemory_percent = 5\n\
             [[gpus]]\nname = \"{}\"\nmemory_mb = {}\ncount = {}\n",
            self.gpu, self.memory_mb, self.count
        )
    }
}

/// One demo agent's files.
struct AgentFiles {
    credentials: PathBuf,
    hardware: PathBuf,
    log: PathBuf,
}

impl AgentFiles {
    fn new(dir: &Path, index: usize) -> AgentFiles {
        AgentFiles {
            credentials: dir.join(format!("agent-{index}.json")),
            hardware: dir.join(format!("agent-{index}.toml")),
            log: dir.join(format!("agent-{index}.log")),
        }
    }

    /// Whether the saved credential is for a device this database knows; it is then pointed
    /// at `server_url` (the address may have changed since). A credential from another
    /// database is removed, so the agent registers anew.
    fn resume(&self, registered: &[String], server_url: &str) -> std::io::Result<bool> {
        let saved: Option<serde_json::Value> = match std::fs::read_to_string(&self.credentials) {
            Ok(text) => serde_json::from_str(&text).ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let known = saved.filter(|saved| {
            saved["device_id"]
                .as_str()
                .is_some_and(|id| registered.iter().any(|r| r == id))
        });
        match known {
            Some(mut saved) => {
                saved["server"] = server_url.into();
                std::fs::write(&self.credentials, saved.to_string())?;
                Ok(true)
            }
            None => {
                std::fs::remove_file(&self.credentials)?;
                // The workloads of a device this database never knew are not ours to stop.
                let _ = std::fs::remove_file(self.credentials.with_extension("workloads.json"));
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_credentials_resume_only_for_devices_this_database_knows() {
        let dir = std::env::temp_dir().join(format!("gc-demo-agents-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = AgentFiles::new(&dir, 0);
        assert!(!files.resume(&[], "http://a").unwrap(), "nothing saved");

        let saved = r#"{"server":"http://old:1","device_id":"dev-1","credential":"gcd_x"}"#;
        std::fs::write(&files.credentials, saved).unwrap();
        assert!(files.resume(&["dev-1".into()], "http://new:2").unwrap());
        let resumed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files.credentials).unwrap()).unwrap();
        assert_eq!(resumed["server"], "http://new:2");
        assert_eq!(resumed["credential"], "gcd_x");

        assert!(!files.resume(&["dev-2".into()], "http://new:2").unwrap());
        assert!(
            !files.credentials.exists(),
            "a stranger's credential is removed"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_demo_machine_is_in_the_catalog() {
        let catalog = domain::catalog::GpuCatalog::builtin();
        for machine in &MACHINES {
            assert!(
                catalog.by_reported_name(machine.gpu).is_some(),
                "{}",
                machine.gpu
            );
            assert!(domain::country::is_known(machine.country));
        }
    }
}
