//! The dashboard: one static page (HTML, CSS, JavaScript embedded in the binary, no build
//! step) that reads `/api/stats`, `/api/stats/series` (its chart, drawn in SVG by the page)
//! and `/api/events` with the project's API key.
//!
//! The page is public; the data is not: the key is typed into the page, kept in the tab's
//! `sessionStorage` and sent as a Bearer header, exactly as the SDKs do. Everything the page
//! shows from events is set as text, never as markup, and the content security policy
//! allows only this server's own script and style, so a webhook payload cannot run script
//! in the dashboard.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../dashboard/index.html");
const SCRIPT: &str = include_str!("../dashboard/app.js");
const STYLE: &str = include_str!("../dashboard/app.css");

/// What the browser may do on the dashboard: this origin's script, style and API, nothing else.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// `/` and `/dashboard` lead to `/dashboard/`, which serves the page and its two assets.
/// Redirects and asset links are relative, so the dashboard also works under a path prefix.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("dashboard/") }))
        .route("/dashboard", get(|| async { Redirect::to("dashboard/") }))
        .route(
            "/dashboard/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/dashboard/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            // A window this page did not open (a tunnelled page's `window.open`) gets no
            // handle on it.
            (
                header::HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            ),
            // The assets are embedded in the binary: a new build is a new page.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_only_its_own_assets() {
        assert!(INDEX.contains(r#"<script src="app.js" defer></script>"#));
        assert!(INDEX.contains(r#"<link rel="stylesheet" href="app.css">"#));
        // No inline script or handler attribute: the policy would block it.
        assert_eq!(INDEX.matches("<script").count(), 1);
        assert!(
            !INDEX
                .split(|c: char| c.is_whitespace() || c == '<')
                .any(|w| w.starts_with("on") && w.contains('=')),
            "no inline event handlers"
        );
        // Event data reaches the page only as text.
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("insertAdjacentHTML"));
    }
}
