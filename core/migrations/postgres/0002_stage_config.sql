-- Per-stage configuration: environment settings passed to every component of the stage.
-- Rows belong to the stage: they survive archive and restore, and are purged with it.
CREATE TABLE stage_config (
    stage_uid   TEXT NOT NULL REFERENCES stages(uid) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    secret      BOOLEAN NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (stage_uid, key)
);
