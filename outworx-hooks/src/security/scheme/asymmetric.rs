//! Public-key schemes: Discord (Ed25519 over timestamp and body) and SendGrid (ECDSA P-256).

use super::*;

/// Checks a delivery against the `Discord` family.
pub(super) fn check_discord(i: &Input<'_>) -> Check {
    let Input {
        d,
        keys,
        tolerance,
        now,
        ..
    } = *i;
    const SIG: &str = "x-signature-ed25519";
    const TS: &str = "x-signature-timestamp";
    let sig = Sig::decode(Encoding::Hex, header(d, SIG)?)
        .filter(|s| s.len == 64)
        .ok_or_else(|| Failure::unreadable(SIG, "it is not a 128-character hex signature"))?;
    let ts_text = header(d, TS)?;
    let ts = parse_unix(TS, ts_text)?;
    let message = concat(&[ts_text.as_bytes(), d.body]);
    if !any_ed25519(keys, &message, &[sig]) {
        return Err(Failure::mismatch(keys));
    }
    within(i128::from(ts) * 1000, now, tolerance)
}

/// Signs a body as the `Discord` family does.
pub(super) fn sign_discord(s: &mut SignCtx<'_>) -> Result<(), SignError> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(s.secret.trim(), &mut seed).map_err(|_| SignError::SigningKey {
        provider: s.provider,
        expected: "a 64-character hex Ed25519 seed",
    })?;
    let message = concat(&[s.ts_text.as_bytes(), &s.body]);
    let sig = ed25519_sign(s.provider, seed, &message)?;
    put(&mut s.headers, "x-signature-ed25519", hex::encode(sig))?;
    put(&mut s.headers, "x-signature-timestamp", s.ts_text.clone())?;
    Ok(())
}

/// Checks a delivery against the `SendGrid` family.
pub(super) fn check_sendgrid(i: &Input<'_>) -> Check {
    let Input {
        d,
        keys,
        tolerance,
        now,
        ..
    } = *i;
    const SIG: &str = "x-twilio-email-event-webhook-signature";
    const TS: &str = "x-twilio-email-event-webhook-timestamp";
    let sig_text = header(d, SIG)?;
    let ts_text = header(d, TS)?;
    let ts = parse_unix(TS, ts_text)?;
    let der = b64()
        .decode(sig_text)
        .map_err(|_| Failure::unreadable(SIG, "it is not base64"))?;
    if !any_p256(keys, &concat(&[ts_text.as_bytes(), d.body]), &der)
        .map_err(|why| Failure::unreadable(SIG, why))?
    {
        return Err(Failure::mismatch(keys));
    }
    within(i128::from(ts) * 1000, now, tolerance)
}

/// Signs a body as the `SendGrid` family does.
pub(super) fn sign_sendgrid(s: &mut SignCtx<'_>) -> Result<(), SignError> {
    let message = concat(&[s.ts_text.as_bytes(), &s.body]);
    let der = p256_sign(s.provider, s.secret, &message)?;
    put(
        &mut s.headers,
        "x-twilio-email-event-webhook-signature",
        b64().encode(der),
    )?;
    put(
        &mut s.headers,
        "x-twilio-email-event-webhook-timestamp",
        s.ts_text.clone(),
    )?;
    Ok(())
}

#[cfg(feature = "ecdsa")]
fn any_p256(keys: &[Key], message: &[u8], der: &[u8]) -> Result<bool, &'static str> {
    use p256::ecdsa::signature::Verifier as _;
    let sig = p256::ecdsa::Signature::from_der(der)
        .map_err(|_| "the signature is not a DER ECDSA signature")?;
    Ok(keys.iter().any(|k| match k {
        Key::P256(public) => public.verify(message, &sig).is_ok(),
        _ => false,
    }))
}

#[cfg(not(feature = "ecdsa"))]
fn any_p256(_keys: &[Key], _message: &[u8], _der: &[u8]) -> Result<bool, &'static str> {
    Ok(false)
}

#[cfg(feature = "ecdsa")]
fn p256_sign(provider: Provider, secret: &str, message: &[u8]) -> Result<Vec<u8>, SignError> {
    use p256::ecdsa::signature::Signer as _;
    let key = b64()
        .decode(secret.trim())
        .ok()
        .and_then(|s| p256::ecdsa::SigningKey::from_slice(&s).ok())
        .ok_or(SignError::SigningKey {
            provider,
            expected: "a base64 32-byte P-256 private scalar",
        })?;
    let sig: p256::ecdsa::Signature = key.sign(message);
    Ok(sig.to_der().as_bytes().to_vec())
}

#[cfg(not(feature = "ecdsa"))]
fn p256_sign(provider: Provider, _secret: &str, _message: &[u8]) -> Result<Vec<u8>, SignError> {
    Err(SecretError::FeatureDisabled {
        provider,
        feature: "ecdsa",
    }
    .into())
}
