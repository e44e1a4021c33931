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
