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
use domain::explorer::{
    BlockDetail, DeviceListQuery, FleetDevice, NetworkActivity, Page, PublicCluster,
    PublicClusterDetail, PublicDevice, PublicWallet, SearchOutcome,
};
use domain::network::NetworkSummary;
use domain::rewards::BlockSummary;
use platform::Platform;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::openapi::Refusals;

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

#[utoipa::path(
    get,
    path = "/api/v1/explorer/summary",
    tag = "explorer",
    summary = "Network totals (the explorer's front page)",
    responses((status = 200, description = "The totals", body = NetworkSummary), (status = 304, description = "Not modified since the ETag given in If-None-Match"), Refusals)
)]
pub(crate) async fn summary(
    State(platform): State<Platform>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    json(
        &headers,
        Freshness::Live,
        &platform.fleet.network_summary().await?,
    )
}

#[utoipa::path(
    get,
    path = "/api/v1/explorer/devices",
    tag = "explorer",
    summary = "A page of the public device list",
    params(DeviceListQuery),
    responses((status = 200, description = "The page", body = Page<FleetDevice>), (status = 304, description = "Not modified since the ETag given in If-None-Match"), Refusals)
)]
pub(crate) async fn devices(
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

#[utoipa::path(
    get,
    path = "/api/v1/explorer/devices/{id}",
    tag = "explorer",
    summary = "One device as the public sees it",
    params(("id" = String, Path)),
    responses((status = 200, description = "The device", body = PublicDevice), (status = 304, description = "Not modified since the ETag given in If-None-Match"), Refusals)
)]
pub(crate) async fn device(
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

#[utoipa::path(
    get,
    path = "/api/v1/explorer/activity",
    tag = "explorer",
    summary = "Recent activity: clusters, blocks, earnings",
    responses((status = 200, description = "The activity", body = NetworkActivity), (status = 304, description = "Not modified since the ETag given in If-None-Match"), Refusals)
)]
pub(crate) async fn activity(
    State(platform): State<Platform>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let activity = platform.explorer.activity(platform::now()).await?;
    json(&headers, Freshness::Minute, &*activity)
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ClusterListQuery {
    #[param(schema_with = crate::openapi::cluster_status_or_any)]
    status: String,
    after: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/explorer/clusters",
    tag = "explorer",
    summary = "A page of the public cluster list",
    params(ClusterListQuery),
    responses((status = 200, description = "The page", body = Page<PublicCluster>), (status = 304, description = "Not modified since the ETag given in If-None-Match"), Refusals)
)]
pub(crate) async fn clusters(
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

#[utoipa::path(
    get,
    path = "/api/v1/explorer/clusters/{id}",
    tag = "explorer",
    summary = "One cluster as the public sees it",
    params(("id" = String, Path)),
    responses((status = 200, description = "The cluster", body = PublicClusterDetail), (status = 304, description = "Not modified since the ETag given in If-None-Match"), Refusals)
)]
pub(crate) async fn cluster(
    State(platform): State<Platform>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let cluster = platform.explorer.cluster(&id, platform::now()).await?;
    json(&headers, Freshness::Recent, &cluster)
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AfterQuery {
    after: String,
}

/// The blocks list's page: after a block number.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BlocksQuery {
    #[param(pattern = r"^[ \t\n\r]*([+-]?[0-9]{1,18})?[ \t\n\r]*$")]
    after: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/explorer/blocks",
    tag = "explorer",
    summary = "A page of the reward blocks",
    params(BlocksQuery),
    responses((status = 200, description = "The page", body = Page<BlockSummary>), (status = 304, description = "Not modified since the ETag given in If-None-Match"), Refusals)
)]
pub(crate) async fn blocks(
    State(platform): State<Platform>,
    headers: HeaderMap,
    query: Result<Query<BlocksQuery>, QueryRejection>,
) -> Result<Response, Error> {
    let Query(q) = query?;
    json(
        &headers,
        Freshness::Live,
        &platform.explorer.blocks(&q.after).await?,
    )
}

#[utoipa::path(
    get,
    path = "/api/v1/explorer/blocks/{number}",
    tag = "explorer",
    summary = "One closed block with a page of its lines",
    params(("number" = String, Path, description = "A block number", pattern = r"^[ \t\n\r]*[+-]?[0-9]{1,18}[ \t\n\r]*$"), AfterQuery),
    responses((status = 200, description = "The block", body = BlockDetail), (status = 304, description = "Not modified since the ETag given in If-None-Match"), Refusals)
)]
pub(crate) async fn block(
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

#[utoipa::path(
    get,
    path = "/api/v1/explorer/blocks/{number}/lines.csv",
    tag = "explorer",
    summary = "Every line of a closed block as CSV",
    params(("number" = String, Path, description = "A block number", pattern = r"^[ \t\n\r]*[+-]?[0-9]{1,18}[ \t\n\r]*$")),
    responses((status = 200, description = "The lines", body = String, content_type = "text/csv"), (status = 304, description = "Not modified since the ETag given in If-None-Match"), Refusals)
)]
pub(crate) async fn block_csv(
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

#[utoipa::path(
    get,
    path = "/api/v1/explorer/wallets/{address}",
    tag = "explorer",
    summary = "A wallet's public devices and earnings",
    params(("address" = String, Path)),
    responses((status = 200, description = "The wallet", body = PublicWallet), (status = 304, description = "Not modified since the ETag given in If-None-Match"), Refusals)
)]
pub(crate) async fn wallet(
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

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SearchQuery {
    q: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/explorer/search",
    tag = "explorer",
    summary = "Where a device id, cluster id, block number or wallet leads",
    params(SearchQuery),
    responses((status = 200, description = "What it found", body = SearchOutcome), (status = 304, description = "Not modified since the ETag given in If-None-Match"), Refusals)
)]
pub(crate) async fn search(
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
