//! Standard Webhooks signing: the secret's forms and the signature.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A Standard Webhooks signing key from `whsec_<base64>`.
pub fn parse_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    B64.decode(b64)
        .map_err(|e| format!("[callbacks] secret must be `whsec_<base64 key>`: {e}"))
}

/// The callback secret of a node with `[auth] token` and no `[callbacks]
/// secret`: derived from the token (HMAC-SHA256, one way), so that every
/// process sharing the token signs and verifies naga's own callbacks with
/// the same key, and the token itself never leaves the process.
pub fn secret_from_token(token: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(b"naga callback secret, derived from [auth] token")
            .expect("HMAC takes keys of any length");
    mac.update(token.as_bytes());
    format!("whsec_{}", B64.encode(mac.finalize().into_bytes()))
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}
