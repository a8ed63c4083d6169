//! The explorer's read models for the pages: public, so none needs a session.

use domain::explorer::{
    BlockDetail, DeviceListQuery, FleetDevice, NetworkActivity, Page, PublicCluster,
    PublicClusterDetail, PublicDevice, PublicWallet, SearchOutcome,
};
use domain::network::NetworkSummary;
use domain::rewards::BlockSummary;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::errors::AppError;
use crate::functions::codec::JsonAnswer;

#[server(output = JsonAnswer)]
pub async fn load_fleet_page(query: DeviceListQuery) -> Result<Page<FleetDevice>, AppError> {
    Ok(super::context::platform()?.explorer.device_list(&query)?)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicDeviceWithChart {
    pub device: PublicDevice,
    /// SVG: uptime per day over 30 days.
    pub uptime_chart: String,
}

#[server(output = JsonAnswer)]
pub async fn load_public_device(id: String) -> Result<PublicDeviceWithChart, AppError> {
    let platform = super::context::platform()?;
    let device = platform.explorer.device(&id, platform::now()).await?;
    let uptime_chart = crate::charts::uptime_svg(&device.uptime_days)?;
    Ok(PublicDeviceWithChart {
        device,
        uptime_chart,
    })
}

/// The front page: live supply from the fleet index, the recent activity, and its charts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplorerFront {
    pub summary: NetworkSummary,
    pub activity: NetworkActivity,
    /// SVG: a circle per country sized by its GPUs.
    pub map: String,
    /// SVG: unit-hours served per day over 30 days.
    pub compute_chart: String,
}

#[server(output = JsonAnswer)]
pub async fn load_explorer_front() -> Result<ExplorerFront, AppError> {
    use crate::charts::{daily_bars_svg, world_map_svg, MapPoint};
    let platform = super::context::platform()?;
    let (version, summary) = platform.fleet.current_summary();
    let activity = platform.explorer.activity(platform::now()).await?;
    let front = platform
        .explorer
        .front_page((version, activity.as_of.0), || {
            let points: Vec<MapPoint> = summary
                .by_country
                .iter()
                .filter_map(|c| {
                    let place = platform.explorer.place(&c.code)?;
                    Some(MapPoint {
                        code: &c.code,
                        lon: place.0,
                        lat: place.1,
                        gpus: c.gpus,
                    })
                })
                .collect();
            Ok::<_, AppError>(ExplorerFront {
                map: world_map_svg(&points)?,
                compute_chart: daily_bars_svg(&activity.daily_compute_hours, &|h| {
                    format!("{h} h")
                })?,
                activity: (*activity).clone(),
                summary: (*summary).clone(),
            })
        })?;
    Ok((*front).clone())
}

#[server(output = JsonAnswer)]
pub async fn load_public_clusters(
    status: String,
    after: String,
) -> Result<Page<PublicCluster>, AppError> {
    let platform = super::context::platform()?;
    Ok(platform
        .explorer
        .clusters(&status, &after, platform::now())
        .await?)
}

#[server(output = JsonAnswer)]
pub async fn load_public_cluster(id: String) -> Result<PublicClusterDetail, AppError> {
    let platform = super::context::platform()?;
    Ok(platform.explorer.cluster(&id, platform::now()).await?)
}

#[server(output = JsonAnswer)]
pub async fn load_blocks(after: String) -> Result<Page<BlockSummary>, AppError> {
    let platform = super::context::platform()?;
    Ok(platform.explorer.blocks(&after).await?)
}

#[server(output = JsonAnswer)]
pub async fn load_block(number: String, after: String) -> Result<BlockDetail, AppError> {
    let platform = super::context::platform()?;
    Ok(platform.explorer.block(&number, &after).await?)
}

#[server(output = JsonAnswer)]
pub async fn load_wallet(address: String) -> Result<PublicWallet, AppError> {
    let platform = super::context::platform()?;
    Ok(platform.explorer.wallet(&address).await?)
}

#[server(output = JsonAnswer)]
pub async fn explorer_search(query: String) -> Result<SearchOutcome, AppError> {
    let platform = super::context::platform()?;
    Ok(platform.explorer.search(&query).await?)
}
