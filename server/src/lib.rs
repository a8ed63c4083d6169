//! The GPU Commons server: builds the platform from a [`Config`], wires the Leptos app, the JSON
//! API and the health endpoints into one axum router with the HTTP middleware, and serves it.

pub mod agent_api;
pub mod api;
pub mod config;
pub mod demo_agents;
pub mod error;
pub mod explorer_api;
mod openapi;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use app::{shell, App, BUNDLE_NAME};
use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use platform::agents::Flush;
use platform::auth::AuthConfig;
use platform::payouts::SolanaAccess;
use platform::store::Store;
use platform::worker::WorkerConfig;
use platform::{Platform, PlatformConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use url::Url;

pub use config::{Command, Config, PayoutSettings, Settings};
use demo_agents::DemoAgents;
pub use error::Error;

/// How long a stop waits for open requests, and then for database connections, to finish.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// A server that is listening. Dropping it does not stop it; call [`RunningServer::stop`].
pub struct RunningServer {
    pub addr: SocketAddr,
    pub public_url: Url,
    pub platform: Platform,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
    monitor: JoinHandle<()>,
    stop_monitor: tokio::sync::watch::Sender<bool>,
    demo_agents: DemoAgents,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, writes the merged heartbeats, and
    /// closes the database. Requests that do not finish within [`STOP_GRACE`] are cut off, and
    /// database connections not handed back by then are left to the process's end: a stop
    /// never hangs.
    pub async fn stop(self) {
        // The agents first, while the server can still hear their workloads stop.
        self.demo_agents.stop().await;
        self.platform.agents.release_waits();
        let _ = self.shutdown.send(());
        let task = self.task.abort_handle();
        match tokio::time::timeout(STOP_GRACE, self.task).await {
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "server ended with an error"),
            Err(_) => {
                tracing::warn!(
                    "requests still open after the stop's grace period; cutting them off"
                );
                task.abort();
            }
            _ => {}
        }
        // Let a flush in progress finish: aborting it would drop the heartbeats it had taken.
        let _ = self.stop_monitor.send(true);
        if let Err(e) = self.monitor.await {
            tracing::error!(error = %e, "the fleet monitor ended abnormally");
        }
        if let Err(e) = self
            .platform
            .agents
            .flush(Flush::Everything, platform::now())
            .await
        {
            tracing::error!(error = %e, "could not write the last heartbeats");
        }
        if tokio::time::timeout(STOP_GRACE, self.platform.store.close())
            .await
            .is_err()
        {
            tracing::warn!("database connections still in use after the stop's grace period");
        }
    }

    /// Waits until the server ends on its own (it does not, short of an I/O failure).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match (&mut self.task).await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        }
    }
}

/// Days of uptime history the demo fleet gets, so its charts and block rewards have data.
const DEMO_HISTORY_DAYS: i64 = 30;
/// Hours of recent hourly uptime a seeded fleet gets: enough for reward streaks (5 h) in the
/// blocks closed just after.
const SEEDED_RECENT_HOURS: i64 = 12;
/// Verified GPU devices per finished cluster in a seeded history.
const SEEDED_DEVICES_PER_CLUSTER: usize = 20;

/// Opens and migrates the database and makes the services over it.
async fn open_platform(config: &Config, public_url: &Url) -> Result<Platform, Error> {
    let store = Store::open(&config.database_url).await?;
    Ok(Platform::new(
        store,
        PlatformConfig {
            auth: auth_config(config, public_url),
            worker: WorkerConfig {
                agent_server_url: public_url.as_str().trim_end_matches('/').to_owned(),
                registration_ttl_secs: config.registration_ttl_secs,
            },
            fleet: config.fleet.clone(),
            provisioning: config.provisioning.clone(),
            rewards: config.rewards.clone(),
            solana_access: solana_access(config)?,
        },
    ))
}

