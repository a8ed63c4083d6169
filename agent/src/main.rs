//! The GPU Commons provider agent. Started with the one-line command from the Worker tab, it
//! exchanges the registration token for a device credential (saved 0600), then heartbeats on
//! the interval the server sets, answers proof-of-work challenges, measures connectivity when
//! asked, and backs off with jitter whenever the server is unreachable.

mod client;
mod credentials;
mod error;
mod hardware;
mod release;
mod tunnel;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use domain::agent_protocol::{Heartbeat, HeartbeatReply, RegisterRequest, Utilisation};
use domain::fleet::DeviceStatus;
use domain::hardware::HardwareReport;
use domain::proof_of_work::Challenge;
use rand::Rng;
use tokio::sync::Notify;

use client::ApiClient;
use credentials::Credentials;
use error::AgentError;
use hardware::{SimulatedMachine, UtilisationProbe};

/// Longest wait between retries when the server is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// GPU Commons provider agent: turns this machine into a device of the network.
#[derive(Parser, Debug)]
#[command(name = "gpu-commons-agent", version)]
struct Args {
    /// The GPU Commons server, e.g. https://gpucommons.example (from the Worker tab's command).
    #[arg(long, env = "GC_AGENT_SERVER", value_name = "URL")]
    server: Option<String>,

    /// Single-use registration token from the Worker tab; needed only on the first start.
    #[arg(long, env = "GC_AGENT_TOKEN", value_name = "TOKEN")]
    token: Option<String>,

    /// Read the registration token from FILE, or from standard input with `-`, so that it is
    /// not on the command line where every local user can read it (`ps`).
    #[arg(
        long,
        env = "GC_AGENT_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "token"
    )]
    token_file: Option<PathBuf>,

    /// Where the device credential is kept. [default: ~/.config/gpu-commons/agent.json]
    #[arg(long, env = "GC_AGENT_CREDENTIALS", value_name = "FILE")]
    credentials: Option<PathBuf>,

    /// Describe the hardware from a TOML file instead of detecting it (tests, demos). The device
    /// is marked as simulated everywhere.
    #[arg(long, env = "GC_AGENT_SIMULATE", value_name = "FILE")]
    simulate: Option<PathBuf>,

    /// The container engine for container clusters. [default: Podman if installed, else Docker]
    #[arg(long, env = "GC_AGENT_CONTAINER_ENGINE", value_name = "ENGINE")]
    container_engine: Option<workloads::Engine>,

    /// Where the private work folders of sandboxed workloads are made (one folder per device,
    /// emptied when each workload ends).
    #[arg(
        long,
        env = "GC_AGENT_WORK_DIR",
        value_name = "DIR",
        default_value = "/var/tmp/gpu-commons"
    )]
    work_dir: PathBuf,

    /// A folder shown read-only inside every sandboxed workload (a Python or conda install
    /// outside /usr, a dataset cache); repeat for several. Never one holding the agent's files.
    #[arg(
        long = "sandbox-read-only",
        env = "GC_AGENT_SANDBOX_READ_ONLY",
        value_name = "DIR",
        value_delimiter = ':'
    )]
    sandbox_read_only: Vec<PathBuf>,

    /// Never replace this binary with the build the server offers (for agents a package
    /// manager keeps up to date). By default the agent installs it, once no cluster runs here.
    #[arg(long, env = "GC_AGENT_NO_AUTO_UPDATE")]
    no_auto_update: bool,
}

/// Why the agent's run ended without an error.
enum Exit {
    Stopped,
    /// A new build replaced the binary: start it in this process.
    Restart,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(Exit::Stopped) => ExitCode::SUCCESS,
        Ok(Exit::Restart) => {
            let Some(exe) = release::own_build().exe.as_deref() else {
                return ExitCode::from(3);
            };
            let error = release::restart(exe);
            eprintln!(
                "gpu-commons-agent: cannot restart as the new build {}: {error}",
                exe.display()
            );
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("gpu-commons-agent: {e}");
            ExitCode::from(if matches!(e, AgentError::Config(_)) {
                2
            } else {
                3
            })
        }
    }
}

/// Resolves when the agent is asked to stop (SIGTERM from its service manager, or Ctrl-C),
/// naming the signal.
async fn stop_requested() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Where hardware and utilisation come from.
enum Machine {
    Real(UtilisationProbe),
    Simulated(SimulatedMachine),
}

