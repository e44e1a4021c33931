//! Metering: lock-free quota counters per key, account and partner, per window, with
//! reservations for admission and deltas for the store. See DESIGN.md "Metering model".
//!
//! `Meter` is the registry: it creates each scope's counters on first use (starting from what
//! the store holds), keeps the accounts' plans and the partners' balances the data plane needs,
//! and hands the flusher every unflushed delta.

pub mod admit;
pub mod body;
pub mod cell;
pub mod gate;
pub mod hold;
pub mod llm_usage;
pub mod pins;
pub mod stats;
pub mod usage;
pub mod window;
pub mod windowed;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use uuid::Uuid;

use crate::domain::key::{Account, Partner};
use cell::Slot;
use usage::{CounterRow, Initial, Metric, Scope, ScopeUsage};
use window::Window;
use windowed::{Counter, Owner, Retired};

/// Live state of an account: its plan and counters.
#[derive(Debug)]
pub struct AccountLive {
    pub id: Uuid,
    pub partner_id: Uuid,
    /// Plan id, or 0 for none.
    plan_id: AtomicI64,
    pub usage: Arc<ScopeUsage>,
}

impl AccountLive {
    /// The account's plan id.
    pub fn plan_id(&self) -> Option<i64> {
        Some(self.plan_id.load(Ordering::Acquire)).filter(|id| *id != 0)
    }

    /// Moves the account to another plan.
    pub fn set_plan(&self, plan: Option<i64>) {
        self.plan_id.store(plan.unwrap_or(0), Ordering::Release);
    }
}

/// Live state of a partner: prepaid balance, tier multiplier, suspension and counters.
#[derive(Debug)]
pub struct PartnerLive {
    pub id: Uuid,
    /// What charges are reserved against, in micro-USD plus what this instance has charged
    /// since start: the stored balance as loaded plus top-ups since (one instance), the stored
    /// balance as of the last sync (several instances).
    credit: AtomicI64,
    /// The balance shown to partners, on the same basis as `credit`.
    shown: AtomicI64,
    /// Charged since start: committed = charged + reserved. Flushed into the stored balance.
    pub spent: Arc<Slot>,
    tier_ppm: AtomicU64,
    suspended: AtomicBool,
    pub usage: Arc<ScopeUsage>,
}

impl PartnerLive {
    /// The balance left (charged and reserved deducted), in micro-USD.
    pub fn balance(&self) -> i64 {
        let shown = self.shown.load(Ordering::Acquire) as i128;
        (shown - self.spent.committed() as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// Records the balance a sync read back from the shared store (every instance's synced
    /// charges and every top-up applied). Only the sync task calls this, between its flushes,
    /// so `spent.flushed()` is exactly what the store has deducted for this instance.
    pub fn set_store_balance(&self, stored: i64) {
        let flushed = self.spent.flushed().min(i64::MAX as u64) as i64;
        let base = stored.saturating_add(flushed);
        self.shown.store(base, Ordering::Release);
        self.credit.store(base, Ordering::Release);
    }

    /// The limit charges are reserved against (a negative balance allows nothing).
    pub fn credit(&self) -> u64 {
        self.credit.load(Ordering::Acquire).max(0) as u64
    }

    /// Adds a top-up (already stored; negative for a debit) to the balance.
    pub fn credit_add_signed(&self, micros: i64) {
        let _ = self
            .credit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_add(micros))
            });
        let _ = self
            .shown
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_add(micros))
            });
    }

    /// Tier multiplier in parts per million.
    pub fn tier_ppm(&self) -> u64 {
        self.tier_ppm.load(Ordering::Acquire)
    }

    /// Whether the partner is suspended (its keys are refused).
    pub fn suspended(&self) -> bool {
        self.suspended.load(Ordering::Acquire)
    }

    /// Applies a changed partner record (tier, suspension).
    pub fn update(&self, partner: &Partner) {
        self.tier_ppm
            .store(partner.tier_multiplier_ppm, Ordering::Release);
        self.suspended.store(partner.suspended, Ordering::Release);
    }
}

/// One unflushed amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    pub scope: Scope,
    pub id: Uuid,
    pub metric: Metric,
    pub window: Window,
    /// Window label (`2026-11-23`, `2026-11`, `lifetime`).
    pub label: String,
    /// The UTC day the usage is reported under in `usage_daily`.
    pub day: String,
    pub amount: u64,
}

/// A batch for the store: counter deltas and partner balance charges.
#[derive(Debug, Default)]
pub struct Batch {
    pub deltas: Vec<Delta>,
    /// (partner id, micro-USD charged).
    pub charges: Vec<(Uuid, u64)>,
}

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty() && self.charges.is_empty()
    }
}

