//! The project's load balancer (HAProxy with `deploy/haproxy.cfg`) in front of server replicas
//! started by a load tool, so what it measures through the balancer is what a deployment runs.

use std::path::Path;

use crate::{free_port, wait_ready, Result};

const HAPROXY: &str = "/usr/sbin/haproxy";

/// HAProxy running `deploy/haproxy.cfg` on a free loopback port, with the given replicas.
pub struct Balancer {
    child: tokio::process::Child,
    pub pid: u32,
    pub addr: String,
}

impl Balancer {
    /// Starts HAProxy in front of the replicas at `replicas` (`host:port` each), and waits
    /// until it passes requests to them.
    pub async fn start(replicas: &[String]) -> Result<Balancer> {
        if !Path::new(HAPROXY).exists() {
            return Err(format!(
                "{HAPROXY} is not installed (`cargo xtask test` or `apt-get install haproxy`)"
            )
            .into());
        }
        let template_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg");
        let template = std::fs::read_to_string(&template_path)
            .map_err(|e| format!("{}: {e}", template_path.display()))?;
        let servers: Vec<String> = replicas
            .iter()
            .enumerate()
            .map(|(n, at)| format!("    server replica{n} {at}"))
            .collect();
        for marker in ["    # @replicas@", "    # @replica-tunnels@"] {
            if !template.contains(marker) {
                return Err(format!("{} lacks '{marker}'", template_path.display()).into());
            }
        }
        // The load tools run no tunnels: that backend stays empty.
        let config = template
            .replace("    # @replicas@", &servers.join("\n"))
            .replace("    # @replica-tunnels@", "");
        let config_path =
            std::env::temp_dir().join(format!("loadtest-haproxy-{}.cfg", std::process::id()));
        std::fs::write(&config_path, config)?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let child = tokio::process::Command::new(HAPROXY)
            .arg("-f")
            .arg(&config_path)
            .arg("-db")
            .env("GC_LB_LISTEN", &addr)
            .env("GC_LB_TUNNEL_LISTEN", format!("127.0.0.1:{}", free_port()?))
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or("haproxy exited at once")?;
        wait_ready(&addr, std::time::Duration::from_secs(30)).await?;
        Ok(Balancer { child, pid, addr })
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
