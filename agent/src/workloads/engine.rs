//! Container clusters on the engine this machine has (Podman or Docker), never privileged:
//! every capability dropped but the few an ordinary image needs to start (changing file
//! owners, switching to its own user), `no-new-privileges`, limits on processes, memory, CPUs
//! and open files, a network of its own with only the workload's declared port published, only
//! this device's GPUs, the env through a file to the container alone, and `--` before the image
//! so an image is only ever an image.

use std::path::Path;
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use super::installed;

/// A container engine the agent drives through its CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Podman,
    Docker,
}

/// Capabilities given back after `--cap-drop ALL`: what images commonly need to set up their
/// files and drop to their own user. Not NET_RAW, MKNOD, SYS_CHROOT, SETFCAP nor AUDIT_WRITE,
/// which the engines' defaults include.
const CAPABILITIES_KEPT: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETUID",
    "SETGID",
    "KILL",
    "NET_BIND_SERVICE",
];

/// The highest per-user process limit given to a container (see [`Limits::user_processes`]).
const USER_PROCESSES_CAP: u64 = 32_768;

/// How much of the machine a workload may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_mb: u64,
    pub cpus: u32,
    /// Processes and threads (PyTorch's loaders take many threads; fork bombs take all).
    pub pids: u32,
    /// Open files, soft and hard: never above the agent's own hard limit, which the engine
    /// could not raise (setting it higher fails the start).
    pub open_files: u64,
    /// The per-user process limit. The engines' default is above what runc may set (Podman
    /// on runc here refused 65,536 and its own default, and took 32,768), so it is set: the
    /// agent's own hard limit, at most [`USER_PROCESSES_CAP`]; `pids` is what bounds the
    /// container.
    pub user_processes: u64,
}

impl Limits {
    /// The device's share of this machine: all of it that the hardware report claims and the
    /// machine has, less a reserve for the system and the agent.
    pub fn of_machine(claimed_ram_gb: u32, claimed_cores: u32) -> Limits {
        let host_mb = meminfo_total_mb().unwrap_or(u64::from(claimed_ram_gb) * 1024);
        let total_mb = host_mb.min(u64::from(claimed_ram_gb.max(1)) * 1024);
        let reserve_mb = (total_mb / 10).clamp(256, 2048);
        let host_cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Limits {
            memory_mb: total_mb.saturating_sub(reserve_mb).max(256),
            cpus: claimed_cores.clamp(1, host_cores),
            pids: 4096,
            open_files: hard_limit("Max open files").unwrap_or(65_536).min(65_536),
            user_processes: hard_limit("Max processes")
                .unwrap_or(USER_PROCESSES_CAP)
                .min(USER_PROCESSES_CAP),
        }
    }
}

fn meminfo_total_mb() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024)
}

/// The agent's own hard limit `name` (as /proc/self/limits words it), if finite.
fn hard_limit(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let rest = text.lines().find_map(|l| l.strip_prefix(name))?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// One container to run.
pub struct ContainerSpec<'a> {
    pub name: &'a str,
    pub env_file: &'a Path,
    pub image: &'a str,
    pub command: &'a str,
    pub port: Option<u16>,
    pub limits: Limits,
    /// The NVIDIA GPU indexes of this device: the hired ones, since a device is hired whole.
    pub gpus: &'a [u32],
}

