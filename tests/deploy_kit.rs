//! The deploy kit stays true to the binary: every metric the Grafana dashboard and the Prometheus
//! alerts name is one a running gateway really exports (and the dashboard shows every exported
//! series), the dashboard is valid JSON, the YAML files are structurally sound, and the TOML the
//! Kubernetes example and the container image carry is a valid config that matches the ports the
//! probes, annotations and Service use.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{Options, TestGateway, metrics_text};
use serde_json::{Value, json};
use tollgate::config::{self, model::Config, model::ProfileKind};

/// Suffixes Prometheus adds to a histogram's series.
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `tollgate_[a-z_]+` word in `text`, histogram suffixes stripped.
fn metric_names(text: &str) -> BTreeSet<String> {
    const PREFIX: &str = "tollgate_";
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find(PREFIX).map(|i| from + i) {
        let word_start =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let end = text[at..]
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .map_or(text.len(), |i| at + i);
        from = end.max(at + PREFIX.len());
        if !word_start || end == at + PREFIX.len() {
            continue;
        }
        let mut name = &text[at..end];
        for suffix in HISTOGRAM_SUFFIXES {
            if let Some(base) = name.strip_suffix(suffix) {
                name = base;
            }
        }
        names.insert(name.to_string());
    }
    names
}

/// Metric families in a Prometheus text exposition (`# TYPE name kind` lines).
fn exported_families(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// A gateway that has served an allowed request, refused a bad key and refused a request over
/// a cost quota, so that every labelled series has at least one child.
async fn busy_gateway() -> TestGateway {
    let t = TestGateway::with(Options {
        extra: common::cost_route("0.01"),
        ..Options::default()
    })
    .await;
    t.top_up(1_000_000).await;
    let (_, key) = t
        .create_key(json!({"permissions": ["read"], "daily_cost_limit_usd": 0.01}))
        .await;
    let get = |key: &str| {
        t.client
            .get(format!("{}/deploy-kit", t.proxy))
            .bearer_auth(key)
            .send()
    };
    let first = get(&key).await.expect("request");
    assert_eq!(first.status(), 200);
    first.bytes().await.expect("body");
    let second = get(&key).await.expect("request");
    assert_eq!(common::denial(second, 429).await, "quota_exceeded");
    let bad = get("cr_not-a-real-key").await.expect("request");
    assert_eq!(common::denial(bad, 401).await, "invalid_key");
    t
}

#[tokio::test]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    let t = busy_gateway().await;
    let exposition = metrics_text(&t).await;
    let exported = exported_families(&exposition);
    assert!(
        exported.contains("tollgate_quota_denials_total"),
        "{exposition}"
    );

    for file in [
        "deploy/grafana/tollgate.json",
        "deploy/prometheus/alerts.yml",
    ] {
        let used = metric_names(&read(file));
        assert!(!used.is_empty(), "{file} names no tollgate_ metric");
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} uses series Tollgate does not export: {missing:?}\nexported: {exported:?}"
        );
    }
    let shown = metric_names(&read("deploy/grafana/tollgate.json"));
    let unshown: Vec<_> = exported
        .iter()
        .filter(|n| n.starts_with("tollgate_"))
        .filter(|n| !shown.contains(*n))
        .collect();
    assert!(
        unshown.is_empty(),
        "the dashboard leaves out exported series: {unshown:?}"
    );
}

#[test]
fn metric_names_are_extracted_as_words() {
    let names = metric_names(
        "rate(tollgate_request_duration_seconds_bucket[5m]) / tollgate_requests_total \
         my_tollgate_thing tollgate_ TollgateDown tollgate_bytes_total{direction=\"in\"}",
    );
    let expected: BTreeSet<String> = [
        "tollgate_bytes_total",
        "tollgate_request_duration_seconds",
        "tollgate_requests_total",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, expected);
}

#[test]
fn dashboard_is_valid_json_with_a_query_in_every_panel() {
    let dash: Value = serde_json::from_str(&read("deploy/grafana/tollgate.json")).expect("JSON");
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("id")),
            "{title}: duplicate id"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "{title}: unbalanced ( ) in {expr}"
            );
            assert_eq!(
                expr.matches('{').count(),
                expr.matches('}').count(),
                "{title}: unbalanced {{ }} in {expr}"
            );
        }
        let grid = &panel["gridPos"];
        assert!(
            grid["x"].as_u64().expect("x") + grid["w"].as_u64().expect("w") <= 24,
            "{title}: wider than the grid"
        );
    }
    // Both percentiles the dashboard promises come from the histogram.
    let text = read("deploy/grafana/tollgate.json");
    for q in ["histogram_quantile(0.5,", "histogram_quantile(0.99,"] {
        assert!(text.contains(q), "no {q}");
    }
}

