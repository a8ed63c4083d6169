//! Ray clusters without a command: `ray start` on every device, the head with `--head` and
//! JupyterLab beside it (with the token from the assignment, when JupyterLab is installed),
//! the others joining the head at its address. Both run in the workload's sandbox, and the
//! dashboard, its job API and JupyterLab are reached through the platform's tunnel alone, never
//! on the provider's public interfaces (the pattern behind the ShadowRay attacks): a one-device
//! cluster's sandbox has a network of its own, where they listen on every address of the
//! sandbox and only their ports are forwarded from the provider's loopback; in a cluster of
//! several devices (which share the device's network) they listen on its loopback.

use domain::agent_protocol::{WorkloadAssignment, NOTEBOOK_PORT};
use domain::cluster::ClusterRole;

use super::installed;

/// The port a Ray head's GCS listens on (Ray's default, which the console shows).
pub const RAY_PORT: &str = "6379";

/// What the sandbox runs for a Ray device, and the note for the report.
pub struct RayStart {
    pub argv: Vec<String>,
    pub detail: String,
}

/// `host:port` of a Ray head; IPv6 addresses in brackets.
fn ray_address(head: &str) -> String {
    if head.contains(':') {
        format!("[{head}]:{RAY_PORT}")
    } else {
        format!("{head}:{RAY_PORT}")
    }
}

/// How to start Ray on device `device_id`, or why it cannot.
pub fn start(assignment: &WorkloadAssignment, device_id: &str) -> Result<RayStart, String> {
    if !installed("ray") {
        return Err("Ray is not installed on this device (pip install ray)".into());
    }
    // Inside a sandbox's own network, the loopback is not where the forwarded ports arrive.
    let listen = if assignment.shares_network() {
        "127.0.0.1"
    } else {
        "0.0.0.0"
    };
    let mut ray: Vec<String> = vec!["ray".into(), "start".into()];
    match (assignment.role, &assignment.head_address) {
        (ClusterRole::Head, _) => ray
            .extend(["--head", "--port", RAY_PORT, "--dashboard-host", listen].map(str::to_owned)),
        (_, Some(head)) => ray.push(format!("--address={}", ray_address(head))),
        (_, None) => {
            return Err("the server has not told this Ray worker its head's address yet".into());
        }
    }
    ray.push("--block".into());
    let notebook = assignment.notebook_token.is_some() && assignment.role == ClusterRole::Head;
    if !notebook {
        return Ok(RayStart {
            argv: ray,
            detail: String::new(),
        });
    }
    if !installed("jupyter") {
        return Ok(RayStart {
            argv: ray,
            detail: "no JupyterLab: it is not installed on this device (pip install jupyterlab)"
                .into(),
        });
    }
    // Renters reach JupyterLab through the platform's tunnel, under its prefix: its pages and
    // API must be served there.
    let base_url = domain::tunnel::prefix(&assignment.cluster_id, device_id, NOTEBOOK_PORT);
    // One shell in one sandbox, which lives as long as Ray does and outlives both: when the
    // shell (the sandbox's main process) ends, the sandbox kills what is left, so it waits
    // for Ray (through the stop's SIGTERM), then stops JupyterLab and waits for it too.
    let quoted: Vec<String> = ray
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    Ok(RayStart {
        argv: vec![
            "sh".into(),
            "-c".into(),
            format!(
                "jupyter lab --ip={listen} --port={NOTEBOOK_PORT} --no-browser \
                 --ServerApp.token=\"$GC_NOTEBOOK_TOKEN\" --ServerApp.base_url='{base_url}' & J=$!; \
                 {} & R=$!; \
                 trap 'kill -TERM $R 2>/dev/null' TERM; \
                 S=0; while kill -0 $R 2>/dev/null; do wait $R; S=$?; done; \
                 kill -TERM $J 2>/dev/null; wait $J; exit $S",
                quoted.join(" ")
            ),
        ],
        detail: format!("JupyterLab on port {NOTEBOOK_PORT}, reached through the platform's tunnel"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_heads_are_bracketed() {
        assert_eq!(ray_address("10.0.0.5"), "10.0.0.5:6379");
        assert_eq!(ray_address("2001:db8::1"), "[2001:db8::1]:6379");
    }
}
