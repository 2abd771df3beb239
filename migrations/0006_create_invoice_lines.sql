CREATE TABLE invoice_lines (
  tenant_id   bigint NOT NULL,
  invoice_id  bigint NOT NULL,
  line_no     integer NOT NULL,
  description text NOT NULL,
  quantity    numeric(12, 3) NOT NULL,
  unit_price  numeric(14, 4) NOT NULL,
  amount      numeric(20, 4) GENERATED ALWAYS AS (quantity * unit_price) STORED,
  PRIMARY KEY (tenant_id, invoice_id, line_no),
  FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id) ON DELETE CASCADE
);
