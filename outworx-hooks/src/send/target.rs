//! Which endpoint addresses a sender may connect to. A URL's name is not trusted: the check
//! runs on every address the name resolves to, at connect time, so a name that points at
//! the metadata service (or is re-pointed there later) is refused all the same.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

use super::SendError;

/// Which targets the sender may reach: public addresses over `https` by default; loopback,
/// private, link-local, metadata and other special addresses (and plain `http`) only when an
/// allow-list names them.
///
/// ```
/// use outworx_hooks::send::TargetPolicy;
///
/// let strict = TargetPolicy::default();
/// assert!(strict.check_ip("169.254.169.254".parse().unwrap()).is_err());
/// assert!(strict.check_ip("93.184.215.14".parse().unwrap()).is_ok());
///
/// let tests = TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap());
/// assert!(tests.check_ip("127.0.0.1".parse().unwrap()).is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    allowed: Vec<IpNet>,
    allow_http: bool,
}

/// The environment variable of [`TargetPolicy::from_env`]: comma-separated CIDRs.
pub const ALLOW_TARGETS_ENV: &str = "OUTWORX_ALLOW_TARGETS";

impl TargetPolicy {
    /// Also allows the addresses in `net` (for tests, demos, or a private network you own),
    /// over `http` as well as `https`.
    pub fn allow(mut self, net: IpNet) -> Self {
        self.allowed.push(net);
        self
    }

    /// As [`TargetPolicy::allow`], from text: a CIDR (`10.1.0.0/16`) or an address.
    pub fn allow_cidr(self, cidr: &str) -> Result<Self, SendError> {
        Ok(self.allow(parse_cidr(cidr)?))
    }

    /// Allows plain `http` to public addresses too (never on by default).
    pub fn allow_http(mut self, yes: bool) -> Self {
        self.allow_http = yes;
        self
    }

    /// The default policy plus the CIDRs in `OUTWORX_ALLOW_TARGETS` (comma-separated).
    pub fn from_env() -> Result<Self, SendError> {
        let mut policy = TargetPolicy::default();
        if let Ok(list) = std::env::var(ALLOW_TARGETS_ENV) {
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                policy = policy.allow_cidr(item)?;
            }
        }
        Ok(policy)
    }

    /// The CIDRs allowed beside public addresses.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }

    /// Whether an address may be connected to.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), SendError> {
        if self.allowed.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match special(ip) {
            None => Ok(()),
            Some(kind) => Err(SendError::Target(format!(
                "{ip} is a {kind} address; allow it with {ALLOW_TARGETS_ENV} (or TargetPolicy::allow) if it is meant"
            ))),
        }
    }

    /// Whether a URL may be stored as an endpoint: `http(s)`, a host, no credentials, and
    /// `https` unless `http` is allowed here. Its addresses are checked at connect time.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, SendError> {
        if url.len() > super::limits::MAX_URL_LEN {
            return Err(SendError::invalid("url", "at most 2048 bytes"));
        }
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| SendError::invalid("url", format!("not a URL: {e}")))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(SendError::invalid(
                "url",
                "credentials do not go in the URL: use the endpoint's `auth`",
            ));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| SendError::invalid("url", "it has no host"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.http_allowed_for(host) => {}
            "http" => {
                return Err(SendError::invalid(
                    "url",
                    format!(
                        "plain http is refused: use https, or allow the target with \
                         {ALLOW_TARGETS_ENV} (e.g. 127.0.0.0/8), TargetPolicy::allow or \
                         `--allow-target`"
                    ),
                ));
            }
            _ => return Err(SendError::invalid("url", "the scheme is http or https")),
        }
        if let Some(ip) = literal_ip(host) {
            self.check_ip(ip)?;
        }
        Ok(parsed)
    }

    /// [`TargetPolicy::check_url`] for a URL about to be stored (an endpoint created or
    /// changed): it is stored as given and shown to operators and tenants, so it holds no
    /// character a terminal or a log would act on (the URL parser drops tabs and line breaks
    /// rather than refusing them). Attempts check only the policy, so an endpoint stored
    /// before this rule keeps being delivered.
    pub(crate) fn check_new_url(&self, url: &str) -> Result<reqwest::Url, SendError> {
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(SendError::invalid(
                "url",
                "it holds a space or a control character: percent-encode it",
            ));
        }
        self.check_url(url)
    }

    fn http_allowed_for(&self, host: &str) -> bool {
        self.allow_http
            || match literal_ip(host) {
                Some(ip) => self.allowed.iter().any(|n| n.contains(&ip)),
                // A name: its addresses are checked when it is resolved.
                None => !self.allowed.is_empty(),
            }
    }

    /// Checks a resolved address for a URL of this scheme.
    pub(crate) fn check_connect(&self, ip: IpAddr, https: bool) -> Result<(), SendError> {
        self.check_ip(ip)?;
        if !https && !self.allow_http && !self.allowed.iter().any(|n| n.contains(&ip)) {
            return Err(SendError::Target(format!(
                "plain http to {ip} is refused: use https, or allow the target with \
                 {ALLOW_TARGETS_ENV}, TargetPolicy::allow or `--allow-target`"
            )));
        }
        Ok(())
    }
}

