//! `/explorer/devices`: every device of the network, filtered by model, country, tier and
//! status, a page at a time (keyed pages: the last is as fast as the first); and
//! `/explorer/devices/:id`, one device's public page.

use domain::explorer::{list_path, DeviceListQuery, FleetDevice, Page};
use domain::fleet::{ConnectivityTier, DeviceStatus};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::{short, when, ExplorerNav, LoadError, NameFilter, Pager};
use crate::functions::explorer::{load_fleet_page, load_public_device, PublicDeviceWithChart};
use crate::functions::network::load_network_summary;
use crate::routes::worker::permille_text;

const LIST: &str = "/explorer/devices";

#[component]
pub fn FleetPage() -> impl IntoView {
    let query = use_query_map();
    let read = move || {
        let q = query.read();
        let get = |k: &str| q.get(k).unwrap_or_default();
        DeviceListQuery {
            hardware: get("hardware"),
            country: get("country"),
            tier: get("tier"),
            status: get("status"),
            after: get("after"),
            before: get("before"),
            last: q.get("last").is_some_and(|v| v == "1" || v == "true"),
        }
    };
    let page = Resource::new(read, load_fleet_page);
    // The model and country choices come from the live supply, so every option has devices.
    let summary = Resource::new(|| (), |_| load_network_summary());
    view! {
        <Title text="Devices · Explorer" />
        <ExplorerNav />
        <section class="hero">
            <h1>"Devices"</h1>
            <p class="lede">"Every device in the network. Only verified idle devices are available to rent."</p>
        </section>
        <section class="panel">
            <form class="filters" method="get" action=LIST data-testid="device-filters">
                <label>"Hardware "
                    <select name="hardware" data-testid="filter-hardware">
                        <option value="">"any"</option>
                        <option value="cpu" selected=move || read().hardware == "cpu">"CPU"</option>
                        <Suspense fallback=|| ()>
                            {move || summary.get().and_then(Result::ok).map(|s| s.by_model.into_iter().map(|m| {
                                let selected = read().hardware == m.model;
                                view! { <option value=m.model.clone() selected=selected>{m.model.clone()}</option> }
                            }).collect_view())}
                        </Suspense>
                    </select>
                </label>
                <label>"Country "
                    <select name="country" data-testid="filter-country">
                        <option value="">"any"</option>
                        <Suspense fallback=|| ()>
                            {move || summary.get().and_then(Result::ok).map(|s| s.by_country.into_iter().map(|c| {
                                let selected = read().country == c.code;
                                view! { <option value=c.code.clone() selected=selected>{format!("{} ({})", c.name, c.code)}</option> }
                            }).collect_view())}
                        </Suspense>
                    </select>
                </label>
                <NameFilter label="Tier" name="tier" testid="filter-tier"
                    names=ConnectivityTier::ALL.iter().map(|t| t.as_str()).collect()
                    current=Signal::derive(move || read().tier) />
                <NameFilter label="Status" name="status" testid="filter-status"
                    names=DeviceStatus::ALL.iter().map(|s| s.as_str()).collect()
                    current=Signal::derive(move || read().status) />
                <button class="btn" type="submit" data-testid="apply-filters">"Show"</button>
            </form>
            <Suspense fallback=|| view! { <p class="muted">"Loading devices…"</p> }>
                {move || page.get().map(|result| match result {
                    Ok(page) => view! { <FleetTable page query=read() /> }.into_any(),
                    Err(error) => view! { <LoadError error /> }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

/// The device list's rows as HTML, every value escaped.
fn device_rows_html(rows: &[FleetDevice]) -> String {
    use std::fmt::Write;
    let mut html = String::with_capacity(rows.len() * 600);
    for d in rows {
        let hardware = match &d.gpu_model {
            Some(model) => format!("{} × {model}", d.gpu_count),
            None if d.gpu_count > 0 => format!("{} × unsupported GPU", d.gpu_count),
            None => "CPU".to_owned(),
        };
        let status = d.status.as_str();
        let _ = write!(
            html,
            "<tr data-testid=\"device-row\"><td><a href=\"/explorer/devices/{id}\">{id}</a></td>\
             <td>{hardware}</td><td>{country}</td><td>{tier}</td>\
             <td><span class=\"status status-{status}\">{status}</span>{verified}</td>\
             <td>{since}</td><td><a href=\"/explorer/wallets/{provider}\">{provider_short}</a></td></tr>",
            id = escape(&d.id),
            hardware = escape(&hardware),
            country = escape(&d.country),
            tier = d.tier.map_or("—", |t| t.as_str()),
            verified = if d.verified { "<span class=\"tag tag-ok\">verified</span>" } else { "" },
            since = escape(&when(d.status_since.0)),
            provider = escape(&d.provider),
            provider_short = escape(&short(&d.provider)),
        );
    }
    html
}

/// `text` safe inside HTML text and double-quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[component]
fn FleetTable(page: Page<FleetDevice>, query: DeviceListQuery) -> impl IntoView {
    let filter: Vec<(&str, String)> = [
        ("hardware", &query.hardware),
        ("country", &query.country),
        ("tier", &query.tier),
        ("status", &query.status),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k, v.clone()))
    .collect();
    let with = |key: &'static str, value: String| {
        let mut pairs = filter.clone();
        pairs.push((key, value));
        list_path(LIST, &pairs)
    };
    let at_start = page.previous.is_none();
    let at_end = page.next.is_none();
    let pager = view! {
        <Pager
            first=(!at_start).then(|| list_path(LIST, &filter))
            previous=page.previous.clone().map(|id| with("before", id))
            next=page.next.clone().map(|id| with("after", id))
            last=(!at_end).then(|| with("last", "1".into()))
        />
    };
    if page.rows.is_empty() {
        return view! {
            <p class="empty" data-testid="no-devices">"No devices match these filters."</p>
        }
        .into_any();
    }
    view! {
        <p class="muted" data-testid="devices-matching">{format!("{} devices match.", page.matching)}</p>
        <div class="table-wrap">
            <table class="data" data-testid="device-list">
                <thead><tr>
                    <th>"Device"</th><th>"Hardware"</th><th>"Country"</th><th>"Tier"</th>
                    <th>"Status"</th><th>"Since"</th><th>"Provider"</th>
                </tr></thead>
                // The rows are the page's bulk (50 of them, ten elements each) and never change in
                // the browser: written as one string, they render several times faster than as
                // type-erased views (see docs/BENCHMARKS.md, explorer at a million devices).
                <tbody inner_html=device_rows_html(&page.rows)></tbody>
            </table>
        </div>
        {pager}
    }
    .into_any()
}

#[component]
pub fn PublicDevicePage() -> impl IntoView {
    let params = use_params_map();
    let device = Resource::new(
        move || params.read().get("id").unwrap_or_default(),
        load_public_device,
    );
    view! {
        <Title text="Device · Explorer" />
        <ExplorerNav />
        <Suspense fallback=|| view! { <p class="muted">"Loading the device…"</p> }>
            {move || device.get().map(|result| match result {
                Ok(d) => view! { <PublicDeviceView d /> }.into_any(),
                Err(error) => view! { <LoadError error /> }.into_any(),
            })}
        </Suspense>
    }
}

#[component]
fn PublicDeviceView(d: PublicDeviceWithChart) -> impl IntoView {
    let PublicDeviceWithChart {
        device: d,
        uptime_chart,
    } = d;
    let hardware = match &d.gpu_model {
        Some(model) => format!("{} × {model}", d.gpu_count),
        None if d.reported_gpus.is_empty() => "CPU only".to_owned(),
        None => format!("unsupported GPU: {}", d.reported_gpus),
    };
    let connectivity = match (d.tier, d.download_mb_per_s, d.upload_mb_per_s) {
        (tier, Some(down), Some(up)) => format!(
            "{} · {down} MB/s down, {up} MB/s up",
            tier.map_or("below the lowest tier", |t| t.as_str())
        ),
        _ => "not measured yet".to_owned(),
    };
    let compliance = match &d.facility {
        None => "end-to-end encrypted; no attested facility".to_owned(),
        Some(f) => {
            let last_day = domain::time::UnixMillis(f.certified_until.0 - 1).to_rfc3339();
            let state = if d.attested.is_none() {
                "lapsed after"
            } else {
                "certified through"
            };
            format!(
                "{} — {} ({state} {})",
                f.standards.names(),
                f.name,
                &last_day[..10]
            )
        }
    };
    view! {
        <section class="hero">
            <p class="muted"><a href=LIST>"← All devices"</a></p>
            <h1 data-testid="public-device-id">{d.id.clone()}{d.simulated.then(|| view! { <span class="tag">"simulated"</span> })}</h1>
            <p class="lede">
                <span class=format!("status status-{}", d.status) data-testid="public-device-status">{d.status.as_str()}</span>
                {d.verified.then(|| view! { <span class="tag tag-ok">"verified"</span> })}
                " — " {d.status_reason.clone()}
            </p>
        </section>
        <section class="panel">
            <dl class="facts">
                <dt>"Hardware"</dt><dd data-testid="public-device-hardware">{hardware}</dd>
                <dt>"CPU"</dt><dd>{format!("{} ({} cores), {} GB RAM, {} GB disk", d.cpu_model, d.cpu_cores, d.ram_gb, d.disk_gb)}</dd>
                <dt>"OS"</dt><dd>{d.os.as_str()}</dd>
                <dt>"Country"</dt><dd>{d.country.clone()}</dd>
                <dt>"Connectivity"</dt><dd>{connectivity}</dd>
                <dt>"Compliance"</dt><dd data-testid="public-device-compliance">{compliance}</dd>
                <dt>"Provider"</dt><dd><a href=format!("/explorer/wallets/{}", d.provider) data-testid="public-device-provider">{d.provider.clone()}</a></dd>
                <dt>"Agent"</dt><dd>{d.agent_version.clone().unwrap_or_else(|| "—".into())}</dd>
                <dt>"In the network since"</dt><dd>{when(d.created_at.0)}</dd>
                <dt>"Last heartbeat"</dt><dd>{d.last_heartbeat_at.map_or_else(|| "—".into(), |t| when(t.0))}</dd>
                <dt>"Uptime, 30 days"</dt><dd data-testid="public-device-uptime">{permille_text(d.uptime_permille)}</dd>
                <dt>"Hire earnings"</dt><dd>{d.earned.to_string()}</dd>
            </dl>
        </section>
        <section class="panel">
            <h2>"Uptime, last 30 days"</h2>
            <div class="chart" inner_html=uptime_chart></div>
        </section>
        <div class="columns">
            <section class="panel">
                <h2>"Status history"</h2>
                {if d.history.is_empty() {
                    view! { <p class="muted">"No changes yet."</p> }.into_any()
                } else {
                    view! {
                        <table class="data"><tbody>
                            {d.history.into_iter().map(|h| view! {
                                <tr><td>{when(h.at.0)}</td><td>{h.to_status.map_or(h.kind.as_str(), |s| s.as_str())}</td><td>{h.detail}</td></tr>
                            }).collect_view()}
                        </tbody></table>
                    }.into_any()
                }}
            </section>
            <section class="panel">
                <h2>"Verification"</h2>
                {if d.verifications.is_empty() {
                    view! { <p class="muted">"No challenges yet."</p> }.into_any()
                } else {
                    view! {
                        <table class="data" data-testid="public-device-verifications"><tbody>
                            {d.verifications.into_iter().map(|v| view! {
                                <tr>
                                    <td>{when(v.issued_at.0)}</td>
                                    <td>{v.outcome.map_or("open", |o| o.as_str())}</td>
                                    <td>{format!("{} products of {}×{}", v.products, v.size, v.size)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody></table>
                    }.into_any()
                }}
            </section>
        </div>
        <div class="columns">
            <section class="panel">
                <h2>"Clusters served"</h2>
                {if d.clusters_served.is_empty() {
                    view! { <p class="muted">"Not hired yet."</p> }.into_any()
                } else {
                    view! {
                        <table class="data" data-testid="public-device-clusters">
                            <thead><tr><th>"Cluster"</th><th>"Joined"</th><th>"Left"</th><th class="num">"Earned"</th></tr></thead>
                            <tbody>
                                {d.clusters_served.into_iter().map(|c| view! {
                                    <tr>
                                        <td><a href=format!("/explorer/clusters/{}", c.cluster_id)>{c.cluster_id.clone()}</a></td>
                                        <td>{when(c.joined_at)}</td>
                                        <td>{c.left_at.map_or_else(|| "serving".into(), when)}</td>
                                        <td class="num">{c.earned.to_string()}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }}
            </section>
            <section class="panel">
                <h2>"Block rewards"</h2>
                {if d.rewards.is_empty() {
                    view! { <p class="muted">"Not in a closed block yet."</p> }.into_any()
                } else {
                    view! {
                        <table class="data" data-testid="public-device-rewards">
                            <thead><tr><th>"Block"</th><th class="num">"Score"</th><th class="num">"Reward"</th><th>"Note"</th></tr></thead>
                            <tbody>
                                {d.rewards.into_iter().map(|r| view! {
                                    <tr>
                                        <td><a href=format!("/explorer/blocks/{}", r.block)>{r.block}</a></td>
                                        <td class="num">{r.score}</td>
                                        <td class="num">{r.reward.to_string()}</td>
                                        <td>{r.ineligible.unwrap_or_default()}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }}
            </section>
        </div>
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn row_values_are_escaped() {
        assert_eq!(
            super::escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(super::escape("dev-0a1b × RTX 4090"), "dev-0a1b × RTX 4090");
    }
}
