CREATE TABLE tenants (
  tenant_id  bigint PRIMARY KEY,
  name       text NOT NULL,
  plan_id    text NOT NULL REFERENCES plans (id),
  created_at timestamptz NOT NULL DEFAULT now(),
  settings   jsonb NOT NULL DEFAULT '{}'
);