/// Light structural check of a YAML file (no YAML parser among the dependencies): no tabs, even
/// indentation, every document has a top-level key, and each document's lines after the first
/// are indented under a key or a list item.
fn check_yaml_shape(file: &str, text: &str) {
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        assert!(!line.contains('\t'), "{file}:{n}: tab character");
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        assert_eq!(indent % 2, 0, "{file}:{n}: odd indentation");
        assert!(!line.ends_with(' '), "{file}:{n}: trailing space");
    }
    for doc in text.split("\n---\n") {
        let first = doc
            .lines()
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .unwrap_or_else(|| panic!("{file}: empty document"));
        assert!(
            !first.starts_with(' ') && first.contains(':'),
            "{file}: a document must start with a top-level key, not `{first}`"
        );
    }
}

/// The lines of the block starting at the first line whose trimmed text starts with `start`,
/// up to (not including) the next line indented at most as much.
fn block<'a>(text: &'a str, start: &str) -> Vec<&'a str> {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(start));
    let Some(head) = lines.next() else {
        panic!("no `{start}` block")
    };
    let indent = head.len() - head.trim_start().len();
    let mut out = vec![head];
    out.extend(
        lines.take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent),
    );
    out
}

/// The text of a YAML literal block scalar (`key: |`) starting at `start`, unindented.
fn literal_block(text: &str, start: &str) -> String {
    let lines = block(text, start);
    assert!(
        lines[0].trim_end().ends_with('|'),
        "`{start}` is not a literal block"
    );
    let body = &lines[1..];
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn alert_rules_are_complete() {
    let text = read("deploy/prometheus/alerts.yml");
    check_yaml_shape("alerts.yml", &text);
    assert!(text.lines().any(|l| l == "groups:"));
    let alerts: Vec<&str> = text.split("- alert: ").skip(1).collect();
    assert!(alerts.len() >= 5, "{} alerts", alerts.len());
    let mut names = BTreeSet::new();
    for alert in alerts {
        let name = alert.lines().next().unwrap_or("").trim();
        assert!(names.insert(name), "duplicate alert {name}");
        for field in ["expr:", "for:", "severity:", "summary:", "description:"] {
            assert!(
                alert.lines().any(|l| l.trim_start().starts_with(field)),
                "{name}: no `{field}`"
            );
        }
        let expr = alert.split("labels:").next().unwrap_or("");
        assert_eq!(
            expr.matches('(').count(),
            expr.matches(')').count(),
            "{name}: unbalanced ( )"
        );
    }
    for wanted in [
        "TollgateHighDenialRate",
        "TollgateUpstreamErrors",
        "TollgateStoreDegraded",
        "TollgateBudgetExhausted",
    ] {
        assert!(names.contains(wanted), "no {wanted} alert");
    }
}

#[test]
fn scrape_config_targets_the_api_listener() {
    let text = read("deploy/prometheus/scrape.yml");
    check_yaml_shape("scrape.yml", &text);
    assert!(text.lines().any(|l| l == "scrape_configs:"));
    assert!(text.contains("metrics_path: /metrics"));
    let default_api = config::parse(&read("config/tollgate.toml"), &|_| None)
        .expect("example config")
        .listen
        .api;
    assert!(
        text.contains(&format!("\"{default_api}\"")),
        "static target should be the default api listener {default_api}"
    );
    assert!(text.contains("__meta_kubernetes_pod_annotation_prometheus_io_scrape"));
}

fn env_with_secret(var: &str) -> Option<String> {
    (var == "TOLLGATE_SECRET").then(|| "s".repeat(48))
}

/// A config carried by the kit, validated as `tollgate check` would.
fn kit_config(file: &str, text: &str) -> Config {
    config::parse(text, &env_with_secret).unwrap_or_else(|e| panic!("{file}:\n{e}"))
}

#[test]
fn kubernetes_example_is_consistent() {
    let dir = "deploy/kubernetes";
    let files = [
        "kustomization.yaml",
        "configmap.yaml",
        "secret.yaml",
        "pvc.yaml",
        "deployment.yaml",
        "service.yaml",
        "networkpolicy.yaml",
    ];
    for file in files {
        let text = read(&format!("{dir}/{file}"));
        check_yaml_shape(file, &text);
        if file != "kustomization.yaml" {
            for doc in text.split("\n---\n") {
                assert!(doc.contains("\napiVersion: ") || doc.starts_with("apiVersion: "));
                assert!(doc.contains("\nkind: "), "{file}: a document without kind");
            }
        }
    }

    let configmap = read(&format!("{dir}/configmap.yaml"));
    let toml = literal_block(&configmap, "tollgate.toml: |");
    let config = kit_config("configmap.yaml tollgate.toml", &toml);
    assert_eq!(config.upstream.url.as_str(), "http://127.0.0.1:5001/");
    assert_eq!(config.upstream.profile, ProfileKind::Kubo);
    let (proxy_port, api_port) = (config.listen.proxy.port(), config.listen.api.port());

    let deployment = read(&format!("{dir}/deployment.yaml"));
    let tollgate = block(&deployment, "- name: tollgate").join("\n");
    assert!(tollgate.contains(&format!(
        "name: proxy\n              containerPort: {proxy_port}"
    )));
    assert!(tollgate.contains(&format!(
        "name: api\n              containerPort: {api_port}"
    )));
    for (probe, path) in [
        ("livenessProbe:", "/healthz"),
        ("readinessProbe:", "/readyz"),
    ] {
        let probe_text = block(&tollgate, probe).join("\n");
        assert!(probe_text.contains(&format!("path: {path}")), "{probe}");
        assert!(probe_text.contains("port: api"), "{probe}");
    }
    assert!(deployment.contains(&format!("prometheus.io/port: \"{api_port}\"")));
    assert!(deployment.contains("prometheus.io/scrape: \"true\""));
    assert!(deployment.contains("prometheus.io/path: \"/metrics\""));
    for setting in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "mountPath: /var/lib/tollgate",
        "name: tollgate-secret",
        "requests:",
    ] {
        assert!(
            tollgate.contains(setting) || deployment.contains(setting),
            "{setting}"
        );
    }
    assert!(
        toml.contains("url = \"sqlite:///var/lib/tollgate/"),
        "the store must be on the mounted volume"
    );
    let grace: u64 = block(&deployment, "terminationGracePeriodSeconds:")[0]
        .rsplit(':')
        .next()
        .and_then(|v| v.trim().parse().ok())
        .expect("terminationGracePeriodSeconds");
    assert!(Duration::from_secs(grace) > config.limits.shutdown_grace);

    let service = read(&format!("{dir}/service.yaml"));
    let service: Vec<&str> = service
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    assert!(service.iter().any(|l| l.trim() == "targetPort: proxy"));
    assert!(
        !service
            .iter()
            .filter(|l| l.contains("port:") || l.contains("Port:"))
            .any(|l| l.ends_with(" api") || l.ends_with(&format!(" {api_port}"))),
        "the Service must not expose the api port"
    );
    let secret = read(&format!("{dir}/secret.yaml"));
    assert!(secret.contains("TOLLGATE_SECRET:"));
}

