-- Posture sources managed through the admin API: versioned JSON documents,
-- like providers.
CREATE TABLE posture_sources (
    id         TEXT   PRIMARY KEY,
    version    BIGINT NOT NULL,
    document   TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
