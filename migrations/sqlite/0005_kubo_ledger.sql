-- The kubo pin ledger: which CIDs each account has pinned through the gateway and their size
-- (from the node's own answer). Several accounts may hold the same CID; the node keeps one pin
-- until the last holder removes it.
CREATE TABLE pins (
    account_id TEXT NOT NULL REFERENCES accounts (id),
    cid        TEXT NOT NULL,
    size       INTEGER NOT NULL,
    recursive  INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, cid)
);
CREATE INDEX pins_cid ON pins (cid);

-- IPNS names (kubo keys made with key/gen) each account owns, counted against the plan's
-- ipns_limit. On the node a name is stored as `tg-<account id>-<name>`.
CREATE TABLE ipns_names (
    account_id TEXT NOT NULL REFERENCES accounts (id),
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);
