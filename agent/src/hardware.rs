//! What the machine is: detected for real (nvidia-smi, /proc, sysctl, df), or described by a
//! `--simulate` file so tests and demos can run many virtual devices on one host.

use std::path::Path;
use std::process::Command;

use domain::agent_protocol::Utilisation;
use domain::fleet::OperatingSystem;
use domain::hardware::{GpuReport, HardwareReport};
use serde::Deserialize;

use crate::error::AgentError;

/// A `--simulate` file: the hardware to report and the utilisation to claim.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedMachine {
    pub os: OperatingSystem,
    pub cpu_model: String,
    pub cpu_cores: u32,
    pub ram_gb: u32,
    #[serde(default)]
    pub disk_gb: u32,
    #[serde(default)]
    pub gpus: Vec<SimulatedGpu>,
    #[serde(default)]
    pub utilisation: Utilisation,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedGpu {
    pub name: String,
    pub memory_mb: u64,
    /// How many of this GPU the machine has.
    #[serde(default = "one")]
    pub count: usize,
}

fn one() -> usize {
    1
}

impl SimulatedMachine {
    pub fn load(path: &Path) -> Result<SimulatedMachine, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            AgentError::Config(format!(
                "cannot read the --simulate file '{}': {e}",
                path.display()
            ))
        })?;
        toml::from_str(&text)
            .map_err(|e| AgentError::Config(format!("--simulate file '{}': {e}", path.display())))
    }

    pub fn report(&self) -> HardwareReport {
        HardwareReport {
            os: self.os,
            cpu_model: self.cpu_model.clone(),
            cpu_cores: self.cpu_cores,
            ram_gb: self.ram_gb,
            disk_gb: self.disk_gb,
            gpus: self
                .gpus
                .iter()
                .flat_map(|g| {
                    std::iter::repeat_n(
                        GpuReport {
                            name: g.name.clone(),
                            memory_mb: g.memory_mb,
                        },
                        g.count,
                    )
                })
                .collect(),
        }
    }
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// GPUs as `nvidia-smi` lists them; none where it is missing or fails.
pub fn nvidia_gpus() -> Vec<GpuReport> {
    run(
        "nvidia-smi",
        &[
            "--query-gpu=name,memory.total",
            "--format=csv,noheader,nounits",
        ],
    )
    .map(|text| parse_nvidia_smi(&text))
    .unwrap_or_default()
}

/// Parses `name, memory_mb` lines.
pub fn parse_nvidia_smi(text: &str) -> Vec<GpuReport> {
    text.lines()
        .filter_map(|line| {
            let (name, memory) = line.rsplit_once(',')?;
            Some(GpuReport {
                name: name.trim().to_owned(),
                memory_mb: memory.trim().parse().ok()?,
            })
        })
        .filter(|g| !g.name.is_empty())
        .collect()
}

fn field_after_colon<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
}

fn this_os() -> OperatingSystem {
    match std::env::consts::OS {
        "windows" => OperatingSystem::Windows,
        "macos" => OperatingSystem::MacOs,
        _ => OperatingSystem::Linux,
    }
}

/// Detects this machine.
pub fn detect() -> HardwareReport {
    let os = this_os();
    let cpu_model = match os {
        OperatingSystem::MacOs => run("sysctl", &["-n", "machdep.cpu.brand_string"]),
        _ => std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| field_after_colon(&t, "model name").map(str::to_owned)),
    }
    .map(|s| s.trim().to_owned())
    .filter(|s| !s.is_empty())
    .unwrap_or_else(|| "unknown CPU".to_owned());
    let cpu_cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let ram_bytes: u64 = match os {
        OperatingSystem::MacOs => run("sysctl", &["-n", "hw.memsize"])
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        _ => std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                field_after_colon(&t, "MemTotal")
                    .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024),
    };
    let disk_gb = run("df", &["-Pk", "/"])
        .and_then(|t| {
            let line = t.lines().nth(1)?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb / (1024 * 1024));
    HardwareReport {
        os,
        cpu_model,
        cpu_cores,
        ram_gb: (ram_bytes.div_ceil(1 << 30)).max(1) as u32,
        disk_gb: disk_gb as u32,
        gpus: nvidia_gpus(),
    }
}

/// Samples utilisation: CPU from /proc/stat between calls, memory from /proc/meminfo, GPU from
/// nvidia-smi. Where a source is missing the value is 0.
#[derive(Default)]
pub struct UtilisationProbe {
    last_cpu: Option<(u64, u64)>,
}

impl UtilisationProbe {
    pub fn sample(&mut self) -> Utilisation {
        let cpu_percent = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| {
                let fields: Vec<u64> = t
                    .lines()
                    .next()?
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                let total: u64 = fields.iter().sum();
                let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
                let previous = self.last_cpu.replace((total, idle));
                let (t0, i0) = previous?;
                let (dt, di) = (total.saturating_sub(t0), idle.saturating_sub(i0));
                (dt > 0).then(|| (100 * (dt - di.min(dt)) / dt) as u8)
            })
            .unwrap_or(0);
        let memory_percent = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                let kb = |k| {
                    field_after_colon(&t, k)
                        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
                };
                let (total, available) = (kb("MemTotal")?, kb("MemAvailable")?);
                (total > 0).then(|| (100 * total.saturating_sub(available) / total) as u8)
            })
            .unwrap_or(0);
        let gpu_percent = run(
            "nvidia-smi",
            &[
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
            ],
        )
        .and_then(|t| {
            let values: Vec<u64> = t.lines().filter_map(|l| l.trim().parse().ok()).collect();
            (!values.is_empty()).then(|| (values.iter().sum::<u64>() / values.len() as u64) as u8)
        })
        .unwrap_or(0);
        Utilisation {
            gpu_percent: gpu_percent.min(100),
            cpu_percent: cpu_percent.min(100),
            memory_percent: memory_percent.min(100),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nvidia_smi_csv() {
        let gpus = parse_nvidia_smi(
            "NVIDIA H100 80GB HBM3, 81559\nNVIDIA H100 80GB HBM3, 81559\n\ngarbage\n",
        );
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(gpus[0].memory_mb, 81_559);
    }

    #[test]
    fn simulate_files_expand_gpu_counts_and_refuse_typos() {
        let machine: SimulatedMachine = toml::from_str(
            "os = \"linux\"\ncpu_model = \"EPYC\"\ncpu_cores = 8\nram_gb = 64\n\
             [[gpus]]\nname = \"NVIDIA GeForce RTX 4090\"\nmemory_mb = 24564\ncount = 2\n",
        )
        .unwrap();
        let report = machine.report();
        assert_eq!(report.gpus.len(), 2);
        assert_eq!(report.validate(), Ok(()));
        let typo = toml::from_str::<SimulatedMachine>(
            "os = \"linux\"\ncpu_model = \"x\"\ncpu_cores = 8\nram_gb = 64\ngpu = []\n",
        );
        assert!(typo
            .unwrap_err()
            .to_string()
            .contains("unknown field `gpu`"));
    }

    #[test]
    fn detection_describes_this_machine_plausibly() {
        let report = detect();
        assert_eq!(report.validate(), Ok(()), "{report:?}");
    }
}
