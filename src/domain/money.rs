//! The partner's money ledger: every credit and charge of its balance (an opening balance,
//! top-ups, plan changes, usage), so that the entries always sum to the balance.

use uuid::Uuid;

/// What moved the balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerKind {
    /// The balance when the ledger began (partners older than it).
    Opening,
    /// An operator's top-up or correction.
    TopUp,
    /// Moving an account to another plan.
    PlanChange,
    /// Metered usage of one UTC day, grown by each flush.
    Usage,
}

impl LedgerKind {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Opening => "opening",
            LedgerKind::TopUp => "top_up",
            LedgerKind::PlanChange => "plan_change",
            LedgerKind::Usage => "usage",
        }
    }

    /// The kind of a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            LedgerKind::Opening,
            LedgerKind::TopUp,
            LedgerKind::PlanChange,
            LedgerKind::Usage,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// One ledger entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: Uuid,
    pub partner_id: Uuid,
    /// Unix seconds: when the entry was made (a usage entry: the day's first flush). Entries
    /// are ordered by `at`, then by `id`, a UUIDv7 (time-ordered).
    pub at: i64,
    pub kind: LedgerKind,
    /// Signed: a credit is positive, a charge negative.
    pub amount_micros: i64,
    /// The account a plan change was for.
    pub account_id: Option<Uuid>,
    /// The plan an account moved to.
    pub plan_id: Option<i64>,
    /// The UTC day (`YYYY-MM-DD`) of a usage entry.
    pub day: Option<String>,
    pub note: Option<String>,
}

impl LedgerEntry {
    /// A new entry (a time-ordered UUIDv7 id) of `kind` for `amount_micros`, with no account,
    /// plan, day or note.
    pub fn new(partner_id: Uuid, at: i64, kind: LedgerKind, amount_micros: i64) -> Self {
        LedgerEntry {
            id: Uuid::now_v7(),
            partner_id,
            at,
            kind,
            amount_micros,
            account_id: None,
            plan_id: None,
            day: None,
            note: None,
        }
    }
}

/// What a plan change costs: plans are paid by the calendar month (UTC), and within one month
/// a partner pays the highest price the account held, once. `peak` is that price so far this
/// month (the old plan's price when the month's first change happens); moving above it charges
/// the difference, moving below or back up to it charges nothing. Returns (charge, new peak).
pub fn plan_change_charge(peak: u64, new_price: u64) -> (u64, u64) {
    (new_price.saturating_sub(peak), peak.max(new_price))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_costs_its_highest_plan_once() {
        // Free → 10 → 5 → 10 → 20 in one month: 10, 0, 0, then 10 more.
        let (charge, peak) = plan_change_charge(0, 10);
        assert_eq!((charge, peak), (10, 10));
        let (charge, peak) = plan_change_charge(peak, 5);
        assert_eq!((charge, peak), (0, 10));
        let (charge, peak) = plan_change_charge(peak, 10);
        assert_eq!((charge, peak), (0, 10), "moving back up costs nothing more");
        assert_eq!(plan_change_charge(peak, 20), (10, 20));
        for kind in ["opening", "top_up", "plan_change", "usage"] {
            assert_eq!(LedgerKind::parse(kind).unwrap().as_str(), kind);
        }
        assert_eq!(LedgerKind::parse("gift"), None);
    }
}
