//! One typed configuration, read from (highest first) command-line flags, environment
//! variables, a TOML file (`--config`), then defaults, and validated before anything starts.

mod validate;

pub(crate) use validate::tunnel_origin;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use url::Url;

use crate::demo_agents::DemoAgentSettings;
use crate::error::Error;

/// GPU Commons server: the web app (explorer, cloud console, worker tab), its JSON API and the
/// agent API, on SQLite (default, embedded) or PostgreSQL.
#[derive(Parser, Debug, Default, Deserialize)]
#[command(name = "gpu-commons", version)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// An operator task to run instead of the server.
    #[command(subcommand)]
    #[serde(skip)]
    pub command: Option<Command>,

    /// TOML file with any of the settings below (keys in snake_case, e.g. database_url = "…").
    /// Flags and environment variables override it.
    #[arg(long, env = "GC_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on; port 0 picks a free port. [default: 127.0.0.1:3000]
    #[arg(long, env = "GC_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// sqlite://PATH (created if missing) or postgres://USER@HOST:PORT/DB.
    /// [default: sqlite://data/gpu-commons.db]
    #[arg(long, env = "DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,

    /// The URL users reach the site at (behind a proxy or TLS terminator). Sign-in messages name
    /// its host, and session cookies are marked Secure when it is https. [default: http://ADDR]
    #[arg(long, env = "GC_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// Address of the tunnel origin, where renters reach their clusters' ports through the
    /// platform: a listener of its own, so what workloads answer never runs as the console's
    /// pages; "off" runs no tunnels. [default: ADDR's IP and the port after ADDR's (0 if 0)]
    #[arg(long, env = "GC_TUNNEL_LISTEN", value_name = "ADDR")]
    pub tunnel_listen: Option<String>,

    /// The URL renters reach the tunnel origin at (behind a proxy or TLS terminator).
    /// [default: the public URL's scheme and host with the tunnel listener's port]
    #[arg(long, env = "GC_TUNNEL_URL", value_name = "URL")]
    pub tunnel_url: Option<String>,

    /// per-device: each device of each cluster is served at a host of its own under the tunnel
    /// URL's host ({cluster}-{device}.HOST, one wildcard DNS record and certificate), so one
    /// provider's pages cannot read the renter's other tunnels; shared: one host for all.
    /// [default: per-device when the tunnel URL's host is a DNS name, shared for an IP address]
    #[arg(long, env = "GC_TUNNEL_HOSTS", value_name = "MODE")]
    pub tunnel_hosts: Option<String>,

    /// The host or IP other replicas on the same PostgreSQL reach this one's tunnel listener
    /// at: a renter's tunnel that arrives at another replica is relayed to the one its
    /// device's agent is connected to. [default: the tunnel listener's IP, unless it listens
    /// on every interface; then other replicas cannot relay here]
    #[arg(long, env = "GC_REPLICA_HOST", value_name = "HOST")]
    pub replica_host: Option<String>,

    /// Address of a listener of its own serving the operator's Prometheus metrics at
    /// `/metrics` (docs/METRICS.md); keep it off the public network. [default: off]
    #[arg(long, env = "GC_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Folder with the built site: pkg/ (WASM, JS, CSS) and public files. [default: target/site]
    #[arg(long, env = "GC_SITE_ROOT", value_name = "DIR")]
    pub site_root: Option<PathBuf>,

    /// Solana cluster wallets sign in for: mainnet, devnet or testnet. [default: devnet]
    #[arg(long, env = "GC_SOLANA_CLUSTER", value_name = "CLUSTER")]
    pub solana_cluster: Option<String>,

    /// Seed a simulated demo fleet (marked as simulated everywhere) when the network has none.
    #[arg(long, env = "GC_DEMO", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub demo: Option<bool>,

    /// Let agents with simulated hardware (`gpu-commons-agent --simulate`) register though this
    /// is not a demo network: for test benches only, since simulated devices are then hired
    /// and rewarded. [default: true with --demo, else false]
    #[arg(long, env = "GC_ACCEPT_SIMULATED_DEVICES", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub accept_simulated_devices: Option<bool>,

    /// How many devices the demo fleet has. [default: 500]
    #[arg(long, env = "GC_DEMO_DEVICES", value_name = "N")]
    pub demo_devices: Option<usize>,

    /// How many real agents with simulated GPUs the demo network runs, so its clusters can be
    /// hired and really run (on this machine). [default: 4 with --demo; 0 to run none]
    #[arg(long, env = "GC_DEMO_AGENTS", value_name = "N")]
    pub demo_agents: Option<usize>,

    /// The agent binary this server offers for download (the Worker tab's install command,
    /// agents' self-updates) and its demo agents run. [default: gpu-commons-agent beside this
    /// binary; none offered when it is not there]
    #[arg(long, env = "GC_AGENT_BINARY", value_name = "FILE")]
    pub agent_binary: Option<PathBuf>,

    /// Folder for the demo agents' credentials, hardware files and logs.
    /// [default: data/demo-agents]
    #[arg(long, env = "GC_DEMO_AGENTS_DIR", value_name = "DIR")]
    pub demo_agents_dir: Option<PathBuf>,

    /// Seconds a sign-in message stays valid. [default: 300]
    #[arg(long, env = "GC_SIGN_IN_TTL_SECS", value_name = "SECS")]
    pub sign_in_ttl_secs: Option<i64>,

    /// Seconds without use after which a session ends; at least 300. [default: 86400]
    #[arg(long, env = "GC_SESSION_IDLE_SECS", value_name = "SECS")]
    pub session_idle_secs: Option<i64>,

    /// Seconds after sign-in at which a session ends however it is used. [default: 2592000]
    #[arg(long, env = "GC_SESSION_MAX_SECS", value_name = "SECS")]
    pub session_max_secs: Option<i64>,

    /// Seconds a request may take before it is answered 408. [default: 30]
    #[arg(long, env = "GC_REQUEST_TIMEOUT_SECS", value_name = "SECS")]
    pub request_timeout_secs: Option<u64>,

    /// Requests a second each client address may make to the public explorer API. [default: 20]
    #[arg(long, env = "GC_EXPLORER_REQUESTS_PER_SEC", value_name = "N")]
    pub explorer_requests_per_sec: Option<u32>,

    /// Agent registrations a minute each client address may make; past it, 429 (the agent
    /// retries with backoff). [default: 30]
    #[arg(long, env = "GC_REGISTRATIONS_PER_MINUTE", value_name = "N")]
    pub registrations_per_minute: Option<u32>,

    /// Load balancers and proxies in front of the server, as a comma-separated list of
    /// addresses and ranges (127.0.0.1,10.0.0.0/8): only their X-Forwarded-For or Forwarded
    /// header says who the client is (rate limits, agents' addresses). [default: none]
    #[arg(long, env = "GC_TRUSTED_PROXIES", value_name = "LIST")]
    pub trusted_proxies: Option<String>,

    /// Seconds between an agent's heartbeats (the server tells agents). [default: 10]
    #[arg(long, env = "GC_HEARTBEAT_INTERVAL_SECS", value_name = "SECS")]
    pub heartbeat_interval_secs: Option<u32>,

    /// Seconds without heartbeats after which a device is marked down. [default: 30]
    #[arg(long, env = "GC_DOWN_AFTER_SECS", value_name = "SECS")]
    pub down_after_secs: Option<i64>,

    /// Seconds a new device's registration token stays valid. [default: 3600]
    #[arg(long, env = "GC_REGISTRATION_TTL_SECS", value_name = "SECS")]
    pub registration_ttl_secs: Option<i64>,

    /// Bytes each way in an agent's connectivity measurement. [default: 16777216]
    #[arg(long, env = "GC_SPEED_TEST_BYTES", value_name = "BYTES")]
    pub speed_test_bytes: Option<u64>,

    /// Seconds between flushes of merged heartbeats (uptime, last heartbeat) to the database:
    /// stopped devices' at once, online devices' every 10 minutes; pages read newer ones from
    /// memory, and a clean stop writes them all. [default: 60]
    #[arg(long, env = "GC_FLUSH_INTERVAL_SECS", value_name = "SECS")]
    pub flush_interval_secs: Option<u64>,

    /// Dollars credited once to every new account, e.g. for a demo network or a promotion.
    /// [default: 500 with --demo, else 0]
    #[arg(long, env = "GC_WELCOME_CREDIT_USD", value_name = "USD")]
    pub welcome_credit_usd: Option<String>,

    /// Seconds a new cluster's agents have to start its workload before it fails and is
    /// refunded in full. [default: 180]
    #[arg(long, env = "GC_START_DEADLINE_SECS", value_name = "SECS")]
    pub start_deadline_secs: Option<i64>,

    /// Seconds between settlements of running clusters' hire earnings to their providers.
    /// [default: 3600]
    #[arg(long, env = "GC_SETTLE_EVERY_SECS", value_name = "SECS")]
    pub settle_every_secs: Option<i64>,

    /// Dollars per network token at which renters may pay for clusters in the token (the
    /// platform takes the token at this price and refunds at the price each cluster was paid
    /// at). [default: 0.50 with --demo, else unset: clusters are paid in USDC only]
    #[arg(long, env = "GC_TOKEN_PRICE_USD", value_name = "USD")]
    pub token_price_usd: Option<String>,

    /// Network tokens each hourly reward block emits. [default: 10000]
    #[arg(long, env = "GC_BLOCK_EMISSION", value_name = "TOKENS")]
    pub block_emission: Option<String>,

    /// Seconds after its hour ends that a block closes, so every server has written the
    /// uptime of that hour first. [default: 900]
    #[arg(long, env = "GC_BLOCK_CLOSE_DELAY_SECS", value_name = "SECS")]
    pub block_close_delay_secs: Option<i64>,

    /// Solana JSON-RPC endpoint payouts are sent to. [default: the public endpoint of
    /// --solana-cluster]
    #[arg(long, env = "GC_SOLANA_RPC_URL", value_name = "URL")]
    pub solana_rpc_url: Option<String>,

    /// The treasury's key file (Solana CLI format, mode 0600) that signs payouts. Without it
    /// the server runs without payouts: providers' balances stay claimable.
    #[arg(long, env = "GC_TREASURY_KEY", value_name = "FILE")]
    pub treasury_key: Option<PathBuf>,

    /// USDC mint hire earnings are paid in. [default: Circle's USDC on --solana-cluster]
    #[arg(long, env = "GC_USDC_MINT", value_name = "ADDRESS")]
    pub usdc_mint: Option<String>,

    /// The network token's mint block rewards are paid in (6 decimals). Needed with
    /// --treasury-key.
    #[arg(long, env = "GC_TOKEN_MINT", value_name = "ADDRESS")]
    pub token_mint: Option<String>,

    /// The smallest claim or deposit in USDC: a transfer costs the treasury a fee, which dust
    /// would not cover. [default: 1]
    #[arg(long, env = "GC_MIN_TRANSFER_USD", value_name = "USD")]
    pub min_transfer_usd: Option<String>,

    /// The smallest claim or deposit of the network token. [default: 1]
    #[arg(long, env = "GC_MIN_TRANSFER_TOKENS", value_name = "TOKENS")]
    pub min_transfer_tokens: Option<String>,

    /// Log filter, e.g. info or server=debug,sqlx=warn. [default: info]
    #[arg(long, env = "GC_LOG", value_name = "FILTER")]
    pub log: Option<String>,
}

