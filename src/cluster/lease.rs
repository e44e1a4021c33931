//! Budget leases, the strict quota mode for money on a shared store (`store.quota_mode =
//! "lease"`, the default with PostgreSQL). A key's cost limit (per day, in total) and a
//! partner's balance are spent here only out of a lease: a slice of what is left, granted by the
//! store in a transaction that keeps "counted + every lease ≤ limit". Locally a lease is the
//! counter's cap (`Slot::cap` = synced + lease), so admission stays one lock-free
//! compare-and-swap; each sync deducts what it applied from the lease and renews it.
//!
//! - A request the cap refuses but the limit would admit waits for a grant (first use of a key,
//!   a lease run dry) and is admitted again; steady traffic never waits, because each sync pass
//!   refills busy leases before they run dry.
//! - Idle leases (no spending for `IDLE_PASSES` syncs) are given back; all are given back on
//!   shutdown; a lease not renewed for `lease_ttl` (store unreachable) is void here `MARGIN`
//!   before the store may hand it to another instance. An instance killed with `kill -9`
//!   holds its leases until they expire.
//!
//! Overshoot is 0 while instances reach the store; an instance cut off for longer than the
//! lease TTL can have spent at most its lease, as usage not yet synced.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::{Mutex, watch};

use crate::domain::decision::Denial;
use crate::domain::hot_key::HotKey;
use crate::meter::PartnerLive;
use crate::meter::admit::{Links, charge};
use crate::meter::cell::Slot;
use crate::meter::windowed::Retired;
use crate::metrics::Metrics;
use crate::shutdown;
use crate::store::cluster::{Budget, LeaseId, LeaseRequest};
use crate::store::{Store, StoreError};

/// Sync passes without spending after which a lease is given back.
const IDLE_PASSES: u32 = 10;

/// A lease is void here this long before the store may reclaim it (clock rates, a late check).
const MARGIN: Duration = Duration::from_secs(2);

/// The longest a request waits for a grant (behind a sync stuck on an unreachable store, say)
/// before it is refused.
const GRANT_WAIT: Duration = Duration::from_secs(2);

/// How often leases are checked for lapsing (independent of the sync, which may hang on an
/// unreachable store).
const LAPSE_CHECK: Duration = Duration::from_millis(250);

/// A lease this instance holds.
#[derive(Debug)]
struct Held {
    slot: Arc<Slot>,
    /// The key's cost limit (refills ask against it); unused for a partner balance.
    limit: AtomicU64,
    /// The lease as the store last said (less what later syncs applied).
    amount: AtomicU64,
    /// The lease right after its last grant: refills start when half of it is spent.
    size: AtomicU64,
    /// Milliseconds since `Leases::epoch` after which the lease is void here.
    valid_until: AtomicU64,
    last_committed: AtomicU64,
    idle_passes: AtomicU32,
}

/// One money counter a request needs room on.
#[derive(Debug)]
pub struct Want {
    pub lease: LeaseId,
    pub slot: Arc<Slot>,
    /// What the request reserves.
    pub amount: u64,
    /// The limit the slot is admitted against (a key's limit, a partner's credit).
    pub limit: u64,
}

/// Every lease this instance holds, and the grants.
pub struct Leases {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    fraction: f64,
    ttl: Duration,
    /// Grants and syncs one at a time (shared with the sync task): a grant sets a cap from
    /// what is synced, which a sync in flight is changing.
    pass: Arc<Mutex<()>>,
    held: DashMap<LeaseId, Arc<Held>>,
    epoch: Instant,
}

