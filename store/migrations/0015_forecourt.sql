-- The station link (forecourt/): site keys, the raw event log of every line a site sends, the controller's
-- sales, live fuelling progress, which link server holds which station, and commands to sites.

-- Site keys: an OpenFSC SiteAccessKey (a UUID, the public half) bound to exactly one station, with the
-- HMAC of its secret in key_hash like every other key. They authenticate PLAINAUTH only, never the API.
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check
    CHECK (role IN ('operator', 'manager', 'traffic', 'site'));
ALTER TABLE api_keys ADD COLUMN site_access_key uuid UNIQUE;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_site_check CHECK (
    (role = 'site') = (site_access_key IS NOT NULL)
    AND (role <> 'site' OR cardinality(station_ids) = 1)
);

-- Which link server holds each station's connection (one at a time: a newer connection replaces the
-- older one). A row whose last_seen_at is older than the heartbeat allows is a dead link.
CREATE TABLE forecourt_links (
    station_id     bigint PRIMARY KEY REFERENCES stations (id) ON DELETE CASCADE,
    link_id        text NOT NULL,
    connection_id  uuid NOT NULL,
    transport      text NOT NULL CHECK (transport IN ('tcp', 'ws')),
    peer           text NOT NULL DEFAULT '',
    connected_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now()
);

-- Every raw line a site sends, before it is acted on (append-only; PLAINAUTH secrets masked). station_id
-- is null for lines before authentication.
CREATE TABLE forecourt_events (
    id             bigserial PRIMARY KEY,
    received_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    connection_id  uuid NOT NULL,
    link_id        text NOT NULL,
    station_id     bigint,
    line           text NOT NULL CHECK (length(line) <= 4100)
);
CREATE INDEX forecourt_events_station ON forecourt_events (station_id, id);
CREATE INDEX forecourt_events_connection ON forecourt_events (connection_id, id);

-- A controller sale (the site's transaction buffer): volume in ml, money in fen. state mirrors the site
-- (payable, locked, cleared); review_reason is the service's own verdict: null when the volume equals the
-- totaliser delta and the amount equals price x volume within a fen, else why the sale must not be paid.
CREATE TABLE fcc_sales (
    id                  bigserial PRIMARY KEY,
    station_id          bigint NOT NULL REFERENCES stations (id) ON DELETE CASCADE,
    pump_no             integer NOT NULL,
    nozzle_no           integer,
    site_tx_id          text NOT NULL CHECK (length(site_tx_id) BETWEEN 1 AND 64),
    grade               text NOT NULL CHECK (grade IN ('89', '92', '95', '98', '0')),
    volume_ml           bigint NOT NULL CHECK (volume_ml > 0),
    amount_fen          bigint NOT NULL CHECK (amount_fen >= 0),
    unit_price_fen      integer NOT NULL CHECK (unit_price_fen > 0),
    totaliser_start_ml  bigint CHECK (totaliser_start_ml >= 0),
    totaliser_end_ml    bigint,
    state               text NOT NULL CHECK (state IN ('payable', 'locked', 'cleared')),
    offline             boolean NOT NULL DEFAULT false,
    cleared_by          text CHECK (length(cleared_by) <= 64),
    locked_by           text CHECK (length(locked_by) <= 64),
    review_reason       text,
    ended_at            timestamptz,
    first_seen_at       timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (station_id, site_tx_id),
    CHECK (totaliser_end_ml >= totaliser_start_ml),
    FOREIGN KEY (station_id, pump_no) REFERENCES pumps ON DELETE CASCADE
);
CREATE INDEX fcc_sales_pump ON fcc_sales (station_id, pump_no, id);

-- Live progress of a running fuelling; seq never goes backwards per (station, pump, site transaction).
CREATE TABLE pump_progress (
    id           bigserial PRIMARY KEY,
    station_id   bigint NOT NULL,
    pump_no      integer NOT NULL,
    nozzle_no    integer NOT NULL,
    site_tx_id   text CHECK (length(site_tx_id) BETWEEN 1 AND 64),
    seq          bigint NOT NULL CHECK (seq >= 0),
    volume_ml    bigint NOT NULL CHECK (volume_ml >= 0),
    amount_fen   bigint NOT NULL CHECK (amount_fen >= 0),
    received_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE NULLS NOT DISTINCT (station_id, pump_no, site_tx_id, seq),
    FOREIGN KEY (station_id, pump_no) REFERENCES pumps ON DELETE CASCADE
);

-- Commands to a site (LOCKTX, CLEAR, ...): a caller inserts a row and NOTIFYs forecourt_cmd; the link
-- server holding the station sends it, stores the answer and NOTIFYs forecourt_reply.
CREATE TABLE forecourt_commands (
    id             bigserial PRIMARY KEY,
    station_id     bigint NOT NULL REFERENCES stations (id) ON DELETE CASCADE,
    line           text NOT NULL CHECK (length(line) <= 4096),  -- the request without its tag
    requested_by   text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    deadline       timestamptz NOT NULL,
    state          text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'done', 'expired')),
    link_id        text,
    tag            text,
    sent_at        timestamptz,
    replied_at     timestamptz,
    reply_ok       boolean,
    reply_code     integer,
    reply_text     text,
    reply_lines    text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX forecourt_commands_pending ON forecourt_commands (station_id, id) WHERE state = 'pending';

-- The service role: the raw log is insert-only (it may read back the id it wrote), progress rows are
-- never changed, sales never deleted.
REVOKE SELECT, UPDATE, DELETE, TRUNCATE ON forecourt_events FROM fuel_app;
GRANT INSERT ON forecourt_events TO fuel_app;
GRANT SELECT (id) ON forecourt_events TO fuel_app;
REVOKE UPDATE, DELETE, TRUNCATE ON pump_progress FROM fuel_app;
REVOKE DELETE, TRUNCATE ON fcc_sales FROM fuel_app;
REVOKE TRUNCATE ON forecourt_commands, forecourt_links FROM fuel_app;
