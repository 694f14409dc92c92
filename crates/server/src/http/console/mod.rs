//! The operator's console: a page, its script and its style, shipped inside the binary
//! and served at `/_ui/` (and `/ui`, which sends the browser there). They are static:
//! everything the page shows it asks the public HTTPS API for, as the logged-in user.
//! Each answer carries a Content-Security-Policy that allows this origin's own script,
//! style and calls and nothing else (no inline script or style, no frames), and is never
//! cached stale.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

/// A file of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Page,
    Script,
    Style,
    Icon,
}

impl Asset {
    fn content(self) -> (&'static str, &'static str) {
        match self {
            Asset::Page => ("text/html; charset=utf-8", include_str!("index.html")),
            Asset::Script => ("text/javascript; charset=utf-8", include_str!("console.js")),
            Asset::Style => ("text/css; charset=utf-8", include_str!("console.css")),
            Asset::Icon => ("image/svg+xml", include_str!("favicon.svg")),
        }
    }
}

/// What the console's answers allow the browser.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

/// The answer for `asset`.
pub fn serve(asset: Asset) -> Response {
    let (content_type, text) = asset.content();
    let mut response = Response::new(Body::from(text));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `/ui`: to the console's page.
pub fn redirect() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/_ui/"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_script_and_style_from_the_console_and_nothing_inline() {
        let page = Asset::Page.content().1;
        assert!(page.contains(r#"<script src="/_ui/console.js" defer></script>"#));
        assert!(page.contains(r#"<link rel="stylesheet" href="/_ui/console.css">"#));
        assert_eq!(
            page.matches("<script").count(),
            1,
            "one script, from a file"
        );
        assert!(!page.contains("<style") && !page.contains(" style="));
        // No event handler attributes (onclick=, onload=, …).
        assert!(!page
            .split_whitespace()
            .any(|word| word.starts_with("on") && word.contains('=')));
        let script = Asset::Script.content().1;
        assert!(!script.contains("innerHTML") && !script.contains("localStorage"));
        let response = serve(Asset::Script);
        assert_eq!(response.headers()[header::CONTENT_SECURITY_POLICY], POLICY);
    }
}
