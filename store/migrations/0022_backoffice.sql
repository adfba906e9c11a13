-- The station back office: staff accounts (managers and attendants of one station, separate from drivers),
-- their server-side console sessions, shift handovers (交班) with their corrections, and daily closes (日结).

CREATE TABLE staff (
    id               bigserial PRIMARY KEY,
    station_id       bigint NOT NULL REFERENCES stations (id) ON DELETE CASCADE,
    username         text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{2,31}$'),
    display_name     text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 40),
    role             text NOT NULL CHECK (role IN ('manager', 'attendant')),
    password_hash    text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    failed_logins    integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until     timestamptz,
    active           boolean NOT NULL DEFAULT true,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX staff_station ON staff (station_id);

-- A console session: only the SHA-256 of its random token is stored; it ends at expires_at or at logout.
CREATE TABLE staff_sessions (
    token_hash   bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    staff_id     bigint NOT NULL REFERENCES staff (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX staff_sessions_staff ON staff_sessions (staff_id);

-- A shift and its handover: opened by an attendant, closed with the controller's totaliser readings, tenders
-- entered, signed by the outgoing then the incoming attendant (backoffice/_handover.py holds the states).
-- Once signed the figures never change: corrections are separate rows.
CREATE TABLE shifts (
    id                 bigserial PRIMARY KEY,
    station_id         bigint NOT NULL REFERENCES stations (id) ON DELETE CASCADE,
    attendant_id       bigint NOT NULL REFERENCES staff (id),
    state              text NOT NULL CHECK (state IN ('open', 'counting', 'awaiting_incoming', 'signed')),
    opened_at          timestamptz NOT NULL,
    closed_at          timestamptz,
    readings           jsonb,         -- per nozzle: opening/closing volume totalisers, sales, amount
    cash_fen           bigint CHECK (cash_fen >= 0),
    card_fen           bigint CHECK (card_fen >= 0),
    counted_cash_fen   bigint CHECK (counted_cash_fen >= 0),
    tolerance_fen      bigint NOT NULL DEFAULT 500 CHECK (tolerance_fen BETWEEN 0 AND 100000),
    summary            jsonb,         -- the reconciliation at sign-off (expected against actual)
    outgoing_signed_at timestamptz,
    incoming_id        bigint REFERENCES staff (id),
    incoming_signed_at timestamptz,
    version            integer NOT NULL DEFAULT 1,
    CHECK (closed_at IS NULL OR closed_at >= opened_at),
    CHECK ((state = 'open') = (closed_at IS NULL))
);
-- One running shift per station.
CREATE UNIQUE INDEX shifts_one_open ON shifts (station_id) WHERE state <> 'signed';
CREATE INDEX shifts_station_time ON shifts (station_id, opened_at);

CREATE TABLE shift_corrections (
    id            bigserial PRIMARY KEY,
    shift_id      bigint NOT NULL REFERENCES shifts (id),
    field         text NOT NULL CHECK (field IN ('cash_fen', 'card_fen', 'counted_cash_fen')),
    delta_fen     bigint NOT NULL CHECK (delta_fen <> 0 AND abs(delta_fen) <= 100000000),
    reason        text NOT NULL CHECK (length(reason) BETWEEN 3 AND 200),
    staff_id      bigint REFERENCES staff (id),
    actor         text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shift_corrections_shift ON shift_corrections (shift_id, id);

-- A station's business day closed (Asia/Shanghai): the day's figures as they stood, never rewritten.
CREATE TABLE daily_closes (
    station_id   bigint NOT NULL REFERENCES stations (id) ON DELETE CASCADE,
    business_day date NOT NULL,
    totals       jsonb NOT NULL,
    closed_by    text NOT NULL,
    closed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (station_id, business_day)
);

-- The service role: sessions end, staff are deactivated, shifts move forward; nothing here is deleted, and
-- corrections and daily closes are records.
REVOKE DELETE, TRUNCATE ON staff, staff_sessions, shifts FROM fuel_app;
REVOKE UPDATE, DELETE, TRUNCATE ON shift_corrections, daily_closes FROM fuel_app;
