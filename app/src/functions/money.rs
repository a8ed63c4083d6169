//! The money pages' server functions: `/cloud/billing` and `/worker/earnings`, twins of
//! `/api/v1/cloud/billing` and `/api/v1/worker/earnings`.

use domain::ledger::Billing;
use domain::payout::{Deposit, DepositToSign, Payout};
use domain::rewards::ProviderEarnings;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::errors::AppError;
use crate::functions::codec::JsonAnswer;

/// The renter's balances and movements, with their deposits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingWithDeposits {
    pub billing: Billing,
    pub deposits: Vec<Deposit>,
    /// Whether this server takes deposits (it runs with a treasury).
    pub deposits_enabled: bool,
}

#[server(output = JsonAnswer)]
pub async fn load_billing() -> Result<BillingWithDeposits, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    // Deposits before balances: a deposit confirmed between the two reads then shows in the
    // balance too. The other way round the page could show it confirmed with the balance from
    // before, and stop re-reading (nothing left on its way).
    let deposits = platform.deposits.deposits_of(session.user_id, 50).await?;
    Ok(BillingWithDeposits {
        billing: platform.billing(session.user_id).await?,
        deposits,
        deposits_enabled: platform.deposits.enabled(),
    })
}

/// Builds a deposit of `amount` (a decimal) of `asset` from the signed-in wallet: the
/// transaction for the wallet to sign.
#[server(output = JsonAnswer)]
pub async fn prepare_deposit(asset: String, amount: String) -> Result<DepositToSign, AppError> {
    let (asset, amount) = domain::money::Asset::parse_with_amount(&asset, &amount)
        .map_err(|e| AppError::invalid(e.to_string()))?;
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .deposits
        .prepare(
            session.user_id,
            &session.wallet,
            asset,
            amount,
            platform::now(),
        )
        .await?)
}

/// Sends the wallet-signed deposit (base64 wire format); credited once confirmed on chain.
#[server(output = JsonAnswer)]
pub async fn submit_deposit(id: String, signed_transaction: String) -> Result<Deposit, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .deposits
        .submit(session.user_id, &id, &signed_transaction)
        .await?)
}

/// A provider's earnings with their daily charts, drawn on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarningsWithCharts {
    pub earnings: ProviderEarnings,
    /// SVG: hire earnings per day over 30 days.
    pub hire_chart: String,
    /// SVG: block rewards per day over 30 days.
    pub rewards_chart: String,
    pub payouts: Vec<Payout>,
    /// Whether this server pays claims out (it runs with a treasury key).
    pub payouts_enabled: bool,
}

#[server(output = JsonAnswer)]
pub async fn load_earnings() -> Result<EarningsWithCharts, AppError> {
    use domain::money::Asset;
    let (platform, session) = super::context::signed_in_platform().await?;
    let earnings = platform.earnings(&session.wallet, platform::now()).await?;
    Ok(EarningsWithCharts {
        hire_chart: crate::charts::daily_bars_svg(&earnings.daily_hire, &|u| Asset::Usdc.show(u))?,
        rewards_chart: crate::charts::daily_bars_svg(&earnings.daily_rewards, &|u| {
            Asset::Token.show(u)
        })?,
        payouts: platform.payouts.payouts_of(&session.wallet, 100).await?,
        payouts_enabled: platform.payouts.enabled(),
        earnings,
    })
}

/// Claims `amount` (a decimal, e.g. "12.5") of `asset` ("usdc" or "token") to the signed-in
/// wallet. The form sends one idempotency key per filled-in claim, so a double click pays once.
#[server(output = JsonAnswer)]
pub async fn claim_payout(
    asset: String,
    amount: String,
    idempotency_key: String,
) -> Result<Payout, AppError> {
    let (asset, amount) = domain::money::Asset::parse_with_amount(&asset, &amount)
        .map_err(|e| AppError::invalid(e.to_string()))?;
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .payouts
        .request(
            &session.wallet,
            asset,
            amount,
            Some(&idempotency_key),
            platform::now(),
        )
        .await?)
}
