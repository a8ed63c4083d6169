//! `fleet-sim`: a fleet of virtual agents in one process, against the real `gpu-commons` binary.
//!
//! 1. Seeds a database (a new SQLite file, or a new PostgreSQL database) with N agent-run,
//!    verified, idle devices.
//! 2. Starts the server binary on it and times how long until `/readyz` answers: the restart
//!    with N registered devices (migrations checked, fleet index and live fleet rebuilt,
//!    listening).
//! 3. Sends heartbeats over C keep-alive connections, each connection carrying its share of the
//!    devices' heartbeats in turn (as a NAT or a proxy in front of many agents would), either
//!    as fast as answers come back or paced at a target rate; every latency is kept.
//! 4. Sends, over the same number of connections and with the same client, a hello-world
//!    request (`GET /healthz`: no database, no parsing) for as long, so the heartbeat rate can
//!    be read as a share of what the same binary answers for nothing on this machine.
//! 5. Stops the server with SIGTERM (it writes its merged heartbeats) and checks that the
//!    database credits exactly the heartbeats that were answered 200.
//!
//! With `--replicas N` it starts N servers on one PostgreSQL behind the project's HAProxy
//! configuration (`deploy/haproxy.cfg`) and drives them through it; server CPU is then the
//! replicas' together, and the balancer's is reported beside it.
//!
//! The figures go to `docs/BENCHMARKS.md` with the command line that produced them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use domain::agent_protocol::{Heartbeat, Utilisation};
use platform::store::Store;
use platform::testing;
use tokio::net::TcpStream;

use loadtest::balancer::Balancer;
use loadtest::http::Connection;
use loadtest::{
    cpu_time, discard_database, percentile, rss_mib, seeded_fleet, server_binary, Database, Result,
    ServerProcess, ServerRun,
};

#[derive(Debug, Parser)]
#[command(
    name = "fleet-sim",
    about = "Heartbeat ingestion and restart time of the gpu-commons server with a simulated fleet"
)]
struct Args {
    #[command(flatten)]
    run: ServerRun,
    /// Registered devices (each with its own credential).
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// Keep-alive connections the heartbeats travel over.
    #[arg(long, default_value_t = 128)]
    connections: usize,
    /// Length of the measured load, after the warm-up.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
    /// Heartbeats per second to pace at; latency then counts from each heartbeat's scheduled
    /// time, so a server that falls behind cannot hide it. Without it, each connection sends
    /// its next heartbeat as soon as the last is answered.
    #[arg(long)]
    rate: Option<u64>,
    /// How often the server writes merged heartbeats (its `--flush-interval-secs`).
    #[arg(long, default_value_t = 5)]
    flush_interval_secs: u64,
    /// Server replicas behind HAProxy (needs `--database postgres`); 0 drives one server
    /// directly.
    #[arg(long, default_value_t = 0)]
    replicas: usize,
}

/// What each connection asks, over and over.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    /// A device's heartbeat, each device in turn.
    Heartbeat,
    /// The same server's hello world: the yardstick for this machine.
    Hello,
}

