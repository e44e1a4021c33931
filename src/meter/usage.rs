//! The counters one scope (a key, an account or a partner) keeps: requests per day, bytes in
//! and out per billing period, cost per day and over its lifetime.

use std::sync::Arc;

use uuid::Uuid;

use super::cell::Slot;
use super::window::Window;
use super::windowed::{Owner, Retired, WindowedCell};

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
    pub requests: WindowedCell,
    pub bytes_in: WindowedCell,
    pub bytes_out: WindowedCell,
    pub cost_day: WindowedCell,
    pub cost_total: WindowedCell,
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
        let cell = |metric: Metric, window: Window| {
            let used = initial
                .get(&(scope, id, metric, window.label_in(offset, now)))
                .map_or(0, |v| *v);
            let owner = Owner {
                scope,
                id,
                metric,
                window,
                offset,
                leased: leases && scope == Scope::Key && metric == Metric::Cost,
            };
            WindowedCell::new(owner, now, used)
        };
        ScopeUsage {
            scope,
            id,
            requests: cell(Metric::Requests, Window::Day),
            bytes_in: cell(Metric::BytesIn, Window::Month),
            bytes_out: cell(Metric::BytesOut, Window::Month),
            cost_day: cell(Metric::Cost, Window::Day),
            cost_total: cell(Metric::Cost, Window::Lifetime),
        }
    }

    /// Every counter.
    pub fn cells(&self) -> [&WindowedCell; 5] {
        [
            &self.requests,
            &self.bytes_in,
            &self.bytes_out,
            &self.cost_day,
            &self.cost_total,
        ]
    }

    /// Current slots of the byte counters: (in, out).
    pub fn bytes(&self, now: i64, retired: &Retired) -> (Arc<Slot>, Arc<Slot>) {
        (
            self.bytes_in.current(now, retired),
            self.bytes_out.current(now, retired),
        )
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
