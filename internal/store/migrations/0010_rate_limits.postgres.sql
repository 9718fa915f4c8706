-- Token buckets the replicas share (per-identity and per-client limits),
-- unlogged: a crash may forget them, which costs nothing but a refilled
-- bucket, and no write waits for the WAL.
-- tokens left at updated_at (Unix microseconds).
CREATE UNLOGGED TABLE rate_buckets (
    bucket     TEXT             PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    updated_at BIGINT           NOT NULL
);
CREATE INDEX rate_buckets_updated ON rate_buckets (updated_at);
