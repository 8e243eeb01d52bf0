-- +goose Up
ALTER TABLE accounts ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE users ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- +goose StatementBegin
CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- An UPDATE that changes nothing keeps the old timestamp.
    IF NEW IS DISTINCT FROM OLD THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER accounts_touch_updated_at BEFORE UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER users_touch_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- +goose Down
DROP TRIGGER users_touch_updated_at ON users;
DROP TRIGGER accounts_touch_updated_at ON accounts;
DROP FUNCTION touch_updated_at();
ALTER TABLE users DROP COLUMN updated_at;
ALTER TABLE accounts DROP COLUMN updated_at;
