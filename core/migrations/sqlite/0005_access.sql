-- Issue 9: users, sign-in sessions, API tokens, project memberships, the sign-in throttle,
-- invitations, the audit log, share-link visibility and guest links.
-- Secrets (session cookies, API tokens, invitation and guest-link tokens) are never stored:
-- only the SHA-256 (hex) of each, so a copy of the database signs no one in.

-- Usernames are stored normalised (lowercase), so UNIQUE is case-insensitive.
CREATE TABLE users (
    id                   TEXT PRIMARY KEY,
    username             TEXT NOT NULL UNIQUE,
    password_hash        TEXT NOT NULL,
    is_admin             BOOLEAN NOT NULL,
    disabled_at          BIGINT,
    created_at           BIGINT NOT NULL,
    password_changed_at  BIGINT NOT NULL
);

CREATE TABLE sessions (
    id_hash       TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    address       TEXT
);

CREATE INDEX sessions_by_user ON sessions (user_id);

-- A user's live (unrevoked) tokens have distinct names; a revoked token's name can be reused.
CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);

CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (user_id, name) WHERE revoked_at IS NULL;

CREATE TABLE memberships (
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);

CREATE INDEX memberships_by_user ON memberships (user_id);

-- Failed sign-ins per (normalised username, client address); `address` is '' when unknown.
CREATE TABLE sign_in_failures (
    username  TEXT NOT NULL,
    address   TEXT NOT NULL,
    at        BIGINT NOT NULL
);

CREATE INDEX sign_in_failures_by_key ON sign_in_failures (username, address, at);

-- An invitation to create an account (an administrator's, when `is_admin`), and optionally
-- to join a project with a role. Used at most once, never after `expires_at`.
CREATE TABLE invitations (
    token_hash  TEXT PRIMARY KEY,
    created_by  TEXT NOT NULL,
    is_admin    BOOLEAN NOT NULL,
    project_id  TEXT REFERENCES projects(id) ON DELETE CASCADE,
    role        TEXT,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);

-- Who did what. Kept when stages are purged (no foreign keys): `actor` is a username,
-- `token:NAME` or `system`.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    address     TEXT,
    project_id  TEXT,
    stage_id    TEXT,
    kind        TEXT NOT NULL,
    target      TEXT NOT NULL,
    message     TEXT NOT NULL
);

CREATE INDEX audit_events_by_project ON audit_events (project_id, at);

-- Who caused a stage event (NULL for what the runtime observed and for older rows).
ALTER TABLE stage_events ADD COLUMN actor TEXT;

-- Who may open a stage's share links: `members` or `public`.
ALTER TABLE stages ADD COLUMN visibility TEXT NOT NULL DEFAULT 'members';

-- Links that open one stage's share links without signing in. They belong to the stage
-- (like its configuration and events): purged with it.
CREATE TABLE guest_links (
    id          TEXT PRIMARY KEY,
    stage_uid   TEXT NOT NULL REFERENCES stages(uid) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL UNIQUE,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);

CREATE INDEX guest_links_by_stage ON guest_links (stage_uid);
