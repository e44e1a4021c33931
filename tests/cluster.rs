//! Cluster mode with real instances: three `tollgate serve` processes on ephemeral ports share
//! one PostgreSQL schema (`TOLLGATE_TEST_POSTGRES_URL`, default the local server). A key
//! revoked on one is refused on the others; a daily cost limit and a partner balance spent on
//! one count on the others; a restarted instance keeps the totals; a store connection killed
//! mid-traffic loses nothing.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate::store::postgres::scratch::{Schema, test_url};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
/// How long a change may take to show on another instance before the test fails (the spec is
/// 1 s; the benchmark measures it; the test leaves room for a loaded CI machine).
const DEADLINE: Duration = Duration::from_secs(5);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One instance: its config file, addresses and process.
struct Instance {
    config: std::path::PathBuf,
    proxy: String,
    api: String,
    child: Option<Child>,
}

impl Instance {
    fn start(&mut self) {
        self.child = Some(
            Command::new(BIN)
                .args(["serve", "--config"])
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log_file(&self.config))
                .spawn()
                .unwrap(),
        );
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(child.wait().unwrap().success());
        }
    }
}

/// The instance's log, beside its config (kept for a failing test to show).
fn log_file(config: &std::path::Path) -> Stdio {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_extension("log"))
        .unwrap();
    Stdio::from(file)
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Cluster {
    nodes: Vec<Instance>,
    schema: Option<Schema>,
    c: reqwest::Client,
    token: String,
    _dir: tempfile::TempDir,
    _echo: tollgate::echo::EchoServer,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        Cluster::start_as(n, None, "lease").await
    }

    /// `n` instances sharing money limits in `quota_mode`; with `role`, they connect as that
    /// role (made the schema's owner).
    async fn start_as(n: usize, role: Option<&str>, quota_mode: &str) -> Cluster {
        let echo = tollgate::echo::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let schema = Schema::create(&test_url()).await.unwrap();
        let store_url = match role {
            None => schema.url.clone(),
            Some(role) => {
                admin_exec(&schema, &format!("CREATE ROLE {role} LOGIN")).await;
                admin_exec(
                    &schema,
                    &format!("ALTER SCHEMA {} OWNER TO {role}", schema.name),
                )
                .await;
                let mut url = url::Url::parse(&schema.url).unwrap();
                url.set_username(role).unwrap();
                url.to_string()
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for i in 0..n {
            let (proxy, api) = (free_port(), free_port());
            // `TOLLGATE_TEST_HTTP1` picks the HTTP/1 server, as in tests/common.
            let http1 = std::env::var("TOLLGATE_TEST_HTTP1")
                .map(|s| format!("http1 = \"{s}\"\n"))
                .unwrap_or_default();
            let text = format!(
                "[listen]\nproxy = \"127.0.0.1:{proxy}\"\napi = \"127.0.0.1:{api}\"\n{http1}\
                 [store]\nurl = \"{}\"\nsync_interval = \"100ms\"\n\
                 quota_mode = \"{quota_mode}\"\n\
                 [upstream]\nurl = \"http://{}\"\nprofile = \"generic\"\n\
                 [security]\nsecret = \"cluster-test-secret-0123456789abcdef\"\n\
                 [management]\ncalls_per_minute = 100000\ncalls_per_day = 1000000\n\
                 key_creations_per_hour = 100000\n\
                 [[routes]]\npath = \"/paid\"\npermission = \"read\"\ncost_usd = \"0.01\"\n\
                 [[plans]]\nid = 1\nname = \"Free\"\nprice_usd = \"0.00\"\n\
                 [[plans]]\nid = 2\nname = \"Pro\"\nprice_usd = \"5.00\"\n",
                store_url, echo.addr
            );
            let config = dir.path().join(format!("n{i}.toml"));
            std::fs::write(&config, text).unwrap();
            nodes.push(Instance {
                config,
                proxy: format!("http://127.0.0.1:{proxy}"),
                api: format!("http://127.0.0.1:{api}"),
                child: None,
            });
        }
        // The partner is made with the CLI against the shared store, before any instance runs.
        let out = Command::new(BIN)
            .args(["partner", "create", "--name", "p", "--json", "--config"])
            .arg(&nodes[0].config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p: Value = serde_json::from_slice(&out.stdout).unwrap();
        let c = reqwest::Client::new();
        for node in &mut nodes {
            node.start();
        }
        for node in &nodes {
            wait_ready(&c, &node.api).await;
        }
        Cluster {
            nodes,
            schema: Some(schema),
            c,
            token: p["token"].as_str().unwrap().to_string(),
            _dir: dir,
            _echo: echo,
        }
    }

    async fn finish(mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        self.schema.take().unwrap().drop().await.unwrap();
    }

    /// A reseller API call on instance `i`.
    async fn api(&self, i: usize, method: &str, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}/api/v1/reseller{path}", self.nodes[i].api);
        let req = match method {
            "GET" => self.c.get(url),
            _ => self.c.post(url).json(&body),
        };
        let resp = req.bearer_auth(&self.token).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `GET path` through instance `i`'s proxy with `key`; the status.
    async fn get(&self, i: usize, path: &str, key: &str) -> u16 {
        let url = format!("{}{path}", self.nodes[i].proxy);
        let resp = self.c.get(url).bearer_auth(key).send().await.unwrap();
        resp.status().as_u16()
    }

    /// Polls `GET path` on instance `i` until it answers `status`, within the deadline.
    async fn until_status(&self, i: usize, path: &str, key: &str, status: u16) -> Duration {
        let start = Instant::now();
        while self.get(i, path, key).await != status {
            assert!(
                start.elapsed() < DEADLINE,
                "instance {i} never answered {status}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        start.elapsed()
    }

    /// Polls the key's `cost_today_usd` on instance `i` until it reaches `usd`.
    async fn until_cost(&self, i: usize, id: &str, usd: f64) {
        let start = Instant::now();
        loop {
            let (_, key) = self
                .api(i, "GET", &format!("/keys/{id}"), Value::Null)
                .await;
            if key["data"]["cost_today_usd"].as_f64().unwrap_or(0.0) >= usd - 1e-9 {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "instance {i} never saw {usd} USD: {key}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `/balance` on instance `i` until `ok(balance_usd)`.
    async fn until_balance(&self, i: usize, ok: impl Fn(f64) -> bool) {
        let start = Instant::now();
        loop {
            let (_, b) = self.api(i, "GET", "/balance", Value::Null).await;
            if ok(b["data"]["balance_usd"].as_f64().unwrap()) {
                return;
            }
            assert!(start.elapsed() < DEADLINE, "instance {i}: {b}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn create_key(&self, body: Value) -> (String, String) {
        let (status, body) = self.api(0, "POST", "/keys", body).await;
        assert_eq!(status, 200, "{body}");
        (
            body["data"]["id"].as_str().unwrap().to_string(),
            body["data"]["api_key"].as_str().unwrap().to_string(),
        )
    }
}

async fn wait_ready(c: &reqwest::Client, api: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if let Ok(r) = c.get(format!("{api}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("instance at {api} did not become ready");
}

/// Tops the partner up through the operator-free path: the store, like the admin API does.
async fn top_up(cl: &Cluster, micros: i64) {
    let url = cl.schema.as_ref().unwrap().url.clone();
    let store = tollgate::store::postgres::PostgresStore::open(&url, Default::default())
        .await
        .unwrap();
    use tollgate::store::PartnerStore;
    let partners = store.load_partners().await.unwrap();
    store
        .add_partner_balance(partners[0].id, micros, 0)
        .await
        .unwrap();
}

/// A v0 partner-API call on instance `i`.
async fn v0(cl: &Cluster, i: usize, path: &str, body: Value) -> u16 {
    let url = format!("{}/api/v0/partner/user/{path}", cl.nodes[i].api);
    let resp =
        cl.c.post(url)
            .bearer_auth(&cl.token)
            .json(&body)
            .send()
            .await;
    resp.unwrap().status().as_u16()
}

/// Two instances moving the same account at the same moment charge the month's plan once:
/// the write that finds the plan changed under it computes its charge again. The ledger sums
/// to the balance throughout. In lease mode the charge is drawn from the instance's lease on
/// the balance, grown for it as for a request.
#[tokio::test]
async fn plan_changes_racing_on_two_instances_charge_the_month_once() {
    for mode in ["lease", "sync"] {
        plan_changes_race(mode).await;
    }
}

async fn plan_changes_race(mode: &str) {
    let cl = Cluster::start_as(2, None, mode).await;
    top_up(&cl, 100_000_000).await;
    for i in 0..2 {
        cl.until_balance(i, |usd| usd >= 100.0).await;
    }
    let user = json!({"uuid": "u1", "email": "u1@example.com"});
    assert_eq!(v0(&cl, 0, "create", user).await, 200);
    let to = |plan: i64| json!({"uuid": "u1", "plan_id": plan});
    for round in 0..10 {
        // Up to Pro on both at once, then down to Free on both at once.
        for plan in [2, 1] {
            let (a, b) = tokio::join!(
                v0(&cl, 0, "update-plan", to(plan)),
                v0(&cl, 1, "update-plan", to(plan))
            );
            assert_eq!((a, b), (200, 200), "{mode}: round {round}, plan {plan}");
        }
    }
    let url = cl.schema.as_ref().unwrap().url.clone();
    let store = tollgate::store::postgres::PostgresStore::open(&url, Default::default())
        .await
        .unwrap();
    use tollgate::store::PartnerStore;
    let partner = store.load_partners().await.unwrap().remove(0);
    assert_eq!(
        partner.balance_micros, 95_000_000,
        "Pro charged once this month"
    );
    let ledger = store
        .ledger_page(partner.id, tollgate::store::Page::ALL)
        .await
        .unwrap();
    let charges: Vec<i64> = ledger
        .iter()
        .map(|e| e.amount_micros)
        .filter(|a| *a < 0)
        .collect();
    assert_eq!(charges, [-5_000_000], "{mode}: {ledger:?}");
    let sum: i64 = ledger.iter().map(|e| e.amount_micros).sum();
    assert_eq!(sum, partner.balance_micros);
    cl.finish().await;
}

#[tokio::test]
async fn key_changes_on_one_instance_are_in_force_on_the_others() {
    let cl = Cluster::start(3).await;
    top_up(&cl, 1_000_000).await;
    let (id, key) = cl.create_key(json!({})).await;
    // Created on A: usable on B and C.
    for i in 1..3 {
        cl.until_status(i, "/free", &key, 200).await;
    }
    let (status, _) = cl
        .api(0, "POST", &format!("/keys/{id}/disable"), json!({}))
        .await;
    assert_eq!(status, 200);
    for i in 1..3 {
        cl.until_status(i, "/free", &key, 403).await;
    }
    // Enabled again on C: A and B follow.
    let (status, _) = cl
        .api(2, "POST", &format!("/keys/{id}/enable"), json!({}))
        .await;
    assert_eq!(status, 200);
    for i in 0..2 {
        cl.until_status(i, "/free", &key, 200).await;
    }
    cl.finish().await;
}

#[tokio::test]
async fn sync_mode_a_daily_cost_limit_spent_on_one_instance_counts_on_the_others() {
    let cl = Cluster::start_as(3, None, "sync").await;
    top_up(&cl, 100_000_000).await;
    // 10 paid calls fit in the limit.
    let (id, key) = cl.create_key(json!({"daily_cost_limit_usd": 0.10})).await;
    // The first paid call passes once A's sync has read the top-up back.
    cl.until_status(0, "/paid", &key, 200).await;
    for _ in 0..5 {
        assert_eq!(cl.get(0, "/paid", &key).await, 200);
    }
    cl.until_cost(1, &id, 0.06).await;
    for _ in 0..4 {
        assert_eq!(cl.get(1, "/paid", &key).await, 200);
    }
    assert_eq!(cl.get(1, "/paid", &key).await, 429, "the 11th call, on B");
    cl.until_cost(2, &id, 0.10).await;
    assert_eq!(
        cl.get(2, "/paid", &key).await,
        429,
        "C knows the limit is spent"
    );
    assert_eq!(
        cl.get(2, "/free", &key).await,
        200,
        "free routes still pass"
    );
    cl.finish().await;
}

#[tokio::test]
async fn sync_mode_a_partner_balance_spent_on_one_instance_counts_on_the_others() {
    let mut cl = Cluster::start_as(2, None, "sync").await;
    top_up(&cl, 50_000).await; // 5 paid calls
    let (_, key) = cl.create_key(json!({})).await;
    // The top-up is read back by every instance's next sync.
    for i in 0..2 {
        cl.until_balance(i, |b| b > 0.0499).await;
    }
    assert_eq!(cl.get(1, "/paid", &key).await, 200);
    for _ in 0..2 {
        assert_eq!(cl.get(0, "/paid", &key).await, 200);
    }
    // B sees A's two charges: two more fit, then the balance is gone.
    cl.until_balance(1, |b| b <= 0.02 + 1e-9).await;
    assert_eq!(cl.get(1, "/paid", &key).await, 200);
    assert_eq!(cl.get(1, "/paid", &key).await, 200);
    assert_eq!(cl.get(1, "/paid", &key).await, 402);
    // Once B's charges are synced, a restarted A starts from the shared totals: nothing left.
    cl.until_balance(0, |b| b.abs() < 1e-9).await;
    cl.nodes[0].stop();
    cl.nodes[0].start();
    wait_ready(&cl.c, &cl.nodes[0].api).await;
    cl.until_status(0, "/paid", &key, 402).await;
    let (_, a) = cl.api(0, "GET", "/balance", Value::Null).await;
    assert!(
        a["data"]["balance_usd"].as_f64().unwrap().abs() < 1e-9,
        "{a}"
    );
    cl.finish().await;
}

#[tokio::test]
async fn store_connections_killed_mid_traffic_lose_no_usage() {
    let cl = Cluster::start(1).await;
    top_up(&cl, 100_000_000).await;
    let (id, key) = cl.create_key(json!({})).await;
    let schema = cl.schema.as_ref().unwrap();
    let admin = tollgate::store::postgres::PostgresStore::open(&schema.url, Default::default())
        .await
        .unwrap();
    cl.until_status(0, "/paid", &key, 200).await; // the top-up read back
    let mut paid = 1;
    for round in 0..5 {
        for _ in 0..4 {
            assert_eq!(cl.get(0, "/paid", &key).await, 200);
            paid += 1;
        }
        // Every connection of the instance dies, sync connections included.
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&schema.name)
        .execute(admin.pool())
        .await
        .unwrap();
        let _ = round;
    }
    // Every paid call reaches the store exactly once.
    until_stored_once(admin.pool(), &id, paid, DEADLINE).await;
    admin.pool().close().await;
    cl.finish().await;
}

/// Runs one statement as the admin of the test server.
/// Polls the store until the key's lifetime cost is exactly `paid` calls of 0.01 USD, within
/// `deadline`; never more on the way (a call counted twice).
async fn until_stored_once(pool: &sqlx::PgPool, id: &str, paid: i64, deadline: Duration) {
    let start = Instant::now();
    loop {
        let cost: Option<i64> = sqlx::query_scalar(
            "SELECT value FROM counters WHERE scope = 'key' AND scope_id = $1 \
             AND metric = 'cost_micros' AND time_window = 'lifetime'",
        )
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap();
        if cost == Some(paid * 10_000) {
            return;
        }
        assert!(
            cost.unwrap_or(0) < paid * 10_000,
            "counted twice: {cost:?} for {paid} calls"
        );
        assert!(
            start.elapsed() < deadline,
            "stored {cost:?} for {paid} calls"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn admin_exec(schema: &Schema, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&test_url()).await.unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
    let _ = schema;
}

/// The instance's `/readyz` body and its `tollgate_store_up` value.
async fn readiness(cl: &Cluster, i: usize) -> (Value, String) {
    let api = &cl.nodes[i].api;
    let ready: Value =
        cl.c.get(format!("{api}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let metrics =
        cl.c.get(format!("{api}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    let up = metrics
        .lines()
        .find(|l| l.starts_with("tollgate_store_up "))
        .unwrap_or_default()
        .to_string();
    (ready, up)
}

#[tokio::test]
async fn with_the_store_unreachable_the_data_plane_serves_and_nothing_is_lost() {
    let role = format!("tgr_{}", uuid::Uuid::new_v4().simple());
    let cl = Cluster::start_as(1, Some(&role), "lease").await;
    top_up(&cl, 100_000_000).await;
    let (id, key) = cl.create_key(json!({})).await;
    cl.until_status(0, "/paid", &key, 200).await;
    let mut paid = 1;
    // The store goes away for this instance: its role may not log in, its connections die.
    let schema = cl.schema.as_ref().unwrap();
    admin_exec(schema, &format!("ALTER ROLE {role} NOLOGIN")).await;
    admin_exec(
        schema,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"),
    )
    .await;
    for _ in 0..10 {
        assert_eq!(cl.get(0, "/paid", &key).await, 200, "served from memory");
        paid += 1;
    }
    // Degraded, still ready, and said so.
    let start = Instant::now();
    loop {
        let (ready, up) = readiness(&cl, 0).await;
        if ready["status"] == "degraded" && up == "tollgate_store_up 0" {
            assert!(
                ready["reason"].as_str().unwrap().contains("store"),
                "{ready}"
            );
            break;
        }
        assert!(start.elapsed() < DEADLINE, "{ready} {up}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Back: every paid call is stored exactly once.
    admin_exec(schema, &format!("ALTER ROLE {role} LOGIN")).await;
    let admin = tollgate::store::postgres::PostgresStore::open(&schema.url, Default::default())
        .await
        .unwrap();
    until_stored_once(admin.pool(), &id, paid, 2 * DEADLINE).await;
    let start = Instant::now();
    while readiness(&cl, 0).await.0["status"] != "ready" {
        assert!(start.elapsed() < DEADLINE, "never ready again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    admin.pool().close().await;
    cl.finish().await;
    let schema_less = format!("DROP ROLE IF EXISTS {role}");
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&test_url()).await.unwrap();
    sqlx::query(&schema_less).execute(&mut conn).await.unwrap();
}

/// Sends paid requests through every instance at once (six clients each) until each client is
/// refused with `refusal`; the number admitted.
async fn hammer(cl: &Cluster, key: &str, refusal: u16) -> u64 {
    for i in 0..cl.nodes.len() {
        cl.until_status(i, "/free", key, 200).await;
    }
    let mut clients = Vec::new();
    for node in &cl.nodes {
        for _ in 0..6 {
            let (c, url, key) = (
                cl.c.clone(),
                format!("{}/paid", node.proxy),
                key.to_string(),
            );
            clients.push(tokio::spawn(async move {
                let mut admitted = 0;
                loop {
                    let resp = c.get(&url).bearer_auth(&key).send().await.unwrap();
                    match resp.status().as_u16() {
                        200 => admitted += 1,
                        s if s == refusal => return admitted,
                        s => {
                            // A budget still being shared out between the instances (the
                            // other money limit's lease) is a refusal to retry, not an end.
                            let body = resp.text().await.unwrap();
                            assert!(body.contains("retry shortly"), "unexpected {s}: {body}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }));
        }
    }
    let mut admitted = 0;
    for client in clients {
        admitted += client.await.unwrap();
    }
    admitted
}

/// After `hammer`: what idle instances give back is spent through the others, until exactly
/// `limit` requests were admitted in all (never one more); then every instance refuses.
async fn spend_the_rest(cl: &Cluster, key: &str, refusal: u16, mut admitted: u64, limit: u64) {
    let start = Instant::now();
    let mut i = 0;
    while admitted < limit {
        match cl.get(i % cl.nodes.len(), "/paid", key).await {
            200 => admitted += 1,
            // Refused by a limit or, while the budget is shared out, by the other money
            // limit's lease: not admitted, try again.
            s if s == refusal || s == 402 || s == 429 => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            s => panic!("unexpected {s}"),
        }
        i += 1;
        assert!(
            start.elapsed() < DEADLINE,
            "only {admitted} of {limit} admitted: budget stranded in leases"
        );
    }
    assert_eq!(admitted, limit);
    for i in 0..cl.nodes.len() {
        assert_eq!(cl.get(i, "/paid", key).await, refusal, "overshoot on {i}");
    }
}

#[tokio::test]
async fn lease_mode_a_cost_limit_and_a_balance_hammered_through_three_instances_never_overshoot() {
    let mut cl = Cluster::start(3).await;
    top_up(&cl, 400_000).await; // 40 paid calls
    for i in 0..3 {
        cl.until_balance(i, |b| b > 0.3999).await;
    }
    // A daily limit of 25 calls, spent from every instance at once.
    let (id, limited) = cl.create_key(json!({"daily_cost_limit_usd": 0.25})).await;
    let admitted = hammer(&cl, &limited, 429).await;
    assert!(admitted <= 25, "{admitted} admitted, the limit is 25");
    spend_the_rest(&cl, &limited, 429, admitted, 25).await;
    // The balance (15 calls left), spent by a key without limits.
    let (_, open) = cl.create_key(json!({})).await;
    let admitted = hammer(&cl, &open, 402).await;
    assert!(admitted <= 15, "{admitted} admitted, the balance holds 15");
    spend_the_rest(&cl, &open, 402, admitted, 15).await;
    for i in 0..3 {
        cl.until_balance(i, |b| b.abs() < 1e-9).await;
    }
    cl.until_cost(1, &id, 0.25).await;
    // Stopped instances give their leases back; the store holds exactly what was spent.
    for node in &mut cl.nodes {
        node.stop();
    }
    let url = cl.schema.as_ref().unwrap().url.clone();
    let store = tollgate::store::postgres::PostgresStore::open(&url, Default::default())
        .await
        .unwrap();
    let pool = store.pool();
    let leases: i64 = sqlx::query_scalar("SELECT count(*) FROM leases")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(leases, 0, "every lease was given back");
    let (balance, cost): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT balance_micros FROM partners), (SELECT value FROM counters \
         WHERE scope = 'key' AND scope_id = $1 AND metric = 'cost_micros' \
         AND time_window <> 'lifetime')",
    )
    .bind(&id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!((balance, cost), (0, 250_000));
    cl.finish().await;
}

#[tokio::test]
async fn sync_mode_a_cost_limit_hammered_through_three_instances_stays_within_the_bound() {
    let cl = Cluster::start_as(3, None, "sync").await;
    top_up(&cl, 100_000_000).await;
    for i in 0..3 {
        cl.until_balance(i, |b| b > 99.0).await;
    }
    let (id, key) = cl.create_key(json!({"daily_cost_limit_usd": 0.20})).await;
    let admitted = hammer(&cl, &key, 429).await;
    // The documented bound: each instance admits at most what it sees left (the limit, less
    // what the others synced before), so the limit is reached and at most every instance's
    // whole view of it is admitted within one interval.
    assert!(
        (20..=60).contains(&admitted),
        "{admitted} admitted, limit 20, bound 3 × 20"
    );
    // Nothing admitted is lost: the shared total is what was admitted, seen everywhere.
    let usd = admitted as f64 / 100.0;
    for i in 0..3 {
        cl.until_cost(i, &id, usd).await;
        assert_eq!(cl.get(i, "/paid", &key).await, 429);
    }
    let (_, k) = cl.api(0, "GET", &format!("/keys/{id}"), Value::Null).await;
    let cost = k["data"]["cost_today_usd"].as_f64().unwrap();
    assert!(
        (cost - usd).abs() < 1e-9,
        "{cost} USD stored for {admitted} calls"
    );
    cl.finish().await;
}
