//! The server's one error type: start-up failures and API answers. Its HTTP mapping is written
//! here once; internal causes are logged with context and never shown.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}{hint}", hint = bind_hint(source))]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Platform(#[from] platform::Error),
    /// A request the API could not read (bad JSON, wrong fields, too large).
    #[error("{message}")]
    BadRequest { status: StatusCode, message: String },
    /// A public API client asked more often than its share.
    #[error("more than {limit} requests in {window_secs} s from this address; slow down and retry in {window_secs} s")]
    RateLimited { limit: u32, window_secs: u64 },
    /// An answer that could not be written as JSON (a bug).
    #[error("cannot write the answer as JSON: {0}")]
    Encode(#[from] serde_json::Error),
    /// A tunnel that could not be opened or carried: the device's agent did not answer, the
    /// workload did not, or too many connections were opening.
    #[error("{message}")]
    Tunnel { status: StatusCode, message: String },
    /// An agent call without a bearer credential.
    #[error("this call needs the device credential as 'Authorization: Bearer <credential>'")]
    CredentialMissing,
}

fn bind_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another program uses this port; choose another with --listen)"
        }
        std::io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need privileges; choose another with --listen)"
        }
        _ => "",
    }
}

impl From<axum::extract::rejection::JsonRejection> for Error {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        Error::BadRequest {
            status: rejection.status(),
            message: rejection.body_text(),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for Error {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Error::BadRequest {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: rejection.body_text(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        use platform::Error as P;
        let (status, code, message) = match self {
            Error::BadRequest { status, message } => {
                let code = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    StatusCode::UNPROCESSABLE_ENTITY => "invalid",
                    _ => "bad_request",
                };
                (status, code, message)
            }
            Error::Tunnel { status, message } => (status, "tunnel", message),
            limited @ Error::RateLimited { window_secs, .. } => {
                let body =
                    json!({ "error": { "code": "rate_limited", "message": limited.to_string() } });
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(axum::http::header::RETRY_AFTER, window_secs.to_string())],
                    Json(body),
                )
                    .into_response();
            }
            missing @ Error::CredentialMissing => (
                StatusCode::UNAUTHORIZED,
                "credential_missing",
                missing.to_string(),
            ),
            Error::Platform(P::Invalid(message)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
            }
            Error::Platform(P::InvalidFields(fields)) => {
                let message = P::InvalidFields(fields.clone()).to_string();
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({ "error": { "code": "invalid", "message": message, "fields": fields } })),
                )
                    .into_response();
            }
            Error::Platform(P::SignInRefused(refusal)) => (
                StatusCode::UNAUTHORIZED,
                "sign_in_refused",
                refusal.to_string(),
            ),
            Error::Platform(P::NotFound(message)) => (StatusCode::NOT_FOUND, "not_found", message),
            Error::Platform(P::TooMany {
                message,
                retry_after_secs,
            }) => {
                let body = json!({ "error": { "code": "rate_limited", "message": message } });
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(
                        axum::http::header::RETRY_AFTER,
                        retry_after_secs.to_string(),
                    )],
                    Json(body),
                )
                    .into_response();
            }
            Error::Platform(P::Conflict(message)) => (StatusCode::CONFLICT, "conflict", message),
            Error::Platform(P::AgentRefused(refusal)) => {
                use platform::AgentRefusal as R;
                let status = match refusal {
                    R::TokenUnknown | R::TokenUsed | R::TokenExpired | R::CredentialRejected => {
                        StatusCode::UNAUTHORIZED
                    }
                    R::UnknownDevice(_) | R::NoSuchChallenge(_) => StatusCode::NOT_FOUND,
                    R::DeviceRemoved => StatusCode::GONE,
                    R::ClockSkew { .. } => StatusCode::BAD_REQUEST,
                    R::TooSoon(_) => StatusCode::TOO_MANY_REQUESTS,
                };
                (status, refusal.code(), refusal.to_string())
            }
            Error::Platform(P::Chain(message)) => {
                tracing::warn!(%message, "Solana call failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "chain_unavailable",
                    format!("Solana: {message}; please try again in a moment"),
                )
            }
            Error::Platform(P::NotSignedIn) => (
                StatusCode::UNAUTHORIZED,
                "not_signed_in",
                P::NotSignedIn.to_string(),
            ),
            Error::Platform(P::ApiKeyRejected) => (
                StatusCode::UNAUTHORIZED,
                "api_key_rejected",
                P::ApiKeyRejected.to_string(),
            ),
            Error::Platform(P::AccessTokenRejected) => (
                StatusCode::UNAUTHORIZED,
                "access_token_rejected",
                P::AccessTokenRejected.to_string(),
            ),
            internal => {
                tracing::error!(error = %internal, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong on our side; please try again in a moment".to_owned(),
                )
            }
        };
        (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
            .into_response()
    }
}
