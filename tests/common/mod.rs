//! Shared helpers of the integration tests: a real gateway on ephemeral ports in front of the
//! real echo upstream, with a partner created through the same code path as the CLI.
#![allow(dead_code)]

pub mod kubo;
pub mod python;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate::config;
use tollgate::domain::clock::{Clock, FakeClock, SystemClock};
use tollgate::echo::{self, EchoServer};
use tollgate::gateway::Gateway;

/// Unix seconds of 2026-11-23 12:00:00 UTC, the fake clock's start.
pub const T0: i64 = 1_795_435_200;

/// A running gateway with its upstream and one partner.
pub struct TestGateway {
    pub gateway: Option<Gateway>,
    pub echo: EchoServer,
    pub dir: tempfile::TempDir,
    pub proxy: String,
    pub api: String,
    pub partner_id: uuid::Uuid,
    pub partner_token: String,
    pub client: reqwest::Client,
    pub clock: Option<Arc<FakeClock>>,
    /// The TOML the gateway runs on (for restarts on the same store).
    pub config_text: String,
}

/// Options of a test gateway.
#[derive(Default)]
pub struct Options {
    /// Top-level TOML placed before every table (e.g. `default_plan = 1`).
    pub top: String,
    /// Extra TOML appended after `[listen]`, `[store]` and `[upstream]` (other sections).
    pub extra: String,
    /// Extra lines inside `[upstream]`.
    pub upstream_extra: String,
    /// Upstream URL instead of the echo server.
    pub upstream_url: Option<String>,
    pub profile: Option<&'static str>,
    /// Use a fake clock starting at `T0`.
    pub fake_clock: bool,
    /// A store URL (e.g. a PostgreSQL schema's) instead of a fresh SQLite file.
    pub store_url: Option<String>,
    /// Extra lines inside `[listen]`.
    pub listen_extra: String,
}

