//! Cluster benchmark (`benches/cluster/run.sh`): three `tollgate serve` processes on one
//! PostgreSQL schema, once per `store.quota_mode` (each mode its own schema and configs),
//! measured, never asserted:
//!
//! - key-change propagation (lease mode): a key disabled (and enabled again) through instance
//!   A's API, then polled through B's and C's proxies until they refuse (or pass) it; p50/p99
//!   over the rounds;
//! - overshoot, in lease and in sync mode: a key with a daily cost limit, then a key without
//!   limits of a partner whose balance holds as many paid calls, each hammered through all three
//!   instances at once (8 clients each);
//! - the usage sync transaction, per mode: mean and count from each instance's
//!   `tollgate_store_sync_seconds`;
//! - throughput of one instance on PostgreSQL (lease mode) against one on SQLite, on the paid
//!   route (the partner balance spent per call), closed loop, interleaved rounds, the gateway
//!   pinned to core 1 and this load generator to core 0.
//!
//! ```sh
//! cargo build --release && cargo run --release --example cluster_bench -- \
//!     --bin target/release/tollgate --postgres postgres://postgres@127.0.0.1:5432/test
//! ```

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use tollgate::store::postgres::scratch::Schema;

#[derive(Parser)]
struct Args {
    /// The tollgate binary to run.
    #[arg(long)]
    bin: PathBuf,
    /// The PostgreSQL server (a schema of its own is made and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres: String,
    /// Propagation rounds.
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// Seconds per throughput run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent clients of the throughput runs.
    #[arg(long, default_value_t = 32)]
    clients: usize,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    proxy: String,
    api: String,
    config: PathBuf,
    /// The instance's stdout and stderr (log level warn), echoed to stderr when it stops.
    log: PathBuf,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        if let Ok(text) = std::fs::read_to_string(&self.log)
            && !text.trim().is_empty()
        {
            eprintln!("--- {}:\n{}", self.log.display(), text.trim_end());
        }
    }
}

fn start(
    bin: &PathBuf,
    dir: &std::path::Path,
    name: &str,
    store: &str,
    quota_mode: Option<&str>,
    upstream: SocketAddr,
) -> Result<Node> {
    let (proxy, api) = (free_port(), free_port());
    let quota_mode = quota_mode.map_or(String::new(), |m| format!("quota_mode = \"{m}\"\n"));
    let text = format!(
        "[listen]\nproxy = \"127.0.0.1:{proxy}\"\napi = \"127.0.0.1:{api}\"\n\
         [store]\nurl = \"{store}\"\nsync_interval = \"1s\"\n{quota_mode}\
         [upstream]\nurl = \"http://{upstream}\"\nprofile = \"generic\"\n\
         [security]\nsecret = \"cluster-bench-secret-0123456789abcdef\"\n\
         [management]\ncalls_per_minute = 1000000\ncalls_per_day = 100000000\n\
         key_creations_per_hour = 1000000\n\
         [log]\nlevel = \"warn\"\n\
         [[routes]]\npath = \"/paid\"\npermission = \"read\"\ncost_usd = \"0.01\"\n"
    );
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, text)?;
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log)?;
    let child = Command::new("taskset")
        .args(["-c", "1"])
        .arg(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting tollgate")?;
    Ok(Node {
        proxy: format!("http://127.0.0.1:{proxy}"),
        api: format!("http://127.0.0.1:{api}"),
        config,
        log,
        child,
    })
}

async fn ready(c: &reqwest::Client, node: &Node) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        if let Ok(r) = c.get(format!("{}/readyz", node.api)).send().await
            && r.status() == 200
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("{} never became ready", node.api)
}

/// A partner with a balance of `micros` micro-USD (CLI + store) and its token.
async fn partner(
    bin: &PathBuf,
    node: &Node,
    store_url: Option<&str>,
    micros: i64,
) -> Result<String> {
    let out = Command::new(bin)
        .args(["partner", "create", "--name", "bench", "--json", "--config"])
        .arg(&node.config)
        .output()?;
    let p: Value = serde_json::from_slice(&out.stdout).context("partner create")?;
    let id = p["id"].as_str().unwrap().parse()?;
    use tollgate::store::PartnerStore;
    match store_url {
        Some(url) => {
            let s = tollgate::store::postgres::PostgresStore::open(url, Default::default()).await?;
            s.add_partner_balance(id, micros, 0).await?;
        }
        None => {
            let path = node.config.with_file_name("sqlite.db");
            let s = tollgate::store::sqlite::SqliteStore::open(&path).await?;
            s.add_partner_balance(id, micros, 0).await?;
        }
    }
    Ok(p["token"].as_str().unwrap().to_string())
}

async fn create_key(
    c: &reqwest::Client,
    node: &Node,
    token: &str,
    body: Value,
) -> Result<(String, String)> {
    let r: Value = c
        .post(format!("{}/api/v1/reseller/keys", node.api))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    Ok((
        r["data"]["id"].as_str().context("key id")?.to_string(),
        r["data"]["api_key"].as_str().unwrap().to_string(),
    ))
}