/// The registry of every live counter.
#[derive(Default)]
pub struct Meter {
    keys: DashMap<Uuid, Arc<ScopeUsage>>,
    accounts: DashMap<Uuid, Arc<AccountLive>>,
    partners: DashMap<Uuid, Arc<PartnerLive>>,
    initial: Initial,
    /// Calendar offset from UTC in seconds (`[metering] utc_offset`).
    offset: i64,
    /// Lease mode (`store.quota_mode = "lease"` on a shared store): key cost limits and
    /// partner balances admit only against budget leases (see `cluster::lease`).
    leases: bool,
    /// Slots replaced by a window rollover, flushed one last time.
    pub retired: Retired,
    /// A batch whose write failed, retried before any new one with the same idempotency
    /// token, so a commit whose acknowledgement was lost is never applied twice.
    pub pending: Mutex<Option<(String, Batch)>>,
    /// Wakes the sync task before its next tick (e.g. after a top-up on a shared store).
    pub sync_now: tokio::sync::Notify,
    /// The window labels of the last sync read-back.
    synced_windows: Mutex<Vec<String>>,
    /// LLM usage by key and model, not flushed yet.
    pub llm: llm_usage::LlmUsage,
}

impl Meter {
    /// Builds the seed of `new` from stored rows (unknown scopes or metrics are skipped).
    pub fn initial_from(rows: Vec<CounterRow>) -> Initial {
        rows.into_iter()
            .filter_map(|r| {
                let scope = Scope::parse(&r.scope)?;
                let metric = Metric::parse(&r.metric)?;
                Some(((scope, r.scope_id, metric, r.window), r.value))
            })
            .collect()
    }

    /// The window labels whose totals `new` needs at `now` (UTC calendar).
    pub fn windows(now: i64) -> Vec<String> {
        Meter::windows_in(0, now)
    }

    /// The window labels whose totals are needed at `now`, in the calendar `offset` seconds
    /// east of UTC.
    pub fn windows_in(offset: i64, now: i64) -> Vec<String> {
        [Window::Day, Window::Month, Window::Lifetime]
            .iter()
            .map(|w| w.label_in(offset, now))
            .collect()
    }

    /// A meter seeded with the counters the store holds for the current windows.
    pub fn new(initial: Initial) -> Self {
        Meter::with_offset(initial, 0)
    }

    /// A meter whose days and months follow the calendar `offset` seconds east of UTC.
    pub fn with_offset(initial: Initial, offset: i64) -> Self {
        Meter {
            offset,
            leases: false,
            keys: DashMap::new(),
            accounts: DashMap::new(),
            partners: DashMap::new(),
            initial,
            retired: Retired::default(),
            pending: Mutex::new(None),
            sync_now: tokio::sync::Notify::new(),
            synced_windows: Mutex::new(Vec::new()),
            llm: Default::default(),
        }
    }

    /// This meter in lease mode: new key cost counters and partner balances start with no
    /// lease, so they admit nothing limited until one is granted.
    pub fn leased(mut self) -> Self {
        self.leases = true;
        self
    }

    /// Whether the meter is in lease mode.
    pub fn is_leased(&self) -> bool {
        self.leases
    }

    /// The day label (`YYYY-MM-DD`, in the configured offset) of `now`.
    pub fn day_label(&self, now: i64) -> String {
        Window::Day.label_in(self.offset, now)
    }

    /// Registers (or updates) a partner.
    pub fn upsert_partner(&self, p: &Partner, now: i64) -> Arc<PartnerLive> {
        if let Some(live) = self.partners.get(&p.id) {
            live.update(p);
            return live.clone();
        }
        let spent = Slot::new(0, i64::MAX, "lifetime".into(), 0);
        if self.leases {
            spent.set_cap(0);
        }
        let live = Arc::new(PartnerLive {
            id: p.id,
            credit: AtomicI64::new(p.balance_micros),
            shown: AtomicI64::new(p.balance_micros),
            spent: Arc::new(spent),
            tier_ppm: AtomicU64::new(p.tier_multiplier_ppm),
            suspended: AtomicBool::new(p.suspended),
            usage: self.usage(Scope::Partner, p.id, now),
        });
        self.partners.entry(p.id).or_insert(live).clone()
    }

    /// Registers (or updates the plan of) an account.
    pub fn upsert_account(&self, a: &Account, now: i64) -> Arc<AccountLive> {
        if let Some(live) = self.accounts.get(&a.id) {
            live.set_plan(a.plan_id);
            return live.clone();
        }
        let live = Arc::new(AccountLive {
            id: a.id,
            partner_id: a.partner_id,
            plan_id: AtomicI64::new(a.plan_id.unwrap_or(0)),
            usage: self.usage(Scope::Account, a.id, now),
        });
        self.accounts.entry(a.id).or_insert(live).clone()
    }

