-- shardctl:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS invoices_issued_at_idx ON invoices (tenant_id, issued_at);
