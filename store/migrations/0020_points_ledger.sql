-- Points on a double-entry ledger (pgledger's shape): accounts with a balance and a version, transfers
-- between two accounts, and one entry per account side carrying the previous and current balance and
-- the account version, so every balance can be checked from its entries. Points earned form lots that
-- expire on a rolling basis (FIFO); a redemption is a two-phase hold (pending -> posted | voided) keyed by
-- the payment's out_trade_no, with a barrier table that makes post and void idempotent and remembers a
-- void that came before its hold.
CREATE TABLE ledger_accounts (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    kind        text NOT NULL CHECK (kind IN ('user', 'issued', 'held', 'redeemed', 'expired', 'reversed')),
    user_id     bigint UNIQUE REFERENCES users (id),
    balance     bigint NOT NULL DEFAULT 0,
    version     bigint NOT NULL DEFAULT 0 CHECK (version >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'user') = (user_id IS NOT NULL))
);

-- the system accounts: points come from 'issued' and end in 'redeemed', 'expired' or 'reversed';
-- 'held' carries pending redemptions
INSERT INTO ledger_accounts (name, kind) VALUES
    ('system:issued', 'issued'), ('system:held', 'held'), ('system:redeemed', 'redeemed'),
    ('system:expired', 'expired'), ('system:reversed', 'reversed');

CREATE TABLE ledger_transfers (
    id               bigserial PRIMARY KEY,
    ref              text NOT NULL UNIQUE CHECK (length(ref) BETWEEN 1 AND 200),  -- the idempotency key
    kind             text NOT NULL CHECK (kind IN ('earn', 'hold', 'post', 'void', 'expire',
                                                   'reverse_earn', 'return_redeemed', 'adjust')),
    from_account_id  bigint NOT NULL REFERENCES ledger_accounts (id),
    to_account_id    bigint NOT NULL REFERENCES ledger_accounts (id),
    amount           bigint NOT NULL CHECK (amount > 0),
    user_id          bigint REFERENCES users (id),
    out_trade_no     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (from_account_id <> to_account_id)
);
CREATE INDEX ledger_transfers_user ON ledger_transfers (user_id, id);
CREATE INDEX ledger_transfers_payment ON ledger_transfers (out_trade_no) WHERE out_trade_no IS NOT NULL;

CREATE TABLE ledger_entries (
    id                bigserial PRIMARY KEY,
    transfer_id       bigint NOT NULL REFERENCES ledger_transfers (id),
    account_id        bigint NOT NULL REFERENCES ledger_accounts (id),
    amount            bigint NOT NULL CHECK (amount <> 0),
    previous_balance  bigint NOT NULL,
    current_balance   bigint NOT NULL,
    account_version   bigint NOT NULL CHECK (account_version >= 1),
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, account_version),
    CHECK (current_balance = previous_balance + amount)
);
CREATE INDEX ledger_entries_transfer ON ledger_entries (transfer_id);

CREATE TABLE points_lots (
    id                  bigserial PRIMARY KEY,
    user_id             bigint NOT NULL REFERENCES users (id),
    source_transfer_id  bigint NOT NULL REFERENCES ledger_transfers (id),
    points              bigint NOT NULL CHECK (points >= 0),
    remaining           bigint NOT NULL CHECK (remaining >= 0 AND remaining <= points),
    earned_at           timestamptz NOT NULL,
    expires_at          timestamptz NOT NULL,
    CHECK (expires_at > earned_at)
);
CREATE INDEX points_lots_live ON points_lots (user_id, expires_at) WHERE remaining > 0;
CREATE INDEX points_lots_due ON points_lots (expires_at) WHERE remaining > 0;

CREATE TABLE points_holds (
    ref                  text PRIMARY KEY,            -- the payment's out_trade_no
    user_id              bigint REFERENCES users (id),
    points               bigint NOT NULL CHECK (points >= 0),
    fen_off              bigint NOT NULL CHECK (fen_off >= 0),
    state                text NOT NULL CHECK (state IN ('pending', 'posted', 'voided')),
    hold_transfer_id     bigint REFERENCES ledger_transfers (id),
    resolve_transfer_id  bigint REFERENCES ledger_transfers (id),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX points_holds_user ON points_holds (user_id, state);

-- which lots a hold took points from (a void gives them back to the same lots)
CREATE TABLE points_hold_lots (
    ref     text NOT NULL REFERENCES points_holds (ref),
    lot_id  bigint NOT NULL REFERENCES points_lots (id),
    points  bigint NOT NULL CHECK (points > 0),
    PRIMARY KEY (ref, lot_id)
);

-- one row per (hold reference, phase) that ran: a repeat finds its row and does nothing
CREATE TABLE points_hold_barriers (
    ref         text NOT NULL,
    phase       text NOT NULL CHECK (phase IN ('hold', 'post', 'void')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ref, phase)
);

-- the service role: ledger records are never rewritten or deleted (accounts and lots and holds move)
REVOKE UPDATE, DELETE, TRUNCATE ON ledger_transfers, ledger_entries, points_hold_barriers, points_hold_lots
    FROM fuel_app;
REVOKE DELETE, TRUNCATE ON ledger_accounts, points_lots, points_holds FROM fuel_app;
