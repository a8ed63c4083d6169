//! Where renters reach tunnels. With one shared origin, a page one provider's workload serves
//! runs at the same origin as every other tunnel, so its scripts could read the renter's other
//! tunnels (other providers' devices, other clusters) with the renter's cookies. Each device
//! of each cluster therefore gets a host of its own under the tunnel origin's host
//! (`{cluster}-{device}.tunnels.example`, one wildcard DNS record and certificate), where the
//! browser keeps its pages, cookies and storage apart. An origin at an IP address cannot have
//! such hosts and stays shared.

use crate::fleet::named_enum;

named_enum!(
    /// Whether each device of each cluster is served at a host of its own.
    TunnelHosts, "tunnel hosts", {
        /// One host for every tunnel (an origin at an IP address).
        Shared => "shared",
        /// `{cluster}-{device}.{host}` for each device of each cluster.
        PerDevice => "per-device",
    }
);

/// The tunnel origin: scheme, host and port, and how tunnels are spread over hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelOrigin {
    scheme: String,
    host: String,
    /// `:port`, or empty for the scheme's own port.
    port: String,
    hosts: TunnelHosts,
}

impl TunnelOrigin {
    /// The origin at `scheme://host[:port]`; `hosts` None chooses per-device hosts for a DNS
    /// name and a shared one for an IP address (which cannot have hosts under it).
    pub fn new(
        scheme: &str,
        host: &str,
        port: Option<u16>,
        hosts: Option<TunnelHosts>,
    ) -> Result<TunnelOrigin, String> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let is_ip = literal.parse::<std::net::IpAddr>().is_ok();
        let hosts = match (hosts, is_ip) {
            (Some(TunnelHosts::PerDevice), true) => {
                return Err(format!(
                    "per-device tunnel hosts need a DNS name with a wildcard record (*.{host}), \
                     not the IP address {host}"
                ))
            }
            (Some(hosts), _) => hosts,
            (None, true) => TunnelHosts::Shared,
            (None, false) => TunnelHosts::PerDevice,
        };
        Ok(TunnelOrigin {
            scheme: scheme.to_owned(),
            host: host.to_ascii_lowercase(),
            port: port.map_or_else(String::new, |p| format!(":{p}")),
            hosts,
        })
    }

    pub fn hosts(&self) -> TunnelHosts {
        self.hosts
    }

    /// Whether it is served over HTTPS (its cookies are then `Secure`).
    pub fn is_secure(&self) -> bool {
        self.scheme == "https"
    }

    /// The origin (no trailing slash) that serves `cluster_id`'s device `device_id`.
    pub fn serving(&self, cluster_id: &str, device_id: &str) -> String {
        format!(
            "{}://{}{}",
            self.scheme,
            self.host_of(cluster_id, device_id),
            self.port
        )
    }

    fn host_of(&self, cluster_id: &str, device_id: &str) -> String {
        match self.hosts {
            TunnelHosts::Shared => self.host.clone(),
            TunnelHosts::PerDevice => format!(
                "{}-{}.{}",
                cluster_id.to_ascii_lowercase(),
                device_id.to_ascii_lowercase(),
                self.host
            ),
        }
    }

    /// Whether a request that named `host` (its `Host` header, with or without the port) may
    /// be answered for `cluster_id`'s device `device_id`: with per-device hosts, only at that
    /// device's own host.
    pub fn serves(&self, host: Option<&str>, cluster_id: &str, device_id: &str) -> bool {
        if self.hosts == TunnelHosts::Shared {
            return true;
        }
        let Some(host) = host else {
            return false;
        };
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        name.eq_ignore_ascii_case(&self.host_of(cluster_id, device_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_name_gives_each_device_a_host_and_an_ip_address_one_shared() {
        let named = TunnelOrigin::new("https", "Tunnels.GPU.example", None, None).unwrap();
        assert_eq!(named.hosts(), TunnelHosts::PerDevice);
        assert_eq!(
            named.serving("cl-1a", "dev-2b"),
            "https://cl-1a-dev-2b.tunnels.gpu.example"
        );
        assert!(named.is_secure());
        let local = TunnelOrigin::new("http", "localhost", Some(3001), None).unwrap();
        assert_eq!(
            local.serving("cl-1a", "dev-2b"),
            "http://cl-1a-dev-2b.localhost:3001"
        );
        for ip in ["127.0.0.1", "[::1]"] {
            let shared = TunnelOrigin::new("http", ip, Some(3001), None).unwrap();
            assert_eq!(shared.hosts(), TunnelHosts::Shared);
            assert_eq!(
                shared.serving("cl-1a", "dev-2b"),
                format!("http://{ip}:3001")
            );
            let refused = TunnelOrigin::new("http", ip, None, Some(TunnelHosts::PerDevice));
            assert!(refused.unwrap_err().contains("DNS name"));
        }
        let chosen =
            TunnelOrigin::new("http", "localhost", None, Some(TunnelHosts::Shared)).unwrap();
        assert_eq!(chosen.serving("cl-1a", "dev-2b"), "http://localhost");
    }

    #[test]
    fn a_device_is_answered_at_its_own_host_alone() {
        let origin = TunnelOrigin::new("http", "localhost", Some(3001), None).unwrap();
        let own = "cl-1a-dev-2b.localhost:3001";
        assert!(origin.serves(Some(own), "cl-1a", "dev-2b"));
        assert!(origin.serves(Some("CL-1A-DEV-2B.localhost"), "cl-1a", "dev-2b"));
        // Another device's host, the shared host, a look-alike, none at all.
        assert!(!origin.serves(Some(own), "cl-1a", "dev-3c"));
        assert!(!origin.serves(Some("localhost:3001"), "cl-1a", "dev-2b"));
        assert!(!origin.serves(
            Some("cl-1a-dev-2b.localhost.evil.example"),
            "cl-1a",
            "dev-2b"
        ));
        assert!(!origin.serves(None, "cl-1a", "dev-2b"));
        let shared = TunnelOrigin::new("http", "127.0.0.1", Some(3001), None).unwrap();
        assert!(shared.serves(Some("127.0.0.1:3001"), "cl-1a", "dev-2b"));
    }
}
