//! Which callback URLs naga sends to: the allowlist, checked on the URL
//! and again on every address its host resolves to.

use std::net::IpAddr;

/// Checks a `callback_url` against `[callbacks] allowed_hosts`.
pub fn check_url(raw: &str, allowed: &[String]) -> Result<url::Url, String> {
    let url = url::Url::parse(raw)
        .map_err(|e| format!("callback_url `{raw}` is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "callback_url must be http or https, not `{}`",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("callback_url `{raw}` has no host"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let is_loopback = bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let allowed_here = allowed
        .iter()
        .any(|a| a == "*" || (a == "loopback" && is_loopback) || a.eq_ignore_ascii_case(bare));
    let address = bare.parse::<IpAddr>().ok();
    if let Some(ip) = address.filter(|ip| !address_allowed(*ip, allowed)) {
        return Err(format!(
            "callback address {ip} is refused: private, loopback and link-local addresses need \
             to be listed in [callbacks] allowed_hosts"
        ));
    }
    if allowed_here {
        Ok(url)
    } else {
        Err(format!(
            "callback host `{host}` is not allowed; allowed: {} (set [callbacks] allowed_hosts)",
            allowed.join(", ")
        ))
    }
}

/// Whether a callback may be delivered to `ip` (the address a URL names,
/// or one its host name resolves to at delivery): public addresses yes;
/// loopback only with `loopback` allowed; private, link-local (the cloud
/// metadata service), shared, unspecified, multicast and documentation
/// ranges only when the address itself is listed.
pub fn address_allowed(ip: IpAddr, allowed: &[String]) -> bool {
    // An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is that address.
    let unmapped = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let ip = unmapped(ip);
    if allowed.iter().any(|a| {
        a.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|listed| unmapped(listed) == ip)
    }) {
        return true;
    }
    if ip.is_loopback() {
        return allowed.iter().any(|a| a == "loopback");
    }
    let special = match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared (CGNAT)
                || (a == 192 && b == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 too)
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 // NAT64
        }
    };
    !special
}
