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

use crate::components::supply::{CountryTable, ErrorNote, ModelSupplyTable, Stat, TotalsGrid};
use crate::errors::AppError;
use crate::functions::explorer::{load_explorer_front, ExplorerFront};
use crate::routes::set_page_status;

#[component]
pub fn ExplorerPage() -> impl IntoView {
    let front = Resource::new(|| (), |_| load_explorer_front());
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
            {move || front.get().map(|result| match result {
                Ok(f) => view! { <Front f /> }.into_any(),
                Err(error) => view! { <ErrorNote error /> }.into_any(),
            })}
        </Suspense>
    }
}

#[component]
fn Front(f: ExplorerFront) -> impl IntoView {
    let ExplorerFront {
        summary,
        activity,
        map,
        compute_chart,
    } = f;
    let earnings = activity.earnings.clone();
    view! {
        <TotalsGrid totals=summary.totals />
        <div class="stats" data-testid="network-earnings">
            <Stat label="Hire earnings paid to providers" value=earnings.hire_earned.to_string() />
            <Stat label="Block rewards paid" value=earnings.rewards_paid.to_string() note=format!("in {} blocks", earnings.blocks) />
        </div>
        <section class="panel">
            <h2>"Where the GPUs are"</h2>
            <div class="chart" data-testid="supply-map" inner_html=map></div>
        </section>
        <div class="columns">
            <section class="panel">
                <h2>"Supply by GPU model"</h2>
                <ModelSupplyTable models=summary.by_model />
            </section>
            <section class="panel">
                <h2>"Supply by country"</h2>
                <CountryTable countries=summary.by_country limit=15 />
            </section>
        </div>
        <section class="panel">
            <h2>"Compute hours served, last 30 days"</h2>
            <div class="chart" inner_html=compute_chart></div>
        </section>
        <div class="columns">
            <section class="panel">
                <div class="panel-head"><h2>"Recent clusters"</h2><a href="/explorer/clusters">"All clusters"</a></div>
                {if activity.recent_clusters.is_empty() {
                    view! { <p class="muted">"No clusters yet."</p> }.into_any()
                } else {
                    view! {
                        <table class="data" data-testid="recent-clusters"><tbody>
                            {activity.recent_clusters.into_iter().map(|c| view! {
                                <tr>
                                    <td><a href=format!("/explorer/clusters/{}", c.id)>{c.id.clone()}</a></td>
                                    <td>{format!("{} × {}", c.units, c.hardware)}</td>
                                    <td><span class=format!("status status-{}", c.status.as_str())>{c.status.as_str()}</span></td>
                                </tr>
                            }).collect_view()}
                        </tbody></table>
                    }.into_any()
                }}
            </section>
            <section class="panel">
                <div class="panel-head"><h2>"Trending devices"</h2><a href="/explorer/blocks">"Blocks"</a></div>
                {match activity.trending.first().map(|l| l.block) {
                    None => view! { <p class="muted">"No device rewarded yet."</p> }.into_any(),
                    Some(block) => view! {
                        <p class="muted">{format!("Most rewarded in block {block}.")}</p>
                        <table class="data" data-testid="trending-devices"><tbody>
                            {activity.trending.into_iter().map(|l| view! {
                                <tr>
                                    <td><a href=format!("/explorer/devices/{}", l.device_id)>{l.device_id.clone()}</a></td>
                                    <td class="num">{l.reward.to_string()}</td>
                                </tr>
                            }).collect_view()}
                        </tbody></table>
                    }.into_any(),
                }}
            </section>
        </div>
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
            // The query as the box's initial value (an attribute, not the live property), so
            // hydration never clears what someone typed before the WASM arrived.
            <form class="search" method="get" action="/explorer/search" role="search">
                <input type="search" name="q" aria-label="Search the explorer" data-testid="explorer-search"
                    placeholder="device id, cluster id, block or wallet" value=q />
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

/// One select of a filter form: "any" and one option per name, `current` selected.
#[component]
fn NameFilter(
    label: &'static str,
    name: &'static str,
    testid: &'static str,
    names: Vec<&'static str>,
    #[prop(into)] current: Signal<String>,
) -> impl IntoView {
    view! {
        <label>{label} " "
            <select name=name data-testid=testid>
                <option value="">"any"</option>
                {names.into_iter().map(|n| view! {
                    <option value=n selected=move || current.get() == n>{n}</option>
                }).collect_view()}
            </select>
        </label>
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
