-- Tollgate schema, PostgreSQL flavour, for several instances sharing one store. Same tables and
-- column names as the SQLite schema (ids as text, times as Unix seconds, money as integer
-- micro-USD, dates 'YYYY-MM-DD'), so the row-level SQL in src/store/sql.rs serves both. What
-- only a shared store needs is at the end: change notifications, counter sequence numbers,
-- shared management rate-limit windows and budget leases.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Mirror of the TOML [[plans]]; limits NULL = unlimited.
CREATE TABLE plans (
    id                 BIGINT PRIMARY KEY,
    name               TEXT NOT NULL,
    price_micros       BIGINT NOT NULL CHECK (price_micros >= 0),
    pinned_count_limit BIGINT CHECK (pinned_count_limit > 0),
    pinned_bytes_limit BIGINT CHECK (pinned_bytes_limit > 0),
    ingress_limit      BIGINT CHECK (ingress_limit > 0),
    egress_limit       BIGINT CHECK (egress_limit > 0),
    ipns_limit         BIGINT CHECK (ipns_limit > 0)
);

-- `updated_at` (µs since the epoch, the database's clock) is set by a trigger whenever a field
-- the data plane uses changes; the periodic reconcile reads rows changed since its last pass.
CREATE TABLE partners (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    token_prefix        TEXT NOT NULL,
    token_hash          TEXT NOT NULL,
    balance_micros      BIGINT NOT NULL DEFAULT 0,
    tier_multiplier_ppm BIGINT NOT NULL DEFAULT 1000000 CHECK (tier_multiplier_ppm >= 0),
    suspended           BOOLEAN NOT NULL DEFAULT FALSE,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX partners_token_prefix ON partners (token_prefix);
CREATE INDEX partners_updated ON partners (updated_at);

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    partner_id  TEXT NOT NULL REFERENCES partners (id),
    external_id TEXT NOT NULL,
    email       TEXT,
    name        TEXT,
    plan_id     BIGINT REFERENCES plans (id),
    is_default  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL DEFAULT 0,
    UNIQUE (partner_id, external_id),
    -- Target of the keys' (account_id, partner_id) foreign key.
    UNIQUE (id, partner_id)
);
-- At most one default account per partner.
CREATE UNIQUE INDEX accounts_default ON accounts (partner_id) WHERE is_default;
CREATE INDEX accounts_plan ON accounts (plan_id);
CREATE INDEX accounts_updated ON accounts (updated_at);

CREATE TABLE keys (
    id                      TEXT PRIMARY KEY,
    account_id              TEXT NOT NULL,
    partner_id              TEXT NOT NULL REFERENCES partners (id),
    name                    TEXT NOT NULL,
    label                   TEXT,
    description             TEXT,
    kind                    TEXT NOT NULL CHECK (kind IN ('token', 'pair')),
    access_key              TEXT UNIQUE,
    digest                  BYTEA NOT NULL UNIQUE,
    permissions             BIGINT NOT NULL CHECK (permissions >= 0),
    ip_whitelist            TEXT NOT NULL DEFAULT '[]',
    expiration_date         TEXT,
    disabled                BOOLEAN NOT NULL DEFAULT FALSE,
    created_at              BIGINT NOT NULL,
    created_by              TEXT NOT NULL,
    revoked_at              BIGINT,
    revoked_by              TEXT,
    last_used_at            BIGINT,
    daily_cost_limit_micros BIGINT CHECK (daily_cost_limit_micros >= 0),
    total_cost_limit_micros BIGINT CHECK (total_cost_limit_micros >= 0),
    concurrency_limit       BIGINT CHECK (concurrency_limit > 0),
    rate_limit_per_minute   BIGINT CHECK (rate_limit_per_minute > 0),
    models                  TEXT,
    -- Insertion order, for "oldest first" among keys created in the same second.
    seq                     BIGSERIAL NOT NULL,
    updated_at              BIGINT NOT NULL DEFAULT 0,
    FOREIGN KEY (account_id, partner_id) REFERENCES accounts (id, partner_id),
    CHECK ((kind = 'pair' AND access_key IS NOT NULL) OR (kind = 'token' AND access_key IS NULL))
);
CREATE INDEX keys_partner ON keys (partner_id);
CREATE INDEX keys_updated ON keys (updated_at);
-- Unique names among live keys; also serves "the live keys of an account".
CREATE UNIQUE INDEX keys_account_live_name ON keys (account_id, name) WHERE revoked_at IS NULL;

-- Metering (written by the usage sync).
CREATE TABLE usage_daily (
    day      TEXT NOT NULL,
    scope    TEXT NOT NULL CHECK (scope IN ('key', 'account', 'partner')),
    scope_id TEXT NOT NULL,
    metric   TEXT NOT NULL,
    value    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, scope, scope_id, metric)
);
CREATE INDEX usage_daily_scope ON usage_daily (scope, scope_id, day);

