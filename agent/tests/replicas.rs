//! Issue 16 end to end: three real `gpu-commons` processes on one PostgreSQL behind a real
//! HAProxy (`deploy/haproxy.cfg`), real agents and renters through it; one replica is killed
//! mid-run and started again. Asserts that no live device is marked down, no device is in two
//! clusters, every deploy runs or fails with its reason, the replicas agree on the network,
//! each reward block is closed once, each payout is sent once though the leader that runs the
//! payout worker is the replica killed, a renter's tunnel works through any replica, a client
//! cannot pick its own address for the rate limits by forging `X-Forwarded-For`, and the books
//! balance.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use domain::wallet::WalletAddress;
use platform::store::Store;
use platform::Platform;
use support::{free_port, machine_file, AGENT};
use tokio::process::{Child, Command};

const HAPROXY: &str = "/usr/sbin/haproxy";
/// The two mints local-solana makes and the replicas pay in (any valid addresses).
const USDC_MINT: &str = "CNhiw7naLWn5r7xUoYY6L3XNsK6W6fwW17GAjHKfi2Yv";
const TOKEN_MINT: &str = "EzavvU4p7nThs6nG2tHHTUcs14QvptJKcELF9vfUyjuE";
const DEVICES: usize = 6;
const RENTERS: usize = 3;

/// The server binary `cargo test` built beside the agent's.
fn server_binary() -> PathBuf {
    Path::new(AGENT).with_file_name("gpu-commons")
}

/// The local Solana endpoint `cargo test` built beside the agent (crate chain).
fn solana_binary() -> PathBuf {
    Path::new(AGENT).with_file_name("local-solana")
}

/// Why this machine cannot run the test, if it cannot: in CI (`CI=true`) that fails it.
async fn missing() -> Option<String> {
    if !Path::new(HAPROXY).exists() {
        return Some(format!(
            "{HAPROXY} is not installed (cargo xtask test installs haproxy)"
        ));
    }
    for binary in [server_binary(), solana_binary()] {
        if !binary.exists() {
            return Some(format!("{} was not built", binary.display()));
        }
    }
    None
}

/// The address HAProxy connects to the replicas from: the one proxy they trust. Clients are at
/// 127.0.0.1, so what a client says of its own address is never taken.
const PROXY_ADDRESS: &str = "127.0.0.2";

struct Replica {
    port: u16,
    tunnel_port: u16,
    child: Option<Child>,
    log: PathBuf,
}

