//! `/explorer/search?q=…`: the server sends an exact device, cluster, block or wallet straight
//! to its page before this renders (see the server's search redirect); what reaches this page
//! found nothing, and gets suggestions.

use domain::explorer::SearchOutcome;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::{ExplorerNav, LoadError};
use crate::functions::explorer::explorer_search;

#[component]
pub fn SearchPage() -> impl IntoView {
    let query = use_query_map();
    let q = move || query.read().get("q").unwrap_or_default();
    let outcome = Resource::new(q, explorer_search);
    view! {
        <Title text="Search · Explorer" />
        <ExplorerNav />
        <Suspense fallback=|| view! { <p class="muted">"Searching…"</p> }>
            {move || outcome.get().map(|result| match result {
                // Reached only by a link inside the app; the server redirects a typed search.
                Ok(SearchOutcome::Found(path)) => view! {
                    <section class="panel"><p>"Found: " <a href=path.clone() data-testid="search-found">{path.clone()}</a></p></section>
                }.into_any(),
                Ok(SearchOutcome::NotFound { query, suggestions }) => view! {
                    <section class="panel" data-testid="search-nothing">
                        <h1>"Nothing found"</h1>
                        <p>{if query.is_empty() {
                            "Type a device id (dev-…), a cluster id (cl-…), a block number or a wallet address.".to_owned()
                        } else {
                            format!("No device, cluster, block or provider is '{query}'. Perhaps one of these:")
                        }}</p>
                        <ul class="suggestions">
                            {suggestions.into_iter().map(|s| view! {
                                <li><a href=s.path data-testid="search-suggestion">{s.label}</a></li>
                            }).collect_view()}
                        </ul>
                    </section>
                }.into_any(),
                Err(error) => view! { <LoadError error /> }.into_any(),
            })}
        </Suspense>
    }
}
