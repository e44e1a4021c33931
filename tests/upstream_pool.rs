//! The cleartext upstream pool, against a raw TCP upstream that counts its connections: pooled
//! connections are reused, one the upstream closed is replaced without failing the request,
//! bodiless answers keep their connection, and idle connections are closed after
//! `upstream.pool_idle_timeout`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Options, TestGateway, eventually, metric_value, metrics_text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

/// How the raw upstream treats a connection after answering.
#[derive(Clone, Copy)]
enum After {
    /// Keep it open for the next request.
    KeepAlive,
    /// Answer with `connection: close` and close.
    Announce,
    /// Keep it open until the test says to close it, then close it without a word (as an
    /// upstream whose keep-alive timeout ran out does).
    CloseWhenTold,
}

/// A raw HTTP/1.1 upstream: answers `GET` with `ok`, `HEAD` and `/empty` without a body, and
/// `POST` with the length of the body it read.
struct RawUpstream {
    url: String,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    /// One message per connection the upstream closed (after its answer).
    closed: mpsc::UnboundedReceiver<()>,
    /// Closes a connection waiting in `After::CloseWhenTold`.
    close: Arc<Notify>,
}

async fn raw_upstream(after: After) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (accepted, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let close = Arc::new(Notify::new());
    let (acc, opn, cls) = (accepted.clone(), open.clone(), close.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            acc.fetch_add(1, Ordering::SeqCst);
            opn.fetch_add(1, Ordering::SeqCst);
            let (opn, closed_tx, cls) = (opn.clone(), closed_tx.clone(), cls.clone());
            tokio::spawn(async move {
                serve_conn(stream, after, &cls).await;
                opn.fetch_sub(1, Ordering::SeqCst);
                let _ = closed_tx.send(());
            });
        }
    });
    RawUpstream {
        url,
        accepted,
        open,
        closed,
        close,
    }
}

async fn serve_conn(mut stream: TcpStream, after: After, close: &Notify) {
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let announce = if let After::Announce = after {
            "connection: close\r\n"
        } else {
            ""
        };
        let answer = if head.starts_with("HEAD ") {
            format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{announce}\r\n")
        } else if head.starts_with("GET /empty ") {
            format!("HTTP/1.1 204 No Content\r\n{announce}\r\n")
        } else if head.starts_with("POST ") {
            let Some(len) = read_body(&mut stream, &mut buf, &head).await else {
                return;
            };
            let text = len.to_string();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{announce}\r\n{text}",
                text.len()
            )
        } else {
            format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{announce}\r\nok")
        };
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        if let After::Announce = after {
            return;
        }
        if let After::CloseWhenTold = after {
            close.notified().await;
            return;
        }
    }
}

/// Reads the `content-length` body of a request whose head was read; returns its length.
async fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>, head: &str) -> Option<usize> {
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(str::to_owned)
        })?
        .trim()
        .parse()
        .ok()?;
    while buf.len() < len {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf.drain(..len);
    Some(len)
}

/// Reads one request head.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Waits (up to 10 s) for the upstream to close a connection.
async fn closed_within(up: &mut RawUpstream) {
    tokio::time::timeout(Duration::from_secs(10), up.closed.recv())
        .await
        .expect("the connection was not closed")
        .expect("upstream running");
}

/// Polls `/metrics` until `tollgate_upstream_idle_connections` is `n` (up to 10 s).
async fn idle_gauge_reaches(t: &TestGateway, n: f64) -> bool {
    eventually(Duration::from_secs(10), || async {
        let text = metrics_text(t).await;
        metric_value(&text, "tollgate_upstream_idle_connections") == Some(n)
    })
    .await
}

async fn gateway_before(upstream: &RawUpstream, upstream_extra: &str) -> (TestGateway, String) {
    let t = TestGateway::with(Options {
        upstream_url: Some(upstream.url.clone()),
        upstream_extra: upstream_extra.into(),
        ..Default::default()
    })
    .await;
    let (_, key) = t.rw_key().await;
    (t, key)
}

