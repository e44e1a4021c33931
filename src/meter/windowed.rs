//! A scope's counters, each starting a new slot when its window rolls over. Readers pay one
//! `ArcSwap` load for all of them; the rollover itself is a single compare-and-swap, and the
//! retired slots are handed to the meter so their last deltas still reach the store.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use uuid::Uuid;

use super::cell::Slot;
use super::usage::{Metric, Scope};
use super::window::Window;

/// Whose counter a cell is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    pub scope: Scope,
    pub id: Uuid,
    pub metric: Metric,
    pub window: Window,
    /// The calendar's offset from UTC in seconds (`[metering] utc_offset`).
    pub offset: i64,
    /// Lease mode: each new slot starts with no lease (cap = what it holds already).
    pub leased: bool,
}

/// Slots retired by a rollover, waiting for their final flush.
pub type Retired = Mutex<Vec<(Owner, Arc<Slot>)>>;

/// Which of a scope's counters: requests per day, bytes in and out per month, cost per day
/// and over the scope's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    Requests,
    BytesIn,
    BytesOut,
    CostDay,
    CostTotal,
}

impl Counter {
    /// Every counter, in the order of [`Slots`].
    pub const ALL: [Counter; 5] = [
        Counter::Requests,
        Counter::BytesIn,
        Counter::BytesOut,
        Counter::CostDay,
        Counter::CostTotal,
    ];

    /// What it counts, over which window.
    pub fn metric_window(self) -> (Metric, Window) {
        match self {
            Counter::Requests => (Metric::Requests, Window::Day),
            Counter::BytesIn => (Metric::BytesIn, Window::Month),
            Counter::BytesOut => (Metric::BytesOut, Window::Month),
            Counter::CostDay => (Metric::Cost, Window::Day),
            Counter::CostTotal => (Metric::Cost, Window::Lifetime),
        }
    }
}

/// The current slot of each of a scope's counters.
#[derive(Debug)]
pub struct Slots {
    slots: [Arc<Slot>; 5],
    /// The earliest end among them: until then none rolls over.
    end: i64,
}

impl Slots {
    fn new(slots: [Arc<Slot>; 5]) -> Self {
        let end = slots.iter().map(|s| s.end).min().unwrap_or(i64::MAX);
        Slots { slots, end }
    }

    /// The slot of `counter`.
    pub fn get(&self, counter: Counter) -> &Arc<Slot> {
        &self.slots[counter as usize]
    }
}

/// A scope's counters over their rolling windows, swapped as one: a request pays one
/// `ArcSwap` load for all five (admission touches every one of them). A rollover is a single
/// compare-and-swap that starts new slots for the windows that ended and keeps the others;
/// the retired slots are handed to the meter so their last deltas still reach the store.
#[derive(Debug)]
pub struct Windows {
    owners: [Owner; 5],
    slots: ArcSwap<Slots>,
}

impl Windows {
    /// Counters whose current windows (at `now`) already hold `used(owner)`.
    pub fn new(owners: [Owner; 5], now: i64, used: impl Fn(&Owner) -> u64) -> Self {
        let slots = owners.map(|owner| Arc::new(new_slot(owner, now, used(&owner))));
        Windows {
            owners,
            slots: ArcSwap::from_pointee(Slots::new(slots)),
        }
    }

    /// Whose counter `counter` is.
    pub fn owner(&self, counter: Counter) -> Owner {
        self.owners[counter as usize]
    }

    /// The slots of the windows containing `now`, rolling over those that ended.
    pub fn current(&self, now: i64, retired: &Retired) -> Arc<Slots> {
        let cur = self.slots.load_full();
        // Fast path, no date arithmetic: every window still runs, or a clock that went
        // backwards (keep counting in the newer windows).
        if now < cur.end {
            return cur;
        }
        let slots = std::array::from_fn(|i| match &cur.slots[i] {
            slot if now < slot.end => slot.clone(),
            _ => Arc::new(new_slot(self.owners[i], now, 0)),
        });
        let fresh = Arc::new(Slots::new(slots));
        let prev = self.slots.compare_and_swap(&cur, fresh.clone());
        if !Arc::ptr_eq(&prev, &cur) {
            return self.slots.load_full();
        }
        let mut retired = retired.lock().unwrap_or_else(|e| e.into_inner());
        for (i, old) in cur.slots.iter().enumerate() {
            if !Arc::ptr_eq(old, &fresh.slots[i]) {
                retired.push((self.owners[i], old.clone()));
            }
        }
        fresh
    }

    /// The current slots without rolling over (for flushing and reporting).
    pub fn peek(&self) -> Arc<Slots> {
        self.slots.load_full()
    }

    /// One counter, for callers that want one slot.
    pub fn cell(&self, counter: Counter) -> Cell<'_> {
        Cell {
            windows: self,
            counter,
        }
    }
}

/// One counter of a scope.
#[derive(Clone, Copy)]
pub struct Cell<'a> {
    windows: &'a Windows,
    counter: Counter,
}

