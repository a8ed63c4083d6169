//! The tunnel origin: a listener of its own where renters reach `/c/{cluster}/{device}/{port}/…`.
//! Each request is checked, sent over a stream the device's agent opens (see the module above),
//! and answered with what the workload answers; WebSocket upgrades carry on both ways.
//!
//! A request for a device whose agent polls another replica for orders is relayed, as it came,
//! to that replica's tunnel listener (`devices.served_by`, `replicas.tunnel_address`), which
//! checks the caller again and serves it; it is marked so that it is relayed no further.
//!
//! Who may pass: the cluster's access token (a link's `?gc_access=`, the cookie such a link
//! leaves for the cluster's path, or `Authorization: Bearer gct_…`), or its renter signed in
//! (the session cookie, where the tunnel origin shares the console's host, or an API key).

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;
use domain::tunnel::{
    access_cookie, access_cookie_value, allows_set_cookie, forwarded_cookies,
    is_withheld_request_header, prefix, take_access_query, TunnelOrigin, TunnelPath,
    ACCESS_TOKEN_PREFIX, RELAYED_BY_HEADER,
};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use platform::tunnels::ConnectionMeter;
use platform::Platform;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use super::{Busy, TunnelHub, OPEN_TIMEOUT};

/// A replica that renewed its row this recently is alive: tunnels are relayed to it.
const PEER_ALIVE_MS: i64 = 10_000;
use crate::error::Error;

#[derive(Clone)]
struct Tunnels {
    platform: Platform,
    hub: TunnelHub,
    origin: TunnelOrigin,
}

/// The tunnel origin's whole HTTP surface.
pub fn router(platform: Platform, hub: TunnelHub, origin: TunnelOrigin) -> Router {
    Router::new()
        .fallback(proxy)
        .with_state(Tunnels {
            platform,
            hub,
            origin,
        })
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
}

async fn proxy(State(tunnels): State<Tunnels>, request: Request) -> Response {
    match forward(tunnels, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn asks_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

async fn forward(tunnels: Tunnels, mut request: Request) -> Result<Response, Error> {
    let full_path = request.uri().path().to_owned();
    let path = TunnelPath::parse(&full_path).map_err(|message| Error::BadRequest {
        status: StatusCode::NOT_FOUND,
        message,
    })?;
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !tunnels.origin.serves(host, path.cluster_id, path.device_id) {
        // Each device has a host of its own: its pages never share an origin with another's.
        return Err(Error::BadRequest {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "this tunnel is served at {}{}",
                tunnels.origin.serving(path.cluster_id, path.device_id),
                prefix(path.cluster_id, path.device_id, path.port)
            ),
        });
    }
    if path.rest.is_none() {
        // To the prefix with its slash, so the workload's relative links resolve under it.
        let mut to = prefix(path.cluster_id, path.device_id, path.port);
        if let Some(query) = request.uri().query() {
            to.push('?');
            to.push_str(query);
        }
        return Ok(Redirect::permanent(&to).into_response());
    }
    let upgrading = asks_upgrade(request.headers());
    // The request's body is not shared between threads: only its head is held across awaits.
    let (uri, headers) = (request.uri(), request.headers());
    if let Passed::ByLink(token) = check_caller(&tunnels, uri, headers, &path, upgrading).await? {
        return Ok(keep_token(&tunnels, uri, &path, &token));
    }
    let relayed_to_us = request.headers().contains_key(RELAYED_BY_HEADER);
    if !relayed_to_us && !tunnels.hub.polls_here(path.device_id) {
        let peer = tunnels
            .platform
            .replicas
            .tunnels_of_device_at(path.device_id, PEER_ALIVE_MS, platform::now())
            .await?;
        if let Some(peer) = peer {
            return relay(&tunnels, request, &path, &peer, upgrading).await;
        }
    }
    let renter_side = upgrading.then(|| hyper::upgrade::on(&mut request));
    let stream = open(&tunnels, &path).await?;
    let metered = Metered {
        inner: TokioIo::new(stream),
        meter: tunnels.platform.tunnels.meter(path.cluster_id),
    };
    let outgoing = outgoing(request, &path, &full_path, upgrading)?;
    let workload = format!("the workload on port {}", path.port);
    exchange(metered, outgoing, renter_side, &workload).await
}

/// Sends `outgoing` over `connection` (to a workload through its agent's stream, or to another
/// replica) and answers with what comes back; an upgrade it accepts carries on both ways.
async fn exchange<T>(
    connection: T,
    outgoing: hyper::Request<Body>,
    renter_side: Option<OnUpgrade>,
    other_end: &str,
) -> Result<Response, Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(connection))
            .await
            .map_err(|e| bad_gateway(other_end, &e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "a tunnel connection ended with an error");
        }
    });
    let mut answer = sender
        .send_request(outgoing)
        .await
        .map_err(|e| bad_gateway(other_end, &e))?;
    let switched = answer.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switched {
        let Some(renter_side) = renter_side else {
            return Err(Error::Tunnel {
                status: StatusCode::BAD_GATEWAY,
                message: format!("{other_end} switched protocols unasked"),
            });
        };
        let far_side = hyper::upgrade::on(&mut answer);
        tokio::spawn(async move {
            match tokio::try_join!(renter_side, far_side) {
                Ok((renter, far)) => {
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(renter),
                        &mut TokioIo::new(far),
                    )
                    .await;
                }
                Err(e) => tracing::debug!(error = %e, "a tunnelled upgrade did not complete"),
            }
        });
    }
    Ok(response_of(answer, switched))
}

