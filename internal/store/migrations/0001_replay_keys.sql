-- Single-use evidence: a key (hashed) is held until expires_at (unix microseconds).
CREATE TABLE replay_keys (
    key_hash   TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX replay_keys_expires_at ON replay_keys (expires_at);
