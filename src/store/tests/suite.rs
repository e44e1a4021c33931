//! The store tests, written once and run on both back-ends (see `on_both_backends!`).

use std::num::{NonZeroU32, NonZeroU64};

use chrono::NaiveDate;
use uuid::Uuid;

use super::{TestStore, on_both_backends};
use crate::config::model::Plan;
use crate::domain::ip::IpAllowList;
use crate::domain::key::{Account, Credential, Key, KeyLimits, Partner};
use crate::domain::money::LedgerKind;
use crate::domain::permission::{Permission, PermissionSet};
use crate::store::{IpnsRow, KeyChange, Page, PinRow, PlanChange, PlanMove, StoreError};

on_both_backends!(
    partner_and_default_account_round_trip,
    create_partner_is_atomic,
    partners_by_token_prefix_and_new_token,
    duplicate_account_uuid_is_a_conflict,
    keys_round_trip_for_both_credential_kinds,
    duplicate_key_name_or_credential_is_a_conflict,
    update_key_disable_enable_revoke,
    touch_keys_keeps_the_latest_time,
    sync_plans_upserts_by_id_and_accounts_may_reference_them,
    init_setting_keeps_the_first_value,
    foreign_keys_are_enforced,
    corrupt_rows_name_the_key_and_field,
    usage_batches_apply_once_and_charge_the_balance,
    pins_and_ipns_names_round_trip,
    llm_usage_adds_up_once_per_token,
    accounts_are_found_by_partner_and_external_id_only,
    a_plan_change_and_its_charge_are_one_transaction,
    names_are_unique_among_live_keys_only,
    paged_lists_walk_in_creation_order,
    key_search_matches_name_label_description_or_id,
);

fn partner(prefix: &str) -> Partner {
    Partner {
        id: Uuid::new_v4(),
        name: "Acme Resale".into(),
        token_prefix: prefix.into(),
        token_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        balance_micros: -1_500_000,
        tier_multiplier_ppm: 850_000,
        suspended: true,
        created_at: 1_700_000_000,
    }
}

fn account(partner_id: Uuid, external_id: &str) -> Account {
    Account {
        id: Uuid::new_v4(),
        partner_id,
        external_id: external_id.into(),
        email: Some(format!("{external_id}@example.com")),
        name: Some("Ada".into()),
        plan_id: None,
        created_at: 1_700_000_100,
    }
}

/// A partner with its default account, stored.
async fn tenant(store: &TestStore) -> (Partner, Account) {
    let p = partner("abcd1234");
    let a = account(p.id, "default");
    store.create_partner(&p, &a).await.unwrap();
    (p, a)
}

fn key(account: &Account, name: &str, credential: Credential) -> Key {
    Key {
        // Time-ordered, as the manager mints them: keys made in the same second list in the
        // order they were made.
        id: Uuid::now_v7(),
        account_id: account.id,
        partner_id: account.partner_id,
        name: name.into(),
        label: Some("CI".into()),
        description: Some("used by the build".into()),
        credential,
        permissions: PermissionSet::from_slice(&[Permission::Read, Permission::Pin]),
        ip_whitelist: IpAllowList::parse(&["10.0.0.0/8", "2001:db8::1"]).unwrap(),
        expiration_date: NaiveDate::from_ymd_opt(2027, 3, 1),
        disabled: true,
        created_at: 1_700_000_200,
        created_by: "partner:acme".into(),
        revoked_at: Some(1_700_000_900),
        revoked_by: Some("admin".into()),
        status_changed_at: None,
        status_changed_by: None,
        last_used_at: Some(1_700_000_500),
        limits: KeyLimits {
            daily_cost_limit_micros: Some(5_000_000),
            total_cost_limit_micros: Some(u64::MAX / 4),
            concurrency_limit: NonZeroU32::new(8),
            rate_limit_per_minute: NonZeroU32::new(600),
            models: Some(vec!["gpt-4o-mini".into(), "claude-3-5-haiku".into()]),
        },
    }
}

fn token(byte: u8) -> Credential {
    Credential::Token { digest: [byte; 32] }
}