impl Engine {
    pub fn program(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
        }
    }

    /// The engine to use: the one the provider chose, if installed; otherwise Podman (no
    /// daemon to be running), then Docker.
    pub fn find(chosen: Option<Engine>) -> Option<Engine> {
        let candidates = match chosen {
            Some(engine) => vec![engine],
            None => vec![Engine::Podman, Engine::Docker],
        };
        candidates.into_iter().find(|e| installed(e.program()))
    }

    /// The `run` command line (after the program's name).
    pub fn run_args(self, spec: &ContainerSpec) -> Vec<String> {
        let limits = spec.limits;
        let mut args: Vec<String> = ["run", "--rm", "--name", spec.name, "--env-file"]
            .map(str::to_owned)
            .into();
        args.push(spec.env_file.display().to_string());
        args.extend(["--cap-drop".into(), "ALL".into()]);
        for capability in CAPABILITIES_KEPT {
            args.extend(["--cap-add".into(), (*capability).into()]);
        }
        args.extend([
            "--security-opt".into(),
            "no-new-privileges".into(),
            "--pids-limit".into(),
            limits.pids.to_string(),
            "--memory".into(),
            format!("{}m", limits.memory_mb),
            "--cpus".into(),
            limits.cpus.to_string(),
            "--ulimit".into(),
            format!("nofile={0}:{0}", limits.open_files),
            "--ulimit".into(),
            format!("nproc={0}:{0}", limits.user_processes),
            "--network".into(),
            "bridge".into(),
        ]);
        if let Some(port) = spec.port {
            // On the loopback only: renters reach it through the platform's tunnel, never at
            // the provider's public address.
            args.extend(["--publish".into(), format!("127.0.0.1:{port}:{port}")]);
        }
        if !spec.gpus.is_empty() {
            match self {
                // The NVIDIA Container Toolkit's flag, for exactly these indexes.
                Engine::Docker => args.extend([
                    "--gpus".into(),
                    format!(
                        "\"device={}\"",
                        spec.gpus
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                ]),
                // The toolkit's CDI names (`nvidia-ctk cdi generate`).
                Engine::Podman => {
                    for index in spec.gpus {
                        args.extend(["--device".into(), format!("nvidia.com/gpu={index}")]);
                    }
                }
            }
        }
        // `--` ends the engine's options: the image is only ever an image.
        args.extend(["--".into(), spec.image.to_owned()]);
        if !spec.command.is_empty() {
            args.extend(["sh".into(), "-c".into(), spec.command.to_owned()]);
        }
        args
    }

    /// Starts `stop NAME` (the engine's own grace, then a kill); the caller may wait for it.
    pub fn stop(self, name: &str) -> Stopping {
        Stopping(
            std::process::Command::new(self.program())
                .args(["stop", "--time", "10", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok(),
        )
    }
}

/// An engine's `stop` under way.
pub struct Stopping(Option<std::process::Child>);

impl Stopping {
    pub fn wait(mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(gpus: &'a [u32], port: Option<u16>) -> ContainerSpec<'a> {
        ContainerSpec {
            name: "gc-cl-1",
            env_file: Path::new("/state/gc-cl-1.env"),
            image: "ghcr.io/example/server:1.2",
            command: "python serve.py",
            port,
            limits: Limits {
                memory_mb: 30_000,
                cpus: 8,
                pids: 4096,
                open_files: 1024,
                user_processes: 9000,
            },
            gpus,
        }
    }

    #[test]
    fn containers_run_unprivileged_limited_and_with_only_this_devices_gpus() {
        let args = Engine::Podman
            .run_args(&spec(&[0, 3], Some(8000)))
            .join(" ");
        assert_eq!(
            args,
            "run --rm --name gc-cl-1 --env-file /state/gc-cl-1.env --cap-drop ALL \
             --cap-add CHOWN --cap-add DAC_OVERRIDE --cap-add FOWNER --cap-add SETUID \
             --cap-add SETGID --cap-add KILL --cap-add NET_BIND_SERVICE \
             --security-opt no-new-privileges --pids-limit 4096 --memory 30000m --cpus 8 \
             --ulimit nofile=1024:1024 --ulimit nproc=9000:9000 --network bridge --publish 127.0.0.1:8000:8000 \
             --device nvidia.com/gpu=0 --device nvidia.com/gpu=3 \
             -- ghcr.io/example/server:1.2 sh -c python serve.py"
        );
        let docker = Engine::Docker.run_args(&spec(&[1], None));
        let gpus = docker.iter().position(|a| a == "--gpus").unwrap();
        assert_eq!(docker[gpus + 1], "\"device=1\"");
        assert!(!docker.iter().any(|a| a == "--publish"), "no port declared");
        assert!(!docker.iter().any(|a| a.contains("privileged")));
    }

    #[test]
    fn no_gpu_flags_where_the_device_has_no_nvidia_gpu() {
        let args = Engine::Docker.run_args(&spec(&[], None));
        assert!(!args.iter().any(|a| a == "--gpus" || a == "--device"));
    }

    #[test]
    fn a_machine_share_never_exceeds_the_machine() {
        let limits = Limits::of_machine(4096, 100_000);
        let host_cores = std::thread::available_parallelism().unwrap().get() as u32;
        assert_eq!(limits.cpus, host_cores);
        let host_mb = meminfo_total_mb().unwrap();
        assert!(limits.memory_mb < host_mb, "{limits:?} on {host_mb} MB");
        let small = Limits::of_machine(1, 1);
        assert_eq!(small.cpus, 1);
        assert!(
            small.memory_mb <= 1024 && small.memory_mb >= 256,
            "{small:?}"
        );
        assert!(
            small.open_files > 0 && small.user_processes > 0,
            "{small:?}"
        );
    }
}
