//! The validated configuration model. Built only by `config::validate`, so every value in here
//! has already been checked: addresses parsed, CIDRs compiled, durations and limits positive.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use crate::domain::ip::IpSet;
use crate::domain::permission::Permission;
use crate::domain::price::Prices;

/// The whole gateway configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: Listen,
    pub store: StoreConfig,
    pub upstream: Upstream,
    /// Operator route rules, consulted before the profile's own table.
    pub routes: Vec<RouteRule>,
    pub security: Security,
    pub limits: Limits,
    pub log: Log,
    pub plans: Vec<Plan>,
    /// Plan id given to new accounts.
    pub default_plan: Option<i64>,
    pub management: Management,
    /// What `/me` tells partners about the reseller offer (`[management]` `region`, `tiers`).
    pub reseller: Reseller,
    pub metering: Metering,
    /// `[prices]`: per-model LLM prices (openai / anthropic profiles).
    pub prices: Prices,
}

/// `[metering]`: the calendar quota windows follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metering {
    /// Days and billing months start at midnight in this offset from UTC (seconds east).
    pub utc_offset_secs: i64,
}

/// `[management]`: rate limits of the management API per partner token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Management {
    pub calls_per_minute: NonZeroU32,
    pub calls_per_day: NonZeroU32,
    pub key_creations_per_hour: NonZeroU32,
}

impl Default for Management {
    /// The QCode reseller API's limits: 60 a minute, 1000 a day, 5 key creations an hour.
    fn default() -> Self {
        let n = |v| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        Management {
            calls_per_minute: n(60),
            calls_per_day: n(1000),
            key_creations_per_hour: n(5),
        }
    }
}

/// `[management]` `region` and `tiers`: the QCode `/me` fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reseller {
    /// Where this gateway serves from, as partners should see it.
    pub region: Option<String>,
    /// Tier names with their multipliers in parts per million, by multiplier: a partner's tier
    /// is the one whose multiplier is the partner's own.
    pub tiers: Vec<(String, u64)>,
}

impl Reseller {
    /// The name of the tier with multiplier `ppm`, if one has it.
    pub fn tier(&self, ppm: u64) -> Option<&str> {
        self.tiers
            .iter()
            .find(|(_, m)| *m == ppm)
            .map(|(name, _)| name.as_str())
    }
}

/// `[listen]`: the two listeners.
#[derive(Clone, Debug)]
pub struct Listen {
    pub proxy: SocketAddr,
    pub api: SocketAddr,
    /// TLS termination on the proxy listener.
    pub proxy_tls: Option<TlsFiles>,
    /// `Some(n)`: the proxy listener runs on `n` threads, each with its own `current_thread`
    /// runtime, `SO_REUSEPORT` socket and upstream pool; `None`: on the shared runtime.
    pub proxy_cores: Option<std::num::NonZeroUsize>,
    /// Which server reads cleartext HTTP/1 on the proxy listener.
    pub http1: Http1Server,
}

/// `listen.http1`: the server for cleartext HTTP/1 connections on the proxy listener (TLS and
/// HTTP/2 connections are always hyper's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Http1Server {
    /// Tollgate's own (`proxy::h1`), the default.
    #[default]
    Tollgate,
    /// hyper's.
    Hyper,
}

/// Certificate chain and private key, PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[store]`.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub url: StoreUrl,
    /// How often counters and `last_used_at` are flushed to the store (`sync_interval`; with
    /// PostgreSQL each flush also reads back the other instances' totals).
    pub flush_interval: Duration,
    /// PostgreSQL connections per instance.
    pub pool_size: u32,
    /// PostgreSQL `statement_timeout` of every connection.
    pub statement_timeout: Duration,
    /// PostgreSQL: how often every key, partner and account changed recently is re-read, the
    /// safety net under change notifications.
    pub reconcile_interval: Duration,
    /// PostgreSQL: how money limits (partner balances, key cost limits) are shared.
    pub quota_mode: QuotaMode,
    /// PostgreSQL lease mode: how long a lease outlives its holder's last renewal.
    pub lease_ttl: Duration,
    /// PostgreSQL lease mode: the share of what is left that one lease takes (0–1].
    pub lease_fraction: f64,
}

/// How an instance of a cluster spends a money limit (`store.quota_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaMode {
    /// Strict: each instance spends only a slice of the budget leased to it (overshoot 0).
    Lease,
    /// Each instance admits against the totals of the last sync (overshoot at most what all
    /// instances admit in one sync interval).
    Sync,
}

