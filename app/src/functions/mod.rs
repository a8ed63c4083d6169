//! Server functions, grouped by concern. Each is thin: find the platform and the caller's
//! session, call one service, map the error.

pub mod auth;
pub mod cloud;
pub mod codec;
pub mod explorer;
pub mod money;
pub mod network;
pub mod worker;

#[cfg(feature = "ssr")]
mod context {
    use domain::siws::SignedIn;
    use leptos::prelude::use_context;
    use platform::auth::SessionToken;
    use platform::Platform;

    use crate::errors::AppError;

    pub fn platform() -> Result<Platform, AppError> {
        use_context::<Platform>().ok_or_else(|| {
            tracing::error!("the Platform is missing from the server function context");
            AppError::Internal
        })
    }

    /// The session token the browser presented in its cookie, if any.
    pub async fn presented_token() -> Option<SessionToken> {
        let headers: http::HeaderMap = leptos_axum::extract().await.ok()?;
        let cookie = headers.get(http::header::COOKIE)?.to_str().ok()?;
        SessionToken::from_cookie_header(cookie)
    }

    pub async fn signed_in(platform: &Platform) -> Result<Option<SignedIn>, AppError> {
        let Some(token) = presented_token().await else {
            return Ok(None);
        };
        Ok(platform.auth.session(&token, platform::now()).await?)
    }

    /// The platform and the signed-in wallet, or the "not signed in" error.
    pub async fn signed_in_platform() -> Result<(Platform, SignedIn), AppError> {
        let platform = platform()?;
        let session = signed_in(&platform)
            .await?
            .ok_or(platform::Error::NotSignedIn)?;
        Ok((platform, session))
    }
}
