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

mod http;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use domain::agent_protocol::{Heartbeat, Utilisation};
use platform::store::Store;
use platform::testing;
use tokio::net::TcpStream;

use crate::http::Connection;
use loadtest::{percentile, seeded_fleet, Database, Result};

#[derive(Debug, Parser)]
#[command(
    name = "fleet-sim",
    about = "Heartbeat ingestion and restart time of the gpu-commons server with a simulated fleet"
)]
struct Args {
    /// Which backend the server runs on (PostgreSQL: a new database on TEST_POSTGRES_URL).
    #[arg(long, value_enum, default_value = "sqlite")]
    database: Database,
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
    /// Run on a database seeded by an earlier `--keep-database` run with the same `--devices`
    /// (seeding a million devices takes about a minute), instead of seeding a new one.
    #[arg(long, value_name = "URL")]
    reuse_database: Option<String>,
    /// Keep the database afterwards and print its URL, for `--reuse-database`.
    #[arg(long)]
    keep_database: bool,
    /// The server binary; by default the `gpu-commons` beside this one.
    #[arg(long)]
    server_bin: Option<PathBuf>,
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
    let server_bin = match &args.server_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("gpu-commons"),
    };
    if !server_bin.exists() {
        return Err(format!(
            "no server binary at {} (build it: cargo build --release -p server)",
            server_bin.display()
        )
        .into());
    }
    let database_url =
        seeded_fleet(args.database, args.reuse_database.as_deref(), args.devices).await?;
    let recorded_before = {
        let store = Store::open(&database_url).await?;
        let recorded = testing::heartbeats_recorded(&store).await?;
        store.close().await;
        recorded
    };

    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let site = std::env::temp_dir().join("fleet-sim-empty-site");
    std::fs::create_dir_all(&site)?;
    let spawned = Instant::now();
    let mut server = tokio::process::Command::new(&server_bin)
        .args(["--database-url", &database_url, "--listen", &addr])
        .args(["--log", "warn", "--down-after-secs", "120"])
        .args([
            "--flush-interval-secs",
            &args.flush_interval_secs.to_string(),
        ])
        .arg("--site-root")
        .arg(&site)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = server.id().ok_or("the server exited at once")?;
    wait_ready(&addr, Duration::from_secs(120)).await?;
    let ready_after = spawned.elapsed();
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

    // SIGTERM: the server stops taking requests and writes what it merged.
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    let exit = tokio::time::timeout(Duration::from_secs(120), server.wait()).await??;
    if !exit.success() {
        return Err(format!("the server exited with {exit}").into());
    }
    let store = Store::open(&database_url).await?;
    let recorded = testing::heartbeats_recorded(&store).await? - recorded_before;
    store.close().await;
    if args.keep_database || args.reuse_database.is_some() {
        println!("database kept: {database_url}");
    } else if args.database == Database::Sqlite {
        let path = database_url.trim_start_matches("sqlite://");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    } else {
        testing::drop_postgres_database(&database_url).await?;
    }

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

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls `/readyz` until it answers 200. The server binds its port before it rebuilds the
/// fleet, so an early request waits in the backlog and is answered once it serves.
async fn wait_ready(addr: &str, limit: Duration) -> Result<()> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Ok(stream) = TcpStream::connect(addr).await {
            let mut conn = Connection::new(stream)?;
            if let Ok(200) = conn.send("GET", "/readyz", None, b"").await {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("the server at {addr} was not ready within {limit:?}").into())
}

/// CPU time (user + system) a process has used so far, from /proc (zero where it cannot tell).
fn cpu_time(pid: u32) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which is in parentheses and may contain spaces.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // Linux reports these in USER_HZ, 100 per second on every architecture it runs on.
    Duration::from_millis(ticks * 10)
}

/// Resident memory of a process in MiB (0 where /proc cannot tell).
fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
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
            args.database,
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
