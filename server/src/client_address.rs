//! Who the client is behind a load balancer (issue 16): a request whose connection comes from a
//! trusted proxy (`--trusted-proxies`) is taken to come from the address that proxy put in
//! `X-Forwarded-For` (or RFC 7239 `Forwarded: for=`), read from the right past any other
//! trusted proxy; from anyone else, those headers are ignored, so no client can choose its own
//! address (and escape its rate limit, or claim another's). The middleware rewrites the
//! connection info once, so everything that reads the client's address (rate limits, the
//! address an agent calls from, logs) reads the resolved one.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

/// An address range: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("'{text}' is not an IP address or a range like 10.0.0.0/8"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("'{text}': the prefix must be 0–{bits}"))?,
        };
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The proxies whose word on the client's address is taken; empty trusts none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<Vec<Cidr>>);

impl TrustedProxies {
    /// A comma-separated list of addresses and ranges.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let ranges = list
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(Cidr::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies(Arc::new(ranges)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(address))
    }

    /// The client's address for a connection from `peer` carrying `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded = forwarded_chain(headers);
        // Rightmost first: each hop appended the address it was connected from.
        forwarded
            .iter()
            .rev()
            .find(|hop| !self.trusts(**hop))
            .or(forwarded.first())
            .copied()
            .unwrap_or(peer)
    }
}

/// The addresses the proxies recorded, oldest (the client's claim) first: every
/// `X-Forwarded-For` header in order, else every `for=` of `Forwarded`. Entries that are not
/// addresses (`unknown`, obfuscated names) end the chain there: nothing left of them is read.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let entries: Vec<String> = if !xff.is_empty() {
        xff.iter().map(|e| e.trim().to_owned()).collect()
    } else {
        headers
            .get_all("forwarded")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.eq_ignore_ascii_case("for")
                        .then(|| value.trim().trim_matches('"').to_owned())
                })
            })
            .collect()
    };
    let mut chain = Vec::new();
    for entry in entries.iter().rev() {
        match parse_hop(entry) {
            Some(address) => chain.push(address),
            None => break,
        }
    }
    chain.reverse();
    chain
}

/// An address as proxies write it: `203.0.113.7`, `203.0.113.7:4711`, `[2001:db8::1]:4711`.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(address, _)| address.parse().ok())
}

/// The middleware: a connection from a trusted proxy gets the client's address in its
/// connection info.
pub async fn resolve(
    State(trusted): State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    if !trusted.is_empty() {
        if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
            let client = trusted.client(peer.ip(), request.headers());
            if client != peer.ip() {
                let port = peer.port();
                request
                    .extensions_mut()
                    .insert(ConnectInfo(SocketAddr::new(client, port)));
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_contain_what_their_prefix_covers() {
        let lan = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(lan.contains(ip("10.200.3.4")));
        assert!(!lan.contains(ip("11.0.0.1")));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(Cidr::parse("127.0.0.1")
            .unwrap()
            .contains(ip("::ffff:127.0.0.1")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("proxy.local").is_err());
    }

    #[test]
    fn only_a_trusted_proxy_says_who_the_client_is() {
        let trusted = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        let forwarded = headers(&[("x-forwarded-for", "198.51.100.9")]);
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &forwarded),
            ip("198.51.100.9")
        );
        // Anyone else's header is ignored: a client cannot pick its own address.
        assert_eq!(
            trusted.client(ip("203.0.113.5"), &forwarded),
            ip("203.0.113.5")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("127.0.0.1"), &forwarded),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_client_is_the_rightmost_address_no_trusted_proxy_wrote() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // The client forged the first entry; the edge proxy appended the real one.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.9, 10.0.0.2")]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &chain), ip("198.51.100.9"));
        let split = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.9:5123"),
        ]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &split), ip("198.51.100.9"));
        let rfc = headers(&[(
            "forwarded",
            "for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.3",
        )]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &rfc), ip("2001:db8::7"));
        // All proxies: the oldest entry is the best there is.
        let inner = headers(&[("x-forwarded-for", "10.0.0.7, 10.0.0.8")]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &inner), ip("10.0.0.7"));
        // Garbage stops the chain; no header leaves the peer.
        let junk = headers(&[("x-forwarded-for", "unknown, 198.51.100.9")]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &junk), ip("198.51.100.9"));
        assert_eq!(
            trusted.client(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }
}
