-- Builds: versioned artifacts of a project, described by a manifest (TOML). `workdir` is where
-- the build's files are on the machine that runs it (the local runtime runs commands there).
CREATE TABLE builds (
    uid         TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    number      BIGINT NOT NULL,
    version     TEXT,
    manifest    TEXT NOT NULL,
    workdir     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (project_id, number)
);

-- Releases: a build deployed to a stage with a snapshot of the stage's configuration. The
-- newest release of a stage is the one that runs (at most one at a time).
CREATE TABLE releases (
    uid         TEXT PRIMARY KEY,
    stage_uid   TEXT NOT NULL REFERENCES stages(uid) ON DELETE CASCADE,
    number      BIGINT NOT NULL,
    build_uid   TEXT NOT NULL REFERENCES builds(uid),
    config      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (stage_uid, number)
);