/// Seeds a simulated network of `devices` with `history_days` of uptime and a history of
/// finished clusters (unless simulated devices exist already), then closes the last `blocks`
/// reward blocks that are not closed yet. Returns what it did, in words.
async fn seed_network(
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

    let platform = open_platform(&config, &public_url).await?;
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
    spawn_expiry_sweeper(platform.clone());
    let (stop_monitor, monitor_stopped) = tokio::sync::watch::channel(false);
    let monitor = spawn_fleet_monitor(platform.clone(), config.flush_interval, monitor_stopped);

    let router = router(platform.clone(), &config, addr);
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
    tracing::info!(%addr, %public_url, database = %platform::store::redact(&config.database_url), "serving");
    let agent_url = public_url.as_str().trim_end_matches('/');
    let demo_agents = DemoAgents::start(&platform, &config.demo_agents, agent_url).await?;
    Ok(RunningServer {
        addr,
        public_url,
        platform,
        shutdown,
        task,
        monitor,
        stop_monitor,
        demo_agents,
    })
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

/// Deletes dead sign-in nonces and sessions every few minutes so the tables stay small.
fn spawn_expiry_sweeper(platform: Platform) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(300));
        loop {
            every.tick().await;
            match platform.auth.purge_expired(platform::now()).await {
                Ok(removed) => {
                    tracing::debug!(removed, "purged expired sign-in nonces and sessions")
                }
                Err(e) => tracing::warn!(error = %e, "could not purge expired sessions"),
            }
        }
    });
}

/// The platform an operator task works on (no fleet loaded, nothing served).
async fn open_platform_for_task(config: &Config) -> Result<Platform, Error> {
    let public_url = match &config.public_url {
        Some(url) => url.clone(),
        None => Url::parse(&format!("http://{}", config.listen))
            .map_err(|e| Error::Config(format!("listen address: {e}")))?,
    };
    open_platform(config, &public_url).await
}

