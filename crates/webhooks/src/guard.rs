//! Which addresses a webhook may reach.
//!
//! A subscription URL is chosen by a customer, so without a guard it could point Beckon at
//! its own cluster (SSRF). Private, loopback, link-local, multicast and other special ranges
//! are refused unless the deployment's allow-list opens them (tests, on-premise use, and the
//! local setup of `make up`). The check applies to the address actually connected to: the
//! sender's resolver only returns allowed addresses, and IP literals are checked before
//! sending.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address range, `a.b.c.d/n` or `x::/n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(raw: &str) -> Option<Self> {
        let (addr, prefix) = match raw.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = raw.trim().parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The ranges the deployment allows despite being special.
#[derive(Debug, Clone, Default)]
pub struct AllowList(Vec<Cidr>);

impl AllowList {
    /// From a comma-separated list of ranges; `None` when one does not parse.
    pub fn parse(raw: &str) -> Option<Self> {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Cidr::parse)
            .collect::<Option<Vec<_>>>()
            .map(Self)
    }

    /// Whether a webhook may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        !is_special(ip) || self.0.iter().any(|c| c.contains(ip))
    }
}

fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_special_v4(v4),
        IpAddr::V6(v6) => is_special_v6(v6),
    }
}

fn is_special_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        // Carrier-grade NAT, 100.64.0.0/10.
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        // Benchmarking, 198.18.0.0/15; reserved, 240.0.0.0/4.
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || o[0] >= 240
}

fn is_special_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local fc00::/7, link-local fe80::/10, documentation 2001:db8::/32.
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] == 0x2001 && s[1] == 0x0db8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_ranges_are_refused_by_default_and_public_ones_allowed() {
        let none = AllowList::default();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!none.permits(ip(bad)), "{bad} permitted");
        }
        for good in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(none.permits(ip(good)), "{good} refused");
        }
    }

    #[test]
    fn the_allow_list_opens_its_ranges_only() {
        let list = AllowList::parse("127.0.0.1/32, 10.0.0.0/8").unwrap();
        assert!(list.permits(ip("127.0.0.1")));
        assert!(list.permits(ip("10.9.9.9")));
        assert!(!list.permits(ip("127.0.0.2")));
        assert!(!list.permits(ip("192.168.0.1")));
        assert!(AllowList::parse("not-an-ip").is_none());
        assert!(AllowList::parse("").is_some());
    }
}
