//! Single error kinds of the scalar sections (listen, store, upstream, limits, log): each broken
//! value yields exactly one error, at the right path, with a clear message.

use super::{assert_one, errors_of, with};

#[test]
fn listen_errors() {
    let cases = [
        (
            "proxy = \"localhost:80\"",
            "listen.proxy",
            "`localhost:80` is not a socket address",
        ),
        ("api = \"127.0.0.1\"", "listen.api", "expected IP:PORT"),
        (
            "proxy = \"127.0.0.1:9\"\napi = \"127.0.0.1:9\"",
            "listen.api",
            "already the proxy",
        ),
        (
            "[listen.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/\"",
            "listen.tls.cert",
            "",
        ),
        (
            "proxy_cores = -1",
            "listen.proxy_cores",
            "expected 0 (the shared runtime), \"auto\" or a number of threads up to 1024, found -1",
        ),
        (
            "proxy_cores = \"all\"",
            "listen.proxy_cores",
            "found \"all\"",
        ),
        ("proxy_cores = 1025", "listen.proxy_cores", "found 1025"),
    ];
    for (toml, path, message) in cases {
        let errors = errors_of(&with(&format!("[listen]\n{toml}")));
        assert_eq!(errors[0].0, path, "{toml}");
        assert!(errors[0].1.contains(message), "{toml}: {}", errors[0].1);
    }
    let errors = errors_of(&with(
        "[listen.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/\"",
    ));
    assert_eq!(
        errors[0].1.split(": ").next(),
        Some("cannot read `/nonexistent/c.pem`")
    );
    assert_eq!(
        errors[1],
        ("listen.tls.key".into(), "`/` is not a regular file".into())
    );
}

#[test]
fn store_errors() {
    let cases = [
        (
            "url = \"sqlite::memory:\"",
            "store.url",
            "in-memory SQLite is refused",
        ),
        (
            "url = \"sqlite://:memory:\"",
            "store.url",
            "in-memory SQLite is refused",
        ),
        (
            "url = \"sqlite://\"",
            "store.url",
            "the SQLite path is empty",
        ),
        (
            "url = \"sqlite://a.db?mode=rwc\"",
            "store.url",
            "options (`?...`) are not supported",
        ),
        (
            "url = \"mysql://root:hunter2@db/x\"",
            "store.url",
            "unsupported store URL scheme `mysql`",
        ),
        (
            "url = \"postgres://u:hunter2@:5432/x\"",
            "store.url",
            "invalid PostgreSQL URL",
        ),
        (
            "flush_interval = \"0s\"",
            "store.flush_interval",
            "must be greater than 0",
        ),
        (
            "flush_interval = \"often\"",
            "store.flush_interval",
            "`often` is not a duration",
        ),
    ];
    for (toml, path, message) in cases {
        assert_one(&with(&format!("[store]\n{toml}")), path, message);
        let (_, m) = &errors_of(&with(&format!("[store]\n{toml}")))[0];
        assert!(!m.contains("hunter2"), "store URL password leaked: {m}");
    }
}

#[test]
fn upstream_errors() {
    let url = |u: &str| format!("[upstream]\nurl = \"{u}\"\n");
    assert_one("", "upstream.url", "required: the base URL");
    assert_one(
        &url("nowhere"),
        "upstream.url",
        "relative URL without a base",
    );
    assert_one(
        &url("ftp://h/"),
        "upstream.url",
        "scheme `ftp` is not supported",
    );
    assert_one(
        &url("http://h/?a=1"),
        "upstream.url",
        "must not have a query string",
    );
    assert_one(
        &url("http://h/#top"),
        "upstream.url",
        "must not have a fragment",
    );
    assert_one(
        &url("http://u:p@h/"),
        "upstream.url",
        "must not contain credentials",
    );
    assert_one(&url("http:///"), "upstream.url", "empty host");
    let cases = [
        (
            "profile = \"ollama\"",
            "upstream.profile",
            "unknown profile `ollama` (expected one of kubo, openai, anthropic, generic)",
        ),
        (
            "tls_roots = \"os\"",
            "upstream.tls_roots",
            "expected one of webpki, system",
        ),
        (
            "connect_timeout = \"0ms\"",
            "upstream.connect_timeout",
            "must be greater than 0",
        ),
        (
            "response_timeout = \"-1s\"",
            "upstream.response_timeout",
            "must not be negative",
        ),
        (
            "pool_idle_timeout = \"90\"",
            "upstream.pool_idle_timeout",
            "is not a duration",
        ),
        (
            "pool_max_idle_per_host = -1",
            "upstream.pool_max_idle_per_host",
            "must not be negative",
        ),
        (
            "auth_header = \"authorization\"",
            "upstream.auth_value_env",
            "required when `auth_header` is set",
        ),
        (
            "auth_value_env = \"K\"",
            "upstream.auth_value_env",
            "set without `auth_header`",
        ),
    ];
    for (toml, path, message) in cases {
        assert_one(&with(toml), path, message);
    }
    let bad_name = with("auth_header = \"x key\"\nauth_value_env = \"HOME\"");
    let errors = errors_of(&bad_name);
    assert_eq!(errors[0].0, "upstream.auth_header");
    assert!(
        errors[0]
            .1
            .contains("`x key` is not a valid HTTP header name")
    );
    let managed = errors_of(&with("auth_header = \"Host\"\nauth_value_env = \"K\""));
    assert_eq!(managed[0].0, "upstream.auth_header");
    assert!(managed[0].1.contains("`host` is managed by the proxy"));
}

#[test]
fn limits_errors() {
    let lim = |body: &str| with(&format!("[limits]\n{body}"));
    let cases = [
        (
            "max_request_body = 0",
            "limits.max_request_body",
            "must be greater than 0",
        ),
        (
            "max_request_body = \"0MiB\"",
            "limits.max_request_body",
            "must be greater than 0",
        ),
        (
            "max_request_body = -1",
            "limits.max_request_body",
            "must not be negative",
        ),
        (
            "max_request_body = \"1.5GiB\"",
            "limits.max_request_body",
            "`1.5GiB` is not a size",
        ),
        (
            "max_request_body = 1.5",
            "limits.max_request_body",
            "whole number of bytes",
        ),
        (
            "max_request_body = \"99999999999GiB\"",
            "limits.max_request_body",
            "too large",
        ),
        (
            "max_header_bytes = \"4KiB\"",
            "limits.max_header_bytes",
            "must be at least 8KiB (8192 bytes)",
        ),
        (
            "header_read_timeout = \"0s\"",
            "limits.header_read_timeout",
            "must be greater than 0",
        ),
        (
            "shutdown_grace = \"later\"",
            "limits.shutdown_grace",
            "is not a duration",
        ),
    ];
    for (toml, path, message) in cases {
        assert_one(&lim(toml), path, message);
    }
}

#[test]
fn log_errors() {
    assert_one(
        &with("[log]\nformat = \"xml\""),
        "log.format",
        "unknown log format `xml` (expected one of text, json)",
    );
    assert_one(
        &with("[log]\nlevel = \"tollgate=loud\""),
        "log.level",
        "`tollgate=loud` is not a valid log filter",
    );
}
