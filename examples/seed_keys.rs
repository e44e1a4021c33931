//! Seeds a store with one partner (balance topped up) and N keys, for the load benchmark
//! (`benches/load/run.sh`). Opens the store exactly as `tollgate serve` does (config, secret from
//! the file or `TOLLGATE_SECRET`), writes each key through the `Store` trait, and prints the key
//! tokens, one per line, to `--out` for the nginx/haproxy maps and the wrk script.
//!
//! ```sh
//! TOLLGATE_SECRET=... cargo run --release --example seed_keys -- \
//!     --config bench.toml --keys 100000 --out keys.txt
//! ```
//!
//! Every key has `read` permission, the IP allow-list `127.0.0.1`, and a rate limit, concurrency
//! limit and daily/total cost limits set high enough never to trigger, so the gateway runs every
//! check without refusing.

use std::io::Write;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use tollgate::domain::clock::{Clock, SystemClock};
use tollgate::domain::ip::IpAllowList;
use tollgate::domain::key::{Credential, Key, KeyLimits};
use tollgate::domain::permission::{Permission, PermissionSet};
use tollgate::domain::secret;
use tollgate::gateway;
use tollgate::manage::Manager;

#[derive(Parser)]
struct Args {
    /// The Tollgate config whose store is seeded.
    #[arg(long)]
    config: PathBuf,
    /// How many keys to create.
    #[arg(long)]
    keys: usize,
    /// Where the key tokens are written, one per line.
    #[arg(long)]
    out: PathBuf,
    /// Prepaid balance given to the partner, in USD.
    #[arg(long, default_value_t = 1_000_000)]
    balance_usd: i64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(seed(args))
}

async fn seed(args: Args) -> Result<()> {
    let config = tollgate::config::load(&args.config)
        .map_err(|e| anyhow::anyhow!("invalid config {}:\n{e}", args.config.display()))?;
    let (store, hasher) = gateway::open_store(&config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now_unix();
    let meter = Arc::new(gateway::load_meter(store.as_ref(), now, 0, false).await?);
    let manager = Manager {
        store: store.clone(),
        index: Default::default(),
        hasher: hasher.clone(),
        clock,
        default_plan: config.default_plan,
        meter,
        verifier: Default::default(),
        write_lock: Default::default(),
    };
    let (partner, _token) = manager.create_partner("load-bench").await?;
    manager
        .top_up(partner.id, args.balance_usd.saturating_mul(1_000_000))
        .await?
        .context("partner vanished")?;
    let account = manager.default_account(partner.id).await?;

    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?,
    );
    let ip_whitelist = IpAllowList::parse(&["127.0.0.1"])?;
    let started = Instant::now();
    for i in 0..args.keys {
        let token = secret::generate_key_token();
        let key = Key {
            id: uuid::Uuid::new_v4(),
            account_id: account.id,
            partner_id: partner.id,
            name: format!("bench-{i}"),
            label: None,
            description: None,
            credential: Credential::Token {
                digest: hasher.digest(token.as_bytes()),
            },
            permissions: PermissionSet::from_slice(&[Permission::Read]),
            ip_whitelist: ip_whitelist.clone(),
            expiration_date: None,
            disabled: false,
            created_at: now,
            created_by: "seed_keys".into(),
            revoked_at: None,
            revoked_by: None,
            status_changed_at: None,
            status_changed_by: None,
            last_used_at: None,
            limits: KeyLimits {
                daily_cost_limit_micros: Some(1_000_000_000_000),
                total_cost_limit_micros: Some(1_000_000_000_000),
                concurrency_limit: NonZeroU32::new(100_000),
                rate_limit_per_minute: NonZeroU32::new(100_000_000),
                models: None,
            },
        };
        store.create_key(&key).await?;
        writeln!(out, "{token}")?;
        if (i + 1) % 100_000 == 0 {
            eprintln!(
                "seed_keys: {} keys in {:.1} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    out.flush()?;
    eprintln!(
        "seed_keys: {} keys for partner {} in {:.1} s",
        args.keys,
        partner.id,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
