//! Runs the workloads of the clusters this device is hired into, as the server's heartbeat
//! replies list them, confined, and reports each one's state on the next heartbeat.
//!
//! - Container clusters run on the engine this machine has ([`engine`]): unprivileged, limited,
//!   with only this device's GPUs.
//! - Bare-metal (and Kubernetes) clusters with a command, and Ray clusters, run inside a
//!   bubblewrap sandbox ([`sandbox`]); a one-device cluster's has a network of its own, with
//!   only the ports it serves forwarded from the provider's loopback ([`network`]); Ray's
//!   dashboard and JupyterLab are reached through the platform's tunnel alone ([`ray`]).
//! - A cluster without a command holds the device for the renter and reports running.
//!
//! Each workload's output goes to a bounded log ([`logs`]). A missing runtime is reported as a
//! failure that says what to install. Commands get the cluster's env and `GC_CLUSTER_ID`,
//! `GC_DEVICE_ID`, `GC_ROLE` and, on the devices of a cluster with a head, `GC_HEAD_ADDRESS`
//! (for multi-device jobs: `torchrun --master-addr`, …). What runs is written down
//! ([`record`]) so a restarted agent stops what a killed one left behind.

mod cgroup;
mod engine;
mod logs;
mod network;
mod ray;
mod record;
mod sandbox;
mod shipping;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use domain::agent_protocol::{FailureCause, WorkloadAssignment, WorkloadReport, WorkloadState};
use domain::cluster::{ClusterRole, Runtime};
use domain::output::cut;
use tokio::process::{Child, Command};

pub use cgroup::remove_empty_cgroups;
pub use engine::{Engine, Limits};
pub use record::stop_leftovers;
pub use sandbox::Sandbox;
pub use shipping::Shipping;

use engine::ContainerSpec;
use logs::Output;
use record::{process_started, signal, Recorded};

/// How long a stopped workload gets to exit on SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long an exited workload's last output is waited for before it is reported.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// How this device runs workloads.
pub struct Settings {
    /// Bare-metal and Ray workloads' sandbox.
    pub sandbox: Sandbox,
    /// The container engine found, if any.
    pub engine: Option<Engine>,
    pub limits: Limits,
    /// This device's NVIDIA GPU indexes (none when its GPUs are simulated).
    pub gpus: Vec<u32>,
    /// Where workload logs are kept.
    pub logs: PathBuf,
    /// Where their lines wait to be shipped to the server.
    pub shipping: Shipping,
    /// The ports running workloads serve through tunnels.
    pub served: crate::tunnel::Served,
}

/// What confines a running workload, and what to clean up after it.
enum Confined {
    /// A bubblewrap sandbox, its private work folder, its control groups (where the agent
    /// may make them) and, for a one-device cluster, its own network; the last two end when
    /// this is dropped.
    Sandbox {
        workdir: PathBuf,
        cgroups: Option<cgroup::Cgroups>,
        network: Option<network::SandboxNetwork>,
    },
    /// A container, its engine and its env file.
    Container {
        engine: Engine,
        name: String,
        env_file: PathBuf,
    },
    /// Nothing runs: the device is held for the renter.
    Holding,
}

/// A device's part in a cluster, as its workload was started for.
#[derive(Debug, PartialEq, Eq)]
struct Part {
    role: ClusterRole,
    head_device: Option<String>,
}

impl Part {
    fn of(assignment: &WorkloadAssignment) -> Part {
        Part {
            role: assignment.role,
            head_device: assignment.head_device.clone(),
        }
    }
}

struct Running {
    /// The sandbox's bubblewrap or the engine's `run`, while it runs.
    child: Option<Child>,
    confined: Confined,
    output: Option<Output>,
    /// When the child was seen to exit, and how: reported once its output is read.
    exited: Option<(ExitStatus, Instant)>,
    state: WorkloadState,
    detail: String,
    /// Whose problem a failure is.
    cause: Option<FailureCause>,
}

impl Running {
    /// A workload this device could not start: the device's problem (a missing runtime, a
    /// folder it could not make).
    fn failed(detail: String) -> Running {
        Running {
            child: None,
            confined: Confined::Holding,
            output: None,
            exited: None,
            state: WorkloadState::Failed,
            detail,
            cause: Some(FailureCause::Device),
        }
    }
}

