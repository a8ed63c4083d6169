//! Server-rendered parts of a page that stay current without shipping their rendering code to
//! the browser. An element marked `data-live="<name>"` is replaced by the element of the same
//! name from a fresh copy of the page: every few seconds, and whenever an island asks (after an
//! action changed what it shows). Live parts hold no islands (a replaced island would stop
//! working): their buttons are plain, and an island handles their clicks from the window.

use leptos::prelude::*;

/// The DOM event (on `window`) that has the live parts re-read now.
#[cfg(feature = "hydrate")]
const REFRESH_EVENT: &str = "gc-refresh";
/// The DOM event (on `window`) sent after the live parts were replaced.
pub const REFRESHED_EVENT: &str = "gc-refreshed";

/// Keeps every `[data-live]` part of the page current: re-reads the page every `every_ms`
/// milliseconds (0: only when asked with [`refresh_live_parts`]), and with `while_present`
/// (a CSS selector) only while something on the page matches it.
#[island]
pub fn LiveRefresh(
    every_ms: u32,
    #[prop(optional)] while_present: Option<String>,
) -> impl IntoView {
    #[cfg(feature = "hydrate")]
    browser::start(every_ms, while_present);
    #[cfg(not(feature = "hydrate"))]
    let _ = (every_ms, while_present);
}

/// Has the page's live parts re-read now.
pub fn refresh_live_parts() {
    #[cfg(feature = "hydrate")]
    if let Ok(event) = web_sys::Event::new(REFRESH_EVENT) {
        let _ = window().dispatch_event(&event);
    }
}

/// Calls `on_click` with the value of `attribute` of the element clicked (or its closest
/// ancestor having it), for buttons inside live parts.
pub fn on_marked_click(attribute: &'static str, on_click: impl Fn(String) + 'static) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let handle = window_event_listener(leptos::ev::click, move |event| {
            let marked = event
                .target()
                .and_then(|target| target.dyn_into::<web_sys::Element>().ok())
                .and_then(|element| element.closest(&format!("[{attribute}]")).ok().flatten())
                .and_then(|element| element.get_attribute(attribute));
            if let Some(value) = marked {
                on_click(value);
            }
        });
        on_cleanup(move || handle.remove());
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (attribute, on_click);
}

/// Calls `on_refreshed` each time the live parts were replaced.
pub fn on_live_refreshed(on_refreshed: impl Fn() + 'static) {
    #[cfg(feature = "hydrate")]
    {
        let handle = window_event_listener_untyped(REFRESHED_EVENT, move |_| on_refreshed());
        on_cleanup(move || handle.remove());
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = on_refreshed;
}

#[cfg(feature = "hydrate")]
mod browser {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    use leptos::prelude::*;
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    pub fn start(every_ms: u32, while_present: Option<String>) {
        // One re-read at a time: a slow answer is not overtaken by the next tick's.
        let busy = Rc::new(Cell::new(false));
        let tick = move || {
            if busy.replace(true) {
                return;
            }
            let busy = busy.clone();
            leptos::task::spawn_local(async move {
                if let Err(error) = replace_live_parts().await {
                    leptos::logging::warn!("could not refresh the page: {error:?}");
                }
                busy.set(false);
            });
        };
        if every_ms > 0 {
            let tick = tick.clone();
            let due = move || {
                let wanted = while_present.as_deref().is_none_or(|selector| {
                    document().query_selector(selector).ok().flatten().is_some()
                });
                if wanted {
                    tick();
                }
            };
            if let Ok(handle) =
                set_interval_with_handle(due, Duration::from_millis(u64::from(every_ms)))
            {
                on_cleanup(move || handle.clear());
            }
        }
        let handle = window_event_listener_untyped(super::REFRESH_EVENT, move |_| tick());
        on_cleanup(move || handle.remove());
    }

    async fn replace_live_parts() -> Result<(), JsValue> {
        let window = window();
        let page = window.location().href()?;
        let response: web_sys::Response = JsFuture::from(window.fetch_with_str(&page))
            .await?
            .dyn_into()?;
        if !response.ok() {
            return Ok(());
        }
        let html = JsFuture::from(response.text()?)
            .await?
            .as_string()
            .unwrap_or_default();
        let fresh = web_sys::DomParser::new()?
            .parse_from_string(&html, web_sys::SupportedType::TextHtml)?;
        let live = document().query_selector_all("[data-live]")?;
        for index in 0..live.length() {
            let Some(part) = live
                .item(index)
                .and_then(|node| node.dyn_into::<web_sys::Element>().ok())
            else {
                continue;
            };
            let Some(name) = part.get_attribute("data-live") else {
                continue;
            };
            if let Some(new) = fresh.query_selector(&format!("[data-live=\"{name}\"]"))? {
                let content = new.inner_html();
                if part.inner_html() != content {
                    part.set_inner_html(&content);
                }
            }
        }
        window.dispatch_event(&web_sys::Event::new(super::REFRESHED_EVENT)?)?;
        Ok(())
    }
}

/// Filter forms (GET forms, which work without JavaScript through their button) that apply a
/// choice as soon as it is made: a change inside submits the form it happened in.
#[island]
pub fn SubmitOnChange(children: Children) -> impl IntoView {
    let submit = move |event: leptos::ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            let form = event
                .target()
                .and_then(|target| target.dyn_into::<web_sys::Element>().ok())
                .and_then(|element| element.closest("form").ok().flatten())
                .and_then(|form| form.dyn_into::<web_sys::HtmlFormElement>().ok());
            if let Some(form) = form {
                let _ = form.request_submit();
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = event;
    };
    view! { <div class="submit-on-change" on:change=submit>{children()}</div> }
}
