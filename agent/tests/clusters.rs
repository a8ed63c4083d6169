//! Clusters on real agents: the real server hires devices run by the real agent binary, every
//! agent runs the renter's command for real, the cluster runs, is extended, loses a device when
//! its agent is killed (refund of the down time, a spare device takes its place and runs the
//! command too) and is terminated with a refund, its commands stopped and its devices freed.
//! The server sets the default 10 s heartbeat interval: agents learn of new work from their
//! long poll, not their next heartbeat. Runs on SQLite and, where available, PostgreSQL.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use domain::cluster::{
    ClusterDetail, ClusterKind, ClusterRole, ClusterStatus, DeployRequest, DurationUnit,
    ExtendRequest, PaymentMethod, Purpose, SecurityCompliance, Workload,
};
use domain::fleet::DeviceStatus;
use domain::ledger::Account;
use domain::money::MicroUsd;
use ed25519_dalek::{Signer, SigningKey};
use support::{machine_file, Fleet};

/// Signs a new wallet in and credits its account with `dollars`; returns the account id.
async fn funded_renter(fleet: &Fleet, dollars: i64) -> i64 {
    let key = SigningKey::from_bytes(&[7; 32]);
    let address =
        domain::wallet::WalletAddress::from_public_key(&key.verifying_key().to_bytes()).to_string();
    let platform = &fleet.server.platform;
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
    let amount = MicroUsd::from_micros(dollars * 1_000_000);
    platform
        .ledger
        .operator_credit(
            signed_in.user_id,
            domain::money::Asset::Usdc,
            amount.micros(),
            "test-grant",
            "test grant",
            platform::now(),
        )
        .await
        .unwrap();
    signed_in.user_id
}

/// A shell command that marks the file `ran-<device>` with the device's role and an env value,
/// runs until stopped, and marks `stopped-<device>` when the agent stops it. `pid-<device>`
/// lets the test end a command whose agent it killed.
fn marking_command(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        "trap 'echo stopped > {dir}/stopped-$GC_DEVICE_ID; exit 0' TERM; \
         echo $$ > {dir}/pid-$GC_DEVICE_ID; \
         echo \"$GC_ROLE $GREETING\" > {dir}/ran-$GC_DEVICE_ID; \
         while true; do sleep 0.2; done"
    )
}

