//! The attacks a renter tried on providers' machines, replayed through the real server and the
//! real agent binary with the real tools (bubblewrap; Podman with an image imported from a
//! local busybox root file system, since no registry is reachable), and shown to fail:
//! escaping the end of a cluster with `setsid` and double forks, reading the agent's
//! credentials, reading another workload's environment through /proc, leaving a file for the
//! next renter, running as root with capabilities, and handing env to the engine's own CLI;
//! and, in a one-device cluster's own network, reaching the provider's loopback services or
//! listening on the provider's interfaces.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use domain::cluster::{ClusterDetail, ClusterKind, ClusterStatus, DeployRequest, Workload};
use support::{free_port, processes_running, Fleet};

/// Signs in the wallet of `seed` and credits it with $500; its account id.
async fn funded_renter(fleet: &Fleet, seed: u8) -> i64 {
    support::funded_renter(fleet, seed, 500).await
}

/// An hour of one H100, paid in USDC.
fn request(name: &str, kind: ClusterKind, workload: Workload) -> DeployRequest {
    support::h100_request(name, kind, 1, workload)
}

async fn cluster(fleet: &Fleet, renter: i64, id: &str) -> ClusterDetail {
    fleet
        .server
        .platform
        .provisioning
        .cluster(renter, id, platform::now())
        .await
        .unwrap()
}

async fn terminate(fleet: &Fleet, renter: i64, id: &str) {
    fleet
        .server
        .platform
        .provisioning
        .terminate(renter, id, platform::now())
        .await
        .unwrap();
}

