//! `/openapi.json`: an OpenAPI 3.1 description of every management route, built from one table
//! (`ROUTES`) that a test checks against the router in both directions.

use axum::Json;
use serde_json::{Map, Value, json};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    Partner,
    AccountKey,
    Operator,
}

/// One documented route.
#[derive(Clone, Copy, Debug)]
pub struct RouteDoc {
    pub method: &'static str,
    /// Path in OpenAPI form (`{id}`), which is also axum's form.
    pub path: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
}

const fn r(
    method: &'static str,
    path: &'static str,
    auth: Auth,
    summary: &'static str,
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        summary,
        auth,
    }
}

/// Every route of the management listener.
pub const ROUTES: &[RouteDoc] = &[
    r("get", "/healthz", Auth::None, "Liveness: the process is up"),
    r(
        "get",
        "/readyz",
        Auth::None,
        "Readiness: the store is reachable",
    ),
    r("get", "/metrics", Auth::None, "Prometheus metrics"),
    r("get", "/openapi.json", Auth::None, "This document"),
    r(
        "get",
        "/api/v1/reseller/me",
        Auth::Partner,
        "Account summary",
    ),
    r(
        "get",
        "/api/v1/reseller/balance",
        Auth::Partner,
        "Prepaid balance and spend",
    ),
    r(
        "get",
        "/api/v1/reseller/usage",
        Auth::Partner,
        "Daily usage series (range=7d|30d)",
    ),
    r(
        "post",
        "/api/v1/reseller/token/rotate",
        Auth::Partner,
        "Rotate the rsk_ token",
    ),
    r(
        "post",
        "/api/v1/reseller/keys",
        Auth::Partner,
        "Create a sub-key (Idempotency-Key)",
    ),
    r(
        "get",
        "/api/v1/reseller/keys",
        Auth::Partner,
        "List sub-keys with their cost",
    ),
    r(
        "get",
        "/api/v1/reseller/keys/{id}",
        Auth::Partner,
        "One sub-key",
    ),
    r(
        "patch",
        "/api/v1/reseller/keys/{id}",
        Auth::Partner,
        "Update a sub-key",
    ),
    r(
        "post",
        "/api/v1/reseller/keys/{id}/enable",
        Auth::Partner,
        "Enable a sub-key",
    ),
    r(
        "post",
        "/api/v1/reseller/keys/{id}/disable",
        Auth::Partner,
        "Disable a sub-key",
    ),
    r(
        "post",
        "/api/v1/reseller/keys/{id}/revoke",
        Auth::Partner,
        "Revoke a sub-key for good",
    ),
    r(
        "post",
        "/api/v0/partner/user/create",
        Auth::Partner,
        "Gateway3: create an account",
    ),
    r(
        "get",
        "/api/v0/partner/user/stats",
        Auth::Partner,
        "Gateway3: an account's usage",
    ),
    r(
        "post",
        "/api/v0/partner/user/update-plan",
        Auth::Partner,
        "Gateway3: change plan",
    ),
    r(
        "post",
        "/api/v0/partner/user/key",
        Auth::Partner,
        "Gateway3: create an access key",
    ),
    r(
        "get",
        "/api/v0/partner/user/keys",
        Auth::Partner,
        "Gateway3: an account's keys",
    ),
    r(
        "delete",
        "/api/v0/partner/user/key",
        Auth::Partner,
        "Gateway3: delete a key by name",
    ),
    r(
        "get",
        "/api/v0/stats",
        Auth::AccountKey,
        "Gateway3: own usage",
    ),
    r(
        "get",
        "/api/v0/plans",
        Auth::AccountKey,
        "Gateway3: the plans",
    ),
    r(
        "post",
        "/api/v0/key",
        Auth::AccountKey,
        "Gateway3: create an own access key",
    ),
    r(
        "get",
        "/api/v0/keys",
        Auth::AccountKey,
        "Gateway3: own access keys",
    ),
    r(
        "delete",
        "/api/v0/key",
        Auth::AccountKey,
        "Gateway3: delete an own key by name",
    ),
    r(
        "post",
        "/api/v1/admin/partners",
        Auth::Operator,
        "Create a partner",
    ),
    r(
        "get",
        "/api/v1/admin/partners",
        Auth::Operator,
        "List partners, a page at a time (limit, cursor)",
    ),
    r(
        "get",
        "/api/v1/admin/partners/{id}",
        Auth::Operator,
        "One partner",
    ),
    r(
        "post",
        "/api/v1/admin/partners/{id}/topup",
        Auth::Operator,
        "Top up a balance",
    ),
    r(
        "post",
        "/api/v1/admin/partners/{id}/tier",
        Auth::Operator,
        "Set the tier multiplier",
    ),
    r(
        "post",
        "/api/v1/admin/partners/{id}/suspend",
        Auth::Operator,
        "Suspend a partner",
    ),
    r(
        "post",
        "/api/v1/admin/partners/{id}/unsuspend",
        Auth::Operator,
        "Reinstate a partner",
    ),
];

fn security(auth: Auth) -> Value {
    match auth {
        Auth::None => json!([]),
        Auth::Partner => json!([{ "partnerToken": [] }]),
        Auth::AccountKey => json!([{ "accountKey": [] }, { "accessKeyPair": [] }]),
        Auth::Operator => json!([{ "operatorToken": [] }]),
    }
}

fn operation(route: &RouteDoc) -> Value {
    let mut responses = json!({ "200": { "description": "OK" } });
    if route.auth != Auth::None {
        responses["401"] = json!({ "description": "Missing or invalid credentials" });
        responses["403"] = json!({ "description": "Not allowed (e.g. suspended)" });
        responses["404"] = json!({ "description": "Not found, or not yours" });
        responses["422"] = json!({ "description": "Validation error naming the field" });
        responses["429"] = json!({ "description": "Rate limited; see Retry-After" });
    }
    let mut op = json!({
        "summary": route.summary,
        "security": security(route.auth),
        "responses": responses,
    });
    if route.path.contains("{id}") {
        op["parameters"] = json!([{
            "name": "id", "in": "path", "required": true, "schema": { "type": "string" }
        }]);
    }
    op
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[route.method] = operation(route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tollgate management API",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": paths,
        "components": { "securitySchemes": {
            "partnerToken": { "type": "http", "scheme": "bearer", "description": "rsk_ partner token" },
            "operatorToken": { "type": "http", "scheme": "bearer", "description": "operator token" },
            "accountKey": { "type": "http", "scheme": "bearer", "description": "an account key with admin" },
            "accessKeyPair": { "type": "http", "scheme": "basic", "description": "access_key:access_secret" },
        }},
    })
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<Value> {
    Json(document())
}
