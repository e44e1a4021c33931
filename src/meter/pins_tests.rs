use super::*;

const RECURSIVE: PinInfo = PinInfo {
    size: 100,
    recursive: true,
};

fn limits(count: u64, bytes: u64) -> PinLimits {
    PinLimits {
        count: Some(count),
        bytes: Some(bytes),
    }
}

#[test]
fn holders_count_accounts_sharing_a_cid() {
    let ledger = Arc::new(PinLedger::default());
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    for account in [a, b] {
        let r = ledger
            .reserve(account, "cid1", 100, None, PinLimits::default())
            .unwrap();
        r.commit("cid1", RECURSIVE, None);
    }
    assert_eq!(ledger.holders("cid1"), 2);
    assert_eq!(ledger.remove(a, "cid1"), Some(RECURSIVE));
    assert_eq!(ledger.holders("cid1"), 1);
    assert_eq!(ledger.remove(a, "cid1"), None, "a holds it no more");
    assert_eq!(ledger.usage(a), (0, 0));
    assert_eq!(ledger.usage(b), (1, 100));
    ledger.remove(b, "cid1");
    assert_eq!(ledger.holders("cid1"), 0);
}

#[test]
fn reservations_count_until_released() {
    let ledger = Arc::new(PinLedger::default());
    let a = Uuid::new_v4();
    let first = ledger.reserve(a, "c1", 60, None, limits(2, 100)).unwrap();
    // 60 reserved + 50 > 100.
    assert_eq!(
        ledger
            .reserve(a, "c2", 50, None, limits(2, 100))
            .unwrap_err(),
        PinRefusal::Bytes { limit: 100 }
    );
    let second = ledger.reserve(a, "c2", 40, None, limits(2, 100)).unwrap();
    assert_eq!(
        ledger
            .reserve(a, "c3", 0, None, limits(2, 100))
            .unwrap_err(),
        PinRefusal::Count { limit: 2 }
    );
    drop(second);
    first.commit(
        "c1",
        PinInfo {
            size: 55,
            recursive: true,
        },
        None,
    );
    assert_eq!(ledger.usage(a), (1, 55));
    // The dropped reservation gave its room back: 55 + 45 fits exactly.
    let third = ledger.reserve(a, "c3", 45, None, limits(2, 100)).unwrap();
    drop(third);
}

#[test]
fn pinning_a_held_cid_again_takes_no_new_count() {
    let ledger = Arc::new(PinLedger::default());
    let a = Uuid::new_v4();
    ledger
        .reserve(a, "c1", 100, None, limits(1, 100))
        .unwrap()
        .commit("c1", RECURSIVE, None);
    // Same CID: neither count nor bytes grow.
    let again = ledger.reserve(a, "c1", 100, None, limits(1, 100)).unwrap();
    again.commit("c1", RECURSIVE, None);
    assert_eq!(ledger.usage(a), (1, 100));
    assert_eq!(ledger.holders("c1"), 1);
}

#[test]
fn a_replaced_pin_frees_its_room() {
    let ledger = Arc::new(PinLedger::default());
    let a = Uuid::new_v4();
    ledger
        .reserve(a, "old", 100, None, limits(1, 150))
        .unwrap()
        .commit("old", RECURSIVE, None);
    assert!(ledger.reserve(a, "new", 120, None, limits(1, 150)).is_err());
    let r = ledger
        .reserve(a, "new", 120, Some("old"), limits(1, 150))
        .unwrap();
    let info = PinInfo {
        size: 120,
        recursive: true,
    };
    r.commit("new", info, Some("old"));
    assert_eq!(ledger.list(a), vec![("new".to_string(), info)]);
    assert_eq!((ledger.holders("old"), ledger.holders("new")), (0, 1));
}

#[test]
fn names_are_claimed_within_the_limit() {
    let ledger = PinLedger::default();
    let a = Uuid::new_v4();
    assert_eq!(ledger.claim_name(a, "blog", Some(2)), Ok(true));
    assert_eq!(ledger.claim_name(a, "blog", Some(2)), Ok(false));
    assert_eq!(ledger.claim_name(a, "site", Some(2)), Ok(true));
    assert_eq!(
        ledger.claim_name(a, "more", Some(2)),
        Err(PinRefusal::Names { limit: 2 })
    );
    assert!(ledger.release_name(a, "site"));
    assert_eq!(ledger.claim_name(a, "more", Some(2)), Ok(true));
    assert_eq!(ledger.names(a), vec!["blog", "more"]);
    assert!(!ledger.owns_name(Uuid::new_v4(), "blog"));
}

#[test]
fn loads_what_the_store_holds() {
    let a = Uuid::new_v4();
    let rows = vec![
        PinRow {
            account_id: a,
            cid: "c1".into(),
            size: 7,
            recursive: true,
        },
        PinRow {
            account_id: a,
            cid: "c2".into(),
            size: 5,
            recursive: false,
        },
    ];
    let names = vec![IpnsRow {
        account_id: a,
        name: "blog".into(),
    }];
    let ledger = PinLedger::load(rows, names);
    assert_eq!(ledger.usage(a), (2, 12));
    assert!(ledger.owns_name(a, "blog"));
    assert_eq!(ledger.get(a, "c2").map(|p| p.recursive), Some(false));
}
