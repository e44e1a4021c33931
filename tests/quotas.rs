//! Quotas end to end: cost limits, partner balance, plan byte limits, rate and concurrency
//! limits, driven over HTTP against a real gateway in front of the real echo upstream. The
//! fake clock starts at 2026-11-23 12:00 UTC, so every `Retry-After` is known exactly.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Options, TestGateway, cost_route, metric_value, metrics_text};
use futures_util::StreamExt;
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tollgate::meter::Meter;
use tollgate::meter::cell::Slot;
use uuid::Uuid;

/// One US cent in micro-USD.
const CENT: u64 = 10_000;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// Seconds from the fake clock's start to the next UTC midnight (the daily window's reset).
const TO_MIDNIGHT: u64 = 43_200;
/// Seconds from the fake clock's start to 2026-12-01 00:00 UTC (the billing period's reset).
const TO_MONTH_END: u64 = 648_000;
/// How long state may take to settle after the responses are in.
const DEADLINE: Duration = Duration::from_secs(10);
const TODAY: &str = "2026-11-23";
const MONTH: &str = "2026-11";

/// A gateway on the fake clock with `extra` TOML.
async fn gateway(extra: String) -> TestGateway {
    TestGateway::with(Options {
        extra,
        fake_clock: true,
        ..Options::default()
    })
    .await
}

/// A gateway whose every request costs `usd`, its partner's balance topped up with `micros`.
async fn priced(usd: &str, micros: i64) -> TestGateway {
    let t = gateway(cost_route(usd)).await;
    t.top_up(micros).await;
    t
}

/// A read/write key with the given limit fields; returns (id, secret).
async fn key_with(t: &TestGateway, limits: Value) -> (Uuid, String) {
    let mut body = json!({"description": "quota test", "permissions": ["read", "write"]});
    let fields = body.as_object_mut().expect("object");
    for (name, value) in limits.as_object().expect("limits object") {
        fields.insert(name.clone(), value.clone());
    }
    let (id, key) = t.create_key(body).await;
    (id.parse().expect("uuid"), key)
}

/// A client allowed to keep many connections open at once.
fn wide_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1000)
        .build()
        .expect("client")
}

/// What came back: status, denial code (`ok` for a 200), message and `Retry-After`.
#[derive(Debug)]
struct Outcome {
    status: u16,
    code: String,
    message: String,
    retry_after: Option<u64>,
}

async fn outcome(resp: reqwest::Response) -> Outcome {
    let status = resp.status().as_u16();
    assert!(resp.headers().contains_key("x-request-id"));
    let retry_after = resp.headers().get("retry-after").map(|v| {
        v.to_str()
            .expect("ascii")
            .parse()
            .expect("Retry-After in seconds")
    });
    let body = resp.bytes().await.expect("body");
    if status == 200 {
        return Outcome {
            status,
            code: "ok".into(),
            message: String::new(),
            retry_after,
        };
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or_default();
    Outcome {
        status,
        code: json["error"]["code"]
            .as_str()
            .unwrap_or("not_a_denial")
            .to_string(),
        message: json["error"]["message"].as_str().unwrap_or("").to_string(),
        retry_after,
    }
}

/// `GET {proxy}{path}` with `key`.
async fn get(t: &TestGateway, key: &str, path: &str) -> Outcome {
    let resp = t
        .client
        .get(format!("{}{path}", t.proxy))
        .bearer_auth(key)
        .send()
        .await
        .expect("request");
    outcome(resp).await
}

/// `POST {proxy}{path}` with `key` and a body of `len` bytes (Content-Length declared).
async fn post(t: &TestGateway, key: &str, path: &str, len: u64) -> Outcome {
    let resp = t
        .client
        .post(format!("{}{path}", t.proxy))
        .bearer_auth(key)
        .body(vec![b'u'; len as usize])
        .send()
        .await
        .expect("request");
    outcome(resp).await
}

/// Fires `n` requests at once (each its own task) and returns their outcomes.
async fn storm(n: usize, request: impl Fn(usize) -> reqwest::RequestBuilder) -> Vec<Outcome> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let req = request(i);
            tokio::spawn(async move { outcome(req.send().await.expect("request")).await })
        })
        .collect();
    join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("request task"))
        .collect()
}

