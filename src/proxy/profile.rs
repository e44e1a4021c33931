//! Upstream profiles: the default route table and fallback of each kind of upstream.
//!
//! `kubo` maps the IPFS RPC API (`/api/v0/...`) to permissions and refuses the node-admin
//! commands, and every command it does not list, for every key (an operator `[[routes]]` rule
//! can enable one); `openai`,
//! `anthropic` and `generic` need `read` for safe methods and `write` for the rest.

use crate::config::model::{PathPattern, ProfileKind, RouteAction, RouteRule};
use crate::domain::permission::Permission;
use crate::proxy::routes::{Fallback, RouteTable};

/// kubo RPC commands that only read.
const KUBO_READ: &[&str] = &[
    "cat",
    "get",
    "ls",
    "dag/get",
    "dag/stat",
    "dag/export",
    "dag/resolve",
    "block/get",
    "block/stat",
    "pin/ls",
    "id",
    "version",
    "object/get",
    "object/stat",
    "object/data",
    "object/links",
    "name/resolve",
    "resolve",
    "refs",
    "cid/*",
    "multibase/*",
    "commands",
    "key/list",
    "routing/findprovs",
    "dht/findprovs",
];

/// kubo RPC commands that add or change content.
const KUBO_WRITE: &[&str] = &[
    "add",
    "dag/put",
    "dag/import",
    "block/put",
    "object/put",
    "object/new",
    "object/patch/*",
    "name/publish",
    "key/gen",
    "key/rm",
    "key/rename",
];

/// kubo RPC commands that administer the node: refused for every key by default.
const KUBO_DENY: &[&str] = &[
    "config",
    "config/*",
    "shutdown",
    "repo/gc",
    "repo/verify",
    "repo/migrate",
    "swarm/connect",
    "swarm/disconnect",
    "swarm/filters/*",
    "swarm/peering/*",
    "p2p/*",
    "bootstrap/*",
    "log/*",
    "update",
    "pin/remote/service/*",
    "key/import",
    "key/export",
    // These list or walk every pin and block of the node, whoever owns them.
    "pin/verify",
    "refs/local",
    // Deletes blocks whoever added them (pinned ones excepted).
    "block/rm",
    // MFS is one tree for the whole node: every account would read and change every other's
    // files, and MFS content is kept by the garbage collector without counting as a pin.
    "files/*",
];

/// The compiled route table of `kind` with the operator's rules on top.
pub fn route_table(kind: ProfileKind, operator: &[RouteRule]) -> RouteTable {
    match kind {
        ProfileKind::Kubo => {
            RouteTable::new(operator, &kubo_rules(), Fallback::Action(RouteAction::Deny))
        }
        ProfileKind::OpenAi | ProfileKind::Anthropic | ProfileKind::Generic => {
            RouteTable::new(operator, &[], Fallback::ByMethod)
        }
    }
}

/// Every command `cmd` is matched both as `/api/v0/cmd` and as `/api/v0/cmd/...`: kubo treats
/// extra path segments as arguments, so `/api/v0/shutdown/x` still runs `shutdown`. Anything
/// outside `/api/v0/` (kubo's `/debug/pprof`, `/webui`, ...) is refused, and so is every RPC
/// command not listed here: `admin` is a permission partners hand to their customers, not an
/// operator's, and kubo's other commands act for the whole node (`pubsub/*` and `key/sign`
/// under its identity, `urlstore/add` pins outside the ledger, `stats/*`, `swarm/*`, ...).
fn kubo_rules() -> Vec<RouteRule> {
    let mut rules = vec![rule(PathPattern::Prefix("/".into()), RouteAction::Deny)];
    let groups: [(&[&str], RouteAction); 6] = [
        (KUBO_READ, RouteAction::Require(Permission::Read)),
        (KUBO_WRITE, RouteAction::Require(Permission::Write)),
        (
            &["pin/add", "pin/update"],
            RouteAction::Require(Permission::Pin),
        ),
        (&["pin/rm"], RouteAction::Require(Permission::Unpin)),
        (KUBO_DENY, RouteAction::Deny),
        (&["bootstrap"], RouteAction::Deny),
    ];
    for (commands, action) in groups {
        for command in commands {
            let path = format!("/api/v0/{command}");
            match path.strip_suffix('*') {
                Some(prefix) => rules.push(rule(PathPattern::Prefix(prefix.to_string()), action)),
                None => {
                    rules.push(rule(PathPattern::Prefix(format!("{path}/")), action));
                    rules.push(rule(PathPattern::Exact(path), action));
                }
            }
        }
    }
    rules
}

