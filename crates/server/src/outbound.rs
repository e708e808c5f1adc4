//! Where rex may send notifications. A partner names the URL rex POSTs to, so without rules a
//! partner could make rex connect into the hospital's network (server-side request forgery): its
//! databases on loopback, a cloud metadata service on a link-local address, private hosts.
//!
//! An endpoint must be `https` (`http` only for a sandbox partner's test endpoint) and its host may
//! resolve only to public unicast addresses: loopback, private, link-local, unique-local,
//! multicast, unspecified, documentation, benchmarking, carrier-grade NAT and the other
//! special-purpose ranges are refused. The check runs when a Subscription is written (and for
//! configured endpoints at start) and again at every delivery: the delivery client resolves names
//! through [`VettingResolver`], so it connects only to the addresses it vetted and a DNS answer
//! that changes after registration (DNS rebinding) gains nothing. The operator may exempt hosts
//! (`--delivery-allow-host`), such as a receiver on the same machine or a partner reached over a
//! private link; an exempt host may also be reached over `http`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Time allowed for resolving an endpoint's host when a Subscription is written.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The hosts the operator exempts from the address rules (`--delivery-allow-host`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryTargets {
    allowed_hosts: Vec<String>,
}

impl DeliveryTargets {
    /// `hosts` as they appear in endpoint URLs (`receiver.internal`, `127.0.0.1`, `[::1]`).
    pub fn allowing<S: AsRef<str>>(hosts: impl IntoIterator<Item = S>) -> DeliveryTargets {
        DeliveryTargets { allowed_hosts: hosts.into_iter().map(|host| normalise(host.as_ref())).collect() }
    }

    fn allows(&self, host: &str) -> bool {
        let host = normalise(host);
        self.allowed_hosts.contains(&host)
    }

    /// Checks an endpoint before rex stores it: its scheme, and every address its host resolves to.
    /// `plain_http` allows `http` (a sandbox partner's test endpoint).
    pub async fn check_endpoint(&self, endpoint: &str, plain_http: bool) -> Result<(), String> {
        let url = Url::parse(endpoint).map_err(|_| format!("'{endpoint}' is not an absolute URL"))?;
        let host = url.host_str().filter(|host| !host.is_empty()).ok_or("the endpoint has no host")?.to_string();
        let allowed = self.allows(&host);
        match url.scheme() {
            "https" => {}
            "http" if plain_http || allowed => {}
            _ => return Err("the endpoint must be an https:// URL (http:// only for a sandbox partner)".into()),
        }
        if allowed {
            return Ok(());
        }
        if let Some(ip) = literal_ip(&url) {
            return check_address(ip);
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| format!("the endpoint's host {host} did not resolve in time"))?
            .map_err(|_| format!("the endpoint's host {host} does not resolve"))?;
        let addresses: Vec<SocketAddr> = lookup.collect();
        if addresses.is_empty() {
            return Err(format!("the endpoint's host {host} does not resolve"));
        }
        addresses.iter().try_for_each(|address| check_address(address.ip()))
    }

    /// Checks, at delivery, an endpoint whose host is an IP address: no resolver sees those.
    pub fn check_literal(&self, endpoint: &str) -> Result<(), String> {
        let url = Url::parse(endpoint).map_err(|_| format!("'{endpoint}' is not an absolute URL"))?;
        match literal_ip(&url) {
            Some(ip) if !url.host_str().is_some_and(|host| self.allows(host)) => check_address(ip),
            _ => Ok(()),
        }
    }

    /// The resolver of the delivery client: it hands the connector only vetted addresses.
    pub fn resolver(&self) -> Arc<VettingResolver> {
        Arc::new(VettingResolver { targets: self.clone() })
    }
}

