//! HMAC over the raw body in one header (GitHub, Shopify, Bitbucket, Intercom, Vercel,
//! Typeform, Linear, Lemon Squeezy, Razorpay, Meta).

use super::*;

/// Checks a delivery against the `BodyHmac` family.
pub(super) fn check_body_hmac(
    i: &Input<'_>,
    name: &str,
    prefix: &str,
    algo: Algo,
    encoding: Encoding,
    body_timestamp_ms: Option<&str>,
) -> Check {
    let Input {
        d,
        keys,
        tolerance,
        now,
        ..
    } = *i;
    let raw = header(d, name)?;
    let text = strip_prefix_ignore_case(raw, prefix)
        .ok_or_else(|| Failure::malformed(name, &format!("it does not start with `{prefix}`")))?;
    let sig = Sig::decode(encoding, text)
        .ok_or_else(|| Failure::unreadable(name, &format!("it is not {encoding:?}")))?;
    if !any_hmac(keys, algo, &[d.body], &[sig]) {
        return Err(Failure::mismatch(keys));
    }
    match body_timestamp_ms.and_then(|f| body_number_field(d.body, f)) {
        Some(ms) => within(ms, now, tolerance),
        None => Ok(()),
    }
}

/// Signs a body as the `BodyHmac` family does.
pub(super) fn sign_body_hmac(
    s: &mut SignCtx<'_>,
    header: &'static str,
    prefix: &str,
    algo: Algo,
    encoding: Encoding,
) -> Result<(), SignError> {
    let sig = mac(algo, &s.hmac_key()?, &[&s.body]);
    put(
        &mut s.headers,
        header,
        format!("{prefix}{}", encode(encoding, sig.bytes())),
    )?;
    Ok(())
}

/// A top-level integer field of a JSON body, read in one pass without building the document.
fn body_number_field(body: &[u8], field: &str) -> Option<i128> {
    let [value, _] = crate::body::skim(body, [Some(&[field]), None]);
    value?.parse::<i64>().ok().map(i128::from)
}
