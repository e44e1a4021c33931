//! A key's live admission state, owned by the meter: its request-rate limiter, its requests in
//! flight (the concurrency limit) and its links to the usage counters it is metered on. The
//! index keeps one beside each key that was used, across updates of the key's record.
//!
//! Admission is two calls, in this order: [`KeyGate::enter`] (the rate token and the
//! concurrency slot, before any request body is read) and [`Meter::admit`](super::Meter::admit)
//! (every cost, balance and byte quota, once the body is priced).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::Meter;
use super::admit::{self, Facts, Links, Ticket, take_slot};
use super::hold::{InFlight, InFlightGuard};
use crate::config::model::Plan;
use crate::domain::decision::{Denial, DenyCode};
use crate::domain::hot_key::HotKey;

/// A key's request-rate limiter (GCRA, `governor`), built on first use and rebuilt only when
/// the limit changes.
#[derive(Debug)]
struct RateLimit {
    per_minute: NonZeroU32,
    limiter: DefaultDirectRateLimiter,
}

/// Takes one token of `limiter`; `Err(seconds)` says when the next one is due.
fn check(limiter: &DefaultDirectRateLimiter) -> Result<(), u64> {
    limiter.check().map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    })
}

/// A key's rate limiter, requests in flight and counter links.
#[derive(Debug, Default)]
pub struct KeyGate {
    /// The key's rate limit per minute, 0 for none.
    per_minute: AtomicU32,
    /// Requests of this key in flight (its concurrency limit).
    pub in_flight: Arc<InFlight>,
    rate: ArcSwapOption<RateLimit>,
    links: OnceLock<Links>,
}

impl KeyGate {
    /// The gate of a key limited to `limit` requests per minute (`None`: no limit).
    pub fn new(limit: Option<NonZeroU32>) -> Self {
        let gate = KeyGate::default();
        gate.set_rate(limit);
        gate
    }

    /// Changes the rate limit (the key's record was updated).
    pub fn set_rate(&self, limit: Option<NonZeroU32>) {
        self.per_minute
            .store(limit.map_or(0, NonZeroU32::get), Ordering::Release);
    }

    /// The key's rate token and concurrency slot (the slot is held until the guard drops).
    pub fn enter(&self, key: &HotKey) -> Result<Option<InFlightGuard>, Denial> {
        self.check_rate()
            .map_err(|secs| Denial::new(DenyCode::RateLimited).retry_after(secs.max(1)))?;
        take_slot(key, &self.in_flight)
    }

    /// Takes one request token; `Err(seconds)` says when the next one is due.
    pub fn check_rate(&self) -> Result<(), u64> {
        let Some(per_minute) = NonZeroU32::new(self.per_minute.load(Ordering::Acquire)) else {
            return Ok(());
        };
        let current = self.rate.load();
        if let Some(rate) = current.as_ref()
            && rate.per_minute == per_minute
        {
            return check(&rate.limiter);
        }
        // First request of the key, or its limit changed: a fresh limiter, installed by one
        // compare-and-swap so that racing requests all end up on the same one.
        let fresh = Arc::new(RateLimit {
            per_minute,
            limiter: RateLimiter::direct(Quota::per_minute(per_minute)),
        });
        let prev = self.rate.compare_and_swap(&current, Some(fresh.clone()));
        let won = match (prev.as_ref(), current.as_ref()) {
            (Some(p), Some(c)) => Arc::ptr_eq(p, c),
            (None, None) => true,
            _ => false,
        };
        let rate = if won {
            fresh
        } else {
            self.rate.load_full().unwrap_or(fresh)
        };
        check(&rate.limiter)
    }

    /// The key's usage counters with its account's and partner's; `None` if the account or
    /// partner is not registered with the meter.
    pub fn links(&self, key: &HotKey, meter: &Meter, now: i64) -> Option<&Links> {
        if let Some(links) = self.links.get() {
            return Some(links);
        }
        let links = Links {
            key: meter.key_usage(key.id, now),
            account: meter.account(key.account_id)?,
            partner: meter.partner(key.partner_id)?,
        };
        Some(self.links.get_or_init(|| links))
    }
}

impl Meter {
    /// Every cost, balance and byte quota of the key, its account and its partner reserved for
    /// one request (`facts`: its length and price estimate), or the one that refuses it.
    pub fn admit(
        &self,
        key: &HotKey,
        gate: &KeyGate,
        plans: &HashMap<i64, Plan>,
        facts: Facts,
        now: i64,
    ) -> Result<Ticket, Denial> {
        let links = gate.links(key, self, now).ok_or_else(|| {
            Denial::with_message(DenyCode::InvalidKey, "the key's account is not active")
        })?;
        admit::admit(key, links, plans, &self.retired, facts, now)
    }
}
