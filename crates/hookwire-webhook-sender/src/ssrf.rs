//! The SSRF guard: which addresses an outbound webhook may connect to.
//!
//! URLs registered through the [`crate::Dispatcher`] come from users, so a hostile user could point
//! one at the cloud metadata service, at Redis on localhost, or at a host that *resolves* to an
//! internal address (DNS rebinding). The guard is therefore checked where it cannot be bypassed:
//! in the connector, on every address the name resolved to, just before the socket connects, and
//! the connection is pinned to the vetted address (the crate guide, "Production configuration",
//! states the contract).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`); a bare address means one host.
///
/// ```
/// use hookwire_webhook_sender::ssrf::IpNet;
/// let n: IpNet = "127.0.0.0/8".parse().unwrap();
/// assert!(n.contains("127.1.2.3".parse().unwrap()));
/// assert!(!n.contains("128.0.0.1".parse().unwrap()));
/// assert!("::1".parse::<IpNet>().unwrap().contains("::1".parse().unwrap()));
/// assert!("10.0.0.0/33".parse::<IpNet>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// A network from an address and a prefix length; `None` when the prefix is too long.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Whether `ip` is inside the network. IPv4-mapped IPv6 addresses match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// Why a network or host string was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidNet(String);

impl fmt::Display for InvalidNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid network {:?}", self.0)
    }
}

impl std::error::Error for InvalidNet {}

impl FromStr for IpNet {
    type Err = InvalidNet;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidNet(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = strip_brackets(addr).parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        Self::new(addr, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// For the allow-list: IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`)
/// addresses match as the IPv4 address they carry (`allow("127.0.0.1")` lets
/// `[::ffff:127.0.0.1]` through too).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            // `::a.b.c.d` (deprecated IPv4-compatible); `::` and `::1` stay IPv6.
            if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            ip
        }
        IpAddr::V4(_) => ip,
    }
}

pub(crate) fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// How the guard judges addresses in one block of [`SPECIAL_PURPOSE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// No user-registered webhook may connect here.
    Forbid,
    /// Ordinary, globally routed unicast.
    Allow,
    /// The block carries an IPv4 address in its last 32 bits (IPv4-mapped, IPv4-compatible,
    /// NAT64 well-known prefix): judged as that IPv4 address.
    EmbedsIpv4,
}

/// One row of the guard's table: a block, its registry name, and how it is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialBlock {
    /// The block.
    pub net: IpNet,
    /// Its name in the IANA registry it comes from.
    pub name: &'static str,
    /// The verdict for addresses whose most specific block this is.
    pub rule: Rule,
}

const fn v4(
    a: u8,
    b: u8,
    c: u8,
    d: u8,
    prefix: u8,
    name: &'static str,
    rule: Rule,
) -> SpecialBlock {
    SpecialBlock {
        net: IpNet {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        },
        name,
        rule,
    }
}

const fn v6(s: [u16; 8], prefix: u8, name: &'static str, rule: Rule) -> SpecialBlock {
    SpecialBlock {
        net: IpNet {
            addr: IpAddr::V6(Ipv6Addr::new(
                s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
            )),
            prefix,
        },
        name,
        rule,
    }
}

use Rule::{Allow, EmbedsIpv4, Forbid};

