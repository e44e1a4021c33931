//! The openai and anthropic profiles end to end: a fake OpenAI and a fake Anthropic upstream
//! (hyper servers speaking the real wire formats: JSON with `usage`, SSE with `data:` lines and
//! a final usage event) behind a real gateway. Costs are read exactly from the meter.
//!
//! Prices: input $10, cached input $5, output $30 per million tokens, i.e. 10, 5 and 30
//! micro-USD per token.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Options, TestGateway, metric_value, metrics_text};
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

const PRICES: &str = "[prices.\"gpt-test\"]\ninput_usd_per_mtok = \"10\"\noutput_usd_per_mtok = 30\n\
cached_input_usd_per_mtok = \"5\"\nmax_output_tokens = 1000\n\
[prices.\"claude-test\"]\ninput_usd_per_mtok = 10\noutput_usd_per_mtok = \"30\"\n\
cached_input_usd_per_mtok = 5\n";

/// A fake LLM upstream: records what it received and answers per the `x-scenario` header.
#[derive(Clone, Default)]
struct Upstream {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    /// The `Accept-Encoding` of each request.
    encodings: Arc<Mutex<Vec<Option<String>>>>,
}

impl Upstream {
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn last_body(&self) -> Value {
        self.seen
            .lock()
            .unwrap()
            .last()
            .expect("a request")
            .1
            .clone()
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(text: String, content_type: &str) -> Response<Body> {
    Response::builder()
        .header("content-type", content_type)
        .body(http_body_util::Full::new(Bytes::from(text)).boxed())
        .unwrap()
}

/// An SSE body fed from a channel, one frame per event.
fn sse(events: Vec<String>, then_ping_forever: bool) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for e in events {
            if tx.send(Bytes::from(e)).await.is_err() {
                return;
            }
        }
        // A stream that never finishes: comments until the reader goes away.
        while then_ping_forever && tx.send(Bytes::from_static(b": ping\n\n")).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}

fn data(v: Value) -> String {
    format!("data: {v}\n\n")
}

fn openai(scenario: &str, body: &Value) -> Response<Body> {
    let chunk = |text: &str| {
        data(
            json!({"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":text}}],"usage":null}),
        )
    };
    match scenario {
        "json" => full(
            json!({"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"}}],
                   "usage":{"prompt_tokens":100,"completion_tokens":50,"total_tokens":150,
                            "prompt_tokens_details":{"cached_tokens":40}}})
            .to_string(),
            "application/json",
        ),
        "no-usage" => full(
            json!({"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"twelve chars"}}]})
                .to_string(),
            "application/json",
        ),
        "sse" => {
            let mut events = vec![chunk("Hello"), chunk(" world")];
            if body["stream_options"]["include_usage"] == true {
                events.push(data(json!({"object":"chat.completion.chunk","choices":[],
                    "usage":{"prompt_tokens":20,"completion_tokens":7,"total_tokens":27}})));
            }
            events.push("data: [DONE]\n\n".into());
            sse(events, false)
        }
        "cut" => sse(vec![chunk("Hello"), chunk(" world")], true),
        "error" => Response::builder()
            .status(429)
            .header("content-type", "application/json")
            .body(
                http_body_util::Full::new(Bytes::from_static(
                    br#"{"error":{"message":"Rate limit reached","type":"requests"}}"#,
                ))
                .boxed(),
            )
            .unwrap(),
        _ => full("{}".into(), "application/json"),
    }
}

fn anthropic(scenario: &str) -> Response<Body> {
    let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
    match scenario {
        "json" => full(
            json!({"type":"message","role":"assistant","content":[{"type":"text","text":"Hi"}],
                   "usage":{"input_tokens":30,"output_tokens":10,"cache_read_input_tokens":5}})
            .to_string(),
            "application/json",
        ),
        "sse" => sse(
            vec![
                ev(
                    "message_start",
                    json!({"type":"message_start","message":{"type":"message","content":[],
                    "usage":{"input_tokens":30,"cache_read_input_tokens":5,"output_tokens":1}}}),
                ),
                ev(
                    "content_block_start",
                    json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
                ),
                ev(
                    "content_block_delta",
                    json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}),
                ),
                ev(
                    "content_block_stop",
                    json!({"type":"content_block_stop","index":0}),
                ),
                ev(
                    "message_delta",
                    json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":12}}),
                ),
                ev("message_stop", json!({"type":"message_stop"})),
            ],
            false,
        ),
        _ => full("{}".into(), "application/json"),
    }
}

