//! The money pages' server functions: `/cloud/billing` and `/worker/earnings`, twins of
//! `/api/v1/cloud/billing` and `/api/v1/worker/earnings`.

use domain::ledger::Billing;
use domain::rewards::ProviderEarnings;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::errors::AppError;

/// The signed-in renter's balances and movements.
#[server]
pub async fn load_billing() -> Result<Billing, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform.billing(session.user_id).await?)
}

/// A provider's earnings with their daily charts, drawn on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarningsWithCharts {
    pub earnings: ProviderEarnings,
    /// SVG: hire earnings per day over 30 days.
    pub hire_chart: String,
    /// SVG: block rewards per day over 30 days.
    pub rewards_chart: String,
}

#[server]
pub async fn load_earnings() -> Result<EarningsWithCharts, AppError> {
    use domain::money::Asset;
    let (platform, session) = super::context::signed_in_platform().await?;
    let earnings = platform.earnings(&session.wallet, platform::now()).await?;
    let drawn = |chart: Result<String, crate::charts::ChartError>| {
        chart.map_err(|e| {
            tracing::error!(error = %e, "could not draw an earnings chart");
            AppError::Internal
        })
    };
    Ok(EarningsWithCharts {
        hire_chart: drawn(crate::charts::daily_amounts_svg(
            &earnings.daily_hire,
            Asset::Usdc,
        ))?,
        rewards_chart: drawn(crate::charts::daily_amounts_svg(
            &earnings.daily_rewards,
            Asset::Token,
        ))?,
        earnings,
    })
}
