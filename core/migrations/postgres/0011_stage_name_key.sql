-- A stage's name as it is searched and sorted (pergola_domain::name_key: every letter in lower
-- case, whatever the database's locale). Compared by code point ("C"), as SQLite compares, so
-- both databases list stages by name in one order. The server fills it for the stages made
-- before it existed when it connects (PgStore::connect), and with every name it writes.
ALTER TABLE stages ADD COLUMN name_key TEXT COLLATE "C";
DROP INDEX stages_by_name;
CREATE INDEX stages_by_name ON stages (project_id, name_key, stage_id);
