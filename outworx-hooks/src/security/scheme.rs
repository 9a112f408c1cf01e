//! The signature scheme families, parameterised so that a provider is mostly configuration.
//!
//! Each family has one `*_parts` function that lists the exact bytes the provider signs;
//! the verifier here and the signer in [`crate::testing`] both use it, so they cannot drift.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::keys::{Key, b64};
use super::{Delivery, FailureReason};

pub(crate) use outworx_hooks_providers::{Algo, Encoding, Scheme};

/// Writes a MAC as a header value.
pub(crate) fn encode(encoding: Encoding, bytes: &[u8]) -> String {
    match encoding {
        Encoding::Hex => hex::encode(bytes),
        Encoding::Base64 => b64().encode(bytes),
    }
}

/// Why a delivery did not verify: a stable reason and a hint for the human reading the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) reason: FailureReason,
    pub(crate) hint: String,
    /// Whether a signature was compared and did not match, so a re-serialized body could
    /// explain it (an unreadable signature can match no body).
    pub(crate) compared: bool,
}

impl Failure {
    pub(crate) fn new(reason: FailureReason, hint: impl Into<String>) -> Self {
        Failure {
            reason,
            hint: hint.into(),
            compared: false,
        }
    }

    /// The header's structure parses, but its signature value cannot be decoded: like the
    /// providers' own SDKs, a mismatch (it can match nothing), not a malformed header.
    fn unreadable(header: &str, why: &str) -> Self {
        Failure::new(
            FailureReason::HmacMismatch,
            format!("the signature in `{header}` cannot match: {why}"),
        )
    }

    fn missing(header: &str) -> Self {
        Failure::new(
            FailureReason::MissingHeader,
            format!("the `{header}` header is missing or empty"),
        )
    }

    fn malformed(header: &str, why: &str) -> Self {
        Failure::new(
            FailureReason::MalformedHeader,
            format!("the `{header}` header is malformed: {why}"),
        )
    }

    fn url_required(provider: &str) -> Self {
        Failure::new(
            FailureReason::MissingHeader,
            format!(
                "{provider} signs the full request URL, and none was given: pass the public URL \
                 the provider posts to (`Delivery::with_url`, or `--url` in the CLI)"
            ),
        )
    }

    fn mismatch(keys: &[Key]) -> Self {
        let n = keys.len();
        Failure {
            compared: true,
            ..Failure::new(
                FailureReason::HmacMismatch,
                format!(
                    "the signature does not match the body under any of the {n} configured secret{}: \
                 check that the secret is this endpoint's signing secret and that the body is \
                 verified exactly as received",
                    if n == 1 { "" } else { "s" }
                ),
            )
        }
    }
}

type Check = Result<(), Failure>;

/// The most signatures one header may carry. Providers send one, or a few while a secret
/// rotates; each costs a MAC (or an Ed25519 verification over the whole body), so more are
/// refused as malformed rather than tried.
pub(crate) const MAX_SIGNATURES: usize = 16;

fn too_many(header: &str) -> Failure {
    Failure::malformed(
        header,
        &format!("it carries more than {MAX_SIGNATURES} signatures"),
    )
}

/// A MAC or signature of at most 64 bytes, decoded from a header (longer never matches).
#[derive(Clone, Copy)]
pub(crate) struct Sig {
    buf: [u8; 64],
    len: usize,
}

impl Sig {
    fn empty() -> Self {
        Sig {
            buf: [0; 64],
            len: 0,
        }
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut s = Sig::empty();
        s.buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        s.len = bytes.len();
        Some(s)
    }

    pub(crate) fn decode(encoding: Encoding, text: &str) -> Option<Self> {
        let mut s = Sig::empty();
        s.len = match encoding {
            Encoding::Hex => {
                let n = text.len() / 2;
                if !text.len().is_multiple_of(2) || n == 0 {
                    return None;
                }
                hex::decode_to_slice(text, s.buf.get_mut(..n)?).ok()?;
                n
            }
            Encoding::Base64 => b64().decode_slice(text, &mut s.buf).ok()?,
        };
        (s.len > 0).then_some(s)
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// HMAC of the concatenation of `parts` under `key`.
pub(crate) fn mac(algo: Algo, key: &[u8], parts: &[&[u8]]) -> Sig {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Sig {
        // HMAC accepts keys of any length, so this never fails; an empty Sig never matches.
        let Ok(mut m) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
            return Sig::empty();
        };
        for p in parts {
            m.update(p);
        }
        Sig::from_bytes(&m.finalize().into_bytes()).unwrap_or_else(Sig::empty)
    }
    match algo {
        Algo::Sha1 => run::<Hmac<Sha1>>(key, parts),
        Algo::Sha256 => run::<Hmac<Sha256>>(key, parts),
    }
}

/// Constant-time equality of a computed MAC and a received one. The early length check leaks
/// nothing: a MAC's length is fixed by its algorithm, which is public.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Constant-time equality of a received value and a secret of any length (a shared token):
/// their SHA-256 digests are compared, so neither the time nor an early return tells the
/// secret's length.
fn ct_eq_secret(received: &[u8], secret: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(received), Sha256::digest(secret));
    !secret.is_empty() && bool::from(a.ct_eq(&b))
}

