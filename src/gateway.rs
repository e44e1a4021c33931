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
use crate::auth::CredentialSource;
use crate::cluster::feed::Feed;
use crate::cluster::health::Health;
use crate::cluster::sync::Syncer;
use crate::config::model::{Config, Http1Server, ProfileKind, QuotaMode};
use crate::domain::clock::{Clock, SystemClock};
use crate::domain::secret::{self, KeyHasher};
use crate::index::KeyIndex;
use crate::manage::Manager;
use crate::meter::Meter;
use crate::metrics::Metrics;
use crate::proxy::handler::ProxyState;
use crate::proxy::kubo::{Kubo, KuboProfile};
use crate::proxy::listener::ProxyListener;
use crate::proxy::llm::Llm;
use crate::proxy::phases::Generic;
use crate::proxy::request_body::Pace;
use crate::proxy::upstream::{Upstream, UpstreamClient, UpstreamError};
use crate::proxy::{profile, server, tls};
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
    /// Issues the console's one-time sign-in links (`tollgate demo`).
    pub console_logins: Arc<api::console::login::ConsoleLogins>,
    syncer: Arc<Syncer>,
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
/// account registered; in lease mode with `leased`.
pub async fn load_meter(
    store: &dyn Store,
    now: i64,
    offset: i64,
    leased: bool,
) -> Result<Meter, StartError> {
    let rows = store.load_counters(&Meter::windows_in(offset, now)).await?;
    let mut meter = Meter::with_offset(Meter::initial_from(rows), offset);
    if leased {
        meter = meter.leased();
    }
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
        // On a shared store: where the first sync reads back from, taken before the counters
        // are loaded so nothing counted in between is missed; then the change feed, subscribed
        // before the keys are loaded for the same reason.
        let (cursor, feed) = match store.cluster() {
            Some(cluster) => (
                cluster.counter_cursor().await?,
                Some((cluster.subscribe().await?, cluster.clock_micros().await?)),
            ),
            None => (0, None),
        };
        let offset = config.metering.utc_offset_secs;
        let leased = store.cluster().is_some() && config.store.quota_mode == QuotaMode::Lease;
        let now = clock.now_unix();
        let meter = Arc::new(load_meter(store.as_ref(), now, offset, leased).await?);
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
        let health = Arc::new(Health::default());
        let mut syncer = Syncer::new(manager.clone(), metrics.clone(), health.clone(), cursor);
        if leased {
            syncer = syncer.with_leases(config.store.lease_fraction, config.store.lease_ttl);
        }
        let syncer = Arc::new(syncer);
        let tls = config
            .listen
            .proxy_tls
            .as_ref()
            .map(tls::acceptor)
            .transpose()?;
        let (stop, stopped) = watch::channel(false);
        let proxy_listener = ProxyListener::bind(
            config.listen.proxy,
            config.listen.proxy_cores,
            tls.clone(),
            config.limits.clone(),
            stopped.clone(),
            config.listen.http1,
        )
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen.proxy,
            source,
        })?;
        let proxy_addr = proxy_listener.addr;
        // One upstream pool per proxy thread (one for the shared runtime).
        let upstreams = (0..proxy_listener.cores().max(1))
            .map(|_| {
                Ok(Arc::new(Upstream::new(
                    UpstreamClient::new(
                        &config.upstream,
                        config.listen.http1 == Http1Server::Tollgate,
                    )?,
                    config.upstream.auth.clone(),
                    config.upstream.response_timeout,
                    metrics.clone(),
                )))
            })
            .collect::<Result<Vec<_>, StartError>>()?;
        let state = ProxyState {
            index,
            hasher,
            routes: profile::route_table(config.upstream.profile, &config.routes),
            sources: CredentialSource::ALL.to_vec(),
            trusted_proxies: config.security.trusted_proxies.clone(),
            upstream: upstreams[0].clone(),
            max_request_body: config.limits.max_request_body.get(),
            body_pace: Pace {
                idle: config.limits.body_idle_timeout,
                min_rate: config.limits.body_min_rate,
                grace: config.limits.body_rate_grace,
            },
            tls: tls.is_some(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            meter,
            plans: config.plans.iter().map(|p| (p.id, p.clone())).collect(),
            leases: syncer.leases.clone(),
        };
        let pools: Vec<UpstreamClient> = upstreams.iter().map(|u| u.client().clone()).collect();
        let api_listener = bind(config.listen.api).await?;
        let api_addr = local_addr(&api_listener, config.listen.api)?;
        let console_logins = Arc::new(api::console::login::ConsoleLogins::new(clock.clone()));
        let api_router = api::router(ApiState {
            manager: manager.clone(),
            metrics: metrics.clone(),
            limits: Arc::new(
                ManagementLimits::new(config.management, clock.clone())
                    .shared(manager.store.clone()),
            ),
            idempotency_lock: Default::default(),
            operator_tokens: Arc::new(config.security.operator_tokens.clone()),
            plans: Arc::new(config.plans.iter().map(|p| (p.id, p.clone())).collect()),
            trusted_proxies: Arc::new(config.security.trusted_proxies.clone()),
            pins: kubo.as_ref().map(|k| k.ledger.clone()),
            health: health.clone(),
            reseller: Arc::new(config.reseller.clone()),
            console_logins: console_logins.clone(),
            leases: syncer.leases.clone(),
        });
        let mut tasks = vec![
            {
                let llm = Llm::new(
                    config.upstream.profile,
                    config.prices.clone(),
                    config.limits.max_llm_body.get(),
                );
                let spawned = match (kubo, llm) {
                    (Some(kubo), _) => proxy_listener.spawn(state, upstreams, KuboProfile(kubo)),
                    (None, Some(llm)) => proxy_listener.spawn(state, upstreams, llm),
                    (None, None) => proxy_listener.spawn(state, upstreams, Generic),
                };
                spawned.map_err(|source| StartError::Bind {
                    addr: proxy_addr,
                    source,
                })?
            },
            tokio::spawn(server::serve(
                api_listener,
                None,
                config.limits.clone(),
                stopped.clone(),
                // Each request carries its socket peer as an `api::ClientAddr` extension (the
                // router is not served with axum's `ConnectInfo`).
                move |peer, _| {
                    let inner = TowerToHyperService::new(api_router.clone());
                    service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(api::ClientAddr(peer));
                        hyper::service::Service::call(&inner, req)
                    })
                },
                // The management API stays on hyper.
                None,
            )),
            tokio::spawn(reap_loop(
                pools,
                metrics.clone(),
                config.upstream.pool_idle_timeout,
                stopped.clone(),
            )),
            tokio::spawn(
                syncer
                    .clone()
                    .run(config.store.flush_interval, stopped.clone()),
            ),
        ];
        if let Some(leases) = &syncer.leases {
            tasks.push(tokio::spawn(leases.clone().run(stopped.clone())));
        }
        if let Some((rx, clock)) = feed {
            let feed = Feed {
                manager: manager.clone(),
                metrics: metrics.clone(),
                health,
                cursor: clock,
            };
            tasks.push(tokio::spawn(feed.run(
                rx,
                config.store.reconcile_interval,
                stopped,
            )));
        }
        tracing::info!(%proxy_addr, %api_addr, upstream = %config.upstream.url, "tollgate listening");
        Ok(Gateway {
            proxy_addr,
            api_addr,
            manager,
            metrics,
            console_logins,
            syncer,
            stop,
            tasks,
        })
    }

    /// Syncs usage with the store now (tests use this instead of waiting for the interval).
    pub async fn sync_once(&self) {
        self.syncer.once().await;
    }

    /// Stops accepting, drains in-flight requests (up to the grace period) and flushes.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        // Requests that finished during the drain may have counted usage after the sync
        // task's last pass.
        self.syncer.once().await;
        if let Some(leases) = &self.syncer.leases {
            leases.return_all().await;
        }
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

/// Closes idle upstream connections past `upstream.pool_idle_timeout` or closed by the
/// upstream, in every pool, every half timeout but at least every 5 s (and at most every
/// second), and reports how many are left.
async fn reap_loop(
    pools: Vec<UpstreamClient>,
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
                let mut idle = 0;
                for pool in &pools {
                    pool.reap_idle();
                    idle += pool.idle_connections();
                }
                metrics.upstream_idle.set(idle as i64);
            }
            _ = crate::shutdown::stopped(&mut stopped) => break,
        }
    }
}
