//! The one axum router: the Leptos pages, the JSON API, the agent API (its own lean stack), the
//! health endpoints, and the HTTP middleware (time limits, compression, panic guards, security
//! headers, tracing).

use std::net::SocketAddr;
use std::sync::Arc;

use app::{shell, App, BUNDLE_NAME};
use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use platform::Platform;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::limiter::ClientLimiter;
use crate::tunnel::TunnelHub;
use crate::{agent_api, api, explorer_api};

/// The whole HTTP surface over `platform`, as `start` serves it (tests serve it too).
pub fn router(platform: Platform, config: &Config, addr: SocketAddr, hub: TunnelHub) -> Router {
    let leptos_options = LeptosOptions::builder()
        .output_name(BUNDLE_NAME)
        .site_root(config.site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build();
    let context = {
        let platform = platform.clone();
        move || provide_context(platform.clone())
    };
    let site = Router::new()
        .leptos_routes_with_context(
            &leptos_options,
            generate_route_list(App),
            context.clone(),
            {
                let options = leptos_options.clone();
                move || shell(options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler_with_context(
            context, shell,
        ))
        .with_state(leptos_options)
        .layer(axum::middleware::from_fn_with_state(
            platform.clone(),
            explorer_api::search_redirect,
        ));

    let operational = Router::new()
        // The explorer is the public front page; a plain redirect, decided before any page streams.
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/explorer") }),
        )
        .route("/readyz", get(readyz))
        .route("/api/docs", get(api::docs))
        .nest(
            "/api/v1",
            api::routes(ClientLimiter::per_second(config.explorer_requests_per_sec)),
        )
        .with_state(platform.clone());
    // The agents' calls are the hot path (tens of thousands of heartbeats a second): small JSON
    // that needs neither compression nor the pages' security headers, only a time limit and
    // a panic guard.
    let agents = Router::new()
        // Liveness (no database): on the same lean path, it is also the hello world `fleet-sim`
        // weighs a heartbeat against.
        .route("/healthz", get(healthz))
        .nest(
            "/api/agent/v1",
            agent_api::routes(ClientLimiter::new(
                config.registrations_per_minute,
                std::time::Duration::from_secs(60),
            )),
        )
        .with_state(platform)
        .layer(axum::Extension(hub))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(CatchPanicLayer::new());

    let secure_site = config
        .public_url
        .as_ref()
        .is_some_and(|u| u.scheme() == "https");
    let mut app = operational
        .merge(site)
        .layer(axum::middleware::from_fn_with_state(
            config
                .public_url
                .as_ref()
                .map(|url| Arc::from(url.origin().ascii_serialization())),
            same_origin_writes,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(CompressionLayer::new())
        .layer(CatchPanicLayer::custom(|_panic| internal_error_page()));
    for (name, value) in security_headers(secure_site) {
        app = app.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    let mut app = app.merge(agents);
    if config.metrics_listen.is_some() {
        // Only where metrics are served: otherwise the heartbeats' path stays as lean as it was.
        app = app.layer(axum::middleware::from_fn(crate::metrics::track));
    }
    app.layer(axum::middleware::from_fn(crate::api_errors::json_errors))
        .layer(TraceLayer::new_for_http())
        // First of all: who the client is, behind a trusted load balancer.
        .layer(axum::middleware::from_fn_with_state(
            config.trusted_proxies.clone(),
            crate::client_address::resolve,
        ))
}

/// Refuses a browser's write that a page of another origin sent (cross-site request forgery,
/// login CSRF included). `SameSite=Lax` cookies are still sent from another port of the same
/// host, where the tunnel origin serves what workloads answer: without this, a provider's page
/// there could write as the renter, or sign the renter in as someone else. A browser says
/// where a write comes from: `Origin` (compared with the public URL's origin, or the request's
/// host when none is set), or at least `Sec-Fetch-Site`. Scripts and API clients send neither
/// and pass; a browser cannot add `Authorization` to another origin's request without the
/// CORS permission this server never gives.
async fn same_origin_writes(
    State(public_origin): State<Option<Arc<str>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::Method;
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let same_origin = match (
        text(header::ORIGIN),
        text(HeaderName::from_static("sec-fetch-site")),
    ) {
        (Some(origin), _) => {
            let origin = origin.trim_end_matches('/');
            match &public_origin {
                Some(public) => origin.eq_ignore_ascii_case(public),
                None => {
                    let from = origin.split_once("://").map(|(_, rest)| rest);
                    matches!((from, text(header::HOST)), (Some(from), Some(host)) if from.eq_ignore_ascii_case(host))
                }
            }
        }
        (None, Some(site)) => matches!(site, "same-origin" | "none"),
        (None, None) => true,
    };
    if same_origin {
        return next.run(request).await;
    }
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({ "error": {
            "code": "cross_origin",
            "message": "this write came from a page of another origin; use the console itself",
        }})),
    )
        .into_response()
}

fn security_headers(secure_site: bool) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        ),
        (
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            // The hydration bootstrap is an inline module script; WASM needs wasm-unsafe-eval.
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; \
                 style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
                 frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
            ),
        ),
    ];
    if secure_site {
        headers.push((
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ));
    }
    headers
}

fn internal_error_page() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Something went wrong on our side. Please try again in a moment.",
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(platform): State<Platform>) -> Response {
    match platform.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}