struct Bench {
    dir: PathBuf,
    database_url: String,
    balancer_port: u16,
    tunnel_balancer_port: u16,
    replicas: Vec<Replica>,
    balancer: Child,
    solana: Child,
    solana_port: u16,
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
        let tunnel_balancer_port = free_port();
        // The chain payouts land on; it writes the treasury key the replicas sign with.
        let solana_port = free_port();
        let treasury = dir.join("treasury.json");
        let solana = Command::new(solana_binary())
            .args(["--listen", &format!("127.0.0.1:{solana_port}")])
            .arg("--treasury-key")
            .arg(&treasury)
            .args(["--usdc-mint", USDC_MINT, "--token-mint", TOKEN_MINT])
            .stdout(std::fs::File::create(dir.join("solana.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("solana.err")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        wait_ready_at(solana_port, "/health", &dir.join("solana.err")).await;
        let mut replicas: Vec<Replica> = (0..3)
            .map(|n| Replica {
                port: free_port(),
                tunnel_port: free_port(),
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
        let ports = Ports {
            site: balancer_port,
            tunnels: tunnel_balancer_port,
            solana: solana_port,
        };
        for replica in &mut replicas {
            replica.child = Some(spawn_replica(replica, &database_url, &dir, ports));
        }
        for replica in &replicas {
            wait_ready(replica.port, &replica.log).await;
        }
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg"),
        )
        .unwrap();
        let servers = |port: fn(&Replica) -> u16| -> String {
            let lines: Vec<String> = replicas
                .iter()
                .enumerate()
                .map(|(n, r)| format!("    server replica{n} 127.0.0.1:{}", port(r)))
                .collect();
            lines.join("\n")
        };
        assert!(template.contains("    # @replicas@"));
        assert!(template.contains("    # @replica-tunnels@"));
        let config = dir.join("haproxy.cfg");
        let filled = template
            .replace(
                "    # @replicas@",
                &format!("    source {PROXY_ADDRESS}\n{}", servers(|r| r.port)),
            )
            .replace("    # @replica-tunnels@", &servers(|r| r.tunnel_port));
        std::fs::write(&config, filled).unwrap();
        let balancer = Command::new(HAPROXY)
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .env("GC_LB_LISTEN", format!("127.0.0.1:{balancer_port}"))
            .env(
                "GC_LB_TUNNEL_LISTEN",
                format!("127.0.0.1:{tunnel_balancer_port}"),
            )
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
            tunnel_balancer_port,
            replicas,
            balancer,
            solana,
            solana_port,
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
        let ports = Ports {
            site: self.balancer_port,
            tunnels: self.tunnel_balancer_port,
            solana: self.solana_port,
        };
        let child = spawn_replica(&self.replicas[n], &self.database_url, &self.dir, ports);
        self.replicas[n].child = Some(child);
        wait_ready(self.replicas[n].port, &self.replicas[n].log).await;
    }

    /// Which replica holds the leader lease now (its start-up line names its id).
    async fn leader(&self) -> usize {
        let holders = platform::testing::stored_texts(
            &self.platform.store,
            "SELECT holder FROM leases WHERE name = $1",
            "leader",
        )
        .await
        .unwrap();
        let holder = holders.first().expect("a replica leads");
        self.replicas
            .iter()
            .position(|r| {
                without_colours(&std::fs::read_to_string(&r.log).unwrap_or_default())
                    .contains(holder.as_str())
            })
            .unwrap_or_else(|| panic!("no replica's log names leader {holder}"))
    }

    /// `wallet`'s balance of the USDC mint on the local chain, in base units.
    async fn chain_usdc(&self, wallet: &str) -> u64 {
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/", self.solana_port))
            .json(&serde_json::json!({
                "jsonrpc": "2.0", "id": 1, "method": "localMintTo",
                "params": [wallet, USDC_MINT, 0],
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["result"]
            .as_u64()
            .unwrap_or_else(|| panic!("{answer}"))
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

/// A log without its terminal colour codes.
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence runs to its final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The cluster's one tunnel link, once it runs, as the API at `base` gives it to the renter.
async fn tunnel_link(client: &reqwest::Client, base: &str, key: &str, cluster_id: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let detail: domain::cluster::ClusterDetail = client
            .get(format!("{base}/api/v1/cloud/clusters/{cluster_id}"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if detail.summary.status == domain::cluster::ClusterStatus::Running {
            if let Some(link) = detail.tunnels.first() {
                return link.url.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never running with a tunnel: {:?}",
            detail.events
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The page at `path` of tunnel listener `port`, asked with the renter's API key; retried
/// while the workload's server is starting.
async fn served_page(client: &reqwest::Client, port: u16, path: &str, key: &str) -> String {
    let mut last = String::new();
    for _ in 0..50 {
        let answer = client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        last = format!("{status}: {}", answer.text().await.unwrap_or_default());
        if status == 200 {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("tunnel listener {port} never served {path}: {last}");
}

/// The statuses of 120 explorer requests to `base` sent at once, the n-th claiming to be
/// forwarded for client address 10.`net`.x.y of its own.
async fn explorer_statuses(client: &reqwest::Client, base: &str, net: u8) -> Vec<u16> {
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..120u8 {
        let request = client
            .get(format!("{base}/api/v1/explorer/summary"))
            .header("x-forwarded-for", format!("10.{net}.0.{n}"));
        requests.spawn(async move { request.send().await.unwrap().status().as_u16() });
    }
    requests.join_all().await
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The ports a replica is told of: the balancer's two frontends and the local chain.
#[derive(Clone, Copy)]
struct Ports {
    site: u16,
    tunnels: u16,
    solana: u16,
}

/// Starts a replica behind the balancer, paying out on the local chain.
fn spawn_replica(replica: &Replica, database_url: &str, dir: &Path, ports: Ports) -> Child {
    let Ports {
        site,
        tunnels,
        solana,
    } = ports;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&replica.log)
        .unwrap();
    Command::new(server_binary())
        .args(["--listen", &format!("127.0.0.1:{}", replica.port)])
        .args(["--database-url", database_url])
        .args(["--public-url", &format!("http://127.0.0.1:{site}")])
        .args([
            "--tunnel-listen",
            &format!("127.0.0.1:{}", replica.tunnel_port),
        ])
        .args(["--tunnel-url", &format!("http://127.0.0.1:{tunnels}")])
        .args(["--trusted-proxies", PROXY_ADDRESS])
        // The last hour's reward block is due at once: the leader closes it.
        .args(["--block-close-delay-secs", "0"])
        .args(["--solana-rpc-url", &format!("http://127.0.0.1:{solana}/")])
        .arg("--treasury-key")
        .arg(dir.join("treasury.json"))
        .args(["--usdc-mint", USDC_MINT, "--token-mint", TOKEN_MINT])
        .args(["--min-transfer-usd", "0.000001"])
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
    wait_ready_at(port, "/readyz", log).await;
}

/// Waits until `path` on `port` answers 2xx.
async fn wait_ready_at(port: u16, path: &str, log: &Path) {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        let ready = client
            .get(format!("http://127.0.0.1:{port}{path}"))
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
    let deploy_running = |key: String, name: String, workload: domain::cluster::Workload| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let request =
                support::h100_request(&name, domain::cluster::ClusterKind::BareMetal, 1, workload);
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
    let deploy = |key: String, name: String| {
        let sleeping = domain::cluster::Workload {
            command: "sleep 600".into(),
            ..Default::default()
        };
        deploy_running(key, name, sleeping)
    };
    let mut deployed = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        deployed.push(deploy(key.clone(), format!("before-{n}")).await);
    }
    for (status, body) in &deployed {
        assert!(status.is_success(), "{status} {body}");
    }

    // A provider claims twice (the first claim sent twice at once, as a retry would) just
    // before the leader, which runs the payout worker, dies.
    let provider_seed = 70;
    let provider = support::sign_in(&bench.platform, provider_seed).await;
    let provider_address = {
        let key = ed25519_dalek::SigningKey::from_bytes(&[provider_seed; 32]);
        WalletAddress::from_public_key(&key.verifying_key().to_bytes())
    };
    let provider_wallet = provider_address.to_string();
    platform::testing::grant_claimable(
        &bench.platform.store,
        &provider_wallet,
        domain::money::Asset::Usdc,
        5_000_000,
        "replicas-payouts",
    )
    .await
    .unwrap();
    let provider_key = bench
        .platform
        .api_keys
        .create(provider, "replicas payouts", platform::now())
        .await
        .unwrap()
        .secret;
    let claim = |amount: &'static str, key: &'static str| {
        let request = client
            .post(format!("{url}/api/v1/worker/payouts"))
            .bearer_auth(&provider_key)
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({ "asset": "usdc", "amount": amount }));
        async move {
            let answer = request.send().await.unwrap();
            let status = answer.status();
            let body: serde_json::Value = answer.json().await.unwrap_or_default();
            assert!(status.is_success(), "claim {key}: {status} {body}");
            body["id"].as_str().unwrap().to_owned()
        }
    };
    let (first, retried) = tokio::join!(claim("2", "claim-1"), claim("2", "claim-1"));
    assert_eq!(first, retried, "a retried claim is the same payout");
    claim("1.5", "claim-2").await;

    // One replica dies mid-run, the leader: its agents move to the others, which claim them,
    // and another replica takes the lease and the payouts over.
    let killed = bench.leader().await;
    bench.kill(killed).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = deploy(keys[0].clone(), "during".into()).await;
    assert!(
        during.0.is_success() || during.1["error"].as_str().is_some_and(|e| !e.is_empty()),
        "a deploy answers or says why: {during:?}"
    );
    tokio::time::sleep(Duration::from_secs(12)).await;
    bench.restart(killed).await;
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
    // Deploy → running through the balancer, wherever each deploy and each agent's long poll
    // landed (docs/BENCHMARKS.md records what runs printed; the agents heartbeat every second).
    let ran_after = texts(
        "SELECT CAST(running_at - created_at AS TEXT) FROM clusters \
         WHERE running_at IS NOT NULL AND name <> $1",
        "",
    )
    .await;
    eprintln!("deploy → running, ms: {ran_after:?}");
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

    // Each payout landed once: the wallet holds exactly what was claimed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let payouts = bench
            .platform
            .payouts
            .payouts_of(&provider_address, 10)
            .await
            .unwrap();
        assert_eq!(payouts.len(), 2, "{payouts:?}");
        let done = payouts
            .iter()
            .all(|p| p.status == domain::payout::PayoutStatus::Confirmed);
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "payouts not confirmed: {payouts:?}\n{}",
            bench.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(bench.chain_usdc(&provider_wallet).await, 3_500_000);
    assert_eq!(
        bench.platform.ledger.audit().await.unwrap(),
        Vec::<String>::new()
    );

    // The last hour's reward block was closed, by one replica alone, whichever led.
    let blocks = texts(
        "SELECT CAST(number AS TEXT) FROM reward_blocks WHERE CAST(number AS TEXT) <> $1",
        "",
    )
    .await;
    assert!(
        !blocks.is_empty(),
        "no reward block closed\n{}",
        bench.logs()
    );
    let logs: Vec<String> = bench
        .replicas
        .iter()
        .map(|r| without_colours(&std::fs::read_to_string(&r.log).unwrap_or_default()))
        .collect();
    for block in &blocks {
        let closings = logs
            .iter()
            .flat_map(|log| log.lines())
            .filter(|l| l.contains("block closed") && l.contains(&format!("block={block} ")))
            .count();
        assert_eq!(closings, 1, "block {block} closed {closings} times");
    }

    // A renter's tunnel works through every replica: the two its device's agent does not poll
    // relay the request to the one it does.
    let port = free_port();
    let served = domain::cluster::Workload {
        command: format!("exec python3 -m http.server {port}"),
        port: Some(port),
        ..Default::default()
    };
    let (status, body) = deploy_running(keys[1].clone(), "tunnelled".into(), served).await;
    assert!(status.is_success(), "{status} {body}");
    let cluster_id = body["id"].as_str().expect("a cluster id").to_owned();
    let link = tunnel_link(&client, &bench.url(), &keys[1], &cluster_id).await;
    let path = link
        .strip_prefix(&format!("http://127.0.0.1:{}", bench.tunnel_balancer_port))
        .unwrap_or_else(|| panic!("the link names the tunnel balancer: {link}"))
        .to_owned();
    for replica in &bench.replicas {
        let page = served_page(&client, replica.tunnel_port, &path, &keys[1]).await;
        assert!(page.contains("Directory listing"), "{page}");
    }
    // Through the balancer, and never without the key.
    assert!(
        served_page(&client, bench.tunnel_balancer_port, &path, &keys[1])
            .await
            .contains("Directory listing")
    );
    let anonymous = client
        .get(format!(
            "http://127.0.0.1:{}{path}",
            bench.replicas[2].tunnel_port
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // A renter who marks the request as relayed gains nothing: it is checked and served (or
    // not) like any other.
    let forged = client
        .get(format!(
            "http://127.0.0.1:{}{path}",
            bench.replicas[0].tunnel_port
        ))
        .header(domain::tunnel::RELAYED_BY_HEADER, "replica-forged")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // Rate limits: a client that forges X-Forwarded-For through the balancer is still one
    // client (the balancer appends what it saw, and only the balancer is trusted) ...
    let forging = explorer_statuses(&client, &bench.url(), 9).await;
    assert!(forging.contains(&429), "{forging:?}");
    // ... and so is one that sends it straight to a replica ...
    let direct = format!("http://127.0.0.1:{}", bench.replicas[0].port);
    let forging = explorer_statuses(&client, &direct, 8).await;
    assert!(forging.contains(&429), "{forging:?}");
    // ... while the trusted proxy's word on its many clients is taken, each limited alone.
    let proxy = reqwest::Client::builder()
        .local_address(PROXY_ADDRESS.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let proxied = explorer_statuses(&proxy, &direct, 7).await;
    assert!(proxied.iter().all(|s| *s == 200), "{proxied:?}");

    for agent in &mut bench.agents {
        let _ = agent.kill().await;
    }
    for replica in &mut bench.replicas {
        if let Some(mut child) = replica.child.take() {
            let _ = child.kill().await;
        }
    }
    let _ = bench.balancer.kill().await;
    let _ = bench.solana.kill().await;
    bench.platform.store.close().await;
    let _ = platform::testing::drop_postgres_database(&database_url).await;
    let _ = std::fs::remove_dir_all(&bench.dir);
}
