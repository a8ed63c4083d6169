//! The agent API (`/api/agent/v1/…`): what the provider agent calls. Registration takes a
//! single-use token; everything else a bearer device credential. Bodies are validated by the
//! shared `domain::agent_protocol` types, and each refusal carries a stable code.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use domain::agent_protocol::{
    AssignmentChange, AssignmentWait, Heartbeat, HeartbeatReply, RegisterRequest, Registered,
    SpeedTestResult, SpeedTestStarted, VerificationOutcome,
};
use domain::proof_of_work::Answer;
use futures_util::StreamExt;
use platform::agents::SpeedTestUpload;
use platform::Platform;

use crate::api_input::ApiJson;
use crate::error::Error;

/// Heartbeats, registrations and output shipments are small.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// A challenge answer carries every row hash of up to 16 products.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;
/// Header carrying the SHA-256 of the speed test's download with its upload.
pub const DOWNLOAD_DIGEST_HEADER: &str = "x-download-sha256";

/// The agent API; `registrations` bounds each address's registrations.
pub fn routes(registrations: crate::limiter::ClientLimiter) -> Router<Platform> {
    let register = Router::new().route("/register", post(register)).layer(
        axum::middleware::from_fn_with_state(registrations, crate::limiter::limit),
    );
    Router::new()
        .merge(register)
        .route("/heartbeat", post(heartbeat))
        .route("/assignments/wait", post(wait_for_assignment))
        .route("/output", post(ship_output))
        .route("/speed-tests", post(start_speed_test))
        .route("/speed-tests/{id}/download", get(speed_test_download))
        .route("/speed-tests/{id}/upload", post(speed_test_upload))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .merge(crate::tunnel::agent::routes())
        .merge(
            Router::new()
                .route("/challenges/{id}", post(answer_challenge))
                .layer(DefaultBodyLimit::max(MAX_ANSWER_BYTES)),
        )
}

/// The device a bearer credential belongs to, checked against the live fleet.
pub(crate) struct Device(pub(crate) String);

impl FromRequestParts<Platform> for Device {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, platform: &Platform) -> Result<Device, Error> {
        let credential = crate::api::bearer(&parts.headers).ok_or(Error::CredentialMissing)?;
        Ok(Device(
            platform
                .agents
                .authenticate(credential, platform::now())
                .await?,
        ))
    }
}

async fn register(
    State(platform): State<Platform>,
    body: Result<ApiJson<RegisterRequest>, Error>,
) -> Result<(StatusCode, Json<Registered>), Error> {
    let ApiJson(request) = body?;
    let registered = platform.agents.register(request, platform::now()).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

async fn heartbeat(
    State(platform): State<Platform>,
    Device(device_id): Device,
    // Absent only where the router is served without connection info (in-process tests).
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Result<ApiJson<Heartbeat>, Error>,
) -> Result<Json<HeartbeatReply>, Error> {
    let ApiJson(heartbeat) = body?;
    let from = peer.map(|Extension(ConnectInfo(peer))| peer.ip().to_canonical());
    let reply = platform
        .agents
        .heartbeat(&device_id, heartbeat, from, platform::now())
        .await;
    let outcome = if reply.is_ok() { "accepted" } else { "refused" };
    metrics::counter!(crate::metrics::HEARTBEATS, "outcome" => outcome).increment(1);
    Ok(Json(reply?))
}

/// The agent's long poll for new cluster work (see `AgentService::wait_for_assignment`).
async fn wait_for_assignment(
    State(platform): State<Platform>,
    Device(device_id): Device,
    body: Result<ApiJson<AssignmentWait>, Error>,
) -> Result<Json<AssignmentChange>, Error> {
    let ApiJson(wait) = body?;
    let changed = platform
        .agents
        .wait_for_assignment(&device_id, &wait)
        .await?;
    Ok(Json(AssignmentChange { changed }))
}

/// Lines the device's workload printed for a cluster that hired it (204 once stored).
async fn ship_output(
    State(platform): State<Platform>,
    Device(device_id): Device,
    body: Result<ApiJson<domain::output::OutputShipment>, Error>,
) -> Result<StatusCode, Error> {
    let ApiJson(shipment) = body?;
    platform
        .output
        .ship(&device_id, &shipment, platform::now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn answer_challenge(
    State(platform): State<Platform>,
    Device(device_id): Device,
    Path(challenge_id): Path<String>,
    body: Result<ApiJson<Answer>, Error>,
) -> Result<Json<VerificationOutcome>, Error> {
    let ApiJson(answer) = body?;
    Ok(Json(
        platform
            .agents
            .answer_challenge(&device_id, &challenge_id, answer, platform::now())
            .await?,
    ))
}

async fn start_speed_test(
    State(platform): State<Platform>,
    Device(device_id): Device,
) -> Result<(StatusCode, Json<SpeedTestStarted>), Error> {
    let started = platform
        .agents
        .start_speed_test(&device_id, platform::now())
        .await?;
    Ok((StatusCode::CREATED, Json(started)))
}

async fn speed_test_download(
    State(platform): State<Platform>,
    Device(device_id): Device,
    Path(test_id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let payload = platform.agents.speed_test_payload(&device_id, &test_id)?;
    let length = payload.len().to_string();
    // Streamed: a stalled reader holds one chunk, not the whole download.
    let body = Body::from_stream(futures_util::stream::iter(
        payload.map(Ok::<_, std::convert::Infallible>),
    ));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::CONTENT_LENGTH, length),
        ],
        body,
    ))
}

/// Times the upload as it arrives; the body is counted and dropped, never buffered whole.
async fn speed_test_upload(
    State(platform): State<Platform>,
    Device(device_id): Device,
    Path(test_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<SpeedTestResult>, Error> {
    let arrived = Instant::now();
    let digest = headers
        .get(DOWNLOAD_DIGEST_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::BadRequest {
            status: StatusCode::BAD_REQUEST,
            message: format!("the upload needs the {DOWNLOAD_DIGEST_HEADER} header"),
        })?
        .to_owned();
    let limit = platform.agents.config().speed_test_bytes;
    let mut received = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest {
            status: StatusCode::BAD_REQUEST,
            message: format!("the upload broke off: {e}"),
        })?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(Error::BadRequest {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!("the upload is larger than the {limit} bytes asked for"),
            });
        }
    }
    let upload = SpeedTestUpload {
        arrived,
        finished: Instant::now(),
        bytes: received,
    };
    Ok(Json(
        platform
            .agents
            .finish_speed_test(&device_id, &test_id, &digest, upload, platform::now())
            .await?,
    ))
}
