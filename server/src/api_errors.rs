//! The edge of every request: the text rule for paths and queries (see `api_input`), and one
//! JSON error shape under `/api`: errors that no handler wrote (an unknown path, a wrong
//! method, an oversize body, a time limit) are answered as `{"error": {"code", "message"}}`
//! like every handler's own, keeping their status and headers (`Allow` on a 405).
//!
//! The Leptos server functions live under `/api` too (`/api/<name><hash>`) and encode their
//! own errors for the browser's code to decode: of theirs only the statuses no server function
//! writes (404, 405, 413, 415) are rewritten, and their bodies are bounded here, where an
//! oversize body is a 413 rather than the server function's failure to read it.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The paths whose every error is JSON: the API's and the agents'.
fn json_api(path: &str) -> bool {
    path.starts_with("/api/v1/") || path.starts_with("/api/agent/")
}

pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    // Pages take ids and queries too (`/explorer/devices/{id}`, `?after=`): the text rule
    // holds for every path, and its refusal is JSON there as well.
    if let Err(refused) = crate::api_input::check_target(&request) {
        return refused.into_response();
    }
    let path = request.uri().path();
    if !path.starts_with("/api/") {
        return next.run(request).await;
    }
    let path = path.to_owned();
    let method = request.method().clone();
    let request = if json_api(&path) {
        request
    } else {
        match bounded(request).await {
            Ok(request) => request,
            Err(too_large) => return too_large,
        }
    };
    let response = next.run(request).await;
    let status = response.status();
    let rewritten = if json_api(&path) {
        status.is_client_error() || status.is_server_error()
    } else {
        matches!(
            status,
            StatusCode::NOT_FOUND
                | StatusCode::METHOD_NOT_ALLOWED
                | StatusCode::PAYLOAD_TOO_LARGE
                | StatusCode::UNSUPPORTED_MEDIA_TYPE
        )
    };
    if !rewritten || is_json(&response) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let (code, message) = explain(status, &method, &path, &parts.headers);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = json!({ "error": { "code": code, "message": message } }).to_string();
    Response::from_parts(parts, Body::from(body))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn explain(
    status: StatusCode,
    method: &Method,
    path: &str,
    headers: &axum::http::HeaderMap,
) -> (&'static str, String) {
    match status {
        StatusCode::NOT_FOUND => (
            "not_found",
            format!("there is no API operation at {path}; the operations are listed at /api/v1/openapi.json"),
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("another method");
            (
                "method_not_allowed",
                format!("{path} does not take {method}; it takes {allowed}"),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            format!("the body is larger than this operation takes (at most {MAX_SERVER_FUNCTION_BYTES} bytes for the console's calls)"),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as JSON, with 'Content-Type: application/json'".to_owned(),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "timeout",
            "the request took longer than the server allows; please try again".to_owned(),
        ),
        status if status.is_server_error() => (
            "internal",
            "something went wrong on our side; please try again in a moment".to_owned(),
        ),
        status => (
            "bad_request",
            status
                .canonical_reason()
                .unwrap_or("the request was refused")
                .to_owned(),
        ),
    }
}

/// The most a server function's body may hold: what the JSON API takes for the same calls.
pub(crate) const MAX_SERVER_FUNCTION_BYTES: usize = crate::api::MAX_BODY_BYTES;

/// The request with its body read, or a 413 if it holds more than a server function takes,
/// or a 422 if its text breaks the text rule.
async fn bounded(request: Request) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_SERVER_FUNCTION_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, MAX_SERVER_FUNCTION_BYTES)
        .await
        .map_err(|_| too_large())?;
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    crate::api_input::check_form_or_json(&bytes, form).map_err(IntoResponse::into_response)?;
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        axum::Json(json!({ "error": {
            "code": "payload_too_large",
            "message": format!("the body is larger than this operation takes (at most {MAX_SERVER_FUNCTION_BYTES} bytes)"),
        }})),
    )
        .into_response()
}
