-- migrate:up
CREATE TABLE audit_log_2026 PARTITION OF audit_log
    FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2027-01-01 00:00:00+00');

CREATE INDEX audit_log_entity_idx ON audit_log (entity, entity_id);

-- migrate:down
DROP INDEX audit_log_entity_idx;
DROP TABLE audit_log_2026;
