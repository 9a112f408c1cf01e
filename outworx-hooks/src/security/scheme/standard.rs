//! Standard Webhooks (`webhook-*` or `svix-*` headers): `v1` HMAC and `v1a` Ed25519
//! (Standard Webhooks, Svix, Clerk, Resend).

use super::*;

/// Checks a delivery against the `Standard` family.
pub(super) fn check_standard(i: &Input<'_>, brand: &str) -> Check {
    let Input {
        d,
        keys,
        tolerance,
        now,
        ..
    } = *i;
    let primary = standard_headers(brand);
    let other = standard_headers(if brand == "svix" { "webhook" } else { "svix" });
    let [id_h, ts_h, sig_h] =
        if d.headers.contains_key(primary[0]) || !d.headers.contains_key(other[0]) {
            primary
        } else {
            other
        };
    let id = header(d, id_h)?;
    let ts_text = header(d, ts_h)?;
    let sig_text = header(d, sig_h)?;
    let ts = parse_unix(ts_h, ts_text)?;
    let (mut v1, mut v1a) = (Vec::new(), Vec::new());
    let mut entries = 0usize;
    for entry in sig_text.split_ascii_whitespace() {
        match entry.split_once(',') {
            Some(("v1", s)) => {
                entries += 1;
                v1.extend(Sig::decode(Encoding::Base64, s));
            }
            Some(("v1a", s)) => {
                entries += 1;
                v1a.extend(Sig::decode(Encoding::Base64, s));
            }
            _ => {} // unknown versions are ignored, as the spec says
        }
        if entries > MAX_SIGNATURES {
            return Err(too_many(sig_h));
        }
    }
    if entries > 0 && v1.is_empty() && v1a.is_empty() {
        return Err(Failure::unreadable(sig_h, "no `v1`/`v1a` value is base64"));
    }
    if v1.is_empty() && v1a.is_empty() {
        return Err(Failure::malformed(
            sig_h,
            "it has no `v1,<base64>` or `v1a,<base64>` signature",
        ));
    }
    let parts = standard_parts(id, ts_text, d.body);
    let ok = any_hmac(keys, Algo::Sha256, &parts, &v1)
        || (!v1a.is_empty() && has_ed25519(keys) && any_ed25519(keys, &concat(&parts), &v1a));
    if !ok {
        return Err(Failure::mismatch(keys));
    }
    within(i128::from(ts) * 1000, now, tolerance)
}

/// Signs a body as the `Standard` family does.
pub(super) fn sign_standard(s: &mut SignCtx<'_>, brand: &str) -> Result<(), SignError> {
    let [id_h, ts_h, sig_h] = standard_headers(brand);
    let sig = standard_signature(s.provider, s.secret, &s.id, &s.ts_text, &s.body)?;
    put(&mut s.headers, id_h, s.id.clone())?;
    put(&mut s.headers, ts_h, s.ts_text.clone())?;
    put(&mut s.headers, sig_h, sig)?;
    Ok(())
}

/// One Standard Webhooks signature entry of a message: `v1,<base64 HMAC>` for a `whsec_`
/// secret, `v1a,<base64 Ed25519>` for a `whsk_` private key. The sending side signs with it.
pub(crate) fn standard_signature(
    provider: Provider,
    secret: &str,
    id: &str,
    ts: &str,
    body: &[u8],
) -> Result<String, SignError> {
    let parts = standard_parts(id, ts, body);
    if let Some(seed) = secret.strip_prefix("whsk_") {
        let seed = ed25519_seed(seed).ok_or(SignError::SigningKey {
            provider,
            expected: "`whsk_` followed by a base64 32-byte Ed25519 seed",
        })?;
        let sig = ed25519_sign(provider, seed, &concat(&parts))?;
        return Ok(format!("v1a,{}", b64().encode(sig)));
    }
    let key = match crate::security::parse_key(provider, secret)? {
        Key::Secret(k) => k.into_bytes(),
        #[allow(unreachable_patterns)]
        _ => {
            return Err(SignError::SigningKey {
                provider,
                expected: "a `whsec_` secret or a `whsk_` private key",
            });
        }
    };
    Ok(format!(
        "v1,{}",
        b64().encode(mac(Algo::Sha256, &key, &parts).bytes())
    ))
}

fn ed25519_seed(text: &str) -> Option<[u8; 32]> {
    b64()
        .decode(text)
        .ok()
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
}

/// The `whpk_` public key of a `whsk_` private key, for the receiver to verify `v1a` with.
/// (The sending side, feature `send`, implies `ed25519`.)
#[cfg(feature = "send")]
pub(crate) fn standard_public_key(secret: &str) -> Option<String> {
    let seed = ed25519_seed(secret.strip_prefix("whsk_")?)?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    Some(format!("whpk_{}", b64().encode(key.as_bytes())))
}

pub(super) fn standard_parts<'a>(id: &'a str, ts: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [id.as_bytes(), b".", ts.as_bytes(), b".", body]
}

/// `svix-*` and `webhook-*` header names for the Standard Webhooks family.
pub(super) fn standard_headers(brand: &str) -> [&'static str; 3] {
    if brand == "svix" {
        ["svix-id", "svix-timestamp", "svix-signature"]
    } else {
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
    }
}
