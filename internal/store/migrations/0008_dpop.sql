-- DPoP: codes (dpop_jkt of the authorization request) and refresh tokens
-- bound to a key's RFC 7638 thumbprint ('' for none), and the secrets the
-- replicas share (the key of the DPoP nonces).
ALTER TABLE authorization_codes ADD COLUMN jkt TEXT NOT NULL DEFAULT '';
ALTER TABLE refresh_tokens ADD COLUMN jkt TEXT NOT NULL DEFAULT '';
CREATE TABLE shared_secrets (
    name       TEXT   PRIMARY KEY,
    secret     TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
