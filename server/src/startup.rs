//! Start-up: open and migrate the database, build the services, rebuild the in-memory fleet,
//! seed a demo network when asked, then serve and start the background jobs and demo agents.

use std::net::SocketAddr;
use std::sync::Arc;

use app::BUNDLE_NAME;
use domain::tunnel::TunnelOrigin;
use platform::auth::AuthConfig;
use platform::payouts::SolanaAccess;
use platform::store::Store;
use platform::worker::WorkerConfig;
use platform::{Platform, PlatformConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use url::Url;

use crate::agent_delivery::AgentDownloads;
use crate::config::Config;
use crate::demo_agents::DemoAgents;
use crate::Error;
use crate::{jobs, RunningServer};

/// Days of uptime history the demo fleet gets, so its charts and block rewards have data.
const DEMO_HISTORY_DAYS: i64 = 30;
/// Hours of recent hourly uptime a seeded fleet gets: enough for reward streaks (5 h) in the
/// blocks closed just after.
const SEEDED_RECENT_HOURS: i64 = 12;
/// Verified GPU devices per finished cluster in a seeded history.
const SEEDED_DEVICES_PER_CLUSTER: usize = 20;

/// Opens and migrates the database and makes the services over it.
async fn open_platform(
    config: &Config,
    public_url: &Url,
    tunnel_origin: Option<&TunnelOrigin>,
    offered_agent: Option<domain::agent_release::AgentVersion>,
) -> Result<Platform, Error> {
    let store = Store::open(&config.database_url).await?;
    let mut provisioning = config.provisioning.clone();
    provisioning.tunnel_origin = tunnel_origin.cloned();
    Ok(Platform::new(
        store,
        PlatformConfig {
            auth: auth_config(config, public_url),
            worker: WorkerConfig {
                agent_server_url: public_url.as_str().trim_end_matches('/').to_owned(),
                registration_ttl_secs: config.registration_ttl_secs,
                offered_agent,
            },
            fleet: config.fleet.clone(),
            provisioning,
            rewards: config.rewards.clone(),
            solana_access: solana_access(config)?,
        },
    ))
}

/// Seeds a simulated network of `devices` with `history_days` of uptime and a history of
/// finished clusters (unless simulated devices exist already), then closes the last `blocks`
/// reward blocks that are not closed yet. Returns what it did, in words.
pub(crate) async fn seed_network(
    platform: &Platform,
    devices: usize,
    history_days: i64,
    blocks: i64,
) -> Result<String, Error> {
    let now = platform::now();
    let started = std::time::Instant::now();
    let seeded = platform.fleet.seed_demo_fleet(devices, 42, now).await?;
    let at_devices = started.elapsed();
    let (rows, clusters) = if seeded == 0 {
        (0, 0)
    } else {
        let rows = platform
            .fleet
            .seed_uptime_history(history_days, SEEDED_RECENT_HOURS, now)
            .await?;
        let clusters = platform
            .fleet
            .seed_cluster_history(SEEDED_DEVICES_PER_CLUSTER, 42, now)
            .await?;
        (rows, clusters)
    };
    let at_history = started.elapsed();
    let newest = domain::rewards::block_of(now.0) - 1;
    let mut closed = 0;
    for number in (newest + 1 - blocks.max(0))..=newest {
        if platform.rewards.close(number, now).await? {
            closed += 1;
        }
    }
    let blocks_closed = format!(
        "closed {closed} blocks in {:.1} s",
        (started.elapsed() - at_history).as_secs_f64()
    );
    Ok(if seeded == 0 {
        format!("the database already holds a simulated fleet; nothing seeded; {blocks_closed}")
    } else {
        format!(
            "seeded {seeded} devices in {:.1} s, {rows} uptime rows and {clusters} finished clusters in {:.1} s, {blocks_closed}",
            at_devices.as_secs_f64(),
            (at_history - at_devices).as_secs_f64(),
        )
    })
}

/// Binds, opens and migrates the database, seeds the demo fleet if asked, and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, Error> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let public_url = match &config.public_url {
        Some(url) => url.clone(),
        None => Url::parse(&format!("http://{addr}"))
            .map_err(|e| Error::Config(format!("listen address {addr}: {e}")))?,
    };

    let tunnel_listener = match config.tunnel_listen {
        Some(at) => Some(
            TcpListener::bind(at)
                .await
                .map_err(|source| Error::Bind { addr: at, source })?,
        ),
        None => None,
    };
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(
            TcpListener::bind(at)
                .await
                .map_err(|source| Error::Bind { addr: at, source })?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .and_then(|listener| listener.local_addr().ok());
    let tunnel_url = match &tunnel_listener {
        Some(listener) => Some(tunnel_url_of(&config, &public_url, listener)?),
        None => None,
    };

    let tunnel_origin = tunnel_url
        .as_ref()
        .map(|url| {
            crate::config::tunnel_origin(url, config.tunnel_hosts)
                .map_err(|e| Error::Config(format!("--tunnel-hosts for {url}: {e}")))
        })
        .transpose()?;
    let downloads = Arc::new(AgentDownloads::load(&config.agent_binary));
    let platform = open_platform(
        &config,
        &public_url,
        tunnel_origin.as_ref(),
        downloads.offered_version(),
    )
    .await?;
    let serving_lock = platform::store::lock_for_serving(&config.database_url)?;
    // Where this replica starts following other replicas' changes: read before the rebuild,
    // so a change committed during it is mirrored again, never missed.
    let feed_start = platform.replicas.newest_change().await?;
    if let (Some(host), Some(listener)) = (&config.replica_host, &tunnel_listener) {
        let port = listener
            .local_addr()
            .map_err(|e| Error::Config(format!("tunnel listener: {e}")))?
            .port();
        platform
            .replicas
            .advertise_tunnels_at(format!("{host}:{port}"));
    }
    platform.replicas.renew(platform::now()).await?;
    let leadership = crate::replication::Leadership::default();
    let leads = crate::replication::try_to_lead(&platform, &leadership).await?;
    tracing::info!(replica = platform.replicas.id(), leads, "replica started");
    platform.agents.rebuild(platform::now()).await?;
    platform.compliance.refresh(platform::now()).await?;
    if config.demo_devices > 0 {
        seed_network(&platform, config.demo_devices, DEMO_HISTORY_DAYS, 0).await?;
    }
    if !config
        .site_root
        .join("pkg")
        .join(format!("{BUNDLE_NAME}.js"))
        .exists()
    {
        tracing::warn!(
            site_root = %config.site_root.display(),
            "the site has not been built here: pages render but will not hydrate (run `cargo xtask run`)"
        );
    }
    // The explorer's ordered device list is made beside serving, not before it: at a million
    // devices it takes about a second that a restart need not wait for.
    tokio::task::spawn_blocking({
        let platform = platform.clone();
        move || platform.explorer.prepare()
    });
    tokio::spawn({
        let platform = platform.clone();
        async move {
            if let Err(e) = platform.explorer.activity(platform::now()).await {
                tracing::warn!(error = %e, "could not read the explorer's activity figures yet");
            }
        }
    });
    let (stop_jobs, jobs_stopped) = tokio::sync::watch::channel(false);
    let keep_alive =
        crate::replication::keep_alive(platform.clone(), leadership.clone(), jobs_stopped.clone());
    let follower = crate::replication::follow(
        platform.clone(),
        config.database_url.clone(),
        platform::replicas::FeedPosition::starting_at(feed_start),
        jobs_stopped.clone(),
    );
    let metrics_task = metrics_listener.map(|listener| {
        let metrics = crate::metrics::router(
            crate::metrics::install(),
            platform.clone(),
            leadership.clone(),
        );
        tokio::spawn(async move { axum::serve(listener, metrics).await })
    });
    let background = jobs::spawn(
        platform.clone(),
        jobs::Cadences::for_config(&config),
        leadership,
        jobs_stopped,
    );

    let hub = crate::tunnel::TunnelHub::new();
    let router = crate::router::router(platform.clone(), &config, addr, hub.clone()).merge(
        crate::agent_delivery::routes(downloads, public_url.as_str()),
    );
    let tunnel_task = tunnel_listener.map(|listener| {
        let origin = tunnel_origin.clone().expect("an origin for every listener");
        let tunnels = crate::tunnel::proxy::router(platform.clone(), hub, origin);
        tokio::spawn(async move { axum::serve(listener, tunnels).await })
    });
    let (shutdown, stop_signal) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // Peer addresses let the public explorer API limit each client.
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_signal.await;
        })
        .await
    });
    if let Some(url) = &tunnel_url {
        tracing::info!(%url, "tunnels served");
    }
    if let Some(at) = metrics_addr {
        tracing::info!(%at, "metrics served at /metrics");
    }
    tracing::info!(%addr, %public_url, database = %platform::store::redact(&config.database_url), "serving");
    let agent_url = public_url.as_str().trim_end_matches('/');
    let demo_agents = DemoAgents::start(&platform, &config.demo_agents, agent_url).await?;
    Ok(RunningServer {
        addr,
        public_url,
        tunnel_url,
        metrics_addr,
        platform,
        shutdown,
        task,
        tunnel_task,
        metrics_task,
        jobs: background,
        stop_jobs,
        demo_agents,
        keep_alive,
        follower,
        _serving_lock: serving_lock,
    })
}

