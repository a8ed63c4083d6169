//! The real agent binary against the real server on loopback: registration with a token (and
//! refusal of a reused one), proof-of-work verification, connectivity, heartbeats, going down
//! when killed and back when restarted, pause/resume, and a revoked credential stopping it.
//! Runs on SQLite and, where available, PostgreSQL.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use domain::fleet::DeviceStatus;
use support::{machine_file, wait_exit, Fleet, AGENT};
use tokio::process::Command;

async fn agents_register_verify_heartbeat_and_recover(fleet: Fleet) {
    let h100 = machine_file(&fleet.dir, "h100", "NVIDIA H100 80GB HBM3", 2, 0);
    let rtx = machine_file(&fleet.dir, "rtx", "NVIDIA GeForce RTX 4090", 1, 0);
    let odd = machine_file(&fleet.dir, "odd", "Matrox G200", 1, 0);

    let h100_args = fleet.add_device("h100").await;
    let mut h100_agent = fleet.agent("h100", &h100_args, &h100);
    // This one reads its token from a file, so it never shows on a command line.
    let rtx_args = token_in_a_file(&fleet.dir, fleet.add_device("rtx").await);
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
    assert_eq!(
        verified.verifications[0].outcome.map(|o| o.as_str()),
        Some("passed")
    );
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

/// The Worker tab's `--token TOKEN` as `--token-file FILE`.
fn token_in_a_file(dir: &Path, args: Vec<String>) -> Vec<String> {
    let at = args.iter().position(|a| a == "--token").unwrap();
    let file = dir.join("rtx.token");
    std::fs::write(&file, format!("{}\n", args[at + 1])).unwrap();
    let mut args = args;
    args[at] = "--token-file".into();
    args[at + 1] = file.display().to_string();
    args
}

fn machine_file_in(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    machine_file(dir, "cpu", "NVIDIA GeForce RTX 4090", 1, 0)
}
