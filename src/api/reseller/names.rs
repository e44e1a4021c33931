//! The owner and actor names of the key objects the reseller surface answers with (Partoo's
//! `user_*` and `*_by_name` fields), looked up once per call however many keys it shows.

use std::collections::HashMap;

use uuid::Uuid;

use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::api::key_object::{KeyObject, KeyOwner};
use crate::domain::key::{Key, Partner};

/// Resolves owners and names for one call of one partner.
pub struct Names<'a> {
    state: &'a ApiState,
    partner: &'a Partner,
    default_account: Option<Uuid>,
    owners: HashMap<Uuid, KeyOwner>,
    actors: HashMap<String, Option<String>>,
}

impl<'a> Names<'a> {
    pub fn new(state: &'a ApiState, partner: &'a Partner) -> Self {
        Names {
            state,
            partner,
            default_account: None,
            owners: HashMap::new(),
            actors: HashMap::new(),
        }
    }

    /// The key object of `key`, with its owner and the names behind its `*_by` fields.
    pub async fn object(&mut self, key: &Key) -> Result<KeyObject, ApiError> {
        let owner = self.owner(key.account_id).await?;
        let actors = [
            Some(&key.created_by),
            key.revoked_by.as_ref(),
            key.status_changed_by.as_ref(),
        ];
        for actor in actors.into_iter().flatten() {
            if !self.actors.contains_key(actor) {
                let name = self.actor_name(actor).await?;
                self.actors.insert(actor.clone(), name);
            }
        }
        Ok(KeyObject::new(key, owner, |by| {
            self.actors.get(by).cloned().flatten()
        }))
    }

    async fn owner(&mut self, account_id: Uuid) -> Result<KeyOwner, ApiError> {
        if let Some(owner) = self.owners.get(&account_id) {
            return Ok(owner.clone());
        }
        let manager = &self.state.manager;
        let default = match self.default_account {
            Some(id) => id,
            None => manager.default_account(self.partner.id).await?.id,
        };
        self.default_account = Some(default);
        let owner = if account_id == default {
            KeyOwner {
                user_id: Some(self.partner.id.to_string()),
                user_name: Some(self.partner.name.clone()),
                user_role: Some("partner"),
                user_type: Some("partner"),
            }
        } else {
            let account = manager.account(account_id).await?;
            KeyOwner {
                user_id: account.as_ref().map(|a| a.external_id.clone()),
                user_name: account.and_then(|a| a.name),
                user_role: Some("account"),
                user_type: Some("user"),
            }
        };
        self.owners.insert(account_id, owner.clone());
        Ok(owner)
    }

    /// The name of `partner:<id>` (this partner) or `key:<id>` (one of its keys); other actors
    /// (`demo`, an operator, a name recorded by an older version) have none.
    async fn actor_name(&self, actor: &str) -> Result<Option<String>, ApiError> {
        if let Some(id) = actor.strip_prefix("partner:") {
            let mine = id == self.partner.id.to_string();
            return Ok(mine.then(|| self.partner.name.clone()));
        }
        let Some(id) = actor.strip_prefix("key:").and_then(|id| id.parse().ok()) else {
            return Ok(None);
        };
        let key = self.state.manager.key(id).await?;
        Ok(key
            .filter(|k| k.partner_id == self.partner.id)
            .map(|k| k.name))
    }
}
