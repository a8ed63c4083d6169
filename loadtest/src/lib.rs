//! What the load tools share.

pub mod balancer;
pub mod http;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use platform::store::Store;
use platform::testing;
use tokio::net::TcpStream;

use crate::http::Connection;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Which backend a load tool runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Database {
    Sqlite,
    Postgres,
}

/// A new, empty SQLite file or PostgreSQL database; its URL.
pub async fn fresh_database(database: Database) -> Result<String> {
    Ok(match database {
        Database::Sqlite => testing::fresh_sqlite_url(),
        Database::Postgres => testing::fresh_postgres_url()
            .await
            .ok_or("PostgreSQL is unreachable (set TEST_POSTGRES_URL)")?,
    })
}

/// The URL of a database with `devices` agent-run, verified, idle devices: `reuse` as it is
/// (seeded by an earlier run), or a new SQLite file or PostgreSQL database seeded now.
pub async fn seeded_fleet(
    database: Database,
    reuse: Option<&str>,
    devices: usize,
) -> Result<String> {
    if let Some(url) = reuse {
        return Ok(url.to_owned());
    }
    let url = fresh_database(database).await?;
    let seeding = Instant::now();
    let store = Store::open(&url).await?;
    testing::seed_agent_fleet(&store, devices, platform::now()).await?;
    store.close().await;
    println!(
        "seeded {devices} devices on {database:?} in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    Ok(url)
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls `/readyz` until it answers 200. The server binds its port before it rebuilds the
/// fleet, so an early request waits in the backlog and is answered once it serves.
pub async fn wait_ready(addr: &str, limit: Duration) -> Result<()> {
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
pub fn cpu_time(pid: u32) -> Duration {
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
pub fn rss_mib(pid: u32) -> u64 {
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

/// Where a load tool runs the server: which backend, which database, which binary.
#[derive(Debug, clap::Args)]
pub struct ServerRun {
    /// Which backend the server runs on (PostgreSQL: a new database on TEST_POSTGRES_URL).
    #[arg(long, value_enum, default_value = "sqlite")]
    pub database: Database,
    /// Run on a database seeded by an earlier `--keep-database` run with the same `--devices`,
    /// instead of seeding a new one.
    #[arg(long, value_name = "URL")]
    pub reuse_database: Option<String>,
    /// Keep the database afterwards and print its URL, for `--reuse-database`.
    #[arg(long)]
    pub keep_database: bool,
    /// The server binary; by default the `gpu-commons` beside this one.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
}

impl ServerRun {
    /// Whether the database is to outlive the run.
    pub fn keeps_database(&self) -> bool {
        self.keep_database || self.reuse_database.is_some()
    }
}

/// The `gpu-commons` binary: `given`, or the one built beside this tool.
pub fn server_binary(given: Option<&PathBuf>) -> Result<PathBuf> {
    let path = match given {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("gpu-commons"),
    };
    if !path.exists() {
        return Err(format!(
            "no server binary at {} (build it: cargo build --release -p server)",
            path.display()
        )
        .into());
    }
    Ok(path)
}

/// The real server binary running as a child process on a free loopback port.
pub struct ServerProcess {
    child: tokio::process::Child,
    pub pid: u32,
    pub addr: String,
    /// From the start of the process until `/readyz` answered.
    pub ready_after: Duration,
}

impl ServerProcess {
    /// Starts `bin` on `database_url` with `extra` flags (and an empty site: pages render, the
    /// hydrate bundle is not needed) and waits until it is ready.
    pub async fn start(bin: &PathBuf, database_url: &str, extra: &[&str]) -> Result<ServerProcess> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let site = std::env::temp_dir().join("loadtest-empty-site");
        std::fs::create_dir_all(&site)?;
        let spawned = Instant::now();
        let child = tokio::process::Command::new(bin)
            .args([
                "--database-url",
                database_url,
                "--listen",
                &addr,
                "--log",
                "warn",
            ])
            .args(extra)
            .arg("--site-root")
            .arg(&site)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or("the server exited at once")?;
        wait_ready(&addr, Duration::from_secs(300)).await?;
        Ok(ServerProcess {
            child,
            pid,
            addr,
            ready_after: spawned.elapsed(),
        })
    }

    /// SIGTERM, as an operator stops it: it stops taking requests and writes what it holds.
    pub async fn stop(mut self) -> Result<()> {
        std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        let exit = tokio::time::timeout(Duration::from_secs(120), self.child.wait()).await??;
        if !exit.success() {
            return Err(format!("the server exited with {exit}").into());
        }
        Ok(())
    }
}

/// Deletes a database a tool made (an SQLite file with its journal, or a PostgreSQL
/// database), unless it is to be `kept` for a later `--reuse-database`.
pub async fn discard_database(url: &str, kept: bool) -> Result<()> {
    if kept {
        println!("database kept: {url}");
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    } else {
        testing::drop_postgres_database(url).await?;
    }
    Ok(())
}

/// The value below which a share `q` of the sorted samples fall.
pub fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_pick_from_the_sorted_samples() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.5), 51);
        assert_eq!(percentile(&samples, 0.99), 99);
        assert_eq!(percentile(&samples, 1.0), 100);
        assert_eq!(percentile(&[], 0.99), 0);
    }
}
