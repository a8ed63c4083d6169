//! The explorer's JSON twins (`/api/v1/explorer/…`): public, so every client is limited to a
//! number of requests per second, and every answer carries an ETag and a max-age that match how
//! fresh its figures are (a closed block never changes; the fleet changes by the second).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use domain::explorer::{DeviceListQuery, SearchOutcome};
use platform::Platform;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// How long clients and caches may keep an answer: live fleet figures briefly, history longer.
#[derive(Debug, Clone, Copy)]
enum Freshness {
    /// Totals, device lists, search: the fleet changes every second.
    Live,
    /// A device's or cluster's page: status changes within a heartbeat or two.
    Recent,
    /// Figures the server itself re-reads once a minute (recent activity, earnings).
    Minute,
    /// A closed block: final.
    Final,
}

impl Freshness {
    fn cache_control(self) -> &'static str {
        match self {
            Freshness::Live => "public, max-age=5",
            Freshness::Recent => "public, max-age=15",
            Freshness::Minute => "public, max-age=60",
            Freshness::Final => "public, max-age=86400, immutable",
        }
    }
}

/// A JSON answer with its ETag (a digest of the body) and max-age; a request that already holds
/// this version (`If-None-Match`) gets 304 and no body.
fn cached(
    headers: &HeaderMap,
    freshness: Freshness,
    body: Vec<u8>,
    content_type: &'static str,
) -> Response {
    let digest = Sha256::digest(&body);
    let etag = format!("\"{}\"", hex_prefix(&digest));
    let cache_control = (
        header::CACHE_CONTROL,
        HeaderValue::from_static(freshness.cache_control()),
    );
    let etag_header = (
        header::ETAG,
        HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
    );
    let held = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            // `*` matches any current version (RFC 9110 §13.1.2).
            v.trim() == "*"
                || v.split(',')
                    .any(|tag| tag.trim().trim_start_matches("W/") == etag)
        });
    if held {
        return (StatusCode::NOT_MODIFIED, [cache_control, etag_header]).into_response();
    }
    (
        [
            cache_control,
            etag_header,
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        ],
        body,
    )
        .into_response()
}

fn hex_prefix(digest: &[u8]) -> String {
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn json(
    headers: &HeaderMap,
    freshness: Freshness,
    value: &impl Serialize,
) -> Result<Response, Error> {
    let body = serde_json::to_vec(value)?;
    Ok(cached(headers, freshness, body, "application/json"))
}

pub fn routes(limiter: crate::limiter::ClientLimiter) -> Router<Platform> {
    Router::new()
        .route("/summary", get(summary))
        .route("/activity", get(activity))
        .route("/devices", get(devices))
        .route("/devices/{id}", get(device))
        .route("/clusters", get(clusters))
        .route("/clusters/{id}", get(cluster))
        .route("/blocks", get(blocks))
        .route("/blocks/{number}", get(block))
        .route("/blocks/{number}/lines.csv", get(block_csv))
        .route("/wallets/{address}", get(wallet))
        .route("/search", get(search))
        .layer(axum::middleware::from_fn_with_state(
            limiter,
            crate::limiter::limit,
        ))
}

async fn summary(State(platform): State<Platform>, headers: HeaderMap) -> Result<Response, Error> {
    json(
        &headers,
        Freshness::Live,
        &platform.fleet.network_summary().await?,
    )
}

async fn devices(
    State(platform): State<Platform>,
    headers: HeaderMap,
    query: Result<Query<DeviceListQuery>, QueryRejection>,
) -> Result<Response, Error> {
    let Query(q) = query?;
    json(
        &headers,
        Freshness::Live,
        &platform.explorer.device_list(&q)?,
    )
}

async fn device(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    json(
        &headers,
        Freshness::Recent,
        &platform.explorer.device(&id, platform::now()).await?,
    )
}

async fn activity(State(platform): State<Platform>, headers: HeaderMap) -> Result<Response, Error> {
    let activity = platform.explorer.activity(platform::now()).await?;
    json(&headers, Freshness::Minute, &*activity)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ClusterListQuery {
    status: String,
    after: String,
}

async fn clusters(
    State(platform): State<Platform>,
    headers: HeaderMap,
    query: Result<Query<ClusterListQuery>, QueryRejection>,
) -> Result<Response, Error> {
    let Query(q) = query?;
    let page = platform
        .explorer
        .clusters(&q.status, &q.after, platform::now())
        .await?;
    json(&headers, Freshness::Live, &page)
}

async fn cluster(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let cluster = platform.explorer.cluster(&id, platform::now()).await?;
    json(&headers, Freshness::Recent, &cluster)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct AfterQuery {
    after: String,
}

async fn blocks(
    State(platform): State<Platform>,
    headers: HeaderMap,
    query: Result<Query<AfterQuery>, QueryRejection>,
) -> Result<Response, Error> {
    let Query(q) = query?;
    json(
        &headers,
        Freshness::Live,
        &platform.explorer.blocks(&q.after).await?,
    )
}

async fn block(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(number): Path<String>,
    query: Result<Query<AfterQuery>, QueryRejection>,
) -> Result<Response, Error> {
    let Query(q) = query?;
    json(
        &headers,
        Freshness::Final,
        &platform.explorer.block(&number, &q.after).await?,
    )
}

async fn block_csv(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Result<Response, Error> {
    let csv = platform.explorer.block_csv(&number).await?;
    Ok(cached(
        &headers,
        Freshness::Final,
        csv.into_bytes(),
        "text/csv; charset=utf-8",
    ))
}

async fn wallet(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> Result<Response, Error> {
    json(
        &headers,
        Freshness::Recent,
        &platform.explorer.wallet(&address).await?,
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct SearchQuery {
    q: String,
}

async fn search(
    State(platform): State<Platform>,
    headers: HeaderMap,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, Error> {
    let Query(q) = query?;
    json(
        &headers,
        Freshness::Live,
        &platform.explorer.search(&q.q).await?,
    )
}

/// A search typed into an explorer page goes straight to what it names (303), decided before
/// the page renders, so it works without JavaScript; anything else renders the search page
/// with its suggestions.
pub async fn search_redirect(
    State(platform): State<Platform>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() == axum::http::Method::GET && request.uri().path() == "/explorer/search" {
        if let Ok(Query(q)) = Query::<SearchQuery>::try_from_uri(request.uri()) {
            match platform.explorer.search(&q.q).await {
                Ok(SearchOutcome::Found(path)) => return Redirect::to(&path).into_response(),
                Ok(SearchOutcome::NotFound { .. }) => {}
                // The page asks again and shows the error.
                Err(e) => tracing::warn!(error = %e, "explorer search failed"),
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holding_the_current_version_gets_304() {
        let body = b"{\"a\":1}".to_vec();
        let first = cached(
            &HeaderMap::new(),
            Freshness::Final,
            body.clone(),
            "application/json",
        );
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(
            first.headers()[header::CACHE_CONTROL],
            "public, max-age=86400, immutable"
        );
        let etag = first.headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag);
        let again = cached(&headers, Freshness::Final, body, "application/json");
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let mut stale = HeaderMap::new();
        stale.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"old\""));
        let changed = cached(
            &stale,
            Freshness::Live,
            b"{\"a\":2}".to_vec(),
            "application/json",
        );
        assert_eq!(changed.status(), StatusCode::OK);
    }
}
