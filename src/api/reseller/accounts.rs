//! `GET /accounts`: the partner's Gateway3 accounts (its users, created through
//! `/api/v0/partner/user/create`), a page at a time.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::api::key_object::timestamp;
use crate::api::openapi::{Detail, PartnerErrors};
use crate::api::paging::{self, PageOf, PageQuery};
use crate::api::partner_auth::AuthPartner;
use crate::api::query::ApiQuery;
use crate::domain::key::Account;

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
    let view = |a: Account| AccountView {
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
    };
    let store = &state.manager.store;
    paging::answer(
        &query,
        |page| store.accounts_page(partner.id, page),
        |a| (a.created_at, a.id),
        view,
    )
    .await
}
