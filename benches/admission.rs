//! Admission cost per request: path normalisation, credential parse, key look-up (HMAC digest +
//! hash map), policy, route match, then the quota admission (rate, concurrency, cost and byte
//! reservations on key, account and partner) and its settlement — with 1 k, 100 k and 1 M keys,
//! on one thread and contended from every core. Run: `cargo bench --bench admission`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use tollgate::auth::{self, CredentialSource};
use tollgate::config::model::ProfileKind;
use tollgate::domain::decision::Decision;
use tollgate::domain::ip::IpAllowList;
use tollgate::domain::key::{Account, Credential, Key, KeyLimits, Partner};
use tollgate::domain::permission::{Permission, PermissionSet};
use tollgate::domain::policy::check_key;
use tollgate::domain::secret::KeyHasher;
use tollgate::index::KeyIndex;
use tollgate::meter::Meter;
use tollgate::meter::admit::Facts;
use tollgate::proxy::routes::RouteTable;
use tollgate::proxy::{path, profile};

const NOW: i64 = 1_795_435_200;

struct World {
    hasher: KeyHasher,
    index: KeyIndex,
    meter: Meter,
    routes: RouteTable,
}

fn world(n: usize) -> World {
    let hasher = KeyHasher::new(b"bench-secret-bench-secret-bench!");
    let meter = Meter::default();
    let partner = Partner {
        id: uuid::Uuid::new_v4(),
        name: "p".into(),
        token_prefix: String::new(),
        token_hash: String::new(),
        balance_micros: i64::MAX,
        tier_multiplier_ppm: 1_000_000,
        suspended: false,
        created_at: 0,
    };
    let account = Account {
        id: uuid::Uuid::new_v4(),
        partner_id: partner.id,
        external_id: "a".into(),
        email: None,
        name: None,
        plan_id: None,
        created_at: 0,
    };
    meter.upsert_partner(&partner, NOW);
    meter.upsert_account(&account, NOW);
    let keys = (0..n)
        .map(|i| Key {
            id: uuid::Uuid::new_v4(),
            account_id: account.id,
            partner_id: partner.id,
            name: format!("k{i}"),
            label: None,
            description: None,
            credential: Credential::Token {
                digest: hasher.digest(token(i).as_bytes()),
            },
            permissions: PermissionSet::from_slice(&[Permission::Read, Permission::Write]),
            ip_whitelist: IpAllowList::parse(&["127.0.0.0/8", "10.0.0.0/8"]).unwrap(),
            expiration_date: None,
            disabled: false,
            created_at: 0,
            created_by: "bench".into(),
            revoked_at: None,
            revoked_by: None,
            status_changed_at: None,
            status_changed_by: None,
            last_used_at: None,
            limits: KeyLimits {
                daily_cost_limit_micros: Some(u64::MAX / 4),
                total_cost_limit_micros: Some(u64::MAX / 4),
                concurrency_limit: std::num::NonZeroU32::new(1_000_000),
                rate_limit_per_minute: None,
                models: None,
            },
        })
        .collect();
    World {
        hasher,
        index: KeyIndex::from_keys(keys),
        meter,
        routes: profile::route_table(ProfileKind::Kubo, &[]),
    }
}

fn token(i: usize) -> String {
    format!("cr_bench_{i:040}")
}

fn headers(i: usize) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v = format!("Bearer {}", token(i));
    h.insert("authorization", HeaderValue::from_str(&v).unwrap());
    h
}

/// One full admission: checks, reservations, then settlement (ticket dropped).
fn admit_once(w: &World, headers: &HeaderMap, plans: &HashMap<i64, tollgate::config::model::Plan>) {
    let path = path::normalize(black_box("/api/v0/cat")).unwrap();
    let entry =
        auth::authenticate(headers, &CredentialSource::ALL, &w.index, &w.hasher, None).unwrap();
    let route = w.routes.route(&Method::POST, &path);
    let tollgate::config::model::RouteAction::Require(p) = route.action else {
        panic!("route expected")
    };
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    assert!(matches!(check_key(&entry.key, NOW, ip, p), Decision::Allow));
    let slot = entry.live.enter(&entry.key).unwrap();
    let facts = Facts {
        content_length: Some(0),
        cost_estimate: 100,
    };
    let ticket = w.meter.admit(&entry.key, &entry.live, plans, facts, NOW);
    let mut ticket = ticket.unwrap();
    ticket.hold_slot(slot);
    black_box(ticket);
}

fn admission(c: &mut Criterion) {
    let plans = HashMap::new();
    let mut group = c.benchmark_group("admission");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    for n in [1_000usize, 100_000, 1_000_000] {
        let w = Arc::new(world(n));
        let h = headers(n / 2);
        group.bench_with_input(BenchmarkId::new("single_thread", n), &n, |b, _| {
            b.iter(|| admit_once(&w, &h, &plans))
        });
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        group.bench_with_input(
            BenchmarkId::new(format!("contended_{threads}_threads"), n),
            &n,
            |b, _| {
                b.iter_custom(|iters| {
                    let per = iters.div_ceil(threads as u64);
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for t in 0..threads {
                            let (w, plans) = (&w, &plans);
                            // Half the threads share one key (hot counters), half use their own.
                            let h = if t % 2 == 0 {
                                headers(n / 2)
                            } else {
                                headers(t)
                            };
                            s.spawn(move || {
                                for _ in 0..per {
                                    admit_once(w, &h, plans);
                                }
                            });
                        }
                    });
                    // Wall time for all `iters` requests: criterion reports the inverse throughput.
                    start.elapsed()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);