async fn wait_for_cluster(
    fleet: &Fleet,
    renter: i64,
    id: &str,
    secs: u64,
    what: &str,
    done: impl Fn(&ClusterDetail) -> bool,
) -> ClusterDetail {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let detail = fleet
            .server
            .platform
            .provisioning
            .cluster(renter, id, platform::now())
            .await
            .unwrap();
        if done(&detail) {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster never became {what}: {:?}\ntimeline: {:#?}",
            detail.summary.status,
            detail.events
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deploys `request` for `renter` (idempotency key `key`) and waits until it runs.
async fn deploy_running(
    fleet: &Fleet,
    renter: i64,
    request: &DeployRequest,
    key: &str,
) -> ClusterDetail {
    let cluster = fleet
        .server
        .platform
        .provisioning
        .deploy(renter, request, Some(key), platform::now())
        .await
        .unwrap();
    wait_for_cluster(fleet, renter, &cluster.id, 20, "running", |d| {
        d.summary.status == ClusterStatus::Running
    })
    .await
}

/// Ends the commands the agents started when the test ends, passed or not: a killed agent
/// cannot stop what it started.
struct Commands(PathBuf);

impl Drop for Commands {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("pid-") {
                let pid = read(&entry.path());
                let _ = std::process::Command::new("kill")
                    .arg(pid.trim())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

/// The default heartbeat interval (10 s), so starting a cluster cannot lean on heartbeats.
fn production_pace(config: &mut server::Config) {
    config.fleet.heartbeat_interval_secs = 10;
    config.fleet.down_after_secs = 20;
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn clusters_run_on_real_agents(fleet: Fleet) {
    // Three one-GPU H100 machines: two to hire, one spare.
    let commands = Commands(fleet.dir.clone());
    let names = ["a", "b", "spare"];
    let mut agents = BTreeMap::new();
    for name in names {
        let machine = machine_file(&fleet.dir, name, "NVIDIA H100 80GB HBM3", 1, 0);
        let args = fleet.add_device(name).await;
        agents.insert(name, fleet.agent(name, &args, &machine));
    }
    let mut ids = BTreeMap::new();
    for name in names {
        let id = fleet.wait_registered(name, 30).await;
        fleet
            .wait_for(name, &id, 60, "ready for hire", |d| {
                d.summary.readiness().is_ok()
            })
            .await;
        ids.insert(id, name);
    }
    // Park the spare so the deploy takes the other two; it comes back for the replacement.
    let spare = ids.iter().find(|(_, n)| **n == "spare").unwrap().0.clone();
    let worker = &fleet.server.platform.worker;
    worker
        .pause(&fleet.owner, &spare, platform::now())
        .await
        .unwrap();

    let renter = funded_renter(&fleet, 1_000).await;
    let request = DeployRequest {
        name: "real-work".into(),
        kind: ClusterKind::BareMetal,
        purpose: Purpose::General,
        hardware: "H100 80GB SXM".into(),
        quantity: 2,
        countries: vec!["FI".into()],
        min_tier: None,
        compliance: SecurityCompliance::E2eEncrypted,
        duration_unit: DurationUnit::Hourly,
        duration_count: 1,
        payment: PaymentMethod::Usdc,
        workload: Workload {
            command: marking_command(&fleet.dir),
            env: [("GREETING".to_owned(), "hello".to_owned())].into(),
            ..Workload::default()
        },
    };
    let provisioning = &fleet.server.platform.provisioning;
    let asked = Instant::now();
    let cluster = provisioning
        .deploy(renter, &request, Some("deploy-1"), platform::now())
        .await
        .unwrap();
    let running = wait_for_cluster(&fleet, renter, &cluster.id, 20, "running", |d| {
        d.summary.status == ClusterStatus::Running
    })
    .await;
    // The agents heartbeat every 10 s; they learn of the cluster from their long poll at once.
    let took = asked.elapsed();
    println!("deploy → running on 2 agents: {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "the agents waited for a heartbeat: {took:?}"
    );
    let hired: Vec<String> = running
        .members
        .iter()
        .map(|m| m.device_id.clone())
        .collect();
    assert_eq!(hired.len(), 2);
    assert!(!hired.contains(&spare));
    for device in &hired {
        assert_eq!(
            read(&fleet.dir.join(format!("ran-{device}"))).trim(),
            "worker hello",
            "the agent of {device} ran the command with the cluster's env"
        );
    }

    // An hour more, on the same devices.
    let hour = ExtendRequest {
        duration_unit: DurationUnit::Hourly,
        duration_count: 1,
    };
    let extended = provisioning
        .extend(renter, &cluster.id, &hour, Some("more"), platform::now())
        .await
        .unwrap();
    assert_eq!(extended.hours, 2);
    assert_eq!(
        extended.ends_at,
        running.summary.ends_at.map(|t| t + 3_600_000)
    );

    // One agent dies: its device goes down, the spare (resumed) replaces it and runs the
    // command; the down time comes back to the renter.
    worker
        .resume(&fleet.owner, &spare, platform::now())
        .await
        .unwrap();
    let victim = hired[0].clone();
    agents.get_mut(ids[&victim]).unwrap().kill().await.unwrap();
    let replaced = wait_for_cluster(&fleet, renter, &cluster.id, 45, "repaired", |d| {
        d.members
            .iter()
            .any(|m| m.device_id == spare && m.left_at.is_none() && m.workload_state == "running")
    })
    .await;
    assert_eq!(replaced.summary.status, ClusterStatus::Running);
    let lost = replaced
        .members
        .iter()
        .find(|m| m.device_id == victim)
        .unwrap();
    assert!(lost.left_at.is_some());
    assert!(
        replaced
            .events
            .iter()
            .any(|e| e.detail.contains(&format!("device {victim} lost"))
                && e.detail.contains(&format!("replaced by {spare}"))),
        "{:#?}",
        replaced.events
    );
    assert!(replaced.summary.charged > MicroUsd::ZERO);
    assert_eq!(
        read(&fleet.dir.join(format!("ran-{spare}"))).trim(),
        "worker hello"
    );

    // Terminated: the commands are stopped, the devices free again, the unused time back.
    let before = fleet
        .server
        .platform
        .ledger
        .balance(&Account::UserAvailable(renter))
        .await
        .unwrap();
    let ended = provisioning
        .terminate(renter, &cluster.id, platform::now())
        .await
        .unwrap();
    assert_eq!(ended.status, ClusterStatus::Terminated);
    let after = fleet
        .server
        .platform
        .ledger
        .balance(&Account::UserAvailable(renter))
        .await
        .unwrap();
    assert!(
        after > before,
        "terminating returned nothing: {before} → {after}"
    );
    let survivor = hired[1].clone();
    for device in [&survivor, &spare] {
        let name = ids[device];
        fleet
            .wait_for(name, device, 15, "idle after the cluster", |d| {
                d.summary.status == DeviceStatus::Idle
            })
            .await;
        let stopped = fleet.dir.join(format!("stopped-{device}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while read(&stopped).trim() != "stopped" {
            assert!(
                Instant::now() < deadline,
                "the agent of {device} never stopped its command:\n{}",
                fleet.log(name)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        fleet.server.platform.ledger.audit().await.unwrap(),
        Vec::<String>::new(),
        "the ledger balances"
    );
    drop(agents);
    drop(commands);
    fleet.stop().await;
}

/// Writes `script` as the executable `program` in `dir`/`folder` and returns that folder, to
/// put first on an agent's PATH: stand-ins for tools not installed here.
fn stand_in(dir: &Path, folder: &str, program: &str, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join(folder);
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join(program);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Ray's CLI: `ray` records the role, head address and arguments it was started with, then
/// runs until stopped.
fn stand_in_ray(dir: &Path) -> PathBuf {
    let d = dir.display();
    stand_in(
        dir,
        "ray-bin",
        "ray",
        &format!(
            "#!/bin/sh\ntrap 'exit 0' TERM\necho $$ > {d}/pid-$GC_DEVICE_ID\n\
             echo \"$GC_ROLE ${{GC_HEAD_ADDRESS:--}} $*\" > {d}/ray-$GC_DEVICE_ID\n\
             while true; do sleep 0.2; done\n"
        ),
    )
}

/// JupyterLab's CLI, beside `ray`: records its arguments, then runs until stopped and records
/// that it was.
fn stand_in_jupyter(dir: &Path) -> PathBuf {
    let d = dir.display();
    stand_in(
        dir,
        "ray-bin",
        "jupyter",
        &format!(
            "#!/bin/sh\ntrap 'echo stopped > {d}/jupyter-stopped-$GC_DEVICE_ID; exit 0' TERM\n\
             echo $$ > {d}/pid-jupyter-$GC_DEVICE_ID\n\
             echo \"$*\" > {d}/jupyter-$GC_DEVICE_ID\n\
             while true; do sleep 0.2; done\n"
        ),
    )
}

/// Docker's CLI: `docker run --rm --name NAME --env-file FILE …` records its arguments, its
/// own environment and the env file under the container's name, and runs until stopped;
/// `docker stop NAME` records the name.
fn stand_in_docker(dir: &Path) -> PathBuf {
    let d = dir.display();
    stand_in(
        dir,
        "docker-bin",
        "docker",
        &format!(
            "#!/bin/sh\n\
             if [ \"$1\" = stop ]; then echo stopped > {d}/docker-stop-$2; exit 0; fi\n\
             trap 'exit 0' TERM\necho $$ > {d}/pid-$4\n\
             echo \"$*\" > {d}/docker-run-$4\n\
             env > {d}/docker-env-$4\n\
             cp \"$6\" {d}/docker-envfile-$4\n\
             while true; do sleep 0.2; done\n"
        ),
    )
}

/// Adds a one-H100 device called `name`, starts its agent (with `bin` first on its PATH) and
/// waits until the device can be hired. Returns the agent and the device id.
async fn ready_h100(
    fleet: &Fleet,
    name: &str,
    bin: Option<&Path>,
) -> (tokio::process::Child, String) {
    let machine = machine_file(&fleet.dir, name, "NVIDIA H100 80GB HBM3", 1, 0);
    let args = fleet.add_device(name).await;
    let agent = fleet.agent_with_path(name, &args, &machine, bin);
    let device = fleet.wait_registered(name, 30).await;
    fleet
        .wait_for(name, &device, 60, "ready for hire", |d| {
            d.summary.readiness().is_ok()
        })
        .await;
    (agent, device)
}

/// An hour of `quantity` H100s anywhere, paid in USDC.
fn h100_request(name: &str, kind: ClusterKind, quantity: u32, workload: Workload) -> DeployRequest {
    DeployRequest {
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

/// A container cluster: the agent runs the image with the cluster's port and command under a
/// name of the cluster's, gives the env to the container alone (an env file, never the engine
/// CLI's own environment or command line), ends the engine's options before the image, and
/// stops the container and removes the env file when the cluster ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_clusters_run_their_image_and_stop_it() {
    let fleet = Fleet::start(platform::testing::fresh_sqlite_url()).await;
    let commands = Commands(fleet.dir.clone());
    let bin = stand_in_docker(&fleet.dir);
    let (_agent, device) = ready_h100(&fleet, "c", Some(&bin)).await;
    let renter = funded_renter(&fleet, 100).await;
    let workload = Workload {
        image: "ghcr.io/example/server:1.2".into(),
        command: "python serve.py".into(),
        port: Some(8000),
        env: [("MODEL".to_owned(), "llama".to_owned())].into(),
    };
    let request = h100_request("served", ClusterKind::Container, 1, workload);
    let provisioning = &fleet.server.platform.provisioning;
    let running = deploy_running(&fleet, renter, &request, "c-1").await;
    let cluster = &running.summary;
    let name = format!("gc-{}", cluster.id);
    let args = read(&fleet.dir.join(format!("docker-run-{name}")));
    let env_file = args
        .split_whitespace()
        .nth(5)
        .expect("the env file follows --env-file")
        .to_owned();
    assert_eq!(
        args.trim(),
        format!("run --rm --name {name} --env-file {env_file} -p 8000:8000 -- ghcr.io/example/server:1.2 sh -c python serve.py")
    );
    let given = read(&fleet.dir.join(format!("docker-envfile-{name}")));
    for line in [
        "MODEL=llama".to_owned(),
        format!("GC_CLUSTER_ID={}", cluster.id),
        format!("GC_DEVICE_ID={device}"),
        "GC_ROLE=worker".to_owned(),
    ] {
        assert!(given.lines().any(|l| l == line), "{line} in {given}");
    }
    let engine_env = read(&fleet.dir.join(format!("docker-env-{name}")));
    assert!(
        !engine_env
            .lines()
            .any(|l| l.starts_with("MODEL=") || l.starts_with("GC_")),
        "the engine CLI got the cluster's env:\n{engine_env}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&env_file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the env file is the agent's alone: {mode:o}"
        );
    }
    provisioning
        .terminate(renter, &cluster.id, platform::now())
        .await
        .unwrap();
    let stopped = fleet.dir.join(format!("docker-stop-{name}"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while read(&stopped).trim() != "stopped" {
        assert!(
            Instant::now() < deadline,
            "the agent never stopped the container:\n{}",
            fleet.log("c")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !Path::new(&env_file).exists(),
        "the env file is removed with the container"
    );
    drop(commands);
    fleet.stop().await;
}

/// The demo provider's devices once `count` of them are ready for hire; their ids.
async fn demo_devices_ready(fleet: &Fleet, count: usize, secs: u64) -> Vec<String> {
    let provider = server::demo_agents::demo_provider();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let devices = fleet
            .server
            .platform
            .worker
            .devices_of(&provider, platform::now())
            .await
            .unwrap()
            .devices;
        if devices.len() == count && devices.iter().all(|d| d.readiness().is_ok()) {
            assert!(devices.iter().all(|d| d.simulated), "{devices:?}");
            return devices.into_iter().map(|d| d.id).collect();
        }
        assert!(
            Instant::now() < deadline,
            "the demo agents' devices never became ready: {devices:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fresh demo network can be rented: the server's demo agents (the real agent binary with
/// simulated GPUs) register, pass verification and run a renter's cluster, while the seeded
/// fleet without agents is never hired; a restart resumes them as the same devices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_network_runs_clusters_on_its_demo_agents() {
    let url = platform::testing::fresh_sqlite_url();
    let agents_dir = std::env::temp_dir().join(format!("gc-demo-agents-{}", std::process::id()));
    let demo = |config: &mut server::Config| {
        config.demo_devices = 20;
        config.demo_agents = server::demo_agents::DemoAgentSettings {
            count: 2,
            binary: PathBuf::from(support::AGENT),
            dir: agents_dir.clone(),
        };
    };
    let fleet = Fleet::start_with(url.clone(), demo).await;
    let commands = Commands(fleet.dir.clone());
    let demo_devices = demo_devices_ready(&fleet, 2, 90).await;
    let renter = funded_renter(&fleet, 500).await;
    // The two demo H100 machines have 8 GPUs each.
    let workload = Workload {
        command: marking_command(&fleet.dir),
        ..Workload::default()
    };
    let request = h100_request("on-the-demo", ClusterKind::BareMetal, 16, workload);
    let running = deploy_running(&fleet, renter, &request, "demo-1").await;
    let mut hired: Vec<String> = running
        .members
        .iter()
        .map(|m| m.device_id.clone())
        .collect();
    hired.sort();
    let mut expected = demo_devices.clone();
    expected.sort();
    assert_eq!(hired, expected);
    for device in &hired {
        assert_eq!(
            read(&fleet.dir.join(format!("ran-{device}"))).trim(),
            "worker",
            "the demo agent of {device} ran the command"
        );
    }
    let provisioning = &fleet.server.platform.provisioning;
    provisioning
        .terminate(renter, &running.summary.id, platform::now())
        .await
        .unwrap();
    fleet.server.stop().await;
    drop(commands);
    let _ = std::fs::remove_dir_all(&fleet.dir);

    let fleet = Fleet::start_with(url, demo).await;
    assert_eq!(
        demo_devices_ready(&fleet, 2, 90).await,
        demo_devices,
        "resumed as the same devices, none registered anew"
    );
    fleet.stop().await;
    let _ = std::fs::remove_dir_all(&agents_dir);
}

/// A Ray cluster without a command: the head's agent runs `ray start --head`, the worker's
/// joins it at the head's address as the server saw it, and the console shows that address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ray_workers_join_the_head_at_its_address() {
    let fleet = Fleet::start(platform::testing::fresh_sqlite_url()).await;
    let commands = Commands(fleet.dir.clone());
    let bin = stand_in_ray(&fleet.dir);
    stand_in_jupyter(&fleet.dir);
    let agents = [
        ready_h100(&fleet, "r1", Some(&bin)).await,
        ready_h100(&fleet, "r2", Some(&bin)).await,
    ];
    let renter = funded_renter(&fleet, 100).await;
    let request = h100_request("ray-on-two", ClusterKind::Ray, 2, Workload::default());
    let provisioning = &fleet.server.platform.provisioning;
    let running = deploy_running(&fleet, renter, &request, "ray-1").await;
    let cluster = &running.summary;
    assert_eq!(running.members.len(), 2);
    for member in &running.members {
        assert_eq!(member.address.as_deref(), Some("127.0.0.1"), "{member:?}");
        let started = read(&fleet.dir.join(format!("ray-{}", member.device_id)));
        let expected = match member.role {
            ClusterRole::Head => "head - start --head --port 6379 --dashboard-host 0.0.0.0 --block",
            ClusterRole::Worker => "worker 127.0.0.1 start --address=127.0.0.1:6379 --block",
        };
        assert_eq!(started.trim(), expected, "{member:?}");
    }
    // The head runs JupyterLab with the token only the renter is shown; the worker none.
    let token = running
        .notebook_token
        .clone()
        .expect("a Ray cluster has a notebook token");
    let head = running
        .members
        .iter()
        .find(|m| m.role == ClusterRole::Head)
        .unwrap();
    let worker = running
        .members
        .iter()
        .find(|m| m.role == ClusterRole::Worker)
        .unwrap();
    let started = fleet.dir.join(format!("jupyter-{}", head.device_id));
    let deadline = Instant::now() + Duration::from_secs(15);
    while read(&started).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the head never started JupyterLab"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        read(&started).trim(),
        format!("lab --ip=0.0.0.0 --port=8888 --no-browser --allow-root --ServerApp.token={token}")
    );
    assert!(!fleet
        .dir
        .join(format!("jupyter-{}", worker.device_id))
        .exists());
    assert!(
        running
            .events
            .iter()
            .any(|e| e.detail.contains("JupyterLab on port 8888")),
        "{:?}",
        running.events
    );
    provisioning
        .terminate(renter, &cluster.id, platform::now())
        .await
        .unwrap();
    let stopped = fleet
        .dir
        .join(format!("jupyter-stopped-{}", head.device_id));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !stopped.exists() {
        assert!(
            Instant::now() < deadline,
            "JupyterLab was not stopped with the cluster"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(agents);
    drop(commands);
    fleet.stop().await;
}

/// A killed agent cannot stop the command it started; restarted, it stops that one before it
/// starts the cluster's command again, so the command never runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_stops_what_it_left_running_when_killed() {
    let fleet = Fleet::start_with(platform::testing::fresh_sqlite_url(), production_pace).await;
    let commands = Commands(fleet.dir.clone());
    let machine = machine_file(&fleet.dir, "k", "NVIDIA H100 80GB HBM3", 1, 0);
    let args = fleet.add_device("k").await;
    let mut agent = fleet.agent("k", &args, &machine);
    let device = fleet.wait_registered("k", 30).await;
    fleet
        .wait_for("k", &device, 60, "ready for hire", |d| {
            d.summary.readiness().is_ok()
        })
        .await;
    let renter = funded_renter(&fleet, 100).await;
    let workload = Workload {
        command: marking_command(&fleet.dir),
        ..Workload::default()
    };
    let request = h100_request("survives-restarts", ClusterKind::BareMetal, 1, workload);
    let running = deploy_running(&fleet, renter, &request, "k-1").await;
    let cluster = &running.summary;
    let pid_file = fleet.dir.join(format!("pid-{device}"));
    let first = read(&pid_file).trim().to_owned();
    assert!(!first.is_empty(), "the command wrote its pid");

    agent.kill().await.unwrap();
    let alive = |pid: &str| std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(alive(&first), "a killed agent leaves its command running");
    let _restarted = fleet.agent("k", &args, &machine);
    let stopped = fleet.dir.join(format!("stopped-{device}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = read(&pid_file).trim().to_owned();
        if read(&stopped).trim() == "stopped" && !now.is_empty() && now != first {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted agent did not replace the command it left running:\n{}",
            fleet.log("k")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fleet.log("k").contains(&format!(
        "stopped process group {first} of cluster {}",
        cluster.id
    )));
    let detail = wait_for_cluster(&fleet, renter, &cluster.id, 10, "running again", |d| {
        d.members[0].workload_state == "running"
    })
    .await;
    assert_eq!(detail.summary.status, ClusterStatus::Running);
    drop(commands);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_clusters_run_on_real_agents() {
    let fleet = Fleet::start_with(platform::testing::fresh_sqlite_url(), production_pace).await;
    clusters_run_on_real_agents(fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_clusters_run_on_real_agents() {
    let Some(url) = platform::testing::fresh_postgres_url().await else {
        return;
    };
    clusters_run_on_real_agents(Fleet::start_with(url, production_pace).await).await;
}

/// Deploy → every agent running, for an 8-device cluster of real agents on loopback at the
/// default 10 s heartbeat interval, `ROUNDS` times (each cluster terminated before the next).
/// A measurement, not a check: run it with
/// `cargo test --release -p agent --test clusters -- --ignored --nocapture deploy_latency`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: prints deploy-to-running latencies for docs/BENCHMARKS.md"]
async fn deploy_latency_of_an_8_device_cluster() {
    const ROUNDS: usize = 30;
    let fleet = Fleet::start_with(platform::testing::fresh_sqlite_url(), production_pace).await;
    let _commands = Commands(fleet.dir.clone());
    let mut agents = Vec::new();
    for n in 0..8 {
        let name = format!("node-{n}");
        let machine = machine_file(&fleet.dir, &name, "NVIDIA H100 80GB HBM3", 1, 0);
        let args = fleet.add_device(&name).await;
        agents.push(fleet.agent(&name, &args, &machine));
        let id = fleet.wait_registered(&name, 30).await;
        fleet
            .wait_for(&name, &id, 60, "ready for hire", |d| {
                d.summary.readiness().is_ok()
            })
            .await;
    }
    let renter = funded_renter(&fleet, 10_000).await;
    let provisioning = &fleet.server.platform.provisioning;
    let mut latencies = Vec::new();
    for round in 0..ROUNDS {
        let request = DeployRequest {
            name: format!("round-{round}"),
            kind: ClusterKind::Ray,
            purpose: Purpose::Train,
            hardware: "H100 80GB SXM".into(),
            quantity: 8,
            countries: Vec::new(),
            min_tier: None,
            compliance: SecurityCompliance::E2eEncrypted,
            duration_unit: DurationUnit::Hourly,
            duration_count: 1,
            payment: PaymentMethod::Usdc,
            workload: Workload {
                command: "sleep 600".into(),
                ..Workload::default()
            },
        };
        let asked = Instant::now();
        let cluster = provisioning
            .deploy(renter, &request, None, platform::now())
            .await
            .unwrap();
        wait_for_cluster(&fleet, renter, &cluster.id, 30, "running", |d| {
            d.summary.status == ClusterStatus::Running
        })
        .await;
        latencies.push(asked.elapsed());
        provisioning
            .terminate(renter, &cluster.id, platform::now())
            .await
            .unwrap();
        // The devices are free again once the agents have stopped the workload.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "deploy → running, 8 devices, {ROUNDS} rounds: p50 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1]
    );
    drop(agents);
    fleet.stop().await;
}
