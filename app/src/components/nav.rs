//! The top bar: brand, the three sections, and the wallet control.

use leptos::prelude::*;
use leptos_router::components::A;

use super::wallet::WalletButton;

#[component]
pub fn TopNav() -> impl IntoView {
    let menu_open = RwSignal::new(false);
    // Effects run only in the browser, so this flips once hydration has attached the handlers;
    // end-to-end tests wait for it before clicking.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));

    view! {
        <header class="topbar" data-testid="topbar" data-hydrated=move || hydrated.get().to_string()>
            <a class="brand" href="/explorer">
                <span class="brand-mark" aria-hidden="true"></span>
                "GPU Commons"
            </a>
            <button
                class="nav-toggle"
                data-testid="nav-toggle"
                aria-controls="primary-nav"
                aria-expanded=move || menu_open.get().to_string()
                on:click=move |_| menu_open.update(|open| *open = !*open)
            >
                <span class="sr-only">"Menu"</span>
                <span class="nav-toggle-bars" aria-hidden="true"></span>
            </button>
            <nav id="primary-nav" class="primary-nav" class:open=move || menu_open.get() data-testid="primary-nav">
                <A href="/explorer">"Explorer"</A>
                <A href="/cloud">"Cloud"</A>
                <A href="/worker">"Worker"</A>
            </nav>
            <WalletButton />
        </header>
    }
}
