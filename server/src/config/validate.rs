//! Checks every setting and builds the [`Config`]: each bad value is refused with a message that
//! names the flag, the value and what is expected.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::{usdc_mint_of, Config, PayoutSettings, Settings};
use crate::demo_agents::{DemoAgentSettings, DEFAULT_DEMO_AGENTS, MAX_DEMO_AGENTS};
use crate::Error;

fn bad(flag: &str, value: &dyn std::fmt::Display, why: &str) -> Error {
    Error::Config(format!("--{flag} '{value}': {why}"))
}

fn positive(flag: &str, value: Option<i64>, default: i64) -> Result<i64, Error> {
    match value.unwrap_or(default) {
        v if v > 0 => Ok(v),
        v => Err(bad(flag, &v, "must be a positive number of seconds")),
    }
}

/// Where the server listens and what it talks to.
struct Endpoints {
    listen: SocketAddr,
    database_url: String,
    public_url: Option<Url>,
    tunnel_listen: Option<SocketAddr>,
    tunnel_url: Option<Url>,
    tunnel_hosts: Option<domain::tunnel::TunnelHosts>,
    replica_host: Option<String>,
    metrics_listen: Option<SocketAddr>,
    /// The Solana cluster's name: mainnet, devnet or testnet.
    cluster: String,
}

/// Sign-in and request limits.
struct Sessions {
    sign_in_ttl_secs: i64,
    session_idle_secs: i64,
    session_max_secs: i64,
    request_timeout: Duration,
    explorer_requests_per_sec: u32,
    registrations_per_minute: u32,
}

impl Settings {
    pub(super) fn validate(mut self) -> Result<Config, Error> {
        let endpoints = self.endpoints()?;
        let sessions = self.sessions()?;
        let demo_devices = self.demo_devices()?;
        let demo_agents = self.demo_agents(demo_devices)?;
        let fleet = self.fleet(demo_devices)?;
        let registration_ttl_secs =
            positive("registration-ttl-secs", self.registration_ttl_secs, 3600)?;
        let flush_interval_secs = self.flush_interval_secs.unwrap_or(60);
        if !(1..=300).contains(&flush_interval_secs) {
            return Err(bad(
                "flush-interval-secs",
                &flush_interval_secs,
                "must be 1–300",
            ));
        }
        let welcome_credit = self.welcome_credit(demo_devices)?;
        let provisioning = self.provisioning(demo_devices)?;
        let rewards = self.rewards()?;
        let payouts = self.payouts(&endpoints.cluster)?;
        let trusted_proxies = match self.trusted_proxies.take() {
            Some(list) => crate::client_address::TrustedProxies::parse(&list)
                .map_err(|why| bad("trusted-proxies", &list, &why))?,
            None => Default::default(),
        };
        let log = self.log.take().unwrap_or_else(|| "info".into());
        tracing_subscriber::EnvFilter::try_new(&log)
            .map_err(|e| bad("log", &log, &e.to_string()))?;
        Ok(Config {
            listen: endpoints.listen,
            database_url: endpoints.database_url,
            public_url: endpoints.public_url,
            tunnel_listen: endpoints.tunnel_listen,
            tunnel_url: endpoints.tunnel_url,
            tunnel_hosts: endpoints.tunnel_hosts,
            replica_host: endpoints.replica_host,
            metrics_listen: endpoints.metrics_listen,
            site_root: self
                .site_root
                .take()
                .unwrap_or_else(|| PathBuf::from("target/site")),
            chain_id: format!("solana:{}", endpoints.cluster),
            demo_devices,
            agent_binary: demo_agents.binary.clone(),
            demo_agents,
            sign_in_ttl_secs: sessions.sign_in_ttl_secs,
            session_idle_secs: sessions.session_idle_secs,
            session_max_secs: sessions.session_max_secs,
            request_timeout: sessions.request_timeout,
            explorer_requests_per_sec: sessions.explorer_requests_per_sec,
            registrations_per_minute: sessions.registrations_per_minute,
            trusted_proxies,
            fleet,
            registration_ttl_secs,
            flush_interval: Duration::from_secs(flush_interval_secs),
            welcome_credit,
            provisioning,
            rewards,
            payouts,
            log,
        })
    }

