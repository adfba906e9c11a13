-- Expired console sessions are deleted (at each login and by the payments worker's hourly job,
-- store/_staff.py purge_expired_sessions): the service role may delete staff_sessions rows, still not
-- staff or shifts (0022). Each purge writes an audit row with the count.
GRANT DELETE ON staff_sessions TO fuel_app;
CREATE INDEX staff_sessions_expiry ON staff_sessions (expires_at);
