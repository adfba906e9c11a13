-- API keys: a traffic-feed role, unique names (the name is the audit actor), expiry and revocation
-- (a revoked key is kept, so the audit log's actors stay explained).
UPDATE api_keys k SET name = k.name || '-' || k.id
 WHERE EXISTS (SELECT 1 FROM api_keys o WHERE o.name = k.name AND o.id < k.id);
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check CHECK (role IN ('operator', 'manager', 'traffic'));
ALTER TABLE api_keys ADD CONSTRAINT api_keys_name_key UNIQUE (name);
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
ALTER TABLE api_keys ADD COLUMN revoked_at timestamptz;
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;