/// Deploys one device's cluster for `renter` and waits until it runs; its id.
async fn deploy(fleet: &Fleet, renter: i64, request: &DeployRequest) -> String {
    let id = fleet
        .server
        .platform
        .provisioning
        .deploy(renter, request, None, platform::now())
        .await
        .unwrap()
        .id;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let detail = cluster(fleet, renter, &id).await;
        if detail.summary.status == ClusterStatus::Running {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "never running: {:#?}",
            detail.events
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The agent whose device `device` is, of the two named.
fn agent_of<'a>(device: &str, named: &[(&'a str, &str)]) -> &'a str {
    named
        .iter()
        .find(|(_, id)| *id == device)
        .map(|(name, _)| *name)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renters_command_cannot_escape_its_sandbox() {
    let fleet = Fleet::start(platform::testing::fresh_sqlite_url()).await;
    let (_a, device_a) = {
        let s = fleet.start_h100("a", None).await;
        (s.agent, s.device)
    };
    let (_b, device_b) = {
        let s = fleet.start_h100("b", None).await;
        (s.agent, s.device)
    };
    let named = [("a", device_a.as_str()), ("b", device_b.as_str())];
    let victim = funded_renter(&fleet, 11).await;
    let attacker = funded_renter(&fleet, 12).await;
    let worker = &fleet.server.platform.worker;
    let provisioning = &fleet.server.platform.provisioning;
    let secret = format!("hunter2-{}", std::process::id());
    let marker = (800_000 + std::process::id() % 10_000).to_string();

    // The victim's cluster on device a: a secret in its env, files in its folders, and
    // processes that leave its session (setsid) and its parent (a double fork).
    worker
        .pause(&fleet.owner, &device_b, platform::now())
        .await
        .unwrap();
    let victims = deploy(
        &fleet,
        victim,
        &request(
            "victim",
            ClusterKind::BareMetal,
            Workload {
                command: format!(
                    "echo mine > /work/left; echo mine > /tmp/left; \
                     (setsid sleep {marker} &); sh -c '(sleep {marker} &) &'; \
                     echo ready; while true; do sleep 0.2; done"
                ),
                env: [("SECRET".to_owned(), secret.clone())].into(),
                ..Workload::default()
            },
        ),
    )
    .await;
    fleet.wait_for_output("a", &victims, "ready", 10).await;
    assert_eq!(
        processes_running(&["sleep", &marker]),
        2,
        "both survivors run"
    );
    let workdir = Path::new("/var/tmp/gpu-commons")
        .join(&device_a)
        .join(&victims);
    assert!(workdir.join("left").exists());

    // The attacker's cluster on device b, beside it: the agents' credentials, the victim's
    // environment, the machine's processes and the homes are out of reach.
    worker
        .resume(&fleet.owner, &device_b, platform::now())
        .await
        .unwrap();
    let credentials_a = fleet.dir.join("a.json");
    let credentials_b = fleet.dir.join("b.json");
    // A service of the provider's on its loopback (a database, an admin page), and one on
    // every address (what the LAN sees), which the workload's outbound connections reach.
    let provider_local = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    provider_local.set_nonblocking(true).unwrap();
    let local_port = provider_local.local_addr().unwrap().port();
    let outward = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let outward_port = outward.local_addr().unwrap().port();
    let machine_ip = machine_address();
    let inside_port = free_port();
    let network_probe = format!(
        "import socket\n\
         def reach(host, port):\n    \
             try:\n        socket.create_connection((host, port), 3).close(); return 'open'\n    \
             except OSError: return 'closed'\n\
         print('loopback=' + reach('127.0.0.1', {local_port}), flush=True)\n\
         print('gateway=' + reach('10.0.2.2', {local_port}), flush=True)\n\
         print('outward=' + (reach('{outward_ip}', {outward_port}) if '{outward_ip}' else 'untested'), flush=True)\n\
         s = socket.socket(); s.bind(('0.0.0.0', {inside_port})); s.listen()\n\
         print('probed', flush=True)\n\
         while True: s.accept()[0].close()\n",
        outward_ip = machine_ip.map(|ip| ip.to_string()).unwrap_or_default(),
    );
    let probe = format!(
        "echo \"uid=$(id -u)\"; \
         cat {a} {b} 2>&1; \
         echo \"processes=$(ls /proc | grep -c '^[0-9]')\"; \
         cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c {secret}; \
         ls /root /home {dir} 2>&1; \
         cat /proc/self/status | grep -E '^(CapEff|NoNewPrivs)'; \
         exec python3 -c \"$PROBE\"",
        a = credentials_a.display(),
        b = credentials_b.display(),
        dir = fleet.dir.display(),
    );
    let attackers = deploy(
        &fleet,
        attacker,
        &request(
            "attacker",
            ClusterKind::BareMetal,
            Workload {
                command: probe,
                // Env values are one line: the script as one Python string literal.
                env: [("PROBE".to_owned(), format!("exec({network_probe:?})"))].into(),
                ..Workload::default()
            },
        ),
    )
    .await;
    let seen = fleet.wait_for_output("b", &attackers, "probed", 10).await;
    let credential = |path: &PathBuf| {
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        saved["credential"].as_str().unwrap().to_owned()
    };
    for path in [&credentials_a, &credentials_b] {
        assert!(
            !seen.contains(&credential(path)),
            "read the credential in {}:\n{seen}",
            path.display()
        );
    }
    assert!(seen.contains("uid=65534"), "{seen}");
    assert!(!seen.contains(&secret), "{seen}");
    assert!(
        seen.contains("\n0\n"),
        "no environ holds the secret: {seen}"
    );
    let processes: usize = seen
        .lines()
        .find_map(|l| l.strip_prefix("processes="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(processes <= 6, "sees {processes} processes:\n{seen}");
    assert!(seen.contains("CapEff:\t0000000000000000"), "{seen}");
    assert!(seen.contains("No such file or directory"), "{seen}");
    // Its own network: the provider's loopback is out of reach, directly and through the
    // gateway, while outbound connections work; what it listens on is not on the provider's
    // addresses (no port of its was declared, so none is forwarded).
    assert!(seen.contains("loopback=closed"), "{seen}");
    assert!(seen.contains("gateway=closed"), "{seen}");
    assert!(
        matches!(provider_local.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the provider's loopback service was reached"
    );
    match machine_ip {
        Some(ip) => {
            assert!(seen.contains("outward=open"), "{seen}");
            let listening = std::net::SocketAddr::new(ip, inside_port);
            assert!(
                std::net::TcpStream::connect_timeout(&listening, Duration::from_secs(2)).is_err(),
                "the workload listens on the provider's {listening}"
            );
        }
        None => eprintln!(
            "this machine has no address but its loopback: outbound connections and \
             listening on its interfaces were not tried"
        ),
    }
    let on_loopback = std::net::SocketAddr::from(([127, 0, 0, 1], inside_port));
    assert!(
        std::net::TcpStream::connect_timeout(&on_loopback, Duration::from_secs(2)).is_err(),
        "an undeclared port of the workload is on the provider's loopback"
    );
    drop(outward);

    // The victim's cluster ends: every process of it ends, survivors included, and its
    // folders go with it.
    provisioning
        .terminate(victim, &victims, platform::now())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while processes_running(&["sleep", &marker]) > 0 || workdir.exists() {
        assert!(
            Instant::now() < deadline,
            "{} survivors, folder left: {}",
            processes_running(&["sleep", &marker]),
            workdir.exists()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The next renter on device a (b is still the attacker's) finds nothing of the last one.
    let mut next_id = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while next_id.is_none() {
        // Device a frees once its agent reports the last workload gone.
        let attempt = fleet
            .server
            .platform
            .provisioning
            .deploy(
                attacker,
                &request(
                    "next",
                    ClusterKind::BareMetal,
                    Workload {
                        command: "cat /work/left /tmp/left 2>&1; ls -A /work /tmp; echo looked; \
                                  while true; do sleep 0.2; done"
                            .into(),
                        ..Workload::default()
                    },
                ),
                None,
                platform::now(),
            )
            .await;
        match attempt {
            Ok(c) => next_id = Some(c.id),
            Err(e) => {
                assert!(Instant::now() < deadline, "device a never freed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let next = next_id.unwrap();
    let members = cluster(&fleet, attacker, &next).await.members;
    let agent = agent_of(&members[0].device_id, &named);
    assert_eq!(agent, "a");
    let seen = fleet.wait_for_output(agent, &next, "looked", 20).await;
    assert!(!seen.contains("mine"), "the last renter's file:\n{seen}");
    assert!(seen.contains("No such file or directory"), "{seen}");
    fleet.stop().await;
}

/// This machine's address on the way to other machines (its default route's), if it has one
/// but its loopback; no packet is sent.
fn machine_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// A renter's memory hog stays inside the sandbox's control groups, which hold the device's
/// share of the machine (here one claiming 1 GB of RAM: 768 MiB after the reserve) and at most
/// 4,096 processes; the groups go with the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_is_held_to_the_devices_share_of_the_machine() {
    if !running_as_root() {
        // The test command runs as root in CI; control groups need it (or a delegation).
        panic!("this test needs root: the agent makes control groups for its sandboxes");
    }
    let fleet = Fleet::start(platform::testing::fresh_sqlite_url()).await;
    let machine = fleet.dir.join("small.toml");
    let description = std::fs::read_to_string(support::machine_file(
        &fleet.dir,
        "small",
        "NVIDIA H100 80GB HBM3",
        1,
        0,
    ))
    .unwrap()
    .replace("ram_gb = 512", "ram_gb = 1");
    std::fs::write(&machine, description).unwrap();
    let started = fleet.start_machine("small", machine, None).await;
    let renter = funded_renter(&fleet, 21).await;
    let hog = "python3 -c 'b = bytearray(1536 * 1024 * 1024); print(\"allocated\")'; \
               echo \"hog exit $?\"; echo done; while true; do sleep 0.2; done";
    let id = deploy(
        &fleet,
        renter,
        &request(
            "hog",
            ClusterKind::BareMetal,
            Workload {
                command: hog.into(),
                ..Workload::default()
            },
        ),
    )
    .await;
    let seen = fleet.wait_for_output("small", &id, "done", 30).await;
    assert!(!seen.contains("allocated"), "{seen}");
    assert!(seen.contains("hog exit 137"), "killed for memory: {seen}");
    let group = |controller: &str| {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join("gpu-commons")
            .join(&id)
    };
    let read = |path: PathBuf| std::fs::read_to_string(path).unwrap().trim().to_owned();
    assert_eq!(
        read(group("memory").join("memory.limit_in_bytes")),
        (768u64 * 1024 * 1024).to_string()
    );
    assert_eq!(read(group("pids").join("pids.max")), "4096");
    assert!(
        !read(group("pids").join("cgroup.procs")).is_empty(),
        "the workload's processes are in its group"
    );
    terminate(&fleet, renter, &id).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while group("pids").exists() {
        assert!(Instant::now() < deadline, "the cluster's groups stay");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(started);
    fleet.stop().await;
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

/// The busybox image the container tests run, imported into Podman from a root file system
/// made here (Debian's busybox-static); None, with the reason printed, where Podman cannot run.
fn busybox_image() -> Option<&'static str> {
    const IMAGE: &str = "localhost/gc-test-busybox:1";
    let podman_works = std::process::Command::new("podman")
        .args(["info", "--format", "{{.Host.OCIRuntime.Name}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    let busybox = Path::new("/usr/bin/busybox");
    if !podman_works || !busybox.exists() {
        let why = "Podman (podman info) or /usr/bin/busybox is missing: `cargo xtask test` installs them (Debian podman, runc, busybox-static)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI needs the container tests: {why}"
        );
        eprintln!("SKIPPED: the real container engine tests: {why}");
        return None;
    }
    let exists = std::process::Command::new("podman")
        .args(["image", "exists", IMAGE])
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        let root = std::env::temp_dir().join(format!("gc-busybox-{}", std::process::id()));
        let bin = root.join("rootfs").join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(busybox, bin.join("busybox")).unwrap();
        for applet in [
            "sh", "echo", "cat", "grep", "sleep", "env", "id", "ls", "tr",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let tar = root.join("rootfs.tar");
        let packed = std::process::Command::new("tar")
            .arg("-C")
            .arg(root.join("rootfs"))
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(packed.success());
        let imported = std::process::Command::new("podman")
            .arg("import")
            .arg(&tar)
            .arg(IMAGE)
            .output()
            .unwrap();
        assert!(
            imported.status.success(),
            "podman import: {}",
            String::from_utf8_lossy(&imported.stderr)
        );
        let _ = std::fs::remove_dir_all(&root);
    }
    Some(IMAGE)
}

/// The command line and environment of the running `podman run` of container `name`.
fn engine_process(name: &str) -> Option<(String, String)> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let raw = std::fs::read(e.path().join("cmdline")).ok()?;
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if !line.starts_with("podman run ") || !line.contains(&format!("--name {name} ")) {
            return None;
        }
        let env = std::fs::read(e.path().join("environ")).ok()?;
        Some((line, String::from_utf8_lossy(&env).replace('\0', "\n")))
    })
}

/// A container cluster on real Podman: the image runs unprivileged (only the kept
/// capabilities, no new privileges, the process limit), its env reaches the container through
/// a file the agent alone can read and never the engine's own environment, the image follows
/// `--`; the container stops (gracefully) with the cluster and its env file goes; a container
/// left by a killed agent is stopped when the agent restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_run_unprivileged_on_the_real_engine() {
    let Some(image) = busybox_image() else {
        return;
    };
    let fleet = Fleet::start(platform::testing::fresh_sqlite_url()).await;
    let support::Started {
        mut agent,
        args,
        machine,
        ..
    } = fleet.start_h100("c", None).await;
    let renter = funded_renter(&fleet, 21).await;
    let workload = Workload {
        image: image.into(),
        command: "trap 'echo container stopped; exit 0' TERM; \
                  echo \"model=$MODEL role=$GC_ROLE\"; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; \
                  echo \"pids=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)\"; \
                  echo up; while true; do sleep 0.2; done"
            .into(),
        port: None,
        env: [
            ("MODEL".to_owned(), "llama".to_owned()),
            ("DOCKER_HOST".to_owned(), "tcp://attacker:2375".to_owned()),
        ]
        .into(),
    };
    let id = deploy(
        &fleet,
        renter,
        &request("served", ClusterKind::Container, workload),
    )
    .await;
    let seen = fleet.wait_for_output("c", &id, "\nup\n", 60).await;
    assert!(seen.contains("model=llama role=worker"), "{seen}");
    // CHOWN, DAC_OVERRIDE, FOWNER, KILL, SETGID, SETUID, NET_BIND_SERVICE: bits 0 1 3 5 6 7 10.
    assert!(seen.contains("CapEff:\t00000000000004eb"), "{seen}");
    assert!(seen.contains("NoNewPrivs:\t1"), "{seen}");
    assert!(seen.contains("pids=4096"), "{seen}");
    let name = format!("gc-{id}");
    let (line, engine_env) = engine_process(&name).expect("podman run is running");
    assert!(line.contains(&format!("-- {image} sh -c ")), "{line}");
    assert!(
        !line.contains("llama"),
        "env on the engine's command line: {line}"
    );
    assert!(
        !engine_env.lines().any(|l| l.starts_with("MODEL=")
            || l.starts_with("DOCKER_HOST=")
            || l.starts_with("GC_")),
        "the engine CLI got the cluster's env:\n{engine_env}"
    );
    let env_file = fleet.dir.join(format!("{name}.env"));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&env_file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the env file is the agent's alone: {mode:o}"
        );
    }

    // Killed, the agent cannot stop the container; restarted, it does.
    agent.kill().await.unwrap();
    agent.wait().await.unwrap();
    let running = |name: &str| {
        std::process::Command::new("podman")
            .args(["container", "exists", name])
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(running(&name), "the container outlives a killed agent");
    let _agent = fleet.agent("c", &args, &machine);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fleet
        .log("c")
        .contains(&format!("stopped container {name} of cluster {id}"))
    {
        assert!(Instant::now() < deadline, "{}", fleet.log("c"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The restarted agent runs it again; the cluster's end stops it for good.
    let deadline = Instant::now() + Duration::from_secs(30);
    while fleet.workload_log("c", &id).matches("\nup\n").count() < 2 {
        assert!(Instant::now() < deadline, "{}", fleet.log("c"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    terminate(&fleet, renter, &id).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while running(&name) || env_file.exists() {
        assert!(Instant::now() < deadline, "{}", fleet.log("c"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its output went to the killed agent's pipe the first time; the second, to the log.
    assert_eq!(
        fleet
            .workload_log("c", &id)
            .matches("container stopped")
            .count(),
        1,
        "stopped gracefully with the cluster"
    );
    fleet.stop().await;
}

/// A flag-shaped image never reaches an engine: the server refuses it as an image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_shaped_image_is_refused_before_any_engine() {
    let fleet = Fleet::start(platform::testing::fresh_sqlite_url()).await;
    let renter = funded_renter(&fleet, 31).await;
    for image in ["--privileged", "-v/:/host", "alpine --privileged"] {
        let refused = fleet
            .server
            .platform
            .provisioning
            .deploy(
                renter,
                &request(
                    "flag",
                    ClusterKind::Container,
                    Workload {
                        image: image.into(),
                        ..Workload::default()
                    },
                ),
                None,
                platform::now(),
            )
            .await;
        let message = format!("{:?}", refused.unwrap_err());
        assert!(message.contains("workload.image"), "{image}: {message}");
    }
    fleet.stop().await;
}
