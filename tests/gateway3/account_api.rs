//! The account API (`/api/v0/{stats,plans,key,keys}`) end to end, called with the account's
//! own keys; included by `tests/gateway3.rs`, whose helpers it uses.

use super::*;
use std::time::Duration;

use common::eventually;
use tollgate::domain::ip::IpAllowList;
use tollgate::domain::key::KeyLimits;
use tollgate::domain::permission::{Permission, PermissionSet};
use tollgate::manage::{KeyKind, NewKey};

#[tokio::test]
async fn account_api_needs_an_admin_key_of_the_account() {
    let t = gateway().await;
    create_user(&t, USER).await;
    let admin = user_key(&t, USER, "admin", &["admin"]).await;
    let read = user_key(&t, USER, "reader", &["read", "write", "pin", "unpin"]).await;
    let (status, json) = call(
        &t,
        Method::GET,
        "/stats",
        Auth::Basic(&admin.0, &admin.1),
        None,
    )
    .await;
    assert_eq!(status, 200, "{json}");
    for (auth, status, prefix) in [
        (Auth::Basic(&read.0, &read.1), 403, "permission_denied: "),
        (Auth::None, 401, "missing_credentials: "),
        (Auth::Basic(&admin.0, "wrong"), 401, "invalid_key: "),
        (Auth::Basic("not-a-uuid", "x"), 401, "invalid_key: "),
        (Auth::Bearer("cr_unknown"), 401, "invalid_key: "),
        (Auth::Bearer(&t.partner_token), 401, "invalid_key: "),
    ] {
        for path in ["/stats", "/plans", "/keys"] {
            let (got, json) = call(&t, Method::GET, path, auth, None).await;
            assert_eq!(got, status, "{path}: {json}");
            let msg = json["msg"].as_str().unwrap();
            assert!(msg.starts_with(prefix), "{path}: {msg}");
        }
    }
    // A revoked admin key is refused on its next call.
    let body = json!({"uuid": USER, "name": "admin"});
    assert_eq!(
        partner(&t, Method::DELETE, "/partner/user/key", body)
            .await
            .0,
        200
    );
    let (status, json) = call(
        &t,
        Method::GET,
        "/stats",
        Auth::Basic(&admin.0, &admin.1),
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        json["msg"].as_str().unwrap().starts_with("key_revoked: "),
        "{json}"
    );
}

