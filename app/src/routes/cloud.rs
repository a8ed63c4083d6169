//! `/cloud`: the renter's console. Shows what can be rented right now and at what price.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::session::use_session;
use crate::components::supply::{ErrorNote, ModelSupplyTable};
use crate::functions::network::load_network_summary;

#[component]
pub fn CloudPage() -> impl IntoView {
    let session = use_session();
    let summary = Resource::new(|| (), |_| load_network_summary());
    view! {
        <Title text="Cloud" />
        <section class="hero">
            <h1>"Cloud"</h1>
            <p class="lede">"Rent GPU clusters by model, place and security level. You see the exact GPU model before you pay, and you get exactly that."</p>
            <Transition fallback=|| ()>
                {move || match session.signed_in() {
                    Some(s) => view! { <p class="notice" data-testid="cloud-signed-in">"Signed in as " <code>{s.wallet.short()}</code> "."</p> }.into_any(),
                    None => view! { <p class="notice">"Connect a Solana wallet to manage clusters and billing."</p> }.into_any(),
                }}
            </Transition>
        </section>
        <section class="panel">
            <h2>"Available now"</h2>
            <Suspense fallback=|| view! { <p class="muted">"Loading supply…"</p> }>
                {move || summary.get().map(|result| match result {
                    Ok(s) => {
                        let models = s.by_model.into_iter().filter(|m| m.gpus_idle > 0).collect::<Vec<_>>();
                        view! { <ModelSupplyTable models /> }.into_any()
                    }
                    Err(error) => view! { <ErrorNote error /> }.into_any(),
                })}
            </Suspense>
        </section>
    }
}