    fn endpoints(&mut self) -> Result<Endpoints, Error> {
        let listen_text = self
            .listen
            .take()
            .unwrap_or_else(|| "127.0.0.1:3000".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            bad(
                "listen",
                &listen_text,
                "expected an IP address and port, e.g. 127.0.0.1:3000 or 0.0.0.0:8080",
            )
        })?;
        let database_url = self
            .database_url
            .take()
            .unwrap_or_else(|| "sqlite://data/gpu-commons.db".into());
        platform::store::Backend::of_url(&database_url)
            .map_err(|e| Error::Config(format!("--database-url: {e}")))?;
        let site_url = |flag: &str, text: String| {
            let url =
                Url::parse(&text).map_err(|e| bad(flag, &text, &format!("not a URL ({e})")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(bad(flag, &text, "expected http(s)://host[:port]"));
            }
            Ok(url)
        };
        let public_url = self
            .public_url
            .take()
            .map(|text| site_url("public-url", text))
            .transpose()?;
        let tunnel_listen = match self.tunnel_listen.take() {
            Some(text) if text == "off" => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                bad(
                    "tunnel-listen",
                    &text,
                    "expected an IP address and port, e.g. 127.0.0.1:3001, or off",
                )
            })?),
            None => Some(SocketAddr::new(
                listen.ip(),
                match listen.port() {
                    0 => 0,
                    port => port.checked_add(1).ok_or_else(|| {
                        bad(
                            "tunnel-listen",
                            &"",
                            "must be given when --listen's port is 65535",
                        )
                    })?,
                },
            )),
        };
        if tunnel_listen.is_some_and(|t| t.port() != 0 && t == listen) {
            return Err(bad(
                "tunnel-listen",
                &listen,
                "must differ from --listen: workloads' answers never share the console's origin",
            ));
        }
        let tunnel_url = self
            .tunnel_url
            .take()
            .map(|text| site_url("tunnel-url", text))
            .transpose()?;
        if let (Some(tunnel), Some(public)) = (&tunnel_url, &public_url) {
            if tunnel.origin() == public.origin() {
                return Err(bad(
                    "tunnel-url",
                    tunnel,
                    "must be another origin than --public-url: workloads' answers never share the console's origin",
                ));
            }
        }
        let tunnel_hosts = self
            .tunnel_hosts
            .take()
            .map(|text| {
                domain::tunnel::TunnelHosts::parse(&text)
                    .map_err(|e| bad("tunnel-hosts", &text, &e.to_string()))
            })
            .transpose()?;
        if let Some(url) = &tunnel_url {
            tunnel_origin(url, tunnel_hosts).map_err(|e| bad("tunnel-hosts", url, &e))?;
        }
        let replica_host = match self.replica_host.take() {
            Some(text) => Some(
                url::Host::parse(&text)
                    .ok()
                    .filter(|_| !text.contains([':', '/']) || text.starts_with('['))
                    .map(|host| host.to_string())
                    .ok_or_else(|| {
                        bad(
                            "replica-host",
                            &text,
                            "expected a host name or IP address alone, e.g. 10.0.0.5",
                        )
                    })?,
            ),
            // Another replica cannot reach "every interface".
            None => tunnel_listen
                .map(|at| at.ip())
                .filter(|ip| !ip.is_unspecified())
                .map(|ip| match ip {
                    std::net::IpAddr::V4(v4) => v4.to_string(),
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                }),
        };
        let metrics_listen = match self.metrics_listen.take() {
            None => None,
            Some(text) if text == "off" => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                bad(
                    "metrics-listen",
                    &text,
                    "expected an IP address and port, e.g. 127.0.0.1:9100, or off",
                )
            })?),
        };
        if metrics_listen
            .is_some_and(|m| m.port() != 0 && (m == listen || Some(m) == tunnel_listen))
        {
            return Err(bad(
                "metrics-listen",
                &listen,
                "must differ from --listen and --tunnel-listen: metrics are not public",
            ));
        }
        let cluster = self
            .solana_cluster
            .take()
            .unwrap_or_else(|| "devnet".into());
        if !matches!(cluster.as_str(), "mainnet" | "devnet" | "testnet") {
            return Err(bad(
                "solana-cluster",
                &cluster,
                "expected mainnet, devnet or testnet",
            ));
        }
        Ok(Endpoints {
            listen,
            database_url,
            public_url,
            tunnel_listen,
            tunnel_url,
            tunnel_hosts,
            replica_host,
            metrics_listen,
            cluster,
        })
    }

    fn sessions(&mut self) -> Result<Sessions, Error> {
        let sign_in_ttl_secs = positive("sign-in-ttl-secs", self.sign_in_ttl_secs, 300)?;
        let session_idle_secs = positive("session-idle-secs", self.session_idle_secs, 86_400)?;
        if session_idle_secs < platform::auth::MIN_SESSION_IDLE_SECS {
            return Err(bad(
                "session-idle-secs",
                &session_idle_secs,
                &format!(
                    "must be at least {} (a session's last use is recorded once a minute)",
                    platform::auth::MIN_SESSION_IDLE_SECS
                ),
            ));
        }
        let session_max_secs = positive("session-max-secs", self.session_max_secs, 30 * 86_400)?;
        if session_idle_secs > session_max_secs {
            return Err(bad(
                "session-idle-secs",
                &session_idle_secs,
                "must not exceed --session-max-secs",
            ));
        }
        let timeout = self.request_timeout_secs.unwrap_or(30);
        if timeout == 0 {
            return Err(bad("request-timeout-secs", &timeout, "must be at least 1"));
        }
        let at_least_one = |flag: &str, value: Option<u32>, default: u32| match value {
            Some(0) => Err(bad(flag, &0, "must be at least 1")),
            value => Ok(value.unwrap_or(default)),
        };
        let explorer_requests_per_sec = at_least_one(
            "explorer-requests-per-sec",
            self.explorer_requests_per_sec,
            20,
        )?;
        let registrations_per_minute = at_least_one(
            "registrations-per-minute",
            self.registrations_per_minute,
            30,
        )?;
        Ok(Sessions {
            sign_in_ttl_secs,
            session_idle_secs,
            session_max_secs,
            request_timeout: Duration::from_secs(timeout),
            explorer_requests_per_sec,
            registrations_per_minute,
        })
    }

    fn demo_devices(&mut self) -> Result<usize, Error> {
        Ok(
            match (self.demo.unwrap_or(false), self.demo_devices.unwrap_or(500)) {
                (false, _) => 0,
                (true, 0) => {
                    return Err(bad(
                        "demo-devices",
                        &0,
                        "a demo fleet needs at least one device",
                    ))
                }
                (true, n) if n > 2_000_000 => {
                    return Err(bad("demo-devices", &n, "at most 2,000,000"))
                }
                (true, n) => n,
            },
        )
    }

    fn demo_agents(&mut self, demo_devices: usize) -> Result<DemoAgentSettings, Error> {
        let demo_agents = match (demo_devices > 0, self.demo_agents) {
            (_, Some(n)) if n > MAX_DEMO_AGENTS => {
                return Err(bad(
                    "demo-agents",
                    &n,
                    &format!("at most {MAX_DEMO_AGENTS}"),
                ))
            }
            (false, Some(n)) if n > 0 => {
                return Err(bad(
                    "demo-agents",
                    &n,
                    "demo agents are part of a demo network: add --demo",
                ))
            }
            (true, n) => n.unwrap_or(DEFAULT_DEMO_AGENTS),
            (false, _) => 0,
        };
        Ok(DemoAgentSettings {
            count: demo_agents,
            binary: match self.agent_binary.take() {
                Some(path) => path,
                None => std::env::current_exe()
                    .map(|server| server.with_file_name("gpu-commons-agent"))
                    .map_err(|e| {
                        Error::Config(format!("cannot find this binary to find the agent beside it ({e}); give --agent-binary"))
                    })?,
            },
            dir: self
                .demo_agents_dir
                .take()
                .unwrap_or_else(|| PathBuf::from("data/demo-agents")),
        })
    }

    fn fleet(&mut self, demo_devices: usize) -> Result<platform::agents::FleetConfig, Error> {
        let defaults = platform::agents::FleetConfig::default();
        let heartbeat_interval_secs = self
            .heartbeat_interval_secs
            .unwrap_or(defaults.heartbeat_interval_secs);
        if !(1..=3600).contains(&heartbeat_interval_secs) {
            return Err(bad(
                "heartbeat-interval-secs",
                &heartbeat_interval_secs,
                "must be 1–3600",
            ));
        }
        let down_after_secs = positive(
            "down-after-secs",
            self.down_after_secs,
            defaults.down_after_secs,
        )?;
        if down_after_secs < 2 * i64::from(heartbeat_interval_secs) {
            return Err(bad(
                "down-after-secs",
                &down_after_secs,
                "must be at least twice --heartbeat-interval-secs, or one late heartbeat marks a device down",
            ));
        }
        let speed_test_bytes = self.speed_test_bytes.unwrap_or(defaults.speed_test_bytes);
        if !(1024..=1024 * 1024 * 1024).contains(&speed_test_bytes) {
            return Err(bad(
                "speed-test-bytes",
                &speed_test_bytes,
                "must be 1 KiB–1 GiB",
            ));
        }
        Ok(platform::agents::FleetConfig {
            heartbeat_interval_secs,
            down_after_secs,
            speed_test_bytes,
            accept_simulated: self.accept_simulated_devices.unwrap_or(demo_devices > 0),
            ..defaults
        })
    }

    fn welcome_credit(&mut self, demo_devices: usize) -> Result<domain::money::MicroUsd, Error> {
        let default_credit = if demo_devices > 0 { "500" } else { "0" };
        let credit_text = self
            .welcome_credit_usd
            .take()
            .unwrap_or_else(|| default_credit.into());
        let welcome_credit = domain::money::MicroUsd::parse_decimal(&credit_text)
            .map_err(|e| bad("welcome-credit-usd", &credit_text, &e.to_string()))?;
        if welcome_credit < domain::money::MicroUsd::ZERO {
            return Err(bad(
                "welcome-credit-usd",
                &credit_text,
                "must not be negative",
            ));
        }
        Ok(welcome_credit)
    }

    fn provisioning(
        &mut self,
        demo_devices: usize,
    ) -> Result<platform::provisioning::ProvisioningConfig, Error> {
        let start_deadline_secs = positive("start-deadline-secs", self.start_deadline_secs, 180)?;
        let settle_every_secs = positive("settle-every-secs", self.settle_every_secs, 3_600)?;
        let token_price = self
            .token_price_usd
            .take()
            .or_else(|| (demo_devices > 0).then(|| "0.50".into()))
            .map(|text| {
                domain::money::TokenPrice::parse_decimal(&text)
                    .map_err(|e| bad("token-price-usd", &text, &e.to_string()))
            })
            .transpose()?;
        Ok(platform::provisioning::ProvisioningConfig {
            start_deadline_secs,
            settle_every_secs,
            token_price,
            // Known once the tunnel listener is bound (start-up sets it).
            tunnel_origin: None,
            // A demo network's credit is play money and its devices simulated.
            limit_promotional_credit: demo_devices == 0,
        })
    }

    fn rewards(&mut self) -> Result<platform::rewards::RewardsConfig, Error> {
        let emission_text = self.block_emission.take().unwrap_or_else(|| "10000".into());
        let emission_per_block = domain::money::Tokens::parse_decimal(&emission_text)
            .map_err(|e| bad("block-emission", &emission_text, &e.to_string()))?;
        if emission_per_block < domain::money::Tokens::ZERO {
            return Err(bad(
                "block-emission",
                &emission_text,
                "must not be negative",
            ));
        }
        let block_close_delay_secs = self.block_close_delay_secs.unwrap_or(900);
        if !(0..=3_600).contains(&block_close_delay_secs) {
            return Err(bad(
                "block-close-delay-secs",
                &block_close_delay_secs,
                "must be between 0 and 3600",
            ));
        }
        Ok(platform::rewards::RewardsConfig {
            emission_per_block,
            close_delay_secs: block_close_delay_secs,
        })
    }

    fn payouts(&mut self, cluster: &str) -> Result<Option<PayoutSettings>, Error> {
        let minimums = {
            use domain::money::{Asset, MicroUsd, Tokens};
            let minimum = |flag: &str, asset: Asset, text: Option<String>| {
                let text = text.unwrap_or_else(|| "1".into());
                match asset.parse_amount(&text) {
                    Ok(units) if units > 0 => Ok(units),
                    Ok(_) => Err(bad(flag, &text, "must be more than zero")),
                    Err(e) => Err(bad(flag, &text, &e.to_string())),
                }
            };
            domain::payout::Minimums {
                usdc: MicroUsd::from_micros(minimum(
                    "min-transfer-usd",
                    Asset::Usdc,
                    self.min_transfer_usd.take(),
                )?),
                tokens: Tokens::from_units(minimum(
                    "min-transfer-tokens",
                    Asset::Token,
                    self.min_transfer_tokens.take(),
                )?),
            }
        };
        Ok(match self.treasury_key.take() {
            None => None,
            Some(treasury_key) => {
                let rpc_text = self.solana_rpc_url.take().unwrap_or_else(|| {
                    let name = if cluster == "mainnet" {
                        "mainnet-beta"
                    } else {
                        cluster
                    };
                    format!("https://api.{name}.solana.com")
                });
                let rpc_url = Url::parse(&rpc_text)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| {
                        bad(
                            "solana-rpc-url",
                            &rpc_text,
                            "expected http(s)://host[:port]",
                        )
                    })?;
                let mint = |flag: &str, text: String| {
                    chain::parse_address(&text).map_err(|e| bad(flag, &text, &e.to_string()))
                };
                let usdc_text = self
                    .usdc_mint
                    .take()
                    .unwrap_or_else(|| usdc_mint_of(cluster).to_owned());
                let token_text = self.token_mint.take().ok_or_else(|| {
                    Error::Config("--token-mint is needed with --treasury-key".into())
                })?;
                Some(PayoutSettings {
                    rpc_url,
                    treasury_key,
                    usdc_mint: mint("usdc-mint", usdc_text)?,
                    token_mint: mint("token-mint", token_text)?,
                    minimums,
                })
            }
        })
    }
}

/// The tunnel origin at `url`, with `hosts` or the default for its host.
pub(crate) fn tunnel_origin(
    url: &Url,
    hosts: Option<domain::tunnel::TunnelHosts>,
) -> Result<domain::tunnel::TunnelOrigin, String> {
    domain::tunnel::TunnelOrigin::new(
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port(),
        hosts,
    )
}
