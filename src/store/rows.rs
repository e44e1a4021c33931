//! Stored rows and their conversion to domain types. The row structs hold the raw column values
//! (`FromRow` works for any sqlx database), so the checks that turn them into `Key`, `Partner`
//! and `Account` — and the `Corrupt` errors naming the record and field — are shared by stores.

use std::num::NonZeroU32;

use chrono::NaiveDate;
use uuid::Uuid;

use super::{StoreError, digest_from};
use crate::domain::ip::IpAllowList;
use crate::domain::key::{Account, Credential, Key, KeyLimits, Partner};
use crate::domain::permission::PermissionSet;

/// Storage format of `expiration_date`.
pub(crate) const DATE_FORMAT: &str = "%Y-%m-%d";

/// A value converted for an INTEGER column: values above `i64::MAX` are stored as `i64::MAX`
/// (for money and limits that is "unlimited" in practice).
pub(crate) fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The five limit columns of a plan (pinned count, pinned bytes, ingress, egress, IPNS names);
/// NULL = unlimited.
pub(crate) fn plan_limits(plan: &crate::config::model::Plan) -> [Option<i64>; 5] {
    let limit = |v: Option<std::num::NonZeroU64>| v.map(|v| int(v.get()));
    [
        limit(plan.pinned_count_limit),
        limit(plan.pinned_bytes_limit),
        limit(plan.ingress_limit),
        limit(plan.egress_limit),
        plan.ipns_limit.map(|v| i64::from(v.get())),
    ]
}

/// The `kind` column of a credential.
pub(crate) fn kind(credential: &Credential) -> &'static str {
    match credential {
        Credential::Token { .. } => "token",
        Credential::Pair { .. } => "pair",
    }
}

/// The `models` column: a JSON array of model names, or NULL for any.
pub(crate) fn models_json(models: &Option<Vec<String>>) -> Option<String> {
    models
        .as_ref()
        .map(|m| serde_json::to_string(m).unwrap_or_else(|_| "[]".into()))
}

/// The `ip_whitelist` column: a JSON array of the entries as given.
pub(crate) fn ip_whitelist_json(list: &IpAllowList) -> String {
    serde_json::Value::from(list.entries().to_vec()).to_string()
}

/// The `expiration_date` column.
pub(crate) fn date_text(date: Option<NaiveDate>) -> Option<String> {
    date.map(|d| d.format(DATE_FORMAT).to_string())
}

/// A `partners` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PartnerRow {
    id: String,
    name: String,
    token_prefix: String,
    token_hash: String,
    balance_micros: i64,
    tier_multiplier_ppm: i64,
    suspended: bool,
    created_at: i64,
}

impl TryFrom<PartnerRow> for Partner {
    type Error = StoreError;

    fn try_from(row: PartnerRow) -> Result<Self, StoreError> {
        let id = parse_uuid("partner", &row.id, "id", &row.id)?;
        let tier_multiplier_ppm = u64::try_from(row.tier_multiplier_ppm)
            .map_err(|_| corrupt("partner", &row.id, "tier_multiplier_ppm", "negative"))?;
        Ok(Partner {
            id,
            name: row.name,
            token_prefix: row.token_prefix,
            token_hash: row.token_hash,
            balance_micros: row.balance_micros,
            tier_multiplier_ppm,
            suspended: row.suspended,
            created_at: row.created_at,
        })
    }
}

/// An `accounts` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AccountRow {
    id: String,
    partner_id: String,
    external_id: String,
    email: Option<String>,
    name: Option<String>,
    plan_id: Option<i64>,
    created_at: i64,
}

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;

    fn try_from(row: AccountRow) -> Result<Self, StoreError> {
        Ok(Account {
            id: parse_uuid("account", &row.id, "id", &row.id)?,
            partner_id: parse_uuid("account", &row.id, "partner_id", &row.partner_id)?,
            external_id: row.external_id,
            email: row.email,
            name: row.name,
            plan_id: row.plan_id,
            created_at: row.created_at,
        })
    }
}

/// A `keys` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct KeyRow {
    id: String,
    account_id: String,
    partner_id: String,
    name: String,
    label: Option<String>,
    description: Option<String>,
    kind: String,
    access_key: Option<String>,
    digest: Vec<u8>,
    permissions: i64,
    ip_whitelist: String,
    expiration_date: Option<String>,
    disabled: bool,
    created_at: i64,
    created_by: String,
    revoked_at: Option<i64>,
    revoked_by: Option<String>,
    last_used_at: Option<i64>,
    daily_cost_limit_micros: Option<i64>,
    total_cost_limit_micros: Option<i64>,
    concurrency_limit: Option<i64>,
    rate_limit_per_minute: Option<i64>,
    models: Option<String>,
    status_changed_at: Option<i64>,
    status_changed_by: Option<String>,
}

