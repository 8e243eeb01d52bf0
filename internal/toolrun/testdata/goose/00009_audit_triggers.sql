-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION audit_row_change() RETURNS trigger
LANGUAGE plpgsql AS $audit$
DECLARE
    row_id bigint;
    payload jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_id := OLD.id;
        payload := to_jsonb(OLD);
    ELSE
        row_id := NEW.id;
        payload := to_jsonb(NEW);
    END IF;
    INSERT INTO audit_log (actor, action, entity, entity_id, details)
    VALUES (current_user, lower(TG_OP), TG_TABLE_NAME, row_id, payload);
    RETURN NULL; -- an AFTER trigger's result is ignored
END;
$audit$;
-- +goose StatementEnd

CREATE TRIGGER orders_audit AFTER INSERT OR UPDATE OR DELETE ON orders
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();
CREATE TRIGGER invoices_audit AFTER INSERT OR UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();

-- +goose Down
DROP TRIGGER invoices_audit ON invoices;
DROP TRIGGER orders_audit ON orders;
DROP FUNCTION audit_row_change();
