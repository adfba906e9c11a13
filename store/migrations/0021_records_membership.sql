-- After the fill-up: membership tiers (data), a member-tier condition on promotions, odometer readings
-- per paid fill-up, and the deleted account's anonymisation marker.

-- Membership tiers: a user's tier is the highest whose min_spend_fen the user's paid spend (net of
-- refunds) over the last 12 months reaches. The rows are data: the service reads them, an operator (the
-- database owner) changes them.
CREATE TABLE membership_tiers (
    code             text PRIMARY KEY CHECK (code ~ '^[a-z]{1,20}$'),
    rank             integer NOT NULL UNIQUE CHECK (rank >= 0),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 40),
    name_en          text NOT NULL CHECK (length(name_en) BETWEEN 1 AND 40),
    min_spend_fen    bigint NOT NULL UNIQUE CHECK (min_spend_fen >= 0),
    earn_multiplier  numeric(4, 2) NOT NULL CHECK (earn_multiplier >= 1 AND earn_multiplier <= 10),
    CHECK ((rank = 0) = (min_spend_fen = 0))
);
INSERT INTO membership_tiers (code, rank, name, name_en, min_spend_fen, earn_multiplier) VALUES
    ('basic', 0, '普通会员', 'Basic', 0, 1.00),
    ('silver', 1, '银卡会员', 'Silver', 200000, 1.20),
    ('gold', 2, '金卡会员', 'Gold', 600000, 1.50),
    ('platinum', 3, '铂金会员', 'Platinum', 1500000, 2.00);
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON membership_tiers FROM fuel_app;

-- A promotion for members of a tier or above (null: anyone). The same engine prices ranking and payment.
ALTER TABLE promotions ADD COLUMN min_tier text REFERENCES membership_tiers (code);

-- The driver's odometer at a paid fill-up (optional): readings never go backwards in time per user.
-- Personal data: removed with the account.
CREATE TABLE record_odometers (
    out_trade_no  text PRIMARY KEY REFERENCES payments (out_trade_no),
    user_id       bigint NOT NULL REFERENCES users (id),
    odometer_km   integer NOT NULL CHECK (odometer_km BETWEEN 0 AND 2000000),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX record_odometers_user ON record_odometers (user_id);

-- Paid payments by payer, for the e-records (newest first).
CREATE INDEX sale_payments_user ON sale_payments (user_id);

-- When the account's personal data was removed (DELETE /v1/me); its payments stay, anonymised.
ALTER TABLE users ADD COLUMN anonymised_at timestamptz;
ALTER TABLE users ADD CONSTRAINT users_anonymised_deleted CHECK (anonymised_at IS NULL OR deleted_at IS NOT NULL);
