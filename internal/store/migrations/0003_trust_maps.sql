-- Trust maps managed through the admin API; version is incremented by
-- every write (optimistic concurrency); document is the map as JSON.
CREATE TABLE trust_maps (
    id         TEXT   PRIMARY KEY,
    version    BIGINT NOT NULL,
    document   TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
