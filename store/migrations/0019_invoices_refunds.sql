-- E-invoices and refunds of a sale's payment.
-- The seller named on a fuel e-invoice is the station that sold the fuel: its legal name and taxpayer id
-- (纳税人识别号), set by operators. An invoice request belongs to the payer who asked for it, behind the
-- client's Idempotency-Key; its status follows WeChat Pay's fapiao application (issued, then reversed
-- by a red-letter invoice 红冲 when the payment is refunded).
CREATE TABLE station_sellers (
    station_id    bigint PRIMARY KEY REFERENCES stations (id),
    legal_name    text NOT NULL CHECK (length(btrim(legal_name)) BETWEEN 1 AND 100),
    taxpayer_id   text NOT NULL CHECK (taxpayer_id ~ '^[0-9A-Z]{15}$|^[0-9A-Z]{17,18}$|^[0-9A-Z]{20}$'),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE payment_invoices
    ADD COLUMN user_id          bigint REFERENCES users (id),
    ADD COLUMN idempotency_key  text CHECK (length(idempotency_key) BETWEEN 1 AND 100),
    ADD COLUMN request          jsonb NOT NULL DEFAULT '{}'::jsonb,  -- the buyer as asked (the key's parameters)
    ADD COLUMN reverse_wanted   boolean NOT NULL DEFAULT false,      -- the payment was refunded: 红冲 it
    ADD CONSTRAINT payment_invoices_status_check CHECK (status IN (
        'requested',   -- stored, the application job is queued
        'applied',     -- WeChat Pay accepted the application (ISSUE_ACCEPTED)
        'issued',      -- the blue invoice exists
        'reversing',   -- red-letter reversal accepted (REVERSE_ACCEPTED)
        'reversed',    -- the red-letter invoice exists: the invoice is cancelled
        'failed'       -- WeChat Pay refused the application
    )),
    ADD CONSTRAINT payment_invoices_one_per_payment UNIQUE (out_trade_no);
CREATE UNIQUE INDEX payment_invoices_key ON payment_invoices (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;


REVOKE DELETE, TRUNCATE ON station_sellers, payment_invoices FROM fuel_app;