async fn status(c: &reqwest::Client, url: &str, key: &str) -> u16 {
    match c.get(url).bearer_auth(key).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Key-change propagation in ms: (disable → refused elsewhere, enable → passes elsewhere).
async fn propagation(
    c: &reqwest::Client,
    nodes: &[Node],
    token: &str,
    rounds: usize,
) -> Result<Vec<f64>> {
    let (id, key) = create_key(c, &nodes[0], token, json!({})).await?;
    let mut times = Vec::new();
    for round in 0..rounds {
        let action = if round % 2 == 0 { "disable" } else { "enable" };
        let want = if round % 2 == 0 { 403 } else { 200 };
        let start = Instant::now();
        c.post(format!(
            "{}/api/v1/reseller/keys/{id}/{action}",
            nodes[0].api
        ))
        .bearer_auth(token)
        .send()
        .await?;
        for node in &nodes[1..] {
            let url = format!("{}/free", node.proxy);
            while status(c, &url, &key).await != want {
                if start.elapsed() > Duration::from_secs(30) {
                    bail!("no propagation within 30 s");
                }
            }
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// Paid calls with `key` admitted through all nodes at once, 8 clients each, every client going
/// on until it has been refused for 2 s (two syncs); and how often each other status answered.
async fn hammer(
    c: &reqwest::Client,
    nodes: &[Node],
    key: &str,
) -> Result<(u64, BTreeMap<u16, u64>)> {
    // Every node knows the key before the race starts.
    for node in nodes {
        while status(c, &format!("{}/free", node.proxy), key).await != 200 {}
    }
    let mut tasks = Vec::new();
    for node in nodes {
        for _ in 0..8 {
            let (c, url, key) = (c.clone(), format!("{}/paid", node.proxy), key.to_string());
            tasks.push(tokio::spawn(async move {
                let (mut admitted, mut refused) = (0, BTreeMap::new());
                let mut refused_since: Option<Instant> = None;
                loop {
                    match status(&c, &url, &key).await {
                        200 => {
                            admitted += 1;
                            refused_since = None;
                        }
                        other => {
                            *refused.entry(other).or_insert(0) += 1;
                            let since = *refused_since.get_or_insert_with(Instant::now);
                            if since.elapsed() > Duration::from_secs(2) {
                                return (admitted, refused);
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            }));
        }
    }
    let (mut admitted, mut refused) = (0, BTreeMap::new());
    for t in tasks {
        let (a, r) = t.await?;
        admitted += a;
        for (status, n) in r {
            *refused.entry(status).or_insert(0) += n;
        }
    }
    Ok((admitted, refused))
}

/// Waits until every node has read back a balance of at least `usd` for `token`'s partner.
async fn until_balance(c: &reqwest::Client, nodes: &[Node], token: &str, usd: f64) -> Result<()> {
    for node in nodes {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let r = c
                .get(format!("{}/api/v1/reseller/balance", node.api))
                .bearer_auth(token)
                .send()
                .await?;
            let b: Value = r.json().await.unwrap_or(Value::Null);
            if b["data"]["balance_usd"].as_f64().unwrap_or(0.0) >= usd - 1e-9 {
                break;
            }
            if Instant::now() > end {
                bail!("{} never saw the balance: {b}", node.api);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Overshoot in `mode` of a key's daily cost limit, then of a partner balance (a fresh partner,
/// a key without limits), each of `limit` paid calls; one line each.
async fn overshoot(
    c: &reqwest::Client,
    bin: &PathBuf,
    nodes: &[Node],
    store_url: &str,
    token: &str,
    mode: &str,
    limit: u64,
) -> Result<()> {
    let usd = limit as f64 * 0.01;
    let (_, limited) =
        create_key(c, &nodes[0], token, json!({"daily_cost_limit_usd": usd})).await?;
    let key_limit = hammer(c, nodes, &limited).await?;
    let poor = partner(bin, &nodes[0], Some(store_url), limit as i64 * 10_000).await?;
    until_balance(c, nodes, &poor, usd).await?;
    let (_, open) = create_key(c, &nodes[0], &poor, json!({})).await?;
    let balance = hammer(c, nodes, &open).await?;
    for (what, (admitted, refused)) in [
        ("a key's daily cost limit", key_limit),
        ("a partner balance", balance),
    ] {
        println!(
            "overshoot ({mode} mode, {what}, 3 instances × 8 clients, sync_interval 1 s): \
             limit {limit} paid calls, admitted {admitted} ({:+}); refusals by status {refused:?}",
            admitted as i64 - limit as i64
        );
    }
    Ok(())
}

/// Paid requests per second through `node` with `clients` concurrent clients.
async fn throughput(node: &Node, key: &str, clients: usize, seconds: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, key, done) = (
            format!("{}/paid", node.proxy),
            key.to_string(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            while Instant::now() < end {
                if status(&c, &url, &key).await == 200 {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / seconds as f64
}

/// Mean and count of the sync transaction from one node's metrics.
async fn sync_cost(c: &reqwest::Client, node: &Node) -> Result<(f64, f64)> {
    let text = c
        .get(format!("{}/metrics", node.api))
        .send()
        .await?
        .text()
        .await?;
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (sum, count) = (
        value("tollgate_store_sync_seconds_sum"),
        value("tollgate_store_sync_seconds_count"),
    );
    Ok((if count > 0.0 { sum / count * 1e3 } else { 0.0 }, count))
}

/// Three instances in `mode` on a schema of their own, ready, and the token of a partner with
/// `RICH` read back by all three.
async fn cluster(
    args: &Args,
    dir: &std::path::Path,
    mode: &str,
    upstream: SocketAddr,
    c: &reqwest::Client,
) -> Result<(Schema, Vec<Node>, String)> {
    let schema = Schema::create(&args.postgres).await?;
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let name = format!("{mode}-{name}");
        nodes.push(start(
            &args.bin,
            dir,
            &name,
            &schema.url,
            Some(mode),
            upstream,
        )?);
    }
    for node in &nodes {
        ready(c, node).await?;
    }
    let token = partner(&args.bin, &nodes[0], Some(&schema.url), RICH).await?;
    until_balance(c, &nodes, &token, RICH as f64 / 1e6).await?;
    Ok((schema, nodes, token))
}

/// The sync transaction's cost on every node, one line each.
async fn sync_costs(c: &reqwest::Client, nodes: &[Node], mode: &str) -> Result<()> {
    for (i, node) in nodes.iter().enumerate() {
        let (mean, count) = sync_cost(c, node).await?;
        println!(
            "sync transaction ({mode} mode), instance {i}: mean {mean:.2} ms over {count} syncs"
        );
    }
    Ok(())
}

/// The balance of every partner but the one whose balance an overshoot run measures: $1,000,000,
/// never reached.
const RICH: i64 = 1_000_000_000_000;

/// Paid calls the overshoot runs allow.
const LIMIT: u64 = 300;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let echo = tollgate::echo::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let dir = tempfile::tempdir()?;
    let c = reqwest::Client::new();

    // Sync mode: overshoot and sync cost; then its instances stop and its schema goes.
    let (schema, nodes, token) = cluster(&args, dir.path(), "sync", echo.addr, &c).await?;
    overshoot(&c, &args.bin, &nodes, &schema.url, &token, "sync", LIMIT).await?;
    sync_costs(&c, &nodes, "sync").await?;
    drop(nodes);
    schema.drop().await?;

    // Lease mode (the default): propagation, overshoot, sync cost, throughput.
    let (schema, mut nodes, token) = cluster(&args, dir.path(), "lease", echo.addr, &c).await?;
    let times = propagation(&c, &nodes, &token, args.rounds).await?;
    println!(
        "propagation (lease mode, A's API call until B and C both answer accordingly, {} \
         rounds): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
    overshoot(&c, &args.bin, &nodes, &schema.url, &token, "lease", LIMIT).await?;
    sync_costs(&c, &nodes, "lease").await?;
    // Throughput: one PostgreSQL instance (B, C stopped) against one SQLite instance, each
    // spending its partner's balance on the paid route.
    nodes.truncate(1);
    let sqlite_url = format!("sqlite://{}", dir.path().join("sqlite.db").display());
    let solo = start(&args.bin, dir.path(), "solo", &sqlite_url, None, echo.addr)?;
    ready(&c, &solo).await?;
    let solo_token = partner(&args.bin, &solo, None, RICH).await?;
    until_balance(
        &c,
        std::slice::from_ref(&solo),
        &solo_token,
        RICH as f64 / 1e6,
    )
    .await?;
    let (_, pg_key) = create_key(&c, &nodes[0], &token, json!({})).await?;
    let (_, sq_key) = create_key(&c, &solo, &solo_token, json!({})).await?;
    let (mut pg, mut sq) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        pg.push(throughput(&nodes[0], &pg_key, args.clients, args.seconds).await);
        sq.push(throughput(&solo, &sq_key, args.clients, args.seconds).await);
    }
    pg.sort_by(f64::total_cmp);
    sq.sort_by(f64::total_cmp);
    println!(
        "throughput (one instance on core 1, {} clients, paid route /paid ($0.01 a call from the \
         partner balance), 3 interleaved rounds, median): PostgreSQL lease mode {:.0} req/s, \
         SQLite {:.0} req/s, ratio {:.3} (rounds pg {pg:.0?}, sqlite {sq:.0?})",
        args.clients,
        pg[1],
        sq[1],
        pg[1] / sq[1]
    );
    drop(nodes);
    drop(solo);
    schema.drop().await?;
    Ok(())
}
