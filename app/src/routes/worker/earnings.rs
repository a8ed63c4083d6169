//! `/worker/earnings`: what the provider's devices earned: claimable balances with the claim to
//! the wallet and its payouts, daily hire earnings and block rewards (charts drawn on the
//! server), earnings per cluster, each device's line in the recent blocks, and every movement
//! with a search.

use domain::cluster::HireEarning;
use domain::ledger::StatementLine;
use domain::money::{Asset, MicroUsd, Tokens};
use domain::payout::{Payout, PayoutStatus};
use domain::pricing;
use domain::rewards::{DeviceBlockReward, ProviderEarnings};
use domain::time::UnixMillis;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::components::live::{on_live_refreshed, refresh_live_parts, LiveRefresh};
use crate::functions::money::{claim_payout, load_earnings, EarningsWithCharts};
use crate::routes::cloud::StatementTable;
use crate::routes::{new_idempotency_key, PageError};

#[component]
pub fn EarningsPage() -> impl IntoView {
    let search = use_query_map()
        .read_untracked()
        .get("q")
        .unwrap_or_default();
    view! {
        <Title text="Earnings" />
        <section class="hero">
            <h1>"Earnings"</h1>
            <p class="lede">{format!("Hire earnings are settled every hour a device serves a cluster (less the {} fee); block rewards are paid every hour to verified devices online {} hours in a row.", pricing::percent_text(pricing::PROVIDER_FEE_BPS), domain::rewards::STREAK_HOURS)}</p>
        </section>
        <Suspense fallback=|| view! { <p class="muted">"Loading your earnings…"</p> }>
            {
                let search = search.clone();
                move || {
                    let search = search.clone();
                    Suspend::new(async move {
                        match load_earnings().await {
                            Ok(e) => view! {
                                <EarningsView e search />
                                // Re-read while a payout is on its way, and after a claim.
                                <LiveRefresh every_ms=REFRESH_MS while_present=PAYOUT_ON_ITS_WAY.to_owned() />
                            }
                            .into_any(),
                            Err(error) => view! { <PageError error /> }.into_any(),
                        }
                    })
                }
            }
        </Suspense>
    }
}

/// Everything the provider earned, as live parts re-read after a claim, around the claim form;
/// the payments narrowed to those matching `search`.
#[component]
fn EarningsView(e: EarningsWithCharts, search: String) -> impl IntoView {
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
        held_tokens,
        hired_earned,
        hired_forfeited,
        hires,
        rewards,
        payments,
        ..
    } = earnings;
    view! {
        <section class="panel">
            <div class="stats" data-live="claimable" data-claimable-usdc=claimable.micros() data-claimable-tokens=claimable_tokens.units()>
                <div class="stat"><span class="stat-label">"Claimable hire earnings"</span>
                    <strong data-testid="claimable-usdc">{claimable.to_string()}</strong></div>
                <div class="stat"><span class="stat-label">"Claimable block rewards"</span>
                    <strong data-testid="claimable-tokens">{claimable_tokens.to_string()}</strong></div>
                <div class="stat"><span class="stat-label">"Block rewards held until each device's next proof"</span>
                    <strong data-testid="held-tokens">{held_tokens.to_string()}</strong></div>
            </div>
            <p class="muted" data-testid="held-note">"A block's reward becomes claimable when its device next passes a proof of its hardware (at a random time within 6 hours, spot checks included while hired); a failed or missed proof forfeits every reward held since the last one."</p>
            {if payouts_enabled {
                view! { <ClaimForm usdc=claimable.micros() tokens=claimable_tokens.units() /> }.into_any()
            } else {
                view! { <p class="notice" data-testid="payouts-off">"This server runs without a treasury, so it cannot pay out; your balance stays claimable."</p> }.into_any()
            }}
            <div data-live="payouts"><PayoutTable payouts /></div>
        </section>
        <div data-live="earnings">
        <section class="panel">
            <h2>"Daily hire earnings"</h2>
            <div class="chart" data-testid="hire-chart" inner_html=hire_chart></div>
            <h2>"Daily block rewards"</h2>
            <div class="chart" data-testid="rewards-chart" inner_html=rewards_chart></div>
        </section>
        <section class="panel">
            <h2>"Per cluster"</h2>
            <div class="stats">
                <div class="stat"><span class="stat-label">{format!("Earned from hires, all time (before the {} fee)", pricing::percent_text(pricing::PROVIDER_FEE_BPS))}</span>
                    <strong data-testid="hired-earned">{hired_earned.to_string()}</strong></div>
                <div class="stat"><span class="stat-label">"Forfeited: devices down or failed while hired"</span>
                    <strong data-testid="hired-forfeited">{hired_forfeited.to_string()}</strong></div>
            </div>
            <HireTable hires />
        </section>
        <section class="panel">
            <h2>"Block rewards"</h2>
            <RewardTable rewards />
        </section>
        <section class="panel">
            <h2>"Payments"</h2>
            <Payments payments search />
        </section>
        </div>
    }
}

