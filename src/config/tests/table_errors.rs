//! Single error kinds of the list-shaped sections (routes, security, plans): each broken entry
//! yields exactly one error naming its index and field.

use super::{MINIMAL, PHC, assert_one, errors_of, with};

#[test]
fn route_errors() {
    let route = |body: &str| {
        with(&format!(
            "[[routes]]\npath = \"/ok\"\npermission = \"read\"\n[[routes]]\n{body}"
        ))
    };
    let cases = [
        (
            "path = \"/a\"\npermission = \"delete\"",
            "routes[1].permission",
            "unknown permission `delete` (expected one of admin, read, write, pin, unpin)",
        ),
        (
            "path = \"/a\"\npermission = \"Read\"",
            "routes[1].permission",
            "unknown permission `Read`",
        ),
        (
            "path = \"api/v0/cat\"\npermission = \"read\"",
            "routes[1].path",
            "must start with `/`",
        ),
        (
            "path = \"/api/*/cat\"\npermission = \"read\"",
            "routes[1].path",
            "`*` is only allowed at the end",
        ),
        (
            "path = \"/api//cat\"\npermission = \"read\"",
            "routes[1].path",
            "contains `//`",
        ),
        (
            "path = \"/api/./cat\"\npermission = \"read\"",
            "routes[1].path",
            "`.` or `..` segment",
        ),
        (
            "path = \"/api/v0/..\"\npermission = \"read\"",
            "routes[1].path",
            "`.` or `..` segment",
        ),
        (
            "path = \"/api/%63at\"\npermission = \"read\"",
            "routes[1].path",
            "without `%`",
        ),
        (
            "path = \"/a?b=1\"\npermission = \"read\"",
            "routes[1].path",
            "query or fragment",
        ),
        (
            "path = \"/a b\"\npermission = \"read\"",
            "routes[1].path",
            "spaces",
        ),
        (
            "methods = [\"GET\", \"FETCH\"]\npath = \"/a\"\npermission = \"read\"",
            "routes[1].methods[1]",
            "unknown HTTP method `FETCH`",
        ),
        ("path = \"/a\"", "routes[1]", "missing field `permission`"),
    ];
    for (toml, path, message) in cases {
        assert_one(&route(toml), path, message);
    }
}

#[test]
fn security_errors() {
    let sec = |body: &str| with(&format!("[security]\n{body}"));
    let proxies = "trusted_proxies = [\"10.0.0.0/8\", \"10.0.0.300/8\", \"::1\", \"10.0.0.1/8\"]";
    let errors = errors_of(&sec(proxies));
    assert_eq!(
        errors,
        [
            (
                "security.trusted_proxies[1]".to_string(),
                "`10.0.0.300/8` is not an IP address or CIDR network".to_string()
            ),
            (
                "security.trusted_proxies[3]".to_string(),
                "`10.0.0.1/8` is not an IP address or CIDR network".to_string()
            ),
        ]
    );
    let tokens = format!("operator_tokens = [\"{}\", \"$2b$12$bcrypt\"]", PHC);
    assert_one(
        &sec(&tokens),
        "security.operator_tokens[1]",
        "not a valid argon2 PHC string",
    );
    assert_one(
        &sec("secret = \"too short\""),
        "security.secret",
        "must be at least 32 bytes (got 9)",
    );
}

