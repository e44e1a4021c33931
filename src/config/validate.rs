//! Validation: the loose structs of `file` become the `model`, with defaults filled in. Every
//! problem is collected with its dotted field path (`upstream.url`, `routes[2].permission`);
//! nothing stops at the first error. `upstream` and the per-entry tables (`tables`: routes,
//! security, plans) have their own files.

mod prices;
mod tables;
mod upstream;

pub use tables::{ENV_OPERATOR_TOKENS, ENV_SECRET, MIN_SECRET_BYTES};

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use super::file::{ConfigFile, Failed, LimitsFile, ListenFile, LogFile, NumOrString, StoreFile};
use super::model::{
    Config, Http1Server, Limits, Listen, Log, LogFormat, Management, Metering, QuotaMode, Reseller,
    StoreConfig, StoreUrl, TlsFiles,
};
use super::units;

/// Reads an environment variable; injected so that tests never touch the process environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Default values of everything but `upstream.url`.
pub mod defaults {
    use std::time::Duration;

    /// `listen.proxy`.
    pub const PROXY: &str = "0.0.0.0:8080";
    /// `listen.api`.
    pub const API: &str = "127.0.0.1:8081";
    /// The most `listen.proxy_cores` threads.
    pub const MAX_PROXY_CORES: i64 = 1024;
    /// `store.url`.
    pub const STORE_URL: &str = "sqlite://tollgate.db";
    /// `store.sync_interval` (alias `flush_interval`).
    pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
    /// `store.pool_size`.
    pub const POOL_SIZE: u32 = 10;
    /// `store.statement_timeout`.
    pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
    /// `store.reconcile_interval`.
    pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(30);
    /// `store.lease_ttl`.
    pub const LEASE_TTL: Duration = Duration::from_secs(30);
    /// `store.lease_fraction`.
    pub const LEASE_FRACTION: f64 = 0.2;

    /// `upstream.connect_timeout`.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// `upstream.response_timeout`.
    pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
    /// `upstream.pool_idle_timeout`.
    pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
    /// `upstream.pool_max_idle_per_host`.
    pub const POOL_MAX_IDLE_PER_HOST: usize = 256;
    /// `limits.max_request_body` (100 MiB).
    pub const MAX_REQUEST_BODY: u64 = 100 << 20;
    /// `limits.max_llm_body` (32 MiB).
    pub const MAX_LLM_BODY: u64 = 32 << 20;
    /// `limits.max_header_bytes` (64 KiB).
    pub const MAX_HEADER_BYTES: u64 = 64 << 10;
    /// The smallest `max_header_bytes` accepted.
    pub const MIN_HEADER_BYTES: u64 = 8 << 10;
    /// `limits.body_min_rate`, bytes per second (Apache mod_reqtimeout's `MinRate`).
    pub const BODY_MIN_RATE: u64 = 500;
    /// `limits.body_rate_grace`.
    pub const BODY_RATE_GRACE: Duration = Duration::from_secs(20);
    /// `limits.body_idle_timeout`.
    pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
    /// `limits.send_timeout` (nginx's `send_timeout`).
    pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
    /// `limits.header_read_timeout`.
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// `limits.shutdown_grace`.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
    /// `limits.max_connections` (per listener).
    pub const MAX_CONNECTIONS: usize = 10_000;
    /// `log.level`.
    pub const LOG_LEVEL: &str = "info";
}

/// Validates a whole, cleanly deserialized file.
pub fn validate(file: &ConfigFile, env: Env<'_>) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();
    match validate_partial(file, &Failed::default(), env, &mut errors) {
        Some(config) if errors.is_empty() => Ok(config),
        _ => Err(errors),
    }
}