    /// A registered account.
    pub fn account(&self, id: Uuid) -> Option<Arc<AccountLive>> {
        self.accounts.get(&id).map(|a| a.clone())
    }

    /// A registered partner.
    pub fn partner(&self, id: Uuid) -> Option<Arc<PartnerLive>> {
        self.partners.get(&id).map(|p| p.clone())
    }

    /// The counters of a key, created on first use.
    pub fn key_usage(&self, id: Uuid, now: i64) -> Arc<ScopeUsage> {
        if let Some(u) = self.keys.get(&id) {
            return u.clone();
        }
        let usage = self.usage(Scope::Key, id, now);
        self.keys.entry(id).or_insert(usage).clone()
    }

    fn usage(&self, scope: Scope, id: Uuid, now: i64) -> Arc<ScopeUsage> {
        Arc::new(ScopeUsage::new(
            scope,
            id,
            now,
            self.offset,
            &self.initial,
            self.leases,
        ))
    }

    /// The day label of `now` in the metering calendar.
    pub fn today(&self, now: i64) -> String {
        Window::Day.label_in(self.offset, now)
    }

    /// Applies what a sync read back from a shared store: every counter total changed since the
    /// last sync (the live slot of that window learns the others' share; a scope not in use
    /// yet will start from it) and every partner's stored balance.
    pub fn apply_synced(&self, totals: &[CounterRow], balances: &[(Uuid, i64)], now: i64) {
        let current = Meter::windows_in(self.offset, now);
        for row in totals {
            let (Some(scope), Some(metric)) =
                (Scope::parse(&row.scope), Metric::parse(&row.metric))
            else {
                continue;
            };
            if !current.contains(&row.window) {
                continue;
            }
            let usage = match scope {
                Scope::Key => self.keys.get(&row.scope_id).map(|u| u.clone()),
                Scope::Account => self.accounts.get(&row.scope_id).map(|a| a.usage.clone()),
                Scope::Partner => self.partners.get(&row.scope_id).map(|p| p.usage.clone()),
            };
            let slot = usage.and_then(|u| {
                // Rolls over if the window is new here but already counted elsewhere.
                let slots = u.current(now, &self.retired);
                Counter::ALL
                    .into_iter()
                    .filter(|c| u.owner(*c).metric == metric)
                    .map(|c| slots.get(c).clone())
                    .find(|s| s.label == row.window)
            });
            match slot {
                Some(slot) => slot.set_store_total(row.value),
                None => {
                    self.initial
                        .insert((scope, row.scope_id, metric, row.window.clone()), row.value);
                }
            }
        }
        // Totals of windows that are over are of no use to a scope starting now (checked when
        // a window rolls over, not on every sync: the map holds a row per scope in use).
        let mut seen = self
            .synced_windows
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *seen != current {
            self.initial.retain(|k, _| current.contains(&k.3));
            *seen = current;
        }
        drop(seen);
        for (id, balance) in balances {
            if let Some(p) = self.partners.get(id) {
                p.set_store_balance(*balance);
            }
        }
    }

    /// Every key's, account's and partner's usage record. A flush batch (every unflushed
    /// amount, marked flushed) is [`Meter::take_usages`] of these, in steps, then
    /// [`Meter::take_rest`].
    pub fn usages(&self) -> Vec<Arc<ScopeUsage>> {
        self.keys
            .iter()
            .map(|u| u.clone())
            .chain(self.accounts.iter().map(|a| a.usage.clone()))
            .chain(self.partners.iter().map(|p| p.usage.clone()))
            .collect()
    }

    /// Takes the unflushed amounts of `usages` into `batch`.
    pub fn take_usages(batch: &mut Batch, usages: &[Arc<ScopeUsage>], today: &str) {
        for usage in usages {
            let slots = usage.peek();
            for counter in Counter::ALL {
                take(
                    batch,
                    usage.owner(counter),
                    slots.get(counter).clone(),
                    today,
                );
            }
        }
    }

    /// Takes the slots retired by rollovers and the partners' charges into `batch`.
    pub fn take_rest(&self, batch: &mut Batch, today: &str) {
        let retired = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|e| e.into_inner()));
        for (owner, slot) in retired {
            // Requests still holding the old slot may add to it: keep it until nobody does.
            if Arc::strong_count(&slot) > 1 {
                self.retired
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((owner, slot.clone()));
            }
            take(batch, owner, slot, today);
        }
        for p in self.partners.iter() {
            let amount = p.spent.take_unflushed();
            if amount > 0 {
                batch.charges.push((p.id, amount));
            }
        }
    }
}

