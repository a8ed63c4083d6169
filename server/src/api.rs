//! The JSON API (`/api/v1/…`): the twin of every browser action, for scripts and agents. Each
//! handler reads its input, calls one platform service and answers JSON; errors map through
//! [`crate::error::Error`].

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::api_key::{ApiKey, CreatedApiKey};
use domain::cluster::{
    ClusterDetail, ClusterStatus, ClusterSummary, DeployOptions, DeployRequest, ExtendRequest,
    QuoteAnswer,
};
use domain::fleet::OwnerAction;
use domain::ledger::{statement_csv, Billing};
use domain::money::{Asset, MicroUsd};
use domain::network::NetworkSummary;
use domain::payout::{Deposit, DepositToSign, Payout};
use domain::rewards::ProviderEarnings;
use domain::siws::SignedIn;
use domain::tunnel::AccessToken;
use domain::worker::{DeviceDetail, DeviceFilter, NewDevice, RegistrationTicket, WorkerDevices};
use platform::auth::{Challenge, SessionToken};
use platform::Platform;
use serde::Deserialize;

use crate::api_input::ApiJson;
use crate::error::Error;
use crate::openapi::Refusals;

/// Requests here are small; anything larger is refused before it is read.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn routes(explorer_limiter: crate::limiter::ClientLimiter) -> Router<Platform> {
    Router::new()
        .nest("/explorer", crate::explorer_api::routes(explorer_limiter))
        .route("/auth/challenge", post(challenge))
        .route("/auth/sign-in", post(sign_in))
        .route("/auth/session", get(session))
        .route("/auth/sign-out", post(sign_out))
        .route("/network/summary", get(network_summary))
        .route("/worker/devices", get(my_devices).post(add_device))
        .route("/worker/devices/{id}", get(device_detail))
        .route("/worker/devices/{id}/rename", post(rename_device))
        .route("/worker/devices/{id}/{action}", post(device_action))
        .route("/cloud/balance", get(balance))
        .route("/cloud/billing", get(billing))
        .route("/cloud/deposits", get(my_deposits).post(prepare_deposit))
        .route("/cloud/deposits/{id}/submit", post(submit_deposit))
        .route("/cloud/billing.csv", get(billing_csv))
        .route("/worker/earnings", get(earnings))
        .route("/worker/payouts", get(my_payouts).post(claim))
        .route("/cloud/options", get(deploy_options))
        .route("/cloud/quote", post(quote))
        .route("/cloud/name-available", get(name_available))
        .route("/cloud/clusters", get(my_clusters).post(deploy))
        .route("/cloud/clusters/{id}", get(cluster_detail))
        .route("/cloud/clusters/{id}/logs", get(cluster_logs))
        .route("/cloud/clusters/{id}/extend", post(extend_cluster))
        .route("/cloud/clusters/{id}/terminate", post(terminate_cluster))
        .route(
            "/cloud/clusters/{id}/access-token",
            post(rotate_access_token),
        )
        .route("/keys", get(my_keys).post(create_key))
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChallengeRequest {
    address: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/challenge",
    tag = "auth",
    summary = "The Sign-In With Solana message for a wallet to sign",
    request_body = ChallengeRequest,
    responses((status = 200, description = "The message and when it expires", body = Challenge), Refusals)
)]
pub(crate) async fn challenge(
    State(platform): State<Platform>,
    body: Result<ApiJson<ChallengeRequest>, Error>,
) -> Result<Json<Challenge>, Error> {
    let ApiJson(request) = body?;
    Ok(Json(
        platform
            .auth
            .challenge(&request.address, platform::now())
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignInRequest {
    message: String,
    /// Base58 ed25519 signature of the message's UTF-8 bytes.
    signature: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/sign-in",
    tag = "auth",
    summary = "Verify the signed message and start a session (sets the session cookie)",
    request_body = SignInRequest,
    responses((status = 200, description = "Signed in; the session cookie is set", body = SignedIn), Refusals)
)]
pub(crate) async fn sign_in(
    State(platform): State<Platform>,
    body: Result<ApiJson<SignInRequest>, Error>,
) -> Result<Response, Error> {
    let ApiJson(request) = body?;
    let (token, signed_in) = platform
        .auth
        .sign_in(&request.message, &request.signature, platform::now())
        .await?;
    Ok((
        [(header::SET_COOKIE, platform.auth.session_cookie(&token))],
        Json(signed_in),
    )
        .into_response())
}

fn presented_token(headers: &HeaderMap) -> Option<SessionToken> {
    let cookie = headers.get(header::COOKIE)?.to_str().ok()?;
    SessionToken::from_cookie_header(cookie)
}

/// The credential of an `Authorization: Bearer <credential>` header; the scheme's name is
/// case-insensitive (RFC 9110 §11.1), so `bearer` and `BEARER` are the same.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(credential.trim())
}

/// The caller: an API key (`Authorization: Bearer gck_…`) or the browser's session cookie.
pub(crate) async fn signed_in(platform: &Platform, headers: &HeaderMap) -> Result<SignedIn, Error> {
    match bearer(headers) {
        Some(secret) => Ok(platform
            .api_keys
            .authenticate(secret.trim(), platform::now())
            .await?
            .ok_or(platform::Error::ApiKeyRejected)?),
        None => session_only(platform, headers).await,
    }
}

/// The caller by session cookie alone: keys are made and revoked by a person signed in with
/// the wallet, never by another key.
async fn session_only(platform: &Platform, headers: &HeaderMap) -> Result<SignedIn, Error> {
    let token = presented_token(headers).ok_or(platform::Error::NotSignedIn)?;
    Ok(platform
        .auth
        .session(&token, platform::now())
        .await?
        .ok_or(platform::Error::NotSignedIn)?)
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/session",
    tag = "auth",
    summary = "Who is signed in",
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The signed-in wallet", body = SignedIn), Refusals)
)]
pub(crate) async fn session(
    State(platform): State<Platform>,
    headers: HeaderMap,
) -> Result<Json<SignedIn>, Error> {
    Ok(Json(signed_in(&platform, &headers).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/sign-out",
    tag = "auth",
    summary = "End the session (clears the cookie)",
    responses((status = 204, description = "Signed out"), Refusals)
)]
pub(crate) async fn sign_out(
    State(platform): State<Platform>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    if let Some(token) = presented_token(&headers) {
        platform.auth.end_session(&token).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, platform.auth.clearing_cookie())],
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/network/summary",
    tag = "network",
    summary = "Network totals, supply by GPU model and by country",
    responses((status = 200, description = "The totals", body = NetworkSummary), Refusals)
)]
pub(crate) async fn network_summary(
    State(platform): State<Platform>,
) -> Result<Json<NetworkSummary>, Error> {
    Ok(Json(platform.fleet.network_summary().await?))
}

