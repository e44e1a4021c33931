//! The QCode-compatible reseller API end to end: partner auth and token rotation, account
//! reads (me, balance, usage), sub-key create/list/get/PATCH/enable/disable with their effect
//! on the very next proxied request, validation without half-written keys, `Idempotency-Key`
//! (replay, mismatch, sealed at rest, 24-hour expiry) and the management rate limits. Every
//! test drives a real gateway over HTTP; the fake clock starts at 2026-11-23 12:00:00 UTC, so
//! "today", the usage series and every `Retry-After` are known exactly.

mod common;

use common::{Options, T0, TestGateway, cost_route, metric_value, metrics_text};
use serde_json::{Value, json};
use tollgate::store::postgres::scratch::{Schema, test_url};
use uuid::Uuid;

const TODAY: &str = "2026-11-23";
const TOMORROW: &str = "2026-11-24";

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A gateway on the fake clock with `extra` TOML.
async fn gateway(extra: &str) -> TestGateway {
    TestGateway::with(Options {
        extra: extra.to_string(),
        fake_clock: true,
        ..Options::default()
    })
    .await
}

/// What a management call returned.
#[derive(Debug)]
struct Reply {
    status: u16,
    retry_after: Option<u64>,
    raw: Vec<u8>,
    json: Value,
}

impl Reply {
    /// The `data` of a 200 `{"ok":true,"data":...}` reply.
    fn data(&self) -> &Value {
        assert_eq!(self.status, 200, "{}", self.text());
        assert_eq!(self.json["ok"], true, "{}", self.text());
        &self.json["data"]
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// Asserts an error reply: `status` and a `{"detail": "..."}` body (nothing else) whose
    /// text contains `needle`.
    fn fails(&self, status: u16, needle: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        let obj = self.json.as_object().expect("JSON object error body");
        assert_eq!(obj.len(), 1, "only `detail`: {}", self.text());
        let detail = obj["detail"].as_str().expect("detail is a string");
        assert!(
            detail.contains(needle),
            "detail {detail:?} should name {needle:?}"
        );
    }
}

async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").map(|v| {
        v.to_str()
            .expect("ascii")
            .parse()
            .expect("Retry-After in seconds")
    });
    let raw = resp.bytes().await.expect("body").to_vec();
    let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Reply {
        status,
        retry_after,
        raw,
        json,
    }
}

fn url(t: &TestGateway, path: &str) -> String {
    format!("{}/api/v1/reseller{path}", t.api)
}

/// `GET` a reseller path with `token`.
async fn get_as(t: &TestGateway, token: &str, path: &str) -> Reply {
    let resp = t.client.get(url(t, path)).bearer_auth(token).send().await;
    reply(resp.expect("GET")).await
}

/// `POST` a reseller path with `token` and no body.
async fn post_as(t: &TestGateway, token: &str, path: &str) -> Reply {
    let resp = t.client.post(url(t, path)).bearer_auth(token).send().await;
    reply(resp.expect("POST")).await
}

/// `PATCH /keys/{id}` with `token` and a raw JSON body.
async fn patch_as(t: &TestGateway, token: &str, id: &str, body: &str) -> Reply {
    let resp = t
        .client
        .patch(url(t, &format!("/keys/{id}")))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await;
    reply(resp.expect("PATCH")).await
}

/// `POST /keys` with `token`, a raw JSON body and an optional `Idempotency-Key`.
async fn create_as(t: &TestGateway, token: &str, body: &str, idem: Option<&str>) -> Reply {
    let mut req = t
        .client
        .post(url(t, "/keys"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = idem {
        req = req.header("idempotency-key", k);
    }
    reply(req.send().await.expect("create")).await
}

/// The same calls as the harness partner.
async fn get(t: &TestGateway, path: &str) -> Reply {
    get_as(t, &t.partner_token, path).await
}

async fn post(t: &TestGateway, path: &str) -> Reply {
    post_as(t, &t.partner_token, path).await
}

async fn patch(t: &TestGateway, id: &str, body: &str) -> Reply {
    patch_as(t, &t.partner_token, id, body).await
}

async fn create(t: &TestGateway, body: &str, idem: Option<&str>) -> Reply {
    create_as(t, &t.partner_token, body, idem).await
}

/// The partner's keys, via `GET /keys`.
async fn keys(t: &TestGateway) -> Vec<Value> {
    get(t, "/keys")
        .await
        .data()
        .as_array()
        .expect("list is an array")
        .clone()
}

async fn key_count(t: &TestGateway) -> usize {
    keys(t).await.len()
}

/// A read/write key; returns (id, api_key).
async fn rw_key(t: &TestGateway) -> (String, String) {
    t.rw_key().await
}

/// A proxied `GET /x` with `key`: the status and, for a refusal, its `error.code`.
async fn proxied(t: &TestGateway, key: &str) -> (u16, String) {
    let resp = t
        .client
        .get(format!("{}/x", t.proxy))
        .bearer_auth(key)
        .send()
        .await
        .expect("proxied request");
    let status = resp.status().as_u16();
    let json: Value = resp.json().await.unwrap_or(Value::Null);
    let code = if status == 200 {
        "ok".to_string()
    } else {
        json["error"]["code"]
            .as_str()
            .unwrap_or("not_a_denial")
            .to_string()
    };
    (status, code)
}

fn advance(t: &TestGateway, secs: i64) {
    t.clock.as_ref().expect("fake clock").advance(secs);
}

/// A plain SQLite connection to the gateway's database file.
async fn db(t: &TestGateway) -> sqlx::SqlitePool {
    let path = t.dir.path().join("t.db");
    sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open t.db")
}

async fn flush(t: &TestGateway) {
    t.gw().sync_once().await;
}

fn approx(v: &Value, expected: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - expected).abs() < 1e-9)
}

// ---------------------------------------------------------------------------------------------
// 1. Authentication.

#[tokio::test]
async fn missing_or_wrong_token_is_401() {
    let t = gateway("").await;
    let me = url(&t, "/me");

    let r = reply(t.client.get(&me).send().await.unwrap()).await;
    r.fails(401, "token");

    let (_, cr_key) = rw_key(&t).await;
    let mut wrong_same_prefix = t.partner_token.clone();
    let last = wrong_same_prefix.pop().unwrap();
    wrong_same_prefix.push(if last == 'a' { 'b' } else { 'a' });
    for bad in [
        "rsk_wrong",
        "rsk_",
        "",
        wrong_same_prefix.as_str(),
        cr_key.as_str(), // a sub-key is not a management token
    ] {
        get_as(&t, bad, "/me").await.fails(401, "token");
    }
    // Not a bearer scheme.
    let r = t
        .client
        .get(&me)
        .header("authorization", format!("Basic {}", t.partner_token))
        .send()
        .await
        .unwrap();
    reply(r).await.fails(401, "token");
    // Write endpoints are guarded too.
    create_as(&t, "rsk_wrong", "{}", None)
        .await
        .fails(401, "token");
    assert_eq!(key_count(&t).await, 1);
    // And the right token works.
    assert_eq!(get(&t, "/me").await.status, 200);
}

