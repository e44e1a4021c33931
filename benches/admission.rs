//! Admission cost per request (path normalisation, credential parse, key look-up, policy and
//! route match) with 1 k, 100 k and 1 M keys, on one thread. Run: `cargo bench --bench admission`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use tollgate::config::model::{ProfileKind, RouteAction};
use tollgate::domain::decision::Decision;
use tollgate::domain::ip::IpAllowList;
use tollgate::domain::key::{Credential, Key, KeyLimits};
use tollgate::domain::permission::{Permission, PermissionSet};
use tollgate::domain::policy::check_key;
use tollgate::domain::secret::KeyHasher;
use tollgate::index::KeyIndex;
use tollgate::proxy::credential::{self, CredentialSource, Extracted};
use tollgate::proxy::{path, profile};

fn key(hasher: &KeyHasher, n: usize) -> Key {
    let token = format!("cr_bench_{n:040}");
    Key {
        id: uuid::Uuid::new_v4(),
        account_id: uuid::Uuid::nil(),
        partner_id: uuid::Uuid::nil(),
        name: format!("k{n}"),
        label: None,
        description: None,
        credential: Credential::Token {
            digest: hasher.digest(token.as_bytes()),
        },
        permissions: PermissionSet::from_slice(&[Permission::Read, Permission::Write]),
        ip_whitelist: IpAllowList::parse(&["127.0.0.0/8", "10.0.0.0/8"]).unwrap(),
        expiration_date: None,
        disabled: false,
        created_at: 0,
        created_by: "bench".into(),
        revoked_at: None,
        revoked_by: None,
        last_used_at: None,
        limits: KeyLimits::default(),
    }
}

fn admission(c: &mut Criterion) {
    let hasher = KeyHasher::new(b"bench-secret-bench-secret-bench!");
    let routes = profile::route_table(ProfileKind::Kubo, &[]);
    let sources = CredentialSource::ALL;
    let ip = "127.0.0.1".parse().unwrap();
    let mut group = c.benchmark_group("admission");
    for n in [1_000usize, 100_000, 1_000_000] {
        let index = KeyIndex::from_keys((0..n).map(|i| key(&hasher, i)).collect());
        let mut headers = HeaderMap::new();
        let token = format!("cr_bench_{:040}", n / 2);
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let path = path::normalize(black_box("/api/v0/cat")).unwrap();
                let Extracted::Found(presented) = credential::extract(&headers, &sources) else {
                    panic!("credential expected")
                };
                let entry = index.lookup(&presented, &hasher).unwrap();
                let RouteAction::Require(p) = routes.resolve(&Method::POST, &path) else {
                    panic!("route expected")
                };
                let d = check_key(&entry.key, 1_795_400_000, ip, p);
                assert!(matches!(d, Decision::Allow));
                black_box((path, entry))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);
