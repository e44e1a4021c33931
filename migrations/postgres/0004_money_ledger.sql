-- The partner's money ledger: every credit and charge of its balance, written in the same
-- transaction as the balance change, so the entries of a partner always sum to its balance.
-- Usage is one entry per partner and UTC day (`day`), grown by each flush; other kinds have
-- no `day` (NULLs never collide in the unique index).
CREATE TABLE money_ledger (
    id            TEXT PRIMARY KEY,
    partner_id    TEXT NOT NULL REFERENCES partners (id),
    at            BIGINT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('opening', 'top_up', 'plan_change', 'usage')),
    amount_micros BIGINT NOT NULL,
    account_id    TEXT,
    plan_id       BIGINT,
    day           TEXT,
    note          TEXT
);
CREATE INDEX money_ledger_partner_at ON money_ledger (partner_id, at, id);
CREATE UNIQUE INDEX money_ledger_usage_day ON money_ledger (partner_id, day);

-- What existed before the ledger: one opening entry per partner with a balance.
INSERT INTO money_ledger (id, partner_id, at, kind, amount_micros)
SELECT gen_random_uuid()::TEXT, id, created_at, 'opening', balance_micros
FROM partners WHERE balance_micros <> 0;

-- The billing period of an account's plan and the highest plan price held in it: a plan
-- change charges only what goes above that peak.
ALTER TABLE accounts ADD COLUMN plan_period TEXT;
ALTER TABLE accounts ADD COLUMN plan_period_peak_micros BIGINT NOT NULL DEFAULT 0;
