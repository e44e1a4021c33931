//! Account usage as the Gateway3 stats API reports it: each figure with its plan limit, read
//! from the live counters (which start from the store and include what is not flushed yet).

use std::collections::HashMap;

use serde::Serialize;

use super::AccountLive;
use crate::config::model::Plan;

/// Usage of one account in the current billing period, with the plan's limits (0 = none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AccountStats {
    pub plan: Option<String>,
    pub pinned_count: u64,
    pub pinned_count_limit: u64,
    pub pinned_bytes: u64,
    pub pinned_bytes_limit: u64,
    pub ingress: u64,
    pub ingress_limit: u64,
    pub egress: u64,
    pub egress_limit: u64,
    pub ipns: u64,
    pub ipns_limit: u64,
}

/// The stats of `account` at `now`. Pins and IPNS names are left at 0 for the caller to fill
/// in from the kubo ledger (`meter::pins`), which only the kubo profile keeps.
pub fn account_stats(account: &AccountLive, plans: &HashMap<i64, Plan>, now: i64) -> AccountStats {
    let plan = account.plan_id().and_then(|id| plans.get(&id));
    let limit = |v: Option<std::num::NonZeroU64>| v.map_or(0, |n| n.get());
    let usage = &account.usage;
    // Peek at the slot only if it is the current window; an old window reads as zero.
    let current = |cell: super::windowed::Cell<'_>| {
        let slot = cell.peek();
        let owner = cell.owner();
        if slot.start == owner.window.start_in(owner.offset, now) {
            slot.total_used()
        } else {
            0
        }
    };
    AccountStats {
        plan: plan.map(|p| p.name.clone()),
        pinned_count_limit: limit(plan.and_then(|p| p.pinned_count_limit)),
        pinned_bytes_limit: limit(plan.and_then(|p| p.pinned_bytes_limit)),
        ingress: current(usage.bytes_in()),
        ingress_limit: limit(plan.and_then(|p| p.ingress_limit)),
        egress: current(usage.bytes_out()),
        egress_limit: limit(plan.and_then(|p| p.egress_limit)),
        ipns_limit: plan
            .and_then(|p| p.ipns_limit)
            .map_or(0, |n| u64::from(n.get())),
        ..AccountStats::default()
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;

    use super::*;
    use crate::domain::key::Account;
    use crate::meter::Meter;
    use crate::meter::windowed::Counter;

    const NOW: i64 = 1_795_435_200;

    #[test]
    fn stats_read_live_counters_and_plan_limits() {
        let meter = Meter::default();
        let account = Account {
            id: uuid::Uuid::new_v4(),
            partner_id: uuid::Uuid::new_v4(),
            external_id: "u".into(),
            email: None,
            name: None,
            plan_id: Some(1),
            created_at: 0,
        };
        let live = meter.upsert_account(&account, NOW);
        let plan = Plan {
            id: 1,
            name: "Free".into(),
            price_micros: 0,
            pinned_count_limit: NonZeroU64::new(100),
            pinned_bytes_limit: None,
            ingress_limit: NonZeroU64::new(5000),
            egress_limit: NonZeroU64::new(6000),
            ipns_limit: std::num::NonZeroU32::new(3),
        };
        let plans = HashMap::from([(1, plan)]);
        let slots = live.usage.current(NOW, &meter.retired);
        slots.get(Counter::BytesIn).record(1234, 0);
        slots.get(Counter::BytesOut).record(99, 0);
        let s = account_stats(&live, &plans, NOW);
        assert_eq!(
            (s.ingress, s.ingress_limit, s.egress, s.egress_limit),
            (1234, 5000, 99, 6000)
        );
        assert_eq!((s.pinned_count_limit, s.ipns_limit), (100, 3));
        assert_eq!(s.plan.as_deref(), Some("Free"));
        // Next month the period starts over.
        let later = account_stats(&live, &plans, NOW + 40 * 86_400);
        assert_eq!((later.ingress, later.egress), (0, 0));
    }
}
