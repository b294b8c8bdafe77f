-- pgperf store, version 3: the audit trail of operator actions.
--
-- One row per acknowledge, resolve and configuration reload (and future operator
-- actions): who (the authenticated API token's name, "cli:<user>" or "python"), the
-- role it had, what and on what, when, and from where.

CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    role      text,
    action    text NOT NULL,
    subject   text,
    detail    jsonb NOT NULL DEFAULT '{}',
    source    text
);

CREATE INDEX audit_log_at ON audit_log (at);
