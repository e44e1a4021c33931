-- Replayable responses of reseller key creations sent with an Idempotency-Key, kept 24 hours.
-- The response holds a freshly minted key, so it is stored sealed (ChaCha20-Poly1305 under a
-- key derived from the server secret): nonce (12 bytes) followed by the ciphertext.
CREATE TABLE idempotency (
    partner_id TEXT NOT NULL REFERENCES partners (id),
    idem_key   TEXT NOT NULL,
    body_hash  BLOB NOT NULL,
    response   BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (partner_id, idem_key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);
