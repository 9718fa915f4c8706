-- The decision's inputs kept with a browser grant, so that a code's
-- redemption and every refresh decide again (the person's issuer and the
-- attributes the trust maps read, as JSON), the absolute end of a refresh
-- family (0: not set, rows from before), and the access token a code's
-- first redemption gave (revoked when the code is used again).
ALTER TABLE authorization_codes ADD COLUMN identity TEXT NOT NULL DEFAULT '';
ALTER TABLE authorization_codes ADD COLUMN access_jti TEXT NOT NULL DEFAULT '';
ALTER TABLE authorization_codes ADD COLUMN access_expires_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE refresh_tokens ADD COLUMN identity TEXT NOT NULL DEFAULT '';
ALTER TABLE refresh_tokens ADD COLUMN family_expires_at BIGINT NOT NULL DEFAULT 0;
