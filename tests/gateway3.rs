//! The Gateway3 v0 APIs end to end: the partner API (`/api/v0/partner/user/...`) here and the
//! account API (`/api/v0/{stats,plans,key,keys}`) in `gateway3/account_api.rs`, driven over
//! HTTP against a real gateway in front of the real echo upstream, with the keys they create
//! used on the data plane.

mod common;

#[path = "gateway3/account_api.rs"]
mod account_api;

use common::{Options, TestGateway, denial};
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

/// The seed's two plans plus an expensive one without limits.
const PLANS: &str = r#"
[[plans]]
id = 1
name = "Free"
price_usd = "0.00"
pinned_count_limit = 100
pinned_bytes_limit = "1GiB"
ingress_limit = "5GiB"
egress_limit = "5GiB"
ipns_limit = 3

[[plans]]
id = 3
name = "Plan0"
price_usd = "9.99"
pinned_count_limit = 2000
pinned_bytes_limit = "100GiB"
ingress_limit = "20GiB"
egress_limit = "20GiB"
ipns_limit = 1

[[plans]]
id = 4
name = "Big"
price_usd = "20.00"
"#;

const GIB: u64 = 1 << 30;
const USD: i64 = 1_000_000;
const USER: &str = "123e4567-e89b-12d3-a456-426614174000";

/// A gateway with `PLANS` on the fake clock, new accounts on plan 1.
async fn gateway() -> TestGateway {
    with_plans(PLANS).await
}

async fn with_plans(plans: &str) -> TestGateway {
    TestGateway::with(Options {
        top: "default_plan = 1\n".into(),
        extra: plans.into(),
        fake_clock: true,
        ..Options::default()
    })
    .await
}

/// How a call authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

/// A v0 call; checks that the envelope's `code` is the HTTP status, returns both.
async fn call(
    t: &TestGateway,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = t.client.request(method, format!("{}/api/v0{path}", t.api));
    req = match auth {
        Auth::None => req,
        Auth::Bearer(token) => req.bearer_auth(token),
        Auth::Basic(user, secret) => req.basic_auth(user, Some(secret)),
    };
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("v0 call");
    let status = resp.status().as_u16();
    let json: Value = resp.json().await.expect("envelope");
    assert_eq!(json["code"], status, "status line equals code: {json}");
    assert!(json["msg"].is_string(), "{json}");
    (status, json)
}

/// A partner call with `t`'s partner token.
async fn partner(t: &TestGateway, method: Method, path: &str, body: Value) -> (u16, Value) {
    let token = t.partner_token.clone();
    let body = (method != Method::GET).then_some(body);
    call(t, method, path, Auth::Bearer(&token), body).await
}

/// Creates user `uuid` and asserts success.
async fn create_user(t: &TestGateway, uuid: &str) {
    let body = json!({"email": "example@example.com", "name": "John Doe", "uuid": uuid});
    let (status, json) = partner(t, Method::POST, "/partner/user/create", body).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json,
        json!({"code": 200, "msg": "ok"}),
        "no data, as in the seed"
    );
}

/// Creates a key for user `uuid`; returns (access_key, access_secret).
async fn user_key(t: &TestGateway, uuid: &str, name: &str, perms: &[&str]) -> (String, String) {
    let body = json!({"uuid": uuid, "name": name, "permissions": perms});
    let (status, json) = partner(t, Method::POST, "/partner/user/key", body).await;
    assert_eq!(status, 200, "{json}");
    let data = &json["data"];
    let access_key = data["access_key"].as_str().expect("access_key").to_string();
    uuid::Uuid::parse_str(&access_key).expect("access_key is a UUID");
    let secret = data["access_secret"].as_str().expect("secret").to_string();
    (access_key, secret)
}

async fn stats_of(t: &TestGateway, uuid: &str) -> Value {
    let path = format!("/partner/user/stats?uuid={uuid}");
    let (status, json) = partner(t, Method::GET, &path, Value::Null).await;
    assert_eq!(status, 200, "{json}");
    json["data"].clone()
}

