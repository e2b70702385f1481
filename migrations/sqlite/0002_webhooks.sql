-- Webhook tokens (see src/store/webhooks.rs). Only a SHA-256 hash of each token is kept: the
-- token itself is shown once, when it is created, and cannot be read back.
--
-- `kind` says which endpoint the token opens and what `target` names:
-- - 'dockerhub': POST /hooks/dockerhub/{image}/{token}; `target` is the repository's full name
--   (`docker.io/library/nginx`);
-- - 'registry': POST /hooks/registry/{token}; `target` is the registry host (`host:port`) whose
--   notifications the token accepts.
-- Several tokens may share a target, so a token can be replaced without downtime.
CREATE TABLE webhooks (
    id         INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('dockerhub', 'registry')),
    target     TEXT    NOT NULL,
    token_hash TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_used  INTEGER
);
CREATE INDEX webhooks_kind_target ON webhooks (kind, target);
