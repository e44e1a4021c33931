//! Tests of the whole loader: the example file, defaults, environment overrides, error
//! collection across sections and the syntax-error path. Single error kinds are in `errors`.

mod errors;
mod table_errors;

use std::net::IpAddr;
use std::num::NonZeroU64;
use std::time::Duration;

use super::model::{
    Http1Server, LogFormat, PathPattern, ProfileKind, RouteAction, StoreUrl, TlsRoots,
};
use super::*;
use crate::domain::permission::Permission;

const EXAMPLE: &str = include_str!("../../config/tollgate.toml");
const MINIMAL: &str = "[upstream]\nurl = \"http://127.0.0.1:5001\"\n";
/// A syntactically valid argon2id PHC string.
const PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$jZsFG1G2UF1oHqTZzh6iyKzMJ9O8kCX8OGWHmlGzV1Y";

fn no_env(_: &str) -> Option<String> {
    None
}

/// An environment holding only `vars`.
fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// The `(path, message)` of every error `text` yields with an empty environment.
fn errors_of(text: &str) -> Vec<(String, String)> {
    match parse(text, &no_env) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(ConfigErrors(list)) => list.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

/// Asserts that `text` yields exactly one error, at `path`, whose message contains `message`.
fn assert_one(text: &str, path: &str, message: &str) {
    let errors = errors_of(text);
    assert_eq!(errors.len(), 1, "{text}\n→ {errors:?}");
    let (p, m) = &errors[0];
    assert_eq!(p, path, "{text}");
    assert!(
        m.contains(message),
        "{text}\n→ {p}: {m}\n(expected `{message}`)"
    );
}

/// `[upstream]` with a valid URL followed by `extra` (more upstream keys, then other sections).
fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}\n")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn example_parses() {
    let config = parse(EXAMPLE, &no_env).unwrap();
    assert_eq!(config.listen.proxy.to_string(), "0.0.0.0:8080");
    assert_eq!(config.listen.api.to_string(), "127.0.0.1:8081");
    assert_eq!(config.upstream.profile, ProfileKind::Kubo);
    assert_eq!(config.routes.len(), 5);
    assert_eq!(config.routes[0].methods, vec![http::Method::POST]);
    assert_eq!(
        config.routes[0].action,
        RouteAction::Require(Permission::Read)
    );
    assert_eq!(
        config.routes[1].path,
        PathPattern::Prefix("/api/v0/files/".into())
    );
    assert!(config.routes[1].methods.is_empty());
    assert_eq!(config.routes[2].cost_micros, 1_000, "cost_usd = 0.001");
    assert_eq!(config.routes[3].action, RouteAction::Deny);
    assert!(config.security.trusted_proxies.contains(ip("10.1.2.3")));
    assert!(config.security.trusted_proxies.contains(ip("127.0.0.1")));
    assert!(!config.security.trusted_proxies.contains(ip("192.168.0.1")));
    assert_eq!(config.default_plan, Some(1));
    let [free, plan0] = &config.plans[..] else {
        panic!("two plans expected");
    };
    assert_eq!(
        (free.id, free.name.as_str(), free.price_micros),
        (1, "Free", 0)
    );
    assert_eq!(free.pinned_bytes_limit, NonZeroU64::new(1_073_741_824));
    assert_eq!(free.ingress_limit, NonZeroU64::new(5_368_709_120));
    assert_eq!(free.ipns_limit.map(|n| n.get()), Some(3));
    assert_eq!((plan0.id, plan0.price_micros), (3, 9_990_000));
    assert_eq!(plan0.pinned_count_limit, NonZeroU64::new(2000));
    assert_eq!(plan0.pinned_bytes_limit, NonZeroU64::new(107_374_182_400));
    assert_eq!(plan0.egress_limit, NonZeroU64::new(21_474_836_480));
}

