//! `/explorer/clusters`: the network's clusters, newest first, by status; and
//! `/explorer/clusters/:id`: what one hired and which devices served it. Never who rented it,
//! what they called it or what it runs.

use domain::cluster::ClusterStatus;
use domain::explorer::{list_path, PublicCluster, PublicClusterDetail};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::{when, ExplorerNav, LoadError, NameFilter, Pager};
use crate::functions::explorer::{load_public_cluster, load_public_clusters};

const LIST: &str = "/explorer/clusters";

#[component]
pub fn PublicClustersPage() -> impl IntoView {
    let query = use_query_map();
    let status = move || query.read().get("status").unwrap_or_default();
    let after = move || query.read().get("after").unwrap_or_default();
    let page = Resource::new(
        move || (status(), after()),
        |(status, after)| load_public_clusters(status, after),
    );
    view! {
        <Title text="Clusters · Explorer" />
        <ExplorerNav />
        <section class="hero">
            <h1>"Clusters"</h1>
            <p class="lede">"Clusters hired on the network, newest first: what they hired, where, and for how long."</p>
        </section>
        <section class="panel">
            <form class="filters" method="get" action=LIST>
                <NameFilter label="Status" name="status" testid="cluster-filter-status"
                    names=ClusterStatus::ALL.iter().map(|s| s.as_str()).collect()
                    current=Signal::derive(status) />
                <button class="btn" type="submit">"Show"</button>
            </form>
            <Suspense fallback=|| view! { <p class="muted">"Loading clusters…"</p> }>
                {move || page.get().map(|result| match result {
                    Ok(page) => {
                        let filter: Vec<(&str, String)> = Some(status()).filter(|s| !s.is_empty()).map(|s| ("status", s)).into_iter().collect();
                        let next = page.next.clone().map(|id| {
                            let mut pairs = filter.clone();
                            pairs.push(("after", id));
                            list_path(LIST, &pairs)
                        });
                        let first = (!after().is_empty()).then(|| list_path(LIST, &filter));
                        view! {
                            <p class="muted">{format!("{} clusters.", page.matching)}</p>
                            <ClusterList clusters=page.rows />
                            <Pager first previous=None next last=None />
                        }.into_any()
                    }
                    Err(error) => view! { <LoadError error /> }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn ClusterList(clusters: Vec<PublicCluster>) -> impl IntoView {
    if clusters.is_empty() {
        return view! { <p class="empty">"No clusters here yet."</p> }.into_any();
    }
    view! {
        <div class="table-wrap">
            <table class="data" data-testid="public-cluster-list">
                <thead><tr>
                    <th>"Cluster"</th><th>"Kind"</th><th>"Hardware"</th><th>"Where"</th>
                    <th>"Status"</th><th class="num">"Hours"</th><th class="num">"Compute hours"</th><th>"Created"</th>
                </tr></thead>
                <tbody>
                    {clusters.into_iter().map(|c| view! {
                        <tr data-testid="public-cluster-row">
                            <td><a href=format!("/explorer/clusters/{}", c.id)>{c.id.clone()}</a></td>
                            <td>{c.kind.as_str()}</td>
                            <td>{format!("{} × {}", c.units, c.hardware)}</td>
                            <td>{if c.countries.is_empty() { "anywhere".to_owned() } else { c.countries.join(", ") }}</td>
                            <td><span class=format!("status status-{}", c.status.as_str())>{c.status.as_str()}</span></td>
                            <td class="num">{c.hours}</td>
                            <td class="num">{c.compute_hours}</td>
                            <td>{when(c.created_at.0)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

#[component]
pub fn PublicClusterPage() -> impl IntoView {
    let params = use_params_map();
    let cluster = Resource::new(
        move || params.read().get("id").unwrap_or_default(),
        load_public_cluster,
    );
    view! {
        <Title text="Cluster · Explorer" />
        <ExplorerNav />
        <Suspense fallback=|| view! { <p class="muted">"Loading the cluster…"</p> }>
            {move || cluster.get().map(|result| match result {
                Ok(detail) => view! { <ClusterView detail /> }.into_any(),
                Err(error) => view! { <LoadError error /> }.into_any(),
            })}
        </Suspense>
    }
}

#[component]
fn ClusterView(detail: PublicClusterDetail) -> impl IntoView {
    let c = detail.cluster;
    let time =
        |at: Option<domain::time::UnixMillis>| at.map_or_else(|| "—".to_owned(), |t| when(t.0));
    view! {
        <section class="hero">
            <p class="muted"><a href=LIST>"← All clusters"</a></p>
            <h1 data-testid="public-cluster-id">{c.id.clone()}</h1>
            <p class="lede">
                <span class=format!("status status-{}", c.status.as_str()) data-testid="public-cluster-status">{c.status.as_str()}</span>
                " — " {format!("{} cluster, {}", c.kind.as_str(), c.purpose.as_str())}
            </p>
        </section>
        <section class="panel">
            <dl class="facts">
                <dt>"Hardware"</dt><dd data-testid="public-cluster-hardware">{format!("{} × {}", c.units, c.hardware)}</dd>
                <dt>"Where"</dt><dd>{if c.countries.is_empty() { "anywhere".to_owned() } else { c.countries.join(", ") }}</dd>
                <dt>"Paid hours"</dt><dd>{c.hours}</dd>
                <dt>"Compute hours served"</dt><dd data-testid="public-cluster-compute-hours">{c.compute_hours}</dd>
                <dt>"Rate"</dt><dd>{format!("{} per unit-hour", c.rate_per_unit_hour)}</dd>
                <dt>"Created"</dt><dd>{when(c.created_at.0)}</dd>
                <dt>"Running since"</dt><dd>{time(c.running_at)}</dd>
                <dt>"Ends"</dt><dd>{time(c.finished_at.or(c.ends_at))}</dd>
            </dl>
        </section>
        <section class="panel">
            <h2>"Devices"</h2>
            <table class="data" data-testid="public-cluster-devices">
                <thead><tr><th>"Device"</th><th>"Role"</th><th class="num">"Units"</th><th>"Country"</th><th>"Joined"</th><th>"Left"</th></tr></thead>
                <tbody>
                    {detail.devices.into_iter().map(|d| view! {
                        <tr>
                            <td><a href=format!("/explorer/devices/{}", d.device_id)>{d.device_id.clone()}</a></td>
                            <td>{d.role.as_str()}</td>
                            <td class="num">{d.units}</td>
                            <td>{d.country.clone()}</td>
                            <td>{when(d.joined_at.0)}</td>
                            <td>{time(d.left_at)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}
