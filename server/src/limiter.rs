//! Requests each client (by IP address) may make in a window: the explorer's public API (per
//! second) and agent registrations (per minute, issue 23: a machine spraying registration
//! tokens, or one address enrolling a farm of fake devices, is slowed down whoever's tokens
//! it holds).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;

#[derive(Clone)]
pub struct ClientLimiter {
    per_window: u32,
    window: Duration,
    windows: Arc<Mutex<HashMap<IpAddr, (Instant, u32)>>>,
}

/// Clients remembered at most before the idle ones are forgotten.
const REMEMBERED_CLIENTS: usize = 100_000;

impl ClientLimiter {
    /// `per_window` requests in each fixed `window` per client.
    pub fn new(per_window: u32, window: Duration) -> ClientLimiter {
        ClientLimiter {
            per_window,
            window,
            windows: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn per_second(per_second: u32) -> ClientLimiter {
        ClientLimiter::new(per_second, Duration::from_secs(1))
    }

    /// Whether `client` may make one more request now.
    fn admit(&self, client: IpAddr, now: Instant) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= REMEMBERED_CLIENTS {
            windows.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let (start, used) = windows.entry(client).or_insert((now, 0));
        if now.duration_since(*start) >= self.window {
            *start = now;
            *used = 0;
        }
        *used += 1;
        *used <= self.per_window
    }
}

/// The middleware: a client past its share gets 429 with `Retry-After`.
pub async fn limit(State(limiter): State<ClientLimiter>, request: Request, next: Next) -> Response {
    // Served without the peer's address (in-process tests), every caller shares one window.
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(peer)| peer.ip());
    if limiter.admit(client, Instant::now()) {
        return next.run(request).await;
    }
    Error::RateLimited {
        limit: limiter.per_window,
        window_secs: limiter.window.as_secs().max(1),
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_its_own_window_of_requests() {
        let limiter = ClientLimiter::per_second(3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.admit(a, t0)));
        assert!(!limiter.admit(a, t0 + Duration::from_millis(500)));
        assert!(limiter.admit(b, t0), "another client is not held back");
        assert!(
            limiter.admit(a, t0 + Duration::from_millis(1000)),
            "a new second, a new window"
        );
        let minute = ClientLimiter::new(2, Duration::from_secs(60));
        assert!(minute.admit(a, t0) && minute.admit(a, t0));
        assert!(!minute.admit(a, t0 + Duration::from_secs(59)));
        assert!(minute.admit(a, t0 + Duration::from_secs(60)));
    }
}
