//! The account API (`/api/v0/stats`, `/plans`, `/key`, `/keys`), called with one of the
//! account's own keys holding `admin` (`Authorization: Basic base64(access_key:access_secret)`
//! or `Bearer cr_...`): the account's usage, the plan list and the account's own keys.

use crate::meter::stats::AccountStats;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{AdminKey, V0Json, V0Query};
use super::keys::{self, CreatedPair, KeyItem, V0Paging};
use super::{Envelope, V0Error, V0Result, done, ok, page, usage};
use crate::api::ApiState;
use crate::api::openapi::{V0AccountErrors, V0BodyErrors, V0Message};
use crate::api::paging::PageQuery;
use crate::config::model::Plan;
use crate::domain::hot_key::HotKey;
use crate::domain::key::Account;
use crate::domain::permission::Permission;

/// The `provider` the stats report.
const PROVIDER: &str = "tollgate";
/// Micro-USD per cent.
const CENT: u64 = 10_000;

/// Body of `POST /key`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOwnKey {
    /// The key's name, unique among the account's live keys.
    #[schema(min_length = 1, max_length = 128)]
    name: String,
    #[schema(min_items = 1)]
    permissions: Vec<Permission>,
}

/// Body of `DELETE /key`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteOwnKey {
    #[schema(min_length = 1, max_length = 128)]
    name: String,
}

/// `data` of `GET /stats`, in the seed's field order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    name: Option<String>,
    provider: &'static str,
    email: Option<String>,
    email_verified: bool,
    /// plan, pinned count/bytes, ingress, egress, ipns, each with its limit.
    #[serde(flatten)]
    usage: AccountStats,
}

/// One entry of `GET /plans` (limits: 0 = unlimited).
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanItem {
    id: i64,
    name: String,
    price: String,
    pinned_count_limit: u64,
    pinned_bytes_limit: u64,
    ingress_limit: u64,
    egress_limit: u64,
    ipns_limit: u64,
}

impl From<&Plan> for PlanItem {
    fn from(p: &Plan) -> Self {
        let limit = |v: Option<std::num::NonZeroU64>| v.map_or(0, |n| n.get());
        PlanItem {
            id: p.id,
            name: p.name.clone(),
            price: price(p.price_micros),
            pinned_count_limit: limit(p.pinned_count_limit),
            pinned_bytes_limit: limit(p.pinned_bytes_limit),
            ingress_limit: limit(p.ingress_limit),
            egress_limit: limit(p.egress_limit),
            ipns_limit: p.ipns_limit.map_or(0, |n| u64::from(n.get())),
        }
    }
}

/// Gateway3: own usage.
///
/// The key's account, its plan and live usage.
#[utoipa::path(get, path = "/stats", operation_id = "v0_stats", tag = "gateway3-account", security(("accessKeyPair" = [])),
    responses((status = 200, body = Envelope<Stats>), V0AccountErrors))]
pub async fn stats(State(state): State<ApiState>, AdminKey(key): AdminKey) -> V0Result<Stats> {
    let account = account_of(&state, &key).await?;
    let usage = usage(&state, &account).await;
    ok(Stats {
        name: account.name,
        provider: PROVIDER,
        email: account.email,
        // Tollgate does not verify addresses; the partner vouches for them.
        email_verified: false,
        usage,
    })
}

/// Gateway3: the plans.
///
/// Every configured plan, by id.
#[utoipa::path(get, path = "/plans", operation_id = "v0_plans", tag = "gateway3-account", security(("accessKeyPair" = [])),
    responses((status = 200, body = Envelope<Vec<PlanItem>>), V0AccountErrors))]
pub async fn plans(
    State(state): State<ApiState>,
    AdminKey(_): AdminKey,
) -> V0Result<Vec<PlanItem>> {
    let mut plans: Vec<&Plan> = state.plans.values().collect();
    plans.sort_unstable_by_key(|p| p.id);
    ok(plans.into_iter().map(PlanItem::from).collect())
}

