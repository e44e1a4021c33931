//! Assembling a running gateway from a validated config: store, secret, key index, listeners and
//! background tasks, and taking it down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::limits::ManagementLimits;
use crate::api::{self, ApiState};
use crate::config::model::{Config, ProfileKind};
use crate::domain::clock::{Clock, SystemClock};
use crate::domain::secret::{self, KeyHasher};
use crate::index::KeyIndex;
use crate::manage::Manager;
use crate::meter::{Batch, Meter};
use crate::metrics::Metrics;
use crate::proxy::handler::{self, ProxyState};
use crate::proxy::kubo::Kubo;
use crate::proxy::llm::Llm;
use crate::proxy::upstream::{UpstreamClient, UpstreamError};
use crate::proxy::{credential::CredentialSource, profile, server, tls};
use crate::store::{self, Store, StoreError};
use hyper::service::service_fn;
use hyper_util::service::TowerToHyperService;

/// Name of the store setting holding a generated server secret.
const SECRET_SETTING: &str = "server_secret";

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("listen.tls: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("upstream: {0}")]
    Upstream(#[from] UpstreamError),
    #[error("stored server secret is not valid base64")]
    BadStoredSecret,
}

/// A running gateway: both listeners and the flusher.
pub struct Gateway {
    /// Where the proxy listener actually listens (useful with port 0).
    pub proxy_addr: SocketAddr,
    /// Where the management listener actually listens.
    pub api_addr: SocketAddr,
    pub manager: Manager,
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Opens the store and derives the key hasher (shared by `serve` and the CLI commands).
pub async fn open_store(config: &Config) -> Result<(Arc<dyn Store>, KeyHasher), StartError> {
    let store = store::open(&config.store).await?;
    store.sync_plans(&config.plans).await?;
    let secret = match &config.security.secret {
        Some(secret) => secret.clone(),
        None => stored_secret(store.as_ref()).await?,
    };
    Ok((store, KeyHasher::new(&secret)))
}

/// The meter seeded with the store's counters for the current windows, and every partner and
/// account registered.
pub async fn load_meter(store: &dyn Store, now: i64, offset: i64) -> Result<Meter, StartError> {
    let rows = store.load_counters(&Meter::windows_in(offset, now)).await?;
    let meter = Meter::with_offset(Meter::initial_from(rows), offset);
    for partner in store.load_partners().await? {
        meter.upsert_partner(&partner, now);
    }
    for account in store.load_accounts().await? {
        meter.upsert_account(&account, now);
    }
    Ok(meter)
}

/// The server secret kept in the store, generated on first start.
async fn stored_secret(store: &dyn Store) -> Result<Vec<u8>, StartError> {
    if let Some(value) = store.get_setting(SECRET_SETTING).await? {
        return STANDARD
            .decode(value)
            .map_err(|_| StartError::BadStoredSecret);
    }
    tracing::warn!(
        "no server secret configured (security.secret or TOLLGATE_SECRET): generated one and \
         stored it in the store; every instance sharing this store will use it"
    );
    let value = store
        .init_setting(SECRET_SETTING, &STANDARD.encode(secret::random_bytes()))
        .await?;
    STANDARD
        .decode(value)
        .map_err(|_| StartError::BadStoredSecret)
}

impl Gateway {
    /// Starts the gateway with the system clock.
    pub async fn start(config: &Config) -> Result<Gateway, StartError> {
        Gateway::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Starts the gateway with the given clock (tests use a fake one).
    pub async fn start_with_clock(
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Gateway, StartError> {
        let (store, hasher) = open_store(config).await?;
        let offset = config.metering.utc_offset_secs;
        let meter = Arc::new(load_meter(store.as_ref(), clock.now_unix(), offset).await?);
        let index = Arc::new(KeyIndex::default());
        store.for_each_key(&mut |key| index.upsert(&key)).await?;
        let metrics = Arc::new(Metrics::new());
        metrics.keys_loaded.set(index.len() as i64);
        tracing::info!(keys = index.len(), "key index loaded");
        let kubo = match config.upstream.profile {
            ProfileKind::Kubo => Some(Arc::new(Kubo::load(store.clone()).await?)),
            _ => None,
        };
        let manager = Manager {
            store,
            index: index.clone(),
            hasher: hasher.clone(),
            clock: clock.clone(),
            default_plan: config.default_plan,
            meter: meter.clone(),
            verifier: Default::default(),
            write_lock: Default::default(),
        };
        let tls = config
            .listen
            .proxy_tls
            .as_ref()
            .map(tls::acceptor)
            .transpose()?;
        let state = Arc::new(ProxyState {
            index,
            hasher,
            routes: profile::route_table(config.upstream.profile, &config.routes),
            sources: CredentialSource::ALL.to_vec(),
            trusted_proxies: config.security.trusted_proxies.clone(),
            upstream: UpstreamClient::new(&config.upstream)?,
            upstream_auth: config.upstream.auth.clone(),
            response_timeout: config.upstream.response_timeout,
            max_request_body: config.limits.max_request_body.get(),
            body_idle_timeout: config.limits.body_idle_timeout,
            tls: tls.is_some(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            meter,
            plans: config.plans.iter().map(|p| (p.id, p.clone())).collect(),
            llm: Llm::new(config.upstream.profile, config.prices.clone()),
            kubo: kubo.clone(),
        });
        let upstream = state.upstream.clone();
        let proxy_listener = bind(config.listen.proxy).await?;
        let api_listener = bind(config.listen.api).await?;
        let proxy_addr = local_addr(&proxy_listener, config.listen.proxy)?;
        let api_addr = local_addr(&api_listener, config.listen.api)?;
        let (stop, stopped) = watch::channel(false);
        let api_router = api::router(ApiState {
            manager: manager.clone(),
            metrics: metrics.clone(),
            limits: Arc::new(ManagementLimits::new(config.management, clock.clone())),
            idempotency_lock: Default::default(),
            operator_tokens: Arc::new(config.security.operator_tokens.clone()),
            plans: Arc::new(config.plans.iter().map(|p| (p.id, p.clone())).collect()),
            trusted_proxies: Arc::new(config.security.trusted_proxies.clone()),
            pins: kubo.map(|k| k.ledger.clone()),
        });
        let tasks = vec![
            tokio::spawn(server::serve(
                proxy_listener,
                tls,
                config.limits.clone(),
                stopped.clone(),
                move |peer| {
                    let state = state.clone();
                    service_fn(move |req| handler::handle(state.clone(), peer, req))
                },
            )),
            tokio::spawn(server::serve(
                api_listener,
                None,
                config.limits.clone(),
                stopped.clone(),
                // Each request carries its socket peer as an `api::ClientAddr` extension (the
                // router is not served with axum's `ConnectInfo`).
                move |peer| {
                    let inner = TowerToHyperService::new(api_router.clone());
                    service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(api::ClientAddr(peer));
                        hyper::service::Service::call(&inner, req)
                    })
                },
            )),
            tokio::spawn(reap_loop(
                upstream,
                metrics.clone(),
                config.upstream.pool_idle_timeout,
                stopped.clone(),
            )),
            tokio::spawn(flush_loop(
                manager.clone(),
                metrics.clone(),
                config.store.flush_interval,
                stopped,
            )),
        ];
        tracing::info!(%proxy_addr, %api_addr, upstream = %config.upstream.url, "tollgate listening");
        Ok(Gateway {
            proxy_addr,
            api_addr,
            manager,
            metrics,
            stop,
            tasks,
        })
    }

    /// Stops accepting, drains in-flight requests (up to the grace period) and flushes.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        // Requests that finished during the drain may have marked keys used after the flush
        // task's last pass.
        flush_once(&self.manager, &self.metrics).await;
        tracing::info!("tollgate stopped");
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })
}

/// Flushes `last_used_at` every interval and once more on shutdown.
async fn flush_loop(
    manager: Manager,
    metrics: Arc<Metrics>,
    every: std::time::Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => flush_once(&manager, &metrics).await,
            _ = server::stopped(&mut stopped) => break,
        }
    }
    flush_once(&manager, &metrics).await;
}

