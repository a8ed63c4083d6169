//! The Worker tab's server functions: each is the twin of a `/api/v1/worker/…` endpoint.

use domain::worker::{DeviceDetail, RegistrationTicket, WorkerDevices};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::errors::AppError;
use crate::functions::codec::JsonAnswer;

/// The signed-in provider's devices and those still waiting for their agent.
#[server(output = JsonAnswer)]
pub async fn my_devices() -> Result<WorkerDevices, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .worker
        .devices_of(&session.wallet, platform::now())
        .await?)
}

/// The "connect new device" form: returns the one-time registration ticket.
#[server(output = JsonAnswer)]
pub async fn add_device(
    name: String,
    os: String,
    kind: String,
    country: String,
) -> Result<RegistrationTicket, AppError> {
    use domain::fleet::{DeviceKind, OperatingSystem};
    let form = domain::worker::NewDevice {
        name,
        os: OperatingSystem::parse(&os).map_err(|e| AppError::invalid(e.to_string()))?,
        kind: DeviceKind::parse(&kind).map_err(|e| AppError::invalid(e.to_string()))?,
        country,
    };
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .worker
        .add_device(&session.wallet, form, platform::now())
        .await?)
}

/// One device with its charts, drawn on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceWithCharts {
    pub detail: DeviceDetail,
    /// SVG: uptime per day over 30 days.
    pub uptime_chart: String,
    /// SVG: mean GPU and CPU utilisation per hour over 48 hours.
    pub utilisation_chart: String,
}

#[server(output = JsonAnswer)]
pub async fn load_device(id: String) -> Result<DeviceWithCharts, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    let detail = platform
        .worker
        .device_detail(&session.wallet, &id, platform::now())
        .await?;
    Ok(DeviceWithCharts {
        uptime_chart: crate::charts::uptime_svg(&detail.uptime_days)?,
        utilisation_chart: crate::charts::utilisation_svg(&detail.utilisation_hours)?,
        detail,
    })
}

/// Renames a device; returns the name as stored.
#[server(output = JsonAnswer)]
pub async fn rename_device(id: String, name: String) -> Result<String, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform.worker.rename(&session.wallet, &id, &name).await?)
}

/// An owner's action on a device: `pause`, `resume`, `remove` or `revoke-credential`.
/// Returns what happened, in words.
#[server(output = JsonAnswer)]
pub async fn device_action(id: String, action: String) -> Result<String, AppError> {
    let action =
        domain::fleet::OwnerAction::parse(&action).map_err(|e| AppError::invalid(e.to_string()))?;
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .worker
        .act(&session.wallet, &id, action, platform::now())
        .await?)
}
