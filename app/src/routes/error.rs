//! What a page shows when rendering fails: a plain apology, never internals (those are logged).

use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn ErrorPage() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::INTERNAL_SERVER_ERROR);
    }
    view! {
        <Title text="Something went wrong" />
        <section class="hero center" data-testid="error-page">
            <h1>"Something went wrong"</h1>
            <p class="lede">"We could not show this page. Please try again in a moment."</p>
        </section>
    }
}
