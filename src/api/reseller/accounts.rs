//! `GET /accounts`: the partner's Gateway3 accounts (its users, created through
//! `/api/v0/partner/user/create`) with their live usage against their plan's limits, a page
//! at a time (one call for what would otherwise be a `user/stats` call per account).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::api::key_object::timestamp;
use crate::api::openapi::{Detail, PartnerErrors};
use crate::api::paging::{PageOf, PageQuery};
use crate::api::partner_auth::AuthPartner;
use crate::api::query::ApiQuery;
use crate::domain::key::Account;
use crate::meter::stats::AccountStats;

/// One Gateway3 account.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    #[schema(format = Uuid)]
    id: String,
    /// The partner's own identifier of the user (Gateway3 `uuid`).
    uuid: String,
    email: Option<String>,
    name: Option<String>,
    plan_id: Option<i64>,
    /// The plan's name, if it is still configured.
    plan: Option<String>,
    #[schema(format = DateTime)]
    created_at: Option<String>,
    /// Live usage in the current period with the plan's limits (0 = none), as
    /// `/api/v0/partner/user/stats` reports it.
    usage: AccountStats,
}

/// List accounts.
///
/// A page of the partner's Gateway3 accounts, oldest first; follow `next_cursor` until it is
/// null.
#[utoipa::path(get, path = "/accounts", operation_id = "list_accounts", tag = "reseller",
    security(("partnerToken" = [])), params(PageQuery),
    responses((status = 200, body = PageOf<AccountView>),
        (status = 422, description = "`limit` or `cursor` is malformed", body = Detail),
        PartnerErrors))]
pub async fn list(
    State(state): State<ApiState>,
    AuthPartner(partner): AuthPartner,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<PageOf<AccountView>>, ApiError> {
    let wanted = query.wanted()?;
    let mut accounts = state
        .manager
        .store
        .accounts_page(partner.id, wanted.page())
        .await
        .map_err(crate::manage::ManageError::from)?;
    let next_cursor = wanted.cut(&mut accounts, |a| (a.created_at, a.id));
    let mut data = Vec::with_capacity(accounts.len());
    for a in accounts {
        let usage = crate::api::gateway3::usage(&state, &a).await;
        data.push(view(&state, a, usage));
    }
    Ok(Json(PageOf::new(data, next_cursor)))
}

fn view(state: &ApiState, a: Account, usage: AccountStats) -> AccountView {
    AccountView {
        id: a.id.to_string(),
        plan: a
            .plan_id
            .and_then(|id| state.plans.get(&id))
            .map(|p| p.name.clone()),
        uuid: a.external_id,
        email: a.email,
        name: a.name,
        plan_id: a.plan_id,
        created_at: timestamp(Some(a.created_at)),
        usage,
    }
}
