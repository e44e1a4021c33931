//! The reseller's own account: summary, balance, daily usage series and token rotation.

use axum::Json;
use axum::extract::State;
use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Ok, ok, usd};
use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::api::openapi::{Detail, PartnerErrors};
use crate::api::partner_auth::{AuthPartner, UnmeteredPartner};
use crate::api::query::ApiQuery;

/// The partner's account summary.
#[derive(Serialize, ToSchema)]
pub struct Me {
    #[schema(format = Uuid)]
    id: String,
    name: String,
    /// `active` or `suspended`.
    status: &'static str,
    /// The `[management.tiers]` name whose multiplier is the partner's (null if none).
    tier: Option<String>,
    /// `management.region` (null if unset).
    region: Option<String>,
    /// Multiplier applied to upstream cost (0.8 = a 20 % discount).
    tier_multiplier: f64,
    /// Always `USD`.
    currency: &'static str,
    #[schema(format = DateTime)]
    created_at: Option<String>,
}

/// Account summary.
///
/// Never counted against the token's call budget.
#[utoipa::path(get, path = "/me", operation_id = "get_me", tag = "reseller", security(("partnerToken" = [])),
    responses((status = 200, body = Ok<Me>), PartnerErrors))]
pub async fn me(
    State(state): State<ApiState>,
    UnmeteredPartner(p): UnmeteredPartner,
) -> Json<Ok<Me>> {
    let reseller = &state.reseller;
    ok(Me {
        id: p.id.to_string(),
        name: p.name.clone(),
        status: if p.suspended { "suspended" } else { "active" },
        tier: reseller.tier(p.tier_multiplier_ppm).map(str::to_string),
        region: reseller.region.clone(),
        tier_multiplier: p.tier_multiplier_ppm as f64 / 1e6,
        currency: "USD",
        created_at: crate::api::key_object::timestamp(Some(p.created_at)),
    })
}

/// The prepaid balance and what was spent.
/// `spent_*` count metered usage (live) and plan-change charges.
#[derive(Serialize, ToSchema)]
pub struct Balance {
    balance_usd: f64,
    spent_today_usd: f64,
    spent_total_usd: f64,
    currency: &'static str,
}

/// Prepaid balance and spend.
///
/// The live balance: charges not yet flushed to the store are included.
#[utoipa::path(get, path = "/balance", operation_id = "get_balance", tag = "reseller", security(("partnerToken" = [])),
    responses((status = 200, body = Ok<Balance>), PartnerErrors))]
pub async fn balance(
    State(state): State<ApiState>,
    AuthPartner(p): AuthPartner,
) -> Result<Json<Ok<Balance>>, ApiError> {
    let meter = &state.manager.meter;
    let now = state.manager.clock.now_unix();
    let live = meter
        .partner(p.id)
        .ok_or_else(|| ApiError::NotFound("partner not found".into()))?;
    let usage = &live.usage;
    let day_start = now - now.rem_euclid(86_400);
    let plans = plan_charges(&state, p.id, 0).await?;
    let plans_today: i64 = plans
        .iter()
        .filter(|(at, _)| *at >= day_start)
        .map(|(_, v)| v)
        .sum();
    let plans_total: i64 = plans.iter().map(|(_, v)| v).sum();
    let used_today = usage.cost_day().current(now, &meter.retired).total_used() as i64;
    let used_total = usage.cost_total().current(now, &meter.retired).total_used() as i64;
    Ok(ok(Balance {
        balance_usd: usd(live.balance()),
        spent_today_usd: usd(used_today.saturating_add(plans_today)),
        spent_total_usd: usd(used_total.saturating_add(plans_total)),
        currency: "USD",
    }))
}

/// `(at, micro-USD)` of the partner's plan-change charges from `since` on (positive).
async fn plan_charges(
    state: &ApiState,
    partner: uuid::Uuid,
    since: i64,
) -> Result<Vec<(i64, i64)>, ApiError> {
    let rows = state
        .manager
        .store
        .plan_charges_since(partner, since)
        .await
        .map_err(crate::manage::ManageError::from)?;
    Ok(rows.into_iter().map(|(at, v)| (at, -v)).collect())
}

/// The usage series' span.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// `7d` (the default) or `30d`.
    #[param(pattern = "^(7d|30d)$")]
    range: Option<String>,
}

/// One day of the partner's usage.
#[derive(Serialize, Default, ToSchema)]
pub struct Day {
    #[schema(format = Date)]
    date: String,
    /// Usage plus plan-change charges.
    cost_usd: f64,
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// Of `cost_usd`, what plan changes cost.
    plan_usd: f64,
}

/// Daily usage series.
///
/// One entry per day, oldest first, zero days included. Reads the store's daily sums, which
/// trail live usage by at most one flush interval.
#[utoipa::path(get, path = "/usage", operation_id = "get_usage", tag = "reseller", security(("partnerToken" = [])), params(UsageQuery),
    responses((status = 200, body = Ok<Vec<Day>>),
        (status = 422, description = "`range` is not 7d or 30d, or the query is malformed", body = Detail), PartnerErrors))]
pub async fn usage(
    State(state): State<ApiState>,
    AuthPartner(p): AuthPartner,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<Ok<Vec<Day>>>, ApiError> {
    let days = match q.range.as_deref().unwrap_or("7d") {
        "7d" => 7,
        "30d" => 30,
        other => {
            return Err(ApiError::Validation(format!(
                "range: `{other}` is not one of 7d, 30d"
            )));
        }
    };
    let today = state.manager.today();
    let first = today - Duration::days(days - 1);
    let fmt = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    let rows = state
        .manager
        .store
        .usage_daily("partner", p.id, &fmt(first), &fmt(today))
        .await
        .map_err(crate::manage::ManageError::from)?;
    let mut series: Vec<Day> = (0..days)
        .map(|i| Day {
            date: fmt(first + Duration::days(i)),
            ..Day::default()
        })
        .collect();
    let since = first
        .and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp());
    for (at, micros) in plan_charges(&state, p.id, since).await? {
        let date = chrono::DateTime::from_timestamp(at, 0).map(|t| fmt(t.date_naive()));
        if let Some(entry) = series.iter_mut().find(|d| Some(&d.date) == date.as_ref()) {
            entry.plan_usd += usd(micros);
        }
    }
    for (day, metric, value) in rows {
        let Some(entry) = series.iter_mut().find(|d| d.date == day) else {
            continue;
        };
        match metric.as_str() {
            "cost_micros" => entry.cost_usd = usd(value as i64),
            "requests" => entry.requests = value,
            "bytes_in" => entry.bytes_in = value,
            "bytes_out" => entry.bytes_out = value,
            _ => {}
        }
    }
    for day in &mut series {
        day.cost_usd += day.plan_usd;
    }
    Ok(ok(series))
}

/// A new partner token.
#[derive(Serialize, ToSchema)]
pub struct Rotated {
    /// The new `rsk_` token, shown this once.
    token: String,
}

/// Rotate the `rsk_` token.
///
/// A new token, shown once; the old one stops working at once. Never counted against the
/// token's call budget.
#[utoipa::path(post, path = "/token/rotate", operation_id = "rotate_token", tag = "reseller", security(("partnerToken" = [])),
    responses((status = 200, body = Ok<Rotated>), PartnerErrors))]
pub async fn rotate_token(
    State(state): State<ApiState>,
    UnmeteredPartner(p): UnmeteredPartner,
) -> Result<Json<Ok<Rotated>>, ApiError> {
    let token = state
        .manager
        .rotate_partner_token(p.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("partner not found".into()))?;
    Ok(ok(Rotated { token }))
}
