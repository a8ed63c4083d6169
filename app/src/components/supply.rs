//! Tables and figures of network supply, shared by the explorer, cloud and worker pages.

use domain::network::{CountrySupply, ModelSupply, NetworkTotals};
use leptos::prelude::*;

use crate::errors::AppError;

#[component]
pub fn Stat(
    label: &'static str,
    value: String,
    #[prop(optional)] note: Option<String>,
) -> impl IntoView {
    view! {
        <div class="stat">
            <div class="stat-value">{value}</div>
            <div class="stat-label">{label}</div>
            {note.map(|n| view! { <div class="stat-note">{n}</div> })}
        </div>
    }
}

#[component]
pub fn TotalsGrid(totals: NetworkTotals) -> impl IntoView {
    let t = totals;
    view! {
        <div class="stats" data-testid="network-totals">
            <Stat label="GPUs in the network" value=t.gpus.to_string() note=format!("{} devices", t.devices) />
            <Stat label="Verified GPUs" value=t.gpus_verified.to_string() />
            <Stat label="Hired now" value=t.gpus_hired.to_string() />
            <Stat label="Available now" value=t.gpus_idle.to_string() note="verified and idle".to_owned() />
            <Stat label="CPU devices" value=t.cpu_devices.to_string() note=format!("{} verified", t.cpu_devices_verified) />
            <Stat label="Countries" value=t.countries.to_string() />
        </div>
    }
}

#[component]
pub fn ModelSupplyTable(
    models: Vec<ModelSupply>,
    #[prop(optional)] provider_view: bool,
) -> impl IntoView {
    let price_heading = if provider_view {
        "Earns / GPU-hour"
    } else {
        "Price / GPU-hour"
    };
    view! {
        <div class="table-wrap">
            <table class="data" data-testid="supply-by-model">
                <thead>
                    <tr>
                        <th>"GPU model"</th>
                        <th class="num">"VRAM"</th>
                        <th class="num">"Available"</th>
                        <th class="num">"Hired"</th>
                        <th class="num">"Utilisation"</th>
                        <th class="num">{price_heading}</th>
                    </tr>
                </thead>
                <tbody>
                    {models
                        .into_iter()
                        .map(|m| {
                            let utilisation = m.utilisation_percent();
                            let vram = if m.vram_gb == 0 { "unified".to_owned() } else { format!("{} GB", m.vram_gb) };
                            view! {
                                <tr>
                                    <td>{m.model.clone()}</td>
                                    <td class="num">{vram}</td>
                                    <td class="num">{m.gpus_idle}</td>
                                    <td class="num">{m.gpus_hired}</td>
                                    <td class="num">
                                        <span class="bar" style=format!("--fill: {utilisation}%")></span>
                                        {format!("{utilisation}%")}
                                    </td>
                                    <td class="num">{m.price_per_gpu_hour.to_string()}</td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
pub fn CountryTable(countries: Vec<CountrySupply>, limit: usize) -> impl IntoView {
    let shown = countries.len().min(limit);
    let total = countries.len();
    view! {
        <div class="table-wrap">
            <table class="data" data-testid="supply-by-country">
                <thead>
                    <tr>
                        <th>"Country"</th>
                        <th class="num">"Devices"</th>
                        <th class="num">"GPUs"</th>
                    </tr>
                </thead>
                <tbody>
                    {countries
                        .into_iter()
                        .take(limit)
                        .map(|c| {
                            view! {
                                <tr>
                                    <td>
                                        <span class="cc">{c.code}</span>
                                        {c.name}
                                    </td>
                                    <td class="num">{c.devices}</td>
                                    <td class="num">{c.gpus}</td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
            {(total > shown).then(|| view! { <p class="muted">{format!("Top {shown} of {total} countries.")}</p> })}
        </div>
    }
}

/// A user-facing error, never internals.
#[component]
pub fn ErrorNote(error: AppError) -> impl IntoView {
    view! {
        <div class="notice error" role="alert">
            {error.to_string()}
        </div>
    }
}
