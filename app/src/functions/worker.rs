//! The Worker tab's server functions: each is the twin of a `/api/v1/worker/…` endpoint.

use domain::worker::{DeviceDetail, RegistrationTicket, WorkerDevices};
use leptos::prelude::*;

use crate::errors::AppError;

/// The signed-in provider's devices and those still waiting for their agent.
#[server]
pub async fn my_devices() -> Result<WorkerDevices, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .worker
        .devices_of(&session.wallet, platform::now())
        .await?)
}

/// The "connect new device" form: returns the one-time registration ticket.
#[server]
pub async fn add_device(
    name: String,
    os: String,
    kind: String,
    country: String,
) -> Result<RegistrationTicket, AppError> {
    use domain::fleet::{DeviceKind, OperatingSystem};
    let form = domain::worker::NewDevice {
        name,
        os: OperatingSystem::parse(&os).map_err(|e| AppError::Invalid(e.to_string()))?,
        kind: DeviceKind::parse(&kind).map_err(|e| AppError::Invalid(e.to_string()))?,
        country,
    };
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .worker
        .add_device(&session.wallet, form, platform::now())
        .await?)
}

#[server]
pub async fn load_device(id: String) -> Result<DeviceDetail, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform.worker.device_detail(&session.wallet, &id).await?)
}

/// An owner's action on a device: `pause`, `resume`, `remove` or `revoke-credential`.
/// Returns what happened, in words.
#[server]
pub async fn device_action(id: String, action: String) -> Result<String, AppError> {
    let action =
        domain::fleet::OwnerAction::parse(&action).map_err(|e| AppError::Invalid(e.to_string()))?;
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .worker
        .act(&session.wallet, &id, action, platform::now())
        .await?)
}
