//! `/worker/devices/:id`: one device as its owner sees it: status and why, hardware,
//! connectivity, agent, 30-day uptime and hourly utilisation charts, history and
//! verifications, with rename, pause, resume, remove and revoke.

use std::time::Duration;

use domain::fleet::DeviceStatus;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::components::supply::ErrorNote;
use crate::errors::AppError;
use crate::functions::worker::{device_action, load_device, rename_device, DeviceWithCharts};
use crate::routes::set_page_status;
use crate::routes::worker::permille_text;

/// How often an open device page re-reads the device.
const REFRESH: Duration = Duration::from_secs(3);

#[component]
pub fn DevicePage() -> impl IntoView {
    let id = use_params_map()
        .read_untracked()
        .get("id")
        .unwrap_or_default();
    view! {
        <Title text="Device" />
        <DeviceConsole id />
    }
}

/// The device, re-read every few seconds while the page is open, with its actions.
#[island]
fn DeviceConsole(id: String) -> impl IntoView {
    let id = StoredValue::new(id);
    let id = move || id.get_value();
    let version = RwSignal::new(0u32);
    let detail = Resource::new(move || (id(), version.get()), |(id, _)| load_device(id));
    let outcome = RwSignal::new(None::<Result<String, String>>);
    Effect::new(move |_| {
        // Effects run only in the browser: keep the page live while it is open.
        if let Ok(handle) = set_interval_with_handle(move || version.update(|v| *v += 1), REFRESH) {
            on_cleanup(move || handle.clear());
        }
    });
    let act = move |action: &'static str| {
        let id = id();
        leptos::task::spawn_local(async move {
            let result = device_action(id, action.to_owned()).await;
            outcome.set(Some(result.map_err(|e| e.to_string())));
            version.update(|v| *v += 1);
        });
    };
    // Outside the part that refreshes every few seconds, so typing is never interrupted.
    let new_name = RwSignal::new(String::new());
    let rename = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let id = id();
        let name = new_name.get_untracked();
        leptos::task::spawn_local(async move {
            let result = rename_device(id, name).await.map(|name| {
                new_name.set(String::new());
                format!("renamed to {name}")
            });
            outcome.set(Some(result.map_err(|e| e.to_string())));
            version.update(|v| *v += 1);
        });
    };
    let found = move || detail.get().is_some_and(|result| result.is_ok());
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading the device…"</p> }>
            {move || detail.get().map(|result| match result {
                Ok(d) => view! { <DeviceView d act outcome /> }.into_any(),
                Err(error) => {
                    match &error {
                        AppError::NotFound(_) => set_page_status(404),
                        AppError::Unauthorized(_) => set_page_status(401),
                        _ => {}
                    }
                    view! { <section class="panel"><ErrorNote error /></section> }.into_any()
                }
            })}
        </Transition>
        // Its own Transition keeps it in place while the device refreshes; `Show` re-renders
        // it only when the device appears or goes.
        <Transition fallback=|| ()>
            <Show when=found>
                <section class="panel">
                    <h2>"Rename"</h2>
                    <form class="rename" on:submit=rename>
                        <input aria-label="New device name" placeholder="new name" data-testid="rename-input"
                            maxlength=domain::worker::MAX_DEVICE_NAME_CHARS
                            prop:value=move || new_name.get() on:input=move |ev| new_name.set(event_target_value(&ev)) />
                        <button class="btn" type="submit" data-testid="rename-device">"Rename"</button>
                    </form>
                </section>
            </Show>
        </Transition>
    }
}

#[component]
fn DeviceView(
    d: DeviceWithCharts,
    act: impl Fn(&'static str) + Copy + Send + Sync + 'static,
    outcome: RwSignal<Option<Result<String, String>>>,
) -> impl IntoView {
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
    view! {
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
                    <button class="btn" data-testid="pause-device" on:click=move |_| act("pause")>"Pause"</button>
                })}
                {(status == DeviceStatus::Paused).then(|| view! {
                    <button class="btn" data-testid="resume-device" on:click=move |_| act("resume")>"Resume"</button>
                })}
                {d.credential_active.then(|| view! {
                    <button class="btn btn-ghost" data-testid="revoke-credential" on:click=move |_| act("revoke-credential")>"Revoke agent credential"</button>
                })}
                <button class="btn btn-ghost" data-testid="remove-device" on:click=move |_| act("remove")>"Remove device"</button>
            </div>
            {move || outcome.get().map(|o| match o {
                Ok(message) => view! { <p class="notice" data-testid="action-outcome">{message}</p> }.into_any(),
                Err(message) => view! { <p class="notice error" data-testid="action-outcome">{message}</p> }.into_any(),
            })}
            <dl class="facts">
                <dt>"Device id"</dt><dd><code>{s.id.clone()}</code></dd>
                <dt>"Hardware"</dt><dd data-testid="device-hardware">{hardware}</dd>
                <dt>"CPU"</dt><dd>{format!("{} ({} cores)", d.cpu_model, d.cpu_cores)}</dd>
                <dt>"Memory / disk"</dt><dd>{format!("{} GB RAM · {} GB disk", d.ram_gb, d.disk_gb)}</dd>
                <dt>"OS / country"</dt><dd>{format!("{} · {}", d.os, s.country)}</dd>
                <dt>"Connectivity"</dt><dd data-testid="device-connectivity">{connectivity}</dd>
                <dt>"Agent"</dt><dd>{d.agent_version.clone().unwrap_or_else(|| "no agent".into())}{(!d.credential_active).then_some(" (credential revoked)")}</dd>
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
                <span class="muted">" earned before the 0.25% fee"</span></h2>
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
                                        let class = format!("outcome-{}", v.outcome.as_deref().unwrap_or("open"));
                                        view! {
                                        <tr>
                                            <td>{v.issued_at.to_rfc3339()}</td>
                                            <td>{format!("{} × {}³", v.products, v.size)}</td>
                                            <td class=class>
                                                {v.outcome.unwrap_or_else(|| "waiting for the answer".into())}
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
                                    _ if h.kind != "status" => format!("{}: ", h.kind),
                                    _ => String::new(),
                                };
                                view! { <tr><td>{h.at.to_rfc3339()}</td><td>{change}{h.detail}</td></tr> }
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
            </section>
        </div>
    }
}
