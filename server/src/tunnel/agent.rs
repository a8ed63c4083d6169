//! The agent's side of tunnels (`/api/agent/v1/tunnel/…`): its long poll for orders, and the
//! streams it opens for them: an HTTP upgrade per order, or the reason it could not connect.

use std::time::Duration;

use axum::extract::{Path, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use domain::tunnel::{OrderWait, TunnelOrders, MAX_ORDER_WAIT_SECS, STREAM_PROTOCOL};
use platform::Platform;
use serde::Deserialize;

use super::TunnelHub;
use crate::agent_api::Device;
use crate::api_input::ApiJson;
use crate::error::Error;

pub fn routes() -> Router<Platform> {
    Router::new()
        .route("/tunnel/orders", post(wait_for_orders))
        .route("/tunnel/streams/{stream}", get(open_stream))
        .route("/tunnel/streams/{stream}/refused", post(refuse_stream))
}

async fn wait_for_orders(
    Extension(hub): Extension<TunnelHub>,
    Device(device_id): Device,
    body: Result<ApiJson<OrderWait>, Error>,
) -> Result<Json<TunnelOrders>, Error> {
    let ApiJson(wait) = body?;
    let secs = wait.wait_secs.min(MAX_ORDER_WAIT_SECS);
    let orders = hub
        .wait_for_orders(&device_id, Duration::from_secs(secs.into()))
        .await;
    Ok(Json(TunnelOrders { orders }))
}

fn unknown_stream(stream: &str) -> Error {
    Error::BadRequest {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "no tunnel order '{stream}' waits for this device (given up, or not this device's)"
        ),
    }
}

/// Upgrades the agent's connection into the stream of order `stream` and hands it to the
/// renter's connection waiting for it.
async fn open_stream(
    Extension(hub): Extension<TunnelHub>,
    Device(device_id): Device,
    Path(stream): Path<String>,
    mut request: Request,
) -> Result<Response, Error> {
    let asks_upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(STREAM_PROTOCOL));
    if !asks_upgrade {
        return Err(Error::BadRequest {
            status: StatusCode::UPGRADE_REQUIRED,
            message: format!("a tunnel stream is opened with 'Upgrade: {STREAM_PROTOCOL}'"),
        });
    }
    if !hub.is_waiting(&device_id, &stream) {
        return Err(unknown_stream(&stream));
    }
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                if !hub.answer(&device_id, &stream, Ok(upgraded)) {
                    tracing::debug!(%device_id, %stream, "a tunnel stream arrived after its renter gave up");
                }
            }
            Err(e) => {
                hub.answer(
                    &device_id,
                    &stream,
                    Err(format!("the agent's stream broke: {e}")),
                );
            }
        }
    });
    Ok((
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static(STREAM_PROTOCOL)),
        ],
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Refusal {
    reason: String,
}

/// The agent could not connect the port; the renter is told why.
async fn refuse_stream(
    Extension(hub): Extension<TunnelHub>,
    Device(device_id): Device,
    Path(stream): Path<String>,
    body: Result<ApiJson<Refusal>, Error>,
) -> Result<StatusCode, Error> {
    let ApiJson(refusal) = body?;
    let reason = domain::output::cut(&refusal.reason, 300).to_owned();
    if hub.answer(&device_id, &stream, Err(reason)) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_stream(&stream))
    }
}
