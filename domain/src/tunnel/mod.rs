//! Tunnels: how a renter reaches a port of a hired device through the platform, over a
//! connection the device's agent opens outwards (so devices behind NAT work). Which ports a
//! device serves, how their addresses are spelled, and what the agent is asked to connect.
//!
//! A tunnel's address is `{tunnel origin}/c/{cluster}/{device}/{port}/…`. The tunnel origin is
//! not the console's: what a workload answers is the provider's content, and it must never run
//! as the console's own pages.

mod origin;

use serde::{Deserialize, Serialize};

pub use origin::{TunnelHosts, TunnelOrigin};

use crate::agent_protocol::NOTEBOOK_PORT;
use crate::cluster::{ClusterKind, ClusterRole, Runtime, Workload};

/// Where a Ray head's dashboard and job API listen (Ray's default).
pub const RAY_DASHBOARD_PORT: u16 = 8265;

/// The protocol an agent's tunnel stream upgrades its connection to.
pub const STREAM_PROTOCOL: &str = "gc-tunnel";

/// The longest an agent's wait for tunnel orders is held, under every time limit on the way.
pub const MAX_ORDER_WAIT_SECS: u32 = 20;

/// One port a hired device serves its renter, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TunnelPort {
    pub port: u16,
    pub what: String,
}

/// The ports device of `role` in a cluster of `kind` running `workload` serves: the workload's
/// declared port on every device, and on a Ray head (when Ray itself runs, not a command of
/// the renter's) its dashboard and JupyterLab. Nothing else is ever tunnelled.
pub fn ports_of(kind: ClusterKind, role: ClusterRole, workload: &Workload) -> Vec<TunnelPort> {
    let mut ports = Vec::new();
    if kind.runtime() == Runtime::Ray && role == ClusterRole::Head && workload.command.is_empty() {
        ports.push(TunnelPort {
            port: RAY_DASHBOARD_PORT,
            what: "Ray dashboard and job API".into(),
        });
        ports.push(TunnelPort {
            port: NOTEBOOK_PORT,
            what: "JupyterLab".into(),
        });
    }
    if let Some(port) = workload.port {
        if !ports.iter().any(|p| p.port == port) {
            ports.push(TunnelPort {
                port,
                what: format!("Port {port}"),
            });
        }
    }
    ports
}

/// One way into a running cluster, as its page links it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TunnelLink {
    pub device_id: String,
    pub port: u16,
    pub what: String,
    pub url: String,
}

/// Every tunnel into the cluster's current `members` (device and role), at `origin`.
pub fn links(
    origin: &TunnelOrigin,
    cluster_id: &str,
    kind: ClusterKind,
    workload: &Workload,
    members: &[(&str, ClusterRole)],
) -> Vec<TunnelLink> {
    members
        .iter()
        .flat_map(|(device_id, role)| {
            let serving = origin.serving(cluster_id, device_id);
            ports_of(kind, *role, workload)
                .into_iter()
                .map(move |p| TunnelLink {
                    device_id: (*device_id).to_owned(),
                    url: format!("{serving}{}", prefix(cluster_id, device_id, p.port)),
                    port: p.port,
                    what: p.what,
                })
        })
        .collect()
}

/// The path prefix of one tunnel, with its trailing slash.
pub fn prefix(cluster_id: &str, device_id: &str, port: u16) -> String {
    format!("/c/{cluster_id}/{device_id}/{port}/")
}

/// Whether the workload on `port` is told its prefix and sees it in every path (JupyterLab,
/// started with it as its base URL) rather than paths with the prefix taken off.
pub fn keeps_prefix(port: u16) -> bool {
    port == NOTEBOOK_PORT
}

/// A tunnel request's path, split: which tunnel, and the rest of the path for the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPath<'a> {
    pub cluster_id: &'a str,
    pub device_id: &'a str,
    pub port: u16,
    /// What follows the prefix, starting with '/'; None when the path ends at the port without
    /// a slash (the renter is sent to the prefix, so relative links work).
    pub rest: Option<&'a str>,
}