/// How many outcomes have this status and code.
fn count(outcomes: &[Outcome], status: u16, code: &str) -> usize {
    outcomes
        .iter()
        .filter(|o| o.status == status && o.code == code)
        .count()
}

fn now(t: &TestGateway) -> i64 {
    t.gw().manager.clock.now_unix()
}

/// The live slot of a key's daily cost.
fn key_cost_day(t: &TestGateway, id: Uuid) -> Arc<Slot> {
    t.gw().manager.meter.key_usage(id, now(t)).cost_day().peek()
}

/// The live slot of a key's lifetime cost.
fn key_cost_total(t: &TestGateway, id: Uuid) -> Arc<Slot> {
    t.gw()
        .manager
        .meter
        .key_usage(id, now(t))
        .cost_total()
        .peek()
}

/// The live (bytes in, bytes out) slots of the partner's default account.
async fn account_bytes(t: &TestGateway) -> (Arc<Slot>, Arc<Slot>) {
    let m = &t.gw().manager;
    let account = m.default_account(t.partner_id).await.expect("account");
    let live = m.meter.account(account.id).expect("account registered");
    (live.usage.bytes_in().peek(), live.usage.bytes_out().peek())
}

/// Polls `cond` until it holds or the deadline passes.
async fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    common::eventually(DEADLINE, || {
        let ok = cond();
        async move { ok }
    })
    .await
}

/// Waits until a slot's reservations are all settled and its usage is `used`.
async fn settles_to(slot: &Slot, used: u64) {
    let settled = wait_for(|| slot.used() == used && slot.committed() == used).await;
    assert!(
        settled,
        "slot {}: used {} committed {}, expected both {used}",
        slot.label,
        slot.used(),
        slot.committed()
    );
}

/// Flushes the meter, then the stored total of one counter.
async fn stored(t: &TestGateway, scope: &str, id: Uuid, metric: &str, window: &str) -> u64 {
    t.gw().sync_once().await;
    let rows = t
        .gw()
        .manager
        .store
        .load_counters(&Meter::windows(now(t)))
        .await
        .expect("counters");
    rows.iter()
        .filter(|r| {
            r.scope == scope && r.scope_id == id && r.metric == metric && r.window == window
        })
        .map(|r| r.value)
        .sum()
}

/// The partner's balance as stored (after a flush).
async fn stored_balance(t: &TestGateway) -> i64 {
    t.gw().sync_once().await;
    t.gw()
        .manager
        .store
        .get_partner(t.partner_id)
        .await
        .expect("store")
        .expect("partner")
        .balance_micros
}

