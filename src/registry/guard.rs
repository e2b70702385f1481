//! The SSRF guard. A metadata service fetches URLs that users name, so it must not become a
//! way into the operator's network: only allow-listed registries are contacted, and no host
//! (registry, token realm or redirect target) may resolve to a loopback, private, link-local
//! or otherwise internal address unless the operator named that host explicitly
//! (`MICROBADGER_INSECURE_REGISTRIES` or `MICROBADGER_PRIVATE_REGISTRIES`).
//!
//! The address check runs inside the HTTP client's DNS resolver, so it covers every
//! connection including redirects, and sees the addresses actually connected to (no
//! time-of-check/time-of-use gap with a second lookup). IP-literal URLs skip DNS, so they are
//! checked separately by [`Guard::check_url`].

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::error::RegistryError;
use crate::config::RegistryConfig;

/// Which registries and hosts may be contacted.
#[derive(Debug, Clone)]
pub struct Guard {
    allowed_registries: HashSet<String>,
    insecure_registries: HashSet<String>,
    /// Host names (without port) that may resolve to internal addresses.
    private_hosts: Arc<HashSet<String>>,
}

/// Strip a `:port` from `host[:port]` (IPv6 literals keep their brackets removed).
pub(crate) fn host_only(host_port: &str) -> &str {
    if let Some(rest) = host_port.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host_port.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host_port,
    }
}

impl Guard {
    pub fn new(cfg: &RegistryConfig) -> Self {
        let insecure: HashSet<String> = cfg.insecure.iter().cloned().collect();
        let mut private_hosts: HashSet<String> = HashSet::new();
        for h in cfg.insecure.iter().chain(cfg.private.iter()) {
            private_hosts.insert(host_only(h).to_string());
        }
        let mut allowed: HashSet<String> = cfg.allow.iter().cloned().collect();
        allowed.extend(cfg.insecure.iter().cloned());
        allowed.extend(cfg.private.iter().cloned());
        Guard {
            allowed_registries: allowed,
            insecure_registries: insecure,
            private_hosts: Arc::new(private_hosts),
        }
    }

    /// Is this registry (`host[:port]` as in an image reference) on the allow-list?
    pub fn check_registry(&self, registry: &str) -> Result<(), RegistryError> {
        let registry = registry.to_ascii_lowercase();
        if self.allowed_registries.contains(&registry) {
            Ok(())
        } else {
            Err(RegistryError::NotAllowed { registry })
        }
    }

    /// Does this registry speak plain HTTP?
    pub fn is_insecure(&self, registry: &str) -> bool {
        self.insecure_registries
            .contains(&registry.to_ascii_lowercase())
    }

    /// May this host name (no port) resolve to an internal address?
    pub fn host_may_be_private(&self, host: &str) -> bool {
        self.private_hosts.contains(&host.to_ascii_lowercase())
    }

    /// Check a URL before it is requested: scheme, and IP literals (which skip DNS).
    pub fn check_url(&self, url: &url::Url) -> Result<(), RegistryError> {
        match url.scheme() {
            "https" | "http" => {}
            other => {
                return Err(RegistryError::Protocol {
                    reason: format!("refusing {other}: URL scheme"),
                });
            }
        }
        let host = match url.host() {
            Some(h) => h,
            None => {
                return Err(RegistryError::Protocol {
                    reason: "URL without a host".into(),
                });
            }
        };
        let host_str = match &host {
            url::Host::Domain(d) => d.to_string(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        if url.scheme() == "http" && !self.host_may_be_private(&host_str) {
            // Plain HTTP only to hosts the operator listed as insecure (or private).
            return Err(RegistryError::Protocol {
                reason: format!("refusing plain HTTP to {host_str}"),
            });
        }
        let ip = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = ip
            && is_internal(ip)
            && !self.host_may_be_private(&host_str)
        {
            return Err(RegistryError::PrivateAddress { host: host_str });
        }
        Ok(())
    }

    /// A DNS resolver for reqwest that refuses internal addresses for hosts not explicitly
    /// allowed.
    pub fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver {
            private_hosts: self.private_hosts.clone(),
        })
    }
}