/// Starts a fake upstream; returns its URL.
async fn spawn_upstream(up: Upstream, flavor: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let up = up.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let up = up.clone();
                    async move {
                        let scenario = req
                            .headers()
                            .get("x-scenario")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("json")
                            .to_string();
                        let path = req.uri().path().to_string();
                        let encoding = req
                            .headers()
                            .get("accept-encoding")
                            .map(|v| v.to_str().unwrap().to_string());
                        up.encodings.lock().unwrap().push(encoding);
                        let bytes = req.into_body().collect().await.unwrap().to_bytes();
                        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        up.seen.lock().unwrap().push((path, body.clone()));
                        Ok::<_, Infallible>(match flavor {
                            "openai" => openai(&scenario, &body),
                            _ => anthropic(&scenario),
                        })
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

/// A gateway with `profile` in front of a fake upstream of the same flavor, its partner
/// topped up with $10.
async fn gateway(profile: &'static str) -> (TestGateway, Upstream) {
    gateway_with(profile, "").await
}

/// [`gateway`] with `extra` TOML after the prices.
async fn gateway_with(profile: &'static str, extra: &str) -> (TestGateway, Upstream) {
    let up = Upstream::default();
    let url = spawn_upstream(up.clone(), profile).await;
    let t = TestGateway::with(Options {
        profile: Some(profile),
        upstream_url: Some(url),
        extra: format!("{PRICES}\n{extra}"),
        ..Options::default()
    })
    .await;
    t.top_up(10_000_000).await;
    (t, up)
}

async fn key(t: &TestGateway, extra: Value) -> (Uuid, String) {
    let mut body = json!({"description": "llm", "permissions": ["read", "write"]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (id, key) = t.create_key(body).await;
    (id.parse().unwrap(), key)
}

fn post(
    t: &TestGateway,
    path: &str,
    key: &str,
    scenario: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    t.client
        .post(format!("{}{path}", t.proxy))
        .bearer_auth(key)
        .header("x-scenario", scenario)
        .json(body)
}

/// Waits until the key's lifetime cost has settled (nothing reserved) at `micros`.
async fn settles_to(t: &TestGateway, id: Uuid, micros: u64) {
    let now = t.gw().manager.clock.now_unix();
    let slot = t.gw().manager.meter.key_usage(id, now).cost_total().peek();
    let ok = common::eventually(Duration::from_secs(10), || {
        let done = slot.used() == micros && slot.committed() == micros;
        async move { done }
    })
    .await;
    assert!(
        ok,
        "cost used {} committed {}, expected {micros}",
        slot.used(),
        slot.committed()
    );
}

async fn usage_missing(t: &TestGateway) -> f64 {
    metric_value(&metrics_text(t).await, "tollgate_usage_missing_total").unwrap_or(-1.0)
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": "gpt-test", "messages": [{"role": "user", "content": "abcd"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn openai_json_is_charged_the_reported_usage() {
    let (t, up) = gateway("openai").await;
    let (id, key) = key(&t, json!({})).await;
    let resp = post(&t, "/v1/chat/completions", &key, "json", &chat(json!({})))
        .header("accept-encoding", "gzip, deflate")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        up.encodings.lock().unwrap()[0],
        None,
        "usage must be readable: the answer is asked for uncompressed"
    );
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["usage"]["prompt_tokens"], 100, "forwarded unchanged");
    // (100 − 40) × 10 + 40 × 5 + 50 × 30 = 2300 micro-USD.
    settles_to(&t, id, 2300).await;
    assert_eq!(up.count(), 1);
    assert_eq!(usage_missing(&t).await, 0.0);
    // The reseller API shows the same cost.
    let key_obj: Value = t
        .client
        .get(format!("{}/api/v1/reseller/keys/{id}", t.api))
        .bearer_auth(&t.partner_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let usd = key_obj["data"]["cost_total_usd"].as_f64().unwrap();
    assert!((usd - 0.0023).abs() < 1e-12, "{key_obj}");
}

#[tokio::test]
async fn openai_stream_usage_is_asked_for_and_hidden_unless_the_client_asked() {
    let (t, up) = gateway("openai").await;
    let (id, key) = key(&t, json!({})).await;
    let resp = post(
        &t,
        "/v1/chat/completions",
        &key,
        "sse",
        &chat(json!({"stream": true})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_eq!(
        up.last_body()["stream_options"]["include_usage"],
        true,
        "injected upstream"
    );
    assert!(text.contains("Hello") && text.contains(" world"), "{text}");
    assert!(
        !text.contains("prompt_tokens"),
        "usage chunk hidden: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    // 20 × 10 + 7 × 30 = 410.
    settles_to(&t, id, 410).await;

    let asked = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let text = post(&t, "/v1/chat/completions", &key, "sse", &asked)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("\"prompt_tokens\":20"),
        "shown when asked: {text}"
    );
    settles_to(&t, id, 820).await;
    assert_eq!(usage_missing(&t).await, 0.0);
}

#[tokio::test]
async fn a_stream_cut_midway_is_charged_for_what_was_produced() {
    let (t, up) = gateway("openai").await;
    let (id, key) = key(&t, json!({})).await;
    let resp = post(
        &t,
        "/v1/chat/completions",
        &key,
        "cut",
        &chat(json!({"stream": true})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains(" world") {
        let chunk = stream.next().await.expect("more").expect("chunk");
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    drop(stream);
    // Input estimate: "user" + "abcd" = 8 chars → 2 tokens × 10 = 20; output: "Hello world"
    // = 11 chars → 3 tokens × 30 = 90.
    settles_to(&t, id, 110).await;
    assert_eq!(up.count(), 1);
    assert!(
        common::eventually(Duration::from_secs(5), || async {
            usage_missing(&t).await == 1.0
        })
        .await
    );
}

#[tokio::test]
async fn an_answer_without_usage_is_charged_by_the_fallback_and_counted() {
    let (t, _up) = gateway("openai").await;
    let (id, key) = key(&t, json!({})).await;
    let resp = post(
        &t,
        "/v1/chat/completions",
        &key,
        "no-usage",
        &chat(json!({})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    // 2 input tokens × 10 + "twelve chars" (12 → 3 tokens) × 30 = 110.
    settles_to(&t, id, 110).await;
    assert_eq!(usage_missing(&t).await, 1.0);
}

#[tokio::test]
async fn the_worst_case_must_fit_the_budget_before_anything_is_forwarded() {
    let (t, up) = gateway("openai").await;
    // $0.01 = 10 000 micro-USD.
    let (id, key) = key(&t, json!({"total_cost_limit_usd": 0.01})).await;
    // 1000 output tokens × 30 = 30 000 > 10 000: refused, the upstream sees nothing.
    let resp = post(
        &t,
        "/v1/chat/completions",
        &key,
        "json",
        &chat(json!({"max_tokens": 1000})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(common::denial(resp, 429).await, "quota_exceeded");
    // No maximum given: the model's default (1000) is reserved, refused too.
    let resp = post(&t, "/v1/chat/completions", &key, "json", &chat(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(common::denial(resp, 429).await, "quota_exceeded");
    assert_eq!(up.count(), 0);
    settles_to(&t, id, 0).await;
    // 300 × 30 + 20 = 9 020 fits; it settles to the real 2 300.
    let resp = post(
        &t,
        "/v1/chat/completions",
        &key,
        "json",
        &chat(json!({"max_tokens": 300})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    settles_to(&t, id, 2300).await;
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn bad_bodies_and_unknown_models_never_reach_the_upstream() {
    let (t, up) = gateway("openai").await;
    let (_, key) = key(&t, json!({})).await;
    let send = |body: &'static str| {
        t.client
            .post(format!("{}/v1/chat/completions", t.proxy))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        common::denial(send("{not json").await.unwrap(), 400).await,
        "bad_request"
    );
    assert_eq!(
        common::denial(send(r#"{"messages":[]}"#).await.unwrap(), 400).await,
        "bad_request"
    );
    let unknown = send(r#"{"model":"gpt-5","messages":[]}"#).await.unwrap();
    assert_eq!(common::denial(unknown, 403).await, "model_not_allowed");
    assert_eq!(up.count(), 0);
    // Other routes are proxied untouched.
    let resp = t
        .client
        .get(format!("{}/v1/models", t.proxy))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn anthropic_json_and_stream_are_charged_the_reported_usage() {
    let (t, up) = gateway("anthropic").await;
    let (id, key) = key(&t, json!({})).await;
    let body = json!({"model": "claude-test", "max_tokens": 100,
                      "messages": [{"role": "user", "content": "hi"}]});
    let resp = t
        .client
        .post(format!("{}/v1/messages", t.proxy))
        .header("x-api-key", &key)
        .header("x-scenario", "json")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    // 30 × 10 + 5 × 5 + 10 × 30 = 625.
    settles_to(&t, id, 625).await;

    let mut streaming = body.clone();
    streaming["stream"] = json!(true);
    let text = t
        .client
        .post(format!("{}/v1/messages", t.proxy))
        .header("x-api-key", &key)
        .header("x-scenario", "sse")
        .json(&streaming)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("message_delta") && text.contains("Hello"),
        "{text}"
    );
    assert!(
        up.last_body().get("stream_options").is_none(),
        "nothing injected"
    );
    // 30 × 10 + 5 × 5 + 12 × 30 = 685.
    settles_to(&t, id, 625 + 685).await;
    assert_eq!(usage_missing(&t).await, 0.0);
}

#[tokio::test]
async fn a_keys_model_allow_list_narrows_the_price_table() {
    let (t, up) = gateway("openai").await;
    let (id, key) = key(&t, json!({"models": ["claude-test"]})).await;
    let resp = post(&t, "/v1/chat/completions", &key, "json", &chat(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(common::denial(resp, 403).await, "model_not_allowed");
    assert_eq!(up.count(), 0);
    // The key object shows the list; PATCH to null allows every priced model.
    let patch = |body: Value| {
        t.client
            .patch(format!("{}/api/v1/reseller/keys/{id}", t.api))
            .bearer_auth(&t.partner_token)
            .json(&body)
            .send()
    };
    let obj: Value = patch(json!({"models": ["gpt-test"]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(obj["data"]["models"], json!(["gpt-test"]), "{obj}");
    let resp = post(&t, "/v1/chat/completions", &key, "json", &chat(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let obj: Value = patch(json!({"models": null}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(obj["data"]["models"].is_null(), "{obj}");
    let bad = patch(json!({"models": [3]})).await.unwrap();
    assert_eq!(bad.status(), 422);
    let resp = post(&t, "/v1/chat/completions", &key, "json", &chat(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn a_failed_answer_costs_nothing() {
    let (t, up) = gateway("openai").await;
    let (id, key) = key(&t, json!({})).await;
    let resp = post(&t, "/v1/chat/completions", &key, "error", &chat(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429, "the upstream's answer is passed on");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "requests");
    settles_to(&t, id, 0).await;
    assert_eq!(up.count(), 1);
    assert_eq!(usage_missing(&t).await, 0.0);
}

#[tokio::test]
async fn a_running_stream_holds_its_worst_case_until_it_ends() {
    let (t, up) = gateway("openai").await;
    // $0.01 = 10 000 micro-USD; each call below reserves 300 × 30 + 20 = 9 020.
    let (id, key) = key(&t, json!({"total_cost_limit_usd": 0.01})).await;
    let capped = chat(json!({"stream": true, "max_tokens": 300}));
    let first = post(&t, "/v1/chat/completions", &key, "cut", &capped)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let mut stream = first.bytes_stream();
    let chunk = stream.next().await.expect("a chunk").expect("data");
    assert!(std::str::from_utf8(&chunk).unwrap().contains("Hello"));
    // While the first stream runs, the budget has no room for a second worst case.
    let second = post(&t, "/v1/chat/completions", &key, "sse", &capped)
        .send()
        .await
        .unwrap();
    assert_eq!(common::denial(second, 429).await, "quota_exceeded");
    assert_eq!(up.count(), 1, "the refused call never reached the upstream");
    // The client hangs up: the stream settles to what was produced (fallback estimate).
    drop(stream);
    settles_to(&t, id, 110).await;
    let third = post(&t, "/v1/chat/completions", &key, "sse", &capped)
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 200);
    third.bytes().await.unwrap();
    // 20 input tokens × 10 + 7 output × 30 = 410 on top of the 110.
    settles_to(&t, id, 520).await;
}

/// The key's `llm_usage` from the reseller key detail.
async fn llm_usage(t: &TestGateway, id: Uuid) -> Value {
    let resp = t
        .client
        .get(format!("{}/api/v1/reseller/keys/{id}", t.api))
        .bearer_auth(&t.partner_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["data"]["llm_usage"].clone()
}

#[tokio::test]
async fn tokens_cost_and_model_are_recorded_per_key_and_survive_a_restart() {
    let (mut t, _up) = gateway("openai").await;
    let (id, key) = key(&t, json!({})).await;
    assert_eq!(llm_usage(&t, id).await, json!([]));
    let resp = post(&t, "/v1/chat/completions", &key, "json", &chat(json!({})))
        .send()
        .await
        .unwrap();
    resp.bytes().await.unwrap();
    let resp = post(
        &t,
        "/v1/chat/completions",
        &key,
        "sse",
        &chat(json!({"stream": true})),
    )
    .send()
    .await
    .unwrap();
    resp.bytes().await.unwrap();
    // JSON: 60 input + 40 cached + 50 output = 2 300; SSE: 20 input + 7 output = 410.
    settles_to(&t, id, 2710).await;
    let want = json!([{
        "model": "gpt-test", "requests": 2, "input_tokens": 80, "cached_input_tokens": 40,
        "output_tokens": 57, "cost_usd": 0.00271
    }]);
    assert_eq!(llm_usage(&t, id).await, want, "pending, read from memory");
    t.restart().await;
    assert_eq!(
        llm_usage(&t, id).await,
        want,
        "flushed at shutdown, read from the store"
    );
}

#[tokio::test]
async fn the_concurrency_slot_is_taken_before_the_body_is_read() {
    let (t, up) = gateway("openai").await;
    let (_, k) = key(&t, json!({"concurrency_limit": 1})).await;
    // A generation whose body is still being uploaded holds the key's only slot.
    let addr = t.proxy.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {k}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"model\":"
    );
    tokio::io::AsyncWriteExt::write_all(&mut slow, head.as_bytes())
        .await
        .unwrap();
    // Another request of the key is refused at once, its body never read or forwarded.
    let refused = common::eventually(Duration::from_secs(5), || async {
        let resp = post(&t, "/v1/chat/completions", &k, "json", &chat(json!({})))
            .send()
            .await
            .unwrap();
        resp.status() == 429
    })
    .await;
    assert!(refused, "the uploading request never held the slot");
    let resp = post(&t, "/v1/chat/completions", &k, "json", &chat(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "concurrency_limit");
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    // The upload ends (the client goes away): the slot is free again.
    drop(slow);
    let freed = common::eventually(Duration::from_secs(5), || async {
        let resp = post(&t, "/v1/chat/completions", &k, "json", &chat(json!({})))
            .send()
            .await
            .unwrap();
        resp.status() == 200
    })
    .await;
    assert!(freed, "the slot was never given back");
}

#[tokio::test]
async fn a_generation_body_over_max_llm_body_is_refused_and_never_forwarded() {
    let (t, up) = gateway_with("openai", "[limits]\nmax_llm_body = \"1KiB\"\n").await;
    let (_, k) = key(&t, json!({})).await;
    let big = chat(json!({"messages": [{"role": "user", "content": "x".repeat(2048)}]}));
    // Declared by Content-Length: refused before the body is read.
    let resp = post(&t, "/v1/chat/completions", &k, "json", &big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_llm_body")
    );
    // Chunked (no length declared): cut once the cap is passed.
    let bytes = serde_json::to_vec(&big).unwrap();
    let chunks = futures_util::stream::iter(
        bytes
            .chunks(512)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let resp = t
        .client
        .post(format!("{}/v1/chat/completions", t.proxy))
        .bearer_auth(&k)
        .header("x-scenario", "json")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    // A call under the cap goes through.
    let resp = post(&t, "/v1/chat/completions", &k, "json", &chat(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.count(), 1);
}
