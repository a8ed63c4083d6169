//! The harness the agent tests share: the real server on loopback with short timings, and
//! the real agent binary run with simulated hardware.
// Each test binary uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use domain::fleet::{DeviceKind, OperatingSystem};
use domain::wallet::WalletAddress;
use domain::worker::{DeviceDetail, NewDevice};
use server::{start, Config, RunningServer};
use tokio::process::{Child, Command};

pub const AGENT: &str = env!("CARGO_BIN_EXE_gpu-commons-agent");

/// An agent started for a device of its own, and what it takes to start it again.
pub struct Started {
    pub agent: Child,
    pub args: Vec<String>,
    pub machine: PathBuf,
    pub device: String,
}

pub struct Fleet {
    pub server: RunningServer,
    pub dir: PathBuf,
    pub owner: WalletAddress,
}

pub fn machine_file(dir: &Path, name: &str, gpu: &str, count: usize, gpu_percent: u8) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "os = \"linux\"\ncpu_model = \"AMD EPYC 9654\"\ncpu_cores = 96\nram_gb = 512\ndisk_gb = 2000\n\
             [utilisation]\ngpu_percent = {gpu_percent}\ncpu_percent = 2\nmemory_percent = 10\n\
             [[gpus]]\nname = \"{gpu}\"\nmemory_mb = 81559\ncount = {count}\n"
        ),
    )
    .unwrap();
    path
}

impl Fleet {
    pub async fn start(database_url: String) -> Fleet {
        Fleet::start_with(database_url, |_| {}).await
    }

    /// [`Fleet::start`] with `tweak` applied to the server's configuration last.
    pub async fn start_with(database_url: String, tweak: impl FnOnce(&mut Config)) -> Fleet {
        let mut config = Config::for_database(&database_url).unwrap();
        config.fleet.heartbeat_interval_secs = 1;
        config.fleet.down_after_secs = 3;
        // Large enough that loopback measures above the lowest tier even on a busy machine.
        config.fleet.speed_test_bytes = 4 * 1024 * 1024;
        config.fleet.gpu_challenge_size = 128;
        // The agents here describe their hardware from a file.
        config.fleet.accept_simulated = true;
        config.flush_interval = Duration::from_secs(1);
        tweak(&mut config);
        let server = start(config).await.unwrap();
        let dir = std::env::temp_dir().join(format!(
            "gc-agent-fleet-{}-{}",
            std::process::id(),
            server.addr.port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Fleet {
            server,
            dir,
            owner: WalletAddress::from_public_key(&[42; 32]),
        }
    }

    /// What the Worker tab's wizard does: reserve a device and get its one-line command.
    pub async fn add_device(&self, name: &str) -> Vec<String> {
        enrol(&self.server.platform, &self.owner, name).await
    }

    pub fn agent(&self, name: &str, args: &[String], machine: &Path) -> Child {
        self.agent_with_path(name, args, machine, None)
    }

    /// [`Fleet::agent`] with `bin` searched first for the programs the agent runs, and shown
    /// (read-only) inside its sandboxes.
    pub fn agent_with_path(
        &self,
        name: &str,
        args: &[String],
        machine: &Path,
        bin: Option<&Path>,
    ) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .unwrap();
        let mut command = Command::new(AGENT);
        if let Some(bin) = bin {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let paths = std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&path));
            command
                .env("PATH", std::env::join_paths(paths).unwrap())
                .arg("--sandbox-read-only")
                .arg(bin);
        }
        command
            .args(args)
            .arg("--credentials")
            .arg(self.dir.join(format!("{name}.json")))
            .arg("--simulate")
            .arg(machine)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Adds a one-H100 device called `name`, starts its agent (with `bin` first on its PATH)
    /// and waits until the device can be hired.
    pub async fn start_h100(&self, name: &str, bin: Option<&Path>) -> Started {
        let machine = machine_file(&self.dir, name, "NVIDIA H100 80GB HBM3", 1, 0);
        self.start_machine(name, machine, bin).await
    }

