//! The subscriber portal's page: HTML, CSS and JavaScript embedded in the binary (no build
//! step), served at `/portal/` beside the API it calls. It is opened with an app-scoped token
//! in its fragment (`/portal/#token=..`, [`SvixApi::portal_tokens`](super::SvixApi::portal_tokens)).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../../../portal/index.html");
const SCRIPT: &str = include_str!("../../../portal/app.js");
const STYLE: &str = include_str!("../../../portal/app.css");

/// `/portal` leads to `/portal/`, which serves the page and its two assets.
pub(super) fn routes<S: Clone + Send + Sync + 'static>(csp: String, no_frames: bool) -> Router<S> {
    let csp = HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static("default-src 'none'"));
    let page = |content_type: &'static str, body: &'static str| {
        let csp = csp.clone();
        get(move || async move { asset(content_type, body, csp, no_frames) })
    };
    Router::new()
        .route("/portal", get(|| async { Redirect::to("portal/") }))
        .route("/portal/", page("text/html; charset=utf-8", INDEX))
        .route(
            "/portal/app.js",
            page("text/javascript; charset=utf-8", SCRIPT),
        )
        .route("/portal/app.css", page("text/css; charset=utf-8", STYLE))
}

fn asset(
    content_type: &'static str,
    body: &'static str,
    csp: HeaderValue,
    no_frames: bool,
) -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // Embedded in the binary: a new build is a new page.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    // A window this page did not open gets no handle on it.
    h.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if no_frames {
        // For browsers without `frame-ancestors`.
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_only_its_own_assets_and_writes_only_text() {
        assert!(INDEX.contains(r#"<script src="app.js" defer></script>"#));
        assert!(INDEX.contains(r#"<link rel="stylesheet" href="app.css">"#));
        assert_eq!(INDEX.matches("<script").count(), 1);
        assert!(
            !INDEX
                .split(|c: char| c.is_whitespace() || c == '<')
                .any(|w| w.starts_with("on") && w.contains('=')),
            "no inline event handlers"
        );
        for markup in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(markup), "{markup}");
        }
        // The token leaves the address bar before anything else runs.
        assert!(SCRIPT.contains("history.replaceState"));
    }

    #[test]
    fn the_policy_names_the_allowed_parents_only() {
        assert!(super::super::portal_csp(&[]).ends_with("frame-ancestors 'none'"));
        let csp = super::super::portal_csp(&["https://app.example".into()]);
        assert!(
            csp.contains("frame-ancestors https://app.example")
                && csp.contains("script-src 'self'")
        );
    }
}
