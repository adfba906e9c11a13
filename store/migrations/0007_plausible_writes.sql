-- Plausible, audited writes.
-- 1. Which station fields the station manager API owns: a PATCH adds the names of the fields it set,
--    and bulk loads (load-region, OSM and onboarding files) leave those fields alone.
ALTER TABLE stations ADD COLUMN manager_fields text[] NOT NULL DEFAULT '{}';
CREATE INDEX stations_manager_owned ON stations (id) WHERE manager_fields <> '{}';

-- 2. A promotion's source_ref is its owner's key: unique per station (station promotions) and per brand
--    (brand promotions), no longer across the whole table, so one station's refs never collide with
--    (or reveal) another's.
ALTER TABLE promotions DROP CONSTRAINT promotions_source_source_ref_key;
ALTER TABLE promotions ADD COLUMN target text NOT NULL GENERATED ALWAYS AS (
    CASE WHEN scope = 'station' THEN 'station:' || station_id::text ELSE 'brand:' || brand END
) STORED;
ALTER TABLE promotions ADD CONSTRAINT promotions_target_source_ref_key UNIQUE (target, source, source_ref);
