//! The Cloud console's server functions: each is the twin of a `/api/v1/cloud/…` endpoint.

use domain::cluster::{
    ClusterDetail, ClusterSummary, DeployOptions, DeployRequest, DurationUnit, QuoteAnswer,
};
use domain::money::MicroUsd;
use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use serde::{Deserialize, Serialize};

use crate::errors::AppError;
use crate::functions::codec::JsonAnswer;

/// The renter's balance and clusters, as `/cloud` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudOverview {
    pub available: MicroUsd,
    pub clusters: Vec<ClusterSummary>,
}

/// `status` is a cluster status or empty for all; `search` matches names and ids.
#[server(output = JsonAnswer)]
pub async fn load_cloud_overview(
    status: String,
    search: String,
) -> Result<CloudOverview, AppError> {
    let status = (!status.is_empty())
        .then(|| domain::cluster::ClusterStatus::parse(&status))
        .transpose()
        .map_err(|e| AppError::invalid(e.to_string()))?;
    let (platform, session) = super::context::signed_in_platform().await?;
    let available = platform
        .ledger
        .balance(&domain::ledger::Account::UserAvailable(session.user_id))
        .await?;
    let clusters = platform
        .provisioning
        .clusters_of(session.user_id, status, &search)
        .await?;
    Ok(CloudOverview {
        available,
        clusters,
    })
}

/// Hardware with free supply and prices, and the countries that have `hardware` free.
#[server(output = JsonAnswer)]
pub async fn load_deploy_options(hardware: String) -> Result<DeployOptions, AppError> {
    let platform = super::context::platform()?;
    Ok(platform.provisioning.deploy_options(&hardware)?)
}

/// The live quote and fillability of the wizard's request; needs no sign-in.
#[server(input = Json, output = JsonAnswer)]
pub async fn quote_deploy(request: DeployRequest) -> Result<QuoteAnswer, AppError> {
    let platform = super::context::platform()?;
    Ok(platform.provisioning.quote(&request)?)
}

#[server(output = JsonAnswer)]
pub async fn cluster_name_available(name: String) -> Result<bool, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .provisioning
        .name_available(session.user_id, &name)
        .await?)
}

/// Pays from the balance and hires the devices. The wizard sends one idempotency key per
/// filled-in form, so a double click or a retry makes one cluster.
#[server(input = Json, output = JsonAnswer)]
pub async fn deploy_cluster(
    request: DeployRequest,
    idempotency_key: String,
) -> Result<ClusterSummary, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .provisioning
        .deploy(
            session.user_id,
            &request,
            Some(&idempotency_key),
            platform::now(),
        )
        .await?)
}

/// One cluster with its utilisation chart, drawn on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterWithChart {
    pub detail: ClusterDetail,
    /// SVG: mean GPU and CPU utilisation of its devices per hour over 48 hours.
    pub utilisation_chart: String,
    /// The last lines each device's workload printed, oldest first.
    pub output: Vec<domain::output::OutputLine>,
}

/// Lines of each device's output the cluster page shows.
#[cfg(feature = "ssr")]
const OUTPUT_LINES_SHOWN: u32 = 60;

#[server(output = JsonAnswer)]
pub async fn load_cluster(id: String) -> Result<ClusterWithChart, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    let detail = platform
        .provisioning
        .cluster(session.user_id, &id, platform::now())
        .await?;
    let utilisation_chart =
        crate::charts::utilisation_svg(&detail.utilisation_hours).map_err(|e| {
            tracing::error!(cluster = %id, error = %e, "could not draw a chart");
            AppError::Internal
        })?;
    let output = platform
        .output
        .tail(session.user_id, &id, OUTPUT_LINES_SHOWN)
        .await?;
    Ok(ClusterWithChart {
        detail,
        utilisation_chart,
        output,
    })
}

#[server(output = JsonAnswer)]
pub async fn extend_cluster(
    id: String,
    duration_unit: DurationUnit,
    duration_count: u32,
    idempotency_key: String,
) -> Result<ClusterSummary, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    let request = domain::cluster::ExtendRequest {
        duration_unit,
        duration_count,
    };
    Ok(platform
        .provisioning
        .extend(
            session.user_id,
            &id,
            &request,
            Some(&idempotency_key),
            platform::now(),
        )
        .await?)
}

#[server(output = JsonAnswer)]
pub async fn terminate_cluster(id: String) -> Result<ClusterSummary, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .provisioning
        .terminate(session.user_id, &id, platform::now())
        .await?)
}

/// A new access token for the cluster's tunnels, shown this once; the one before stops working.
#[server(output = JsonAnswer)]
pub async fn rotate_access_token(id: String) -> Result<domain::tunnel::AccessToken, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .tunnels
        .rotate_access_token(session.user_id, &id, platform::now())
        .await?)
}

/// The account's API keys (never their secrets).
#[server(output = JsonAnswer)]
pub async fn my_api_keys() -> Result<Vec<domain::api_key::ApiKey>, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform.api_keys.list(session.user_id).await?)
}

/// Makes an API key; the answer is the only time its secret is shown.
#[server(output = JsonAnswer)]
pub async fn create_api_key(name: String) -> Result<domain::api_key::CreatedApiKey, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .api_keys
        .create(session.user_id, &name, platform::now())
        .await?)
}

#[server(output = JsonAnswer)]
pub async fn revoke_api_key(id: String) -> Result<domain::api_key::ApiKey, AppError> {
    let (platform, session) = super::context::signed_in_platform().await?;
    Ok(platform
        .api_keys
        .revoke(session.user_id, &id, platform::now())
        .await?)
}

/// The price clusters paid in the network token are paid at (the server's setting, read in
/// process while a page renders on the server); none: USDC only, or in the browser.
pub fn offered_token_price() -> Option<domain::money::TokenPrice> {
    #[cfg(feature = "ssr")]
    {
        super::context::platform()
            .ok()
            .and_then(|p| p.provisioning.token_price())
    }
    #[cfg(not(feature = "ssr"))]
    {
        None
    }
}
