//! `/cloud/billing`: the renter's balances and every movement of their money (credits,
//! charges with their fees, refunds), each with its cluster and time, and a CSV export.

use domain::ledger::{MovementKind, StatementLine};
use domain::time::UnixMillis;
use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::supply::ErrorNote;
use crate::errors::AppError;
use crate::functions::money::load_billing;
use crate::routes::set_page_status;

#[component]
pub fn BillingPage() -> impl IntoView {
    let billing = Resource::new(|| (), |_| load_billing());
    view! {
        <Title text="Billing" />
        <section class="hero">
            <h1>"Billing"</h1>
            <p class="lede">"Your balance and every movement of it. Clusters are paid from the balance; what a cluster does not use comes back to it."</p>
        </section>
        <section class="panel">
            <Transition fallback=|| view! { <p class="muted">"Loading your billing…"</p> }>
                {move || billing.get().map(|result| match result {
                    Ok(b) => view! {
                        <div class="stats">
                            <div class="stat"><span class="stat-label">"USDC balance"</span>
                                <strong data-testid="billing-balance">{b.available.to_string()}</strong></div>
                            <div class="stat"><span class="stat-label">"Token balance"</span>
                                <strong data-testid="billing-tokens">{b.available_tokens.to_string()}</strong></div>
                        </div>
                        <div class="panel-head">
                            <h2>"Movements"</h2>
                            <a class="btn" href="/api/v1/cloud/billing.csv" download="billing.csv" data-testid="billing-csv">"Export CSV"</a>
                        </div>
                        <StatementTable lines=b.lines link_clusters=true />
                    }.into_any(),
                    Err(error) => {
                        if matches!(error, AppError::Unauthorized(_)) {
                            set_page_status(401);
                        }
                        view! { <ErrorNote error /> }.into_any()
                    }
                })}
            </Transition>
        </section>
    }
}

/// Movements newest first: time, kind, cluster, what, amount and the fees within it. Clusters
/// link to their console page for their renter (`link_clusters`).
#[component]
pub(crate) fn StatementTable(
    lines: Vec<StatementLine>,
    #[prop(optional)] link_clusters: bool,
) -> impl IntoView {
    if lines.is_empty() {
        return view! { <p class="empty" data-testid="no-movements">"No movements yet."</p> }
            .into_any();
    }
    view! {
        <table class="table">
            <thead><tr><th>"Time (UTC)"</th><th>"Kind"</th><th>"Cluster"</th><th>"Description"</th><th class="num">"Amount"</th><th class="num">"Fees"</th></tr></thead>
            <tbody>
                {lines.into_iter().map(|l| {
                    let cluster = l.cluster_id.clone().map(|id| {
                        if link_clusters {
                            view! { <a href=format!("/cloud/clusters/{id}")>{id.clone()}</a> }.into_any()
                        } else {
                            view! { <code>{id}</code> }.into_any()
                        }
                    });
                    view! {
                        <tr data-testid="movement" data-kind=l.kind.as_str()>
                            <td>{UnixMillis(l.at_ms).to_rfc3339()}</td>
                            <td>{kind_text(l.kind)}</td>
                            <td>{cluster}</td>
                            <td>{l.memo.clone()}</td>
                            <td class="num">{l.asset.show(l.amount)}</td>
                            <td class="num">{(l.fees != 0).then(|| l.asset.show(l.fees))}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

fn kind_text(kind: MovementKind) -> &'static str {
    match kind {
        MovementKind::Charge => "charge",
        MovementKind::Refund => "refund",
        MovementKind::Credit => "credit",
        MovementKind::Earning => "hire earnings",
        MovementKind::Reward => "block reward",
        MovementKind::Payout => "payout",
        MovementKind::Deposit => "deposit",
    }
}