#[test]
fn example_with_every_commented_secret_from_the_environment() {
    let text = EXAMPLE
        .replace("# auth_header", "auth_header")
        .replace("# auth_value_env", "auth_value_env");
    let secret = "0123456789abcdef0123456789abcdef";
    let env = env_of(&[
        ("TOLLGATE_UPSTREAM_AUTH", "Bearer sk-test"),
        ("TOLLGATE_SECRET", secret),
        ("TOLLGATE_OPERATOR_TOKENS", PHC),
    ]);
    let config = parse(&text, &env).unwrap();
    let (name, value) = config.upstream.auth.unwrap();
    assert_eq!(name, http::header::AUTHORIZATION);
    assert_eq!(value, "Bearer sk-test");
    assert!(value.is_sensitive());
    assert_eq!(config.security.secret.as_deref(), Some(secret.as_bytes()));
    assert_eq!(config.security.operator_tokens, vec![PHC.to_string()]);
}

#[test]
fn example_is_a_faithful_mirror_of_the_file_structs() {
    let file: file::ConfigFile = toml::from_str(EXAMPLE).unwrap();
    assert_eq!(file.plans.len(), 2);
    assert!(validate::validate(&file, &no_env).is_ok());
}

#[test]
fn max_llm_body_follows_a_smaller_max_request_body_and_never_exceeds_it() {
    let limits = |toml: &str| MINIMAL.to_string() + "[limits]\n" + toml;
    let c = parse(&limits("max_request_body = \"1MiB\"\n"), &no_env).unwrap();
    assert_eq!(c.limits.max_llm_body.get(), 1 << 20);
    let c = parse(&limits("max_llm_body = \"4KiB\"\n"), &no_env).unwrap();
    assert_eq!(c.limits.max_llm_body.get(), 4 << 10);
    let errors = parse(
        &limits("max_request_body = \"1MiB\"\nmax_llm_body = \"2MiB\"\n"),
        &no_env,
    )
    .unwrap_err()
    .to_string();
    assert!(
        errors.contains("limits.max_llm_body: 2097152 bytes is more than limits.max_request_body (1048576 bytes)"),
        "{errors}"
    );
}

#[test]
fn proxy_cores_take_a_number_or_auto() {
    let cores = |v: &str| {
        let text = MINIMAL.replacen(
            "[upstream]",
            &format!("[listen]\nproxy_cores = {v}\n[upstream]"),
            1,
        );
        parse(&text, &no_env)
            .unwrap()
            .listen
            .proxy_cores
            .map(|n| n.get())
    };
    assert_eq!(cores("0"), None);
    assert_eq!(cores("3"), Some(3));
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(cores("\"auto\""), Some(cpus));
}

#[test]
fn http1_picks_tollgate_by_default_or_hyper() {
    let http1 = |line: &str| {
        let text = MINIMAL.replacen("[upstream]", &format!("[listen]\n{line}\n[upstream]"), 1);
        parse(&text, &no_env).map(|c| c.listen.http1)
    };
    assert_eq!(http1("").unwrap(), Http1Server::Tollgate);
    assert_eq!(
        http1("http1 = \"tollgate\"").unwrap(),
        Http1Server::Tollgate
    );
    assert_eq!(http1("http1 = \"hyper\"").unwrap(), Http1Server::Hyper);
    let text = MINIMAL.replacen("[upstream]", "[listen]\nhttp1 = \"nginx\"\n[upstream]", 1);
    assert_one(&text, "listen.http1", "expected \"tollgate\"");
}

