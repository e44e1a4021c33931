//! The counters one scope (a key, an account or a partner) keeps: requests per day, bytes in
//! and out per billing period, cost per day and over its lifetime.

use std::sync::Arc;

use uuid::Uuid;

use super::windowed::{Cell, Counter, Owner, Retired, Slots, Windows};

/// Who a counter belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Key,
    Account,
    Partner,
}

impl Scope {
    /// The scope of a stored name.
    pub fn parse(s: &str) -> Option<Scope> {
        [Scope::Key, Scope::Account, Scope::Partner]
            .into_iter()
            .find(|x| x.as_str() == s)
    }

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Account => "account",
            Scope::Partner => "partner",
        }
    }
}

/// What a counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    Requests,
    BytesIn,
    BytesOut,
    /// Cost in micro-USD (upstream price; partner scope: after the tier multiplier).
    Cost,
}

impl Metric {
    /// The metric of a stored name.
    pub fn parse(s: &str) -> Option<Metric> {
        [
            Metric::Requests,
            Metric::BytesIn,
            Metric::BytesOut,
            Metric::Cost,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::BytesIn => "bytes_in",
            Metric::BytesOut => "bytes_out",
            Metric::Cost => "cost_micros",
        }
    }
}

/// Totals from the store, loaded at start and refreshed by every sync: (scope, id, metric,
/// window label) → used. A scope's counters start from here when first used.
pub type Initial = dashmap::DashMap<(Scope, Uuid, Metric, String), u64>;

/// The counters of one scope.
#[derive(Debug)]
pub struct ScopeUsage {
    pub scope: Scope,
    pub id: Uuid,
    windows: Windows,
}

impl ScopeUsage {
    /// Counters for `scope`/`id`, starting from what the store holds for the windows of `now`
    /// in the calendar `offset` seconds east of UTC. With `leases`, a key's cost counters
    /// admit only against budget leases.
    pub fn new(
        scope: Scope,
        id: Uuid,
        now: i64,
        offset: i64,
        initial: &Initial,
        leases: bool,
    ) -> Self {
        let owners = Counter::ALL.map(|counter| {
            let (metric, window) = counter.metric_window();
            Owner {
                scope,
                id,
                metric,
                window,
                offset,
                leased: leases && scope == Scope::Key && metric == Metric::Cost,
            }
        });
        let used = |owner: &Owner| {
            let window = owner.window.label_in(offset, now);
            initial
                .get(&(scope, id, owner.metric, window))
                .map_or(0, |v| *v)
        };
        ScopeUsage {
            scope,
            id,
            windows: Windows::new(owners, now, used),
        }
    }

    /// The slots of the windows containing `now`, rolling over those that ended.
    pub fn current(&self, now: i64, retired: &Retired) -> Arc<Slots> {
        self.windows.current(now, retired)
    }

    /// The current slots without rolling over (for flushing and reporting).
    pub fn peek(&self) -> Arc<Slots> {
        self.windows.peek()
    }

    /// Whose counter `counter` is.
    pub fn owner(&self, counter: Counter) -> Owner {
        self.windows.owner(counter)
    }

    /// Requests per day.
    pub fn requests(&self) -> Cell<'_> {
        self.windows.cell(Counter::Requests)
    }

    /// Bytes received per month.
    pub fn bytes_in(&self) -> Cell<'_> {
        self.windows.cell(Counter::BytesIn)
    }

    /// Bytes sent per month.
    pub fn bytes_out(&self) -> Cell<'_> {
        self.windows.cell(Counter::BytesOut)
    }

    /// Cost per day.
    pub fn cost_day(&self) -> Cell<'_> {
        self.windows.cell(Counter::CostDay)
    }

    /// Cost over the scope's lifetime.
    pub fn cost_total(&self) -> Cell<'_> {
        self.windows.cell(Counter::CostTotal)
    }
}

/// A stored counter total for one window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterRow {
    pub scope: String,
    pub scope_id: Uuid,
    pub metric: String,
    pub window: String,
    pub value: u64,
}
