-- Payments (WeChat Pay v3): orders keyed by out_trade_no, the notifications received (deduplicated on
-- WeChat's notification id), refunds (idempotent per out_refund_no), e-invoice applications, and the
-- effects that follow-up jobs applied (one row per payment and effect: the idempotency barrier of the
-- queue's consumers). A payment references its sale through an opaque sale_ref for now.
CREATE TABLE payments (
    id               bigserial PRIMARY KEY,
    out_trade_no     text NOT NULL UNIQUE CHECK (out_trade_no ~ '^[0-9A-Za-z_|*-]{6,32}$'),
    sale_ref         text NOT NULL CHECK (length(sale_ref) BETWEEN 1 AND 128),
    station_id       bigint,
    openid           text NOT NULL CHECK (length(openid) BETWEEN 1 AND 128),
    amount_fen       bigint NOT NULL CHECK (amount_fen > 0),
    state            text NOT NULL DEFAULT 'created'
                     CHECK (state IN ('created', 'paid', 'closed', 'failed')),
    prepay_id        text,
    expires_at       timestamptz NOT NULL,
    transaction_id   text UNIQUE,
    paid_fen         bigint CHECK (paid_fen > 0),
    paid_at          timestamptz,
    refunded_fen     bigint NOT NULL DEFAULT 0 CHECK (refunded_fen >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (refunded_fen <= coalesce(paid_fen, 0)),
    CHECK ((state = 'paid') = (transaction_id IS NOT NULL AND paid_at IS NOT NULL AND paid_fen IS NOT NULL))
);
-- A sale has at most one live payment (created or paid): a closed order may be followed by another.
CREATE UNIQUE INDEX payments_one_live_per_sale ON payments (sale_ref) WHERE state IN ('created', 'paid');
CREATE INDEX payments_open ON payments (created_at) WHERE state = 'created';

CREATE TABLE payment_notifications (
    id             text PRIMARY KEY,  -- WeChat's notification id: a redelivery has the same
    event_type     text NOT NULL,
    out_trade_no   text NOT NULL,
    out_refund_no  text,
    resource       jsonb NOT NULL,    -- the decrypted resource
    received_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payment_refunds (
    out_refund_no  text PRIMARY KEY CHECK (out_refund_no ~ '^[0-9A-Za-z_|*@-]{1,64}$'),
    out_trade_no   text NOT NULL REFERENCES payments (out_trade_no),
    refund_fen     bigint NOT NULL CHECK (refund_fen > 0),
    reason         text NOT NULL CHECK (length(reason) <= 80),
    state          text NOT NULL DEFAULT 'requested'
                   CHECK (state IN ('requested', 'processing', 'success', 'closed', 'abnormal')),
    refund_id      text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payment_invoices (
    fapiao_apply_id  text PRIMARY KEY,
    out_trade_no     text NOT NULL REFERENCES payments (out_trade_no),
    fapiao_id        text NOT NULL,
    buyer_type       text NOT NULL CHECK (buyer_type IN ('INDIVIDUAL', 'ORGANIZATION')),
    buyer_name       text NOT NULL,
    buyer_taxpayer_id text,
    seller_station_id bigint NOT NULL,
    total_fen        bigint NOT NULL CHECK (total_fen > 0),
    status           text NOT NULL DEFAULT 'requested',
    detail           jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (buyer_type = 'INDIVIDUAL' OR buyer_taxpayer_id IS NOT NULL)
);

-- What follow-up jobs did, once each: a job inserts its row in the transaction that records the effect,
-- so a job run twice (at-least-once delivery, a worker killed mid-job) applies it once.
CREATE TABLE payment_effects (
    out_trade_no  text NOT NULL,
    effect        text NOT NULL,
    detail        jsonb NOT NULL DEFAULT '{}'::jsonb,
    done_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (out_trade_no, effect)
);

-- The notifications, effects and bills are records: the service adds to them and never rewrites them.
REVOKE UPDATE, DELETE, TRUNCATE ON payment_notifications, payment_effects FROM fuel_app;
