//! `/worker/earnings`: what the provider's devices earned: claimable balances, daily hire
//! earnings and block rewards (charts drawn on the server), earnings per cluster, each
//! device's line in the recent blocks, and every movement with a search.

use domain::cluster::HireEarning;
use domain::ledger::StatementLine;
use domain::rewards::{DeviceBlockReward, ProviderEarnings};
use domain::time::UnixMillis;
use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::supply::ErrorNote;
use crate::errors::AppError;
use crate::functions::money::{load_earnings, EarningsWithCharts};
use crate::routes::cloud::StatementTable;
use crate::routes::set_page_status;

#[component]
pub fn EarningsPage() -> impl IntoView {
    let earnings = Resource::new(|| (), |_| load_earnings());
    view! {
        <Title text="Earnings" />
        <section class="hero">
            <h1>"Earnings"</h1>
            <p class="lede">"Hire earnings are settled every hour a device serves a cluster (less the 0.25% fee); block rewards are paid every hour to verified devices online 5 hours in a row."</p>
        </section>
        <Transition fallback=|| view! { <p class="muted">"Loading your earnings…"</p> }>
            {move || earnings.get().map(|result| match result {
                Ok(e) => view! { <EarningsView e /> }.into_any(),
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
fn EarningsView(e: EarningsWithCharts) -> impl IntoView {
    let EarningsWithCharts {
        earnings,
        hire_chart,
        rewards_chart,
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
