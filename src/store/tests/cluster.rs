//! What only the shared PostgreSQL store does: change notifications, the reconcile read, usage
//! syncs that read back every instance's totals, shared rate-limit windows, and refusing a
//! schema newer than the binary or a wrong URL with a clear error.

use std::time::Duration;

use crate::store::PlanMove;

use uuid::Uuid;

use super::TestStore;
use crate::domain::key::{Account, Credential, Key, KeyLimits, Partner};
use crate::domain::permission::PermissionSet;
use crate::meter::usage::{Metric, Scope};
use crate::meter::window::Window;
use crate::meter::{Batch, Delta};
use crate::store::cluster::Change;
use crate::store::postgres::{PgSettings, PostgresStore};
use crate::store::{KeyChange, StoreError};

pub(super) fn partner() -> Partner {
    Partner {
        id: Uuid::new_v4(),
        name: "p".into(),
        token_prefix: "abcd".into(),
        token_hash: "h".into(),
        balance_micros: 1_000,
        tier_multiplier_ppm: 1_000_000,
        suspended: false,
        created_at: 1,
    }
}

pub(super) fn account(p: &Partner) -> Account {
    Account {
        id: Uuid::new_v4(),
        partner_id: p.id,
        external_id: "default".into(),
        email: None,
        name: None,
        plan_id: None,
        created_at: 1,
    }
}

fn key(a: &Account) -> Key {
    Key {
        id: Uuid::new_v4(),
        account_id: a.id,
        partner_id: a.partner_id,
        name: "k".into(),
        label: None,
        description: None,
        credential: Credential::Token {
            digest: *Uuid::new_v4().as_bytes().repeat(2).first_chunk().unwrap(),
        },
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
        limits: KeyLimits::default(),
    }
}

/// The next change other than `Resync`, within a deadline.
async fn next_change(rx: &mut tokio::sync::mpsc::Receiver<Change>) -> Change {
    loop {
        let change = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a notification within 10 s")
            .expect("feed open");
        if change != Change::Resync {
            return change;
        }
    }
}

