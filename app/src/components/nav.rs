//! The top bar: brand, the three sections, and the wallet control. Rendered on the server; the
//! phone-width menu toggle and the wallet button are islands.

use leptos::prelude::*;
use leptos_router::components::A;

use super::session::use_session;
use super::wallet::WalletButton;

#[component]
pub fn TopNav() -> impl IntoView {
    let session = use_session();
    view! {
        <header class="topbar" data-testid="topbar">
            <a class="brand" href="/explorer">
                <span class="brand-mark" aria-hidden="true"></span>
                "GPU Commons"
            </a>
            <NavMenu>
                <A href="/explorer">"Explorer"</A>
                <A href="/cloud">"Cloud"</A>
                <A href="/worker">"Worker"</A>
            </NavMenu>
            <Suspense fallback=|| view! { <span class="wallet-pending muted">"…"</span> }>
                {move || Suspend::new(async move {
                    view! { <WalletButton signed_in=session.signed_in().await /> }
                })}
            </Suspense>
        </header>
    }
}

/// The section links (rendered on the server, marked current there) behind a toggle that
/// opens them on narrow screens.
#[island]
fn NavMenu(children: Children) -> impl IntoView {
    let menu_open = RwSignal::new(false);
    view! {
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
            {children()}
        </nav>
    }
}