/// Closes idle upstream connections past `upstream.pool_idle_timeout` or closed by the
/// upstream, every half timeout but at least every 5 s (and at most every second), and
/// reports how many are left.
async fn reap_loop(
    upstream: UpstreamClient,
    metrics: Arc<Metrics>,
    idle_timeout: std::time::Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let every = (idle_timeout / 2).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(5),
    );
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                upstream.reap_idle();
                metrics.upstream_idle.set(upstream.idle_connections() as i64);
            }
            _ = server::stopped(&mut stopped) => break,
        }
    }
}

/// One flush of everything pending (usage first, then `last_used_at`); failures are kept for
/// the next try.
pub async fn flush_once(manager: &Manager, metrics: &Metrics) {
    flush_usage(manager, metrics).await;
    flush_llm_usage(manager, metrics).await;
    let used = manager.index.take_used();
    if used.is_empty() {
        return;
    }
    if let Err(err) = manager.store.touch_keys(&used).await {
        metrics.store_flush_errors.inc();
        tracing::warn!(error = %err, keys = used.len(), "flushing last_used_at failed; will retry");
        manager.index.restore_used(&used);
    }
}

/// Writes the LLM usage by key and model; a failed batch is retried as is.
async fn flush_llm_usage(manager: &Manager, metrics: &Metrics) {
    let (token, rows) = manager.meter.llm.take_batch();
    if rows.is_empty() {
        return;
    }
    let now = manager.clock.now_unix();
    let day = manager.meter.day_label(now);
    if let Err(err) = manager
        .store
        .apply_llm_usage(&token, &day, &rows, now)
        .await
    {
        metrics.store_flush_errors.inc();
        tracing::warn!(error = %err, rows = rows.len(), "flushing LLM usage failed; will retry");
        manager.meter.llm.keep_failed(token, rows);
    }
}

