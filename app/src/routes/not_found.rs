//! The 404 page (answered with status 404).

use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn NotFound() -> impl IntoView {
    super::set_page_status(404);
    view! {
        <Title text="Page not found" />
        <section class="hero center" data-testid="not-found">
            <p class="big-code">"404"</p>
            <h1>"This page does not exist"</h1>
            <p class="lede">"The link may be old, or the address mistyped."</p>
            <p><a class="btn btn-primary" href="/explorer">"Go to the explorer"</a></p>
        </section>
    }
}
