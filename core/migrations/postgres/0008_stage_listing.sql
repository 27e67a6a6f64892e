-- Listing the live stages of a project with many: in creation order, by name (lower-cased,
-- as the listing sorts), or the most recently changed first; ties by stage ID.
CREATE INDEX stages_by_created ON stages (project_id, created_at, stage_id);
CREATE INDEX stages_by_name ON stages (project_id, lower(name), stage_id);
CREATE INDEX stages_by_updated ON stages (project_id, updated_at, stage_id);
