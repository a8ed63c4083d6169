//! `/cloud/clusters/:id`: one of the renter's clusters: status and why, devices and what
//! their agents report, the timeline (payments, starts, losses and replacements, refunds),
//! cost so far and what terminating now would return, access, extend and terminate.

use domain::cluster::{ClusterKind, DurationUnit};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::components::live::{on_live_refreshed, refresh_live_parts, LiveRefresh};
use crate::functions::cloud::{
    extend_cluster, load_cluster, rotate_access_token, terminate_cluster, ClusterWithChart,
};
use crate::routes::cloud::time_text;
use crate::routes::{new_idempotency_key, PageError};

/// How often an open cluster page re-reads the cluster, in milliseconds.
const REFRESH_MS: u32 = 2_000;

/// The cluster as the server renders it, kept current as a live part, with the controls
/// island below it.
#[component]
pub fn ClusterPage() -> impl IntoView {
    let id = use_params_map()
        .read_untracked()
        .get("id")
        .unwrap_or_default();
    view! {
        <Title text="Cluster" />
        <Suspense fallback=|| view! { <p class="muted">"Loading the cluster…"</p> }>
            {
                let id = id.clone();
                move || {
                    let id = id.clone();
                    Suspend::new(async move {
                        match load_cluster(id.clone()).await {
                            Ok(c) => {
                                let active = c.detail.summary.status.is_active();
                                let id = c.detail.summary.id.clone();
                                view! {
                                    <div data-live="cluster"><ClusterView c /></div>
                                    <ClusterControls id active />
                                    <LiveRefresh every_ms=REFRESH_MS />
                                }
                                .into_any()
                            }
                            Err(error) => view! { <PageError error /> }.into_any(),
                        }
                    })
                }
            }
        </Suspense>
    }
}

/// Extend and terminate, while the cluster (as the live part above last showed it) is active,
/// and what the last change did.
#[island]
fn ClusterControls(id: String, active: bool) -> impl IntoView {
    let id = StoredValue::new(id);
    let active = RwSignal::new(active);
    on_live_refreshed(move || {
        if let Some(now) = shown_active() {
            active.set(now);
        }
    });
    let outcome = RwSignal::new(None::<Result<String, String>>);
    let extend_count = RwSignal::new("1".to_owned());
    let extend_unit = RwSignal::new(DurationUnit::Hourly);
    let extend = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Ok(count) = extend_count.get_untracked().trim().parse::<u32>() else {
            outcome.set(Some(Err(
                "enter a whole number of hours, days or weeks".into()
            )));
            return;
        };
        // One key per click: a retry of the same click would charge once.
        let key = new_idempotency_key();
        leptos::task::spawn_local(async move {
            let result =
                extend_cluster(id.get_value(), extend_unit.get_untracked(), count, key).await;
            outcome.set(Some(
                result
                    .map(|c| {
                        format!(
                            "extended: {} h paid in all, ends {}",
                            c.hours,
                            time_text(c.ends_at)
                        )
                    })
                    .map_err(|e| e.to_string()),
            ));
            refresh_live_parts();
        });
    };
    let terminate = move |_| {
        leptos::task::spawn_local(async move {
            let result = terminate_cluster(id.get_value()).await;
            outcome.set(Some(
                result
                    .map(|c| format!("terminated: {}", c.status_reason))
                    .map_err(|e| e.to_string()),
            ));
            refresh_live_parts();
        });
    };
    let token = RwSignal::new(None::<domain::tunnel::AccessToken>);
    let rotate = move |_| {
        leptos::task::spawn_local(async move {
            match rotate_access_token(id.get_value()).await {
                Ok(made) => {
                    outcome.set(None);
                    token.set(Some(made));
                }
                Err(e) => outcome.set(Some(Err(e.to_string()))),
            }
            refresh_live_parts();
        });
    };
    view! {
        <Show when=move || active.get()>
            <section class="panel">
                <h2>"Tunnel access token"</h2>
                <p class="muted">"For scripts, and for browsers where the tunnels' address is not this site's: opens this cluster's tunnels alone. A new one ends the one before."</p>
                <button class="btn btn-ghost" data-testid="rotate-access-token" on:click=rotate>"Make a new access token"</button>
                {move || token.get().map(|made| view! {
                    <div class="notice" data-testid="access-token">
                        <p>"Shown this once; copy it now: " <code data-testid="access-token-value">{made.token.clone()}</code></p>
                        <p class="muted">{format!("Send it as Authorization: Bearer {}…, or open a link below (the token is kept in a cookie for this cluster's tunnels).", &made.token[..8.min(made.token.len())])}</p>
                        <ul>{made.links.into_iter().map(|link| {
                            let href = link.url.clone();
                            view! { <li>{format!("{} on {}: ", link.what, link.device_id)}<a href=href rel="noopener noreferrer" target="_blank" data-testid="access-link">"open"</a></li> }
                        }).collect_view()}</ul>
                    </div>
                })}
            </section>
            <section class="panel">
                <h2>"Change"</h2>
                <form class="inline" on:submit=extend>
                    <input type="number" min="1" aria-label="How many more" data-testid="extend-count" prop:value=move || extend_count.get() on:input=move |ev| extend_count.set(event_target_value(&ev)) />
                    <select aria-label="Unit" data-testid="extend-unit" on:change=move |ev| if let Ok(u) = DurationUnit::parse(&event_target_value(&ev)) { extend_unit.set(u) }>
                        <option value="hourly">"hours"</option>
                        <option value="daily">"days"</option>
                        <option value="weekly">"weeks"</option>
                    </select>
                    <button class="btn btn-ghost" type="submit" data-testid="extend-cluster">"Extend (same devices)"</button>
                </form>
                <button class="btn btn-danger" data-testid="terminate-cluster" on:click=terminate>"Terminate now (unused time refunded)"</button>
            </section>
        </Show>
        {move || outcome.get().map(|result| match result {
            Ok(message) => view! { <p class="notice" data-testid="cluster-outcome">{message}</p> }.into_any(),
            Err(message) => view! { <p class="notice error" data-testid="cluster-outcome">{message}</p> }.into_any(),
        })}
    }
}

