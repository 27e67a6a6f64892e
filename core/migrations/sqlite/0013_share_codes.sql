-- The dashboard's one-time codes to share hosts (60 s, used once), in the database so that a
-- share host answered by one server exchanges a code minted by another (they were each
-- server's own, in memory). A code ends with the user, and with the dashboard session that
-- asked for it.
CREATE TABLE share_codes (
    code_hash     TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_hash  TEXT REFERENCES sessions(id_hash) ON DELETE CASCADE,
    project_id    TEXT NOT NULL,
    stage_id      TEXT NOT NULL,
    host          TEXT NOT NULL,
    expires_at    BIGINT NOT NULL
);

CREATE INDEX share_codes_by_user ON share_codes (user_id, expires_at);
CREATE INDEX share_codes_by_expiry ON share_codes (expires_at);
