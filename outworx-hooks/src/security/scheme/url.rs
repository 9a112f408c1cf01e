//! Schemes that sign the request URL: Twilio (URL and sorted form parameters, or `bodySHA256`),
//! Square (notification URL and body) and HubSpot v3 (method, URI, body, timestamp).

use super::*;

/// Checks a delivery against the `Twilio` family.
pub(super) fn check_twilio(i: &Input<'_>) -> Check {
    let Input {
        provider, d, keys, ..
    } = *i;
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

/// Signs a body as the `Twilio` family does.
pub(super) fn sign_twilio(s: &mut SignCtx<'_>) -> Result<(), SignError> {
    let base = s
        .base_url
        .map(str::to_owned)
        .ok_or(SignError::UrlRequired(s.provider))?;
    let key = s.hmac_key()?;
    let sig = if s.json {
        let sep = if base.contains('?') { '&' } else { '?' };
        let signed_url = format!("{base}{sep}bodySHA256={}", sha256_hex(&s.body));
        let sig = mac(Algo::Sha1, &key, &[signed_url.as_bytes()]);
        s.url = Some(signed_url);
        sig
    } else {
        let params = twilio_params(&s.body);
        mac(Algo::Sha1, &key, &[base.as_bytes(), &params])
    };
    put(
        &mut s.headers,
        "x-twilio-signature",
        encode(Encoding::Base64, sig.bytes()),
    )?;
    Ok(())
}

/// Checks a delivery against the `Square` family.
pub(super) fn check_square(i: &Input<'_>) -> Check {
    let Input {
        provider, d, keys, ..
    } = *i;
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

/// Signs a body as the `Square` family does.
pub(super) fn sign_square(s: &mut SignCtx<'_>) -> Result<(), SignError> {
    let u = s.base_url.ok_or(SignError::UrlRequired(s.provider))?;
    let sig = mac(Algo::Sha256, &s.hmac_key()?, &[u.as_bytes(), &s.body]);
    put(
        &mut s.headers,
        "x-square-hmacsha256-signature",
        encode(Encoding::Base64, sig.bytes()),
    )?;
    Ok(())
}

/// Checks a delivery against the `HubSpotV3` family.
pub(super) fn check_hubspot(i: &Input<'_>) -> Check {
    let Input {
        provider,
        d,
        keys,
        tolerance,
        now,
    } = *i;
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

/// Signs a body as the `HubSpotV3` family does.
pub(super) fn sign_hubspot(s: &mut SignCtx<'_>) -> Result<(), SignError> {
    let u = s.base_url.ok_or(SignError::UrlRequired(s.provider))?;
    let ts_ms = (i128::from(s.ts) * 1000).to_string();
    let uri = hubspot_uri(u);
    let parts = hubspot_parts(s.method.as_str(), &uri, &s.body, &ts_ms);
    let sig = mac(Algo::Sha256, &s.hmac_key()?, &parts);
    put(
        &mut s.headers,
        "x-hubspot-signature-v3",
        encode(Encoding::Base64, sig.bytes()),
    )?;
    put(&mut s.headers, "x-hubspot-request-timestamp", ts_ms)?;
    Ok(())
}

/// Twilio's string to sign for a form POST: the URL, then each param name and value,
/// sorted by name then value, duplicates once (as twilio-python does).
pub(super) fn twilio_params(body: &[u8]) -> Vec<u8> {
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

pub(super) fn query_param<'a>(url: &'a str, name: &str) -> Option<Cow<'a, str>> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The URL as given, without its port, and with the scheme's default port: Twilio signs the
/// URL as it sent it, and a proxy in between may add or drop the port.
pub(super) fn twilio_url_variants(url: &str) -> Vec<Cow<'_, str>> {
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
pub(super) fn hubspot_uri(url: &str) -> Cow<'_, str> {
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

pub(super) fn hubspot_parts<'a>(
    method: &'a str,
    uri: &'a str,
    body: &'a [u8],
    ts_ms: &'a str,
) -> [&'a [u8]; 4] {
    [method.as_bytes(), uri.as_bytes(), body, ts_ms.as_bytes()]
}

fn is_form(d: &SignedRequest<'_>) -> bool {
    d.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
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
}