/// Whether the live part shows the cluster active (`data-cluster-active`), once rendered.
fn shown_active() -> Option<bool> {
    #[cfg(feature = "hydrate")]
    {
        let marked = document()
            .query_selector("[data-cluster-active]")
            .ok()
            .flatten()?;
        marked
            .get_attribute("data-cluster-active")
            .map(|value| value == "true")
    }
    #[cfg(not(feature = "hydrate"))]
    None
}

#[component]
fn ClusterView(c: ClusterWithChart) -> impl IntoView {
    let d = c.detail;
    let utilisation_chart = c.utilisation_chart;
    let output = output_by_device(c.output);
    let s = d.summary;
    let access = access_lines(s.kind, &d.workload, &d.tunnels, d.notebook_token.as_deref());
    let active = s.status.is_active().to_string();
    view! {
        <section class="hero" data-cluster-active=active>
            <h1 data-testid="cluster-name">{s.name.clone()}</h1>
            <p class="lede">
                <span class=format!("status status-{}", s.status.as_str()) data-testid="cluster-status">{s.status.as_str()}</span>
                " " <span data-testid="cluster-reason">{s.status_reason.clone()}</span>
            </p>
        </section>
        <section class="panel">
            <dl class="facts">
                <dt>"Id"</dt><dd><code>{s.id.clone()}</code></dd>
                <dt>"Kind"</dt><dd>{format!("{} ({})", s.kind, d.purpose)}</dd>
                <dt>"Hardware"</dt><dd data-testid="cluster-hardware">{format!("{} × {}", s.units, s.hardware)}</dd>
                <dt>"Countries"</dt><dd>{if d.countries.is_empty() { "anywhere".to_owned() } else { d.countries.join(", ") }}</dd>
                <dt>"Tier"</dt><dd>{d.min_tier.map_or("any measured".to_owned(), |t| format!("{t} or better"))}</dd>
                <dt>"Rate"</dt><dd data-testid="cluster-rate">{match d.token_price {
                    Some(price) => format!("{} per unit-hour, paid in GCT at {price}", d.rate_per_unit_hour),
                    None => format!("{} per unit-hour, paid in {}", d.rate_per_unit_hour, d.payment),
                }}</dd>
                <dt>"Paid hours"</dt><dd data-testid="cluster-hours">{s.hours}</dd>
                <dt>"Charged"</dt><dd data-testid="cluster-charged">{s.charged.to_string()}</dd>
                <dt>"Cost so far"</dt><dd data-testid="cluster-cost">{d.cost_so_far.to_string()}</dd>
                <dt>"Remaining"</dt><dd data-testid="cluster-remaining">{d.remaining.to_string()}</dd>
                <dt>"Running since"</dt><dd>{time_text(s.running_at)}</dd>
                <dt>"Paid until"</dt><dd data-testid="cluster-ends">{time_text(s.ends_at)}</dd>
            </dl>
        </section>
        <section class="panel">
            <h2>"Utilisation"</h2>
            <p class="muted">"Mean GPU and CPU use of the cluster's devices per hour, over 48 hours, from their agents' heartbeats."</p>
            <div class="chart" data-testid="cluster-utilisation-chart" inner_html=utilisation_chart></div>
        </section>
        <section class="panel">
            <h2>"Access"</h2>
            <p class="muted" data-testid="cluster-access-note">{format!(
                "Through the platform's tunnels: with the cluster's access token (its links open in any browser; Authorization: Bearer … for scripts), an API key, or signed in here where tunnels share this site's host. {} carried so far. {}",
                byte_text(d.tunnel_bytes),
                match d.access_token_made_at {
                    Some(at) => format!("Access token made {}.", time_text(Some(at))),
                    None => "No access token made.".to_owned(),
                }
            )}</p>
            <ul data-testid="cluster-access">{access.into_iter().map(|line| view! {
                <li>{format!("{}: ", line.what)}{if line.link {
                    let href = line.text.clone();
                    view! { <a href=href rel="noopener" target="_blank"><code>{line.text}</code></a> }.into_any()
                } else {
                    view! { <code>{line.text}</code> }.into_any()
                }}</li>
            }).collect_view()}</ul>
        </section>
        <section class="panel">
            <h2>"Output"</h2>
            <p class="muted">{format!("The last lines each device's workload printed (stdout and stderr), kept current while the page is open. All of them: GET /api/v1/cloud/clusters/{}/logs", s.id)}</p>
            {if output.is_empty() {
                view! { <p class="muted" data-testid="cluster-output-empty">"Nothing printed yet."</p> }.into_any()
            } else {
                output.into_iter().map(|(device, text)| view! {
                    <h3><code>{device.clone()}</code></h3>
                    <pre class="output" data-testid="cluster-output" data-device=device>{text}</pre>
                }).collect_view().into_any()
            }}
        </section>
        <section class="panel">
            <h2>"Devices"</h2>
            <table class="table" data-testid="cluster-devices">
                <thead><tr><th>"Device"</th><th>"Role"</th><th>"Units"</th><th>"Country"</th><th>"Tier"</th><th>"Device status"</th><th>"Workload"</th><th>"Joined"</th><th>"Left"</th></tr></thead>
                <tbody>
                    {d.members.into_iter().map(|m| view! {
                        <tr data-testid="cluster-device">
                            <td><code>{m.device_id}</code></td>
                            <td>{m.role.as_str()}</td>
                            <td>{m.units}</td>
                            <td>{m.country}</td>
                            <td>{m.tier.map_or("—", |t| t.as_str())}</td>
                            <td>{m.device_status.as_str()}</td>
                            <td data-testid="workload-state">{m.workload_state.as_str()}</td>
                            <td>{time_text(Some(m.joined_at))}</td>
                            <td>{time_text(m.left_at)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
        <section class="panel">
            <h2>"Timeline"</h2>
            <ol class="timeline" data-testid="cluster-timeline">
                {d.events.into_iter().map(|e| view! {
                    <li><time>{time_text(Some(e.at))}</time>" " {e.detail}</li>
                }).collect_view()}
            </ol>
        </section>
    }
}

/// Output lines (ordered by device, then line) as one text per device.
fn output_by_device(lines: Vec<domain::output::OutputLine>) -> Vec<(String, String)> {
    let mut devices: Vec<(String, String)> = Vec::new();
    for line in lines {
        match devices.last_mut() {
            Some((device, text)) if *device == line.device_id => {
                text.push('\n');
                text.push_str(&line.text);
            }
            _ => devices.push((line.device_id, line.text)),
        }
    }
    devices
}

/// One way into the cluster: what it is, and the address or command (a link when it is one).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Access {
    what: String,
    text: String,
    link: bool,
}

impl Access {
    fn new(what: impl Into<String>, text: impl Into<String>) -> Access {
        let text = text.into();
        Access {
            what: what.into(),
            link: text.starts_with("http://") || text.starts_with("https://"),
            text,
        }
    }
}

/// Bytes in the unit that reads best.
fn byte_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// How the renter reaches the cluster: each port its devices serve (the workload's, and on a
/// Ray head its dashboard and JupyterLab) through the platform's tunnels, which only the
/// renter can open, and the command each device runs. Nothing is reached at a provider's
/// address: the agents open the tunnels outwards.
fn access_lines(
    kind: ClusterKind,
    workload: &domain::cluster::Workload,
    tunnels: &[domain::tunnel::TunnelLink],
    notebook_token: Option<&str>,
) -> Vec<Access> {
    use domain::tunnel::RAY_DASHBOARD_PORT;
    let mut lines: Vec<Access> = tunnels
        .iter()
        .map(|t| {
            let what = format!("{} on {}", t.what, t.device_id);
            match (t.port, notebook_token) {
                (domain::agent_protocol::NOTEBOOK_PORT, Some(token)) => {
                    Access::new(what, format!("{}lab?token={token}", t.url))
                }
                _ => Access::new(what, t.url.clone()),
            }
        })
        .collect();
    if let Some(dashboard) = tunnels.iter().find(|t| t.port == RAY_DASHBOARD_PORT) {
        lines.push(Access::new(
            "Submit a job",
            format!(
                "ray job submit --address {} --headers '{{\"Authorization\": \"Bearer <your API key>\"}}' -- python job.py",
                dashboard.url.trim_end_matches('/')
            ),
        ));
    }
    if kind.runtime() == domain::cluster::Runtime::Ray && tunnels.is_empty() {
        lines.push(Access::new(
            "Ray dashboard",
            "reached through the platform's tunnel while the cluster runs",
        ));
    }
    if !workload.command.is_empty() {
        lines.push(Access::new("Each device runs", workload.command.clone()));
    }
    if lines.is_empty() {
        lines.push(Access::new(
            "Devices",
            "held for you; each agent reports its state here",
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::cluster::{ClusterRole, Workload};

    #[test]
    fn every_way_in_is_a_tunnel_and_the_notebook_link_carries_its_token() {
        let members = [
            ("dev-head", ClusterRole::Head),
            ("dev-w1", ClusterRole::Worker),
        ];
        let workload = Workload {
            port: Some(8000),
            ..Workload::default()
        };
        let origin = domain::tunnel::TunnelOrigin::new(
            "https",
            "t.example",
            None,
            Some(domain::tunnel::TunnelHosts::Shared),
        )
        .unwrap();
        let tunnels = domain::tunnel::links(&origin, "cl-1", ClusterKind::Ray, &workload, &members);
        let lines = access_lines(ClusterKind::Ray, &workload, &tunnels, Some("t0k"));
        let shown: Vec<(&str, &str, bool)> = lines
            .iter()
            .map(|l| (l.what.as_str(), l.text.as_str(), l.link))
            .collect();
        assert_eq!(
            shown,
            [
                ("Ray dashboard and job API on dev-head", "https://t.example/c/cl-1/dev-head/8265/", true),
                ("JupyterLab on dev-head", "https://t.example/c/cl-1/dev-head/8888/lab?token=t0k", true),
                ("Port 8000 on dev-head", "https://t.example/c/cl-1/dev-head/8000/", true),
                ("Port 8000 on dev-w1", "https://t.example/c/cl-1/dev-w1/8000/", true),
                (
                    "Submit a job",
                    "ray job submit --address https://t.example/c/cl-1/dev-head/8265 --headers '{\"Authorization\": \"Bearer <your API key>\"}' -- python job.py",
                    false
                ),
            ]
        );
        let held = access_lines(ClusterKind::BareMetal, &Workload::default(), &[], None);
        assert_eq!(held[0].what, "Devices");
        assert_eq!(byte_text(512), "512 B");
        assert_eq!(byte_text(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
