//! Sign-In With Solana from the browser: ask for the message, hand back the signature, read or
//! end the session. The session token travels only in an HttpOnly cookie.

use domain::siws::SignedIn;
use leptos::prelude::*;

use crate::errors::AppError;
use crate::functions::codec::JsonAnswer;

/// The exact message the wallet must sign for `address`.
#[server(output = JsonAnswer)]
pub async fn sign_in_challenge(address: String) -> Result<String, AppError> {
    let platform = super::context::platform()?;
    Ok(platform
        .auth
        .challenge(&address, platform::now())
        .await?
        .message)
}

/// Verifies the signed message and starts a session (sets the session cookie).
#[server(output = JsonAnswer)]
pub async fn sign_in(message: String, signature: String) -> Result<SignedIn, AppError> {
    let platform = super::context::platform()?;
    let (token, signed_in) = platform
        .auth
        .sign_in(&message, &signature, platform::now())
        .await?;
    set_cookie(&platform.auth.session_cookie(&token))?;
    Ok(signed_in)
}

#[server(output = JsonAnswer)]
pub async fn current_session() -> Result<Option<SignedIn>, AppError> {
    let platform = super::context::platform()?;
    super::context::signed_in(&platform).await
}

/// Ends the session on the server (so the token is dead even if copied) and clears the cookie.
#[server(output = JsonAnswer)]
pub async fn sign_out() -> Result<(), AppError> {
    let platform = super::context::platform()?;
    if let Some(token) = super::context::presented_token().await {
        platform.auth.end_session(&token).await?;
    }
    set_cookie(&platform.auth.clearing_cookie())
}

#[cfg(feature = "ssr")]
fn set_cookie(value: &str) -> Result<(), AppError> {
    let header = http::HeaderValue::from_str(value).map_err(|_| AppError::Internal)?;
    expect_context::<leptos_axum::ResponseOptions>()
        .append_header(http::header::SET_COOKIE, header);
    Ok(())
}
