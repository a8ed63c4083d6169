//! `replica-bench`: how soon a change committed on one replica is visible on another (issue 16).
//!
//! Two replicas' services over one fresh PostgreSQL database, replica B following the change
//! feed as a server does (`server::replication::follow`: woken by `NOTIFY`, polling every second
//! besides). Replica A hears a device, then marks it down for its silence (one committed
//! status change), then hears it again (another); after each commit the bench polls replica
//! B's network totals until they show it. Reports p50/p99/max in milliseconds.

use std::time::{Duration, Instant};

use clap::Parser;
use domain::agent_protocol::{Heartbeat, Utilisation};
use domain::time::UnixMillis;
use loadtest::percentile;
use platform::replicas::FeedPosition;
use platform::store::Store;
use platform::Platform;

#[derive(Debug, Parser)]
#[command(
    name = "replica-bench",
    about = "Time from a change on one replica to its being visible on another"
)]
struct Args {
    /// Devices in the seeded fleet.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Changes timed (half of them down, half back up).
    #[arg(long, default_value_t = 200)]
    changes: usize,
}

async fn replica(url: &str, now: UnixMillis) -> Platform {
    let p = Platform::new(
        Store::open(url).await.expect("the database opens"),
        platform::testing::plain_config("http://bench"),
    );
    p.replicas.renew(now).await.expect("renew");
    p.agents.rebuild(now).await.expect("rebuild");
    p
}

/// `device`'s agent heard by `p` at `at`.
async fn hear(p: &Platform, device: &str, at: UnixMillis) {
    let heartbeat = Heartbeat {
        sent_at: at.0,
        agent_version: "bench".into(),
        utilisation: Utilisation::default(),
        workloads: Vec::new(),
    };
    p.agents
        .heartbeat(device, heartbeat, None, at)
        .await
        .expect("heartbeat");
}

/// The verified idle GPUs `p` counts.
async fn idle_gpus(p: &Platform) -> i64 {
    p.fleet
        .network_summary()
        .await
        .expect("summary")
        .totals
        .gpus_idle
}

/// Waits until `b`'s idle GPUs are `want`; returns how long that took.
async fn visible(b: &Platform, want: i64, since: Instant) -> Duration {
    loop {
        if idle_gpus(b).await == want {
            return since.elapsed();
        }
        assert!(since.elapsed() < Duration::from_secs(10), "B never saw it");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let url = platform::testing::fresh_postgres_url()
        .await
        .expect("replica-bench needs PostgreSQL at 127.0.0.1:5432 (TEST_POSTGRES_URL)");
    let start = platform::now();
    {
        let store = Store::open(&url).await.expect("the database opens");
        platform::testing::seed_agent_fleet(&store, args.devices, start)
            .await
            .expect("seed");
        store.close().await;
    }
    let a = replica(&url, start).await;
    let b = replica(&url, start).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let follower = server::replication::follow(
        b.clone(),
        url.clone(),
        FeedPosition::starting_at(b.replicas.newest_change().await.expect("feed")),
        stopped,
    )
    .expect("PostgreSQL has a change feed to follow");
    let ids: Vec<String> = (0..args.changes / 2)
        .map(|n| {
            platform::testing::seeded_credential(n % args.devices)
                .split_once('.')
                .map(|(id, _)| id.to_owned())
                .expect("credential")
        })
        .collect();
    let down_after_ms = a.agents.config().down_after_secs * 1000;
    let mut latencies: Vec<u32> = Vec::new();
    let mut now = start;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (n, device) in ids.iter().enumerate() {
        now = UnixMillis(now.0 + 1_000);
        hear(&a, device, now).await;
        let before = idle_gpus(&b).await;
        let gpus = platform::testing::stored_number(
            &a.store,
            "SELECT gpu_count FROM devices WHERE id = $1",
            device,
        )
        .await
        .expect("gpus");
        // Down for its silence on A; the devices timed before it were heard meanwhile.
        now = UnixMillis(now.0 + down_after_ms + 1_000);
        for earlier in &ids[..n] {
            hear(&a, earlier, now).await;
        }
        a.agents.sweep(now).await.expect("sweep");
        let committed = Instant::now();
        latencies.push(visible(&b, before - gpus, committed).await.as_micros() as u32);
        // Back up: A hears it again.
        hear(&a, device, now).await;
        let committed = Instant::now();
        latencies.push(visible(&b, before, committed).await.as_micros() as u32);
    }
    let _ = stop.send(true);
    let _ = follower.await;
    latencies.sort_unstable();
    let ms = |us: u32| f64::from(us) / 1000.0;
    println!("| devices | changes | p50 (ms) | p99 (ms) | max (ms) |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.2} | {:.2} | {:.2} |",
        args.devices,
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap_or(&0)),
    );
    a.store.close().await;
    b.store.close().await;
    let _ = platform::testing::drop_postgres_database(&url).await;
}