/// The caller's devices, filtered and sorted by `?status=&model=&tier=&sort=` as in the
/// Worker tab, and the devices still waiting for their agent.
#[utoipa::path(
    get,
    path = "/api/v1/worker/devices",
    tag = "worker",
    summary = "The provider's devices, filtered and sorted, and the added devices waiting for their agent",
    params(DeviceFilter),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The devices", body = WorkerDevices), Refusals)
)]
pub(crate) async fn my_devices(
    State(platform): State<Platform>,
    headers: HeaderMap,
    filter: Result<Query<DeviceFilter>, QueryRejection>,
) -> Result<Json<WorkerDevices>, Error> {
    let Query(filter) = filter?;
    let session = signed_in(&platform, &headers).await?;
    let mut devices = platform
        .worker
        .devices_of(&session.wallet, platform::now())
        .await?;
    devices.devices = filter.apply(&devices.devices);
    Ok(Json(devices))
}

#[utoipa::path(
    post,
    path = "/api/v1/worker/devices",
    tag = "worker",
    summary = "Add a device: its id, the install command and the agent command with a single-use token",
    request_body = NewDevice,
    security(("session" = []), ("api_key" = [])),
    responses((status = 201, description = "Reserved; the token is shown only here", body = RegistrationTicket), Refusals)
)]
pub(crate) async fn add_device(
    State(platform): State<Platform>,
    headers: HeaderMap,
    body: Result<ApiJson<NewDevice>, Error>,
) -> Result<(StatusCode, Json<RegistrationTicket>), Error> {
    let session = signed_in(&platform, &headers).await?;
    let ApiJson(form) = body?;
    let ticket = platform
        .worker
        .add_device(&session.wallet, form, platform::now())
        .await?;
    Ok((StatusCode::CREATED, Json(ticket)))
}

