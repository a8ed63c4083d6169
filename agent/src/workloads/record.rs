//! What runs is written down, so that a restart after the agent was killed (which cannot stop
//! its workloads) stops what survived before the server's assignments start them again.
//! Sandboxed workloads die with the agent (bubblewrap's `--die-with-parent`); containers live
//! in the engine and do not, so the record is what finds them.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use super::engine::Engine;
use super::STOP_GRACE;

/// A workload as written down: the process it started (the sandbox) with that process's start
/// time, so a pid reused by another process is never taken for it, its container and engine,
/// and the files and folders it owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Recorded {
    pub cluster_id: String,
    pub pid: Option<u32>,
    pub started: Option<u64>,
    pub container: Option<String>,
    /// Records written before engines were told apart name Docker's containers.
    #[serde(default)]
    pub engine: Option<Engine>,
    #[serde(default)]
    pub env_file: Option<PathBuf>,
    #[serde(default)]
    pub workdir: Option<PathBuf>,
}

/// When process `pid` started (clock ticks since boot), if it is alive (not a zombie), where
/// the system says (Linux `/proc`).
pub(super) fn process_started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (in parentheses) may hold spaces; the state is the first field after
    // it, the start time the 20th.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Sends `signal` to the processes `pids` (the `kill` utility: no FFI in the agent).
pub(super) fn signal(pids: &[u32], signal: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// Stops what an earlier run of the agent recorded as running and could not stop (it was
/// killed): each process whose pid is still the process recorded, each container, and
/// removes their files. Returns what it stopped; the record is then cleared.
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
            leftover.engine.unwrap_or(Engine::Docker).stop(name).wait();
            stopped.push(format!(
                "container {name} of cluster {}",
                leftover.cluster_id
            ));
        }
        if let (Some(pid), Some(started)) = (leftover.pid, leftover.started) {
            if process_started(pid) == Some(started) {
                signal(&[pid], "TERM");
                let deadline = std::time::Instant::now() + STOP_GRACE;
                while process_started(pid) == Some(started) && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                if process_started(pid) == Some(started) {
                    signal(&[pid], "KILL");
                }
                stopped.push(format!("process {pid} of cluster {}", leftover.cluster_id));
            }
        }
        if let Some(file) = &leftover.env_file {
            let _ = std::fs::remove_file(file);
        }
        if let Some(dir) = &leftover.workdir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    let _ = std::fs::remove_file(record);
    stopped
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap()
    }

    #[test]
    fn leftovers_are_stopped_only_when_the_pid_is_still_theirs() {
        let dir = std::env::temp_dir().join(format!("gc-leftovers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let record = dir.join("agent.workloads.json");
        let workdir = dir.join("work-cl-1");
        std::fs::create_dir_all(workdir.join("inner")).unwrap();
        let (mut ours, mut reused) = (sleeper(), sleeper());
        let recorded = |child: &std::process::Child, started: Option<u64>| Recorded {
            cluster_id: "cl-1".into(),
            pid: Some(child.id()),
            started,
            container: None,
            engine: None,
            env_file: None,
            workdir: Some(workdir.clone()),
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
        assert_eq!(stopped, [format!("process {} of cluster cl-1", ours.id())]);
        assert!(ours.wait().unwrap().code().is_none(), "ended by a signal");
        assert!(reused.try_wait().unwrap().is_none(), "left alone");
        assert!(!record.exists(), "the record is cleared");
        assert!(!workdir.exists(), "the work folder is removed");
        assert!(
            stop_leftovers(&record).is_empty(),
            "nothing recorded, nothing done"
        );
        reused.kill().unwrap();
        reused.wait().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_from_before_engines_were_named_still_read() {
        let old = r#"[{"cluster_id":"cl-9","pid":null,"started":null,"container":"gc-cl-9"}]"#;
        let read: Vec<Recorded> = serde_json::from_str(old).unwrap();
        assert_eq!(read[0].engine, None);
        assert_eq!(read[0].container.as_deref(), Some("gc-cl-9"));
    }
}