/// A proxied GET with a pair; returns (status, body bytes).
async fn proxied(t: &TestGateway, pair: &(String, String), path: &str) -> (u16, usize) {
    let resp = t
        .client
        .get(format!("{}{path}", t.proxy))
        .basic_auth(&pair.0, Some(&pair.1))
        .send()
        .await
        .expect("proxied call");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body").len())
}

fn live_balance(t: &TestGateway) -> i64 {
    t.gw()
        .manager
        .meter
        .partner(t.partner_id)
        .expect("live partner")
        .balance()
}

async fn stored_balance(t: &TestGateway) -> i64 {
    let m = &t.gw().manager;
    let p = m.store.get_partner(t.partner_id).await.expect("store");
    p.expect("partner").balance_micros
}

#[tokio::test]
async fn partner_creates_a_user_and_reads_its_stats() {
    let t = gateway().await;
    create_user(&t, USER).await;
    let data = stats_of(&t, USER).await;
    assert_eq!(
        data,
        json!({
            "name": "John Doe",
            "email": "example@example.com",
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
        })
    );
    // The same uuid again is a conflict naming the field; nothing else changes.
    let body = json!({"email": "other@example.com", "uuid": USER});
    let (status, json) = partner(&t, Method::POST, "/partner/user/create", body).await;
    assert_eq!(status, 409, "{json}");
    assert!(json["msg"].as_str().unwrap().starts_with("uuid:"), "{json}");
    assert_eq!(stats_of(&t, USER).await["email"], "example@example.com");
    // `name` is optional.
    let body = json!({"email": "n@example.com", "uuid": "no-name"});
    let (status, _) = partner(&t, Method::POST, "/partner/user/create", body).await;
    assert_eq!(status, 200);
    assert_eq!(stats_of(&t, "no-name").await["name"], Value::Null);
}

