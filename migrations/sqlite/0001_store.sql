-- The store's schema on SQLite. Timestamps are INTEGER microseconds since the Unix epoch (UTC):
-- they compare and sort as numbers, and carry exactly the precision of PostgreSQL's TIMESTAMPTZ,
-- so both engines round-trip the same values. JSON documents are TEXT. See src/store/mod.rs,
-- "# Layout", for the reasons behind each table.

-- One row per image repository (registry + path). `status` with its reason and next retry
-- says what the last refresh found; `hub` is Docker Hub's description, stars and pulls (JSON).
CREATE TABLE repositories (
    id              INTEGER PRIMARY KEY,
    registry        TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'inspected', 'missing', 'failed')),
    status_reason   TEXT,
    next_retry      INTEGER,
    hub             TEXT,
    last_checked    INTEGER,
    last_changed    INTEGER,
    next_refresh_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    UNIQUE (registry, name)
);
CREATE INDEX repositories_next_refresh_at ON repositories (next_refresh_at);

-- One row per inspected digest (the tag's top-level digest: an index or a manifest), shared by
-- every tag of every repository that points at it. `platforms` and `image` are JSON; the
-- columns after them are copied out of `image` for the lists.
CREATE TABLE versions (
    digest           TEXT    PRIMARY KEY,
    media_type       TEXT    NOT NULL,
    platforms        TEXT    NOT NULL,
    image            TEXT    NOT NULL,
    download_size    INTEGER NOT NULL,
    layer_count      INTEGER NOT NULL,
    compliance_score INTEGER NOT NULL,
    license          TEXT,
    version          TEXT,
    created          TEXT,
    inspected_at     INTEGER NOT NULL
);
CREATE INDEX versions_compliance_score ON versions (compliance_score);

-- Where each tag points now.
CREATE TABLE tags (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    tag           TEXT    NOT NULL,
    digest        TEXT    NOT NULL REFERENCES versions (digest),
    first_seen    INTEGER NOT NULL,
    last_changed  INTEGER NOT NULL,
    last_checked  INTEGER NOT NULL,
    PRIMARY KEY (repository_id, tag)
);
CREATE INDEX tags_last_changed ON tags (last_changed);
CREATE INDEX tags_digest ON tags (digest);

-- The change log, in commit order. `seq` comes from `change_seq`, never from an
-- auto-increment, so that it is gap-free and ordered like the commits (see the module docs).
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    tag           TEXT,
    kind          TEXT    NOT NULL
                  CHECK (kind IN ('added', 'moved', 'deleted', 'repository_updated')),
    old_digest    TEXT,
    new_digest    TEXT,
    at            INTEGER NOT NULL
);
CREATE INDEX events_repository_id ON events (repository_id, seq);

-- The change sequence: one row, bumped by every transaction that records an event.
CREATE TABLE change_seq (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO change_seq (id, value) VALUES (1, 0);