#[test]
fn minimal_file_gets_every_default() {
    let c = parse(MINIMAL, &no_env).unwrap();
    assert_eq!(c.listen.proxy.to_string(), "0.0.0.0:8080");
    assert_eq!(c.listen.api.to_string(), "127.0.0.1:8081");
    assert!(c.listen.proxy_tls.is_none());
    assert_eq!(c.listen.proxy_cores, None, "the shared runtime");
    assert_eq!(c.store.url, StoreUrl::Sqlite("tollgate.db".into()));
    assert_eq!(c.store.flush_interval, Duration::from_secs(1));
    assert_eq!(c.upstream.url.as_str(), "http://127.0.0.1:5001/");
    assert_eq!(c.upstream.profile, ProfileKind::Generic);
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.upstream.response_timeout, Duration::from_secs(60));
    assert_eq!(c.upstream.pool_idle_timeout, Duration::from_secs(90));
    assert_eq!(c.upstream.pool_max_idle_per_host, 256);
    assert_eq!(c.upstream.tls_roots, TlsRoots::Webpki);
    assert!(c.upstream.auth.is_none());
    assert!(c.routes.is_empty());
    assert!(c.security.secret.is_none());
    assert!(c.security.trusted_proxies.is_empty());
    assert!(c.security.operator_tokens.is_empty());
    assert_eq!(c.limits.max_request_body.get(), 100 * 1024 * 1024);
    assert_eq!(c.limits.max_llm_body.get(), 32 * 1024 * 1024);
    assert_eq!(c.limits.max_header_bytes, 64 * 1024);
    assert_eq!(c.limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.limits.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");
    assert!(c.plans.is_empty());
    assert_eq!(c.default_plan, None);
}

#[test]
fn loose_forms_are_accepted() {
    let text = format!(
        "{MINIMAL}profile = \"openai\"\ntls_roots = \"system\"\n\
         [store]\nurl = \"postgres://tollgate@db.internal/tollgate\"\n\
         [limits]\nmax_request_body = 1048576\nmax_header_bytes = \"16 KB\"\nshutdown_grace = \"0s\"\n\
         [[routes]]\nmethods = [\"get\", \"Post\"]\npath = \"/*\"\npermission = \"admin\"\n\
         [[plans]]\nid = 7\nname = \"Pro\"\nprice_usd = 19.99\ningress_limit = 1000\n\
         [[plans]]\nid = 8\nname = \"Team\"\nprice_usd = 49\n"
    );
    let c = parse(&text, &no_env).unwrap();
    assert_eq!(c.upstream.profile, ProfileKind::OpenAi);
    assert_eq!(c.upstream.tls_roots, TlsRoots::System);
    let pg = "postgres://tollgate@db.internal/tollgate";
    assert_eq!(c.store.url, StoreUrl::Postgres(pg.into()));
    assert_eq!(c.limits.max_request_body.get(), 1_048_576);
    assert_eq!(c.limits.max_header_bytes, 16_000);
    assert_eq!(c.limits.shutdown_grace, Duration::ZERO);
    assert_eq!(
        c.routes[0].methods,
        vec![http::Method::GET, http::Method::POST]
    );
    assert_eq!(c.routes[0].path, PathPattern::Prefix("/".into()));
    assert_eq!(c.plans[0].price_micros, 19_990_000);
    assert_eq!(c.plans[0].ingress_limit, NonZeroU64::new(1000));
    assert_eq!(c.plans[1].price_micros, 49_000_000);
}

#[test]
fn several_errors_in_different_sections_are_all_reported() {
    let text = "default_plan = 9\n\
        [listen]\nprxy = \"0.0.0.0:80\"\n\
        [upstream]\nurl = \"nowhere\"\nprofile = \"kubo\"\n\
        [[routes]]\npath = \"/a\"\npermission = \"read\"\n\
        [[routes]]\npath = \"/b\"\npermission = \"delete\"\n\
        [[routes]]\npath = 3\npermission = \"read\"\n\
        [security]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.300/8\"]\n\
        [log]\nformat = \"xml\"\n\
        [[plans]]\nid = 1\nname = \"Free\"\ningress_limit = 0\n";
    let errors = errors_of(text);
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "listen.prxy",
            "routes[2].path",
            "upstream.url",
            "routes[1].permission",
            "security.trusted_proxies[1]",
            "log.format",
            "plans[0].ingress_limit",
            "default_plan",
        ]
    );
    let shown =
        ConfigErrors(errors.iter().map(|(p, m)| ConfigError::new(p, m)).collect()).to_string();
    assert_eq!(shown.lines().count(), 8);
    assert!(shown.contains("upstream.url: relative URL without a base\n"));
    assert!(shown.contains(
        "routes[1].permission: unknown permission `delete` (expected one of admin, read, write, pin, unpin)"
    ));
    assert!(shown.contains(
        "security.trusted_proxies[1]: `10.0.0.300/8` is not an IP address or CIDR network"
    ));
    assert!(shown.contains("plans[0].ingress_limit: must be greater than 0"));
    assert!(shown.contains("default_plan: no plan with id 9 (plan ids: 1)"));
}

