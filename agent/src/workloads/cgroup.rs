//! A sandboxed workload's resource limits: a control group per cluster with the device's share
//! of memory and CPUs and a bound on processes (the limits its containers get), so a renter's
//! memory hog or fork bomb stays inside its sandbox instead of taking the provider's machine
//! and the other workloads on it.
//!
//! The sandbox's processes are placed in the group while bubblewrap still waits on its
//! `--block-fd`, so every process the workload starts is born inside. Control groups need the
//! agent to be root (or a delegated hierarchy); otherwise the workload runs without them and
//! its log says so. Both the v1 controllers (memory, pids, cpu) and the unified v2 hierarchy
//! are handled.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Limits;

/// Where the control groups are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The folder under each hierarchy that holds the agent's groups.
const AGENT_GROUP: &str = "gpu-commons";
/// The CPU bandwidth period the quota is set against (the kernel's default), in µs.
const CPU_PERIOD_US: u64 = 100_000;
/// Memory and swap together (v1), and swap alone (v2): present only where swap is accounted.
const SWAP_V1: &str = "memory.memsw.limit_in_bytes";
const SWAP_V2: &str = "memory.swap.max";

/// How long a dropped workload's groups are tried for removal: the sandbox's last processes
/// may still be exiting when its bubblewrap has been reaped, and a group with a process in it
/// cannot be removed.
const REMOVAL_WAIT: Duration = Duration::from_secs(10);

/// A workload's control groups, removed when dropped (once its processes have ended).
pub struct Cgroups {
    dirs: Vec<PathBuf>,
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        let dirs = std::mem::take(&mut self.dirs);
        // Beside the caller: it must not wait for the last processes to go.
        std::thread::spawn(move || {
            let deadline = Instant::now() + REMOVAL_WAIT;
            let mut left = dirs;
            while !left.is_empty() && Instant::now() < deadline {
                left.retain(|dir| std::fs::remove_dir(dir).is_err() && dir.exists());
                if !left.is_empty() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            // Any still there (a process that would not end) is reused by the cluster's next
            // start, here or after a restart.
        });
    }
}

#[cfg(test)]
impl Cgroups {
    /// The groups' folders.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

/// Puts processes `pids` (the sandbox's bubblewrap and its first child) into cluster
/// `cluster_id`'s control groups, made with `limits`. Why not, in words.
pub fn confine(cluster_id: &str, limits: &Limits, pids: &[u32]) -> Result<Cgroups, String> {
    confine_under(Path::new(CGROUP_ROOT), cluster_id, limits, pids)
}

fn confine_under(
    root: &Path,
    cluster_id: &str,
    limits: &Limits,
    pids: &[u32],
) -> Result<Cgroups, String> {
    let memory = (limits.memory_mb * 1024 * 1024).to_string();
    let processes = limits.pids.to_string();
    let quota = u64::from(limits.cpus) * CPU_PERIOD_US;
    // Each file with its value; swap's only where the kernel accounts for it (set after
    // memory's, which it may not be below), so the limit is not dodged by swapping.
    let groups: Vec<(PathBuf, Vec<(&str, String)>)> = if root.join("cgroup.controllers").exists() {
        // The unified hierarchy: one group, its controllers enabled in the agent's folder.
        let parent = root.join(AGENT_GROUP);
        make_dir(&parent)?;
        write(&parent.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
        vec![(
            parent.join(cluster_id),
            vec![
                ("memory.max", memory),
                (SWAP_V2, "0".into()),
                ("pids.max", processes),
                ("cpu.max", format!("{quota} {CPU_PERIOD_US}")),
            ],
        )]
    } else {
        vec![
            (
                root.join("memory").join(AGENT_GROUP).join(cluster_id),
                vec![("memory.limit_in_bytes", memory.clone()), (SWAP_V1, memory)],
            ),
            (
                root.join("pids").join(AGENT_GROUP).join(cluster_id),
                vec![("pids.max", processes)],
            ),
            (
                root.join("cpu").join(AGENT_GROUP).join(cluster_id),
                vec![
                    ("cpu.cfs_period_us", CPU_PERIOD_US.to_string()),
                    ("cpu.cfs_quota_us", quota.to_string()),
                ],
            ),
        ]
    };
    let mut made = Cgroups { dirs: Vec::new() };
    for (dir, settings) in groups {
        make_dir(&dir)?;
        made.dirs.push(dir.clone());
        for (file, value) in settings {
            let path = dir.join(file);
            if [SWAP_V1, SWAP_V2].contains(&file) && !path.exists() {
                continue;
            }
            write(&path, &value)?;
        }
        for pid in pids {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
    }
    Ok(made)
}

/// Removes the agent's groups that no process is in any more: those of workloads whose agent
/// was killed. A group in use cannot be removed, so another agent's are safe.
pub fn remove_empty_cgroups() {
    let root = Path::new(CGROUP_ROOT);
    let parents: Vec<PathBuf> = if root.join("cgroup.controllers").exists() {
        vec![root.join(AGENT_GROUP)]
    } else {
        ["memory", "pids", "cpu"]
            .iter()
            .map(|controller| root.join(controller).join(AGENT_GROUP))
            .collect()
    };
    for parent in parents {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
}

fn make_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("could not make {}: {e}", dir.display()))
}

fn write(file: &Path, value: &str) -> Result<(), String> {
    std::fs::write(file, value)
        .map_err(|e| format!("could not write {value} to {}: {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            memory_mb: 512,
            cpus: 2,
            pids: 64,
            open_files: 1024,
            user_processes: 1024,
        }
    }

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    /// The files a v1 and a v2 hierarchy get, on plain folders standing in for cgroupfs (the
    /// real kernel files are the confinement test's).
    #[test]
    fn each_hierarchy_gets_the_devices_share() {
        let root = std::env::temp_dir().join(format!("gc-cgroups-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let v1 = root.join("v1");
        let made = confine_under(&v1, "cl-1", &limits(), &[42]).unwrap();
        assert_eq!(made.dirs().len(), 3);
        let group = |controller: &str| v1.join(controller).join(AGENT_GROUP).join("cl-1");
        assert_eq!(
            read(group("memory").join("memory.limit_in_bytes")),
            "536870912"
        );
        assert_eq!(read(group("pids").join("pids.max")), "64");
        assert_eq!(read(group("cpu").join("cpu.cfs_quota_us")), "200000");
        assert_eq!(read(group("pids").join("cgroup.procs")), "42");
        std::mem::forget(made);

        let v2 = root.join("v2");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("cgroup.controllers"), "cpu memory pids").unwrap();
        let made = confine_under(&v2, "cl-1", &limits(), &[42]).unwrap();
        let group = v2.join(AGENT_GROUP).join("cl-1");
        assert_eq!(made.dirs(), std::slice::from_ref(&group));
        assert_eq!(read(group.join("memory.max")), "536870912");
        assert_eq!(read(group.join("cpu.max")), "200000 100000");
        assert_eq!(
            read(v2.join(AGENT_GROUP).join("cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        std::mem::forget(made);
        let _ = std::fs::remove_dir_all(&root);
    }
}
