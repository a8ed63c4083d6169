//! `/explorer`: the public view of the network's real supply, and its device, cluster, block,
//! provider and search pages. Every page works without JavaScript: filters are GET forms and
//! pages are links, so the server renders each whole.

mod blocks;
mod clusters;
mod devices;
mod search;
mod wallet;

pub use blocks::{BlockPage, BlocksPage};
pub use clusters::{PublicClusterPage, PublicClustersPage};
pub use devices::{FleetPage, PublicDevicePage};
pub use search::SearchPage;
pub use wallet::WalletPage;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::components::supply::{CountryTable, ErrorNote, ModelSupplyTable, TotalsGrid};
use crate::errors::AppError;
use crate::functions::network::load_network_summary;
use crate::routes::set_page_status;

#[component]
pub fn ExplorerPage() -> impl IntoView {
    let summary = Resource::new(|| (), |_| load_network_summary());
    view! {
        <Title text="Explorer" />
        <ExplorerNav />
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

/// The explorer's own links and its search box, on every explorer page.
#[component]
fn ExplorerNav() -> impl IntoView {
    let query = use_query_map();
    let q = move || query.read().get("q").unwrap_or_default();
    view! {
        <nav class="explorer-nav" aria-label="Explorer">
            <a href="/explorer">"Overview"</a>
            <a href="/explorer/devices" data-testid="explorer-devices-link">"Devices"</a>
            <a href="/explorer/clusters">"Clusters"</a>
            <a href="/explorer/blocks">"Blocks"</a>
            <form class="search" method="get" action="/explorer/search" role="search">
                <input type="search" name="q" aria-label="Search the explorer" data-testid="explorer-search"
                    placeholder="device id, cluster id, block or wallet" prop:value=q />
                <button class="btn" type="submit" data-testid="explorer-search-go">"Search"</button>
            </form>
        </nav>
    }
}

/// Links to the first, previous, next and last pages of a list; a link is left out where
/// there is no such page.
#[component]
fn Pager(
    first: Option<String>,
    previous: Option<String>,
    next: Option<String>,
    last: Option<String>,
) -> impl IntoView {
    let link = |href: Option<String>, label: &'static str, testid: &'static str| {
        href.map(|href| view! { <a class="btn" href=href data-testid=testid>{label}</a> })
    };
    view! {
        <nav class="pager" aria-label="Pages">
            {link(first, "« First", "page-first")}
            {link(previous, "‹ Previous", "page-previous")}
            {link(next, "Next ›", "page-next")}
            {link(last, "Last »", "page-last")}
        </nav>
    }
}

/// A failed explorer load as the page shows it, with the matching HTTP status.
#[component]
fn LoadError(error: AppError) -> impl IntoView {
    match &error {
        AppError::NotFound(_) => set_page_status(404),
        AppError::Invalid(_) => set_page_status(422),
        _ => {}
    }
    view! { <section class="panel"><ErrorNote error /></section> }
}

/// A UTC time as text.
fn when(at: i64) -> String {
    domain::time::UnixMillis(at).to_rfc3339()
}

/// A wallet address shortened for tables (the link carries all of it).
fn short(address: &str) -> String {
    if address.len() <= 12 {
        address.to_owned()
    } else {
        format!("{}…{}", &address[..4], &address[address.len() - 4..])
    }
}