/// The guard's whole decision table: every row of the IANA IPv4 and IPv6 Special-Purpose Address
/// Registries, plus multicast, the IPv6 blocks the IANA IPv6 address-space registry keeps
/// reserved or deprecated, and two defaults (`0.0.0.0/0` allowed; for IPv6 only global unicast
/// `2000::/3` is allowed). An address is judged by the **most specific** row containing it.
///
/// Every registry row is forbidden, including the few the registry marks globally reachable
/// (PCP/TURN anycast, AS112, AMT): none of them is a webhook receiver. 6to4 and Teredo are
/// forbidden outright rather than judged by the IPv4 address they embed: a packet to them goes
/// to a relay, not to that address.
pub const SPECIAL_PURPOSE: &[SpecialBlock] = &[
    v4(0, 0, 0, 0, 0, "IPv4 unicast (default)", Allow),
    v4(0, 0, 0, 0, 8, "\"This network\"", Forbid),
    v4(0, 0, 0, 0, 32, "\"This host on this network\"", Forbid),
    v4(10, 0, 0, 0, 8, "Private-Use", Forbid),
    v4(100, 64, 0, 0, 10, "Shared Address Space", Forbid),
    v4(127, 0, 0, 0, 8, "Loopback", Forbid),
    v4(169, 254, 0, 0, 16, "Link Local", Forbid),
    v4(172, 16, 0, 0, 12, "Private-Use", Forbid),
    v4(192, 0, 0, 0, 24, "IETF Protocol Assignments", Forbid),
    v4(192, 0, 0, 0, 29, "IPv4 Service Continuity Prefix", Forbid),
    v4(192, 0, 0, 8, 32, "IPv4 dummy address", Forbid),
    v4(192, 0, 0, 9, 32, "Port Control Protocol Anycast", Forbid),
    v4(
        192,
        0,
        0,
        10,
        32,
        "Traversal Using Relays around NAT Anycast",
        Forbid,
    ),
    v4(192, 0, 0, 170, 32, "NAT64/DNS64 Discovery", Forbid),
    v4(192, 0, 0, 171, 32, "NAT64/DNS64 Discovery", Forbid),
    v4(192, 0, 2, 0, 24, "Documentation (TEST-NET-1)", Forbid),
    v4(192, 31, 196, 0, 24, "AS112-v4", Forbid),
    v4(192, 52, 193, 0, 24, "AMT", Forbid),
    v4(
        192,
        88,
        99,
        0,
        24,
        "Deprecated (6to4 Relay Anycast)",
        Forbid,
    ),
    v4(192, 168, 0, 0, 16, "Private-Use", Forbid),
    v4(
        192,
        175,
        48,
        0,
        24,
        "Direct Delegation AS112 Service",
        Forbid,
    ),
    v4(198, 18, 0, 0, 15, "Benchmarking", Forbid),
    v4(198, 51, 100, 0, 24, "Documentation (TEST-NET-2)", Forbid),
    v4(203, 0, 113, 0, 24, "Documentation (TEST-NET-3)", Forbid),
    v4(
        224,
        0,
        0,
        0,
        4,
        "Multicast (IPv4 Multicast Address Space Registry)",
        Forbid,
    ),
    v4(240, 0, 0, 0, 4, "Reserved", Forbid),
    v4(255, 255, 255, 255, 32, "Limited Broadcast", Forbid),
    v6(
        [0; 8],
        0,
        "not global unicast (IPv6 Address Space: reserved or unassigned)",
        Forbid,
    ),
    v6(
        [0x2000, 0, 0, 0, 0, 0, 0, 0],
        3,
        "Global Unicast (default)",
        Allow,
    ),
    v6([0; 8], 8, "Reserved by IETF (IPv6 Address Space)", Forbid),
    v6([0; 8], 128, "Unspecified Address", Forbid),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "Loopback Address", Forbid),
    v6(
        [0; 8],
        96,
        "IPv4-compatible (deprecated, RFC 4291)",
        EmbedsIpv4,
    ),
    v6(
        [0, 0, 0, 0, 0, 0xffff, 0, 0],
        96,
        "IPv4-mapped Address",
        EmbedsIpv4,
    ),
    v6(
        [0x64, 0xff9b, 0, 0, 0, 0, 0, 0],
        96,
        "IPv4-IPv6 Translat.",
        EmbedsIpv4,
    ),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "IPv4-IPv6 Translat. (local-use)",
        Forbid,
    ),
    v6(
        [0x100, 0, 0, 0, 0, 0, 0, 0],
        64,
        "Discard-Only Address Block",
        Forbid,
    ),
    v6(
        [0x100, 0, 0, 1, 0, 0, 0, 0],
        64,
        "Dummy IPv6 Prefix",
        Forbid,
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF Protocol Assignments",
        Forbid,
    ),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "TEREDO", Forbid),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 1],
        128,
        "Port Control Protocol Anycast",
        Forbid,
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 2],
        128,
        "Traversal Using Relays around NAT Anycast",
        Forbid,
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 3],
        128,
        "DNS-SD Service Registration Protocol Anycast",
        Forbid,
    ),
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "Benchmarking", Forbid),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, "AMT", Forbid),
    v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48, "AS112-v6", Forbid),
    v6(
        [0x2001, 0x10, 0, 0, 0, 0, 0, 0],
        28,
        "Deprecated (previously ORCHID)",
        Forbid,
    ),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "ORCHIDv2", Forbid),
    v6(
        [0x2001, 0x30, 0, 0, 0, 0, 0, 0],
        28,
        "Drone Remote ID Protocol Entity Tags (DETs) Prefix",
        Forbid,
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "Documentation",
        Forbid,
    ),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4", Forbid),
    v6(
        [0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0],
        48,
        "Direct Delegation AS112 Service",
        Forbid,
    ),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "Documentation", Forbid),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "Segment Routing (SRv6) SIDs",
        Forbid,
    ),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "Unique-Local", Forbid),
    v6(
        [0xfe80, 0, 0, 0, 0, 0, 0, 0],
        10,
        "Link-Local Unicast",
        Forbid,
    ),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "Site-Local (deprecated, IPv6 Address Space)",
        Forbid,
    ),
    v6(
        [0xff00, 0, 0, 0, 0, 0, 0, 0],
        8,
        "Multicast (IPv6 Address Space)",
        Forbid,
    ),
];

