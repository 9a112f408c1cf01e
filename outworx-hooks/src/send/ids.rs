//! Ids and secrets: `msg_`/`ep_` ids that sort by creation time, and signing secrets.

use base64::Engine as _;

use super::SendError;

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// `prefix` + 26 characters: 48 bits of milliseconds and 80 random bits (as a ULID), so ids
/// sort by creation time and cannot be guessed.
pub(crate) fn new_id(prefix: &str, now_ms: i64) -> Result<String, SendError> {
    let mut random = [0u8; 10];
    getrandom::fill(&mut random).map_err(|_| SendError::Randomness)?;
    let ms = u128::from(u64::try_from(now_ms).unwrap_or(0) & 0xFFFF_FFFF_FFFF);
    let mut n = ms << 80;
    for (i, b) in random.iter().enumerate() {
        n |= u128::from(*b) << (8 * (9 - i));
    }
    let mut out = String::with_capacity(prefix.len() + 26);
    out.push_str(prefix);
    for i in (0..26).rev() {
        let index = usize::try_from((n >> (5 * i)) & 31).unwrap_or(0);
        out.push(char::from(CROCKFORD[index]));
    }
    Ok(out)
}

/// The first (`last` false) or last id `prefix` can have at `ms`: a bound for the ids made in
/// a time window (`id >= first(t)` is made at or after `t`).
pub(crate) fn id_bound(prefix: &str, ms: i64, last: bool) -> String {
    let ms = u128::from(u64::try_from(ms).unwrap_or(0) & 0xFFFF_FFFF_FFFF);
    let mut n = ms << 80;
    if last {
        n |= (1u128 << 80) - 1;
    }
    let mut out = String::with_capacity(prefix.len() + 26);
    out.push_str(prefix);
    for i in (0..26).rev() {
        let index = usize::try_from((n >> (5 * i)) & 31).unwrap_or(0);
        out.push(char::from(CROCKFORD[index]));
    }
    out
}

/// A new `whsec_` secret: 32 random bytes, base64.
pub(crate) fn new_hmac_secret() -> Result<String, SendError> {
    Ok(format!("whsec_{}", random_b64()?))
}

/// A new `whsk_` Ed25519 private key (a random 32-byte seed, base64), for `v1a`.
pub(crate) fn new_ed25519_key() -> Result<String, SendError> {
    Ok(format!("whsk_{}", random_b64()?))
}

fn random_b64() -> Result<String, SendError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| SendError::Randomness)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_differ() {
        let a = new_id("msg_", 1_000).unwrap();
        let b = new_id("msg_", 2_000).unwrap();
        let c = new_id("msg_", 2_000).unwrap();
        assert!(a < b);
        assert_ne!(b, c);
        assert_eq!(a.len(), 4 + 26);
        assert!(a[4..].bytes().all(|x| CROCKFORD.contains(&x)));
    }

    #[test]
    fn bounds_hold_every_id_of_their_millisecond() {
        for _ in 0..100 {
            let id = new_id("msg_", 5_000).unwrap();
            assert!(id_bound("msg_", 5_000, false) <= id && id <= id_bound("msg_", 5_000, true));
            assert!(id_bound("msg_", 4_999, true) < id && id < id_bound("msg_", 5_001, false));
        }
    }

    #[test]
    fn secrets_have_their_prefix() {
        assert!(new_hmac_secret().unwrap().starts_with("whsec_"));
        assert!(new_ed25519_key().unwrap().starts_with("whsk_"));
    }
}