impl TryFrom<KeyRow> for Key {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        let id = row.id.as_str();
        let bad = |field: &str, why: &dyn std::fmt::Display| corrupt("key", id, field, why);
        let digest = digest_from(&row.digest).map_err(|_| {
            bad(
                "digest",
                &format!("{} bytes, expected 32", row.digest.len()),
            )
        })?;
        let credential = match (row.kind.as_str(), &row.access_key) {
            ("token", _) => Credential::Token { digest },
            ("pair", Some(access_key)) => Credential::Pair {
                access_key: parse_uuid("key", id, "access_key", access_key)?,
                digest,
            },
            ("pair", None) => return Err(bad("access_key", &"missing for a pair")),
            (other, _) => return Err(bad("kind", &format!("unknown kind `{other}`"))),
        };
        let permissions = u8::try_from(row.permissions)
            .map(PermissionSet::from_bits)
            .map_err(|_| bad("permissions", &format!("bits {}", row.permissions)))?;
        let entries: Vec<String> =
            serde_json::from_str(&row.ip_whitelist).map_err(|e| bad("ip_whitelist", &e))?;
        let ip_whitelist = IpAllowList::parse(&entries).map_err(|e| bad("ip_whitelist", &e))?;
        let expiration_date = row
            .expiration_date
            .as_deref()
            .map(|d| NaiveDate::parse_from_str(d, DATE_FORMAT))
            .transpose()
            .map_err(|e| bad("expiration_date", &e))?;
        let limits = KeyLimits {
            daily_cost_limit_micros: unsigned(row.daily_cost_limit_micros)
                .map_err(|e| bad("daily_cost_limit_micros", &e))?,
            total_cost_limit_micros: unsigned(row.total_cost_limit_micros)
                .map_err(|e| bad("total_cost_limit_micros", &e))?,
            concurrency_limit: non_zero(row.concurrency_limit)
                .map_err(|e| bad("concurrency_limit", &e))?,
            rate_limit_per_minute: non_zero(row.rate_limit_per_minute)
                .map_err(|e| bad("rate_limit_per_minute", &e))?,
            models: row
                .models
                .as_deref()
                .map(serde_json::from_str::<Vec<String>>)
                .transpose()
                .map_err(|e| bad("models", &e))?,
        };
        Ok(Key {
            id: parse_uuid("key", id, "id", id)?,
            account_id: parse_uuid("key", id, "account_id", &row.account_id)?,
            partner_id: parse_uuid("key", id, "partner_id", &row.partner_id)?,
            name: row.name,
            label: row.label,
            description: row.description,
            credential,
            permissions,
            ip_whitelist,
            expiration_date,
            disabled: row.disabled,
            created_at: row.created_at,
            created_by: row.created_by,
            revoked_at: row.revoked_at,
            revoked_by: row.revoked_by,
            status_changed_at: row.status_changed_at,
            status_changed_by: row.status_changed_by,
            last_used_at: row.last_used_at,
            limits,
        })
    }
}

/// `Corrupt("<record> <id>: <field>: <why>")`.
fn corrupt(record: &str, id: &str, field: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{record} {id}: {field}: {why}"))
}

fn parse_uuid(record: &str, id: &str, field: &str, text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| corrupt(record, id, field, e))
}

fn unsigned(value: Option<i64>) -> Result<Option<u64>, String> {
    value
        .map(|v| u64::try_from(v).map_err(|_| format!("negative value {v}")))
        .transpose()
}

fn non_zero(value: Option<i64>) -> Result<Option<NonZeroU32>, String> {
    value
        .map(|v| {
            u32::try_from(v)
                .ok()
                .and_then(NonZeroU32::new)
                .ok_or_else(|| format!("value {v} is not in 1..=4294967295"))
        })
        .transpose()
}

/// A query of either back-end (`$1`-style placeholders work in both).
type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>;

/// Binds every key column in `KeyRow` order (for [`super::sql::INSERT_KEY`]).
pub(crate) fn bind_key<'q, DB>(q: Query<'q, DB>, key: &Key) -> Query<'q, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let q = q
        .bind(key.id.to_string())
        .bind(key.account_id.to_string())
        .bind(key.partner_id.to_string())
        .bind(key.name.clone())
        .bind(key.label.clone())
        .bind(key.description.clone())
        .bind(kind(&key.credential).to_string())
        .bind(key.credential.access_key().map(|k| k.to_string()))
        .bind(key.credential.digest().to_vec())
        .bind(i64::from(key.permissions.bits()))
        .bind(ip_whitelist_json(&key.ip_whitelist))
        .bind(date_text(key.expiration_date))
        .bind(key.disabled)
        .bind(key.created_at)
        .bind(key.created_by.clone())
        .bind(key.revoked_at)
        .bind(key.revoked_by.clone())
        .bind(key.last_used_at);
    bind_limits(q, key)
}

