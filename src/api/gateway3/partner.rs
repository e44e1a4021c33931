//! The partner API (`/api/v0/partner/user/...`): a partner creates accounts for its users
//! (addressed by the partner's own `uuid`), reads their usage, changes their plan (paying the
//! price difference from its balance) and manages their access keys. A partner only ever sees
//! its own accounts: another partner's `uuid` is a 404, never a 403.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{V0Json, V0Partner, V0Query};
use super::keys::{self, CreatedPair, KeyItem};
use super::{Envelope, V0Error, V0Result, done, ok, page, usage};
use crate::api::openapi::{V0BodyErrors, V0Message, V0PartnerErrors};
use crate::api::paging::PageQuery;
use crate::api::{ApiState, key_object};
use crate::config::model::Plan;
use crate::domain::key::Account;
use crate::domain::permission::Permission;
use crate::manage::accounts::{NewAccount, PlanOutcome};

/// Longest `uuid`, `name` and `email` accepted.
const MAX_UUID: usize = 128;
const MAX_NAME: usize = 128;
const MAX_EMAIL: usize = 254;

/// Body of `POST /partner/user/create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// The partner's own identifier of the user, 1 to 128 characters.
    #[schema(min_length = 1, max_length = 128)]
    uuid: String,
    #[schema(format = Email, max_length = 254)]
    email: String,
    #[schema(max_length = 128)]
    name: Option<String>,
}

/// `?uuid=` of the GET calls.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// The partner's own identifier of the user.
    #[param(min_length = 1, max_length = 128)]
    uuid: String,
}

/// `?uuid=&limit=&cursor=` of `GET /partner/user/keys`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserKeysQuery {
    /// The partner's own identifier of the user.
    #[param(min_length = 1, max_length = 128)]
    uuid: String,
    /// Keys per page: 1 to 1000, all up to 1000 when not given.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Body of `POST /partner/user/update-plan`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlan {
    #[schema(min_length = 1, max_length = 128)]
    uuid: String,
    /// The id of a plan of `GET /api/v0/plans`.
    plan_id: i64,
}

/// Body of `POST /partner/user/key`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserKey {
    #[schema(min_length = 1, max_length = 128)]
    uuid: String,
    /// The key's name, unique among the account's live keys.
    #[schema(min_length = 1, max_length = 128)]
    name: String,
    #[schema(min_items = 1)]
    permissions: Vec<Permission>,
}

/// Body of `DELETE /partner/user/key`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteUserKey {
    #[schema(min_length = 1, max_length = 128)]
    uuid: String,
    #[schema(min_length = 1, max_length = 128)]
    name: String,
}

/// No user with this `uuid` among the partner's.
#[derive(utoipa::IntoResponses)]
#[response(status = 404)]
#[allow(dead_code)] // a response in the document only
pub struct NoUser(#[to_schema] V0Message);

/// `data` of `GET /partner/user/stats`, in the seed's field order.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserStats {
    name: Option<String>,
    email: Option<String>,
    plan: Option<String>,
    pinned_count: u64,
    pinned_count_limit: u64,
    pinned_bytes: u64,
    pinned_bytes_limit: u64,
    ingress: u64,
    ingress_limit: u64,
    egress: u64,
    egress_limit: u64,
    /// IPNS names (kubo profile), after the seed's fields.
    ipns: u64,
    ipns_limit: u64,
}

/// Gateway3: create an account.
///
/// A new account on the default plan, addressed by the partner's own `uuid`.
#[utoipa::path(post, path = "/partner/user/create", operation_id = "v0_create_user", tag = "gateway3-partner", security(("partnerToken" = [])),
    request_body = CreateUser,
    responses((status = 200, body = V0Message),
        (status = 409, description = "The partner has a user with this uuid", body = V0Message),
        V0BodyErrors, V0PartnerErrors))]
pub async fn create_user(
    State(state): State<ApiState>,
    V0Partner(partner): V0Partner,
    V0Json(body): V0Json<CreateUser>,
) -> V0Result<()> {
    let name = body
        .name
        .map(|n| key_object::text("name", &n, MAX_NAME))
        .transpose()?
        .filter(|n| !n.is_empty());
    let new = NewAccount {
        partner_id: partner.id,
        external_id: user_uuid(&body.uuid)?.to_string(),
        email: Some(email(&body.email)?),
        name,
    };
    state.manager.create_account(new).await?;
    done()
}