#[utoipa::path(
    get,
    path = "/api/v1/worker/devices/{id}",
    tag = "worker",
    summary = "One of the provider's devices with its history, uptime and utilisation",
    params(("id" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The device", body = DeviceDetail), Refusals)
)]
pub(crate) async fn device_detail(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<DeviceDetail>, Error> {
    let session = signed_in(&platform, &headers).await?;
    Ok(Json(
        platform
            .worker
            .device_detail(&session.wallet, &id, platform::now())
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenameRequest {
    name: String,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Renamed {
    name: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/worker/devices/{id}/rename",
    tag = "worker",
    summary = "Rename a device",
    request_body = RenameRequest,
    params(("id" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The name it has now", body = Renamed), Refusals)
)]
pub(crate) async fn rename_device(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<ApiJson<RenameRequest>, Error>,
) -> Result<Json<Renamed>, Error> {
    let session = signed_in(&platform, &headers).await?;
    let ApiJson(request) = body?;
    let name = platform
        .worker
        .rename(&session.wallet, &id, &request.name)
        .await?;
    Ok(Json(Renamed { name }))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ActionOutcome {
    outcome: String,
}

/// `pause`, `resume`, `remove` or `revoke-credential`.
#[utoipa::path(
    post,
    path = "/api/v1/worker/devices/{id}/{action}",
    tag = "worker",
    summary = "Pause, resume or remove a device, or revoke its agent's credential",
    params(("id" = String, Path), ("action" = OwnerAction, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "What happened, in words", body = ActionOutcome), Refusals)
)]
pub(crate) async fn device_action(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<ActionOutcome>, Error> {
    let session = signed_in(&platform, &headers).await?;
    let action =
        OwnerAction::parse(&action).map_err(|e| platform::Error::NotFound(e.to_string()))?;
    let outcome = platform
        .worker
        .act(&session.wallet, &id, action, platform::now())
        .await?;
    Ok(Json(ActionOutcome { outcome }))
}

/// The `Idempotency-Key` header; without one each request counts once on its own.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    headers
        .get("idempotency-key")
        .map(|value| {
            value.to_str().map_err(|_| {
                platform::Error::Invalid("the Idempotency-Key header must be plain text".into())
                    .into()
            })
        })
        .transpose()
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Balance {
    available: MicroUsd,
    available_tokens: domain::money::Tokens,
}

#[utoipa::path(
    get,
    path = "/api/v1/cloud/balance",
    tag = "cloud",
    summary = "The renter's available balance in both assets",
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The balance", body = Balance), Refusals)
)]
pub(crate) async fn balance(
    State(platform): State<Platform>,
    headers: HeaderMap,
) -> Result<Json<Balance>, Error> {
    let session = signed_in(&platform, &headers).await?;
    let account = domain::ledger::Account::UserAvailable(session.user_id);
    Ok(Json(Balance {
        available: platform.ledger.balance(&account).await?,
        available_tokens: platform.ledger.tokens(&account).await?,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/cloud/billing",
    tag = "cloud",
    summary = "The renter's balance movements",
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The statement", body = Billing), Refusals)
)]
pub(crate) async fn billing(
    State(platform): State<Platform>,
    headers: HeaderMap,
) -> Result<Json<Billing>, Error> {
    let session = signed_in(&platform, &headers).await?;
    Ok(Json(platform.billing(session.user_id).await?))
}

/// The billing movements as a CSV download.
#[utoipa::path(
    get,
    path = "/api/v1/cloud/billing.csv",
    tag = "cloud",
    summary = "The balance movements as CSV",
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The statement", body = String, content_type = "text/csv"), Refusals)
)]
pub(crate) async fn billing_csv(
    State(platform): State<Platform>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let session = signed_in(&platform, &headers).await?;
    let billing = platform.billing(session.user_id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"billing.csv\"",
            ),
        ],
        statement_csv(&billing.lines),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/worker/earnings",
    tag = "worker",
    summary = "The provider's earnings: hires, rewards, claimable",
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The earnings", body = ProviderEarnings), Refusals)
)]
pub(crate) async fn earnings(
    State(platform): State<Platform>,
    headers: HeaderMap,
) -> Result<Json<ProviderEarnings>, Error> {
    let session = signed_in(&platform, &headers).await?;
    Ok(Json(
        platform.earnings(&session.wallet, platform::now()).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/worker/payouts",
    tag = "worker",
    summary = "The provider's payouts, newest first",
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The payouts", body = Vec<Payout>), Refusals)
)]
pub(crate) async fn my_payouts(
    State(platform): State<Platform>,
    headers: HeaderMap,
) -> Result<Json<Vec<Payout>>, Error> {
    let session = signed_in(&platform, &headers).await?;
    Ok(Json(
        platform.payouts.payouts_of(&session.wallet, 100).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/cloud/deposits",
    tag = "cloud",
    summary = "The renter's deposits, newest first",
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The deposits", body = Vec<Deposit>), Refusals)
)]
pub(crate) async fn my_deposits(
    State(platform): State<Platform>,
    headers: HeaderMap,
) -> Result<Json<Vec<Deposit>>, Error> {
    let session = signed_in(&platform, &headers).await?;
    Ok(Json(
        platform.deposits.deposits_of(session.user_id, 100).await?,
    ))
}

/// Builds the transfer from the signed-in wallet for its `signTransaction` (base64).
#[utoipa::path(
    post,
    path = "/api/v1/cloud/deposits",
    tag = "cloud",
    summary = "Build a deposit transfer from the signed-in wallet for it to sign",
    request_body = AssetAmount,
    security(("session" = []), ("api_key" = [])),
    responses((status = 201, description = "The transaction to sign", body = DepositToSign), Refusals)
)]
pub(crate) async fn prepare_deposit(
    State(platform): State<Platform>,
    headers: HeaderMap,
    body: Result<ApiJson<AssetAmount>, Error>,
) -> Result<(StatusCode, Json<DepositToSign>), Error> {
    let session = signed_in(&platform, &headers).await?;
    let ApiJson(request) = body?;
    let (asset, amount) = request.parsed()?;
    let prepared = platform
        .deposits
        .prepare(
            session.user_id,
            &session.wallet,
            asset,
            amount,
            platform::now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(prepared)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignedDeposit {
    /// The transaction the wallet signed, base64 wire format.
    signed_transaction: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/cloud/deposits/{id}/submit",
    tag = "cloud",
    summary = "Send the signed deposit; credited once confirmed",
    request_body = SignedDeposit,
    params(("id" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The deposit", body = Deposit), Refusals)
)]
pub(crate) async fn submit_deposit(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<ApiJson<SignedDeposit>, Error>,
) -> Result<Json<Deposit>, Error> {
    let session = signed_in(&platform, &headers).await?;
    let ApiJson(signed) = body?;
    Ok(Json(
        platform
            .deposits
            .submit(session.user_id, &id, &signed.signed_transaction)
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssetAmount {
    asset: String,
    /// A decimal amount of the asset, e.g. "12.5".
    amount: String,
}

impl AssetAmount {
    /// The asset and the amount in its base units.
    fn parsed(&self) -> Result<(Asset, i64), platform::Error> {
        Asset::parse_with_amount(&self.asset, &self.amount)
            .map_err(|e| platform::Error::Invalid(e.to_string()))
    }
}

/// Claims claimable balance to the signed-in wallet; an `Idempotency-Key` header makes a
/// retry return the same payout.
#[utoipa::path(
    post,
    path = "/api/v1/worker/payouts",
    tag = "worker",
    summary = "Claim a claimable balance to the signed-in wallet",
    request_body = AssetAmount,
    params(("Idempotency-Key" = Option<String>, Header, description = "Any text up to 255 characters: a retry with the same key and body answers what the first did, and moves no money again; the same key with another body is refused (422)")),
    security(("session" = []), ("api_key" = [])),
    responses((status = 201, description = "The payout", body = Payout), Refusals)
)]
pub(crate) async fn claim(
    State(platform): State<Platform>,
    headers: HeaderMap,
    body: Result<ApiJson<AssetAmount>, Error>,
) -> Result<(StatusCode, Json<Payout>), Error> {
    let session = signed_in(&platform, &headers).await?;
    let ApiJson(request) = body?;
    let (asset, amount) = request.parsed()?;
    let key = idempotency_key(&headers)?;
    let payout = platform
        .payouts
        .request(&session.wallet, asset, amount, key, platform::now())
        .await?;
    Ok((StatusCode::CREATED, Json(payout)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct OptionsQuery {
    #[serde(default)]
    #[param(schema_with = crate::openapi::hardware_or_none)]
    hardware: String,
}

/// Hardware with free supply and prices, and the countries with `?hardware=` free.
#[utoipa::path(
    get,
    path = "/api/v1/cloud/options",
    tag = "cloud",
    summary = "Hardware with free supply and prices, and the countries where some hardware is free",
    params(OptionsQuery),
    responses((status = 200, description = "The options", body = DeployOptions), Refusals)
)]
pub(crate) async fn deploy_options(
    State(platform): State<Platform>,
    query: Result<Query<OptionsQuery>, QueryRejection>,
) -> Result<Json<DeployOptions>, Error> {
    let Query(query) = query?;
    Ok(Json(platform.provisioning.deploy_options(&query.hardware)?))
}

/// The price and fillability of a deploy request; needs no sign-in.
#[utoipa::path(
    post,
    path = "/api/v1/cloud/quote",
    tag = "cloud",
    summary = "The price and fillability of a deploy request",
    request_body = DeployRequest,
    responses((status = 200, description = "The quote, or why it cannot be filled", body = QuoteAnswer), Refusals)
)]
pub(crate) async fn quote(
    State(platform): State<Platform>,
    body: Result<ApiJson<DeployRequest>, Error>,
) -> Result<Json<QuoteAnswer>, Error> {
    let ApiJson(request) = body?;
    Ok(Json(platform.provisioning.quote(&request)?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct NameQuery {
    name: String,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct NameAvailability {
    available: bool,
}

#[utoipa::path(
    get,
    path = "/api/v1/cloud/name-available",
    tag = "cloud",
    summary = "Whether the renter has no cluster of this name yet",
    params(NameQuery),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The answer", body = NameAvailability), Refusals)
)]
pub(crate) async fn name_available(
    State(platform): State<Platform>,
    headers: HeaderMap,
    query: Result<Query<NameQuery>, QueryRejection>,
) -> Result<Json<NameAvailability>, Error> {
    let Query(query) = query?;
    let session = signed_in(&platform, &headers).await?;
    let available = platform
        .provisioning
        .name_available(session.user_id, &query.name)
        .await?;
    Ok(Json(NameAvailability { available }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterQuery {
    #[serde(default)]
    #[param(schema_with = crate::openapi::cluster_status_or_any)]
    status: Option<String>,
    #[serde(default)]
    search: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/cloud/clusters",
    tag = "cloud",
    summary = "The renter's clusters",
    params(ClusterQuery),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The clusters", body = Vec<ClusterSummary>), Refusals)
)]
pub(crate) async fn my_clusters(
    State(platform): State<Platform>,
    headers: HeaderMap,
    query: Result<Query<ClusterQuery>, QueryRejection>,
) -> Result<Json<Vec<ClusterSummary>>, Error> {
    let Query(query) = query?;
    let status = query
        .status
        .filter(|s| !s.is_empty())
        .map(|s| ClusterStatus::parse(&s))
        .transpose()
        .map_err(|e| platform::Error::Invalid(e.to_string()))?;
    let session = signed_in(&platform, &headers).await?;
    Ok(Json(
        platform
            .provisioning
            .clusters_of(session.user_id, status, &query.search)
            .await?,
    ))
}

/// Pays from the balance and hires the devices; an `Idempotency-Key` header makes a retry
/// return the same cluster.
#[utoipa::path(
    post,
    path = "/api/v1/cloud/clusters",
    tag = "cloud",
    summary = "Pay from the balance and hire the devices",
    request_body = DeployRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Any text up to 255 characters: a retry with the same key and body answers what the first did, and moves no money again; the same key with another body is refused (422)")),
    security(("session" = []), ("api_key" = [])),
    responses((status = 201, description = "The cluster", body = ClusterSummary), Refusals)
)]
pub(crate) async fn deploy(
    State(platform): State<Platform>,
    headers: HeaderMap,
    body: Result<ApiJson<DeployRequest>, Error>,
) -> Result<(StatusCode, Json<ClusterSummary>), Error> {
    let session = signed_in(&platform, &headers).await?;
    let ApiJson(request) = body?;
    let key = idempotency_key(&headers)?;
    let cluster = platform
        .provisioning
        .deploy(session.user_id, &request, key, platform::now())
        .await?;
    Ok((StatusCode::CREATED, Json(cluster)))
}

#[utoipa::path(
    get,
    path = "/api/v1/cloud/clusters/{id}",
    tag = "cloud",
    summary = "One of the renter's clusters in full",
    params(("id" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The cluster", body = ClusterDetail), Refusals)
)]
pub(crate) async fn cluster_detail(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ClusterDetail>, Error> {
    let session = signed_in(&platform, &headers).await?;
    Ok(Json(
        platform
            .provisioning
            .cluster(session.user_id, &id, platform::now())
            .await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogsQuery {
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    since: i64,
    #[serde(default = "default_log_lines")]
    limit: u32,
}

fn default_log_lines() -> u32 {
    500
}

/// What the cluster's workloads printed after line `since` (of one `device`, or all).
#[utoipa::path(
    get,
    path = "/api/v1/cloud/clusters/{id}/logs",
    tag = "cloud",
    summary = "What the cluster's workloads printed",
    params(("id" = String, Path), LogsQuery),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The lines", body = domain::output::ClusterOutput), Refusals)
)]
pub(crate) async fn cluster_logs(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Json<domain::output::ClusterOutput>, Error> {
    let Query(query) = query?;
    let session = signed_in(&platform, &headers).await?;
    let device = query.device.filter(|d| !d.is_empty());
    Ok(Json(
        platform
            .output
            .read(
                session.user_id,
                &id,
                device.as_deref(),
                query.since,
                query.limit,
            )
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/cloud/clusters/{id}/extend",
    tag = "cloud",
    summary = "Extend a running cluster, paid from the balance",
    request_body = ExtendRequest,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Any text up to 255 characters: a retry with the same key and body answers what the first did, and moves no money again; the same key with another body is refused (422)")),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The cluster", body = ClusterSummary), Refusals)
)]
pub(crate) async fn extend_cluster(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<ApiJson<ExtendRequest>, Error>,
) -> Result<Json<ClusterSummary>, Error> {
    let session = signed_in(&platform, &headers).await?;
    let ApiJson(request) = body?;
    let key = idempotency_key(&headers)?;
    Ok(Json(
        platform
            .provisioning
            .extend(session.user_id, &id, &request, key, platform::now())
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/cloud/clusters/{id}/terminate",
    tag = "cloud",
    summary = "End a cluster; what it did not use is refunded",
    params(("id" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The cluster", body = ClusterSummary), Refusals)
)]
pub(crate) async fn terminate_cluster(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ClusterSummary>, Error> {
    let session = signed_in(&platform, &headers).await?;
    Ok(Json(
        platform
            .provisioning
            .terminate(session.user_id, &id, platform::now())
            .await?,
    ))
}

/// A new access token for the cluster's tunnels; the one before stops working.
#[utoipa::path(
    post,
    path = "/api/v1/cloud/clusters/{id}/access-token",
    tag = "cloud",
    summary = "A new access token for the cluster's tunnels; the one before stops working",
    params(("id" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The token", body = AccessToken), Refusals)
)]
pub(crate) async fn rotate_access_token(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<AccessToken>, Error> {
    let session = signed_in(&platform, &headers).await?;
    Ok(Json(
        platform
            .tunnels
            .rotate_access_token(session.user_id, &id, platform::now())
            .await?,
    ))
}

/// The account's keys (no secrets): a key may list them, only the wallet's session makes or
/// revokes one.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    summary = "The account's API keys (no secrets)",
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, description = "The keys", body = Vec<ApiKey>), Refusals)
)]
pub(crate) async fn my_keys(
    State(platform): State<Platform>,
    headers: HeaderMap,
) -> Result<Json<Vec<ApiKey>>, Error> {
    let session = signed_in(&platform, &headers).await?;
    Ok(Json(platform.api_keys.list(session.user_id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    name: String,
}

/// Makes a key; the answer carries its secret, which is never shown again.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "keys",
    summary = "Make an API key (a browser session only); its secret is shown only here",
    request_body = NewKey,
    security(("session" = [])),
    responses((status = 201, description = "The key with its secret", body = CreatedApiKey), Refusals)
)]
pub(crate) async fn create_key(
    State(platform): State<Platform>,
    headers: HeaderMap,
    body: Result<ApiJson<NewKey>, Error>,
) -> Result<(StatusCode, Json<CreatedApiKey>), Error> {
    let session = session_only(&platform, &headers).await?;
    let ApiJson(new) = body?;
    let created = platform
        .api_keys
        .create(session.user_id, &new.name, platform::now())
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/revoke",
    tag = "keys",
    summary = "Revoke an API key (a browser session only)",
    params(("id" = String, Path)),
    security(("session" = [])),
    responses((status = 200, description = "The key", body = ApiKey), Refusals)
)]
pub(crate) async fn revoke_key(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, Error> {
    let session = session_only(&platform, &headers).await?;
    Ok(Json(
        platform
            .api_keys
            .revoke(session.user_id, &id, platform::now())
            .await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI document", body = Object), Refusals)
)]
pub(crate) async fn openapi(State(platform): State<Platform>) -> Json<serde_json::Value> {
    Json(crate::openapi::document(&platform.auth.config().uri))
}

/// `/api/docs`: the same document as a page to read.
pub(crate) async fn docs(State(platform): State<Platform>) -> axum::response::Html<String> {
    axum::response::Html(crate::api_docs::page(&crate::openapi::document(
        &platform.auth.config().uri,
    )))
}
