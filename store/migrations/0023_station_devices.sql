-- A station's devices: the receipt printer (ESC/POS over raw TCP, usually port 9100) and the speaker
-- that announces payments (an MQTT client subscribed to the station's voice topic). Set by operators
-- through the API (audited); a station without a row has neither.
CREATE TABLE station_devices (
    station_id         bigint PRIMARY KEY REFERENCES stations (id) ON DELETE CASCADE,
    printer_host       text CHECK (length(printer_host) BETWEEN 1 AND 253),
    printer_port       integer CHECK (printer_port BETWEEN 1024 AND 65535),
    speaker_device_id  text CHECK (speaker_device_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((printer_host IS NULL) = (printer_port IS NULL))
);

-- What a paid sale sends to the station's devices, one row per receipt copy (0 the original, 1.. reprints)
-- and one per voice announcement. The queue job that delivers a row marks it done: a retried job finds it
-- done and delivers nothing again; a reprint is a new row with the next copy number.
CREATE TABLE device_deliveries (
    id             bigserial PRIMARY KEY,
    out_trade_no   text NOT NULL REFERENCES payments (out_trade_no),
    kind           text NOT NULL CHECK (kind IN ('receipt', 'voice')),
    copy_no        integer NOT NULL DEFAULT 0 CHECK (copy_no BETWEEN 0 AND 99),
    station_id     bigint NOT NULL REFERENCES stations (id) ON DELETE CASCADE,
    requested_by   text NOT NULL CHECK (length(requested_by) BETWEEN 1 AND 64),
    state          text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    attempts       integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error     text CHECK (length(last_error) <= 500),
    target         text CHECK (length(target) <= 300),   -- host:port or the MQTT topic it went to
    requested_at   timestamptz NOT NULL DEFAULT now(),
    done_at        timestamptz,
    UNIQUE (out_trade_no, kind, copy_no),
    CHECK (kind = 'receipt' OR copy_no = 0),
    CHECK ((state = 'done') = (done_at IS NOT NULL))
);
CREATE INDEX device_deliveries_station ON device_deliveries (station_id, id);

-- The service role: deliveries are records (never deleted); device settings are replaced, not deleted.
REVOKE DELETE, TRUNCATE ON device_deliveries FROM fuel_app;
REVOKE TRUNCATE ON station_devices FROM fuel_app;
