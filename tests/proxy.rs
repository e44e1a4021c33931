//! End-to-end tests of the data plane: a real gateway on ephemeral ports in front of the real
//! echo upstream, driven over HTTP.

mod common;

use common::{Options, TestGateway, denial};
use serde_json::{Value, json};
use tollgate::domain::ip::IpAllowList;
use tollgate::domain::key::KeyLimits;
use tollgate::domain::permission::{Permission, PermissionSet};
use tollgate::manage::{KeyKind, NewKey};
use tollgate::store::KeyChange;

async fn echo_json(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("echo json")
}

#[tokio::test]
async fn good_call_is_forwarded_with_credential_stripped() {
    let t = TestGateway::start().await;
    let (_, key) = t.rw_key().await;
    let resp = t
        .client
        .post(format!("{}/v1/things/./x?y=1", t.proxy))
        .bearer_auth(&key)
        .header("x-api-key", "also-secret")
        .header("x-request-id", "client-chosen-1")
        .header("x-forwarded-for", "6.6.6.6")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-chosen-1");
    let echo = echo_json(resp).await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/v1/things/x", "normalised path is forwarded");
    assert_eq!(echo["query"], "y=1");
    assert_eq!(echo["body_bytes"], 5);
    let headers = echo["headers"].as_object().unwrap();
    assert!(!headers.contains_key("authorization"), "{headers:?}");
    assert!(!headers.contains_key("x-api-key"));
    assert_eq!(headers["x-request-id"], "client-chosen-1");
    // The peer is not a trusted proxy, so the forged chain is replaced by the peer.
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert!(!echo.to_string().contains(&key), "key leaked upstream");
}

