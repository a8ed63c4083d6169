//! `/cloud`: the renter's console: balance, clusters with a status filter and search, and what
//! can be rented right now. `/cloud/deploy` is the deploy wizard, `/cloud/clusters/:id` one
//! cluster, `/cloud/billing` the movements of the balance.

mod api_keys;
mod billing;
mod cluster;
mod deploy;

pub use billing::BillingPage;
pub(crate) use billing::StatementTable;
pub use cluster::ClusterPage;
pub use deploy::DeployPage;

use domain::cluster::{ClusterStatus, ClusterSummary};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::components::live::SubmitOnChange;
use crate::components::session::use_session;
use crate::components::supply::{ErrorNote, ModelSupplyTable};
use crate::errors::AppError;
use crate::functions::cloud::{load_cloud_overview, my_api_keys};
use crate::functions::network::load_network_summary;
use api_keys::ApiKeysPanel;

#[component]
pub fn CloudPage() -> impl IntoView {
    let session = use_session();
    let query = use_query_map();
    let status = query.read_untracked().get("status").unwrap_or_default();
    let search = query.read_untracked().get("q").unwrap_or_default();
    let summary = Resource::new(|| (), |_| load_network_summary());
    view! {
        <Title text="Cloud" />
        <section class="hero">
            <h1>"Cloud"</h1>
            <p class="lede">"Rent GPU clusters by model, place and security level. You see the exact GPU model before you pay, and you get exactly that."</p>
        </section>
        <section class="panel">
            <div class="panel-head">
                <h2>"Your clusters"</h2>
                <a class="btn btn-primary" href="/cloud/deploy" data-testid="deploy-cluster">"Deploy a cluster"</a>
            </div>
            <Suspense fallback=|| view! { <p class="muted">"Loading your clusters…"</p> }>
                {
                    let (status, search) = (status.clone(), search.clone());
                    move || {
                        let (status, search) = (status.clone(), search.clone());
                        Suspend::new(async move {
                            match load_cloud_overview(status.clone(), search.clone()).await {
                                Ok(o) => view! {
                                    <p class="balance">"Balance: " <strong data-testid="balance">{o.available.to_string()}</strong>
                                        " " <a href="/cloud/billing" data-testid="billing-link">"Billing"</a></p>
                                    <ClusterTable clusters=o.clusters status search />
                                }.into_any(),
                                Err(AppError::Unauthorized(_)) => view! {
                                    <p class="notice" data-testid="cloud-sign-in">"Connect a Solana wallet to deploy clusters and see your balance."</p>
                                }.into_any(),
                                Err(error) => view! { <ErrorNote error /> }.into_any(),
                            }
                        })
                    }
                }
            </Suspense>
        </section>
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                session.signed_in().await?;
                Some(match my_api_keys().await {
                    Ok(keys) => view! { <ApiKeysPanel keys /> }.into_any(),
                    Err(error) => view! { <section class="panel"><ErrorNote error /></section> }.into_any(),
                })
            })}
        </Suspense>
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

/// When a cluster's paid time ends, or ended, as text.
pub(crate) fn time_text(at: Option<i64>) -> String {
    at.map_or_else(|| "—".into(), |t| domain::time::UnixMillis(t).to_rfc3339())
}

/// The renter's clusters with `status` (any when empty) matching `search`, under the filter.
#[component]
fn ClusterTable(clusters: Vec<ClusterSummary>, status: String, search: String) -> impl IntoView {
    view! {
        <SubmitOnChange>
            <form class="filters" method="get" action="/cloud">
                <label>"Status "
                    <select name="status" data-testid="cluster-status-filter">
                        <option value="">"any"</option>
                        {ClusterStatus::ALL.iter().map(|s| view! { <option value=s.as_str() selected=status == s.as_str()>{s.as_str()}</option> }).collect_view()}
                    </select>
                </label>
                <label>"Search "
                    <input type="search" name="q" value=search placeholder="name or id" data-testid="cluster-search" />
                </label>
                <button class="btn" type="submit" data-testid="apply-cluster-filters">"Show"</button>
            </form>
        </SubmitOnChange>
        {if clusters.is_empty() {
            view! { <p class="empty" data-testid="no-clusters">"No clusters here yet. Deploy one: you pay from your balance only once devices are hired."</p> }.into_any()
        } else {
            view! {
                <table class="table">
                    <thead><tr><th>"Name"</th><th>"Kind"</th><th>"Hardware"</th><th>"Status"</th><th>"Hours"</th><th>"Charged"</th><th>"Ends"</th></tr></thead>
                    <tbody>
                        {clusters.into_iter().map(|c| view! {
                            <tr data-testid="cluster-row">
                                <td><a href=format!("/cloud/clusters/{}", c.id)>{c.name}</a></td>
                                <td>{c.kind.as_str()}</td>
                                <td>{format!("{} × {}", c.units, c.hardware)}</td>
                                <td><span class=format!("status status-{}", c.status.as_str())>{c.status.as_str()}</span></td>
                                <td>{c.hours}</td>
                                <td>{c.charged.to_string()}</td>
                                <td>{time_text(c.finished_at.or(c.ends_at))}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        }}
    }
}
