//! Validation of the list-shaped parts of the config: `[[routes]]`, `[security]` (trusted
//! proxies, operator tokens, server secret, with their environment overrides) and `[[plans]]`.
//! Every entry is checked on its own, so errors name the entry's index.

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroU64};

use http::Method;

use super::{Env, Errors, all, size};
use crate::config::file::{ConfigFile, Failed, NumOrString, PlanFile, RouteFile, SecurityFile};
use crate::config::model::{PathPattern, Plan, RouteAction, RouteRule, Security};
use crate::config::units;
use crate::domain::ip::{IpSet, parse_net};
use crate::domain::permission::Permission;
use crate::domain::secret::validate_token_hash;

/// Environment variable overriding `security.secret`.
pub const ENV_SECRET: &str = "TOLLGATE_SECRET";
/// Environment variable whose comma-separated hashes are appended to `security.operator_tokens`.
pub const ENV_OPERATOR_TOKENS: &str = "TOLLGATE_OPERATOR_TOKENS";
/// The shortest server secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

pub(super) fn routes(
    list: &[RouteFile],
    failed: &Failed,
    e: &mut Errors,
) -> Option<Vec<RouteRule>> {
    let rules = list
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = format!("routes[{i}]");
            (!failed.contains(&path))
                .then(|| route(r, &path, e))
                .flatten()
        })
        .collect();
    all(rules)
}

fn route(r: &RouteFile, path: &str, e: &mut Errors) -> Option<RouteRule> {
    let methods = r
        .methods
        .iter()
        .enumerate()
        .map(|(j, m)| e.check(&format!("{path}.methods[{j}]"), method(m)))
        .collect();
    let methods = all(methods);
    let pattern = e.check(&format!("{path}.path"), path_pattern(&r.path));
    let action = e.check(&format!("{path}.permission"), route_action(&r.permission));
    let cost = e.check(&format!("{path}.cost_usd"), price(r.cost_usd.as_ref()));
    Some(RouteRule {
        methods: methods?,
        path: pattern?,
        action: action?,
        cost_micros: cost?,
    })
}

fn method(m: &str) -> Result<Method, String> {
    let upper = m.trim().to_ascii_uppercase();
    if !METHODS.contains(&upper.as_str()) {
        return Err(format!(
            "unknown HTTP method `{m}` (expected one of {})",
            METHODS.join(", ")
        ));
    }
    Method::from_bytes(upper.as_bytes()).map_err(|_| format!("unknown HTTP method `{m}`"))
}

/// A normalised path, exact or with a trailing `*` for a prefix match.
fn path_pattern(p: &str) -> Result<PathPattern, String> {
    if !p.starts_with('/') {
        return Err(format!("`{p}` must start with `/`"));
    }
    let (body, prefix) = match p.strip_suffix('*') {
        Some(body) => (body, true),
        None => (p, false),
    };
    if body.contains('*') {
        return Err(format!(
            "`{p}`: `*` is only allowed at the end (prefix match)"
        ));
    }
    if body.contains(['?', '#']) {
        return Err(format!("`{p}` must not contain a query or fragment"));
    }
    if body.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{p}` must not contain spaces or control characters"
        ));
    }
    if body.contains('%') {
        return Err(format!(
            "`{p}` is not normalised: write it decoded, without `%`"
        ));
    }
    if body.contains("//") {
        return Err(format!("`{p}` is not normalised: it contains `//`"));
    }
    if body.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!(
            "`{p}` is not normalised: it contains a `.` or `..` segment"
        ));
    }
    let body = body.to_string();
    Ok(if prefix {
        PathPattern::Prefix(body)
    } else {
        PathPattern::Exact(body)
    })
}

fn route_action(s: &str) -> Result<RouteAction, String> {
    if s == "deny" {
        return Ok(RouteAction::Deny);
    }
    s.parse::<Permission>()
        .map(RouteAction::Require)
        .map_err(|e| e.to_string())
}

pub(super) fn security(f: &SecurityFile, env: Env<'_>, e: &mut Errors) -> Option<Security> {
    let secret = match (env(ENV_SECRET).filter(|s| !s.is_empty()), &f.secret) {
        (Some(s), _) => e.check(ENV_SECRET, server_secret(&s)).map(Some),
        (None, Some(s)) => e.check("security.secret", server_secret(s)).map(Some),
        (None, None) => Some(None),
    };
    let nets = f
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let path = format!("security.trusted_proxies[{i}]");
            e.check(
                &path,
                parse_net(entry.trim()).map_err(|err| err.to_string()),
            )
        })
        .collect();
    let trusted_proxies = all(nets).map(IpSet::new);
    let env_tokens = split_phc_list(&env(ENV_OPERATOR_TOKENS).unwrap_or_default());
    let from_file = f
        .operator_tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("security.operator_tokens[{i}]"), t.trim()));
    let from_env = env_tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("{ENV_OPERATOR_TOKENS}[{i}]"), t.as_str()));
    let tokens = from_file
        .chain(from_env)
        .map(|(path, t)| {
            let checked = validate_token_hash(t).map_err(|err| err.to_string());
            e.check(&path, checked).map(|()| t.to_string())
        })
        .collect();
    Some(Security {
        secret: secret?,
        trusted_proxies: trusted_proxies?,
        operator_tokens: all(tokens)?,
    })
}