/// A plain, enabled, never-used key.
fn fresh_key(account: &Account, name: &str, byte: u8) -> Key {
    Key {
        revoked_at: None,
        revoked_by: None,
        status_changed_at: None,
        status_changed_by: None,
        last_used_at: None,
        disabled: false,
        ..key(account, name, token(byte))
    }
}

/// The plans the account tests use.
async fn plans(store: &TestStore) {
    store
        .sync_plans(&[plan(1, "Free", 0), plan(2, "Pro", 0)])
        .await
        .unwrap();
}

/// A partner with `balance` and its default account.
async fn funded(store: &TestStore, balance: i64) -> Partner {
    let p = Partner {
        balance_micros: balance,
        ..partner(&format!("p{}", Uuid::new_v4().simple()))
    };
    store
        .create_partner(&p, &account(p.id, "default"))
        .await
        .unwrap();
    p
}

async fn partner_and_default_account_round_trip(store: &TestStore) {
    let (p, a) = tenant(store).await;
    assert_eq!(store.get_partner(p.id).await.unwrap(), Some(p.clone()));
    assert_eq!(store.default_account(p.id).await.unwrap(), Some(a));
    // A second account is not the default one.
    store
        .create_account(&account(p.id, "user-2"))
        .await
        .unwrap();
    assert_eq!(
        store
            .default_account(p.id)
            .await
            .unwrap()
            .unwrap()
            .external_id,
        "default"
    );
    assert_eq!(store.get_partner(Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(store.default_account(Uuid::new_v4()).await.unwrap(), None);
}

async fn create_partner_is_atomic(store: &TestStore) {
    let (p, a) = tenant(store).await;
    // The default account clashes (same id), so the new partner must not be stored either.
    let q = partner("other");
    let clash = Account {
        partner_id: q.id,
        ..a
    };
    assert!(store.create_partner(&q, &clash).await.is_err());
    assert_eq!(store.get_partner(q.id).await.unwrap(), None);
    assert!(store.get_partner(p.id).await.unwrap().is_some());
}

async fn partners_by_token_prefix_and_new_token(store: &TestStore) {
    let (p, _) = tenant(store).await;
    let q = partner("abcd1234");
    store
        .create_partner(&q, &account(q.id, "default"))
        .await
        .unwrap();
    let found = store.partners_by_token_prefix("abcd1234").await.unwrap();
    assert_eq!(found.len(), 2);
    assert!(found.contains(&p) && found.contains(&q));
    assert!(
        store
            .partners_by_token_prefix("zzz")
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        store
            .set_partner_token(p.id, "new00001", "$hash2")
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_partner_token(Uuid::new_v4(), "x", "y")
            .await
            .unwrap()
    );
    let moved = store.partners_by_token_prefix("new00001").await.unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].token_hash, "$hash2");
    assert_eq!(
        store.partners_by_token_prefix("abcd1234").await.unwrap(),
        vec![q]
    );
}

