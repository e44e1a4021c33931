//! SQL text shared by both back-ends. Both schemas use the same column names and portable
//! types (ids as text, times as Unix seconds, money as integer micro-USD), so statements that
//! only read or write rows are written once here; what differs (locking, batching, the usage
//! journal, notifications) lives in each back-end's module.

/// `SELECT <every key column, in `KeyRow` order> FROM keys` followed by `$tail`.
macro_rules! select_keys {
    ($tail:literal) => {
        concat!(
            "SELECT id, account_id, partner_id, name, label, description, kind, access_key, \
             digest, permissions, ip_whitelist, expiration_date, disabled, created_at, \
             created_by, revoked_at, revoked_by, last_used_at, daily_cost_limit_micros, \
             total_cost_limit_micros, concurrency_limit, rate_limit_per_minute, models, status_changed_at, status_changed_by \
             FROM keys",
            $tail
        )
    };
}

/// `SELECT <every partner column, in `PartnerRow` order> FROM partners` followed by `$tail`.
macro_rules! select_partners {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, token_prefix, token_hash, balance_micros, tier_multiplier_ppm, \
             suspended, created_at FROM partners",
            $tail
        )
    };
}

/// `SELECT <every account column, in `AccountRow` order> FROM accounts` followed by `$tail`.
macro_rules! select_accounts {
    ($tail:literal) => {
        concat!(
            "SELECT id, partner_id, external_id, email, name, plan_id, created_at FROM accounts",
            $tail
        )
    };
}

pub(crate) use {select_accounts, select_keys, select_partners};

/// Every account column, in `AccountRow` order (for `RETURNING`).
pub const ACCOUNT_COLUMNS: &str = "id, partner_id, external_id, email, name, plan_id, created_at";

/// Inserts an account: id, partner, external id, email, name, plan, is-default, created.
pub const INSERT_ACCOUNT: &str = "INSERT INTO accounts \
     (id, partner_id, external_id, email, name, plan_id, is_default, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Inserts a partner: id, name, token prefix and hash, balance, tier, suspended, created.
pub const INSERT_PARTNER: &str = "INSERT INTO partners (id, name, token_prefix, token_hash, \
     balance_micros, tier_multiplier_ppm, suspended, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Inserts a key, every column in `KeyRow` order.
pub const INSERT_KEY: &str = "INSERT INTO keys (id, account_id, partner_id, name, label, \
     description, kind, access_key, digest, permissions, ip_whitelist, expiration_date, \
     disabled, created_at, created_by, revoked_at, revoked_by, last_used_at, \
     daily_cost_limit_micros, total_cost_limit_micros, concurrency_limit, \
     rate_limit_per_minute, models) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
     $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)";

/// Writes a key's editable fields: label, description, permissions, IP allow-list, expiry,
/// the four limits and the model allow-list of key `$11`.
pub const EDIT_KEY: &str = "UPDATE keys SET label = $1, description = $2, permissions = $3, \
     ip_whitelist = $4, expiration_date = $5, daily_cost_limit_micros = $6, \
     total_cost_limit_micros = $7, concurrency_limit = $8, rate_limit_per_minute = $9, \
     models = $10 WHERE id = $11";

/// The key search of a partner's key list: `$5` the search text ('' for none), `$6` its
/// lowercased `LIKE` pattern (see [`like_pattern`]).
pub const KEY_SEARCH: &str = "($5 = '' OR id = $5 OR LOWER(name) LIKE $6 ESCAPE '\\' \
     OR LOWER(COALESCE(label, '')) LIKE $6 ESCAPE '\\' \
     OR LOWER(COALESCE(description, '')) LIKE $6 ESCAPE '\\')";

/// `%text%` for `LIKE ... ESCAPE '\'`, lowercased, with `%`, `_` and `\` taken literally.
pub fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Every money-ledger column, in `LedgerRow` order.
pub const LEDGER_COLUMNS: &str =
    "id, partner_id, at, kind, amount_micros, account_id, plan_id, day, note";

