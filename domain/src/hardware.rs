//! What an agent reports about its machine, the checks every report passes before it is stored,
//! and how raw GPU names map to the catalog (DESIGN.md §2: agents report raw names, the catalog
//! maps them; anything unknown makes the device `unsupported` with the raw name shown).

use serde::{Deserialize, Serialize};

use crate::catalog::GpuCatalog;
use crate::fleet::{DeviceKind, OperatingSystem};

/// Most GPUs one device may report (the largest boxes carry 8–16).
pub const MAX_GPUS: usize = 16;
const MAX_NAME_CHARS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HardwareReport {
    pub os: OperatingSystem,
    pub cpu_model: String,
    pub cpu_cores: u32,
    pub ram_gb: u32,
    pub disk_gb: u32,
    /// One entry per GPU, as the driver names it (e.g. `nvidia-smi --query-gpu=name`).
    pub gpus: Vec<GpuReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GpuReport {
    pub name: String,
    pub memory_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HardwareError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} is longer than {MAX_NAME_CHARS} characters")]
    TooLong { field: &'static str },
    #[error("{field} {value} is out of range ({min}–{max})")]
    OutOfRange {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("{field} must not contain {}", crate::text::describe(*refused))]
    RefusedCharacter { field: &'static str, refused: char },
    #[error("{count} GPUs reported; at most {MAX_GPUS} per device")]
    TooManyGpus { count: usize },
}

/// Where the reported hardware puts the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classification {
    /// A CPU device, or GPUs that all map to one catalog model.
    Supported {
        gpu_model: Option<String>,
        gpu_count: i64,
    },
    /// Kept with the raw description so the owner sees what was found.
    Unsupported { reported: String },
}

fn text(field: &'static str, value: &str) -> Result<(), HardwareError> {
    if value.trim().is_empty() {
        Err(HardwareError::Empty { field })
    } else if value.chars().count() > MAX_NAME_CHARS {
        Err(HardwareError::TooLong { field })
    } else if let Some(refused) = crate::text::refused_name_char(value) {
        Err(HardwareError::RefusedCharacter { field, refused })
    } else {
        Ok(())
    }
}

fn range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), HardwareError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(HardwareError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

impl HardwareReport {
    pub fn validate(&self) -> Result<(), HardwareError> {
        text("cpu_model", &self.cpu_model)?;
        range("cpu_cores", self.cpu_cores.into(), 1, 4096)?;
        range("ram_gb", self.ram_gb.into(), 1, 65_536)?;
        range("disk_gb", self.disk_gb.into(), 0, 1_000_000)?;
        if self.gpus.len() > MAX_GPUS {
            return Err(HardwareError::TooManyGpus {
                count: self.gpus.len(),
            });
        }
        for gpu in &self.gpus {
            text("gpu name", &gpu.name)?;
            range("gpu memory_mb", gpu.memory_mb, 0, 4_000_000)?;
        }
        Ok(())
    }

    /// The GPU names as one line, e.g. `2 × NVIDIA H100 80GB HBM3`.
    pub fn gpu_summary(&self) -> String {
        let mut groups: Vec<(&str, usize)> = Vec::new();
        for gpu in &self.gpus {
            match groups.iter_mut().find(|(name, _)| *name == gpu.name) {
                Some((_, count)) => *count += 1,
                None => groups.push((&gpu.name, 1)),
            }
        }
        groups
            .iter()
            .map(|(name, count)| format!("{count} × {name}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Maps the report onto the catalog for a device declared as `kind`.
    pub fn classify(&self, kind: DeviceKind, catalog: &GpuCatalog) -> Classification {
        if kind == DeviceKind::Cpu {
            return Classification::Supported {
                gpu_model: None,
                gpu_count: 0,
            };
        }
        let Some(first) = self.gpus.first() else {
            return Classification::Unsupported {
                reported: "no GPU detected".into(),
            };
        };
        let models: Vec<Option<&str>> = self
            .gpus
            .iter()
            .map(|g| catalog.by_reported_name(&g.name).map(|m| m.name.as_str()))
            .collect();
        match models[0] {
            Some(model) if models.iter().all(|m| *m == Some(model)) => Classification::Supported {
                gpu_model: Some(model.to_owned()),
                gpu_count: self.gpus.len() as i64,
            },
            // Mixed boxes cannot be rented as one model, so they are not offered.
            Some(_) => Classification::Unsupported {
                reported: format!("mixed GPUs: {}", self.gpu_summary()),
            },
            None => Classification::Unsupported {
                reported: if self.gpus.iter().all(|g| g.name == first.name) {
                    first.name.clone()
                } else {
                    self.gpu_summary()
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(gpus: &[&str]) -> HardwareReport {
        HardwareReport {
            os: OperatingSystem::Linux,
            cpu_model: "AMD EPYC 9654".into(),
            cpu_cores: 96,
            ram_gb: 512,
            disk_gb: 2000,
            gpus: gpus
                .iter()
                .map(|n| GpuReport {
                    name: (*n).into(),
                    memory_mb: 81_559,
                })
                .collect(),
        }
    }

    #[test]
    fn identical_catalog_gpus_make_a_supported_device() {
        let catalog = GpuCatalog::builtin();
        let r = report(&["NVIDIA H100 80GB HBM3"; 8]);
        assert_eq!(r.validate(), Ok(()));
        assert_eq!(
            r.classify(DeviceKind::Gpu, &catalog),
            Classification::Supported {
                gpu_model: Some("H100 80GB SXM".into()),
                gpu_count: 8
            }
        );
        assert_eq!(r.gpu_summary(), "8 × NVIDIA H100 80GB HBM3");
    }

    #[test]
    fn unknown_missing_or_mixed_gpus_are_unsupported_with_what_was_seen() {
        let catalog = GpuCatalog::builtin();
        let unknown = report(&["Matrox G200"]).classify(DeviceKind::Gpu, &catalog);
        assert_eq!(
            unknown,
            Classification::Unsupported {
                reported: "Matrox G200".into()
            }
        );
        let none = report(&[]).classify(DeviceKind::Gpu, &catalog);
        assert_eq!(
            none,
            Classification::Unsupported {
                reported: "no GPU detected".into()
            }
        );
        let mixed = report(&["NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"])
            .classify(DeviceKind::Gpu, &catalog);
        assert!(
            matches!(mixed, Classification::Unsupported { reported } if reported.starts_with("mixed GPUs: 1 × NVIDIA H100"))
        );
    }

    #[test]
    fn cpu_devices_ignore_their_gpus() {
        let catalog = GpuCatalog::builtin();
        assert_eq!(
            report(&["Matrox G200"]).classify(DeviceKind::Cpu, &catalog),
            Classification::Supported {
                gpu_model: None,
                gpu_count: 0
            }
        );
    }

    #[test]
    fn implausible_reports_are_refused_with_the_field() {
        let mut r = report(&[]);
        r.cpu_cores = 0;
        assert_eq!(
            r.validate().unwrap_err().to_string(),
            "cpu_cores 0 is out of range (1–4096)"
        );
        let mut r = report(&[]);
        r.cpu_model = " ".into();
        assert_eq!(
            r.validate().unwrap_err().to_string(),
            "cpu_model must not be empty"
        );
        let r = report(&["NVIDIA H100 80GB HBM3"; 17]);
        assert!(matches!(
            r.validate(),
            Err(HardwareError::TooManyGpus { count: 17 })
        ));
    }
}