async fn duplicate_account_uuid_is_a_conflict(store: &TestStore) {
    let (p, _) = tenant(store).await;
    store.create_account(&account(p.id, "u-1")).await.unwrap();
    let err = store
        .create_account(&account(p.id, "u-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("uuid")), "{err:?}");
    // The same external id under another partner is fine.
    let q = partner("q");
    store.create_partner(&q, &account(q.id, "d")).await.unwrap();
    store.create_account(&account(q.id, "u-1")).await.unwrap();
}

async fn keys_round_trip_for_both_credential_kinds(store: &TestStore) {
    let (_, a) = tenant(store).await;
    let token_key = key(&a, "token", token(7));
    let pair_key = key(
        &a,
        "pair",
        Credential::Pair {
            access_key: Uuid::new_v4(),
            digest: [9; 32],
        },
    );
    let bare = Key {
        label: None,
        description: None,
        permissions: PermissionSet::EMPTY,
        ip_whitelist: IpAllowList::default(),
        expiration_date: None,
        limits: KeyLimits::default(),
        created_at: 1_800_000_000,
        ..fresh_key(&a, "bare", 3)
    };
    for k in [&token_key, &pair_key, &bare] {
        store.create_key(k).await.unwrap();
        assert_eq!(store.get_key(k.id).await.unwrap().as_ref(), Some(k));
    }
    let mut all = store.load_keys().await.unwrap();
    all.sort_by_key(|k| k.name.clone());
    assert_eq!(all, vec![bare.clone(), pair_key.clone(), token_key.clone()]);
    assert_eq!(store.get_key(Uuid::new_v4()).await.unwrap(), None);

    // Streamed one at a time, the same keys.
    let mut streamed = Vec::new();
    store.for_each_key(&mut |k| streamed.push(k)).await.unwrap();
    streamed.sort_by_key(|k| k.name.clone());
    assert_eq!(streamed, all);

    // By partner, oldest first; another partner's keys are not listed.
    let other_partner = partner("other123");
    let other = account(other_partner.id, "default");
    store.create_partner(&other_partner, &other).await.unwrap();
    store
        .create_key(&fresh_key(&other, "theirs", 4))
        .await
        .unwrap();
    let mut oldest_first = vec![token_key, pair_key];
    oldest_first.sort_by_key(|k| (k.created_at, k.id));
    oldest_first.push(bare);
    assert_eq!(
        store
            .keys_of_partner(a.partner_id, Page::ALL, None)
            .await
            .unwrap(),
        oldest_first
    );
    // Page by page, two at a time, the same keys in the same order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = Page { after, limit: 2 };
        let got = store
            .keys_of_partner(a.partner_id, page, None)
            .await
            .unwrap();
        after = got.last().map(|k| (k.created_at, k.id));
        let done = got.len() < 2;
        paged.extend(got);
        if done {
            break;
        }
    }
    assert_eq!(paged, oldest_first);
}

async fn duplicate_key_name_or_credential_is_a_conflict(store: &TestStore) {
    let (p, a) = tenant(store).await;
    store.create_key(&fresh_key(&a, "ci", 1)).await.unwrap();
    let err = store.create_key(&fresh_key(&a, "ci", 2)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("name")), "{err:?}");
    let err = store
        .create_key(&fresh_key(&a, "other", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("credential")), "{err:?}");

    let access_key = Uuid::new_v4();
    let pair = |name: &str, byte| Key {
        credential: Credential::Pair {
            access_key,
            digest: [byte; 32],
        },
        ..fresh_key(&a, name, 0)
    };
    store.create_key(&pair("p1", 5)).await.unwrap();
    let err = store.create_key(&pair("p2", 6)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("credential")), "{err:?}");

    // The same name in another account is fine.
    let b = account(p.id, "second");
    store.create_account(&b).await.unwrap();
    store.create_key(&fresh_key(&b, "ci", 4)).await.unwrap();
}

async fn update_key_disable_enable_revoke(store: &TestStore) {
    let (_, a) = tenant(store).await;
    let k = fresh_key(&a, "ci", 1);
    store.create_key(&k).await.unwrap();

    let set = |disabled: bool, at: i64, by: &str| KeyChange::SetDisabled {
        disabled,
        at,
        by: by.into(),
    };
    let off = store.update_key(k.id, &set(true, 7, "partner:a")).await;
    let off = off.unwrap().unwrap();
    assert!(off.disabled);
    assert_eq!(
        (off.status_changed_at, off.status_changed_by.as_deref()),
        (Some(7), Some("partner:a"))
    );
    // Disabling a disabled key changes nothing: the first disable's time and author stay.
    let again = store.update_key(k.id, &set(true, 8, "partner:b")).await;
    assert_eq!(again.unwrap().unwrap(), off);
    let on = store.update_key(k.id, &set(false, 9, "partner:b")).await;
    let on = on.unwrap().unwrap();
    assert!(!on.disabled);
    assert_eq!(
        (on.status_changed_at, on.status_changed_by.as_deref()),
        (Some(9), Some("partner:b"))
    );

    let first = KeyChange::Revoke {
        at: 100,
        by: "alice".into(),
    };
    let revoked = store.update_key(k.id, &first).await.unwrap().unwrap();
    assert_eq!(
        (revoked.revoked_at, revoked.revoked_by.as_deref()),
        (Some(100), Some("alice"))
    );
    let second = KeyChange::Revoke {
        at: 200,
        by: "bob".into(),
    };
    let again = store.update_key(k.id, &second).await.unwrap().unwrap();
    assert_eq!(
        (again.revoked_at, again.revoked_by.as_deref()),
        (Some(100), Some("alice"))
    );
    // Disabling a revoked key still records the flag; it stays revoked.
    let off = store
        .update_key(
            k.id,
            &KeyChange::SetDisabled {
                disabled: true,
                at: 7,
                by: "partner:test".into(),
            },
        )
        .await;
    let off = off.unwrap().unwrap();
    assert!(off.disabled);
    assert_eq!(off.revoked_at, Some(100));
    assert_eq!(store.get_key(k.id).await.unwrap(), Some(off));

    let change = set(true, 7, "partner:a");
    let unknown = store.update_key(Uuid::new_v4(), &change);
    assert_eq!(unknown.await.unwrap(), None);
}

