-- A price change held for review is held once: while a decision for the same station, grade and price
-- awaits review, the same change again answers that decision (store._price_review) instead of queueing
-- another. The pending duplicates already queued are closed first: each later one is rejected as the
-- same change as the oldest, which stays pending, with an audit row.
WITH pending AS (
    SELECT id, first_value(id) OVER w AS kept
    FROM risk_decisions
    WHERE point = 'price' AND review_state = 'pending'
    WINDOW w AS (
        PARTITION BY subject ->> 'station_id', subject ->> 'grade', subject ->> 'price_cny' ORDER BY id
    )
), closed AS (
    UPDATE risk_decisions d
    SET review_state = 'rejected', reviewed_by = 'migration 0028', reviewed_at = now(),
        review_note = 'the same price change as decision ' || p.kept || ', which awaits review'
    FROM pending p
    WHERE d.id = p.id AND p.id <> p.kept
    RETURNING d.id, d.review_note
)
INSERT INTO audit_log (actor, action, entity, entity_id, old_value, new_value)
SELECT 'migration 0028', 'update', 'risk_decision', id::text, '{"review_state": "pending"}',
       jsonb_build_object('review_state', 'rejected', 'review_note', review_note)
FROM closed;

CREATE UNIQUE INDEX risk_decisions_one_pending_price
    ON risk_decisions ((subject ->> 'station_id'), (subject ->> 'grade'), (subject ->> 'price_cny'))
    WHERE point = 'price' AND review_state = 'pending';