-- Running totals per quota window. `seq` is the counter sequence number of the sync that last
-- changed the row: syncs take one advisory lock, so sequence order is commit order and each
-- instance reads back exactly the rows changed since its last sync.
CREATE SEQUENCE counter_seq;
CREATE TABLE counters (
    scope       TEXT NOT NULL CHECK (scope IN ('key', 'account', 'partner')),
    scope_id    TEXT NOT NULL,
    metric      TEXT NOT NULL,
    time_window TEXT NOT NULL,
    value       BIGINT NOT NULL DEFAULT 0,
    seq         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, scope_id, metric, time_window)
);
CREATE INDEX counters_seq ON counters (seq);

-- Idempotency tokens of applied usage batches, so a retried commit never counts twice.
CREATE TABLE flush_batches (
    token      TEXT PRIMARY KEY,
    applied_at BIGINT NOT NULL
);
CREATE INDEX flush_batches_applied ON flush_batches (applied_at);

-- Replayable responses of reseller key creations sent with an Idempotency-Key (sealed).
CREATE TABLE idempotency (
    partner_id TEXT NOT NULL REFERENCES partners (id),
    idem_key   TEXT NOT NULL,
    body_hash  BYTEA NOT NULL,
    response   BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (partner_id, idem_key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);

-- The kubo pin ledger and IPNS names (see the SQLite migrations 0005).
CREATE TABLE pins (
    account_id TEXT NOT NULL REFERENCES accounts (id),
    cid        TEXT NOT NULL,
    size       BIGINT NOT NULL,
    recursive  BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, cid)
);
CREATE INDEX pins_cid ON pins (cid);

CREATE TABLE ipns_names (
    account_id TEXT NOT NULL REFERENCES accounts (id),
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, name)
);

-- LLM usage per day, key and model.
CREATE TABLE llm_usage_daily (
    day                 TEXT NOT NULL,
    key_id              TEXT NOT NULL,
    model               TEXT NOT NULL,
    requests            BIGINT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    cost_micros         BIGINT NOT NULL,
    PRIMARY KEY (day, key_id, model)
);
CREATE INDEX llm_usage_daily_key ON llm_usage_daily (key_id, day);

-- Management rate-limit windows shared by every instance (`partner:<id>:<budget>:<start>`).
CREATE TABLE rate_windows (
    bucket     TEXT PRIMARY KEY,
    hits       BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX rate_windows_expiry ON rate_windows (expires_at);

-- Change notifications. The channel is per schema (`tollgate_<schema>`), so several gateways
-- (or test runs) can share one database. Only fields the data plane uses notify: `last_used_at`
-- and balances (read back by every usage sync) do not.
CREATE FUNCTION tollgate_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT;
    RETURN NEW;
END $$;

CREATE FUNCTION tollgate_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tollgate_' || TG_TABLE_SCHEMA, TG_ARGV[0] || ':' || NEW.id);
    RETURN NULL;
END $$;

CREATE TRIGGER keys_touch BEFORE INSERT OR UPDATE OF account_id, partner_id, access_key,
    digest, label, description, permissions,
    ip_whitelist, expiration_date, disabled, revoked_at, daily_cost_limit_micros,
    total_cost_limit_micros, concurrency_limit, rate_limit_per_minute, models
    ON keys FOR EACH ROW EXECUTE FUNCTION tollgate_touch();
CREATE TRIGGER keys_notify AFTER INSERT OR UPDATE OF account_id, partner_id, access_key,
    digest, label, description, permissions,
    ip_whitelist, expiration_date, disabled, revoked_at, daily_cost_limit_micros,
    total_cost_limit_micros, concurrency_limit, rate_limit_per_minute, models
    ON keys FOR EACH ROW EXECUTE FUNCTION tollgate_notify('key');

CREATE TRIGGER partners_touch BEFORE INSERT OR UPDATE OF name, token_prefix, token_hash,
    tier_multiplier_ppm, suspended
    ON partners FOR EACH ROW EXECUTE FUNCTION tollgate_touch();
CREATE TRIGGER partners_notify AFTER INSERT OR UPDATE OF name, token_prefix, token_hash,
    tier_multiplier_ppm, suspended
    ON partners FOR EACH ROW EXECUTE FUNCTION tollgate_notify('partner');

CREATE TRIGGER accounts_touch BEFORE INSERT OR UPDATE OF plan_id
    ON accounts FOR EACH ROW EXECUTE FUNCTION tollgate_touch();
CREATE TRIGGER accounts_notify AFTER INSERT OR UPDATE OF plan_id
    ON accounts FOR EACH ROW EXECUTE FUNCTION tollgate_notify('account');
