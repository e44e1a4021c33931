//! Every management list pages with `limit` and an opaque `cursor`: the partner's keys and
//! Gateway3 accounts, the ledger (tests/ledger.rs), the operator's partners, and the v0 key
//! lists, whose Gateway3 shape is unchanged when no paging parameter is given. A page walk
//! that runs while items are added sees every item that existed when it began exactly once.

mod common;

use common::TestGateway;
use serde_json::{Value, json};

async fn get(t: &TestGateway, path: &str) -> Value {
    t.get_json(path).await
}

async fn post_v0(t: &TestGateway, path: &str, body: Value) -> Value {
    t.v0_partner_post(path, body).await
}

async fn create_account(t: &TestGateway, uuid: &str) {
    let body = json!({"uuid": uuid, "email": format!("{uuid}@example.com")});
    post_v0(t, "create", body).await;
}

/// Walks `path` (whose query already has `limit`) a page at a time, calling `between` after
/// every page; returns the items' `field` in order.
async fn walk<F, Fut>(t: &TestGateway, path: &str, field: &str, mut between: F) -> Vec<String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_string(),
        };
        let page = get(t, &url).await;
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item[field].as_str().unwrap().to_string()),
        );
        pages += 1;
        between(pages).await;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn account_and_key_pages_see_every_item_once_while_items_are_added() {
    let t = TestGateway::start().await;
    let before: Vec<String> = (0..7).map(|i| format!("user-{i}")).collect();
    for uuid in &before {
        create_account(&t, uuid).await;
    }
    for _ in 0..7 {
        t.rw_key().await;
    }
    let keys_before: Vec<String> = get(&t, "/api/v1/reseller/keys?limit=1000").await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect();

    let t = &t;
    let seen = walk(
        t,
        "/api/v1/reseller/accounts?limit=2",
        "uuid",
        |page| async move {
            create_account(t, &format!("added-{page}")).await;
        },
    )
    .await;
    for uuid in &before {
        assert_eq!(
            seen.iter().filter(|s| *s == uuid).count(),
            1,
            "{uuid}: {seen:?}"
        );
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no account twice: {seen:?}");
    assert_eq!(&seen[..7], &before[..], "oldest first");

    let keys = walk(t, "/api/v1/reseller/keys?limit=3", "id", |_| async move {
        t.rw_key().await;
    })
    .await;
    for id in &keys_before {
        assert_eq!(keys.iter().filter(|k| *k == id).count(), 1, "{id}");
    }
    assert_eq!(&keys[..keys_before.len()], &keys_before[..], "oldest first");
}

#[tokio::test]
async fn v0_key_lists_keep_the_gateway3_shape_and_page_on_request() {
    let t = TestGateway::start().await;
    create_account(&t, "u1").await;
    for i in 0..5 {
        let body = json!({"uuid": "u1", "name": format!("k{i}"), "permissions": ["read"]});
        post_v0(&t, "key", body).await;
    }
    // No paging parameter: every key, and nothing but code, msg and data.
    let whole = get(&t, "/api/v0/partner/user/keys?uuid=u1").await;
    let fields: Vec<&String> = whole.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["code", "data", "msg"], "{whole}");
    let names: Vec<&str> = whole["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["k0", "k1", "k2", "k3", "k4"]);
    // With `limit`, pages and a cursor until the last page.
    let paged = walk(
        &t,
        "/api/v0/partner/user/keys?uuid=u1&limit=2",
        "name",
        |_| async {},
    )
    .await;
    assert_eq!(paged, names);
    let first = get(&t, "/api/v0/partner/user/keys?uuid=u1&limit=2").await;
    assert!(first["next_cursor"].is_string(), "{first}");
    // A malformed cursor is the v0 400 naming it.
    let resp = t
        .client
        .get(format!(
            "{}/api/v0/partner/user/keys?uuid=u1&cursor=zzz",
            t.api
        ))
        .bearer_auth(&t.partner_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 400);
    assert!(
        body["msg"].as_str().unwrap().starts_with("cursor:"),
        "{body}"
    );
}
