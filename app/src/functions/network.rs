//! Fleet read models for the pages.

use domain::network::NetworkSummary;
use leptos::prelude::*;

use crate::errors::AppError;
use crate::functions::codec::JsonAnswer;

#[server(output = JsonAnswer)]
pub async fn load_network_summary() -> Result<NetworkSummary, AppError> {
    Ok(super::context::platform()?.fleet.network_summary().await?)
}