fn normalise(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

/// The host of `url` when it is an IP address (the URL parser has put it in canonical form).
fn literal_ip(url: &Url) -> Option<IpAddr> {
    normalise(url.host_str()?).parse().ok()
}

/// Refused: an address rex must not deliver to, and why.
#[derive(Debug)]
pub struct RefusedAddress(pub String);

impl std::fmt::Display for RefusedAddress {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for RefusedAddress {}

fn check_address(ip: IpAddr) -> Result<(), String> {
    match special_purpose(ip) {
        Some(kind) => Err(format!("the endpoint resolves to {ip}, a {kind} address rex does not deliver to")),
        None => Ok(()),
    }
}

/// What kind of special-purpose address `ip` is (IANA special-purpose registries), or `None` for
/// a public unicast address. IPv6 forms that embed an IPv4 address are judged by it.
pub fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => special_v4(ip),
        IpAddr::V6(ip) => special_v6(ip),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified (\"this network\")",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "private",
        (100, 64..=127, _) => "shared (carrier-grade NAT)",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast",
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return special_v4(v4);
    }
    let segments = ip.segments();
    Some(match segments {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        // IPv4-compatible (deprecated) and the rest of ::/96.
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible",
        // NAT64: judged by the IPv4 address it carries.
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => {
            return special_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
        }
        [0x64, 0xff9b, 1, ..] => "local-use IPv4/IPv6 translation",
        [0x100, 0, 0, 0, ..] => "discard-only",
        [0x2001, 0..=0x1ff, ..] => "IETF protocol assignment (Teredo, benchmarking, ORCHID)",
        [0x2001, 0xdb8, ..] | [0x3fff, 0..=0xfff, ..] => "documentation",
        // 6to4: judged by the IPv4 address it carries.
        [0x2002, high, low, ..] => return special_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))),
        [0xfc00..=0xfdff, ..] => "unique-local",
        [0xfe80..=0xfebf, ..] => "link-local",
        [0xfec0..=0xfeff, ..] => "site-local",
        [0xff00..=0xffff, ..] => "multicast",
        _ => return None,
    })
}

/// Resolves names for the delivery client and lets through only public addresses (or any, for
/// an allowed host), so the connection goes to an address that was checked.
pub struct VettingResolver {
    targets: DeliveryTargets,
}

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let allowed = self.targets.allows(&host);
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allowed {
                for address in &addresses {
                    check_address(address.ip()).map_err(RefusedAddress)?;
                }
            }
            let addresses: Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_purpose_addresses_are_recognised() {
        let refused = [
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "127.0.0.1",
            "127.8.8.8",
            "169.254.169.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
        ];
        for ip in refused {
            assert!(special_purpose(ip.parse().unwrap()).is_some(), "{ip} is special-purpose");
        }
        for ip in ["93.184.215.14", "172.32.0.1", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert_eq!(special_purpose(ip.parse().unwrap()), None, "{ip} is public");
        }
    }

    #[tokio::test]
    async fn endpoints_must_be_https_to_public_addresses_unless_allowed() {
        let none = DeliveryTargets::default();
        assert!(none.check_endpoint("https://93.184.215.14/notify", false).await.is_ok());
        assert!(none.check_endpoint("http://93.184.215.14/notify", false).await.is_err(), "plain http");
        assert!(none.check_endpoint("http://93.184.215.14/notify", true).await.is_ok(), "a sandbox's test endpoint");
        for refused in [
            "https://localhost:5432/",
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.7/notify",
            "https://[::1]/notify",
            "https://[fd00::1]/notify",
            "https://0.0.0.0/",
            "http://127.0.0.1:9000/notify",
            "ftp://93.184.215.14/notify",
            "not a url",
        ] {
            assert!(none.check_endpoint(refused, true).await.is_err(), "{refused}");
        }
        let local = DeliveryTargets::allowing(["127.0.0.1", "LOCALHOST", "[::1]"]);
        assert!(local.check_endpoint("http://127.0.0.1:9000/notify", false).await.is_ok());
        assert!(local.check_endpoint("https://localhost/notify", false).await.is_ok());
        assert!(local.check_endpoint("https://[::1]:8443/notify", false).await.is_ok());
        assert!(local.check_endpoint("https://10.0.0.7/notify", false).await.is_err(), "only the hosts allowed");
        assert!(local.check_literal("http://127.0.0.1:9000/notify").is_ok());
        assert!(none.check_literal("http://127.0.0.1:9000/notify").is_err());
        assert!(none.check_literal("https://partner.example/notify").is_ok(), "names are the resolver's");
    }
}
