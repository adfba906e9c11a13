-- Road numbers (OSM `ref`, e.g. G214, CG-2) on road_edges: a station beside an unnamed numbered road is
-- shown on that road. The next load-region writes them: forgetting the loaded graph's hash makes it
-- rewrite the region's road_edges (the graph itself comes from the cache, unchanged).
ALTER TABLE road_edges ADD COLUMN IF NOT EXISTS ref text;
UPDATE regions_loaded SET graph_hash = NULL;
