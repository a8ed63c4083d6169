//! The JSON API (`/api/v1/…`): the twin of every browser action, for scripts and agents. Each
//! handler reads its input, calls one platform service and answers JSON; errors map through
//! [`crate::error::Error`].

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::fleet::OwnerAction;
use domain::network::NetworkSummary;
use domain::siws::SignedIn;
use domain::worker::{DeviceDetail, DeviceFilter, NewDevice, RegistrationTicket, WorkerDevices};
use platform::auth::{Challenge, SessionToken};
use platform::Platform;
use serde::Deserialize;

use crate::error::Error;

/// Requests here are small; anything larger is refused before it is read.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn routes() -> Router<Platform> {
    Router::new()
        .route("/auth/challenge", post(challenge))
        .route("/auth/sign-in", post(sign_in))
        .route("/auth/session", get(session))
        .route("/auth/sign-out", post(sign_out))
        .route("/network/summary", get(network_summary))
        .route("/worker/devices", get(my_devices).post(add_device))
        .route("/worker/devices/{id}", get(device_detail))
        .route("/worker/devices/{id}/rename", post(rename_device))
        .route("/worker/devices/{id}/{action}", post(device_action))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeRequest {
    address: String,
}

async fn challenge(
    State(platform): State<Platform>,
    body: Result<Json<ChallengeRequest>, JsonRejection>,
) -> Result<Json<Challenge>, Error> {
    let Json(request) = body?;
    Ok(Json(
        platform
            .auth
            .challenge(&request.address, platform::now())
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInRequest {
    message: String,
    /// Base58 ed25519 signature of the message's UTF-8 bytes.
    signature: String,
}

async fn sign_in(
    State(platform): State<Platform>,
    body: Result<Json<SignInRequest>, JsonRejection>,
) -> Result<Response, Error> {
    let Json(request) = body?;
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

async fn signed_in(platform: &Platform, headers: &HeaderMap) -> Result<SignedIn, Error> {
    let token = presented_token(headers).ok_or(platform::Error::NotSignedIn)?;
    Ok(platform
        .auth
        .session(&token, platform::now())
        .await?
        .ok_or(platform::Error::NotSignedIn)?)
}

async fn session(
    State(platform): State<Platform>,
    headers: HeaderMap,
) -> Result<Json<SignedIn>, Error> {
    Ok(Json(signed_in(&platform, &headers).await?))
}

async fn sign_out(State(platform): State<Platform>, headers: HeaderMap) -> Result<Response, Error> {
    if let Some(token) = presented_token(&headers) {
        platform.auth.end_session(&token).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, platform.auth.clearing_cookie())],
    )
        .into_response())
}

async fn network_summary(State(platform): State<Platform>) -> Result<Json<NetworkSummary>, Error> {
    Ok(Json(platform.fleet.network_summary().await?))
}

/// The caller's devices, filtered and sorted by `?status=&model=&tier=&sort=` as in the
/// Worker tab, and the devices still waiting for their agent.
async fn my_devices(
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

async fn add_device(
    State(platform): State<Platform>,
    headers: HeaderMap,
    body: Result<Json<NewDevice>, JsonRejection>,
) -> Result<(StatusCode, Json<RegistrationTicket>), Error> {
    let session = signed_in(&platform, &headers).await?;
    let Json(form) = body?;
    let ticket = platform
        .worker
        .add_device(&session.wallet, form, platform::now())
        .await?;
    Ok((StatusCode::CREATED, Json(ticket)))
}

async fn device_detail(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameRequest {
    name: String,
}

#[derive(serde::Serialize)]
struct Renamed {
    name: String,
}

async fn rename_device(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<RenameRequest>, JsonRejection>,
) -> Result<Json<Renamed>, Error> {
    let session = signed_in(&platform, &headers).await?;
    let Json(request) = body?;
    let name = platform
        .worker
        .rename(&session.wallet, &id, &request.name)
        .await?;
    Ok(Json(Renamed { name }))
}

#[derive(serde::Serialize)]
struct ActionOutcome {
    outcome: String,
}

/// `pause`, `resume`, `remove` or `revoke-credential`.
async fn device_action(
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
