//! `/console/`: the web console for partners and operators. Its assets are built into
//! `console/dist` (from `console/src` and uPlot, by `console/build.mjs`) and embedded in the
//! binary; they are served with a strict Content-Security-Policy (no inline script or style,
//! nothing from another origin, no framing). The console uses the management APIs only, with
//! the token in the `Authorization` header, so what it can do the API can do.

pub mod login;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::ApiState;

/// `(path under /console/, content type, bytes)` of every embedded asset.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../../console/dist/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../console/dist/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../console/dist/app.css"),
    ),
    (
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../console/dist/vendor/uPlot.iife.min.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../console/dist/vendor/uPlot.min.css"),
    ),
];

/// The console's Content-Security-Policy: its own scripts, styles and API only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The console's static routes (the sign-in exchange is in [`login`], under the API).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(|| async { asset_response("index.html") }))
        .route("/console/{*file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Response {
    asset_response(&file)
}

/// The asset at `file`, with the console's security headers; 404 for anything else.
fn asset_response(file: &str) -> Response {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(path, _, _)| *path == file) else {
        return (StatusCode::NOT_FOUND, "no such console file").into_response();
    };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    (headers, *bytes).into_response()
}