// One thread: the simulator needs about half a core, and a second worker would only add wake-ups
// that compete with the server under test for this machine's two cores.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    if args.devices == 0 || args.connections == 0 || args.connections > args.devices {
        return Err("need at least one device per connection".into());
    }
    if args.replicas > 0 && args.run.database != Database::Postgres {
        return Err("SQLite is served by one process: --replicas needs --database postgres".into());
    }
    let server_bin = server_binary(args.run.server_bin.as_ref())?;
    let database_url = seeded_fleet(
        args.run.database,
        args.run.reuse_database.as_deref(),
        args.devices,
    )
    .await?;
    let recorded_before = {
        let store = Store::open(&database_url).await?;
        let recorded = testing::heartbeats_recorded(&store).await?;
        store.close().await;
        recorded
    };

    let flush = args.flush_interval_secs.to_string();
    let mut servers = Vec::new();
    for _ in 0..args.replicas.max(1) {
        let mut flags = vec!["--down-after-secs", "120", "--flush-interval-secs", &flush];
        if args.replicas > 0 {
            flags.extend(["--tunnel-listen", "off", "--trusted-proxies", "127.0.0.1"]);
        }
        servers.push(ServerProcess::start(&server_bin, &database_url, &flags).await?);
    }
    let balancer = match args.replicas {
        0 => None,
        _ => {
            let addrs: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
            Some(Balancer::start(&addrs).await?)
        }
    };
    let addr = balancer
        .as_ref()
        .map_or_else(|| servers[0].addr.clone(), |b| b.addr.clone());
    let ready_after = servers
        .iter()
        .map(|s| s.ready_after)
        .max()
        .unwrap_or_default();
    let rss = |servers: &[ServerProcess]| servers.iter().map(|s| rss_mib(s.pid)).sum::<u64>();
    let rss_ready = rss(&servers);
    println!(
        "{} server(s) ready {:.2} s after start with {} devices; RSS {rss_ready} MiB{}",
        servers.len(),
        ready_after.as_secs_f64(),
        args.devices,
        if balancer.is_some() {
            ", behind HAProxy"
        } else {
            ""
        }
    );

    let server_cpu =
        |servers: &[ServerProcess]| -> Duration { servers.iter().map(|s| cpu_time(s.pid)).sum() };
    let balancer_cpu = || {
        balancer
            .as_ref()
            .map_or(Duration::ZERO, |b| cpu_time(b.pid))
    };
    let (cpu_before, lb_before) = (server_cpu(&servers), balancer_cpu());
    let mut load = drive(&args, &addr, Call::Heartbeat).await?;
    let heartbeat_cpu = server_cpu(&servers).saturating_sub(cpu_before);
    let heartbeat_lb_cpu = balancer_cpu().saturating_sub(lb_before);
    let rss_loaded = rss(&servers);
    let (cpu_before, lb_before) = (server_cpu(&servers), balancer_cpu());
    let hello = drive(&args, &addr, Call::Hello).await?;
    let hello_cpu = server_cpu(&servers).saturating_sub(cpu_before);
    let hello_lb_cpu = balancer_cpu().saturating_sub(lb_before);

    // The servers write what they merged as they stop.
    if let Some(balancer) = balancer {
        balancer.stop().await;
    }
    for server in servers {
        server.stop().await?;
    }
    let store = Store::open(&database_url).await?;
    let recorded = testing::heartbeats_recorded(&store).await? - recorded_before;
    store.close().await;
    discard_database(&database_url, args.run.keeps_database()).await?;

    load.report(&args, ready_after, rss_ready, rss_loaded, recorded);
    let per_call = |cpu: Duration, calls: u64| cpu.as_secs_f64() * 1e6 / calls.max(1) as f64;
    let beats = load.answered + load.failed;
    println!(
        "server CPU during the load: {:.1} s for {beats} heartbeats = {:.1} µs each ({:.0} heartbeats/s per core); balancer {:.1} µs each",
        heartbeat_cpu.as_secs_f64(),
        per_call(heartbeat_cpu, beats),
        beats as f64 / heartbeat_cpu.as_secs_f64().max(1e-9),
        per_call(heartbeat_lb_cpu, beats),
    );
    let hellos = hello.answered + hello.failed;
    let (beat_rate, hello_rate) = (load.measured_rate(&args), hello.measured_rate(&args));
    println!(
        "hello world (GET /healthz, same client and connections): {hello_rate:.0}/s, server {:.1} µs each, balancer {:.1} µs each; heartbeats at {:.2} of the hello-world rate",
        per_call(hello_cpu, hellos),
        per_call(hello_lb_cpu, hellos),
        beat_rate / hello_rate.max(1e-9),
    );
    if hello.failed > 0 {
        return Err(format!(
            "{} hello-world requests failed; first: {}",
            hello.failed,
            hello.first_error.as_deref().unwrap_or_default()
        )
        .into());
    }
    if recorded != load.answered as i64 {
        return Err(format!(
            "{} heartbeats were answered 200 but the database credits {recorded}",
            load.answered
        )
        .into());
    }
    if load.failed > 0 {
        return Err(format!(
            "{} heartbeats failed; first: {}",
            load.failed,
            load.first_error.as_deref().unwrap_or_default()
        )
        .into());
    }
    Ok(())
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    /// Microseconds, for heartbeats scheduled after the warm-up.
    latencies_us: Vec<u32>,
    answered: u64,
    failed: u64,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.answered += other.answered;
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Calls a second over the measured stretch.
    fn measured_rate(&self, args: &Args) -> f64 {
        self.latencies_us.len() as f64 / args.seconds as f64
    }

    fn report(
        &mut self,
        args: &Args,
        ready_after: Duration,
        rss_ready: u64,
        rss_loaded: u64,
        recorded: i64,
    ) {
        self.latencies_us.sort_unstable();
        let measured = self.latencies_us.len();
        let per_s = measured as f64 / args.seconds as f64;
        let ms = |q: f64| f64::from(percentile(&self.latencies_us, q)) / 1000.0;
        println!(
            "\n| backend | replicas | devices | connections | pacing | heartbeats/s | p50 ms | p99 ms | max ms | restart to ready | server RSS ready / loaded | answered / credited in DB |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        println!(
            "| {:?} | {} | {} | {} | {} | {per_s:.0} | {:.2} | {:.2} | {:.1} | {:.2} s | {rss_ready} / {rss_loaded} MiB | {} / {recorded} |",
            args.run.database,
            match args.replicas {
                0 => "1, direct".to_owned(),
                n => format!("{n}, HAProxy"),
            },
            args.devices,
            args.connections,
            args.rate
                .map_or_else(|| "closed loop".to_owned(), |r| format!("{r}/s")),
            ms(0.50),
            ms(0.99),
            ms(1.0),
            ready_after.as_secs_f64(),
            self.answered,
        );
    }
}

