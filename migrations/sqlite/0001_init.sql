-- Tollgate schema, SQLite flavour. Times are Unix seconds, UUIDs hyphenated lowercase text,
-- money integer micro-USD, dates 'YYYY-MM-DD'. Kept close to portable SQL so the PostgreSQL
-- migrations can mirror it.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Mirror of the TOML [[plans]]; limits NULL = unlimited.
CREATE TABLE plans (
    id                 INTEGER PRIMARY KEY NOT NULL,
    name               TEXT NOT NULL,
    price_micros       INTEGER NOT NULL CHECK (price_micros >= 0),
    pinned_count_limit INTEGER CHECK (pinned_count_limit > 0),
    pinned_bytes_limit INTEGER CHECK (pinned_bytes_limit > 0),
    ingress_limit      INTEGER CHECK (ingress_limit > 0),
    egress_limit       INTEGER CHECK (egress_limit > 0),
    ipns_limit         INTEGER CHECK (ipns_limit > 0)
);

CREATE TABLE partners (
    id                  TEXT PRIMARY KEY NOT NULL,
    name                TEXT NOT NULL,
    token_prefix        TEXT NOT NULL,
    token_hash          TEXT NOT NULL,
    balance_micros      INTEGER NOT NULL DEFAULT 0,
    tier_multiplier_ppm INTEGER NOT NULL DEFAULT 1000000 CHECK (tier_multiplier_ppm >= 0),
    suspended           INTEGER NOT NULL DEFAULT 0 CHECK (suspended IN (0, 1)),
    created_at          INTEGER NOT NULL
);
CREATE INDEX partners_token_prefix ON partners (token_prefix);

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY NOT NULL,
    partner_id  TEXT NOT NULL REFERENCES partners (id),
    external_id TEXT NOT NULL,
    email       TEXT,
    name        TEXT,
    plan_id     INTEGER REFERENCES plans (id),
    is_default  INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_at  INTEGER NOT NULL,
    UNIQUE (partner_id, external_id),
    -- Target of the keys' (account_id, partner_id) foreign key.
    UNIQUE (id, partner_id)
);
-- At most one default account per partner.
CREATE UNIQUE INDEX accounts_default ON accounts (partner_id) WHERE is_default = 1;
CREATE INDEX accounts_plan ON accounts (plan_id);

CREATE TABLE keys (
    id                      TEXT PRIMARY KEY NOT NULL,
    account_id              TEXT NOT NULL,
    partner_id              TEXT NOT NULL REFERENCES partners (id),
    name                    TEXT NOT NULL,
    label                   TEXT,
    description             TEXT,
    kind                    TEXT NOT NULL CHECK (kind IN ('token', 'pair')),
    access_key              TEXT UNIQUE,
    digest                  BLOB NOT NULL UNIQUE,
    permissions             INTEGER NOT NULL CHECK (permissions >= 0),
    ip_whitelist            TEXT NOT NULL DEFAULT '[]',
    expiration_date         TEXT,
    disabled                INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at              INTEGER NOT NULL,
    created_by              TEXT NOT NULL,
    revoked_at              INTEGER,
    revoked_by              TEXT,
    last_used_at            INTEGER,
    daily_cost_limit_micros INTEGER CHECK (daily_cost_limit_micros >= 0),
    total_cost_limit_micros INTEGER CHECK (total_cost_limit_micros >= 0),
    concurrency_limit       INTEGER CHECK (concurrency_limit > 0),
    rate_limit_per_minute   INTEGER CHECK (rate_limit_per_minute > 0),
    UNIQUE (account_id, name),
    -- A key's partner is its account's partner.
    FOREIGN KEY (account_id, partner_id) REFERENCES accounts (id, partner_id),
    -- Pairs, and only pairs, have a public access key.
    CHECK ((kind = 'pair' AND access_key IS NOT NULL) OR (kind = 'token' AND access_key IS NULL))
);
CREATE INDEX keys_partner ON keys (partner_id);

-- Metering (written by the counter flush).
CREATE TABLE usage_daily (
    day      TEXT NOT NULL,
    scope    TEXT NOT NULL CHECK (scope IN ('key', 'account', 'partner')),
    scope_id TEXT NOT NULL,
    metric   TEXT NOT NULL,
    value    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, scope, scope_id, metric)
);
CREATE INDEX usage_daily_scope ON usage_daily (scope, scope_id, day);

-- Running totals per quota window (`time_window`: a day, a billing period or 'lifetime';
-- not named `window`, a reserved word in PostgreSQL).
CREATE TABLE counters (
    scope       TEXT NOT NULL CHECK (scope IN ('key', 'account', 'partner')),
    scope_id    TEXT NOT NULL,
    metric      TEXT NOT NULL,
    time_window TEXT NOT NULL,
    value       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, scope_id, metric, time_window)
);

-- Idempotency tokens of applied flush batches, so a retried commit never counts twice.
CREATE TABLE flush_batches (
    token      TEXT PRIMARY KEY NOT NULL,
    applied_at INTEGER NOT NULL
);