#[test]
fn unknown_fields_are_named_by_their_path() {
    let e = errors_of(&format!(
        "{MINIMAL}timeout_ms = 5\n[listen]\nprxy = \"x\"\n"
    ));
    assert_eq!(e[0].0, "listen.prxy");
    assert!(
        e[0].1
            .starts_with("unknown field `prxy`, expected one of `proxy`"),
        "{}",
        e[0].1
    );
    assert_eq!(e[1].0, "upstream.timeout_ms");
    let e = errors_of(&format!("{MINIMAL}[listen.tls]\ncrt = \"a\"\n"));
    assert_eq!(e[0].0, "listen.tls.crt");
    let e = errors_of(&format!(
        "{MINIMAL}[[plans]]\nid = 1\nname = \"a\"\nprice = \"1\"\n"
    ));
    assert_eq!(e[0].0, "plans[0].price");
}

#[test]
fn unknown_top_level_sections_are_errors() {
    let e = errors_of(&format!("{MINIMAL}[upstreams]\nurl = \"x\"\n"));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "upstreams");
    assert!(
        e[0].1
            .starts_with("unknown section (expected one of listen, store, upstream")
    );
    assert_eq!(errors_of(&format!("debug = true\n{MINIMAL}"))[0].0, "debug");
}

#[test]
fn wrong_types_are_named_by_their_path() {
    let e = errors_of(&format!("{MINIMAL}pool_max_idle_per_host = \"many\"\n"));
    assert_eq!(e[0].0, "upstream.pool_max_idle_per_host");
    assert!(
        e[0].1.contains("invalid type: string \"many\""),
        "{}",
        e[0].1
    );
    let e = errors_of(&format!(
        "listen = 5\n{MINIMAL}[[plans]]\nid = \"one\"\nname = \"x\"\n"
    ));
    assert_eq!(
        e[0],
        (
            "listen".into(),
            "invalid type: integer `5`, expected a table".into()
        )
    );
    assert_eq!(e[1].0, "plans[0].id");
    let e = errors_of(&format!("{MINIMAL}[[routes]]\npath = \"/\"\n"));
    assert_eq!(
        e[0],
        ("routes[0]".into(), "missing field `permission`".into())
    );
}

#[test]
fn malformed_toml_is_one_error_at_its_line() {
    let e = errors_of("[upstream]\nurl = \"http://a\"\n[listen\nproxy = 1\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "line 3, column 8");
    assert!(e[0].1.contains("invalid table header"), "{}", e[0].1);
    let e = errors_of("[upstream]\nurl = 1\nurl = 2\n");
    assert_eq!(e[0].0, "line 3, column 1");
    assert!(e[0].1.contains("duplicate key `url`"));
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, MINIMAL).unwrap();
    assert!(load(&good).is_ok());
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[upstream]\nurl = \n").unwrap();
    let ConfigErrors(e) = load(&bad).unwrap_err();
    assert_eq!(e[0].path, format!("{}:2:7", bad.display()));
    let missing = dir.path().join("missing.toml");
    let ConfigErrors(e) = load(&missing).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, missing.display().to_string());
    assert!(e[0].message.starts_with("cannot read: "));
}