/// Operator tasks, run against the configured database instead of starting the server.
#[derive(clap::Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Load a simulated network (devices with a realistic mix of models, countries, tiers and
    /// states, their uptime history, and closed reward blocks) into an empty database, for
    /// demos and benchmarks. Simulated devices are marked as such everywhere.
    Seed {
        /// Devices to make.
        #[arg(long, default_value_t = 1_000_000)]
        devices: usize,
        /// Days of daily uptime history per device in service.
        #[arg(long, default_value_t = 7)]
        history_days: i64,
        /// Reward blocks to close over the seeded uptime (the last hours).
        #[arg(long, default_value_t = 3)]
        blocks: i64,
    },
    /// Credit a renter's balance (a promotion or a goodwill refund), once per --key.
    Credit {
        /// The renter's wallet address (the account must have signed in once).
        #[arg(long)]
        wallet: String,
        /// Dollars to credit, e.g. 25 or 12.50.
        #[arg(long, required_unless_present = "tokens", conflicts_with = "tokens")]
        usd: Option<String>,
        /// Network tokens (GCT) to credit instead, e.g. 1000 or 0.5.
        #[arg(long)]
        tokens: Option<String>,
        /// Makes the credit happen once: the same key again changes nothing.
        #[arg(long)]
        key: String,
        /// Shown in the renter's billing.
        #[arg(long, default_value = "operator credit")]
        memo: String,
    },
    /// Record a certified facility, or change its standards or date; its devices meet those
    /// standards (for SOC 2 and HIPAA clusters) through --until.
    Facility {
        /// The facility's name, e.g. "Equinix FR5".
        #[arg(long)]
        name: String,
        /// What it is certified for: soc2, hipaa or soc2,hipaa.
        #[arg(long)]
        standards: String,
        /// The last day (UTC) the certification holds, e.g. 2027-06-30.
        #[arg(long)]
        until: String,
    },
    /// Place devices in a recorded facility (all or none): they meet its standards while it
    /// holds them.
    Attest {
        /// The facility's name, as recorded.
        #[arg(long)]
        facility: String,
        /// A device id; repeat for more.
        #[arg(long = "device", required = true)]
        devices: Vec<String>,
    },
    /// Take devices out of their facility: they no longer meet its standards.
    Unattest {
        /// A device id; repeat for more.
        #[arg(long = "device", required = true)]
        devices: Vec<String>,
    },
    /// List the certified facilities with their standards, dates and devices.
    Facilities,
    /// Lift the block of a device blocked for abuse or failed verification: it goes back to
    /// pending and must pass verification again. Running servers apply it within a minute.
    Unblock {
        /// The blocked device's id.
        #[arg(long)]
        device: String,
    },
}