/// Runs an operator task against the configured database; returns what it did, in words.
pub async fn run_command(config: &Config, command: Command) -> Result<String, Error> {
    match command {
        Command::Seed {
            devices,
            history_days,
            blocks,
        } => {
            let platform = open_platform_for_task(config).await?;
            let done = seed_network(&platform, devices, history_days, blocks).await;
            platform.store.close().await;
            done
        }
        Command::Facility {
            name,
            standards,
            until,
        } => {
            let now = platform::now();
            let facility = domain::compliance::Facility::new(&name, &standards, &until, now)
                .map_err(Error::Config)?;
            let platform = open_platform_for_task(config).await?;
            let done = platform.compliance.set_facility(&facility, now).await;
            platform.store.close().await;
            done?;
            Ok(format!(
                "facility '{}' holds {} through {until}; running servers apply it within a minute",
                facility.name,
                facility.standards.names()
            ))
        }
        Command::Attest { facility, devices } => {
            let platform = open_platform_for_task(config).await?;
            let done = platform
                .compliance
                .attest(&facility, &devices, platform::now())
                .await;
            platform.store.close().await;
            done?;
            Ok(format!(
                "{} device(s) placed in '{facility}'; running servers apply it within a minute",
                devices.len()
            ))
        }
        Command::Unattest { devices } => {
            let platform = open_platform_for_task(config).await?;
            let done = platform
                .compliance
                .unattest(&devices, platform::now())
                .await;
            platform.store.close().await;
            Ok(format!(
                "{} device(s) taken out of their facility; running servers apply it within a minute",
                done?
            ))
        }
        Command::Facilities => {
            let platform = open_platform_for_task(config).await?;
            let listed = platform.compliance.facilities().await;
            platform.store.close().await;
            let now = platform::now();
            let lines: Vec<String> = listed?
                .iter()
                .map(|f| {
                    let until = f.facility.certified_until.to_rfc3339();
                    let state = if f.facility.attestations_at(now).is_none() {
                        "lapsed"
                    } else {
                        "holds"
                    };
                    format!(
                        "{}: {} ({state} until {until}), {} device(s)",
                        f.facility.name,
                        f.facility.standards.names(),
                        f.devices
                    )
                })
                .collect();
            Ok(if lines.is_empty() {
                "no facilities recorded".into()
            } else {
                lines.join("\n")
            })
        }
        Command::Credit {
            wallet,
            usd,
            tokens,
            key,
            memo,
        } => {
            use domain::money::Asset;
            let invalid = |e: String| Error::Config(e);
            let wallet = domain::wallet::WalletAddress::parse(&wallet)
                .map_err(|e| invalid(format!("--wallet '{wallet}': {e}")))?;
            let (asset, flag, text) = match (usd, tokens) {
                (Some(usd), None) => (Asset::Usdc, "usd", usd),
                (None, Some(tokens)) => (Asset::Token, "tokens", tokens),
                _ => return Err(invalid("give exactly one of --usd and --tokens".into())),
            };
            let units = asset
                .parse_amount(&text)
                .map_err(|e| invalid(format!("--{flag} '{text}': {e}")))?;
            let ledger =
                platform::ledger::LedgerService::new(Store::open(&config.database_url).await?);
            let recorded = ledger
                .operator_credit_wallet(&wallet, asset, units, &key, &memo, platform::now())
                .await?;
            Ok(if recorded {
                format!("credited {} to {wallet}", asset.show(units))
            } else {
                format!("a credit with key '{key}' was recorded before; nothing changed")
            })
        }
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

/// Sweeps the fleet (silent devices down, unanswered challenges settled) and the clusters
/// (start deadlines, expiry, lost devices, hourly settlement), writes merged heartbeats every
/// `flush_interval`, closes reward blocks as they fall due and moves payouts and deposits on,
/// until `stop` turns true; it stops only between passes.
fn spawn_fleet_monitor(
    platform: Platform,
    flush_interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    let down_after = Duration::from_secs(platform.agents.config().down_after_secs as u64);
    let tick = (down_after / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
    tokio::spawn(async move {
        let mut every = tokio::time::interval(tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_flush = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            if let Err(e) = platform.agents.sweep(platform::now()).await {
                tracing::warn!(error = %e, "fleet sweep failed; retrying on the next tick");
            }
            if let Err(e) = platform.provisioning.sweep(platform::now()).await {
                tracing::warn!(error = %e, "cluster sweep failed; retrying on the next tick");
            }
            if last_flush.elapsed() >= flush_interval {
                last_flush = tokio::time::Instant::now();
                if let Err(e) = platform.agents.flush(Flush::Due, platform::now()).await {
                    tracing::warn!(error = %e, "could not write merged heartbeats; keeping them for the next flush");
                }
                // Operator commands run in their own process, and certifications lapse.
                if let Err(e) = platform.compliance.refresh(platform::now()).await {
                    tracing::warn!(error = %e, "could not read compliance attestations; keeping the last ones");
                }
            }
            if let Err(e) = platform.rewards.close_due(platform::now()).await {
                tracing::warn!(error = %e, "could not close the due reward blocks; retrying on the next tick");
            }
            if let Err(e) = platform.payouts.work(platform::now()).await {
                tracing::warn!(error = %e, "payout pass failed; retrying on the next tick");
            }
            if let Err(e) = platform.deposits.work(platform::now()).await {
                tracing::warn!(error = %e, "deposit pass failed; retrying on the next tick");
            }
        }
    })
}

pub fn router(platform: Platform, config: &Config, addr: SocketAddr) -> Router {
    let leptos_options = LeptosOptions::builder()
        .output_name(BUNDLE_NAME)
        .site_root(config.site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build();
    let context = {
        let platform = platform.clone();
        move || provide_context(platform.clone())
    };
    let site = Router::new()
        .leptos_routes_with_context(
            &leptos_options,
            generate_route_list(App),
            context.clone(),
            {
                let options = leptos_options.clone();
                move || shell(options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler_with_context(
            context, shell,
        ))
        .with_state(leptos_options)
        .layer(axum::middleware::from_fn_with_state(
            platform.clone(),
            explorer_api::search_redirect,
        ));

    let operational = Router::new()
        // The explorer is the public front page; a plain redirect, decided before any page streams.
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/explorer") }),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest(
            "/api/v1",
            api::routes(explorer_api::ClientLimiter::new(
                config.explorer_requests_per_sec,
            )),
        )
        .with_state(platform.clone());
    // The agents' calls are the hot path (tens of thousands of heartbeats a second): small JSON
    // that needs neither compression nor the pages' security headers, only a time limit and
    // a panic guard.
    let agents = Router::new()
        .nest("/api/agent/v1", agent_api::routes())
        .with_state(platform)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(CatchPanicLayer::new());

    let secure_site = config
        .public_url
        .as_ref()
        .is_some_and(|u| u.scheme() == "https");
    let mut app = operational
        .merge(site)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(CompressionLayer::new())
        .layer(CatchPanicLayer::custom(|_panic| internal_error_page()));
    for (name, value) in security_headers(secure_site) {
        app = app.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    app.merge(agents).layer(TraceLayer::new_for_http())
}

fn security_headers(secure_site: bool) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        ),
        (
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            // The hydration bootstrap is an inline module script; WASM needs wasm-unsafe-eval.
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; \
                 style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
                 frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
            ),
        ),
    ];
    if secure_site {
        headers.push((
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ));
    }
    headers
}

fn internal_error_page() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Something went wrong on our side. Please try again in a moment.",
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(platform): State<Platform>) -> Response {
    match platform.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}
