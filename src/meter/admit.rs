//! Quota admission in two steps. Before any request body is read, [`take_slot`] takes the
//! key's concurrency slot (the caller has taken its rate token), so a key over its limits never
//! makes the gateway buffer a body. Once the body's size and cost are known, [`admit`] takes the
//! reservations on key → partner → account, in that order, or refuses with the tightest
//! limit's denial. Everything taken lives in the returned `Ticket` (the slot moves in with
//! [`Ticket::hold_slot`]) and is given back, or settled, when the ticket is dropped, on every
//! path.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::model::Plan;
use crate::domain::decision::{Denial, DenyCode, Quota};
use crate::domain::hot_key::HotKey;

use super::AccountLive;
use super::PartnerLive;
use super::hold::{Hold, Holds, InFlight, InFlightGuard};
use super::usage::ScopeUsage;
use super::windowed::{Counter, Retired, Slots};

/// The live counters a key's request touches.
#[derive(Debug, Clone)]
pub struct Links {
    pub key: Arc<ScopeUsage>,
    pub account: Arc<AccountLive>,
    pub partner: Arc<PartnerLive>,
}

/// The current slots of the three scopes a request is metered on.
struct Scopes {
    key: Arc<Slots>,
    account: Arc<Slots>,
    partner: Arc<Slots>,
}

/// What is known about a request before it is forwarded.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    /// Request body size when declared.
    pub content_length: Option<u64>,
    /// Worst-case cost of the request in micro-USD (upstream price).
    pub cost_estimate: u64,
}

/// Everything one admitted request holds: its concurrency slot, its cost reservations and its
/// byte counters. Dropping it settles the cost (actual, or the estimate if none was reported)
/// and returns what is left.
#[derive(Debug, Default)]
pub struct Ticket {
    _slot: Option<InFlightGuard>,
    /// Holds charged at upstream price (key and account counters).
    cost_raw: Holds,
    /// Holds charged after the partner's tier multiplier (partner counters and balance).
    cost_charged: Holds,
    tier_ppm: u64,
    estimate: u64,
    actual: Option<u64>,
    /// Ingress holds (key, account, partner); moved into the request body meter.
    pub ingress: Holds,
    /// Egress holds (key, account, partner); moved into the response body meter.
    pub egress: Holds,
    /// Prometheus counter of charged cost (micro-USD, upstream price).
    cost_counter: Option<prometheus::IntCounter>,
}

impl Ticket {
    /// Keeps the request's concurrency slot until the ticket is dropped.
    pub fn hold_slot(&mut self, slot: Option<InFlightGuard>) {
        self._slot = slot;
    }

    /// Sets the real cost (micro-USD, upstream price) to settle with.
    pub fn set_actual_cost(&mut self, micros: u64) {
        self.actual = Some(micros);
    }

    /// Adds the settled cost to `counter` when the ticket is dropped.
    pub fn count_cost_into(&mut self, counter: prometheus::IntCounter) {
        self.cost_counter = Some(counter);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let raw = self.actual.unwrap_or(self.estimate);
        let charged = charge(raw, self.tier_ppm);
        for hold in &mut self.cost_raw {
            hold.record(raw);
        }
        for hold in &mut self.cost_charged {
            hold.record(charged);
        }
        if let Some(counter) = &self.cost_counter {
            counter.inc_by(raw);
        }
    }
}

/// Upstream cost × tier multiplier (parts per million), rounded up, saturating.
pub fn charge(raw: u64, tier_ppm: u64) -> u64 {
    let v = (raw as u128 * tier_ppm as u128).div_ceil(1_000_000);
    v.min(u64::MAX as u128) as u64
}

/// A `quota_exceeded` denial; `Retry-After` runs to the end of the refusing slot's window.
fn quota(name: Quota, what: &str, slot_end: i64, now: i64) -> Denial {
    let field = name.as_str();
    let mut d = Denial::with_message(DenyCode::QuotaExceeded, format!("{what} ({field}) reached"));
    d.quota = Some(name);
    if let Some(secs) = (slot_end != i64::MAX).then(|| (slot_end - now).max(1) as u64) {
        d = d.retry_after(secs);
    }
    d
}

/// Takes one of the key's concurrency slots (none without a limit), or refuses.
pub fn take_slot(key: &HotKey, in_flight: &Arc<InFlight>) -> Result<Option<InFlightGuard>, Denial> {
    match key.limits.concurrency_limit {
        Some(limit) => in_flight
            .try_acquire(limit.get())
            .map(Some)
            .ok_or_else(|| Denial::new(DenyCode::ConcurrencyLimit)),
        None => Ok(None),
    }
}

