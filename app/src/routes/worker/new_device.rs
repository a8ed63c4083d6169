//! `/worker/devices/new`: name, OS, kind and country in; a device id and the one-line agent
//! command with its single-use token out, shown once, with a copy button.

use domain::fleet::{DeviceKind, OperatingSystem};
use domain::worker::{RegistrationTicket, MAX_DEVICE_NAME_CHARS};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;

use crate::functions::worker::AddDevice;

#[component]
pub fn NewDevicePage() -> impl IntoView {
    view! {
        <Title text="Add a device" />
        <section class="hero">
            <h1>"Add a device"</h1>
            <p class="lede">"Describe the machine, then run the command we give you on it. The agent detects the hardware, measures the connection and proves the GPUs with a short computation; the device is rentable once it passes, usually within minutes."</p>
        </section>
        <NewDeviceForm />
    }
}

/// The form, then the ticket it gets: the device id and the agent command, shown once.
#[island]
fn NewDeviceForm() -> impl IntoView {
    let add = ServerAction::<AddDevice>::new();
    let mut countries: Vec<(String, String)> = domain::country::all()
        .into_iter()
        .map(|c| (c.code, c.name))
        .collect();
    countries.sort_by(|a, b| a.1.cmp(&b.1));
    view! {
        <section class="panel">
            {move || match add.value().get() {
                Some(Ok(ticket)) => view! { <Ticket ticket /> }.into_any(),
                outcome => {
                    let error = outcome.and_then(Result::err);
                    let countries = countries.clone();
                    view! {
                        <ActionForm action=add attr:class="form" attr:data-testid="new-device-form">
                            <label>"Device name"
                                <input name="name" required maxlength=MAX_DEVICE_NAME_CHARS placeholder="rack-3-node-7" data-testid="device-name" />
                            </label>
                            <label>"Operating system"
                                <select name="os" data-testid="device-os">
                                    {OperatingSystem::ALL.iter().map(|os| view! { <option value=os.as_str()>{os_label(*os)}</option> }).collect_view()}
                                </select>
                            </label>
                            <label>"Kind"
                                <select name="kind" data-testid="device-kind">
                                    {DeviceKind::ALL.iter().map(|k| view! { <option value=k.as_str()>{kind_label(*k)}</option> }).collect_view()}
                                </select>
                            </label>
                            <label>"Country"
                                <select name="country" data-testid="device-country">
                                    {countries.into_iter().map(|(code, name)| {
                                        let selected = code == "US";
                                        view! { <option value=code selected=selected>{name}</option> }
                                    }).collect_view()}
                                </select>
                            </label>
                            <button class="btn btn-primary" type="submit" data-testid="create-device" disabled=move || add.pending().get()>
                                {move || if add.pending().get() { "Creating…" } else { "Get the agent command" }}
                            </button>
                        </ActionForm>
                        {error.map(|e| view! { <p class="notice error" data-testid="new-device-error">{e.to_string()}</p> })}
                    }.into_any()
                }
            }}
        </section>
    }
}

fn os_label(os: OperatingSystem) -> &'static str {
    match os {
        OperatingSystem::Linux => "Linux",
        OperatingSystem::Windows => "Windows",
        OperatingSystem::MacOs => "macOS",
    }
}

fn kind_label(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Gpu => "GPU machine",
        DeviceKind::Cpu => "CPU only",
    }
}

#[component]
fn Ticket(ticket: RegistrationTicket) -> impl IntoView {
    let copied = RwSignal::new(None::<bool>);
    let command = ticket.command.clone();
    let copy = move |_| {
        let command = command.clone();
        leptos::task::spawn_local(async move {
            copied.set(Some(copy_text(&command).await));
        });
    };
    view! {
        <div class="ticket" data-testid="registration-ticket">
            <p>"Device " <code data-testid="new-device-id">{ticket.device_id.clone()}</code> " is reserved. On that machine, run:"</p>
            <pre class="command"><code data-testid="agent-command">{ticket.command}</code></pre>
            <button class="btn" data-testid="copy-command" on:click=copy>
                {move || match copied.get() {
                    None => "Copy command",
                    Some(true) => "Copied",
                    Some(false) => "Could not copy: select the command instead",
                }}
            </button>
            <p class="muted">
                "The token in this command works once and expires at " {ticket.expires_at.to_rfc3339()}
                ". Only its hash is stored, so it cannot be shown again; if it expires, add the device again."
            </p>
            <p><a href=format!("/worker/devices/{}", ticket.device_id) data-testid="watch-device">"Watch this device"</a></p>
        </div>
    }
}

/// Puts `text` on the clipboard; false where the browser refuses (no permission, no clipboard).
async fn copy_text(text: &str) -> bool {
    #[cfg(feature = "hydrate")]
    {
        let Some(window) = web_sys::window() else {
            return false;
        };
        let promise = window.navigator().clipboard().write_text(text);
        wasm_bindgen_futures::JsFuture::from(promise).await.is_ok()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = text;
        false
    }
}