#[tokio::test]
async fn account_api_checks_the_client_ip_and_accepts_bearer_tokens() {
    let t = gateway().await;
    create_user(&t, USER).await;
    let m = &t.gw().manager;
    let account = m
        .account_by_external_id(t.partner_id, USER)
        .await
        .unwrap()
        .expect("account");
    let new = |ip: &[&str]| NewKey {
        account_id: account.id,
        partner_id: t.partner_id,
        name: Some(format!("ip-{}", ip.join(","))),
        label: None,
        description: None,
        permissions: PermissionSet::from_slice(&[Permission::Admin]),
        ip_whitelist: IpAllowList::parse(ip).unwrap(),
        expiration_date: None,
        limits: KeyLimits::default(),
        kind: KeyKind::Pair,
        created_by: "test".into(),
    };
    let elsewhere = m.create_key(new(&["10.0.0.0/8"])).await.unwrap();
    let here = m.create_key(new(&["127.0.0.1"])).await.unwrap();
    for (created, status) in [(&elsewhere, 403), (&here, 200)] {
        let ak = created.key.credential.access_key().unwrap().to_string();
        let (got, json) = call(
            &t,
            Method::GET,
            "/stats",
            Auth::Basic(&ak, &created.secret),
            None,
        )
        .await;
        assert_eq!(got, status, "{json}");
    }
    // Bearer tokens are accepted, but a reseller `cr_` key (the partner's default account) may
    // not use the account API even with admin: its customer could otherwise mint unlimited
    // keys and revoke the reseller's other keys.
    let (_, token) = t.create_key(json!({"permissions": ["admin"]})).await;
    let (status, json) = call(&t, Method::GET, "/stats", Auth::Bearer(&token), None).await;
    assert_eq!(status, 403, "{json}");
    assert!(
        json["msg"].as_str().unwrap().contains("reseller keys"),
        "{json}"
    );
    let (status, _) = call(
        &t,
        Method::POST,
        "/key",
        Auth::Bearer(&token),
        Some(json!({"name": "x", "permissions": ["read"]})),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn account_api_stats_plans_and_keys() {
    let t = gateway().await;
    create_user(&t, USER).await;
    let admin = user_key(&t, USER, "admin", &["admin"]).await;
    let auth = Auth::Basic(&admin.0, &admin.1);

    let (_, json) = call(&t, Method::GET, "/stats", auth, None).await;
    assert_eq!(
        json,
        json!({"code": 200, "msg": "ok", "data": {
            "name": "John Doe",
            "provider": "tollgate",
            "email": "example@example.com",
            "email_verified": false,
            "plan": "Free",
            "pinned_count": 0,
            "pinned_count_limit": 100,
            "pinned_bytes": 0,
            "pinned_bytes_limit": GIB,
            "ingress": 0,
            "ingress_limit": 5 * GIB,
            "egress": 0,
            "egress_limit": 5 * GIB,
            "ipns": 0,
            "ipns_limit": 3,
        }})
    );

    let (_, json) = call(&t, Method::GET, "/plans", auth, None).await;
    assert_eq!(
        json["data"],
        json!([
            {"id": 1, "name": "Free", "price": "0.00", "pinned_count_limit": 100,
             "pinned_bytes_limit": GIB, "ingress_limit": 5 * GIB, "egress_limit": 5 * GIB,
             "ipns_limit": 3},
            {"id": 3, "name": "Plan0", "price": "$ 9.99", "pinned_count_limit": 2000,
             "pinned_bytes_limit": 100 * GIB, "ingress_limit": 20 * GIB,
             "egress_limit": 20 * GIB, "ipns_limit": 1},
            {"id": 4, "name": "Big", "price": "$ 20.00", "pinned_count_limit": 0,
             "pinned_bytes_limit": 0, "ingress_limit": 0, "egress_limit": 0, "ipns_limit": 0},
        ])
    );

    // Own keys: create, list, use, delete.
    let body = json!({"name": "k3", "permissions": ["read"]});
    let (status, json) = call(&t, Method::POST, "/key", auth, Some(body.clone())).await;
    assert_eq!(status, 200, "{json}");
    let k3 = (
        json["data"]["access_key"].as_str().unwrap().to_string(),
        json["data"]["access_secret"].as_str().unwrap().to_string(),
    );
    assert_eq!(proxied(&t, &k3, "/a").await.0, 200);
    let (status, json) = call(&t, Method::POST, "/key", auth, Some(body)).await;
    assert_eq!(status, 409, "{json}");
    let (_, json) = call(&t, Method::GET, "/keys", auth, None).await;
    assert_eq!(
        json["data"],
        json!([
            {"name": "admin", "access_key": admin.0, "permissions": ["admin"]},
            {"name": "k3", "access_key": k3.0, "permissions": ["read"]},
        ])
    );
    let (status, json) = call(&t, Method::POST, "/key", auth, Some(json!({"name": "x"}))).await;
    assert_eq!(status, 400);
    assert!(
        json["msg"]
            .as_str()
            .unwrap()
            .contains("missing field `permissions`"),
        "{json}"
    );
    let (status, _) = call(
        &t,
        Method::DELETE,
        "/key",
        auth,
        Some(json!({"name": "k3"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(proxied(&t, &k3, "/a").await.0, 403);
    let (status, _) = call(
        &t,
        Method::DELETE,
        "/key",
        auth,
        Some(json!({"name": "k3"})),
    )
    .await;
    assert_eq!(status, 404);
    let (_, json) = call(&t, Method::GET, "/keys", auth, None).await;
    assert_eq!(json["data"].as_array().unwrap().len(), 1);
    // Keys are the account's own: the partner sees the one the account made.
    let (_, json) = partner(
        &t,
        Method::GET,
        &format!("/partner/user/keys?uuid={USER}"),
        Value::Null,
    )
    .await;
    assert_eq!(json["data"][0]["name"], "admin");
}

#[tokio::test]
async fn stats_reflect_proxied_ingress_and_egress_bytes() {
    let t = gateway().await;
    create_user(&t, USER).await;
    let pair = user_key(&t, USER, "rw", &["read", "write"]).await;
    let admin = user_key(&t, USER, "admin", &["admin"]).await;
    let mut sent = 0u64;
    let mut received = 0u64;
    for size in [1000usize, 2500, 7] {
        let resp = t
            .client
            .post(format!("{}/up", t.proxy))
            .basic_auth(&pair.0, Some(&pair.1))
            .body(vec![b'u'; size])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        sent += size as u64;
        received += resp.bytes().await.unwrap().len() as u64;
    }
    let (status, len) = proxied(&t, &pair, "/down?echo_bytes=30000").await;
    assert_eq!((status, len), (200, 30_000));
    received += len as u64;
    // Bytes are settled as the bodies end; both views agree once they have.
    let settled = eventually(Duration::from_secs(10), || async {
        let data = stats_of(&t, USER).await;
        data["ingress"] == sent && data["egress"] == received
    })
    .await;
    assert!(settled, "partner stats: {}", stats_of(&t, USER).await);
    let (_, json) = call(
        &t,
        Method::GET,
        "/stats",
        Auth::Basic(&admin.0, &admin.1),
        None,
    )
    .await;
    assert_eq!(
        (
            json["data"]["ingress"].clone(),
            json["data"]["egress"].clone()
        ),
        (json!(sent), json!(received))
    );
}

#[tokio::test]
async fn unknown_endpoints_and_methods_answer_in_the_envelope() {
    let t = gateway().await;
    let (status, json) = call(&t, Method::GET, "/nope", Auth::None, None).await;
    assert_eq!(status, 404, "{json}");
    let (status, json) = call(&t, Method::GET, "/partner/user/create", Auth::None, None).await;
    assert_eq!(status, 405, "{json}");
    let (status, _) = call(&t, Method::PUT, "/key", Auth::None, None).await;
    assert_eq!(status, 405);
}