/// Admits a request against every cost, balance and byte quota, or says which one refuses it.
pub fn admit(
    key: &HotKey,
    links: &Links,
    plans: &HashMap<i64, Plan>,
    retired: &Retired,
    facts: Facts,
    now: i64,
) -> Result<Ticket, Denial> {
    if links.partner.suspended() {
        return Err(Denial::with_message(
            DenyCode::KeyDisabled,
            "the partner account of this key is suspended",
        ));
    }
    let mut t = Ticket::default();
    t.estimate = facts.cost_estimate;
    t.tier_ppm = links.partner.tier_ppm();
    // Until every check has passed, dropping the ticket settles at zero: a refused request
    // gives its reservations back and is never charged.
    t.actual = Some(0);
    let est = facts.cost_estimate;
    let limits = &key.limits;
    // One load per scope for all its counters (`Windows`).
    let slots = Scopes {
        key: links.key.current(now, retired),
        account: links.account.usage.current(now, retired),
        partner: links.partner.usage.current(now, retired),
    };
    let day = slots.key.get(Counter::CostDay).clone();
    let end = day.end;
    t.cost_raw.push(
        Hold::reserve(day, est, limits.daily_cost_limit_micros())
            .ok_or_else(|| quota(Quota::DailyCost, "the key's daily cost limit", end, now))?,
    );
    let total = slots.key.get(Counter::CostTotal).clone();
    let end = total.end;
    t.cost_raw.push(
        Hold::reserve(total, est, limits.total_cost_limit_micros())
            .ok_or_else(|| quota(Quota::TotalCost, "the key's total cost limit", end, now))?,
    );
    let charged = charge(est, t.tier_ppm);
    if charged > 0 {
        let partner = &links.partner;
        t.cost_charged.push(
            Hold::reserve(partner.spent.clone(), charged, Some(partner.credit()))
                .ok_or_else(|| Denial::new(DenyCode::InsufficientBalance))?,
        );
    }
    let plan = links.account.plan_id().and_then(|id| plans.get(&id));
    admit_bytes(&mut t, &slots, plan, facts.content_length, now)?;
    record_costs_and_requests(&mut t, &slots);
    t.actual = None;
    Ok(t)
}

fn admit_bytes(
    t: &mut Ticket,
    slots: &Scopes,
    plan: Option<&Plan>,
    content_length: Option<u64>,
    now: i64,
) -> Result<(), Denial> {
    let ingress_limit = plan.and_then(|p| p.ingress_limit).map(|n| n.get());
    let egress_limit = plan.and_then(|p| p.egress_limit).map(|n| n.get());
    let acct_in = slots.account.get(Counter::BytesIn).clone();
    let acct_out = slots.account.get(Counter::BytesOut).clone();
    let (in_end, out_end) = (acct_in.end, acct_out.end);
    let ingress = match content_length {
        Some(len) => Hold::reserve(acct_in, len, ingress_limit),
        None => acct_in.has_room(ingress_limit).then(|| Hold::open(acct_in)),
    };
    let ingress =
        ingress.ok_or_else(|| quota(Quota::Ingress, "the plan's ingress limit", in_end, now))?;
    if !acct_out.has_room(egress_limit) {
        let what = "the plan's egress limit";
        return Err(quota(Quota::Egress, what, out_end, now));
    }
    let open = |scope: &Slots, counter| Hold::open(scope.get(counter).clone());
    t.ingress = Holds::from_iter([
        ingress,
        open(&slots.key, Counter::BytesIn),
        open(&slots.partner, Counter::BytesIn),
    ]);
    t.egress = Holds::from_iter([
        Hold::open(acct_out),
        open(&slots.key, Counter::BytesOut),
        open(&slots.partner, Counter::BytesOut),
    ]);
    Ok(())
}

/// Counts the request and opens the cost counters of account and partner (no limits there:
/// the partner's limit is its balance, reserved above).
fn record_costs_and_requests(t: &mut Ticket, slots: &Scopes) {
    for scope in [&slots.key, &slots.account, &slots.partner] {
        scope.get(Counter::Requests).record(1, 0);
    }
    for counter in [Counter::CostDay, Counter::CostTotal] {
        t.cost_raw
            .push(Hold::open(slots.account.get(counter).clone()));
        t.cost_charged
            .push(Hold::open(slots.partner.get(counter).clone()));
    }
}
