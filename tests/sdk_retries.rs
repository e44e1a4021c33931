//! The official OpenAI and Anthropic Python SDKs, unmodified and with their default retries,
//! against Tollgate's denials: each refusal a retry cannot soon lift (`x-should-retry: false`)
//! costs the SDK exactly one request and fails at once, instead of sleeping through
//! `Retry-After` and retrying. Needs `python3`; the `openai` and `anthropic` packages are
//! used as installed, or installed by pip into the target directory.

mod common;

use std::time::Duration;

use common::{Options, TestGateway};
use serde_json::{Value, json};

/// `python3` able to import the official SDKs.
async fn python_with_sdks() -> tokio::process::Command {
    common::python::python_with("sdk-python", &["openai", "anthropic"], "openai, anthropic").await
}

/// Seconds from the fake clock's start (12:00 UTC) to 90 s before the next midnight, where a
/// daily quota refusal says `Retry-After: 90`: short enough that an SDK would sleep through it
/// and retry, too long to call it a refusal a retry soon lifts.
const TO_NEAR_MIDNIGHT: u64 = 43_200 - 90;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_give_up_at_once_on_denials_a_retry_cannot_lift() {
    let t = TestGateway::with(Options {
        extra: common::cost_route("0.01"),
        fake_clock: true,
        ..Options::default()
    })
    .await;
    t.top_up(1_000_000).await;
    t.clock.as_ref().unwrap().advance(TO_NEAR_MIDNIGHT as i64);
    let (_, quota) = t
        .create_key(json!({"permissions": ["read"], "daily_cost_limit_usd": 0.01}))
        .await;
    let resp = t
        .client
        .get(format!("{}/prime", t.proxy))
        .bearer_auth(&quota)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the day's budget is spent");
    let resp = t
        .client
        .get(format!("{}/again", t.proxy))
        .bearer_auth(&quota)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "90");
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let (_, write_only) = t.create_key(json!({"permissions": ["write"]})).await;
    let (id, disabled) = t.create_key(json!({"permissions": ["read"]})).await;
    let resp = t.reseller_post(&format!("/keys/{id}/disable")).await;
    assert_eq!(resp.status(), 200);

    let cases = json!({
        "quota_exceeded": quota,
        "permission_denied": write_only,
        "key_disabled": disabled,
        "invalid_key": "sk-tollgate-not-a-key",
    });
    let before = common::metrics_text(&t).await;
    let spec = json!({"proxy": t.proxy, "cases": cases}).to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/denials.py");
    let run = python_with_sdks().await.arg(script).arg(&spec).output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the SDKs gave up within two minutes")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tests/sdk/denials.py failed:\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 8, "{stdout}");
    for r in &results {
        println!("{r}");
        let expected = match r["case"].as_str().unwrap() {
            "quota_exceeded" => 429,
            "permission_denied" | "key_disabled" => 403,
            _ => 401,
        };
        assert_eq!(r["status"], expected, "{r}");
        let took = r["seconds"].as_f64().unwrap();
        assert!(took < 10.0, "the SDK waited: {r}");
    }
    // Exactly one request per SDK and case reached the gateway: no retry.
    let after = common::metrics_text(&t).await;
    for code in [
        "quota_exceeded",
        "permission_denied",
        "key_disabled",
        "invalid_key",
    ] {
        let series = format!("tollgate_requests_total{{code=\"{code}\"}}");
        let count = |text: &str| common::metric_value(text, &series).unwrap_or(0.0);
        assert_eq!(count(&after) - count(&before), 2.0, "{code}");
    }
}
