//! The config file as written: serde structs mirroring the TOML with loose types (strings for
//! addresses, URLs, durations, sizes and CIDRs; `i64` for numbers), so that `validate` can give
//! every mistake a friendly message. Every struct refuses unknown fields.
//!
//! [`read`] deserializes each top-level section (and each `[[routes]]` / `[[plans]]` entry) on its
//! own, so one broken section does not hide the errors of the others.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Visitor};

use super::ConfigError;

/// The whole file. Every section is optional; `validate` supplies the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct ConfigFile {
    pub listen: ListenFile,
    pub store: StoreFile,
    pub upstream: UpstreamFile,
    pub routes: Vec<RouteFile>,
    pub security: SecurityFile,
    pub limits: LimitsFile,
    pub log: LogFile,
    pub default_plan: Option<i64>,
    pub plans: Vec<PlanFile>,
    pub management: ManagementFile,
    pub metering: MeteringFile,
    /// `[prices."MODEL"]`, by model name.
    pub prices: BTreeMap<String, PriceFile>,
}

/// `[metering]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct MeteringFile {
    /// Offset from UTC of the quota calendar, `+HH:MM` / `-HH:MM` (default `+00:00`).
    pub utc_offset: Option<String>,
}

/// One `[prices."MODEL"]` table: USD per million tokens.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct PriceFile {
    pub input_usd_per_mtok: Option<NumOrString>,
    pub output_usd_per_mtok: Option<NumOrString>,
    pub cached_input_usd_per_mtok: Option<NumOrString>,
    /// Output tokens reserved when the request names no maximum.
    pub max_output_tokens: Option<i64>,
}

/// `[management]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct ManagementFile {
    pub calls_per_minute: Option<i64>,
    pub calls_per_day: Option<i64>,
    pub key_creations_per_hour: Option<i64>,
    pub region: Option<String>,
    /// Tier names and their price multipliers (`A = 1.0`, `B = 0.9`, ...).
    pub tiers: Option<std::collections::BTreeMap<String, f64>>,
}

/// The top-level keys, in the order errors are reported.
pub const SECTIONS: [&str; 12] = [
    "listen",
    "store",
    "upstream",
    "routes",
    "security",
    "limits",
    "log",
    "default_plan",
    "plans",
    "management",
    "metering",
    "prices",
];

/// `[listen]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct ListenFile {
    pub proxy: Option<String>,
    pub api: Option<String>,
    pub proxy_cores: Option<NumOrString>,
    pub http1: Option<String>,
    pub tls: Option<TlsFile>,
}

/// `[listen.tls]`: PEM files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table with `cert` and `key`")]
pub struct TlsFile {
    pub cert: String,
    pub key: String,
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct StoreFile {
    pub url: Option<String>,
    pub flush_interval: Option<String>,
    pub sync_interval: Option<String>,
    pub pool_size: Option<i64>,
    pub statement_timeout: Option<String>,
    pub reconcile_interval: Option<String>,
    pub quota_mode: Option<String>,
    pub lease_ttl: Option<String>,
    pub lease_fraction: Option<f64>,
}

/// `[upstream]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct UpstreamFile {
    pub url: Option<String>,
    pub profile: Option<String>,
    pub connect_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle_per_host: Option<i64>,
    pub tls_roots: Option<String>,
    /// Extra CA certificate (PEM) trusted for an HTTPS upstream, e.g. a private CA.
    pub ca_file: Option<String>,
    pub auth_header: Option<String>,
    /// Name of the environment variable holding the header value (never the value itself).
    pub auth_value_env: Option<String>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RouteFile {
    #[serde(default)]
    pub methods: Vec<String>,
    pub path: String,
    pub permission: String,
    /// Fixed cost of one request on this route, in USD (metered against cost limits).
    pub cost_usd: Option<NumOrString>,
}

/// `[security]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct SecurityFile {
    pub secret: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub operator_tokens: Vec<String>,
}

impl fmt::Debug for SecurityFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityFile")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("trusted_proxies", &self.trusted_proxies)
            .field("operator_tokens", &self.operator_tokens)
            .finish()
    }
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct LimitsFile {
    pub max_request_body: Option<NumOrString>,
    pub max_llm_body: Option<NumOrString>,
    pub max_header_bytes: Option<NumOrString>,
    pub header_read_timeout: Option<String>,
    pub body_idle_timeout: Option<String>,
    pub body_min_rate: Option<NumOrString>,
    pub body_rate_grace: Option<String>,
    pub send_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    pub max_connections: Option<i64>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct LogFile {
    pub format: Option<String>,
    pub level: Option<String>,
}

/// One `[[plans]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct PlanFile {
    pub id: i64,
    pub name: String,
    pub price_usd: Option<NumOrString>,
    pub pinned_count_limit: Option<i64>,
    pub pinned_bytes_limit: Option<NumOrString>,
    pub ingress_limit: Option<NumOrString>,
    pub egress_limit: Option<NumOrString>,
    pub ipns_limit: Option<i64>,
}

/// A value that may be written as a TOML number or a string (sizes, prices).
#[derive(Clone, Debug, PartialEq)]
pub enum NumOrString {
    Int(i64),
    Float(f64),
    Str(String),
}

