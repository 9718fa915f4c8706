-- Trusted federation providers and registered MCP clients managed through
-- the admin API: versioned JSON documents, like trust maps.
CREATE TABLE federation_providers (
    id         TEXT   PRIMARY KEY,
    version    BIGINT NOT NULL,
    document   TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE clients (
    id         TEXT   PRIMARY KEY,
    version    BIGINT NOT NULL,
    document   TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
