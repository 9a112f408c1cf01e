//! HMAC over a signed timestamp and the body: one header with `t=`/`v1=` items (Stripe,
//! Calendly, Paddle), or `v0=` with the timestamp in its own header (Slack, Zoom).

use super::*;

/// Checks a delivery against the `HeaderTimestamped` family.
pub(super) fn check_header_timestamped(
    i: &Input<'_>,
    name: &str,
    separator: u8,
    timestamp_key: &str,
    signature_key: &str,
    joiner: &str,
) -> Check {
    let Input {
        d,
        keys,
        tolerance,
        now,
        ..
    } = *i;
    let raw = header(d, name)?;
    let mut ts = None;
    let mut sigs = Vec::new();
    let mut entries = 0usize;
    let mut other_entries = false;
    for item in raw.split(char::from(separator)) {
        let Some((k, v)) = item.trim().split_once('=') else {
            continue;
        };
        if k == timestamp_key {
            ts = Some(v);
        } else if k == signature_key {
            // An entry that is not hex can never match; the others may still.
            entries += 1;
            if entries > MAX_SIGNATURES {
                return Err(too_many(name));
            }
            sigs.extend(Sig::decode(Encoding::Hex, v));
        } else {
            other_entries = true;
        }
    }
    let ts_text = ts.ok_or_else(|| {
        Failure::malformed(name, &format!("it has no `{timestamp_key}=` timestamp"))
    })?;
    let ts = parse_unix(name, ts_text)?;
    if entries > 0 && sigs.is_empty() {
        return Err(Failure::unreadable(
            name,
            &format!("no `{signature_key}=` value is a hex signature"),
        ));
    }
    if sigs.is_empty() {
        let why = if other_entries {
            format!(
                "it has no valid `{signature_key}=` signature (entries of other \
                     schemes are ignored)"
            )
        } else {
            format!("it has no valid `{signature_key}=` signature")
        };
        return Err(Failure::malformed(name, &why));
    }
    let parts = header_timestamped_parts(ts_text, joiner, d.body);
    if !any_hmac(keys, Algo::Sha256, &parts, &sigs) {
        return Err(Failure::mismatch(keys));
    }
    within(i128::from(ts) * 1000, now, tolerance)
}

/// Signs a body as the `HeaderTimestamped` family does.
pub(super) fn sign_header_timestamped(
    s: &mut SignCtx<'_>,
    header: &'static str,
    separator: u8,
    timestamp_key: &str,
    signature_key: &str,
    joiner: &str,
) -> Result<(), SignError> {
    let parts = header_timestamped_parts(&s.ts_text, joiner, &s.body);
    let sig = hex::encode(mac(Algo::Sha256, &s.hmac_key()?, &parts).bytes());
    let sep = char::from(separator);
    put(
        &mut s.headers,
        header,
        format!("{timestamp_key}={}{sep}{signature_key}={sig}", s.ts_text),
    )?;
    Ok(())
}

/// Checks a delivery against the `VersionedTimestamp` family.
pub(super) fn check_versioned(
    i: &Input<'_>,
    signature_header: &str,
    timestamp_header: &str,
) -> Check {
    let Input {
        d,
        keys,
        tolerance,
        now,
        ..
    } = *i;
    let raw = header(d, signature_header)?;
    let ts_text = header(d, timestamp_header)?;
    let ts = parse_unix(timestamp_header, ts_text)?;
    let text = raw
        .strip_prefix("v0=")
        .ok_or_else(|| Failure::malformed(signature_header, "it does not start with `v0=`"))?;
    let sig = Sig::decode(Encoding::Hex, text)
        .ok_or_else(|| Failure::unreadable(signature_header, "it is not hex"))?;
    if !any_hmac(
        keys,
        Algo::Sha256,
        &versioned_parts(ts_text, d.body),
        &[sig],
    ) {
        return Err(Failure::mismatch(keys));
    }
    within(i128::from(ts) * 1000, now, tolerance)
}

/// Signs a body as the `VersionedTimestamp` family does.
pub(super) fn sign_versioned(
    s: &mut SignCtx<'_>,
    signature_header: &'static str,
    timestamp_header: &'static str,
) -> Result<(), SignError> {
    let parts = versioned_parts(&s.ts_text, &s.body);
    let sig = hex::encode(mac(Algo::Sha256, &s.hmac_key()?, &parts).bytes());
    put(&mut s.headers, signature_header, format!("v0={sig}"))?;
    put(&mut s.headers, timestamp_header, s.ts_text.clone())?;
    Ok(())
}

pub(super) fn header_timestamped_parts<'a>(
    ts: &'a str,
    joiner: &'a str,
    body: &'a [u8],
) -> [&'a [u8]; 3] {
    [ts.as_bytes(), joiner.as_bytes(), body]
}

pub(super) fn versioned_parts<'a>(ts: &'a str, body: &'a [u8]) -> [&'a [u8]; 4] {
    [b"v0:", ts.as_bytes(), b":", body]
}