impl<'de> Deserialize<'de> for NumOrString {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumOrString, E> {
                Ok(NumOrString::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumOrString, E> {
                i64::try_from(v)
                    .map(NumOrString::Int)
                    .map_err(|_| E::custom(format!("`{v}` is too large")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumOrString, E> {
                Ok(NumOrString::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NumOrString, E> {
                Ok(NumOrString::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Paths of the sections and entries that failed to deserialize (their errors are already
/// reported); validation skips them instead of reporting their defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failed(BTreeSet<String>);

impl Failed {
    /// Whether the section or entry at `path` (`"upstream"`, `"routes[2]"`) failed.
    pub fn contains(&self, path: &str) -> bool {
        self.0.contains(path)
    }

    /// Whether any entry of the array section `name` failed.
    pub fn any_in(&self, name: &str) -> bool {
        let prefix = format!("{name}[");
        self.0.iter().any(|p| p == name || p.starts_with(&prefix))
    }

    /// Whether nothing failed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Deserializes a parsed TOML table section by section. Broken sections and entries are left at
/// their defaults, recorded in the returned [`Failed`] and reported in `errors` with their path.
pub fn read(mut table: toml::Table, errors: &mut Vec<ConfigError>) -> (ConfigFile, Failed) {
    let mut file = ConfigFile::default();
    let mut failed = Failed::default();
    let mut r = Reader {
        errors,
        failed: &mut failed,
    };
    for name in SECTIONS {
        let Some(value) = table.remove(name) else {
            continue;
        };
        match name {
            "listen" => r.one(name, value, &mut file.listen),
            "store" => r.one(name, value, &mut file.store),
            "upstream" => r.one(name, value, &mut file.upstream),
            "routes" => r.many(name, value, &mut file.routes),
            "security" => r.one(name, value, &mut file.security),
            "limits" => r.one(name, value, &mut file.limits),
            "log" => r.one(name, value, &mut file.log),
            "management" => r.one(name, value, &mut file.management),
            "metering" => r.one(name, value, &mut file.metering),
            "default_plan" => r.one(name, value, &mut file.default_plan),
            "plans" => r.many(name, value, &mut file.plans),
            "prices" => r.map(name, value, &mut file.prices),
            _ => {}
        }
    }
    for name in table.keys() {
        r.errors.push(ConfigError::new(
            name,
            format!("unknown section (expected one of {})", SECTIONS.join(", ")),
        ));
    }
    (file, failed)
}

struct Reader<'a> {
    errors: &'a mut Vec<ConfigError>,
    failed: &'a mut Failed,
}

impl Reader<'_> {
    /// Deserializes `value` into `slot`, or records the error under `path`.
    fn one<T: DeserializeOwned>(&mut self, path: &str, value: toml::Value, slot: &mut T) {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => *slot = v,
            Err(e) => {
                let (inner_path, message) = error_path(&e);
                self.errors
                    .push(ConfigError::new(join(path, &inner_path), message));
                self.failed.0.insert(path.to_string());
            }
        }
    }

    /// Deserializes an array of tables entry by entry, keeping indices for the error paths.
    fn many<T: DeserializeOwned + Default>(
        &mut self,
        name: &str,
        value: toml::Value,
        slot: &mut Vec<T>,
    ) {
        let toml::Value::Array(items) = value else {
            return self.one(name, value, slot);
        };
        for (i, item) in items.into_iter().enumerate() {
            let mut entry = T::default();
            self.one(&format!("{name}[{i}]"), item, &mut entry);
            slot.push(entry);
        }
    }
}

impl Reader<'_> {
    /// Deserializes a table of tables entry by entry (`prices."gpt-4o"`), keeping the entry's
    /// quoted name in the error paths.
    fn map<T: DeserializeOwned + Default>(
        &mut self,
        name: &str,
        value: toml::Value,
        slot: &mut BTreeMap<String, T>,
    ) {
        let toml::Value::Table(items) = value else {
            return self.one(name, value, slot);
        };
        for (key, item) in items {
            let mut entry = T::default();
            self.one(&entry_path(name, &key), item, &mut entry);
            slot.insert(key, entry);
        }
    }
}

/// The path of a named entry of a table section: `prices."gpt-4o"`.
pub fn entry_path(section: &str, key: &str) -> String {
    format!("{section}.{key:?}")
}

/// The path inside a section (an unknown field is named itself: `prxy` in `listen.prxy`) and
/// the message of a serde error.
fn error_path(e: &serde_path_to_error::Error<toml::de::Error>) -> (String, String) {
    let message = e.inner().message().trim().to_string();
    let path = match e.path().to_string() {
        p if p == "." => String::new(),
        p => p,
    };
    (path, message)
}

/// Joins a section path and an inner path: `upstream` + `url`, `routes[1]` + `methods[0]`.
fn join(outer: &str, inner: &str) -> String {
    match (outer.is_empty(), inner.is_empty()) {
        (_, true) => outer.to_string(),
        (true, false) => inner.to_string(),
        _ if inner.starts_with('[') => format!("{outer}{inner}"),
        _ => format!("{outer}.{inner}"),
    }
}
