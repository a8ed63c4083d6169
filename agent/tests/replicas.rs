//! Issue 16 end to end: three real `gpu-commons` processes on one PostgreSQL behind a real
//! HAProxy (`deploy/haproxy.cfg`), real agents and renters through it; one replica is killed
//! mid-run and started again. Asserts that no live device is marked down, no device is in two
//! clusters, every deploy runs or fails with its reason, the replicas agree on the network,
//! and the books balance.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use domain::wallet::WalletAddress;
use platform::store::Store;
use platform::Platform;
use support::{free_port, machine_file, AGENT};
use tokio::process::{Child, Command};

const HAPROXY: &str = "/usr/sbin/haproxy";
const DEVICES: usize = 6;
const RENTERS: usize = 3;

/// The server binary `cargo test` built beside the agent's.
fn server_binary() -> PathBuf {
    Path::new(AGENT).with_file_name("gpu-commons")
}

/// Why this machine cannot run the test, if it cannot: in CI (`CI=true`) that fails it.
async fn missing() -> Option<String> {
    if !Path::new(HAPROXY).exists() {
        return Some(format!(
            "{HAPROXY} is not installed (cargo xtask test installs haproxy)"
        ));
    }
    if !server_binary().exists() {
        return Some(format!("{} was not built", server_binary().display()));
    }
    None
}

