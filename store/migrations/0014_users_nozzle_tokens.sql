-- The user centre and the nozzles' QR codes.
-- 1. Users: one row per WeChat openid (of our mini-program). A user is never deleted, only marked
--    (deleted_at), so the audit log and later orders keep their owner; a marked user cannot log in.
CREATE TABLE users (
    id             bigserial PRIMARY KEY,
    openid         text NOT NULL UNIQUE CHECK (length(openid) BETWEEN 1 AND 128),
    unionid        text CHECK (length(unionid) BETWEEN 1 AND 128),
    phone          text CHECK (phone ~ '^\+?[0-9]{5,20}$'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);
CREATE INDEX users_unionid ON users (unionid) WHERE unionid IS NOT NULL;

-- 2. Nozzle tokens: the opaque value in a nozzle sticker's QR code (its `scene`). The token is the row's
--    random id and an HMAC over the id and the nozzle it is bound to (key derived from FUEL_SECRET_KEY),
--    so a token names one nozzle of one station and cannot be forged or re-pointed. A nozzle has at most
--    one active token; a revoked token is kept (a scan of an old sticker gets a clear "revoked").
CREATE TABLE nozzle_tokens (
    id          bigint PRIMARY KEY,  -- 64 random bits, not a sequence: tokens do not count nozzles
    station_id  bigint NOT NULL,
    pump_no     integer NOT NULL,
    nozzle_no   integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    FOREIGN KEY (station_id, pump_no, nozzle_no) REFERENCES nozzles ON DELETE CASCADE
);
CREATE UNIQUE INDEX nozzle_tokens_one_active ON nozzle_tokens (station_id, pump_no, nozzle_no)
    WHERE revoked_at IS NULL;

-- The service reads and writes users but never deletes one; it only reads nozzle tokens (the ingest
-- CLI, as the owner, issues and revokes them).
REVOKE DELETE, TRUNCATE ON users FROM fuel_app;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON nozzle_tokens FROM fuel_app;
