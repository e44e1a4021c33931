//! Holds: what a request has reserved on a counter. A hold records usage against its
//! reservation and gives back whatever is left when it is dropped, so no path (completion,
//! client abort, upstream reset, timeout, panic) can leak a reservation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::cell::Slot;

/// The holds of one request on one kind of counter (at most four: key day and total, account
/// day and total; or key, account and partner), kept inline so admission never allocates.
pub type Holds = smallvec::SmallVec<[Hold; 4]>;

/// A reservation (possibly of zero) on one slot.
#[derive(Debug)]
pub struct Hold {
    slot: Arc<Slot>,
    left: u64,
}

impl Hold {
    /// Reserves `amount` on `slot` under `limit`; `None` if it does not fit.
    pub fn reserve(slot: Arc<Slot>, amount: u64, limit: Option<u64>) -> Option<Hold> {
        // Build the hold only once the reservation is made: a hold dropped without one would
        // release what was never reserved.
        if slot.try_reserve(amount, limit) {
            Some(Hold { slot, left: amount })
        } else {
            None
        }
    }

    /// A hold without a reservation, for usage only known as it happens.
    pub fn open(slot: Arc<Slot>) -> Hold {
        Hold { slot, left: 0 }
    }

    /// Records `amount` of usage, drawing on the reservation first.
    pub fn record(&mut self, amount: u64) {
        let from_reservation = amount.min(self.left);
        self.left -= from_reservation;
        self.slot.record(amount, from_reservation);
    }

    /// The slot this hold is on.
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.slot.release(self.left);
    }
}

/// Requests in flight for one key.
#[derive(Debug, Default)]
pub struct InFlight(AtomicU32);

impl InFlight {
    /// Takes a slot if fewer than `limit` are taken.
    pub fn try_acquire(self: &Arc<Self>, limit: u32) -> Option<InFlightGuard> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlightGuard(self.clone()))
    }

    /// Slots taken now.
    pub fn current(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

/// A taken concurrency slot, given back on drop.
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let _ = self
            .0
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_a_hold_returns_what_is_left() {
        let slot = Arc::new(Slot::new(0, i64::MAX, "t".into(), 0));
        let mut hold = Hold::reserve(slot.clone(), 100, Some(100)).unwrap();
        assert!(Hold::reserve(slot.clone(), 1, Some(100)).is_none());
        hold.record(30);
        drop(hold);
        assert_eq!((slot.committed(), slot.used()), (30, 30));
        let mut open = Hold::open(slot.clone());
        open.record(5);
        drop(open);
        assert_eq!((slot.committed(), slot.used()), (35, 35));
    }

    #[test]
    fn concurrency_slots_come_back_on_drop() {
        let f = Arc::new(InFlight::default());
        let a = f.try_acquire(2).unwrap();
        let b = f.try_acquire(2).unwrap();
        assert!(f.try_acquire(2).is_none());
        drop(a);
        let c = f.try_acquire(2).unwrap();
        drop((b, c));
        assert_eq!(f.current(), 0);
    }
}
