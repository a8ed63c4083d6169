//! `/worker/devices/:id`: one device as its owner sees it: status and why, hardware,
//! connectivity, agent, 30-day uptime and hourly utilisation charts, history and
//! verifications, with rename, pause, resume, remove and revoke. Rendered on the server and
//! kept current as live parts; only the controls are an island.

use domain::fleet::DeviceStatus;
use domain::pricing;
use domain::worker::DeviceEventKind;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::components::live::{on_marked_click, refresh_live_parts, LiveRefresh};
use crate::functions::worker::{device_action, load_device, rename_device, DeviceWithCharts};
use crate::routes::worker::permille_text;
use crate::routes::PageError;

/// How often an open device page re-reads the device, in milliseconds.
const REFRESH_MS: u32 = 3_000;

/// The device as the server renders it, in two live parts (kept current from the server) with
/// the controls island between them.
#[component]
pub fn DevicePage() -> impl IntoView {
    let id = use_params_map()
        .read_untracked()
        .get("id")
        .unwrap_or_default();
    view! {
        <Title text="Device" />
        <Suspense fallback=|| view! { <p class="muted">"Loading the device…"</p> }>
            {
                let id = id.clone();
                move || {
                    let id = id.clone();
                    Suspend::new(async move {
                        match load_device(id.clone()).await {
                            Ok(d) => view! {
                                <DeviceView d />
                                <LiveRefresh every_ms=REFRESH_MS />
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

/// What the owner does to the device: the action buttons in the live part above (handled
/// here), what the last action did, and renaming.
#[island]
fn DeviceControls(id: String) -> impl IntoView {
    let id = StoredValue::new(id);
    let outcome = RwSignal::new(None::<Result<String, String>>);
    on_marked_click("data-device-action", move |action| {
        leptos::task::spawn_local(async move {
            let result = device_action(id.get_value(), action).await;
            outcome.set(Some(result.map_err(|e| e.to_string())));
            refresh_live_parts();
        });
    });
    let new_name = RwSignal::new(String::new());
    let rename = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let name = new_name.get_untracked();
        leptos::task::spawn_local(async move {
            let result = rename_device(id.get_value(), name).await.map(|name| {
                new_name.set(String::new());
                format!("renamed to {name}")
            });
            outcome.set(Some(result.map_err(|e| e.to_string())));
            refresh_live_parts();
        });
    };
    view! {
        {move || outcome.get().map(|o| match o {
            Ok(message) => view! { <p class="notice" data-testid="action-outcome">{message}</p> }.into_any(),
            Err(message) => view! { <p class="notice error" data-testid="action-outcome">{message}</p> }.into_any(),
        })}
        <section class="panel">
            <h2>"Rename"</h2>
            <form class="rename" on:submit=rename>
                <input aria-label="New device name" placeholder="new name" data-testid="rename-input"
                    maxlength=domain::worker::MAX_DEVICE_NAME_CHARS
                    prop:value=move || new_name.get() on:input=move |ev| new_name.set(event_target_value(&ev)) />
                <button class="btn" type="submit" data-testid="rename-device">"Rename"</button>
            </form>
        </section>
    }
}

#[component]
fn DeviceView(d: DeviceWithCharts) -> impl IntoView {
    let DeviceWithCharts {
        detail: d,
        uptime_chart,
        utilisation_chart,
    } = d;
    let s = d.summary.clone();
    let status = s.status;
    let hardware = match &s.gpu_model {
        Some(model) => format!("{} × {model}", s.gpu_count),
        None if d.reported_gpus.is_empty() => "CPU only".to_owned(),
        None => format!("reported: {}", d.reported_gpus),
    };
    let connectivity = match (d.download_mb_per_s, d.upload_mb_per_s, d.latency_ms) {
        (Some(down), Some(up), Some(latency)) => format!(
            "{} · {down} MB/s down, {up} MB/s up, {latency} ms",
            s.tier.map_or("below the lowest tier", |t| t.as_str())
        ),
        _ => "not measured yet".to_owned(),
    };
    let id = s.id.clone();
    view! {
        <div data-live="device-head">
        <section class="hero">
            <p class="muted"><a href="/worker">"← Your devices"</a></p>
            <h1 data-testid="device-name">{s.name.clone()}{s.simulated.then(|| view! { <span class="tag">"simulated"</span> })}</h1>
            <p class="lede">
                <span class=format!("status status-{status}") data-testid="device-status">{status.as_str()}</span>
                {s.verified.then(|| view! { <span class="tag tag-ok" data-testid="device-verified">"verified"</span> })}
                " — " <span data-testid="device-status-reason">{d.status_reason.clone()}</span>
            </p>
        </section>
        <section class="panel">
            <div class="actions">
                {matches!(status, DeviceStatus::Idle | DeviceStatus::Pending | DeviceStatus::Down).then(|| view! {
                    <button type="button" class="btn" data-testid="pause-device" data-device-action="pause">"Pause"</button>
                })}
                {(status == DeviceStatus::Paused).then(|| view! {
                    <button type="button" class="btn" data-testid="resume-device" data-device-action="resume">"Resume"</button>
                })}
                {d.credential_active.then(|| view! {
                    <button type="button" class="btn btn-ghost" data-testid="revoke-credential" data-device-action="revoke-credential">"Revoke agent credential"</button>
                })}
                <button type="button" class="btn btn-ghost" data-testid="remove-device" data-device-action="remove">"Remove device"</button>
            </div>
        </section>
        </div>
        <DeviceControls id />
        <div data-live="device-body">
        <section class="panel">
            <dl class="facts">
                <dt>"Device id"</dt><dd><code>{s.id.clone()}</code></dd>
                <dt>"Hardware"</dt><dd data-testid="device-hardware">{hardware}</dd>
                <dt>"CPU"</dt><dd>{format!("{} ({} cores)", d.cpu_model, d.cpu_cores)}</dd>
                <dt>"Memory / disk"</dt><dd>{format!("{} GB RAM · {} GB disk", d.ram_gb, d.disk_gb)}</dd>
                <dt>"OS / country"</dt><dd>{format!("{} · {}", d.os, s.country)}</dd>
                <dt>"Connectivity"</dt><dd data-testid="device-connectivity">{connectivity}</dd>
                <dt>"Agent"</dt><dd data-testid="device-agent">{d.agent_version.clone().unwrap_or_else(|| "no agent".into())}{(!d.credential_active).then_some(" (credential revoked)")}{s.agent_outdated.then_some(" (an older build: it updates itself once no cluster runs on it)")}</dd>
                <dt>"Last heartbeat"</dt><dd data-testid="device-last-heartbeat">{s.last_heartbeat_at.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())}</dd>
                <dt>"Added"</dt><dd>{d.created_at.to_rfc3339()}</dd>
            </dl>
        </section>
        <div class="columns">
            <section class="panel">
                <h2>"Uptime, last 30 days: " <span data-testid="device-uptime">{permille_text(s.uptime_30d_permille)}</span></h2>
                <div class="chart" data-testid="uptime-chart" inner_html=uptime_chart></div>
            </section>
            <section class="panel">
                <h2>"Utilisation, last 48 hours"</h2>
                <div class="chart" data-testid="utilisation-chart" inner_html=utilisation_chart></div>
            </section>
        </div>
        <section class="panel">
            <h2>"Clusters served: " <span data-testid="device-earned">{s.earned.to_string()}</span>
                <span class="muted">{format!(" earned before the {} fee", pricing::percent_text(pricing::PROVIDER_FEE_BPS))}</span></h2>
            {if d.clusters_served.is_empty() {
                view! { <p class="muted" data-testid="no-clusters-served">"No cluster has hired it yet."</p> }.into_any()
            } else {
                view! {
                    <div class="table-wrap">
                        <table class="data" data-testid="clusters-served">
                            <thead><tr><th>"Cluster"</th><th>"From (UTC)"</th><th>"Until"</th><th class="num">"Earned"</th></tr></thead>
                            <tbody>
                                {d.clusters_served.into_iter().map(|h| view! {
                                    <tr>
                                        <td><code>{h.cluster_id}</code></td>
                                        <td>{domain::time::UnixMillis(h.joined_at).to_rfc3339()}</td>
                                        <td>{h.left_at.map_or_else(|| "serving".to_owned(), |t| domain::time::UnixMillis(t).to_rfc3339())}</td>
                                        <td class="num">{h.earned.to_string()}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            }}
        </section>
        <div class="columns">
            <section class="panel">
                <h2>"Verification"</h2>
                {if d.verifications.is_empty() {
                    view! { <p class="muted">"No challenge yet: the first is sent with the agent's first heartbeat."</p> }.into_any()
                } else {
                    view! {
                        <div class="table-wrap">
                            <table class="data" data-testid="verifications">
                                <thead><tr><th>"Issued"</th><th>"Work"</th><th>"Outcome"</th></tr></thead>
                                <tbody>
                                    {d.verifications.into_iter().map(|v| {
                                        let class = format!("outcome-{}", v.outcome.map_or("open", |o| o.as_str()));
                                        view! {
                                        <tr>
                                            <td>{v.issued_at.to_rfc3339()}</td>
                                            <td>{format!("{} × {}³", v.products, v.size)}</td>
                                            <td class=class>
                                                {v.outcome.map_or("waiting for the answer", |o| o.as_str())}
                                                {v.detail.map(|t| view! { <span class="muted">{format!(" — {t}")}</span> })}
                                            </td>
                                        </tr>
                                    }}).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    }.into_any()
                }}
            </section>
            <section class="panel">
                <h2>"History"</h2>
                <div class="table-wrap">
                    <table class="data" data-testid="device-history">
                        <thead><tr><th>"When"</th><th>"What"</th></tr></thead>
                        <tbody>
                            {d.history.into_iter().map(|h| {
                                let change = match (h.from_status, h.to_status) {
                                    (Some(from), Some(to)) if from != to => format!("{from} → {to}: "),
                                    (None, Some(to)) => format!("{to}: "),
                                    _ if h.kind != DeviceEventKind::Status => format!("{}: ", h.kind),
                                    _ => String::new(),
                                };
                                view! { <tr><td>{h.at.to_rfc3339()}</td><td>{change}{h.detail}</td></tr> }
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
            </section>
        </div>
        </div>
    }
    // Erased: the page's type is deep enough otherwise to reach the compiler's recursion limit.
    .into_any()
}
