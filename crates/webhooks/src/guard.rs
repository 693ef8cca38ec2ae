//! Which addresses a webhook may reach.
//!
//! A subscription URL is chosen by a customer, so without a guard it could point Beckon at
//! its own cluster (SSRF). Every range of the IANA special-purpose address registries that is
//! not globally reachable, and the multicast and reserved blocks beside them, is refused unless
//! the deployment's allow-list opens it (tests, on-premise use, and the local setup of
//! `make up`). The check applies to the address actually connected to: the sender's resolver
//! only returns allowed addresses, and IP literals are checked before sending.
//!
//! Registries (read 2026-12-01):
//! <https://www.iana.org/assignments/iana-ipv4-special-registry/>,
//! <https://www.iana.org/assignments/iana-ipv6-special-registry/>,
//! <https://www.iana.org/assignments/ipv6-address-space/>.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A range webhooks may not reach unless allow-listed, with the registry's name for it.
#[derive(Debug, Clone, Copy)]
struct SpecialRange<N> {
    net: N,
    name: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, name: &'static str) -> SpecialRange<Ipv4Net> {
    SpecialRange {
        net: Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len),
        name,
    }
}

const fn v6(segments: [u16; 8], len: u8, name: &'static str) -> SpecialRange<Ipv6Net> {
    let [a, b, c, d, e, f, g, h] = segments;
    SpecialRange {
        net: Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len),
        name,
    }
}

/// IPv4 ranges webhooks may not reach. The registry's globally reachable entries (AS112
/// 192.31.196.0/24 and 192.175.48.0/24, AMT 192.52.193.0/24) are absent; inside
/// 192.0.0.0/24 the PCP and TURN anycast addresses are global too, but no webhook endpoint
/// lives there, so the whole block is refused.
const SPECIAL_V4: &[SpecialRange<Ipv4Net>] = &[
    v4(0, 0, 0, 0, 8, "\"this network\" (RFC 791)"),
    v4(10, 0, 0, 0, 8, "private-use (RFC 1918)"),
    v4(100, 64, 0, 0, 10, "shared address space (RFC 6598)"),
    v4(127, 0, 0, 0, 8, "loopback (RFC 1122)"),
    v4(169, 254, 0, 0, 16, "link-local (RFC 3927)"),
    v4(172, 16, 0, 0, 12, "private-use (RFC 1918)"),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments (RFC 6890)"),
    v4(192, 0, 2, 0, 24, "documentation, TEST-NET-1 (RFC 5737)"),
    v4(
        192,
        88,
        99,
        0,
        24,
        "deprecated 6to4 relay anycast (RFC 7526)",
    ),
    v4(192, 168, 0, 0, 16, "private-use (RFC 1918)"),
    v4(198, 18, 0, 0, 15, "benchmarking (RFC 2544)"),
    v4(198, 51, 100, 0, 24, "documentation, TEST-NET-2 (RFC 5737)"),
    v4(203, 0, 113, 0, 24, "documentation, TEST-NET-3 (RFC 5737)"),
    v4(224, 0, 0, 0, 4, "multicast (RFC 5771)"),
    v4(240, 0, 0, 0, 4, "reserved (RFC 1112)"),
    v4(255, 255, 255, 255, 32, "limited broadcast (RFC 919)"),
];

/// IPv6 ranges webhooks may not reach. IPv4-mapped addresses (`::ffff:0:0/96`) and the
/// NAT64 well-known prefix (`64:ff9b::/96`, RFC 6052) are not here: they stand for the IPv4
/// address in their last 32 bits, which is what gets checked (a DNS64 resolver gives public
/// IPv4 hosts such addresses, so refusing the prefix would cut IPv6-only clusters off).
const SPECIAL_V6: &[SpecialRange<Ipv6Net>] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified (RFC 4291)"),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback (RFC 4291)"),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        96,
        "IPv4-compatible, deprecated (RFC 4291)",
    ),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local-use IPv4/IPv6 translation (RFC 8215)",
    ),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only (RFC 6666)"),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo (RFC 4380)"),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments (RFC 2928)",
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation (RFC 3849)",
    ),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4 (RFC 3056)"),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        "documentation (RFC 9637)",
    ),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "segment routing SIDs (RFC 9602)",
    ),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local (RFC 4193)"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local (RFC 4291)"),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "site-local, deprecated (RFC 3879)",
    ),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast (RFC 4291)"),
];

/// Global unicast IPv6 (RFC 4291 §2.4, the IANA IPv6 address space): everything outside it is
/// reserved by the IETF and reaches nothing on the internet.
const GLOBAL_UNICAST_V6: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

/// IPv4-mapped IPv6 addresses.
const MAPPED_V4: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);

/// The NAT64 well-known prefix.
const NAT64_WELL_KNOWN: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);

/// The address a webhook to `ip` really reaches: the IPv4 address inside an IPv4-mapped or a
/// NAT64 well-known-prefix address, else `ip` itself.
fn reached(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if MAPPED_V4.contains(&v6) || NAT64_WELL_KNOWN.contains(&v6) => {
            let [.., a, b, c, d] = v6.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        }
        other => other,
    }
}

/// Why webhooks may not reach `ip` (already resolved through [`reached`]) by default: the
/// registry's name of the range it is in.
fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => SPECIAL_V4
            .iter()
            .find(|r| r.net.contains(&v4))
            .map(|r| r.name),
        IpAddr::V6(v6) => SPECIAL_V6
            .iter()
            .find(|r| r.net.contains(&v6))
            .map(|r| r.name)
            .or_else(|| {
                (!GLOBAL_UNICAST_V6.contains(&v6)).then_some("reserved by the IETF (RFC 4291)")
            }),
    }
}