/// Validates what [`super::file::read`] could deserialize, skipping the `failed` sections, and
/// appends every problem to `errors`. Returns the model only when nothing failed at all.
pub fn validate_partial(
    file: &ConfigFile,
    failed: &Failed,
    env: Env<'_>,
    errors: &mut Vec<ConfigError>,
) -> Option<Config> {
    let mut e = Errors::default();
    let ok = |name: &str| !failed.contains(name);
    let listen = ok("listen").then(|| listen(&file.listen, &mut e)).flatten();
    let store = ok("store")
        .then(|| store(&file.store, env, &mut e))
        .flatten();
    let upstream = ok("upstream")
        .then(|| upstream::upstream(&file.upstream, env, &mut e))
        .flatten();
    let routes = tables::routes(&file.routes, failed, &mut e);
    let security = ok("security")
        .then(|| tables::security(&file.security, env, &mut e))
        .flatten();
    let limits = ok("limits").then(|| limits(&file.limits, &mut e)).flatten();
    let log = ok("log").then(|| log(&file.log, &mut e)).flatten();
    let management = ok("management")
        .then(|| management(&file.management, &mut e))
        .flatten();
    let reseller = ok("management")
        .then(|| reseller(&file.management, &mut e))
        .flatten();
    let utc_offset = ok("metering")
        .then(|| {
            let offset = utc_offset(file.metering.utc_offset.as_deref());
            e.check("metering.utc_offset", offset)
        })
        .flatten();
    let plans = tables::plans(&file.plans, failed, &mut e);
    let default_plan = tables::default_plan(file, failed, &mut e);
    let prices = prices::prices(&file.prices, failed, &mut e);
    errors.extend(e.0);
    if !errors.is_empty() || !failed.is_empty() {
        return None;
    }
    Some(Config {
        listen: listen?,
        store: store?,
        upstream: upstream?,
        routes: routes?,
        security: security?,
        limits: limits?,
        log: log?,
        plans: plans?,
        default_plan: default_plan?,
        management: management?,
        reseller: reseller?,
        metering: Metering {
            utc_offset_secs: utc_offset?,
        },
        prices: prices?,
    })
}

/// `+HH:MM` or `-HH:MM` (or `Z`) → seconds east of UTC, within −12:00..+14:00.
fn utc_offset(value: Option<&str>) -> Result<i64, String> {
    let Some(text) = value.map(str::trim) else {
        return Ok(0);
    };
    if text == "Z" || text == "UTC" {
        return Ok(0);
    }
    let bad = || format!("`{text}` is not an offset like \"+08:00\" or \"-05:00\"");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h.to_string().len() > 2 || !(0..60).contains(&m) || h < 0 {
        return Err(bad());
    }
    let secs = sign * (h * 3600 + m * 60);
    if !(-12 * 3600..=14 * 3600).contains(&secs) {
        return Err(format!("`{text}` is outside -12:00..+14:00"));
    }
    Ok(secs)
}

/// `[management]`: each limit a positive count, defaulting to the QCode limits.
fn management(f: &crate::config::file::ManagementFile, e: &mut Errors) -> Option<Management> {
    let d = Management::default();
    let count = |v: Option<i64>, default: std::num::NonZeroU32| match v {
        None => Ok(default),
        Some(n) => u32::try_from(n)
            .ok()
            .and_then(std::num::NonZeroU32::new)
            .ok_or_else(|| "must be greater than 0".to_string()),
    };
    let per_minute = e.check(
        "management.calls_per_minute",
        count(f.calls_per_minute, d.calls_per_minute),
    );
    let per_day = e.check(
        "management.calls_per_day",
        count(f.calls_per_day, d.calls_per_day),
    );
    let creations = e.check(
        "management.key_creations_per_hour",
        count(f.key_creations_per_hour, d.key_creations_per_hour),
    );
    Some(Management {
        calls_per_minute: per_minute?,
        calls_per_day: per_day?,
        key_creations_per_hour: creations?,
    })
}

/// `[management]` `region` (up to 64 visible characters) and `tiers` (names of up to 32
/// letters, digits, `-` or `_`, each with a multiplier above 0 and at most 100, no two alike).
fn reseller(f: &crate::config::file::ManagementFile, e: &mut Errors) -> Option<Reseller> {
    let region = match &f.region {
        None => Ok(None),
        Some(r) if (1..=64).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(r.clone()))
        }
        Some(_) => Err("must be 1 to 64 visible ASCII characters".to_string()),
    };
    let region = e.check("management.region", region);
    let mut tiers: Vec<(String, u64)> = Vec::new();
    let mut good = true;
    for (name, multiplier) in f.tiers.iter().flatten() {
        let path = format!("management.tiers.{name}");
        let valid_name = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let tier = if !valid_name {
            Err("a tier name is 1 to 32 letters, digits, '-' or '_'".to_string())
        } else if !(*multiplier > 0.0 && *multiplier <= 100.0) {
            Err("must be greater than 0 and at most 100".to_string())
        } else {
            let ppm = (multiplier * 1e6).round() as u64;
            match tiers.iter().find(|(_, m)| *m == ppm) {
                Some((other, _)) => Err(format!("has the same multiplier as tier {other}")),
                None => Ok(ppm),
            }
        };
        match e.check(&path, tier) {
            Some(ppm) => tiers.push((name.clone(), ppm)),
            None => good = false,
        }
    }
    tiers.sort_by_key(|(_, ppm)| *ppm);
    Some(Reseller {
        region: region?,
        tiers,
    })
    .filter(|_| good)
}