/// Gateway3: an account's usage.
#[utoipa::path(get, path = "/partner/user/stats", operation_id = "v0_user_stats", tag = "gateway3-partner", security(("partnerToken" = [])),
    params(UserQuery),
    responses((status = 200, body = Envelope<UserStats>),
        (status = 400, description = "`uuid` is missing or malformed", body = V0Message),
        NoUser, V0PartnerErrors))]
pub async fn user_stats(
    State(state): State<ApiState>,
    V0Partner(partner): V0Partner,
    V0Query(query): V0Query<UserQuery>,
) -> V0Result<UserStats> {
    let account = user(&state, partner.id, &query.uuid).await?;
    let s = usage(&state, &account).await;
    ok(UserStats {
        name: account.name,
        email: account.email,
        plan: s.plan,
        pinned_count: s.pinned_count,
        pinned_count_limit: s.pinned_count_limit,
        pinned_bytes: s.pinned_bytes,
        pinned_bytes_limit: s.pinned_bytes_limit,
        ingress: s.ingress,
        ingress_limit: s.ingress_limit,
        egress: s.egress,
        egress_limit: s.egress_limit,
        ipns: s.ipns,
        ipns_limit: s.ipns_limit,
    })
}

/// Gateway3: change plan.
///
/// What the new plan's price goes above the highest plan price the account held this month
/// (UTC) is charged to the partner, once (402 and no change if its balance does not cover it);
/// moving down refunds nothing, moving back up within the month costs nothing more. The new
/// limits apply from the next request.
#[utoipa::path(post, path = "/partner/user/update-plan", operation_id = "v0_update_plan", tag = "gateway3-partner", security(("partnerToken" = [])),
    request_body = UpdatePlan,
    responses((status = 200, body = V0Message),
        (status = 402, description = "The partner's balance does not cover the change", body = V0Message),
        NoUser, V0BodyErrors, V0PartnerErrors))]
pub async fn update_plan(
    State(state): State<ApiState>,
    V0Partner(partner): V0Partner,
    V0Json(body): V0Json<UpdatePlan>,
) -> V0Result<()> {
    let plan = plan(&state, body.plan_id)?;
    let account = user(&state, partner.id, &body.uuid).await?;
    let manager = &state.manager;
    let mut outcome = manager.change_plan(account.id, plan, &state.plans).await?;
    // In lease mode the charge is drawn from this instance's lease on the balance, like a
    // request's: when only the lease is short, grow it and try once more.
    if let (PlanOutcome::InsufficientBalance { needed, .. }, Some(leases)) =
        (&outcome, &state.leases)
    {
        let live = manager.meter.partner(partner.id);
        let covered = match live {
            Some(live) => leases
                .cover_balance(&live, *needed)
                .await
                .map_err(|err| V0Error::Internal(err.into()))?,
            None => false,
        };
        if covered {
            outcome = manager.change_plan(account.id, plan, &state.plans).await?;
        }
    }
    match outcome {
        PlanOutcome::Changed { .. } => done(),
        PlanOutcome::InsufficientBalance { needed, balance } => {
            Err(V0Error::PaymentRequired(format!(
                "insufficient balance: moving to plan `{}` costs {} and the partner balance is {}",
                plan.name,
                usd(i64::try_from(needed).unwrap_or(i64::MAX)),
                usd(balance),
            )))
        }
        PlanOutcome::NoAccount => Err(no_user()),
    }
}

/// Gateway3: create an access key.
#[utoipa::path(post, path = "/partner/user/key", operation_id = "v0_create_user_key", tag = "gateway3-partner", security(("partnerToken" = [])),
    request_body = CreateUserKey,
    responses((status = 200, body = Envelope<CreatedPair>),
        (status = 409, description = "The account has a live key with this name", body = V0Message),
        NoUser, V0BodyErrors, V0PartnerErrors))]
pub async fn create_key(
    State(state): State<ApiState>,
    V0Partner(partner): V0Partner,
    V0Json(body): V0Json<CreateUserKey>,
) -> V0Result<CreatedPair> {
    let account = user(&state, partner.id, &body.uuid).await?;
    let by = format!("partner:{}", partner.id);
    ok(keys::create(&state, &account, &body.name, &body.permissions, by).await?)
}

