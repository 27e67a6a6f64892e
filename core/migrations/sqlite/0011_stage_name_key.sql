-- A stage's name as it is searched and sorted (pergola_domain::name_key: every letter in lower
-- case, not only ASCII's as SQLite's lower() does). The server fills it for the stages made
-- before it existed when it connects (SqliteStore::connect), and with every name it writes.
ALTER TABLE stages ADD COLUMN name_key TEXT;
DROP INDEX stages_by_name;
CREATE INDEX stages_by_name ON stages (project_id, name_key, stage_id);
