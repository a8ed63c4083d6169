#![recursion_limit = "256"]

//! The GPU Commons UI: one Leptos app rendered on the server (`ssr`), with its interactive parts
//! hydrated in the browser as islands (`hydrate`). Pages live in `routes/`, reusable pieces in
//! `components/`, server functions in `functions/` (thin: they take the `platform::Platform`
//! from context and call it).
//!
//! Pages are server components: their HTML is whole without JavaScript, and none of their code
//! ships to the browser. What reacts to the user (the wallet button, the deploy wizard, a
//! device's actions, …) is an `#[island]`; only islands and what they call are compiled to
//! WASM. Islands get what they need from the server as serialisable props (an id, the signed-in
//! wallet), since router and context live on the server only.

#[cfg(feature = "ssr")]
pub mod charts;
pub mod components;
pub mod errors;
pub mod functions;
pub mod routes;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, Link, Meta, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;
use leptos_router::SsrMode;

use components::nav::TopNav;
use components::session::provide_session;
use routes::cloud::{BillingPage, CloudPage, ClusterPage, DeployPage};
use routes::explorer::{
    BlockPage, BlocksPage, ExplorerPage, FleetPage, PublicClusterPage, PublicClustersPage,
    PublicDevicePage, SearchPage, WalletPage,
};
use routes::not_found::NotFound;
use routes::worker::{DevicePage, EarningsPage, NewDevicePage, WorkerPage};

/// Name of the hydrate bundle under `/pkg` (`gpu_commons.js`, `gpu_commons_bg.wasm`, `gpu_commons.css`).
pub const BUNDLE_NAME: &str = "gpu_commons";

/// The whole HTML document, rendered on the server.
#[cfg(feature = "ssr")]
pub fn shell(options: LeptosOptions) -> impl IntoView {
    use leptos_meta::MetaTags;
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <HydrationScripts options islands=true />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The browser entry: hydrates the islands on the page, then marks `<html data-hydrated>`.
/// The islands script hydrates them all within one run of microtasks, so a task queued here
/// runs once every island (and its first effects) is live; browser tests wait for the mark.
#[cfg(feature = "hydrate")]
pub fn hydrate_islands() {
    leptos::mount::hydrate_islands();
    set_timeout(
        || {
            if let Some(root) = document().document_element() {
                let _ = root.set_attribute("data-hydrated", "true");
            }
        },
        std::time::Duration::ZERO,
    );
}

/// Every page is rendered whole before it is sent (`SsrMode::Async`), so islands are in the
/// HTML when the islands script walks it.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_session();
    view! {
        <Stylesheet id="gpu-commons" href=format!("/pkg/{BUNDLE_NAME}.css") />
        <Link rel="icon" type_="image/svg+xml" href="/favicon.svg" />
        <Meta name="description" content="GPU Commons: rent GPU clusters from a decentralized network, or earn from your idle GPUs." />
        <Meta name="theme-color" content="#0b1020" />
        <Title formatter=|page: String| if page.is_empty() { "GPU Commons".to_owned() } else { format!("{page} · GPU Commons") } />
        <Router>
            <TopNav />
            <main class="page">
                <ErrorBoundary fallback=|_errors| view! { <routes::error::ErrorPage /> }>
                    <Routes fallback=NotFound>
                        <Route path=path!("/explorer") view=ExplorerPage ssr=SsrMode::Async />
                        <Route path=path!("/explorer/devices") view=FleetPage ssr=SsrMode::Async />
                        <Route path=path!("/explorer/devices/:id") view=PublicDevicePage ssr=SsrMode::Async />
                        <Route path=path!("/explorer/clusters") view=PublicClustersPage ssr=SsrMode::Async />
                        <Route path=path!("/explorer/clusters/:id") view=PublicClusterPage ssr=SsrMode::Async />
                        <Route path=path!("/explorer/blocks") view=BlocksPage ssr=SsrMode::Async />
                        <Route path=path!("/explorer/blocks/:number") view=BlockPage ssr=SsrMode::Async />
                        <Route path=path!("/explorer/wallets/:address") view=WalletPage ssr=SsrMode::Async />
                        <Route path=path!("/explorer/search") view=SearchPage ssr=SsrMode::Async />
                        <Route path=path!("/cloud") view=CloudPage ssr=SsrMode::Async />
                        <Route path=path!("/cloud/deploy") view=DeployPage ssr=SsrMode::Async />
                        <Route path=path!("/cloud/clusters/:id") view=ClusterPage ssr=SsrMode::Async />
                        <Route path=path!("/cloud/billing") view=BillingPage ssr=SsrMode::Async />
                        <Route path=path!("/worker") view=WorkerPage ssr=SsrMode::Async />
                        <Route path=path!("/worker/devices/new") view=NewDevicePage ssr=SsrMode::Async />
                        <Route path=path!("/worker/devices/:id") view=DevicePage ssr=SsrMode::Async />
                        <Route path=path!("/worker/earnings") view=EarningsPage ssr=SsrMode::Async />
                    </Routes>
                </ErrorBoundary>
            </main>
            <footer class="site-footer">
                <span>"GPU Commons — open-source decentralized GPU compute."</span>
                <span>"Country data: world-countries (ODbL)."</span>
            </footer>
        </Router>
    }
}
