//! Bare-metal and Ray workloads run inside a bubblewrap sandbox: new user, PID, IPC, UTS, mount
//! and cgroup namespaces, and a network namespace of its own for one-device clusters
//! ([`super::network`]; several devices share the device's network so their processes reach
//! each other), so the end of the sandbox's first process ends every process in
//! it, `setsid` and double forks included; the sandbox dies with the agent
//! (`--die-with-parent`). Inside: an unprivileged user with no capabilities, the system's
//! programs and libraries read-only, a few files of /etc, the provider's chosen read-only
//! folders, a fresh /proc and /dev with only this device's GPU nodes, an empty /tmp, and a
//! private work folder, deleted afterwards. Nothing else of the machine (homes, the agent's
//! credentials and records, other workloads) exists in it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::AgentError;

/// The user and group the workload runs as inside (and, when the agent runs as root, outside
/// too: `nobody`).
pub const SANDBOX_ID: u32 = 65534;

/// Top-level folders that hold programs and libraries; bound read-only (or linked, on a
/// merged-/usr system).
const SYSTEM_TREES: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Files and folders of /etc that programs need to run, resolve names and trust certificates;
/// the rest of /etc (the provider's configuration) is not shown.
const ETC_ENTRIES: &[&str] = &[
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "gai.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "OpenCL",
    "os-release",
    "passwd",
    "pki",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
    "vulkan",
];

/// NVIDIA's control nodes, needed beside each GPU's `/dev/nvidiaN`.
const NVIDIA_CONTROL_NODES: &[&str] = &[
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
];

/// Which network a sandbox has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// The device's own (a cluster of several devices).
    Shared,
    /// A namespace of its own, connected by [`super::network::connect`] before it starts.
    Own,
}

/// How this agent builds sandboxes.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Where each workload's private folder is made: one folder per device.
    work_root: PathBuf,
    /// The provider's extra read-only folders (`--sandbox-read-only`: a conda install, a
    /// dataset cache).
    read_only: Vec<PathBuf>,
    /// This device's NVIDIA GPU indexes.
    gpus: Vec<u32>,
    /// Whether the agent runs as root: the sandbox then starts as `nobody`, not as root.
    as_root: bool,
}

impl Sandbox {
    /// A sandbox whose work folders live under `work_root`, refusing read-only folders that
    /// would show any of `secret` (the agent's credentials and records) to a workload.
    pub fn new(
        work_root: PathBuf,
        read_only: Vec<PathBuf>,
        gpus: Vec<u32>,
        secret: &[PathBuf],
    ) -> Result<Sandbox, AgentError> {
        let sandbox = Sandbox {
            work_root,
            read_only,
            gpus,
            as_root: running_as_root(),
        };
        for shown in sandbox.shown_sources() {
            let shown = absolute(&shown);
            for file in secret {
                if absolute(file).starts_with(&shown) {
                    return Err(AgentError::Config(format!(
                        "workloads would see {} (the agent's own file) inside {}: keep the agent's \
                         files outside the folders given to workloads",
                        file.display(),
                        shown.display()
                    )));
                }
            }
        }
        Ok(sandbox)
    }

    /// Every host path the sandbox shows, read-only or not (but the work folder's own).
    fn shown_sources(&self) -> Vec<PathBuf> {
        let mut shown: Vec<PathBuf> = SYSTEM_TREES
            .iter()
            .map(|t| Path::new("/").join(t))
            .collect();
        shown.extend(ETC_ENTRIES.iter().map(|e| Path::new("/etc").join(e)));
        shown.extend(self.read_only.iter().cloned());
        shown
    }