async fn touch_keys_keeps_the_latest_time(store: &TestStore) {
    let (_, a) = tenant(store).await;
    let (k1, k2) = (fresh_key(&a, "one", 1), fresh_key(&a, "two", 2));
    store.create_key(&k1).await.unwrap();
    store.create_key(&k2).await.unwrap();

    store
        .touch_keys(&[(k1.id, 500), (k2.id, 300)])
        .await
        .unwrap();
    // Older times never move it back; unknown keys are ignored; empty is a no-op.
    store
        .touch_keys(&[(k1.id, 400), (k2.id, 900), (Uuid::new_v4(), 1)])
        .await
        .unwrap();
    store.touch_keys(&[]).await.unwrap();
    // A key listed twice in one batch keeps the later time.
    store
        .touch_keys(&[(k1.id, 700), (k1.id, 600)])
        .await
        .unwrap();
    let last = |id| async move { store.get_key(id).await.unwrap().unwrap().last_used_at };
    assert_eq!(last(k1.id).await, Some(700));
    assert_eq!(last(k2.id).await, Some(900));
}

/// `(id, name, price_micros, pinned_bytes_limit, ipns_limit)` as stored.
type PlanRow = (i64, String, i64, Option<i64>, Option<i64>);

fn plan(id: i64, name: &str, price: u64) -> Plan {
    Plan {
        id,
        name: name.into(),
        price_micros: price,
        pinned_count_limit: NonZeroU64::new(1000),
        pinned_bytes_limit: NonZeroU64::new(u64::MAX),
        ingress_limit: None,
        egress_limit: NonZeroU64::new(5 << 30),
        ipns_limit: NonZeroU32::new(10),
    }
}

async fn sync_plans_upserts_by_id_and_accounts_may_reference_them(store: &TestStore) {
    store
        .sync_plans(&[plan(1, "free", 0), plan(2, "pro", 9_000_000)])
        .await
        .unwrap();
    let renamed = Plan {
        ipns_limit: None,
        ..plan(2, "pro+", 12_000_000)
    };
    store.sync_plans(&[renamed]).await.unwrap();
    let rows: Vec<PlanRow> = store.fetch_plans().await;
    assert_eq!(
        rows,
        vec![
            (1, "free".into(), 0, Some(i64::MAX), Some(10)),
            (2, "pro+".into(), 12_000_000, Some(i64::MAX), None),
        ]
    );

    let (p, _) = tenant(store).await;
    let on_plan = Account {
        plan_id: Some(2),
        ..account(p.id, "paying")
    };
    store.create_account(&on_plan).await.unwrap();
    let no_plan = Account {
        plan_id: Some(99),
        ..account(p.id, "ghost")
    };
    assert!(matches!(
        store.create_account(&no_plan).await,
        Err(StoreError::Query(_))
    ));
}

async fn init_setting_keeps_the_first_value(store: &TestStore) {
    assert_eq!(store.get_setting("secret").await.unwrap(), None);
    assert_eq!(store.init_setting("secret", "one").await.unwrap(), "one");
    assert_eq!(store.init_setting("secret", "two").await.unwrap(), "one");
    assert_eq!(
        store.get_setting("secret").await.unwrap().as_deref(),
        Some("one")
    );
}