/// Whether any HMAC key, over `parts`, equals any candidate signature.
fn any_hmac(keys: &[Key], algo: Algo, parts: &[&[u8]], candidates: &[Sig]) -> bool {
    if candidates.is_empty() {
        return false;
    }
    keys.iter().any(|k| match k {
        Key::Secret(secret) => {
            let expected = mac(algo, secret, parts);
            candidates
                .iter()
                .any(|c| ct_eq(c.bytes(), expected.bytes()))
        }
        #[allow(unreachable_patterns)]
        _ => false,
    })
}

#[cfg(feature = "ed25519")]
fn any_ed25519(keys: &[Key], message: &[u8], candidates: &[Sig]) -> bool {
    keys.iter().any(|k| match k {
        Key::Ed25519(public) => candidates.iter().any(|c| {
            <[u8; 64]>::try_from(c.bytes()).is_ok_and(|bytes| {
                public
                    .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes))
                    .is_ok()
            })
        }),
        _ => false,
    })
}

#[cfg(not(feature = "ed25519"))]
fn any_ed25519(_keys: &[Key], _message: &[u8], _candidates: &[Sig]) -> bool {
    false
}

fn has_ed25519(keys: &[Key]) -> bool {
    keys.iter().any(|k| !matches!(k, Key::Secret(_)))
}

fn header<'a>(d: &Delivery<'a>, name: &str) -> Result<&'a str, Failure> {
    let value = d.headers.get(name).ok_or_else(|| Failure::missing(name))?;
    let text = value
        .to_str()
        .map_err(|_| Failure::malformed(name, "it holds bytes that are not visible ASCII"))?
        .trim();
    if text.is_empty() {
        return Err(Failure::missing(name));
    }
    Ok(text)
}

fn parse_unix(name: &str, text: &str) -> Result<i64, Failure> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::malformed(
            name,
            "the timestamp is not a whole number of seconds since 1970",
        ));
    }
    text.parse()
        .map_err(|_| Failure::malformed(name, "the timestamp is out of range"))
}

/// The signed time must lie within `tolerance` of now, in either direction.
fn within(signed_ms: i128, now_unix: i64, tolerance: Duration) -> Check {
    let now_ms = i128::from(now_unix) * 1000;
    let age_ms = now_ms - signed_ms;
    if age_ms.unsigned_abs() <= tolerance.as_millis() {
        return Ok(());
    }
    let secs = age_ms.unsigned_abs() / 1000;
    let hint = if age_ms > 0 {
        format!(
            "the signature matches, but it was made {secs} s ago and the tolerance is {} s: \
             a replayed delivery, a delayed retry, or a server clock that is behind",
            tolerance.as_secs()
        )
    } else {
        format!(
            "the signature matches, but its timestamp is {secs} s in the future (tolerance {} s): \
             check the server clock",
            tolerance.as_secs()
        )
    };
    Err(Failure::new(FailureReason::TimestampDrift, hint))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

// The bytes each family signs, shared with the test signers.

pub(crate) fn header_timestamped_parts<'a>(
    ts: &'a str,
    joiner: &'a str,
    body: &'a [u8],
) -> [&'a [u8]; 3] {
    [ts.as_bytes(), joiner.as_bytes(), body]
}

pub(crate) fn versioned_parts<'a>(ts: &'a str, body: &'a [u8]) -> [&'a [u8]; 4] {
    [b"v0:", ts.as_bytes(), b":", body]
}

pub(crate) fn standard_parts<'a>(id: &'a str, ts: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [id.as_bytes(), b".", ts.as_bytes(), b".", body]
}

pub(crate) fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `svix-*` and `webhook-*` header names for the Standard Webhooks family.
pub(crate) fn standard_headers(brand: &str) -> [&'static str; 3] {
    if brand == "svix" {
        ["svix-id", "svix-timestamp", "svix-signature"]
    } else {
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
    }
}