#[component]
fn HireTable(hires: Vec<HireEarning>) -> impl IntoView {
    if hires.is_empty() {
        return view! { <p class="empty" data-testid="no-hires">"No device of yours has served a cluster yet."</p> }.into_any();
    }
    view! {
        <table class="table">
            <thead><tr><th>"Cluster"</th><th>"Device"</th><th>"From (UTC)"</th><th>"Until"</th><th class="num">"Earned before fee"</th><th class="num">"Forfeited"</th></tr></thead>
            <tbody>
                {hires.into_iter().map(|h| view! {
                    <tr data-testid="hire-row">
                        <td><code>{h.cluster_id}</code></td>
                        <td><a href=format!("/worker/devices/{}", h.device_id)>{h.device_name}</a></td>
                        <td>{UnixMillis(h.joined_at).to_rfc3339()}</td>
                        <td>{h.left_at.map_or_else(|| "serving".to_owned(), |t| UnixMillis(t).to_rfc3339())}</td>
                        <td class="num">{h.earned.to_string()}</td>
                        <td class="num">{(h.forfeited > MicroUsd::ZERO).then(|| h.forfeited.to_string())}</td>
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
            <thead><tr><th>"Block"</th><th>"Device"</th><th class="num">"Share of its pool"</th><th class="num">"Reward"</th><th>"Standing"</th></tr></thead>
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
                        <td data-testid="reward-hold" data-hold=r.hold.as_str()>{(r.reward > Tokens::ZERO).then(|| r.hold.label())}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// The movements matching `search` (kind, cluster or text; all when empty), with the search
/// box: a GET form, so it works without JavaScript and the result has its own address.
#[component]
fn Payments(payments: Vec<StatementLine>, search: String) -> impl IntoView {
    let needle = search.trim().to_lowercase();
    let shown: Vec<StatementLine> = payments
        .into_iter()
        .filter(|l| {
            needle.is_empty()
                || l.memo.to_lowercase().contains(&needle)
                || l.kind.as_str().contains(&needle)
                || l.cluster_id.as_deref().is_some_and(|c| c.contains(&needle))
        })
        .collect();
    view! {
        <form class="filters" method="get" action="/worker/earnings">
            <label>"Search "
                <input type="search" name="q" value=search placeholder="cluster, kind or text" data-testid="payments-search" />
            </label>
            <button class="btn" type="submit" data-testid="payments-search-go">"Search"</button>
        </form>
        <StatementTable lines=shown />
    }
}

/// The claim: asset, amount (typed, or a share of what is claimable), one click pays once.
/// What is claimable comes with the page and is read again from the live part after a claim.
#[island]
fn ClaimForm(usdc: i64, tokens: i64) -> impl IntoView {
    let claimable_now = RwSignal::new((usdc, tokens));
    on_live_refreshed(move || {
        if let Some(now) = shown_claimable() {
            claimable_now.set(now);
        }
    });
    let asset = RwSignal::new(Asset::Usdc);
    let amount = RwSignal::new(String::new());
    let outcome = RwSignal::new(None::<Result<String, String>>);
    let key = StoredValue::new(String::new());
    let claiming = RwSignal::new(false);
    let claimable = move || {
        let (usdc, tokens) = claimable_now.get();
        match asset.get() {
            Asset::Usdc => usdc,
            Asset::Token => tokens,
        }
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
                refresh_live_parts();
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

/// What the live part shows claimable (`data-claimable-usdc`, `data-claimable-tokens`).
fn shown_claimable() -> Option<(i64, i64)> {
    #[cfg(feature = "hydrate")]
    {
        let stats = document()
            .query_selector("[data-claimable-usdc]")
            .ok()
            .flatten()?;
        let read = |name: &str| stats.get_attribute(name)?.parse().ok();
        Some((read("data-claimable-usdc")?, read("data-claimable-tokens")?))
    }
    #[cfg(not(feature = "hydrate"))]
    None
}

/// How often the page re-reads while a payout is on its way, in milliseconds.
const REFRESH_MS: u32 = 2_000;
const PAYOUT_ON_ITS_WAY: &str = "[data-on-its-way]";

#[component]
fn PayoutTable(payouts: Vec<Payout>) -> impl IntoView {
    (!payouts.is_empty()).then(|| view! {
        <table class="table" data-testid="payouts">
            <thead><tr><th>"Requested (UTC)"</th><th class="num">"Amount"</th><th>"Status"</th><th>"Transaction"</th></tr></thead>
            <tbody>
                {payouts.into_iter().map(|p| view! {
                    <tr data-testid="payout-row" data-on-its-way=matches!(p.status, PayoutStatus::Requested | PayoutStatus::Submitted).then_some("")>
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
