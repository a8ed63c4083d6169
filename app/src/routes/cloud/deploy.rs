//! `/cloud/deploy`: the deploy wizard. Every field is checked in the browser by the same
//! `domain` code the server runs; every change re-asks the live quote (price lines and whether
//! the exact request can be placed now, why not, and the nearest requests that can).

use domain::catalog::GpuCatalog;
use domain::cluster::{
    parse_env_lines, ClusterKind, DeployRequest, DurationUnit, FieldError, PaymentMethod, Purpose,
    QuoteAnswer, SecurityCompliance, Workload,
};
use domain::fleet::ConnectivityTier;
use domain::money::TokenPrice;
use domain::pricing;
use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::supply::ErrorNote;
use crate::functions::cloud::{
    cluster_name_available, deploy_cluster, load_deploy_options, offered_token_price, quote_deploy,
};
use crate::routes::{go_to, new_idempotency_key};

/// The wizard's fields as typed; [`Form::request`] turns them into a request.
#[derive(Clone, Copy)]
struct Form {
    kind: RwSignal<ClusterKind>,
    purpose: RwSignal<Purpose>,
    name: RwSignal<String>,
    compliance: RwSignal<SecurityCompliance>,
    hardware: RwSignal<String>,
    quantity: RwSignal<String>,
    countries: RwSignal<Vec<String>>,
    min_tier: RwSignal<Option<ConnectivityTier>>,
    duration_unit: RwSignal<DurationUnit>,
    duration_count: RwSignal<String>,
    payment: RwSignal<PaymentMethod>,
    image: RwSignal<String>,
    command: RwSignal<String>,
    port: RwSignal<String>,
    env: RwSignal<String>,
}

impl Form {
    fn new() -> Form {
        Form {
            kind: RwSignal::new(ClusterKind::Ray),
            purpose: RwSignal::new(Purpose::General),
            name: RwSignal::new(String::new()),
            compliance: RwSignal::new(SecurityCompliance::E2eEncrypted),
            hardware: RwSignal::new(String::new()),
            quantity: RwSignal::new("1".into()),
            countries: RwSignal::new(Vec::new()),
            min_tier: RwSignal::new(None),
            duration_unit: RwSignal::new(DurationUnit::Hourly),
            duration_count: RwSignal::new("1".into()),
            payment: RwSignal::new(PaymentMethod::Usdc),
            image: RwSignal::new(String::new()),
            command: RwSignal::new(String::new()),
            port: RwSignal::new(String::new()),
            env: RwSignal::new(String::new()),
        }
    }

    /// The request, or every field's problem (the numbers and env lines parsed here, the
    /// rest by `DeployRequest::validate`).
    fn request(&self, catalog: &GpuCatalog) -> Result<DeployRequest, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut number = |field: &str, text: String| -> u32 {
            text.trim().parse().unwrap_or_else(|_| {
                errors.push(FieldError {
                    field: field.into(),
                    message: "enter a whole number".into(),
                });
                0
            })
        };
        let quantity = number("quantity", self.quantity.get());
        let duration_count = number("duration_count", self.duration_count.get());
        let port = self.port.get();
        let port = match port.trim() {
            "" => None,
            text => text.parse().map(Some).unwrap_or_else(|_| {
                errors.push(FieldError {
                    field: "workload.port".into(),
                    message: "a port is 1–65535".into(),
                });
                None
            }),
        };
        let env = parse_env_lines(&self.env.get()).unwrap_or_else(|message| {
            errors.push(FieldError {
                field: "workload.env".into(),
                message,
            });
            Default::default()
        });
        let request = DeployRequest {
            name: self.name.get(),
            kind: self.kind.get(),
            purpose: self.purpose.get(),
            hardware: self.hardware.get(),
            quantity,
            countries: self.countries.get(),
            min_tier: self.min_tier.get(),
            compliance: self.compliance.get(),
            duration_unit: self.duration_unit.get(),
            duration_count,
            payment: self.payment.get(),
            workload: Workload {
                image: self.image.get(),
                command: self.command.get(),
                port,
                env,
            },
        };
        if let Err(more) = request.validate(catalog) {
            // A number that did not parse is already named.
            let more: Vec<FieldError> = more
                .into_iter()
                .filter(|e| !errors.iter().any(|named| named.field == e.field))
                .collect();
            errors.extend(more);
        }
        if errors.is_empty() {
            Ok(request)
        } else {
            Err(errors)
        }
    }
}

