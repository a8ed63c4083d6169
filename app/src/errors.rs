//! The one error type the UI's server functions return. It carries only what a user may see:
//! internal causes are logged on the server (with context) and shown as a generic message.

use leptos::server_fn::codec::JsonEncoding;
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
    #[error("something went wrong on our side; please try again in a moment")]
    Internal,
    /// The request did not reach the server or its answer could not be read.
    #[error("could not reach GPU Commons: {0}")]
    Transport(String),
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

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
            AppError::Internal | AppError::Transport(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The one mapping from service errors to what users see. It also sets the server function's
/// HTTP status (server_fn answers every error with 500 otherwise), so a refused sign-in is a
/// 401 and bad input a 422 to anything watching the wire.
#[cfg(feature = "ssr")]
impl From<platform::Error> for AppError {
    fn from(error: platform::Error) -> Self {
        let app_error = AppError::from_platform(error);
        if let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(app_error.status());
        }
        app_error
    }
}

#[cfg(feature = "ssr")]
impl AppError {
    fn from_platform(error: platform::Error) -> Self {
        use platform::Error as E;
        match error {
            E::Invalid(message) => AppError::Invalid(message),
            E::SignInRefused(refusal) => AppError::Unauthorized(refusal.to_string()),
            E::NotSignedIn => AppError::Unauthorized(E::NotSignedIn.to_string()),
            internal @ (E::Unreachable { .. } | E::Database(_) | E::Migration(_)) => {
                tracing::error!(error = %internal, "server function failed");
                AppError::Internal
            }
        }
    }
}