pub struct Workloads {
    device_id: String,
    settings: Settings,
    running: HashMap<String, Running>,
    /// Each running cluster's part as this device started it: its role and the head device
    /// it joined. A new head (the old one was lost) restarts the workload to join it.
    parts: HashMap<String, Part>,
    /// Where what runs is written down (see [`stop_leftovers`]).
    record: PathBuf,
}

/// Whether a program is on PATH.
fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Whether bubblewrap, which sandboxed workloads need, is installed.
pub fn installed_bwrap() -> bool {
    installed("bwrap")
}

/// Cluster ids become file and container names: only plain ones are accepted from the server.
fn plain_name(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Workloads {
    /// Workloads of `device_id`, written down in `record` while they run.
    pub fn new(device_id: &str, record: PathBuf, settings: Settings) -> Workloads {
        Workloads {
            device_id: device_id.to_owned(),
            settings,
            running: HashMap::new(),
            parts: HashMap::new(),
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
                let (container, engine, env_file, workdir) = match &w.confined {
                    Confined::Sandbox { workdir, .. } => (None, None, None, Some(workdir.clone())),
                    Confined::Container {
                        engine,
                        name,
                        env_file,
                    } => (
                        Some(name.clone()),
                        Some(*engine),
                        Some(env_file.clone()),
                        None,
                    ),
                    Confined::Holding => (None, None, None, None),
                };
                Recorded {
                    cluster_id: id.clone(),
                    pid,
                    started: pid.and_then(process_started),
                    container,
                    engine,
                    env_file,
                    workdir,
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

    /// Starts what is newly assigned, stops what no longer is, and restarts what has a new
    /// part (a Ray worker whose head was replaced, a worker made head). Returns whether
    /// anything changed (the caller then reports soon instead of after a full interval).
    pub async fn reconcile(&mut self, assignments: &[WorkloadAssignment]) -> bool {
        let mut changed = false;
        let ended: Vec<String> = self
            .running
            .keys()
            .filter(|id| !assignments.iter().any(|a| &a.cluster_id == *id))
            .cloned()
            .collect();
        for id in ended {
            if let Some(workload) = self.running.remove(&id) {
                self.settings.served.remove(&id);
                self.parts.remove(&id);
                println!("cluster {id} ended; stopping its workload");
                tokio::spawn(stop(workload));
                changed = true;
            }
        }
        for assignment in assignments {
            let id = &assignment.cluster_id;
            let recast = self
                .parts
                .get(id)
                .is_some_and(|part| *part != Part::of(assignment));
            if recast {
                if let Some(workload) = self.running.remove(id) {
                    println!(
                        "cluster {id}: now {} with head {}; restarting its workload",
                        assignment.role.as_str(),
                        assignment.head_device.as_deref().unwrap_or("this device")
                    );
                    // Awaited: the new start reuses the cluster's names (work folder, container).
                    stop(workload).await;
                }
            }
            if !self.running.contains_key(&assignment.cluster_id) {
                self.parts
                    .insert(assignment.cluster_id.clone(), Part::of(assignment));
                let started = self.start(assignment);
                println!(
                    "cluster {}: workload {} {}",
                    assignment.cluster_id,
                    started.state.as_str(),
                    started.detail
                );
                if started.state != WorkloadState::Failed {
                    self.settings.served.set(
                        &assignment.cluster_id,
                        domain::tunnel::ports_of(
                            assignment.kind,
                            assignment.role,
                            &assignment.workload,
                        )
                        .iter()
                        .map(|p| p.port)
                        .collect(),
                    );
                }
                self.running.insert(assignment.cluster_id.clone(), started);
                changed = true;
            }
        }
        if changed {
            self.save_record();
        }
        changed
    }

    /// Stops every workload gracefully and waits until they are gone (the agent is stopping).
    pub async fn stop_all(&mut self) {
        let stopping: Vec<_> = self
            .running
            .drain()
            .map(|(id, w)| {
                self.settings.served.remove(&id);
                self.parts.remove(&id);
                stop(w)
            })
            .collect();
        for done in stopping {
            done.await;
        }
        let _ = std::fs::remove_file(&self.record);
    }

    fn start(&self, assignment: &WorkloadAssignment) -> Running {
        if !plain_name(&assignment.cluster_id) {
            return Running::failed(
                "the server named the cluster with characters a file name cannot hold".into(),
            );
        }
        let workload = &assignment.workload;
        let env = workload_env(assignment, &self.device_id);
        match assignment.kind.runtime() {
            Runtime::Container => self.start_container(assignment, &env),
            Runtime::Ray if workload.command.is_empty() => {
                match ray::start(assignment, &self.device_id) {
                    Ok(start) => self.start_sandboxed(assignment, start.argv, &env, start.detail),
                    Err(why) => Running::failed(why),
                }
            }
            Runtime::Ray | Runtime::Kubernetes | Runtime::Process
                if workload.command.is_empty() =>
            {
                Running {
                    state: WorkloadState::Running,
                    detail: "holding the device for the renter".into(),
                    cause: None,
                    ..Running::failed(String::new())
                }
            }
            Runtime::Ray | Runtime::Kubernetes | Runtime::Process => {
                let argv = vec!["sh".into(), "-c".into(), workload.command.clone()];
                self.start_sandboxed(assignment, argv, &env, String::new())
            }
        }
    }

    fn start_sandboxed(
        &self,
        assignment: &WorkloadAssignment,
        argv: Vec<String>,
        env: &[(String, String)],
        detail: String,
    ) -> Running {
        if !cfg!(target_os = "linux") {
            return Running::failed(
                "bare-metal and Ray workloads run only on Linux devices".into(),
            );
        }
        if !installed("bwrap") {
            return Running::failed(
                "bubblewrap is not installed on this device, so its workloads cannot run \
                 confined (apt install bubblewrap)"
                    .into(),
            );
        }
        let own_network = !assignment.shares_network();
        if own_network && !network::installed() {
            return Running::failed(
                "slirp4netns is not installed on this device, so a one-device cluster's \
                 workload cannot have a network of its own (apt install slirp4netns)"
                    .into(),
            );
        }
        let sandbox = &self.settings.sandbox;
        let workdir = match sandbox.fresh_workdir(&assignment.cluster_id) {
            Ok(dir) => dir,
            Err(e) => return Running::failed(format!("could not make the work folder: {e}")),
        };
        let mode = if own_network {
            sandbox::Network::Own
        } else {
            sandbox::Network::Shared
        };
        let mut command = sandbox.command(&workdir, &argv, env, mode);
        let gate = match network::Gate::attach(&mut command) {
            Ok(gate) => gate,
            Err(e) => return Running::failed(format!("could not set up the sandbox: {e}")),
        };
        let confined = Confined::Sandbox {
            workdir,
            cgroups: None,
            network: None,
        };
        let mut running = self.spawn(assignment, command, confined, detail);
        let Some(bwrap) = running.child.as_ref().and_then(Child::id) else {
            return running;
        };
        match self.ready_sandbox(gate, bwrap, assignment, own_network, &mut running) {
            Ok(()) => running,
            Err(why) => {
                // Dropping the child kills the sandbox, which still waits.
                clean_up(&running.confined);
                Running::failed(format!("could not start the workload's sandbox: {why}"))
            }
        }
    }

    /// Readies the sandbox `bwrap` runs while it waits at its gate: its control groups, its
    /// own network for a one-device cluster; then lets it start.
    fn ready_sandbox(
        &self,
        mut gate: network::Gate,
        bwrap: u32,
        assignment: &WorkloadAssignment,
        own_network: bool,
        running: &mut Running,
    ) -> Result<(), String> {
        let sandbox = &self.settings.sandbox;
        let first = gate.sandbox_pid()?;
        let cgroups = match cgroup::confine(
            &assignment.cluster_id,
            &self.settings.limits,
            &[bwrap, first],
        ) {
            Ok(made) => Some(made),
            Err(why) => {
                // The provider's choice (an agent that is not root); said where both see it.
                let note = format!("running without resource limits: {why}");
                eprintln!("{note}");
                if let Some(output) = &running.output {
                    output.note(&note);
                }
                None
            }
        };
        let network = if own_network {
            let ports: Vec<u16> =
                domain::tunnel::ports_of(assignment.kind, assignment.role, &assignment.workload)
                    .iter()
                    .map(|p| p.port)
                    .collect();
            let dir = sandbox.network_dir(&assignment.cluster_id);
            Some(network::connect(
                &mut gate,
                &ports,
                sandbox.outside_user(),
                &dir,
            )?)
        } else {
            None
        };
        if let Confined::Sandbox {
            cgroups: held_cgroups,
            network: held_network,
            ..
        } = &mut running.confined
        {
            *held_cgroups = cgroups;
            *held_network = network;
        }
        gate.open()
    }

    fn start_container(
        &self,
        assignment: &WorkloadAssignment,
        env: &[(String, String)],
    ) -> Running {
        let Some(engine) = self.settings.engine else {
            return Running::failed(
                "no container engine is installed on this device (install Podman or Docker)".into(),
            );
        };
        let name = format!("gc-{}", assignment.cluster_id);
        // The env reaches the container only, through a file of the agent's: never the
        // engine's own process (DOCKER_HOST=…) nor its command line (`ps`).
        let env_file = self.record.with_file_name(format!("{name}.env"));
        if let Err(e) = write_env_file(&env_file, env) {
            return Running::failed(format!("could not write the container's env file: {e}"));
        }
        let workload = &assignment.workload;
        let args = engine.run_args(&ContainerSpec {
            name: &name,
            env_file: &env_file,
            image: &workload.image,
            command: &workload.command,
            port: workload.port,
            limits: self.settings.limits,
            gpus: &self.settings.gpus,
        });
        let mut command = Command::new(engine.program());
        command.args(args);
        let confined = Confined::Container {
            engine,
            name,
            env_file,
        };
        self.spawn(assignment, command, confined, String::new())
    }

    /// Starts `command` with its output captured into the cluster's log.
    fn spawn(
        &self,
        assignment: &WorkloadAssignment,
        mut command: Command,
        confined: Confined,
        detail: String,
    ) -> Running {
        let mut output = Output::start(
            &self.settings.logs,
            &assignment.cluster_id,
            &self.settings.shipping,
        );
        output.note(&format!(
            "starting the {} workload of cluster {} on device {}",
            assignment.kind.label(),
            assignment.cluster_id,
            self.device_id
        ));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        match command.spawn() {
            Ok(mut child) => {
                if let Some(out) = child.stdout.take() {
                    output.capture(out);
                }
                if let Some(err) = child.stderr.take() {
                    output.capture(err);
                }
                Running {
                    child: Some(child),
                    confined,
                    output: Some(output),
                    exited: None,
                    state: WorkloadState::Running,
                    detail,
                    cause: None,
                }
            }
            Err(e) => {
                clean_up(&confined);
                Running::failed(format!("could not start the workload: {e}"))
            }
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
            if workload.exited.is_none() {
                if let Ok(Some(status)) = child.try_wait() {
                    workload.exited = Some((status, Instant::now()));
                }
            }
            let Some((status, at)) = workload.exited else {
                continue;
            };
            let output = workload.output.as_ref();
            if !output.is_none_or(Output::drained) && at.elapsed() < DRAIN_WAIT {
                continue;
            }
            workload.child = None;
            let last = output.map(Output::last_line).unwrap_or_default();
            (workload.state, workload.detail, workload.cause) =
                ended(&workload.confined, status, &last);
            if let Some(output) = output {
                output.note(&format!("workload {}: {}", workload.state, workload.detail));
            }
            println!(
                "cluster {id}: workload {} ({})",
                workload.state.as_str(),
                workload.detail
            );
        }
        self.running
            .iter()
            .map(|(id, w)| WorkloadReport {
                cluster_id: id.clone(),
                state: w.state,
                detail: w.detail.clone(),
                cause: w.cause,
            })
            .collect()
    }
}

/// What an engine prints when the image itself is the problem (a name that does not exist,
/// a registry that refuses it): the renter's to fix.
const IMAGE_PROBLEMS: &[&str] = &[
    "image not known",
    "manifest unknown",
    "not found",
    "denied",
    "unauthorized",
    "invalid reference",
];

/// A workload's state, the words for it and whose problem it is, once its process exited with
/// `status` after printing `last`.
fn ended(
    confined: &Confined,
    status: ExitStatus,
    last: &str,
) -> (WorkloadState, String, Option<FailureCause>) {
    if status.success() {
        return (WorkloadState::Stopped, "the command finished".into(), None);
    }
    let said = if last.is_empty() {
        String::new()
    } else {
        format!(": {}", cut(last, 300))
    };
    let (detail, cause) = match (confined, status.code()) {
        (Confined::Sandbox { .. }, _) if last.starts_with("bwrap:") => (
            format!("this device could not build the workload's sandbox{said}"),
            FailureCause::Device,
        ),
        (Confined::Container { .. }, Some(125)) => {
            let lower = last.to_ascii_lowercase();
            if IMAGE_PROBLEMS.iter().any(|p| lower.contains(p)) {
                (
                    format!("the image cannot be used{said}"),
                    FailureCause::Workload,
                )
            } else {
                (
                    format!("this device's container engine could not run the image{said}"),
                    FailureCause::Device,
                )
            }
        }
        (_, Some(126)) => (
            format!("the command could not be run{said}"),
            FailureCause::Workload,
        ),
        (_, Some(127)) => (
            format!("the command was not found{said}"),
            FailureCause::Workload,
        ),
        _ => (
            format!("the command ended with {status}{said}"),
            FailureCause::Workload,
        ),
    };
    (WorkloadState::Failed, detail, Some(cause))
}

/// Stops a workload: SIGTERM to every process in its sandbox (`stop` for a container), a kill
/// after [`STOP_GRACE`], then its work folder and env file are removed.
async fn stop(mut workload: Running) {
    let stopping = match &workload.confined {
        Confined::Container { engine, name, .. } => Some(engine.stop(name)),
        Confined::Sandbox { .. } => {
            if let Some(pid) = workload.child.as_ref().and_then(Child::id) {
                signal(&sandbox::members(pid), "TERM");
            }
            None
        }
        Confined::Holding => None,
    };
    if let Some(mut child) = workload.child.take() {
        if tokio::time::timeout(STOP_GRACE, child.wait())
            .await
            .is_err()
        {
            // The sandbox dies with its bubblewrap (`--die-with-parent`).
            let _ = child.kill().await;
        }
    }
    if let Some(stopping) = stopping {
        let _ = tokio::task::spawn_blocking(|| stopping.wait()).await;
    }
    if let Some(output) = &workload.output {
        // What it printed while stopping reaches the log before the agent may exit.
        let deadline = Instant::now() + DRAIN_WAIT;
        while !output.drained() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        output.note("workload stopped");
    }
    clean_up(&workload.confined);
}

/// Removes what a workload leaves on the provider's disk.
fn clean_up(confined: &Confined) {
    match confined {
        Confined::Sandbox { workdir, .. } => {
            let _ = std::fs::remove_dir_all(workdir);
        }
        Confined::Container { env_file, .. } => {
            let _ = std::fs::remove_file(env_file);
        }
        Confined::Holding => {}
    }
}

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

impl Drop for Workloads {
    /// The agent is going without [`Workloads::stop_all`]: kill what runs (sandboxes die with
    /// their bubblewrap) and leave the rest to the next start's [`stop_leftovers`].
    fn drop(&mut self) {
        for workload in self.running.values_mut() {
            if let Some(child) = &mut workload.child {
                let _ = child.start_kill();
            }
            if let Confined::Container { engine, name, .. } = &workload.confined {
                engine.stop(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_cluster_ids_become_names() {
        assert!(plain_name("cl_01HZX-9"));
        for bad in ["", "../etc", "a b", "x/y", "a\nb", &"a".repeat(65)] {
            assert!(!plain_name(bad), "{bad:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn failures_say_whose_problem_they_are() {
        use std::os::unix::process::ExitStatusExt;
        let sandbox = Confined::Sandbox {
            workdir: PathBuf::new(),
            cgroups: None,
            network: None,
        };
        let container = Confined::Container {
            engine: Engine::Podman,
            name: "gc-1".into(),
            env_file: PathBuf::new(),
        };
        let code = |c: i32| ExitStatus::from_raw(c << 8);
        use FailureCause::{Device, Workload};
        assert_eq!(
            ended(&sandbox, code(0), ""),
            (WorkloadState::Stopped, "the command finished".into(), None)
        );
        let failed = |c: &Confined, status: i32, last: &str| {
            let (state, detail, cause) = ended(c, code(status), last);
            assert_eq!(state, WorkloadState::Failed);
            (detail, cause.unwrap())
        };
        assert_eq!(
            failed(&sandbox, 127, "sh: 1: trainer: not found"),
            (
                "the command was not found: sh: 1: trainer: not found".into(),
                Workload
            )
        );
        let (detail, cause) = failed(&sandbox, 1, "bwrap: No permissions to create new namespace");
        assert!(detail.starts_with("this device could not build the workload's sandbox"));
        assert_eq!(cause, Device);
        assert_eq!(
            failed(&container, 125, "Error: localhost/x: image not known"),
            (
                "the image cannot be used: Error: localhost/x: image not known".into(),
                Workload
            )
        );
        let (detail, cause) = failed(&container, 125, "Error: runc create failed: rlimit");
        assert!(detail.starts_with("this device's container engine could not run the image"));
        assert_eq!(cause, Device);
        assert_eq!(
            failed(&sandbox, 3, ""),
            ("the command ended with exit status: 3".into(), Workload)
        );
    }
}
