//! The one error type the UI's server functions return. It carries only what a user may see:
//! internal causes are logged on the server (with context) and shown as a generic message.

use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// The input is wrong; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// Not signed in, or the sign-in was refused; the message says why.
    #[error("{0}")]
    Unauthorized(String),
    /// Nothing by that id for this user.
    #[error("{0}")]
    NotFound(String),
    /// Refused in the thing's current state; the message says why.
    #[error("{0}")]
    Conflict(String),
    /// Asked too often; the message says when to try again.
    #[error("{0}")]
    TooMany(String),
    /// Something the request needs outside GPU Commons (Solana) did not answer; retry later.
    #[error("{0}")]
    Unavailable(String),
    #[error("something went wrong on our side; please try again in a moment")]
    Internal,
    /// The request did not reach the server or its answer could not be read.
    #[error("could not reach GPU Commons: {0}")]
    Transport(String),
}

impl FromServerFnError for AppError {
    type Encoder = crate::functions::codec::JsonText;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Transport(value.to_string())
    }
}

#[cfg(feature = "ssr")]
impl AppError {
    fn status(&self) -> http::StatusCode {
        match self {
            AppError::Invalid(_) => http::StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unauthorized(_) => http::StatusCode::UNAUTHORIZED,
            AppError::NotFound(_) => http::StatusCode::NOT_FOUND,
            AppError::Conflict(_) => http::StatusCode::CONFLICT,
            AppError::TooMany(_) => http::StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => http::StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal | AppError::Transport(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The one mapping from service errors to what users see. When the request is a call of the
/// server function itself, it also sets the HTTP status (server_fn answers every error with 500
/// otherwise), so a refused sign-in is a 401 and bad input a 422 on the wire. During a page
/// render the same functions run in-process, and their errors are shown in the page, which keeps
/// its own status.
#[cfg(feature = "ssr")]
impl From<platform::Error> for AppError {
    fn from(error: platform::Error) -> Self {
        AppError::from_platform(error).answered()
    }
}

#[cfg(feature = "ssr")]
impl AppError {
    /// Bad input a server function finds itself, before any service: a 422 on the wire like
    /// the services' own.
    pub fn invalid(message: impl Into<String>) -> AppError {
        AppError::Invalid(message.into()).answered()
    }

    /// Sets the HTTP status for this error when the request is a call of the server function.
    fn answered(self) -> AppError {
        use leptos::prelude::use_context;
        let is_server_fn_call = use_context::<http::request::Parts>()
            .is_some_and(|parts| parts.uri.path().starts_with(SERVER_FN_PREFIX));
        if let (true, Some(response)) = (
            is_server_fn_call,
            use_context::<leptos_axum::ResponseOptions>(),
        ) {
            response.set_status(self.status());
        }
        self
    }
}

/// Where server functions are mounted (server_fn's default). No page lives under it.
#[cfg(feature = "ssr")]
const SERVER_FN_PREFIX: &str = "/api/";

#[cfg(feature = "ssr")]
impl AppError {
    fn from_platform(error: platform::Error) -> Self {
        use platform::Error as E;
        match error {
            E::Invalid(message) => AppError::Invalid(message),
            // The form checks each field with the same code before sending; this is the sum.
            fields @ E::InvalidFields(_) => AppError::Invalid(fields.to_string()),
            E::SignInRefused(refusal) => AppError::Unauthorized(refusal.to_string()),
            E::NotSignedIn => AppError::Unauthorized(E::NotSignedIn.to_string()),
            E::ApiKeyRejected => AppError::Unauthorized(E::ApiKeyRejected.to_string()),
            E::AccessTokenRejected => AppError::Unauthorized(E::AccessTokenRejected.to_string()),
            E::NotFound(message) => AppError::NotFound(message),
            E::Conflict(message) => AppError::Conflict(message),
            E::TooMany { message, .. } => AppError::TooMany(message),
            E::Chain(message) => {
                AppError::Unavailable(format!("Solana: {message}; please try again in a moment"))
            }
            // Agent refusals belong to the agent API; no page calls it.
            E::AgentRefused(refusal) => AppError::Invalid(refusal.to_string()),
            internal @ (E::Unreachable { .. }
            | E::Database(_)
            | E::Migration(_)
            | E::Corrupt(_)
            | E::Task(_)) => {
                tracing::error!(error = %internal, "server function failed");
                AppError::Internal
            }
        }
    }
}
