-- A share host's session remembers the dashboard session that vouched for it (the one-time code
-- of /share-auth): signing out there, or that session ending any other way, ends it too.
ALTER TABLE sessions ADD COLUMN parent_hash TEXT REFERENCES sessions(id_hash) ON DELETE CASCADE;
CREATE INDEX sessions_by_parent ON sessions (parent_hash);
