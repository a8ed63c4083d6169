//! `cargo xtask replicas [N]`: the platform as several stateless replicas on one PostgreSQL
//! behind HAProxy (issue 16, `deploy/haproxy.cfg`), on this machine. The first replica runs the
//! demo network; the load balancer listens on 127.0.0.1:8080, and for tunnels on 8081. Ctrl-C
//! stops them all.

use std::path::Path;
use std::process::{Child, Command};

use crate::{apt_install, build_release, run, step, workspace_root, Result};

/// Where the load balancer listens (the site, and renters' tunnels), and where each replica
/// does: replica n at the first port + 2n, its tunnel listener at the port after.
const BALANCER: &str = "127.0.0.1:8080";
const TUNNEL_BALANCER: &str = "127.0.0.1:8081";
const FIRST_REPLICA_PORT: u16 = 3001;

fn replica_port(n: u16) -> u16 {
    FIRST_REPLICA_PORT + 2 * n
}
/// The PostgreSQL the replicas share (the project's test server: trust auth, user postgres).
const SERVER: &str = "postgres://postgres@127.0.0.1:5432";
const DATABASE: &str = "gpu_commons_replicas";

pub fn run_replicas(args: &[String]) -> Result {
    let count: u16 = match args.first() {
        None => 3,
        Some(n) => n
            .parse()
            .ok()
            .filter(|n| (1..=16).contains(n))
            .ok_or_else(|| format!("the number of replicas must be 1–16, not '{n}'"))?,
    };
    let site = build_release()?;
    crate::ensure_confinement_tools(false)?;
    crate::ensure_load_balancer()?;
    if !Path::new("/usr/bin/psql").exists() {
        step("The PostgreSQL client, from Debian");
        apt_install(&["postgresql-client"])?;
    }
    step(&format!("PostgreSQL database {DATABASE}"));
    let exists = Command::new("psql")
        .args([SERVER, "-tAc"])
        .arg(format!(
            "SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"
        ))
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if !exists.status.success() {
        return Err(format!(
            "PostgreSQL is not reachable at {SERVER}: {}",
            String::from_utf8_lossy(&exists.stderr).trim()
        ));
    }
    if String::from_utf8_lossy(&exists.stdout).trim() != "1" {
        run(Command::new("psql")
            .args([SERVER, "-c"])
            .arg(format!("CREATE DATABASE {DATABASE}")))?;
    }
    let database_url = format!("{SERVER}/{DATABASE}");
    let folder = workspace_root().join("target").join("replicas");
    std::fs::create_dir_all(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    let config = balancer_config(count)?;
    let config_path = folder.join("haproxy.cfg");
    std::fs::write(&config_path, config).map_err(|e| format!("{}: {e}", config_path.display()))?;

    step(&format!(
        "{count} replicas behind HAProxy at http://{BALANCER}, tunnels at http://{TUNNEL_BALANCER} (Ctrl-C to stop)"
    ));
    let server = workspace_root()
        .join("target")
        .join("release")
        .join("gpu-commons");
    let mut children: Vec<Child> = Vec::new();
    for n in 0..count {
        let mut replica = Command::new(&server);
        replica
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", replica_port(n)))
            .arg("--database-url")
            .arg(&database_url)
            .arg("--public-url")
            .arg(format!("http://{BALANCER}"))
            .arg("--tunnel-url")
            .arg(format!("http://{TUNNEL_BALANCER}"))
            .arg("--trusted-proxies")
            .arg("127.0.0.1")
            .arg("--site-root")
            .arg(&site);
        // One replica runs the demo network (its fleet, its agents); the rest serve it.
        replica
            .arg("--demo")
            .arg(if n == 0 { "true" } else { "false" });
        replica.args(&args[args.len().min(1)..]);
        children.push(spawn(&mut replica)?);
    }
    let mut balancer = Command::new("/usr/sbin/haproxy");
    balancer
        .arg("-f")
        .arg(&config_path)
        .arg("-db")
        .env("GC_LB_LISTEN", BALANCER)
        .env("GC_LB_TUNNEL_LISTEN", TUNNEL_BALANCER);
    children.push(spawn(&mut balancer)?);
    // Ctrl-C reaches every child (one process group); wait for all of them to end.
    let mut failed = None;
    for mut child in children {
        match child.wait() {
            Ok(status) if !status.success() && failed.is_none() => {
                failed = Some(format!("a replica or the balancer ended: {status}"));
            }
            Err(e) => failed = Some(e.to_string()),
            _ => {}
        }
    }
    failed.map_or(Ok(()), Err)
}

/// `deploy/haproxy.cfg` with a `server` line per replica where each marker is: its site and
/// API listener, and its tunnel listener.
pub fn balancer_config(count: u16) -> Result<String> {
    let template_path = workspace_root().join("deploy").join("haproxy.cfg");
    let mut config = std::fs::read_to_string(&template_path)
        .map_err(|e| format!("{}: {e}", template_path.display()))?;
    for (marker, offset) in [("replicas", 0), ("replica-tunnels", 1)] {
        let servers: Vec<String> = (0..count)
            .map(|n| {
                format!(
                    "    server replica{n} 127.0.0.1:{}",
                    replica_port(n) + offset
                )
            })
            .collect();
        let line = format!("    # @{marker}@");
        if !config.contains(&line) {
            return Err(format!(
                "{} has no '# @{marker}@' marker",
                template_path.display()
            ));
        }
        config = config.replace(&line, &servers.join("\n"));
    }
    Ok(config)
}

fn spawn(command: &mut Command) -> Result<Child> {
    println!("    $ {}", format!("{command:?}").replace('"', ""));
    command
        .spawn()
        .map_err(|e| format!("could not start {command:?}: {e}"))
}
