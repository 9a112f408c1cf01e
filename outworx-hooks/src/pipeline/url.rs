//! Who sent a request, and where to: the client's address (believing `X-Forwarded-For` only
//! from trusted proxies), the public URL a provider signed, and the `allow_ips` check.
//!
//! The peer address comes from axum's `ConnectInfo<SocketAddr>` (serve the app with
//! `into_make_service_with_connect_info::<SocketAddr>()`). Without it no proxy is trusted and
//! no address is known, so an `allow_ips` route refuses to guess (a configuration fault).

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::request::Parts;
use ipnet::IpNet;

#[cfg(test)]
use crate::config::parse_cidrs;

/// The address the connection came from, IPv4-mapped IPv6 addresses as IPv4.
pub(crate) fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())
}

fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// Whether the connection came from one of the `trusted` proxies.
pub(crate) fn from_trusted_proxy(parts: &Parts, trusted: &[IpNet]) -> bool {
    !trusted.is_empty() && peer(parts).is_some_and(|p| contains(trusted, p))
}

/// The client's address: the peer, or when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` entry that is not a trusted proxy itself. `None` when the peer is unknown
/// or a forwarded entry is not an address (it cannot be told apart from a forgery).
pub(crate) fn client_ip(parts: &Parts, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer(parts)?;
    if !contains(trusted, peer) {
        return Some(peer);
    }
    let mut last = peer;
    // Every X-Forwarded-For header, in order, right to left: each proxy appends.
    let values: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for entry in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let ip = entry.parse::<IpAddr>().ok()?.to_canonical();
        if !contains(trusted, ip) {
            return Some(ip);
        }
        last = ip;
    }
    Some(last)
}

/// The URL the provider sent the request to, as it saw it (URL-signing providers sign it).
///
/// A configured `public_base` wins (`https://hooks.example.com`). Otherwise, behind a trusted
/// proxy, the scheme and host come from `X-Forwarded-Proto` / `X-Forwarded-Host`; from anyone
/// else those headers are ignored (a sender could otherwise choose the URL that gets
/// verified), and the `Host` header is used, with `https` as the scheme (providers post to
/// public HTTPS endpoints).
pub(crate) fn public_url(parts: &Parts, public_base: Option<&str>, trusted: &[IpNet]) -> String {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    if let Some(base) = public_base {
        return format!("{}{path}", base.trim_end_matches('/'));
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let forwarded = from_trusted_proxy(parts, trusted);
    let scheme = forwarded
        .then(|| header("x-forwarded-proto"))
        .flatten()
        .or(parts.uri.scheme_str())
        .unwrap_or("https");
    let host = forwarded
        .then(|| header("x-forwarded-host"))
        .flatten()
        .or_else(|| header("host"))
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    format!("{scheme}://{host}{path}")
}

/// Whether the request carries forwarding headers that [`public_url`] ignored: for a hint
/// when a URL signature fails.
pub(crate) fn ignored_forwarding(
    parts: &Parts,
    public_base: Option<&str>,
    trusted: &[IpNet],
) -> bool {
    public_base.is_none()
        && !from_trusted_proxy(parts, trusted)
        && (parts.headers.contains_key("x-forwarded-host")
            || parts.headers.contains_key("x-forwarded-proto"))
}

/// Whether `ip` may deliver to a route allowing `nets`.
pub(crate) fn allowed(nets: &[IpNet], ip: IpAddr) -> bool {
    contains(nets, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(peer: Option<&str>, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri("/twilio?x=1");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut p = b.body(()).unwrap().into_parts().0;
        if let Some(peer) = peer {
            p.extensions
                .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        }
        p
    }

    #[test]
    fn cidrs_and_bare_addresses_parse_and_bad_ones_are_named() {
        let nets = parse_cidrs(["192.0.2.7/24", " ::1 ", "", "2001:db8::/32"]).unwrap();
        assert_eq!(nets.len(), 3);
        assert_eq!(nets[0].to_string(), "192.0.2.0/24", "host bits are dropped");
        assert!(allowed(&nets, "192.0.2.200".parse().unwrap()));
        assert!(allowed(&nets, "::1".parse().unwrap()));
        assert!(!allowed(&nets, "192.0.3.1".parse().unwrap()));
        let e = parse_cidrs(["10.0.0.0/33"]).unwrap_err();
        assert!(e.contains("10.0.0.0/33"), "{e}");
        assert!(parse_cidrs(["nonsense"]).is_err());
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let trusted = parse_cidrs(["10.0.0.0/8"]).unwrap();
        let xff = [("x-forwarded-for", "198.51.100.9, 10.0.0.2")];
        // An untrusted peer's forwarding header is ignored.
        let p = parts(Some("203.0.113.5:4000"), &xff);
        assert_eq!(
            client_ip(&p, &trusted),
            Some("203.0.113.5".parse().unwrap())
        );
        // From a trusted proxy: the right-most untrusted entry.
        let p = parts(Some("10.0.0.1:4000"), &xff);
        assert_eq!(
            client_ip(&p, &trusted),
            Some("198.51.100.9".parse().unwrap())
        );
        // A forged left-most entry does not win over what the proxy appended.
        let p = parts(
            Some("10.0.0.1:4000"),
            &[
                ("x-forwarded-for", "192.0.2.1"),
                ("x-forwarded-for", "198.51.100.9"),
            ],
        );
        assert_eq!(
            client_ip(&p, &trusted),
            Some("198.51.100.9".parse().unwrap())
        );
        // Garbage in the chain is not guessed around.
        let p = parts(Some("10.0.0.1:4000"), &[("x-forwarded-for", "nope")]);
        assert_eq!(client_ip(&p, &trusted), None);
        // IPv4-mapped peers count as IPv4; no peer, no address.
        let p = parts(Some("[::ffff:127.0.0.2]:1"), &[]);
        assert_eq!(client_ip(&p, &[]), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(client_ip(&parts(None, &[]), &trusted), None);
    }

    #[test]
    fn public_urls_believe_forwarding_headers_only_from_trusted_proxies() {
        let trusted = parse_cidrs(["10.0.0.0/8"]).unwrap();
        let fwd = [
            ("host", "10.0.0.5:3000"),
            ("x-forwarded-proto", "https, http"),
            ("x-forwarded-host", "api.example.com"),
        ];
        let p = parts(Some("10.0.0.1:1"), &fwd);
        assert_eq!(
            public_url(&p, None, &trusted),
            "https://api.example.com/twilio?x=1"
        );
        assert!(!ignored_forwarding(&p, None, &trusted));
        let p = parts(Some("203.0.113.5:1"), &fwd);
        assert_eq!(
            public_url(&p, None, &trusted),
            "https://10.0.0.5:3000/twilio?x=1"
        );
        assert!(ignored_forwarding(&p, None, &trusted));
        let p = parts(None, &[("host", "hooks.example.com")]);
        assert_eq!(
            public_url(&p, None, &[]),
            "https://hooks.example.com/twilio?x=1"
        );
        assert_eq!(
            public_url(&p, Some("https://public.example.com/"), &[]),
            "https://public.example.com/twilio?x=1"
        );
    }
}
