-- Fuelling sessions: a user's phone bound to one nozzle, following the pump through the pure state machine
-- of fuelling/ (bound, nozzle_up, authorised, fuelling, completed, locked, paid; exits expired,
-- taken_by_cashier, cancelled, review), and the session's events in order (what the live WebSocket and its
-- polling fallback replay).
CREATE TABLE fuelling_sessions (
    id                 bigserial PRIMARY KEY,
    user_id            bigint NOT NULL REFERENCES users (id),
    station_id         bigint NOT NULL,
    pump_no            integer NOT NULL,
    nozzle_no          integer NOT NULL,
    grade              text NOT NULL CHECK (grade IN ('89', '92', '95', '98', '0')),
    state              text NOT NULL CHECK (state IN ('bound', 'nozzle_up', 'authorised', 'fuelling',
                                                       'completed', 'locked', 'paid', 'expired',
                                                       'taken_by_cashier', 'cancelled', 'review')),
    mode               text NOT NULL CHECK (mode IN ('postpay', 'preset')),
    preset_fen         bigint CHECK (preset_fen > 0),
    preset_fsc_tx_id   uuid,
    -- the pure session (fuelling.Session) as JSON: the one record of what the state machine knows
    machine            jsonb NOT NULL,
    -- the fuelling the session follows (the SiteTxID of its first progress, or of its sale)
    site_tx_id         text CHECK (length(site_tx_id) BETWEEN 1 AND 64),
    sale_id            bigint REFERENCES fcc_sales (id),
    volume_ml          bigint NOT NULL DEFAULT 0 CHECK (volume_ml >= 0),
    amount_fen         bigint NOT NULL DEFAULT 0 CHECK (amount_fen >= 0),
    review_reason      text,
    last_seq           integer NOT NULL DEFAULT 1 CHECK (last_seq >= 1),
    expires_at         timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    ended_at           timestamptz,
    FOREIGN KEY (station_id, pump_no, nozzle_no) REFERENCES nozzles,
    CHECK ((mode = 'preset') = (preset_fen IS NOT NULL))
);
-- A pump (fuelling point: one car at a time, whichever of its nozzles) follows at most one session at the
-- pump, so a nozzle has at most one: two phones scanning at once, one insert wins, the other is refused.
-- A completed (or locked) session no longer holds the pump: it holds its sale until paid or left.
CREATE UNIQUE INDEX fuelling_sessions_one_at_pump ON fuelling_sessions (station_id, pump_no)
    WHERE state IN ('bound', 'nozzle_up', 'authorised', 'fuelling');
-- A controller sale belongs to at most one session (one payment per sale).
CREATE UNIQUE INDEX fuelling_sessions_one_per_sale ON fuelling_sessions (sale_id) WHERE sale_id IS NOT NULL;
CREATE INDEX fuelling_sessions_user ON fuelling_sessions (user_id, id);
CREATE INDEX fuelling_sessions_expiring ON fuelling_sessions (expires_at)
    WHERE state IN ('bound', 'nozzle_up', 'authorised');

-- The session's events, numbered 1, 2, ... with no gap (seq 1: bound). Written in the transaction that
-- moves the session; a NOTIFY on channel `fuelling` ({"session_id", "seq"}) only wakes the readers.
CREATE TABLE fuelling_session_events (
    session_id    bigint NOT NULL REFERENCES fuelling_sessions (id),
    seq           integer NOT NULL CHECK (seq >= 1),
    type          text NOT NULL CHECK (type IN ('state', 'progress')),
    kind          text NOT NULL,
    state         text NOT NULL,
    volume_ml     bigint NOT NULL CHECK (volume_ml >= 0),
    amount_fen    bigint NOT NULL CHECK (amount_fen >= 0),
    progress_seq  bigint,
    detail        jsonb NOT NULL DEFAULT '{}'::jsonb,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (session_id, seq)
);

-- The service role: sessions are never deleted; their events are append-only.
REVOKE DELETE, TRUNCATE ON fuelling_sessions FROM fuel_app;
REVOKE UPDATE, DELETE, TRUNCATE ON fuelling_session_events FROM fuel_app;