/// The most specific row of [`SPECIAL_PURPOSE`] that contains `ip` (compared as written: an
/// IPv4-mapped address is found in its IPv6 row).
///
/// ```
/// use hookwire_webhook_sender::ssrf::{block_of, Rule};
/// assert_eq!(block_of("64:ff9b:1::808:808".parse().unwrap()).name, "IPv4-IPv6 Translat. (local-use)");
/// assert_eq!(block_of("8.8.8.8".parse().unwrap()).rule, Rule::Allow);
/// ```
pub fn block_of(ip: IpAddr) -> &'static SpecialBlock {
    let mut best = &SPECIAL_PURPOSE[0]; // ok: the table is a non-empty constant
    let mut best_prefix = None;
    for b in SPECIAL_PURPOSE {
        let inside = match (b.net.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), b.net.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), b.net.prefix),
            _ => false,
        };
        if inside && best_prefix.is_none_or(|p| b.net.prefix > p) {
            best = b;
            best_prefix = Some(b.net.prefix);
        }
    }
    best
}

/// Whether `ip` is in a range no user-registered webhook may reach: its most specific row in
/// [`SPECIAL_PURPOSE`] forbids it, or embeds an IPv4 address whose own row forbids it.
///
/// ```
/// use hookwire_webhook_sender::ssrf::is_forbidden;
/// for ip in ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "::ffff:10.0.0.1", "fd00::1", "0.0.0.0", "2001:2::1"] {
///     assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
/// }
/// assert!(!is_forbidden("93.184.216.34".parse().unwrap()));
/// assert!(!is_forbidden("2606:2800:220:1::1".parse().unwrap()));
/// assert!(!is_forbidden("64:ff9b::93.184.216.34".parse().unwrap()));
/// ```
pub fn is_forbidden(ip: IpAddr) -> bool {
    match block_of(ip).rule {
        Rule::Forbid => true,
        Rule::Allow => false,
        Rule::EmbedsIpv4 => match ip {
            IpAddr::V6(v6) => {
                let o = v6.octets();
                let v4 = IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
                block_of(v4).rule != Rule::Allow
            }
            // IPv4 rows never embed; fail closed should one ever be declared so.
            IpAddr::V4(_) => true,
        },
    }
}

/// Which addresses outbound connections may use.
///
/// [`SsrfPolicy::default`] blocks every forbidden range ([`is_forbidden`]); networks added with
/// [`SsrfPolicy::allow`] are let through (tests and local development allow `127.0.0.1/32`).
/// [`SsrfPolicy::disabled`] allows everything — for senders whose URLs come from the operator, not
/// from users.
///
/// ```
/// use hookwire_webhook_sender::ssrf::SsrfPolicy;
/// let p = SsrfPolicy::default().allow("127.0.0.1/32".parse().unwrap());
/// assert!(p.permits("127.0.0.1".parse().unwrap()));
/// assert!(!p.permits("127.0.0.2".parse().unwrap()));
/// assert!(!p.permits("::1".parse().unwrap()));
/// assert!(SsrfPolicy::disabled().permits("10.0.0.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrfPolicy {
    enabled: bool,
    allow: Vec<IpNet>,
}

impl Default for SsrfPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            allow: Vec::new(),
        }
    }
}

