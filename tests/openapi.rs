//! `/openapi.json` describes every route of the management router, and every documented route
//! exists: each one is called and must not fall through to "no such route" or 405.

mod common;

use common::TestGateway;
use tollgate::api::openapi::ROUTES;

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_exists() {
    let t = TestGateway::start().await;
    let doc: serde_json::Value = t
        .client
        .get(format!("{}/openapi.json", t.api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "every table entry is in the document once"
    );
    for route in ROUTES {
        assert!(
            paths[route.path][route.method].is_object(),
            "{} {}",
            route.method,
            route.path
        );
        let path = route.path.replace("{id}", &uuid::Uuid::nil().to_string());
        let method = reqwest::Method::from_bytes(route.method.to_uppercase().as_bytes()).unwrap();
        let resp = t
            .client
            .request(method, format!("{}{path}", t.api))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert_ne!(status, 405, "{} {path}: method not routed", route.method);
        assert!(
            !body.contains("no such route"),
            "{} {path}: not routed",
            route.method
        );
    }
    // No undocumented method on a documented path: anything not in the table is a 405.
    for (path, ops) in paths {
        let path = path.replace("{id}", &uuid::Uuid::nil().to_string());
        for method in ["get", "post", "patch", "put", "delete"] {
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

/// Every `.route(..)` written in the router's source, with the prefix it is nested under, as
/// `(method, path)` pairs. Reading the source is how the router's side is enumerated: axum does
/// not list its routes.
fn routes_in_source() -> Vec<(String, String)> {
    let files = [
        ("src/api/mod.rs", ""),
        ("src/api/health.rs", ""),
        ("src/api/reseller/mod.rs", "/api/v1/reseller"),
        ("src/api/admin.rs", "/api/v1/admin"),
        ("src/api/gateway3/mod.rs", "/api/v0"),
    ];
    let mut found = Vec::new();
    for (file, prefix) in files {
        let text = std::fs::read_to_string(file).unwrap();
        for call in text.split(".route(").skip(1) {
            // The call's text up to its closing parenthesis.
            let mut depth = 1;
            let end = call
                .char_indices()
                .find(|(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(call.len(), |(i, _)| i);
            let call = &call[..end];
            let path = call.split('"').nth(1).unwrap().to_string();
            for method in ["get", "post", "patch", "put", "delete"] {
                let called = |c: &str| call.contains(&format!("{c}{method}("));
                if called("(") || called(" ") || called(".") || called("routing::") {
                    found.push((method.to_string(), format!("{prefix}{path}")));
                }
            }
        }
    }
    found
}

#[test]
fn every_route_in_the_router_source_is_documented() {
    let found = routes_in_source();
    assert!(found.len() >= 30, "the scan found too little: {found:?}");
    for (method, path) in &found {
        assert!(
            ROUTES.iter().any(|r| r.method == method && r.path == path),
            "{method} {path} is routed but not in the OpenAPI table"
        );
    }
    assert_eq!(found.len(), ROUTES.len(), "{found:?}");
}
