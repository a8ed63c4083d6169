//! Fleet read models for the pages.

use domain::network::{NetworkSummary, OwnedDevice};
use leptos::prelude::*;

use crate::errors::AppError;

#[server]
pub async fn load_network_summary() -> Result<NetworkSummary, AppError> {
    Ok(super::context::platform()?.fleet.network_summary().await?)
}

/// The signed-in provider's devices.
#[server]
pub async fn my_devices() -> Result<Vec<OwnedDevice>, AppError> {
    let platform = super::context::platform()?;
    let session = super::context::signed_in(&platform)
        .await?
        .ok_or(platform::Error::NotSignedIn)?;
    Ok(platform.fleet.devices_of(&session.wallet).await?)
}