fn take(batch: &mut Batch, owner: Owner, slot: Arc<Slot>, today: &str) {
    let amount = slot.take_unflushed();
    if amount == 0 {
        return;
    }
    let Owner {
        scope,
        id,
        metric,
        window,
        ..
    } = owner;
    let day = if window == Window::Day {
        slot.label.clone()
    } else {
        today.to_string()
    };
    batch.deltas.push(Delta {
        scope,
        id,
        metric,
        window,
        label: slot.label.clone(),
        day,
        amount,
    });
}

#[cfg(test)]
mod sync_tests {
    use super::*;
    use crate::store::{CounterRow, Synced};

    const NOW: i64 = 1_795_435_200; // 2026-11-23 12:00 UTC

    fn row(id: Uuid, window: &str, value: u64) -> CounterRow {
        CounterRow {
            scope: "key".into(),
            scope_id: id,
            metric: "cost_micros".into(),
            window: window.into(),
            value,
        }
    }

    #[test]
    fn read_back_totals_count_the_others_and_seed_new_scopes_and_windows() {
        let meter = Meter::default();
        let (used_here, not_here) = (Uuid::new_v4(), Uuid::new_v4());
        let usage = meter.key_usage(used_here, NOW);
        let day = usage.cost_day().current(NOW, &meter.retired);
        day.record(30, 0);
        assert_eq!(day.take_unflushed(), 30);
        let synced = Synced {
            totals: vec![
                row(used_here, "2026-11-23", 100),
                row(not_here, "2026-11-23", 40),
                row(not_here, "2026-11-20", 999),
            ],
            ..Synced::default()
        };
        meter.apply_synced(&synced.totals, &synced.balances, NOW);
        assert_eq!(day.total_used(), 100, "30 here + 70 elsewhere");
        assert!(!day.try_reserve(1, Some(100)));
        // A key first used here after the sync starts from the shared total.
        let later = meter.key_usage(not_here, NOW);
        assert_eq!(later.cost_day().current(NOW, &meter.retired).used(), 40);
        // A new day counted elsewhere first: the idle slot here rolls over and learns it.
        let tomorrow = NOW + 86_400;
        let next = Synced {
            totals: vec![row(used_here, "2026-11-24", 60)],
            ..Synced::default()
        };
        meter.apply_synced(&next.totals, &next.balances, tomorrow);
        let slot = usage.cost_day().current(tomorrow, &meter.retired);
        assert_eq!((slot.label.as_str(), slot.total_used()), ("2026-11-24", 60));
        assert!(
            meter.initial.iter().all(|e| e.key().3 != "2026-11-23"),
            "yesterday's seeds are dropped"
        );
    }
}

#[cfg(test)]
mod flush_tests {
    use super::*;

    const NOW: i64 = 1_795_435_200; // 2026-11-23 12:00 UTC

    /// One flush: the current slots, then the retired ones (as the flusher takes them).
    fn flush(meter: &Meter, usage: &Arc<ScopeUsage>, now: i64) -> Vec<(&'static str, String, u64)> {
        let (mut batch, today) = (Batch::default(), meter.today(now));
        Meter::take_usages(&mut batch, std::slice::from_ref(usage), &today);
        meter.take_rest(&mut batch, &today);
        let mut deltas: Vec<_> = batch
            .deltas
            .into_iter()
            .map(|d| (d.metric.as_str(), d.label, d.amount))
            .collect();
        deltas.sort();
        deltas
    }

    #[test]
    fn a_rollover_flushes_each_delta_once_under_its_window_even_with_a_request_in_flight() {
        let meter = Meter::default();
        let usage = meter.key_usage(Uuid::new_v4(), NOW);
        let today = usage.current(NOW, &meter.retired);
        // A request still in flight on today's cost slot when the day ends.
        let in_flight = today.get(Counter::CostDay).clone();
        in_flight.record(10, 0);
        today.get(Counter::BytesIn).record(100, 0);
        drop(today);
        let tomorrow = NOW + 86_400;
        let next = usage.current(tomorrow, &meter.retired);
        next.get(Counter::CostDay).record(5, 0);
        next.get(Counter::BytesIn).record(1, 0);
        drop(next);
        let d = |m: &'static str, label: &str, n| (m, label.to_string(), n);
        assert_eq!(
            flush(&meter, &usage, tomorrow),
            [
                d("bytes_in", "2026-11", 101),
                d("cost_micros", "2026-11-23", 10),
                d("cost_micros", "2026-11-24", 5)
            ]
        );
        // The request settles on yesterday's slot after that flush: its rest follows, once.
        in_flight.record(7, 0);
        drop(in_flight);
        assert_eq!(
            flush(&meter, &usage, tomorrow),
            [d("cost_micros", "2026-11-23", 7)]
        );
        assert_eq!(flush(&meter, &usage, tomorrow), []);
        assert!(meter.retired.lock().unwrap().is_empty());
    }
}
