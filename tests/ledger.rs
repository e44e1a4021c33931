//! The partner's money ledger (`GET /api/v1/reseller/ledger`): every top-up, plan change and
//! day of usage is an entry, paged with a cursor, and the entries sum to the stored balance;
//! plan charges count in `/balance`'s spend and in the `/usage` series.

mod common;

use std::time::Duration;

use common::{Options, TestGateway};
use serde_json::{Value, json};

const PLANS: &str = r#"
[[plans]]
id = 1
name = "Free"
price_usd = "0.00"

[[plans]]
id = 3
name = "Plan0"
price_usd = "9.99"
"#;

const USD: i64 = 1_000_000;

async fn gateway() -> TestGateway {
    TestGateway::with(Options {
        top: "default_plan = 1\n".into(),
        extra: format!("{PLANS}{}", common::cost_route("0.25")),
        fake_clock: true,
        ..Options::default()
    })
    .await
}

async fn reseller(t: &TestGateway, path: &str) -> Value {
    t.get_json(&format!("/api/v1/reseller{path}")).await
}

async fn v0(t: &TestGateway, path: &str, body: Value) {
    t.v0_partner_post(path, body).await;
}

/// Every ledger entry, two a page.
async fn ledger(t: &TestGateway) -> Vec<Value> {
    let (mut all, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=2&cursor={c}"),
            None => "?limit=2".into(),
        };
        let page = reseller(t, &format!("/ledger{query}")).await;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        all.extend(data.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return all,
        }
    }
}

fn micros(usd: &Value) -> i64 {
    (usd.as_f64().unwrap() * 1e6).round() as i64
}

async fn stored_balance(t: &TestGateway) -> i64 {
    let p = t
        .gw()
        .manager
        .store
        .get_partner(t.partner_id)
        .await
        .unwrap();
    p.unwrap().balance_micros
}

/// Waits (with a deadline) until the flusher has written every charge.
async fn flushed(t: &TestGateway) {
    let live = || {
        t.gw()
            .manager
            .meter
            .partner(t.partner_id)
            .unwrap()
            .balance()
    };
    let done = common::eventually(Duration::from_secs(10), || async {
        stored_balance(t).await == live()
    })
    .await;
    assert!(done, "no flush within 10 s");
}

async fn spend(t: &TestGateway, key: &str, requests: usize) {
    for _ in 0..requests {
        let resp = t
            .client
            .get(format!("{}/x", t.proxy))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}

#[tokio::test]
async fn every_credit_and_charge_is_an_entry_and_they_sum_to_the_balance() {
    let t = gateway().await;
    t.top_up(30 * USD).await;
    v0(
        &t,
        "create",
        json!({"uuid": "u1", "email": "u1@example.com"}),
    )
    .await;
    v0(&t, "update-plan", json!({"uuid": "u1", "plan_id": 3})).await;
    let (_, key) = t.create_key(json!({"permissions": ["read"]})).await;
    spend(&t, &key, 4).await;
    flushed(&t).await;

    let entries = ledger(&t).await;
    let summary: Vec<(&str, i64)> = entries
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), micros(&e["amount_usd"])))
        .collect();
    assert_eq!(
        summary,
        [
            ("top_up", 30 * USD),
            ("plan_change", -9_990_000),
            ("usage", -USD)
        ],
        "{entries:?}"
    );
    assert_eq!(entries[1]["plan_id"], 3);
    assert!(
        entries[1]["note"]
            .as_str()
            .unwrap()
            .contains("Free to Plan0")
    );
    assert_eq!(entries[2]["day"], "2026-11-23");
    let sum: i64 = summary.iter().map(|(_, v)| v).sum();
    assert_eq!(
        sum,
        stored_balance(&t).await,
        "the ledger sums to the balance"
    );
    let balance = reseller(&t, "/balance").await;
    assert_eq!(micros(&balance["data"]["balance_usd"]), sum);
    // Spend counts the plan charge beside the usage.
    assert_eq!(micros(&balance["data"]["spent_today_usd"]), 10_990_000);
    assert_eq!(micros(&balance["data"]["spent_total_usd"]), 10_990_000);

    // More usage the same day grows that day's one usage entry.
    spend(&t, &key, 2).await;
    flushed(&t).await;
    let entries = ledger(&t).await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(micros(&entries[2]["amount_usd"]), -1_500_000);
    let sum: i64 = entries.iter().map(|e| micros(&e["amount_usd"])).sum();
    assert_eq!(sum, stored_balance(&t).await);

    // The usage series counts the plan charge in the day's cost, and says how much it was.
    let series = reseller(&t, "/usage").await;
    let today = series["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(today["date"], "2026-11-23");
    assert_eq!(micros(&today["plan_usd"]), 9_990_000);
    assert_eq!(micros(&today["cost_usd"]), 11_490_000, "{today}");
}

#[tokio::test]
async fn a_malformed_cursor_or_limit_is_a_422_naming_it() {
    let t = gateway().await;
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?cursor=nope", "cursor"),
        ("?limit=a&limit=b", "query"),
    ] {
        let resp = t
            .client
            .get(format!("{}/api/v1/reseller/ledger{query}", t.api))
            .bearer_auth(&t.partner_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{query}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["detail"].as_str().unwrap().starts_with(field),
            "{body}"
        );
    }
}
