//! Account management for the Gateway3 APIs: accounts a partner creates for its users, plan
//! changes paid from the partner's prepaid balance, and an account's keys by name. As
//! everywhere in `manage`, the store is written first and the live meter/index after.

use std::collections::HashMap;

use uuid::Uuid;

use super::{ManageError, Manager};
use crate::config::model::Plan;
use crate::domain::key::{Account, Key};
use crate::domain::money::plan_change_charge;
use crate::meter::hold::Hold;
use crate::store::{KeyChange, Page, PlanChange, PlanMove};

/// What a partner gives to create an account.
#[derive(Clone, Debug)]
pub struct NewAccount {
    pub partner_id: Uuid,
    /// The partner's own identifier for the user (Gateway3 `uuid`).
    pub external_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// The outcome of [`Manager::change_plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanOutcome {
    /// The account is on the plan now; `charged` micro-USD were taken from the partner.
    Changed { account: Account, charged: u64 },
    /// The partner's balance does not cover `needed`; nothing changed.
    InsufficientBalance { needed: u64, balance: i64 },
    /// There is no such account.
    NoAccount,
}

/// How many times a plan change is computed again when other instances keep moving the same
/// account meanwhile.
const MAX_PLAN_ATTEMPTS: usize = 5;

impl Manager {
    /// Creates an account on the default plan; a duplicate external id is
    /// `Store(Conflict("uuid"))`.
    pub async fn create_account(&self, new: NewAccount) -> Result<Account, ManageError> {
        // Under the write lock, for the same reason as keys (see `create_key`).
        let _write = self.write_lock.lock().await;
        let now = self.clock.now_unix();
        let account = Account {
            id: Uuid::now_v7(),
            partner_id: new.partner_id,
            external_id: new.external_id,
            email: new.email,
            name: new.name,
            plan_id: self.default_plan,
            created_at: now,
        };
        self.store.create_account(&account).await?;
        self.meter.upsert_account(&account, now);
        Ok(account)
    }

    /// A partner's account by its external id (never the partner's default account).
    pub async fn account_by_external_id(
        &self,
        partner: Uuid,
        external_id: &str,
    ) -> Result<Option<Account>, ManageError> {
        Ok(self
            .store
            .account_by_external_id(partner, external_id)
            .await?)
    }

    /// An account by id.
    pub async fn account(&self, id: Uuid) -> Result<Option<Account>, ManageError> {
        Ok(self.store.get_account(id).await?)
    }

    /// Moves an account to `plan`, charging the partner what goes above the month's highest
    /// plan price (see [`plan_change_charge`]) against its live balance. The charge is reserved on the live balance
    /// first (so concurrent usage cannot spend it meanwhile), then the plan and the debit are
    /// stored in one transaction, and only then does the meter see the new plan and balance.
    /// Plan changes are serialised, so the charge is always computed from the stored plan.
    pub async fn change_plan(
        &self,
        account_id: Uuid,
        plan: &Plan,
        plans: &HashMap<i64, Plan>,
    ) -> Result<PlanOutcome, ManageError> {
        let _write = self.write_lock.lock().await;
        // Another instance moving the same account at the same moment makes one of the two
        // writes find the plan changed; that one computes its charge again.
        for _ in 0..MAX_PLAN_ATTEMPTS {
            if let Some(outcome) = self.try_change_plan(account_id, plan, plans).await? {
                return Ok(outcome);
            }
        }
        Err(ManageError::Store(crate::store::StoreError::Interrupted(
            "the account's plan kept changing under this plan change".into(),
        )))
    }

    /// One attempt of [`Manager::change_plan`]; `None` if another writer changed the account's
    /// plan since it was read here (nothing was charged).
    async fn try_change_plan(
        &self,
        account_id: Uuid,
        plan: &Plan,
        plans: &HashMap<i64, Plan>,
    ) -> Result<Option<PlanOutcome>, ManageError> {
        let Some(account) = self.store.get_account(account_id).await? else {
            return Ok(Some(PlanOutcome::NoAccount));
        };
        if account.plan_id == Some(plan.id) {
            return Ok(Some(PlanOutcome::Changed {
                account,
                charged: 0,
            }));
        }
        let old = account.plan_id.and_then(|id| plans.get(&id));
        let now = self.clock.now_unix();
        let period = self.today().format("%Y-%m").to_string();
        let Some((stored_period, stored_peak)) = self.store.plan_period(account.id).await? else {
            return Ok(Some(PlanOutcome::NoAccount));
        };
        // The month's peak so far; before the month's first change, the plan held since its
        // start.
        let peak = match &stored_period {
            Some(stored) if *stored == period => stored_peak,
            _ => old.map_or(0, |p| p.price_micros),
        };
        let (needed, peak) = plan_change_charge(peak, plan.price_micros);
        let partner = self.meter.partner(account.partner_id);
        let hold = match (&partner, needed) {
            (Some(live), 1..) => {
                match Hold::reserve(live.spent.clone(), needed, Some(live.credit())) {
                    Some(hold) => Some(hold),
                    None => {
                        let balance = live.balance();
                        return Ok(Some(PlanOutcome::InsufficientBalance { needed, balance }));
                    }
                }
            }
            _ => None,
        };
        let change = PlanMove {
            expected: (account.plan_id, stored_period, stored_peak),
            plan_id: plan.id,
            charge_micros: needed,
            period,
            peak_micros: peak,
            at: now,
            note: format!(
                "account {}: plan {} to {}",
                account.external_id,
                old.map_or("none", |p| p.name.as_str()),
                plan.name
            ),
        };
        let account = match self.store.set_account_plan(account.id, &change).await? {
            PlanChange::Changed(account) => account,
            PlanChange::InsufficientBalance(balance) => {
                return Ok(Some(PlanOutcome::InsufficientBalance { needed, balance }));
            }
            PlanChange::NoAccount => return Ok(Some(PlanOutcome::NoAccount)),
            PlanChange::Raced => return Ok(None),
        };
        if self.store.cluster().is_some() {
            // Shared store: the sync reads the debited balance back (adding here would race
            // it); wake it now. The reservation stays until the sync task has run.
            self.meter.sync_now.notify_one();
        } else if let Some(live) = &partner {
            // Lower the credit before giving the reservation back, so the live balance never
            // reads higher than the stored one.
            live.credit_add_signed(-i64::try_from(needed).unwrap_or(i64::MAX));
        }
        drop(hold);
        self.meter.upsert_account(&account, self.clock.now_unix());
        Ok(Some(PlanOutcome::Changed {
            account,
            charged: needed,
        }))
    }

    /// A page of the account's keys that are not revoked, oldest first.
    pub async fn live_keys(&self, account_id: Uuid, page: Page) -> Result<Vec<Key>, ManageError> {
        Ok(self.store.live_keys_of_account(account_id, page).await?)
    }

    /// Revokes the account's live key called `name` for good (the data plane refuses it from
    /// the next request on); `None` if the account has no such key.
    pub async fn revoke_key_by_name(
        &self,
        account_id: Uuid,
        name: &str,
        by: String,
    ) -> Result<Option<Key>, ManageError> {
        let keys = self.live_keys(account_id, Page::ALL).await?;
        let Some(key) = keys.into_iter().find(|k| k.name == name) else {
            return Ok(None);
        };
        let at = self.clock.now_unix();
        self.change_key(key.id, KeyChange::Revoke { at, by }).await
    }
}
