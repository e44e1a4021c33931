//! The per-core shape (`listen.proxy_cores`): every thread serves connections from the one
//! address, the shared meter counts every request exactly once, and the threads end with the
//! gateway. The only gateway of this test binary, so the threads counted are its own.

mod common;

use std::time::{Duration, Instant};

use common::{Options, TestGateway, metric_value, metrics_text};
use serde_json::json;

/// The per-core proxy threads of this process (`tg-proxy-<i>`).
fn proxy_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("tg-proxy-"))
        .count()
}

#[tokio::test]
async fn per_core_threads_serve_every_connection_and_stop_with_the_gateway() {
    let mut t = TestGateway::with(Options {
        listen_extra: "proxy_cores = 2".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(proxy_threads(), 2);
    let (_, key) = t.create_key(json!({})).await;
    // 48 clients, each on a connection of its own (the kernel spreads them over the sockets).
    let clients: Vec<_> = (0..48)
        .map(|_| {
            let (url, key) = (format!("{}/anything", t.proxy), key.clone());
            tokio::spawn(async move {
                let c = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                for _ in 0..5 {
                    let resp = c.get(&url).bearer_auth(&key).send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let refused = t
        .client
        .get(format!("{}/anything", t.proxy))
        .bearer_auth("cr_not_a_key")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let text = metrics_text(&t).await;
    assert_eq!(
        metric_value(&text, r#"tollgate_requests_total{code="ok"}"#),
        Some(240.0)
    );
    assert_eq!(
        metric_value(&text, r#"tollgate_requests_total{code="invalid_key"}"#),
        Some(1.0)
    );
    let addr = t.gw().proxy_addr;
    t.shutdown().await;
    let start = Instant::now();
    while proxy_threads() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "threads outlived the gateway"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}
