-- Token signing keys. The lifecycle state is derived from the times
-- (unix microseconds); binary values are base64 text on every dialect.
CREATE TABLE signing_keys (
    kid         TEXT   PRIMARY KEY,
    algorithm   TEXT   NOT NULL,
    backend     TEXT   NOT NULL,
    public_key  TEXT   NOT NULL,
    sealed_key  TEXT   NOT NULL DEFAULT '',
    external_id TEXT   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    activate_at BIGINT NOT NULL
);
