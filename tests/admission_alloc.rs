//! Admission allocates nothing in the common case: a counting global allocator around what the
//! proxy does for an allowed request of a key with every limit set (rate token, key entry's
//! live state and counter links, `admit`: concurrency slot and the cost, balance and byte
//! reservations of key, account and partner; then usage recorded and the ticket settled by
//! `Drop`). The first request of a key creates its live state and counters; every later one
//! must not touch the allocator.

use std::alloc::System;
use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroU64};

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tollgate::config::model::Plan;
use tollgate::domain::key::{Account, Credential, Key, KeyLimits, Partner};
use tollgate::domain::permission::PermissionSet;
use tollgate::index::KeyIndex;
use tollgate::meter::Meter;
use tollgate::meter::admit::Facts;
use uuid::Uuid;

/// The system allocator, counting every allocation of the process.
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const NOW: i64 = 1_795_435_200; // 2026-11-23 12:00 UTC

#[test]
fn an_allowed_request_is_admitted_and_settled_without_allocating() {
    let partner = Partner {
        id: Uuid::new_v4(),
        name: "p".into(),
        token_prefix: "abcd".into(),
        token_hash: "h".into(),
        balance_micros: i64::MAX / 2,
        tier_multiplier_ppm: 1_500_000,
        suspended: false,
        created_at: 1,
    };
    let account = Account {
        id: Uuid::new_v4(),
        partner_id: partner.id,
        external_id: "a".into(),
        email: None,
        name: None,
        plan_id: Some(1),
        created_at: 1,
    };
    let key = Key {
        id: Uuid::new_v4(),
        account_id: account.id,
        partner_id: partner.id,
        name: "k".into(),
        label: None,
        description: None,
        credential: Credential::Token { digest: [7; 32] },
        permissions: PermissionSet::EMPTY,
        ip_whitelist: Default::default(),
        expiration_date: None,
        disabled: false,
        created_at: 1,
        created_by: "t".into(),
        revoked_at: None,
        revoked_by: None,
        status_changed_at: None,
        status_changed_by: None,
        last_used_at: None,
        limits: KeyLimits {
            daily_cost_limit_micros: Some(u64::MAX / 4),
            total_cost_limit_micros: Some(u64::MAX / 4),
            concurrency_limit: NonZeroU32::new(8),
            rate_limit_per_minute: NonZeroU32::new(1_000_000),
            models: None,
        },
    };
    let plan = Plan {
        id: 1,
        name: "plan".into(),
        price_micros: 0,
        pinned_count_limit: None,
        pinned_bytes_limit: None,
        ingress_limit: NonZeroU64::new(u64::MAX / 4),
        egress_limit: NonZeroU64::new(u64::MAX / 4),
        ipns_limit: None,
    };
    let plans = HashMap::from([(1, plan)]);
    let meter = Meter::default();
    meter.upsert_partner(&partner, NOW);
    meter.upsert_account(&account, NOW);
    let index = KeyIndex::from_keys(vec![key.clone()]);
    let entry = index.get(key.id).expect("indexed");
    let facts = Facts {
        content_length: Some(512),
        cost_estimate: 2_000,
    };
    let request = || {
        let slot = entry
            .live
            .enter(&entry.key)
            .expect("a rate token and a slot");
        let mut ticket = meter
            .admit(&entry.key, &entry.live, &plans, facts, NOW)
            .expect("admitted");
        ticket.hold_slot(slot);
        for hold in ticket.ingress.iter_mut() {
            hold.record(512);
        }
        for hold in ticket.egress.iter_mut() {
            hold.record(4_096);
        }
        ticket.set_actual_cost(1_500);
    };
    request(); // the key's first request creates its live state and counters
    // The count is process-wide (the test harness's own threads allocate now and then), so the
    // requests run in batches: an allocation per request would show in every batch.
    let batches: Vec<(usize, usize)> = (0..5)
        .map(|_| {
            let region = Region::new(ALLOCATOR);
            for _ in 0..1_000 {
                request();
            }
            let stats = region.change();
            (stats.allocations, stats.reallocations)
        })
        .collect();
    assert_eq!(
        batches.iter().min(),
        Some(&(0, 0)),
        "allocations in batches of 1000 admissions: {batches:?}"
    );
    // The requests were really counted and settled: 5001 × the actual cost, nothing held.
    let usage = meter.key_usage(key.id, NOW);
    let day = usage.cost_day().current(NOW, &meter.retired);
    assert_eq!(
        (day.used(), day.committed()),
        (5_001 * 1_500, 5_001 * 1_500)
    );
    assert_eq!(entry.live.in_flight.current(), 0, "every slot given back");
    let partner = meter.partner(partner.id).unwrap();
    assert_eq!(partner.spent.committed(), 5_001 * 2_250, "tier 1.5×");
}
