//! App-scoped tokens: what `POST /auth/app-portal-access/{app}` issues for one application's
//! subscriber portal (ours, or `svix-react`), and what the API accepts beside the namespace's
//! own tokens.
//!
//! A token is `opt_<claims>.<mac>`: the claims (namespace, application id, expiry, read-only)
//! as base64url JSON, and an HMAC-SHA256 of them with the namespace's portal key. It names
//! one application and nothing else; it expires (1 hour by default); it is refused (401) once
//! its namespace has no key any more (`outworx serve`: the API key it derives from is
//! removed), once its application is deleted, and once `expire-all` ran after it was issued.

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How long a token lives unless the request asks otherwise (`expiry`, in seconds).
pub const DEFAULT_LIFETIME_SECS: u64 = 3600;
/// The shortest and longest lifetime a request may ask for.
pub(crate) const MIN_LIFETIME_SECS: u64 = 60;
pub(crate) const MAX_LIFETIME_SECS: u64 = 7 * 86_400;
/// Longer tokens are not read at all.
pub(crate) const MAX_TOKEN_LEN: usize = 2048;
const PREFIX: &str = "opt_";

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    /// The namespace it was issued in.
    pub(crate) ns: String,
    /// The application (`app_...`) it opens.
    pub(crate) app: String,
    /// Issued, ms since 1970 (`expire-all` refuses those issued until then).
    #[serde(default)]
    pub(crate) iat: i64,
    /// Expiry, ms since 1970.
    pub(crate) exp: i64,
    /// Only reads (GET).
    #[serde(default)]
    pub(crate) ro: bool,
    /// The feature flags it sees event types of (an event type with a flag is hidden from
    /// tokens without it, as Svix does).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) ff: Vec<String>,
}

fn mac(key: &[u8; 32], data: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: the fallback is never taken.
    let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()));
    m.update(data);
    m
}

/// A token for `claims`, signed with `key`.
pub(crate) fn mint(key: &[u8; 32], claims: &Claims) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = b64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let sig = b64.encode(mac(key, body.as_bytes()).finalize().into_bytes());
    format!("{PREFIX}{body}.{sig}")
}

/// Whether `token` looks like a portal token (it is then checked as one, never as an API
/// key).
pub(crate) fn is_portal_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// The claims of a valid, unexpired token whose namespace still has a key (`key`).
pub(crate) fn verify(
    token: &str,
    now_ms: i64,
    key: impl Fn(&str) -> Option<[u8; 32]>,
) -> Option<Claims> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (body, sig) = token.strip_prefix(PREFIX)?.split_once('.')?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims: Claims = serde_json::from_slice(&b64.decode(body).ok()?).ok()?;
    let key = key(&claims.ns)?;
    let sig = b64.decode(sig).ok()?;
    mac(&key, body.as_bytes()).verify_slice(&sig).ok()?;
    (claims.exp > now_ms).then_some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            ns: "ns1".into(),
            app: "app_1".into(),
            iat: 500,
            exp: 2_000,
            ro: false,
            ff: vec!["beta".into()],
        }
    }

    #[test]
    fn a_token_holds_only_until_it_expires_or_its_key_goes() {
        let key = [7u8; 32];
        let t = mint(&key, &claims());
        assert!(is_portal_token(&t));
        assert_eq!(verify(&t, 1_000, |_| Some(key)), Some(claims()));
        assert_eq!(verify(&t, 2_000, |_| Some(key)), None, "expired");
        assert_eq!(
            verify(&t, 1_000, |_| None),
            None,
            "the namespace's key is gone"
        );
        assert_eq!(verify(&t, 1_000, |_| Some([8u8; 32])), None, "another key");
    }

    #[test]
    fn a_forged_or_altered_token_is_refused() {
        let key = [7u8; 32];
        let t = mint(&key, &claims());
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (body, sig) = t.strip_prefix(PREFIX).unwrap().split_once('.').unwrap();
        // Another application, the same signature.
        let mut other = claims();
        other.app = "app_2".into();
        let forged = format!(
            "{PREFIX}{}.{sig}",
            b64.encode(serde_json::to_vec(&other).unwrap())
        );
        assert_eq!(verify(&forged, 1_000, |_| Some(key)), None);
        for bad in [
            String::new(),
            "opt_".into(),
            format!("opt_{body}"),
            format!("opt_{body}."),
            format!("opt_{body}.{}", &sig[1..]),
            format!("opt_!!.{sig}"),
            "opt_".to_owned() + &"a".repeat(4000),
        ] {
            assert_eq!(verify(&bad, 1_000, |_| Some(key)), None, "{bad}");
        }
    }
}
