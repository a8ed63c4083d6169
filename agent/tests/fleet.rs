//! The real agent binary against the real server on loopback: registration with a token (and
//! refusal of a reused one), proof-of-work verification, connectivity, heartbeats, going down
//! when killed and back when restarted, pause/resume, and a revoked credential stopping it.
//! Runs on SQLite and, where available, PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use domain::fleet::{DeviceKind, DeviceStatus, OperatingSystem};
use domain::wallet::WalletAddress;
use domain::worker::{DeviceDetail, NewDevice};
use server::{start, Config, RunningServer};
use tokio::process::{Child, Command};

const AGENT: &str = env!("CARGO_BIN_EXE_gpu-commons-agent");

struct Fleet {
    server: RunningServer,
    dir: PathBuf,
    owner: WalletAddress,
}

fn machine_file(dir: &Path, name: &str, gpu: &str, count: usize, gpu_percent: u8) -> PathBuf {
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
    async fn start(database_url: String) -> Fleet {
        let mut config = Config::for_database(&database_url).unwrap();
        config.fleet.heartbeat_interval_secs = 1;
        config.fleet.down_after_secs = 3;
        config.fleet.speed_test_bytes = 256 * 1024;
        config.fleet.gpu_challenge_size = 128;
        config.flush_interval = Duration::from_secs(1);
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
    async fn add_device(&self, name: &str) -> Vec<String> {
        let ticket = self
            .server
            .platform
            .worker
            .add_device(
                &self.owner,
                NewDevice {
                    name: name.into(),
                    os: OperatingSystem::Linux,
                    kind: DeviceKind::Gpu,
                    country: "FI".into(),
                },
                platform::now(),
            )
            .await
            .unwrap();
        let words: Vec<String> = ticket
            .command
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(words[0], "gpu-commons-agent");
        words[1..].to_vec()
    }

    fn agent(&self, name: &str, args: &[String], machine: &Path) -> Child {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        Command::new(AGENT)
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

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    async fn detail(&self, device_id: &str) -> DeviceDetail {
        self.server
            .platform
            .worker
            .device_detail(&self.owner, device_id, platform::now())
            .await
            .unwrap()
    }

    /// Polls the device until `done` holds, failing with the agent's log after `secs`.
    async fn wait_for(
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

    async fn device_id_of(&self, name: &str) -> String {
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

    async fn stop(self) {
        self.server.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    tokio::time::timeout(Duration::from_secs(secs), child.wait())
        .await
        .expect("the agent did not stop")
        .unwrap()
}

async fn agents_register_verify_heartbeat_and_recover(fleet: Fleet) {
    let h100 = machine_file(&fleet.dir, "h100", "NVIDIA H100 80GB HBM3", 2, 0);
    let rtx = machine_file(&fleet.dir, "rtx", "NVIDIA GeForce RTX 4090", 1, 0);
    let odd = machine_file(&fleet.dir, "odd", "Matrox G200", 1, 0);

    let h100_args = fleet.add_device("h100").await;
    let mut h100_agent = fleet.agent("h100", &h100_args, &h100);
    let rtx_args = fleet.add_device("rtx").await;
    let _rtx_agent = fleet.agent("rtx", &rtx_args, &rtx);
    let odd_args = fleet.add_device("odd").await;
    let _odd_agent = fleet.agent("odd", &odd_args, &odd);

    // The same token a second time, from another machine: refused with a clear message.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut reuse = fleet.agent("reuse", &h100_args, &h100);
    assert_eq!(wait_exit(&mut reuse, 20).await.code(), Some(3));
    assert!(
        fleet.log("reuse").contains("already used"),
        "{}",
        fleet.log("reuse")
    );

    let h100_id = fleet.device_id_of("h100").await;
    let verified = fleet
        .wait_for("h100", &h100_id, 60, "verified", |d| {
            d.summary.status == DeviceStatus::Idle && d.summary.verified
        })
        .await;
    assert!(verified.summary.simulated);
    assert_eq!(verified.summary.gpu_model.as_deref(), Some("H100 80GB SXM"));
    assert_eq!(verified.verifications[0].outcome.as_deref(), Some("passed"));
    assert_eq!(verified.verifications[0].products, 2);
    let measured = fleet
        .wait_for("h100", &h100_id, 20, "measured", |d| {
            d.download_mb_per_s.is_some()
        })
        .await;
    assert!(measured.upload_mb_per_s.unwrap() >= 0);

    let rtx_id = fleet.device_id_of("rtx").await;
    fleet
        .wait_for("rtx", &rtx_id, 60, "verified", |d| d.summary.verified)
        .await;
    let odd_id = fleet.device_id_of("odd").await;
    let odd = fleet
        .wait_for("odd", &odd_id, 20, "unsupported", |d| {
            d.summary.status == DeviceStatus::Unsupported
        })
        .await;
    assert!(odd.status_reason.contains("Matrox G200"));

    // Heartbeats show on the device page (merged in memory, written in batches later).
    fleet
        .wait_for("h100", &h100_id, 10, "heartbeating", |d| {
            d.summary
                .last_heartbeat_at
                .is_some_and(|t| t.0 > verified.created_at.0)
        })
        .await;

    // Killed: down within the window. Restarted from its credentials file: back, no token.
    h100_agent.kill().await.unwrap();
    fleet
        .wait_for("h100", &h100_id, 15, "down", |d| {
            d.summary.status == DeviceStatus::Down
        })
        .await;
    let mut restarted = fleet.agent(
        "h100",
        &["--server".into(), "http://127.0.0.1:9".into()],
        &h100,
    );
    let back = fleet
        .wait_for("h100", &h100_id, 20, "idle again", |d| {
            d.summary.status == DeviceStatus::Idle
        })
        .await;
    assert_eq!(back.status_reason, "heartbeats resumed");

    // Pause and resume from the Worker tab; the agent keeps running through both.
    let now = platform::now();
    fleet
        .server
        .platform
        .worker
        .pause(&fleet.owner, &h100_id, now)
        .await
        .unwrap();
    fleet
        .wait_for("h100", &h100_id, 10, "paused", |d| {
            d.summary.status == DeviceStatus::Paused
        })
        .await;
    fleet
        .server
        .platform
        .worker
        .resume(&fleet.owner, &h100_id, platform::now())
        .await
        .unwrap();
    fleet
        .wait_for("h100", &h100_id, 10, "idle after resume", |d| {
            d.summary.status == DeviceStatus::Idle
        })
        .await;

    // A revoked credential stops the agent with the reason.
    fleet
        .server
        .platform
        .worker
        .revoke_credential(&fleet.owner, &h100_id, platform::now())
        .await
        .unwrap();
    assert_eq!(wait_exit(&mut restarted, 15).await.code(), Some(3));
    assert!(
        fleet.log("h100").contains("revoked"),
        "{}",
        fleet.log("h100")
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_agents_register_verify_heartbeat_and_recover() {
    let fleet = Fleet::start(platform::testing::fresh_sqlite_url()).await;
    agents_register_verify_heartbeat_and_recover(fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_agents_register_verify_heartbeat_and_recover() {
    let Some(url) = platform::testing::fresh_postgres_url().await else {
        return;
    };
    agents_register_verify_heartbeat_and_recover(Fleet::start(url).await).await;
}

#[tokio::test]
async fn an_unregistered_agent_without_a_token_says_what_to_do() {
    let dir = std::env::temp_dir().join(format!("gc-agent-none-{}", std::process::id()));
    let output = Command::new(AGENT)
        .arg("--credentials")
        .arg(dir.join("missing.json"))
        .arg("--simulate")
        .arg(machine_file_in(&dir))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not registered yet"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

fn machine_file_in(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    machine_file(dir, "cpu", "NVIDIA GeForce RTX 4090", 1, 0)
}
