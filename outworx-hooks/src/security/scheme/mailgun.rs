//! Mailgun: the signature, its timestamp and token travel in the body (JSON or form).

use super::*;

/// Checks a delivery against the `Mailgun` family.
pub(super) fn check_mailgun(i: &Input<'_>) -> Check {
    let Input {
        d,
        keys,
        tolerance,
        now,
        ..
    } = *i;
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

/// Signs a body as the `Mailgun` family does.
pub(super) fn sign_mailgun(s: &mut SignCtx<'_>) -> Result<(), SignError> {
    let token = mailgun_token(&s.body);
    let parts = [s.ts_text.as_bytes(), token.as_bytes()];
    let sig = hex::encode(mac(Algo::Sha256, &s.hmac_key()?, &parts).bytes());
    s.body = mailgun_body(std::mem::take(&mut s.body), &s.ts_text, &token, &sig);
    Ok(())
}

/// Mailgun's signature fields, read from a JSON body (`signature` object) or a form body.
pub(super) struct MailgunFields {
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
            timestamp: crate::body::Scalar,
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

pub(super) fn mailgun_token(body: &[u8]) -> String {
    sha256_hex(body)[..50].to_owned()
}

fn mailgun_body(body: Vec<u8>, ts: &str, token: &str, sig: &str) -> Vec<u8> {
    let signature = serde_json::json!({ "timestamp": ts, "token": token, "signature": sig });
    if is_json(&body)
        && let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(&body)
    {
        map.insert("signature".into(), signature);
        return serde_json::to_vec(&map).unwrap_or(body);
    }
    let mut out = body;
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("timestamp", ts)
        .append_pair("token", token)
        .append_pair("signature", sig);
    if !out.is_empty() {
        out.push(b'&');
    }
    out.extend_from_slice(form.finish().as_bytes());
    out
}
