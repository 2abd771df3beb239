-- Reference table: the same rows on every shard, never moved with a tenant.
CREATE TABLE plans (
  id            text PRIMARY KEY,
  name          text NOT NULL,
  monthly_price numeric(10, 2) NOT NULL,
  features      jsonb NOT NULL DEFAULT '{}'
);

INSERT INTO plans (id, name, monthly_price, features) VALUES
  ('free',       'Free',       0.00,   '{"seats": 3}'),
  ('team',       'Team',       49.00,  '{"seats": 25, "sso": false}'),
  ('business',   'Business',   249.00, '{"seats": 250, "sso": true}'),
  ('enterprise', 'Enterprise', 1999.00, '{"seats": null, "sso": true, "audit": true}');
