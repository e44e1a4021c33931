//! The route table: method + normalised path → what the key needs. Built once from the
//! profile's defaults and the operator's `[[routes]]`; per request it is a hash lookup plus a
//! short scan of prefix rules.
//!
//! Precedence: operator rules before profile rules; within one tier an exact path beats a
//! prefix, and a longer prefix beats a shorter one; the first rule whose methods match wins.
//! Nothing matched → the profile's fallback.

use std::collections::HashMap;

use http::Method;

use crate::config::model::{PathPattern, RouteAction, RouteRule};
use crate::domain::permission::Permission;

/// What happens to a request no rule matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// `GET`, `HEAD` and `OPTIONS` need `read`; every other method needs `write`.
    ByMethod,
    /// A fixed action (e.g. `admin` for unknown kubo commands).
    Action(RouteAction),
}

/// What a matched request needs and costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub action: RouteAction,
    /// Fixed cost of one request in micro-USD (0 = free).
    pub cost_micros: u64,
}

#[derive(Clone, Debug, Default)]
struct Tier {
    exact: HashMap<String, Vec<(Vec<Method>, Route)>>,
    /// Sorted longest prefix first.
    prefixes: Vec<(String, Vec<Method>, Route)>,
}

impl Tier {
    fn build(rules: &[RouteRule]) -> Tier {
        let mut tier = Tier::default();
        for rule in rules {
            let route = Route {
                action: rule.action,
                cost_micros: rule.cost_micros,
            };
            match &rule.path {
                PathPattern::Exact(p) => tier
                    .exact
                    .entry(p.clone())
                    .or_default()
                    .push((rule.methods.clone(), route)),
                PathPattern::Prefix(p) => {
                    tier.prefixes.push((p.clone(), rule.methods.clone(), route))
                }
            }
        }
        // Stable sort keeps the written order among prefixes of equal length.
        tier.prefixes
            .sort_by_key(|(p, _, _)| std::cmp::Reverse(p.len()));
        tier
    }

    fn lookup(&self, method: &Method, path: &str) -> Option<Route> {
        let method_ok = |methods: &[Method]| methods.is_empty() || methods.contains(method);
        // An exact rule for `/x` also covers `/x/`, which most upstream routers treat the same.
        let trimmed = path.strip_suffix('/').filter(|p| !p.is_empty());
        for candidate in std::iter::once(path).chain(trimmed) {
            if let Some(rules) = self.exact.get(candidate)
                && let Some((_, route)) = rules.iter().find(|(m, _)| method_ok(m))
            {
                return Some(*route);
            }
        }
        self.prefixes
            .iter()
            .find(|(p, m, _)| path.starts_with(p.as_str()) && method_ok(m))
            .map(|(_, _, action)| *action)
    }
}

/// A compiled route table.
#[derive(Clone, Debug)]
pub struct RouteTable {
    tiers: Vec<Tier>,
    fallback: Fallback,
}

impl RouteTable {
    /// Compiles the operator's rules (first) and the profile's rules (second).
    pub fn new(operator: &[RouteRule], profile: &[RouteRule], fallback: Fallback) -> Self {
        RouteTable {
            tiers: vec![Tier::build(operator), Tier::build(profile)],
            fallback,
        }
    }

    /// What a request with this method and normalised path needs and costs.
    pub fn route(&self, method: &Method, path: &str) -> Route {
        self.tiers
            .iter()
            .find_map(|tier| tier.lookup(method, path))
            .unwrap_or_else(|| Route {
                action: match self.fallback {
                    Fallback::Action(action) => action,
                    Fallback::ByMethod => RouteAction::Require(by_method(method)),
                },
                cost_micros: 0,
            })
    }

    /// What a request with this method and normalised path needs.
    pub fn resolve(&self, method: &Method, path: &str) -> RouteAction {
        self.route(method, path).action
    }
}