/// Where and with what payouts are paid.
#[derive(Debug, Clone)]
pub struct PayoutSettings {
    pub rpc_url: Url,
    pub treasury_key: PathBuf,
    pub usdc_mint: chain::Pubkey,
    pub token_mint: chain::Pubkey,
    pub minimums: domain::payout::Minimums,
}

/// Circle's USDC mint on each Solana cluster.
fn usdc_mint_of(cluster: &str) -> &'static str {
    match cluster {
        "mainnet" => "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        _ => "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
    }
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub public_url: Option<Url>,
    /// None runs no tunnels.
    pub tunnel_listen: Option<SocketAddr>,
    pub tunnel_url: Option<Url>,
    /// None chooses by the tunnel URL's host (see `domain::tunnel::TunnelOrigin::new`).
    pub tunnel_hosts: Option<domain::tunnel::TunnelHosts>,
    /// Where other replicas relay tunnels to this one; None when they cannot.
    pub replica_host: Option<String>,
    /// None serves no metrics.
    pub metrics_listen: Option<SocketAddr>,
    pub site_root: PathBuf,
    pub chain_id: String,
    /// 0 when no demo fleet is wanted.
    pub demo_devices: usize,
    /// `count` 0 when no demo agents are wanted.
    pub demo_agents: DemoAgentSettings,
    /// The agent binary offered for download (nothing is offered when it is not there).
    pub agent_binary: PathBuf,
    pub sign_in_ttl_secs: i64,
    pub session_idle_secs: i64,
    pub session_max_secs: i64,
    pub request_timeout: Duration,
    pub explorer_requests_per_sec: u32,
    pub registrations_per_minute: u32,
    /// Whose word on the client's address the server takes (issue 16).
    pub trusted_proxies: crate::client_address::TrustedProxies,
    pub fleet: platform::agents::FleetConfig,
    pub registration_ttl_secs: i64,
    pub flush_interval: Duration,
    pub welcome_credit: domain::money::MicroUsd,
    pub provisioning: platform::provisioning::ProvisioningConfig,
    pub rewards: platform::rewards::RewardsConfig,
    /// None runs without payouts.
    pub payouts: Option<PayoutSettings>,
    pub log: String,
}