/// Inserts a money-ledger entry, every column in `LedgerRow` order.
pub const INSERT_LEDGER: &str = "INSERT INTO money_ledger (id, partner_id, at, kind, \
     amount_micros, account_id, plan_id, day, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Adds `$4` (signed) to the usage entry of partner `$2` for day `$5`, creating it with id
/// `$1` and time `$3`.
pub const ADD_USAGE_LEDGER: &str = "INSERT INTO money_ledger (id, partner_id, at, kind, \
     amount_micros, day) VALUES ($1, $2, $3, 'usage', $4, $5) ON CONFLICT (partner_id, day) \
     DO UPDATE SET amount_micros = money_ledger.amount_micros + excluded.amount_micros";

/// Upserts a plan by id (the TOML mirror).
pub const UPSERT_PLAN: &str = "INSERT INTO plans (id, name, price_micros, pinned_count_limit, \
     pinned_bytes_limit, ingress_limit, egress_limit, ipns_limit) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
     price_micros = excluded.price_micros, \
     pinned_count_limit = excluded.pinned_count_limit, \
     pinned_bytes_limit = excluded.pinned_bytes_limit, \
     ingress_limit = excluded.ingress_limit, egress_limit = excluded.egress_limit, \
     ipns_limit = excluded.ipns_limit";

/// Stores an idempotent response, replacing an expired one.
pub const UPSERT_IDEMPOTENT: &str = "INSERT INTO idempotency \
     (partner_id, idem_key, body_hash, response, created_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (partner_id, idem_key) DO UPDATE SET \
     body_hash = excluded.body_hash, response = excluded.response, \
     created_at = excluded.created_at";

/// Adds to a partner's balance, returning the new one.
pub const ADD_BALANCE: &str = "UPDATE partners SET balance_micros = balance_micros + $1 \
     WHERE id = $2 RETURNING balance_micros";

/// Debits a plan charge if the balance covers it, returning the new balance.
pub const DEBIT_IF_COVERED: &str = "UPDATE partners SET balance_micros = balance_micros - $1 \
     WHERE id = $2 AND balance_micros >= $1 RETURNING balance_micros";

/// Sets a partner's tier and/or suspension (NULL keeps the stored value).
pub const UPDATE_PARTNER: &str = "UPDATE partners SET \
     tier_multiplier_ppm = COALESCE($1, tier_multiplier_ppm), \
     suspended = COALESCE($2, suspended) WHERE id = $3";

/// Adds LLM usage rows to their daily sums (the `VALUES` list is pushed by the caller).
pub const LLM_USAGE_CONFLICT: &str = " ON CONFLICT (day, key_id, model) DO UPDATE SET \
     requests = llm_usage_daily.requests + excluded.requests, \
     input_tokens = llm_usage_daily.input_tokens + excluded.input_tokens, \
     cached_input_tokens = llm_usage_daily.cached_input_tokens + excluded.cached_input_tokens, \
     output_tokens = llm_usage_daily.output_tokens + excluded.output_tokens, \
     cost_micros = llm_usage_daily.cost_micros + excluded.cost_micros";

/// A key's lifetime LLM sums by model (cast: PostgreSQL sums `BIGINT`s as `NUMERIC`).
pub const LLM_USAGE_OF_KEY: &str = "SELECT model, CAST(SUM(requests) AS BIGINT), \
     CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(cached_input_tokens) AS BIGINT), \
     CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(cost_micros) AS BIGINT) FROM llm_usage_daily \
     WHERE key_id = $1 GROUP BY model ORDER BY model";

/// Daily sums of one scope between two days (inclusive).
pub const USAGE_DAILY: &str = "SELECT day, metric, value FROM usage_daily \
     WHERE scope = $1 AND scope_id = $2 AND day >= $3 AND day <= $4 ORDER BY day";
