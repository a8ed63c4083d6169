//! What a page shows when rendering fails: a plain apology, never internals (those are logged).

use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn ErrorPage() -> impl IntoView {
    super::set_page_status(500);
    view! {
        <Title text="Something went wrong" />
        <section class="hero center" data-testid="error-page">
            <h1>"Something went wrong"</h1>
            <p class="lede">"We could not show this page. Please try again in a moment."</p>
        </section>
    }
}