async fn get(t: &TestGateway, key: &str, path: &str) -> reqwest::Response {
    t.client
        .get(format!("{}{path}", t.proxy))
        .bearer_auth(key)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let up = raw_upstream(After::KeepAlive).await;
    let (t, key) = gateway_before(&up, "").await;
    for _ in 0..20 {
        let resp = get(&t, &key, "/a").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "ok");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bodiless_answers_keep_their_connection() {
    let up = raw_upstream(After::KeepAlive).await;
    let (t, key) = gateway_before(&up, "").await;
    for _ in 0..5 {
        assert_eq!(get(&t, &key, "/empty").await.status(), 204);
        let head = t
            .client
            .head(format!("{}/a", t.proxy))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 200);
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_replaced_without_failing_the_request() {
    let mut up = raw_upstream(After::CloseWhenTold).await;
    let (t, key) = gateway_before(&up, "").await;
    for i in 1..=5 {
        let resp = get(&t, &key, "/a").await;
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(resp.text().await.unwrap(), "ok");
        // The upstream closes the connection Tollgate keeps pooled; the next request finds
        // it closed and goes out on a new one.
        up.close.notify_one();
        closed_within(&mut up).await;
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let up = raw_upstream(After::KeepAlive).await;
    let (t, key) = gateway_before(&up, "pool_idle_timeout = \"1s\"\n").await;
    assert_eq!(get(&t, &key, "/a").await.status(), 200);
    assert_eq!(up.open.load(Ordering::SeqCst), 1);
    assert!(
        idle_gauge_reaches(&t, 1.0).await,
        "one idle connection is reported"
    );
    let open = up.open.clone();
    let closed = eventually(Duration::from_secs(10), || {
        let open = open.clone();
        async move { open.load(Ordering::SeqCst) == 0 }
    })
    .await;
    assert!(closed, "the idle connection is still open");
    assert!(
        idle_gauge_reaches(&t, 0.0).await,
        "no idle connection is reported"
    );
    // And the next request opens a new one.
    assert_eq!(get(&t, &key, "/a").await.status(), 200);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn pool_max_idle_per_host_zero_keeps_no_connection() {
    let mut up = raw_upstream(After::KeepAlive).await;
    let (t, key) = gateway_before(&up, "pool_max_idle_per_host = 0\n").await;
    for _ in 0..3 {
        assert_eq!(get(&t, &key, "/a").await.status(), 200);
        closed_within(&mut up).await;
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn request_bodies_go_out_and_the_connection_is_reused() {
    let up = raw_upstream(After::KeepAlive).await;
    let (t, key) = gateway_before(&up, "").await;
    for len in [1usize, 1000, 100_000] {
        let resp = t
            .client
            .post(format!("{}/upload", t.proxy))
            .bearer_auth(&key)
            .body(vec![b'x'; len])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), len.to_string());
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_upstream_that_says_connection_close_gets_a_new_connection_each_time() {
    let up = raw_upstream(After::Announce).await;
    let (t, key) = gateway_before(&up, "").await;
    for _ in 0..3 {
        let resp = get(&t, &key, "/a").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "ok");
        assert_eq!(get(&t, &key, "/empty").await.status(), 204);
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn idle_connections_the_upstream_closed_are_dropped_without_waiting_for_a_request() {
    let mut up = raw_upstream(After::CloseWhenTold).await;
    // A long idle timeout: only the close can explain the connection leaving the pool.
    let (t, key) = gateway_before(&up, "pool_idle_timeout = \"60s\"\n").await;
    assert_eq!(get(&t, &key, "/a").await.status(), 200);
    assert!(
        idle_gauge_reaches(&t, 1.0).await,
        "one idle connection is reported"
    );
    up.close.notify_one();
    closed_within(&mut up).await;
    assert!(
        idle_gauge_reaches(&t, 0.0).await,
        "the closed connection is still pooled"
    );
}