impl<'a> TunnelPath<'a> {
    /// Splits `/c/{cluster}/{device}/{port}[/rest]`; why not, in words.
    pub fn parse(path: &'a str) -> Result<TunnelPath<'a>, String> {
        let usage = || {
            format!(
                "'{path}' is not a tunnel address: tunnels are /c/{{cluster}}/{{device}}/{{port}}/"
            )
        };
        let tail = path.strip_prefix("/c/").ok_or_else(usage)?;
        let mut parts = tail.splitn(3, '/');
        let cluster_id = parts.next().filter(|s| !s.is_empty()).ok_or_else(usage)?;
        let device_id = parts.next().filter(|s| !s.is_empty()).ok_or_else(usage)?;
        let after = parts.next().ok_or_else(usage)?;
        let (port, rest) = match after.find('/') {
            Some(at) => (&after[..at], Some(&after[at..])),
            None => (after, None),
        };
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("'{port}' is not a port (1 to 65535)"))?;
        Ok(TunnelPath {
            cluster_id,
            device_id,
            port,
            rest,
        })
    }

    /// The path the workload is asked for.
    pub fn forwarded(&self, full: &str) -> String {
        if keeps_prefix(self.port) {
            full.to_owned()
        } else {
            self.rest.unwrap_or("/").to_owned()
        }
    }
}

/// The header one replica marks a renter's request with when it relays it to the replica its
/// device's agent polls: that replica serves it and relays it no further. A renter who sends
/// it only keeps the request from being relayed (every replica checks the caller itself).
pub const RELAYED_BY_HEADER: &str = "x-gc-relayed-by";

/// Request headers that never travel through a tunnel: the connection's own (hop-by-hop), and
/// the renter's credentials for the platform (an API key; cookies are sifted by
/// [`forwarded_cookies`]), which are not the provider's to see. An `Authorization` of the
/// renter's own application passes.
pub fn is_withheld_request_header(name: &str, value: &[u8], upgrading: bool) -> bool {
    let name = name.to_ascii_lowercase();
    match name.as_str() {
        // An upgrade (WebSocket) keeps the headers that ask for it.
        "connection" | "upgrade" => !upgrading,
        "keep-alive"
        | "proxy-connection"
        | "proxy-authorization"
        | "te"
        | "trailer"
        | "transfer-encoding"
        | "cookie"
        | RELAYED_BY_HEADER => true,
        "authorization" => is_platform_key(value),
        _ => false,
    }
}

/// Whether an `Authorization` value carries one of the platform's credentials: an API key or
/// a cluster's access token.
pub fn is_platform_key(value: &[u8]) -> bool {
    let text = String::from_utf8_lossy(value);
    let mut words = text.split_whitespace();
    words
        .next()
        .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
        && words.next().is_some_and(|k| {
            k.starts_with(crate::api_key::SECRET_PREFIX) || k.starts_with(ACCESS_TOKEN_PREFIX)
        })
}

/// How every cluster access token begins (a leaked one is recognisable): the renter's
/// rotatable credential for one cluster's tunnels alone, for scripts and for browsers on a
/// tunnel origin the console's session cookie does not reach.
pub const ACCESS_TOKEN_PREFIX: &str = "gct_";
/// Hex digits after the prefix (32 random bytes).
const ACCESS_TOKEN_HEX: usize = 64;
/// The query parameter a tunnel link carries an access token in. The tunnel origin answers
/// such a link with a redirect to the same address without it and keeps the token in the
/// [`ACCESS_COOKIE`], so the token neither reaches the workload nor stays in the address bar.
pub const ACCESS_QUERY: &str = "gc_access";
/// The cookie a browser keeps a cluster's access token in, scoped to the cluster's tunnels'
/// path; named like the platform's cookies, so it never crosses a tunnel.
pub const ACCESS_COOKIE: &str = "gc_access";

/// Whether `text` has the shape of an access token (checked before any lookup).
pub fn is_access_token(text: &str) -> bool {
    text.strip_prefix(ACCESS_TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == ACCESS_TOKEN_HEX
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A tunnel's address that opens it in a browser with `token`.
pub fn access_link(url: &str, token: &str) -> String {
    format!("{url}?{ACCESS_QUERY}={token}")
}

/// Splits the access token out of a query string: the token (if the query carries one) and
/// the rest of the query, in order, without it.
pub fn take_access_query(query: &str) -> (Option<&str>, String) {
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((ACCESS_QUERY, value)) => token = Some(value),
            _ if pair == ACCESS_QUERY => token = Some(""),
            _ => rest.push(pair),
        }
    }
    (token, rest.join("&"))
}

/// The `Set-Cookie` value that keeps `token` for cluster `cluster_id`'s tunnels alone:
/// `HttpOnly` (a workload's script cannot read it), `SameSite=Lax`, `Secure` on HTTPS.
pub fn access_cookie(cluster_id: &str, token: &str, secure: bool) -> String {
    format!(
        "{ACCESS_COOKIE}={token}; Path=/c/{cluster_id}/; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The access token of a request's `Cookie` header, if it holds one.
pub fn access_cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == ACCESS_COOKIE)
        .map(|(_, value)| value)
}