/// The errors found so far.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(path, message));
    }

    /// The value, or `None` after recording the error under `path`.
    fn check<T>(&mut self, path: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.push(path, message)).ok()
    }
}

/// `Some` of every value when none is missing (their errors are already recorded).
fn all<T>(items: Vec<Option<T>>) -> Option<Vec<T>> {
    items.into_iter().collect()
}

/// One of a fixed set of names.
fn choice<T: Copy>(
    value: Option<&str>,
    default: T,
    options: &[(&str, T)],
    what: &str,
) -> Result<T, String> {
    let Some(value) = value else {
        return Ok(default);
    };
    options
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
            format!(
                "unknown {what} `{value}` (expected one of {})",
                names.join(", ")
            )
        })
}

/// A duration; `positive` refuses zero.
fn duration(value: Option<&str>, default: Duration, positive: bool) -> Result<Duration, String> {
    let d = value.map_or(Ok(default), units::parse_duration)?;
    if positive && d.is_zero() {
        return Err("must be greater than 0".to_string());
    }
    Ok(d)
}

/// A size: a bare integer (bytes) or a size string.
fn size(value: Option<&NumOrString>, default: u64) -> Result<u64, String> {
    match value {
        None => Ok(default),
        Some(NumOrString::Int(n)) => units::size_from_int(*n),
        Some(NumOrString::Str(s)) => units::parse_size(s),
        Some(NumOrString::Float(_)) => {
            Err("must be a whole number of bytes or a size string like \"1GiB\"".to_string())
        }
    }
}

fn socket_addr(value: &str) -> Result<SocketAddr, String> {
    value.trim().parse().map_err(|_| {
        format!("`{value}` is not a socket address (expected IP:PORT, e.g. \"0.0.0.0:8080\")")
    })
}

fn listen(f: &ListenFile, e: &mut Errors) -> Option<Listen> {
    let proxy = e.check(
        "listen.proxy",
        socket_addr(f.proxy.as_deref().unwrap_or(defaults::PROXY)),
    );
    let api = e.check(
        "listen.api",
        socket_addr(f.api.as_deref().unwrap_or(defaults::API)),
    );
    if let (Some(p), Some(a)) = (proxy, api) {
        if p == a && p.port() != 0 {
            e.push(
                "listen.api",
                format!("`{a}` is already the proxy listener's address"),
            );
        }
    }
    let proxy_tls = match &f.tls {
        None => Some(None),
        Some(tls) => {
            let cert = e.check("listen.tls.cert", readable_file(&tls.cert));
            let key = e.check("listen.tls.key", readable_file(&tls.key));
            cert.zip(key)
                .map(|(cert, key)| Some(TlsFiles { cert, key }))
        }
    };
    let proxy_cores = e.check("listen.proxy_cores", proxy_cores(f.proxy_cores.as_ref()));
    let http1 = e.check("listen.http1", http1_server(f.http1.as_deref()));
    Some(Listen {
        proxy: proxy?,
        api: api?,
        proxy_tls: proxy_tls?,
        proxy_cores: proxy_cores?,
        http1: http1?,
    })
}

/// `listen.http1`: `"tollgate"` (the default) or `"hyper"`.
fn http1_server(value: Option<&str>) -> Result<Http1Server, String> {
    match value {
        None | Some("tollgate") => Ok(Http1Server::Tollgate),
        Some("hyper") => Ok(Http1Server::Hyper),
        Some(other) => Err(format!(
            "expected \"tollgate\" (Tollgate's own HTTP/1.1 server) or \"hyper\", found {other:?}"
        )),
    }
}

/// `listen.proxy_cores`: `0` (or unset) for the shared runtime, a number of threads, or
/// `"auto"` for one per CPU this process may use.
fn proxy_cores(value: Option<&NumOrString>) -> Result<Option<NonZeroUsize>, String> {
    let cores = match value {
        None | Some(NumOrString::Int(0)) => return Ok(None),
        Some(NumOrString::Str(s)) if s == "auto" => {
            std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
        }
        Some(NumOrString::Int(n)) if (1..=defaults::MAX_PROXY_CORES).contains(n) => *n as usize,
        Some(other) => {
            return Err(format!(
                "expected 0 (the shared runtime), \"auto\" or a number of threads up to {}, \
                 found {}",
                defaults::MAX_PROXY_CORES,
                shown(other)
            ));
        }
    };
    Ok(NonZeroUsize::new(cores))
}