#[component]
pub fn DeployPage() -> impl IntoView {
    view! {
        <Title text="Deploy a cluster" />
        <section class="hero">
            <h1>"Deploy a cluster"</h1>
            <p class="lede">"Choose what you need; the price and whether it can be placed right now update as you go. You pay from your balance only when the devices are hired."</p>
        </section>
        // The token price is the server's setting, handed to the wizard as it renders (not in
        // a Suspense: the wizard's own resources must be the page's outermost suspense).
        <DeployWizard token_price=offered_token_price() />
    }
}

/// `token_price`: what clusters paid in the network token are paid at; none: USDC only.
#[island]
fn DeployWizard(token_price: Option<TokenPrice>) -> impl IntoView {
    let catalog = StoredValue::new(GpuCatalog::builtin());
    let form = Form::new();
    let request = Memo::new(move |_| catalog.with_value(|c| form.request(c)));
    let options = Resource::new(move || form.hardware.get(), load_deploy_options);
    // The first offer (most free units) is the default choice.
    Effect::new(move |_| {
        if form.hardware.with_untracked(String::is_empty) {
            if let Some(Ok(o)) = options.get() {
                if let Some(first) = o.hardware.first() {
                    form.hardware.set(first.hardware.clone());
                }
            }
        }
    });
    let quote = Resource::new(
        move || request.get().ok(),
        |request| async move {
            match request {
                Some(request) => Some(quote_deploy(request).await),
                None => None,
            }
        },
    );
    let name_free = Resource::new(
        move || form.name.get(),
        |name| async move {
            if domain::cluster::parse_cluster_name(&name).is_err() {
                return None;
            }
            cluster_name_available(name).await.ok()
        },
    );
    let key = StoredValue::new(String::new());
    let deploying = RwSignal::new(false);
    let outcome = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Ok(request) = request.get_untracked() else {
            outcome.set(Some("fix the fields marked below first".into()));
            return;
        };
        if key.with_value(String::is_empty) {
            key.set_value(new_idempotency_key());
        }
        let idempotency_key = key.get_value();
        deploying.set(true);
        leptos::task::spawn_local(async move {
            match deploy_cluster(request, idempotency_key).await {
                Ok(cluster) => go_to(&format!("/cloud/clusters/{}", cluster.id)),
                Err(e) => {
                    outcome.set(Some(e.to_string()));
                    deploying.set(false);
                }
            }
        });
    };
    let problem = move |field: &'static str| {
        move || {
            request.with(|r| match r {
                Err(errors) => errors
                    .iter()
                    .filter(|e| e.field == field)
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
                Ok(_) => String::new(),
            })
        }
    };
    let field_error = move |field: &'static str| {
        view! { <span class="field-error" data-testid=format!("error-{field}")>{problem(field)}</span> }
    };
    view! {
        <form class="wizard" on:submit=submit data-testid="deploy-form">
            <fieldset class="panel">
                <legend>"1. Cluster"</legend>
                <label>"Kind"
                    <select data-testid="deploy-kind" on:change=move |ev| if let Ok(k) = ClusterKind::parse(&event_target_value(&ev)) { form.kind.set(k) }>
                        {ClusterKind::offered().map(|k| view! { <option value=k.as_str() selected=k == ClusterKind::Ray>{k.label()}</option> }).collect_view()}
                    </select>
                </label>
                <label>"Purpose"
                    <select data-testid="deploy-purpose" on:change=move |ev| if let Ok(p) = Purpose::parse(&event_target_value(&ev)) { form.purpose.set(p) }>
                        {Purpose::ALL.iter().map(|p| view! { <option value=p.as_str()>{p.as_str()}</option> }).collect_view()}
                    </select>
                </label>
                <label>"Name"
                    <input data-testid="deploy-name" placeholder="llama-finetune" prop:value=move || form.name.get() on:input=move |ev| form.name.set(event_target_value(&ev)) />
                    {field_error("name")}
                    <Transition fallback=|| ()>
                        {move || name_free.get().flatten().map(|free| if free {
                            view! { <span class="field-ok" data-testid="name-free">"available"</span> }.into_any()
                        } else {
                            view! { <span class="field-error" data-testid="name-taken">"you already have a cluster with this name"</span> }.into_any()
                        })}
                    </Transition>
                </label>
                <label>"Security compliance"
                    <select data-testid="deploy-compliance" on:change=move |ev| if let Ok(c) = SecurityCompliance::parse(&event_target_value(&ev)) { form.compliance.set(c) }>
                        {SecurityCompliance::ALL.iter().map(|c| view! { <option value=c.as_str()>{c.label()}</option> }).collect_view()}
                    </select>
                </label>
            </fieldset>
            <fieldset class="panel">
                <legend>"2. Hardware and place"</legend>
                <Transition fallback=|| view! { <p class="muted">"Loading supply…"</p> }>
                    {move || options.get().map(|result| match result {
                        Ok(o) => view! { <Supply options=o form /> }.into_any(),
                        Err(error) => view! { <ErrorNote error /> }.into_any(),
                    })}
                </Transition>
                {field_error("hardware")}
                <label>"Quantity (GPUs, or CPU devices)"
                    <input type="number" min="1" data-testid="deploy-quantity" prop:value=move || form.quantity.get() on:input=move |ev| form.quantity.set(event_target_value(&ev)) />
                    {field_error("quantity")}
                </label>
                {field_error("countries")}
                <label>"Connectivity tier (at least)"
                    <select data-testid="deploy-tier" on:change=move |ev| form.min_tier.set(ConnectivityTier::parse(&event_target_value(&ev)).ok())>
                        <option value="">"any measured tier"</option>
                        {ConnectivityTier::ALL.iter().map(|t| view! { <option value=t.as_str()>{t.as_str()}</option> }).collect_view()}
                    </select>
                </label>
            </fieldset>
            <fieldset class="panel">
                <legend>"3. Duration and payment"</legend>
                <label>"Duration"
                    <span class="inline">
                        <input type="number" min="1" data-testid="deploy-duration-count" prop:value=move || form.duration_count.get() on:input=move |ev| form.duration_count.set(event_target_value(&ev)) />
                        <select data-testid="deploy-duration-unit" on:change=move |ev| if let Ok(u) = DurationUnit::parse(&event_target_value(&ev)) { form.duration_unit.set(u) }>
                            {DurationUnit::ALL.iter().map(|u| view! { <option value=u.as_str()>{unit_label(*u)}</option> }).collect_view()}
                        </select>
                    </span>
                    {field_error("duration_count")}
                </label>
                <label>"Pay with"
                    <select data-testid="deploy-payment" on:change=move |ev| if let Ok(p) = PaymentMethod::parse(&event_target_value(&ev)) { form.payment.set(p) }>
                        <option value="usdc">{format!("USDC balance ({} fee)", pricing::percent_text(pricing::USDC_FEE_BPS))}</option>
                        <option value="token" disabled=token_price.is_none()>{match token_price {
                            Some(price) => format!("GCT token balance at {price} (no fee)"),
                            None => "GCT token (not offered here)".to_owned(),
                        }}</option>
                    </select>
                </label>
            </fieldset>
            <fieldset class="panel">
                <legend>"4. Workload"</legend>
                <label>"Container image (container clusters)"
                    <input data-testid="deploy-image" placeholder="ghcr.io/org/trainer:1.2" prop:value=move || form.image.get() on:input=move |ev| form.image.set(event_target_value(&ev)) />
                    {field_error("workload.image")}
                </label>
                <label>"Command (run on every device; empty holds the devices for you)"
                    <textarea data-testid="deploy-command" rows="2" prop:value=move || form.command.get() on:input=move |ev| form.command.set(event_target_value(&ev))></textarea>
                    {field_error("workload.command")}
                </label>
                <label>"Port (listen on 0.0.0.0, as in a container; reached through the platform's tunnel)"
                    <input data-testid="deploy-port" placeholder="8888" prop:value=move || form.port.get() on:input=move |ev| form.port.set(event_target_value(&ev)) />
                    {field_error("workload.port")}
                </label>
                <label>"Environment (KEY=value, one a line)"
                    <textarea data-testid="deploy-env" rows="2" prop:value=move || form.env.get() on:input=move |ev| form.env.set(event_target_value(&ev))></textarea>
                    {field_error("workload.env")}
                </label>
            </fieldset>
            <section class="panel quote" data-testid="quote">
                <h2>"Quote"</h2>
                <Transition fallback=|| view! { <p class="muted">"Pricing…"</p> }>
                    {move || match quote.get() {
                        Some(Some(Ok(answer))) => {
                            let unit = if form.hardware.get_untracked() == "cpu" { "device" } else { "GPU" };
                            view! { <QuoteView answer unit /> }.into_any()
                        }
                        Some(Some(Err(error))) => view! { <ErrorNote error /> }.into_any(),
                        _ => view! { <p class="muted" data-testid="quote-waiting">"Complete the fields above for a price."</p> }.into_any(),
                    }}
                </Transition>
                <button class="btn btn-primary" type="submit" data-testid="deploy-submit" disabled=move || deploying.get() || request.with(Result::is_err)>
                    {move || if deploying.get() { "Deploying…" } else { "Pay and deploy" }}
                </button>
                {move || outcome.get().map(|message| view! { <p class="notice error" data-testid="deploy-error">{message}</p> })}
            </section>
        </form>
    }
}

