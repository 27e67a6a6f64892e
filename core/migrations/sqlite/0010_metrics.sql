-- The metrics each server sampled (see core/src/metrics.rs): its 10-second points of the last
-- hour and its 5-minute summaries of the last day (`summary`), per component of a stage, so
-- that charts outlive a server's restart and add up what every server proxied. Times are
-- milliseconds since the epoch; `server` is the sampling server's holder name.
CREATE TABLE metric_points (
    id           INTEGER PRIMARY KEY,
    server       TEXT NOT NULL,
    project_id   TEXT NOT NULL,
    stage_id     TEXT NOT NULL,
    component    TEXT NOT NULL,
    summary      BOOLEAN NOT NULL,
    at           BIGINT NOT NULL,
    secs         BIGINT NOT NULL,
    cpu_percent  REAL,
    memory_bytes BIGINT,
    requests     BIGINT NOT NULL,
    errors       BIGINT NOT NULL,
    p50_ms       REAL,
    p95_ms       REAL
);
CREATE INDEX metric_points_of_stage ON metric_points (project_id, stage_id, summary, at);
CREATE INDEX metric_points_by_time ON metric_points (summary, at);