fn shown(value: &NumOrString) -> String {
    match value {
        NumOrString::Int(n) => n.to_string(),
        NumOrString::Float(f) => f.to_string(),
        NumOrString::Str(s) => format!("{s:?}"),
    }
}

/// A file that exists and can be opened now.
pub(super) fn readable_file(path: &str) -> Result<PathBuf, String> {
    let meta = std::fs::File::open(path)
        .and_then(|f| f.metadata())
        .map_err(|err| format!("cannot read `{path}`: {err}"))?;
    if !meta.is_file() {
        return Err(format!("`{path}` is not a regular file"));
    }
    Ok(PathBuf::from(path))
}

/// `TOLLGATE_STORE_URL`, when set, replaces `store.url` (a PostgreSQL password belongs in a
/// secret, not in the file).
pub const ENV_STORE_URL: &str = "TOLLGATE_STORE_URL";

fn store(f: &StoreFile, env: Env<'_>, e: &mut Errors) -> Option<StoreConfig> {
    let url = match env(ENV_STORE_URL).filter(|u| !u.trim().is_empty()) {
        Some(url) => e.check(ENV_STORE_URL, store_url(&url)),
        None => e.check(
            "store.url",
            store_url(f.url.as_deref().unwrap_or(defaults::STORE_URL)),
        ),
    };
    let flush_interval = match (&f.sync_interval, &f.flush_interval) {
        (Some(_), Some(_)) => e.check::<Duration>(
            "store.flush_interval",
            Err("is the old name of `sync_interval`; give only `sync_interval`".into()),
        ),
        (Some(v), None) => e.check(
            "store.sync_interval",
            duration(Some(v), defaults::FLUSH_INTERVAL, true),
        ),
        (None, v) => e.check(
            "store.flush_interval",
            duration(v.as_deref(), defaults::FLUSH_INTERVAL, true),
        ),
    };
    let pool_size = e.check(
        "store.pool_size",
        match f.pool_size {
            None => Ok(defaults::POOL_SIZE),
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| format!("must be between 1 and 1000, not {n}")),
        },
    );
    let statement_timeout = e.check(
        "store.statement_timeout",
        duration(
            f.statement_timeout.as_deref(),
            defaults::STATEMENT_TIMEOUT,
            true,
        ),
    );
    let reconcile_interval = e.check(
        "store.reconcile_interval",
        duration(
            f.reconcile_interval.as_deref(),
            defaults::RECONCILE_INTERVAL,
            true,
        ),
    );
    let quota_mode = e.check(
        "store.quota_mode",
        match f.quota_mode.as_deref() {
            None | Some("lease") => Ok(QuotaMode::Lease),
            Some("sync") => Ok(QuotaMode::Sync),
            Some(other) => Err(format!("must be \"lease\" or \"sync\", not {other:?}")),
        },
    );
    let lease_ttl = e.check(
        "store.lease_ttl",
        duration(f.lease_ttl.as_deref(), defaults::LEASE_TTL, true).and_then(|ttl| {
            if ttl < Duration::from_secs(5) {
                Err("must be at least 5s (leases are renewed by every sync)".to_string())
            } else {
                Ok(ttl)
            }
        }),
    );
    let lease_fraction = e.check(
        "store.lease_fraction",
        match f.lease_fraction {
            None => Ok(defaults::LEASE_FRACTION),
            Some(x) if x > 0.0 && x <= 1.0 => Ok(x),
            Some(x) => Err(format!("must be above 0 and at most 1, not {x}")),
        },
    );
    let flush_interval = flush_interval?;
    let lease_ttl = lease_ttl?;
    if lease_ttl < flush_interval * 3 {
        e.check::<()>(
            "store.lease_ttl",
            Err(format!(
                "must be at least three sync intervals ({}ms), or leases lapse between renewals",
                flush_interval.as_millis() * 3
            )),
        );
    }
    Some(StoreConfig {
        url: url?,
        flush_interval,
        pool_size: pool_size?,
        statement_timeout: statement_timeout?,
        reconcile_interval: reconcile_interval?,
        quota_mode: quota_mode?,
        lease_ttl,
        lease_fraction: lease_fraction?,
    })
}

