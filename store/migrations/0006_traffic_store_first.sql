-- Live traffic, store first: every row names its actor (the API key that posted it), and operator
-- clears share the batches' id sequence (a clear voids every batch of its region with a smaller id,
-- in every worker and after a restart). Batches stored before this migration were posted without
-- authentication: they are dropped (live traffic lasts a day at most; feeds resend it).
DELETE FROM traffic_batches;
ALTER TABLE traffic_batches ADD COLUMN kind text NOT NULL DEFAULT 'batch' CHECK (kind IN ('batch', 'clear'));
ALTER TABLE traffic_batches ADD COLUMN actor text NOT NULL;
CREATE INDEX traffic_batches_region_kind_id ON traffic_batches (region, kind, id);
