//! Read models of the fleet that the pages and the JSON API show. Plain data, shared by the
//! server (which fills them) and the browser (which renders them after hydration).

use serde::{Deserialize, Serialize};

use crate::money::MicroUsd;

/// Network-wide totals. Only verified devices count as available supply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct CountrySupply {
    pub code: String,
    pub name: String,
    pub devices: i64,
    pub gpus: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSummary {
    pub totals: NetworkTotals,
    /// Best supply first.
    pub by_model: Vec<ModelSupply>,
    /// Most GPUs first.
    pub by_country: Vec<CountrySupply>,
}