/// Binds a key's editable fields in [`super::sql::EDIT_KEY`] order (the id is bound last by
/// the caller).
pub(crate) fn bind_edit<'q, DB>(q: Query<'q, DB>, key: &Key) -> Query<'q, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let q = q
        .bind(key.label.clone())
        .bind(key.description.clone())
        .bind(i64::from(key.permissions.bits()))
        .bind(ip_whitelist_json(&key.ip_whitelist))
        .bind(date_text(key.expiration_date));
    bind_limits(q, key)
}

/// Binds the four limits and the model allow-list.
fn bind_limits<'q, DB>(q: Query<'q, DB>, key: &Key) -> Query<'q, DB>
where
    DB: sqlx::Database,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let limits = &key.limits;
    q.bind(limits.daily_cost_limit_micros.map(int))
        .bind(limits.total_cost_limit_micros.map(int))
        .bind(limits.concurrency_limit.map(|v| i64::from(v.get())))
        .bind(limits.rate_limit_per_minute.map(|v| i64::from(v.get())))
        .bind(models_json(&limits.models))
}

/// Sums of one model: model, requests, input, cached input, output tokens, cost.
pub(crate) type LlmSums = (String, i64, i64, i64, i64, i64);

/// A key's LLM usage by model from [`super::sql::LLM_USAGE_OF_KEY`] rows.
pub(crate) fn llm_rows(key_id: Uuid, rows: Vec<LlmSums>) -> Vec<crate::meter::llm_usage::LlmRow> {
    let count = |v: i64| u64::try_from(v).unwrap_or(0);
    rows.into_iter()
        .map(
            |(model, requests, input, cached, output, cost)| crate::meter::llm_usage::LlmRow {
                key_id,
                model,
                requests: count(requests),
                input_tokens: count(input),
                cached_input_tokens: count(cached),
                output_tokens: count(output),
                cost_micros: count(cost),
            },
        )
        .collect()
}

/// An account id column of the kubo ledger.
pub(crate) fn account_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("account id {text}: {e}")))
}

/// A `money_ledger` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct LedgerRow {
    id: String,
    partner_id: String,
    at: i64,
    kind: String,
    amount_micros: i64,
    account_id: Option<String>,
    plan_id: Option<i64>,
    day: Option<String>,
    note: Option<String>,
}

impl TryFrom<LedgerRow> for crate::domain::money::LedgerEntry {
    type Error = StoreError;

    fn try_from(row: LedgerRow) -> Result<Self, StoreError> {
        let uuid = |text: &str| {
            Uuid::parse_str(text).map_err(|_| StoreError::Corrupt(format!("ledger id `{text}`")))
        };
        Ok(crate::domain::money::LedgerEntry {
            id: uuid(&row.id)?,
            partner_id: uuid(&row.partner_id)?,
            at: row.at,
            kind: crate::domain::money::LedgerKind::parse(&row.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("ledger kind `{}`", row.kind)))?,
            amount_micros: row.amount_micros,
            account_id: row.account_id.as_deref().map(uuid).transpose()?,
            plan_id: row.plan_id,
            day: row.day,
            note: row.note,
        })
    }
}

/// Binds a ledger entry in [`super::sql::INSERT_LEDGER`] order.
pub(crate) fn bind_ledger<'q, DB>(
    q: Query<'q, DB>,
    e: &crate::domain::money::LedgerEntry,
) -> Query<'q, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.bind(e.id.to_string())
        .bind(e.partner_id.to_string())
        .bind(e.at)
        .bind(e.kind.as_str().to_string())
        .bind(e.amount_micros)
        .bind(e.account_id.map(|a| a.to_string()))
        .bind(e.plan_id)
        .bind(e.day.clone())
        .bind(e.note.clone())
}

/// A row query of a paged list, its arguments not yet bound.
type QueryAs<'q, DB, R> = sqlx::query::QueryAs<'q, DB, R, <DB as sqlx::Database>::Arguments<'q>>;

/// Binds the paged lists' parameters: `$1` the owner (partner or account), `$2`/`$3` the
/// creation time and id to start after, `$4` the limit.
pub(crate) fn bind_page<'q, DB, R>(
    q: QueryAs<'q, DB, R>,
    owner: Uuid,
    page: super::Page,
) -> QueryAs<'q, DB, R>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let (at, id, limit) = page.binds();
    q.bind(owner.to_string()).bind(at).bind(id).bind(limit)
}

/// The UTC day (`YYYY-MM-DD`) of the usage ledger entry a flush at `now` grows.
pub(crate) fn usage_day(now: i64) -> String {
    chrono::DateTime::from_timestamp(now, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}