/// Where renters reach the tunnel listener: `--tunnel-url`, or the public URL's scheme and
/// host with the listener's port.
fn tunnel_url_of(config: &Config, public_url: &Url, listener: &TcpListener) -> Result<Url, Error> {
    if let Some(url) = &config.tunnel_url {
        return Ok(url.clone());
    }
    let port = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("tunnel listener: {e}")))?
        .port();
    let mut url = public_url.clone();
    url.set_path("/");
    url.set_port(Some(port))
        .map_err(|()| Error::Config(format!("the public URL {public_url} cannot take a port")))?;
    Ok(url)
}

fn auth_config(config: &Config, public_url: &Url) -> AuthConfig {
    let host = public_url.host_str().unwrap_or("localhost");
    let domain = match public_url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    AuthConfig {
        domain,
        uri: public_url.as_str().trim_end_matches('/').to_owned(),
        chain_id: config.chain_id.clone(),
        nonce_ttl_secs: config.sign_in_ttl_secs,
        session_idle_secs: config.session_idle_secs,
        session_max_secs: config.session_max_secs,
        welcome_credit: config.welcome_credit,
    }
}

/// The chain side of payouts, when the configuration enables them: reads the treasury key.
fn solana_access(config: &Config) -> Result<Option<Arc<SolanaAccess>>, Error> {
    let Some(settings) = &config.payouts else {
        return Ok(None);
    };
    let treasury = chain::read_treasury_key(&settings.treasury_key)
        .map_err(|e| Error::Config(e.to_string()))?;
    let rpc =
        chain::HttpRpc::new(settings.rpc_url.as_str()).map_err(|e| Error::Config(e.to_string()))?;
    let mint = |address| chain::TokenMint {
        address,
        decimals: 6,
    };
    {
        use chain::Signer;
        tracing::info!(treasury = %treasury.pubkey(), rpc = %settings.rpc_url, "payouts enabled");
    }
    Ok(Some(Arc::new(SolanaAccess {
        cluster: config.chain_id.trim_start_matches("solana:").to_owned(),
        rpc: Arc::new(rpc),
        treasury,
        usdc: mint(settings.usdc_mint),
        token: mint(settings.token_mint),
        minimums: settings.minimums,
    })))
}

/// The platform an operator task works on (no fleet loaded, nothing served).
pub(crate) async fn open_platform_for_task(config: &Config) -> Result<Platform, Error> {
    let public_url = match &config.public_url {
        Some(url) => url.clone(),
        None => Url::parse(&format!("http://{}", config.listen))
            .map_err(|e| Error::Config(format!("listen address: {e}")))?,
    };
    open_platform(config, &public_url, None, None).await
}
