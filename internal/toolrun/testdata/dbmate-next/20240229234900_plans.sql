-- migrate:up
CREATE TABLE plans (
    id smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code text NOT NULL UNIQUE,
    name text NOT NULL,
    monthly_price_cents integer NOT NULL CHECK (monthly_price_cents >= 0)
);

INSERT INTO plans (code, name, monthly_price_cents) VALUES
    ('free', 'Free', 0),
    ('team', 'Team; billed monthly', 2900),
    ('enterprise', 'Enterprise', 49900);

ALTER TABLE accounts ADD COLUMN plan_id smallint REFERENCES plans (id);
UPDATE accounts SET plan_id = (SELECT id FROM plans WHERE code = 'free') WHERE plan_id IS NULL;
ALTER TABLE accounts ALTER COLUMN plan_id SET NOT NULL;

-- migrate:down
ALTER TABLE accounts DROP COLUMN plan_id;
DROP TABLE plans;
