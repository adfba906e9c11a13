-- Station onboarding: other keys a station is known by. When an onboarding row is matched to an
-- existing station by location (same brand within 50 m) rather than by its own (source, source_ref),
-- that key is remembered here, so later files, price feeds and promotion feeds that name the
-- operator's station code find the same station (and re-running the file stays a no-op).
CREATE TABLE station_refs (
    source     text NOT NULL,
    source_ref text NOT NULL,
    station_id bigint NOT NULL REFERENCES stations (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_ref)
);
CREATE INDEX station_refs_station ON station_refs (station_id);
