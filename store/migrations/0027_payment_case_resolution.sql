-- Back-office payment cases, seen and resolved by operators (GET/POST /v1/payments/cases): a new kind,
-- 'points_released' (an order paid after its points hold was voided: the payer was charged the amount
-- less the redemption but no points were redeemed), and who resolved a case, when and how.
ALTER TABLE payment_cases DROP CONSTRAINT payment_cases_kind_check;
ALTER TABLE payment_cases ADD CONSTRAINT payment_cases_kind_check
    CHECK (kind IN ('unknown_at_site', 'locked_elsewhere', 'refund_abnormal', 'points_released'));
ALTER TABLE payment_cases
    ADD COLUMN resolved_by text,
    ADD COLUMN resolution_note text CHECK (length(resolution_note) BETWEEN 1 AND 500);
-- a case resolved by hand in the database before resolutions were recorded
UPDATE payment_cases SET resolved_by = 'database', resolution_note = 'resolved before 0027'
    WHERE resolved_at IS NOT NULL;
ALTER TABLE payment_cases ADD CONSTRAINT payment_cases_resolution
    CHECK ((resolved_at IS NULL) = (resolved_by IS NULL) AND (resolved_at IS NULL) = (resolution_note IS NULL));
-- the open cases, oldest first (the operators' default listing)
CREATE INDEX payment_cases_open ON payment_cases (id) WHERE resolved_at IS NULL;