impl Settings {
    /// Fills every unset field from `lower`.
    fn or(self, lower: Settings) -> Settings {
        Settings {
            config: self.config.or(lower.config),
            command: self.command,
            listen: self.listen.or(lower.listen),
            database_url: self.database_url.or(lower.database_url),
            public_url: self.public_url.or(lower.public_url),
            tunnel_listen: self.tunnel_listen.or(lower.tunnel_listen),
            tunnel_url: self.tunnel_url.or(lower.tunnel_url),
            tunnel_hosts: self.tunnel_hosts.or(lower.tunnel_hosts),
            replica_host: self.replica_host.or(lower.replica_host),
            metrics_listen: self.metrics_listen.or(lower.metrics_listen),
            site_root: self.site_root.or(lower.site_root),
            solana_cluster: self.solana_cluster.or(lower.solana_cluster),
            demo: self.demo.or(lower.demo),
            demo_devices: self.demo_devices.or(lower.demo_devices),
            accept_simulated_devices: self
                .accept_simulated_devices
                .or(lower.accept_simulated_devices),
            demo_agents: self.demo_agents.or(lower.demo_agents),
            agent_binary: self.agent_binary.or(lower.agent_binary),
            demo_agents_dir: self.demo_agents_dir.or(lower.demo_agents_dir),
            sign_in_ttl_secs: self.sign_in_ttl_secs.or(lower.sign_in_ttl_secs),
            session_idle_secs: self.session_idle_secs.or(lower.session_idle_secs),
            session_max_secs: self.session_max_secs.or(lower.session_max_secs),
            request_timeout_secs: self.request_timeout_secs.or(lower.request_timeout_secs),
            explorer_requests_per_sec: self
                .explorer_requests_per_sec
                .or(lower.explorer_requests_per_sec),
            registrations_per_minute: self
                .registrations_per_minute
                .or(lower.registrations_per_minute),
            trusted_proxies: self.trusted_proxies.or(lower.trusted_proxies),
            heartbeat_interval_secs: self
                .heartbeat_interval_secs
                .or(lower.heartbeat_interval_secs),
            down_after_secs: self.down_after_secs.or(lower.down_after_secs),
            registration_ttl_secs: self.registration_ttl_secs.or(lower.registration_ttl_secs),
            speed_test_bytes: self.speed_test_bytes.or(lower.speed_test_bytes),
            flush_interval_secs: self.flush_interval_secs.or(lower.flush_interval_secs),
            welcome_credit_usd: self.welcome_credit_usd.or(lower.welcome_credit_usd),
            start_deadline_secs: self.start_deadline_secs.or(lower.start_deadline_secs),
            settle_every_secs: self.settle_every_secs.or(lower.settle_every_secs),
            token_price_usd: self.token_price_usd.or(lower.token_price_usd),
            block_emission: self.block_emission.or(lower.block_emission),
            block_close_delay_secs: self.block_close_delay_secs.or(lower.block_close_delay_secs),
            solana_rpc_url: self.solana_rpc_url.or(lower.solana_rpc_url),
            treasury_key: self.treasury_key.or(lower.treasury_key),
            usdc_mint: self.usdc_mint.or(lower.usdc_mint),
            token_mint: self.token_mint.or(lower.token_mint),
            min_transfer_usd: self.min_transfer_usd.or(lower.min_transfer_usd),
            min_transfer_tokens: self.min_transfer_tokens.or(lower.min_transfer_tokens),
            log: self.log.or(lower.log),
        }
    }

