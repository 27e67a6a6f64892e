-- The one-time setup codes of a fresh instance (until its first administrator exists), stored
-- as their SHA-256: with several servers behind a load balancer, the code one printed in its
-- log works whichever server the browser reaches (each server's own was in its memory).
CREATE TABLE setup_codes (
    code_hash   TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);
