-- Times are milliseconds since the Unix epoch (UTC) in both backends.
CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE stages (
    uid           TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    stage_id      TEXT NOT NULL,
    name          TEXT NOT NULL,
    stage_type    TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    archived_at   BIGINT,
    purge_due_at  BIGINT,
    -- Live and archived stages share the ID space of their project: an archived stage keeps
    -- its ID until it is purged, so a restore can never collide.
    UNIQUE (project_id, stage_id)
);

CREATE INDEX stages_purge_due ON stages (purge_due_at) WHERE purge_due_at IS NOT NULL;

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
