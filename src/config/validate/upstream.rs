//! Validation of `[upstream]`: base URL, profile, timeouts, pool and the upstream's own
//! credential (header name from the file, value from the environment).

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::{Env, Errors, choice, defaults, duration};
use crate::config::file::UpstreamFile;
use crate::config::model::{ProfileKind, TlsRoots, Upstream};

pub(super) fn upstream(f: &UpstreamFile, env: Env<'_>, e: &mut Errors) -> Option<Upstream> {
    let url = e.check("upstream.url", upstream_url(f.url.as_deref()));
    let kinds = [
        ProfileKind::Kubo,
        ProfileKind::OpenAi,
        ProfileKind::Anthropic,
        ProfileKind::Generic,
    ];
    let profiles = kinds.map(|kind| (kind.as_str(), kind));
    let profile = choice(
        f.profile.as_deref(),
        ProfileKind::Generic,
        &profiles,
        "profile",
    );
    let profile = e.check("upstream.profile", profile);
    let mut timeout = |field: &str, value: &Option<String>, default: Duration| {
        e.check(
            &format!("upstream.{field}"),
            duration(value.as_deref(), default, true),
        )
    };
    let connect_timeout = timeout(
        "connect_timeout",
        &f.connect_timeout,
        defaults::CONNECT_TIMEOUT,
    );
    let response_timeout = timeout(
        "response_timeout",
        &f.response_timeout,
        defaults::RESPONSE_TIMEOUT,
    );
    let pool_idle_timeout = timeout(
        "pool_idle_timeout",
        &f.pool_idle_timeout,
        defaults::POOL_IDLE_TIMEOUT,
    );
    let pool_max = f
        .pool_max_idle_per_host
        .map_or(Ok(defaults::POOL_MAX_IDLE_PER_HOST), |n| {
            usize::try_from(n).map_err(|_| "must not be negative".to_string())
        });
    let pool_max_idle_per_host = e.check("upstream.pool_max_idle_per_host", pool_max);
    let roots = [("webpki", TlsRoots::Webpki), ("system", TlsRoots::System)];
    let tls_roots = choice(
        f.tls_roots.as_deref(),
        TlsRoots::Webpki,
        &roots,
        "certificate roots",
    );
    let tls_roots = e.check("upstream.tls_roots", tls_roots);
    let ca_file = match f.ca_file.as_deref() {
        None => Some(None),
        Some(path) => e
            .check("upstream.ca_file", super::readable_file(path))
            .map(Some),
    };
    let auth = upstream_auth(f, env, e);
    Some(Upstream {
        url: url?,
        profile: profile?,
        connect_timeout: connect_timeout?,
        response_timeout: response_timeout?,
        pool_idle_timeout: pool_idle_timeout?,
        pool_max_idle_per_host: pool_max_idle_per_host?,
        tls_roots: tls_roots?,
        ca_file: ca_file?,
        auth: auth?,
    })
}

fn upstream_url(s: Option<&str>) -> Result<url::Url, String> {
    let s = s.ok_or_else(|| {
        "required: the base URL of the service behind Tollgate, e.g. \"http://127.0.0.1:5001\""
            .to_string()
    })?;
    let url = url::Url::parse(s.trim()).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        let scheme = url.scheme();
        return Err(format!(
            "scheme `{scheme}` is not supported (expected http or https)"
        ));
    }
    if !url.has_host() {
        return Err("must have a host".to_string());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials (use auth_header and auth_value_env)".into());
    }
    if url.query().is_some() {
        return Err("must not have a query string".to_string());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".to_string());
    }
    Ok(url)
}

/// The upstream's own credential: a header name from the file, its value from the environment.
fn upstream_auth(
    f: &UpstreamFile,
    env: Env<'_>,
    e: &mut Errors,
) -> Option<Option<(HeaderName, HeaderValue)>> {
    const VAR: &str = "upstream.auth_value_env";
    match (f.auth_header.as_deref(), f.auth_value_env.as_deref()) {
        (None, None) => Some(None),
        (None, Some(_)) => {
            e.push(
                VAR,
                "set without `auth_header` (the name of the header to inject)",
            );
            None
        }
        (Some(_), None) => {
            let msg = "required when `auth_header` is set: the name of the environment variable \
                       holding the header value";
            e.push(VAR, msg);
            None
        }
        (Some(header), Some(var)) => {
            let name = e.check("upstream.auth_header", header_name(header));
            let value = e.check(VAR, header_value_from_env(var, env));
            name.zip(value).map(Some)
        }
    }
}

fn header_name(h: &str) -> Result<HeaderName, String> {
    let name = HeaderName::from_bytes(h.trim().as_bytes())
        .map_err(|_| format!("`{h}` is not a valid HTTP header name"))?;
    let managed = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ];
    if managed.contains(&name.as_str()) {
        return Err(format!(
            "`{name}` is managed by the proxy and cannot be injected"
        ));
    }
    Ok(name)
}

/// Reads the header value from `var`; errors name the variable, never its value.
fn header_value_from_env(var: &str, env: Env<'_>) -> Result<HeaderValue, String> {
    let raw = env(var).ok_or_else(|| format!("environment variable `{var}` is not set"))?;
    if raw.is_empty() {
        return Err(format!("environment variable `{var}` is empty"));
    }
    let mut value = HeaderValue::from_str(&raw).map_err(|_| {
        format!("environment variable `{var}` does not hold a valid HTTP header value")
    })?;
    value.set_sensitive(true);
    Ok(value)
}