#[tokio::test]
async fn every_credential_form_is_accepted() {
    let t = TestGateway::start().await;
    let (_, key) = t.rw_key().await;
    for (name, value) in [
        ("authorization", format!("Bearer {key}")),
        ("x-api-key", key.clone()),
        ("x-APIKey", key.clone()),
    ] {
        let resp = t
            .client
            .get(format!("{}/a", t.proxy))
            .header(name, value)
            .send()
            .await
            .unwrap();
        let echo = echo_json(resp).await;
        assert!(!echo.to_string().contains(&key), "{name} leaked");
    }
    // Gateway3 pair through HTTP Basic.
    let m = &t.gw().manager;
    let account = m.default_account(t.partner_id).await.unwrap();
    let pair = m
        .create_key(NewKey {
            account_id: account.id,
            partner_id: t.partner_id,
            name: Some("pair".into()),
            label: None,
            description: None,
            permissions: PermissionSet::from_slice(&[Permission::Read]),
            ip_whitelist: IpAllowList::default(),
            expiration_date: None,
            limits: KeyLimits::default(),
            kind: KeyKind::Pair,
            created_by: "test".into(),
        })
        .await
        .unwrap();
    let access_key = pair.key.credential.access_key().unwrap().to_string();
    let resp = t
        .client
        .get(format!("{}/a", t.proxy))
        .basic_auth(&access_key, Some(&pair.secret))
        .send()
        .await
        .unwrap();
    let echo = echo_json(resp).await;
    assert!(
        !echo["headers"]
            .as_object()
            .unwrap()
            .contains_key("authorization")
    );
    let resp = t
        .client
        .get(format!("{}/a", t.proxy))
        .basic_auth(&access_key, Some("wrong-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(denial(resp, 401).await, "invalid_key");
}

#[tokio::test]
async fn rejection_table() {
    let mut opts = Options {
        fake_clock: true,
        ..Options::default()
    };
    opts.extra = "[limits]\nmax_request_body = \"1KiB\"\n".into();
    let t = TestGateway::with(opts).await;
    let url = format!("{}/thing", t.proxy);
    let get = |key: &str| t.client.get(&url).bearer_auth(key).send();

    // missing_credentials
    let resp = t.client.get(&url).send().await.unwrap();
    assert_eq!(denial(resp, 401).await, "missing_credentials");
    // invalid_key: unknown, and malformed
    assert_eq!(
        denial(get("cr_nope").await.unwrap(), 401).await,
        "invalid_key"
    );
    let resp = t
        .client
        .get(&url)
        .header("authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    assert_eq!(denial(resp, 401).await, "invalid_key");

    // permission_denied: a read-only key cannot POST
    let (_, ro) = t.create_key(json!({"permissions": ["read"]})).await;
    assert_eq!(get(&ro).await.unwrap().status(), 200);
    let resp = t.client.post(&url).bearer_auth(&ro).send().await.unwrap();
    assert_eq!(denial(resp, 403).await, "permission_denied");

    // ip_not_allowed: the test client is 127.0.0.1
    let (_, fenced) = t.create_key(json!({"ip_whitelist": ["10.0.0.0/8"]})).await;
    assert_eq!(
        denial(get(&fenced).await.unwrap(), 403).await,
        "ip_not_allowed"
    );

    // key_expired: expires tomorrow, then the fake clock moves two days on
    let (_, expiring) = t.create_key(json!({"expiration_date": "2026-11-24"})).await;
    assert_eq!(get(&expiring).await.unwrap().status(), 200);

    // key_disabled and key_revoked
    let (id, disabled) = t.rw_key().await;
    assert_eq!(
        t.reseller_post(&format!("/keys/{id}/disable"))
            .await
            .status(),
        200
    );
    assert_eq!(
        denial(get(&disabled).await.unwrap(), 403).await,
        "key_disabled"
    );
    let (id, revoked) = t.rw_key().await;
    let change = KeyChange::Revoke {
        at: common::T0,
        by: "test".into(),
    };
    t.gw()
        .manager
        .change_key(id.parse().unwrap(), change)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        denial(get(&revoked).await.unwrap(), 403).await,
        "key_revoked"
    );

    // bad_request: an encoded slash is ambiguous and never reaches the upstream
    let (_, rw) = t.rw_key().await;
    let resp = t
        .client
        .get(format!("{}/a%2Fb", t.proxy))
        .bearer_auth(&rw)
        .send()
        .await
        .unwrap();
    assert_eq!(denial(resp, 400).await, "bad_request");
    let resp = t
        .client
        .get(format!("{}/../etc", t.proxy))
        .bearer_auth(&rw)
        .send()
        .await;
    // reqwest may normalise `..` itself; if it was sent, it must not be forwarded above root.
    if let Ok(resp) = resp
        && resp.status() == 200
    {
        let echo: Value = resp.json().await.unwrap();
        assert_eq!(echo["path"], "/etc");
    }

    // payload_too_large: declared length, and a chunked body that grows past the limit
    let resp = t
        .client
        .post(&url)
        .bearer_auth(&rw)
        .body(vec![0u8; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(denial(resp, 413).await, "payload_too_large");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(vec![1u8; 512])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let resp = t
        .client
        .post(&url)
        .bearer_auth(&rw)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(denial(resp, 413).await, "payload_too_large");

    // Now expire the key: two days later.
    t.clock.as_ref().unwrap().advance(2 * 86_400);
    assert_eq!(
        denial(get(&expiring).await.unwrap(), 403).await,
        "key_expired"
    );
}

#[tokio::test]
async fn upstream_failures_are_502_and_504() {
    // Nothing listens on the port of a listener we bound and dropped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = TestGateway::with(Options {
        upstream_url: Some(format!("http://127.0.0.1:{port}")),
        ..Options::default()
    })
    .await;
    let (_, key) = t.rw_key().await;
    let resp = t
        .client
        .get(format!("{}/x", t.proxy))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(denial(resp, 502).await, "upstream_unavailable");

    let t = TestGateway::with(Options {
        upstream_extra: "response_timeout = \"200ms\"".into(),
        ..Options::default()
    })
    .await;
    let (_, key) = t.rw_key().await;
    let resp = t
        .client
        .get(format!("{}/x?echo_delay_ms=3000", t.proxy))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(denial(resp, 504).await, "upstream_unavailable");
    let metrics = t
        .client
        .get(format!("{}/metrics", t.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"tollgate_upstream_errors_total{kind="timeout"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn disabled_key_is_refused_on_the_very_next_request() {
    let t = TestGateway::start().await;
    let (id, key) = t.rw_key().await;
    let url = format!("{}/x", t.proxy);
    for round in 0..3 {
        assert_eq!(
            t.client
                .get(&url)
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "round {round}"
        );
        let resp = t.reseller_post(&format!("/keys/{id}/disable")).await;
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["data"]["disabled"], true);
        let resp = t.client.get(&url).bearer_auth(&key).send().await.unwrap();
        assert_eq!(denial(resp, 403).await, "key_disabled");
        assert_eq!(
            t.reseller_post(&format!("/keys/{id}/enable"))
                .await
                .status(),
            200
        );
    }
}

/// Each connection remembers the digest of the last credential it presented: keys that take
/// turns on one keep-alive connection are each looked up and checked, and a wrong key or a
/// disabled one is refused between two good requests.
#[tokio::test]
async fn keys_taking_turns_on_one_connection_are_each_checked() {
    let t = TestGateway::start().await;
    let (_, a) = t.rw_key().await;
    let (b_id, b) = t.rw_key().await;
    // One raw connection, so every request is certainly on the same one.
    let mut conn = KeepAlive::open(&t).await;
    assert_eq!(conn.get(&a).await, (200, String::new()));
    assert_eq!(conn.get(&b).await, (200, String::new()));
    let last = if a.ends_with('x') { 'y' } else { 'x' };
    let wrong = format!("{}{last}", &a[..a.len() - 1]);
    assert_eq!(conn.get(&wrong).await.1, "invalid_key");
    assert_eq!(conn.get(&a).await.0, 200);
    t.reseller_post(&format!("/keys/{b_id}/disable")).await;
    assert_eq!(conn.get(&b).await, (403, "key_disabled".to_string()));
    assert_eq!(conn.get(&a).await.0, 200);
    assert_eq!(conn.get(&b).await, (403, "key_disabled".to_string()));
}

/// One keep-alive HTTP/1.1 connection to the proxy, read with `Content-Length` framing.
struct KeepAlive(tokio::io::BufReader<tokio::net::TcpStream>);

impl KeepAlive {
    async fn open(t: &TestGateway) -> Self {
        let conn = tokio::net::TcpStream::connect(t.gw().proxy_addr)
            .await
            .unwrap();
        KeepAlive(tokio::io::BufReader::new(conn))
    }

    /// `GET /x` with `key`: the status and the denial code ("" when allowed).
    async fn get(&mut self, key: &str) -> (u16, String) {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let request = format!("GET /x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n\r\n");
        self.0
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let (mut status, mut length) = (0, 0);
        loop {
            let mut line = String::new();
            assert!(
                self.0.read_line(&mut line).await.unwrap() > 0,
                "connection kept"
            );
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(rest) = line.strip_prefix("HTTP/1.1 ") {
                status = rest[..3].parse().unwrap();
            } else if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.0.read_exact(&mut body).await.unwrap();
        let code = match status {
            200 => String::new(),
            _ => serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"]
                .as_str()
                .unwrap()
                .to_string(),
        };
        (status, code)
    }
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    let body = json!({"ip_whitelist": ["203.0.113.0/24"]});
    // Untrusted peer: the header is ignored, the socket peer (127.0.0.1) is not allowed.
    let t = TestGateway::start().await;
    let (_, key) = t.create_key(body.clone()).await;
    let resp = t
        .client
        .get(format!("{}/x", t.proxy))
        .bearer_auth(&key)
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(denial(resp, 403).await, "ip_not_allowed");

    // Trusted peer: the first untrusted hop from the right is the client.
    let t = TestGateway::with(Options {
        extra: "[security]\ntrusted_proxies = [\"127.0.0.1\"]\n".into(),
        ..Options::default()
    })
    .await;
    let (_, key) = t.create_key(body).await;
    let resp = t
        .client
        .get(format!("{}/x", t.proxy))
        .bearer_auth(&key)
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.7")
        .send()
        .await
        .unwrap();
    let echo = echo_json(resp).await;
    assert_eq!(
        echo["headers"]["x-forwarded-for"],
        "198.51.100.1, 203.0.113.7, 127.0.0.1"
    );
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let t = TestGateway::start().await;
    let (_, key) = t.rw_key().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/h2", t.proxy))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let echo = echo_json(resp).await;
    assert_eq!(echo["path"], "/h2");
    let resp = client.get(format!("{}/h2", t.proxy)).send().await.unwrap();
    assert_eq!(denial(resp, 401).await, "missing_credentials");
}

#[tokio::test]
async fn metrics_count_outcomes_and_last_used_is_flushed() {
    let mut t = TestGateway::start().await;
    let (id, key) = t.rw_key().await;
    t.client
        .get(format!("{}/x", t.proxy))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    t.client.get(format!("{}/x", t.proxy)).send().await.unwrap();
    let metrics = t
        .client
        .get(format!("{}/metrics", t.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"tollgate_requests_total{code="ok"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"tollgate_requests_total{code="missing_credentials"} 1"#));
    assert!(metrics.contains("tollgate_keys_loaded 1"));
    let resp = t
        .client
        .get(format!("{}/api/v1/reseller/keys/{id}", t.api))
        .bearer_auth(&t.partner_token)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert!(body["data"]["last_used_at"].is_string(), "{body}");
    // After shutdown the flushed value is in the store.
    let store = t.gw().manager.store.clone();
    t.shutdown().await;
    let stored = store.get_key(id.parse().unwrap()).await.unwrap().unwrap();
    assert!(stored.last_used_at.is_some());
}

#[tokio::test]
async fn healthz_and_readyz() {
    let t = TestGateway::start().await;
    for path in ["/healthz", "/readyz"] {
        let resp = t
            .client
            .get(format!("{}{path}", t.api))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    // Nothing of the management surface is mounted on the proxy listener.
    let resp = t
        .client
        .get(format!("{}/metrics", t.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(denial(resp, 401).await, "missing_credentials");
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let mut t = TestGateway::start().await;
    let (_, key) = t.rw_key().await;
    let slow = {
        let client = t.client.clone();
        let url = format!("{}/slow?echo_delay_ms=300", t.proxy);
        let key = key.clone();
        tokio::spawn(async move { client.get(url).bearer_auth(key).send().await })
    };
    // Wait until the request is in flight (the access log is not observable; the key's
    // last_used is, and it is marked at admission).
    let manager = t.gw().manager.clone();
    let in_flight = common::eventually(std::time::Duration::from_secs(5), || {
        let m = manager.clone();
        async move { m.index.take_used().len() == 1 }
    })
    .await;
    assert!(in_flight);
    t.shutdown().await;
    let resp = slow.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    // And the listener is closed afterwards.
    assert!(t.client.get(format!("{}/x", t.proxy)).send().await.is_err());
}

#[tokio::test]
async fn malformed_http_never_reaches_the_upstream_nor_breaks_the_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestGateway::start().await;
    let (_, key) = t.rw_key().await;
    let addr = t.gw().proxy_addr;
    let garbage: [&[u8]; 4] = [
        b"GARBAGE\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
        b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for raw in garbage {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(raw).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            conn.read_to_end(&mut buf),
        )
        .await;
        let text = String::from_utf8_lossy(&buf);
        assert!(!text.starts_with("HTTP/1.1 200"), "{text}");
    }
    // Oversized headers are refused too.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let big = format!(
        "GET /x HTTP/1.1\r\nHost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let _ = conn.write_all(big.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        conn.read_to_end(&mut buf),
    )
    .await;
    assert!(!String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));

    // The upstream saw none of it: the only request it answers next is the good one.
    let resp = t
        .client
        .get(format!("{}/after", t.proxy))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let metrics = t
        .client
        .get(format!("{}/metrics", t.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"tollgate_requests_total{code="ok"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn slow_uploads_are_not_cut_by_the_response_timeout() {
    let t = TestGateway::with(Options {
        upstream_extra: "response_timeout = \"300ms\"".into(),
        ..Options::default()
    })
    .await;
    let (_, key) = t.rw_key().await;
    // A client that needs ~800 ms to upload: the response deadline starts after the upload.
    let chunks = futures_util::stream::unfold(0u32, |i| async move {
        if i == 8 {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        Some((Ok::<_, std::io::Error>(vec![b'a'; 1000]), i + 1))
    });
    let resp = t
        .client
        .post(format!("{}/slow-upload", t.proxy))
        .bearer_auth(&key)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let echo = echo_json(resp).await;
    assert_eq!(echo["body_bytes"], 8000);
}

#[tokio::test]
async fn clients_cannot_spoof_their_address_through_other_headers() {
    let t = TestGateway::start().await;
    let (_, key) = t.rw_key().await;
    let resp = t
        .client
        .get(format!("{}/x", t.proxy))
        .bearer_auth(&key)
        .header("x-real-ip", "10.0.0.1")
        .header("forwarded", "for=10.0.0.1")
        .header("x_forwarded_for", "10.0.0.1")
        .header("x-forwarded-port", "1")
        .send()
        .await
        .unwrap();
    let echo = echo_json(resp).await;
    let headers = echo["headers"].as_object().unwrap();
    assert_eq!(headers["x-real-ip"], "127.0.0.1");
    assert!(!headers.contains_key("forwarded"));
    assert!(!headers.contains_key("x_forwarded_for"));
    assert!(!headers.contains_key("x-forwarded-port"));
}

#[tokio::test]
async fn silent_and_slow_connections_are_closed_and_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestGateway::with(Options {
        extra: "[limits]\nheader_read_timeout = \"300ms\"\nmax_connections = 2\n".into(),
        ..Options::default()
    })
    .await;
    let (_, key) = t.rw_key().await;
    let addr = t.gw().proxy_addr;
    // Two connections that never finish a request head take both slots...
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    // ...and both are closed by the header timeout (read returns EOF or a 408, never hangs).
    for conn in [&mut silent, &mut slow] {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            conn.read_to_end(&mut buf),
        )
        .await;
        assert!(read.is_ok(), "connection was not closed");
    }
    // The slots are free again: a real client is served.
    let resp = t
        .client
        .get(format!("{}/x", t.proxy))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// The header timeout counts from the end of the last response on a keep-alive connection:
/// a client that sends a request every half timeout is served for several timeouts in all,
/// and the connection closes once it falls silent.
#[tokio::test]
async fn the_header_timeout_restarts_with_each_request_on_a_connection() {
    use tokio::io::AsyncReadExt;
    let timeout = std::time::Duration::from_millis(300);
    let t = TestGateway::with(Options {
        extra: "[limits]\nheader_read_timeout = \"300ms\"\n".into(),
        ..Options::default()
    })
    .await;
    let (_, key) = t.rw_key().await;
    let mut conn = KeepAlive::open(&t).await;
    for _ in 0..6 {
        assert_eq!(conn.get(&key).await.0, 200);
        // Pacing the client (not waiting for the gateway's state): half a timeout of silence.
        tokio::time::sleep(timeout / 2).await;
    }
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.0.read_to_end(&mut rest),
    )
    .await;
    assert!(read.is_ok(), "a silent keep-alive connection is closed");
}

#[tokio::test]
async fn a_get_with_a_chunked_body_keeps_its_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestGateway::start().await;
    let (_, key) = t.rw_key().await;
    // Raw bytes: HTTP clients themselves tend to drop a GET body of unknown length.
    let mut conn = tokio::net::TcpStream::connect(t.gw().proxy_addr)
        .await
        .unwrap();
    let req = format!(
        "GET /search HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {key}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{{\"q\":\r\n2\r\n1}}\r\n0\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"body_bytes\":7"), "{text}");
}

/// A raw connection that has sent the head of `POST /upload` declaring `declared` body bytes,
/// and the first of them.
async fn raw_upload(
    t: &TestGateway,
    key: &str,
    declared: usize,
    first: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut conn = tokio::net::TcpStream::connect(t.gw().proxy_addr)
        .await
        .unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {key}\r\n\
         Content-Length: {declared}\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(first).await.unwrap();
    conn
}

/// A body trickled in (20 B/s against a minimum of 100 B/s) is cut with 408 once the grace is
/// spent, the key's slot is free again and the cut is counted; an honest upload on the same
/// gateway goes through.
#[tokio::test]
async fn a_trickled_upload_is_cut_with_408_and_frees_the_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestGateway::with(Options {
        extra: "[limits]\nbody_idle_timeout = \"5s\"\nbody_min_rate = 100\n\
                body_rate_grace = \"300ms\"\n"
            .into(),
        ..Options::default()
    })
    .await;
    let (id, key) = t
        .create_key(json!({"permissions": ["read", "write"], "concurrency_limit": 1}))
        .await;
    let mut conn = raw_upload(&t, &key, 10_000, b"").await;
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = loop {
        // One byte every 50 ms, each well within the idle timeout.
        tokio::select! {
            read = conn.read(&mut buf) => break read.unwrap(),
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {
                if conn.write_all(b"x").await.is_err() {
                    break conn.read(&mut buf).await.unwrap_or(0);
                }
            }
        }
        assert!(
            started.elapsed().as_secs() < 10,
            "the trickle was never cut"
        );
    };
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(text.contains("body_min_rate"), "{text}");
    let entry = t.gw().manager.index.get(id.parse().unwrap()).unwrap();
    assert_eq!(entry.live.in_flight.current(), 0, "the slot is free again");
    let metrics = common::metrics_text(&t).await;
    let cut = r#"tollgate_requests_total{code="request_timeout"}"#;
    assert_eq!(common::metric_value(&metrics, cut), Some(1.0), "{metrics}");
    // The same gateway takes an honest upload of the same size.
    let resp = t
        .client
        .post(format!("{}/upload", t.proxy))
        .bearer_auth(&key)
        .body(vec![b'y'; 10_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_stalled_upload_is_cut_and_never_completes_upstream() {
    use tokio::io::AsyncReadExt;
    let t = TestGateway::with(Options {
        extra: "[limits]\nbody_idle_timeout = \"300ms\"\n".into(),
        ..Options::default()
    })
    .await;
    let (id, key) = t
        .create_key(json!({"permissions": ["read", "write"], "concurrency_limit": 5}))
        .await;
    // Declares 1000 bytes, sends 10 (or none: the body's first read already waits), then goes
    // silent (but keeps the connection open).
    for first in [&b"0123456789"[..], b""] {
        let mut conn = raw_upload(&t, &key, 1000, first).await;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("the gateway answers instead of waiting forever")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(text.contains("stalled"), "{text}");
        // The key's concurrency slot and reservations are released.
        let entry = t.gw().manager.index.get(id.parse().unwrap()).unwrap();
        assert_eq!(entry.live.in_flight.current(), 0);
    }
}

/// Sends `raw` on a new connection to the proxy and reads the answer (the gateway closes the
/// connection after it).
async fn raw_exchange(t: &TestGateway, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(t.gw().proxy_addr)
        .await
        .unwrap();
    conn.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "the gateway answers and closes");
    String::from_utf8_lossy(&buf).into_owned()
}

/// A chunk whose declared size passes `limits.max_request_body` is refused with 413 before the
/// upstream is called (the first chunk) or as soon as it is declared (a later one), the slot is
/// freed, and a chunk size too big for 64 bits is the same 413.
#[tokio::test]
async fn a_chunk_declaring_more_than_the_body_limit_is_refused_before_forwarding() {
    // An upstream that only records whether anyone connected.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let t = TestGateway::with(Options {
        upstream_url: Some(format!("http://{}", upstream.local_addr().unwrap())),
        extra: "[limits]\nmax_request_body = 1024\n".into(),
        ..Options::default()
    })
    .await;
    let (id, key) = t
        .create_key(json!({"permissions": ["read", "write"], "concurrency_limit": 1}))
        .await;
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {key}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    for size in ["ffffffffffffffff", "10000000000000005", "401"] {
        let raw = format!("{head}{size}\r\nsome bytes of the chunk");
        let text = raw_exchange(&t, raw.as_bytes()).await;
        assert!(text.starts_with("HTTP/1.1 413"), "{size}: {text}");
        assert!(text.contains("payload_too_large"), "{text}");
    }
    let connected = tokio::time::timeout(std::time::Duration::ZERO, upstream.accept()).await;
    assert!(connected.is_err(), "the upstream was never called");
    let entry = t.gw().manager.index.get(id.parse().unwrap()).unwrap();
    assert_eq!(entry.live.in_flight.current(), 0, "the slot is free again");
    let metrics = common::metrics_text(&t).await;
    let refused = r#"tollgate_requests_total{code="payload_too_large"}"#;
    assert_eq!(
        common::metric_value(&metrics, refused),
        Some(3.0),
        "{metrics}"
    );
}

/// A later chunk that takes the declared total past the limit cuts the upload there: the
/// client gets 413 and the upstream never sees the request complete.
#[tokio::test]
async fn a_later_chunk_passing_the_limit_cuts_the_upload() {
    let t = TestGateway::with(Options {
        extra: "[limits]\nmax_request_body = 1024\n".into(),
        ..Options::default()
    })
    .await;
    let (id, key) = t
        .create_key(json!({"permissions": ["read", "write"], "concurrency_limit": 1}))
        .await;
    let raw = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {key}\r\n\
         Transfer-Encoding: chunked\r\n\r\n200\r\n{}\r\n201\r\nmore",
        "x".repeat(0x200)
    );
    let text = raw_exchange(&t, raw.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let entry = t.gw().manager.index.get(id.parse().unwrap()).unwrap();
    assert_eq!(entry.live.in_flight.current(), 0, "the slot is free again");
    // The same sizes within the limit go through, on a connection kept alive.
    let ok = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {key}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n200\r\n{x}\r\n200\r\n{x}\r\n0\r\n\r\n",
        x = "x".repeat(0x200)
    );
    let text = raw_exchange(&t, ok.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"body_bytes\":1024"), "{text}");
}