#[tokio::test]
async fn partner_calls_need_the_partner_token() {
    let t = gateway().await;
    let body = json!({"email": "a@b.c", "uuid": "u"});
    for auth in [
        Auth::None,
        Auth::Bearer("rsk_wrong"),
        Auth::Bearer("not-even-a-token"),
        Auth::Basic("user", "pass"),
    ] {
        let (status, json) = call(
            &t,
            Method::POST,
            "/partner/user/create",
            auth,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 401, "{json}");
        let (status, _) = call(&t, Method::GET, "/partner/user/keys?uuid=u", auth, None).await;
        assert_eq!(status, 401);
    }
    // A key of an account is not a partner token.
    create_user(&t, USER).await;
    let (ak, secret) = user_key(&t, USER, "admin", &["admin"]).await;
    let path = format!("/partner/user/stats?uuid={USER}");
    let (status, _) = call(&t, Method::GET, &path, Auth::Basic(&ak, &secret), None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn another_partners_users_do_not_exist() {
    let t = gateway().await;
    create_user(&t, USER).await;
    user_key(&t, USER, "k", &["read"]).await;
    let (_, other) = t
        .gw()
        .manager
        .create_partner("other")
        .await
        .expect("partner");
    let as_other = |method: Method, path: String, body: Option<Value>| {
        let token = other.clone();
        let t = &t;
        async move { call(t, method, &path, Auth::Bearer(&token), body).await }
    };
    let calls = [
        (
            Method::GET,
            format!("/partner/user/stats?uuid={USER}"),
            None,
        ),
        (Method::GET, format!("/partner/user/keys?uuid={USER}"), None),
        (
            Method::POST,
            "/partner/user/update-plan".to_string(),
            Some(json!({"uuid": USER, "plan_id": 3})),
        ),
        (
            Method::POST,
            "/partner/user/key".to_string(),
            Some(json!({"uuid": USER, "name": "x", "permissions": ["read"]})),
        ),
        (
            Method::DELETE,
            "/partner/user/key".to_string(),
            Some(json!({"uuid": USER, "name": "k"})),
        ),
    ];
    for (method, path, body) in calls {
        let (status, json) = as_other(method, path.clone(), body).await;
        assert_eq!(status, 404, "{path}: {json}");
        assert_eq!(json["msg"], "uuid: no user with this uuid");
    }
    // Each partner has its own uuid space: the same uuid is a different account.
    let body = json!({"email": "x@example.com", "uuid": USER});
    let path = "/partner/user/create".to_string();
    let (status, _) = as_other(Method::POST, path, Some(body)).await;
    assert_eq!(status, 200);
    let (status, json) =
        as_other(Method::GET, format!("/partner/user/keys?uuid={USER}"), None).await;
    assert_eq!((status, json["data"].clone()), (200, json!([])));
    // The first partner's key is untouched.
    let (_, json) = partner(
        &t,
        Method::GET,
        &format!("/partner/user/keys?uuid={USER}"),
        Value::Null,
    )
    .await;
    assert_eq!(json["data"].as_array().unwrap().len(), 1);
    // The partner's default account (reseller keys) is not a Gateway3 user either.
    let default = format!("default-{}", t.partner_id);
    let path = format!("/partner/user/keys?uuid={default}");
    let (status, _) = partner(&t, Method::GET, &path, Value::Null).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn validation_errors_are_400_naming_the_field() {
    let t = gateway().await;
    create_user(&t, USER).await;
    let cases = [
        (
            "/partner/user/create",
            json!({"uuid": USER}),
            "missing field `email`",
        ),
        (
            "/partner/user/create",
            json!({"uuid": 5, "email": "a@b.c"}),
            "uuid: invalid type",
        ),
        (
            "/partner/user/create",
            json!({"uuid": "u", "email": "a@b.c", "plan": 1}),
            "unknown field `plan`",
        ),
        (
            "/partner/user/create",
            json!({"uuid": "", "email": "a@b.c"}),
            "uuid: must be",
        ),
        (
            "/partner/user/create",
            json!({"uuid": "u", "email": "nope"}),
            "email: `nope`",
        ),
        (
            "/partner/user/update-plan",
            json!({"uuid": USER, "plan_id": "3"}),
            "plan_id: invalid type",
        ),
        (
            "/partner/user/key",
            json!({"uuid": USER, "name": "k", "permissions": ["read", "fly"]}),
            "permissions[1]: unknown permission `fly`",
        ),
        (
            "/partner/user/key",
            json!({"uuid": USER, "name": "k", "permissions": []}),
            "permissions: must name at least one permission",
        ),
        (
            "/partner/user/key",
            json!({"uuid": USER, "name": "  ", "permissions": ["read"]}),
            "name: must not be empty",
        ),
        (
            "/partner/user/key",
            json!({"uuid": USER, "name": "x".repeat(129), "permissions": ["read"]}),
            "name: at most 128 characters",
        ),
    ];
    for (path, body, expected) in cases {
        let (status, json) = partner(&t, Method::POST, path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {json}");
        let msg = json["msg"].as_str().unwrap();
        assert!(
            msg.contains(expected),
            "{path} {body}: `{msg}` lacks `{expected}`"
        );
    }
    // Not JSON at all, and an empty DELETE body.
    let resp = t
        .client
        .post(format!("{}/api/v0/partner/user/create", t.api))
        .bearer_auth(&t.partner_token)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let json: Value = resp.json().await.unwrap();
    assert!(
        json["msg"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body"),
        "{json}"
    );
    let (status, json) = call(
        &t,
        Method::DELETE,
        "/partner/user/key",
        Auth::Bearer(&t.partner_token),
        None,
    )
    .await;
    assert_eq!(status, 400, "{json}");
    // Query strings name the parameter too.
    let (status, json) = partner(&t, Method::GET, "/partner/user/stats", Value::Null).await;
    assert_eq!(status, 400);
    assert!(
        json["msg"]
            .as_str()
            .unwrap()
            .contains("missing field `uuid`"),
        "{json}"
    );
    // A body over the limit is 413 in the envelope.
    let big = json!({"uuid": USER, "email": "a".repeat(70 * 1024)});
    let (status, _) = partner(&t, Method::POST, "/partner/user/create", big).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn unknown_plan_and_unknown_user_are_refused() {
    let t = gateway().await;
    create_user(&t, USER).await;
    let body = json!({"uuid": USER, "plan_id": 99});
    let (status, json) = partner(&t, Method::POST, "/partner/user/update-plan", body).await;
    assert_eq!(status, 400);
    assert_eq!(json["msg"], "plan_id: no plan with id 99 (plans: 1, 3, 4)");
    let body = json!({"uuid": "nobody", "plan_id": 3});
    let (status, _) = partner(&t, Method::POST, "/partner/user/update-plan", body).await;
    assert_eq!(status, 404);
    assert_eq!(stats_of(&t, USER).await["plan"], "Free");
}

#[tokio::test]
async fn update_plan_charges_above_the_months_peak_or_refuses_with_402() {
    let t = gateway().await;
    create_user(&t, USER).await;
    t.top_up(15 * USD).await;
    let update = |plan_id: i64| {
        let t = &t;
        async move {
            let body = json!({"uuid": USER, "plan_id": plan_id});
            partner(t, Method::POST, "/partner/user/update-plan", body).await
        }
    };
    // Free → Plan0 costs 9.99.
    let (status, json) = update(3).await;
    assert_eq!(
        (status, json.clone()),
        (200, json!({"code": 200, "msg": "ok"})),
        "{json}"
    );
    assert_eq!(live_balance(&t), 15 * USD - 9_990_000);
    assert_eq!(stored_balance(&t).await, 15 * USD - 9_990_000);
    let data = stats_of(&t, USER).await;
    assert_eq!(data["plan"], "Plan0");
    assert_eq!(data["ingress_limit"], 20 * GIB);
    assert_eq!(data["pinned_count_limit"], 2000);
    // The same plan again is free.
    assert_eq!(update(3).await.0, 200);
    assert_eq!(stored_balance(&t).await, 15 * USD - 9_990_000);
    // Plan0 → Big costs 10.01, more than the 5.01 left: 402, and nothing changes.
    let (status, json) = update(4).await;
    assert_eq!(status, 402, "{json}");
    assert_eq!(
        json["msg"],
        "insufficient balance: moving to plan `Big` costs $ 10.01 and the partner balance is $ 5.01"
    );
    assert_eq!(live_balance(&t), 5_010_000);
    assert_eq!(stored_balance(&t).await, 5_010_000);
    assert_eq!(stats_of(&t, USER).await["plan"], "Plan0");
    // A downgrade refunds nothing and costs nothing; moving back up within the same month
    // costs nothing either (Plan0 is paid for this month).
    assert_eq!(update(1).await.0, 200);
    assert_eq!(stats_of(&t, USER).await["plan"], "Free");
    assert_eq!(stored_balance(&t).await, 5_010_000);
    assert_eq!(update(3).await.0, 200);
    assert_eq!(stored_balance(&t).await, 5_010_000);
    assert_eq!(update(1).await.0, 200);
    // With the balance topped up the upgrade goes through: Big costs what goes above the
    // month's peak (Plan0's 9.99), 10.01, not its whole 20.00.
    t.top_up(15 * USD).await;
    assert_eq!(update(4).await.0, 200);
    let data = stats_of(&t, USER).await;
    assert_eq!(
        (data["plan"].clone(), data["ingress_limit"].clone()),
        (json!("Big"), json!(0))
    );
    assert_eq!(stored_balance(&t).await, 10_000_000);
    assert_eq!(live_balance(&t), 10_000_000);
}

#[tokio::test]
async fn concurrent_upgrades_never_overdraw_the_balance() {
    let t = gateway().await;
    t.top_up(25 * USD).await;
    let users: Vec<String> = (0..6).map(|i| format!("user-{i}")).collect();
    for u in &users {
        create_user(&t, u).await;
    }
    // Each upgrade costs 9.99: two fit in 25.00, whatever the interleaving.
    let outcomes = join_all(users.iter().map(|u| {
        partner(
            &t,
            Method::POST,
            "/partner/user/update-plan",
            json!({"uuid": u, "plan_id": 3}),
        )
    }))
    .await;
    let ok = outcomes.iter().filter(|(s, _)| *s == 200).count();
    let refused = outcomes.iter().filter(|(s, _)| *s == 402).count();
    assert_eq!((ok, refused), (2, 4), "{outcomes:?}");
    assert_eq!(stored_balance(&t).await, 25 * USD - 2 * 9_990_000);
    assert_eq!(live_balance(&t), 25 * USD - 2 * 9_990_000);
}

#[tokio::test]
async fn new_plan_limits_apply_on_the_next_request() {
    let plans = "[[plans]]\nid = 1\nname = \"Tiny\"\nprice_usd = \"0.00\"\ningress_limit = \"1KiB\"\n\
                 [[plans]]\nid = 2\nname = \"Roomy\"\nprice_usd = \"0.00\"\ningress_limit = \"1MiB\"\n";
    let t = with_plans(plans).await;
    create_user(&t, USER).await;
    let (ak, secret) = user_key(&t, USER, "up", &["write"]).await;
    let upload = || {
        t.client
            .post(format!("{}/up", t.proxy))
            .basic_auth(&ak, Some(&secret))
            .body(vec![b'u'; 1024])
            .send()
    };
    assert_eq!(upload().await.unwrap().status(), 200);
    assert_eq!(denial(upload().await.unwrap(), 429).await, "quota_exceeded");
    let body = json!({"uuid": USER, "plan_id": 2});
    let (status, _) = partner(&t, Method::POST, "/partner/user/update-plan", body).await;
    assert_eq!(status, 200);
    assert_eq!(
        upload().await.unwrap().status(),
        200,
        "Roomy's limit applies at once"
    );
    let data = stats_of(&t, USER).await;
    assert_eq!(
        (data["plan"].clone(), data["ingress_limit"].clone()),
        (json!("Roomy"), json!(1 << 20))
    );
}

#[tokio::test]
async fn a_partner_key_works_on_the_proxy_until_it_is_deleted() {
    let t = gateway().await;
    create_user(&t, USER).await;
    let pair = user_key(&t, USER, "test_key", &["read", "write", "pin", "unpin"]).await;
    assert_eq!(proxied(&t, &pair, "/a").await.0, 200);
    let keys_path = format!("/partner/user/keys?uuid={USER}");
    let (_, json) = partner(&t, Method::GET, &keys_path, Value::Null).await;
    assert_eq!(
        json["data"],
        json!([{"name": "test_key", "access_key": pair.0, "permissions": ["read", "write", "pin", "unpin"]}])
    );
    // A second key with the same name is a conflict; admin lists as just `admin`.
    let body = json!({"uuid": USER, "name": "test_key", "permissions": ["read"]});
    let (status, json) = partner(&t, Method::POST, "/partner/user/key", body).await;
    assert_eq!(status, 409, "{json}");
    assert!(json["msg"].as_str().unwrap().starts_with("name:"), "{json}");
    let admin = user_key(&t, USER, "k4", &["admin"]).await;
    let (_, json) = partner(&t, Method::GET, &keys_path, Value::Null).await;
    assert_eq!(
        json["data"][1],
        json!({"name": "k4", "access_key": admin.0, "permissions": ["admin"]})
    );

    // Deleted: refused on the very next proxied request.
    let body = json!({"uuid": USER, "name": "test_key"});
    let (status, json) = partner(&t, Method::DELETE, "/partner/user/key", body.clone()).await;
    assert_eq!((status, json), (200, json!({"code": 200, "msg": "ok"})));
    let resp = t
        .client
        .get(format!("{}/a", t.proxy))
        .basic_auth(&pair.0, Some(&pair.1))
        .send()
        .await
        .unwrap();
    assert_eq!(denial(resp, 403).await, "key_revoked");
    let (_, json) = partner(&t, Method::GET, &keys_path, Value::Null).await;
    assert_eq!(
        json["data"].as_array().unwrap().len(),
        1,
        "revoked keys are not listed"
    );
    let (status, json) = partner(&t, Method::DELETE, "/partner/user/key", body).await;
    assert_eq!(status, 404, "{json}");
    assert_eq!(json["msg"], "name: no key named `test_key`");
    // The name is free again; the old pair stays revoked.
    let again = user_key(&t, USER, "test_key", &["read"]).await;
    assert_ne!(again.0, pair.0);
    assert_eq!(proxied(&t, &again, "/a").await.0, 200);
    assert_eq!(proxied(&t, &pair, "/a").await.0, 403);
}
