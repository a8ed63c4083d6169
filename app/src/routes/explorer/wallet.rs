//! `/explorer/wallets/:address`: a provider's public page: their devices and what the network
//! paid them.

use domain::explorer::PublicWallet;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use super::{when, ExplorerNav, LoadError};
use crate::functions::explorer::load_wallet;

#[component]
pub fn WalletPage() -> impl IntoView {
    let params = use_params_map();
    let wallet = Resource::new(
        move || params.read().get("address").unwrap_or_default(),
        load_wallet,
    );
    view! {
        <Title text="Provider · Explorer" />
        <ExplorerNav />
        <Suspense fallback=|| view! { <p class="muted">"Loading the provider…"</p> }>
            {move || wallet.get().map(|result| match result {
                Ok(w) => view! { <WalletView w /> }.into_any(),
                Err(error) => view! { <LoadError error /> }.into_any(),
            })}
        </Suspense>
    }
}

#[component]
fn WalletView(w: PublicWallet) -> impl IntoView {
    let shown = w.devices.rows.len();
    view! {
        <section class="hero">
            <p class="muted">"Provider"</p>
            <h1 class="mono" data-testid="wallet-address">{w.address.clone()}</h1>
        </section>
        <div class="stats">
            <div class="stat"><div class="stat-value" data-testid="wallet-devices">{w.devices.matching}</div><div class="stat-label">"Devices"</div></div>
            <div class="stat"><div class="stat-value">{w.hire_earned.to_string()}</div><div class="stat-label">"Hire earnings"</div></div>
            <div class="stat"><div class="stat-value">{w.rewards_earned.to_string()}</div><div class="stat-label">"Block rewards"</div>
                <div class="stat-note">{format!("in {} blocks", w.blocks_rewarded)}</div></div>
        </div>
        <section class="panel">
            <h2>"Devices"</h2>
            {(w.devices.matching > shown as i64).then(|| view! {
                <p class="muted">{format!("The first {shown} of {} by id.", w.devices.matching)}</p>
            })}
            <table class="data" data-testid="wallet-device-list">
                <thead><tr><th>"Device"</th><th>"Hardware"</th><th>"Country"</th><th>"Status"</th><th>"Since"</th></tr></thead>
                <tbody>
                    {w.devices.rows.into_iter().map(|d| view! {
                        <tr>
                            <td><a href=format!("/explorer/devices/{}", d.id)>{d.id.clone()}</a></td>
                            <td>{d.gpu_model.as_ref().map_or_else(|| "CPU".to_owned(), |m| format!("{} × {m}", d.gpu_count))}</td>
                            <td>{d.country.clone()}</td>
                            <td><span class=format!("status status-{}", d.status)>{d.status.as_str()}</span></td>
                            <td>{when(d.status_since.0)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}
