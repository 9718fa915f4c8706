-- Authorization codes and refresh tokens of the browser flows, kept under
-- the SHA-256 of the secret; times in Unix microseconds, 0 for never.
CREATE TABLE authorization_codes (
    code_hash      TEXT   PRIMARY KEY,
    client_id      TEXT   NOT NULL,
    redirect_uri   TEXT   NOT NULL,
    code_challenge TEXT   NOT NULL,
    resource       TEXT   NOT NULL,
    scopes         TEXT   NOT NULL,
    provider       TEXT   NOT NULL,
    user_sub       TEXT   NOT NULL,
    ttl_seconds    BIGINT NOT NULL,
    family         TEXT   NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE refresh_tokens (
    token_hash  TEXT   PRIMARY KEY,
    family      TEXT   NOT NULL,
    client_id   TEXT   NOT NULL,
    resource    TEXT   NOT NULL,
    scopes      TEXT   NOT NULL,
    provider    TEXT   NOT NULL,
    user_sub    TEXT   NOT NULL,
    ttl_seconds BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT NOT NULL DEFAULT 0,
    revoked_at  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