async fn foreign_keys_are_enforced(store: &TestStore) {
    let (p, a) = tenant(store).await;
    let orphan = fresh_key(&account(p.id, "missing"), "ci", 1);
    assert!(matches!(
        store.create_key(&orphan).await,
        Err(StoreError::Query(_))
    ));
    // A key's partner must be its account's partner.
    let q = partner("q");
    store.create_partner(&q, &account(q.id, "d")).await.unwrap();
    let crossed = Key {
        partner_id: q.id,
        ..fresh_key(&a, "ci", 2)
    };
    assert!(store.create_key(&crossed).await.is_err());
    let no_partner = account(Uuid::new_v4(), "x");
    assert!(store.create_account(&no_partner).await.is_err());
    assert!(store.load_keys().await.unwrap().is_empty());
}

async fn corrupt_rows_name_the_key_and_field(store: &TestStore) {
    let (_, a) = tenant(store).await;
    let cases = [
        ("ip_whitelist", "ip_whitelist = 'not json'"),
        ("ip_whitelist", "ip_whitelist = '[\"example.com\"]'"),
        ("expiration_date", "expiration_date = '2027-02-30'"),
        ("digest", ""),
    ];
    for (i, (field, set)) in cases.into_iter().enumerate() {
        let k = fresh_key(&a, &format!("k{i}"), i as u8 + 1);
        store.create_key(&k).await.unwrap();
        let id = k.id.to_string();
        if set.is_empty() {
            store.set_digest(&id, &[1, 2]).await;
        } else {
            let sql = format!("UPDATE keys SET {set} WHERE id = $1");
            store.exec(&sql, &[&id]).await;
        }
        let err = store.get_key(k.id).await.unwrap_err();
        let StoreError::Corrupt(msg) = &err else {
            panic!("{err:?}");
        };
        assert!(msg.contains(&id) && msg.contains(field), "{msg}");
        assert!(matches!(
            store.load_keys().await,
            Err(StoreError::Corrupt(_))
        ));
        store.exec("DELETE FROM keys WHERE id = $1", &[&id]).await;
    }
}

async fn usage_batches_apply_once_and_charge_the_balance(store: &TestStore) {
    use crate::meter::usage::{Metric, Scope};
    use crate::meter::window::Window;
    use crate::meter::{Batch, Delta};

    let p = partner("abcdefgh");
    store
        .create_partner(&p, &account(p.id, "default"))
        .await
        .unwrap();
    let start = p.balance_micros;
    assert_eq!(
        store.add_partner_balance(p.id, 1_000, 60).await.unwrap(),
        Some(start + 1_000)
    );
    let delta = |window: Window, label: &str, amount| Delta {
        scope: Scope::Partner,
        id: p.id,
        metric: Metric::Cost,
        window,
        label: label.into(),
        day: "2026-11-23".into(),
        amount,
    };
    let batch = Batch {
        deltas: vec![
            delta(Window::Day, "2026-11-23", 70),
            delta(Window::Lifetime, "lifetime", 70),
        ],
        charges: vec![(p.id, 70)],
    };
    assert!(
        store
            .apply_usage("t1", &batch, 100, 0)
            .await
            .unwrap()
            .applied
    );
    // A retry of the same batch (its acknowledgement was lost) changes nothing.
    assert!(
        !store
            .apply_usage("t1", &batch, 101, 0)
            .await
            .unwrap()
            .applied
    );
    assert!(
        store
            .apply_usage("t2", &batch, 102, 0)
            .await
            .unwrap()
            .applied
    );
    let rows = store
        .load_counters(&["2026-11-23".into(), "lifetime".into()])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.value == 140), "{rows:?}");
    let balance = store
        .get_partner(p.id)
        .await
        .unwrap()
        .unwrap()
        .balance_micros;
    assert_eq!(balance, start + 1_000 - 140);
    // The ledger: the opening balance, the top-up, and one usage entry for the day that both
    // batches grew (the replay added nothing); it sums to the balance.
    let ledger = store.ledger_page(p.id, Page::ALL).await.unwrap();
    let usage: Vec<_> = ledger
        .iter()
        .filter(|e| e.kind == LedgerKind::Usage)
        .collect();
    assert_eq!(usage.len(), 1, "{ledger:?}");
    assert_eq!((usage[0].amount_micros, usage[0].at), (-140, 100));
    assert_eq!(usage[0].day.as_deref(), Some("1970-01-01"));
    assert_eq!(ledger.iter().map(|e| e.amount_micros).sum::<i64>(), balance);
    let daily = store
        .usage_daily("partner", p.id, "2026-11-23", "2026-11-23")
        .await
        .unwrap();
    assert_eq!(
        daily,
        vec![("2026-11-23".into(), "cost_micros".into(), 140)],
        "lifetime totals are not double-counted in daily sums"
    );
    assert_eq!(
        store
            .add_partner_balance(Uuid::new_v4(), 5, 60)
            .await
            .unwrap(),
        None
    );
}