fn in_flight(t: &TestGateway, id: Uuid) -> u32 {
    t.gw()
        .manager
        .index
        .get(id)
        .expect("key indexed")
        .live
        .in_flight
        .current()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------
// 1. Cost limits, sequential: exactly the requests that fit.

#[tokio::test]
async fn daily_cost_limit_admits_exactly_what_fits() {
    let t = priced("0.01", 1_000_000).await;
    let (id, key) = key_with(&t, json!({"daily_cost_limit_usd": 0.05})).await;
    for i in 0..5 {
        let o = get(&t, &key, "/x").await;
        assert_eq!(o.status, 200, "request {i}: {o:?}");
    }
    let o = get(&t, &key, "/x").await;
    assert_eq!(
        (o.status, o.code.as_str()),
        (429, "quota_exceeded"),
        "{o:?}"
    );
    assert!(o.message.contains("daily_cost_limit_usd"), "{o:?}");
    let retry = o.retry_after.expect("Retry-After until the day resets");
    assert!(retry > 0 && retry <= 86_400, "{retry}");
    assert_eq!(retry, TO_MIDNIGHT, "the fake clock is at 12:00 UTC");
    // Refused requests take nothing: the budget is exactly used up, and stays refused.
    assert_eq!(get(&t, &key, "/x").await.code, "quota_exceeded");
    settles_to(&key_cost_day(&t, id), 5 * CENT).await;
    assert_eq!(stored(&t, "key", id, "cost_micros", TODAY).await, 5 * CENT);

    // The next UTC day is a new window.
    t.clock.as_ref().unwrap().advance(TO_MIDNIGHT as i64);
    assert_eq!(get(&t, &key, "/x").await.status, 200);
}

#[tokio::test]
async fn total_cost_limit_admits_exactly_what_fits_and_never_resets() {
    let t = priced("0.01", 1_000_000).await;
    let (id, key) = key_with(&t, json!({"total_cost_limit_usd": 0.05})).await;
    for i in 0..5 {
        let o = get(&t, &key, "/x").await;
        assert_eq!(o.status, 200, "request {i}: {o:?}");
    }
    let o = get(&t, &key, "/x").await;
    assert_eq!(
        (o.status, o.code.as_str()),
        (429, "quota_exceeded"),
        "{o:?}"
    );
    assert!(o.message.contains("total_cost_limit_usd"), "{o:?}");
    assert_eq!(o.retry_after, None, "a lifetime limit never resets");
    settles_to(&key_cost_total(&t, id), 5 * CENT).await;
    assert_eq!(
        stored(&t, "key", id, "cost_micros", "lifetime").await,
        5 * CENT
    );
    // A new day does not help.
    t.clock.as_ref().unwrap().advance(TO_MIDNIGHT as i64);
    assert_eq!(get(&t, &key, "/x").await.code, "quota_exceeded");
}

// ---------------------------------------------------------------------------------------------
// 2. Cost limits, concurrent: no more than the budget, however the requests race.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_pass_the_daily_cost_limit() {
    const N: usize = 600;
    let t = priced("0.01", 100_000_000).await;
    let (id, key) = key_with(&t, json!({"daily_cost_limit_usd": 1.0})).await;
    let client = wide_client();
    let url = format!("{}/x", t.proxy);
    let outcomes = storm(N, |_| client.get(&url).bearer_auth(&key)).await;
    assert_eq!(count(&outcomes, 200, "ok"), 100, "{:?}", &outcomes[..5]);
    assert_eq!(count(&outcomes, 429, "quota_exceeded"), N - 100);
    assert!(
        outcomes
            .iter()
            .filter(|o| o.status == 429)
            .all(|o| o.message.contains("daily_cost_limit_usd") && o.retry_after.is_some())
    );

    // A fixed price is reserved in full, so usage lands exactly on the limit: no overshoot.
    let day = key_cost_day(&t, id);
    assert!(day.committed() <= 100 * CENT, "{}", day.committed());
    settles_to(&day, 100 * CENT).await;
    settles_to(&key_cost_total(&t, id), 100 * CENT).await;
    assert_eq!(
        stored(&t, "key", id, "cost_micros", TODAY).await,
        100 * CENT
    );
    assert_eq!(
        stored(&t, "key", id, "cost_micros", "lifetime").await,
        100 * CENT
    );
    assert_eq!(
        stored(&t, "partner", t.partner_id, "cost_micros", TODAY).await,
        100 * CENT
    );
    assert_eq!(stored_balance(&t).await, 100_000_000 - (100 * CENT) as i64);
    assert_eq!(get(&t, &key, "/x").await.code, "quota_exceeded");
}

// ---------------------------------------------------------------------------------------------
// 3. Partner prepaid balance.

