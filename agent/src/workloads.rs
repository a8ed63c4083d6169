//! Runs the workloads of the clusters this device is hired into, as the server's heartbeat
//! replies list them, and reports each one's state on the next heartbeat.
//!
//! Runtimes: `process` runs the cluster's command through the system shell (bare metal,
//! Kubernetes and Ray clusters with a command); `docker` runs a container cluster's image when
//! Docker is installed; Ray clusters without a command run `ray start` when Ray is installed:
//! the head with `--head` (and JupyterLab beside it, with the token from the assignment, when
//! JupyterLab is installed), the others joining it at the head's address from the assignment.
//! A missing runtime is reported as a failure that says what to install. A cluster without a
//! command holds the device for the renter and reports running. Commands get the cluster's
//! env and `GC_CLUSTER_ID`, `GC_DEVICE_ID`, `GC_ROLE` and, on the devices of a cluster with a
//! head, `GC_HEAD_ADDRESS` (for multi-device jobs: `torchrun --master-addr`, …).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use domain::agent_protocol::{WorkloadAssignment, WorkloadReport, WorkloadState, NOTEBOOK_PORT};
use domain::cluster::{ClusterRole, Runtime};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

struct Running {
    child: Option<Child>,
    /// The container to stop when the cluster ends (docker runtime).
    container: Option<String>,
    /// The container's env file, removed when the cluster ends.
    env_file: Option<PathBuf>,
    state: WorkloadState,
    detail: String,
}

pub struct Workloads {
    device_id: String,
    running: HashMap<String, Running>,
    /// Where what runs is written down, so that a restart after the agent was killed (which
    /// cannot stop its workloads) stops them before the server's assignments start them again.
    record: PathBuf,
}

/// A workload as written down: its process group (the pid of the command it started) with
/// the process's start time, so a pid reused by another process is never taken for it, and
/// its container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Recorded {
    cluster_id: String,
    pid: Option<u32>,
    started: Option<u64>,
    container: Option<String>,
    #[serde(default)]
    env_file: Option<PathBuf>,
}

/// When process `pid` started (clock ticks since boot), if it is alive (not a zombie), where
/// the system says (Linux `/proc`).
fn process_started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (in parentheses) may hold spaces; the state is the first field after
    // it, the start time the 20th.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Stops what an earlier run of the agent recorded as running and could not stop (it was
