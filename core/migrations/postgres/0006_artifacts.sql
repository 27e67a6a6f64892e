-- Issue 11: builds are uploaded archives, stored content-addressed under the data directory
-- (`artifacts/sha256/<hex>.tar.gz` or `.tar.zst`, unpacked into `artifacts/sha256/<hex>/`),
-- once however often the same bytes are uploaded.
CREATE TABLE artifacts (
    -- `sha256:<hex>` of the archive as uploaded.
    digest         TEXT PRIMARY KEY,
    -- `gzip` or `zstd`.
    compression    TEXT NOT NULL,
    size           BIGINT NOT NULL,
    unpacked_size  BIGINT NOT NULL,
    -- When it was stored (again, after a deletion): a fresh artifact is kept for the retention
    -- period even before a build refers to it.
    created_at     BIGINT NOT NULL,
    -- When the retention of unused artifacts deleted its files (its builds are then expired).
    deleted_at     BIGINT
);

-- A build registered by a server path (administrators, PERGOLA_PATH_BUILDS=on) has no artifact.
ALTER TABLE builds ADD COLUMN artifact_digest TEXT REFERENCES artifacts(digest);
-- Who uploaded (or registered) it.
ALTER TABLE builds ADD COLUMN uploaded_by TEXT;

CREATE INDEX builds_by_artifact ON builds (artifact_digest);