#[test]
fn secret_from_the_environment_overrides_the_file() {
    let file_secret = "f".repeat(32);
    let text = format!("{MINIMAL}[security]\nsecret = \"{file_secret}\"\n");
    let c = parse(&text, &no_env).unwrap();
    assert_eq!(c.security.secret, Some(file_secret.clone().into_bytes()));
    let env_secret = "e".repeat(40);
    let c = parse(&text, &env_of(&[("TOLLGATE_SECRET", &env_secret)])).unwrap();
    assert_eq!(c.security.secret, Some(env_secret.into_bytes()));
    let debug = format!("{:?}", c.security);
    assert!(debug.contains("secret: Some(\"<redacted>\")"), "{debug}");
    assert!(
        !debug.contains("101, 101"),
        "Debug leaks the secret: {debug}"
    );
    let c = parse(MINIMAL, &env_of(&[("TOLLGATE_SECRET", "")])).unwrap();
    assert_eq!(c.security.secret, None);
    let ConfigErrors(e) =
        parse(&text, &env_of(&[("TOLLGATE_SECRET", "short-secret")])).unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "TOLLGATE_SECRET: must be at least 32 bytes (got 12)"
    );
}

#[test]
fn operator_tokens_from_the_environment_are_appended() {
    let text = format!("{MINIMAL}[security]\noperator_tokens = [\"{PHC}\"]\n");
    let env = env_of(&[("TOLLGATE_OPERATOR_TOKENS", &format!(" {PHC} ,, {PHC}"))]);
    let c = parse(&text, &env).unwrap();
    assert_eq!(c.security.operator_tokens, vec![PHC.to_string(); 3]);
    let env = env_of(&[("TOLLGATE_OPERATOR_TOKENS", &format!("{PHC},plain-token"))]);
    let ConfigErrors(e) = parse(&text, &env).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, "TOLLGATE_OPERATOR_TOKENS[1]");
    assert!(e[0].message.starts_with("not a valid argon2 PHC string"));
    assert!(!e[0].message.contains("plain-token"));
}

#[test]
fn upstream_auth_reads_its_value_from_the_named_variable() {
    let text = format!("{MINIMAL}auth_header = \"X-Api-Key\"\nauth_value_env = \"UP_KEY\"\n");
    let ConfigErrors(e) = parse(&text, &no_env).unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "upstream.auth_value_env: environment variable `UP_KEY` is not set"
    );
    let ConfigErrors(e) = parse(&text, &env_of(&[("UP_KEY", "top\nsecret")])).unwrap_err();
    assert_eq!(e[0].path, "upstream.auth_value_env");
    assert!(e[0].message.contains("`UP_KEY`") && !e[0].message.contains("secret"));
    let c = parse(&text, &env_of(&[("UP_KEY", "k-123")])).unwrap();
    let (name, value) = c.upstream.auth.unwrap();
    assert_eq!(
        (name.as_str(), value.to_str().unwrap()),
        ("x-api-key", "k-123")
    );
    assert!(!format!("{:?}", value).contains("k-123"));
}

#[test]
fn listen_tls_files_must_be_readable() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "pem").unwrap();
    let key = dir.path().join("key.pem");
    let text = format!(
        "{MINIMAL}[listen.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let e = errors_of(&text);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "listen.tls.key");
    assert!(
        e[0].1
            .starts_with(&format!("cannot read `{}`: ", key.display()))
    );
    std::fs::write(&key, "pem").unwrap();
    let tls = parse(&text, &no_env).unwrap().listen.proxy_tls.unwrap();
    assert_eq!((tls.cert, tls.key), (cert, key));
}

