-- Live traffic batches, shared by every worker process (NOTIFY fuel_traffic carries the batch id).
CREATE TABLE traffic_batches (
    id          bigserial PRIMARY KEY,
    region      text NOT NULL,
    graph_hash  text NOT NULL,
    origin      text NOT NULL,
    items       jsonb NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX traffic_batches_active ON traffic_batches (region, graph_hash, expires_at);
