-- Key names are unique among an account's live keys only: a revoked key keeps its name for the
-- record, and the name can be given to a new key (Gateway3 deletes keys by name, then users
-- create a key with the same name again). SQLite cannot drop a table constraint, so the table
-- is rebuilt without `UNIQUE (account_id, name)`; nothing references `keys`, so dropping the old
-- table is safe with foreign keys on.

CREATE TABLE keys_new (
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
    -- A key's partner is its account's partner.
    FOREIGN KEY (account_id, partner_id) REFERENCES accounts (id, partner_id),
    -- Pairs, and only pairs, have a public access key.
    CHECK ((kind = 'pair' AND access_key IS NOT NULL) OR (kind = 'token' AND access_key IS NULL))
);

INSERT INTO keys_new (id, account_id, partner_id, name, label, description, kind, access_key,
    digest, permissions, ip_whitelist, expiration_date, disabled, created_at, created_by,
    revoked_at, revoked_by, last_used_at, daily_cost_limit_micros, total_cost_limit_micros,
    concurrency_limit, rate_limit_per_minute)
SELECT id, account_id, partner_id, name, label, description, kind, access_key,
    digest, permissions, ip_whitelist, expiration_date, disabled, created_at, created_by,
    revoked_at, revoked_by, last_used_at, daily_cost_limit_micros, total_cost_limit_micros,
    concurrency_limit, rate_limit_per_minute
FROM keys;

DROP TABLE keys;
ALTER TABLE keys_new RENAME TO keys;

CREATE INDEX keys_partner ON keys (partner_id);
-- Unique names among live keys; also serves "the live keys of an account".
CREATE UNIQUE INDEX keys_account_live_name ON keys (account_id, name) WHERE revoked_at IS NULL;
