-- Browser flows in progress (authorization requests waiting for a sign-in
-- or a consent), under the SHA-256 of their single-use key; times in Unix
-- microseconds, 0 for never.
CREATE TABLE browser_flows (
    key_hash   TEXT   PRIMARY KEY,
    data       TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    taken_at   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX browser_flows_expires ON browser_flows (expires_at);
CREATE INDEX refresh_tokens_user ON refresh_tokens (provider, user_sub, client_id);