#[tokio::test]
async fn rotated_token_dies_at_once_and_the_new_one_works() {
    let t = gateway("").await;
    let old = t.partner_token.clone();
    assert_eq!(
        get_as(&t, &old, "/me").await.status,
        200,
        "old token cached"
    );
    let r = post_as(&t, &old, "/token/rotate").await;
    let new = r.data()["token"].as_str().expect("token").to_string();
    assert!(new.starts_with("rsk_"), "{new}");
    assert_ne!(new, old);

    get_as(&t, &old, "/me").await.fails(401, "token");
    get_as(&t, &old, "/keys").await.fails(401, "token");
    post_as(&t, &old, "/token/rotate").await.fails(401, "token");
    let me = get_as(&t, &new, "/me").await;
    assert_eq!(me.data()["id"], t.partner_id.to_string());
    let r = create_as(&t, &new, r#"{"description":"after rotation"}"#, None).await;
    assert!(r.data()["api_key"].as_str().unwrap().starts_with("cr_"));

    // Rotating again kills the second token as well.
    let r = post_as(&t, &new, "/token/rotate").await;
    let third = r.data()["token"].as_str().unwrap().to_string();
    get_as(&t, &new, "/me").await.fails(401, "token");
    get_as(&t, &old, "/me").await.fails(401, "token");
    assert_eq!(get_as(&t, &third, "/me").await.status, 200);
}

/// There is no suspend operation yet (neither `Manager` nor `Store` has one), so the partner
/// is suspended by writing the `partners.suspended` column of the gateway's SQLite file.
#[tokio::test]
async fn suspended_partner_is_403() {
    let t = gateway("").await;
    let me = get(&t, "/me").await;
    assert_eq!(me.data()["status"], "active");
    let pool = db(&t).await;
    let set = |v: i64| {
        sqlx::query("UPDATE partners SET suspended = $1 WHERE id = $2")
            .bind(v)
            .bind(t.partner_id.to_string())
            .execute(&pool)
    };
    assert_eq!(set(1).await.unwrap().rows_affected(), 1);

    get(&t, "/me").await.fails(403, "suspended");
    get(&t, "/keys").await.fails(403, "suspended");
    create(&t, r#"{"description":"x"}"#, None)
        .await
        .fails(403, "suspended");
    // A wrong token is still a 401, not a 403 (no account-state leak without the token).
    get_as(&t, "rsk_wrong", "/me").await.fails(401, "token");

    set(0).await.unwrap();
    assert_eq!(get(&t, "/me").await.status, 200);
    assert_eq!(
        key_count(&t).await,
        0,
        "nothing was created while suspended"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Account reads.

#[tokio::test]
async fn me_describes_the_partner() {
    let t = gateway("").await;
    let r = get(&t, "/me").await;
    let me = r.data();
    assert_eq!(me["id"], t.partner_id.to_string());
    assert_eq!(me["name"], "acme");
    assert_eq!(me["status"], "active");
    assert_eq!(me["currency"], "USD");
    assert!(approx(&me["tier_multiplier"], 1.0), "{me}");
    assert_eq!(me["created_at"], "2026-11-23T12:00:00Z");
    assert_eq!(me["tier"], Value::Null, "no [management.tiers]");
    assert_eq!(me["region"], Value::Null);
}

/// `/me` names the partner's tier (the configured tier with the partner's multiplier) and the
/// configured region; the tier follows a multiplier change.
#[tokio::test]
async fn me_names_the_tier_and_region_from_the_config() {
    let operator = "operator-token-for-tiers";
    let phc = tollgate::domain::secret::hash_token(operator).unwrap();
    let t = gateway(&format!(
        "[security]\noperator_tokens = [\"{phc}\"]\n\
         [management]\ncalls_per_minute = 1000\nregion = \"eu-west-1\"\n\
         [management.tiers]\nA = 1.0\nB = 0.9\n"
    ))
    .await;
    let me = get(&t, "/me").await;
    assert_eq!(me.data()["tier"], "A", "{}", me.text());
    assert_eq!(me.data()["region"], "eu-west-1");
    let set_tier = |m: f64| {
        let url = format!("{}/api/v1/admin/partners/{}/tier", t.api, t.partner_id);
        let req = t.client.post(url).bearer_auth(operator);
        async move {
            let resp = req
                .json(&json!({"tier_multiplier": m}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
    };
    set_tier(0.9).await;
    assert_eq!(get(&t, "/me").await.data()["tier"], "B");
    set_tier(0.8).await;
    assert_eq!(
        get(&t, "/me").await.data()["tier"],
        Value::Null,
        "no tier has 0.8"
    );
}

#[tokio::test]
async fn balance_reflects_top_up_and_paid_requests() {
    let t = gateway(&cost_route("0.01")).await;
    let r = get(&t, "/balance").await;
    let b = r.data();
    assert!(approx(&b["balance_usd"], 0.0), "{b}");
    assert!(approx(&b["spent_today_usd"], 0.0), "{b}");
    assert_eq!(b["currency"], "USD");

    t.top_up(1_000_000).await;
    let b = get(&t, "/balance").await.data().clone();
    assert!(approx(&b["balance_usd"], 1.0), "{b}");

    let (_, key) = rw_key(&t).await;
    for i in 0..3 {
        assert_eq!(proxied(&t, &key).await, (200, "ok".into()), "request {i}");
    }
    let settled = common::eventually(std::time::Duration::from_secs(10), || async {
        let b = get(&t, "/balance").await.data().clone();
        approx(&b["balance_usd"], 0.97)
            && approx(&b["spent_today_usd"], 0.03)
            && approx(&b["spent_total_usd"], 0.03)
    })
    .await;
    let b = get(&t, "/balance").await.data().clone();
    assert!(settled, "balance after 3 requests at $0.01: {b}");

    // The next day: today's spend starts over, the total and the balance stay.
    advance(&t, 86_400);
    let b = get(&t, "/balance").await.data().clone();
    assert!(approx(&b["spent_today_usd"], 0.0), "{b}");
    assert!(approx(&b["spent_total_usd"], 0.03), "{b}");
    assert!(approx(&b["balance_usd"], 0.97), "{b}");
}

#[tokio::test]
async fn usage_series_has_one_entry_per_day_oldest_first() {
    let t = gateway(&cost_route("0.01")).await;
    t.top_up(1_000_000).await;

    // No usage yet: 7 zero days ending today.
    let r = get(&t, "/usage?range=7d").await;
    let days = r.data().as_array().expect("array").clone();
    let dates: Vec<&str> = days.iter().map(|d| d["date"].as_str().unwrap()).collect();
    assert_eq!(
        dates,
        [
            "2026-11-17",
            "2026-11-18",
            "2026-11-19",
            "2026-11-20",
            "2026-11-21",
            "2026-11-22",
            TODAY
        ]
    );
    for d in &days {
        assert!(approx(&d["cost_usd"], 0.0), "{d}");
        assert_eq!(d["requests"], 0, "{d}");
    }
    // The default range is 7d.
    assert_eq!(get(&t, "/usage").await.data(), r.data());

    let (_, key) = rw_key(&t).await;
    for _ in 0..3 {
        assert_eq!(proxied(&t, &key).await.0, 200);
    }
    let counted = common::eventually(std::time::Duration::from_secs(10), || async {
        flush(&t).await;
        let r = get(&t, "/usage?range=7d").await;
        let today = &r.data()[6];
        today["date"] == TODAY && today["requests"] == 3 && approx(&today["cost_usd"], 0.03)
    })
    .await;
    let r = get(&t, "/usage?range=7d").await;
    assert!(counted, "today after 3 paid requests: {}", r.text());
    let days = r.data().as_array().unwrap();
    assert_eq!(days.len(), 7);
    assert!(days[6]["bytes_out"].as_u64().unwrap() > 0, "{}", days[6]);
    for d in &days[..6] {
        assert_eq!(d["requests"], 0, "{d}");
        assert!(approx(&d["cost_usd"], 0.0), "{d}");
    }

    // Tomorrow: yesterday's usage moves one place back, the new day is a zero day.
    advance(&t, 86_400);
    let r = get(&t, "/usage?range=7d").await;
    let days = r.data().as_array().unwrap();
    assert_eq!(days.len(), 7);
    assert_eq!(days[0]["date"], "2026-11-18");
    assert_eq!(days[5]["date"], TODAY);
    assert_eq!(days[5]["requests"], 3);
    assert!(approx(&days[5]["cost_usd"], 0.03), "{}", days[5]);
    assert_eq!(days[6]["date"], TOMORROW);
    assert_eq!(days[6]["requests"], 0);

    // 30 days, oldest first, ending today (now the 24th).
    let r = get(&t, "/usage?range=30d").await;
    let days = r.data().as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(days[0]["date"], "2026-10-26");
    assert_eq!(days[29]["date"], TOMORROW);
    assert_eq!(days[28]["requests"], 3);
    let total: u64 = days.iter().map(|d| d["requests"].as_u64().unwrap()).sum();
    assert_eq!(total, 3);
    let mut sorted: Vec<&str> = days.iter().map(|d| d["date"].as_str().unwrap()).collect();
    sorted.dedup();
    assert_eq!(sorted.len(), 30, "one entry per day");
    assert!(sorted.windows(2).all(|w| w[0] < w[1]), "oldest first");
}

#[tokio::test]
async fn usage_range_other_than_7d_or_30d_is_422() {
    let t = gateway("").await;
    for bad in ["1y", "7", "", "30D", "7d%20"] {
        get(&t, &format!("/usage?range={bad}"))
            .await
            .fails(422, "range");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Keys: create, list, get, ownership.

#[tokio::test]
async fn create_returns_the_secret_once_with_the_key_object() {
    let t = gateway(&cost_route("0.01")).await;
    t.top_up(1_000_000).await;
    let body = json!({
        "name": "client-a",
        "label": "Client A",
        "description": "for client a",
        "permissions": ["read", "write"],
        "ip_whitelist": ["127.0.0.1", "10.0.0.0/8"],
        "expiration_date": "2026-12-31",
        "daily_cost_limit_usd": 5,
        "total_cost_limit_usd": 100,
        "concurrency_limit": 5,
        "rate_limit_per_minute": 100
    });
    let r = create(&t, &body.to_string(), None).await;
    let d = r.data().clone();
    let id = d["id"].as_str().expect("id").to_string();
    Uuid::parse_str(&id).expect("id is a UUID");
    let api_key = d["api_key"].as_str().expect("api_key").to_string();
    assert!(
        api_key.starts_with("cr_") && api_key.len() > 20,
        "{api_key}"
    );
    assert_eq!(d["warnings"], json!([]), "limits set: no warning");
    assert_eq!(d["name"], "client-a");
    assert_eq!(d["label"], "Client A");
    assert_eq!(d["description"], "for client a");
    assert_eq!(d["permissions"], json!(["read", "write"]));
    assert_eq!(d["ip_whitelist"], json!(["127.0.0.1", "10.0.0.0/8"]));
    assert_eq!(d["expiration_date"], "2026-12-31");
    assert_eq!(d["disabled"], false);
    assert_eq!(d["revoked"], false);
    assert_eq!(d["created_at"], "2026-11-23T12:00:00Z");
    assert_eq!(d["created_by"], format!("partner:{}", t.partner_id));
    assert_eq!(d["revoked_at"], Value::Null);
    assert_eq!(d["last_used_at"], Value::Null);
    assert!(approx(&d["daily_cost_limit_usd"], 5.0), "{d}");
    assert!(approx(&d["total_cost_limit_usd"], 100.0), "{d}");
    assert_eq!(d["concurrency_limit"], 5);
    assert_eq!(d["rate_limit_per_minute"], 100);

    // The key works on the data plane, and its spend shows in the list.
    assert_eq!(proxied(&t, &api_key).await, (200, "ok".into()));
    assert_eq!(proxied(&t, &api_key).await, (200, "ok".into()));
    let costed = common::eventually(std::time::Duration::from_secs(10), || async {
        let list = keys(&t).await;
        list.len() == 1
            && approx(&list[0]["cost_today_usd"], 0.02)
            && approx(&list[0]["cost_total_usd"], 0.02)
    })
    .await;
    let list = keys(&t).await;
    assert!(costed, "{list:?}");
    let listed = &list[0];
    assert_eq!(listed["id"], id);
    assert!(listed.get("api_key").is_none(), "the secret is shown once");
    for field in [
        "name",
        "label",
        "permissions",
        "ip_whitelist",
        "concurrency_limit",
    ] {
        assert_eq!(listed[field], d[field], "{field}");
    }

    // GET: the same object with its cost, never the secret.
    let r = get(&t, &format!("/keys/{id}")).await;
    let g = r.data();
    assert_eq!(g["id"], id);
    assert_eq!(g["name"], "client-a");
    assert!(approx(&g["cost_today_usd"], 0.02), "{g}");
    assert!(approx(&g["cost_total_usd"], 0.02), "{g}");
    assert!(g.get("api_key").is_none());
    assert!(!r.text().contains(&api_key));
    assert!(!list_text(&t).await.contains(&api_key));

    // Without limits: a generated name, default permissions and a warning. (A second later,
    // so the list order by creation time is defined.)
    advance(&t, 1);
    let r = create(&t, r#"{"description":"bare"}"#, None).await;
    let d = r.data();
    let name = d["name"].as_str().unwrap();
    let id2 = d["id"].as_str().unwrap();
    assert_eq!(name, format!("key-{}", &id2.replace('-', "")[24..]));
    assert_eq!(d["permissions"], json!(["read", "write", "pin", "unpin"]));
    let warnings = d["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{d}");
    assert!(warnings[0].as_str().unwrap().contains("limit"), "{d}");
    assert_eq!(d["expiration_date"], Value::Null);
    assert_eq!(key_count(&t).await, 2);
    // The list is in creation order.
    let list = keys(&t).await;
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[1]["id"], id2);
}

async fn list_text(t: &TestGateway) -> String {
    get(t, "/keys").await.text()
}

#[tokio::test]
async fn another_partners_key_is_404_and_stays_untouched() {
    let t = gateway("").await;
    let (mine, _) = rw_key(&t).await;
    let (_, other_token) = t.gw().manager.create_partner("other").await.unwrap();
    let r = create_as(&t, &other_token, r#"{"description":"theirs"}"#, None).await;
    let theirs = r.data()["id"].as_str().unwrap().to_string();
    let their_key = r.data()["api_key"].as_str().unwrap().to_string();

    let path = format!("/keys/{theirs}");
    get(&t, &path).await.fails(404, "not found");
    patch(&t, &theirs, r#"{"description":"hijacked"}"#)
        .await
        .fails(404, "not found");
    post(&t, &format!("{path}/disable"))
        .await
        .fails(404, "not found");
    post(&t, &format!("{path}/enable"))
        .await
        .fails(404, "not found");
    // Not in my list; untouched for its owner; still usable.
    let list = keys(&t).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], mine);
    let r = get_as(&t, &other_token, &path).await;
    assert_eq!(r.data()["description"], "theirs");
    assert_eq!(r.data()["disabled"], false);
    assert_eq!(proxied(&t, &their_key).await.0, 200);

    // The owner sees its key, and not mine.
    get_as(&t, &other_token, &format!("/keys/{mine}"))
        .await
        .fails(404, "not found");

    // Ids that are not UUIDs, or no key's UUID, are 404 too.
    let random = Uuid::new_v4().to_string();
    for bad in ["not-a-uuid", "123", random.as_str(), "%00"] {
        get(&t, &format!("/keys/{bad}"))
            .await
            .fails(404, "not found");
        patch(&t, bad, r#"{"description":"x"}"#)
            .await
            .fails(404, "not found");
        post(&t, &format!("/keys/{bad}/disable"))
            .await
            .fails(404, "not found");
        post(&t, &format!("/keys/{bad}/enable"))
            .await
            .fails(404, "not found");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Validation.

#[tokio::test]
async fn invalid_creates_are_422_naming_the_field_and_write_nothing() {
    let t = gateway("").await;
    let (_, existing) = t
        .create_key(json!({"name": "taken", "description": "x"}))
        .await;
    assert_eq!(key_count(&t).await, 1);
    let cases: &[(&str, &str)] = &[
        (r#"{"daily_cost_limit_usd":0}"#, "daily_cost_limit_usd"),
        (r#"{"daily_cost_limit_usd":-1}"#, "daily_cost_limit_usd"),
        (r#"{"total_cost_limit_usd":0}"#, "total_cost_limit_usd"),
        (r#"{"total_cost_limit_usd":"x"}"#, "total_cost_limit_usd"),
        (r#"{"daily_cost_limit_usd":1e12}"#, "daily_cost_limit_usd"),
        (r#"{"concurrency_limit":0}"#, "concurrency_limit"),
        (r#"{"concurrency_limit":-3}"#, "concurrency_limit"),
        (r#"{"concurrency_limit":1.5}"#, "concurrency_limit"),
        (r#"{"rate_limit_per_minute":0}"#, "rate_limit_per_minute"),
        (r#"{"expiration_date":"2026-11-23"}"#, "expiration_date"),
        (r#"{"expiration_date":"2026-11-01"}"#, "expiration_date"),
        (r#"{"expiration_date":"2020-01-01"}"#, "expiration_date"),
        (r#"{"expiration_date":"24/11/2026"}"#, "expiration_date"),
        (r#"{"expiration_date":"2026-02-30"}"#, "expiration_date"),
        (r#"{"expiration_date":20261124}"#, "expiration_date"),
        (r#"{"ip_whitelist":["10.0.0.0/8","nope"]}"#, "nope"),
        (r#"{"ip_whitelist":["10.0.0.0/8","nope"]}"#, "ip_whitelist"),
        (r#"{"ip_whitelist":["10.0.0.1/8"]}"#, "ip_whitelist"),
        (r#"{"ip_whitelist":"10.0.0.0/8"}"#, "ip_whitelist"),
        (r#"{"permissions":[]}"#, "permissions"),
        (r#"{"permissions":["root"]}"#, "permissions"),
        (r#"{"colour":"red"}"#, "colour"),
        (r#"{"description":"ok","api_key":"cr_mine"}"#, "api_key"),
        (r#"{"name":"taken"}"#, "name"),
        (r#"{"description":"#, "EOF while parsing"),
        ("not json", "JSON"),
        ("[]", "JSON"),
        ("", "JSON"),
    ];
    for (body, field) in cases {
        let r = create(&t, body, None).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text());
        r.fails(422, field);
        assert_eq!(key_count(&t).await, 1, "nothing half-written after {body}");
        // With an Idempotency-Key as well: refused the same, nothing remembered.
        let r = create(&t, body, Some(&format!("idem-{body}"))).await;
        r.fails(422, field);
        assert_eq!(key_count(&t).await, 1, "nothing half-written after {body}");
    }
    let name_too_long = json!({ "name": "n".repeat(129) }).to_string();
    create(&t, &name_too_long, None).await.fails(422, "name");
    let desc_too_long = json!({ "description": "d".repeat(1025) }).to_string();
    create(&t, &desc_too_long, None)
        .await
        .fails(422, "description");
    assert_eq!(key_count(&t).await, 1);
    // The first key is untouched and still works.
    assert_eq!(proxied(&t, &existing).await.0, 200);

    // Boundaries that are fine: tomorrow, the smallest amount, one request a minute.
    let ok = json!({
        "expiration_date": TOMORROW,
        "daily_cost_limit_usd": 0.000001,
        "concurrency_limit": 1,
        "rate_limit_per_minute": 1,
        "ip_whitelist": []
    });
    let r = create(&t, &ok.to_string(), None).await;
    assert_eq!(r.data()["expiration_date"], TOMORROW);
    assert_eq!(key_count(&t).await, 2);
}

// ---------------------------------------------------------------------------------------------
// 5. PATCH.

#[tokio::test]
async fn patched_ip_whitelist_applies_to_the_next_request() {
    let t = gateway("").await;
    let (id, key) = rw_key(&t).await;
    assert_eq!(proxied(&t, &key).await, (200, "ok".into()));

    let r = patch(&t, &id, r#"{"ip_whitelist":["10.0.0.0/8"]}"#).await;
    assert_eq!(r.data()["ip_whitelist"], json!(["10.0.0.0/8"]));
    assert_eq!(proxied(&t, &key).await, (403, "ip_not_allowed".into()));

    let r = patch(&t, &id, r#"{"ip_whitelist":["10.0.0.0/8","127.0.0.1"]}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(proxied(&t, &key).await, (200, "ok".into()));

    let r = patch(&t, &id, r#"{"ip_whitelist":["10.0.0.0/8"]}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(proxied(&t, &key).await, (403, "ip_not_allowed".into()));

    let r = patch(&t, &id, r#"{"ip_whitelist":[]}"#).await;
    assert_eq!(r.data()["ip_whitelist"], json!([]));
    assert_eq!(proxied(&t, &key).await, (200, "ok".into()));
    let r = get(&t, &format!("/keys/{id}")).await;
    assert_eq!(r.data()["ip_whitelist"], json!([]));
}

#[tokio::test]
async fn patched_rate_limit_applies_to_the_next_request() {
    let t = gateway("").await;
    let (id, key) = rw_key(&t).await;
    for _ in 0..3 {
        assert_eq!(proxied(&t, &key).await.0, 200);
    }
    let r = patch(&t, &id, r#"{"rate_limit_per_minute":1}"#).await;
    assert_eq!(r.data()["rate_limit_per_minute"], 1);
    assert_eq!(proxied(&t, &key).await, (200, "ok".into()));
    assert_eq!(proxied(&t, &key).await, (429, "rate_limited".into()));
    // Raised again: the next request goes through.
    let r = patch(&t, &id, r#"{"rate_limit_per_minute":1000}"#).await;
    assert_eq!(r.data()["rate_limit_per_minute"], 1000);
    assert_eq!(proxied(&t, &key).await, (200, "ok".into()));
}

#[tokio::test]
async fn patched_expiration_null_clears_it_and_absent_keeps_it() {
    let t = gateway("").await;
    let (id, key) = t
        .create_key(json!({"description": "d", "expiration_date": "2026-11-25"}))
        .await;
    let path = format!("/keys/{id}");
    assert_eq!(get(&t, &path).await.data()["expiration_date"], "2026-11-25");

    // Absent: kept.
    let r = patch(&t, &id, r#"{"description":"d2"}"#).await;
    assert_eq!(r.data()["expiration_date"], "2026-11-25");
    // Moved.
    let r = patch(&t, &id, r#"{"expiration_date":"2026-11-24"}"#).await;
    assert_eq!(r.data()["expiration_date"], TOMORROW);
    // Today is refused even on PATCH.
    patch(&t, &id, &format!(r#"{{"expiration_date":"{TODAY}"}}"#))
        .await
        .fails(422, "expiration_date");
    assert_eq!(get(&t, &path).await.data()["expiration_date"], TOMORROW);

    // Expired once the clock passes the date.
    advance(&t, 2 * 86_400);
    assert_eq!(proxied(&t, &key).await, (403, "key_expired".into()));

    // null clears it, and the key works again.
    let r = patch(&t, &id, r#"{"expiration_date":null}"#).await;
    assert_eq!(r.data()["expiration_date"], Value::Null);
    assert_eq!(get(&t, &path).await.data()["expiration_date"], Value::Null);
    assert_eq!(proxied(&t, &key).await, (200, "ok".into()));
}

#[tokio::test]
async fn patch_cannot_rename_and_a_bad_field_changes_nothing() {
    let t = gateway("").await;
    let body = json!({
        "name": "fixed",
        "description": "before",
        "daily_cost_limit_usd": 5,
        "total_cost_limit_usd": 50,
        "concurrency_limit": 2,
        "ip_whitelist": ["127.0.0.1"]
    });
    let (id, key) = t.create_key(body).await;
    let path = format!("/keys/{id}");
    // Everything but `last_used_at`, which the proxied requests below move.
    let state = |mut v: Value| {
        v.as_object_mut().expect("object").remove("last_used_at");
        v
    };
    let before = state(get(&t, &path).await.data().clone());

    patch(&t, &id, r#"{"name":"renamed"}"#)
        .await
        .fails(422, "name");
    patch(&t, &id, r#"{"name":"renamed","description":"after"}"#)
        .await
        .fails(422, "name");
    for (body, field) in [
        (
            r#"{"description":"after","daily_cost_limit_usd":0}"#,
            "daily_cost_limit_usd",
        ),
        (
            r#"{"description":"after","ip_whitelist":["10.0.0.0/8","nope"]}"#,
            "nope",
        ),
        (
            r#"{"ip_whitelist":["10.0.0.0/8"],"concurrency_limit":0}"#,
            "concurrency_limit",
        ),
        (
            r#"{"daily_cost_limit_usd":9,"expiration_date":"24/11/2026"}"#,
            "expiration_date",
        ),
        (
            r#"{"total_cost_limit_usd":9,"rate_limit_per_minute":-1}"#,
            "rate_limit_per_minute",
        ),
        (r#"{"description":"after","colour":"red"}"#, "colour"),
        (r#"{"description":"after","#, "JSON"),
    ] {
        patch(&t, &id, body).await.fails(422, field);
        let now = state(get(&t, &path).await.data().clone());
        assert_eq!(now, before, "changed by a refused PATCH {body}");
        // Still enforced as before: the allow-list still admits this client.
        assert_eq!(proxied(&t, &key).await.0, 200, "{body}");
    }

    // A good PATCH changes only the fields it names.
    let r = patch(&t, &id, r#"{"daily_cost_limit_usd":10}"#).await;
    let after = r.data();
    assert!(approx(&after["daily_cost_limit_usd"], 10.0), "{after}");
    assert!(approx(&after["total_cost_limit_usd"], 50.0), "{after}");
    assert_eq!(after["concurrency_limit"], 2);
    assert_eq!(after["description"], "before");
    assert_eq!(after["name"], "fixed");
    assert_eq!(after["ip_whitelist"], json!(["127.0.0.1"]));
    let got = get(&t, &path).await;
    assert!(approx(&got.data()["daily_cost_limit_usd"], 10.0));
}

// ---------------------------------------------------------------------------------------------
// 6. Enable / disable.

#[tokio::test]
async fn enable_and_disable_apply_to_the_next_request() {
    let t = gateway("").await;
    let (id, key) = rw_key(&t).await;
    let path = format!("/keys/{id}");
    for round in 0..2 {
        assert_eq!(proxied(&t, &key).await, (200, "ok".into()), "round {round}");
        let r = post(&t, &format!("{path}/disable")).await;
        assert_eq!(r.data()["disabled"], true);
        assert_eq!(r.data()["id"], id);
        assert_eq!(proxied(&t, &key).await, (403, "key_disabled".into()));
        assert_eq!(get(&t, &path).await.data()["disabled"], true);
        // Disabling twice is fine and keeps it disabled.
        assert_eq!(post(&t, &format!("{path}/disable")).await.status, 200);
        // A PATCH of another field does not re-enable it.
        let r = patch(&t, &id, r#"{"description":"still off"}"#).await;
        assert_eq!(r.data()["disabled"], true);
        assert_eq!(proxied(&t, &key).await, (403, "key_disabled".into()));
        assert_eq!(keys(&t).await[0]["disabled"], true);

        let r = post(&t, &format!("{path}/enable")).await;
        assert_eq!(r.data()["disabled"], false);
        assert_eq!(proxied(&t, &key).await, (200, "ok".into()));
        assert_eq!(get(&t, &path).await.data()["disabled"], false);
    }
    // Enable on an enabled key is a no-op 200.
    assert_eq!(post(&t, &format!("{path}/enable")).await.status, 200);
    assert_eq!(proxied(&t, &key).await.0, 200);
}

/// Revocation is for good: it records who and when, the proxy refuses the key at once, and
/// enabling or changing the key afterwards is 409 (a second revocation keeps the first's
/// record). A PATCH answers with the key as stored, its live `last_used_at` included.
#[tokio::test]
async fn a_revoked_key_stays_revoked_and_changes_to_it_are_409() {
    let t = gateway("").await;
    let (id, key) = rw_key(&t).await;
    let path = format!("/keys/{id}");
    assert_eq!(proxied(&t, &key).await.0, 200);
    let r = patch(&t, &id, r#"{"description":"used a moment ago"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.data()["last_used_at"].is_string(), "{}", r.text());
    let r = post(&t, &format!("{path}/revoke")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.data()["revoked_at"].is_string(), "{}", r.text());
    let me = format!("partner:{}", t.partner_id);
    assert_eq!(r.data()["revoked_by"], me.as_str());
    assert_eq!(r.data()["revoked_by_name"], "acme", "the partner's name");
    let revoked_at = r.data()["revoked_at"].clone();
    assert_eq!(proxied(&t, &key).await, (403, "key_revoked".into()));
    post(&t, &format!("{path}/enable"))
        .await
        .fails(409, "revoked");
    patch(&t, &id, r#"{"description":"back?"}"#)
        .await
        .fails(409, "revoked");
    // Disabling a revoked key changes nothing that matters and is allowed.
    assert_eq!(post(&t, &format!("{path}/disable")).await.status, 200);
    let again = post(&t, &format!("{path}/revoke")).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.data()["revoked_at"],
        revoked_at,
        "the first revocation stays"
    );
    assert_eq!(
        get(&t, &path).await.data()["description"],
        "used a moment ago"
    );
    assert_eq!(proxied(&t, &key).await, (403, "key_revoked".into()));
}

/// Partoo's key object: who owns the key (`user_*`), the names behind `created_by` and
/// `revoked_by`, who disabled and enabled it and when, and `has_restricted_permissions` with
/// its meaning (false: the creator's permissions).
#[tokio::test]
async fn the_key_object_carries_partoo_fields_and_disable_enable_record_who_and_when() {
    let t = gateway("").await;
    let me = format!("partner:{}", t.partner_id);
    let plain = create(&t, "{}", None).await;
    let d = plain.data();
    assert_eq!(d["has_restricted_permissions"], false, "{d}");
    assert_eq!(d["permissions"], json!(["read", "write", "pin", "unpin"]));
    assert_eq!(d["user_id"], t.partner_id.to_string());
    assert_eq!(d["user_name"], "acme");
    assert_eq!(
        (d["user_role"].as_str(), d["user_type"].as_str()),
        (Some("partner"), Some("partner"))
    );
    assert_eq!(d["created_by_name"], "acme");
    for field in [
        "disabled_at",
        "disabled_by",
        "enabled_at",
        "revoked_by_name",
    ] {
        assert_eq!(d[field], Value::Null, "{field}");
    }
    let id = d["id"].as_str().unwrap().to_string();

    // Restricting needs a list; a list alone restricts; `false` goes back to the creator's set.
    patch(&t, &id, r#"{"has_restricted_permissions":true}"#)
        .await
        .fails(422, "permissions: required");
    patch(
        &t,
        &id,
        r#"{"has_restricted_permissions":false,"permissions":["read"]}"#,
    )
    .await
    .fails(422, "permissions: must be absent");
    let r = patch(
        &t,
        &id,
        r#"{"has_restricted_permissions":true,"permissions":["read"]}"#,
    )
    .await;
    assert_eq!(
        (
            r.data()["has_restricted_permissions"].as_bool(),
            &r.data()["permissions"]
        ),
        (Some(true), &json!(["read"]))
    );
    let r = patch(&t, &id, r#"{"permissions":["read","write"]}"#).await;
    assert_eq!(r.data()["has_restricted_permissions"], true);
    let r = patch(&t, &id, r#"{"has_restricted_permissions":false}"#).await;
    assert_eq!(r.data()["has_restricted_permissions"], false);
    assert_eq!(
        r.data()["permissions"],
        json!(["read", "write", "pin", "unpin"])
    );
    let restricted = create(
        &t,
        r#"{"has_restricted_permissions":true,"permissions":["pin"]}"#,
        None,
    )
    .await;
    assert_eq!(restricted.data()["has_restricted_permissions"], true);

    // Disable, then enable: each records when and by whom, answered and read back alike.
    let path = format!("/keys/{id}");
    let off = post(&t, &format!("{path}/disable")).await;
    let d = off.data().clone();
    assert_eq!(
        (d["disabled"].as_bool(), d["disabled_by"].as_str()),
        (Some(true), Some(me.as_str()))
    );
    assert_eq!(d["disabled_by_name"], "acme");
    assert_eq!(d["disabled_at"], "2026-11-23T12:00:00Z");
    assert_eq!(d["enabled_at"], Value::Null);
    assert_eq!(get(&t, &path).await.data()["disabled_by"], me.as_str());
    let on = post(&t, &format!("{path}/enable")).await;
    let d = on.data().clone();
    assert_eq!(
        (d["disabled"].as_bool(), d["enabled_by"].as_str()),
        (Some(false), Some(me.as_str()))
    );
    assert_eq!(d["enabled_at"], "2026-11-23T12:00:00Z");
    assert_eq!(
        d["disabled_at"],
        Value::Null,
        "the key is no longer disabled"
    );
    let listed = keys(&t).await;
    let entry = listed.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(entry["enabled_by_name"], "acme");
    assert_eq!(entry["user_type"], "partner");
}

// ---------------------------------------------------------------------------------------------
// 7. Idempotency-Key.

const IDEM_BODY: &str = r#"{"description":"client-a","daily_cost_limit_usd":5,"total_cost_limit_usd":100,"concurrency_limit":5}"#;

#[tokio::test]
async fn same_idempotency_key_and_body_replays_the_same_key() {
    let t = gateway("").await;
    let first = create(&t, IDEM_BODY, Some("unique-per-create")).await;
    let api_key = first.data()["api_key"].as_str().unwrap().to_string();
    let id = first.data()["id"].as_str().unwrap().to_string();
    for i in 0..3 {
        let again = create(&t, IDEM_BODY, Some("unique-per-create")).await;
        assert_eq!(again.status, 200, "{}", again.text());
        assert_eq!(again.raw, first.raw, "replay {i} is byte-identical");
        assert_eq!(again.data()["api_key"], api_key.as_str());
        assert_eq!(again.data()["id"], id.as_str());
    }
    let list = keys(&t).await;
    assert_eq!(list.len(), 1, "one key minted");
    assert_eq!(list[0]["id"], id);
    assert_eq!(proxied(&t, &api_key).await.0, 200);

    // The same Idempotency-Key from another partner is that partner's own: a new key, never
    // this partner's secret.
    let (_, other) = t.gw().manager.create_partner("other").await.unwrap();
    let theirs = create_as(&t, &other, IDEM_BODY, Some("unique-per-create")).await;
    assert_ne!(theirs.data()["id"], id.as_str());
    assert_ne!(theirs.data()["api_key"], api_key.as_str());
    assert_eq!(key_count(&t).await, 1);

    // A different Idempotency-Key with the same body is a new creation.
    let another = create(&t, IDEM_BODY, Some("another")).await;
    assert_ne!(another.data()["id"], id.as_str());
    assert_eq!(key_count(&t).await, 2);
}

#[tokio::test]
async fn a_retry_racing_on_another_instance_replays_the_same_key() {
    let schema = Schema::create(&test_url()).await.expect("schema");
    let a = TestGateway::with(Options {
        store_url: Some(schema.url.clone()),
        ..Options::default()
    })
    .await;
    let b = a.beside().await;
    for round in 0..5 {
        let idem = format!("race-{round}");
        let (ra, rb) = tokio::join!(
            create_as(&a, &a.partner_token, IDEM_BODY, Some(&idem)),
            create_as(&b, &b.partner_token, IDEM_BODY, Some(&idem))
        );
        assert_eq!(
            (ra.status, rb.status),
            (200, 200),
            "{} / {}",
            ra.text(),
            rb.text()
        );
        assert_eq!(
            ra.raw, rb.raw,
            "round {round}: one key, replayed on the other instance"
        );
    }
    assert_eq!(key_count(&a).await, 5);
    assert_eq!(key_count(&b).await, 5);
    let (mut a, mut b) = (a, b);
    a.shutdown().await;
    b.shutdown().await;
    schema.drop().await.unwrap();
}

#[tokio::test]
async fn same_idempotency_key_with_another_body_is_422() {
    let t = gateway("").await;
    let first = create(&t, IDEM_BODY, Some("k1")).await;
    let id = first.data()["id"].as_str().unwrap().to_string();
    let other_body = IDEM_BODY.replace("client-a", "client-b");
    let r = create(&t, &other_body, Some("k1")).await;
    r.fails(422, "Idempotency-Key");
    assert!(!r.text().contains("cr_"), "no secret in the refusal");
    // The same JSON with other spacing and key order is the same body: replayed.
    let respaced = r#"{ "concurrency_limit": 5, "total_cost_limit_usd": 100,
        "daily_cost_limit_usd": 5, "description": "client-a" }"#;
    let replayed = create(&t, respaced, Some("k1")).await;
    assert_eq!(replayed.status, 200, "{}", replayed.text());
    assert_eq!(replayed.raw, first.raw);
    let list = keys(&t).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["description"], "client-a");
    // The original is still replayable.
    let again = create(&t, IDEM_BODY, Some("k1")).await;
    assert_eq!(again.raw, first.raw);
    assert_eq!(again.data()["id"], id.as_str());
    // An empty Idempotency-Key is refused, not ignored.
    create(&t, IDEM_BODY, Some("   "))
        .await
        .fails(422, "Idempotency-Key");
    assert_eq!(key_count(&t).await, 1);
}

#[tokio::test]
async fn without_idempotency_key_each_call_mints_a_key() {
    let t = gateway("").await;
    let a = create(&t, IDEM_BODY, None).await;
    let b = create(&t, IDEM_BODY, None).await;
    assert_ne!(a.data()["id"], b.data()["id"]);
    assert_ne!(a.data()["api_key"], b.data()["api_key"]);
    assert_eq!(key_count(&t).await, 2);
    for r in [&a, &b] {
        let key = r.data()["api_key"].as_str().unwrap();
        assert_eq!(proxied(&t, key).await.0, 200);
    }
}

#[tokio::test]
async fn replayable_response_is_sealed_at_rest() {
    let t = gateway("").await;
    let r = create(&t, IDEM_BODY, Some("sealed")).await;
    let api_key = r.data()["api_key"].as_str().unwrap().to_string();
    let pool = db(&t).await;
    let rows: Vec<(String, String, Vec<u8>)> =
        sqlx::query_as("SELECT partner_id, idem_key, response FROM idempotency")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "one remembered response");
    let (partner, idem, blob) = &rows[0];
    assert_eq!(partner, &t.partner_id.to_string());
    assert_eq!(idem, "sealed");
    assert!(blob.len() > 12 + api_key.len(), "nonce + ciphertext");
    let contains = |needle: &[u8]| blob.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(api_key.as_bytes()), "api_key stored in the clear");
    let secret_part = api_key.trim_start_matches("cr_");
    assert!(
        !contains(&secret_part.as_bytes()[..16]),
        "secret in the clear"
    );
    assert!(!contains(b"api_key"), "response stored in the clear");
    assert!(!contains(b"\"ok\""), "response stored in the clear");
    // Nor anywhere else in the database file.
    pool.close().await;
    let mut file = std::fs::read(t.dir.path().join("t.db")).unwrap();
    if let Ok(wal) = std::fs::read(t.dir.path().join("t.db-wal")) {
        file.extend(wal);
    }
    assert!(
        !file.windows(api_key.len()).any(|w| w == api_key.as_bytes()),
        "api_key found in the database files"
    );
    // And it still replays.
    let again = create(&t, IDEM_BODY, Some("sealed")).await;
    assert_eq!(again.raw, r.raw);
}

#[tokio::test]
async fn idempotency_key_expires_after_24_hours() {
    let t = gateway("").await;
    let first = create(&t, IDEM_BODY, Some("daily")).await;
    let id = first.data()["id"].as_str().unwrap().to_string();

    advance(&t, 23 * 3_600);
    let r = create(&t, IDEM_BODY, Some("daily")).await;
    assert_eq!(r.raw, first.raw, "still replayed after 23 hours");
    assert_eq!(key_count(&t).await, 1);

    advance(&t, 2 * 3_600); // 25 hours after the first call
    let fresh = create(&t, IDEM_BODY, Some("daily")).await;
    assert_ne!(fresh.data()["id"], id.as_str(), "a new key after 25 hours");
    assert_ne!(fresh.data()["api_key"], first.data()["api_key"]);
    assert_eq!(key_count(&t).await, 2);
    // ... which is now the one replayed.
    let again = create(&t, IDEM_BODY, Some("daily")).await;
    assert_eq!(again.raw, fresh.raw);
    assert_eq!(key_count(&t).await, 2);
}

// ---------------------------------------------------------------------------------------------
// 8. Management rate limits.

const LIMITS: &str =
    "[management]\ncalls_per_minute = 3\ncalls_per_day = 1000\nkey_creations_per_hour = 2\n";

#[tokio::test]
async fn fourth_call_in_a_minute_is_429_with_exact_retry_after() {
    let t = gateway(LIMITS).await;
    advance(&t, 10); // 12:00:10: the minute window ends in 50 s
    for i in 0..3 {
        assert_eq!(get(&t, "/balance").await.status, 200, "call {i}");
    }
    let r = get(&t, "/usage").await;
    r.fails(429, "rate limit");
    assert_eq!(r.retry_after, Some(50), "{r:?}");
    advance(&t, 49);
    let r = get(&t, "/balance").await;
    r.fails(429, "rate limit");
    assert_eq!(r.retry_after, Some(1));
    // Another partner has its own budget.
    let (_, other) = t.gw().manager.create_partner("other").await.unwrap();
    assert_eq!(get_as(&t, &other, "/balance").await.status, 200);
    // A wrong token is 401, not 429, and does not spend the budget.
    get_as(&t, "rsk_wrong", "/balance")
        .await
        .fails(401, "token");

    advance(&t, 1); // 12:01:00: a new window
    for i in 0..3 {
        assert_eq!(
            get(&t, "/keys").await.status,
            200,
            "call {i} of the new minute"
        );
    }
    assert_eq!(get(&t, "/balance").await.retry_after, Some(60));
}

/// Whoever holds a leaked token cannot stop its rotation by spending the token's budget: `/me`
/// and `token/rotate` are never refused for it, and the new token has a budget of its own.
#[tokio::test]
async fn a_spent_budget_never_blocks_reading_me_or_rotating_the_token() {
    let t = gateway(LIMITS).await;
    for _ in 0..3 {
        assert_eq!(get(&t, "/balance").await.status, 200);
    }
    get(&t, "/balance").await.fails(429, "rate limit");
    for _ in 0..5 {
        assert_eq!(get(&t, "/me").await.status, 200, "/me is not counted");
    }
    let rotated = post(&t, "/token/rotate").await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let token = rotated.json["data"]["token"].as_str().unwrap().to_string();
    for i in 0..3 {
        let r = get_as(&t, &token, "/balance").await;
        assert_eq!(r.status, 200, "call {i} with the new token: {}", r.text());
    }
    get_as(&t, &token, "/balance")
        .await
        .fails(429, "rate limit");
    // The old token is refused as a wrong one, and counted as a failed authentication.
    get(&t, "/me").await.fails(401, "token");
    let text = metrics_text(&t).await;
    let failures = r#"tollgate_management_auth_failures_total{surface="partner"}"#;
    assert_eq!(metric_value(&text, failures), Some(1.0), "{text}");
    let operator = r#"tollgate_management_auth_failures_total{surface="operator"}"#;
    assert_eq!(
        metric_value(&text, operator),
        Some(0.0),
        "present before the first"
    );
}

#[tokio::test]
async fn daily_call_limit_is_429_until_midnight() {
    let t = gateway(
        "[management]\ncalls_per_minute = 100\ncalls_per_day = 4\nkey_creations_per_hour = 2\n",
    )
    .await;
    for i in 0..4 {
        assert_eq!(get(&t, "/balance").await.status, 200, "call {i}");
    }
    let r = get(&t, "/balance").await;
    r.fails(429, "rate limit");
    assert_eq!(r.retry_after, Some(43_200), "until 00:00 UTC");
    advance(&t, 43_200);
    assert_eq!(get(&t, "/balance").await.status, 200);
}

#[tokio::test]
async fn third_key_creation_in_an_hour_is_429_with_retry_after() {
    let t = gateway(LIMITS).await;
    assert_eq!(create(&t, r#"{"description":"1"}"#, None).await.status, 200);
    assert_eq!(create(&t, r#"{"description":"2"}"#, None).await.status, 200);
    advance(&t, 60); // a fresh minute, so only the creation budget is spent
    let r = create(&t, r#"{"description":"3"}"#, None).await;
    r.fails(429, "rate limit");
    assert_eq!(r.retry_after, Some(3_540), "until 13:00:00");
    // With an Idempotency-Key it is refused too.
    let r = create(&t, r#"{"description":"3"}"#, Some("fresh")).await;
    r.fails(429, "rate limit");
    assert_eq!(r.retry_after, Some(3_540));
    // Other calls still work.
    assert_eq!(key_count(&t).await, 2);

    advance(&t, 3_540); // 13:00:00
    assert_eq!(create(&t, r#"{"description":"3"}"#, None).await.status, 200);
    assert_eq!(key_count(&t).await, 3);
}

#[tokio::test]
async fn idempotent_replay_does_not_count_as_a_creation() {
    let t = gateway(LIMITS).await;
    let first = create(&t, IDEM_BODY, Some("once")).await;
    assert_eq!(first.status, 200, "{}", first.text());
    for _ in 0..2 {
        let again = create(&t, IDEM_BODY, Some("once")).await;
        assert_eq!(again.raw, first.raw);
    }
    advance(&t, 60);
    // The second creation of the hour is allowed: the replays were free.
    let second = create(&t, r#"{"description":"second"}"#, None).await;
    assert_eq!(second.status, 200, "{}", second.text());
    let third = create(&t, r#"{"description":"third"}"#, None).await;
    third.fails(429, "rate limit");
    assert_eq!(third.retry_after, Some(3_540));
    // A replay still works with the creation budget spent.
    let again = create(&t, IDEM_BODY, Some("once")).await;
    assert_eq!(again.raw, first.raw);
    advance(&t, 60);
    assert_eq!(key_count(&t).await, 2);
}

#[test]
fn fake_clock_start_is_the_documented_instant() {
    // The exact Retry-After values above assume T0 is a whole hour (12:00:00 UTC).
    assert_eq!(T0 % 3_600, 0);
    assert_eq!(T0 % 86_400, 43_200);
}

/// `GET /keys` pages with `limit` and the opaque `next_cursor`: keys created while a client
/// pages never make it see a key twice or miss one that existed; malformed paging is 422.
#[tokio::test]
async fn key_lists_page_with_a_cursor_stable_under_inserts() {
    let t = gateway("").await;
    let mut created = Vec::new();
    for i in 0..5 {
        let r = create(&t, &format!(r#"{{"description":"k{i}"}}"#), None).await;
        created.push(r.data()["id"].as_str().unwrap().to_string());
        advance(&t, 1);
    }
    let all = get(&t, "/keys").await;
    assert_eq!(all.json["next_cursor"], Value::Null, "one page by default");
    assert_eq!(all.data().as_array().unwrap().len(), 5);
    let mut seen = Vec::new();
    let mut path = "/keys?limit=2".to_string();
    loop {
        let page = get(&t, &path).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let items = page.data().as_array().unwrap().clone();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|k| k["id"].as_str().unwrap().to_string()));
        // A key created mid-way comes after every existing one.
        if seen.len() == 2 {
            let r = create(&t, r#"{"description":"late"}"#, None).await;
            created.push(r.data()["id"].as_str().unwrap().to_string());
        }
        match page.json["next_cursor"].as_str() {
            Some(cursor) => path = format!("/keys?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, created, "every key once, oldest first");
    get(&t, "/keys?limit=0").await.fails(422, "limit");
    get(&t, "/keys?limit=1001").await.fails(422, "limit");
    get(&t, "/keys?cursor=garbage").await.fails(422, "cursor");
}
