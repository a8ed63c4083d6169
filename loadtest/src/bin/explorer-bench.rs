//! `explorer-bench`: the explorer's pages and JSON under load, against the real `gpu-commons`
//! binary on a seeded network.
//!
//! 1. Seeds a new SQLite file or PostgreSQL database with `gpu-commons seed` (N simulated
//!    devices, their uptime history, closed reward blocks), timing it, unless an earlier
//!    database is reused.
//! 2. Starts the server on it, times the restart to `/readyz`, and waits until the explorer's
//!    ordered device list is made.
//! 3. For each target (the front page, device-list first and last pages with and without
//!    filters, JSON totals), C keep-alive connections request it in a closed loop for S
//!    seconds; every latency is kept. Any answer other than 200 fails the run.
//! 4. Reports requests/s, p50/p99/max and the server's memory, as a Markdown table.

use std::time::{Duration, Instant};

use clap::Parser;
use loadtest::http::Connection;
use loadtest::{
    discard_database, fresh_database, percentile, rss_mib, server_binary, Result, ServerProcess,
    ServerRun,
};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(
    name = "explorer-bench",
    about = "Explorer pages and JSON under load on a seeded network"
)]
struct Args {
    #[command(flatten)]
    run: ServerRun,
    /// Simulated devices to seed.
    #[arg(long, default_value_t = 1_000_000)]
    devices: usize,
    /// Days of uptime history to seed per device.
    #[arg(long, default_value_t = 7)]
    history_days: i64,
    /// Keep-alive connections per target.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Length of each target's measured load, after its warm-up.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
}

/// What is measured: a name for the table and the path requested.
const TARGETS: &[(&str, &str)] = &[
    ("`/explorer` (page)", "/explorer"),
    ("`/explorer/devices` first page", "/explorer/devices"),
    ("`/explorer/devices` last page", "/explorer/devices?last=1"),
    (
        "`/explorer/devices` last page, H100 SXM in DE, idle",
        "/explorer/devices?hardware=H100%2080GB%20SXM&country=DE&status=idle&last=1",
    ),
    (
        "JSON totals `/api/v1/explorer/summary`",
        "/api/v1/explorer/summary",
    ),
    (
        "JSON last page `/api/v1/explorer/devices?last=true`",
        "/api/v1/explorer/devices?last=true",
    ),
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("explorer-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let server_bin = server_binary(args.run.server_bin.as_ref())?;
    let database_url = match &args.run.reuse_database {
        Some(url) => url.clone(),
        None => seed(&args, &server_bin).await?,
    };

    let started = Instant::now();
    let server = ServerProcess::start(
        &server_bin,
        &database_url,
        &["--explorer-requests-per-sec", "1000000"],
    )
    .await?;
    let (pid, addr, ready_after) = (server.pid, server.addr.clone(), server.ready_after);
    // The first list request waits for the ordered list the server makes after start-up.
    let mut probe = Connection::new(TcpStream::connect(&addr).await?)?;
    let status = probe
        .send("GET", "/api/v1/explorer/devices?last=true", None, b"")
        .await?;
    if status != 200 {
        return Err(format!("the device list answered {status}").into());
    }
    let lists_after = started.elapsed();
    println!(
        "server ready {:.2} s after start, device list ready at {:.2} s; RSS {} MiB",
        ready_after.as_secs_f64(),
        lists_after.as_secs_f64(),
        rss_mib(pid)
    );

    println!(
        "\n| target | requests/s | p50 ms | p99 ms | max ms | bytes |\n|---|---|---|---|---|---|"
    );
    for (name, path) in TARGETS {
        let (mut latencies, bytes) = hammer(&args, &addr, path).await?;
        latencies.sort_unstable();
        let ms = |q: f64| f64::from(percentile(&latencies, q)) / 1000.0;
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.1} | {bytes} |",
            latencies.len() as f64 / args.seconds as f64,
            ms(0.5),
            ms(0.99),
            ms(1.0)
        );
    }
    println!(
        "\n{:?}, {} devices, {} connections: server RSS after the load {} MiB",
        args.run.database,
        args.devices,
        args.connections,
        rss_mib(pid)
    );

    server.stop().await?;
    discard_database(&database_url, args.run.keeps_database()).await
}

/// A new database seeded by the server's own `seed` command; its URL.
async fn seed(args: &Args, server_bin: &std::path::Path) -> Result<String> {
    let url = fresh_database(args.run.database).await?;
    let started = Instant::now();
    let output = tokio::process::Command::new(server_bin)
        .args(["--database-url", &url, "--log", "warn", "seed"])
        .args(["--devices", &args.devices.to_string()])
        .args(["--history-days", &args.history_days.to_string()])
        .output()
        .await?;
    if !output.status.success() {
        return Err(format!(
            "seeding failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    println!(
        "`gpu-commons seed --devices {} --history-days {}` on {:?}: {:.1} s ({})",
        args.devices,
        args.history_days,
        args.run.database,
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&output.stdout).trim()
    );
    Ok(url)
}

/// `connections` keep-alive connections asking for `path` until the time is up; the latencies
/// (µs) of the requests sent after the warm-up, and the size of one answer.
async fn hammer(args: &Args, addr: &str, path: &str) -> Result<(Vec<u32>, usize)> {
    let started = Instant::now();
    let measure_from = started + Duration::from_secs(args.warmup_seconds);
    let until = measure_from + Duration::from_secs(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let addr = addr.to_owned();
        let path = path.to_owned();
        tasks.spawn(async move {
            let mut conn = Connection::new(TcpStream::connect(&addr).await?)?;
            let mut latencies = Vec::new();
            let mut bytes = 0;
            loop {
                let sent = Instant::now();
                if sent >= until {
                    return Ok::<_, std::io::Error>((latencies, bytes));
                }
                let status = conn.send("GET", &path, None, b"").await?;
                if status != 200 {
                    return Err(std::io::Error::other(format!("{path} answered {status}")));
                }
                bytes = conn.last_body().len();
                if sent >= measure_from {
                    latencies.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                }
            }
        });
    }
    let mut all = Vec::new();
    let mut bytes = 0;
    while let Some(done) = tasks.join_next().await {
        let (latencies, size) = done??;
        all.extend(latencies);
        bytes = size;
    }
    Ok((all, bytes))
}