/// `sqlite://PATH` or `postgres://...`. The URL is never echoed: it may hold a password.
fn store_url(s: &str) -> Result<StoreUrl, String> {
    const EXPECTED: &str = "expected \"sqlite://PATH\" or \"postgres://USER@HOST/DB\"";
    let s = s.trim();
    if s.contains(":memory:") || s.contains("mode=memory") {
        return Err(
            "in-memory SQLite is refused: every key and counter would be lost on restart; \
                    use sqlite://PATH"
                .to_string(),
        );
    }
    if let Some(path) = s.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(format!("the SQLite path is empty ({EXPECTED})"));
        }
        if path.contains('?') {
            return Err("SQLite URL options (`?...`) are not supported; give only the path".into());
        }
        return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
    }
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        let url = url::Url::parse(s).map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
        if !url.has_host() {
            return Err("the PostgreSQL URL has no host".to_string());
        }
        return Ok(StoreUrl::Postgres(s.to_string()));
    }
    let scheme = s.split_once(':').map_or("", |(scheme, _)| scheme);
    Err(format!(
        "unsupported store URL scheme `{scheme}` ({EXPECTED})"
    ))
}

fn limits(f: &LimitsFile, e: &mut Errors) -> Option<Limits> {
    let body =
        size(f.max_request_body.as_ref(), defaults::MAX_REQUEST_BODY).and_then(units::positive);
    let max_request_body = e.check("limits.max_request_body", body);
    let llm = size(f.max_llm_body.as_ref(), defaults::MAX_LLM_BODY).and_then(units::positive);
    // Unset, it follows a smaller `max_request_body`; set, it must fit under it.
    let max_llm_body = match (e.check("limits.max_llm_body", llm), max_request_body) {
        (Some(llm), Some(body)) if f.max_llm_body.is_none() => Some(llm.min(body)),
        (Some(llm), Some(body)) if llm > body => {
            e.push(
                "limits.max_llm_body",
                format!("{llm} bytes is more than limits.max_request_body ({body} bytes)"),
            );
            None
        }
        (llm, _) => llm,
    };
    let header = size(f.max_header_bytes.as_ref(), defaults::MAX_HEADER_BYTES).and_then(|n| {
        if n < defaults::MIN_HEADER_BYTES {
            return Err(format!(
                "must be at least 8KiB ({} bytes)",
                defaults::MIN_HEADER_BYTES
            ));
        }
        usize::try_from(n).map_err(|_| "too large".to_string())
    });
    let max_header_bytes = e.check("limits.max_header_bytes", header);
    let read = duration(
        f.header_read_timeout.as_deref(),
        defaults::HEADER_READ_TIMEOUT,
        true,
    );
    let header_read_timeout = e.check("limits.header_read_timeout", read);
    let idle = duration(
        f.body_idle_timeout.as_deref(),
        defaults::BODY_IDLE_TIMEOUT,
        true,
    );
    let body_idle_timeout = e.check("limits.body_idle_timeout", idle);
    let rate = size(f.body_min_rate.as_ref(), defaults::BODY_MIN_RATE);
    let body_min_rate = e.check("limits.body_min_rate", rate);
    let grace = duration(
        f.body_rate_grace.as_deref(),
        defaults::BODY_RATE_GRACE,
        false,
    );
    let body_rate_grace = e.check("limits.body_rate_grace", grace);
    let send = duration(f.send_timeout.as_deref(), defaults::SEND_TIMEOUT, true);
    let send_timeout = e.check("limits.send_timeout", send);
    let grace = duration(f.shutdown_grace.as_deref(), defaults::SHUTDOWN_GRACE, false);
    let shutdown_grace = e.check("limits.shutdown_grace", grace);
    let conns = match f.max_connections {
        None => Ok(defaults::MAX_CONNECTIONS),
        Some(n) if n > 0 => usize::try_from(n).map_err(|_| "too large".to_string()),
        Some(_) => Err("must be greater than 0".to_string()),
    };
    let max_connections = e.check("limits.max_connections", conns);
    Some(Limits {
        max_request_body: max_request_body?,
        max_llm_body: max_llm_body?,
        max_header_bytes: max_header_bytes?,
        header_read_timeout: header_read_timeout?,
        body_idle_timeout: body_idle_timeout?,
        body_min_rate: body_min_rate?,
        body_rate_grace: body_rate_grace?,
        send_timeout: send_timeout?,
        shutdown_grace: shutdown_grace?,
        max_connections: max_connections?,
    })
}

fn log(f: &LogFile, e: &mut Errors) -> Option<Log> {
    let formats = [("text", LogFormat::Text), ("json", LogFormat::Json)];
    let format = e.check(
        "log.format",
        choice(f.format.as_deref(), LogFormat::Text, &formats, "log format"),
    );
    let level = f.level.as_deref().unwrap_or(defaults::LOG_LEVEL);
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| level.to_string())
        .map_err(|err| format!("`{level}` is not a valid log filter: {err}"));
    let level = e.check("log.level", filter);
    Some(Log {
        format: format?,
        level: level?,
    })
}