/// The address of a host written as an IP (`127.0.0.1`, `[::1]`), or `None` for a name.
fn literal_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn parse_cidr(s: &str) -> Result<IpNet, SendError> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| SendError::invalid("allow_targets", format!("`{s}` is not a CIDR")))
}

/// What kind of special address `ip` is, or `None` for a public one.
pub(crate) fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private",
        (169, 254, _) => "link-local (cloud metadata)",
        (0, _, _) => "unspecified",
        (100, 64..=127, _) => "carrier-grade NAT",
        (192, 0, 0) => "IETF protocol",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return special_v4(v4);
    }
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        0xfc00..=0xfdff => "unique-local (private)",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xff00..=0xffff => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x0100 if s[1..4] == [0, 0, 0] => "discard",
        0x0064 if s[1] == 0xff9b => "NAT64 (local use)",
        // Only global unicast (2000::/3) is public; everything else is special.
        0x2000..=0x3fff => return None,
        _ => "non-global IPv6",
    })
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible, NAT64
/// (`64:ff9b::/96`) or 6to4 (`2002::/16`) address: each reaches the IPv4 host.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(tail(hi, lo)),
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(tail(hi, lo)), // SIIT, ::ffff:0:0/96
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => Some(tail(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        [0x2002, hi, lo, ..] => Some(tail(hi, lo)),
        _ => None,
    }
}

/// The resolver the delivery client connects through: every address of a name is checked
/// against the policy (for `https`, or for plain `http`: one client each), and a name with no
/// allowed address fails to resolve. The address checked is the address connected to: there
/// is no second lookup to rebind between.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    pub(crate) policy: Arc<TargetPolicy>,
    pub(crate) https: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let https = self.https;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // One answer for a name that does not resolve, resolves to nothing, or resolves
            // only to refused addresses: the error is shown to the tenant that owns the
            // endpoint, and which internal names exist is not theirs to learn. The operator's
            // log has the reason (debug).
            let unreachable =
                || format!("{host} did not resolve to an address this sender delivers to").into();
            let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    tracing::debug!(%host, error = %e, "endpoint name did not resolve");
                    return Err(unreachable());
                }
            };
            let mut refused = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check_connect(a.ip(), https) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.get_or_insert(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                match refused {
                    None => tracing::debug!(%host, "endpoint name has no address"),
                    Some(e) => {
                        tracing::debug!(%host, error = %e, "endpoint name refused by the target policy");
                    }
                }
                return Err(unreachable());
            }
            let iter: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(iter)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A refusal of plain http names the setting that allows the target.
    #[test]
    fn a_plain_http_refusal_names_the_setting() {
        let e = TargetPolicy::default()
            .check_url("http://example.com/hook")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(ALLOW_TARGETS_ENV) && e.contains("TargetPolicy::allow"),
            "{e}"
        );
        let e = TargetPolicy::default()
            .check_connect(ip("93.184.216.34"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains(ALLOW_TARGETS_ENV), "{e}");
    }

    #[test]
    fn special_addresses_are_refused() {
        let p = TargetPolicy::default();
        for bad in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "fd00:ec2::254",
            "::ffff:0:7f00:1",
            "64:ff9b:1::a00:1",
            "fc00::1",
            "4000::1",
        ] {
            assert!(p.check_ip(ip(bad)).is_err(), "{bad} was allowed");
        }
        for good in [
            "93.184.215.14",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(p.check_ip(ip(good)).is_ok(), "{good} was refused");
        }
    }

    #[test]
    fn the_allow_list_opens_exactly_its_nets() {
        let p = TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap());
        assert!(p.check_ip(ip("127.0.0.1")).is_ok());
        assert!(p.check_ip(ip("10.0.0.1")).is_err());
        assert!(p.check_connect(ip("127.0.0.1"), false).is_ok());
        assert!(p.check_connect(ip("1.1.1.1"), false).is_err());
        assert!(p.check_connect(ip("1.1.1.1"), true).is_ok());
    }

    #[test]
    fn urls_are_checked_before_they_are_stored() {
        let p = TargetPolicy::default();
        assert!(p.check_url("https://example.com/hook").is_ok());
        assert!(p.check_url("http://example.com/hook").is_err());
        assert!(p.check_url("https://127.0.0.1/hook").is_err());
        assert!(p.check_url("https://[::1]/hook").is_err());
        assert!(p.check_url("https://u:p@example.com/").is_err());
        assert!(p.check_url("ftp://example.com/").is_err());
        // Control characters and spaces (a terminal escape, a forged log line) are refused,
        // not silently dropped or stored.
        for hostile in [
            "https://example.com/\u{1b}[2J",
            "https://example.com/a\nb",
            "https://exa\tmple.com/",
            "https://example.com/a b",
            "https://example.com/\u{7f}",
            "https://example.com/\u{85}",
        ] {
            let e = p.check_new_url(hostile).unwrap_err().to_string();
            assert!(e.contains("control character"), "{hostile:?}: {e}");
        }
        assert!(p.check_url("not a url").is_err());
        let open = TargetPolicy::default().allow("127.0.0.1/32".parse().unwrap());
        assert!(open.check_url("http://127.0.0.1:9/hook").is_ok());
        assert!(open.check_url("http://10.0.0.1/hook").is_err());
    }
}
