-- A payment WeChat Pay took for a sale that another of our payments had already paid: the late
-- notification of an order we had closed unpaid, after the payer paid the sale again with a newer order.
-- The money is real, so it is recorded paid, marked as the duplicate of the sale's payment, and refunded
-- in full; it never becomes the sale's payment (no CLEAR, no points, no session change). A sale still has
-- at most one live payment that is not such a duplicate.
ALTER TABLE payments ADD COLUMN duplicate_of text REFERENCES payments (out_trade_no)
    CHECK (duplicate_of IS NULL OR state = 'paid');
DROP INDEX payments_one_live_per_sale;
CREATE UNIQUE INDEX payments_one_live_per_sale ON payments (sale_ref)
    WHERE state IN ('created', 'paid') AND duplicate_of IS NULL;