/// Sends the renter's request, as it came, to the replica at `peer` whose hub the device's
/// agent polls: that replica checks the caller again and serves it as its own (and meters it).
async fn relay(
    tunnels: &Tunnels,
    mut request: Request,
    path: &TunnelPath<'_>,
    peer: &str,
    upgrading: bool,
) -> Result<Response, Error> {
    let renter_side = upgrading.then(|| hyper::upgrade::on(&mut request));
    let other_end = format!(
        "replica {peer}, which device '{}' is connected to,",
        path.device_id
    );
    let unreachable = |why: String| Error::Tunnel {
        status: StatusCode::BAD_GATEWAY,
        message: format!("{other_end} cannot be reached: {why}"),
    };
    let connection = tokio::time::timeout(OPEN_TIMEOUT, TcpStream::connect(peer))
        .await
        .map_err(|_| unreachable(format!("no answer within {} s", OPEN_TIMEOUT.as_secs())))?
        .map_err(|e| unreachable(e.to_string()))?;
    let (parts, body) = request.into_parts();
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name.as_str(), upgrading) {
            headers.append(name, value.clone());
        }
    }
    if let Ok(us) = HeaderValue::from_str(tunnels.platform.replicas.id()) {
        headers.insert(RELAYED_BY_HEADER, us);
    }
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let outgoing = request_for(parts.method, target, body, headers, "relayed")?;
    exchange(connection, outgoing, renter_side, &other_end).await
}

/// How the caller passed.
enum Passed {
    /// By the access token in the link's query, for a browser to keep in a cookie.
    ByLink(String),
    /// By a credential the request carries with it every time.
    Carried,
}

/// Whether the caller may open `path`'s tunnel now.
async fn check_caller(
    tunnels: &Tunnels,
    uri: &Uri,
    headers: &HeaderMap,
    path: &TunnelPath<'_>,
    upgrading: bool,
) -> Result<Passed, Error> {
    let service = &tunnels.platform.tunnels;
    let (in_link, _) = take_access_query(uri.query().unwrap_or(""));
    if let Some(token) = in_link {
        service.authorize_token(token, path).await?;
        // A WebSocket cannot follow a redirect: its request passes as it is (the token is
        // taken out of the query it forwards).
        return Ok(if upgrading {
            Passed::Carried
        } else {
            Passed::ByLink(token.to_owned())
        });
    }
    let bearer = crate::api::bearer(headers);
    if let Some(token) = bearer.filter(|b| b.starts_with(ACCESS_TOKEN_PREFIX)) {
        service.authorize_token(token, path).await?;
        return Ok(Passed::Carried);
    }
    let kept = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(access_cookie_value);
    if let (None, Some(token)) = (bearer, kept) {
        match service.authorize_token(token, path).await {
            Ok(()) => return Ok(Passed::Carried),
            // A rotated token's cookie: the renter may still be signed in.
            Err(platform::Error::AccessTokenRejected) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let caller = match crate::api::signed_in(&tunnels.platform, headers).await {
        Err(Error::Platform(platform::Error::NotSignedIn)) => {
            // The console's session cookie does not reach a tunnel host of its own.
            return Err(Error::Tunnel {
                status: StatusCode::UNAUTHORIZED,
                message: "open this tunnel with one of the links the cluster page gives with \
                          a new access token, or send Authorization: Bearer with the access \
                          token or an API key"
                    .into(),
            });
        }
        other => other?,
    };
    service.authorize(caller.user_id, path).await?;
    Ok(Passed::Carried)
}

/// The answer to a link carrying an access token: the token kept in a cookie for the
/// cluster's tunnels alone, and the browser sent to the same address without it, so it
/// stays out of the address bar, the history and what the workload sees.
fn keep_token(tunnels: &Tunnels, uri: &Uri, path: &TunnelPath<'_>, token: &str) -> Response {
    let (_, rest) = take_access_query(uri.query().unwrap_or(""));
    let mut to = uri.path().to_owned();
    if !rest.is_empty() {
        to.push('?');
        to.push_str(&rest);
    }
    let cookie = access_cookie(path.cluster_id, token, tunnels.origin.is_secure());
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, to),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
    )
        .into_response()
}