/// killed): each process group whose leader is still the process recorded, and each
/// container. Returns what it stopped; the record is then cleared.
pub fn stop_leftovers(record: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(record) else {
        return Vec::new();
    };
    let recorded: Vec<Recorded> = serde_json::from_str(&text).unwrap_or_else(|e| {
        eprintln!(
            "ignoring the damaged workload record {}: {e}",
            record.display()
        );
        Vec::new()
    });
    let mut stopped = Vec::new();
    for leftover in recorded {
        if let Some(name) = &leftover.container {
            let _ = std::process::Command::new("docker")
                .args(["stop", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            stopped.push(format!(
                "container {name} of cluster {}",
                leftover.cluster_id
            ));
        }
        if let Some(file) = &leftover.env_file {
            let _ = std::fs::remove_file(file);
        }
        if let (Some(pid), Some(started)) = (leftover.pid, leftover.started) {
            if process_started(pid) == Some(started) {
                signal_group(pid, "TERM");
                let deadline = std::time::Instant::now() + STOP_GRACE;
                while process_started(pid) == Some(started) && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                if process_started(pid) == Some(started) {
                    signal_group(pid, "KILL");
                }
                stopped.push(format!(
                    "process group {pid} of cluster {}",
                    leftover.cluster_id
                ));
            }
        }
    }
    let _ = std::fs::remove_file(record);
    stopped
}

/// Sends `signal` to the process group led by `pid`.
fn signal_group(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

/// The port a Ray head's GCS listens on (Ray's default, which the console shows).
const RAY_PORT: &str = "6379";

/// `host:port` of a Ray head; IPv6 addresses in brackets.
fn ray_address(head: &str) -> String {
    if head.contains(':') {
        format!("[{head}]:{RAY_PORT}")
    } else {
        format!("{head}:{RAY_PORT}")
    }
}

/// Where a program is on PATH, if anywhere.
fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn shell(command: &str) -> Command {
    if cfg!(windows) {
        let mut c = Command::new("cmd");
        c.arg("/C").arg(command);
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c").arg(command);
        c
    }
}

impl Workloads {
    /// Workloads of `device_id`, written down in `record` while they run.
    pub fn new(device_id: &str, record: PathBuf) -> Workloads {
        Workloads {
            device_id: device_id.to_owned(),
            running: HashMap::new(),
            record,
        }
    }

    /// Writes down what runs now (see [`stop_leftovers`]); a failure is reported, not fatal.
    fn save_record(&self) {
        let recorded: Vec<Recorded> = self
            .running
            .iter()
            .map(|(id, w)| {
                let pid = w.child.as_ref().and_then(Child::id);
                Recorded {
                    cluster_id: id.clone(),
                    pid,
                    started: pid.and_then(process_started),
                    container: w.container.clone(),
                    env_file: w.env_file.clone(),
                }
            })
            .collect();
        let written = serde_json::to_vec(&recorded)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&self.record, bytes));
        if let Err(e) = written {
            eprintln!(
                "could not write the workload record {}: {e}",
                self.record.display()
            );
        }
    }

    /// Starts what is newly assigned and stops what no longer is. Returns whether anything
    /// changed (the caller then reports soon instead of after a full interval).
    pub fn reconcile(&mut self, assignments: &[WorkloadAssignment]) -> bool {
        let mut changed = false;
        let ended: Vec<String> = self
            .running
            .keys()
            .filter(|id| !assignments.iter().any(|a| &a.cluster_id == *id))
            .cloned()
            .collect();
        for id in ended {
            if let Some(mut workload) = self.running.remove(&id) {
                println!("cluster {id} ended; stopping its workload");
                stop(&mut workload, true);
                changed = true;
            }
        }
        for assignment in assignments {
            if !self.running.contains_key(&assignment.cluster_id) {
                let started = self.start(assignment);
                println!(
                    "cluster {}: workload {} {}",
                    assignment.cluster_id,
                    started.state.as_str(),
                    started.detail
                );
                self.running.insert(assignment.cluster_id.clone(), started);
                changed = true;
            }
        }
        if changed {
            self.save_record();
        }
        changed
    }

    fn start(&self, assignment: &WorkloadAssignment) -> Running {
        let workload = &assignment.workload;
        let failed = |detail: String| Running {
            child: None,
            container: None,
            env_file: None,
            state: WorkloadState::Failed,
            detail,
        };
        let env = workload_env(assignment, &self.device_id);
        // What the report says beside the state (empty: nothing to add).
        let mut detail = String::new();
        let (mut command, container) = match assignment.kind.runtime() {
            Runtime::Container => {
                if !installed("docker") {
                    return failed("Docker is not installed on this device".into());
                }
                let name = format!("gc-{}", assignment.cluster_id);
                // The env reaches the container only, through a file of the agent's: never
                // the engine's own process (DOCKER_HOST=…) nor its command line (`ps`).
                let env_file = self.record.with_file_name(format!("{name}.env"));
                if let Err(e) = write_env_file(&env_file, &env) {
                    return failed(format!("could not write the container's env file: {e}"));
                }
                let mut c = Command::new("docker");
                c.args(["run", "--rm", "--name", &name, "--env-file"])
                    .arg(&env_file);
                if let Some(port) = workload.port {
                    c.arg("-p").arg(format!("{port}:{port}"));
                }
                // `--` ends the engine's options: the image is only ever an image.
                c.arg("--").arg(&workload.image);
                if !workload.command.is_empty() {
                    c.args(["sh", "-c", &workload.command]);
                }
                (c, Some((name, env_file)))
            }
            Runtime::Ray if workload.command.is_empty() => {
                if !installed("ray") {
                    return failed("Ray is not installed on this device (pip install ray)".into());
                }
                let mut ray = vec!["start".to_owned()];
                match (assignment.role, &assignment.head_address) {
                    (ClusterRole::Head, _) => ray.extend(
                        ["--head", "--port", RAY_PORT, "--dashboard-host", "0.0.0.0"]
                            .map(str::to_owned),
                    ),
                    (_, Some(head)) => ray.push(format!("--address={}", ray_address(head))),
                    (_, None) => {
                        return failed(
                            "the server has not told this Ray worker its head's address yet".into(),
                        );
                    }
                }
                ray.push("--block".into());
                let plain = |ray: &[String]| {
                    let mut c = Command::new("ray");
                    c.args(ray);
                    c
                };
                let c = match &assignment.notebook_token {
                    Some(_) if cfg!(unix) && installed("jupyter") => {
                        // One shell, one process group: stopping the cluster stops both.
                        detail = format!("JupyterLab on port {NOTEBOOK_PORT}");
                        let quoted: Vec<String> = ray
                            .iter()
                            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
                            .collect();
                        shell(&format!(
                            "jupyter lab --ip=0.0.0.0 --port={NOTEBOOK_PORT} --no-browser \
                             --allow-root --ServerApp.token=\"$GC_NOTEBOOK_TOKEN\" & exec ray {}",
                            quoted.join(" ")
                        ))
                    }
                    Some(_) => {
                        detail = "no JupyterLab: it is not installed on this device (pip install \
                                  jupyterlab)"
                            .into();
                        plain(&ray)
                    }
                    None => plain(&ray),
                };
                (c, None)
            }
            Runtime::Ray | Runtime::Kubernetes | Runtime::Process
                if workload.command.is_empty() =>
            {
                return Running {
                    child: None,
                    container: None,
                    env_file: None,
                    state: WorkloadState::Running,
                    detail: "holding the device for the renter".into(),
                }
            }
            Runtime::Ray | Runtime::Kubernetes | Runtime::Process => {
                (shell(&workload.command), None)
            }
        };
        if container.is_none() {
            command.envs(env);
        }
        command.stdin(Stdio::null()).kill_on_drop(true);
        let (container, env_file) = container.unzip();
        #[cfg(unix)]
        command.process_group(0);
        match command.spawn() {
            Ok(child) => Running {
                child: Some(child),
                container,
                env_file,
                state: WorkloadState::Running,
                detail,
            },
            Err(e) => failed(format!("could not start the workload: {e}")),
        }
    }

    /// The clusters whose workloads run here (what the server's long poll compares with).
    pub fn cluster_ids(&self) -> Vec<String> {
        self.running.keys().cloned().collect()
    }

    /// Each workload's state now, for the heartbeat.
    pub fn reports(&mut self) -> Vec<WorkloadReport> {
        for (id, workload) in &mut self.running {
            let Some(child) = &mut workload.child else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                workload.child = None;
                (workload.state, workload.detail) = if status.success() {
                    (WorkloadState::Stopped, "the command finished".into())
                } else {
                    (
                        WorkloadState::Failed,
                        format!("the command ended with {status}"),
                    )
                };
                println!(
                    "cluster {id}: workload {} ({})",
                    workload.state.as_str(),
                    workload.detail
                );
            }
        }
        self.running
            .iter()
            .map(|(id, w)| WorkloadReport {
                cluster_id: id.clone(),
                state: w.state,
                detail: w.detail.clone(),
            })
            .collect()
    }
}