#[tokio::test]
async fn partner_balance_admits_what_it_covers_and_a_top_up_reopens() {
    let t = priced("0.01", 25_000).await;
    let (_, key) = key_with(&t, json!({})).await;
    assert_eq!(get(&t, &key, "/x").await.status, 200);
    assert_eq!(get(&t, &key, "/x").await.status, 200);
    let o = get(&t, &key, "/x").await;
    assert_eq!(
        (o.status, o.code.as_str()),
        (402, "insufficient_balance"),
        "{o:?}"
    );
    let partner = t.gw().manager.meter.partner(t.partner_id).unwrap();
    assert_eq!(partner.balance(), 5_000);

    t.top_up(10_000).await;
    assert_eq!(get(&t, &key, "/x").await.status, 200);
    assert_eq!(get(&t, &key, "/x").await.code, "insufficient_balance");
    assert!(wait_for(|| partner.spent.committed() == partner.spent.used()).await);
    assert_eq!(partner.balance(), 5_000);
    assert_eq!(stored_balance(&t).await, 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_overdraw_the_balance() {
    const N: usize = 500;
    let t = priced("0.01", 50 * CENT as i64).await;
    let (_, key) = key_with(&t, json!({})).await;
    let client = wide_client();
    let url = format!("{}/x", t.proxy);
    let outcomes = storm(N, |_| client.get(&url).bearer_auth(&key)).await;
    assert_eq!(count(&outcomes, 200, "ok"), 50);
    assert_eq!(count(&outcomes, 402, "insufficient_balance"), N - 50);
    let partner = t.gw().manager.meter.partner(t.partner_id).unwrap();
    assert!(wait_for(|| partner.spent.committed() == partner.spent.used()).await);
    assert_eq!(partner.spent.used(), 50 * CENT);
    assert_eq!(partner.balance(), 0);
    assert_eq!(stored_balance(&t).await, 0);
}

// ---------------------------------------------------------------------------------------------
// 4. Plan byte limits per billing period, at account level.

fn plan(limits: &str) -> Options {
    Options {
        top: "default_plan = 1\n".into(),
        extra: format!("[[plans]]\nid = 1\nname = \"Small\"\n{limits}\n"),
        fake_clock: true,
        ..Options::default()
    }
}

#[tokio::test]
async fn plan_ingress_limit_admits_exactly_the_declared_bodies_that_fit() {
    let t = TestGateway::with(plan("ingress_limit = \"10KiB\"")).await;
    let (_, key) = key_with(&t, json!({})).await;
    for i in 0..10 {
        let o = post(&t, &key, "/up", KIB).await;
        assert_eq!(o.status, 200, "upload {i}: {o:?}");
    }
    let o = post(&t, &key, "/up", KIB).await;
    assert_eq!(
        (o.status, o.code.as_str()),
        (429, "quota_exceeded"),
        "{o:?}"
    );
    assert!(o.message.contains("ingress_limit"), "{o:?}");
    assert_eq!(
        o.retry_after,
        Some(TO_MONTH_END),
        "until the billing period ends"
    );
    // Nothing is left, not even for a body of unknown size.
    let o = get(&t, &key, "/x").await;
    assert_eq!(o.code, "quota_exceeded");
    let (bytes_in, _) = account_bytes(&t).await;
    settles_to(&bytes_in, 10 * KIB).await;
    let account = t.gw().manager.default_account(t.partner_id).await.unwrap();
    assert_eq!(
        stored(&t, "account", account.id, "bytes_in", MONTH).await,
        10 * KIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_never_pass_the_ingress_limit() {
    const N: usize = 500;
    let t = TestGateway::with(plan("ingress_limit = \"100KiB\"")).await;
    let (_, key) = key_with(&t, json!({})).await;
    let client = wide_client();
    let url = format!("{}/up", t.proxy);
    let outcomes = storm(N, |_| {
        client
            .post(&url)
            .bearer_auth(&key)
            .body(vec![b'u'; KIB as usize])
    })
    .await;
    assert_eq!(count(&outcomes, 200, "ok"), 100);
    assert_eq!(count(&outcomes, 429, "quota_exceeded"), N - 100);
    let (bytes_in, _) = account_bytes(&t).await;
    settles_to(&bytes_in, 100 * KIB).await;
}

#[tokio::test]
async fn plan_egress_limit_refuses_once_usage_reaches_it() {
    let t = TestGateway::with(plan("egress_limit = \"100KiB\"")).await;
    let (_, key) = key_with(&t, json!({})).await;
    let path = "/down?echo_bytes=61440";
    for i in 0..2 {
        let resp = t
            .client
            .get(format!("{}{path}", t.proxy))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "download {i}");
        assert_eq!(resp.bytes().await.unwrap().len(), 61_440);
    }
    let o = get(&t, &key, path).await;
    assert_eq!(
        (o.status, o.code.as_str()),
        (429, "quota_exceeded"),
        "{o:?}"
    );
    assert!(o.message.contains("egress_limit"), "{o:?}");
    assert_eq!(o.retry_after, Some(TO_MONTH_END));
    // The overshoot is the second response, admitted while usage was still under the limit.
    let (_, bytes_out) = account_bytes(&t).await;
    settles_to(&bytes_out, 2 * 61_440).await;
    assert!(bytes_out.used() < 100 * KIB + 61_440);
}

// ---------------------------------------------------------------------------------------------
// 5. Rate limit.

#[tokio::test]
async fn rate_limit_per_minute() {
    let t = gateway(String::new()).await;
    let (_, key) = key_with(&t, json!({"rate_limit_per_minute": 3})).await;
    for i in 0..3 {
        assert_eq!(get(&t, &key, "/x").await.status, 200, "request {i}");
    }
    let o = get(&t, &key, "/x").await;
    assert_eq!((o.status, o.code.as_str()), (429, "rate_limited"), "{o:?}");
    let retry = o.retry_after.expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    // Another key is not affected.
    let (_, other) = key_with(&t, json!({"rate_limit_per_minute": 3})).await;
    assert_eq!(get(&t, &other, "/x").await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// 6. Concurrency limit.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_refuses_the_third_request_in_flight() {
    let t = gateway(String::new()).await;
    let (id, key) = key_with(&t, json!({"concurrency_limit": 2})).await;
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let req = t
                .client
                .get(format!("{}/slow?echo_delay_ms=800", t.proxy))
                .bearer_auth(&key);
            tokio::spawn(async move { req.send().await.unwrap().status() })
        })
        .collect();
    assert!(wait_for(|| in_flight(&t, id) == 2).await, "both in flight");
    let o = get(&t, &key, "/x").await;
    assert_eq!(
        (o.status, o.code.as_str()),
        (429, "concurrency_limit"),
        "{o:?}"
    );
    for s in join_all(slow).await {
        assert_eq!(s.unwrap(), 200);
    }
    assert!(wait_for(|| in_flight(&t, id) == 0).await);
    assert_eq!(get(&t, &key, "/x").await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// 7. Slots and reservations come back on every path.

/// A request body that sends `chunks` chunks of 16 KiB and then fails.
fn failing_body(chunks: usize) -> reqwest::Body {
    let ok = (0..chunks).map(|_| Ok(vec![b'c'; 16 * 1024]));
    let failed = std::iter::once(Err(std::io::Error::other("client gave up")));
    reqwest::Body::wrap_stream(futures_util::stream::iter(ok.chain(failed)))
}

/// A request body that sends one chunk and then never ends.
fn endless_body() -> reqwest::Body {
    let first = futures_util::stream::iter([Ok::<_, std::io::Error>(vec![b'p'; 16 * 1024])]);
    reqwest::Body::wrap_stream(first.chain(futures_util::stream::pending()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_and_reservations_come_back_on_every_path() {
    let priced_with = |upstream_extra: &str, upstream_url: Option<String>| Options {
        extra: cost_route("0.001"),
        upstream_extra: upstream_extra.into(),
        upstream_url,
        fake_clock: true,
        ..Options::default()
    };
    // Main gateway (default timeouts), one whose upstream is too slow, one whose upstream is down.
    let t = TestGateway::with(priced_with("", None)).await;
    let slow = TestGateway::with(priced_with("response_timeout = \"200ms\"", None)).await;
    let down_url = format!("http://127.0.0.1:{}", closed_port());
    let down = TestGateway::with(priced_with("", Some(down_url))).await;
    let limits = json!({"concurrency_limit": 1000});
    let mut keys = Vec::new();
    for g in [&t, &slow, &down] {
        g.top_up(1_000_000_000).await;
        keys.push(key_with(g, limits.clone()).await);
    }
    let [(id, key), (slow_id, slow_key), (down_id, down_key)] = &keys[..] else {
        unreachable!()
    };
    let client = wide_client();
    let requests_of = |id: Uuid| {
        t.gw()
            .manager
            .meter
            .key_usage(id, now(&t))
            .requests()
            .peek()
    };

    // Held first: uploads that stop midway (declared length and chunked) and slow calls, each
    // admitted before its client goes away.
    const HELD: usize = 30;
    let head = |len: u64| {
        format!(
            "POST /raw HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
             content-length: {len}\r\n\r\n"
        )
    };
    let mut raw = Vec::new();
    for _ in 0..HELD {
        let mut conn = tokio::net::TcpStream::connect(t.gw().proxy_addr)
            .await
            .unwrap();
        conn.write_all(head(MIB).as_bytes()).await.unwrap();
        conn.write_all(&[b'r'; 8 * 1024]).await.unwrap();
        raw.push(conn);
    }
    let mut held = Vec::new();
    for i in 0..2 * HELD {
        let req = if i % 2 == 0 {
            client
                .post(format!("{}/endless", t.proxy))
                .bearer_auth(key)
                .body(endless_body())
        } else {
            client
                .get(format!("{}/wait?echo_delay_ms=1500", t.proxy))
                .bearer_auth(key)
        };
        held.push(tokio::spawn(
            async move { req.send().await.map(|r| r.status()) },
        ));
    }
    let admitted = wait_for(|| {
        requests_of(*id).used() == 3 * HELD as u64 && in_flight(&t, *id) == 3 * HELD as u32
    })
    .await;
    assert!(
        admitted,
        "held requests admitted: {}",
        requests_of(*id).used()
    );
    let (acct_in, _) = account_bytes(&t).await;
    assert!(
        acct_in.committed() >= HELD as u64 * MIB,
        "declared bodies reserved"
    );

    // Then the storm, while the held clients go away.
    let mut storm = Vec::new();
    let spawn = |req: reqwest::RequestBuilder, kind: &'static str| {
        tokio::spawn(async move {
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if kind == "abandon" {
                        // Read one chunk of the 50 MB download, then hang up.
                        let mut body = resp.bytes_stream();
                        let first = body.next().await;
                        assert!(matches!(first, Some(Ok(_))), "{first:?}");
                    } else {
                        let _ = resp.bytes().await;
                    }
                    (kind, status.to_string())
                }
                Err(_) => (kind, "client error".to_string()),
            }
        })
    };
    for i in 0..100 {
        let path = if i % 5 == 0 {
            "/e?echo_status=500"
        } else {
            "/ok"
        };
        let req = client.get(format!("{}{path}", t.proxy)).bearer_auth(key);
        storm.push(spawn(req, "normal"));
    }
    for _ in 0..50 {
        let req = client
            .get(format!("{}/big?echo_bytes=50000000", t.proxy))
            .bearer_auth(key);
        storm.push(spawn(req, "abandon"));
    }
    for i in 0..50 {
        let req = client
            .post(format!("{}/up", t.proxy))
            .bearer_auth(key)
            .body(failing_body(1 + i % 4));
        storm.push(spawn(req, "upload fails"));
    }
    for _ in 0..50 {
        let req = client
            .get(format!("{}/t?echo_delay_ms=2000", slow.proxy))
            .bearer_auth(slow_key);
        storm.push(spawn(req, "timeout"));
    }
    for _ in 0..50 {
        let req = client
            .get(format!("{}/d", down.proxy))
            .bearer_auth(down_key);
        storm.push(spawn(req, "down"));
    }
    drop(raw);
    for h in &held {
        h.abort();
    }

    let mut tally = std::collections::BTreeMap::<(&str, String), usize>::new();
    for r in join_all(storm).await {
        *tally.entry(r.expect("storm task")).or_default() += 1;
    }
    let n = |kind: &'static str, what: &str| tally.get(&(kind, what.to_string())).copied();
    assert_eq!(n("normal", "200"), Some(80), "{tally:?}");
    assert_eq!(n("normal", "500"), Some(20), "{tally:?}");
    assert_eq!(n("abandon", "200"), Some(50), "{tally:?}");
    assert_eq!(n("timeout", "504"), Some(50), "{tally:?}");
    assert_eq!(n("down", "502"), Some(50), "{tally:?}");
    let fails = tally
        .iter()
        .filter(|((k, _), _)| *k == "upload fails")
        .map(|(_, c)| c)
        .sum::<usize>();
    assert_eq!(fails, 50, "{tally:?}");

    // Every slot comes back, on every gateway.
    for (g, id) in [(&t, id), (&slow, slow_id), (&down, down_id)] {
        let back = wait_for(|| in_flight(g, *id) == 0).await;
        assert!(back, "{} slots still taken", in_flight(g, *id));
    }
    // And no reservation is left behind: committed == used everywhere.
    for (g, id) in [(&t, id), (&slow, slow_id), (&down, down_id)] {
        for slot in [key_cost_day(g, *id), key_cost_total(g, *id)] {
            let used = slot.used();
            settles_to(&slot, used).await;
        }
        let partner = g.gw().manager.meter.partner(g.partner_id).unwrap();
        let settled = wait_for(|| partner.spent.committed() == partner.spent.used()).await;
        assert!(settled, "partner balance reservation leaked");
        let (bytes_in, bytes_out) = account_bytes(g).await;
        for slot in [bytes_in, bytes_out] {
            let used = slot.used();
            settles_to(&slot, used).await;
        }
    }
    // Requests the upstream never answered cost nothing.
    settles_to(&key_cost_day(&slow, *slow_id), 0).await;
    settles_to(&key_cost_day(&down, *down_id), 0).await;

    // Each gateway still serves the key.
    assert_eq!(get(&t, key, "/after").await.status, 200);
    assert_eq!(get(&slow, slow_key, "/after").await.status, 200);
    assert_eq!(
        get(&down, down_key, "/after").await.code,
        "upstream_unavailable"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Metrics.

#[tokio::test]
async fn metrics_count_denials_bytes_and_cost() {
    let t = priced("0.01", 1_000_000).await;
    let (_, key) = key_with(&t, json!({"daily_cost_limit_usd": 0.03})).await;
    for _ in 0..3 {
        assert_eq!(post(&t, &key, "/m", 100).await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(post(&t, &key, "/m", 100).await.code, "quota_exceeded");
    }
    let text = metrics_text(&t).await;
    let value = |series: &str| metric_value(&text, series);
    assert_eq!(
        value(r#"tollgate_quota_denials_total{quota="daily_cost_limit_usd"}"#),
        Some(2.0),
        "{text}"
    );
    assert!(value(r#"tollgate_bytes_total{direction="in"}"#).unwrap_or(0.0) >= 300.0);
    assert!(value(r#"tollgate_bytes_total{direction="out"}"#).unwrap_or(0.0) > 0.0);
    // Cost is counted when each request settles.
    let series = "tollgate_cost_micros_total";
    let tg = &t;
    let counted = common::eventually(DEADLINE, move || async move {
        metric_value(&metrics_text(tg).await, series) == Some((3 * CENT) as f64)
    })
    .await;
    let text = metrics_text(&t).await;
    assert!(counted, "{series} = {:?}", metric_value(&text, series));
}

// ---------------------------------------------------------------------------------------------
// Refused requests must not be charged. `meter::admit::admit` reserves cost on the key's daily
// counter, then its total, then the partner's balance, then checks the plan's byte limits; a
// later refusal must give every earlier reservation back uncharged (a regression found here:
// the half-built ticket used to settle at the estimate).

#[tokio::test]
async fn a_balance_refusal_does_not_eat_the_keys_daily_budget() {
    let t = priced("0.01", 2 * CENT as i64).await;
    let (id, key) = key_with(&t, json!({"daily_cost_limit_usd": 0.05})).await;
    assert_eq!(get(&t, &key, "/x").await.status, 200);
    assert_eq!(get(&t, &key, "/x").await.status, 200);
    for _ in 0..3 {
        assert_eq!(get(&t, &key, "/x").await.code, "insufficient_balance");
    }
    let day = key_cost_day(&t, id);
    let settled = wait_for(|| day.committed() == day.used()).await;
    assert!(settled);
    assert_eq!(day.used(), 2 * CENT, "refused requests charged to the key");
    // Funded again, the key has 3 cents of its day left.
    t.top_up(1_000_000).await;
    for i in 0..3 {
        let o = get(&t, &key, "/x").await;
        assert_eq!(o.status, 200, "request {i} after the top-up: {o:?}");
    }
    assert_eq!(get(&t, &key, "/x").await.code, "quota_exceeded");
}

#[tokio::test]
async fn a_total_limit_refusal_does_not_count_toward_the_daily_cost() {
    let t = priced("0.01", 1_000_000).await;
    let (id, key) = key_with(&t, json!({"total_cost_limit_usd": 0.02})).await;
    assert_eq!(get(&t, &key, "/x").await.status, 200);
    assert_eq!(get(&t, &key, "/x").await.status, 200);
    for _ in 0..3 {
        assert_eq!(get(&t, &key, "/x").await.code, "quota_exceeded");
    }
    let day = key_cost_day(&t, id);
    let settled = wait_for(|| day.committed() == day.used()).await;
    assert!(settled);
    assert_eq!(
        day.used(),
        2 * CENT,
        "refused requests counted as spent today"
    );
    assert_eq!(stored(&t, "key", id, "cost_micros", TODAY).await, 2 * CENT);
}

#[tokio::test]
async fn a_plan_quota_refusal_does_not_debit_the_partner() {
    let mut opts = plan("ingress_limit = \"1KiB\"");
    opts.extra.push_str(&cost_route("0.01"));
    let t = TestGateway::with(opts).await;
    t.top_up(1_000_000).await;
    let (id, key) = key_with(&t, json!({})).await;
    let o = post(&t, &key, "/up", 2 * KIB).await;
    assert_eq!(
        (o.status, o.code.as_str()),
        (429, "quota_exceeded"),
        "{o:?}"
    );
    assert!(o.message.contains("ingress_limit"), "{o:?}");
    let partner = t.gw().manager.meter.partner(t.partner_id).unwrap();
    assert!(wait_for(|| partner.spent.committed() == partner.spent.used()).await);
    assert_eq!(
        partner.balance(),
        1_000_000,
        "the partner paid for a refusal"
    );
    assert_eq!(key_cost_day(&t, id).used(), 0);
    assert_eq!(stored_balance(&t).await, 1_000_000);
}

#[tokio::test]
async fn quota_days_follow_the_configured_utc_offset() {
    // 12:00 UTC is 21:00 in UTC+9: the local day ends three hours later, not twelve.
    let t = TestGateway::with(Options {
        fake_clock: true,
        extra: "[metering]\nutc_offset = \"+09:00\"\n\
                [[routes]]\npath = \"/paid\"\npermission = \"read\"\ncost_usd = \"0.01\"\n"
            .into(),
        ..Options::default()
    })
    .await;
    t.top_up(1_000_000).await;
    let (_, key) = t.create_key(json!({"daily_cost_limit_usd": 0.01})).await;
    let paid = format!("{}/paid", t.proxy);
    assert_eq!(
        t.client
            .get(&paid)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let resp = t.client.get(&paid).bearer_auth(&key).send().await.unwrap();
    assert_eq!(resp.headers()["retry-after"], "10800");
    assert_eq!(common::denial(resp, 429).await, "quota_exceeded");
    t.clock.as_ref().unwrap().advance(3 * 3600);
    assert_eq!(
        t.client
            .get(&paid)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