    /// Makes the empty private folder of cluster `cluster_id`'s workload (removing any left
    /// from before), writable by the sandbox's user alone.
    pub fn fresh_workdir(&self, cluster_id: &str) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        std::fs::create_dir_all(&self.work_root)?;
        // The root may be in a shared place (/var/tmp): it and its parent must be ours, and
        // real folders, or another user could swap the folders a workload is given.
        let parent = self.work_root.parent().unwrap_or(&self.work_root);
        for dir in [parent, self.work_root.as_path()] {
            let meta = std::fs::symlink_metadata(dir)?;
            if !meta.is_dir() || meta.uid() != current_uid() {
                return Err(std::io::Error::other(format!(
                    "{} is not a folder of the agent's user",
                    dir.display()
                )));
            }
        }
        // Others may pass through (the sandbox's user must reach its folder) but not list it.
        std::fs::set_permissions(&self.work_root, std::fs::Permissions::from_mode(0o711))?;
        let dir = self.work_root.join(cluster_id);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        if self.as_root {
            std::os::unix::fs::chown(&dir, Some(SANDBOX_ID), Some(SANDBOX_ID))?;
        }
        Ok(dir)
    }

    /// The user the sandbox (and its network's slirp4netns) runs as outside, when the agent
    /// is root; None when it runs as the agent's own user.
    pub fn outside_user(&self) -> Option<u32> {
        self.as_root.then_some(SANDBOX_ID)
    }

    /// Where cluster `cluster_id`'s sandbox network keeps its control socket.
    pub fn network_dir(&self, cluster_id: &str) -> PathBuf {
        self.work_root.join(format!("{cluster_id}.net"))
    }

    /// bubblewrap's arguments to run `argv` with `workdir` as its work folder.
    pub fn args(&self, workdir: &Path, argv: &[String], network: Network) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
            args.extend(items.iter().map(|i| i.as_ref().to_owned()));
        };
        let id = SANDBOX_ID.to_string();
        push(&[&"--unshare-all"]);
        if network == Network::Shared {
            push(&[&"--share-net"]);
        }
        for arg in super::network::bwrap_args() {
            push(&[&arg]);
        }
        push(&[
            &"--die-with-parent",
            &"--new-session",
            &"--uid",
            &id,
            &"--gid",
            &id,
            &"--hostname",
            &"gc-workload",
            &"--cap-drop",
            &"ALL",
        ]);
        for tree in SYSTEM_TREES {
            let host = Path::new("/").join(tree);
            match std::fs::read_link(&host) {
                // A merged-/usr system links /bin to usr/bin: the same link inside.
                Ok(target) => push(&[&"--symlink", &target, &host]),
                Err(_) => push(&[&"--ro-bind-try", &host, &host]),
            }
        }
        for entry in ETC_ENTRIES {
            let host = Path::new("/etc").join(entry);
            push(&[&"--ro-bind-try", &host, &host]);
        }
        push(&[&"--proc", &"/proc", &"--dev", &"/dev", &"--tmpfs", &"/tmp"]);
        // After /tmp: a later mount over a folder hides what was bound inside it.
        for dir in &self.read_only {
            push(&[&"--ro-bind", dir, dir]);
        }
        for node in NVIDIA_CONTROL_NODES {
            push(&[&"--dev-bind-try", node, node]);
        }
        for index in &self.gpus {
            let node = format!("/dev/nvidia{index}");
            push(&[&"--dev-bind-try", &node, &node]);
        }
        push(&[&"--bind", &workdir, &"/work", &"--chdir", &"/work", &"--"]);
        args.extend(argv.iter().map(OsString::from));
        args
    }

    /// The command that runs `argv` sandboxed with `env` (and nothing else of the agent's
    /// environment but its PATH).
    pub fn command(
        &self,
        workdir: &Path,
        argv: &[String],
        env: &[(String, String)],
        network: Network,
    ) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("bwrap");
        command
            .args(self.args(workdir, argv, network))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", "/work")
            .env("TMPDIR", "/tmp")
            .envs(env.iter().map(|(k, v)| (k, v)));
        if self.as_root {
            // bubblewrap then builds the namespaces as an unprivileged user: outside the
            // sandbox its processes are `nobody`, with no supplementary groups.
            command.uid(SANDBOX_ID).gid(SANDBOX_ID);
        }
        command
    }
}

/// The processes inside the sandbox that bubblewrap process `bwrap` started, but its first
/// (bubblewrap's own init, whose end ends them all): those to ask to stop.
pub fn members(bwrap: u32) -> Vec<u32> {
    let Some(init) = first_child(bwrap) else {
        return Vec::new();
    };
    let Some(namespace) = pid_namespace(init) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != init && pid_namespace(pid).as_ref() == Some(&namespace))
        .collect()
}

fn first_child(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn pid_namespace(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

fn current_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2)?.parse().ok()
        })
        .unwrap_or(u32::MAX)
}

fn running_as_root() -> bool {
    current_uid() == 0
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(read_only: Vec<PathBuf>, gpus: Vec<u32>) -> Sandbox {
        Sandbox {
            work_root: PathBuf::from("/var/tmp/gc"),
            read_only,
            gpus,
            as_root: true,
        }
    }

    fn text(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_sandbox_has_a_network_of_its_own_unless_its_cluster_spans_devices() {
        let argv = ["true".to_owned()];
        let own = text(&sandbox(Vec::new(), Vec::new()).args(Path::new("/w"), &argv, Network::Own));
        assert!(
            own.starts_with("--unshare-all --info-fd 3 --block-fd 4 "),
            "{own}"
        );
        assert!(!own.contains("--share-net"));
        let shared =
            text(&sandbox(Vec::new(), Vec::new()).args(Path::new("/w"), &argv, Network::Shared));
        assert!(
            shared.starts_with("--unshare-all --share-net --info-fd 3 --block-fd 4 "),
            "{shared}"
        );
    }

    #[test]
    fn the_sandbox_unshares_everything_and_shows_only_what_it_needs() {
        let args = text(&sandbox(vec![PathBuf::from("/opt/conda")], vec![2]).args(
            Path::new("/var/tmp/gc/cl-1"),
            &["sh".into(), "-c".into(), "echo hi".into()],
            Network::Shared,
        ));
        for part in [
            "--unshare-all --share-net --info-fd 3 --block-fd 4 --die-with-parent --new-session",
            "--uid 65534 --gid 65534",
            "--cap-drop ALL",
            "--ro-bind-try /etc/passwd /etc/passwd",
            "--ro-bind /opt/conda /opt/conda",
            "--proc /proc --dev /dev --tmpfs /tmp",
            "--dev-bind-try /dev/nvidia2 /dev/nvidia2",
            "--bind /var/tmp/gc/cl-1 /work --chdir /work -- sh -c echo hi",
        ] {
            assert!(args.contains(part), "{part} in {args}");
        }
        assert!(!args.contains("/dev/nvidia0"), "only this device's GPUs");
        assert!(!args.contains("/home") && !args.contains("/root"));
        assert!(!args.contains("--bind /etc "), "not all of /etc");
    }

    #[test]
    fn folders_that_would_show_the_agents_files_are_refused() {
        let refused = Sandbox::new(
            PathBuf::from("/var/tmp/gc"),
            vec![PathBuf::from("/srv/agent")],
            Vec::new(),
            &[PathBuf::from("/srv/agent/agent.json")],
        );
        assert!(
            matches!(&refused, Err(AgentError::Config(m)) if m.contains("/srv/agent/agent.json")),
            "{refused:?}"
        );
        assert!(Sandbox::new(
            PathBuf::from("/var/tmp/gc"),
            vec![PathBuf::from("/opt/conda")],
            Vec::new(),
            &[PathBuf::from("/root/.config/gpu-commons/agent.json")],
        )
        .is_ok());
    }
}
