//! The resolver of the callback client: a host's addresses checked against
//! the allowlist as they are resolved, so that a name cannot point naga at
//! an address the allowlist refuses.

use super::address_allowed;
use std::sync::Arc;

/// A host name that resolves to no address a callback may go to.
#[derive(Debug)]
struct RefusedAddress(String);

impl std::fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RefusedAddress {}

/// The callback client's DNS: every address a host name resolves to is
/// checked ([`address_allowed`]) as the connection is made, so a name that
/// was allowed cannot be rebound to an internal address.
pub(super) struct CheckedResolver {
    pub(super) allowed: Arc<[String]>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let usable: Vec<_> = found
                .iter()
                .copied()
                .filter(|a| address_allowed(a.ip(), &allowed))
                .collect();
            if usable.is_empty() {
                let addrs: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                return Err(Box::new(RefusedAddress(format!(
                    "callback host `{host}` resolves to {} only: private, loopback and \
                     link-local addresses are refused unless listed in [callbacks] allowed_hosts",
                    addrs.join(", ")
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(usable.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The refusal of the address-level check in `e`'s causes, if that is why
/// it failed.
pub(super) fn refused_address(e: &reqwest::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<RefusedAddress>() {
            return Some(r.0.clone());
        }
        cause = c.source();
    }
    None
}