fn bad_gateway(other_end: &str, error: &hyper::Error) -> Error {
    Error::Tunnel {
        status: StatusCode::BAD_GATEWAY,
        message: format!("{other_end} did not answer: {error}"),
    }
}

/// Asks the device's agent for a stream to the port and waits for it.
async fn open(tunnels: &Tunnels, path: &TunnelPath<'_>) -> Result<Upgraded, Error> {
    let (stream, opened) = tunnels
        .hub
        .order(path.device_id, path.cluster_id, path.port)
        .map_err(|Busy| Error::Tunnel {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "too many connections are opening to device '{}' at once; retry in a moment",
                path.device_id
            ),
        })?;
    match tokio::time::timeout(OPEN_TIMEOUT, opened).await {
        Ok(Ok(Ok(stream))) => Ok(stream),
        Ok(Ok(Err(reason))) => Err(Error::Tunnel {
            status: StatusCode::BAD_GATEWAY,
            message: format!(
                "device '{}' could not connect port {}: {reason}",
                path.device_id, path.port
            ),
        }),
        Ok(Err(_)) | Err(_) => {
            tunnels.hub.abandon(path.device_id, &stream);
            Err(Error::Tunnel {
                status: StatusCode::GATEWAY_TIMEOUT,
                message: format!(
                    "device '{}' did not open the tunnel within {} s: its agent may be offline",
                    path.device_id,
                    OPEN_TIMEOUT.as_secs()
                ),
            })
        }
    }
}

/// The renter's request as the workload gets it: its path for the workload, and its headers
/// without the connection's own and without the renter's platform credentials.
fn outgoing(
    request: Request,
    path: &TunnelPath<'_>,
    full_path: &str,
    upgrading: bool,
) -> Result<hyper::Request<Body>, Error> {
    let (parts, body) = request.into_parts();
    let mut target = path.forwarded(full_path);
    // Never the access token: the workload is the provider's.
    let (_, query) = take_access_query(parts.uri.query().unwrap_or(""));
    if !query.is_empty() {
        target.push('?');
        target.push_str(&query);
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !is_withheld_request_header(name.as_str(), value.as_bytes(), upgrading) {
            headers.append(name, value.clone());
        }
    }
    let cookies: Vec<&str> = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if let Some(kept) = forwarded_cookies(&cookies.join("; ")) {
        if let Ok(value) = HeaderValue::from_str(&kept) {
            headers.insert(header::COOKIE, value);
        }
    }
    if !headers.contains_key(header::HOST) {
        if let Some(value) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(header::HOST, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&prefix(path.cluster_id, path.device_id, path.port)) {
        headers.insert("x-forwarded-prefix", value);
    }
    request_for(
        parts.method,
        &target,
        body,
        headers,
        "sent through a tunnel",
    )
}

/// The request to send on: `how` says what could not be done with it, when it cannot.
fn request_for(
    method: axum::http::Method,
    target: &str,
    body: Body,
    headers: HeaderMap,
    how: &str,
) -> Result<hyper::Request<Body>, Error> {
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(target)
        .body(body)
        .map_err(|e| Error::BadRequest {
            status: StatusCode::BAD_REQUEST,
            message: format!("this request cannot be {how}: {e}"),
        })?;
    *request.headers_mut() = headers;
    Ok(request)
}

/// The workload's answer for the renter, without the connection's own headers and without
/// cookies named like the platform's.
fn response_of(answer: hyper::Response<hyper::body::Incoming>, switched: bool) -> Response {
    let (parts, body) = answer.into_parts();
    let mut response = Response::new(if switched {
        Body::empty()
    } else {
        Body::new(body)
    });
    *response.status_mut() = parts.status;
    let headers = response.headers_mut();
    for (name, value) in &parts.headers {
        let keep = match name.as_str() {
            "set-cookie" => value.to_str().is_ok_and(allows_set_cookie),
            other => !is_hop_by_hop(other, switched),
        };
        if keep {
            headers.append(name, value.clone());
        }
    }
    response
}

/// Whether a (lower-case) header belongs to one connection rather than the message, and so is
/// not passed on; `connection` and `upgrade` pass while an upgrade is asked or made.
fn is_hop_by_hop(name: &str, upgrading: bool) -> bool {
    match name {
        "connection" | "upgrade" => !upgrading,
        "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding" => true,
        _ => false,
    }
}

/// A connection to a workload whose bytes, both ways, count for its cluster as they pass.
struct Metered<T> {
    inner: T,
    meter: ConnectionMeter,
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.meter.count((buf.filled().len() - before) as u64);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(written)) = polled {
            self.meter.count(written as u64);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