/// The hardware choice and the searchable country multi-select, with live free supply.
#[component]
fn Supply(options: domain::cluster::DeployOptions, form: Form) -> impl IntoView {
    let search = RwSignal::new(String::new());
    let supply = StoredValue::new(options.countries);
    // The first 40 countries that match the search, free supply first. ASCII case folding is
    // enough for names typed to find a country (and keeps Unicode tables out of the bundle).
    let shown = move || {
        let needle = search.get().trim().to_ascii_lowercase();
        supply.with_value(|all| {
            all.iter()
                .filter(|c| {
                    needle.is_empty()
                        || c.name.to_ascii_lowercase().contains(&needle)
                        || c.code.eq_ignore_ascii_case(&needle)
                })
                .take(40)
                .map(|c| (c.code.clone(), c.name.clone(), c.free_units))
                .collect::<Vec<_>>()
        })
    };
    let toggle = move |code: String| {
        form.countries.update(|list| {
            if let Some(at) = list.iter().position(|c| *c == code) {
                list.remove(at);
            } else {
                list.push(code);
            }
        })
    };
    view! {
        <label>"Hardware"
            <select data-testid="deploy-hardware" prop:value=move || form.hardware.get() on:change=move |ev| form.hardware.set(event_target_value(&ev))>
                {options.hardware.into_iter().map(|offer| {
                    let label = format!(
                        "{} — {} free at {}/{}-hour",
                        offer.hardware, offer.free_units, offer.rate_per_unit_hour,
                        if offer.hardware == "cpu" { "device" } else { "GPU" }
                    );
                    view! { <option value=offer.hardware.clone()>{label}</option> }
                }).collect_view()}
            </select>
        </label>
        <div class="countries">
            <span>"Countries (none chosen: anywhere) "</span>
            <span class="chips" data-testid="chosen-countries">
                {move || form.countries.get().into_iter().map(|code| {
                    let remove = code.clone();
                    view! { <button type="button" class="chip" on:click=move |_| toggle(remove.clone())>{code}" ×"</button> }
                }).collect_view()}
            </span>
            <input type="search" placeholder="search countries" data-testid="country-search" prop:value=move || search.get() on:input=move |ev| search.set(event_target_value(&ev)) />
            <ul class="country-list" data-testid="country-list">
                {move || shown().into_iter().map(|(code, name, free)| {
                    let checked = form.countries.with(|c| c.contains(&code));
                    let flip = code.clone();
                    view! {
                        <li>
                            <label class="check">
                                <input type="checkbox" data-testid=format!("country-{code}") prop:checked=checked on:change=move |_| toggle(flip.clone()) />
                                {format!("{name} ({code}) — {free} free")}
                            </label>
                        </li>
                    }
                }).collect_view()}
            </ul>
        </div>
    }
}

