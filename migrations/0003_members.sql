-- Members added and removed at run time (POST/DELETE /cluster/members): per
-- broker id, last writer wins by (lamport, origin). The peer list of
-- globalState.csv (or --join) is the seed they change.
CREATE TABLE members (
    id      TEXT    PRIMARY KEY,
    host    TEXT    NOT NULL,
    port    INTEGER NOT NULL,
    present INTEGER NOT NULL,
    lamport INTEGER NOT NULL,
    origin  TEXT    NOT NULL
) WITHOUT ROWID;