fn rule(path: PathPattern, action: RouteAction) -> RouteRule {
    RouteRule {
        methods: Vec::new(),
        path,
        action,
        cost_micros: 0,
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use RouteAction::{Deny, Require};

    #[test]
    fn kubo_table() {
        let t = route_table(ProfileKind::Kubo, &[]);
        let post = |p: &str| t.resolve(&Method::POST, p);
        assert_eq!(post("/api/v0/cat"), Require(Permission::Read));
        assert_eq!(post("/api/v0/add"), Require(Permission::Write));
        assert_eq!(post("/api/v0/pin/add"), Require(Permission::Pin));
        assert_eq!(post("/api/v0/pin/rm"), Require(Permission::Unpin));
        assert_eq!(post("/api/v0/config"), Deny);
        assert_eq!(post("/api/v0/config/show"), Deny);
        assert_eq!(post("/api/v0/shutdown"), Deny);
        assert_eq!(post("/api/v0/p2p/listen"), Deny);
        assert_eq!(post("/api/v0/cid/base32"), Require(Permission::Read));
        assert_eq!(post("/api/v0/stats/bw"), Deny, "unlisted: refused");
        assert_eq!(post("/api/v0/pubsub/pub"), Deny);
        assert_eq!(
            post("/api/v0/files/write"),
            Deny,
            "MFS is shared by all accounts"
        );
        assert_eq!(post("/api/v0/block/rm"), Deny);
    }

    #[test]
    fn kubo_extra_segments_keep_the_command_rule() {
        let t = route_table(ProfileKind::Kubo, &[]);
        let post = |p: &str| t.resolve(&Method::POST, p);
        // kubo runs `shutdown` for /api/v0/shutdown/x: the deny must hold there too.
        assert_eq!(post("/api/v0/shutdown/x"), Deny);
        assert_eq!(post("/api/v0/repo/gc/now"), Deny);
        assert_eq!(post("/api/v0/cat/QmHash"), Require(Permission::Read));
        assert_eq!(post("/api/v0/pin/rm/QmHash"), Require(Permission::Unpin));
        // Outside the RPC API nothing is reachable.
        assert_eq!(post("/debug/pprof"), Deny);
        assert_eq!(post("/webui"), Deny);
        assert_eq!(post("/api/v1/anything"), Deny);
    }

    #[test]
    fn operator_can_enable_a_denied_kubo_command() {
        let op = [RouteRule {
            methods: vec![],
            path: PathPattern::Exact("/api/v0/repo/gc".into()),
            action: Require(Permission::Admin),
            cost_micros: 0,
        }];
        let t = route_table(ProfileKind::Kubo, &op);
        assert_eq!(
            t.resolve(&Method::POST, "/api/v0/repo/gc"),
            Require(Permission::Admin)
        );
    }

    #[test]
    fn llm_profiles_go_by_method() {
        for kind in [
            ProfileKind::OpenAi,
            ProfileKind::Anthropic,
            ProfileKind::Generic,
        ] {
            let t = route_table(kind, &[]);
            assert_eq!(
                t.resolve(&Method::GET, "/v1/models"),
                Require(Permission::Read)
            );
            assert_eq!(
                t.resolve(&Method::POST, "/v1/chat/completions"),
                Require(Permission::Write)
            );
        }
    }
}
