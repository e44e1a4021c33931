//! The operator surface: partners created, priced, topped up and suspended through
//! `/api/v1/admin`, with effects checked on the reseller API and the data plane.

mod common;

use common::{Options, TestGateway, denial};
use serde_json::{Value, json};

const OPERATOR: &str = "operator-token-for-tests";

async fn gateway() -> TestGateway {
    let phc = tollgate::domain::secret::hash_token(OPERATOR).unwrap();
    TestGateway::with(Options {
        extra: format!(
            "[security]\noperator_tokens = [\"{phc}\"]\n\
             [[routes]]\npath = \"/paid\"\npermission = \"read\"\ncost_usd = \"0.01\"\n"
        ),
        ..Options::default()
    })
    .await
}

async fn admin(t: &TestGateway, path: &str, body: Option<Value>, token: &str) -> (u16, Value) {
    let mut req = t
        .client
        .post(format!("{}/api/v1/admin{path}", t.api))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn operator_manages_partners_end_to_end() {
    let t = gateway().await;
    // Wrong or missing operator token.
    assert_eq!(
        admin(&t, "/partners", Some(json!({"name": "x"})), "nope")
            .await
            .0,
        401
    );
    let (status, body) = admin(
        &t,
        "/partners",
        Some(json!({"name": "acme"})),
        t.partner_token.as_str(),
    )
    .await;
    assert_eq!(
        status, 401,
        "a partner token is not an operator token: {body}"
    );

    let (status, body) = admin(&t, "/partners", Some(json!({"name": "beta"})), OPERATOR).await;
    assert_eq!(status, 200, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    let token = body["data"]["token"].as_str().unwrap().to_string();
    let me: Value = t
        .client
        .get(format!("{}/api/v1/reseller/me", t.api))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["data"]["name"], "beta");

    // A key of the new partner, priced at 0.01 per call: refused until topped up.
    let resp = t
        .client
        .post(format!("{}/api/v1/reseller/keys", t.api))
        .bearer_auth(&token)
        .json(&json!({"description": "k"}))
        .send()
        .await
        .unwrap();
    let key: Value = resp.json().await.unwrap();
    let key = key["data"]["api_key"].as_str().unwrap().to_string();
    let paid = format!("{}/paid", t.proxy);
    let resp = t.client.get(&paid).bearer_auth(&key).send().await.unwrap();
    assert_eq!(denial(resp, 402).await, "insufficient_balance");
    // A top-up that rounds to nothing is refused, not recorded as a zero entry.
    for tiny in [0.0, 1e-7, -4e-7] {
        let path = format!("/partners/{id}/topup");
        let (status, body) = admin(&t, &path, Some(json!({"amount_usd": tiny})), OPERATOR).await;
        assert_eq!(status, 422, "{tiny}: {body}");
        assert!(body["detail"].as_str().unwrap().starts_with("amount_usd:"));
    }
    let (status, body) = admin(
        &t,
        &format!("/partners/{id}/topup"),
        Some(json!({"amount_usd": 1.5})),
        OPERATOR,
    )
    .await;
    assert_eq!(
        (status, body["data"]["balance_usd"].as_f64()),
        (200, Some(1.5))
    );
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

    // Tier 0.5: the next call costs half.
    let (status, body) = admin(
        &t,
        &format!("/partners/{id}/tier"),
        Some(json!({"tier_multiplier": 0.5})),
        OPERATOR,
    )
    .await;
    assert_eq!(
        (status, body["data"]["tier_multiplier"].as_f64()),
        (200, Some(0.5))
    );
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
    let view: Value = t
        .client
        .get(format!("{}/api/v1/admin/partners/{id}", t.api))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        view["data"]["balance_usd"].as_f64(),
        Some(1.5 - 0.01 - 0.005)
    );

    // Suspended: the partner's API calls are 403 and its keys are refused on the next request.
    assert_eq!(
        admin(&t, &format!("/partners/{id}/suspend"), None, OPERATOR)
            .await
            .0,
        200
    );
    let resp = t
        .client
        .get(format!("{}/api/v1/reseller/me", t.api))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = t.client.get(&paid).bearer_auth(&key).send().await.unwrap();
    assert_eq!(denial(resp, 403).await, "key_disabled");
    assert_eq!(
        admin(&t, &format!("/partners/{id}/unsuspend"), None, OPERATOR)
            .await
            .0,
        200
    );
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

    // Validation and unknown partners.
    let bad = admin(
        &t,
        &format!("/partners/{id}/tier"),
        Some(json!({"tier_multiplier": 0})),
        OPERATOR,
    )
    .await;
    assert_eq!(bad.0, 422);
    assert!(
        bad.1["detail"]
            .as_str()
            .unwrap()
            .contains("tier_multiplier")
    );
    let missing = uuid::Uuid::new_v4();
    assert_eq!(
        admin(&t, &format!("/partners/{missing}/suspend"), None, OPERATOR)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn oversize_management_bodies_are_422() {
    let t = gateway().await;
    let big = format!("{{\"description\":\"{}\"}}", "a".repeat(100 * 1024));
    let resp = t
        .client
        .post(format!("{}/api/v1/reseller/keys", t.api))
        .bearer_auth(&t.partner_token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("body"), "{body}");
}

#[tokio::test]
async fn a_debit_below_zero_is_owed_not_forgiven() {
    let t = gateway().await;
    let id = t.partner_id;
    let path = |what: &str| format!("/partners/{id}/{what}");
    assert_eq!(
        admin(
            &t,
            &path("topup"),
            Some(json!({"amount_usd": 0.03})),
            OPERATOR
        )
        .await
        .0,
        200
    );
    let (_, body) = admin(
        &t,
        &path("topup"),
        Some(json!({"amount_usd": -0.05})),
        OPERATOR,
    )
    .await;
    assert_eq!(body["data"]["balance_usd"].as_f64(), Some(-0.02));
    let (_, key) = t.rw_key().await;
    let paid = format!("{}/paid", t.proxy);
    let resp = t.client.get(&paid).bearer_auth(&key).send().await.unwrap();
    assert_eq!(denial(resp, 402).await, "insufficient_balance");
    // Topping up 0.03 pays the debt and leaves exactly one call's worth.
    assert_eq!(
        admin(
            &t,
            &path("topup"),
            Some(json!({"amount_usd": 0.03})),
            OPERATOR
        )
        .await
        .0,
        200
    );
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
    assert_eq!(denial(resp, 402).await, "insufficient_balance");
}

#[tokio::test]
async fn a_partner_created_by_another_process_works_without_a_restart() {
    let t = gateway().await;
    // What `tollgate partner create` does while the gateway runs: same store, its own manager.
    let gw = t.gw();
    let other = tollgate::manage::Manager {
        store: gw.manager.store.clone(),
        index: Default::default(),
        hasher: gw.manager.hasher.clone(),
        clock: gw.manager.clock.clone(),
        default_plan: None,
        meter: Default::default(),
        verifier: Default::default(),
        write_lock: Default::default(),
    };
    let (_, token) = other.create_partner("cli-made").await.unwrap();
    let resp = t
        .client
        .post(format!("{}/api/v1/reseller/keys", t.api))
        .bearer_auth(&token)
        .json(&json!({"description": "k"}))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let key = body["data"]["api_key"]
        .as_str()
        .expect("created")
        .to_string();
    let resp = t
        .client
        .get(format!("{}/free", t.proxy))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// A client that keeps failing authentication is refused unverified (429) for the rest of the
/// minute, on the partner and the operator surface alike, while tokens it has proved before
/// still work from the same address: a flood of wrong tokens cannot make argon2 run without
/// end, and does not lock out a partner or operator already signed in.
#[tokio::test]
async fn a_client_failing_authentication_is_refused_unverified_but_proven_tokens_pass() {
    let t = gateway().await;
    let me = |token: String| {
        let req = t.client.get(format!("{}/api/v1/reseller/me", t.api));
        async move { req.bearer_auth(token).send().await.unwrap() }
    };
    // The partner and the operator prove their tokens once.
    assert_eq!(me(t.partner_token.clone()).await.status(), 200);
    let (status, _) = admin(&t, "/partners", Some(json!({"name": "beta"})), OPERATOR).await;
    assert_eq!(status, 200);
    let max = tollgate::manage::auth::MAX_FAILURES;
    for i in 0..max {
        let resp = me(format!("rsk_wrong{i}")).await;
        assert_eq!(resp.status(), 401, "failure {i} is still verified");
    }
    let throttled = me("rsk_wrong".into()).await;
    assert_eq!(throttled.status(), 429);
    let wait: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let (status, _) = admin(&t, "/partners", Some(json!({"name": "x"})), "not-the-token").await;
    assert_eq!(status, 429, "the operator surface counts the same client");
    // Proven tokens pass from the same address.
    assert_eq!(me(t.partner_token.clone()).await.status(), 200);
    let (status, _) = admin(&t, "/partners", Some(json!({"name": "gamma"})), OPERATOR).await;
    assert_eq!(status, 200);
    let text = common::metrics_text(&t).await;
    let failures = r#"tollgate_management_auth_failures_total{surface="partner"}"#;
    assert_eq!(common::metric_value(&text, failures), Some(f64::from(max)));
}

/// The worst flood of wrong partner tokens: each shares the partner's lookup prefix (so each
/// costs an argon2 verification) and comes through a trusted proxy from a new address (so the
/// per-client throttle never trips). The partner, signed in before, keeps being answered
/// quickly meanwhile: proven tokens skip argon2, and verifications are capped at one per core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_tokens_does_not_slow_a_signed_in_partner() {
    let phc = tollgate::domain::secret::hash_token(OPERATOR).unwrap();
    let t = TestGateway::with(Options {
        extra: format!(
            "[security]\noperator_tokens = [\"{phc}\"]\ntrusted_proxies = [\"127.0.0.1/32\"]\n"
        ),
        ..Options::default()
    })
    .await;
    let me = format!("{}/api/v1/reseller/me", t.api);
    let resp = t.client.get(&me).bearer_auth(&t.partner_token).send().await;
    assert_eq!(
        resp.unwrap().status(),
        200,
        "the partner signs in before the flood"
    );
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let attackers: Vec<_> = (0..16u32)
        .map(|a| {
            let (url, flooding, refused) = (me.clone(), flooding.clone(), refused.clone());
            // Same 8-character lookup prefix as the real token, wrong rest.
            let wrong = format!("{}{}", &t.partner_token[..12], "x".repeat(35));
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = 0u32;
                while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let from = format!("10.{}.{}.{}", a, n / 256 % 256, n % 256);
                    let resp = client
                        .get(&url)
                        .bearer_auth(&wrong)
                        .header("x-forwarded-for", from)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 401, "a wrong token is refused");
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Let the flood build up: wait until it has been refused a few dozen times.
    let built = common::eventually(std::time::Duration::from_secs(30), || {
        let refused = refused.clone();
        async move { refused.load(std::sync::atomic::Ordering::Relaxed) >= 32 }
    })
    .await;
    assert!(built, "the flood is running");
    let partner = reqwest::Client::new();
    let mut took = Vec::new();
    for _ in 0..100 {
        let started = std::time::Instant::now();
        let resp = partner.get(&me).bearer_auth(&t.partner_token).send().await;
        assert_eq!(resp.unwrap().status(), 200);
        took.push(started.elapsed());
    }
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    for attacker in attackers {
        attacker.await.unwrap();
    }
    took.sort();
    let p99 = took[98];
    let failures = refused.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "partner during a flood of {failures} wrong tokens: p50 {:?}, p99 {p99:?}, max {:?}",
        took[50], took[99]
    );
    assert!(p99 < std::time::Duration::from_millis(100), "p99 {p99:?}");
    let text = common::metrics_text(&t).await;
    let series = r#"tollgate_management_auth_failures_total{surface="partner"}"#;
    let counted = common::metric_value(&text, series).unwrap_or(0.0);
    assert!(counted >= failures as f64, "{counted} < {failures}");
}

/// The operator lists partners a page at a time, oldest first, with an opaque cursor.
#[tokio::test]
async fn partners_are_listed_a_page_at_a_time() {
    let t = gateway().await;
    for name in ["beta", "gamma", "delta"] {
        let (status, _) = admin(&t, "/partners", Some(json!({"name": name})), OPERATOR).await;
        assert_eq!(status, 200);
    }
    let list = |query: String| {
        let req = t
            .client
            .get(format!("{}/api/v1/admin/partners{query}", t.api))
            .bearer_auth(OPERATOR);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (mut names, mut order) = (Vec::new(), Vec::new());
    let mut query = "?limit=3".to_string();
    loop {
        let (status, page) = list(query).await;
        assert_eq!(status, 200, "{page}");
        for p in page["data"].as_array().unwrap() {
            names.push(p["name"].as_str().unwrap().to_string());
            order.push((p["created_at"].to_string(), p["id"].to_string()));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 4, "acme and the three, once each: {names:?}");
    assert!(order.is_sorted(), "oldest first, then by id: {order:?}");
    let (status, body) = list("?limit=zero".into()).await;
    assert_eq!(status, 422);
    assert!(body["detail"].as_str().unwrap().contains("limit"), "{body}");
    let resp = t
        .client
        .get(format!("{}/api/v1/admin/partners", t.api))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "operators only");
}