/// Gateway3: create an own access key.
#[utoipa::path(post, path = "/key", operation_id = "v0_create_key", tag = "gateway3-account", security(("accessKeyPair" = [])),
    request_body = CreateOwnKey,
    responses((status = 200, body = Envelope<CreatedPair>),
        (status = 409, description = "The account has a live key with this name", body = V0Message),
        (status = 429, description = "The partner's hourly key creations are spent", body = V0Message,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        V0BodyErrors, V0AccountErrors))]
pub async fn create_key(
    State(state): State<ApiState>,
    AdminKey(key): AdminKey,
    V0Json(body): V0Json<CreateOwnKey>,
) -> V0Result<CreatedPair> {
    let account = account_of(&state, &key).await?;
    let by = format!("key:{}", key.id);
    ok(keys::create(&state, &account, &body.name, &body.permissions, by).await?)
}

/// Gateway3: own access keys.
///
/// The account's live keys, oldest first. Without `limit` the whole list up to 1000 keys (the
/// Gateway3 shape); `next_cursor` appears when more follow.
#[utoipa::path(get, path = "/keys", operation_id = "v0_list_keys", tag = "gateway3-account", security(("accessKeyPair" = [])),
    params(V0Paging),
    responses((status = 200, body = Envelope<Vec<KeyItem>>),
        (status = 400, description = "`limit` or `cursor` is malformed", body = V0Message),
        V0AccountErrors))]
pub async fn list_keys(
    State(state): State<ApiState>,
    AdminKey(key): AdminKey,
    V0Query(paging): V0Query<V0Paging>,
) -> V0Result<Vec<KeyItem>> {
    let account = account_of(&state, &key).await?;
    let paging = PageQuery::new(paging.limit, paging.cursor);
    page(keys::list(&state, &account, &paging).await?)
}

/// Gateway3: delete an own key by name.
///
/// Revokes one of the account's keys for good (the caller's own included).
#[utoipa::path(delete, path = "/key", operation_id = "v0_delete_key", tag = "gateway3-account", security(("accessKeyPair" = [])),
    request_body = DeleteOwnKey,
    responses((status = 200, body = V0Message),
        (status = 404, description = "The account has no live key with this name", body = V0Message),
        V0BodyErrors, V0AccountErrors))]
pub async fn delete_key(
    State(state): State<ApiState>,
    AdminKey(key): AdminKey,
    V0Json(body): V0Json<DeleteOwnKey>,
) -> V0Result<()> {
    let account = account_of(&state, &key).await?;
    keys::delete(&state, &account, &body.name, format!("key:{}", key.id)).await?;
    done()
}

async fn account_of(state: &ApiState, key: &HotKey) -> Result<Account, V0Error> {
    state
        .manager
        .account(key.account_id)
        .await?
        .ok_or_else(|| V0Error::NotFound("the key's account does not exist".into()))
}

/// A plan price as the seed writes it: `0.00` when free, otherwise `$ 9.99`.
pub fn price(micros: u64) -> String {
    if micros == 0 {
        "0.00".to_string()
    } else {
        format!("$ {}", price_digits(micros))
    }
}

/// `9.99`, `10.00`, `0.001`: dollars with at least two decimals and no rounding.
pub fn price_digits(micros: u64) -> String {
    let (dollars, rest) = (micros / 1_000_000, micros % 1_000_000);
    if rest % CENT == 0 {
        format!("{dollars}.{:02}", rest / CENT)
    } else {
        let frac = format!("{rest:06}");
        format!("{dollars}.{}", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_read_like_the_seed() {
        assert_eq!(price(0), "0.00");
        assert_eq!(price(9_990_000), "$ 9.99");
        assert_eq!(price(10_000_000), "$ 10.00");
        assert_eq!(price(1_000), "$ 0.001");
        assert_eq!(price(123_456_789), "$ 123.456789");
    }
}
