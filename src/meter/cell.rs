//! One quota counter for one window: `committed` (used + reserved) decides admission, `used`
//! is what happened and what gets flushed. Every update is a lock-free atomic; nothing wraps
//! or goes negative (saturating arithmetic).

use std::sync::atomic::{AtomicU64, Ordering};

/// A counter for one window (e.g. key X's cost on 2026-11-23).
#[derive(Debug)]
pub struct Slot {
    /// Unix second the window started.
    pub start: i64,
    /// Unix second the window ends (`i64::MAX` for a lifetime window).
    pub end: i64,
    /// Stored window name (`2026-11-23`, `2026-11`, `lifetime`).
    pub label: String,
    committed: AtomicU64,
    used: AtomicU64,
    flushed: AtomicU64,
    /// What other instances have used in this window, as of the last sync (0 alone).
    others: AtomicU64,
    /// The most this instance may commit under a limit, in lease mode (what it has synced
    /// plus the budget lease it holds); `u64::MAX` = no cap.
    cap: AtomicU64,
}

fn sat_add(v: u64, n: u64) -> u64 {
    v.saturating_add(n)
}

impl Slot {
    /// A slot for `[start, end)` whose window already holds `used` (loaded from the store, so
    /// already flushed).
    pub fn new(start: i64, end: i64, label: String, used: u64) -> Self {
        Slot {
            start,
            end,
            label,
            committed: AtomicU64::new(used),
            used: AtomicU64::new(used),
            flushed: AtomicU64::new(used),
            others: AtomicU64::new(0),
            cap: AtomicU64::new(u64::MAX),
        }
    }

    /// Used plus reserved.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Used (settled) amount.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Usage of every instance: this one's plus the others' as of the last sync.
    pub fn total_used(&self) -> u64 {
        self.used()
            .saturating_add(self.others.load(Ordering::Acquire))
    }

    /// Usage already written to the store by this instance.
    pub fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// Records the window's total in the store (every instance's synced usage): the others'
    /// share is what this instance has not written itself.
    pub fn set_store_total(&self, total: u64) {
        self.others
            .store(total.saturating_sub(self.flushed()), Ordering::Release);
    }

    /// Lease mode: the most this instance may commit under a limit (`u64::MAX` = no cap).
    pub fn cap(&self) -> u64 {
        self.cap.load(Ordering::SeqCst)
    }

    /// Lease mode: sets the cap (what this instance has synced plus the lease it holds).
    pub fn set_cap(&self, cap: u64) {
        self.cap.store(cap, Ordering::SeqCst);
    }

