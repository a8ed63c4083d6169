//! The GPU model catalog: canonical names, the raw names agents report (nvidia-smi strings), memory
//! and a default hourly price. The starting catalog ships in `data/gpu-catalog.csv`; prices there
//! are defaults that operators override by configuration.

use crate::money::{MicroUsd, MoneyError};

const DEFAULT_CATALOG_CSV: &str = include_str!("../data/gpu-catalog.csv");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuModel {
    /// Canonical name, e.g. `H100 80GB SXM`.
    pub name: String,
    pub brand: String,
    /// 0 for unified-memory Apple chips (the device's RAM applies).
    pub vram_gb: u32,
    /// Exactly what `nvidia-smi --query-gpu=name` prints for this model.
    pub reported_names: Vec<String>,
    pub default_price_per_hour: MicroUsd,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog line {line}: expected 5 comma-separated fields")]
    FieldCount { line: usize },
    #[error("catalog line {line}: memory '{value}' is not a whole number of GB")]
    Memory { line: usize, value: String },
    #[error("catalog line {line}: {source}")]
    Price { line: usize, source: MoneyError },
    #[error("catalog line {line}: model '{name}' appears twice")]
    Duplicate { line: usize, name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuCatalog {
    // Shared: services hold the catalog and are cloned for every request.
    models: std::sync::Arc<[GpuModel]>,
}

impl GpuCatalog {
    /// The catalog compiled into the binary.
    pub fn builtin() -> GpuCatalog {
        // The shipped file is covered by a unit test, so this cannot fail at run time.
        GpuCatalog::parse_csv(DEFAULT_CATALOG_CSV).unwrap_or(GpuCatalog {
            models: std::sync::Arc::new([]),
        })
    }

    /// Parses `model,brand,vram_gb,nvidia_smi_names,default_usd_per_hour` with a header line.
    pub fn parse_csv(text: &str) -> Result<GpuCatalog, CatalogError> {
        let mut models: Vec<GpuModel> = Vec::new();
        for (index, raw) in text.lines().enumerate().skip(1) {
            let line = index + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = raw.split(',').map(str::trim).collect();
            let [name, brand, vram, names, price] = fields[..] else {
                return Err(CatalogError::FieldCount { line });
            };
            if models.iter().any(|m| m.name == name) {
                return Err(CatalogError::Duplicate {
                    line,
                    name: name.to_owned(),
                });
            }
            models.push(GpuModel {
                name: name.to_owned(),
                brand: brand.to_owned(),
                vram_gb: vram.parse().map_err(|_| CatalogError::Memory {
                    line,
                    value: vram.to_owned(),
                })?,
                reported_names: names
                    .split('|')
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect(),
                default_price_per_hour: MicroUsd::parse_decimal(price)
                    .map_err(|source| CatalogError::Price { line, source })?,
            });
        }
        Ok(GpuCatalog {
            models: models.into(),
        })
    }

    pub fn models(&self) -> &[GpuModel] {
        &self.models
    }

    pub fn by_name(&self, name: &str) -> Option<&GpuModel> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Maps a raw name reported by an agent to the catalog entry, ignoring case and spacing.
    pub fn by_reported_name(&self, raw: &str) -> Option<&GpuModel> {
        let wanted = normalise(raw);
        self.models
            .iter()
            .find(|m| m.reported_names.iter().any(|n| normalise(n) == wanted))
    }
}

fn normalise(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalog_parses_and_is_not_empty() {
        let catalog = GpuCatalog::parse_csv(DEFAULT_CATALOG_CSV).unwrap();
        assert!(catalog.models().len() >= 20);
        let h100 = catalog.by_name("H100 80GB SXM").unwrap();
        assert_eq!(
            h100.default_price_per_hour,
            MicroUsd::from_micros(2_490_000)
        );
    }

    #[test]
    fn maps_nvidia_smi_names_to_canonical_models() {
        let catalog = GpuCatalog::builtin();
        assert_eq!(
            catalog
                .by_reported_name("NVIDIA  h100 80GB HBM3")
                .unwrap()
                .name,
            "H100 80GB SXM"
        );
        assert_eq!(
            catalog
                .by_reported_name("NVIDIA GeForce RTX 4090")
                .unwrap()
                .name,
            "RTX 4090 24GB"
        );
        assert!(catalog.by_reported_name("Matrox G200").is_none());
    }

    #[test]
    fn bad_catalog_lines_name_the_line_and_problem() {
        let header = "model,brand,vram_gb,nvidia_smi_names,default_usd_per_hour\n";
        let err = |body: &str| GpuCatalog::parse_csv(&format!("{header}{body}")).unwrap_err();
        assert_eq!(err("A,B,1,x"), CatalogError::FieldCount { line: 2 });
        assert!(matches!(
            err("A,B,lots,x,1"),
            CatalogError::Memory { line: 2, .. }
        ));
        assert!(matches!(
            err("A,B,1,x,cheap"),
            CatalogError::Price { line: 2, .. }
        ));
        assert!(matches!(
            err("A,B,1,x,1\nA,B,1,x,1"),
            CatalogError::Duplicate { line: 3, .. }
        ));
    }
}