/// Usage records taken between two yields to the runtime while a flush batch is built: with
/// thousands of keys in use, taking them all at once held the serving thread for ~10 ms each
/// second (the p99 of the load benchmark showed it).
const FLUSH_STEP: usize = 256;

/// Takes every unflushed amount into a batch (a failed batch is kept in `pending`), yielding to
/// the requests waiting on this thread every `FLUSH_STEP` usage records.
async fn take_batch_in_steps(meter: &Meter, now: i64) -> Batch {
    let today = meter.today(now);
    let usages = meter.usages();
    let mut batch = Batch::default();
    for step in usages.chunks(FLUSH_STEP) {
        Meter::take_usages(&mut batch, step, &today);
        tokio::task::yield_now().await;
    }
    meter.take_rest(&mut batch, &today);
    batch
}

/// Writes the meter's deltas as one idempotent batch; a failed batch is retried as is.
async fn flush_usage(manager: &Manager, metrics: &Metrics) {
    let meter = &manager.meter;
    let now = manager.clock.now_unix();
    let pending = meter
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let (token, batch) = match pending {
        Some(pending) => pending,
        None => (
            uuid::Uuid::new_v4().to_string(),
            take_batch_in_steps(meter, now).await,
        ),
    };
    if batch.is_empty() {
        return;
    }
    if let Err(err) = manager.store.apply_usage(&token, &batch, now, 0).await {
        metrics.store_flush_errors.inc();
        tracing::warn!(error = %err, deltas = batch.deltas.len(), "flushing usage failed; will retry");
        *meter.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some((token, batch));
    }
}
