//! `/openapi.json` is generated from the handlers (utoipa): every documented operation is
//! routed, every routed method is documented, each operation has a unique id, its surface's
//! security scheme and error schema, and the document is the one the code builds.

mod common;

use common::TestGateway;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "patch", "put", "delete"];

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_exists() {
    let t = TestGateway::start().await;
    let doc: Value = t
        .client
        .get(format!("{}/openapi.json", t.api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc,
        serde_json::to_value(tollgate::api::openapi::document()).unwrap(),
        "the served document is the generated one"
    );
    let paths = doc["paths"].as_object().unwrap();
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert!(documented >= 33, "{documented} operations");
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let path = path.replace("{id}", &uuid::Uuid::nil().to_string());
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = t
                .client
                .request(m, format!("{}{path}", t.api))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}: method not routed");
            assert!(
                !body.contains("no such route") && !body.contains("no such endpoint"),
                "{method} {path}: not routed"
            );
        }
    }
    // No undocumented method on a documented path: anything not in the table is a 405.
    for (path, ops) in paths {
        let path = path.replace("{id}", &uuid::Uuid::nil().to_string());
        for method in METHODS {
            if ops.get(method).is_some() {
                continue;
            }
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = t
                .client
                .request(m, format!("{}{path}", t.api))
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                405,
                "{method} {path} is routed but not documented"
            );
            // Every management error has its surface's JSON body, 405 included.
            let body: serde_json::Value = resp
                .json()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: the 405 has no JSON body: {e}"));
            let message = if path.starts_with("/api/v0") {
                assert_eq!(body["code"], 405, "{method} {path}: {body}");
                &body["msg"]
            } else {
                &body["detail"]
            };
            let whole = format!("{} is not allowed on {path}", method.to_uppercase());
            assert_eq!(message.as_str(), Some(whole.as_str()), "{body}");
        }
    }
    // And the fallback really is what an unknown path gets.
    let resp = t
        .client
        .get(format!("{}/api/v1/nope", t.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await.unwrap().contains("no such route"));
}

/// The files of the management router, which must register every route through
/// `utoipa_axum::routes!` (so the route and its documentation are one registration).
const ROUTER_FILES: [&str; 7] = [
    "src/api/mod.rs",
    "src/api/health.rs",
    "src/api/admin.rs",
    "src/api/reseller/mod.rs",
    "src/api/gateway3/mod.rs",
    "src/api/gateway3/partner.rs",
    "src/api/gateway3/account.rs",
];

#[test]
fn no_route_is_registered_around_the_generator() {
    let mut registered = 0;
    for file in ROUTER_FILES {
        let text = std::fs::read_to_string(file).unwrap();
        for forbidden in [".route(", "routing::get", "routing::post", "axum::routing"] {
            assert!(
                !text.contains(forbidden),
                "{file} registers a route with `{forbidden}`, which the OpenAPI document would miss"
            );
        }
        for call in text.split("routes!(").skip(1) {
            let handlers = &call[..call.find(')').unwrap()];
            registered += handlers.split(',').filter(|h| !h.trim().is_empty()).count();
        }
    }
    let doc = serde_json::to_value(tollgate::api::openapi::document()).unwrap();
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        registered, documented,
        "one operation per registered handler"
    );
}

/// Each operation: a unique `operationId`, the security scheme of its surface (declared in
/// the components), and every error answer with its surface's error schema.
#[test]
fn operations_carry_their_surface_security_and_error_schema() {
    let doc = serde_json::to_value(tollgate::api::openapi::document()).unwrap();
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["accessKeyPair"]["scheme"], "basic");
    assert_eq!(schemes["partnerToken"]["scheme"], "bearer");
    assert!(
        !schemes.contains_key("accountKey"),
        "a scheme that cannot succeed"
    );
    let mut ids = std::collections::HashSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_string()), "{id} twice");
            let (scheme, error_schema) = match path.as_str() {
                p if p.starts_with("/api/v1/reseller") => (Some("partnerToken"), "Detail"),
                p if p.starts_with("/api/v1/admin") => (Some("operatorToken"), "Detail"),
                p if p.starts_with("/api/v0/partner") => (Some("partnerToken"), "V0Message"),
                p if p.starts_with("/api/v0") => (Some("accessKeyPair"), "V0Message"),
                _ => (None, ""),
            };
            let Some(scheme) = scheme else {
                assert!(
                    op.get("security").is_none(),
                    "{method} {path} needs no credential"
                );
                continue;
            };
            assert_eq!(
                op["security"][0][scheme],
                serde_json::json!([]),
                "{method} {path}"
            );
            assert!(schemes.contains_key(scheme));
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("200") && responses.contains_key("401"),
                "{method} {path}"
            );
            for (status, response) in responses {
                if status.starts_with('2') {
                    continue;
                }
                let schema = &response["content"]["application/json"]["schema"];
                let named = schema["$ref"]
                    .as_str()
                    .map(|r| r.rsplit('/').next().unwrap());
                let inline_fields: Vec<&str> = schema["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let expected_fields = match error_schema {
                    "Detail" => vec!["detail"],
                    _ => vec!["code", "msg"],
                };
                assert!(
                    named == Some(error_schema) || inline_fields == expected_fields,
                    "{method} {path} {status}: {schema}"
                );
            }
        }
    }
}