/// How long a stopped workload gets to exit on SIGTERM before it is killed.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Asks the workload to stop (SIGTERM to the shell's whole process group, so commands it
/// started stop too; `docker stop` for a container) and kills it if it has not exited after
/// [`STOP_GRACE`]. `graceful: false` kills at once (the agent itself is exiting).
/// The environment of a cluster's workload: the renter's variables and the platform's
/// (`GC_CLUSTER_ID`, `GC_DEVICE_ID`, `GC_ROLE`, `GC_HEAD_ADDRESS`, `GC_NOTEBOOK_TOKEN`), which
/// the renter's cannot shadow (the server refuses `GC_` names).
fn workload_env(assignment: &WorkloadAssignment, device_id: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = assignment
        .workload
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push(("GC_CLUSTER_ID".into(), assignment.cluster_id.clone()));
    env.push(("GC_DEVICE_ID".into(), device_id.to_owned()));
    env.push(("GC_ROLE".into(), assignment.role.as_str().to_owned()));
    if let Some(head) = &assignment.head_address {
        env.push(("GC_HEAD_ADDRESS".into(), head.clone()));
    }
    if let Some(token) = &assignment.notebook_token {
        env.push(("GC_NOTEBOOK_TOKEN".into(), token.clone()));
    }
    env
}