/// Twilio's string to sign for a form POST: the URL, then each param name and value,
/// sorted by name then value, duplicates once (as twilio-python does).
pub(crate) fn twilio_params(body: &[u8]) -> Vec<u8> {
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = form_urlencoded::parse(body).collect();
    pairs.sort();
    pairs.dedup();
    let mut out = Vec::with_capacity(body.len());
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

pub(crate) fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

pub(crate) fn query_param<'a>(url: &'a str, name: &str) -> Option<Cow<'a, str>> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The URL as given, without its port, and with the scheme's default port: Twilio signs the
/// URL as it sent it, and a proxy in between may add or drop the port.
pub(crate) fn twilio_url_variants(url: &str) -> Vec<Cow<'_, str>> {
    let mut out = vec![Cow::Borrowed(url)];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let (userinfo, hostport) = authority.split_at(host_start);
    let port_sep = if hostport.starts_with('[') {
        hostport.find("]:").map(|i| i + 1)
    } else {
        hostport.rfind(':')
    };
    match port_sep {
        Some(i) if hostport[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            out.push(Cow::Owned(format!(
                "{scheme}://{userinfo}{}{tail}",
                &hostport[..i]
            )));
        }
        _ => {
            let port = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            out.push(Cow::Owned(format!(
                "{scheme}://{userinfo}{hostport}:{port}{tail}"
            )));
        }
    }
    out
}

/// HubSpot decodes these percent-escapes in the URI before signing it.
pub(crate) fn hubspot_uri(url: &str) -> Cow<'_, str> {
    if !url.contains('%') {
        return Cow::Borrowed(url);
    }
    let bytes = url.as_bytes();
    let mut out = String::with_capacity(url.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = url.get(i + 1..i + 3)
            && let Ok(code) = u8::from_str_radix(hex, 16)
            && b":/?@!$'()*,;".contains(&code)
        {
            out.push(char::from(code));
            i += 3;
            continue;
        }
        // Copy one whole UTF-8 character.
        let ch_len = url[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&url[i..i + ch_len]);
        i += ch_len;
    }
    Cow::Owned(out)
}

pub(crate) fn hubspot_parts<'a>(
    method: &'a str,
    uri: &'a str,
    body: &'a [u8],
    ts_ms: &'a str,
) -> [&'a [u8]; 4] {
    [method.as_bytes(), uri.as_bytes(), body, ts_ms.as_bytes()]
}

/// Mailgun's signature fields, read from a JSON body (`signature` object) or a form body.
pub(crate) struct MailgunFields {
    pub(crate) timestamp: String,
    pub(crate) token: String,
    pub(crate) signature: String,
}

fn mailgun_fields(body: &[u8]) -> Option<MailgunFields> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first == b'{' {
        #[derive(serde::Deserialize)]
        struct Envelope {
            signature: Option<Fields>,
        }
        #[derive(serde::Deserialize)]
        struct Fields {
            timestamp: crate::capture::Scalar,
            token: String,
            signature: String,
        }
        let fields = serde_json::from_slice::<Envelope>(body).ok()?.signature?;
        let timestamp = fields.timestamp.text()?.to_owned();
        return Some(MailgunFields {
            timestamp,
            token: fields.token,
            signature: fields.signature,
        });
    }
    let (mut timestamp, mut token, mut signature) = (None, None, None);
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "timestamp" => timestamp = Some(v.into_owned()),
            "token" => token = Some(v.into_owned()),
            "signature" => signature = Some(v.into_owned()),
            _ => {}
        }
    }
    Some(MailgunFields {
        timestamp: timestamp?,
        token: token?,
        signature: signature?,
    })
}

/// A top-level integer field of a JSON body, read in one pass without building the document.
fn body_number_field(body: &[u8], field: &str) -> Option<i128> {
    let [value, _] = crate::capture::skim(body, [Some(&[field]), None]);
    value?.parse::<i64>().ok().map(i128::from)
}

