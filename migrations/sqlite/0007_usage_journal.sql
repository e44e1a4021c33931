-- Usage deltas as flushed, one compact row per flush batch (see src/store/usage_journal.rs).
-- Folded into `counters` and `usage_daily` every few dozen batches and before those are read,
-- so a key used every second costs one upsert per fold instead of one per flush.
CREATE TABLE usage_journal (
    seq     INTEGER PRIMARY KEY,
    deltas  INTEGER NOT NULL CHECK (deltas > 0),
    payload BLOB NOT NULL
);

-- `last_used_at` of the keys used in each flush interval, 24 bytes a key (16-byte id, 8-byte
-- little-endian Unix time); folded into `keys.last_used_at` the same way.
CREATE TABLE touch_journal (
    seq     INTEGER PRIMARY KEY,
    keys    INTEGER NOT NULL CHECK (keys > 0),
    payload BLOB NOT NULL
);
