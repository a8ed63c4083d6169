//! `cluster-bench`: how fast the Cloud console answers over a large fleet, in process.
//!
//! 1. Seeds a database (a new SQLite file, or a new PostgreSQL database) with N agent-run,
//!    verified, idle devices (or reuses one a `fleet-sim --keep-database` run left).
//! 2. Starts the real server in this process (migrations, fleet index rebuild).
//! 3. Quotes a mix of deploy requests (every GPU model, 1 to 64 GPUs, anywhere or in one or two
//!    countries, any tier or at least `high`) and times each answer: price and fillability.
//! 4. Places the same mix with the allocator over the index's free devices (what a deploy does
//!    before it claims them) and times each placement.
//!
//! The figures go to `docs/BENCHMARKS.md` with the command line that produced them.

use std::time::Instant;

use clap::Parser;
use domain::cluster::{
    ClusterKind, DeployRequest, DurationUnit, PaymentMethod, Purpose, SecurityCompliance,
};
use domain::fleet::ConnectivityTier;
use loadtest::{percentile, seeded_fleet, Database, Result};

#[derive(Debug, Parser)]
#[command(
    name = "cluster-bench",
    about = "Quote, fillability and placement times of the Cloud console over a large fleet"
)]
struct Args {
    #[arg(long, value_enum, default_value = "sqlite")]
    database: Database,
    /// Registered devices, all free for hire.
    #[arg(long, default_value_t = 1_000_000)]
    devices: usize,
    /// Requests of each kind (quotes, placements).
    #[arg(long, default_value_t = 5_000)]
    requests: usize,
    /// Run on a database seeded earlier with the same `--devices` instead of seeding one.
    #[arg(long, value_name = "URL")]
    reuse_database: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The `n`-th request of the mix.
fn request(n: usize, models: &[domain::catalog::GpuModel]) -> DeployRequest {
    const QUANTITIES: [u32; 5] = [1, 2, 8, 16, 64];
    const PLACES: [&[&str]; 3] = [&[], &["US"], &["DE", "FR"]];
    DeployRequest {
        name: format!("bench-{n}"),
        kind: ClusterKind::Ray,
        purpose: Purpose::Train,
        hardware: models[n % models.len()].name.clone(),
        quantity: QUANTITIES[n % QUANTITIES.len()],
        countries: PLACES[n % PLACES.len()]
            .iter()
            .map(|c| (*c).to_owned())
            .collect(),
        min_tier: (n % 2 == 1).then_some(ConnectivityTier::High),
        compliance: SecurityCompliance::E2eEncrypted,
        duration_unit: DurationUnit::Daily,
        duration_count: 2,
        payment: PaymentMethod::Usdc,
        workload: Default::default(),
    }
}

/// p50, p99 and the slowest of `samples` (microseconds), as milliseconds.
fn summary(mut samples: Vec<u32>) -> String {
    samples.sort_unstable();
    let ms = |q: f64| f64::from(percentile(&samples, q)) / 1000.0;
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms(0.5),
        ms(0.99),
        ms(1.0)
    )
}

async fn run(args: Args) -> Result<()> {
    let url = seeded_fleet(args.database, args.reuse_database.as_deref(), args.devices).await?;
    let started = Instant::now();
    let server = server::start(server::Config::for_database(&url)?).await?;
    println!("server ready in {:.2} s", started.elapsed().as_secs_f64());
    let provisioning = &server.platform.provisioning;
    let models = domain::catalog::GpuCatalog::builtin().models().to_vec();

    let mut fillable = 0;
    let mut quotes = Vec::with_capacity(args.requests);
    let began = Instant::now();
    for n in 0..args.requests {
        let asked = request(n, &models);
        let t = Instant::now();
        let answer = provisioning.quote(&asked)?;
        quotes.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        fillable += usize::from(answer.fillability.fillable);
    }
    let quoting = began.elapsed();
    println!(
        "quote + fillability: {} requests ({fillable} fillable) in {:.2} s, {:.0}/s; {}",
        args.requests,
        quoting.as_secs_f64(),
        args.requests as f64 / quoting.as_secs_f64(),
        summary(quotes)
    );

    let mut placed = 0;
    let mut placements = Vec::with_capacity(args.requests);
    let began = Instant::now();
    for n in 0..args.requests {
        let asked = request(n, &models);
        let t = Instant::now();
        let devices = provisioning.plan(&asked, n as u64, platform::now())?;
        placements.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        placed += usize::from(!devices.is_empty());
    }
    let placing = began.elapsed();
    println!(
        "placement: {} requests ({placed} placed) in {:.2} s, {:.0}/s; {}",
        args.requests,
        placing.as_secs_f64(),
        args.requests as f64 / placing.as_secs_f64(),
        summary(placements)
    );
    server.stop().await;
    Ok(())
}