#[tokio::test]
async fn writes_notify_with_ids_and_usage_writes_do_not() {
    let t = TestStore::postgres().await;
    let feed = t.cluster().unwrap();
    let mut rx = feed.subscribe().await.unwrap();
    assert_eq!(rx.recv().await, Some(Change::Resync), "first: reconcile");
    let (p, a) = (partner(), account(&partner()));
    let a = Account {
        partner_id: p.id,
        ..a
    };
    t.create_partner(&p, &a).await.unwrap();
    assert_eq!(next_change(&mut rx).await, Change::Partner(p.id));
    assert_eq!(next_change(&mut rx).await, Change::Account(a.id));
    let k = key(&a);
    t.create_key(&k).await.unwrap();
    assert_eq!(next_change(&mut rx).await, Change::Key(k.id));
    // last_used_at and balance charges are read back by the sync, not notified.
    t.touch_keys(&[(k.id, 50)]).await.unwrap();
    t.add_partner_balance(p.id, 5, 60).await.unwrap();
    t.update_key(
        k.id,
        &KeyChange::SetDisabled {
            disabled: true,
            at: 7,
            by: "partner:test".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(next_change(&mut rx).await, Change::Key(k.id));
    t.update_partner(p.id, None, Some(true)).await.unwrap();
    assert_eq!(next_change(&mut rx).await, Change::Partner(p.id));
    let free = PlanMove {
        expected: (a.plan_id, None, 0),
        plan_id: 1,
        charge_micros: 0,
        period: "2026-11".into(),
        peak_micros: 0,
        at: 60,
        note: String::new(),
    };
    t.set_account_plan(a.id, &free).await.ok();
    drop(rx); // the feed gives its connection back, so the pool can close
    t.finish().await;
}

#[tokio::test]
async fn the_feed_reconnects_and_says_so() {
    let t = TestStore::postgres().await;
    let mut rx = t.cluster().unwrap().subscribe().await.unwrap();
    assert_eq!(rx.recv().await, Some(Change::Resync));
    // Kill the listening connection (it is the one that ran LISTEN).
    let killed: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = $1 AND query LIKE 'LISTEN%'",
    )
    .bind(t.schema_name().unwrap())
    .fetch_one(t.pg().unwrap().pool())
    .await
    .unwrap();
    assert!(killed >= 1);
    let change = tokio::time::timeout(Duration::from_secs(15), rx.recv()).await;
    assert_eq!(change.unwrap(), Some(Change::Resync));
    // And notifications flow again.
    let p = partner();
    t.create_partner(
        &p,
        &Account {
            partner_id: p.id,
            ..account(&p)
        },
    )
    .await
    .unwrap();
    assert_eq!(next_change(&mut rx).await, Change::Partner(p.id));
    drop(rx); // the feed gives its connection back, so the pool can close
    t.finish().await;
}

#[tokio::test]
async fn changed_since_reads_what_changed_after_the_cursor() {
    let t = TestStore::postgres().await;
    let feed = t.cluster().unwrap();
    let p = partner();
    let a = Account {
        partner_id: p.id,
        ..account(&p)
    };
    t.create_partner(&p, &a).await.unwrap();
    let k = key(&a);
    t.create_key(&k).await.unwrap();
    let all = feed.changed_since(0).await.unwrap();
    assert_eq!(
        (all.keys.len(), all.partners.len(), all.accounts.len()),
        (1, 1, 1)
    );
    let later = feed.changed_since(all.now_micros).await.unwrap();
    assert!(later.keys.is_empty() && later.partners.is_empty());
    t.update_key(
        k.id,
        &KeyChange::SetDisabled {
            disabled: true,
            at: 7,
            by: "partner:test".into(),
        },
    )
    .await
    .unwrap();
    let again = feed.changed_since(all.now_micros).await.unwrap();
    assert_eq!(again.keys.len(), 1);
    assert!(again.keys[0].disabled);
    t.finish().await;
}

fn delta(id: Uuid, amount: u64) -> Delta {
    Delta {
        scope: Scope::Key,
        id,
        metric: Metric::Requests,
        window: Window::Day,
        label: "2026-12-04".into(),
        day: "2026-12-04".into(),
        amount,
    }
}

#[tokio::test]
async fn a_sync_reads_back_what_any_instance_counted_since_its_cursor() {
    let t = TestStore::postgres().await;
    // A second instance on the same schema.
    let other = PostgresStore::open(&t.schema_url().unwrap(), PgSettings::default())
        .await
        .unwrap();
    let (k1, k2) = (Uuid::new_v4(), Uuid::new_v4());
    let one = Batch {
        deltas: vec![delta(k1, 3)],
        charges: vec![],
    };
    let first = t.apply_usage("a1", &one, 10, 0).await.unwrap();
    assert!(first.applied);
    assert_eq!(first.totals.len(), 1);
    assert_eq!(first.totals[0].value, 3);
    // The other instance counts too, twice (one is a retry: not applied again).
    let two = Batch {
        deltas: vec![delta(k1, 4), delta(k2, 1), delta(k1, 1)],
        charges: vec![],
    };
    use crate::store::UsageStore;
    assert!(other.apply_usage("b1", &two, 11, 0).await.unwrap().applied);
    assert!(!other.apply_usage("b1", &two, 12, 0).await.unwrap().applied);
    // An empty sync of the first reads back both rows as they are now, once.
    let second = t
        .apply_usage("a2", &Batch::default(), 13, first.cursor)
        .await
        .unwrap();
    assert!(!second.applied, "nothing to apply");
    let mut totals: Vec<(Uuid, u64)> = second
        .totals
        .iter()
        .map(|r| (r.scope_id, r.value))
        .collect();
    totals.sort();
    let mut expected = vec![(k1, 8), (k2, 1)];
    expected.sort();
    assert_eq!(totals, expected);
    let third = t
        .apply_usage("a3", &Batch::default(), 14, second.cursor)
        .await
        .unwrap();
    assert!(third.totals.is_empty(), "nothing changed since");
    other.pool().close().await;
    t.finish().await;
}

#[tokio::test]
async fn shared_rate_windows_count_across_connections() {
    let t = TestStore::postgres().await;
    let other = PostgresStore::open(&t.schema_url().unwrap(), PgSettings::default())
        .await
        .unwrap();
    use crate::store::cluster::ClusterStore;
    let feed = t.cluster().unwrap();
    assert_eq!(feed.hit("p:minute:60", 100, 120).await.unwrap(), 1);
    assert_eq!(other.hit("p:minute:60", 100, 120).await.unwrap(), 2);
    assert_eq!(feed.hit("p:minute:120", 121, 180).await.unwrap(), 1);
    other.pool().close().await;
    t.finish().await;
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused_untouched() {
    let t = TestStore::postgres().await;
    let url = t.schema_url().unwrap();
    t.exec(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
         execution_time) VALUES (99999, 'from the future', TRUE, '\\x00', 1)",
        &[],
    )
    .await;
    let err = PostgresStore::open(&url, PgSettings::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::TooNew { version: 99999, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("newer Tollgate") && msg.contains("never migrates down"),
        "{msg}"
    );
    t.finish().await;
}

#[tokio::test]
async fn a_wrong_password_names_the_url_without_the_password() {
    let err = PostgresStore::open(
        "postgres://nobody:s3cret-pw@127.0.0.1:1/none",
        PgSettings::default(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1:1/none"), "{msg}");
    assert!(!msg.contains("s3cret-pw"), "{msg}");
    assert!(msg.contains("***"), "{msg}");
}
