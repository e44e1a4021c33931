-- The partner's money ledger: every credit and charge of its balance, written in the same
-- transaction as the balance change, so the entries of a partner always sum to its balance.
-- Usage is one entry per partner and UTC day (`day`), grown by each flush; other kinds have
-- no `day` (NULLs never collide in the unique index).
CREATE TABLE money_ledger (
    id            TEXT PRIMARY KEY NOT NULL,
    partner_id    TEXT NOT NULL REFERENCES partners (id),
    at            INTEGER NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('opening', 'top_up', 'plan_change', 'usage')),
    amount_micros INTEGER NOT NULL,
    account_id    TEXT,
    plan_id       INTEGER,
    day           TEXT,
    note          TEXT
);
CREATE INDEX money_ledger_partner_at ON money_ledger (partner_id, at, id);
CREATE UNIQUE INDEX money_ledger_usage_day ON money_ledger (partner_id, day);

-- What existed before the ledger: one opening entry per partner with a balance.
INSERT INTO money_ledger (id, partner_id, at, kind, amount_micros)
SELECT lower(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-8'
             || substr(h, 18, 3) || '-' || substr(h, 21, 12)),
       id, created_at, 'opening', balance_micros
FROM (SELECT hex(randomblob(16)) AS h, id, created_at, balance_micros FROM partners)
WHERE balance_micros <> 0;

-- The billing period of an account's plan and the highest plan price held in it: a plan
-- change charges only what goes above that peak.
ALTER TABLE accounts ADD COLUMN plan_period TEXT;
ALTER TABLE accounts ADD COLUMN plan_period_peak_micros INTEGER NOT NULL DEFAULT 0;
