-- Station index, prices, promotions, official ceilings, road edges, auth and audit.
CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE stations (
    id            bigserial PRIMARY KEY,
    source        text NOT NULL CHECK (source IN ('osm', 'onboarding', 'demo')),
    source_ref    text NOT NULL,
    name          text NOT NULL DEFAULT '',
    name_en       text,
    brand         text NOT NULL CHECK (brand IN ('sinopec', 'petrochina', 'cnooc', 'shell', 'other')),
    brand_raw     text,
    address       text,
    geom          geometry(Point, 4326) NOT NULL,
    h3_r7         bigint NOT NULL,
    h3_r8         bigint NOT NULL,
    h3_r9         bigint NOT NULL,
    grades        text[] NOT NULL DEFAULT '{}',
    opening_hours text,
    amenities     text[] NOT NULL DEFAULT '{}',
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed', 'temporarily_closed')),
    version       integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, source_ref)
);
CREATE INDEX stations_h3_r7 ON stations (h3_r7);
CREATE INDEX stations_h3_r8 ON stations (h3_r8);
CREATE INDEX stations_h3_r9 ON stations (h3_r9);
CREATE INDEX stations_geom ON stations USING gist (geom);
CREATE INDEX stations_brand ON stations (brand);

CREATE TABLE prices (
    id             bigserial PRIMARY KEY,
    station_id     bigint NOT NULL REFERENCES stations (id) ON DELETE CASCADE,
    grade          text NOT NULL,
    price_cny      numeric(6, 2) NOT NULL CHECK (price_cny > 0),
    effective_from timestamptz NOT NULL,
    observed_at    timestamptz NOT NULL DEFAULT now(),
    source         text NOT NULL CHECK (source IN ('station', 'feed', 'official', 'demo')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (station_id, grade, effective_from)
);
CREATE INDEX prices_current ON prices (station_id, grade, effective_from DESC);

CREATE TABLE promotions (
    id              bigserial PRIMARY KEY,
    scope           text NOT NULL CHECK (scope IN ('station', 'brand')),
    station_id      bigint REFERENCES stations (id) ON DELETE CASCADE,
    brand           text CHECK (brand IN ('sinopec', 'petrochina', 'cnooc', 'shell', 'other')),
    title           text NOT NULL DEFAULT '',
    title_en        text,
    grades          text[] NOT NULL DEFAULT '{}',
    kind            text NOT NULL CHECK (kind IN ('percent_off', 'cny_off_per_litre', 'cny_off_per_order', 'topup_bonus')),
    value           numeric(8, 2) NOT NULL CHECK (value > 0),
    min_amount_cny  numeric(10, 2),
    min_litres      numeric(8, 2),
    days_of_week    smallint[] NOT NULL DEFAULT '{}',
    date_ranges     jsonb NOT NULL DEFAULT '[]',
    public_holidays_only boolean NOT NULL DEFAULT false,
    time_from       time,
    time_to         time,
    members_only    boolean NOT NULL DEFAULT false,
    payment_methods text[] NOT NULL DEFAULT '{}',
    valid_from      timestamptz NOT NULL,
    valid_to        timestamptz,
    source          text NOT NULL DEFAULT 'station',
    source_ref      text,
    version         integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((scope = 'station' AND station_id IS NOT NULL) OR (scope = 'brand' AND brand IS NOT NULL)),
    CHECK (valid_to IS NULL OR valid_to > valid_from),
    UNIQUE (source, source_ref)
);
CREATE INDEX promotions_station ON promotions (station_id);
CREATE INDEX promotions_brand ON promotions (brand);

CREATE TABLE price_ceilings (
    zone            text NOT NULL,
    grade           text NOT NULL,
    max_price_cny   numeric(6, 2) NOT NULL CHECK (max_price_cny > 0),
    effective_from  timestamptz NOT NULL,
    adjustment_date date,
    source_url      text,
    PRIMARY KEY (zone, grade, effective_from)
);

CREATE TABLE road_edges (
    region       text NOT NULL,
    id           integer NOT NULL,
    way_id       bigint NOT NULL,
    u_osm        bigint NOT NULL,
    v_osm        bigint NOT NULL,
    source       integer NOT NULL,
    target       integer NOT NULL,
    highway      text NOT NULL,
    name         text,
    name_en      text,
    maxspeed_kmh real,
    lanes        smallint,
    length_m     double precision NOT NULL,
    cost_s       double precision NOT NULL,
    geom         geometry(LineString, 4326) NOT NULL,
    PRIMARY KEY (region, id)
);
CREATE INDEX road_edges_geom ON road_edges USING gist (geom);
CREATE INDEX road_edges_way ON road_edges (region, way_id);

CREATE TABLE regions_loaded (
    region       text PRIMARY KEY,
    extract_path text,
    extract_hash text,
    graph_hash   text,
    stations     integer NOT NULL DEFAULT 0,
    edges        integer NOT NULL DEFAULT 0,
    loaded_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          serial PRIMARY KEY,
    key_hash    text NOT NULL UNIQUE,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('operator', 'manager')),
    station_ids bigint[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    action    text NOT NULL,
    entity    text NOT NULL,
    entity_id text NOT NULL,
    old_value jsonb,
    new_value jsonb
);
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id);
