//! `GET /ledger`: the partner's money ledger, a page at a time. Every credit and charge of the
//! balance is an entry (opening balance, top-up, plan change, one usage entry per UTC day of
//! flushing: usage flushed just after midnight counts in the new day's entry), so
//! the entries always sum to the stored balance; the live balance of `/balance` also holds the
//! charges of the last flush interval not written yet.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::usd;
use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::api::key_object::timestamp;
use crate::api::openapi::{Detail, PartnerErrors};
use crate::api::paging::{self, PageOf, PageQuery};
use crate::api::partner_auth::AuthPartner;
use crate::api::query::ApiQuery;
use crate::domain::money::LedgerEntry;

/// One ledger entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerView {
    #[schema(format = Uuid)]
    id: String,
    /// When the entry was made (a usage entry: the day's first flush).
    #[schema(format = DateTime)]
    at: Option<String>,
    /// `opening`, `top_up`, `plan_change` or `usage`.
    kind: &'static str,
    /// Signed: a credit is positive, a charge negative.
    amount_usd: f64,
    /// The id of the account a plan change was for.
    #[schema(format = Uuid)]
    account_id: Option<String>,
    /// The plan an account moved to.
    plan_id: Option<i64>,
    /// The UTC day of a usage entry.
    #[schema(format = Date)]
    day: Option<String>,
    note: Option<String>,
}

impl From<LedgerEntry> for LedgerView {
    fn from(e: LedgerEntry) -> Self {
        LedgerView {
            id: e.id.to_string(),
            at: timestamp(Some(e.at)),
            kind: e.kind.as_str(),
            amount_usd: usd(e.amount_micros),
            account_id: e.account_id.map(|a| a.to_string()),
            plan_id: e.plan_id,
            day: e.day,
            note: e.note,
        }
    }
}

/// The money ledger.
///
/// A page of the partner's ledger entries, oldest first; follow `next_cursor` until it is
/// null. Their amounts sum to the stored balance.
#[utoipa::path(get, path = "/ledger", operation_id = "list_ledger", tag = "reseller",
    security(("partnerToken" = [])), params(PageQuery),
    responses((status = 200, body = PageOf<LedgerView>),
        (status = 422, description = "`limit` or `cursor` is malformed", body = Detail),
        PartnerErrors))]
pub async fn list(
    State(state): State<ApiState>,
    AuthPartner(partner): AuthPartner,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<PageOf<LedgerView>>, ApiError> {
    let store = &state.manager.store;
    paging::answer(
        &query,
        |page| store.ledger_page(partner.id, page),
        |e| (e.at, e.id),
        LedgerView::from,
    )
    .await
}