impl StoreConfig {
    /// The store at `url` with every other setting at its default.
    pub fn for_url(url: StoreUrl) -> Self {
        use super::validate::defaults as d;
        StoreConfig {
            url,
            flush_interval: d::FLUSH_INTERVAL,
            pool_size: d::POOL_SIZE,
            statement_timeout: d::STATEMENT_TIMEOUT,
            reconcile_interval: d::RECONCILE_INTERVAL,
            quota_mode: QuotaMode::Lease,
            lease_ttl: d::LEASE_TTL,
            lease_fraction: d::LEASE_FRACTION,
        }
    }
}

/// Which store to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH` (relative paths are relative to the working directory).
    Sqlite(PathBuf),
    /// `postgres://...` as given.
    Postgres(String),
}

/// Upstream profile: default route table, credential forms and metering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileKind {
    Kubo,
    OpenAi,
    Anthropic,
    Generic,
}

impl ProfileKind {
    /// The config name of the profile.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKind::Kubo => "kubo",
            ProfileKind::OpenAi => "openai",
            ProfileKind::Anthropic => "anthropic",
            ProfileKind::Generic => "generic",
        }
    }
}

/// Which root certificates to trust for an HTTPS upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsRoots {
    /// Mozilla's roots compiled in (`webpki-roots`), the default: works in scratch containers.
    Webpki,
    /// The operating system's certificate store.
    System,
}

/// `[upstream]`.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Base URL, `http` or `https`, no query or fragment. Its path is prefixed to every request.
    pub url: url::Url,
    pub profile: ProfileKind,
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers arrive.
    pub response_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub tls_roots: TlsRoots,
    /// An extra CA certificate file (PEM) trusted in addition to the roots.
    pub ca_file: Option<PathBuf>,
    /// A header injected into every forwarded request (the upstream's own credential).
    pub auth: Option<(HeaderName, HeaderValue)>,
}

/// What a matched route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteAction {
    /// The key needs this permission.
    Require(Permission),
    /// Refused for every key.
    Deny,
}

/// How a route's path is matched against the normalised request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathPattern {
    /// The whole path equals this.
    Exact(String),
    /// The path starts with this (written with a trailing `*` in TOML).
    Prefix(String),
}

/// One `[[routes]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRule {
    /// Methods the rule applies to; empty = every method.
    pub methods: Vec<Method>,
    pub path: PathPattern,
    pub action: RouteAction,
    /// Fixed cost of one request in micro-USD (0 = free).
    pub cost_micros: u64,
}

/// `[security]`. Its `Debug` output redacts the secret.
#[derive(Clone)]
pub struct Security {
    /// Server secret keying the key digests (from the file or `TOLLGATE_SECRET`); when absent
    /// one is generated and persisted in the store on first start.
    pub secret: Option<Vec<u8>>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: IpSet,
    /// argon2id PHC strings of operator tokens.
    pub operator_tokens: Vec<String>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("trusted_proxies", &self.trusted_proxies)
            .field("operator_tokens", &self.operator_tokens)
            .finish()
    }
}

/// `[limits]`: request size and time limits of the proxy listener.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_request_body: NonZeroU64,
    /// The cap of a priced LLM call's JSON body, read in full before admission (never above
    /// `max_request_body`).
    pub max_llm_body: NonZeroU64,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    /// Longest pause allowed between two pieces of a request body.
    pub body_idle_timeout: Duration,
    /// The slowest average a request body may arrive at once `body_rate_grace` of waiting on
    /// the client has passed, in bytes per second (0: no minimum).
    pub body_min_rate: u64,
    pub body_rate_grace: Duration,
    /// Longest a response may wait on a client that takes none of it (a closed HTTP/2 window,
    /// a socket nobody reads): then the connection is closed.
    pub send_timeout: Duration,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Most connections served at once, per listener.
    pub max_connections: usize,
}

/// Access-log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[log]`.
#[derive(Clone, Debug)]
pub struct Log {
    pub format: LogFormat,
    /// A `tracing` filter directive, e.g. `info` or `tollgate=debug`.
    pub level: String,
}

/// One `[[plans]]` entry (Gateway3 plan).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub id: i64,
    pub name: String,
    /// Price per billing period in micro-USD.
    pub price_micros: u64,
    pub pinned_count_limit: Option<NonZeroU64>,
    pub pinned_bytes_limit: Option<NonZeroU64>,
    pub ingress_limit: Option<NonZeroU64>,
    pub egress_limit: Option<NonZeroU64>,
    pub ipns_limit: Option<NonZeroU32>,
}