#[test]
fn plan_errors() {
    let plan = |body: &str| {
        with(&format!(
            "[[plans]]\nid = 1\nname = \"Free\"\n[[plans]]\n{body}"
        ))
    };
    let cases = [
        (
            "id = 0\nname = \"x\"",
            "plans[1].id",
            "must be greater than 0",
        ),
        (
            "id = -3\nname = \"x\"",
            "plans[1].id",
            "must be greater than 0",
        ),
        (
            "id = 1\nname = \"x\"",
            "plans[1].id",
            "duplicate plan id 1 (already used by plans[0])",
        ),
        (
            "id = 2\nname = \"  \"",
            "plans[1].name",
            "must not be empty",
        ),
        (
            "id = 2\nname = \"x\"\nprice_usd = \"-1\"",
            "plans[1].price_usd",
            "must not be negative",
        ),
        (
            "id = 2\nname = \"x\"\nprice_usd = -0.5",
            "plans[1].price_usd",
            "must not be negative",
        ),
        (
            "id = 2\nname = \"x\"\nprice_usd = \"1.1234567\"",
            "plans[1].price_usd",
            "more than 6 decimal places",
        ),
        (
            "id = 2\nname = \"x\"\nprice_usd = \"$ 9.99\"",
            "plans[1].price_usd",
            "not a decimal USD amount",
        ),
        (
            "id = 2\nname = \"x\"\npinned_count_limit = 0",
            "plans[1].pinned_count_limit",
            "must be greater than 0",
        ),
        (
            "id = 2\nname = \"x\"\npinned_bytes_limit = \"0GiB\"",
            "plans[1].pinned_bytes_limit",
            "must be greater than 0",
        ),
        (
            "id = 2\nname = \"x\"\ningress_limit = 0",
            "plans[1].ingress_limit",
            "must be greater than 0",
        ),
        (
            "id = 2\nname = \"x\"\negress_limit = \"lots\"",
            "plans[1].egress_limit",
            "`lots` is not a size",
        ),
        (
            "id = 2\nname = \"x\"\nipns_limit = 0",
            "plans[1].ipns_limit",
            "must be greater than 0",
        ),
        (
            "id = 2\nname = \"x\"\nipns_limit = 5000000000",
            "plans[1].ipns_limit",
            "must be at most 4294967295",
        ),
        ("id = 2", "plans[1]", "missing field `name`"),
    ];
    for (toml, path, message) in cases {
        assert_one(&plan(toml), path, message);
    }
    assert_one(
        &format!("default_plan = 2\n{MINIMAL}"),
        "default_plan",
        "no plan with id 2 (no [[plans]] are defined)",
    );
}

#[test]
fn default_plan_is_not_checked_against_unreadable_plans() {
    let text = format!("default_plan = 2\n{MINIMAL}[[plans]]\nid = 2\nname = 5\n");
    assert_eq!(
        errors_of(&text),
        [(
            "plans[0].name".to_string(),
            "invalid type: integer `5`, expected a string".to_string()
        )]
    );
}

#[test]
fn prices_parse_exactly_into_micros_per_million_tokens() {
    use crate::domain::price::{DEFAULT_MAX_OUTPUT_TOKENS, ModelPrice};
    let text = with(
        "[prices.\"gpt-4o-mini\"]\ninput_usd_per_mtok = \"0.15\"\noutput_usd_per_mtok = 0.6\n\
         cached_input_usd_per_mtok = \"0.075\"\nmax_output_tokens = 16384\n\
         [prices.\"claude-3-5-haiku\"]\ninput_usd_per_mtok = 1\noutput_usd_per_mtok = \"4\"\n",
    );
    let config = super::parse(&text, &super::no_env).expect("valid prices");
    let mini = config.prices.get("gpt-4o-mini").expect("gpt-4o-mini");
    assert_eq!(
        *mini,
        ModelPrice {
            input: 150_000,
            output: 600_000,
            cached_input: 75_000,
            max_output_tokens: 16_384,
        }
    );
    let haiku = config.prices.get("claude-3-5-haiku").expect("haiku");
    assert_eq!(haiku.cached_input, 1_000_000, "defaults to the input price");
    assert_eq!(haiku.max_output_tokens, DEFAULT_MAX_OUTPUT_TOKENS);
    assert!(config.prices.get("gpt-4o").is_none());
}

#[test]
fn price_errors() {
    let entry = |body: &str| with(&format!("[prices.\"m-1\"]\n{body}"));
    let ok = "input_usd_per_mtok = \"1\"\noutput_usd_per_mtok = \"2\"\n";
    let cases = [
        (
            "output_usd_per_mtok = \"2\"".to_string(),
            "prices.\"m-1\".input_usd_per_mtok",
            "is required",
        ),
        (
            "input_usd_per_mtok = \"1\"\noutput_usd_per_mtok = \"-2\"".to_string(),
            "prices.\"m-1\".output_usd_per_mtok",
            "must not be negative",
        ),
        (
            format!("{ok}cached_input_usd_per_mtok = \"0.0000001\""),
            "prices.\"m-1\".cached_input_usd_per_mtok",
            "6 decimal",
        ),
        (
            format!("{ok}max_output_tokens = 0"),
            "prices.\"m-1\".max_output_tokens",
            "must be greater than 0",
        ),
        (
            format!("{ok}input_usd = 1"),
            "prices.\"m-1\".input_usd",
            "unknown field",
        ),
        (
            "input_usd_per_mtok = \"one\"\noutput_usd_per_mtok = 1".to_string(),
            "prices.\"m-1\".input_usd_per_mtok",
            "not a decimal USD amount",
        ),
    ];
    for (body, path, message) in cases {
        assert_one(&entry(&body), path, message);
    }
    assert_one(
        &format!("prices = 3\n{}", with("")),
        "prices",
        "invalid type",
    );
}