/// A cluster's access token just made: shown once (the platform keeps only its digest), with
/// the cluster's tunnel links that open with it in a browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessToken {
    pub cluster_id: String,
    pub token: String,
    /// UTC milliseconds.
    pub made_at: i64,
    /// The cluster's current tunnels, each with the token in its address.
    pub links: Vec<TunnelLink>,
}

/// Cookies of the request that the workload may see: all but the platform's own (`gc_…`).
pub fn forwarded_cookies(header: &str) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.starts_with("gc_"))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Whether a `Set-Cookie` a workload answers may reach the renter: never one named like the
/// platform's own cookies, which would shadow the renter's session.
pub fn allows_set_cookie(value: &str) -> bool {
    !value.trim_start().starts_with("gc_")
}

/// The agent's long poll for connections to open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrderWait {
    pub wait_secs: u32,
}

/// Connections the server asks the agent to open: for each, connect the local `port` of
/// the cluster's workload, then open stream `stream` to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TunnelOrders {
    pub orders: Vec<TunnelOrder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TunnelOrder {
    /// Random, single use; names the renter's waiting connection.
    pub stream: String,
    pub cluster_id: String,
    pub port: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_port(port: Option<u16>, command: &str) -> Workload {
        Workload {
            port,
            command: command.into(),
            ..Workload::default()
        }
    }

    #[test]
    fn access_tokens_have_one_shape_and_never_cross_a_tunnel() {
        let token = format!("gct_{}", "0a".repeat(32));
        assert!(is_access_token(&token));
        for bad in [
            "gct_",
            "gck_0a",
            &format!("gct_{}", "0A".repeat(32)),
            &format!("gct_{}0", "0a".repeat(32)),
            &format!("gct_{}", "zz".repeat(32)),
        ] {
            assert!(!is_access_token(bad), "{bad}");
        }
        assert!(is_platform_key(format!("Bearer {token}").as_bytes()));
        assert!(is_platform_key(b"bearer gck_abc"));
        assert!(!is_platform_key(b"Bearer the-apps-own"));
        // The cookie keeping it is the platform's, so it is never forwarded.
        let cookie = access_cookie("cl-1", &token, true);
        assert_eq!(
            cookie,
            format!("gc_access={token}; Path=/c/cl-1/; HttpOnly; SameSite=Lax; Secure")
        );
        assert_eq!(
            access_cookie_value(&format!("app=1; gc_access={token}")),
            Some(token.as_str())
        );
        assert_eq!(access_cookie_value("app=1"), None);
        assert_eq!(
            forwarded_cookies(&format!("gc_access={token}; app=1")).as_deref(),
            Some("app=1")
        );
    }

    #[test]
    fn an_access_link_is_split_back_into_its_token_and_the_rest_of_the_query() {
        let link = access_link("https://t.example/c/cl-1/dev-1/80/", "gct_x");
        assert_eq!(link, "https://t.example/c/cl-1/dev-1/80/?gc_access=gct_x");
        assert_eq!(
            take_access_query("a=1&gc_access=gct_x&b=2"),
            (Some("gct_x"), "a=1&b=2".to_owned())
        );
        assert_eq!(take_access_query("a=1"), (None, "a=1".to_owned()));
        assert_eq!(take_access_query("gc_access"), (Some(""), String::new()));
        // Only the exact name: the application's own parameters pass.
        assert_eq!(
            take_access_query("gc_accessory=1"),
            (None, "gc_accessory=1".to_owned())
        );
    }

    #[test]
    fn ray_heads_serve_the_dashboard_and_notebook_and_every_device_its_port() {
        let head = ports_of(
            ClusterKind::Ray,
            ClusterRole::Head,
            &with_port(Some(8000), ""),
        );
        let ports: Vec<u16> = head.iter().map(|p| p.port).collect();
        assert_eq!(ports, [RAY_DASHBOARD_PORT, NOTEBOOK_PORT, 8000]);
        let worker = ports_of(
            ClusterKind::Ray,
            ClusterRole::Worker,
            &with_port(Some(8000), ""),
        );
        assert_eq!(
            worker,
            [TunnelPort {
                port: 8000,
                what: "Port 8000".into()
            }]
        );
        // A renter's own command replaces Ray's services.
        assert!(ports_of(
            ClusterKind::Ray,
            ClusterRole::Head,
            &with_port(None, "python x.py")
        )
        .is_empty());
        assert!(ports_of(
            ClusterKind::BareMetal,
            ClusterRole::Worker,
            &with_port(None, "x")
        )
        .is_empty());
        // Declaring the dashboard's port does not list it twice.
        let same = ports_of(
            ClusterKind::Ray,
            ClusterRole::Head,
            &with_port(Some(8265), ""),
        );
        assert_eq!(same.len(), 2);
    }

    #[test]
    fn links_name_every_members_tunnels_at_the_origin() {
        let members = [("dev-h", ClusterRole::Head), ("dev-w", ClusterRole::Worker)];
        let shared = TunnelOrigin::new("http", "10.0.0.9", Some(3001), None).unwrap();
        let links = links(
            &shared,
            "cl-1",
            ClusterKind::Ray,
            &with_port(Some(80), ""),
            &members,
        );
        let urls: Vec<&str> = links.iter().map(|l| l.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://10.0.0.9:3001/c/cl-1/dev-h/8265/",
                "http://10.0.0.9:3001/c/cl-1/dev-h/8888/",
                "http://10.0.0.9:3001/c/cl-1/dev-h/80/",
                "http://10.0.0.9:3001/c/cl-1/dev-w/80/",
            ]
        );
        assert_eq!(links[3].what, "Port 80");
        // With a DNS name, each device at its own host.
        let named = TunnelOrigin::new("https", "t.example", None, None).unwrap();
        let apart = super::links(
            &named,
            "cl-1",
            ClusterKind::Ray,
            &with_port(Some(80), ""),
            &members,
        );
        assert_eq!(
            apart[3].url,
            "https://cl-1-dev-w.t.example/c/cl-1/dev-w/80/"
        );
    }

    #[test]
    fn tunnel_paths_split_into_their_parts() {
        let p = TunnelPath::parse("/c/cl-1/dev-2/8000/api/x").unwrap();
        assert_eq!(
            (p.cluster_id, p.device_id, p.port, p.rest),
            ("cl-1", "dev-2", 8000, Some("/api/x"))
        );
        assert_eq!(p.forwarded("/c/cl-1/dev-2/8000/api/x"), "/api/x");
        let bare = TunnelPath::parse("/c/cl-1/dev-2/8000").unwrap();
        assert_eq!(bare.rest, None);
        assert_eq!(bare.forwarded("/c/cl-1/dev-2/8000"), "/");
        let notebook = TunnelPath::parse("/c/cl-1/dev-2/8888/lab").unwrap();
        assert_eq!(
            notebook.forwarded("/c/cl-1/dev-2/8888/lab"),
            "/c/cl-1/dev-2/8888/lab"
        );
        for bad in [
            "/x",
            "/c/",
            "/c/cl-1",
            "/c/cl-1/dev-2",
            "/c/cl-1/dev-2/0/",
            "/c/cl-1/dev-2/70000/",
            "/c//dev/80/",
        ] {
            assert!(TunnelPath::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(prefix("cl-1", "dev-2", 80), "/c/cl-1/dev-2/80/");
    }

    #[test]
    fn the_platforms_credentials_stay_on_the_platform() {
        assert!(is_withheld_request_header("Cookie", b"x=1", false));
        assert!(is_withheld_request_header(
            "authorization",
            b"Bearer gck_abc",
            true
        ));
        assert!(is_withheld_request_header(
            "Authorization",
            b"bearer  gck_abc",
            false
        ));
        assert!(!is_withheld_request_header(
            "Authorization",
            b"Bearer my-model-token",
            false
        ));
        assert!(is_withheld_request_header("Connection", b"upgrade", false));
        assert!(!is_withheld_request_header("Connection", b"upgrade", true));
        assert!(!is_withheld_request_header("Upgrade", b"websocket", true));
        assert!(!is_withheld_request_header("accept", b"*/*", false));
        assert!(is_withheld_request_header(
            "X-GC-Relayed-By",
            b"replica-1",
            false
        ));
        assert_eq!(
            forwarded_cookies("gc_session=abc; _xsrf=1; gc_other=2; theme=dark").as_deref(),
            Some("_xsrf=1; theme=dark")
        );
        assert_eq!(forwarded_cookies("gc_session=abc"), None);
        assert!(!allows_set_cookie("gc_session=evil; Path=/"));
        assert!(allows_set_cookie("_xsrf=2|abc; Path=/c/x/"));
    }
}
