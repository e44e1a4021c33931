//! The control plane on the `api` listener: health, readiness, metrics and the management APIs.

pub mod admin;
pub mod console;
pub mod error;
pub mod gateway3;
pub mod health;
pub mod json;
pub mod key_object;
pub mod limits;
pub mod openapi;
pub mod paging;
pub mod partner_auth;
pub mod query;
pub mod reseller;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;

use crate::config::model::Plan;
use crate::domain::ip::IpSet;
use crate::manage::Manager;
use crate::metrics::Metrics;

/// Largest management request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// Shared state of every management handler.
#[derive(Clone)]
pub struct ApiState {
    pub manager: Manager,
    pub metrics: Arc<Metrics>,
    /// Management rate limits per partner token.
    pub limits: Arc<limits::ManagementLimits>,
    /// Serialises idempotent key creations (check, create, remember).
    pub idempotency_lock: Arc<tokio::sync::Mutex<()>>,
    /// argon2id hashes of the operator tokens.
    pub operator_tokens: Arc<Vec<String>>,
    /// The TOML plans by id.
    pub plans: Arc<HashMap<i64, Plan>>,
    /// Peers whose `X-Forwarded-For` is believed (as on the data plane).
    pub trusted_proxies: Arc<IpSet>,
    /// The kubo pin and IPNS-name ledger, on the kubo profile.
    pub pins: Option<Arc<crate::meter::pins::PinLedger>>,
    /// The region and tiers `/me` reports.
    pub reseller: Arc<crate::config::model::Reseller>,
    /// The store's health as the sync and the change feed see it (for `/readyz`).
    pub health: Arc<crate::cluster::health::Health>,
    /// The console's one-time sign-in links.
    pub console_logins: Arc<console::login::ConsoleLogins>,
    /// Budget leases (`store.quota_mode = "lease"`), which a plan change's charge is drawn
    /// from like a request's.
    pub leases: Option<Arc<crate::cluster::lease::Leases>>,
}

/// The reply for a path no route matches.
async fn no_route() -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    let body = serde_json::json!({ "detail": "no such route" });
    (axum::http::StatusCode::NOT_FOUND, axum::Json(body))
}

/// A known path called with a method it does not take: 405 with the v1 surfaces' body.
pub async fn method_not_allowed(
    method: axum::http::Method,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    let detail = format!("{method} is not allowed on {}", uri.path());
    let body = serde_json::json!({ "detail": detail });
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(body))
}

/// The client of a management call as the data plane would see it: the socket peer, or the
/// first untrusted hop of `X-Forwarded-For` when the peer is a trusted proxy. Without a known
/// peer (a router used outside the listener) it is `0.0.0.0`, which only a key without an IP
/// allow-list accepts.
pub fn client(parts: &axum::http::request::Parts, state: &ApiState) -> std::net::IpAddr {
    match parts.extensions.get::<ClientAddr>() {
        Some(ClientAddr(peer)) => crate::proxy::client_ip::client_ip(
            crate::domain::ip::canonical(peer.ip()),
            &parts.headers,
            &state.trusted_proxies,
        ),
        None => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    }
}

/// The socket peer of an API connection, put in each request's extensions by the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// Every management route with the OpenAPI document generated from the same registrations,
/// before the state is attached. Each surface keeps its own fallbacks (a v0 405 has the v0
/// envelope, a v1 405 the `{"detail"}` body).
pub fn routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    let (health, health_doc) = health::routes().split_for_parts();
    let (reseller, reseller_doc) = reseller::routes().split_for_parts();
    let (admin, admin_doc) = admin::routes().split_for_parts();
    let (v0, v0_doc) = gateway3::routes();
    let (login, login_doc) = utoipa_axum::router::OpenApiRouter::default()
        .routes(utoipa_axum::routes!(console::login::login))
        .split_for_parts();
    let router = Router::new()
        .fallback(no_route)
        .merge(health.method_not_allowed_fallback(method_not_allowed))
        .nest(
            "/api/v1/reseller",
            reseller.method_not_allowed_fallback(method_not_allowed),
        )
        .nest(
            "/api/v1/admin",
            admin.method_not_allowed_fallback(method_not_allowed),
        )
        .nest(
            "/api/v1/console",
            login.method_not_allowed_fallback(method_not_allowed),
        )
        .nest("/api/v0", v0)
        .merge(console::routes());
    let doc = health_doc
        .nest("/api/v1/reseller", reseller_doc)
        .nest("/api/v1/admin", admin_doc)
        .nest("/api/v1/console", login_doc)
        .nest("/api/v0", v0_doc);
    (router, doc)
}

/// The whole management router.
pub fn router(state: ApiState) -> Router {
    routes()
        .0
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}
