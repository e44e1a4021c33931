//! Durability of usage counters with the real binary: SIGTERM loses nothing, `kill -9` loses
//! at most one flush interval, and after a restart the counters of the current windows are
//! loaded back (a daily budget spent before the restart stays spent).

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate::domain::clock::{Clock, SystemClock};
use tollgate::meter::Meter;
use tollgate::store::{PartnerStore, UsageStore, sqlite::SqliteStore};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Setup {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    proxy: String,
    api: String,
    _echo: tollgate::echo::EchoServer,
}

async fn setup() -> Setup {
    let echo = tollgate::echo::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (proxy, api) = (free_port(), free_port());
    // `TOLLGATE_TEST_HTTP1` picks the HTTP/1 server, as in tests/common.
    let http1 = std::env::var("TOLLGATE_TEST_HTTP1")
        .map(|s| format!("http1 = \"{s}\"\n"))
        .unwrap_or_default();
    let text = format!(
        "[listen]\nproxy = \"127.0.0.1:{proxy}\"\napi = \"127.0.0.1:{api}\"\n{http1}\
         [store]\nurl = \"sqlite://{}\"\nflush_interval = \"100ms\"\n\
         [upstream]\nurl = \"http://{}\"\nprofile = \"generic\"\n\
         [security]\nsecret = \"durability-test-secret-0123456789abcdef\"\n\
         [[routes]]\npath = \"/paid\"\npermission = \"read\"\ncost_usd = \"0.01\"\n",
        dir.path().join("t.db").display(),
        echo.addr
    );
    let config = dir.path().join("t.toml");
    std::fs::write(&config, text).unwrap();
    Setup {
        dir,
        config,
        proxy: format!("http://127.0.0.1:{proxy}"),
        api: format!("http://127.0.0.1:{api}"),
        _echo: echo,
    }
}

impl Setup {
    fn serve(&self) -> Child {
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    async fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.dir.path().join("t.db"))
            .await
            .unwrap()
    }

    /// The key's stored request count for today.
    async fn stored_requests(&self, key_id: &str) -> u64 {
        let store = self.store().await;
        let now = SystemClock.now_unix();
        store
            .load_counters(&Meter::windows(now))
            .await
            .unwrap()
            .into_iter()
            .find(|r| {
                r.scope == "key" && r.scope_id.to_string() == key_id && r.metric == "requests"
            })
            .map_or(0, |r| r.value)
    }
}

async fn wait_ready(c: &reqwest::Client, api: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if let Ok(r) = c.get(format!("{api}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("gateway did not become ready");
}

fn signal(child: &Child, sig: &str) {
    Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
}

/// Creates a partner (CLI) with a 100 USD balance (store); returns its token.
async fn partner(s: &Setup) -> String {
    let out = Command::new(BIN)
        .args(["partner", "create", "--name", "p", "--json", "--config"])
        .arg(&s.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = p["id"].as_str().unwrap().parse().unwrap();
    s.store()
        .await
        .add_partner_balance(id, 100_000_000, 0)
        .await
        .unwrap();
    p["token"].as_str().unwrap().to_string()
}

async fn create_key(c: &reqwest::Client, api: &str, token: &str) -> (String, String) {
    let resp = c
        .post(format!("{api}/api/v1/reseller/keys"))
        .bearer_auth(token)
        .json(&json!({"daily_cost_limit_usd": 0.05}))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    (
        body["data"]["id"].as_str().unwrap().to_string(),
        body["data"]["api_key"].as_str().unwrap().to_string(),
    )
}

async fn get(c: &reqwest::Client, url: &str, key: &str) -> u16 {
    c.get(url)
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn sigterm_loses_nothing_and_budgets_survive_restarts() {
    let s = setup().await;
    let c = reqwest::Client::new();
    let token = partner(&s).await;
    let mut child = s.serve();
    wait_ready(&c, &s.api).await;
    let (id, key) = create_key(&c, &s.api, &token).await;
    for _ in 0..3 {
        assert_eq!(get(&c, &format!("{}/paid", s.proxy), &key).await, 200);
    }
    for _ in 0..17 {
        assert_eq!(get(&c, &format!("{}/free", s.proxy), &key).await, 200);
    }
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    assert_eq!(
        s.stored_requests(&id).await,
        20,
        "SIGTERM flushes everything"
    );

    // Restarted: 3 of the 5 cents are spent, 2 more paid calls fit, the third does not.
    let mut child = s.serve();
    wait_ready(&c, &s.api).await;
    let paid = format!("{}/paid", s.proxy);
    assert_eq!(get(&c, &paid, &key).await, 200);
    assert_eq!(get(&c, &paid, &key).await, 200);
    assert_eq!(get(&c, &paid, &key).await, 429);
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    // Refused requests are not counted as usage.
    assert_eq!(s.stored_requests(&id).await, 22);
}

#[tokio::test]
async fn kill_9_loses_at_most_one_flush_interval() {
    let s = setup().await;
    let c = reqwest::Client::new();
    let token = partner(&s).await;
    let mut child = s.serve();
    wait_ready(&c, &s.api).await;
    let (id, key) = create_key(&c, &s.api, &token).await;
    for _ in 0..20 {
        assert_eq!(get(&c, &format!("{}/free", s.proxy), &key).await, 200);
    }
    // Wait (with a deadline) until a flush has written all 20.
    let end = Instant::now() + Duration::from_secs(10);
    while s.stored_requests(&id).await < 20 {
        assert!(Instant::now() < end, "no flush within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..5 {
        assert_eq!(get(&c, &format!("{}/free", s.proxy), &key).await, 200);
    }
    signal(&child, "-KILL");
    let _ = child.wait();
    let stored = s.stored_requests(&id).await;
    assert!((20..=25).contains(&stored), "stored {stored}");

    // Restarted, counting goes on from what was stored.
    let mut child = s.serve();
    wait_ready(&c, &s.api).await;
    assert_eq!(get(&c, &format!("{}/free", s.proxy), &key).await, 200);
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    assert_eq!(s.stored_requests(&id).await, stored + 1);
}