async fn drive(args: &Args, addr: &str, call: Call) -> Result<Tally> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let measure_from = started + Duration::from_secs(args.warmup_seconds);
    let pace = args
        .rate
        .map(|rate| Duration::from_secs_f64(args.connections as f64 / rate.max(1) as f64));
    let mut tasks = Vec::with_capacity(args.connections);
    for c in 0..args.connections {
        // Connection c carries devices c, c + C, c + 2C, …
        let devices: Vec<usize> = (c..args.devices).step_by(args.connections).collect();
        let stream = TcpStream::connect(addr).await?;
        let conn = Connection::new(stream)?;
        let stop = stop.clone();
        tasks.push(tokio::spawn(beat(
            conn,
            call,
            devices,
            stop,
            measure_from,
            pace,
        )));
    }
    tokio::time::sleep(Duration::from_secs(args.warmup_seconds + args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await??);
    }
    Ok(tally)
}

/// One connection's loop: the next device's heartbeat (or a hello world), its answer, its
/// latency.
async fn beat(
    mut conn: Connection,
    call: Call,
    devices: Vec<usize>,
    stop: Arc<AtomicBool>,
    measure_from: Instant,
    pace: Option<Duration>,
) -> Result<Tally> {
    let credentials: Vec<String> = devices
        .iter()
        .map(|&n| testing::seeded_credential(n))
        .collect();
    let mut tally = Tally::default();
    let mut next_at = Instant::now();
    for credential in credentials.iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let scheduled = match pace {
            Some(every) => {
                let at = next_at;
                next_at += every;
                tokio::time::sleep_until(at.into()).await;
                at
            }
            None => Instant::now(),
        };
        let status = match call {
            Call::Heartbeat => {
                let body = serde_json::to_vec(&Heartbeat {
                    sent_at: platform::now().0,
                    agent_version: "seeded".into(),
                    utilisation: Utilisation {
                        gpu_percent: 3,
                        cpu_percent: 5,
                        memory_percent: 12,
                    },
                    workloads: Vec::new(),
                })?;
                conn.send("POST", "/api/agent/v1/heartbeat", Some(credential), &body)
                    .await?
            }
            Call::Hello => conn.send("GET", "/healthz", None, b"").await?,
        };
        let latency = scheduled.elapsed();
        if status == 200 {
            tally.answered += 1;
        } else {
            tally.failed += 1;
            tally.first_error.get_or_insert_with(|| {
                format!("{status} {}", String::from_utf8_lossy(conn.last_body()))
            });
        }
        if scheduled >= measure_from && !stop.load(Ordering::Relaxed) {
            tally
                .latencies_us
                .push(latency.as_micros().min(u128::from(u32::MAX)) as u32);
        }
    }
    Ok(tally)
}
