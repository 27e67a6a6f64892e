-- Per-stage grace period between SIGTERM and SIGKILL (seconds), and the events timeline.
ALTER TABLE stages ADD COLUMN grace_secs BIGINT NOT NULL DEFAULT 60;

-- What happened to a stage: lifecycle changes the services made, and what the runtime
-- observed of its components (crashes, restarts, kills, health changes). Purged with the stage.
CREATE TABLE stage_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    stage_uid   TEXT NOT NULL REFERENCES stages(uid) ON DELETE CASCADE,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    component   TEXT,
    message     TEXT NOT NULL
);

CREATE INDEX stage_events_by_stage ON stage_events (stage_uid, id);