    fn from_file(path: &Path) -> Result<Settings, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the config file '{}': {e}",
                path.display()
            ))
        })?;
        toml::from_str(&text)
            .map_err(|e| Error::Config(format!("config file '{}': {e}", path.display())))
    }

    /// Merges the file (if any) under these flags/environment values and validates the result.
    pub fn resolve(self) -> Result<Config, Error> {
        let settings = match &self.config {
            Some(path) => {
                let file = Settings::from_file(path)?;
                self.or(file)
            }
            None => self,
        };
        settings.validate()
    }
}

impl Config {
    /// Defaults with the given database and a free port: what tests and tools start from.
    pub fn for_database(database_url: &str) -> Result<Config, Error> {
        Settings {
            listen: Some("127.0.0.1:0".into()),
            database_url: Some(database_url.into()),
            ..Settings::default()
        }
        .validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, Error> {
        let mut argv = vec!["gpu-commons"];
        argv.extend_from_slice(args);
        Settings::try_parse_from(argv)
            .map_err(|e| Error::Config(e.to_string()))?
            .validate()
    }

    fn message(args: &[&str]) -> String {
        parse(args).unwrap_err().to_string()
    }

    #[test]
    fn tunnels_have_an_origin_of_their_own() {
        let config = parse(&["--listen", "127.0.0.1:3000"]).unwrap();
        assert_eq!(config.tunnel_listen.unwrap().to_string(), "127.0.0.1:3001");
        assert_eq!(
            parse(&["--listen", "127.0.0.1:0"])
                .unwrap()
                .tunnel_listen
                .unwrap()
                .port(),
            0
        );
        assert!(parse(&["--tunnel-listen", "off"])
            .unwrap()
            .tunnel_listen
            .is_none());
        assert!(message(&[
            "--listen",
            "127.0.0.1:4000",
            "--tunnel-listen",
            "127.0.0.1:4000"
        ])
        .contains("must differ from --listen"));
        assert!(message(&["--tunnel-listen", "nowhere"]).contains("--tunnel-listen 'nowhere'"));
        assert!(message(&["--listen", "127.0.0.1:65535"]).contains("--tunnel-listen"));
        assert!(message(&[
            "--public-url",
            "https://gpu.example",
            "--tunnel-url",
            "https://gpu.example/"
        ])
        .contains("another origin"));
        let apart = parse(&[
            "--public-url",
            "https://gpu.example",
            "--tunnel-url",
            "https://tunnels.gpu.example",
        ])
        .unwrap();
        assert_eq!(
            apart.tunnel_url.unwrap().host_str(),
            Some("tunnels.gpu.example")
        );
    }

    #[test]
    fn other_replicas_relay_tunnels_to_the_listeners_ip_or_the_host_given() {
        let host = |args: &[&str]| parse(args).unwrap().replica_host;
        assert_eq!(
            host(&["--listen", "10.0.0.5:3000"]).as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            host(&["--tunnel-listen", "[::1]:3001"]).as_deref(),
            Some("[::1]")
        );
        // "Every interface" is no address another replica can reach.
        assert_eq!(host(&["--listen", "0.0.0.0:3000"]), None);
        assert_eq!(host(&["--tunnel-listen", "off"]), None);
        assert_eq!(
            host(&[
                "--listen",
                "0.0.0.0:3000",
                "--replica-host",
                "node-2.internal"
            ])
            .as_deref(),
            Some("node-2.internal")
        );
        for wrong in ["node-2:3001", "http://node-2", ""] {
            assert!(
                message(&["--replica-host", wrong]).contains("--replica-host"),
                "{wrong}"
            );
        }
    }

    #[test]
    fn tunnel_hosts_are_per_device_unless_shared_is_asked_or_the_host_is_an_ip() {
        use domain::tunnel::TunnelHosts;
        let origin = |args: &[&str]| {
            let config = parse(args).unwrap();
            tunnel_origin(&config.tunnel_url.unwrap(), config.tunnel_hosts)
                .unwrap()
                .hosts()
        };
        let named = ["--tunnel-url", "https://tunnels.gpu.example"];
        assert_eq!(origin(&named), TunnelHosts::PerDevice);
        let shared = [&named[..], &["--tunnel-hosts", "shared"]].concat();
        assert_eq!(origin(&shared), TunnelHosts::Shared);
        assert_eq!(
            origin(&["--tunnel-url", "http://10.0.0.9:3001"]),
            TunnelHosts::Shared
        );
        assert!(message(&[
            "--tunnel-url",
            "http://10.0.0.9:3001",
            "--tunnel-hosts",
            "per-device"
        ])
        .contains("need a DNS name"));
        assert!(message(&["--tunnel-hosts", "sideways"]).contains("--tunnel-hosts 'sideways'"));
    }

    #[test]
    fn only_a_demo_network_takes_simulated_devices_unless_told() {
        assert!(!parse(&[]).unwrap().fleet.accept_simulated);
        assert!(parse(&["--demo"]).unwrap().fleet.accept_simulated);
        assert!(
            !parse(&["--demo", "--accept-simulated-devices", "false"])
                .unwrap()
                .fleet
                .accept_simulated
        );
        assert!(
            parse(&["--accept-simulated-devices"])
                .unwrap()
                .fleet
                .accept_simulated
        );
    }

    #[test]
    fn promotional_credit_is_limited_except_on_a_demo_network() {
        assert!(parse(&[]).unwrap().provisioning.limit_promotional_credit);
        assert!(
            !parse(&["--demo"])
                .unwrap()
                .provisioning
                .limit_promotional_credit
        );
    }

    #[test]
    fn defaults_run_on_embedded_sqlite() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(config.database_url, "sqlite://data/gpu-commons.db");
        assert_eq!(config.chain_id, "solana:devnet");
        assert_eq!(config.demo_devices, 0);
        assert_eq!(parse(&["--demo"]).unwrap().demo_devices, 500);
        assert_eq!(config.demo_agents.count, 0);
        let demo_agents = parse(&["--demo"]).unwrap().demo_agents;
        assert_eq!(demo_agents.count, 4);
        assert_eq!(demo_agents.dir, PathBuf::from("data/demo-agents"));
        assert!(demo_agents.binary.ends_with("gpu-commons-agent"));
        assert_eq!(
            config.provisioning.token_price, None,
            "USDC only unless priced"
        );
        let demo = parse(&["--demo", "--token-price-usd", "0.125"]).unwrap();
        assert_eq!(
            demo.provisioning.token_price.map(|p| p.to_string()),
            Some("$0.125 per GCT".into())
        );
    }