/// Checks a delivery against one scheme family, with its parameters.
pub(crate) fn check(
    scheme: &Scheme,
    provider: &str,
    d: &Delivery<'_>,
    keys: &[Key],
    tolerance: Duration,
    now: i64,
) -> Check {
    match *scheme {
        Scheme::BodyHmac {
            header: name,
            prefix,
            algo,
            encoding,
            body_timestamp_ms,
        } => {
            let raw = header(d, name)?;
            let text = strip_prefix_ignore_case(raw, prefix).ok_or_else(|| {
                Failure::malformed(name, &format!("it does not start with `{prefix}`"))
            })?;
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
        Scheme::HeaderTimestamped {
            header: name,
            separator,
            timestamp_key,
            signature_key,
            joiner,
        } => {
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
        Scheme::VersionedTimestamp {
            signature_header,
            timestamp_header,
        } => {
            let raw = header(d, signature_header)?;
            let ts_text = header(d, timestamp_header)?;
            let ts = parse_unix(timestamp_header, ts_text)?;
            let text = raw.strip_prefix("v0=").ok_or_else(|| {
                Failure::malformed(signature_header, "it does not start with `v0=`")
            })?;
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
        Scheme::Standard { brand } => {
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
                || (!v1a.is_empty()
                    && has_ed25519(keys)
                    && any_ed25519(keys, &concat(&parts), &v1a));
            if !ok {
                return Err(Failure::mismatch(keys));
            }
            within(i128::from(ts) * 1000, now, tolerance)
        }
        Scheme::Twitch => {
            const ID: &str = "twitch-eventsub-message-id";
            const TS: &str = "twitch-eventsub-message-timestamp";
            const SIG: &str = "twitch-eventsub-message-signature";
            let id = header(d, ID)?;
            let ts_text = header(d, TS)?;
            let raw = header(d, SIG)?;
            let signed_ms = time::OffsetDateTime::parse(
                ts_text,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| Failure::malformed(TS, "the timestamp is not RFC 3339"))?
            .unix_timestamp_nanos()
                / 1_000_000;
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
        Scheme::Twilio => {
            const SIG: &str = "x-twilio-signature";
            let sig = Sig::decode(Encoding::Base64, header(d, SIG)?)
                .ok_or_else(|| Failure::unreadable(SIG, "it is not base64"))?;
            let url = d.url.ok_or_else(|| Failure::url_required(provider))?;
            let params = if let Some(expected) = query_param(url, "bodySHA256") {
                let actual = sha256_hex(d.body);
                if !ct_eq(actual.as_bytes(), expected.to_ascii_lowercase().as_bytes()) {
                    return Err(Failure {
                        compared: true,
                        ..Failure::new(
                            FailureReason::HmacMismatch,
                            "the body's SHA-256 differs from the URL's `bodySHA256` \
                                 parameter: the body is not the one Twilio sent",
                        )
                    });
                }
                Vec::new()
            } else if is_form(d) {
                twilio_params(d.body)
            } else {
                Vec::new()
            };
            let ok = twilio_url_variants(url)
                .iter()
                .any(|u| any_hmac(keys, Algo::Sha1, &[u.as_bytes(), &params], &[sig]));
            if ok {
                Ok(())
            } else {
                Err(Failure::mismatch(keys))
            }
        }
        Scheme::Square => {
            const SHA256: &str = "x-square-hmacsha256-signature";
            const SHA1: &str = "x-square-signature";
            let (name, algo) = if d.headers.contains_key(SHA256) || !d.headers.contains_key(SHA1) {
                (SHA256, Algo::Sha256)
            } else {
                (SHA1, Algo::Sha1)
            };
            let sig = Sig::decode(Encoding::Base64, header(d, name)?)
                .ok_or_else(|| Failure::unreadable(name, "it is not base64"))?;
            let url = d.url.ok_or_else(|| Failure::url_required(provider))?;
            if any_hmac(keys, algo, &[url.as_bytes(), d.body], &[sig]) {
                Ok(())
            } else {
                Err(Failure::mismatch(keys))
            }
        }
        Scheme::HubSpotV3 => {
            const SIG: &str = "x-hubspot-signature-v3";
            const TS: &str = "x-hubspot-request-timestamp";
            let sig = Sig::decode(Encoding::Base64, header(d, SIG)?)
                .ok_or_else(|| Failure::unreadable(SIG, "it is not base64"))?;
            let ts_text = header(d, TS)?;
            let ts_ms = parse_unix(TS, ts_text)?;
            let url = d.url.ok_or_else(|| Failure::url_required(provider))?;
            let uri = hubspot_uri(url);
            let parts = hubspot_parts(d.method, &uri, d.body, ts_text);
            if !any_hmac(keys, Algo::Sha256, &parts, &[sig]) {
                return Err(Failure::mismatch(keys));
            }
            within(i128::from(ts_ms), now, tolerance)
        }
        Scheme::Discord => {
            const SIG: &str = "x-signature-ed25519";
            const TS: &str = "x-signature-timestamp";
            let sig = Sig::decode(Encoding::Hex, header(d, SIG)?)
                .filter(|s| s.len == 64)
                .ok_or_else(|| {
                    Failure::unreadable(SIG, "it is not a 128-character hex signature")
                })?;
            let ts_text = header(d, TS)?;
            let ts = parse_unix(TS, ts_text)?;
            let message = concat(&[ts_text.as_bytes(), d.body]);
            if !any_ed25519(keys, &message, &[sig]) {
                return Err(Failure::mismatch(keys));
            }
            within(i128::from(ts) * 1000, now, tolerance)
        }
        Scheme::SendGrid => {
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
        Scheme::Token { header: name } => {
            let token = header(d, name)?;
            let ok = keys.iter().any(|k| match k {
                Key::Secret(secret) => ct_eq_secret(token.as_bytes(), secret),
                #[allow(unreachable_patterns)]
                _ => false,
            });
            if ok {
                Ok(())
            } else {
                Err(Failure::new(
                    FailureReason::HmacMismatch,
                    format!("the `{name}` token does not equal any configured secret token"),
                ))
            }
        }
        Scheme::Mailgun => {
            let f = mailgun_fields(d.body).ok_or_else(|| {
                Failure::new(
                    FailureReason::MissingHeader,
                    "Mailgun signs in the body, and it has no `signature` with `timestamp`, \
                         `token` and `signature` (JSON or form fields; multipart is not read)",
                )
            })?;
            let ts = parse_unix("signature.timestamp", &f.timestamp)?;
            let sig = Sig::decode(Encoding::Hex, &f.signature)
                .ok_or_else(|| Failure::unreadable("signature.signature", "it is not hex"))?;
            let parts = [f.timestamp.as_bytes(), f.token.as_bytes()];
            if !any_hmac(keys, Algo::Sha256, &parts, &[sig]) {
                return Err(Failure::mismatch(keys));
            }
            within(i128::from(ts) * 1000, now, tolerance)
        }
    }
}

fn is_form(d: &Delivery<'_>) -> bool {
    d.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

pub(crate) fn mailgun_token(body: &[u8]) -> String {
    sha256_hex(body)[..50].to_owned()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_url_variants_add_or_remove_the_port() {
        let v = twilio_url_variants("https://mycompany.com/myapp.php?foo=1&bar=2");
        assert_eq!(v[1], "https://mycompany.com:443/myapp.php?foo=1&bar=2");
        let v = twilio_url_variants("http://u:p@mycompany.com:1234/a");
        assert_eq!(v[1], "http://u:p@mycompany.com/a");
        let v = twilio_url_variants("https://[::1]:8443/x");
        assert_eq!(v[1], "https://[::1]/x");
        let v = twilio_url_variants("https://[::1]/x");
        assert_eq!(v[1], "https://[::1]:443/x");
        assert_eq!(twilio_url_variants("not a url").len(), 1);
    }

    #[test]
    fn twilio_params_sort_by_name_then_value() {
        let p = twilio_params(b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234");
        assert_eq!(p, b"Digits1234Digits5678SidCA123SidAccountAC123");
    }

    #[test]
    fn hubspot_decodes_only_its_listed_escapes() {
        assert_eq!(
            hubspot_uri("https://x.com/a%3Ab%2fc?q=%20%40%E2%82%AC"),
            "https://x.com/a:b/c?q=%20@%E2%82%AC"
        );
        assert_eq!(hubspot_uri("https://x.com/é%"), "https://x.com/é%");
    }

    #[test]
    fn signatures_longer_than_64_bytes_or_odd_hex_never_decode() {
        assert!(Sig::decode(Encoding::Hex, &"ab".repeat(65)).is_none());
        assert!(Sig::decode(Encoding::Hex, "abc").is_none());
        assert!(Sig::decode(Encoding::Hex, "").is_none());
        assert!(Sig::decode(Encoding::Base64, &"QUFB".repeat(30)).is_none());
        assert_eq!(
            Sig::decode(Encoding::Base64, "QUFB").unwrap().bytes(),
            b"AAA"
        );
    }

    #[test]
    fn drift_is_checked_in_both_directions() {
        let tol = Duration::from_secs(300);
        assert!(within(1_000_000, 1000, tol).is_ok());
        assert!(within(700_000, 1000, tol).is_ok());
        assert_eq!(
            within(699_000, 1000, tol).unwrap_err().reason,
            FailureReason::TimestampDrift
        );
        assert!(within(1_301_000, 1000, tol).is_err());
        assert!(within(i128::from(i64::MAX) * 1000, 1000, tol).is_err());
    }
}