impl Leases {
    /// Leases taken from `store` (which must be shared), `fraction` of what is left at a time.
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        fraction: f64,
        ttl: Duration,
        pass: Arc<Mutex<()>>,
    ) -> Self {
        Leases {
            store,
            metrics,
            fraction,
            ttl,
            pass,
            held: DashMap::new(),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// When a lease renewed or granted by a call started at `started_ms` stops being valid here.
    fn deadline(&self, started_ms: u64) -> u64 {
        started_ms + self.ttl.saturating_sub(MARGIN).as_millis() as u64
    }

    /// The money counters a request reserving `estimate` (upstream price) touches.
    pub fn wants(
        key: &HotKey,
        links: &Links,
        estimate: u64,
        retired: &Retired,
        now: i64,
    ) -> Vec<Want> {
        let mut wants = Vec::new();
        if estimate > 0 {
            let limits = &key.limits;
            let cells = [
                (links.key.cost_day(), limits.daily_cost_limit_micros()),
                (links.key.cost_total(), limits.total_cost_limit_micros()),
            ];
            for (cell, limit) in cells {
                let Some(limit) = limit else { continue };
                let slot = cell.current(now, retired);
                wants.push(Want {
                    lease: LeaseId {
                        budget: Budget::KeyCost,
                        id: key.id,
                        window: slot.label.clone(),
                    },
                    slot,
                    amount: estimate,
                    limit,
                });
            }
        }
        let charged = charge(estimate, links.partner.tier_ppm());
        if charged > 0 {
            wants.push(Self::balance_want(&links.partner, charged));
        }
        wants
    }

    /// What reserving `amount` of a partner's balance wants from its lease (a request's
    /// charge, a plan change).
    pub fn balance_want(partner: &PartnerLive, amount: u64) -> Want {
        Want {
            lease: LeaseId {
                budget: Budget::PartnerBalance,
                id: partner.id,
                window: partner.spent.label.clone(),
            },
            slot: partner.spent.clone(),
            amount,
            limit: partner.credit(),
        }
    }

    /// Grows this instance's lease on `partner`'s balance until it covers `amount` (for a
    /// plan change's charge), within `GRANT_WAIT`. `Ok(false)` when the balance itself, not
    /// the lease, is short.
    pub async fn cover_balance(
        &self,
        partner: &PartnerLive,
        amount: u64,
    ) -> Result<bool, StoreError> {
        let deadline = Self::deadline_from_now();
        for _ in 0..Self::TRIES {
            let want = Self::balance_want(partner, amount);
            if !want.slot.short_of_lease(want.amount, want.limit) {
                return Ok(want.slot.within_limit(want.amount, want.limit));
            }
            if !self.refill_for(vec![want], deadline).await? {
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// How often a request refused for money is tried again at most (each try after a grant
    /// or another request's).
    const TRIES: usize = 8;

    /// When a request refused for money should wait for a lease and try again, within
    /// `GRANT_WAIT` from when it was first refused.
    fn deadline_from_now() -> Instant {
        Instant::now() + GRANT_WAIT
    }

    /// Whether only leases (not the limits themselves) stand in the way of `wants`.
    fn only_leases_refuse(wants: &[Want]) -> bool {
        wants.iter().all(|w| w.slot.within_limit(w.amount, w.limit))
    }

    /// Admission in lease mode: `first` (what `admit` answered) stands unless a money limit's
    /// lease, not the limit itself, refused it. Then the request waits for a grant (or another
    /// request's) and `admit` is tried again, at most `TRIES` times within `GRANT_WAIT`. Still
    /// refused by leases alone, it gets its money code with `Retry-After: 1`: the budget is
    /// being shared out, the refusal is not final. `wants` are the request's money counters.
    pub async fn admit<T>(
        &self,
        first: Result<T, Denial>,
        wants: impl Fn() -> Vec<Want>,
        admit: impl Fn() -> Result<T, Denial>,
    ) -> Result<T, Denial> {
        let deadline = Self::deadline_from_now();
        let mut admitted = first;
        for _ in 0..Self::TRIES {
            let Err(denial) = &admitted else { break };
            if !denial.is_money() {
                break;
            }
            match self.refill_for(wants(), deadline).await {
                Ok(true) => admitted = admit(),
                Ok(false) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "no budget lease: the store did not answer");
                    let message = "no budget could be leased for this request: the store is \
                                   unreachable; retry shortly";
                    return Err(Denial::with_message(denial.code, message).retry_after(1));
                }
            }
        }
        match admitted {
            Err(denial) if denial.is_money() && Self::only_leases_refuse(&wants()) => {
                let message = "the budget is being shared out between instances; retry shortly";
                Err(Denial {
                    message: message.into(),
                    ..denial
                }
                .retry_after(1))
            }
            admitted => admitted,
        }
    }

    /// After a money refusal: whether admission is worth another try before `deadline`.
    /// `Ok(false)` when a limit itself (not a lease) refuses, when the store has nothing left to
    /// lease, or when the deadline has passed; `Ok(true)` when a lease grew (the store was asked
    /// for what the request lacks) or another request's grant already made room.
    pub async fn refill_for(
        &self,
        wants: Vec<Want>,
        deadline: Instant,
    ) -> Result<bool, StoreError> {
        if !Self::only_leases_refuse(&wants) || Instant::now() >= deadline {
            return Ok(false);
        }
        if !wants
            .iter()
            .any(|w| w.slot.short_of_lease(w.amount, w.limit))
        {
            tokio::task::yield_now().await;
            return Ok(true);
        }
        tokio::time::timeout_at(deadline.into(), self.refill_short(wants))
            .await
            .map_err(|_| StoreError::Timeout(GRANT_WAIT))?
    }

    async fn refill_short(&self, wants: Vec<Want>) -> Result<bool, StoreError> {
        let short = |w: &Want| w.slot.short_of_lease(w.amount, w.limit);
        let _pass = self.pass.lock().await;
        // Requests waiting together share the first one's grant.
        let short: Vec<(Want, u64)> = wants
            .into_iter()
            .filter(short)
            .map(|w| {
                let need = w.slot.lease_shortfall(w.amount);
                (w, need)
            })
            .collect();
        if short.is_empty() {
            return Ok(true);
        }
        self.grant_locked(short).await
    }

    /// Grants `(want, need)` under the pass lock; `true` if some cap rose.
    async fn grant_locked(&self, wants: Vec<(Want, u64)>) -> Result<bool, StoreError> {
        let Some(cluster) = self.store.cluster() else {
            return Ok(false);
        };
        let started = self.now_ms();
        let requests: Vec<LeaseRequest> = wants
            .iter()
            .map(|(w, need)| LeaseRequest {
                lease: w.lease.clone(),
                limit: w.limit,
                need: *need,
                fraction: self.fraction,
                unspent: unspent(&w.slot),
            })
            .collect();
        let grants = self.metrics.cluster.lease_grants.clone();
        let amounts = match cluster.grant_leases(&requests).await {
            Ok(amounts) => amounts,
            Err(err) => {
                grants.with_label_values(&["error"]).inc();
                return Err(err);
            }
        };
        let mut grew = false;
        for ((want, _), amount) in wants.into_iter().zip(amounts) {
            let held = self.hold(&want);
            let before = held.amount.swap(amount, Ordering::AcqRel);
            held.limit.store(want.limit, Ordering::Release);
            held.size.store(amount, Ordering::Release);
            held.valid_until
                .store(self.deadline(started), Ordering::Release);
            let cap = want.slot.flushed().saturating_add(amount);
            grew |= cap > want.slot.cap();
            want.slot.set_cap(cap);
            let result = if amount > before { "granted" } else { "empty" };
            grants.with_label_values(&[result]).inc();
        }
        self.metrics.cluster.leases_held.set(self.held.len() as i64);
        Ok(grew)
    }

    /// The record of `want`'s lease (a new one if the window's counter is new).
    fn hold(&self, want: &Want) -> Arc<Held> {
        let fresh = || {
            Arc::new(Held {
                slot: want.slot.clone(),
                limit: AtomicU64::new(want.limit),
                amount: AtomicU64::new(0),
                size: AtomicU64::new(0),
                valid_until: AtomicU64::new(0),
                last_committed: AtomicU64::new(want.slot.committed()),
                idle_passes: AtomicU32::new(0),
            })
        };
        let mut entry = self.held.entry(want.lease.clone()).or_insert_with(fresh);
        if !Arc::ptr_eq(&entry.slot, &want.slot) {
            *entry = fresh();
        }
        entry.clone()
    }

    /// After a sync, under the pass lock (`started_ms` from [`Leases::clock_ms`] before it):
    /// what the store holds for each lease now, renewed. A lease the store holds but this
    /// instance no longer does (voided while the store was away) is given back.
    pub async fn apply_synced(&self, leases: &[(LeaseId, u64)], started_ms: u64) {
        let stored: HashMap<&LeaseId, u64> = leases.iter().map(|(id, a)| (id, *a)).collect();
        let orphans: Vec<LeaseId> = leases
            .iter()
            .filter(|(id, _)| !self.held.contains_key(id))
            .map(|(id, _)| id.clone())
            .collect();
        let deadline = self.deadline(started_ms);
        self.held.retain(|id, held| {
            let amount = stored.get(id).copied().unwrap_or(0);
            held.amount.store(amount, Ordering::Release);
            held.slot
                .set_cap(held.slot.flushed().saturating_add(amount));
            held.valid_until.store(deadline, Ordering::Release);
            // A lease the store no longer has was reclaimed (it lapsed): nothing to renew.
            stored.contains_key(id)
        });
        self.metrics.cluster.leases_held.set(self.held.len() as i64);
        self.give_back(orphans, "lapsed").await;
    }

    /// Now on the clock `apply_synced` takes.
    pub fn clock_ms(&self) -> u64 {
        self.now_ms()
    }

    /// Each sync pass, under the pass lock: gives back leases idle for `IDLE_PASSES` and
    /// refills the busy ones with less than half of their last grant left.
    pub async fn maintain_locked(&self) {
        let mut idle = Vec::new();
        let mut low = Vec::new();
        for entry in self.held.iter() {
            let held = entry.value();
            let committed = held.slot.committed();
            if held.last_committed.swap(committed, Ordering::AcqRel) != committed {
                held.idle_passes.store(0, Ordering::Release);
                let left = held.slot.cap().saturating_sub(committed);
                if left < held.size.load(Ordering::Acquire) / 2 {
                    low.push(Want {
                        lease: entry.key().clone(),
                        slot: held.slot.clone(),
                        amount: 0,
                        limit: held.limit.load(Ordering::Acquire),
                    });
                }
            } else if held.idle_passes.fetch_add(1, Ordering::AcqRel) + 1 >= IDLE_PASSES
                && held.slot.try_drop_lease()
            {
                idle.push(entry.key().clone());
            }
        }
        self.give_back(idle, "idle").await;
        if !low.is_empty() {
            let wants = low.into_iter().map(|w| (w, 0)).collect();
            if let Err(err) = self.grant_locked(wants).await {
                tracing::warn!(error = %err, "refilling budget leases failed; will retry");
            }
        }
    }

    /// Gives `ids` (their caps already dropped) back to the store; one that cannot be given
    /// back lapses in the store after the TTL.
    async fn give_back(&self, ids: Vec<LeaseId>, reason: &str) {
        if ids.is_empty() {
            return;
        }
        for id in &ids {
            self.held.remove(id);
        }
        self.metrics.cluster.leases_held.set(self.held.len() as i64);
        self.metrics
            .cluster
            .leases_returned
            .with_label_values(&[reason])
            .inc_by(ids.len() as u64);
        if let Some(cluster) = self.store.cluster()
            && let Err(err) = cluster.return_leases(&ids).await
        {
            tracing::warn!(error = %err, leases = ids.len(), "giving back budget leases failed; they lapse after store.lease_ttl");
        }
    }

    /// On shutdown, after the last sync: gives every lease back.
    pub async fn return_all(&self) {
        let _pass = self.pass.lock().await;
        let ids: Vec<LeaseId> = self
            .held
            .iter()
            .filter(|e| e.slot.try_drop_lease())
            .map(|e| e.key().clone())
            .collect();
        self.give_back(ids, "shutdown").await;
    }

    /// Voids the leases not renewed in time (the store may give them to another instance
    /// soon), every `LAPSE_CHECK` until `stopped`.
    pub async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(LAPSE_CHECK);
        loop {
            tokio::select! {
                _ = tick.tick() => self.void_lapsed(),
                _ = shutdown::stopped(&mut stopped) => break,
            }
        }
    }

    fn void_lapsed(&self) {
        let now = self.now_ms();
        let mut lapsed = 0;
        self.held.retain(|_, held| {
            if held.valid_until.load(Ordering::Acquire) > now {
                return true;
            }
            held.slot.set_cap(held.slot.flushed());
            lapsed += 1;
            false
        });
        if lapsed > 0 {
            tracing::warn!(
                lapsed,
                "budget leases not renewed within store.lease_ttl are void: money-limited \
                 requests are refused until the store answers"
            );
            let cluster = &self.metrics.cluster;
            cluster.leases_held.set(self.held.len() as i64);
            cluster
                .leases_returned
                .with_label_values(&["lapsed"])
                .inc_by(lapsed);
        }
    }
}

/// What `slot` has of its lease not yet reserved or spent (0 without a cap).
fn unspent(slot: &Slot) -> u64 {
    match slot.cap() {
        u64::MAX => 0,
        cap => cap.saturating_sub(slot.committed()),
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::store::tests::TestStore;

    fn want(slot: &Arc<Slot>, amount: u64) -> Want {
        Want {
            lease: LeaseId {
                budget: Budget::KeyCost,
                id: Uuid::nil(),
                window: "2026-12-04".into(),
            },
            slot: slot.clone(),
            amount,
            limit: 1_000,
        }
    }

    #[tokio::test]
    async fn a_grant_raises_the_cap_and_a_lease_not_renewed_in_time_is_void() {
        let t = TestStore::postgres().await;
        // Valid here for 100 ms after the grant (TTL less the 2 s margin).
        let ttl = MARGIN + Duration::from_millis(100);
        let leases = Leases::new(t.shared(), Arc::default(), 0.2, ttl, Arc::default());
        let slot = Arc::new(Slot::new(0, i64::MAX, "2026-12-04".into(), 0));
        slot.set_cap(0);
        assert!(!slot.try_reserve(150, Some(1_000)), "no lease yet");
        let deadline = Leases::deadline_from_now();
        assert!(
            !leases
                .refill_for(vec![want(&slot, 1_001)], deadline)
                .await
                .unwrap(),
            "refused by the limit itself: no use waiting"
        );
        assert!(leases.held.is_empty(), "and nothing asked");
        assert!(
            !leases
                .refill_for(vec![want(&slot, 150)], Instant::now())
                .await
                .unwrap(),
            "past the deadline"
        );
        assert!(
            leases
                .refill_for(vec![want(&slot, 150)], deadline)
                .await
                .unwrap()
        );
        assert_eq!(
            slot.cap(),
            200,
            "a fifth of the 1000 left, more than the need"
        );
        assert!(slot.try_reserve(150, Some(1_000)));
        assert!(
            leases
                .refill_for(vec![want(&slot, 10)], deadline)
                .await
                .unwrap(),
            "room left (another request's grant): worth a try, nothing asked"
        );
        assert_eq!(slot.cap(), 200);
        let start = Instant::now();
        while !leases.held.is_empty() {
            assert!(start.elapsed() < Duration::from_secs(5), "never lapsed");
            leases.void_lapsed();
            tokio::task::yield_now().await;
        }
        assert_eq!(slot.cap(), 0, "void: only what is synced may be committed");
        slot.release(150);
        assert!(!slot.try_reserve(1, Some(1_000)));
    }
}
