-- Paying a controller sale: which payment pays which sale (one sale per payment, at most one live payment
-- per sale through payments.sale_ref = 'fcc:<sale id>'), the client's idempotency keys with their recovery
-- points (Stripe's design, brandur/rocket-rides-atomic), back-office cases the site's answers open, and
-- the alerts of the daily reconciliation against WeChat Pay's trade bill.

CREATE TABLE sale_payments (
    out_trade_no     text PRIMARY KEY REFERENCES payments (out_trade_no),
    sale_id          bigint NOT NULL REFERENCES fcc_sales (id),
    user_id          bigint NOT NULL REFERENCES users (id),
    fsc_tx_id        uuid NOT NULL,                 -- our OpenFSC FSCTransactionID for LOCKTX/CLEAR
    sale_amount_fen  bigint NOT NULL CHECK (sale_amount_fen > 0),
    discount_fen     bigint NOT NULL DEFAULT 0 CHECK (discount_fen >= 0),
    promotion_id     bigint,
    -- what the site said to our CLEAR (or UNLOCKTX once the order closed unpaid)
    site_state       text NOT NULL DEFAULT 'locked'
                     CHECK (site_state IN ('locked', 'cleared', 'paid_elsewhere', 'unknown_at_site', 'locked_elsewhere',
                                           'unlocked')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (discount_fen < sale_amount_fen)
);
CREATE INDEX sale_payments_sale ON sale_payments (sale_id);

CREATE TABLE idempotency_keys (
    id               bigserial PRIMARY KEY,
    user_id          bigint NOT NULL REFERENCES users (id),
    idempotency_key  text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 100),
    request_method   text NOT NULL,
    request_path     text NOT NULL,
    request_params   jsonb NOT NULL,
    recovery_point   text NOT NULL DEFAULT 'started'
                     CHECK (recovery_point IN ('started', 'sale_locked', 'order_created', 'finished')),
    out_trade_no     text,
    response_code    integer,
    response_body    jsonb,
    locked_at        timestamptz,               -- a request is working on it (another waits or gets 409)
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_run_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, idempotency_key),
    CHECK ((recovery_point = 'finished') = (response_code IS NOT NULL))
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Something a person must look at: a paid sale the site no longer knows (CLEAR 404), a sale locked by
-- another payment when ours was paid (409), a refund that ended abnormal.
CREATE TABLE payment_cases (
    id               bigserial PRIMARY KEY,
    out_trade_no     text NOT NULL REFERENCES payments (out_trade_no),
    sale_id          bigint REFERENCES fcc_sales (id),
    kind             text NOT NULL CHECK (kind IN ('unknown_at_site', 'locked_elsewhere', 'refund_abnormal')),
    detail           jsonb NOT NULL DEFAULT '{}'::jsonb,
    opened_at        timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz,
    UNIQUE (out_trade_no, kind)
);

-- One row per difference between a day's trade bill and our records (re-running a day adds nothing new).
CREATE TABLE reconciliation_alerts (
    id               bigserial PRIMARY KEY,
    bill_date        date NOT NULL,
    kind             text NOT NULL CHECK (kind IN (
                         'missing_payment',      -- in the bill, not in our payments
                         'amount_mismatch',      -- amounts or transaction ids differ
                         'state_mismatch',       -- paid at WeChat Pay, not paid here (or the reverse)
                         'no_sale',              -- a payment without its controller sale
                         'sale_not_settled',     -- paid, but the sale is neither cleared by us nor refunded
                         'missing_in_bill',      -- paid here that day, absent from the bill
                         'refund_mismatch'       -- a refund row that disagrees with our refund
                     )),
    ref              text NOT NULL,              -- out_trade_no or out_refund_no
    detail           jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (bill_date, kind, ref)
);

-- The service role: keys and sale payments are rewritten (recovery points, site state), never deleted;
-- cases are resolved, never deleted; alerts are records.
REVOKE DELETE, TRUNCATE ON sale_payments, payment_cases FROM fuel_app;
REVOKE TRUNCATE ON idempotency_keys FROM fuel_app;
REVOKE UPDATE, DELETE, TRUNCATE ON reconciliation_alerts FROM fuel_app;
