//! A counter that starts a new slot when its window rolls over. Readers pay one `ArcSwap`
//! load; the rollover itself is a single compare-and-swap, and the retired slot is handed to the
//! meter so its last deltas still reach the store.

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

/// A counter over a rolling window.
#[derive(Debug)]
pub struct WindowedCell {
    owner: Owner,
    slot: ArcSwap<Slot>,
}

impl WindowedCell {
    /// A cell whose current window (at `now`) already holds `used`.
    pub fn new(owner: Owner, now: i64, used: u64) -> Self {
        let slot = new_slot(owner, now, used);
        WindowedCell {
            owner,
            slot: ArcSwap::from_pointee(slot),
        }
    }

    /// Whose counter this is.
    pub fn owner(&self) -> Owner {
        self.owner
    }

    /// The slot of the window containing `now`, rolling over if needed.
    pub fn current(&self, now: i64, retired: &Retired) -> Arc<Slot> {
        let cur = self.slot.load_full();
        // Fast path, no date arithmetic: still inside the current window, or a clock that went
        // backwards (keep counting in the newer window).
        if now < cur.end {
            return cur;
        }
        let fresh = Arc::new(new_slot(self.owner, now, 0));
        let prev = self.slot.compare_and_swap(&cur, fresh.clone());
        if Arc::ptr_eq(&prev, &cur) {
            retired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((self.owner, cur));
            fresh
        } else {
            self.slot.load_full()
        }
    }

    /// The current slot without rolling over (for flushing and reporting).
    pub fn peek(&self) -> Arc<Slot> {
        self.slot.load_full()
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

    fn owner(window: Window) -> Owner {
        Owner {
            scope: Scope::Key,
            id: Uuid::nil(),
            metric: Metric::Cost,
            window,
            offset: 0,
            leased: false,
        }
    }

    const NOW: i64 = 1_795_435_200; // 2026-11-23 12:00 UTC

    #[test]
    fn rolls_over_at_the_boundary_and_retires_the_old_slot() {
        let retired = Retired::default();
        let cell = WindowedCell::new(owner(Window::Day), NOW, 40);
        let today = cell.current(NOW, &retired);
        assert!(today.try_reserve(60, Some(100)));
        assert!(!today.try_reserve(1, Some(100)));
        let tomorrow = cell.current(NOW + 86_400, &retired);
        assert_eq!(tomorrow.label, "2026-11-24");
        assert_eq!(tomorrow.committed(), 0);
        assert!(tomorrow.try_reserve(100, Some(100)));
        let old = retired.lock().unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].1.label, "2026-11-23");
        assert_eq!(old[0].1.committed(), 100);
    }

    #[test]
    fn lifetime_never_rolls_and_backwards_clock_keeps_newer_slot() {
        let retired = Retired::default();
        let cell = WindowedCell::new(owner(Window::Lifetime), NOW, 5);
        assert_eq!(cell.current(NOW + 400 * 86_400, &retired).used(), 5);
        let day = WindowedCell::new(owner(Window::Day), NOW, 0);
        let _ = day.current(NOW + 86_400, &retired);
        assert_eq!(day.current(NOW, &retired).label, "2026-11-24");
        assert_eq!(retired.lock().unwrap().len(), 1);
    }
}
