//! The address a request comes from, as the rate limits key it.
//!
//! By default that is the TCP peer: `X-Forwarded-For` is written by whoever sends the request,
//! so trusting it would let any client pick its own key. Behind a load balancer or reverse
//! proxy every peer is the proxy, so `BECKON_TRUSTED_PROXIES` names the proxies' ranges: a
//! request whose peer is one of them is taken to come from the nearest address in
//! `X-Forwarded-For` that is not (read from the right, where the proxies append).

use actix_web::HttpRequest;
use actix_web::http::header::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// A client as the limits see it: an IPv4 address, or an IPv6 /64 — one subscriber's usual
/// allocation, so a client cannot get a fresh bucket per request by rotating through the
/// 2^64 addresses it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(IpAddr);

impl ClientAddr {
    pub fn new(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => Self(IpAddr::V6(Ipv6Addr::from(
                    u128::from(v6) & (u128::MAX << 64),
                ))),
            },
            v4 => Self(v4),
        }
    }

    /// The client of `req`: its peer, or — when the peer is a trusted proxy — the address the
    /// proxies forwarded. `None` when the connection has no peer address (a Unix socket).
    pub fn of(req: &HttpRequest, proxies: &TrustedProxies) -> Option<Self> {
        let peer = req.peer_addr()?.ip();
        Some(Self::new(forwarded_client(peer, req.headers(), proxies)))
    }
}

/// `BECKON_TRUSTED_PROXIES`: comma-separated addresses or ranges (`10.0.0.0/8`) of the
/// proxies in front of the gateway. Empty by default: `X-Forwarded-For` is ignored.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|range| range.contains(&ip))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an address or a range such as 10.0.0.0/8")]
pub struct NotARange(String);

impl FromStr for TrustedProxies {
    type Err = NotARange;

    fn from_str(raw: &str) -> Result<Self, NotARange> {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| NotARange(s.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// The address of one `X-Forwarded-For` entry: `ip`, `ip:port` (as some load balancers
/// write it) or `[v6]:port`.
fn hop_address(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// The client behind `peer`: each trusted hop appended the address it was connected from, so
/// walk `X-Forwarded-For` from the right while the hop is trusted. An entry that is not an
/// address stops the walk at the last hop that was.
fn forwarded_client(peer: IpAddr, headers: &HeaderMap, proxies: &TrustedProxies) -> IpAddr {
    if !proxies.trusts(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Some(ip) = hop_address(hop.trim()) else {
            break;
        };
        client = ip;
        if !proxies.trusts(ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let headers = xff(&["203.0.113.7"]);
        let none = TrustedProxies::default();
        assert_eq!(
            forwarded_client(ip("198.51.100.1"), &headers, &none),
            ip("198.51.100.1")
        );
        let proxies: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        assert_eq!(
            forwarded_client(ip("198.51.100.1"), &headers, &proxies),
            ip("198.51.100.1"),
            "a peer outside the trusted ranges speaks for itself"
        );
        assert_eq!(
            forwarded_client(ip("10.1.2.3"), &headers, &proxies),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_hop_not_what_the_client_wrote_first() {
        let proxies: TrustedProxies = "10.0.0.0/8, 192.0.2.1".parse().unwrap();
        // The client claims to be 1.1.1.1; the edge proxy appended its real address; an inner
        // proxy appended the edge's.
        let headers = xff(&["1.1.1.1, 203.0.113.7", "192.0.2.1"]);
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), &headers, &proxies),
            ip("203.0.113.7")
        );
        // Garbage stops the walk at the last trusted hop.
        let headers = xff(&["203.0.113.7, not-an-ip, 192.0.2.1"]);
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), &headers, &proxies),
            ip("192.0.2.1")
        );
        // No header: the proxy itself.
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), &HeaderMap::new(), &proxies),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn an_ipv6_client_is_keyed_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        assert_eq!(
            ClientAddr::new(ip("2001:db8:1:2:aaaa::1")),
            ClientAddr::new(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            ClientAddr::new(ip("2001:db8:1:2::1")),
            ClientAddr::new(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientAddr::new(ip("::ffff:192.0.2.4")),
            ClientAddr::new(ip("192.0.2.4"))
        );
    }

    #[test]
    fn forwarded_entries_with_ports_name_their_clients() {
        let proxies: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        for (entry, client) in [
            ("203.0.113.5:51234", "203.0.113.5"),
            ("[2001:db8::7]:443", "2001:db8::7"),
        ] {
            assert_eq!(
                forwarded_client(ip("10.0.0.5"), &xff(&[entry]), &proxies),
                ip(client),
                "{entry}"
            );
        }
    }

    #[test]
    fn a_malformed_range_is_refused() {
        assert!("10.0.0.0/8,nope".parse::<TrustedProxies>().is_err());
        assert!("".parse::<TrustedProxies>().unwrap().0.is_empty());
    }
}