async fn pins_and_ipns_names_round_trip(store: &TestStore) {
    let (_, a) = tenant(store).await;
    let pin = |cid: &str, size| PinRow {
        account_id: a.id,
        cid: cid.into(),
        size,
        recursive: true,
    };
    store.put_pin(&pin("c1", 10), None, 1).await.unwrap();
    store.put_pin(&pin("c2", 20), None, 1).await.unwrap();
    // Pinning a held CID again updates it instead of adding a row.
    store.put_pin(&pin("c1", 15), None, 2).await.unwrap();
    // Replacing moves the pin in one transaction.
    store.put_pin(&pin("c3", 30), Some("c2"), 3).await.unwrap();
    let mut pins = store.load_pins().await.unwrap();
    pins.sort_by(|x, y| x.cid.cmp(&y.cid));
    assert_eq!(pins, vec![pin("c1", 15), pin("c3", 30)]);
    assert!(store.remove_pin(a.id, "c1").await.unwrap());
    assert!(!store.remove_pin(a.id, "c1").await.unwrap());
    store.put_ipns(a.id, "blog", 1).await.unwrap();
    store.put_ipns(a.id, "blog", 2).await.unwrap();
    let names = store.load_ipns().await.unwrap();
    assert_eq!(
        names,
        vec![IpnsRow {
            account_id: a.id,
            name: "blog".into()
        }]
    );
    assert!(store.remove_ipns(a.id, "blog").await.unwrap());
    assert!(store.load_ipns().await.unwrap().is_empty());
    // A pin of an account that does not exist is refused (foreign key).
    let mut stranger = pin("c9", 1);
    stranger.account_id = Uuid::new_v4();
    assert!(store.put_pin(&stranger, None, 1).await.is_err());
}