impl SsrfPolicy {
    /// No guard at all.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            allow: Vec::new(),
        }
    }

    /// Lets `net` through even though it is in a forbidden range.
    #[must_use]
    pub fn allow(mut self, net: IpNet) -> Self {
        self.allow.push(net);
        self
    }

    /// Whether the guard is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether a connection to `ip` is allowed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.enabled || !is_forbidden(ip) || self.allow.iter().any(|n| n.contains(ip))
    }
}

/// Registration-time checks of a user-supplied URL: http(s) only, a host, no userinfo, no IPv6
/// zone id, and an IP literal must be permitted by `policy`. Resolved names are checked again at
/// connect time.
///
/// ```
/// use hookwire_webhook_sender::ssrf::{check_url, SsrfPolicy};
/// let p = SsrfPolicy::default();
/// assert!(check_url("https://hooks.example.com/in", &p).is_ok());
/// assert!(check_url("http://[::1]:8080/", &p).is_err());
/// assert!(check_url("http://user:pw@example.com/", &p).is_err());
/// assert!(check_url("ftp://example.com/", &p).is_err());
/// assert!(check_url("http://[fe80::1%25eth0]/", &p).is_err());
/// ```
pub fn check_url(url: &str, policy: &SsrfPolicy) -> Result<http::Uri, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("URL {url:?} must be http or https")),
    }
    let Some(auth) = uri.authority() else {
        return Err(format!("URL {url:?} has no host"));
    };
    if auth.as_str().contains('@') {
        return Err(format!("URL {url:?} must not carry credentials"));
    }
    let host = strip_brackets(auth.host());
    if host.is_empty() {
        return Err(format!("URL {url:?} has no host"));
    }
    if host.contains('%') {
        return Err(format!("URL {url:?} has an IPv6 zone id"));
    }
    if let Ok(ip) = host.parse::<IpAddr>()
        && !policy.permits(ip)
    {
        return Err(format!("URL {url:?} points at a forbidden address {ip}"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    // Every row of [`SPECIAL_PURPOSE`]: addresses inside it (judged by that row) and, where
    // meaningful, the addresses just outside it (judged by the enclosing row). The embedding
    // rows are tested with every IPv4 case below.
    /// A row's CIDR, addresses inside it, and addresses just outside it with their verdict
    /// (`true` = forbidden).
    type Row = (
        &'static str,
        &'static [&'static str],
        &'static [(&'static str, bool)],
    );

    const ROWS: &[Row] = &[
        ("0.0.0.0/0", &["8.8.8.8", "1.0.0.0", "223.255.255.255"], &[]),
        (
            "0.0.0.0/8",
            &["0.1.2.3", "0.255.255.255"],
            &[("1.0.0.0", false)],
        ),
        ("0.0.0.0/32", &["0.0.0.0"], &[]),
        (
            "10.0.0.0/8",
            &["10.0.0.0", "10.255.255.255"],
            &[("9.255.255.255", false), ("11.0.0.0", false)],
        ),
        (
            "100.64.0.0/10",
            &["100.64.0.0", "100.127.255.255"],
            &[("100.63.255.255", false), ("100.128.0.0", false)],
        ),
        (
            "127.0.0.0/8",
            &["127.0.0.1", "127.255.255.255"],
            &[("126.255.255.255", false), ("128.0.0.0", false)],
        ),
        (
            "169.254.0.0/16",
            &["169.254.169.254"],
            &[("169.253.255.255", false), ("169.255.0.0", false)],
        ),
        (
            "172.16.0.0/12",
            &["172.16.0.0", "172.31.255.255"],
            &[("172.15.255.255", false), ("172.32.0.0", false)],
        ),
        (
            "192.0.0.0/24",
            &["192.0.0.100", "192.0.0.255"],
            &[("191.255.255.255", false), ("192.0.1.0", false)],
        ),
        ("192.0.0.0/29", &["192.0.0.0", "192.0.0.7"], &[]),
        ("192.0.0.8/32", &["192.0.0.8"], &[]),
        ("192.0.0.9/32", &["192.0.0.9"], &[]),
        ("192.0.0.10/32", &["192.0.0.10"], &[]),
        ("192.0.0.170/32", &["192.0.0.170"], &[]),
        ("192.0.0.171/32", &["192.0.0.171"], &[]),
        (
            "192.0.2.0/24",
            &["192.0.2.1"],
            &[("192.0.1.255", false), ("192.0.3.0", false)],
        ),
        (
            "192.31.196.0/24",
            &["192.31.196.1"],
            &[("192.31.195.255", false), ("192.31.197.0", false)],
        ),
        (
            "192.52.193.0/24",
            &["192.52.193.1"],
            &[("192.52.192.255", false), ("192.52.194.0", false)],
        ),
        (
            "192.88.99.0/24",
            &["192.88.99.1"],
            &[("192.88.98.255", false), ("192.88.100.0", false)],
        ),
        (
            "192.168.0.0/16",
            &["192.168.1.1"],
            &[("192.167.255.255", false), ("192.169.0.0", false)],
        ),
        (
            "192.175.48.0/24",
            &["192.175.48.1"],
            &[("192.175.47.255", false), ("192.175.49.0", false)],
        ),
        (
            "198.18.0.0/15",
            &["198.18.0.1", "198.19.255.255"],
            &[("198.17.255.255", false), ("198.20.0.0", false)],
        ),
        (
            "198.51.100.0/24",
            &["198.51.100.1"],
            &[("198.51.99.255", false), ("198.51.101.0", false)],
        ),
        (
            "203.0.113.0/24",
            &["203.0.113.1"],
            &[("203.0.112.255", false), ("203.0.114.0", false)],
        ),
        (
            "224.0.0.0/4",
            &["224.0.0.1", "239.255.255.255"],
            &[("223.255.255.255", false)],
        ),
        ("240.0.0.0/4", &["240.0.0.1", "255.255.255.254"], &[]),
        ("255.255.255.255/32", &["255.255.255.255"], &[]),
        (
            "::/0",
            &[
                "4000::1",
                "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "200::1",
            ],
            &[],
        ),
        (
            "2000::/3",
            &["2606:4700::1111", "2000::", "3fff:1000::"],
            &[
                ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
                ("4000::", true),
            ],
        ),
        (
            "::/8",
            &["::1:0:0:1", "ff:ffff::"],
            &[("100:0:0:2::", true)],
        ),
        ("::/128", &["::"], &[]),
        ("::1/128", &["::1"], &[]),
        ("::/96", &[], &[]),
        ("::ffff:0:0/96", &[], &[]),
        ("64:ff9b::/96", &[], &[]),
        (
            "64:ff9b:1::/48",
            &["64:ff9b:1::808:808", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff"],
            &[],
        ),
        ("100::/64", &["100::1"], &[]),
        ("100:0:0:1::/64", &["100:0:0:1::1"], &[]),
        (
            "2001::/23",
            &["2001:1::4", "2001:1ff:ffff::"],
            &[
                ("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
                ("2001:200::", false),
            ],
        ),
        (
            "2001::/32",
            &["2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2"],
            &[],
        ),
        ("2001:1::1/128", &["2001:1::1"], &[]),
        ("2001:1::2/128", &["2001:1::2"], &[]),
        ("2001:1::3/128", &["2001:1::3"], &[]),
        ("2001:2::/48", &["2001:2::1", "2001:2:0:ffff::"], &[]),
        ("2001:3::/32", &["2001:3::1"], &[]),
        ("2001:4:112::/48", &["2001:4:112::1"], &[]),
        ("2001:10::/28", &["2001:10::1"], &[]),
        ("2001:20::/28", &["2001:2f::1"], &[]),
        ("2001:30::/28", &["2001:30::1"], &[]),
        (
            "2001:db8::/32",
            &["2001:db8::1"],
            &[
                ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", false),
                ("2001:db9::", false),
            ],
        ),
        (
            "2002::/16",
            &["2002:7f00:1::", "2002:808:808::1"],
            &[
                ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
                ("2003::", false),
            ],
        ),
        (
            "2620:4f:8000::/48",
            &["2620:4f:8000::1"],
            &[
                ("2620:4f:7fff:ffff:ffff:ffff:ffff:ffff", false),
                ("2620:4f:8001::", false),
            ],
        ),
        (
            "3fff::/20",
            &["3fff::1", "3fff:fff:ffff::"],
            &[
                ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
                ("3fff:1000::", false),
            ],
        ),
        ("5f00::/16", &["5f00::1"], &[]),
        ("fc00::/7", &["fc00::1", "fdff::1"], &[]),
        ("fe80::/10", &["fe80::1", "febf::1"], &[]),
        ("fec0::/10", &["fec0::1", "feff::1"], &[]),
        ("ff00::/8", &["ff02::1"], &[]),
    ];

    #[test]
    fn every_row_of_the_table_is_tested_address_by_address() {
        let listed: Vec<IpNet> = ROWS.iter().map(|(n, _, _)| n.parse().unwrap()).collect();
        for b in SPECIAL_PURPOSE {
            assert!(
                listed.contains(&b.net),
                "row {} ({}) has no test",
                b.net,
                b.name
            );
        }
        assert_eq!(listed.len(), SPECIAL_PURPOSE.len());
        for (net, inside, outside) in ROWS {
            let net: IpNet = net.parse().unwrap();
            let row = SPECIAL_PURPOSE.iter().find(|b| b.net == net).unwrap();
            for a in *inside {
                let a = ip(a);
                assert_eq!(block_of(a).net, net, "{a} is judged by the row {net}");
                assert_eq!(
                    is_forbidden(a),
                    row.rule == Rule::Forbid,
                    "{a} in {net} ({})",
                    row.name
                );
            }
            for (a, forbidden) in *outside {
                let a = ip(a);
                assert_ne!(block_of(a).net, net, "{a} is outside {net}");
                // Just outside a forbidden row, the enclosing allowed row decides, and vice versa.
                assert_eq!(is_forbidden(a), *forbidden, "{a} just outside {net}");
            }
        }
    }

    /// IPv4 addresses from every IPv4 row, with their verdict.
    fn v4_cases() -> Vec<(Ipv4Addr, bool)> {
        let mut cases = Vec::new();
        for (net, inside, outside) in ROWS {
            let net: IpNet = net.parse().unwrap();
            if !matches!(net.addr, IpAddr::V4(_)) {
                continue;
            }
            for a in *inside {
                cases.push((a.parse().unwrap(), is_forbidden(ip(a))));
            }
            for (a, forbidden) in *outside {
                cases.push((a.parse().unwrap(), *forbidden));
            }
        }
        cases
    }

    #[test]
    fn ipv4_carried_in_ipv6_is_judged_by_the_ipv4_table() {
        for (v4, forbidden) in v4_cases() {
            let [a, b, c, d] = v4.octets();
            let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            let nat64 = IpAddr::V6(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo));
            assert_eq!(is_forbidden(mapped), forbidden, "{mapped}");
            assert_eq!(is_forbidden(nat64), forbidden, "{nat64}");
            // IPv4-compatible `::a.b.c.d` (`::` and `::1` are their own rows).
            if u32::from(v4) > 1 {
                let compat = IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo));
                assert_eq!(is_forbidden(compat), forbidden, "{compat}");
            }
            // 6to4, Teredo (server and obfuscated client address) and the NAT64 local-use
            // prefix are forbidden whatever they carry.
            for v6 in [
                Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),
                Ipv6Addr::new(0x2001, 0, hi, lo, 0, 0, !hi, !lo),
                Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, hi, lo),
            ] {
                assert!(is_forbidden(IpAddr::V6(v6)), "{v6}");
            }
        }
    }

    #[test]
    fn allow_list_matches_mapped_forms_of_allowed_v4() {
        let p = SsrfPolicy::default().allow("127.0.0.1".parse().unwrap());
        assert!(p.permits(ip("::ffff:127.0.0.1")));
        assert!(!p.permits(ip("::ffff:127.0.0.2")));
    }

    #[test]
    fn bracketed_literals_are_checked_at_registration() {
        let p = SsrfPolicy::default();
        assert!(check_url("http://[::ffff:127.0.0.1]/", &p).is_err());
        assert!(check_url("http://[::1]/", &p).is_err());
        assert!(check_url("http://127.0.0.1:9/", &p).is_err());
        let open = SsrfPolicy::default().allow("::1/128".parse().unwrap());
        assert!(check_url("http://[::1]:80/x", &open).is_ok());
    }

    #[test]
    fn odd_prefixes_compare_the_masked_bits() {
        let n: IpNet = "100.64.0.0/10".parse().unwrap();
        assert!(n.contains(ip("100.127.255.255")));
        assert!(!n.contains(ip("100.128.0.0")));
        let z: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(z.contains(ip("9.9.9.9")));
    }
}