/// `read` for safe methods, `write` for everything else.
pub fn by_method(method: &Method) -> Permission {
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        Permission::Read
    } else {
        Permission::Write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(methods: &[Method], path: &str, action: RouteAction) -> RouteRule {
        let path = match path.strip_suffix('*') {
            Some(p) => PathPattern::Prefix(p.to_string()),
            None => PathPattern::Exact(path.to_string()),
        };
        RouteRule {
            methods: methods.to_vec(),
            path,
            action,
            cost_micros: 0,
        }
    }
    use RouteAction::{Deny, Require};

    #[test]
    fn generic_fallback_is_by_method() {
        let t = RouteTable::new(&[], &[], Fallback::ByMethod);
        assert_eq!(t.resolve(&Method::GET, "/x"), Require(Permission::Read));
        assert_eq!(t.resolve(&Method::HEAD, "/x"), Require(Permission::Read));
        assert_eq!(t.resolve(&Method::POST, "/x"), Require(Permission::Write));
        assert_eq!(t.resolve(&Method::DELETE, "/x"), Require(Permission::Write));
    }

    #[test]
    fn exact_beats_prefix_and_longer_prefix_wins() {
        let profile = [
            rule(&[], "/api/*", Require(Permission::Read)),
            rule(&[], "/api/v0/files/*", Require(Permission::Write)),
            rule(&[], "/api/v0/files/ls", Require(Permission::Read)),
        ];
        let t = RouteTable::new(&[], &profile, Fallback::Action(Require(Permission::Admin)));
        assert_eq!(
            t.resolve(&Method::POST, "/api/v0/files/ls"),
            Require(Permission::Read)
        );
        assert_eq!(
            t.resolve(&Method::POST, "/api/v0/files/rm"),
            Require(Permission::Write)
        );
        assert_eq!(
            t.resolve(&Method::POST, "/api/v0/cat"),
            Require(Permission::Read)
        );
        assert_eq!(
            t.resolve(&Method::POST, "/other"),
            Require(Permission::Admin)
        );
    }

    #[test]
    fn operator_rules_override_profile_rules() {
        let profile = [rule(&[], "/api/v0/shutdown", Deny)];
        let operator = [rule(
            &[Method::POST],
            "/api/v0/shutdown",
            Require(Permission::Admin),
        )];
        let t = RouteTable::new(&operator, &profile, Fallback::ByMethod);
        assert_eq!(
            t.resolve(&Method::POST, "/api/v0/shutdown"),
            Require(Permission::Admin)
        );
        // The operator rule is POST-only: other methods fall through to the profile's deny.
        assert_eq!(t.resolve(&Method::GET, "/api/v0/shutdown"), Deny);
    }

    #[test]
    fn methods_filter_rules() {
        let profile = [
            rule(&[Method::GET], "/v1/models", Require(Permission::Read)),
            rule(&[Method::DELETE], "/v1/models", Require(Permission::Admin)),
        ];
        let t = RouteTable::new(&[], &profile, Fallback::ByMethod);
        assert_eq!(
            t.resolve(&Method::GET, "/v1/models"),
            Require(Permission::Read)
        );
        assert_eq!(
            t.resolve(&Method::DELETE, "/v1/models"),
            Require(Permission::Admin)
        );
        assert_eq!(
            t.resolve(&Method::POST, "/v1/models"),
            Require(Permission::Write)
        );
    }

    #[test]
    fn exact_rules_cover_a_trailing_slash() {
        let operator = [rule(&[], "/admin", Deny)];
        let t = RouteTable::new(&operator, &[], Fallback::ByMethod);
        assert_eq!(t.resolve(&Method::GET, "/admin"), Deny);
        assert_eq!(t.resolve(&Method::GET, "/admin/"), Deny);
        assert_eq!(t.resolve(&Method::GET, "/"), Require(Permission::Read));
    }

    #[test]
    fn prefix_does_not_match_shorter_path() {
        let profile = [rule(&[], "/api/v0/config/*", Deny)];
        let t = RouteTable::new(&[], &profile, Fallback::ByMethod);
        assert_eq!(t.resolve(&Method::POST, "/api/v0/config/show"), Deny);
        assert_eq!(
            t.resolve(&Method::POST, "/api/v0/config"),
            Require(Permission::Write)
        );
    }
}
