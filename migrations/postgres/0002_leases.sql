-- Budget leases (`store.quota_mode = "lease"`): the slice of a money limit (a key's cost limit
-- for one window, a partner's balance) that one instance may spend without asking. For every
-- budget, what the counters (or the balance) hold plus every unexpired lease never exceeds the
-- limit: grants and syncs take the sync advisory lock, a sync deducts what it applies from the
-- syncing instance's lease and renews its leases. `expires_at` is µs on the database's clock;
-- a lease not renewed by then (its instance was killed) is reclaimed by the next grant.
CREATE TABLE leases (
    scope       TEXT NOT NULL CHECK (scope IN ('key', 'partner')),
    scope_id    TEXT NOT NULL,
    metric      TEXT NOT NULL,
    time_window TEXT NOT NULL,
    instance    TEXT NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount >= 0),
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (scope, scope_id, metric, time_window, instance)
);
CREATE INDEX leases_instance ON leases (instance);
CREATE INDEX leases_expiry ON leases (expires_at);