impl Cell<'_> {
    /// Whose counter this is.
    pub fn owner(&self) -> Owner {
        self.windows.owner(self.counter)
    }

    /// The slot of the window containing `now`, rolling over if needed.
    pub fn current(&self, now: i64, retired: &Retired) -> Arc<Slot> {
        self.windows.current(now, retired).get(self.counter).clone()
    }

    /// The current slot without rolling over (for flushing and reporting).
    pub fn peek(&self) -> Arc<Slot> {
        self.windows.peek().get(self.counter).clone()
    }
}

fn new_slot(owner: Owner, now: i64, used: u64) -> Slot {
    let (window, offset) = (owner.window, owner.offset);
    let end = window.end_in(offset, now).unwrap_or(i64::MAX);
    let slot = Slot::new(
        window.start_in(offset, now),
        end,
        window.label_in(offset, now),
        used,
    );
    if owner.leased {
        slot.set_cap(used);
    }
    slot
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(used: u64) -> Windows {
        let owners = Counter::ALL.map(|counter| {
            let (metric, window) = counter.metric_window();
            Owner {
                scope: Scope::Key,
                id: Uuid::nil(),
                metric,
                window,
                offset: 0,
                leased: false,
            }
        });
        Windows::new(owners, NOW, |_| used)
    }

    const NOW: i64 = 1_795_435_200; // 2026-11-23 12:00 UTC

    #[test]
    fn rolls_over_at_the_boundary_and_retires_the_old_slot() {
        let retired = Retired::default();
        let w = windows(40);
        let cell = w.cell(Counter::CostDay);
        let today = cell.current(NOW, &retired);
        assert!(today.try_reserve(60, Some(100)));
        assert!(!today.try_reserve(1, Some(100)));
        let tomorrow = cell.current(NOW + 86_400, &retired);
        assert_eq!(tomorrow.label, "2026-11-24");
        assert_eq!(tomorrow.committed(), 0);
        assert!(tomorrow.try_reserve(100, Some(100)));
        let old = retired.lock().unwrap();
        // The day's two counters rolled over; the month's and the lifetime's did not.
        let mut labels: Vec<_> = old
            .iter()
            .map(|(o, s)| (o.metric, s.label.as_str()))
            .collect();
        labels.sort_by_key(|(m, _)| m.as_str());
        assert_eq!(
            labels,
            [
                (Metric::Cost, "2026-11-23"),
                (Metric::Requests, "2026-11-23")
            ]
        );
        let cost = old.iter().find(|(o, _)| o.metric == Metric::Cost).unwrap();
        assert_eq!(cost.1.committed(), 100);
        drop(old);
        let month = w.cell(Counter::BytesIn).current(NOW + 86_400, &retired);
        assert_eq!((month.label.as_str(), month.used()), ("2026-11", 40));
    }

    #[test]
    fn lifetime_never_rolls_and_backwards_clock_keeps_newer_slot() {
        let retired = Retired::default();
        let w = windows(5);
        let total = w
            .cell(Counter::CostTotal)
            .current(NOW + 400 * 86_400, &retired);
        assert_eq!(total.used(), 5);
        let retired = Retired::default();
        let day = windows(0);
        let _ = day.current(NOW + 86_400, &retired);
        let back = day.cell(Counter::CostDay).current(NOW, &retired);
        assert_eq!(back.label, "2026-11-24");
        assert_eq!(
            retired.lock().unwrap().len(),
            2,
            "requests and cost per day, once"
        );
    }

    #[test]
    fn a_new_month_retires_four_slots_and_keeps_the_lifetime_one() {
        let retired = Retired::default();
        let w = windows(7);
        let before = w.current(NOW, &retired);
        let next_month = 1_796_083_200; // 2026-12-01 00:00 UTC
        let after = w.current(next_month, &retired);
        assert_eq!(retired.lock().unwrap().len(), 4);
        for counter in Counter::ALL {
            let kept = Arc::ptr_eq(before.get(counter), after.get(counter));
            assert_eq!(kept, counter == Counter::CostTotal, "{counter:?}");
        }
        assert_eq!(after.get(Counter::BytesIn).label, "2026-12");
        assert_eq!(after.get(Counter::CostTotal).used(), 7);
    }

    #[test]
    fn racing_rollovers_agree_on_one_set_of_slots() {
        let retired = Retired::default();
        let w = windows(0);
        let _ = w.current(NOW, &retired);
        let barrier = std::sync::Barrier::new(4);
        let seen: Vec<Arc<Slots>> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        w.current(NOW + 86_400, &retired)
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert!(
            seen.iter().all(|s| Arc::ptr_eq(s, &w.peek())),
            "one winner's slots"
        );
        assert_eq!(
            retired.lock().unwrap().len(),
            2,
            "retired once, by the winner"
        );
    }

    #[test]
    fn a_slot_that_did_not_roll_is_the_same_slot() {
        let retired = Retired::default();
        let w = windows(0);
        let before = w.current(NOW, &retired);
        let after = w.current(NOW + 86_400, &retired);
        assert!(Arc::ptr_eq(
            before.get(Counter::BytesOut),
            after.get(Counter::BytesOut)
        ));
        assert!(!Arc::ptr_eq(
            before.get(Counter::CostDay),
            after.get(Counter::CostDay)
        ));
        assert!(Arc::ptr_eq(&after, &w.peek()));
    }
}
