//! Twitch EventSub: HMAC-SHA256 over the message id, its RFC 3339 timestamp and the body.

use super::*;

/// Checks a delivery against the `Twitch` family.
pub(super) fn check_twitch(i: &Input<'_>) -> Check {
    let Input {
        d,
        keys,
        tolerance,
        now,
        ..
    } = *i;
    const ID: &str = "twitch-eventsub-message-id";
    const TS: &str = "twitch-eventsub-message-timestamp";
    const SIG: &str = "twitch-eventsub-message-signature";
    let id = header(d, ID)?;
    let ts_text = header(d, TS)?;
    let raw = header(d, SIG)?;
    // Twitch sends UTC (`2019-11-16T10:11:12.634234626Z`); RFC 3339 with `Z`.
    let signed = humantime::parse_rfc3339(ts_text)
        .map_err(|_| Failure::malformed(TS, "the timestamp is not RFC 3339 in UTC"))?;
    let signed_ms: i128 = match signed.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_millis()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_millis()).unwrap_or(i128::MAX),
    };
    let text = strip_prefix_ignore_case(raw, "sha256=")
        .ok_or_else(|| Failure::malformed(SIG, "it does not start with `sha256=`"))?;
    let sig = Sig::decode(Encoding::Hex, text)
        .ok_or_else(|| Failure::unreadable(SIG, "it is not hex"))?;
    let parts = [id.as_bytes(), ts_text.as_bytes(), d.body];
    if !any_hmac(keys, Algo::Sha256, &parts, &[sig]) {
        return Err(Failure::mismatch(keys));
    }
    within(signed_ms, now, tolerance)
}

/// Signs a body as the `Twitch` family does.
pub(super) fn sign_twitch(s: &mut SignCtx<'_>) -> Result<(), SignError> {
    let stamp = u64::try_from(s.ts)
        .ok()
        .and_then(|secs| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs)))
        .and_then(|t| {
            // humantime refuses (fmt::Error) a year past 9999: an error, never a panic.
            use std::fmt::Write as _;
            let mut text = String::with_capacity(20);
            write!(text, "{}", humantime::format_rfc3339_seconds(t))
                .ok()
                .map(|()| text)
        })
        .ok_or(SignError::HeaderValue("twitch-eventsub-message-timestamp"))?;
    let parts = [s.id.as_bytes(), stamp.as_bytes(), &s.body];
    let sig = hex::encode(mac(Algo::Sha256, &s.hmac_key()?, &parts).bytes());
    put(&mut s.headers, "twitch-eventsub-message-id", s.id.clone())?;
    put(&mut s.headers, "twitch-eventsub-message-timestamp", stamp)?;
    put(
        &mut s.headers,
        "twitch-eventsub-message-signature",
        format!("sha256={sig}"),
    )?;
    put(
        &mut s.headers,
        "twitch-eventsub-message-type",
        "notification".into(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::security::Provider;
    use crate::testing::Signer;

    /// A signing time RFC 3339 cannot write (past year 9999) is an error, not a panic; a
    /// time it can is written to the second.
    #[test]
    fn a_time_past_year_9999_is_an_error() {
        let far = Signer::new(Provider::Twitch, "secret").at(253_402_300_800);
        assert!(far.sign(&b"{}"[..]).is_err());
        let signed = Signer::new(Provider::Twitch, "secret")
            .at(1_700_000_000)
            .sign(&b"{}"[..])
            .unwrap();
        assert_eq!(
            signed.headers["twitch-eventsub-message-timestamp"],
            "2023-11-14T22:13:20Z"
        );
    }
}
