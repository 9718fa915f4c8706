-- Token buckets the replicas share (per-identity and per-client limits):
-- tokens left at updated_at (Unix microseconds).
CREATE TABLE rate_buckets (
    bucket     TEXT             PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    updated_at BIGINT           NOT NULL
);
CREATE INDEX rate_buckets_updated ON rate_buckets (updated_at);
