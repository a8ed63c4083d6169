//! Clusters on real agents: the real server hires devices run by the real agent binary, every
//! agent runs the renter's command for real, the cluster runs, is extended, loses a device when
//! its agent is killed (refund of the down time, a spare device takes its place and runs the
//! command too) and is terminated with a refund, its commands stopped and its devices freed.
//! Commands run in the agent's real bubblewrap sandbox; what they print is read from the
//! workload logs the agent keeps.
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
use support::{h100_request, machine_file, Fleet};

/// Signs the test's renter wallet in and credits it with `dollars`; its account id.
async fn funded_renter(fleet: &Fleet, dollars: i64) -> i64 {
    support::funded_renter(fleet, 7, dollars).await
}

/// A shell command that prints the device's role and an env value, runs until stopped, and
/// prints `stopped` when the agent stops it.
const MARKING_COMMAND: &str = "trap 'echo stopped; exit 0' TERM; \
     echo \"ran $GC_ROLE $GREETING\"; \
     while true; do sleep 0.2; done";

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

/// The renter's available balance.
async fn balance_of(fleet: &Fleet, renter: i64) -> MicroUsd {
    fleet
        .server
        .platform
        .ledger
        .balance(&Account::UserAvailable(renter))
        .await
        .unwrap()
}

/// What the renter reads of the cluster's output: (device, line) pairs.
async fn provisioning_output(fleet: &Fleet, renter: i64, cluster: &str) -> Vec<(String, String)> {
    fleet
        .server
        .platform
        .output
        .read(renter, cluster, None, 0, 2_000)
        .await
        .unwrap()
        .lines
        .into_iter()
        .map(|l| (l.device_id, l.text))
        .collect()
}

/// The default heartbeat interval (10 s), so starting a cluster cannot lean on heartbeats.
fn production_pace(config: &mut server::Config) {
    config.fleet.heartbeat_interval_secs = 10;
    config.fleet.down_after_secs = 20;
}

