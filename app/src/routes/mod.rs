//! One module per page or page group.

pub mod cloud;
pub mod error;
pub mod explorer;
pub mod not_found;
pub mod worker;

/// Sets the HTTP status of the page being rendered on the server; in the browser it does nothing.
fn set_page_status(status: u16) {
    #[cfg(feature = "ssr")]
    if let (Some(response), Ok(code)) = (
        leptos::prelude::use_context::<leptos_axum::ResponseOptions>(),
        http::StatusCode::from_u16(status),
    ) {
        response.set_status(code);
    }
    #[cfg(not(feature = "ssr"))]
    let _ = status;
}

/// A page whose main read failed: the error in a panel, and the HTTP status that says why
/// (404 for an unknown id, 401 before sign-in).
#[leptos::component]
pub(crate) fn PageError(error: crate::errors::AppError) -> impl leptos::IntoView {
    use crate::errors::AppError;
    use leptos::prelude::*;
    match &error {
        AppError::NotFound(_) => set_page_status(404),
        AppError::Unauthorized(_) => set_page_status(401),
        _ => {}
    }
    view! { <section class="panel"><crate::components::supply::ErrorNote error /></section> }
}

/// A key the browser makes once per filled-in form (a deploy, a claim): a double click or a
/// retry of the same request counts once.
pub(crate) fn new_idempotency_key() -> String {
    #[cfg(feature = "hydrate")]
    {
        format!(
            "web-{}-{:016x}",
            js_sys::Date::now() as u64,
            (js_sys::Math::random() * u64::MAX as f64) as u64
        )
    }
    #[cfg(not(feature = "hydrate"))]
    {
        String::new()
    }
}

/// Opens the page at `path` in the browser (islands cannot route: pages come from the server).
pub(crate) fn go_to(path: &str) {
    #[cfg(feature = "hydrate")]
    {
        let _ = leptos::prelude::window().location().set_href(path);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = path;
}

/// Loads the page again from the server (after a sign-in or sign-out).
pub(crate) fn reload_page() {
    #[cfg(feature = "hydrate")]
    {
        let _ = leptos::prelude::window().location().reload();
    }
}