#[component]
fn QuoteView(answer: QuoteAnswer, unit: &'static str) -> impl IntoView {
    let q = answer.quote;
    let f = answer.fillability;
    view! {
        <table class="table quote-lines">
            <tbody>
                <tr><td>{format!("Rate per {unit}-hour")}</td><td data-testid="quote-rate">{q.rate_per_unit_hour.to_string()}</td></tr>
                <tr><td>{format!("{unit}-hours")}</td><td data-testid="quote-unit-hours">{format!("{} × {} h = {}", q.units, q.hours, q.unit_hours)}</td></tr>
                <tr><td>"Subtotal"</td><td>{q.subtotal.to_string()}</td></tr>
                <tr><td>{format!("Discount ({}.{:02}%)", q.discount_bps / 100, q.discount_bps % 100)}</td><td>{format!("−{}", q.discount)}</td></tr>
                <tr><td>{format!("Reservation fee ({})", pricing::percent_text(pricing::RESERVATION_FEE_BPS))}</td><td>{q.reservation_fee.to_string()}</td></tr>
                <tr><td>{format!("Payment fee ({})", if q.payment == PaymentMethod::Usdc { format!("{} USDC", pricing::percent_text(pricing::USDC_FEE_BPS)) } else { "0% token".to_owned() })}</td><td>{q.payment_fee.to_string()}</td></tr>
                <tr class="total"><td>"Total"</td><td data-testid="quote-total">{q.total.to_string()}</td></tr>
                {q.in_tokens.map(|t| view! {
                    <tr class="total"><td>{format!("Paid in GCT at {}", t.price)}</td><td data-testid="quote-total-tokens">{t.tokens.to_string()}</td></tr>
                })}
            </tbody>
        </table>
        {if f.fillable {
            view! { <p class="notice ok" data-testid="fillable">{format!("Can be placed now: {} units free that match every filter.", f.placeable)}</p> }.into_any()
        } else {
            view! {
                <div class="notice error" data-testid="not-fillable">
                    <p>"Cannot be placed right now:"</p>
                    <ul>{f.reasons.into_iter().map(|r| view! { <li>{r}</li> }).collect_view()}</ul>
                    {(!f.alternatives.is_empty()).then(|| view! {
                        <p>"What can be placed now:"</p>
                        <ul data-testid="alternatives">{f.alternatives.into_iter().map(|a| view! { <li>{a.description}</li> }).collect_view()}</ul>
                    })}
                </div>
            }.into_any()
        }}
    }
}

fn unit_label(unit: DurationUnit) -> &'static str {
    match unit {
        DurationUnit::Hourly => "hours",
        DurationUnit::Daily => "days",
        DurationUnit::Weekly => "weeks",
    }
}
