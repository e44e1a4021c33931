//! TLS termination on the proxy listener, with a self-signed certificate made for the test.

mod common;

use bytes::Bytes;
use common::{Options, TestGateway};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::test]
async fn proxy_listener_terminates_tls_with_alpn() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let t = TestGateway::with(Options {
        extra: format!(
            "[listen.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert_path.display(),
            key_path.display()
        ),
        ..Options::default()
    })
    .await;
    let (_, key) = t.rw_key().await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let port = t.gw().proxy_addr.port();
    let req = http::Request::get(format!("https://localhost:{port}/secure"))
        .header("authorization", format!("Bearer {key}"))
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2, "ALPN negotiated h2");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["path"], "/secure");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn https_upstream_with_a_private_ca_speaks_h2() {
    use std::net::SocketAddr;
    // The upstream: the echo server behind TLS, offering h2 and http/1.1.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&ca_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let files = tollgate::config::model::TlsFiles {
        cert: ca_path.clone(),
        key: key_path,
    };
    let acceptor = tollgate::proxy::tls::acceptor(&files).unwrap();
    let echo =
        tollgate::echo::spawn_with_tls(SocketAddr::from(([127, 0, 0, 1], 0)), Some(acceptor))
            .await
            .unwrap();
    let t = TestGateway::with(Options {
        upstream_url: Some(format!("https://localhost:{}/base", echo.addr.port())),
        upstream_extra: format!("ca_file = \"{}\"", ca_path.display()),
        ..Options::default()
    })
    .await;
    let (_, key) = t.rw_key().await;
    let resp = t
        .client
        .get(format!("{}/v1/models", t.proxy))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo_json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        echo_json["version"], "HTTP/2.0",
        "ALPN picked h2 to the upstream"
    );
    assert_eq!(echo_json["path"], "/base/v1/models", "base path prefixed");
    assert!(echo_json["headers"].get("authorization").is_none());

    // Without the private CA the upstream's certificate is refused: 502, never plaintext.
    let t = TestGateway::with(Options {
        upstream_url: Some(format!("https://localhost:{}/", echo.addr.port())),
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
    assert_eq!(common::denial(resp, 502).await, "upstream_unavailable");
}
