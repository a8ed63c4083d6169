//! `/cloud/clusters/:id`: one of the renter's clusters: status and why, devices and what
//! their agents report, the timeline (payments, starts, losses and replacements, refunds),
//! cost so far and what terminating now would return, access, extend and terminate.

use std::time::Duration;

use domain::cluster::{ClusterKind, DurationUnit};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::components::supply::ErrorNote;
use crate::errors::AppError;
use crate::functions::cloud::{extend_cluster, load_cluster, terminate_cluster, ClusterWithChart};
use crate::routes::cloud::time_text;
use crate::routes::set_page_status;

/// How often an open cluster page re-reads the cluster.
const REFRESH: Duration = Duration::from_secs(2);

#[component]
pub fn ClusterPage() -> impl IntoView {
    let id = use_params_map()
        .read_untracked()
        .get("id")
        .unwrap_or_default();
    view! {
        <Title text="Cluster" />
        <ClusterConsole id />
    }
}

/// The cluster, re-read every few seconds while the page is open, with its actions.
#[island]
fn ClusterConsole(id: String) -> impl IntoView {
    let id = StoredValue::new(id);
    let id = move || id.get_value();
    let version = RwSignal::new(0u32);
    let detail = Resource::new(move || (id(), version.get()), |(id, _)| load_cluster(id));
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(move || version.update(|v| *v += 1), REFRESH) {
            on_cleanup(move || handle.clear());
        }
    });
    let outcome = RwSignal::new(None::<Result<String, String>>);
    // Outside the refreshing part, so the choice is kept while the page updates.
    let extend_count = RwSignal::new("1".to_owned());
    let extend_unit = RwSignal::new(DurationUnit::Hourly);
    let extend_key = StoredValue::new(0u32);
    let extend = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Ok(count) = extend_count.get_untracked().trim().parse::<u32>() else {
            outcome.set(Some(Err(
                "enter a whole number of hours, days or weeks".into()
            )));
            return;
        };
        // One key per click: a retry of the same click would charge once.
        extend_key.update_value(|k| *k += 1);
        let key = format!(
            "{}-{}-{}",
            id(),
            version.get_untracked(),
            extend_key.get_value()
        );
        let id = id();
        leptos::task::spawn_local(async move {
            let result = extend_cluster(id, extend_unit.get_untracked(), count, key).await;
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
            version.update(|v| *v += 1);
        });
    };
    let terminate = move |_| {
        let id = id();
        leptos::task::spawn_local(async move {
            let result = terminate_cluster(id).await;
            outcome.set(Some(
                result
                    .map(|c| format!("terminated: {}", c.status_reason))
                    .map_err(|e| e.to_string()),
            ));
            version.update(|v| *v += 1);
        });
    };
    let active = move || {
        detail
            .get()
            .and_then(Result::ok)
            .is_some_and(|c| c.detail.summary.status.is_active())
    };
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading the cluster…"</p> }>
            {move || detail.get().map(|result| match result {
                Ok(c) => view! { <ClusterView c /> }.into_any(),
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
        <Transition fallback=|| ()>
            <Show when=active>
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
        </Transition>
        {move || outcome.get().map(|result| match result {
            Ok(message) => view! { <p class="notice" data-testid="cluster-outcome">{message}</p> }.into_any(),
            Err(message) => view! { <p class="notice error" data-testid="cluster-outcome">{message}</p> }.into_any(),
        })}
    }
}

#[component]
fn ClusterView(c: ClusterWithChart) -> impl IntoView {
    let d = c.detail;
    let utilisation_chart = c.utilisation_chart;
    let s = d.summary;
    let access = access_lines(s.kind, &d.workload, &d.members);
    view! {
        <section class="hero">
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
                <dt>"Rate"</dt><dd>{format!("{} per unit-hour, paid in {}", d.rate_per_unit_hour, d.payment)}</dd>
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
            <ul data-testid="cluster-access">{access.into_iter().map(|line| view! { <li><code>{line}</code></li> }).collect_view()}</ul>
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
                            <td data-testid="workload-state">{m.workload_state}</td>
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

/// How the renter reaches the cluster: the head's Ray dashboard or API server, the
/// container's port, and the command each device runs.
fn access_lines(
    kind: ClusterKind,
    workload: &domain::cluster::Workload,
    members: &[domain::cluster::ClusterMember],
) -> Vec<String> {
    let head = members
        .iter()
        .find(|m| m.left_at.is_none() && m.role == domain::cluster::ClusterRole::Head)
        .map(|m| m.device_id.clone());
    let mut lines = Vec::new();
    match (kind, head) {
        (ClusterKind::Ray | ClusterKind::MegaRay, Some(head)) => {
            lines.push(format!("Ray dashboard: port 8265 on head device {head}"));
            lines.push(format!(
                "ray job submit --address http://<{head}>:8265 -- python job.py"
            ));
        }
        (ClusterKind::Kubernetes, Some(head)) => {
            lines.push(format!(
                "Kubernetes API server: port 6443 on head device {head}"
            ));
        }
        _ => {}
    }
    if let Some(port) = workload.port {
        lines.push(format!("Service port {port} on every device"));
    }
    if !workload.command.is_empty() {
        lines.push(format!("Each device runs: {}", workload.command));
    }
    if lines.is_empty() {
        lines.push("The devices are held for you; each agent reports its state here.".into());
    }
    lines
}
