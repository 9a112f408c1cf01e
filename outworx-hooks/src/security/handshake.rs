//! Provider handshakes: the requests some providers send to check an endpoint (Slack's
//! `url_verification`, Zoom's `endpoint.url_validation`, Twitch's callback verification,
//! Discord's PING), answered after the signature check and never passed to the handler.

use axum::response::{IntoResponse, Response};
use http::header;

use super::Provider;

/// Provider handshakes, answered after the signature check and never passed to the handler.
pub(crate) fn answer(
    provider: Option<Provider>,
    headers: &http::HeaderMap,
    body: &[u8],
    first_secret: Option<&str>,
) -> Option<(Response, &'static str)> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "type")]
        kind: Option<crate::body::Scalar>,
        challenge: Option<String>,
        event: Option<String>,
        payload: Option<ZoomPayload>,
    }
    #[derive(serde::Deserialize)]
    struct ZoomPayload {
        #[serde(rename = "plainToken")]
        plain_token: Option<String>,
    }
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    use outworx_hooks_providers::Handshake;
    match provider?.spec().handshake? {
        Handshake::SlackUrlVerification if contains(b"url_verification") => {
            let p: Probe = serde_json::from_slice(body).ok()?;
            (p.kind? == crate::body::Scalar::Str("url_verification".into())).then_some(())?;
            let challenge = p.challenge?;
            Some((
                axum::Json(serde_json::json!({ "challenge": challenge })).into_response(),
                "url_verification",
            ))
        }
        Handshake::ZoomUrlValidation if contains(b"endpoint.url_validation") => {
            let p: Probe = serde_json::from_slice(body).ok()?;
            (p.event.as_deref()? == "endpoint.url_validation").then_some(())?;
            let token = p.payload?.plain_token?;
            let secret = first_secret?;
            let mac = super::scheme::mac(
                super::scheme::Algo::Sha256,
                secret.as_bytes(),
                &[token.as_bytes()],
            );
            let encrypted = hex::encode(mac.bytes());
            Some((
                axum::Json(serde_json::json!({ "plainToken": token, "encryptedToken": encrypted }))
                    .into_response(),
                "endpoint.url_validation",
            ))
        }
        Handshake::TwitchCallbackVerification => {
            let kind = headers.get("twitch-eventsub-message-type")?;
            (kind == "webhook_callback_verification").then_some(())?;
            let p: Probe = serde_json::from_slice(body).ok()?;
            let challenge = p.challenge?;
            Some((
                ([(header::CONTENT_TYPE, "text/plain")], challenge).into_response(),
                "webhook_callback_verification",
            ))
        }
        Handshake::DiscordPing => {
            let p: Probe = serde_json::from_slice(body).ok()?;
            (p.kind? == crate::body::Scalar::Num("1".into())).then_some(())?;
            Some((
                axum::Json(serde_json::json!({ "type": 1 })).into_response(),
                "ping",
            ))
        }
        _ => None,
    }
}
