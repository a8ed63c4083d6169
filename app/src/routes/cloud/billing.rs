//! `/cloud/billing`: the renter's balances, deposits from the connected wallet (the server builds
//! the transfer, the wallet signs it, the balance is credited once it is confirmed on chain),
//! and every movement of their money (deposits, credits, charges with their fees, refunds),
//! each with its cluster and time, with a CSV export.

use domain::ledger::{MovementKind, StatementLine};
use domain::money::Asset;
use domain::payout::{Deposit, DepositStatus};
use domain::time::UnixMillis;
use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::live::{refresh_live_parts, LiveRefresh};
use crate::components::session::use_session;
use crate::functions::money::{load_billing, prepare_deposit, submit_deposit, BillingWithDeposits};
use crate::routes::PageError;

/// How often the page re-reads while a deposit is on its way, in milliseconds.
const REFRESH_MS: u32 = 2_000;

#[component]
pub fn BillingPage() -> impl IntoView {
    let session = use_session();
    view! {
        <Title text="Billing" />
        <section class="hero">
            <h1>"Billing"</h1>
            <p class="lede">"Your balance and every movement of it. Clusters are paid from the balance; what a cluster does not use comes back to it."</p>
        </section>
        <Suspense fallback=|| view! { <p class="muted">"Loading your billing…"</p> }>
            {move || Suspend::new(async move {
                let wallet = session.signed_in().await.map(|s| s.wallet.to_string());
                match load_billing().await {
                    Ok(BillingWithDeposits { billing: b, deposits, deposits_enabled }) => view! {
                        {wallet.map(|wallet| view! {
                            <section class="panel"><DepositForm wallet /></section>
                        })}
                        // Re-read from the server while a deposit is on its way.
                        <section class="panel" data-live="billing">
                            <div class="stats">
                                <div class="stat"><span class="stat-label">"USDC balance"</span>
                                    <strong data-testid="billing-balance">{b.available.to_string()}</strong></div>
                                <div class="stat"><span class="stat-label">"Token balance"</span>
                                    <strong data-testid="billing-tokens">{b.available_tokens.to_string()}</strong></div>
                            </div>
                            {(!deposits_enabled).then(|| view! {
                                <p class="notice" data-testid="deposits-off">"This server runs without a treasury, so it takes no deposits."</p>
                            })}
                            <DepositTable deposits />
                            <div class="panel-head">
                                <h2>"Movements"</h2>
                                <a class="btn" href="/api/v1/cloud/billing.csv" download="billing.csv" data-testid="billing-csv">"Export CSV"</a>
                            </div>
                            <StatementTable lines=b.lines link_clusters=true />
                        </section>
                        <LiveRefresh every_ms=REFRESH_MS while_present=OPEN_DEPOSIT.to_owned() />
                    }
                    .into_any(),
                    Err(error) => view! { <PageError error /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// Marks a deposit still on its way (the page keeps re-reading while one shows).
const OPEN_DEPOSIT: &str = "[data-open-deposit]";

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

/// A deposit from the connected wallet: the server builds the transfer, the wallet signs it,
/// the server sends it; the table below shows it until it is credited.
#[island]
fn DepositForm(wallet: String) -> impl IntoView {
    let asset = RwSignal::new(Asset::Usdc);
    let amount = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let outcome = RwSignal::new(None::<Result<String, String>>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let wallet = wallet.clone();
        let (asset, amount) = (asset.get_untracked(), amount.get_untracked());
        busy.set(true);
        leptos::task::spawn_local(async move {
            let result = deposit(wallet, asset, amount).await;
            if result.is_ok() {
                refresh_live_parts();
            }
            outcome.set(Some(result));
            busy.set(false);
        });
    };
    view! {
        <form class="claim" on:submit=submit data-testid="deposit-form">
            <label>"Deposit "
                <select data-testid="deposit-asset" on:change=move |ev| {
                    asset.set(if event_target_value(&ev) == "token" { Asset::Token } else { Asset::Usdc });
                }>
                    <option value="usdc">"USDC"</option>
                    <option value="token">"GCT"</option>
                </select>
            </label>
            <input aria-label="Amount to deposit" placeholder="amount" inputmode="decimal" data-testid="deposit-amount"
                prop:value=move || amount.get() on:input=move |ev| amount.set(event_target_value(&ev)) />
            <button type="submit" class="btn btn-primary" data-testid="deposit-submit" disabled=move || busy.get()>
                {move || if busy.get() { "Check your wallet…" } else { "Deposit from my wallet" }}
            </button>
        </form>
        {move || outcome.get().map(|o| match o {
            Ok(text) => view! { <p class="ok" data-testid="deposit-outcome">{text}</p> }.into_any(),
            Err(text) => view! { <p class="error" data-testid="deposit-error">{text}</p> }.into_any(),
        })}
    }
}

/// Prepares, signs (in the wallet) and submits one deposit; says what happened.
async fn deposit(wallet: String, asset: Asset, amount: String) -> Result<String, String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let to_sign = prepare_deposit(asset.as_str().to_owned(), amount)
        .await
        .map_err(|e| e.to_string())?;
    let unsigned = b64
        .decode(&to_sign.transaction)
        .map_err(|e| format!("the server's transaction is not base64: {e}"))?;
    let signed =
        crate::components::wallet::sign_transaction(&wallet, &to_sign.chain, &unsigned).await?;
    let sent = submit_deposit(to_sign.deposit.id, b64.encode(signed))
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "deposit of {} sent; it is credited once it lands",
        asset.show(sent.amount)
    ))
}

#[component]
fn DepositTable(deposits: Vec<Deposit>) -> impl IntoView {
    (!deposits.is_empty()).then(|| view! {
        <table class="table" data-testid="deposits">
            <thead><tr><th>"Started (UTC)"</th><th class="num">"Amount"</th><th>"Status"</th></tr></thead>
            <tbody>
                {deposits.into_iter().map(|d| view! {
                    <tr data-testid="deposit-row" data-open-deposit=matches!(d.status, DepositStatus::AwaitingSignature | DepositStatus::Submitted).then_some("")>
                        <td>{UnixMillis(d.created_at).to_rfc3339()}</td>
                        <td class="num">{d.asset.show(d.amount)}</td>
                        <td><span class=format!("status status-{}", d.status.as_str()) data-testid="deposit-status">{d.status.as_str()}</span>
                            " " <span class="muted">{d.status_reason}</span></td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    })
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
