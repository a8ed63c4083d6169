//! Each workload's stdout and stderr, kept on the provider's disk within a bound: a cluster's
//! log is `<cluster>.log` and, once that reaches [`MAX_FILE_BYTES`], it becomes
//! `<cluster>.log.1` (replacing the older one) and a new file starts; only the last
//! [`KEPT_CLUSTERS`] clusters' logs are kept. The last line is kept in memory too, so a failed
//! workload's report can say what it printed last (an engine's error, "command not found").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use domain::output::ShippedLine;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

use super::shipping::{Shipping, Waiting};

/// Where one log file is rolled over.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// How many clusters' logs a device keeps.
pub const KEPT_CLUSTERS: usize = 8;
/// The longest line kept whole; longer ones are cut (a binary blob is not a line).
const MAX_LINE_BYTES: usize = domain::output::MAX_LINE_BYTES;

/// A cluster's log file, shared by the readers of its stdout and stderr.
struct LogFile {
    path: PathBuf,
    file: Option<std::fs::File>,
    written: u64,
    last_line: String,
    /// The next line's id: the capture's start (ms) × 10⁶ plus the line's index, so ids keep
    /// increasing when a restarted agent captures the same cluster again.
    next_id: i64,
    /// Its lines on their way to the server.
    waiting: Arc<Mutex<Waiting>>,
}

impl LogFile {
    /// Opens the log for appending; a restarted agent appends to the cluster's log, so what
    /// is there already counts towards the bound.
    fn open(&mut self) {
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok();
        self.written = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
    }

    fn append(&mut self, line: &str) {
        if self.file.is_none() {
            self.open();
        }
        if self.written >= MAX_FILE_BYTES {
            let _ = std::fs::rename(&self.path, self.path.with_extension("log.1"));
            self.open();
        }
        if let Some(file) = &mut self.file {
            if writeln!(file, "{line}").is_ok() {
                self.written += line.len() as u64 + 1;
            }
        }
        if !line.trim().is_empty() {
            self.last_line = line.to_owned();
        }
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.push(ShippedLine {
                id: self.next_id,
                text: line.to_owned(),
            });
        }
        self.next_id += 1;
    }
}

/// The capture of one workload's output.
pub struct Output {
    file: Arc<Mutex<LogFile>>,
    readers: Vec<JoinHandle<()>>,
}

impl Output {
    /// Starts a log for `cluster_id` in `dir` (dropping the oldest clusters' logs beyond
    /// [`KEPT_CLUSTERS`]) whose lines are also shipped through `shipping`.
    pub fn start(dir: &Path, cluster_id: &str, shipping: &Shipping) -> Output {
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let _ = std::fs::create_dir_all(dir);
        prune(dir, KEPT_CLUSTERS.saturating_sub(1));
        let path = dir.join(format!("{cluster_id}.log"));
        let _ = std::fs::remove_file(path.with_extension("log.1"));
        Output {
            file: Arc::new(Mutex::new(LogFile {
                path,
                file: None,
                written: 0,
                last_line: String::new(),
                next_id: started_ms * 1_000_000,
                waiting: shipping.register(cluster_id),
            })),
            readers: Vec::new(),
        }
    }

    /// A line the agent writes into the log itself (what it started, why it stopped).
    pub fn note(&self, line: &str) {
        if let Ok(mut file) = self.file.lock() {
            file.append(&format!("[gpu-commons] {line}"));
        }
    }

    /// Reads `stream` to its end into the log.
    pub fn capture(&mut self, stream: impl AsyncRead + Unpin + Send + 'static) {
        let file = self.file.clone();
        self.readers.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stream);
            let mut buffer = Vec::new();
            loop {
                buffer.clear();
                match lines.read_until(b'\n', &mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        buffer.truncate(MAX_LINE_BYTES);
                        let text = String::from_utf8_lossy(&buffer);
                        if let Ok(mut file) = file.lock() {
                            file.append(text.trim_end_matches(['\n', '\r']));
                        }
                    }
                }
            }
        }));
    }

    /// Whether everything the workload wrote has been read (its streams closed).
    pub fn drained(&self) -> bool {
        self.readers.iter().all(JoinHandle::is_finished)
    }

    /// The last non-empty line the workload (or the agent) wrote.
    pub fn last_line(&self) -> String {
        self.file
            .lock()
            .map(|f| f.last_line.clone())
            .unwrap_or_default()
    }
}

/// Removes all but the `keep` most recently written clusters' logs in `dir`.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    logs.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in logs.into_iter().skip(keep) {
        let _ = std::fs::remove_file(path.with_extension("log.1"));
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gc-logs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn a_log_is_bounded_and_keeps_the_newest_lines() {
        let dir = dir("bounded");
        let mut output = Output::start(&dir, "cl-1", &Shipping::default());
        let line = "x".repeat(1000);
        let lines = (3 * MAX_FILE_BYTES / 1001) as usize;
        let text = format!("{}\nthe end\n", vec![line; lines].join("\n"));
        output.capture(std::io::Cursor::new(text.into_bytes()));
        while !output.drained() {
            tokio::task::yield_now().await;
        }
        let size = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
        let kept = size(dir.join("cl-1.log")) + size(dir.join("cl-1.log.1"));
        assert!(kept <= 2 * MAX_FILE_BYTES + 2000, "{kept} bytes kept");
        let newest = std::fs::read_to_string(dir.join("cl-1.log")).unwrap();
        assert!(newest.ends_with("the end\n"));
        assert_eq!(output.last_line(), "the end");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_log_appended_after_a_restart_stays_bounded() {
        let dir = dir("restarted");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cl-1.log");
        std::fs::write(&path, vec![b'x'; MAX_FILE_BYTES as usize]).unwrap();
        let output = Output::start(&dir, "cl-1", &Shipping::default());
        output.note("after the restart");
        assert!(dir.join("cl-1.log.1").exists(), "the full log rolled over");
        assert!(std::fs::metadata(&path).unwrap().len() < 100);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn only_the_last_clusters_logs_are_kept() {
        let dir = dir("kept");
        for n in 0..KEPT_CLUSTERS + 3 {
            let output = Output::start(&dir, &format!("cl-{n}"), &Shipping::default());
            output.note("started");
            // Distinct modification times, oldest first.
            std::thread::sleep(std::time::Duration::from_millis(15));
        }
        let count = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(count, KEPT_CLUSTERS);
        assert!(dir.join(format!("cl-{}.log", KEPT_CLUSTERS + 2)).exists());
        assert!(!dir.join("cl-0.log").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