/// The `[listen]` line choosing the HTTP/1 server from `TOLLGATE_TEST_HTTP1` (`tollgate` or
/// `hyper`; unset: the default), so the suite runs on either (`tests/run.sh` runs both).
pub fn http1_line() -> String {
    match std::env::var("TOLLGATE_TEST_HTTP1") {
        Ok(server) if !server.is_empty() => format!("http1 = \"{server}\"\n"),
        _ => String::new(),
    }
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(opts: Options) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let echo = echo::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("echo upstream");
        let upstream = opts
            .upstream_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", echo.addr));
        // Tests create many keys per partner: lift the management limits unless a test sets them.
        let management = if opts.extra.contains("[management]") {
            ""
        } else {
            "[management]\ncalls_per_minute = 100000\ncalls_per_day = 1000000\n\
             key_creations_per_hour = 100000\n"
        };
        let store = opts
            .store_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("t.db").display()));
        // Instances sharing a store sync often, so tests see each other's usage quickly.
        let sync = if opts.store_url.is_some() {
            "sync_interval = \"100ms\"\n"
        } else {
            ""
        };
        let text = format!(
            "{}\n[listen]\nproxy = \"127.0.0.1:0\"\napi = \"127.0.0.1:0\"\n{}\n\
             [store]\nurl = \"{store}\"\n{sync}\
             [upstream]\nurl = \"{upstream}\"\nprofile = \"{}\"\n{}\n{}\n{management}",
            opts.top,
            if opts.listen_extra.contains("http1") {
                opts.listen_extra.clone()
            } else {
                format!("{}{}", http1_line(), opts.listen_extra)
            },
            opts.profile.unwrap_or("generic"),
            opts.upstream_extra,
            opts.extra,
        );
        let config = config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let fake = opts.fake_clock.then(|| Arc::new(FakeClock::new(T0)));
        let clock: Arc<dyn Clock> = match &fake {
            Some(f) => f.clone(),
            None => Arc::new(SystemClock),
        };
        let gateway = Gateway::start_with_clock(&config, clock)
            .await
            .expect("gateway starts");
        let (partner, token) = gateway
            .manager
            .create_partner("acme")
            .await
            .expect("partner");
        TestGateway {
            proxy: format!("http://{}", gateway.proxy_addr),
            api: format!("http://{}", gateway.api_addr),
            gateway: Some(gateway),
            echo,
            dir,
            partner_id: partner.id,
            partner_token: token,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(4)
                .build()
                .expect("client"),
            clock: fake,
            config_text: text,
        }
    }

    /// Stops the gateway and starts it again on the same store and clock (new ports).
    pub async fn restart(&mut self) {
        self.shutdown().await;
        let config = config::parse(&self.config_text, &|_| None).expect("config");
        let clock: Arc<dyn Clock> = match &self.clock {
            Some(f) => f.clone(),
            None => Arc::new(SystemClock),
        };
        let gateway = Gateway::start_with_clock(&config, clock)
            .await
            .expect("gateway restarts");
        self.proxy = format!("http://{}", gateway.proxy_addr);
        self.api = format!("http://{}", gateway.api_addr);
        self.gateway = Some(gateway);
    }

    /// A second instance on the same (shared) store and upstream, with the same partner.
    pub async fn beside(&self) -> TestGateway {
        let config = config::parse(&self.config_text, &|_| None).expect("config");
        let gateway = Gateway::start(&config)
            .await
            .expect("second instance starts");
        TestGateway {
            proxy: format!("http://{}", gateway.proxy_addr),
            api: format!("http://{}", gateway.api_addr),
            gateway: Some(gateway),
            echo: echo::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .expect("echo upstream"),
            dir: tempfile::tempdir().expect("temp dir"),
            partner_id: self.partner_id,
            partner_token: self.partner_token.clone(),
            client: self.client.clone(),
            clock: None,
            config_text: self.config_text.clone(),
        }
    }

    pub fn gw(&self) -> &Gateway {
        self.gateway.as_ref().expect("running")
    }

    /// Creates a key through the reseller API; returns (id, api_key).
    pub async fn create_key(&self, body: Value) -> (String, String) {
        let resp = self
            .client
            .post(format!("{}/api/v1/reseller/keys", self.api))
            .bearer_auth(&self.partner_token)
            .json(&body)
            .send()
            .await
            .expect("create key");
        let status = resp.status();
        let json: Value = resp.json().await.expect("json");
        assert_eq!(status, 200, "{json}");
        (
            json["data"]["id"].as_str().expect("id").to_string(),
            json["data"]["api_key"]
                .as_str()
                .expect("api_key")
                .to_string(),
        )
    }

    /// A key with read and write and nothing else.
    pub async fn rw_key(&self) -> (String, String) {
        self.create_key(serde_json::json!({"description": "t", "permissions": ["read", "write"]}))
            .await
    }

    /// GETs a management path (`/api/...`) with the partner token; asserts 200, returns the
    /// JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let resp = self
            .client
            .get(format!("{}{path}", self.api))
            .bearer_auth(&self.partner_token)
            .send()
            .await
            .expect("management call");
        assert_eq!(resp.status(), 200, "{path}");
        resp.json().await.expect("json")
    }

    /// POSTs `body` to a Gateway3 partner path (`/api/v0/partner/user/{path}`) with the
    /// partner token; asserts 200, returns the JSON envelope.
    pub async fn v0_partner_post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .client
            .post(format!("{}/api/v0/partner/user/{path}", self.api))
            .bearer_auth(&self.partner_token)
            .json(&body)
            .send()
            .await
            .expect("v0 call");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).expect("json")
    }

    /// POSTs to a reseller path with the partner token.
    pub async fn reseller_post(&self, path: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/reseller{path}", self.api))
            .bearer_auth(&self.partner_token)
            .send()
            .await
            .expect("reseller call")
    }

    /// Credits the partner's balance with `micros` micro-USD.
    pub async fn top_up(&self, micros: i64) {
        self.gw()
            .manager
            .top_up(self.partner_id, micros)
            .await
            .expect("top up")
            .expect("partner exists");
    }

    pub async fn shutdown(&mut self) {
        if let Some(gw) = self.gateway.take() {
            gw.shutdown().await;
        }
    }
}

/// The `code` of a JSON denial, after checking the status.
/// A `[[routes]]` rule making every request on every path cost `usd` (and need `read`).
pub fn cost_route(usd: &str) -> String {
    format!("[[routes]]\npath = \"/*\"\npermission = \"read\"\ncost_usd = \"{usd}\"\n")
}

pub async fn denial(resp: reqwest::Response, status: u16) -> String {
    assert_eq!(resp.status().as_u16(), status, "unexpected status");
    assert!(resp.headers().contains_key("x-request-id"));
    let json: Value = resp.json().await.expect("json error body");
    json["error"]["code"].as_str().expect("code").to_string()
}

/// The text of `/metrics` on the api listener.
pub async fn metrics_text(t: &TestGateway) -> String {
    t.client
        .get(format!("{}/metrics", t.api))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of one sample of `/metrics` text, by its exact series name and labels.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls `cond` until it is true or `deadline` passes.
pub async fn eventually<F, Fut>(deadline: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