/// The ranges the deployment allows despite being special.
#[derive(Debug, Clone, Default)]
pub struct AllowList(Vec<IpNet>);

impl AllowList {
    /// From a comma-separated list of ranges (`a.b.c.d/n`, `x::/n`, or a single address);
    /// `None` when one does not parse.
    pub fn parse(raw: &str) -> Option<Self> {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .ok()
            })
            .collect::<Option<Vec<_>>>()
            .map(Self)
    }

    /// Why a webhook may not connect to `ip`, if it may not: the special range it is in and
    /// the allow-list does not open.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let ip = reached(ip);
        special(ip).filter(|_| !self.0.iter().any(|net| net.contains(&ip)))
    }

    /// Whether a webhook may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.refusal(ip).is_none()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// One address inside each refused range, and the range.
    pub(crate) const REFUSED: &[(&str, &str)] = &[
        ("0.1.2.3", "0.0.0.0/8"),
        ("0.0.0.0", "0.0.0.0/8"),
        ("10.1.2.3", "10.0.0.0/8"),
        ("100.100.1.1", "100.64.0.0/10"),
        ("127.0.0.2", "127.0.0.0/8"),
        ("169.254.169.254", "169.254.0.0/16"),
        ("172.31.255.1", "172.16.0.0/12"),
        ("192.0.0.9", "192.0.0.0/24"),
        ("192.0.2.10", "192.0.2.0/24"),
        ("192.88.99.1", "192.88.99.0/24"),
        ("192.168.1.1", "192.168.0.0/16"),
        ("198.19.0.1", "198.18.0.0/15"),
        ("198.51.100.7", "198.51.100.0/24"),
        ("203.0.113.9", "203.0.113.0/24"),
        ("239.255.255.250", "224.0.0.0/4"),
        ("250.1.2.3", "240.0.0.0/4"),
        ("255.255.255.255", "255.255.255.255/32"),
        ("::", "::/128"),
        ("::1", "::1/128"),
        ("::ffff:127.0.0.1", "127.0.0.0/8"),
        ("::ffff:10.0.0.1", "10.0.0.0/8"),
        ("::10.0.0.1", "::/96"),
        ("::8.8.8.8", "::/96"),
        ("64:ff9b::a9fe:a9fe", "169.254.0.0/16"),
        ("64:ff9b:1::8.8.8.8", "64:ff9b:1::/48"),
        ("100::1", "100::/64"),
        ("2001:2::1", "2001::/23"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::/32"),
        ("2001:db8::1", "2001:db8::/32"),
        ("2002:a00:1::1", "2002::/16"),
        ("3fff::1", "3fff::/20"),
        ("5f00::1", "5f00::/16"),
        ("fd00::1", "fc00::/7"),
        ("fe80::1", "fe80::/10"),
        ("fec0::1", "fec0::/10"),
        ("ff02::1", "ff00::/8"),
        ("4000::1", "4000::/3"),
    ];

    #[test]
    fn every_special_range_is_refused_by_default_and_public_addresses_allowed() {
        let none = AllowList::default();
        for (bad, range) in REFUSED {
            assert!(!none.permits(ip(bad)), "{bad} ({range}) permitted");
        }
        for good in [
            "93.184.216.34",
            "8.8.8.8",
            "192.0.1.1",
            "192.31.196.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(none.permits(ip(good)), "{good} refused");
        }
    }

    #[test]
    fn every_range_of_the_tables_has_a_refused_example() {
        let examples: Vec<IpNet> = REFUSED.iter().map(|(_, r)| r.parse().unwrap()).collect();
        for net in SPECIAL_V4.iter().map(|r| IpNet::V4(r.net)) {
            assert!(examples.contains(&net), "no example in {net}");
        }
        for net in SPECIAL_V6.iter().map(|r| IpNet::V6(r.net)) {
            assert!(examples.contains(&net), "no example in {net}");
        }
    }

    #[test]
    fn the_allow_list_opens_each_special_range_it_names_and_no_other() {
        for (bad, range) in REFUSED {
            let list = AllowList::parse(range).unwrap();
            assert!(list.permits(ip(bad)), "{bad} refused with {range} allowed");
            let other = AllowList::parse("198.18.0.0/15, 2001:db8::/32").unwrap();
            if !["198.18.0.0/15", "2001:db8::/32"].contains(range) {
                assert!(!other.permits(ip(bad)), "{bad} ({range}) permitted");
            }
        }
    }

    #[test]
    fn the_allow_list_opens_its_ranges_only() {
        let list = AllowList::parse("127.0.0.1/32, 10.0.0.0/8, fd00::1").unwrap();
        assert!(list.permits(ip("127.0.0.1")));
        assert!(list.permits(ip("::ffff:127.0.0.1")));
        assert!(list.permits(ip("10.9.9.9")));
        assert!(list.permits(ip("fd00::1")));
        assert!(!list.permits(ip("fd00::2")));
        assert!(!list.permits(ip("127.0.0.2")));
        assert!(!list.permits(ip("192.168.0.1")));
        assert!(AllowList::parse("not-an-ip").is_none());
        assert!(AllowList::parse("10.0.0.0/33").is_none());
        assert!(AllowList::parse("").is_some());
    }

    #[test]
    fn a_refusal_names_the_range() {
        assert_eq!(
            AllowList::default().refusal(ip("169.254.169.254")),
            Some("link-local (RFC 3927)")
        );
        assert_eq!(AllowList::default().refusal(ip("8.8.8.8")), None);
    }
}
