-- Revoked access tokens: by jti (until the token's expiry), or every token
-- of a subject or a client issued at or before revoked_at (until the
-- longest lifetime has passed). Times in Unix microseconds.
CREATE TABLE token_revocations (
    kind       TEXT   NOT NULL,
    value      TEXT   NOT NULL,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX token_revocations_expires ON token_revocations (expires_at);
