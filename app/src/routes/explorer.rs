//! `/explorer`: the public view of the network's real supply.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::supply::{CountryTable, ErrorNote, ModelSupplyTable, TotalsGrid};
use crate::functions::network::load_network_summary;

#[component]
pub fn ExplorerPage() -> impl IntoView {
    let summary = Resource::new(|| (), |_| load_network_summary());
    view! {
        <Title text="Explorer" />
        <section class="hero">
            <h1>"Network explorer"</h1>
            <p class="lede">
                "Live supply of the GPU Commons network. Only verified devices count as available; simulated demo devices are included in a demo install."
            </p>
        </section>
        <Suspense fallback=|| view! { <p class="muted">"Loading the network…"</p> }>
            {move || summary.get().map(|result| match result {
                Ok(s) => view! {
                    <TotalsGrid totals=s.totals />
                    <div class="columns">
                        <section class="panel">
                            <h2>"Supply by GPU model"</h2>
                            <ModelSupplyTable models=s.by_model />
                        </section>
                        <section class="panel">
                            <h2>"Supply by country"</h2>
                            <CountryTable countries=s.by_country limit=15 />
                        </section>
                    </div>
                }.into_any(),
                Err(error) => view! { <ErrorNote error /> }.into_any(),
            })}
        </Suspense>
    }
}