async fn llm_usage_adds_up_once_per_token(store: &TestStore) {
    let key = Uuid::new_v4();
    let row = |model: &str, n: u64| crate::meter::llm_usage::LlmRow {
        key_id: key,
        model: model.into(),
        requests: n,
        input_tokens: 10 * n,
        cached_input_tokens: n,
        output_tokens: 5 * n,
        cost_micros: 100 * n,
    };
    let rows = vec![row("a", 1), row("b", 2)];
    assert!(
        store
            .apply_llm_usage("t1", "2026-11-29", &rows, 1)
            .await
            .unwrap()
    );
    // A retried batch (same token) is not counted twice.
    assert!(
        !store
            .apply_llm_usage("t1", "2026-11-29", &rows, 1)
            .await
            .unwrap()
    );
    assert!(
        store
            .apply_llm_usage("t2", "2026-11-30", &[row("a", 3)], 2)
            .await
            .unwrap()
    );
    let sums = store.llm_usage_of_key(key).await.unwrap();
    assert_eq!(sums, vec![row("a", 4), row("b", 2)]);
    assert!(
        store
            .llm_usage_of_key(Uuid::new_v4())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn accounts_are_found_by_partner_and_external_id_only(store: &TestStore) {
    plans(store).await;
    let (p, q) = (funded(store, 0).await, funded(store, 0).await);
    let a = account(p.id, "user-1");
    store.create_account(&a).await.unwrap();
    let found = store.account_by_external_id(p.id, "user-1").await.unwrap();
    assert_eq!(found.as_ref(), Some(&a));
    assert_eq!(store.get_account(a.id).await.unwrap(), Some(a));
    // Another partner's id space, and the default account, are invisible.
    assert_eq!(
        store.account_by_external_id(q.id, "user-1").await.unwrap(),
        None
    );
    assert_eq!(
        store.account_by_external_id(p.id, "default").await.unwrap(),
        None
    );
    assert_eq!(store.get_account(Uuid::new_v4()).await.unwrap(), None);
}

async fn balance(store: &TestStore, partner: Uuid) -> i64 {
    let p = store.get_partner(partner).await.unwrap().unwrap();
    p.balance_micros
}

async fn a_plan_change_and_its_charge_are_one_transaction(store: &TestStore) {
    plans(store).await;
    let p = funded(store, 5_000_000).await;
    let a = on_free_plan(p.id, "u");
    store.create_account(&a).await.unwrap();

    let fresh = (Some(1), None, 0);
    let mv = |plan_id: i64, charge_micros: u64, at: i64| PlanMove {
        expected: fresh.clone(),
        plan_id,
        charge_micros,
        period: "2026-11".into(),
        peak_micros: charge_micros,
        at: p.created_at + at,
        note: format!("to {plan_id}"),
    };
    let refused = store
        .set_account_plan(a.id, &mv(2, 5_000_001, 1))
        .await
        .unwrap();
    assert_eq!(refused, PlanChange::InsufficientBalance(5_000_000));
    assert_eq!(
        store.get_account(a.id).await.unwrap().unwrap().plan_id,
        Some(1)
    );
    assert_eq!(balance(store, p.id).await, 5_000_000);
    assert_eq!(store.plan_period(a.id).await.unwrap(), Some((None, 0)));

    let done = store
        .set_account_plan(a.id, &mv(2, 5_000_000, 2))
        .await
        .unwrap();
    let PlanChange::Changed(changed) = done else {
        panic!("{done:?}")
    };
    assert_eq!(changed.plan_id, Some(2));
    assert_eq!(store.get_account(a.id).await.unwrap(), Some(changed));
    assert_eq!(balance(store, p.id).await, 0);
    let period = Some((Some("2026-11".to_string()), 5_000_000));
    assert_eq!(store.plan_period(a.id).await.unwrap(), period);

    // A move computed from a state that changed since (another instance moved the account)
    // is refused as raced, and charges nothing.
    let stale = store.set_account_plan(a.id, &mv(1, 0, 3)).await.unwrap();
    assert_eq!(stale, PlanChange::Raced);
    assert_eq!(
        store.get_account(a.id).await.unwrap().unwrap().plan_id,
        Some(2)
    );

    // A free change needs no balance.
    let now = (Some(2), Some("2026-11".to_string()), 5_000_000);
    let back = PlanMove {
        expected: now,
        ..mv(1, 0, 3)
    };
    let done = store.set_account_plan(a.id, &back).await.unwrap();
    assert!(matches!(done, PlanChange::Changed(ref a) if a.plan_id == Some(1)));
    // The ledger: the opening balance, then both changes (the refused one left nothing), and
    // it sums to the balance.
    let ledger = store.ledger_page(p.id, Page::ALL).await.unwrap();
    let kinds: Vec<_> = ledger
        .iter()
        .map(|e| (e.kind, e.amount_micros, e.plan_id))
        .collect();
    assert_eq!(
        kinds,
        [
            (LedgerKind::Opening, 5_000_000, None),
            (LedgerKind::PlanChange, -5_000_000, Some(2)),
            (LedgerKind::PlanChange, 0, Some(1)),
        ]
    );
    assert_eq!(
        ledger.iter().map(|e| e.amount_micros).sum::<i64>(),
        balance(store, p.id).await
    );
    assert_eq!(ledger[1].account_id, Some(a.id));
    let charges = store
        .plan_charges_since(p.id, p.created_at + 3)
        .await
        .unwrap();
    assert_eq!(charges, [(p.created_at + 3, 0)]);
    let none = store
        .set_account_plan(Uuid::new_v4(), &mv(1, 0, 4))
        .await
        .unwrap();
    assert_eq!(none, PlanChange::NoAccount);
}

async fn names_are_unique_among_live_keys_only(store: &TestStore) {
    plans(store).await;
    let p = funded(store, 0).await;
    let a = on_free_plan(p.id, "u");
    store.create_account(&a).await.unwrap();
    let first = fresh_key(&a, "ci", 1);
    store.create_key(&first).await.unwrap();
    let err = store.create_key(&fresh_key(&a, "ci", 2)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("name")), "{err:?}");
    let other = fresh_key(&a, "other", 3);
    store.create_key(&other).await.unwrap();
    let revoke = KeyChange::Revoke {
        at: 50,
        by: "t".into(),
    };
    store.update_key(first.id, &revoke).await.unwrap();
    let again = fresh_key(&a, "ci", 4);
    store.create_key(&again).await.unwrap();
    let live = store.live_keys_of_account(a.id, Page::ALL).await.unwrap();
    assert_eq!(live, vec![other, again]);
    assert!(store.get_key(first.id).await.unwrap().is_some(), "kept");
}

/// An account on plan 1.
fn on_free_plan(partner_id: Uuid, external_id: &str) -> Account {
    Account {
        plan_id: Some(1),
        ..account(partner_id, external_id)
    }
}

/// Walks `fetch` two at a time, from the start, by the position of the last item.
async fn walk<T, F, Fut>(mut fetch: F, position: impl Fn(&T) -> (i64, Uuid)) -> Vec<T>
where
    F: FnMut(Page) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, StoreError>>,
{
    let (mut all, mut after) = (Vec::new(), None);
    loop {
        let got = fetch(Page { after, limit: 2 }).await.unwrap();
        after = got.last().map(&position);
        let done = got.len() < 2;
        all.extend(got);
        if done {
            return all;
        }
    }
}

/// Accounts, ledger entries and partners made in the same second list, and page, in the order
/// they were made (their ids are time-ordered UUIDv7s), on both back-ends.
async fn paged_lists_walk_in_creation_order(store: &TestStore) {
    plans(store).await;
    let p = funded(store, 0).await;
    let mut made = Vec::new();
    for i in 0..5 {
        let a = Account {
            id: Uuid::now_v7(),
            ..on_free_plan(p.id, &format!("user-{i}"))
        };
        store.create_account(&a).await.unwrap();
        made.push(a);
    }
    let accounts = walk(
        |page| store.accounts_page(p.id, page),
        |a| (a.created_at, a.id),
    )
    .await;
    assert_eq!(accounts, made, "the default account is left out");
    for amount in 1..=5 {
        store.add_partner_balance(p.id, amount, 70).await.unwrap();
    }
    let ledger = walk(|page| store.ledger_page(p.id, page), |e| (e.at, e.id)).await;
    let amounts: Vec<i64> = ledger.iter().map(|e| e.amount_micros).collect();
    assert_eq!(amounts, [1, 2, 3, 4, 5]);
    let partners = walk(|page| store.partners_page(page), |p| (p.created_at, p.id)).await;
    assert_eq!(partners, store.partners_page(Page::ALL).await.unwrap());
    assert!(partners.iter().any(|q| q.id == p.id));
}

/// The partner key list's search: name, label or description containing the text (ASCII case
/// ignored; `%`, `_` and `\` taken literally), or the exact id.
async fn key_search_matches_name_label_description_or_id(store: &TestStore) {
    let (_, a) = tenant(store).await;
    let made = [
        ("alpha", "CI", "used by the build"),
        ("beta_1", "Production", "all traffic"),
        ("gamma", "staging", "100% of tests"),
        ("betax1", "other", "none"),
    ];
    let mut ids = Vec::new();
    for (i, (name, label, description)) in made.into_iter().enumerate() {
        let key = Key {
            label: Some(label.into()),
            description: Some(description.into()),
            ..fresh_key(&a, name, 10 + i as u8)
        };
        store.create_key(&key).await.unwrap();
        ids.push(key.id);
    }
    let found = |q: &'static str| async move {
        let keys = store
            .keys_of_partner(a.partner_id, Page::ALL, Some(q))
            .await
            .unwrap();
        keys.into_iter().map(|k| k.name).collect::<Vec<_>>()
    };
    assert_eq!(found("ALPHA").await, ["alpha"]);
    assert_eq!(found("beta_").await, ["beta_1"], "`_` is not a wildcard");
    assert_eq!(found("production").await, ["beta_1"]);
    assert_eq!(found("100%").await, ["gamma"], "`%` is not a wildcard");
    assert_eq!(found("%").await, ["gamma"]);
    assert!(found("nothing like it").await.is_empty());
    let by_id = ids[3].to_string();
    let keys = store
        .keys_of_partner(a.partner_id, Page::ALL, Some(&by_id))
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, ids[3]);
}