    #[test]
    fn every_bad_value_gets_a_message_naming_it() {
        assert!(message(&["--listen", "localhost"]).contains("--listen 'localhost'"));
        assert!(message(&["--database-url", "mysql://x"]).contains("must start with sqlite:"));
        assert!(message(&["--public-url", "ftp://x"]).contains("expected http(s)://host"));
        assert!(message(&["--public-url", "not a url"]).contains("not a URL"));
        assert!(message(&["--solana-cluster", "moon"]).contains("mainnet, devnet or testnet"));
        assert!(message(&["--session-idle-secs", "0"]).contains("positive"));
        assert!(message(&["--session-idle-secs", "59"]).contains("must be at least 300"));
        assert!(
            message(&["--session-idle-secs", "400", "--session-max-secs", "350"])
                .contains("must not exceed")
        );
        assert!(message(&["--demo", "true", "--demo-devices", "0"]).contains("at least one device"));
        assert!(message(&["--demo-agents", "2"]).contains("add --demo"));
        assert!(
            message(&["--demo", "--demo-agents", "33"]).contains("--demo-agents '33': at most 32")
        );
        assert!(message(&["--sign-in-ttl-secs", "soon"]).contains("invalid value"));
        assert!(
            message(&["--heartbeat-interval-secs", "10", "--down-after-secs", "15"])
                .contains("at least twice --heartbeat-interval-secs")
        );
        assert!(message(&["--speed-test-bytes", "10"]).contains("1 KiB–1 GiB"));
        assert!(message(&["--flush-interval-secs", "0"]).contains("1–300"));
        assert!(message(&["--settle-every-secs", "0"]).contains("positive"));
        assert!(message(&["--token-price-usd", "0"]).contains("--token-price-usd '0'"));
        assert!(message(&["--token-price-usd", "free"]).contains("not an amount in dollars"));
        assert!(message(&["--min-transfer-usd", "0"])
            .contains("--min-transfer-usd '0': must be more than zero"));
        assert!(message(&["--min-transfer-tokens", "x"]).contains("--min-transfer-tokens 'x'"));
        assert!(message(&["--block-emission", "lots"]).contains("--block-emission 'lots'"));
        assert!(message(&["--block-emission=-1"]).contains("must not be negative"));
        assert!(message(&["--block-close-delay-secs", "7200"]).contains("between 0 and 3600"));
        assert!(message(&["--treasury-key", "k.json"]).contains("--token-mint is needed"));
        assert!(
            message(&["--treasury-key", "k.json", "--token-mint", "nope"])
                .contains("--token-mint 'nope': 'nope' is not a Solana address")
        );
        assert!(message(&[
            "--treasury-key",
            "k.json",
            "--token-mint",
            "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
            "--solana-rpc-url",
            "ftp://x"
        ])
        .contains("expected http(s)://host"));
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("gc-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("gc.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:8080\"\nsolana_cluster = \"mainnet\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let config =
            Settings::try_parse_from(["gpu-commons", "--config", path, "--listen", "127.0.0.1:9"])
                .unwrap()
                .resolve()
                .unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9");
        assert_eq!(config.chain_id, "solana:mainnet");

        std::fs::write(&file, "listen = \"0.0.0.0:8080\"\ncolour = \"blue\"\n").unwrap();
        let err = Settings::try_parse_from(["gpu-commons", "--config", path])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    }
}