struct Replica {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

struct Bench {
    dir: PathBuf,
    database_url: String,
    balancer_port: u16,
    replicas: Vec<Replica>,
    balancer: Child,
    agents: Vec<Child>,
    /// The services over the same database, for what the test sets up and reads.
    platform: Platform,
    owner: WalletAddress,
}

impl Bench {
    async fn start(database_url: String) -> Bench {
        let dir = std::env::temp_dir().join(format!("gc-replicas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let balancer_port = free_port();
        let mut replicas: Vec<Replica> = (0..3)
            .map(|n| Replica {
                port: free_port(),
                child: None,
                log: dir.join(format!("replica{n}.log")),
            })
            .collect();
        // The platform's schema, migrated once before the replicas race to do it.
        let store = Store::open(&database_url).await.unwrap();
        // Its tickets name the balancer.
        let platform = Platform::new(
            store,
            platform::testing::plain_config(&format!("http://127.0.0.1:{balancer_port}")),
        );
        for replica in &mut replicas {
            replica.child = Some(spawn_replica(replica, &database_url, balancer_port));
        }
        for replica in &replicas {
            wait_ready(replica.port, &replica.log).await;
        }
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg"),
        )
        .unwrap();
        let servers: Vec<String> = replicas
            .iter()
            .enumerate()
            .map(|(n, r)| format!("    server replica{n} 127.0.0.1:{}", r.port))
            .collect();
        assert!(template.contains("    # @replicas@"));
        let config = dir.join("haproxy.cfg");
        std::fs::write(
            &config,
            template.replace("    # @replicas@", &servers.join("\n")),
        )
        .unwrap();
        let balancer = Command::new(HAPROXY)
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .env("GC_LB_LISTEN", format!("127.0.0.1:{balancer_port}"))
            .stdout(std::fs::File::create(dir.join("haproxy.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("haproxy.err")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        wait_ready(balancer_port, &dir.join("haproxy.err")).await;
        Bench {
            dir,
            database_url,
            balancer_port,
            replicas,
            balancer,
            agents: Vec::new(),
            platform,
            owner: WalletAddress::from_public_key(&[43; 32]),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.balancer_port)
    }

    /// Enrols a one-H100 device and starts its agent against the load balancer.
    async fn start_agent(&mut self, name: &str) {
        let mut args = support::enrol(&self.platform, &self.owner, name).await;
        let machine = machine_file(&self.dir, name, "NVIDIA H100 80GB HBM3", 1, 0);
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        // The ticket names the public URL, which is the balancer's.
        assert!(
            args.iter()
                .any(|a| a.contains(&self.balancer_port.to_string())),
            "{args:?}"
        );
        args.extend([
            "--credentials".into(),
            self.dir.join(format!("{name}.json")).display().to_string(),
            "--simulate".into(),
            machine.display().to_string(),
        ]);
        let child = Command::new(AGENT)
            .args(&args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.agents.push(child);
    }

    async fn kill(&mut self, n: usize) {
        let mut child = self.replicas[n].child.take().unwrap();
        child.kill().await.unwrap();
    }

    async fn restart(&mut self, n: usize) {
        let child = spawn_replica(&self.replicas[n], &self.database_url, self.balancer_port);
        self.replicas[n].child = Some(child);
        wait_ready(self.replicas[n].port, &self.replicas[n].log).await;
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for r in &self.replicas {
            all.push_str(&format!("--- {}\n", r.log.display()));
            all.push_str(&tail(
                &std::fs::read_to_string(&r.log).unwrap_or_default(),
                40,
            ));
        }
        all
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn spawn_replica(replica: &Replica, database_url: &str, balancer_port: u16) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&replica.log)
        .unwrap();
    Command::new(server_binary())
        .args(["--listen", &format!("127.0.0.1:{}", replica.port)])
        .args(["--database-url", database_url])
        .args(["--public-url", &format!("http://127.0.0.1:{balancer_port}")])
        .args(["--trusted-proxies", "127.0.0.1"])
        .args(["--heartbeat-interval-secs", "1"])
        .args(["--down-after-secs", "8"])
        .args(["--flush-interval-secs", "1"])
        .args(["--speed-test-bytes", "4194304"])
        .args(["--accept-simulated-devices", "true"])
        .args(["--log", "info"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn wait_ready(port: u16, log: &Path) {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        let ready = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "port {port} never became ready:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// The owner's devices: name, status, and whether a tier was measured.
async fn statuses(bench: &Bench) -> Vec<(String, String, bool)> {
    bench
        .platform
        .worker
        .devices_of(&bench.owner, platform::now())
        .await
        .unwrap()
        .devices
        .iter()
        .map(|d| (d.name.clone(), d.status.to_string(), d.tier.is_some()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_a_balancer_survive_losing_one() {
    if let Some(why) = missing().await {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let Some(database_url) = platform::testing::fresh_postgres_url().await else {
        eprintln!("skipped: no PostgreSQL at 127.0.0.1:5432");
        return;
    };
    let mut bench = Bench::start(database_url.clone()).await;
    for n in 0..DEVICES {
        bench.start_agent(&format!("node{n}")).await;
    }
    // Every device verified and measured through the balancer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let now = statuses(&bench).await;
        if now.len() == DEVICES && now.iter().all(|(_, s, tier)| s == "idle" && *tier) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "devices not ready: {now:?}\n{}",
            bench.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Renters deploy through the balancer, from several API keys (so several replicas).
    let client = reqwest::Client::new();
    let mut keys = Vec::new();
    for seed in 0..RENTERS {
        let user = support::sign_in(&bench.platform, 60 + seed as u8).await;
        bench
            .platform
            .ledger
            .operator_credit(
                user,
                domain::money::Asset::Usdc,
                500_000_000,
                &format!("replicas-{seed}"),
                "test grant",
                platform::now(),
            )
            .await
            .unwrap();
        let key = bench
            .platform
            .api_keys
            .create(user, "replicas test", platform::now())
            .await
            .unwrap();
        keys.push(key.secret);
    }
    let url = bench.url();
    let deploy = |key: String, name: String| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let request = support::h100_request(
                &name,
                domain::cluster::ClusterKind::BareMetal,
                1,
                domain::cluster::Workload {
                    command: "sleep 600".into(),
                    ..Default::default()
                },
            );
            let response = client
                .post(format!("{url}/api/v1/cloud/clusters"))
                .bearer_auth(&key)
                .header("Idempotency-Key", &name)
                .json(&request)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, body)
        }
    };
    let mut deployed = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        deployed.push(deploy(key.clone(), format!("before-{n}")).await);
    }
    for (status, body) in &deployed {
        assert!(status.is_success(), "{status} {body}");
    }

    // One replica dies mid-run; its agents move to the others, which claim them.
    bench.kill(1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = deploy(keys[0].clone(), "during".into()).await;
    assert!(
        during.0.is_success() || during.1["error"].as_str().is_some_and(|e| !e.is_empty()),
        "a deploy answers or says why: {during:?}"
    );
    tokio::time::sleep(Duration::from_secs(12)).await;
    bench.restart(1).await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    // No device was ever marked down: every agent stayed alive throughout.
    let store = &bench.platform.store;
    let texts = |sql: &'static str, arg: &'static str| async move {
        platform::testing::stored_texts(store, sql, arg)
            .await
            .unwrap()
    };
    let downs = texts(
        "SELECT device_id || ': ' || detail FROM device_events WHERE to_status = $1",
        "down",
    )
    .await;
    assert!(
        downs.is_empty(),
        "{} times marked down while alive, first {:?}\n{}",
        downs.len(),
        &downs[..downs.len().min(5)],
        bench.logs()
    );
    // No device is in two active clusters.
    let doubled = texts(
        "SELECT device_id FROM cluster_devices WHERE left_at IS NULL AND device_id <> $1 \
         GROUP BY device_id HAVING COUNT(*) > 1",
        "",
    )
    .await;
    assert!(doubled.is_empty(), "{doubled:?}");
    // Every cluster runs, or ended with its reason; none is stuck deploying.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        // id | status | reason of every cluster.
        let clusters = texts(
            "SELECT id || '|' || status || '|' || status_reason FROM clusters WHERE id <> $1",
            "",
        )
        .await;
        let parts: Vec<Vec<&str>> = clusters
            .iter()
            .map(|c| c.splitn(3, '|').collect())
            .collect();
        let settled = parts
            .iter()
            .all(|p| p[1] == "running" || (p[1] != "deploying" && !p[2].is_empty()));
        if settled {
            assert!(parts.iter().filter(|p| p[1] == "running").count() >= RENTERS);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "clusters stuck: {clusters:?}\n{}",
            bench.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every replica counts the same network (the change feed reached each within a second).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut summaries = Vec::new();
    for replica in &bench.replicas {
        let summary: serde_json::Value = client
            .get(format!(
                "http://127.0.0.1:{}/api/v1/explorer/summary",
                replica.port
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        summaries.push(summary);
    }
    assert!(summaries.windows(2).all(|w| w[0] == w[1]), "{summaries:#?}");
    assert_eq!(
        bench.platform.ledger.audit().await.unwrap(),
        Vec::<String>::new()
    );

    for agent in &mut bench.agents {
        let _ = agent.kill().await;
    }
    for replica in &mut bench.replicas {
        if let Some(mut child) = replica.child.take() {
            let _ = child.kill().await;
        }
    }
    let _ = bench.balancer.kill().await;
    bench.platform.store.close().await;
    let _ = platform::testing::drop_postgres_database(&database_url).await;
    let _ = std::fs::remove_dir_all(&bench.dir);
}
