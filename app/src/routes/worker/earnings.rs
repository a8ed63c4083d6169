//! `/worker/earnings`: what the provider's devices earned: claimable balances with the claim to
//! the wallet and its payouts, daily hire earnings and block rewards (charts drawn on the
//! server), earnings per cluster, each device's line in the recent blocks, and every movement
//! with a search.

use domain::cluster::HireEarning;
use domain::ledger::StatementLine;
use domain::money::Asset;
use domain::payout::Payout;
use domain::rewards::{DeviceBlockReward, ProviderEarnings};
use domain::time::UnixMillis;
use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::supply::ErrorNote;
use crate::errors::AppError;
use crate::functions::money::{claim_payout, load_earnings, EarningsWithCharts};
use crate::routes::cloud::StatementTable;
use crate::routes::{new_idempotency_key, set_page_status};

#[component]
pub fn EarningsPage() -> impl IntoView {
    view! {
        <Title text="Earnings" />
        <section class="hero">
            <h1>"Earnings"</h1>
            <p class="lede">"Hire earnings are settled every hour a device serves a cluster (less the 0.25% fee); block rewards are paid every hour to verified devices online 5 hours in a row."</p>
        </section>
        <EarningsConsole />
    }
}

/// The earnings, read again after each claim, with the claim form and the payments search.
#[island]
fn EarningsConsole() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let earnings = Resource::new(move || version.get(), |_| load_earnings());
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading your earnings…"</p> }>
            {move || earnings.get().map(|result| match result {
                Ok(e) => view! { <EarningsView e version /> }.into_any(),
                Err(error) => {
                    if matches!(error, AppError::Unauthorized(_)) {
                        set_page_status(401);
                    }
                    view! { <section class="panel"><ErrorNote error /></section> }.into_any()
                }
            })}
        </Transition>
    }
}

#[component]
fn EarningsView(e: EarningsWithCharts, version: RwSignal<u32>) -> impl IntoView {
    let EarningsWithCharts {
        earnings,
        hire_chart,
        rewards_chart,
        payouts,
        payouts_enabled,
    } = e;
    let ProviderEarnings {
        claimable,
        claimable_tokens,
        hires,
        rewards,
        payments,
        ..
    } = earnings;
    view! {
        <section class="panel">
            <div class="stats">
                <div class="stat"><span class="stat-label">"Claimable hire earnings"</span>
                    <strong data-testid="claimable-usdc">{claimable.to_string()}</strong></div>
                <div class="stat"><span class="stat-label">"Claimable block rewards"</span>
                    <strong data-testid="claimable-tokens">{claimable_tokens.to_string()}</strong></div>
            </div>
            {if payouts_enabled {
                view! { <ClaimForm usdc=claimable.micros() tokens=claimable_tokens.units() version /> }.into_any()
            } else {
                view! { <p class="notice" data-testid="payouts-off">"This server runs without a treasury, so it cannot pay out; your balance stays claimable."</p> }.into_any()
            }}
            <PayoutTable payouts />
        </section>
        <section class="panel">
            <h2>"Daily hire earnings"</h2>
            <div class="chart" data-testid="hire-chart" inner_html=hire_chart></div>
            <h2>"Daily block rewards"</h2>
            <div class="chart" data-testid="rewards-chart" inner_html=rewards_chart></div>
        </section>
        <section class="panel">
            <h2>"Per cluster"</h2>
            <HireTable hires />
        </section>
        <section class="panel">
            <h2>"Block rewards"</h2>
            <RewardTable rewards />
        </section>
        <section class="panel">
            <h2>"Payments"</h2>
            <Payments payments />
        </section>
    }
}

