//! The tunnel origin: a listener of its own where renters reach `/c/{cluster}/{device}/{port}/…`.
//! Each request is checked, sent over a stream the device's agent opens (see the module above),
//! and answered with what the workload answers; WebSocket upgrades carry on both ways.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;
use domain::tunnel::{
    allows_set_cookie, forwarded_cookies, is_withheld_request_header, prefix, TunnelPath,
};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use platform::Platform;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use super::{Busy, TunnelHub, OPEN_TIMEOUT};
use crate::error::Error;

#[derive(Clone)]
struct Tunnels {
    platform: Platform,
    hub: TunnelHub,
}

/// The tunnel origin's whole HTTP surface.
pub fn router(platform: Platform, hub: TunnelHub) -> Router {
    Router::new()
        .fallback(proxy)
        .with_state(Tunnels { platform, hub })
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
    if path.rest.is_none() {
        // To the prefix with its slash, so the workload's relative links resolve under it.
        let mut to = prefix(path.cluster_id, path.device_id, path.port);
        if let Some(query) = request.uri().query() {
            to.push('?');
            to.push_str(query);
        }
        return Ok(Redirect::permanent(&to).into_response());
    }
    let caller = crate::api::signed_in(&tunnels.platform, request.headers()).await?;
    tunnels
        .platform
        .tunnels
        .authorize(caller.user_id, &path)
        .await?;
    let upgrading = asks_upgrade(request.headers());
    let renter_side = upgrading.then(|| hyper::upgrade::on(&mut request));
    let stream = open(&tunnels, &path).await?;
    let metered = Metered {
        inner: TokioIo::new(stream),
        meter: Meter {
            platform: tunnels.platform.clone(),
            cluster_id: path.cluster_id.to_owned(),
            bytes: 0,
        },
    };
    let port = path.port;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(metered))
            .await
            .map_err(|e| bad_gateway(port, &e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "a tunnel connection ended with an error");
        }
    });
    let outgoing = outgoing(request, &path, &full_path, upgrading)?;
    let mut answer = sender
        .send_request(outgoing)
        .await
        .map_err(|e| bad_gateway(port, &e))?;
    let switched = answer.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switched {
        let Some(renter_side) = renter_side else {
            return Err(Error::Tunnel {
                status: StatusCode::BAD_GATEWAY,
                message: format!("the workload on port {port} switched protocols unasked"),
            });
        };
        let workload_side = hyper::upgrade::on(&mut answer);
        tokio::spawn(async move {
            match tokio::try_join!(renter_side, workload_side) {
                Ok((renter, workload)) => {
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(renter),
                        &mut TokioIo::new(workload),
                    )
                    .await;
                }
                Err(e) => tracing::debug!(error = %e, "a tunnelled upgrade did not complete"),
            }
        });
    }
    Ok(response_of(answer, switched))
}

fn bad_gateway(port: u16, error: &hyper::Error) -> Error {
    Error::Tunnel {
        status: StatusCode::BAD_GATEWAY,
        message: format!("the workload on port {port} did not answer: {error}"),
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
    if let Some(query) = parts.uri.query() {
        target.push('?');
        target.push_str(query);
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
    let mut outgoing = hyper::Request::builder()
        .method(parts.method)
        .uri(target)
        .body(body)
        .map_err(|e| Error::BadRequest {
            status: StatusCode::BAD_REQUEST,
            message: format!("this request cannot be sent through a tunnel: {e}"),
        })?;
    *outgoing.headers_mut() = headers;
    Ok(outgoing)
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
            "connection" | "upgrade" => switched,
            "keep-alive" | "proxy-connection" | "transfer-encoding" | "trailer" | "te" => false,
            _ => true,
        };
        if keep {
            headers.append(name, value.clone());
        }
    }
    response
}

/// Counts a tunnel's bytes both ways; they are added to the cluster when it is dropped (the
/// connection closed).
struct Meter {
    platform: Platform,
    cluster_id: String,
    bytes: u64,
}

impl Drop for Meter {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let (platform, cluster_id, bytes) = (
            self.platform.clone(),
            std::mem::take(&mut self.cluster_id),
            self.bytes,
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = platform.tunnels.add_bytes(&cluster_id, bytes).await {
                    tracing::warn!(error = %e, %cluster_id, bytes, "could not count a tunnel's bytes");
                }
            });
        }
    }
}

struct Metered<T> {
    inner: T,
    meter: Meter,
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
            self.meter.bytes += (buf.filled().len() - before) as u64;
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
            self.meter.bytes += written as u64;
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
