//! Read models of the fleet that the pages and the JSON API show. Plain data, shared by the
//! server (which fills them) and the browser (which renders them after hydration).

use serde::{Deserialize, Serialize};

use crate::catalog::GpuCatalog;
use crate::fleet::{DeviceKind, DeviceStatus};
use crate::money::MicroUsd;

/// Network-wide totals. Only verified devices count as available supply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkTotals {
    pub devices: i64,
    pub gpus: i64,
    pub gpus_verified: i64,
    pub gpus_hired: i64,
    pub gpus_idle: i64,
    pub cpu_devices: i64,
    pub cpu_devices_verified: i64,
    pub countries: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelSupply {
    pub model: String,
    pub vram_gb: u32,
    /// Verified GPUs free to hire now.
    pub gpus_idle: i64,
    pub gpus_hired: i64,
    pub price_per_gpu_hour: MicroUsd,
}

impl ModelSupply {
    /// Share of the verified, in-service GPUs of this model that are hired, in whole percent.
    pub fn utilisation_percent(&self) -> i64 {
        let in_service = self.gpus_idle + self.gpus_hired;
        if in_service == 0 {
            0
        } else {
            self.gpus_hired * 100 / in_service
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CountrySupply {
    pub code: String,
    pub name: String,
    pub devices: i64,
    pub gpus: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkSummary {
    pub totals: NetworkTotals,
    /// Best supply first.
    pub by_model: Vec<ModelSupply>,
    /// Most GPUs first.
    pub by_country: Vec<CountrySupply>,
}

/// How many devices (and their GPUs) share one combination of the fleet index's keys. The
/// server keeps these counts in memory; [`NetworkSummary::tally`] turns them into what pages show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplyCount<'a> {
    pub kind: DeviceKind,
    /// Canonical catalog name; None for CPU devices and GPUs outside the catalog.
    pub model: Option<&'a str>,
    pub country: &'a str,
    pub status: DeviceStatus,
    pub verified: bool,
    pub devices: i64,
    pub gpus: i64,
}

impl NetworkSummary {
    /// The network as pages show it. Devices that left (`terminated`) or have been gone for
    /// days (`inactive`) are not part of it; only verified idle GPUs count as available supply.
    pub fn tally<'a>(
        counts: impl IntoIterator<Item = SupplyCount<'a>>,
        catalog: &GpuCatalog,
        country_name: impl Fn(&str) -> Option<String>,
    ) -> NetworkSummary {
        use std::collections::BTreeMap;
        let mut totals = NetworkTotals::default();
        let mut models: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        let mut countries: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for c in counts {
            if matches!(c.status, DeviceStatus::Terminated | DeviceStatus::Inactive) {
                continue;
            }
            let idle = c.status == DeviceStatus::Idle && c.verified;
            let hired = c.status == DeviceStatus::Hired;
            totals.devices += c.devices;
            totals.gpus += c.gpus;
            if c.verified {
                totals.gpus_verified += c.gpus;
            }
            if hired {
                totals.gpus_hired += c.gpus;
            }
            if idle {
                totals.gpus_idle += c.gpus;
            }
            if c.kind == DeviceKind::Cpu {
                totals.cpu_devices += c.devices;
                if c.verified {
                    totals.cpu_devices_verified += c.devices;
                }
            }
            let country = countries.entry(c.country).or_default();
            country.0 += c.devices;
            country.1 += c.gpus;
            if let (DeviceKind::Gpu, Some(model)) = (c.kind, c.model) {
                let supply = models.entry(model).or_default();
                if idle {
                    supply.0 += c.gpus;
                }
                if hired {
                    supply.1 += c.gpus;
                }
            }
        }
        totals.countries = countries.len() as i64;
        let mut by_model: Vec<ModelSupply> = models
            .into_iter()
            // A model that left the catalog is shown as unsupported, not offered as supply.
            .filter_map(|(model, (gpus_idle, gpus_hired))| {
                let entry = catalog.by_name(model)?;
                Some(ModelSupply {
                    model: entry.name.clone(),
                    vram_gb: entry.vram_gb,
                    gpus_idle,
                    gpus_hired,
                    price_per_gpu_hour: entry.default_price_per_hour,
                })
            })
            .collect();
        by_model.sort_by(|a, b| {
            b.gpus_idle
                .cmp(&a.gpus_idle)
                .then_with(|| a.model.cmp(&b.model))
        });
        let mut by_country: Vec<CountrySupply> = countries
            .into_iter()
            .map(|(code, (devices, gpus))| CountrySupply {
                code: code.to_owned(),
                name: country_name(code).unwrap_or_else(|| code.to_owned()),
                devices,
                gpus,
            })
            .collect();
        by_country.sort_by(|a, b| b.gpus.cmp(&a.gpus).then_with(|| a.code.cmp(&b.code)));
        NetworkSummary {
            totals,
            by_model,
            by_country,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(
        kind: DeviceKind,
        model: Option<&'static str>,
        country: &'static str,
        status: DeviceStatus,
        verified: bool,
        devices: i64,
        gpus: i64,
    ) -> SupplyCount<'static> {
        SupplyCount {
            kind,
            model,
            country,
            status,
            verified,
            devices,
            gpus,
        }
    }

    #[test]
    fn only_verified_idle_gpus_are_available_and_departed_devices_do_not_count() {
        use DeviceKind::{Cpu, Gpu};
        use DeviceStatus::*;
        let h100 = Some("H100 80GB SXM");
        let counts = vec![
            count(Gpu, h100, "DE", Idle, true, 2, 16),
            count(Gpu, h100, "DE", Idle, false, 1, 8),
            count(Gpu, h100, "US", Hired, true, 1, 4),
            count(Gpu, h100, "FR", Terminated, true, 5, 40),
            count(Gpu, h100, "FR", Inactive, true, 5, 40),
            count(Gpu, Some("Not A Catalog Card"), "US", Idle, true, 1, 1),
            count(Cpu, None, "US", Idle, true, 3, 0),
        ];
        let summary = NetworkSummary::tally(counts, &GpuCatalog::builtin(), |code| {
            (code == "DE").then(|| "Germany".to_owned())
        });
        let t = &summary.totals;
        assert_eq!((t.devices, t.gpus, t.gpus_verified), (8, 29, 21));
        assert_eq!((t.gpus_idle, t.gpus_hired), (17, 4));
        assert_eq!(
            (t.cpu_devices, t.cpu_devices_verified, t.countries),
            (3, 3, 2)
        );
        assert_eq!(summary.by_model.len(), 1, "the unknown card is not supply");
        assert_eq!(
            (
                summary.by_model[0].gpus_idle,
                summary.by_model[0].gpus_hired
            ),
            (16, 4)
        );
        assert_eq!(summary.by_country[0].name, "Germany");
        assert_eq!(
            summary.by_country[1].name, "US",
            "unknown names fall back to the code"
        );
    }
}