    /// [`Fleet::start_h100`] on the machine the file `machine` describes.
    pub async fn start_machine(&self, name: &str, machine: PathBuf, bin: Option<&Path>) -> Started {
        let args = self.add_device(name).await;
        let agent = self.agent_with_path(name, &args, &machine, bin);
        let device = self.wait_registered(name, 30).await;
        self.wait_for(name, &device, 60, "ready for hire", |d| {
            d.summary.readiness().is_ok()
        })
        .await;
        Started {
            agent,
            args,
            machine,
            device,
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// What cluster `cluster_id`'s workload printed on the device of agent `name`, as the
    /// agent keeps it.
    pub fn workload_log(&self, name: &str, cluster_id: &str) -> String {
        std::fs::read_to_string(
            self.dir
                .join(format!("{name}.logs"))
                .join(format!("{cluster_id}.log")),
        )
        .unwrap_or_default()
    }

    /// Waits until the workload log of `cluster_id` on agent `name` holds `text`; its content.
    pub async fn wait_for_output(
        &self,
        name: &str,
        cluster_id: &str,
        text: &str,
        secs: u64,
    ) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let log = self.workload_log(name, cluster_id);
            if log.contains(text) {
                return log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the workload of {cluster_id} on {name} never printed {text:?}:\n{log}\nagent log:\n{}",
                self.log(name)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn detail(&self, device_id: &str) -> DeviceDetail {
        self.server
            .platform
            .worker
            .device_detail(&self.owner, device_id, platform::now())
            .await
            .unwrap()
    }

    /// Polls the device until `done` holds, failing with the agent's log after `secs`.
    pub async fn wait_for(
        &self,
        agent: &str,
        device_id: &str,
        secs: u64,
        what: &str,
        done: impl Fn(&DeviceDetail) -> bool,
    ) -> DeviceDetail {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let detail = self.detail(device_id).await;
            if done(&detail) {
                return detail;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "device never became {what}: {:?} ({})\nagent log:\n{}",
                    detail.summary.status,
                    detail.status_reason,
                    self.log(agent)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the agent called `name` has registered; returns its device id.
    pub async fn wait_registered(&self, name: &str, secs: u64) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let devices = self
                .server
                .platform
                .worker
                .devices_of(&self.owner, platform::now())
                .await
                .unwrap();
            if let Some(device) = devices.devices.iter().find(|d| d.name == name) {
                return device.id.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} did not register:\n{}",
                self.log(name)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn device_id_of(&self, name: &str) -> String {
        let devices = self
            .server
            .platform
            .worker
            .devices_of(&self.owner, platform::now())
            .await
            .unwrap();
        devices
            .devices
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("{name} did not register:\n{}", self.log(name)))
            .id
            .clone()
    }

    pub async fn stop(self) {
        self.server.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reserves a GPU device called `name` for `owner` as the Worker tab's wizard does; returns
/// the arguments of the agent command it shows for a machine with the agent installed.
pub async fn enrol(
    platform: &platform::Platform,
    owner: &WalletAddress,
    name: &str,
) -> Vec<String> {
    let ticket = ticket(platform, owner, name).await;
    let words: Vec<String> = ticket
        .run_command
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(words[0], "gpu-commons-agent");
    words[1..].to_vec()
}

/// What the Worker tab's wizard shows for a new GPU device called `name`.
pub async fn ticket(
    platform: &platform::Platform,
    owner: &WalletAddress,
    name: &str,
) -> domain::worker::RegistrationTicket {
    platform
        .worker
        .add_device(
            owner,
            NewDevice {
                name: name.into(),
                os: OperatingSystem::Linux,
                kind: DeviceKind::Gpu,
                country: "FI".into(),
            },
            platform::now(),
        )
        .await
        .unwrap()
}

pub async fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    tokio::time::timeout(Duration::from_secs(secs), child.wait())
        .await
        .expect("the agent did not stop")
        .unwrap()
}

/// How many processes on this machine run exactly `argv`.
/// A TCP port nothing on this machine's loopback listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn processes_running(argv: &[&str]) -> usize {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|raw| raw == wanted))
                .count()
        })
        .unwrap_or(0)
}

/// Signs in the wallet whose key is `seed` repeated; returns the account id.
pub async fn sign_in(platform: &platform::Platform, seed: u8) -> i64 {
    use ed25519_dalek::{Signer, SigningKey};
    let key = SigningKey::from_bytes(&[seed; 32]);
    let address = WalletAddress::from_public_key(&key.verifying_key().to_bytes()).to_string();
    let challenge = platform
        .auth
        .challenge(&address, platform::now())
        .await
        .unwrap();
    let signature = bs58::encode(key.sign(challenge.message.as_bytes()).to_bytes()).into_string();
    let (_, signed_in) = platform
        .auth
        .sign_in(&challenge.message, &signature, platform::now())
        .await
        .unwrap();
    signed_in.user_id
}

/// Signs in the wallet whose key is `seed` repeated and credits its account with `dollars`;
/// returns the account id.
pub async fn funded_renter(fleet: &Fleet, seed: u8, dollars: i64) -> i64 {
    let platform = &fleet.server.platform;
    let user_id = sign_in(platform, seed).await;
    platform
        .ledger
        .operator_credit(
            user_id,
            domain::money::Asset::Usdc,
            dollars * 1_000_000,
            &format!("test-grant-{seed}"),
            "test grant",
            platform::now(),
        )
        .await
        .unwrap();
    user_id
}

/// An hour of `quantity` H100s anywhere, paid in USDC.
pub fn h100_request(
    name: &str,
    kind: domain::cluster::ClusterKind,
    quantity: u32,
    workload: domain::cluster::Workload,
) -> domain::cluster::DeployRequest {
    use domain::cluster::{DurationUnit, PaymentMethod, Purpose, SecurityCompliance};
    domain::cluster::DeployRequest {
        name: name.into(),
        kind,
        purpose: Purpose::General,
        hardware: "H100 80GB SXM".into(),
        quantity,
        countries: Vec::new(),
        min_tier: None,
        compliance: SecurityCompliance::E2eEncrypted,
        duration_unit: DurationUnit::Hourly,
        duration_count: 1,
        payment: PaymentMethod::Usdc,
        workload,
    }
}