async fn clusters_run_on_real_agents(fleet: Fleet) {
    // Three one-GPU H100 machines: two to hire, one spare.
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
            command: MARKING_COMMAND.into(),
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
        fleet
            .wait_for_output(ids[device], &cluster.id, "ran worker hello", 10)
            .await;
    }
    // The agents ship what the commands print; the renter reads it, device by device.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = provisioning_output(&fleet, renter, &cluster.id).await;
        let printed: Vec<&String> = hired
            .iter()
            .filter(|d| {
                output
                    .iter()
                    .any(|(device, text)| device == *d && text == "ran worker hello")
            })
            .collect();
        if printed.len() == hired.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renter reads only {output:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
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
    fleet
        .wait_for_output("spare", &cluster.id, "ran worker hello", 10)
        .await;

    // Terminated: the commands are stopped, the devices free again, the unused time back.
    let before = balance_of(&fleet, renter).await;
    let ended = provisioning
        .terminate(renter, &cluster.id, platform::now())
        .await
        .unwrap();
    assert_eq!(ended.status, ClusterStatus::Terminated);
    let after = balance_of(&fleet, renter).await;
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
        // The command's TERM trap ran: stopped gracefully, not killed.
        fleet
            .wait_for_output(name, &cluster.id, "\nstopped\n", 15)
            .await;
        // Printed after the cluster's end, it still reaches the renter.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !provisioning_output(&fleet, renter, &cluster.id)
            .await
            .iter()
            .any(|(d, text)| d == device && text == "stopped")
        {
            assert!(
                Instant::now() < deadline,
                "the last lines of {device} never shipped"
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

/// Ray's CLI: `ray` prints the role, head address and arguments it was started with, then
/// runs until stopped.
fn stand_in_ray(dir: &Path) -> PathBuf {
    stand_in(
        dir,
        "ray-bin",
        "ray",
        "#!/bin/sh\ntrap 'echo ray stopped; exit 0' TERM\n\
         echo \"ray: $GC_ROLE ${GC_HEAD_ADDRESS:--} $*\"\n\
         while true; do sleep 0.2; done\n",
    )
}

/// JupyterLab's CLI, beside `ray`: prints its arguments, then runs until stopped and prints
/// that it was.
fn stand_in_jupyter(dir: &Path) -> PathBuf {
    stand_in(
        dir,
        "ray-bin",
        "jupyter",
        "#!/bin/sh\ntrap 'echo jupyter stopped; exit 0' TERM\n\
         echo \"jupyter: $*\"\n\
         while true; do sleep 0.2; done\n",
    )
}

/// A one-H100 device called `name` ready for hire (see [`Fleet::start_h100`]): its agent and id.
async fn ready_h100(
    fleet: &Fleet,
    name: &str,
    bin: Option<&Path>,
) -> (tokio::process::Child, String) {
    let started = fleet.start_h100(name, bin).await;
    (started.agent, started.device)
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
    let demo_devices = demo_devices_ready(&fleet, 2, 90).await;
    let renter = funded_renter(&fleet, 500).await;
    // The two demo H100 machines have 8 GPUs each.
    let workload = Workload {
        command: MARKING_COMMAND.into(),
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
    // Each demo agent keeps its workload's log beside its credentials.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ran = (0..2)
            .filter(|n| {
                std::fs::read_to_string(
                    agents_dir
                        .join(format!("agent-{n}.logs"))
                        .join(format!("{}.log", running.summary.id)),
                )
                .is_ok_and(|log| log.contains("ran worker"))
            })
            .count();
        if ran == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ran} of 2 demo agents ran the command"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let provisioning = &fleet.server.platform.provisioning;
    provisioning
        .terminate(renter, &running.summary.id, platform::now())
        .await
        .unwrap();
    fleet.server.stop().await;
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

/// A Ray cluster without a command: the head's agent runs `ray start --head` with its
/// dashboard on the sandbox's loopback only, the worker's joins it at the head's address as the
/// server saw it, and the head's JupyterLab listens on loopback with the renter's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ray_workers_join_the_head_at_its_address_and_a_new_one_when_it_is_lost() {
    let fleet = Fleet::start(platform::testing::fresh_sqlite_url()).await;
    let bin = stand_in_ray(&fleet.dir);
    stand_in_jupyter(&fleet.dir);
    let agents = [
        ready_h100(&fleet, "r1", Some(&bin)).await,
        ready_h100(&fleet, "r2", Some(&bin)).await,
    ];
    let name_of = |device: &str| if device == agents[0].1 { "r1" } else { "r2" };
    let renter = funded_renter(&fleet, 100).await;
    let request = h100_request("ray-on-two", ClusterKind::Ray, 2, Workload::default());
    let provisioning = &fleet.server.platform.provisioning;
    let running = deploy_running(&fleet, renter, &request, "ray-1").await;
    let cluster = &running.summary;
    assert_eq!(running.members.len(), 2);
    for member in &running.members {
        assert_eq!(member.address.as_deref(), Some("127.0.0.1"), "{member:?}");
        let expected = match member.role {
            ClusterRole::Head => {
                "ray: head - start --head --port 6379 --dashboard-host 127.0.0.1 --block"
            }
            ClusterRole::Worker => "ray: worker 127.0.0.1 start --address=127.0.0.1:6379 --block",
        };
        fleet
            .wait_for_output(name_of(&member.device_id), &cluster.id, expected, 15)
            .await;
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
    let head_agent = name_of(&head.device_id);
    fleet
        .wait_for_output(
            head_agent,
            &cluster.id,
            &format!(
                "jupyter: lab --ip=127.0.0.1 --port=8888 --no-browser --ServerApp.token={token}"
            ),
            15,
        )
        .await;
    assert!(!fleet
        .workload_log(name_of(&worker.device_id), &cluster.id)
        .contains("jupyter"));
    assert!(
        running
            .events
            .iter()
            .any(|e| e.detail.contains("JupyterLab on port 8888")),
        "{:?}",
        running.events
    );
    // The head is lost: a spare device replaces it as head, and the worker restarts to join
    // the new head.
    let (mut spare, spare_device) = ready_h100(&fleet, "r3", Some(&bin)).await;
    let worker_agent = name_of(&worker.device_id);
    let head_index = agents
        .iter()
        .position(|(_, d)| *d == head.device_id)
        .unwrap();
    let mut agents = agents;
    agents[head_index].0.start_kill().unwrap();
    wait_for_cluster(
        &fleet,
        renter,
        &cluster.id,
        30,
        "headed by the spare",
        |d| {
            d.members.iter().any(|m| {
                m.left_at.is_none() && m.role == ClusterRole::Head && m.device_id == spare_device
            })
        },
    )
    .await;
    fleet
        .wait_for_output(
            "r3",
            &cluster.id,
            "ray: head - start --head --port 6379 --dashboard-host 127.0.0.1 --block",
            15,
        )
        .await;
    let joined = "ray: worker 127.0.0.1 start --address=127.0.0.1:6379 --block";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = fleet.workload_log(worker_agent, &cluster.id);
        if log.matches(joined).count() == 2 {
            assert!(
                log.contains("ray stopped"),
                "the old worker stopped first:\n{log}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never rejoined:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    provisioning
        .terminate(renter, &cluster.id, platform::now())
        .await
        .unwrap();
    // Both stopped with the cluster, each asked to (not killed).
    fleet
        .wait_for_output("r3", &cluster.id, "jupyter stopped", 15)
        .await;
    fleet
        .wait_for_output("r3", &cluster.id, "ray stopped", 15)
        .await;
    let _ = spare.start_kill();
    drop(agents);
    fleet.stop().await;
}

/// A renter's command that fails as it starts is the renter's: the cluster fails saying so,
/// the renter reads what it printed, and the devices' time and the fees are not refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renters_failing_command_is_paid_for_not_refunded() {
    let fleet = Fleet::start(platform::testing::fresh_sqlite_url()).await;
    let (_agent, _device) = ready_h100(&fleet, "f", None).await;
    let renter = funded_renter(&fleet, 100).await;
    let workload = Workload {
        command: "echo 'no such dataset: /data/train' >&2; exit 3".into(),
        ..Workload::default()
    };
    let request = h100_request("fails-itself", ClusterKind::BareMetal, 1, workload);
    let cluster = fleet
        .server
        .platform
        .provisioning
        .deploy(renter, &request, None, platform::now())
        .await
        .unwrap();
    let failed = wait_for_cluster(&fleet, renter, &cluster.id, 20, "failed", |d| {
        d.summary.status == ClusterStatus::Failed
    })
    .await;
    let reason = &failed.summary.status_reason;
    assert!(
        reason.contains("the renter's workload failed")
            && reason.contains("exit status: 3")
            && reason.contains("no such dataset"),
        "{reason}"
    );
    let balance = balance_of(&fleet, renter).await;
    assert!(
        balance < MicroUsd::from_micros(100_000_000),
        "not refunded in full: {balance}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !provisioning_output(&fleet, renter, &cluster.id)
        .await
        .iter()
        .any(|(_, text)| text == "no such dataset: /data/train")
    {
        assert!(Instant::now() < deadline, "the renter never read the error");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet.stop().await;
}

/// A killed agent's sandbox dies with it, survivors included; restarted, the agent runs the
/// cluster's command again in a fresh sandbox, so the command never runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_workloads_die_with_it_and_a_restart_runs_them_again() {
    let fleet = Fleet::start_with(platform::testing::fresh_sqlite_url(), production_pace).await;
    let support::Started {
        mut agent,
        args,
        machine,
        ..
    } = fleet.start_h100("k", None).await;
    let renter = funded_renter(&fleet, 100).await;
    // A survivor that left the command's session and process group.
    let marker = 900_000 + std::process::id() % 10_000;
    let workload = Workload {
        command: format!("(setsid sleep {marker} &); echo ran; while true; do sleep 0.2; done"),
        ..Workload::default()
    };
    let request = h100_request("survives-restarts", ClusterKind::BareMetal, 1, workload);
    let running = deploy_running(&fleet, renter, &request, "k-1").await;
    let cluster = &running.summary;
    fleet.wait_for_output("k", &cluster.id, "ran", 10).await;
    assert!(
        support::processes_running(&["sleep", &marker.to_string()]) > 0,
        "the survivor runs"
    );

    agent.kill().await.unwrap();
    agent.wait().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while support::processes_running(&["sleep", &marker.to_string()]) > 0 {
        assert!(
            Instant::now() < deadline,
            "the sandbox outlived its killed agent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _restarted = fleet.agent("k", &args, &machine);
    let deadline = Instant::now() + Duration::from_secs(20);
    while fleet
        .workload_log("k", &cluster.id)
        .matches("\nran\n")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the restarted agent did not run the command again:\n{}",
            fleet.log("k")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let detail = wait_for_cluster(&fleet, renter, &cluster.id, 10, "running again", |d| {
        d.members[0].workload_state == "running"
    })
    .await;
    assert_eq!(detail.summary.status, ClusterStatus::Running);
    fleet.stop().await;
}

/// Asked to stop (SIGTERM, as its service manager does), the agent stops its workloads the
/// same way first (their TERM traps run), removes their work folders, and exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_agent_stops_its_workloads_first() {
    let fleet = Fleet::start(platform::testing::fresh_sqlite_url()).await;
    let (mut agent, device) = ready_h100(&fleet, "t", None).await;
    let renter = funded_renter(&fleet, 100).await;
    let workload = Workload {
        command: "trap 'echo asked to stop; exit 0' TERM; echo ran; \
                  while true; do sleep 0.2; done"
            .into(),
        ..Workload::default()
    };
    let request = h100_request("stopped-with-agent", ClusterKind::BareMetal, 1, workload);
    let running = deploy_running(&fleet, renter, &request, "t-1").await;
    let cluster = running.summary.id.clone();
    fleet.wait_for_output("t", &cluster, "ran", 10).await;
    let workdir = Path::new("/var/tmp/gpu-commons")
        .join(&device)
        .join(&cluster);
    assert!(
        workdir.is_dir(),
        "{} exists while it runs",
        workdir.display()
    );
    let pid = agent.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = support::wait_exit(&mut agent, 20).await;
    assert!(status.success(), "{status}:\n{}", fleet.log("t"));
    assert!(fleet
        .workload_log("t", &cluster)
        .contains("\nasked to stop\n"));
    assert!(!workdir.exists(), "the work folder is removed");
    assert!(fleet.log("t").contains("SIGTERM: stopping the workloads"));
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
            purpose: Purpose::Train,
            ..h100_request(
                &format!("round-{round}"),
                ClusterKind::Ray,
                8,
                Workload {
                    command: "sleep 600".into(),
                    ..Workload::default()
                },
            )
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
