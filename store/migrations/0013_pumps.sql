-- A station's forecourt: pumps (IFSF fuelling points), their nozzles, and the live status of each pump as
-- the station link last reported it. The link server writes pump_status; the API reads it.
CREATE TABLE pumps (
    station_id  bigint NOT NULL REFERENCES stations (id) ON DELETE CASCADE,
    pump_no     integer NOT NULL CHECK (pump_no BETWEEN 1 AND 99),
    label       text NOT NULL DEFAULT '' CHECK (length(label) <= 40),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (station_id, pump_no)
);

-- A logical nozzle: its number on the pump and the grade it delivers (KNOWN_GRADES of geo._pricing).
CREATE TABLE nozzles (
    station_id  bigint NOT NULL,
    pump_no     integer NOT NULL,
    nozzle_no   integer NOT NULL CHECK (nozzle_no BETWEEN 1 AND 9),
    grade       text NOT NULL CHECK (grade IN ('89', '92', '95', '98', '0')),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (station_id, pump_no, nozzle_no),
    FOREIGN KEY (station_id, pump_no) REFERENCES pumps ON DELETE CASCADE
);

-- Live pump status from the station link (OpenFSC PUMPSTATUS, with the IFSF fuelling-point state when the
-- site reports it). A row past valid_until (the status TTL) is shown as unknown.
CREATE TABLE pump_status (
    station_id   bigint NOT NULL,
    pump_no      integer NOT NULL,
    status       text NOT NULL CHECK (status IN ('free', 'in-use', 'in-transaction', 'ready-to-pay',
                                                  'locked', 'out-of-order')),
    fp_state     smallint CHECK (fp_state BETWEEN 1 AND 9),
    reported_at  timestamptz NOT NULL,
    valid_until  timestamptz,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (station_id, pump_no),
    FOREIGN KEY (station_id, pump_no) REFERENCES pumps ON DELETE CASCADE
);
