-- Per-client consents of users; scopes and resources are space-separated.
CREATE TABLE consents (
    id         TEXT   PRIMARY KEY,
    provider   TEXT   NOT NULL,
    user_sub   TEXT   NOT NULL,
    client_id  TEXT   NOT NULL,
    scopes     TEXT   NOT NULL,
    resources  TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX consents_user_client ON consents (user_sub, client_id);