/// Splits a comma- or whitespace-separated list of PHC strings. A PHC string has commas of
/// its own (`m=19456,t=2,p=1`): a piece that starts like a parameter (`t=2`) continues the
/// previous string instead of starting a new one.
pub fn split_phc_list(list: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in list
        .split([',', ' ', '\t', '\n', '\r'])
        .filter(|p| !p.is_empty())
    {
        let param_name = piece.split_once('=').map(|(name, _)| name);
        let is_param = param_name.is_some_and(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        match out.last_mut() {
            Some(last) if is_param => {
                last.push(',');
                last.push_str(piece);
            }
            _ => out.push(piece.to_string()),
        }
    }
    out
}

/// The secret's bytes; errors give its length, never its value.
fn server_secret(s: &str) -> Result<Vec<u8>, String> {
    if s.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "must be at least {MIN_SECRET_BYTES} bytes (got {})",
            s.len()
        ));
    }
    Ok(s.as_bytes().to_vec())
}

pub(super) fn plans(list: &[PlanFile], failed: &Failed, e: &mut Errors) -> Option<Vec<Plan>> {
    let mut first_use: HashMap<i64, usize> = HashMap::new();
    let mut plans = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let path = format!("plans[{i}]");
        if failed.contains(&path) {
            plans.push(None);
            continue;
        }
        let first = *first_use.entry(p.id).or_insert(i);
        if first != i && p.id > 0 {
            let msg = format!(
                "duplicate plan id {} (already used by plans[{first}])",
                p.id
            );
            e.push(format!("{path}.id"), msg);
            plans.push(None);
            continue;
        }
        plans.push(plan(p, &path, e));
    }
    all(plans)
}

fn plan(p: &PlanFile, path: &str, e: &mut Errors) -> Option<Plan> {
    let at = |field: &str| format!("{path}.{field}");
    let id = e.check(&at("id"), positive_int(p.id).map(|_| p.id));
    let name = p.name.trim();
    let name = if name.is_empty() {
        Err("must not be empty".to_string())
    } else {
        Ok(name.to_string())
    };
    let name = e.check(&at("name"), name);
    let price_micros = e.check(&at("price_usd"), price(p.price_usd.as_ref()));
    let count = p.pinned_count_limit.map(positive_int).transpose();
    let pinned_count_limit = e.check(&at("pinned_count_limit"), count);
    let pinned_bytes_limit = e.check(&at("pinned_bytes_limit"), limit(&p.pinned_bytes_limit));
    let ingress_limit = e.check(&at("ingress_limit"), limit(&p.ingress_limit));
    let egress_limit = e.check(&at("egress_limit"), limit(&p.egress_limit));
    let ipns = p.ipns_limit.map(|n| {
        let n = positive_int(n)?.get();
        u32::try_from(n)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| format!("must be at most {}", u32::MAX))
    });
    let ipns_limit = e.check(&at("ipns_limit"), ipns.transpose());
    Some(Plan {
        id: id?,
        name: name?,
        price_micros: price_micros?,
        pinned_count_limit: pinned_count_limit?,
        pinned_bytes_limit: pinned_bytes_limit?,
        ingress_limit: ingress_limit?,
        egress_limit: egress_limit?,
        ipns_limit: ipns_limit?,
    })
}

fn positive_int(n: i64) -> Result<NonZeroU64, String> {
    units::positive(u64::try_from(n).unwrap_or(0))
}

/// An optional byte limit: an integer or a size string, greater than 0.
fn limit(value: &Option<NumOrString>) -> Result<Option<NonZeroU64>, String> {
    value
        .as_ref()
        .map(|v| size(Some(v), 0).and_then(units::positive))
        .transpose()
}

fn price(value: Option<&NumOrString>) -> Result<u64, String> {
    match value {
        None => Ok(0),
        Some(NumOrString::Int(n)) => units::usd_micros_from_int(*n),
        Some(NumOrString::Float(f)) => units::usd_micros_from_float(*f),
        Some(NumOrString::Str(s)) => units::parse_usd_micros(s),
    }
}

/// `default_plan` must name a plan of the file (skipped when a plan could not be read).
pub(super) fn default_plan(
    file: &ConfigFile,
    failed: &Failed,
    e: &mut Errors,
) -> Option<Option<i64>> {
    let Some(id) = file.default_plan else {
        return Some(None);
    };
    if failed.any_in("plans") || file.plans.iter().any(|p| p.id == id) {
        return Some(Some(id));
    }
    let ids: Vec<String> = file.plans.iter().map(|p| p.id.to_string()).collect();
    let known = if ids.is_empty() {
        "no [[plans]] are defined".to_string()
    } else {
        format!("plan ids: {}", ids.join(", "))
    };
    e.push("default_plan", format!("no plan with id {id} ({known})"));
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phc_lists_keep_the_commas_of_their_parameters() {
        let a = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
        let b = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA";
        assert_eq!(split_phc_list(&format!("{a},{b}")), [a, b]);
        assert_eq!(split_phc_list(&format!(" {a} ,, {b}\n")), [a, b]);
        assert_eq!(split_phc_list(&format!("{a},plain,x=1")), [a, "plain,x=1"]);
        assert!(split_phc_list(" , ").is_empty());
    }
}