    /// Lease mode: lowers the cap to what is synced, unless something is unsynced or reserved
    /// (then the cap is left as it was). `true` if the whole lease can be given back.
    ///
    /// Exact against concurrent reservations: the cap is stored before `committed` is read,
    /// and a reservation re-reads the cap after its own compare-and-swap (both sequentially
    /// consistent), so either this sees the reservation or the reservation sees the new cap
    /// and rolls itself back.
    pub fn try_drop_lease(&self) -> bool {
        let before = self.cap.load(Ordering::SeqCst);
        let synced = self.flushed();
        self.cap.store(synced, Ordering::SeqCst);
        if self.committed.load(Ordering::SeqCst) > synced {
            self.cap.store(before, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Reserves `amount` if `committed + others + amount <= limit` (always, without a limit)
    /// and, for a limited slot, `committed + amount <= cap` (the lease). One compare-and-swap
    /// loop: concurrent callers can never jointly pass the limit or the cap.
    pub fn try_reserve(&self, amount: u64, limit: Option<u64>) -> bool {
        let Some(limit) = limit else {
            return self
                .committed
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                    c.checked_add(amount)
                })
                .is_ok();
        };
        let others = self.others.load(Ordering::Acquire);
        let cap = self.cap.load(Ordering::SeqCst);
        let reserved = self
            .committed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                let next = c.checked_add(amount)?;
                (next <= cap && next.saturating_add(others) <= limit).then_some(next)
            });
        match reserved {
            Ok(c) if c + amount > self.cap.load(Ordering::SeqCst) => {
                // The lease was given back meanwhile (`try_drop_lease`).
                self.release(amount);
                false
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }

    /// Whether `amount` more would fit under `limit` but not under the cap: a bigger lease
    /// would let it in.
    pub fn short_of_lease(&self, amount: u64, limit: u64) -> bool {
        self.committed().saturating_add(amount) > self.cap() && self.within_limit(amount, limit)
    }

    /// Whether `amount` more would fit under `limit` (whatever the cap).
    pub fn within_limit(&self, amount: u64, limit: u64) -> bool {
        let next = self.committed().saturating_add(amount);
        next.saturating_add(self.others.load(Ordering::Acquire)) <= limit
    }

    /// How much more than the cap `amount` would commit (0 if it fits).
    pub fn lease_shortfall(&self, amount: u64) -> u64 {
        self.committed()
            .saturating_add(amount)
            .saturating_sub(self.cap())
    }

    /// Whether anything is left under `limit` (for amounts not known up front).
    pub fn has_room(&self, limit: Option<u64>) -> bool {
        let committed = self.committed();
        limit.is_none_or(|limit| {
            committed < self.cap()
                && committed.saturating_add(self.others.load(Ordering::Acquire)) < limit
        })
    }

    /// Gives back `amount` of a reservation that was not used.
    pub fn release(&self, amount: u64) {
        if amount > 0 {
            let _ = self
                .committed
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                    Some(c.saturating_sub(amount))
                });
        }
    }

    /// Records `amount` of usage, of which `from_reservation` was already reserved.
    pub fn record(&self, amount: u64, from_reservation: u64) {
        let extra = amount.saturating_sub(from_reservation);
        if extra > 0 {
            let _ = self
                .committed
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                    Some(sat_add(c, extra))
                });
        }
        if amount > 0 {
            let _ = self
                .used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                    Some(sat_add(u, amount))
                });
        }
    }

    /// Usage not yet written to the store; marks it as written (a batch whose write fails is
    /// kept whole and retried, so nothing taken here is lost).
    pub fn take_unflushed(&self) -> u64 {
        let used = self.used();
        let before = self.flushed.swap(used, Ordering::AcqRel);
        used.saturating_sub(before)
    }

    /// Puts back `amount` whose flush failed, so the next flush retries it.
    pub fn unflush(&self, amount: u64) {
        let _ = self
            .flushed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| {
                Some(f.saturating_sub(amount))
            });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn slot() -> Slot {
        Slot::new(0, i64::MAX, "t".into(), 0)
    }

    #[test]
    fn reserve_respects_the_limit_exactly() {
        let s = slot();
        assert!(s.try_reserve(60, Some(100)));
        assert!(s.try_reserve(40, Some(100)));
        assert!(!s.try_reserve(1, Some(100)));
        s.release(40);
        assert!(s.try_reserve(40, Some(100)));
        assert!(
            !s.try_reserve(u64::MAX, None),
            "overflow is refused, never wraps"
        );
        assert_eq!(s.committed(), 100);
    }

    #[test]
    fn record_and_release_are_saturating() {
        let s = slot();
        s.release(5);
        assert_eq!(s.committed(), 0, "never negative");
        s.record(u64::MAX, 0);
        s.record(10, 0);
        assert_eq!(s.used(), u64::MAX, "never wraps");
        assert_eq!(s.committed(), u64::MAX);
    }

    #[test]
    fn record_uses_the_reservation_first() {
        let s = slot();
        assert!(s.try_reserve(100, Some(1000)));
        s.record(30, 100); // within the reservation: committed unchanged
        assert_eq!((s.committed(), s.used()), (100, 30));
        s.release(70); // the rest of the reservation
        assert_eq!((s.committed(), s.used()), (30, 30));
        s.record(50, 0); // unreserved usage (streamed bytes)
        assert_eq!((s.committed(), s.used()), (80, 80));
    }

    #[test]
    fn flush_deltas() {
        let s = Slot::new(0, i64::MAX, "t".into(), 500);
        assert_eq!(s.take_unflushed(), 0, "loaded usage is already stored");
        s.record(7, 0);
        assert_eq!(s.take_unflushed(), 7);
        assert_eq!(s.take_unflushed(), 0);
        assert!(s.try_reserve(50, None));
        assert_eq!(s.take_unflushed(), 0, "reservations are not usage");
        s.record(3, 50);
        assert_eq!(s.take_unflushed(), 3);
    }

    #[test]
    fn other_instances_usage_counts_against_the_limit() {
        let s = Slot::new(0, i64::MAX, "t".into(), 100);
        s.record(20, 0);
        assert_eq!(s.take_unflushed(), 20);
        // The store now holds 400: 120 written by this instance, 280 by the others.
        s.set_store_total(400);
        assert_eq!(s.total_used(), 400);
        assert!(s.try_reserve(100, Some(500)));
        assert!(!s.try_reserve(1, Some(500)), "120 + 100 + 280 others = 500");
        assert!(!s.has_room(Some(500)));
        s.record(30, 0); // not synced yet: counted locally at once
        assert_eq!(s.total_used(), 430);
    }

    #[test]
    fn a_leased_slot_never_commits_past_its_cap() {
        let s = slot();
        s.set_cap(50);
        assert!(s.try_reserve(50, Some(1_000)));
        assert!(
            !s.try_reserve(1, Some(1_000)),
            "the cap binds before the limit"
        );
        assert!(s.short_of_lease(1, 1_000));
        assert_eq!(s.lease_shortfall(30), 30);
        assert!(!s.short_of_lease(1_000, 1_000), "the limit itself refuses");
        assert!(!s.has_room(Some(1_000)));
        assert!(s.try_reserve(1, None), "an unlimited slot has no lease");
        s.release(1);
        s.record(50, 50);
        assert_eq!(s.take_unflushed(), 50);
        assert!(
            !s.try_reserve(1, Some(1_000)),
            "flushing does not raise the cap"
        );
        s.set_cap(80);
        assert!(s.try_reserve(30, Some(1_000)));
    }

    #[test]
    fn a_lease_is_given_back_only_when_nothing_rests_on_it() {
        let s = slot();
        s.set_cap(100);
        assert!(s.try_reserve(10, Some(1_000)));
        assert!(!s.try_drop_lease(), "a reservation rests on it");
        assert_eq!(s.cap(), 100, "the cap is left as it was");
        s.record(10, 10);
        assert!(!s.try_drop_lease(), "unsynced usage rests on it");
        s.take_unflushed();
        assert!(s.try_drop_lease());
        assert_eq!(s.cap(), 10);
        assert!(!s.try_reserve(1, Some(1_000)));
    }

    #[test]
    fn dropping_a_lease_under_concurrent_reservations_never_loses_one() {
        // Whatever the interleaving: either the drop fails (and the reservations stand) or
        // it succeeds and every reservation after it was refused or rolled back.
        for _ in 0..200 {
            let s = Arc::new(slot());
            s.set_cap(1_000);
            let reserver = {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..50).filter(|_| s.try_reserve(1, Some(1_000))).count()
                })
            };
            let dropped = s.try_drop_lease();
            let admitted = reserver.join().unwrap() as u64;
            assert_eq!(s.committed(), admitted);
            if dropped {
                assert_eq!(admitted, 0, "a reservation passed a dropped lease");
            }
        }
    }

    #[test]
    fn concurrent_reservations_never_pass_the_limit() {
        let s = Arc::new(slot());
        let admitted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (s, admitted) = (s.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if s.try_reserve(3, Some(10_000)) {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 10_000 / 3 = 3333 reservations fit, and exactly that many were admitted.
        assert_eq!(admitted.load(Ordering::Relaxed), 3333);
        assert_eq!(s.committed(), 9999);
    }
}
