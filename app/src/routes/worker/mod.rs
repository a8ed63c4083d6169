//! `/worker`: the provider's tab: their devices once signed in, and what GPUs earn here.
//! `/worker/devices/new` adds a device; `/worker/devices/:id` shows one; `/worker/earnings`
//! shows what they earned.

mod device;
mod earnings;
mod new_device;

pub use device::DevicePage;
pub use earnings::EarningsPage;
pub use new_device::NewDevicePage;

use domain::fleet::{ConnectivityTier, DeviceStatus};
use domain::pricing;

use domain::network::ModelSupply;
use domain::worker::{models_of, AwaitingAgent, DeviceFilter, DeviceSort, OwnedDevice};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::components::live::SubmitOnChange;
use crate::components::supply::{ErrorNote, ModelSupplyTable};
use crate::errors::AppError;
use crate::functions::network::load_network_summary;
use crate::functions::worker::my_devices;

/// A model's hire rate as its provider receives it: the settlement's own arithmetic.
fn provider_rate(m: ModelSupply) -> ModelSupply {
    ModelSupply {
        price_per_gpu_hour: pricing::provider_share(m.price_per_gpu_hour),
        ..m
    }
}

#[component]
pub fn WorkerPage() -> impl IntoView {
    let filter = device_filter(&use_query_map().read_untracked());
    let summary = Resource::new(|| (), |_| load_network_summary());
    view! {
        <Title text="Worker" />
        <section class="hero">
            <h1>"Worker"</h1>
            <p class="lede">{format!("Turn idle GPUs into earnings paid to your Solana wallet. Providers keep {} of hire earnings.", pricing::percent_text(10_000 - pricing::PROVIDER_FEE_BPS))}</p>
        </section>
        <section class="panel">
            <div class="panel-head">
                <h2>"Your devices"</h2>
                <a class="btn" href="/worker/earnings" data-testid="earnings-link">"Earnings"</a>
                <a class="btn btn-primary" href="/worker/devices/new" data-testid="add-device">"Add a device"</a>
            </div>
            <Suspense fallback=|| view! { <p class="muted">"Loading your devices…"</p> }>
                {
                    let filter = filter.clone();
                    move || {
                        let filter = filter.clone();
                        Suspend::new(async move {
                            match my_devices().await {
                                Ok(list) if list.devices.is_empty() && list.awaiting_agent.is_empty() => view! {
                                    <p class="empty" data-testid="no-devices">"No devices yet for this wallet. Add one to get the command that starts its agent."</p>
                                }.into_any(),
                                Ok(list) => view! {
                                    <AwaitingAgentList awaiting=list.awaiting_agent />
                                    <DeviceTable devices=list.devices filter />
                                }.into_any(),
                                Err(AppError::Unauthorized(_)) => view! {
                                    <p class="notice" data-testid="worker-sign-in">"Connect your Solana wallet to see and manage your devices. Payouts go to the wallet you sign in with."</p>
                                }.into_any(),
                                Err(error) => view! { <ErrorNote error /> }.into_any(),
                            }
                        })
                    }
                }
            </Suspense>
        </section>
        <section class="panel">
            <h2>"What GPUs earn here"</h2>
            <p class="muted">{format!("Current hire rate per GPU-hour after the {} platform fee, with live demand per model.", pricing::percent_text(pricing::PROVIDER_FEE_BPS))}</p>
            <Suspense fallback=|| view! { <p class="muted">"Loading rates…"</p> }>
                {move || summary.get().map(|result| match result {
                    Ok(s) => view! { <ModelSupplyTable models=s.by_model.into_iter().map(provider_rate).collect() provider_view=true /> }.into_any(),
                    Err(error) => view! { <ErrorNote error /> }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

/// The device list's filter from the page's query (`?status=idle&model=…&tier=high&sort=…`);
/// what does not parse is "any".
fn device_filter(query: &leptos_router::params::ParamsMap) -> DeviceFilter {
    let get = |key: &str| query.get(key).filter(|v| !v.is_empty());
    DeviceFilter {
        status: get("status").and_then(|s| DeviceStatus::parse(&s).ok()),
        model: get("model"),
        tier: get("tier").and_then(|t| ConnectivityTier::parse(&t).ok()),
        sort: get("sort")
            .and_then(|s| DeviceSort::parse(&s).ok())
            .unwrap_or_default(),
    }
}

#[component]
fn AwaitingAgentList(awaiting: Vec<AwaitingAgent>) -> impl IntoView {
    (!awaiting.is_empty()).then(|| view! {
        <ul class="awaiting" data-testid="awaiting-agent">
            {awaiting.into_iter().map(|a| view! {
                <li>
                    <strong>{a.name}</strong>
                    <span class="muted">{format!(" ({} · {}) waiting for its agent; the token expires {}", a.kind, a.os, a.expires_at.to_rfc3339())}</span>
                </li>
            }).collect_view()}
        </ul>
    })
}

/// A percentage kept in tenths, as `99.5%`.
pub(crate) fn permille_text(permille: u16) -> String {
    format!("{}.{}%", permille / 10, permille % 10)
}

/// The devices that pass `filter`, in its order, under the filter form.
#[component]
fn DeviceTable(devices: Vec<OwnedDevice>, filter: DeviceFilter) -> impl IntoView {
    if devices.is_empty() {
        return None;
    }
    let models = models_of(&devices);
    let rows = filter.apply(&devices);
    let status = filter.status.map(|s| s.as_str());
    let tier = filter.tier.map(|t| t.as_str());
    let model = filter.model.clone();
    Some(view! {
        <SubmitOnChange>
            <form class="filters" method="get" action="/worker" data-testid="device-filters">
                <label>"Status "
                    <select name="status" data-testid="filter-status">
                        <option value="">"any"</option>
                        {DeviceStatus::ALL.iter().map(|s| view! { <option value=s.as_str() selected=status == Some(s.as_str())>{s.as_str()}</option> }).collect_view()}
                    </select>
                </label>
                <label>"Model "
                    <select name="model" data-testid="filter-model">
                        <option value="">"any"</option>
                        {models.into_iter().map(|m| {
                            let selected = model.as_deref() == Some(m.as_str());
                            view! { <option value=m.clone() selected=selected>{m.clone()}</option> }
                        }).collect_view()}
                        <option value="cpu" selected=model.as_deref() == Some("cpu")>"CPU only"</option>
                    </select>
                </label>
                <label>"Tier "
                    <select name="tier" data-testid="filter-tier">
                        <option value="">"any"</option>
                        {ConnectivityTier::ALL.iter().map(|t| view! { <option value=t.as_str() selected=tier == Some(t.as_str())>{t.as_str()}</option> }).collect_view()}
                    </select>
                </label>
                <label>"Sort by "
                    <select name="sort" data-testid="sort-devices">
                        {DeviceSort::ALL.iter().map(|s| view! { <option value=s.as_str() selected=filter.sort == *s>{s.as_str().replace('_', " ")}</option> }).collect_view()}
                    </select>
                </label>
                <button class="btn" type="submit" data-testid="apply-device-filters">"Show"</button>
            </form>
        </SubmitOnChange>
        <div class="table-wrap">
            <table class="data" data-testid="my-devices">
                <thead><tr><th>"Name"</th><th>"Status"</th><th>"Ready for hire"</th><th>"Hardware"</th><th>"Country"</th><th>"Tier"</th><th>"Uptime (30 d)"</th><th class="num">"Earned"</th><th>"Last heartbeat"</th></tr></thead>
                <tbody>
                    {if rows.is_empty() {
                        view! { <tr><td colspan="9" class="muted" data-testid="no-matching-devices">"No device matches these filters."</td></tr> }.into_any()
                    } else {
                        rows.into_iter().map(|d| {
                            let readiness = d.readiness();
                            view! {
                                <tr data-testid="device-row">
                                    <td>
                                        <a href=format!("/worker/devices/{}", d.id)>{d.name.clone()}</a>
                                        {d.simulated.then(|| view! { <span class="tag">"simulated"</span> })}
                                        {d.agent_outdated.then(|| view! { <span class="tag" data-testid="agent-outdated" title="Its agent runs an older build than this server offers; it updates itself once no cluster runs on it.">"agent update pending"</span> })}
                                    </td>
                                    <td>
                                        <span class=format!("status status-{}", d.status)>{d.status.as_str()}</span>
                                        {d.verified.then(|| view! { <span class="tag tag-ok">"verified"</span> })}
                                    </td>
                                    <td>{match readiness {
                                        Ok(()) => view! { <span class="tag tag-ok">"ready"</span> }.into_any(),
                                        Err(why) => view! { <span class="muted">{why}</span> }.into_any(),
                                    }}</td>
                                    <td>{d.gpu_model.clone().map_or_else(|| "CPU".to_owned(), |m| format!("{} × {m}", d.gpu_count))}</td>
                                    <td>{d.country.clone()}</td>
                                    <td>{d.tier.map_or("not measured", |t| t.as_str())}</td>
                                    <td>{permille_text(d.uptime_30d_permille)}</td>
                                    <td class="num" data-testid="device-earned">{d.earned.to_string()}</td>
                                    <td>{d.last_heartbeat_at.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())}</td>
                                </tr>
                            }
                        }).collect_view().into_any()
                    }}
                </tbody>
            </table>
        </div>
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::money::MicroUsd;

    #[test]
    fn providers_see_the_rate_after_the_hire_fee() {
        let m = ModelSupply {
            model: "H100 80GB SXM".into(),
            vram_gb: 80,
            gpus_idle: 1,
            gpus_hired: 1,
            price_per_gpu_hour: MicroUsd::from_micros(2_490_000),
        };
        assert_eq!(
            provider_rate(m).price_per_gpu_hour,
            MicroUsd::from_micros(2_483_775)
        );
    }
}
