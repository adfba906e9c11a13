-- Risk control: rule overrides (the rules themselves are versioned files, data/risk/rules.json), deny and
-- allow lists (keyed hashes, never raw identifiers), and the decisions: every evaluation at bind, pay,
-- redemption or price change, with the facts it saw, the rules that fired and the rules version, so that
-- each decision can be explained (and re-run) from its row alone. PostgreSQL is the record; Redis only
-- holds the sliding windows the velocity facts are counted in.

CREATE TABLE risk_rules (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_.]{1,63}$'),
    point       text NOT NULL CHECK (point IN ('bind', 'pay', 'redeem', 'price')),
    expr        text NOT NULL CHECK (length(expr) BETWEEN 1 AND 2000),
    outcome     text NOT NULL CHECK (outcome IN ('allow', 'review', 'deny')),
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 300),
    enabled     boolean NOT NULL DEFAULT true,    -- false: the file's rule of that name is switched off
    revision    bigserial NOT NULL,               -- bumped on every write: the reload's version check
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE risk_lists (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('allow', 'deny')),
    subject     text NOT NULL CHECK (subject IN ('user', 'device', 'payer', 'station', 'plate')),
    value_hash  text NOT NULL CHECK (value_hash ~ '^[0-9a-f]{64}$'),
    note        text NOT NULL DEFAULT '',
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subject, value_hash, kind)
);

CREATE TABLE risk_decisions (
    id            bigserial PRIMARY KEY,
    point         text NOT NULL CHECK (point IN ('bind', 'pay', 'redeem', 'price')),
    outcome       text NOT NULL CHECK (outcome IN ('allow', 'review', 'deny')),
    fired         jsonb NOT NULL,                 -- [{rule, outcome, reason, expr}] in evaluation order
    facts         jsonb NOT NULL,                 -- exactly what the rules saw
    rules_version text NOT NULL,
    subject       jsonb NOT NULL,                 -- user_id, sale_id, station_id, device hash ... (ids only)
    review_state  text CHECK (review_state IN ('pending', 'approved', 'rejected')),
    reviewed_by   text,
    reviewed_at   timestamptz,
    review_note   text,
    action        jsonb,                          -- what approving does (a held price to publish)
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((outcome = 'review') = (review_state IS NOT NULL)),
    CHECK ((review_state IN ('approved', 'rejected')) = (reviewed_at IS NOT NULL))
);
CREATE INDEX risk_decisions_pending ON risk_decisions (id) WHERE review_state = 'pending';
CREATE INDEX risk_decisions_sale ON risk_decisions ((subject ->> 'sale_id')) WHERE point = 'pay';
