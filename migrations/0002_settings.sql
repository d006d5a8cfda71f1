-- Cluster-wide settings changed at run time (e.g. the replication mode):
-- last writer wins by (lamport, origin).
CREATE TABLE settings (
    name    TEXT    PRIMARY KEY,
    value   TEXT    NOT NULL,
    lamport INTEGER NOT NULL,
    origin  TEXT    NOT NULL
) WITHOUT ROWID;
