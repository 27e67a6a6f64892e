-- Facts every server of the database must agree on, by name. The first is `key-check`: a value
-- sealed with the servers' secret key, which a server started with another key cannot open
-- (it then refuses to start instead of failing to open every secret of every stage).
CREATE TABLE instance_settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
