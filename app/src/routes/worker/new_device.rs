//! `/worker/devices/new`: name, OS, kind and country in; a device id and the one-line agent
//! command with its single-use token out, shown once, with a copy button. The fields are
//! rendered on the server; the island around them sends them and shows the ticket.

use domain::fleet::{DeviceKind, OperatingSystem};
use domain::worker::{RegistrationTicket, MAX_DEVICE_NAME_CHARS};
use leptos::prelude::*;
use leptos_meta::Title;

use leptos::server_fn::ServerFn;

use crate::functions::worker::{add_device, AddDevice};

#[component]
pub fn NewDevicePage() -> impl IntoView {
    let mut countries: Vec<(String, String)> = domain::country::all()
        .into_iter()
        .map(|c| (c.code, c.name))
        .collect();
    countries.sort_by(|a, b| a.1.cmp(&b.1));
    view! {
        <Title text="Add a device" />
        <section class="hero">
            <h1>"Add a device"</h1>
            <p class="lede">"Describe the machine, then run the command we give you on it. The agent detects the hardware, measures the connection and proves the GPUs with a short computation; the device is rentable once it passes, usually within minutes."</p>
        </section>
        <section class="panel">
            <NewDeviceForm>
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
            </NewDeviceForm>
        </section>
    }
}

/// The form around the fields the server rendered (`children`), then the ticket it gets: the
/// device id and the agent command, shown once. Without JavaScript the form posts to the server
/// function itself.
#[island]
fn NewDeviceForm(children: Children) -> impl IntoView {
    let ticket = RwSignal::new(None::<RegistrationTicket>);
    let error = RwSignal::new(None::<String>);
    let pending = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some([name, os, kind, country]) = form_values(&ev, ["name", "os", "kind", "country"])
        else {
            return;
        };
        pending.set(true);
        leptos::task::spawn_local(async move {
            match add_device(name, os, kind, country).await {
                Ok(made) => ticket.set(Some(made)),
                Err(e) => error.set(Some(e.to_string())),
            }
            pending.set(false);
        });
    };
    view! {
        // Hidden, not removed, once the ticket shows: the fields are the server's HTML.
        <form class="form" method="post" action=AddDevice::url() data-testid="new-device-form" on:submit=submit
            style:display=move || if ticket.with(Option::is_some) { "none" } else { "" }>
            {children()}
            <button class="btn btn-primary" type="submit" data-testid="create-device" disabled=move || pending.get()>
                {move || if pending.get() { "Creating…" } else { "Get the agent command" }}
            </button>
        </form>
        {move || error.get().map(|e| view! { <p class="notice error" data-testid="new-device-error">{e}</p> })}
        {move || ticket.get().map(|ticket| view! { <Ticket ticket /> })}
    }
}

/// The values of the submitted form's fields `names`, in order (None outside the browser).
fn form_values<const N: usize>(
    event: &leptos::ev::SubmitEvent,
    names: [&str; N],
) -> Option<[String; N]> {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let form: web_sys::HtmlFormElement = event.target()?.dyn_into().ok()?;
        let data = web_sys::FormData::new_with_form(&form).ok()?;
        Some(names.map(|name| data.get(name).as_string().unwrap_or_default()))
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (event, names);
        None
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
            <pre class="command"><code data-testid="agent-command">{ticket.command.clone()}</code></pre>
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
            {(ticket.run_command != ticket.command).then(|| view! {
                <p class="muted">
                    "The script downloads the agent, checks its SHA-256, keeps the token in a file only root reads, and installs the "
                    <code>"gpu-commons-agent"</code>" systemd service (or says how to start the agent without systemd). The agent then keeps itself up to date. If the agent is installed already, run instead:"
                </p>
                <pre class="command"><code data-testid="agent-run-command">{ticket.run_command.clone()}</code></pre>
            })}
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
