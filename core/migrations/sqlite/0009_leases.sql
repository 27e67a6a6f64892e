-- Work that one server of several on this database does at a time (the background sweeps, the
-- local runtime's stages): who holds it, until when (milliseconds since the epoch). A holder
-- renews its lease before it ends; a lease past its end may be taken by another server.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