#[test]
fn container_config_is_valid_and_matches_the_image() {
    let config = kit_config("deploy/tollgate.toml", &read("deploy/tollgate.toml"));
    let dockerfile = read("deploy/Dockerfile");
    let exposed = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE");
    for port in [config.listen.proxy.port(), config.listen.api.port()] {
        assert!(
            exposed.split_whitespace().any(|p| p == port.to_string()),
            "port {port} not exposed"
        );
    }
    assert!(dockerfile.contains("USER 65532"));
    assert!(dockerfile.contains(r#"CMD ["serve", "--config", "/etc/tollgate/tollgate.toml"]"#));
    assert!(dockerfile.contains("COPY deploy/tollgate.toml /etc/tollgate/tollgate.toml"));
}

#[test]
fn systemd_unit_is_hardened_and_outlives_the_drain() {
    let unit = read("deploy/systemd/tollgate.service");
    for setting in [
        "ExecStart=/usr/local/bin/tollgate serve --config /etc/tollgate/tollgate.toml",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "LimitNOFILE=",
        "KillSignal=SIGTERM",
        "StateDirectory=tollgate",
    ] {
        assert!(unit.contains(setting), "no `{setting}`");
    }
    let stop = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec");
    let stop = humantime::parse_duration(stop).expect("TimeoutStopSec value");
    let grace = config::parse(&read("config/tollgate.toml"), &|_| None)
        .expect("example config")
        .limits
        .shutdown_grace;
    assert!(
        stop > grace,
        "TimeoutStopSec {stop:?} <= shutdown_grace {grace:?}"
    );
}

/// The secrets a cluster instance gets from its environment.
fn cluster_env(name: &str) -> Option<String> {
    match name {
        "TOLLGATE_STORE_URL" => Some("postgres://tollgate:pw@postgres:5432/tollgate".into()),
        other => env_with_secret(other),
    }
}

#[test]
fn cluster_kits_run_on_postgres_with_the_url_from_a_secret() {
    use tollgate::config::model::StoreUrl;
    let compose = read("deploy/compose.yaml");
    let cluster = config::parse(&read("deploy/cluster/tollgate.toml"), &cluster_env).unwrap();
    assert!(matches!(cluster.store.url, StoreUrl::Postgres(_)));
    assert!(compose.contains("./cluster/tollgate.toml:/etc/tollgate/tollgate.toml:ro"));
    assert!(compose.contains("TOLLGATE_STORE_URL: postgres://"));
    for instance in ["tollgate-a:", "tollgate-b:", "tollgate-c:"] {
        assert!(compose.contains(instance), "{instance}");
    }
    let dir = "deploy/kubernetes/postgres";
    let patch = read(&format!("{dir}/configmap-patch.yaml"));
    let toml = literal_block(&patch, "tollgate.toml: |");
    let k8s = config::parse(&toml, &cluster_env).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(k8s.store.url, StoreUrl::Postgres(_)));
    let deployment = read(&format!("{dir}/deployment-patch.yaml"));
    assert!(deployment.contains("name: tollgate-store"));
    let kustomization = read(&format!("{dir}/kustomization.yaml"));
    for file in ["deployment-patch.yaml", "configmap-patch.yaml"] {
        assert!(kustomization.contains(file), "{file}");
    }
    assert!(kustomization.contains("TOLLGATE_STORE_URL="));
}
