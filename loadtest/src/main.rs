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
//! 4. Stops the server with SIGTERM (it writes its merged heartbeats) and checks that the
//!    database credits exactly the heartbeats that were answered 200.
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

use loadtest::http::Connection;
use loadtest::{
    cpu_time, discard_database, percentile, rss_mib, seeded_fleet, server_binary, Result,
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
    let server = ServerProcess::start(
        &server_bin,
        &database_url,
        &["--down-after-secs", "120", "--flush-interval-secs", &flush],
    )
    .await?;
    let (pid, addr, ready_after) = (server.pid, server.addr.clone(), server.ready_after);
    let rss_ready = rss_mib(pid);
    println!(
        "server ready {:.2} s after start with {} devices; RSS {rss_ready} MiB",
        ready_after.as_secs_f64(),
        args.devices
    );

    let cpu_before = cpu_time(pid);
    let mut load = drive(&args, &addr).await?;
    let server_cpu = cpu_time(pid).saturating_sub(cpu_before);
    let rss_loaded = rss_mib(pid);

    // The server writes what it merged as it stops.
    server.stop().await?;
    let store = Store::open(&database_url).await?;
    let recorded = testing::heartbeats_recorded(&store).await? - recorded_before;
    store.close().await;
    discard_database(&database_url, args.run.keeps_database()).await?;

    load.report(&args, ready_after, rss_ready, rss_loaded, recorded);
    println!(
        "server CPU during the load: {:.1} s for {} heartbeats = {:.1} µs each ({:.0} heartbeats/s per core)",
        server_cpu.as_secs_f64(),
        load.answered + load.failed,
        server_cpu.as_secs_f64() * 1e6 / (load.answered + load.failed).max(1) as f64,
        (load.answered + load.failed) as f64 / server_cpu.as_secs_f64().max(1e-9),
    );
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
            "\n| backend | devices | connections | pacing | heartbeats/s | p50 ms | p99 ms | max ms | restart to ready | server RSS ready / loaded | answered / credited in DB |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        println!(
            "| {:?} | {} | {} | {} | {per_s:.0} | {:.2} | {:.2} | {:.1} | {:.2} s | {rss_ready} / {rss_loaded} MiB | {} / {recorded} |",
            args.run.database,
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

async fn drive(args: &Args, addr: &str) -> Result<Tally> {
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
        tasks.push(tokio::spawn(beat(conn, devices, stop, measure_from, pace)));
    }
    tokio::time::sleep(Duration::from_secs(args.warmup_seconds + args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await??);
    }
    Ok(tally)
}

/// One connection's loop: the next device's heartbeat, its answer, its latency.
async fn beat(
    mut conn: Connection,
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
        let status = conn
            .send("POST", "/api/agent/v1/heartbeat", Some(credential), &body)
            .await?;
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