/// Writes `env` as an engine env file (`NAME=value` a line; the server allows no line breaks
/// in values), readable by the agent's user only.
fn write_env_file(path: &Path, env: &[(String, String)]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    for (name, value) in env {
        if value.contains(['\n', '\r', '\0']) {
            return Err(std::io::Error::other(format!(
                "the value of {name} is not one line"
            )));
        }
        writeln!(file, "{name}={value}")?;
    }
    Ok(())
}

fn stop(workload: &mut Running, graceful: bool) {
    if let Some(file) = workload.env_file.take() {
        let _ = std::fs::remove_file(file);
    }
    if let Some(name) = &workload.container {
        let _ = std::process::Command::new("docker")
            .args(["stop", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
    let Some(mut child) = workload.child.take() else {
        return;
    };
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        signal_group(pid, "TERM");
    }
    if !graceful {
        let _ = child.start_kill();
        return;
    }
    tokio::spawn(async move {
        if tokio::time::timeout(STOP_GRACE, child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    });
}

impl Drop for Workloads {
    fn drop(&mut self) {
        for workload in self.running.values_mut() {
            stop(workload, false);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    fn sleeper() -> std::process::Child {
        std::process::Command::new("sh")
            .args(["-c", "sleep 30"])
            .process_group(0)
            .spawn()
            .unwrap()
    }

    #[test]
    fn leftovers_are_stopped_only_when_the_pid_is_still_theirs() {
        let dir = std::env::temp_dir().join(format!("gc-leftovers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let record = dir.join("agent.workloads.json");
        let (mut ours, mut reused) = (sleeper(), sleeper());
        let recorded = |child: &std::process::Child, started: Option<u64>| Recorded {
            cluster_id: "cl-1".into(),
            pid: Some(child.id()),
            started,
            container: None,
            env_file: None,
        };
        let reused_started = process_started(reused.id()).unwrap();
        std::fs::write(
            &record,
            serde_json::to_vec(&[
                recorded(&ours, process_started(ours.id())),
                // Another process now holds a recorded pid: its start time differs.
                recorded(&reused, Some(reused_started + 1)),
            ])
            .unwrap(),
        )
        .unwrap();
        let stopped = stop_leftovers(&record);
        assert_eq!(
            stopped,
            [format!("process group {} of cluster cl-1", ours.id())]
        );
        assert!(ours.wait().unwrap().code().is_none(), "ended by a signal");
        assert!(reused.try_wait().unwrap().is_none(), "left alone");
        assert!(!record.exists(), "the record is cleared");
        assert!(
            stop_leftovers(&record).is_empty(),
            "nothing recorded, nothing done"
        );
        reused.kill().unwrap();
        reused.wait().unwrap();
    }
}