#[component]
fn HireTable(hires: Vec<HireEarning>) -> impl IntoView {
    if hires.is_empty() {
        return view! { <p class="empty" data-testid="no-hires">"No device of yours has served a cluster yet."</p> }.into_any();
    }
    view! {
        <table class="table">
            <thead><tr><th>"Cluster"</th><th>"Device"</th><th>"From (UTC)"</th><th>"Until"</th><th class="num">"Earned before fee"</th></tr></thead>
            <tbody>
                {hires.into_iter().map(|h| view! {
                    <tr data-testid="hire-row">
                        <td><code>{h.cluster_id}</code></td>
                        <td><a href=format!("/worker/devices/{}", h.device_id)>{h.device_name}</a></td>
                        <td>{UnixMillis(h.joined_at).to_rfc3339()}</td>
                        <td>{h.left_at.map_or_else(|| "serving".to_owned(), |t| UnixMillis(t).to_rfc3339())}</td>
                        <td class="num">{h.earned.to_string()}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
fn RewardTable(rewards: Vec<DeviceBlockReward>) -> impl IntoView {
    if rewards.is_empty() {
        return view! { <p class="empty" data-testid="no-rewards">"No block has scored your devices yet. Blocks close every hour."</p> }.into_any();
    }
    view! {
        <table class="table">
            <thead><tr><th>"Block"</th><th>"Device"</th><th class="num">"Share of its pool"</th><th class="num">"Reward"</th></tr></thead>
            <tbody>
                {rewards.into_iter().map(|r| view! {
                    <tr data-testid="reward-row">
                        <td>{r.block_number}</td>
                        <td><a href=format!("/worker/devices/{}", r.device_id)>{r.device_name}</a></td>
                        <td class="num">{format!("{}.{:04}%", r.share_ppm / 10_000, r.share_ppm % 10_000)}</td>
                        <td class="num">{match r.ineligible {
                            Some(why) => view! { <span class="muted">{format!("none: {why}")}</span> }.into_any(),
                            None => r.reward.to_string().into_any(),
                        }}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// The movements, filtered in place by what the search box holds (kind, cluster or text).
#[component]
fn Payments(payments: Vec<StatementLine>) -> impl IntoView {
    let search = RwSignal::new(String::new());
    let shown = move || {
        let needle = search.get().to_lowercase();
        payments
            .iter()
            .filter(|l| {
                needle.is_empty()
                    || l.memo.to_lowercase().contains(&needle)
                    || l.kind.as_str().contains(&needle)
                    || l.cluster_id.as_deref().is_some_and(|c| c.contains(&needle))
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    view! {
        <div class="filters">
            <label>"Search "
                <input type="search" placeholder="cluster, kind or text" data-testid="payments-search"
                    prop:value=move || search.get() on:input=move |ev| search.set(event_target_value(&ev)) />
            </label>
        </div>
        {move || view! { <StatementTable lines=shown() /> }}
    }
}

/// The claim: asset, amount (typed, or a share of what is claimable), one click pays once.
#[component]
fn ClaimForm(usdc: i64, tokens: i64, version: RwSignal<u32>) -> impl IntoView {
    let asset = RwSignal::new(Asset::Usdc);
    let amount = RwSignal::new(String::new());
    let outcome = RwSignal::new(None::<Result<String, String>>);
    let key = StoredValue::new(String::new());
    let claiming = RwSignal::new(false);
    let claimable = move || match asset.get() {
        Asset::Usdc => usdc,
        Asset::Token => tokens,
    };
    // Presets fill the field with an exact decimal of the chosen share.
    let preset = move |percent: i64| {
        let units = claimable() * percent / 100;
        amount.set(format!("{}.{:06}", units / 1_000_000, units % 1_000_000));
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if key.with_value(String::is_empty) {
            key.set_value(new_idempotency_key());
        }
        let (asset, amount_text, idempotency_key) = (
            asset.get_untracked(),
            amount.get_untracked(),
            key.get_value(),
        );
        claiming.set(true);
        leptos::task::spawn_local(async move {
            let result =
                claim_payout(asset.as_str().to_owned(), amount_text, idempotency_key).await;
            if result.is_ok() {
                // The next claim is a new one.
                key.set_value(String::new());
                version.update(|v| *v += 1);
            }
            outcome.set(Some(
                result
                    .map(|p| format!("claimed {}: {}", asset.show(p.amount), p.status_reason))
                    .map_err(|e| e.to_string()),
            ));
            claiming.set(false);
        });
    };
    view! {
        <form class="claim" on:submit=submit data-testid="claim-form">
            <label>"Claim "
                <select data-testid="claim-asset" on:change=move |ev| {
                    asset.set(if event_target_value(&ev) == "token" { Asset::Token } else { Asset::Usdc });
                    key.set_value(String::new());
                }>
                    <option value="usdc">"USDC (hire earnings)"</option>
                    <option value="token">"GCT (block rewards)"</option>
                </select>
            </label>
            <input aria-label="Amount to claim" placeholder="amount" inputmode="decimal" data-testid="claim-amount"
                prop:value=move || amount.get() on:input=move |ev| {
                    amount.set(event_target_value(&ev));
                    key.set_value(String::new());
                } />
            <button type="button" class="btn" data-testid="claim-half" on:click=move |_| preset(50)>"50%"</button>
            <button type="button" class="btn" data-testid="claim-all" on:click=move |_| preset(100)>"All"</button>
            <button type="submit" class="btn btn-primary" data-testid="claim-submit" disabled=move || claiming.get()>"Claim to my wallet"</button>
        </form>
        {move || outcome.get().map(|o| match o {
            Ok(text) => view! { <p class="ok" data-testid="claim-outcome">{text}</p> }.into_any(),
            Err(text) => view! { <p class="error" data-testid="claim-error">{text}</p> }.into_any(),
        })}
    }
}

#[component]
fn PayoutTable(payouts: Vec<Payout>) -> impl IntoView {
    (!payouts.is_empty()).then(|| view! {
        <table class="table" data-testid="payouts">
            <thead><tr><th>"Requested (UTC)"</th><th class="num">"Amount"</th><th>"Status"</th><th>"Transaction"</th></tr></thead>
            <tbody>
                {payouts.into_iter().map(|p| view! {
                    <tr data-testid="payout-row">
                        <td>{UnixMillis(p.requested_at).to_rfc3339()}</td>
                        <td class="num">{p.asset.show(p.amount)}</td>
                        <td><span class=format!("status status-{}", p.status.as_str()) data-testid="payout-status">{p.status.as_str()}</span>
                            " " <span class="muted">{p.status_reason}</span></td>
                        <td>{p.explorer_url.map(|url| view! {
                            <a href=url target="_blank" rel="noopener" data-testid="payout-link">"view on the explorer"</a>
                        })}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    })
}