/// Loopback, private (RFC 1918, ULA), link-local, CGNAT, unspecified, multicast, broadcast,
/// documentation and IPv4-mapped forms of those: anything that is not a public unicast address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            is_internal_v6(v6)
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 carrier-grade NAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240 // reserved
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (seg[0] & 0xffc0) == 0xfe80 // fe80::/10 link local
        || (seg[0] & 0xffc0) == 0xfec0 // fec0::/10 site local (deprecated)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || (seg[0] == 0x64 && seg[1] == 0xff9b) // NAT64 can reach internal v4
}

/// reqwest resolver enforcing [`is_internal`] per host.
#[derive(Debug)]
pub struct GuardedResolver {
    private_hosts: Arc<HashSet<String>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let may_be_private = self.private_hosts.contains(&host);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !may_be_private && addrs.iter().any(|a| is_internal(a.ip())) {
                return Err(Box::new(PrivateAddressError { host }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The resolver's refusal, recognised again when mapping reqwest errors.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to an internal address")]
pub struct PrivateAddressError {
    pub host: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allow: &[&str], insecure: &[&str], private: &[&str]) -> Guard {
        let cfg = RegistryConfig {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            insecure: insecure.iter().map(|s| s.to_string()).collect(),
            private: private.iter().map(|s| s.to_string()).collect(),
            ..RegistryConfig::default()
        };
        Guard::new(&cfg)
    }

    #[test]
    fn internal_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip} should be internal");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "172.32.0.1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip} should be public");
        }
    }

    #[test]
    fn allow_list() {
        let g = guard(&["docker.io"], &["127.0.0.1:5000"], &["reg.internal"]);
        assert!(g.check_registry("docker.io").is_ok());
        assert!(g.check_registry("127.0.0.1:5000").is_ok());
        assert!(g.check_registry("reg.internal").is_ok());
        assert!(matches!(
            g.check_registry("127.0.0.1:5001"),
            Err(RegistryError::NotAllowed { .. })
        ));
        assert!(matches!(
            g.check_registry("evil.example"),
            Err(RegistryError::NotAllowed { .. })
        ));
    }

    #[test]
    fn ip_literals_and_plain_http() {
        let g = guard(&["docker.io"], &["127.0.0.1:5000"], &[]);
        let ok = |u: &str| g.check_url(&url::Url::parse(u).unwrap());
        assert!(ok("http://127.0.0.1:5000/v2/").is_ok());
        assert!(matches!(
            ok("https://169.254.169.254/latest/meta-data"),
            Err(RegistryError::PrivateAddress { .. })
        ));
        assert!(matches!(
            ok("https://[::1]/x"),
            Err(RegistryError::PrivateAddress { .. })
        ));
        assert!(
            ok("http://example.com/").is_err(),
            "plain HTTP to public host"
        );
        assert!(ok("file:///etc/passwd").is_err());
        assert!(ok("https://registry-1.docker.io/v2/").is_ok());
    }

    #[tokio::test]
    async fn resolver_refuses_localhost_unless_allowed() {
        let g = guard(&["docker.io"], &[], &[]);
        let r = g.resolver();
        let err = r
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost must be refused");
        assert!(err.to_string().contains("internal address"));
        let g = guard(&["docker.io"], &[], &["localhost"]);
        assert!(
            g.resolver()
                .resolve("localhost".parse().unwrap())
                .await
                .is_ok()
        );
    }

    #[test]
    fn host_only_strips_ports() {
        assert_eq!(host_only("a.b:5000"), "a.b");
        assert_eq!(host_only("a.b"), "a.b");
        assert_eq!(host_only("[::1]:5000"), "::1");
    }
}