impl Machine {
    fn hardware(&self) -> HardwareReport {
        match self {
            Machine::Real(_) => hardware::detect(),
            Machine::Simulated(m) => m.report(),
        }
    }

    fn utilisation(&mut self) -> Utilisation {
        match self {
            Machine::Real(probe) => probe.sample(),
            Machine::Simulated(m) => m.utilisation,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Exponential backoff with ±50% jitter, so a fleet that lost the server does not return in step.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(1u64 << failures.min(6)).min(MAX_BACKOFF);
    base.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

async fn run(args: Args) -> Result<Exit, AgentError> {
    let stop = stop_requested();
    tokio::pin!(stop);
    let path = args
        .credentials
        .clone()
        .unwrap_or_else(credentials::default_path);
    let mut machine = match &args.simulate {
        Some(file) => Machine::Simulated(SimulatedMachine::load(file)?),
        None => Machine::Real(UtilisationProbe::default()),
    };
    let saved = match Credentials::load(&path)? {
        Some(saved) => {
            if args.token.is_some() || args.token_file.is_some() {
                println!(
                    "already registered as {} (credentials in {}); ignoring --token. Delete that file to register anew.",
                    saved.device_id,
                    path.display()
                );
            }
            saved
        }
        None => tokio::select! {
            saved = register(&args, &machine, &path) => saved?,
            signal = &mut stop => {
                println!("{signal}: stopping before registration finished");
                return Ok(Exit::Stopped);
            }
        },
    };
    let client = ApiClient::new(&saved.server)?.with_credential(saved.credential.clone());
    println!(
        "device {} reporting to {} (agent {})",
        saved.device_id,
        saved.server,
        release::own_build().version
    );
    let record = path.with_extension("workloads.json");
    for leftover in workloads::stop_leftovers(&record) {
        println!("stopped {leftover}, left running when this agent was last killed");
    }
    workloads::remove_empty_cgroups();
    let settings = workload_settings(&args, &machine, &saved.device_id, &path, &record)?;
    let shipping = settings.shipping.clone();
    let served = settings.served.clone();
    let mut workloads = workloads::Workloads::new(&saved.device_id, record, settings);
    let assignments = Arc::new(AssignmentWatch::default());
    let watcher = tokio::spawn(watch_assignments(client.clone(), assignments.clone()));
    let shipper = tokio::spawn(ship_output(client.clone(), shipping.clone()));
    let tunnels = tokio::spawn(tunnel::serve(client.clone(), served));
    let updater = (!args.no_auto_update)
        .then(|| tokio::spawn(keep_updated(client.clone(), assignments.clone())));
    let result = tokio::select! {
        result = heartbeat_loop(&client, &mut machine, &mut workloads, &assignments) => result,
        signal = &mut stop => {
            println!("{signal}: stopping the workloads, then the agent");
            Ok(Exit::Stopped)
        }
    };
    if let Some(updater) = updater {
        updater.abort();
    }
    watcher.abort();
    tunnels.abort();
    workloads.stop_all().await;
    shipper.abort();
    // What the workloads printed while stopping still reaches the renter, if it can quickly.
    let _ = tokio::time::timeout(Duration::from_secs(5), ship_waiting(&client, &shipping)).await;
    println!("stopped");
    result
}

/// How often waiting workload output is shipped: the console follows it at about this pace.
const SHIP_OUTPUT_EVERY: Duration = Duration::from_millis(500);
/// Lines per shipment.
const LINES_PER_SHIPMENT: usize = 500;

/// Ships workload output as it comes, forever; an unreachable server only delays it.
async fn ship_output(client: ApiClient, shipping: workloads::Shipping) {
    let mut failures = 0u32;
    loop {
        let pause = if ship_waiting(&client, &shipping).await {
            failures = 0;
            SHIP_OUTPUT_EVERY
        } else {
            failures += 1;
            backoff(failures)
        };
        tokio::time::sleep(pause).await;
    }
}

/// Ships what waits once; false when the server could not be reached.
async fn ship_waiting(client: &ApiClient, shipping: &workloads::Shipping) -> bool {
    for shipment in shipping.take(LINES_PER_SHIPMENT) {
        let last = shipment.lines.last().map_or(0, |l| l.id);
        match client.ship_output(&shipment).await {
            Ok(()) => shipping.acknowledge(&shipment.cluster_id, last),
            // A refusal will not change on a retry (the cluster is unknown, the lines bad).
            Err(AgentError::Refused { message, .. }) => {
                eprintln!(
                    "the server refused output of cluster {}: {message}",
                    shipment.cluster_id
                );
                shipping.acknowledge(&shipment.cluster_id, last);
            }
            Err(_) => return false,
        }
    }
    true
}

/// How this device runs workloads: the sandbox (its work folders, the provider's read-only
/// folders, refusing any that would show the agent's `credentials` or `record`), the engine
/// found, the machine's share, and the GPUs to pass (only real ones).
fn workload_settings(
    args: &Args,
    machine: &Machine,
    device_id: &str,
    credentials: &std::path::Path,
    record: &std::path::Path,
) -> Result<workloads::Settings, AgentError> {
    let hardware = machine.hardware();
    let gpus: Vec<u32> = match machine {
        Machine::Real(_) => (0..hardware.gpus.len() as u32).collect(),
        Machine::Simulated(_) => Vec::new(),
    };
    let sandbox = workloads::Sandbox::new(
        args.work_dir.join(device_id),
        args.sandbox_read_only.clone(),
        gpus.clone(),
        &[credentials.to_path_buf(), record.to_path_buf()],
    )?;
    let engine = workloads::Engine::find(args.container_engine);
    if let (Some(chosen), None) = (args.container_engine, engine) {
        return Err(AgentError::Config(format!(
            "--container-engine {}: it is not installed (not on PATH)",
            chosen.program()
        )));
    }
    let limits = workloads::Limits::of_machine(hardware.ram_gb, hardware.cpu_cores);
    println!(
        "workloads: sandboxed by bubblewrap{} (work folders under {}); containers on {}; \
         each limited to {} MB, {} CPUs, {} processes",
        if workloads::installed_bwrap() {
            ""
        } else {
            " (NOT INSTALLED: bare-metal and Ray clusters fail here until it is: apt install bubblewrap)"
        },
        args.work_dir.join(device_id).display(),
        engine.map_or("no engine (install Podman or Docker)", |e| e.program()),
        limits.memory_mb,
        limits.cpus,
        limits.pids
    );
    Ok(workloads::Settings {
        sandbox,
        engine,
        limits,
        gpus,
        logs: credentials.with_extension("logs"),
        shipping: workloads::Shipping::default(),
        served: tunnel::Served::default(),
    })
}

/// What the heartbeat loop, the assignment long poll and the updater share.
#[derive(Default)]
struct AssignmentWatch {
    /// The clusters whose workloads run here, as of the last heartbeat.
    known: Mutex<Vec<String>>,
    /// Whether a heartbeat was answered yet: until then `known` says nothing.
    heard: std::sync::atomic::AtomicBool,
    /// Rung when the server has other work for the device: heartbeat now.
    changed: Notify,
    /// A new build installed over this binary, which the heartbeat loop restarts into between
    /// heartbeats once no cluster runs here.
    installed: Mutex<Option<String>>,
}

impl AssignmentWatch {
    /// Whether a cluster may run here now (or the server was not heard yet).
    fn busy(&self) -> bool {
        !self.heard.load(std::sync::atomic::Ordering::Acquire)
            || self.known.lock().map_or(true, |known| !known.is_empty())
    }

    fn installed(&self) -> Option<String> {
        self.installed.lock().ok().and_then(|v| v.clone())
    }
}

/// Keeps this agent on the build the server offers: looks now and every hour, installs it once
/// no cluster runs here, then has the heartbeat loop restart into it.
async fn keep_updated(client: ApiClient, watch: Arc<AssignmentWatch>) {
    // Until the server answers a heartbeat, whether a cluster runs here is unknown.
    while !watch.heard.load(std::sync::atomic::Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut said = None::<String>;
    loop {
        let pause = match release::check(&client, || watch.busy()).await {
            Ok(release::Checked::Installed(version)) => {
                println!("agent {version} installed; restarting into it between heartbeats");
                if let Ok(mut installed) = watch.installed.lock() {
                    *installed = Some(version);
                }
                watch.changed.notify_one();
                return;
            }
            Ok(release::Checked::Deferred(version)) => {
                if said.as_deref() != Some(version.as_str()) {
                    println!(
                        "agent {version} is offered; it is installed once no cluster runs here"
                    );
                    said = Some(version);
                }
                release::RECHECK_WHEN_BUSY
            }
            Ok(release::Checked::Downgrade(version)) => {
                if said.as_deref() != Some(version.as_str()) {
                    println!(
                        "the server offers agent {version}, an earlier release than this one ({}): kept this one",
                        release::own_build().version
                    );
                    said = Some(version);
                }
                release::CHECK_EVERY
            }
            Ok(release::Checked::Current | release::Checked::NothingOffered) => {
                release::CHECK_EVERY
            }
            // This binary cannot be replaced (not writable by the agent's user): asking again
            // soon would only download it again.
            Err(e @ AgentError::Config(_)) => {
                eprintln!("agent update: {e}");
                release::CHECK_EVERY
            }
            Err(e) => {
                eprintln!("agent update: {e}");
                Duration::from_secs(300)
            }
        };
        let jitter = rand::thread_rng().gen_range(0.9..1.1);
        tokio::time::sleep(pause.mul_f64(jitter)).await;
    }
}

/// Long-polls the server for new cluster work so a hired device starts within a round trip,
/// not a heartbeat interval later. Failures only slow it down: heartbeats carry the same work.
async fn watch_assignments(client: ApiClient, watch: Arc<AssignmentWatch>) {
    let mut failures = 0u32;
    loop {
        let known = watch.known.lock().map(|k| k.clone()).unwrap_or_default();
        match client.wait_for_assignment(&known).await {
            Ok(changed) => {
                failures = 0;
                if changed {
                    watch.changed.notify_one();
                    // Give the heartbeat time to fetch the work before asking again.
                    tokio::time::sleep(REPORT_CHANGE_AFTER).await;
                }
            }
            Err(_) => {
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}

/// The registration token: `--token`, or the first line of `--token-file` (`-`: standard input).
fn registration_token(args: &Args) -> Result<Option<String>, AgentError> {
    let Some(file) = &args.token_file else {
        return Ok(args.token.clone());
    };
    let text = if file.as_os_str() == "-" {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| {
            AgentError::Config(format!("cannot read the token from standard input: {e}"))
        })?;
        line
    } else {
        std::fs::read_to_string(file).map_err(|e| {
            AgentError::Config(format!(
                "cannot read the token file {}: {e}",
                file.display()
            ))
        })?
    };
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(AgentError::Config(format!(
            "the token file {} holds no token",
            file.display()
        )));
    }
    Ok(Some(token))
}

async fn register(
    args: &Args,
    machine: &Machine,
    path: &std::path::Path,
) -> Result<Credentials, AgentError> {
    let (Some(server), Some(token)) = (&args.server, registration_token(args)?) else {
        return Err(AgentError::Config(format!(
            "this machine is not registered yet (no {}): start the agent with the command from the Worker tab (--server URL --token TOKEN, or --token-file FILE)",
            path.display()
        )));
    };
    let client = ApiClient::new(server)?;
    let hardware = machine.hardware();
    println!(
        "registering: {} ({} cores), {} GB RAM, GPUs: {}",
        hardware.cpu_model,
        hardware.cpu_cores,
        hardware.ram_gb,
        if hardware.gpus.is_empty() {
            "none".to_owned()
        } else {
            hardware.gpu_summary()
        }
    );
    let request = RegisterRequest {
        token,
        agent_version: release::own_build().version.clone(),
        simulated: matches!(machine, Machine::Simulated(_)),
        hardware,
    };
    let mut failures = 0;
    let registered = loop {
        match client.register(&request).await {
            Ok(registered) => break registered,
            Err(e) if !e.is_final() => {
                failures += 1;
                let wait = backoff(failures);
                eprintln!("{e}; retrying in {} s", wait.as_secs());
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    };
    let saved = Credentials {
        server: server.trim_end_matches('/').to_owned(),
        device_id: registered.device_id,
        credential: registered.credential,
    };
    saved.save(path)?;
    println!(
        "registered as {}; credential saved to {}",
        saved.device_id,
        path.display()
    );
    Ok(saved)
}

/// A workload that just started or stopped is reported this soon, not a full interval later.
const REPORT_CHANGE_AFTER: Duration = Duration::from_millis(200);

async fn heartbeat_loop(
    client: &ApiClient,
    machine: &mut Machine,
    workloads: &mut workloads::Workloads,
    assignments: &AssignmentWatch,
) -> Result<Exit, AgentError> {
    let mut interval = Duration::from_secs(10);
    let mut failures = 0u32;
    let mut last_status: Option<(DeviceStatus, String)> = None;
    let mut last_challenge: Option<String> = None;
    loop {
        let heartbeat = Heartbeat {
            sent_at: now_ms(),
            agent_version: release::own_build().version.clone(),
            utilisation: machine.utilisation(),
            workloads: workloads.reports(),
        };
        match client.heartbeat(&heartbeat).await {
            Ok(reply) => {
                if failures > 0 {
                    println!("server reachable again");
                }
                failures = 0;
                interval = Duration::from_secs(reply.heartbeat_interval_secs.max(1).into());
                let status = (reply.status, reply.reason.clone());
                if last_status.as_ref() != Some(&status) {
                    println!("status: {} ({})", reply.status, reply.reason);
                    last_status = Some(status);
                }
                let changed = workloads.reconcile(&reply.workloads).await;
                if let Ok(mut known) = assignments.known.lock() {
                    *known = workloads.cluster_ids();
                }
                assignments
                    .heard
                    .store(true, std::sync::atomic::Ordering::Release);
                follow_up(client, &reply, &mut last_challenge).await?;
                // Between heartbeats, with proofs answered and no cluster here, a new build
                // takes over.
                if workloads.cluster_ids().is_empty() {
                    if let Some(version) = assignments.installed() {
                        println!("restarting as agent {version}");
                        return Ok(Exit::Restart);
                    }
                }
                let reported = heartbeat.workloads;
                let next = if changed || reported != workloads.reports() {
                    REPORT_CHANGE_AFTER
                } else {
                    interval
                };
                tokio::select! {
                    _ = tokio::time::sleep(next) => {}
                    _ = assignments.changed.notified() => {}
                }
            }
            Err(e) if e.is_final() => return Err(e),
            Err(e) => {
                failures += 1;
                let wait = backoff(failures).max(interval);
                eprintln!("heartbeat failed: {e}; retrying in {} s", wait.as_secs());
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Answers a new challenge and runs a due speed test. Failures here are reported and retried
/// on a later heartbeat; only a final refusal stops the agent.
async fn follow_up(
    client: &ApiClient,
    reply: &HeartbeatReply,
    last_challenge: &mut Option<String>,
) -> Result<(), AgentError> {
    if reply.speed_test_due {
        match client.speed_test().await {
            Ok(r) => println!(
                "connectivity: {} MB/s down, {} MB/s up, {} ms; tier {}",
                r.download_mb_per_s,
                r.upload_mb_per_s,
                r.latency_ms,
                r.tier.map_or("below low", |t| t.as_str())
            ),
            Err(e) if e.is_final() => return Err(e),
            Err(e) => eprintln!("speed test failed: {e}"),
        }
    }
    if let Some(challenge) = &reply.challenge {
        if last_challenge.as_deref() != Some(challenge.id.as_str()) {
            *last_challenge = Some(challenge.id.clone());
            answer(client, challenge.clone()).await?;
        }
    }
    Ok(())
}

async fn answer(client: &ApiClient, challenge: Challenge) -> Result<(), AgentError> {
    println!(
        "verification: computing {} × {}³ matrix products",
        challenge.products, challenge.size
    );
    let started = std::time::Instant::now();
    let solved =
        tokio::task::spawn_blocking(move || domain::proof_of_work::solve(&challenge, |_| {}))
            .await
            .map_err(|e| AgentError::Transport(format!("the computation stopped: {e}")))?;
    let elapsed = started.elapsed();
    match client.answer(&solved).await {
        Ok(outcome) => {
            println!(
                "verification {} in {:.1} s: {} ({})",
                if outcome.passed { "passed" } else { "failed" },
                elapsed.as_secs_f64(),
                outcome.status,
                outcome.reason
            );
            Ok(())
        }
        Err(e) if e.is_final() => Err(e),
        Err(e) => {
            eprintln!("could not deliver the verification answer: {e}");
            Ok(())
        }
    }
}
