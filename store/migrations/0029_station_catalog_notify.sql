-- The API workers keep the nearby search's data in memory (store/_station_cache.py). Every committed
-- change to it is announced on the channel `fuel_catalog`, so each worker refreshes what changed:
-- `p:<station id>` for a station's prices, `s:<station id>` for a station (and its station-scoped
-- promotions), `b:<brand>` for a brand's promotions, and `*` when one statement changed more than
-- 100 of them (a bulk load, TRUNCATE): the worker then reloads everything. NOTIFY is transactional:
-- a rolled-back change is never announced, and a payload is sent once per transaction.
-- Statement-level triggers with transition tables: a bulk load of a million stations sends one `*`,
-- not a million payloads.
CREATE FUNCTION fuel_catalog_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    keys text[];
    k text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('fuel_catalog', '*');
        RETURN NULL;
    END IF;
    -- `changed` holds the new rows (the old ones for DELETE); `before` the old rows of an UPDATE.
    -- A bulk change is counted first, so a million-row load is not aggregated key by key.
    IF (SELECT count(*) FROM (SELECT 1 FROM changed LIMIT 101) x) > 100 THEN
        PERFORM pg_notify('fuel_catalog', '*');
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'prices' THEN
        IF TG_OP = 'UPDATE' THEN
            SELECT array_agg(DISTINCT 'p:' || station_id) INTO keys
            FROM (SELECT station_id FROM changed UNION ALL SELECT station_id FROM before) x;
        ELSE
            SELECT array_agg(DISTINCT 'p:' || station_id) INTO keys FROM changed;
        END IF;
    ELSIF TG_TABLE_NAME = 'stations' THEN
        SELECT array_agg(DISTINCT 's:' || id) INTO keys FROM changed;
    ELSIF TG_OP = 'UPDATE' THEN  -- promotions: an update may move one to another station or brand
        SELECT array_agg(DISTINCT CASE WHEN scope = 'station' THEN 's:' || station_id ELSE 'b:' || brand END)
        INTO keys FROM (SELECT scope, station_id, brand FROM changed
                        UNION ALL SELECT scope, station_id, brand FROM before) x;
    ELSE
        SELECT array_agg(DISTINCT CASE WHEN scope = 'station' THEN 's:' || station_id ELSE 'b:' || brand END)
        INTO keys FROM changed;
    END IF;
    IF keys IS NULL THEN
        RETURN NULL;
    END IF;
    IF cardinality(keys) > 100 THEN
        PERFORM pg_notify('fuel_catalog', '*');
        RETURN NULL;
    END IF;
    FOREACH k IN ARRAY keys LOOP
        PERFORM pg_notify('fuel_catalog', k);
    END LOOP;
    RETURN NULL;
END $$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['stations', 'prices', 'promotions'] LOOP
        EXECUTE format('CREATE TRIGGER %1$s_catalog_insert AFTER INSERT ON %1$I REFERENCING NEW TABLE AS changed'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION fuel_catalog_notify()', t);
        EXECUTE format('CREATE TRIGGER %1$s_catalog_update AFTER UPDATE ON %1$I'
                       ' REFERENCING OLD TABLE AS before NEW TABLE AS changed'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION fuel_catalog_notify()', t);
        EXECUTE format('CREATE TRIGGER %1$s_catalog_delete AFTER DELETE ON %1$I REFERENCING OLD TABLE AS changed'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION fuel_catalog_notify()', t);
        EXECUTE format('CREATE TRIGGER %1$s_catalog_truncate AFTER TRUNCATE ON %1$I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION fuel_catalog_notify()', t);
    END LOOP;
END $$;
