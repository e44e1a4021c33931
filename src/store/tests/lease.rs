//! Budget leases on the shared store: what is counted plus every lease never exceeds a limit,
//! whichever instance asks; syncs spend from the syncing instance's lease; returned and expired
//! leases go back to the budget.

use std::time::Duration;

use uuid::Uuid;

use super::TestStore;
use super::cluster::{account, partner};
use crate::meter::usage::{Metric, Scope};
use crate::meter::window::Window;
use crate::meter::{Batch, Delta};
use crate::store::cluster::{Budget, LeaseId, LeaseRequest};
use crate::store::postgres::{PgSettings, PostgresStore};
use crate::store::{Store, UsageStore};

const DAY: &str = "2026-12-04";

fn key_cost(id: Uuid) -> LeaseId {
    LeaseId {
        budget: Budget::KeyCost,
        id,
        window: DAY.into(),
    }
}

fn ask(lease: &LeaseId, limit: u64, need: u64) -> LeaseRequest {
    LeaseRequest {
        lease: lease.clone(),
        limit,
        need,
        fraction: 0.5,
        unspent: 0,
    }
}

async fn grant(store: &dyn Store, request: LeaseRequest) -> u64 {
    let cluster = store.cluster().unwrap();
    cluster.grant_leases(&[request]).await.unwrap()[0]
}

async fn instance(t: &TestStore, ttl: Duration) -> PostgresStore {
    let settings = PgSettings {
        lease_ttl: ttl,
        ..PgSettings::default()
    };
    PostgresStore::open(&t.schema_url().unwrap(), settings)
        .await
        .unwrap()
}

fn cost(id: Uuid, amount: u64) -> Batch {
    Batch {
        deltas: vec![Delta {
            scope: Scope::Key,
            id,
            metric: Metric::Cost,
            window: Window::Day,
            label: DAY.into(),
            day: DAY.into(),
            amount,
        }],
        charges: vec![],
    }
}

#[tokio::test]
async fn grants_never_lease_more_than_is_left_and_syncs_spend_from_the_lease() {
    let t = TestStore::postgres().await;
    let a: &dyn Store = &*t;
    let b = instance(&t, Duration::from_secs(30)).await;
    let id = Uuid::new_v4();
    let lease = key_cost(id);
    assert_eq!(grant(a, ask(&lease, 1_000, 0)).await, 500, "half of 1000");
    assert_eq!(
        grant(&b, ask(&lease, 1_000, 0)).await,
        250,
        "half of the 500 left"
    );
    assert_eq!(
        grant(a, ask(&lease, 1_000, 300)).await,
        500,
        "250 left is less than the need: nothing is granted, the lease stays"
    );
    assert_eq!(
        grant(a, ask(&lease, 1_000, 250)).await,
        750,
        "exactly what is left"
    );
    assert_eq!(grant(&b, ask(&lease, 1_000, 1)).await, 250, "nothing left");
    // A spends 200 of its lease: counted 200, its lease 550, B's 250: still nothing left.
    let synced = a.apply_usage("s1", &cost(id, 200), 10, 0).await.unwrap();
    assert_eq!(synced.leases, vec![(lease.clone(), 550)]);
    assert_eq!(grant(&b, ask(&lease, 1_000, 1)).await, 250);
    // A retried batch (same token) is not spent twice.
    let again = a.apply_usage("s1", &cost(id, 200), 10, 0).await.unwrap();
    assert!(!again.applied);
    assert_eq!(again.leases, vec![(lease.clone(), 550)]);
    // A gives its lease back: 1000 - 200 counted - 250 (B) = 550 left, half for B.
    a.cluster()
        .unwrap()
        .return_leases(std::slice::from_ref(&lease))
        .await
        .unwrap();
    let synced = a.apply_usage("s2", &Batch::default(), 11, 0).await.unwrap();
    assert!(synced.leases.is_empty());
    assert_eq!(grant(&b, ask(&lease, 1_000, 0)).await, 250 + 275);
    // A lower limit leaves nothing to grant (the leases already held stand).
    assert_eq!(grant(a, ask(&lease, 400, 0)).await, 0);
}

#[tokio::test]
async fn a_refill_tops_a_lease_up_to_its_share_and_never_past_it() {
    let t = TestStore::postgres().await;
    let a: &dyn Store = &*t;
    let lease = key_cost(Uuid::new_v4());
    assert_eq!(grant(a, ask(&lease, 1_000, 0)).await, 500);
    let asking = |unspent, need| LeaseRequest {
        unspent,
        ..ask(&lease, 1_000, need)
    };
    // 400 of it unspent, 500 unleased: the share of 900 is 450, so 50 more.
    assert_eq!(grant(a, asking(400, 0)).await, 550);
    // Holding more than its share (ceil(0.5 * (450 + 500)) = 475): nothing more, however
    // often a busy instance asks, so a few instances cannot gather the whole budget.
    for _ in 0..3 {
        assert_eq!(grant(a, asking(500, 0)).await, 550);
    }
    // What a waiting request needs is still granted while it fits.
    assert_eq!(grant(a, asking(500, 100)).await, 650);
}

#[tokio::test]
async fn a_partner_balance_lease_follows_the_stored_balance_and_its_charges() {
    let t = TestStore::postgres().await;
    let p = partner(); // balance 1000 µUSD
    t.create_partner(&p, &account(&p)).await.unwrap();
    let lease = LeaseId {
        budget: Budget::PartnerBalance,
        id: p.id,
        window: "lifetime".into(),
    };
    let a: &dyn Store = &*t;
    assert_eq!(grant(a, ask(&lease, 0, 0)).await, 500);
    let charge = Batch {
        deltas: vec![],
        charges: vec![(p.id, 300)],
    };
    let synced = a.apply_usage("c1", &charge, 10, 0).await.unwrap();
    assert_eq!(synced.leases, vec![(lease.clone(), 200)]);
    let balance = synced
        .balances
        .iter()
        .find(|(id, _)| *id == p.id)
        .unwrap()
        .1;
    assert_eq!(balance, 700);
    // 700 stored - 200 leased = 500 left; a top-up adds to it.
    t.add_partner_balance(p.id, 1_000, 60).await.unwrap();
    assert_eq!(grant(a, ask(&lease, 0, 1_500)).await, 200 + 1_500);
    assert_eq!(grant(a, ask(&lease, 0, 1)).await, 1_700, "nothing left");
}

#[tokio::test]
async fn the_lease_of_an_instance_that_stopped_renewing_is_reclaimed() {
    let t = TestStore::postgres().await;
    let a: &dyn Store = &*t;
    // An instance whose leases expire as soon as they are granted (as if killed long ago).
    let dead = instance(&t, Duration::ZERO).await;
    let lease = key_cost(Uuid::new_v4());
    assert_eq!(grant(&dead, ask(&lease, 1_000, 0)).await, 500);
    assert_eq!(
        grant(a, ask(&lease, 1_000, 1_000)).await,
        1_000,
        "the expired lease went back to the budget"
    );
    let synced = dead
        .apply_usage("d1", &Batch::default(), 10, 0)
        .await
        .unwrap();
    assert!(synced.leases.is_empty(), "a reclaimed lease is not renewed");
}
