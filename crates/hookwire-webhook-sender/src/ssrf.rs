//! The SSRF guard: which addresses an outbound webhook may connect to.
//!
//! URLs registered through the [`crate::Dispatcher`] come from users, so a hostile user could point
//! one at the cloud metadata service, at Redis on localhost, or at a host that *resolves* to an
//! internal address (DNS rebinding). The guard is therefore checked where it cannot be bypassed:
//! in the connector, on every address the name resolved to, just before the socket connects, and
//! the connection is pinned to the vetted address (`spec/sender.md`, "SSRF guard";
//! `reference/webhook-ecosystem.md` (e) 6 and (f) 15).

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

/// IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) addresses are judged as the
/// IPv4 address they carry, so `[::ffff:127.0.0.1]` cannot sneak past an IPv4 rule.
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

/// Whether `ip` is in a range no user-registered webhook may reach: loopback, private, link-local,
/// CGNAT, multicast, broadcast, unspecified, documentation, benchmarking and reserved ranges, and
/// their IPv6 equivalents (ULA, link-local, site-local, discard, 6to4, Teredo, SRv6, NAT64 of a
/// blocked IPv4).
///
/// ```
/// use hookwire_webhook_sender::ssrf::is_forbidden;
/// for ip in ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "::ffff:10.0.0.1", "fd00::1", "0.0.0.0"] {
///     assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
/// }
/// assert!(!is_forbidden("93.184.216.34".parse().unwrap()));
/// assert!(!is_forbidden("2606:2800:220:1::1".parse().unwrap()));
/// ```
pub fn is_forbidden(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || a >= 240 // reserved 240/4 (and broadcast)
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return true;
    }
    match s[0] {
        0xfc00..=0xfdff => return true, // unique local fc00::/7
        0xfe80..=0xfebf => return true, // link-local fe80::/10
        0xfec0..=0xfeff => return true, // site-local (deprecated) fec0::/10
        0x2002 => return true,          // 6to4 embeds an arbitrary IPv4
        0x5f00 => return true,          // SRv6 SIDs 5f00::/16
        _ => {}
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return true; // Teredo 2001::/32
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return true; // documentation
    }
    if s[0] == 0x0100 && s[1..4] == [0, 0, 0] {
        return true; // discard-only 100::/64
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64 64:ff9b::/96 carries an IPv4 address: allowed only when that one is.
        let o = ip.octets();
        return forbidden_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // Everything else inside ::/8 that is not one of the cases above (IPv4-compatible forms are
    // already mapped by `canonical`) is reserved.
    s[0] & 0xff00 == 0
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

    #[test]
    fn every_forbidden_family_is_blocked() {
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "192.0.0.1",
            "240.0.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "2002:7f00:1::",
            "2001::1",
            "64:ff9b::a00:1",
            "100::1",
        ] {
            assert!(is_forbidden(ip(s)), "{s} should be forbidden");
        }
    }

    #[test]
    fn public_addresses_pass_including_nat64_of_public_v4() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_forbidden(ip(s)), "{s} should be allowed");
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