#[test]
fn metering_utc_offset() {
    let c = parse(&with("[metering]\nutc_offset = \"-05:30\""), &no_env).unwrap();
    assert_eq!(c.metering.utc_offset_secs, -(5 * 3600 + 30 * 60));
    assert_eq!(parse(MINIMAL, &no_env).unwrap().metering.utc_offset_secs, 0);
    for bad in ["8", "+8", "+08:60", "+15:00", "UTC+1", "+08:00:00"] {
        let text = with(&format!("[metering]\nutc_offset = \"{bad}\""));
        let errs = parse(&text, &no_env).unwrap_err();
        assert!(
            errs.to_string().contains("metering.utc_offset"),
            "{bad}: {errs}"
        );
    }
}

#[test]
fn example_prices_parse_when_uncommented() {
    let start = EXAMPLE
        .find("# [prices.")
        .expect("commented prices example");
    let uncommented: String = EXAMPLE[start..]
        .lines()
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let config = parse(&format!("{EXAMPLE}\n{uncommented}"), &no_env).unwrap();
    let mini = config.prices.get("gpt-4o-mini").expect("priced");
    assert_eq!(
        (mini.input, mini.output, mini.cached_input),
        (150_000, 600_000, 75_000)
    );
    assert_eq!(mini.max_output_tokens, 16_384);
    assert!(parse(EXAMPLE, &no_env).unwrap().prices.0.is_empty());
}

#[test]
fn the_store_url_may_come_from_the_environment_and_cluster_settings_are_checked() {
    let pg = "postgres://tollgate:pw@db.internal/tollgate";
    let c = parse(MINIMAL, &env_of(&[("TOLLGATE_STORE_URL", pg)])).unwrap();
    assert_eq!(c.store.url, StoreUrl::Postgres(pg.into()));
    let ConfigErrors(e) =
        parse(MINIMAL, &env_of(&[("TOLLGATE_STORE_URL", "mysql://x/y")])).unwrap_err();
    assert!(
        e[0].to_string()
            .starts_with("TOLLGATE_STORE_URL: unsupported store URL scheme")
    );
    let text = format!(
        "{MINIMAL}[store]\nsync_interval = \"250ms\"\npool_size = 3\nstatement_timeout = \"2s\"\n\
         reconcile_interval = \"10s\"\n"
    );
    let c = parse(&text, &no_env).unwrap();
    assert_eq!(
        c.store.flush_interval,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(c.store.pool_size, 3);
    assert_eq!(c.store.statement_timeout, std::time::Duration::from_secs(2));
    assert_eq!(
        c.store.reconcile_interval,
        std::time::Duration::from_secs(10)
    );
    let text = format!(
        "{MINIMAL}[store]\nsync_interval = \"1s\"\nflush_interval = \"1s\"\npool_size = 0\n"
    );
    let ConfigErrors(e) = parse(&text, &no_env).unwrap_err();
    let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["store.flush_interval", "store.pool_size"], "{e:?}");
}

#[test]
fn management_region_and_tiers_are_checked_and_looked_up_by_multiplier() {
    let text =
        with("[management]\nregion = \"eu-west-1\"\n[management.tiers]\nA = 1.0\nB = 0.85\n");
    let config = parse(&text, &no_env).unwrap();
    assert_eq!(config.reseller.region.as_deref(), Some("eu-west-1"));
    assert_eq!(config.reseller.tier(850_000), Some("B"));
    assert_eq!(config.reseller.tier(1_000_000), Some("A"));
    assert_eq!(config.reseller.tier(900_000), None);
    assert_eq!(
        parse(MINIMAL, &no_env).unwrap().reseller.tier(1_000_000),
        None
    );
    assert_one(
        &with("[management]\nregion = \"\"\n"),
        "management.region",
        "1 to 64",
    );
    assert_one(
        &with("[management.tiers]\nA = 0\n"),
        "management.tiers.A",
        "greater than 0",
    );
    assert_one(
        &with("[management.tiers]\n\"a b\" = 1\n"),
        "management.tiers.a b",
        "tier name",
    );
    assert_one(
        &with("[management.tiers]\nA = 1\nB = 1.0\n"),
        "management.tiers.B",
        "same multiplier as tier A",
    );
}