/// Gateway3: an account's keys.
///
/// The account's live keys, oldest first. Without `limit` the whole list up to 1000 keys (the
/// Gateway3 shape); `next_cursor` appears when more follow.
#[utoipa::path(get, path = "/partner/user/keys", operation_id = "v0_list_user_keys", tag = "gateway3-partner", security(("partnerToken" = [])),
    params(UserKeysQuery),
    responses((status = 200, body = Envelope<Vec<KeyItem>>),
        (status = 400, description = "`uuid`, `limit` or `cursor` is missing or malformed", body = V0Message),
        NoUser, V0PartnerErrors))]
pub async fn list_keys(
    State(state): State<ApiState>,
    V0Partner(partner): V0Partner,
    V0Query(query): V0Query<UserKeysQuery>,
) -> V0Result<Vec<KeyItem>> {
    let account = user(&state, partner.id, &query.uuid).await?;
    let paging = PageQuery::new(query.limit, query.cursor);
    page(keys::list(&state, &account, &paging).await?)
}

/// Gateway3: delete a key by name.
///
/// Revokes the key for good.
#[utoipa::path(delete, path = "/partner/user/key", operation_id = "v0_delete_user_key", tag = "gateway3-partner", security(("partnerToken" = [])),
    request_body = DeleteUserKey,
    responses((status = 200, body = V0Message), NoUser, V0BodyErrors, V0PartnerErrors))]
pub async fn delete_key(
    State(state): State<ApiState>,
    V0Partner(partner): V0Partner,
    V0Json(body): V0Json<DeleteUserKey>,
) -> V0Result<()> {
    let account = user(&state, partner.id, &body.uuid).await?;
    let by = format!("partner:{}", partner.id);
    keys::delete(&state, &account, &body.name, by).await?;
    done()
}

/// The partner's account with this `uuid`, or 404 (whoever else may own that uuid).
async fn user(state: &ApiState, partner: Uuid, uuid: &str) -> Result<Account, V0Error> {
    state
        .manager
        .account_by_external_id(partner, user_uuid(uuid)?)
        .await?
        .ok_or_else(no_user)
}

fn no_user() -> V0Error {
    V0Error::NotFound("uuid: no user with this uuid".into())
}

/// A `uuid` as given: the partner's own identifier, 1 to 128 characters, no control characters.
fn user_uuid(value: &str) -> Result<&str, V0Error> {
    if value.is_empty() || value.chars().count() > MAX_UUID {
        return Err(V0Error::BadRequest(format!(
            "uuid: must be 1 to {MAX_UUID} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(V0Error::BadRequest(
            "uuid: must not contain control characters".into(),
        ));
    }
    Ok(value)
}

/// A plausible email address (`local@domain`, no spaces), trimmed.
fn email(value: &str) -> Result<String, V0Error> {
    let value = value.trim();
    let plausible = value.len() <= MAX_EMAIL
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && value
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if !plausible {
        return Err(V0Error::BadRequest(format!(
            "email: `{}` is not an email address",
            value.chars().take(MAX_EMAIL).collect::<String>()
        )));
    }
    Ok(value.to_string())
}

/// The TOML plan with this id, or 400 naming the known ids.
fn plan(state: &ApiState, id: i64) -> Result<&Plan, V0Error> {
    state.plans.get(&id).ok_or_else(|| {
        let mut ids: Vec<i64> = state.plans.keys().copied().collect();
        ids.sort_unstable();
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        V0Error::BadRequest(format!(
            "plan_id: no plan with id {id} (plans: {})",
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        ))
    })
}

/// Micro-USD as `$ 1.234567` (shortest exact form, at least cents).
fn usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    format!(
        "{sign}$ {}",
        super::account::price_digits(micros.unsigned_abs())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_fields_are_checked() {
        assert!(user_uuid("123e4567-e89b-12d3-a456-426614174000").is_ok());
        assert!(user_uuid("").is_err());
        assert!(user_uuid(&"x".repeat(129)).is_err());
        assert!(user_uuid("a\nb").is_err());
        assert_eq!(email(" a@b.c ").unwrap(), "a@b.c");
        for bad in ["", "ab", "@b", "a@", "a b@c", "a\u{7}@b"] {
            let err = email(bad).unwrap_err().to_string();
            assert!(err.starts_with("email:"), "{bad}: {err}");
        }
    }

    #[test]
    fn money_in_messages() {
        assert_eq!(usd(9_990_000), "$ 9.99");
        assert_eq!(usd(-1_500_000), "-$ 1.50");
        assert_eq!(usd(1), "$ 0.000001");
    }
}
